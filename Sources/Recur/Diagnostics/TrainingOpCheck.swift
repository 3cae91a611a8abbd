// `recur verify`'s check of the training ops (losses, optimizer steps, clamp, row norms) against
// the float64 specification in `TrainingReference`, not against another backend: the selected
// device and the CPU backend are each held to the same reference values.

/// One training op on fixed seeded inputs and the float64 reference of every value it writes.
struct TrainingOpCheck {
    let name: String
    /// Names of the written values, in the order `run` returns them and `expected` holds them.
    let outputs: [String]
    /// Uploads the inputs to a backend, runs the op there and downloads what it wrote.
    let run: (any Backend) throws -> [[Float]]
    /// What `TrainingReference` computes from the same inputs.
    var expected: [[Double]]
    var tolerance = SelfCheck.roundingTolerance

    /// One comparison per written value (a loss slot and a gradient, or a parameter and each
    /// state tensor), named with the backend, so a small gradient is not hidden by a larger loss.
    func compare(on backend: any Backend) throws -> [Comparison] {
        let actual = try run(backend)
        return zip(outputs, zip(actual, expected)).map { output, values in
            Comparison("\(name) \(output) [\(backend.kind.rawValue)]", actual: values.0, expected: values.1,
                       tolerance: tolerance)
        }
    }
}

extension SelfCheck {
    /// Every loss (sigmoid and softmax cross-entropy with and without weights and an ignored
    /// index, mean squared error), every optimizer step (SGD plain, with momentum and dampening
    /// and Nesterov, on the first step and later; Adam and AdamW at steps 1 and 4; RMSProp with and
    /// without momentum), clamp and row norms, and the grouped ops (Adam's step, the sums of
    /// squares, scaling and zeroing of ten tensors), on seeded random inputs at odd sizes, each compared
    /// with the float64 ``TrainingReference`` on the checked backend and, where that is not the
    /// CPU backend, on the CPU backend too.
    public mutating func trainingOps() throws -> [Comparison] {
        try compareOnBothBackends(trainingChecks())
    }

    /// Runs `checks` on the checked backend and, where that is not the CPU backend, on the CPU
    /// backend too: every check's comparisons on the first, then on the second.
    func compareOnBothBackends(_ checks: [TrainingOpCheck]) throws -> [Comparison] {
        let targets: [any Backend] = backend is CPUBackend ? [backend] : [backend, reference]
        return try targets.flatMap { target in try checks.flatMap { try $0.compare(on: target) } }
    }

    /// The checks `trainingOps()` runs, with their inputs drawn from this check's generator.
    mutating func trainingChecks() -> [TrainingOpCheck] {
        var checks: [TrainingOpCheck] = []
        for count in [1, 7, 257] {
            checks += elementwiseLossChecks(count: count)
            checks += optimizerChecks(count: count)
            checks.append(clampCheck(count: count))
        }
        for (rows, classes) in [(1, 1), (7, 5), (33, 65)] {
            checks += softmaxCrossEntropyChecks(rows: rows, classes: classes)
        }
        for (rows, rowLength) in [(1, 1), (7, 5), (33, 65)] {
            checks.append(rowNormCheck(rows: rows, rowLength: rowLength))
        }
        checks += groupedChecks(counts: [1, 7, 257, 3, 64, 1031, 2, 9, 33, 5])
        return checks
    }

    /// The ops over lists of tensors (more than one launch's eight): Adam's step with a different
    /// step count per parameter, the sums of squares and the scaling of clipping, and zeroing.
    private mutating func groupedChecks(counts: [Int]) -> [TrainingOpCheck] {
        let p = counts.map { values($0, -1, 1) }
        let g = counts.map { values($0, -1, 1) }
        let m = counts.map { values($0, -0.5, 0.5) }
        let v = counts.map { values($0, 0.01, 1) }
        let updates = counts.indices.map { AdamUpdate(learningRate: 0.01, epsilon: 1e-6, step: 1 + 2 * $0) }
        var expected: [[Double]] = []
        for index in counts.indices {
            var (parameter, first, second) = (p[index].map(Double.init), m[index].map(Double.init),
                                              v[index].map(Double.init))
            TrainingReference.adamStep(parameter: &parameter, gradient: g[index].map(Double.init), firstMoment: &first,
                                       secondMoment: &second, hyperparameters: updates[index])
            expected += [parameter, first, second]
        }
        let names = counts.indices.flatMap { ["parameter \($0)", "m \($0)", "v \($0)"] }
        let factors = counts.indices.map { Float(0.25 + 0.5 * Double($0)) }
        let all = counts.indices
        return [
            TrainingOpCheck(
                name: "adamSteps over \(counts.count) parameters", outputs: names,
                run: { backend in
                    let tensors = try all.map { i in try [p[i], m[i], v[i]].map { try backend.upload($0, shape: [counts[i]]) } }
                    try backend.adamSteps(try all.map { i in
                        AdamStep(parameter: tensors[i][0], gradient: try backend.upload(g[i], shape: [counts[i]]),
                                 firstMoment: tensors[i][1], secondMoment: tensors[i][2], hyperparameters: updates[i])
                    })
                    return try tensors.flatMap { try $0.map { try backend.download($0) } }
                },
                expected: expected),
            TrainingOpCheck(
                name: "sumsOfSquares of \(counts.count) tensors", outputs: ["sums"],
                run: { backend in
                    let sums = try backend.zeros([counts.count])
                    try backend.sumsOfSquares(try all.map { try backend.upload(g[$0], shape: [counts[$0]]) },
                                              into: sums, at: 0)
                    return [try backend.download(sums)]
                },
                expected: [g.map { $0.reduce(0.0) { $0 + Double($1) * Double($1) } }]),
            TrainingOpCheck(
                name: "scale and zero \(counts.count) tensors", outputs: ["scaled", "zeroed"],
                run: { backend in
                    let scaled = try all.map { try backend.upload(g[$0], shape: [counts[$0]]) }
                    try backend.scale(scaled, by: factors)
                    let zeroed = try all.map { try backend.upload(p[$0], shape: [counts[$0]]) }
                    try backend.zero(zeroed)
                    return [try scaled.flatMap { try backend.download($0) }, try zeroed.flatMap { try backend.download($0) }]
                },
                expected: [all.flatMap { i in g[i].map { Double($0) * Double(factors[i]) } },
                           [Double](repeating: 0, count: counts.reduce(0, +))]),
        ]
    }

    // MARK: Inputs

    /// `count` values uniform in [low, high), as float32 (what every backend receives).
    private mutating func values(_ count: Int, _ low: Double, _ high: Double) -> [Float] {
        (0..<count).map { _ in Float(low + (high - low) * random.unit()) }
    }

    /// Runs a loss that writes slot 1 of a 3-slot loss tensor and a gradient of `count` values.
    private static func runLoss(_ backend: any Backend, count: Int,
                                _ body: (_ gradient: Tensor, _ loss: Tensor) throws -> Void) throws -> [[Float]] {
        let (gradient, loss) = (try backend.zeros([count]), try backend.zeros([3]))
        try body(gradient, loss)
        return [[try backend.download(loss)[1]], try backend.download(gradient)]
    }

    // MARK: Losses

    private mutating func elementwiseLossChecks(count: Int) -> [TrainingOpCheck] {
        let x = values(count, -6, 6)
        let y = values(count, 0, 1)
        let w = values(count, 0, 2)
        let (xD, yD, wD) = (x.map(Double.init), y.map(Double.init), w.map(Double.init))
        func sigmoid(weighted: Bool) -> TrainingOpCheck {
            let expected = TrainingReference.sigmoidCrossEntropy(logits: xD, targets: yD, weights: weighted ? wD : nil)
            return TrainingOpCheck(
                name: "sigmoidCrossEntropy\(weighted ? " weighted" : "") n=\(count)", outputs: ["loss", "gradient"],
                run: { backend in
                    try SelfCheck.runLoss(backend, count: count) { gradient, loss in
                        try backend.sigmoidCrossEntropy(
                            logits: try backend.upload(x, shape: [count]),
                            targets: try backend.upload(y, shape: [count]),
                            weights: weighted ? try backend.upload(w, shape: [count]) : nil, gradient: gradient,
                            loss: loss, at: 1)
                    }
                },
                expected: [[expected.loss], expected.gradient])
        }
        let mse = TrainingReference.meanSquaredError(predictions: xD, targets: yD)
        return [
            sigmoid(weighted: false), sigmoid(weighted: true),
            TrainingOpCheck(
                name: "meanSquaredError n=\(count)", outputs: ["loss", "gradient"],
                run: { backend in
                    try SelfCheck.runLoss(backend, count: count) { gradient, loss in
                        try backend.meanSquaredError(
                            predictions: try backend.upload(x, shape: [count]),
                            targets: try backend.upload(y, shape: [count]), gradient: gradient, loss: loss, at: 1)
                    }
                },
                expected: [[mse.loss], mse.gradient]),
        ]
    }

    /// With and without per-row weights and the ignored index 0 (which some targets hit).
    private mutating func softmaxCrossEntropyChecks(rows: Int, classes: Int) -> [TrainingOpCheck] {
        let x = values(rows * classes, -8, 8)
        let targets = (0..<rows).map { _ in Int32(random.next(below: classes)) }
        let w = values(rows, 0, 2)
        var checks: [TrainingOpCheck] = []
        for ignoreIndex in [nil, 0] as [Int32?] {
            for weighted in [false, true] {
                let expected = TrainingReference.softmaxCrossEntropy(
                    logits: x.map(Double.init), classes: classes, targets: targets, ignoreIndex: ignoreIndex,
                    weights: weighted ? w.map(Double.init) : nil)
                let variant = (weighted ? " weighted" : "") + (ignoreIndex.map { " ignore=\($0)" } ?? "")
                checks.append(TrainingOpCheck(
                    name: "softmaxCrossEntropy\(variant) \(rows)x\(classes)", outputs: ["loss", "gradient"],
                    run: { backend in
                        try SelfCheck.runLoss(backend, count: rows * classes) { gradient, loss in
                            try backend.softmaxCrossEntropy(
                                logits: try backend.upload(x, shape: [rows, classes]),
                                targets: try backend.upload(targets, shape: [rows]), ignoreIndex: ignoreIndex,
                                weights: weighted ? try backend.upload(w, shape: [rows]) : nil,
                                gradient: gradient, loss: loss, at: 1)
                        }
                    },
                    expected: [[expected.loss], expected.gradient]))
            }
        }
        return checks
    }

    // MARK: Optimizer steps

    /// One step of each optimizer from a random state (a momentum buffer or moments that earlier
    /// steps would have left), so every term of each update is exercised in a single call.
    private mutating func optimizerChecks(count: Int) -> [TrainingOpCheck] {
        let p = values(count, -1, 1)
        let g = values(count, -1, 1)
        let buffer = values(count, -1, 1)
        let secondMoment = values(count, 0, 0.5)
        let (pD, gD) = (p.map(Double.init), g.map(Double.init))
        let shape: Shape = [count]
        var checks: [TrainingOpCheck] = []

        let sgdCases: [(String, SGDUpdate)] = [
            ("plain", SGDUpdate(learningRate: 0.1, weightDecay: 0.05, isFirstStep: false)),
            ("momentum first step", SGDUpdate(learningRate: 0.1, momentum: 0.9, isFirstStep: true)),
            ("momentum dampening", SGDUpdate(learningRate: 0.1, momentum: 0.9, dampening: 0.1, isFirstStep: false)),
            ("nesterov", SGDUpdate(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true,
                                   isFirstStep: false)),
        ]
        for (variant, h) in sgdCases {
            var parameter = pD
            var state: [Double]? = h.momentum != 0 ? buffer.map(Double.init) : nil
            TrainingReference.sgdStep(parameter: &parameter, gradient: gD, momentumBuffer: &state, hyperparameters: h)
            checks.append(TrainingOpCheck(
                name: "sgdStep \(variant) n=\(count)", outputs: state == nil ? ["parameter"] : ["parameter", "buffer"],
                run: { backend in
                    let parameter = try backend.upload(p, shape: shape)
                    let state = h.momentum != 0 ? try backend.upload(buffer, shape: shape) : nil
                    try backend.sgdStep(parameter: parameter, gradient: try backend.upload(g, shape: shape),
                                        momentumBuffer: state, hyperparameters: h)
                    return try ([parameter] + (state.map { [$0] } ?? [])).map { try backend.download($0) }
                },
                expected: [parameter] + (state.map { [$0] } ?? [])))
        }

        let adamCases: [(String, AdamUpdate)] = [
            ("step 1", AdamUpdate(learningRate: 0.01, step: 1)),
            ("weight decay step 4", AdamUpdate(learningRate: 0.01, beta1: 0.8, beta2: 0.99, epsilon: 1e-6,
                                               weightDecay: 0.1, step: 4)),
            ("W step 4", AdamUpdate(learningRate: 0.05, weightDecay: 0.1, decoupledWeightDecay: true, step: 4)),
        ]
        for (variant, h) in adamCases {
            // On step 1 the moments are still zero, as an optimizer's first step finds them.
            let (m, v) = h.step == 1 ? ([Float](repeating: 0, count: count), [Float](repeating: 0, count: count))
                : (buffer, secondMoment)
            var (parameter, firstMoment, secondMomentD) = (pD, m.map(Double.init), v.map(Double.init))
            TrainingReference.adamStep(parameter: &parameter, gradient: gD, firstMoment: &firstMoment,
                                       secondMoment: &secondMomentD, hyperparameters: h)
            checks.append(TrainingOpCheck(
                name: "adamStep \(variant) n=\(count)", outputs: ["parameter", "m", "v"],
                run: { backend in
                    let tensors = try [p, m, v].map { try backend.upload($0, shape: shape) }
                    try backend.adamStep(parameter: tensors[0], gradient: try backend.upload(g, shape: shape),
                                         firstMoment: tensors[1], secondMoment: tensors[2], hyperparameters: h)
                    return try tensors.map { try backend.download($0) }
                },
                expected: [parameter, firstMoment, secondMomentD]))
        }

        let rmsPropCases: [(String, RMSPropUpdate)] = [
            ("plain", RMSPropUpdate(learningRate: 0.01)),
            ("momentum weight decay", RMSPropUpdate(learningRate: 0.01, alpha: 0.9, weightDecay: 0.1, momentum: 0.9)),
        ]
        for (variant, h) in rmsPropCases {
            var (parameter, squareAverage) = (pD, secondMoment.map(Double.init))
            var state: [Double]? = h.momentum != 0 ? buffer.map(Double.init) : nil
            TrainingReference.rmsPropStep(parameter: &parameter, gradient: gD, squareAverage: &squareAverage,
                                          momentumBuffer: &state, hyperparameters: h)
            checks.append(TrainingOpCheck(
                name: "rmsPropStep \(variant) n=\(count)",
                outputs: ["parameter", "square average"] + (state == nil ? [] : ["buffer"]),
                run: { backend in
                    let tensors = try [p, secondMoment].map { try backend.upload($0, shape: shape) }
                    let state = h.momentum != 0 ? try backend.upload(buffer, shape: shape) : nil
                    try backend.rmsPropStep(parameter: tensors[0], gradient: try backend.upload(g, shape: shape),
                                            squareAverage: tensors[1], momentumBuffer: state, hyperparameters: h)
                    return try (tensors + (state.map { [$0] } ?? [])).map { try backend.download($0) }
                },
                expected: [parameter, squareAverage] + (state.map { [$0] } ?? [])))
        }
        return checks
    }

    // MARK: Clipping and constraints

    private mutating func clampCheck(count: Int) -> TrainingOpCheck {
        let x = values(count, -2, 2)
        return TrainingOpCheck(
            name: "clamp n=\(count)", outputs: ["values"],
            run: { backend in
                let tensor = try backend.upload(x, shape: [count])
                try backend.clamp(tensor, minimum: -0.75, maximum: 1.25)
                return [try backend.download(tensor)]
            },
            expected: [TrainingReference.clamp(x.map(Double.init), minimum: -0.75, maximum: 1.25)],
            tolerance: SelfCheck.exactTolerance)
    }

    /// Rows drawn at different scales, so that some norms lie above the bound and some below.
    private mutating func rowNormCheck(rows: Int, rowLength: Int) -> TrainingOpCheck {
        let maxNorm: Float = 1.5
        let x = (0..<rows).flatMap { row in values(rowLength, -1, 1).map { $0 * Float(1 + row % 3) } }
        return TrainingOpCheck(
            name: "constrainRowNorms \(rows)x\(rowLength)", outputs: ["values"],
            run: { backend in
                let tensor = try backend.upload(x, shape: [rows, rowLength])
                try backend.constrainRowNorms(tensor, rowLength: rowLength, maxNorm: maxNorm)
                return [try backend.download(tensor)]
            },
            expected: [TrainingReference.constrainRowNorms(x.map(Double.init), rowLength: rowLength,
                                                           maxNorm: Double(maxNorm))])
    }
}
