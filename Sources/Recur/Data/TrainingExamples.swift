// Examples a `Trainer` can batch: each data set is a list of examples that gives, for any list
// of example indices, one batch of model inputs and targets in the model's time-major layout.
//
// Shape legend: T time steps, B batch, F features per step, K outputs.

/// One batch of inputs and targets, on the host.
public struct TrainingBatch: Sendable {
    /// What the model reads.
    public enum Input: Sendable {
        /// Padded ids `[T, B]` (time-major) with each sequence's valid length.
        case ids([Int32], steps: Int, lengths: [Int], padding: PaddingSide)
        /// Float steps `[T, B, F]`.
        case values([Float], steps: Int, features: Int)
    }

    /// What the model must predict.
    public enum Targets: Sendable {
        /// One float per output: `[B, K]` (binary labels as 0/1, forecasts).
        case values([Float], outputs: Int)
        /// One class id per sequence `[B]`, or per step `[T, B]` where 0 marks padding.
        case classes([Int32])
    }

    public var input: Input
    public var targets: Targets
    /// B: the sequences in the batch.
    public var batchSize: Int
    /// Forecasts: what each example's errors are multiplied by to be in the series' units, `[B]`,
    /// where that differs between examples (windows scaled by their own deviation), or each
    /// output's, `[B, K]`, where it differs between outputs too (several target columns, each in
    /// its own units); nil when one scale holds for all (`Trainer.errorScale`).
    public var errorScales: [Float]?

    public init(input: Input, targets: Targets, batchSize: Int, errorScales: [Float]? = nil) {
        self.input = input
        self.targets = targets
        self.batchSize = batchSize
        self.errorScales = errorScales
    }
}

/// A data set of `count` examples, batched by index.
public protocol TrainingExamples: Sendable {
    /// The number of examples.
    var count: Int { get }
    /// The examples at `indices`, in that order, as one batch.
    func batch(_ indices: ArraySlice<Int>) -> TrainingBatch
}

/// Windows cut from one stream in time order (text, a series), which stateful training can lay
/// out as parallel streams (`StreamBatches`).
public protocol StreamWindows: TrainingExamples {
    /// Whether every window starts right where the one before it ends (stride = length), so that
    /// a state carried from window n into window n + 1 has read exactly the steps before it.
    var isContiguous: Bool { get }
    /// Steps per window, and between the starts of neighbouring windows (for messages).
    var length: Int { get }
    var stride: Int { get }
}

/// Sequences of ids with one label each (sentiment, spam): many-to-one classification.
public struct LabeledSequences: TrainingExamples {
    public let sequences: PaddedSequences
    /// Class ids, one per sequence.
    public let labels: [Int32]
    /// How many classes the labels come from; 2 gives float 0/1 targets for one sigmoid logit.
    public let classCount: Int

    /// - Throws: `RecurError.invalidArgument` when the counts differ, a label lies outside
    ///   0..<classCount, or a sequence is empty (a recurrent layer needs length >= 1).
    public init(sequences: PaddedSequences, labels: [Int32], classCount: Int) throws {
        let operation = "LabeledSequences"
        guard sequences.count == labels.count else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(sequences.count) sequences but \(labels.count) labels")
        }
        guard classCount >= 2 else {
            throw RecurError.invalidArgument(operation: operation, detail: "need at least 2 classes, got \(classCount)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classCount }) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "label \(labels[bad]) of example \(bad) is outside 0..<\(classCount)")
        }
        try sequences.checkNonEmpty()
        self.sequences = sequences
        self.labels = labels
        self.classCount = classCount
    }

    public var count: Int { labels.count }

    public func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        let batch = sequences.batch(indices)
        let labels = indices.map { self.labels[$0] }
        let targets: TrainingBatch.Targets = classCount == 2
            ? .values(labels.map { Float($0) }, outputs: 1)
            : .classes(labels)
        return TrainingBatch(
            input: .ids(batch.ids, steps: batch.steps, lengths: batch.lengths, padding: sequences.padding),
            targets: targets, batchSize: indices.count)
    }
}

/// Sequences of ids with one tag per id (part-of-speech, named entities): many-to-many tagging.
/// Tags are padded like the ids; tag 0 marks padding and is ignored by the loss and the metrics.
public struct TaggedSequences: TrainingExamples {
    public let sequences: PaddedSequences
    /// Tags `[N, T]` row-major, aligned with `sequences.ids` (same padding side).
    public let tags: PaddedSequences

    /// - Throws: `RecurError.invalidArgument` when the two paddings disagree in count, length or
    ///   side, or a sequence is empty.
    public init(sequences: PaddedSequences, tags: PaddedSequences) throws {
        guard sequences.count == tags.count, sequences.maxLength == tags.maxLength,
              sequences.padding == tags.padding, sequences.lengths == tags.lengths else {
            throw RecurError.invalidArgument(
                operation: "TaggedSequences", detail: "ids and tags must be padded alike (count, length, side)")
        }
        try sequences.checkNonEmpty()
        self.sequences = sequences
        self.tags = tags
    }

    public var count: Int { sequences.count }

    public func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        let ids = sequences.batch(indices)
        let tags = tags.batch(indices)
        return TrainingBatch(
            input: .ids(ids.ids, steps: ids.steps, lengths: ids.lengths, padding: sequences.padding),
            targets: .classes(tags.ids), batchSize: indices.count)
    }
}

/// Windows of one token stream for next-token prediction: example k is the T ids starting at
/// `k * stride`, and its targets the T ids one position later. Windows are independent
/// examples (the state starts at zero in each), so they can be shuffled like any data set;
/// stateful training lays them out as streams instead (`StreamBatches`).
public struct LanguageModelWindows: StreamWindows {
    public let ids: [Int32]
    /// T.
    public let length: Int
    public let stride: Int

    /// - Throws: `RecurError.invalidArgument` for a length or stride below 1, or a stream too
    ///   short for one window of `length + 1` ids.
    public init(ids: [Int32], length: Int, stride: Int? = nil) throws {
        let stride = stride ?? length
        guard length >= 1, stride >= 1 else {
            throw RecurError.invalidArgument(
                operation: "LanguageModelWindows", detail: "length \(length) and stride \(stride) must be at least 1")
        }
        guard ids.count >= length + 1 else {
            throw RecurError.invalidArgument(
                operation: "LanguageModelWindows",
                detail: "a stream of \(ids.count) ids is too short for one window of \(length) + 1")
        }
        if let bad = ids.firstIndex(where: { $0 == Vocabulary.paddingID }) {
            throw RecurError.invalidArgument(
                operation: "LanguageModelWindows", detail: "id \(bad) of the stream is the padding id 0")
        }
        self.ids = ids
        self.length = length
        self.stride = stride
    }

    public var count: Int { (ids.count - 1 - length) / stride + 1 }

    public var isContiguous: Bool { stride == length }

    public func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        let b = indices.count
        var inputs = [Int32](repeating: 0, count: length * b)  // [T, B]
        var targets = [Int32](repeating: 0, count: length * b)  // [T, B]
        for (column, example) in indices.enumerated() {
            let start = example * stride
            for t in 0..<length {
                inputs[t * b + column] = ids[start + t]
                targets[t * b + column] = ids[start + t + 1]
            }
        }
        return TrainingBatch(
            input: .ids(inputs, steps: length, lengths: Array(repeating: length, count: b), padding: .post),
            targets: .classes(targets), batchSize: b)
    }
}

/// Forecasting windows (`ForecastWindows`): T past steps of a series predict the next K values.
public struct SeriesWindows: StreamWindows {
    public let windows: ForecastWindows
    /// Each window's error scale (`TrainingBatch.errorScales`), `[N]`, or each output's, `[N, K]`;
    /// nil for one scale for all.
    public let errorScales: [Float]?

    public init(_ windows: ForecastWindows, errorScales: [Float]? = nil) {
        precondition(errorScales == nil || errorScales?.count == windows.count
                     || errorScales?.count == windows.count * windows.outputs,
                     "one error scale per window or per output")
        self.windows = windows
        self.errorScales = errorScales
    }

    public var count: Int { windows.count }

    public var length: Int { windows.length }
    public var stride: Int { windows.stride }
    public var isContiguous: Bool { stride == length }

    public func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        let batch = windows.batch(indices)  // inputs [T, B, F], targets [B, K]
        let k = windows.outputs
        return TrainingBatch(
            input: .values(batch.inputs, steps: batch.steps, features: batch.features),
            targets: .values(batch.targets, outputs: batch.horizon), batchSize: indices.count,
            errorScales: errorScales.map { scales in
                scales.count == windows.count ? indices.map { scales[$0] }
                    : indices.flatMap { scales[$0 * k ..< ($0 + 1) * k] }
            })
    }
}
