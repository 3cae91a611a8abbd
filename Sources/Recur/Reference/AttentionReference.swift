#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The plain float64 specification of the attention ops (``Backend/attentionForward(_:)`` and
/// ``Backend/attentionBackward(_:)``): one readable loop per equation of Backend/AttentionOps.swift,
/// with no BLAS, vectorisation or threads. Both backends are tested against it, and `recur verify`
/// (``SelfCheck/attentionOps()``) compares the selected device and the CPU backend with it.
///
/// Layouts are the ops': queries `[Ty, B, D]`, keys `[Tx, B, D]`, values `[Tx, B, Dv]` and the
/// context time-major; the weights `[B, Ty, Tx]`; all flat, row-major. Inconsistent sizes are a
/// programmer error here (the backends throw for them) and stop with a precondition.
public enum AttentionReference {
    /// The inputs of one attention op, in float64.
    public struct Operands: Sendable {
        /// How queries and keys are scored.
        public var score: AttentionScore
        /// Q, `[Ty, B, D]`.
        public var queries: [Double]
        /// K, `[Tx, B, D]`.
        public var keys: [Double]
        /// V, `[Tx, B, Dv]`.
        public var values: [Double]
        /// v, `[D]`, for `.additive`; ignored for `.dot`.
        public var scoreVector: [Double]
        /// Ty, Tx, B.
        public var targetSteps: Int
        public var sourceSteps: Int
        public var batch: Int
        /// Valid source steps per sequence, each in 1...Tx; nil for all Tx.
        public var sourceLengths: [Int]?
        /// Which end of the source axis holds the padding.
        public var padding: PaddingSide

        /// The inputs of one attention op; D and Dv follow from the counts.
        ///
        /// - Parameters:
        ///   - score: how queries and keys are scored.
        ///   - queries: Q, `[Ty, B, D]`.
        ///   - keys: K, `[Tx, B, D]`.
        ///   - values: V, `[Tx, B, Dv]`.
        ///   - scoreVector: v, `[D]`, for `.additive`; default empty.
        ///   - targetSteps: Ty.
        ///   - sourceSteps: Tx.
        ///   - batch: B.
        ///   - sourceLengths: valid source steps per sequence; nil (the default) for all Tx.
        ///   - padding: which end of the source axis holds the padding; default `.post`.
        public init(score: AttentionScore, queries: [Double], keys: [Double], values: [Double],
                    scoreVector: [Double] = [], targetSteps: Int, sourceSteps: Int, batch: Int,
                    sourceLengths: [Int]? = nil, padding: PaddingSide = .post) {
            self.score = score
            self.queries = queries
            self.keys = keys
            self.values = values
            self.scoreVector = scoreVector
            self.targetSteps = targetSteps
            self.sourceSteps = sourceSteps
            self.batch = batch
            self.sourceLengths = sourceLengths
            self.padding = padding
        }

        /// D.
        public var features: Int { queries.count / (targetSteps * batch) }
        /// Dv.
        public var valueFeatures: Int { values.count / (sourceSteps * batch) }

        /// Whether source step j of sequence b is valid.
        func isValid(_ j: Int, sequence b: Int) -> Bool {
            guard let length = sourceLengths?[b] else { return true }
            return padding == .post ? j < length : j >= sourceSteps - length
        }

        /// The score of query (i, b) against key (j, b) and, for the additive score, u = tanh(q + k).
        func score(_ i: Int, _ j: Int, _ b: Int) -> (s: Double, u: [Double]) {
            let d = features
            let q = queries[((i * batch + b) * d)..<((i * batch + b + 1) * d)]
            let k = keys[((j * batch + b) * d)..<((j * batch + b + 1) * d)]
            switch score {
            case .dot:
                return (zip(q, k).reduce(0) { $0 + $1.0 * $1.1 }, [])
            case .additive:
                let u = zip(q, k).map { tanh($0 + $1) }
                return (zip(scoreVector, u).reduce(0) { $0 + $1.0 * $1.1 }, u)
            }
        }

        func checkSizes() {
            let (ty, tx, b) = (targetSteps, sourceSteps, batch)
            precondition(ty >= 1 && tx >= 1 && b >= 1 && queries.count % (ty * b) == 0
                         && keys.count == tx * b * features && values.count % (tx * b) == 0
                         && (score == .dot || scoreVector.count == features)
                         && (sourceLengths?.count ?? b) == b
                         && (sourceLengths ?? []).allSatisfy { (1...tx).contains($0) },
                         "AttentionReference: inconsistent sizes or lengths")
        }
    }

    /// The forward op:
    ///
    ///     s[b, i, j] = q[i, b] · k[j, b]   or   vᵀ tanh(q[i, b] + k[j, b])
    ///     a[b, i, j] = exp(s[b, i, j]) / Σ_j' exp(s[b, i, j'])   over the valid j (0 elsewhere)
    ///     c[i, b]    = Σ_j a[b, i, j] V[j, b]
    ///
    /// - Parameter operands: the inputs.
    /// - Returns: the context C `[Ty, B, Dv]` and the weights A `[B, Ty, Tx]`.
    public static func forward(_ operands: Operands) -> (context: [Double], weights: [Double]) {
        operands.checkSizes()
        let (ty, tx, batch, dv) = (operands.targetSteps, operands.sourceSteps, operands.batch, operands.valueFeatures)
        var context = [Double](repeating: 0, count: ty * batch * dv)
        var weights = [Double](repeating: 0, count: batch * ty * tx)
        for b in 0..<batch {
            let valid = (0..<tx).filter { operands.isValid($0, sequence: b) }
            for i in 0..<ty {
                let scores = valid.map { operands.score(i, $0, b).s }
                let largest = scores.max()!
                let exponentials = scores.map { exp($0 - largest) }
                let total = exponentials.reduce(0, +)
                for (j, e) in zip(valid, exponentials) {
                    let a = e / total
                    weights[(b * ty + i) * tx + j] = a
                    for f in 0..<dv {
                        context[(i * batch + b) * dv + f] += a * operands.values[(j * batch + b) * dv + f]
                    }
                }
            }
        }
        return (context, weights)
    }

    /// The gradients of the backward op.
    public struct Gradients: Sendable {
        /// dL/dQ, `[Ty, B, D]`.
        public var queries: [Double]
        /// dL/dK, `[Tx, B, D]`, 0 at padded source steps.
        public var keys: [Double]
        /// dL/dV, `[Tx, B, Dv]`, 0 at padded source steps.
        public var values: [Double]
        /// dL/dv, `[D]`; empty for the dot score.
        public var scoreVector: [Double]
    }

    /// The backward op, from the forward's weights recomputed here:
    ///
    ///     dA[b, i, j] = dC[i, b] · V[j, b]
    ///     dV[j, b]    = Σ_i a[b, i, j] dC[i, b]
    ///     dS[b, i, j] = a[b, i, j] (dA[b, i, j] − Σ_j' a[b, i, j'] dA[b, i, j'])
    ///     dot:       dQ[i, b] = Σ_j dS K[j, b],   dK[j, b] = Σ_i dS Q[i, b]
    ///     additive:  g = dS v ⊙ (1 − u²), u = tanh(q[i, b] + k[j, b]):
    ///                dQ[i, b] = Σ_j g,   dK[j, b] = Σ_i g,   dv = Σ_b Σ_i Σ_j dS u
    ///
    /// - Parameters:
    ///   - operands: the inputs of the forward op.
    ///   - contextGradient: dL/dC, `[Ty, B, Dv]`.
    /// - Returns: dL/dQ, dL/dK, dL/dV and, for the additive score, dL/dv.
    public static func backward(_ operands: Operands, contextGradient: [Double]) -> Gradients {
        let weights = forward(operands).weights
        let (ty, tx, batch) = (operands.targetSteps, operands.sourceSteps, operands.batch)
        let (d, dv) = (operands.features, operands.valueFeatures)
        precondition(contextGradient.count == ty * batch * dv, "AttentionReference.backward: dC is not [Ty, B, Dv]")
        let additive = operands.score == .additive
        var gradients = Gradients(
            queries: [Double](repeating: 0, count: ty * batch * d), keys: [Double](repeating: 0, count: tx * batch * d),
            values: [Double](repeating: 0, count: tx * batch * dv),
            scoreVector: additive ? [Double](repeating: 0, count: d) : [])
        for b in 0..<batch {
            let valid = (0..<tx).filter { operands.isValid($0, sequence: b) }
            for i in 0..<ty {
                let dc = contextGradient[((i * batch + b) * dv)..<((i * batch + b + 1) * dv)]
                let a = valid.map { weights[(b * ty + i) * tx + $0] }
                let da = valid.map { j in
                    zip(dc, operands.values[((j * batch + b) * dv)..<((j * batch + b + 1) * dv)]).reduce(0) {
                        $0 + $1.0 * $1.1
                    }
                }
                let weighted = zip(a, da).reduce(0) { $0 + $1.0 * $1.1 }
                for (index, j) in valid.enumerated() {
                    for f in 0..<dv {
                        gradients.values[(j * batch + b) * dv + f] += a[index] * dc[dc.startIndex + f]
                    }
                    let ds = a[index] * (da[index] - weighted)
                    let u = operands.score(i, j, b).u
                    for f in 0..<d {
                        let (qIndex, kIndex) = ((i * batch + b) * d + f, (j * batch + b) * d + f)
                        if additive {
                            let g = ds * operands.scoreVector[f] * (1 - u[f] * u[f])
                            gradients.queries[qIndex] += g
                            gradients.keys[kIndex] += g
                            gradients.scoreVector[f] += ds * u[f]
                        } else {
                            gradients.queries[qIndex] += ds * operands.keys[kIndex]
                            gradients.keys[kIndex] += ds * operands.queries[qIndex]
                        }
                    }
                }
            }
        }
        return gradients
    }
}
