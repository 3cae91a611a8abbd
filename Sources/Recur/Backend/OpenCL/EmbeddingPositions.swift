/// The positions of a batch of ids grouped by id, for the embedding gradient's scatter-add, which
/// sums each id's gradient rows in a fixed order (`embedding_scatter_add` in Kernels/embedding.cl).
///
/// `packed` is one int32 array in three parts: rows `[R]`, the distinct ids in increasing order;
/// starts `[R + 1]`, where id rows[r] owns positions[starts[r] ..< starts[r + 1]]; positions
/// `[N]`, `0 ..< N` grouped by id and increasing within each group.
///
/// Built on the host, where the ids come from: a counting sort over the ids' range, O(N + range),
/// under a millisecond for 10,000 ids of a 50,000-word vocabulary even in a debug build, and
/// cheaper than the many launches of a sort on the device. Ids spread over a range wider than
/// both 4N and 65,536 (a huge vocabulary, a small batch) are sorted instead, O(N log N), so the
/// counts never take much more memory than the batch.
struct EmbeddingPositions {
    /// R, the number of distinct ids.
    let rowCount: Int
    let packed: [Int32]

    /// - Throws: `RecurError.invalidArgument` naming the first id outside `0 ..< vocabulary` and
    ///   its position, as the CPU backend does.
    init(ids: [Int32], vocabulary: Int, operation: String) throws {
        guard ids.count <= Int(Int32.max) / 3 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(ids.count) ids are more than the grouped positions' int32 index reaches")
        }
        guard !ids.isEmpty else {
            rowCount = 0
            packed = [0]  // starts [1]
            return
        }
        // One pass for the check and the range, through buffer pointers: array indexing is slow
        // in the debug builds the tests run.
        var (low, high) = (Int32.max, Int32.min)
        let outside: Int? = ids.withUnsafeBufferPointer { ids in
            for n in 0..<ids.count {
                let id = ids[n]
                if id < 0 || Int(id) >= vocabulary { return n }
                low = min(low, id)
                high = max(high, id)
            }
            return nil
        }
        if let position = outside {
            throw RecurError.invalidArgument(
                operation: operation, detail: "id \(ids[position]) at position \(position) outside 0..<\(vocabulary)")
        }
        let range = Int(high) - Int(low) + 1
        if range <= max(4 * ids.count, 1 << 16) {
            (rowCount, packed) = Self.countingSort(ids, low: low, range: range)
        } else {
            (rowCount, packed) = Self.comparisonSort(ids)
        }
    }

    /// Stable counting sort over `low ..< low + range`.
    private static func countingSort(_ ids: [Int32], low: Int32, range: Int) -> (Int, [Int32]) {
        // next[id - low]: first the count of id, then where its next position goes in `packed`.
        var next = [Int](repeating: 0, count: range)
        var packed: [Int32] = []
        var rowCount = 0
        ids.withUnsafeBufferPointer { ids in
            next.withUnsafeMutableBufferPointer { next in
                for n in 0..<ids.count {
                    let offset = Int(ids[n] &- low)
                    if next[offset] == 0 { rowCount += 1 }
                    next[offset] &+= 1
                }
                let positionsStart = 2 * rowCount + 1
                packed = [Int32](repeating: 0, count: positionsStart + ids.count)
                packed.withUnsafeMutableBufferPointer { packed in
                    var r = 0
                    var start = 0
                    for offset in 0..<range where next[offset] > 0 {
                        packed[r] = low &+ Int32(truncatingIfNeeded: offset)
                        packed[rowCount + r] = Int32(truncatingIfNeeded: start)
                        let count = next[offset]
                        next[offset] = positionsStart &+ start
                        start &+= count
                        r &+= 1
                    }
                    packed[2 * rowCount] = Int32(truncatingIfNeeded: ids.count)
                    for n in 0..<ids.count {
                        let offset = Int(ids[n] &- low)
                        packed[next[offset]] = Int32(truncatingIfNeeded: n)
                        next[offset] &+= 1
                    }
                }
            }
        }
        return (rowCount, packed)
    }

    /// `0 ..< N` sorted by (id, position), for ids spread too thinly for counting.
    private static func comparisonSort(_ ids: [Int32]) -> (Int, [Int32]) {
        let order = ids.indices.map { Int32($0) }.sorted { a, b in (ids[Int(a)], a) < (ids[Int(b)], b) }
        var rows: [Int32] = []
        var starts: [Int32] = []
        for (k, n) in order.enumerated() where k == 0 || ids[Int(n)] != ids[Int(order[k - 1])] {
            rows.append(ids[Int(n)])
            starts.append(Int32(k))
        }
        starts.append(Int32(ids.count))
        return (rows.count, rows + starts + order)
    }
}
