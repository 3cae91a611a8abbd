import Foundation
import Testing
@testable import Recur

@Suite("Sequence metrics: token accuracy, sequence and edit-distance error rates")
struct SequenceMetricTests {
    @Test("Levenshtein distance on hand-checked cases, symmetric")
    func levenshtein() {
        let cases: [(String, String, Int)] = [
            ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("", "", 0),
            ("abc", "abc", 0), ("abc", "acb", 2), ("intention", "execution", 5), ("a", "b", 1),
        ]
        for (first, second, distance) in cases {
            #expect(levenshteinDistance(Array(first), Array(second)) == distance, "\(first) → \(second)")
            #expect(levenshteinDistance(Array(second), Array(first)) == distance, "\(second) → \(first)")
        }
        #expect(levenshteinDistance(["AH", "B", "AE"], ["AH", "B", "AE", "D"]) == 1)
    }

    @Test("WER counts an output right if it equals any reference; PER takes the closest reference, the first on ties")
    func errorRates() {
        var sums = SequenceMetricSums()
        #expect(sums.sequenceErrorRate == nil && sums.editDistanceErrorRate == nil && sums.tokenAccuracy == nil)
        // Right against its only reference: distance 0 over 3.
        sums.addHypothesis(["A", "B", "C"], references: [["A", "B", "C"]])
        // Right against the second reference, which is then the closest: 0 over 2.
        sums.addHypothesis(["A", "B"], references: [["A", "B", "D"], ["A", "B"]])
        // Wrong: 2 from [A, B], 1 from [C]; the closest is [C]: 1 over 1.
        sums.addHypothesis(["X"], references: [["A", "B"], ["C"]])
        // Wrong: 1 from [A, B] and 1 from [A, D, C]; the tie goes to the first: 1 over 2.
        sums.addHypothesis(["A", "C"], references: [["A", "B"], ["A", "D", "C"]])
        #expect(sums.sequences == 4 && sums.wrongSequences == 2)
        #expect(sums.editDistance == 2 && sums.referenceLength == 8)
        #expect(sums.sequenceErrorRate == 0.5)
        #expect(sums.editDistanceErrorRate == 0.25)
        // An empty output is wrong and costs the closest reference's length.
        var empty = SequenceMetricSums()
        empty.addHypothesis([Int32](), references: [[4, 5, 6], [7, 8]])
        #expect(empty.editDistance == 2 && empty.referenceLength == 2 && empty.sequenceErrorRate == 1)
    }

    @Test("teacher-forced token accuracy leaves padding targets out and counts the end marker")
    func tokenAccuracy() {
        var sums = SequenceMetricSums()
        // [T - 1 = 3, B = 2]: column 0 wants 4 9 end, column 1 wants 6 end and then padding.
        sums.addTeacherForced(predictions: [4, 6, 5, 3, 3, 7], targets: [4, 6, 9, 3, 3, 0])
        #expect(sums.countedTokens == 5 && sums.correctTokens == 4)
        #expect(sums.tokenAccuracy == 0.8)
    }

    @Test("sums of parts add up to the sums of the whole, and survive a JSON round trip")
    func combining() throws {
        var random = SeededGenerator(seed: 5)
        var whole = SequenceMetricSums()
        var parts = [SequenceMetricSums(), SequenceMetricSums()]
        for index in 0..<40 {
            let hypothesis = random.ids(1 + index % 5, below: 4)
            let references = (0..<(1 + index % 3)).map { _ in random.ids(1 + Int(random.next() % 5), below: 4) }
            let targets = random.ids(6, below: 5)
            let predictions = random.ids(6, below: 5)
            whole.addHypothesis(hypothesis, references: references)
            whole.addTeacherForced(predictions: predictions, targets: targets)
            parts[index % 2].addHypothesis(hypothesis, references: references)
            parts[index % 2].addTeacherForced(predictions: predictions, targets: targets)
        }
        var combined = parts[0]
        combined.add(parts[1])
        #expect(combined == whole)
        #expect(whole.sequences == 40 && whole.countedTokens > 0 && whole.wrongSequences > 0)
        let encoded = try JSONEncoder().encode(whole)
        #expect(try JSONDecoder().decode(SequenceMetricSums.self, from: encoded) == whole)
    }
}
