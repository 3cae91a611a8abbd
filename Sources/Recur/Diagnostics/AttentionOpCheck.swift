// `recur verify`'s check of the attention ops against the float64 specification in
// `AttentionReference`: the selected device and the CPU backend are each held to the same
// reference values, as the training ops are (TrainingOpCheck.swift).

extension SelfCheck {
    /// The attention ops, forward and backward, for both scores, with source lengths padded on
    /// either side and without them, at odd sizes (one with more source steps and value features
    /// than a device work-group has work-items), each compared with the float64
    /// ``AttentionReference`` on the checked backend and, where that is not the CPU backend, on
    /// the CPU backend too. The score vector's gradient starts from nonzero values, so the check
    /// sees that it accumulates.
    public mutating func attentionOps() throws -> [Comparison] {
        try compareOnBothBackends(attentionChecks())
    }

    /// The checks `attentionOps()` runs, with their inputs drawn from this check's generator.
    mutating func attentionChecks() -> [TrainingOpCheck] {
        var checks: [TrainingOpCheck] = []
        for score in AttentionScore.allCases {
            checks.append(attentionCheck(score, targetSteps: 3, sourceSteps: 5, batch: 3, features: 7,
                                         valueFeatures: 5, lengths: nil, padding: .post))
            checks.append(attentionCheck(score, targetSteps: 3, sourceSteps: 5, batch: 3, features: 7,
                                         valueFeatures: 5, lengths: [5, 2, 4], padding: .post))
            checks.append(attentionCheck(score, targetSteps: 2, sourceSteps: 67, batch: 2, features: 3,
                                         valueFeatures: 65, lengths: [40, 67], padding: .pre))
        }
        return checks
    }

    /// One forward and backward request on seeded inputs (queries and keys in [-1, 1), so the
    /// additive score's tanh is not saturated) and the reference of everything they write.
    private mutating func attentionCheck(_ score: AttentionScore, targetSteps ty: Int, sourceSteps tx: Int, batch b: Int,
                                         features d: Int, valueFeatures dv: Int, lengths: [Int]?,
                                         padding: PaddingSide) -> TrainingOpCheck {
        func draw(_ count: Int) -> [Float] { (0..<count).map { _ in random.uniform(bound: 1) } }
        let (q, k, v, vector, dc) = (draw(ty * b * d), draw(tx * b * d), draw(tx * b * dv), draw(d), draw(ty * b * dv))
        let vectorGradient = draw(d)
        let reference = AttentionReference.Operands(
            score: score, queries: q.map(Double.init), keys: k.map(Double.init), values: v.map(Double.init),
            scoreVector: score == .additive ? vector.map(Double.init) : [], targetSteps: ty, sourceSteps: tx, batch: b,
            sourceLengths: lengths, padding: padding)
        let forward = AttentionReference.forward(reference)
        let backward = AttentionReference.backward(reference, contextGradient: dc.map(Double.init))
        var expected = [forward.context, forward.weights, backward.queries, backward.keys, backward.values]
        var outputs = ["context", "weights", "dQ", "dK", "dV"]
        if score == .additive {
            expected.append(zip(vectorGradient, backward.scoreVector).map { Double($0) + $1 })
            outputs.append("dv")
        }
        let lengthsName = lengths.map { " lengths \($0) \(padding.rawValue)" } ?? ""
        return TrainingOpCheck(
            name: "attention \(score.rawValue) Ty=\(ty) Tx=\(tx) B=\(b) D=\(d) Dv=\(dv)\(lengthsName)", outputs: outputs,
            run: { backend in
                let operands = AttentionOperands(
                    score: score, queries: try backend.upload(q, shape: [ty, b, d]),
                    keys: try backend.upload(k, shape: [tx, b, d]), values: try backend.upload(v, shape: [tx, b, dv]),
                    scoreVector: score == .additive ? try backend.upload(vector, shape: [d]) : nil,
                    sourceLengths: try lengths.map { try backend.upload($0.map { Int32($0) }, shape: [b]) },
                    padding: padding)
                let (context, weights) = (try backend.zeros([ty, b, dv]), try backend.zeros([b, ty, tx]))
                try backend.attentionForward(AttentionForward(operands: operands, context: context, weights: weights))
                let gradients = try [[ty, b, d], [tx, b, d], [tx, b, dv]].map { try backend.zeros(Shape($0)) }
                let scoreVectorGradient = score == .additive ? try backend.upload(vectorGradient, shape: [d]) : nil
                try backend.attentionBackward(AttentionBackward(
                    operands: operands, weights: weights, contextGradient: try backend.upload(dc, shape: [ty, b, dv]),
                    queriesGradient: gradients[0], keysGradient: gradients[1], valuesGradient: gradients[2],
                    scoreVectorGradient: scoreVectorGradient))
                let written = [context, weights] + gradients + [scoreVectorGradient].compactMap { $0 }
                return try written.map { try backend.download($0) }
            },
            expected: expected)
    }
}
