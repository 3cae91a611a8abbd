// Timings of the attention ops: what `recur bench --attention` measures.
//
// Shape legend: Ty target steps, Tx source steps, B batch, D query and key features, Dv value
// features.

extension Benchmark {
    /// Times the attention ops alone (no projections) on seeded random queries, keys and values,
    /// every source step valid.
    ///
    /// GFLOP/s count the multiply-adds of the scores and the context, 2 B Ty Tx (D + Dv), for a
    /// forward pass (the additive score's tanh counted as one), and 3x that with the backward
    /// pass (dA and dV, dQ and dK).
    /// - Parameters:
    ///   - score: the score to time.
    ///   - batch: B.
    ///   - targetSteps: Ty.
    ///   - sourceSteps: Tx.
    ///   - features: D.
    ///   - valueFeatures: Dv.
    ///   - pass: `.forward` or `.forwardBackward` (a train-step is timed as forward+backward).
    /// - Returns: the measurement, named with the score and the sizes.
    public func measureAttention(score: AttentionScore, batch: Int, targetSteps: Int, sourceSteps: Int,
                                 features: Int, valueFeatures: Int, pass: BenchmarkPass) throws
        -> BenchmarkMeasurement
    {
        let (b, ty, tx, d, dv) = (batch, targetSteps, sourceSteps, features, valueFeatures)
        var random = SeededRandom(seed: 13)
        func upload(_ shape: Shape) throws -> Tensor {
            try backend.upload((0..<shape.count).map { _ in random.uniform(bound: 1) }, shape: shape)
        }
        let operands = AttentionOperands(
            score: score, queries: try upload([ty, b, d]), keys: try upload([tx, b, d]), values: try upload([tx, b, dv]),
            scoreVector: score == .additive ? try upload([d]) : nil)
        let (context, weights) = (try backend.uninitialized([ty, b, dv]), try backend.uninitialized([b, ty, tx]))
        let forward = AttentionForward(operands: operands, context: context, weights: weights)
        let backward = AttentionBackward(
            operands: operands, weights: weights, contextGradient: try upload([ty, b, dv]),
            queriesGradient: try backend.uninitialized([ty, b, d]), keysGradient: try backend.uninitialized([tx, b, d]),
            valuesGradient: try backend.uninitialized([tx, b, dv]),
            scoreVectorGradient: score == .additive ? try backend.zeros([d]) : nil)
        let withBackward = pass != .forward
        let flops = 2 * Double(b * ty * tx) * Double(d + dv) * (withBackward ? 3 : 1)
        let name = "attention \(score.rawValue) B=\(b) Ty=\(ty) Tx=\(tx) D=\(d) Dv=\(dv)"
        return try time(name: name, configuration: nil, pass: withBackward ? BenchmarkPass.forwardBackward.rawValue
                        : BenchmarkPass.forward.rawValue, flops: flops) {
            try backend.attentionForward(forward)
            if withBackward { try backend.attentionBackward(backward) }
        }
    }
}
