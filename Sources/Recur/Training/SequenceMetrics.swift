// Metrics of sequence-to-sequence models, as the grapheme-to-phoneme and translation literature
// reports them: token accuracy under teacher forcing, the sequence (word) error rate, and the
// edit-distance (phoneme) error rate against the closest reference.
//
// Shape legend: T target steps, B batch.

/// The Levenshtein distance between two sequences: the fewest insertions, deletions and
/// substitutions, each costing 1, that turn `first` into `second`.
///
/// Wagner–Fischer with two rows: O(|first| · |second|) time, O(|second|) memory.
///
/// - Parameters:
///   - first: one sequence.
///   - second: the other; the distance is symmetric.
/// - Returns: a number between |count difference| and the longer count.
public func levenshteinDistance<Token: Equatable>(_ first: [Token], _ second: [Token]) -> Int {
    var previous = Array(0...second.count)  // distances from first[..<i-1] to every prefix of second
    var current = [Int](repeating: 0, count: second.count + 1)
    for (i, token) in first.enumerated() {
        current[0] = i + 1
        for (j, other) in second.enumerated() {
            let substitution = previous[j] + (token == other ? 0 : 1)
            current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, substitution)
        }
        swap(&previous, &current)
    }
    return previous[second.count]
}

/// Sums over the batches of one pass of a sequence-to-sequence model; add batches, read the
/// rates at the end. Sums from several passes or processes combine with `add(_:)`.
///
/// - Token accuracy (teacher forced): the fraction of target ids the model predicts when it reads
///   the reference's previous ids; padding is not counted, the end marker is.
/// - Sequence error rate (word error rate, WER): the fraction of sources whose output equals none
///   of their references.
/// - Edit-distance error rate (phoneme error rate, PER): for each source the Levenshtein distance
///   from the output to its closest reference, summed, over the summed lengths of those closest
///   references. Among equally close references the first one listed counts.
public struct SequenceMetricSums: Sendable, Equatable, Codable {
    /// Target ids the model predicted, teacher forced.
    public var correctTokens = 0
    /// Target ids scored, teacher forced (padding excluded).
    public var countedTokens = 0
    /// Outputs that equal none of their references.
    public var wrongSequences = 0
    /// Outputs scored.
    public var sequences = 0
    /// Σ edit distance from each output to its closest reference.
    public var editDistance = 0
    /// Σ length of each output's closest reference.
    public var referenceLength = 0

    /// Empty sums.
    public init() {}

    /// Counts teacher-forced predictions: `predictions[i]` is the model's most likely id where
    /// `targets[i]` was wanted. Positions whose target is padding (`SequenceVocabulary.paddingID`)
    /// are left out.
    ///
    /// For a `SequencePairBatch`, `targets` are rows `1 ..< T` of `target.ids` (`[T - 1, B]`) and
    /// `predictions` the argmax of the decoder's outputs at the same places.
    ///
    /// - Parameters:
    ///   - predictions: predicted ids, any layout.
    ///   - targets: wanted ids in the same layout.
    /// - Precondition: both have the same count.
    public mutating func addTeacherForced(predictions: [Int32], targets: [Int32]) {
        precondition(predictions.count == targets.count,
                     "\(predictions.count) predictions for \(targets.count) targets")
        for (predicted, target) in zip(predictions, targets) where target != SequenceVocabulary.paddingID {
            countedTokens += 1
            if predicted == target { correctTokens += 1 }
        }
    }

    /// Scores one output against every reference of its source.
    ///
    /// - Parameters:
    ///   - hypothesis: the model's output, without markers.
    ///   - references: the source's acceptable outputs, without markers, at least one.
    /// - Precondition: `references` is not empty.
    public mutating func addHypothesis<Token: Equatable>(_ hypothesis: [Token], references: [[Token]]) {
        precondition(!references.isEmpty, "a source has at least one reference")
        sequences += 1
        if !references.contains(hypothesis) { wrongSequences += 1 }
        var closest = (distance: Int.max, length: 0)
        for reference in references {
            let distance = levenshteinDistance(hypothesis, reference)
            if distance < closest.distance { closest = (distance, reference.count) }
        }
        editDistance += closest.distance
        referenceLength += closest.length
    }

    /// Adds another pass's sums (another batch, another process's share).
    /// - Parameter other: the sums to add.
    public mutating func add(_ other: SequenceMetricSums) {
        correctTokens += other.correctTokens
        countedTokens += other.countedTokens
        wrongSequences += other.wrongSequences
        sequences += other.sequences
        editDistance += other.editDistance
        referenceLength += other.referenceLength
    }

    /// Teacher-forced token accuracy, or nil before any token was counted.
    public var tokenAccuracy: Double? {
        countedTokens > 0 ? Double(correctTokens) / Double(countedTokens) : nil
    }

    /// The sequence (word) error rate, or nil before any output was scored.
    public var sequenceErrorRate: Double? {
        sequences > 0 ? Double(wrongSequences) / Double(sequences) : nil
    }

    /// The edit-distance (phoneme) error rate, or nil while no reference token was counted.
    public var editDistanceErrorRate: Double? {
        referenceLength > 0 ? Double(editDistance) / Double(referenceLength) : nil
    }
}
