import Testing
@testable import Recur

// The attention ops and the `Attention` layer: the float64 reference against finite differences,
// both backends against the reference, OpenCL against the CPU backend, masking of padded source
// steps, argument checks, and the layer's parameters, initialisation and gradients.
//
// Shape legend: Ty target steps, Tx source steps, B batch, D query and key features, Dv value
// features; queries [Ty, B, D], keys [Tx, B, D], values [Tx, B, Dv], weights [B, Ty, Tx].

/// Seeded float32 inputs of one attention op, uploadable to any backend and widened for the
/// reference.
private struct AttentionCase {
    var score: AttentionScore
    var ty: Int, tx: Int, b: Int, d: Int, dv: Int
    var lengths: [Int]?
    var padding: PaddingSide
    var queries: [Float], keys: [Float], values: [Float], vector: [Float], contextGradient: [Float]

    init(_ score: AttentionScore, ty: Int = 3, tx: Int = 5, b: Int = 3, d: Int = 4, dv: Int = 6,
         lengths: [Int]? = [5, 2, 4], padding: PaddingSide = .post, seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        self.score = score
        (self.ty, self.tx, self.b, self.d, self.dv) = (ty, tx, b, d, dv)
        self.lengths = lengths
        self.padding = padding
        queries = random.floats(ty * b * d)
        keys = random.floats(tx * b * d)
        values = random.floats(tx * b * dv)
        vector = random.floats(d)
        contextGradient = random.floats(ty * b * dv)
    }

    var reference: AttentionReference.Operands {
        AttentionReference.Operands(
            score: score, queries: queries.map(Double.init), keys: keys.map(Double.init),
            values: values.map(Double.init), scoreVector: score == .additive ? vector.map(Double.init) : [],
            targetSteps: ty, sourceSteps: tx, batch: b, sourceLengths: lengths, padding: padding)
    }

    func isValid(_ j: Int, sequence s: Int) -> Bool {
        reference.isValid(j, sequence: s)
    }

    /// What both ops write on `backend`: context, weights, dQ, dK, dV, and dv (accumulated onto
    /// `vectorGradientStart`, additive only).
    func run(on backend: any Backend, vectorGradientStart: [Float]? = nil) throws -> [String: [Float]] {
        let operands = AttentionOperands(
            score: score, queries: try backend.upload(queries, shape: [ty, b, d]),
            keys: try backend.upload(keys, shape: [tx, b, d]), values: try backend.upload(values, shape: [tx, b, dv]),
            scoreVector: score == .additive ? try backend.upload(vector, shape: [d]) : nil,
            sourceLengths: try lengths.map { try backend.upload($0.map { Int32($0) }, shape: [b]) }, padding: padding)
        let context = try backend.uninitialized([ty, b, dv])
        let weights = try backend.uninitialized([b, ty, tx])
        try backend.attentionForward(AttentionForward(operands: operands, context: context, weights: weights))
        let dq = try backend.uninitialized([ty, b, d])
        let dk = try backend.uninitialized([tx, b, d])
        let dvalues = try backend.uninitialized([tx, b, dv])
        let dvector = score == .additive
            ? try backend.upload(vectorGradientStart ?? [Float](repeating: 0, count: d), shape: [d]) : nil
        try backend.attentionBackward(AttentionBackward(
            operands: operands, weights: weights, contextGradient: try backend.upload(contextGradient, shape: [ty, b, dv]),
            queriesGradient: dq, keysGradient: dk, valuesGradient: dvalues, scoreVectorGradient: dvector))
        var result = [
            "context": try backend.download(context), "weights": try backend.download(weights),
            "dQ": try backend.download(dq), "dK": try backend.download(dk), "dV": try backend.download(dvalues),
        ]
        if let dvector { result["dv"] = try backend.download(dvector) }
        return result
    }
}

/// Norm-wise relative error within `tolerance` (see `Comparison`), reported with the place.
func expectAttentionClose(_ actual: [Float], _ expected: [Double], tolerance: Double, _ what: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    let comparison = Comparison(what, actual: actual, expected: expected, tolerance: tolerance)
    #expect(comparison.passed, "\(comparison)", sourceLocation: sourceLocation)
}

/// Σ dC ⊙ C of the reference forward: the loss whose gradient the backward op computes.
private func referenceLoss(_ operands: AttentionReference.Operands, _ contextGradient: [Double]) -> Double {
    zip(AttentionReference.forward(operands).context, contextGradient).reduce(0) { $0 + $1.0 * $1.1 }
}

/// Central differences of `loss` along every element of `x`, with step h.
func attentionFiniteDifferences(_ x: [Double], h: Double = 1e-6, _ loss: ([Double]) -> Double) -> [Double] {
    x.indices.map { index in
        var (plus, minus) = (x, x)
        plus[index] += h
        minus[index] -= h
        return (loss(plus) - loss(minus)) / (2 * h)
    }
}

@Suite("Attention ops")
struct AttentionOpTests {
    /// The float64 reference's backward is the derivative of its forward.
    @Test(arguments: AttentionScore.allCases, PaddingSide.allCases)
    func referenceGradientsMatchFiniteDifferences(_ score: AttentionScore, _ padding: PaddingSide) {
        let example = AttentionCase(score, padding: padding, seed: 11)
        let operands = example.reference
        let dc = example.contextGradient.map(Double.init)
        let gradients = AttentionReference.backward(operands, contextGradient: dc)
        func check(_ analytic: [Double], _ what: String, _ input: [Double],
                   _ replace: (inout AttentionReference.Operands, [Double]) -> Void) {
            let numeric = attentionFiniteDifferences(input) { x in
                var changed = operands
                replace(&changed, x)
                return referenceLoss(changed, dc)
            }
            let error = zip(analytic, numeric).map { abs($0 - $1) }.max()!
            let scale = numeric.map(abs).max()!
            #expect(error <= 1e-7 * max(scale, 1), "\(score) \(padding) \(what): error \(error), scale \(scale)")
        }
        check(gradients.queries, "dQ", operands.queries) { $0.queries = $1 }
        check(gradients.keys, "dK", operands.keys) { $0.keys = $1 }
        check(gradients.values, "dV", operands.values) { $0.values = $1 }
        if score == .additive { check(gradients.scoreVector, "dv", operands.scoreVector) { $0.scoreVector = $1 } }
    }

    /// Every value both ops write, on each backend, against the float64 reference; dv accumulates.
    @Test(arguments: TestBackend.allCases, AttentionScore.allCases)
    func backendsMatchTheReference(_ which: TestBackend, _ score: AttentionScore) throws {
        guard let backend = try which.backend() else { return }
        for (lengths, padding) in [(nil, PaddingSide.post), ([5, 2, 4], .post), ([1, 5, 3], .pre)] as [([Int]?, PaddingSide)] {
            let example = AttentionCase(score, lengths: lengths, padding: padding, seed: 21)
            var startRandom = SeededGenerator(seed: 22)
            let start = startRandom.floats(example.d)
            let actual = try example.run(on: backend, vectorGradientStart: start)
            let forward = AttentionReference.forward(example.reference)
            let backward = AttentionReference.backward(example.reference,
                                                       contextGradient: example.contextGradient.map(Double.init))
            let what = "\(which) \(score) \(lengths.map { "\($0)" } ?? "full") \(padding)"
            expectAttentionClose(actual["context"]!, forward.context, tolerance: 1e-5, "\(what) context")
            expectAttentionClose(actual["weights"]!, forward.weights, tolerance: 1e-5, "\(what) weights")
            expectAttentionClose(actual["dQ"]!, backward.queries, tolerance: 1e-5, "\(what) dQ")
            expectAttentionClose(actual["dK"]!, backward.keys, tolerance: 1e-5, "\(what) dK")
            expectAttentionClose(actual["dV"]!, backward.values, tolerance: 1e-5, "\(what) dV")
            if score == .additive {
                let expected = zip(start, backward.scoreVector).map { Double($0) + $1 }
                expectAttentionClose(actual["dv"]!, expected, tolerance: 1e-5, "\(what) dv")
            }
        }
    }

    /// OpenCL against the CPU backend at sizes past the kernels' work-group width (Tx and Dv
    /// above 64), where every work-item loops over several source steps and features.
    @Test(arguments: AttentionScore.allCases)
    func openCLMatchesTheCPUBackend(_ score: AttentionScore) throws {
        guard let openCL = try TestBackend.openCL.backend() else { return }
        let example = AttentionCase(score, ty: 2, tx: 70, b: 3, d: 5, dv: 67, lengths: [70, 9, 66], padding: .pre,
                                    seed: 31)
        var startRandom = SeededGenerator(seed: 32)
        let start = startRandom.floats(example.d)
        let device = try example.run(on: openCL, vectorGradientStart: start)
        let cpu = try example.run(on: TestBackends.cpu, vectorGradientStart: start)
        for (name, values) in cpu {
            expectAttentionClose(device[name]!, values.map(Double.init), tolerance: 1e-5, "\(score) \(name)")
        }
    }

    /// Padded source steps get weight exactly 0 and gradients exactly 0, and their keys and
    /// values are never read: non-finite values there change nothing, to the bit.
    @Test(arguments: TestBackend.allCases, AttentionScore.allCases)
    func paddedSourceStepsAreMaskedOut(_ which: TestBackend, _ score: AttentionScore) throws {
        guard let backend = try which.backend() else { return }
        for padding in PaddingSide.allCases {
            let example = AttentionCase(score, lengths: [5, 2, 4], padding: padding, seed: 41)
            let clean = try example.run(on: backend)
            var poisoned = example
            for s in 0..<example.b {
                for j in 0..<example.tx where !example.isValid(j, sequence: s) {
                    for f in 0..<example.d { poisoned.keys[(j * example.b + s) * example.d + f] = .nan }
                    for f in 0..<example.dv { poisoned.values[(j * example.b + s) * example.dv + f] = .infinity }
                }
            }
            let changed = try poisoned.run(on: backend)
            for (name, values) in clean {
                #expect(changed[name]! == values, "\(which) \(score) \(padding) \(name) changed with the padding")
            }
            for s in 0..<example.b {
                for j in 0..<example.tx where !example.isValid(j, sequence: s) {
                    for i in 0..<example.ty {
                        #expect(clean["weights"]![(s * example.ty + i) * example.tx + j] == 0)
                    }
                    #expect((0..<example.d).allSatisfy { clean["dK"]![(j * example.b + s) * example.d + $0] == 0 })
                    #expect((0..<example.dv).allSatisfy { clean["dV"]![(j * example.b + s) * example.dv + $0] == 0 })
                }
                for i in 0..<example.ty {
                    let row = clean["weights"]![((s * example.ty + i) * example.tx)..<((s * example.ty + i + 1) * example.tx)]
                    #expect(abs(row.reduce(0, +) - 1) < 1e-6, "\(which) \(score) row (\(s), \(i)) sums to 1")
                }
            }
        }
    }

    /// Bad requests throw a `RecurError` before anything runs, on both backends.
    @Test(arguments: TestBackend.allCases)
    func badRequestsThrow(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        let (ty, tx, b, d, dv) = (2, 4, 3, 5, 6)
        var random = SeededGenerator(seed: 51)
        let q = try backend.upload(random.floats(ty * b * d), shape: [ty, b, d])
        let k = try backend.upload(random.floats(tx * b * d), shape: [tx, b, d])
        let v = try backend.upload(random.floats(tx * b * dv), shape: [tx, b, dv])
        let vector = try backend.upload(random.floats(d), shape: [d])
        let context = try backend.zeros([ty, b, dv])
        let weights = try backend.zeros([b, ty, tx])
        func forward(_ operands: AttentionOperands, context: Tensor = context, weights: Tensor = weights) throws {
            try backend.attentionForward(AttentionForward(operands: operands, context: context, weights: weights))
        }
        for lengths in [[4, 0, 2], [4, 5, 2], [-1, 4, 4]] {
            let tensor = try backend.upload(lengths.map { Int32($0) }, shape: [b])
            expectRecurError("\(which) lengths \(lengths)", matches: {
                if case let .invalidArgument(_, detail) = $0 { return detail.contains("source length") }
                return false
            }) {
                try forward(AttentionOperands(score: .dot, queries: q, keys: k, values: v, sourceLengths: tensor))
            }
        }
        let badRequests: [(String, () throws -> Void)] = [
            ("keys of another width", {
                try forward(AttentionOperands(score: .dot, queries: q, keys: try backend.zeros([tx, b, d + 1]), values: v))
            }),
            ("values of another length", {
                try forward(AttentionOperands(score: .dot, queries: q, keys: k, values: try backend.zeros([tx + 1, b, dv])))
            }),
            ("additive without v", { try forward(AttentionOperands(score: .additive, queries: q, keys: k, values: v)) }),
            ("dot with v", {
                try forward(AttentionOperands(score: .dot, queries: q, keys: k, values: v, scoreVector: vector))
            }),
            ("weights [B, Tx, Ty]", {
                try forward(AttentionOperands(score: .dot, queries: q, keys: k, values: v),
                            weights: try backend.zeros([b, tx, ty]))
            }),
            ("lengths for another batch", {
                let lengths = try backend.upload([Int32](repeating: 1, count: b + 1), shape: [b + 1])
                try forward(AttentionOperands(score: .dot, queries: q, keys: k, values: v, sourceLengths: lengths))
            }),
            ("context written over the values", {
                let values = try backend.zeros([ty, b, dv])
                let keys = try backend.zeros([ty, b, d])
                try forward(AttentionOperands(score: .dot, queries: q, keys: keys, values: values), context: values,
                            weights: try backend.zeros([b, ty, ty]))
            }),
            ("dQ shaped like the keys", {
                try backend.attentionBackward(AttentionBackward(
                    operands: AttentionOperands(score: .dot, queries: q, keys: k, values: v), weights: weights,
                    contextGradient: context, queriesGradient: try backend.zeros([tx, b, d]),
                    keysGradient: try backend.zeros([tx, b, d]), valuesGradient: try backend.zeros([tx, b, dv])))
            }),
            ("dK written into dV", {
                let shared = try backend.zeros([tx, b, d])
                let values = try backend.zeros([tx, b, d])
                try backend.attentionBackward(AttentionBackward(
                    operands: AttentionOperands(score: .dot, queries: q, keys: k, values: values), weights: weights,
                    contextGradient: try backend.zeros([ty, b, d]), queriesGradient: try backend.zeros([ty, b, d]),
                    keysGradient: shared, valuesGradient: shared))
            }),
        ]
        for (what, body) in badRequests {
            expectRecurError("\(which) \(what)", matches: { _ in true }, body)
        }
    }

    /// `recur verify`'s attention checks pass on both backends, and an OpenCL run checks the CPU
    /// backend against the same reference too.
    @Test(arguments: TestBackend.allCases)
    func selfCheckPasses(_ which: TestBackend) throws {
        guard let backend = try which.backend() else { return }
        var check = SelfCheck(backend: backend, seed: 61)
        let results = try check.attentionOps()
        for result in results where !result.passed {
            Issue.record("\(which) \(result)")
        }
        #expect(results.contains { $0.name.hasPrefix("attention additive") && $0.name.hasSuffix("dv [\(backend.kind.rawValue)]") })
        let kinds = Set(results.compactMap { $0.name.split(separator: "[").last?.dropLast() }.map(String.init))
        #expect(kinds == (which == .cpu ? ["cpu"] : ["opencl", "cpu"]), "\(which) \(kinds)")
    }
}
