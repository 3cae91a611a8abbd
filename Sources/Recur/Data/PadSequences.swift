// Shape legend: N sequences, T = maxLength steps, B sequences in a batch.

/// Which end of a sequence longer than `maxLength` loses its extra ids (Keras `truncating`).
public enum TruncationSide: String, Sendable, CaseIterable, Codable {
    /// Drop ids from the start, keeping the last `maxLength` (Keras's default).
    case pre
    /// Drop ids from the end, keeping the first `maxLength`.
    case post
}

/// Sequences of ids padded or truncated to one length, as one flat array, with the length of
/// each sequence's ids so that recurrent layers can skip the padding.
///
/// A sequence that was empty has length 0 and a row of padding only. Recurrent layers need
/// every length in `1...maxLength`, so drop such rows first (`nonEmptyIndices` with `subset`) or
/// reject them (`checkNonEmpty`).
public struct PaddedSequences: Sendable, Equatable {
    /// The padded ids, row by row: `ids[n * maxLength + t]` is step t of sequence n. `[N, T]`
    public let ids: [Int32]
    /// The number of real ids in each row, clipped to `maxLength`; 0 for an empty sequence. `[N]`
    public let lengths: [Int]
    /// The row length T.
    public let maxLength: Int
    /// Which end of each row holds the padding.
    public let padding: PaddingSide

    /// The number of sequences N.
    public var count: Int { lengths.count }

    /// The indices of the rows whose sequence had at least one id, in order.
    public var nonEmptyIndices: [Int] { lengths.indices.filter { lengths[$0] > 0 } }

    /// Whether some row came from an empty sequence (length 0).
    public var hasEmptySequences: Bool { lengths.contains(0) }

    init(ids: [Int32], lengths: [Int], maxLength: Int, padding: PaddingSide) {
        self.ids = ids
        self.lengths = lengths
        self.maxLength = maxLength
        self.padding = padding
    }

    /// The rows at `indices`, in that order (use `nonEmptyIndices` to drop empty sequences, and
    /// the same indices on the labels).
    public func subset(_ indices: some Sequence<Int>) -> PaddedSequences {
        var ids: [Int32] = []
        var lengths: [Int] = []
        for index in indices {
            ids.append(contentsOf: self.ids[index * maxLength ..< (index + 1) * maxLength])
            lengths.append(self.lengths[index])
        }
        return PaddedSequences(ids: ids, lengths: lengths, maxLength: maxLength, padding: padding)
    }

    /// Throws unless every sequence has at least one id, as recurrent layers require.
    ///
    /// - Throws: `RecurError.invalidArgument` naming the first empty sequence and how many there are.
    public func checkNonEmpty() throws {
        let empty = lengths.indices.filter { lengths[$0] == 0 }
        if let first = empty.first {
            throw RecurError.invalidArgument(
                operation: "PaddedSequences",
                detail: "\(empty.count) of \(count) sequences are empty (the first is sequence \(first)); "
                    + "recurrent layers need lengths of at least 1: drop them with nonEmptyIndices and subset")
        }
    }

    /// The rows at `indices` as a time-major batch for a recurrent layer.
    public func batch(_ indices: some Collection<Int>) -> SequenceBatch {
        let batchSize = indices.count
        var ids = [Int32](repeating: 0, count: maxLength * batchSize)  // [T, B]
        for (b, index) in indices.enumerated() {
            let row = index * maxLength
            for t in 0..<maxLength {
                ids[t * batchSize + b] = self.ids[row + t]
            }
        }
        return SequenceBatch(ids: ids, lengths: indices.map { lengths[$0] }, steps: maxLength)
    }
}

/// A batch of padded id sequences, time-major as recurrent layers take them.
public struct SequenceBatch: Sendable, Equatable {
    /// `ids[t * batchSize + b]` is step t of sequence b. `[T, B]`
    public var ids: [Int32]
    /// Each sequence's number of real ids (see `PaddedSequences.lengths`). `[B]`
    public var lengths: [Int]
    /// T.
    public var steps: Int
    /// B.
    public var batchSize: Int { lengths.count }
}

/// Pads and truncates id sequences to one length, as Keras's `pad_sequences` does.
///
/// A sequence longer than `maxLength` loses ids at its start (`truncating: .pre`, the default)
/// or end (`.post`); a shorter one gets `value` before its ids (`padding: .pre`, the default) or
/// after them (`.post`). An empty sequence becomes a row of `value` with length 0.
///
/// Example, `maxLength: 3`: `[1, 2, 3, 4]` → `[2, 3, 4]`; `[5]` → `[0, 0, 5]`, length 1.
///
/// - Parameters:
///   - sequences: the id sequences.
///   - maxLength: the row length; `nil` uses the longest sequence's length (Keras `maxlen=None`).
///   - padding: where padding goes (default `.pre`, as in Keras).
///   - truncating: which end loses ids beyond `maxLength` (default `.pre`, as in Keras).
///   - value: the padding id (default 0, `Vocabulary.paddingID`).
/// - Throws: `RecurError.invalidArgument` for a negative `maxLength`.
public func padSequences(
    _ sequences: [[Int32]], maxLength: Int? = nil, padding: PaddingSide = .pre,
    truncating: TruncationSide = .pre, value: Int32 = Vocabulary.paddingID
) throws -> PaddedSequences {
    let width = maxLength ?? sequences.map(\.count).max() ?? 0
    guard width >= 0 else {
        throw RecurError.invalidArgument(operation: "padSequences", detail: "maxLength \(width) is negative")
    }
    // N × T ids at four bytes each must exist in host memory: refuse, with the size, a length
    // that would overflow or not fit rather than trap in the allocation.
    let count = saturatingProduct([sequences.count, width])
    let bytes = saturatingProduct([count, MemoryLayout<Int32>.size])
    // (Arrays under 64 MiB skip the look at /proc/meminfo: prediction pads every small batch.)
    if count == Int.max || (bytes > 1 << 26 && HostMemory.availableBytes().map({ bytes > $0 }) == true) {
        throw RecurError.outOfMemory(
            operation: "padSequences", bytes: bytes,
            detail: "\(sequences.count) sequences padded to \(width) ids need \(byteCountText(bytes)), "
                + "more than the host has available; lower the sequence length")
    }
    var ids = [Int32](repeating: value, count: count)  // [N, T]
    var lengths: [Int] = []
    lengths.reserveCapacity(sequences.count)
    for (n, sequence) in sequences.enumerated() {
        let kept = switch truncating {
        case .pre: sequence.suffix(width)
        case .post: sequence.prefix(width)
        }
        let rowStart = n * width
        let offset = padding == .pre ? width - kept.count : 0
        for (t, id) in kept.enumerated() {
            ids[rowStart + offset + t] = id
        }
        lengths.append(kept.count)
    }
    return PaddedSequences(ids: ids, lengths: lengths, maxLength: width, padding: padding)
}
