/// `0 ..< count` in a random order that depends only on `seed` (SplitMix64 and Fisher–Yates,
/// written out so that the order is the same on every platform and Swift version).
public func seededPermutation(count: Int, seed: UInt64) -> [Int] {
    var order = Array(0..<count)
    var random = SeededRandom(seed: seed)
    random.shuffle(&order)
    return order
}

/// Training and validation parts of `count` examples, as index ranges.
public struct ValidationSplit: Sendable, Equatable {
    /// The first examples.
    public var training: Range<Int>
    /// The last examples.
    public var validation: Range<Int>

    /// Splits off the last `fraction` of `count` examples for validation, as Keras's
    /// `validation_split` does: the training part is the first `⌊count × (1 − fraction)⌋`
    /// examples and the rest validates. As in Keras the split takes examples in the order given
    /// and does not shuffle, so shuffle data grouped by class first
    /// (`TextClassificationDataset.shuffled(seed:)`).
    ///
    /// - Throws: `RecurError.invalidArgument` when `fraction` is not strictly between 0 and 1 or
    ///   either part would be empty.
    public init(count: Int, validationFraction fraction: Double) throws {
        guard fraction > 0 && fraction < 1 else {
            throw RecurError.invalidArgument(
                operation: "ValidationSplit", detail: "validation fraction \(fraction) is not strictly between 0 and 1")
        }
        let splitIndex = Int((Double(count) * (1 - fraction)).rounded(.down))
        guard splitIndex > 0 && splitIndex < count else {
            throw RecurError.invalidArgument(
                operation: "ValidationSplit",
                detail: "\(count) examples are too few to split off a validation fraction of \(fraction): a part would be empty")
        }
        training = 0..<splitIndex
        validation = splitIndex..<count
    }
}

/// Mini-batches of example indices for each epoch: shuffled with a seed, or in order.
///
/// The order of an epoch depends only on the seed and the epoch number, not on which epochs ran
/// before, so training resumed from a checkpoint at epoch k sees the batches an uninterrupted
/// run would have seen.
public struct MiniBatchPlan: Sendable, Equatable {
    /// The number of examples.
    public let count: Int
    /// The examples per batch (the last batch may hold fewer; see `keepsPartialBatch`).
    public let batchSize: Int
    /// Whether each epoch visits the examples in a new seeded random order.
    public let shuffles: Bool
    /// The seed of the shuffles.
    public let seed: UInt64
    /// Whether a last batch smaller than `batchSize` is kept (Keras keeps it) or dropped.
    public let keepsPartialBatch: Bool

    /// - Throws: `RecurError.invalidArgument` for a negative count or a batch size below 1.
    public init(count: Int, batchSize: Int, shuffles: Bool = true, seed: UInt64 = 0,
                keepsPartialBatch: Bool = true) throws {
        guard count >= 0, batchSize >= 1 else {
            throw RecurError.invalidArgument(
                operation: "MiniBatchPlan", detail: "count \(count) and batch size \(batchSize): need count >= 0, batch size >= 1")
        }
        self.count = count
        self.batchSize = batchSize
        self.shuffles = shuffles
        self.seed = seed
        self.keepsPartialBatch = keepsPartialBatch
    }

    /// The number of batches in each epoch.
    public var batchesPerEpoch: Int {
        // count / b rounded up, written so that no batch size, however large, overflows.
        keepsPartialBatch ? count / batchSize + (count % batchSize > 0 ? 1 : 0) : count / batchSize
    }

    /// The order the examples are visited in during `epoch` (0-based).
    public func order(epoch: Int) -> [Int] {
        guard shuffles else { return Array(0..<count) }
        // Mixing the epoch in through one SplitMix64 step gives unrelated streams for
        // neighbouring (seed, epoch) pairs.
        var mixer = SeededRandom(seed: seed &+ UInt64(truncatingIfNeeded: epoch) &* 0xD1B5_4A32_D192_ED03)
        return seededPermutation(count: count, seed: mixer.next())
    }

    /// The batches of `epoch` (0-based), each a list of example indices.
    public func batches(epoch: Int) -> [ArraySlice<Int>] {
        let order = order(epoch: epoch)
        return (0..<batchesPerEpoch).map { batch in
            order[batch * batchSize ..< min((batch + 1) * batchSize, count)]
        }
    }
}
