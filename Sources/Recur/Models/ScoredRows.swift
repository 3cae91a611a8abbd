// The scored places of a teacher-forced target batch. The decoder's recurrent op runs over
// [T', B] places, padding included (the scans skip the padded ones); what reads the decoder's
// outputs place by place after it (attention's combine layer W_c [c; h], the output layer, the
// loss) needs only the places that are scored, (t, b) with t < length_b. In a grapheme-to-phoneme
// batch of 64 words those are about 56% of the places, so those layers run on the scored rows
// gathered into [N, D] and their gradients are scattered back to [T', B, D], zero at padding,
// which is what the padded places' gradients were anyway (the loss ignores them).
//
// Shape legend: T' decoder steps, B batch, N scored places, D features.

/// The rows r = t · B + b of a `[T', B, D]` layout whose places are scored (t < length_b), in
/// increasing order, and the two moves between that layout and the scored rows `[N, D]`: the
/// embedding's row gather and scatter-add, so both run on the device.
public struct ScoredRows {
    /// The row indices, int32 `[N]`, on the backend.
    public let indices: Tensor
    /// The same row indices on the host.
    public let rowIndices: [Int32]
    /// N, the scored places.
    public let count: Int
    /// T', the steps of the full layout.
    public let steps: Int
    /// B, the columns of the full layout.
    public let batch: Int

    /// The scored places of `steps` steps of `lengths.count` columns, or nil when every place is
    /// scored (nothing to leave out).
    /// - Parameters:
    ///   - steps: T'.
    ///   - lengths: each column's scored steps, in 1...T'.
    ///   - backend: where the indices go.
    /// - Throws: `RecurError.invalidArgument` for a length outside 1...T'.
    public init?(steps: Int, lengths: [Int], backend: any Backend) throws {
        if let bad = lengths.firstIndex(where: { $0 < 1 || $0 > steps }) {
            throw RecurError.invalidArgument(
                operation: "ScoredRows", detail: "column \(bad) has length \(lengths[bad]) outside 1...\(steps)")
        }
        let batch = lengths.count
        let scored = lengths.reduce(0, +)
        guard scored < steps * batch else { return nil }
        var rows: [Int32] = []
        rows.reserveCapacity(scored)
        for t in 0..<steps {
            for b in 0..<batch where t < lengths[b] { rows.append(Int32(t * batch + b)) }
        }
        indices = try backend.upload(rows, shape: [scored])
        rowIndices = rows
        count = scored
        self.steps = steps
        self.batch = batch
    }

    /// The scored rows of `x`.
    /// - Parameter x: `[T', B, D]`.
    /// - Returns: `[N, D]`, row n being row `indices[n]` of x.
    public func gather(_ x: Tensor) throws -> Tensor {
        let width = try features(of: x, operation: "ScoredRows.gather")
        let rows = try x.backend.uninitialized([count, width])
        try x.backend.gather(rowsOf: asRows(x, width: width), ids: indices, into: rows)
        return rows
    }

    /// The full layout of scored rows: the inverse of ``gather(_:)``, 0 at the places left out.
    /// - Parameter rows: `[N, D]`.
    /// - Returns: `[T', B, D]`.
    public func scatter(_ rows: Tensor) throws -> Tensor {
        guard rows.shape.rank == 2, rows.shape[0] == count else {
            throw RecurError.shapeMismatch(
                operation: "ScoredRows.scatter", detail: "rows must be [\(count), D], got \(rows.shape)")
        }
        let width = rows.shape[1]
        let full = try rows.backend.zeros([steps, batch, width])
        try rows.backend.scatterAdd(rows, ids: indices, into: asRows(full, width: width))
        return full
    }

    /// The scored values of a host array laid out `[T', B]` (targets, ids).
    /// - Parameter values: T' · B values.
    /// - Returns: `[N]` values, value n being `values[rowIndices[n]]`.
    public func scored<Value>(_ values: [Value]) -> [Value] {
        rowIndices.map { values[Int($0)] }
    }

    /// D of a `[T', B, D]` tensor.
    private func features(of x: Tensor, operation: String) throws -> Int {
        guard x.shape.rank == 3, x.shape[0] == steps, x.shape[1] == batch else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "the tensor must be [\(steps), \(batch), D], got \(x.shape)")
        }
        return x.shape[2]
    }

    /// `x` viewed as `[T' · B, D]` rows (the same storage).
    private func asRows(_ x: Tensor, width: Int) -> Tensor {
        Tensor(shape: [steps * batch, width], dtype: x.dtype, buffer: x.buffer, backend: x.backend)
    }
}
