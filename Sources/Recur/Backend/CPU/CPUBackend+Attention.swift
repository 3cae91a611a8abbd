import CBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The attention ops on the CPU: each sequence b on its own, its batch row of every time-major
// tensor read in place as a strided matrix (rows B * F apart), so the products are OpenBLAS GEMMs
// over the valid source range without a copy; the sequences are split across the cores. The
// equations are in Backend/AttentionOps.swift; `AttentionReference` is the float64 specification.
//
// Shape legend: Ty target steps, Tx source steps, B batch, D query and key features, Dv value
// features; r = first ..< first + n, the valid source steps of sequence b.

extension CPUBackend {
    public func attentionForward(_ request: AttentionForward) throws {
        let size = try checkAttentionForward(request)
        let pass = try CPUAttention(request.operands, size, backend: self, operation: "attentionForward")
        let (context, weights) = (request.context.hostFloats, request.weights.hostFloats)
        pass.forEachSequence { b in
            withSubnormalsFlushed { pass.forward(b, context: context, weights: weights) }
        }
    }

    public func attentionBackward(_ request: AttentionBackward) throws {
        let size = try checkAttentionBackward(request)
        let pass = try CPUAttention(request.operands, size, backend: self, operation: "attentionBackward")
        let (ty, tx, b, d) = (size.targetSteps, size.sourceSteps, size.batch, size.features)
        let scoreGradients = try uninitialized([b, ty, tx])  // dS [B, Ty, Tx]
        // dv's share of each sequence, summed over the sequences in order afterwards, so the result
        // does not depend on how the batch was split.
        let vectorGradients = request.scoreVectorGradient == nil ? nil : try uninitialized([b, d])  // [B, D]
        let gradients = CPUAttention.Gradients(
            weights: request.weights.hostFloats, context: request.contextGradient.hostFloats,
            queries: request.queriesGradient.hostFloats, keys: request.keysGradient.hostFloats,
            values: request.valuesGradient.hostFloats, scores: scoreGradients.hostFloats,
            scoreVector: vectorGradients?.hostFloats)
        pass.forEachSequence { b in
            withSubnormalsFlushed { pass.backward(b, gradients) }
        }
        if let total = request.scoreVectorGradient?.hostFloats, let shares = vectorGradients?.hostFloats {
            for s in 0..<b {
                for k in 0..<d { total[k] += shares[s * d + k] }
            }
        }
    }
}

/// One validated attention request on host memory, and the per-sequence work of both ops.
private struct CPUAttention: @unchecked Sendable {
    /// The tensors the backward op writes, and what it reads beside the operands.
    struct Gradients: @unchecked Sendable {
        /// A [B, Ty, Tx] and dC [Ty, B, Dv], read.
        let weights: UnsafeMutablePointer<Float>
        let context: UnsafeMutablePointer<Float>
        /// dQ [Ty, B, D], dK [Tx, B, D], dV [Tx, B, Dv], overwritten.
        let queries: UnsafeMutablePointer<Float>
        let keys: UnsafeMutablePointer<Float>
        let values: UnsafeMutablePointer<Float>
        /// dS [B, Ty, Tx], scratch.
        let scores: UnsafeMutablePointer<Float>
        /// Each sequence's share of dv, [B, D], or nil for the dot score.
        let scoreVector: UnsafeMutablePointer<Float>?
    }

    let score: AttentionScore
    let q: UnsafeMutablePointer<Float>  // [Ty, B, D]
    let k: UnsafeMutablePointer<Float>  // [Tx, B, D]
    let v: UnsafeMutablePointer<Float>  // [Tx, B, Dv]
    let scoreVector: UnsafeMutablePointer<Float>?  // [D]
    /// Ty, Tx, B, D, Dv.
    let ty: Int
    let tx: Int
    let batch: Int
    let d: Int
    let dv: Int
    /// The valid source steps of each sequence.
    let ranges: [AttentionSourceRange]
    let splitMinimumWork: Int
    let partLimit: Int

    init(_ operands: AttentionOperands, _ size: AttentionDimensions, backend: CPUBackend, operation: String) throws {
        score = operands.score
        (q, k, v) = (operands.queries.hostFloats, operands.keys.hostFloats, operands.values.hostFloats)
        scoreVector = operands.scoreVector?.hostFloats
        (ty, tx, batch, d, dv) = (size.targetSteps, size.sourceSteps, size.batch, size.features, size.valueFeatures)
        if let lengths = operands.sourceLengths {
            let values = UnsafeBufferPointer(start: lengths.hostInt32s, count: lengths.count)
            try backend.checkAttentionLengths(operation, values, sourceSteps: tx)
            ranges = values.map { AttentionSourceRange(length: Int($0), steps: size.sourceSteps, padding: operands.padding) }
        } else {
            ranges = Array(repeating: AttentionSourceRange(length: tx, steps: tx, padding: .post), count: batch)
        }
        splitMinimumWork = backend.scanSplitMinimumWork
        partLimit = backend.scanPartLimit
    }

    /// Runs `body(b)` for every sequence, the batch split across the cores once the products'
    /// multiply-adds (Ty Tx (D + Dv) B) reach the backend's split threshold. Each sequence writes
    /// only its own rows, so the parts share nothing they write.
    func forEachSequence(_ body: (Int) -> Void) {
        let work = ty * tx * (d + dv) * batch
        let parts = work >= splitMinimumWork ? min(partLimit, batch) : 1
        withoutActuallyEscaping(body) { body in
            let sequences = AttentionSequences(body: body)
            CPUWorkerPool.shared.run(parts: parts) { part in
                for b in (batch * part / parts)..<(batch * (part + 1) / parts) { sequences.body(b) }
            }
        }
    }

    // MARK: Forward

    /// Sequence b: A[b] (scores, then the softmax of each row in place) and C[:, b].
    func forward(_ b: Int, context: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>) {
        let range = ranges[b]
        let a = weights + b * ty * tx  // A[b] [Ty, Tx]
        for i in 0..<ty { (a + i * tx).update(repeating: 0, count: tx) }
        switch score {
        case .dot:
            // S[b][:, r] = Q[:, b] K[r, b]ᵀ: [Ty, D] [D, n].
            gemm(.noTrans, .trans, ty, range.count, d, q + b * d, batch * d, k + (range.first * batch + b) * d,
                 batch * d, 0, a + range.first, tx)
        case .additive:
            let vector = scoreVector!
            for i in 0..<ty {
                let query = q + (i * batch + b) * d
                for j in range.first..<(range.first + range.count) {
                    a[i * tx + j] = additiveScore(query, k + (j * batch + b) * d, vector)
                }
            }
        }
        for i in 0..<ty { softmax(a + i * tx + range.first, count: range.count) }
        // C[:, b] = A[b][:, r] V[r, b]: [Ty, n] [n, Dv].
        gemm(.noTrans, .noTrans, ty, dv, range.count, a + range.first, tx, v + (range.first * batch + b) * dv,
             batch * dv, 0, context + b * dv, batch * dv)
    }

    /// s = Σ_d v_d tanh(q_d + k_d), lanes over d.
    @inline(__always)
    private func additiveScore(_ query: UnsafeMutablePointer<Float>, _ key: UnsafeMutablePointer<Float>,
                               _ vector: UnsafeMutablePointer<Float>) -> Float {
        // Full chunks, then the short one: a chunk body that captured `total` was not inlined, and
        // its exclusivity checks cost more than the tanh.
        let width = CPULanes.scalarCount
        var total = CPULanes()
        var start = 0
        while start + width <= d {
            total += Self.scoreTerms(query + start, key + start, vector + start, width)
            start += width
        }
        if start < d { total += Self.scoreTerms(query + start, key + start, vector + start, d - start) }
        return total.sum()
    }

    /// v ⊙ tanh(q + k) on `count` lanes (the lanes past it load as 0 and give 0).
    @inline(__always)
    private static func scoreTerms(_ query: UnsafeMutablePointer<Float>, _ key: UnsafeMutablePointer<Float>,
                                   _ vector: UnsafeMutablePointer<Float>, _ count: Int) -> CPULanes {
        vector.loadLanes(count) * CPUMath.tanh(query.loadLanes(count) + key.loadLanes(count))
    }

    /// x = softmax(x) in place, after subtracting the largest x so every exponent is ≤ 0.
    private func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var largest = -Float.infinity
        for j in 0..<count { largest = max(largest, x[j]) }
        var total: Float = 0
        for j in 0..<count {
            x[j] = expf(x[j] - largest)
            total += x[j]
        }
        for j in 0..<count { x[j] /= total }
    }

    // MARK: Backward

    /// Sequence b: dS[b], dQ[:, b], dK[:, b], dV[:, b] and its share of dv.
    func backward(_ b: Int, _ out: Gradients) {
        let range = ranges[b]
        let (first, n) = (range.first, range.count)
        let a = out.weights + b * ty * tx  // A[b] [Ty, Tx]
        let ds = out.scores + b * ty * tx  // dS[b] [Ty, Tx], only the columns r are used
        let dc = out.context + b * dv  // dC[:, b], rows B * Dv apart
        let (kr, vr) = (k + (first * batch + b) * d, v + (first * batch + b) * dv)  // K[r, b], V[r, b]
        // Padded source steps receive nothing.
        for j in 0..<tx where j < first || j >= first + n {
            (out.keys + (j * batch + b) * d).update(repeating: 0, count: d)
            (out.values + (j * batch + b) * dv).update(repeating: 0, count: dv)
        }
        // dA[b][:, r] = dC[:, b] V[r, b]ᵀ: [Ty, Dv] [Dv, n], into dS.
        gemm(.noTrans, .trans, ty, n, dv, dc, batch * dv, vr, batch * dv, 0, ds + first, tx)
        // dS = A ⊙ (dA − Σ_j A dA), row by row.
        for i in 0..<ty {
            let (row, weights) = (ds + i * tx + first, a + i * tx + first)
            var dot: Float = 0
            for j in 0..<n { dot += weights[j] * row[j] }
            for j in 0..<n { row[j] = weights[j] * (row[j] - dot) }
        }
        // dV[r, b] = A[b][:, r]ᵀ dC[:, b]: [n, Ty] [Ty, Dv].
        gemm(.trans, .noTrans, n, dv, ty, a + first, tx, dc, batch * dv, 0, out.values + (first * batch + b) * dv,
             batch * dv)
        switch score {
        case .dot:
            // dQ[:, b] = dS[b][:, r] K[r, b]: [Ty, n] [n, D].
            gemm(.noTrans, .noTrans, ty, d, n, ds + first, tx, kr, batch * d, 0, out.queries + b * d, batch * d)
            // dK[r, b] = dS[b][:, r]ᵀ Q[:, b]: [n, Ty] [Ty, D].
            gemm(.trans, .noTrans, n, d, ty, ds + first, tx, q + b * d, batch * d, 0, out.keys + (first * batch + b) * d,
                 batch * d)
        case .additive:
            additiveBackward(b, range, ds, out)
        }
    }

    /// The additive score's dQ[:, b], dK[r, b] and dv share, u = tanh(q + k) recomputed (storing it
    /// would take Ty Tx D floats per sequence): g = dS v ⊙ (1 − u²) goes to both dQ_i and dK_j.
    private func additiveBackward(_ b: Int, _ range: AttentionSourceRange, _ ds: UnsafeMutablePointer<Float>,
                                  _ out: Gradients) {
        let vector = scoreVector!
        let share = out.scoreVector! + b * d  // [D]
        share.update(repeating: 0, count: d)
        for i in 0..<ty { (out.queries + (i * batch + b) * d).update(repeating: 0, count: d) }
        for j in range.first..<(range.first + range.count) {
            (out.keys + (j * batch + b) * d).update(repeating: 0, count: d)
        }
        for i in 0..<ty {
            let (query, queryGradient) = (q + (i * batch + b) * d, out.queries + (i * batch + b) * d)
            for j in range.first..<(range.first + range.count) {
                let (key, keyGradient) = (k + (j * batch + b) * d, out.keys + (j * batch + b) * d)
                let scoreGradient = CPULanes(repeating: ds[i * tx + j])
                let width = CPULanes.scalarCount
                var start = 0
                while start + width <= d {
                    Self.additiveGradientTerms(query + start, key + start, vector + start, scoreGradient,
                                               queryGradient + start, keyGradient + start, share + start, width)
                    start += width
                }
                if start < d {
                    Self.additiveGradientTerms(query + start, key + start, vector + start, scoreGradient,
                                               queryGradient + start, keyGradient + start, share + start, d - start)
                }
            }
        }
    }

    /// On `count` lanes: u = tanh(q + k), g = dS v ⊙ (1 − u²); dQ_i += g, dK_j += g, share += dS u.
    @inline(__always)
    private static func additiveGradientTerms(
        _ query: UnsafeMutablePointer<Float>, _ key: UnsafeMutablePointer<Float>, _ vector: UnsafeMutablePointer<Float>,
        _ scoreGradient: CPULanes, _ queryGradient: UnsafeMutablePointer<Float>,
        _ keyGradient: UnsafeMutablePointer<Float>, _ share: UnsafeMutablePointer<Float>, _ count: Int
    ) {
        let u = CPUMath.tanh(query.loadLanes(count) + key.loadLanes(count))
        let g = scoreGradient * vector.loadLanes(count) * (1 - u * u)
        queryGradient.storeLanes(queryGradient.loadLanes(count) + g, count)
        keyGradient.storeLanes(keyGradient.loadLanes(count) + g, count)
        share.storeLanes(share.loadLanes(count).addingProduct(scoreGradient, u), count)
    }

    // MARK: GEMM

    private enum Transpose {
        case noTrans, trans
        var blas: CBLAS_TRANSPOSE { self == .trans ? CblasTrans : CblasNoTrans }
    }

    /// C[m, n] = alpha op(A) op(B) + beta C on this thread (the batch is already split).
    private func gemm(_ transposeA: Transpose, _ transposeB: Transpose, _ m: Int, _ n: Int, _ k: Int,
                      _ a: UnsafeMutablePointer<Float>, _ lda: Int, _ b: UnsafeMutablePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA.blas, transposeB.blas, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda),
                    b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// A per-sequence body handed to other threads; each call writes only its own sequence's rows.
private struct AttentionSequences: @unchecked Sendable {
    let body: (Int) -> Void
}
