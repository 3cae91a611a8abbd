import Testing
@testable import Recur

// Gradient clipping (global norm, per parameter, by value, AutoClip), the non-finite policies,
// the max-norm weight constraint and gradient accumulation, on every backend; the clamp and
// row-norm ops OpenCL against CPU at odd sizes.

private let sizes = [1, 7, 257]

/// Parameters with the given gradients (values are zeros: clipping only reads gradients).
private func parameters(_ gradients: [(String, [Float], Shape)], on backend: any Backend) throws -> [NamedParameter] {
    try gradients.map { name, values, shape in
        NamedParameter(name: name, value: try backend.zeros(shape), gradient: try backend.upload(values, shape: shape))
    }
}

@Suite("Training gradient clipping")
struct TrainingClippingTests {
    // MARK: Global norm

    // Expected values from PyTorch 2.15.0 (CPU, float32), tools/training_reference.py:
    //   total = torch.nn.utils.clip_grad_norm_([a, b], max_norm) with a.grad = [0.3, -0.1, 0.8, -1.2, 0.05],
    //   b.grad = [[1.0, -2.0, 0.5], [0.0, 0.25, -0.75]]; max_norm 1 clips, 100 does not.
    @Test(arguments: TestBackend.allCases)
    func globalNormClippingMatchesPyTorch(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let gradients: [(String, [Float], Shape)] = [
            ("a", [0.3, -0.1, 0.8, -1.2, 0.05], [5]), ("b", [1.0, -2.0, 0.5, 0.0, 0.25, -0.75], [2, 3]),
        ]
        let clipped = try parameters(gradients, on: backend)
        let report = try GradientClipper(.globalNorm(maxNorm: 1)).clip(clipped, step: 0)
        assertClose([report.globalNorm], [2.838573694229126], relativeTolerance: 1e-6, "\(which) total norm")
        assertClose(try backend.download(clipped[0].gradient), [
            0.10568685084581375, -0.035228949040174484, 0.2818315923213959, -0.422747403383255, 0.017614474520087242,
        ], relativeTolerance: 1e-6, "\(which) clipped a")
        assertClose(try backend.download(clipped[1].gradient), [
            0.35228949785232544, -0.7045789957046509, 0.17614474892616272, 0.0, 0.08807237446308136,
            -0.2642171382904053,
        ], relativeTolerance: 1e-6, "\(which) clipped b")
        #expect(report.threshold == 1 && report.scale < 1 && report.isFinite)

        let untouched = try parameters(gradients, on: backend)
        let loose = try GradientClipper(.globalNorm(maxNorm: 100)).clip(untouched, step: 0)
        assertClose([loose.globalNorm], [2.838573694229126], relativeTolerance: 1e-6, "\(which) total norm, no clip")
        #expect(loose.scale == 1)
        #expect(try backend.download(untouched[0].gradient) == gradients[0].1)
        #expect(try backend.download(untouched[1].gradient) == gradients[1].1)
    }

    /// Many parameters at odd sizes: the reported norms are float64 norms of the gradients, and
    /// clipping leaves a global norm of maxNorm.
    @Test(arguments: TestBackend.allCases)
    func globalNormOverManyParametersAtOddSizes(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 41)
        let values = [sizes, sizes.reversed()].joined().map { random.floats($0) }
        let clipped = try parameters(values.enumerated().map { ("p\($0)", $1, [$1.count]) }, on: backend)
        let report = try GradientClipper(.globalNorm(maxNorm: 0.5)).clip(clipped, step: 3)
        let norms = values.map { $0.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
        assertClose(report.parameterNorms, norms.map(Float.init), relativeTolerance: 1e-5, "\(which) parameter norms")
        let total = norms.reduce(0) { $0 + $1 * $1 }.squareRoot()
        assertClose([report.globalNorm], [Float(total)], relativeTolerance: 1e-5, "\(which) global norm")
        let after = try clipped.map { try backend.download($0.gradient) }.joined()
        let normAfter = after.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(normAfter - 0.5) < 1e-5, "\(which): norm after clipping \(normAfter)")
    }

    // MARK: Per parameter and by value

    @Test(arguments: TestBackend.allCases)
    func parameterNormClippingScalesOnlyTheLargeGradients(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let gradients: [(String, [Float], Shape)] = [("large", [3, 4], [2]), ("small", [0.3, 0.4], [2])]
        let clipped = try parameters(gradients, on: backend)
        let report = try GradientClipper(.parameterNorm(maxNorm: 1)).clip(clipped, step: 0)
        assertClose(report.parameterNorms, [5, 0.5], relativeTolerance: 1e-6, "\(which) norms before")
        assertClose(try backend.download(clipped[0].gradient), [0.6, 0.8], relativeTolerance: 1e-5, "\(which) large")
        #expect(try backend.download(clipped[1].gradient) == [0.3, 0.4])
    }

    @Test(arguments: TestBackend.allCases)
    func valueClippingClampsEveryElement(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let clipped = try parameters([("w", [-3, -0.5, 0, 0.25, 0.5, 7], [6])], on: backend)
        try GradientClipper(.value(limit: 0.5)).clip(clipped, step: 0)
        #expect(try backend.download(clipped[0].gradient) == [-0.5, -0.5, 0, 0.25, 0.5, 0.5])
    }

    // MARK: AutoClip

    // Expected thresholds and clipped gradients from NumPy 2.4.6 and PyTorch 2.15.0,
    // tools/training_reference.py: threshold_k = np.percentile(norms[:k + 1], 25), then
    // torch.nn.utils.clip_grad_norm_([p], threshold_k) with p.grad = [0.6 n_k, 0.8 n_k].
    @Test(arguments: TestBackend.allCases)
    func autoClipClipsToAPercentileOfTheNormHistory(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let clipper = try GradientClipper(.adaptive(percentile: 25))
        let norms: [Float] = [3, 1, 4, 1.5, 5]
        let thresholds: [Float] = [3.0, 1.5, 2.0, 1.375, 1.5]
        let clippedByPyTorch: [[Float]] = [
            [1.7999993562698364, 2.3999991416931152], [0.6000000238418579, 0.800000011920929],
            [1.1999998092651367, 1.5999996662139893], [0.8249995112419128, 1.0999994277954102],
            [0.8999998569488525, 1.1999998092651367],
        ]
        for (k, norm) in norms.enumerated() {
            let clipped = try parameters([("w", [0.6 * norm, 0.8 * norm], [2])], on: backend)
            let report = try clipper.clip(clipped, step: k)
            assertClose([report.threshold ?? -1], [thresholds[k]], relativeTolerance: 1e-6, "\(which) threshold \(k)")
            assertClose([report.globalNorm], [norm], relativeTolerance: 1e-6, "\(which) norm \(k)")
            assertClose(try backend.download(clipped[0].gradient), clippedByPyTorch[k], relativeTolerance: 1e-6,
                        "\(which) clipped gradient \(k)")
        }
        assertClose(clipper.normHistory, norms, relativeTolerance: 1e-6, "\(which) history")
    }

    @Test func percentileInterpolatesLikeNumPy() {
        // np.percentile([5, 1, 4, 2], p) for p = 0, 10, 50, 90, 100.
        let values: [Float] = [5, 1, 4, 2]
        let expected: [Float] = [1.0, 1.3, 3.0, 4.7, 5.0]
        let actual = [0.0, 10, 50, 90, 100].map { GradientClipper.percentile(values, $0) }
        assertClose(actual, expected, relativeTolerance: 1e-6, "percentiles")
        #expect(GradientClipper.percentile([2.5], 10) == 2.5)
    }

    // MARK: Non-finite gradients

    @Test(arguments: TestBackend.allCases)
    func aNonFiniteGradientThrowsOrSkipsNamingTheParameter(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let gradients: [(String, [Float], Shape)] = [
            ("0.weight", [1, 2], [2]), ("1.bias", [1, .nan], [2]), ("2.weight", [.infinity, 0], [2]),
        ]
        expectRecurError("\(which) throw policy", matches: { error in
            guard case .nonFinite(_, let detail) = error else { return false }
            return detail.contains("step 17") && detail.contains("'1.bias'")
        }) {
            try GradientClipper(.globalNorm(maxNorm: 1)).clip(try parameters(gradients, on: backend), step: 17)
        }
        let skipped = try parameters(gradients, on: backend)
        let report = try GradientClipper(.adaptive(percentile: 10), nonFinitePolicy: .skipStep).clip(skipped, step: 2)
        #expect(!report.isFinite && report.nonFiniteParameter == "1.bias")
        #expect(try backend.download(skipped[0].gradient) == [1, 2], "gradients must be left alone")
    }

    // MARK: Max-norm constraint

    @Test(arguments: TestBackend.allCases)
    func maxNormRescalesRowsAboveTheBound(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let dense = try Dense(inputSize: 2, outputSize: 3, seed: 1, backend: backend)
        try trainingSetValues(dense.weight, [3, 4, 0.3, 0.4, 0, 0])  // row norms 5, 0.5, 0
        try MaxNormConstraint(maxNorm: 2).apply(to: dense.parameters) { $0 == "weight" }
        let rows = try backend.download(dense.weight)
        assertClose(rows, [1.2, 1.6, 0.3, 0.4, 0, 0], relativeTolerance: 1e-6, absoluteTolerance: 1e-7,
                    "\(which) max-norm rows")
        #expect(try MaxNormConstraint().maxNorm == 2)
    }

    // MARK: Accumulation

    /// Three micro-batches summed then scaled by 1/3 give the gradient of the mean loss over the
    /// whole batch (equal micro-batches, mean losses).
    @Test(arguments: TestBackend.allCases)
    func accumulatingMicroBatchesAveragesTheirGradients(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var random = SeededGenerator(seed: 42)
        let (rows, inputSize) = (6, 4)
        let x = random.floats(rows * inputSize)
        let y = random.floats(rows)
        func gradients(of dense: Dense, batches: [Range<Int>], accumulation: inout GradientAccumulation) throws
            -> (due: [Bool], values: [[Float]])
        {
            var due: [Bool] = []
            for batch in batches {
                let input = try backend.upload(Array(x[(batch.lowerBound * inputSize)..<(batch.upperBound * inputSize)]),
                                               shape: [batch.count, inputSize])
                let output = try dense.forward(input)
                let gradient = try Loss.meanSquaredError.evaluate(
                    output: output, targets: try backend.upload(Array(y[batch]), shape: [batch.count, 1]),
                    loss: try backend.zeros([1]), at: 0)
                _ = try dense.backward(gradient)
                due.append(try accumulation.add(dense.parameters))
            }
            return (due, try dense.parameters.map { try backend.download($0.gradient) })
        }
        var three = try GradientAccumulation(microBatchCount: 3)
        let accumulated = try gradients(of: try Dense(inputSize: inputSize, outputSize: 1, seed: 5, backend: backend),
                                        batches: [0..<2, 2..<4, 4..<6], accumulation: &three)
        #expect(accumulated.due == [false, false, true])
        var one = try GradientAccumulation(microBatchCount: 1)
        let whole = try gradients(of: try Dense(inputSize: inputSize, outputSize: 1, seed: 5, backend: backend),
                                  batches: [0..<6], accumulation: &one)
        #expect(whole.due == [true])
        for (a, b) in zip(accumulated.values, whole.values) {
            assertClose(a, b, relativeTolerance: 1e-5, absoluteTolerance: 1e-7, "\(which) accumulated vs whole batch")
        }
    }

    // MARK: OpenCL against CPU

    @Test func openCLMatchesCPUOnClampAndRowNorms() throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        var random = SeededGenerator(seed: 43)
        for size in sizes {
            var values = random.values(size, -3, 3)
            values[size / 2] = .nan
            var results: [[Float]] = []
            for backend in [cpu, openCL] as [any Backend] {
                let x = try backend.upload(values, shape: [size])
                try backend.clamp(x, minimum: -1, maximum: 0.5)
                results.append(try backend.download(x))
            }
            #expect(results[0].map(\.bitPattern) == results[1].map(\.bitPattern), "clamp n=\(size)")
            #expect(results[0][size / 2].isNaN, "NaN passes through the clamp")
            for columns in sizes {
                let weights = random.values(size * columns, -2, 2)
                var constrained: [[Float]] = []
                for backend in [cpu, openCL] as [any Backend] {
                    let x = try backend.upload(weights, shape: [size, columns])
                    try backend.constrainRowNorms(x, rowLength: columns, maxNorm: 1.5)
                    constrained.append(try backend.download(x))
                }
                assertClose(constrained[1], constrained[0], relativeTolerance: 1e-5, absoluteTolerance: 1e-7,
                            "OpenCL vs CPU row norms \(size)x\(columns)")
                for r in 0..<size {
                    let row = constrained[0][(r * columns)..<((r + 1) * columns)]
                    let norm = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                    #expect(norm <= 1.5 + 1e-5, "row \(r) of \(size)x\(columns) has norm \(norm)")
                }
            }
        }
    }
}
