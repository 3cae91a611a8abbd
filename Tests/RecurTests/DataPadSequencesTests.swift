import Testing
@testable import Recur

/// `padSequences` against Keras `pad_sequences`, expected rows written out by hand.
@Suite struct DataPadSequencesTests {
    static let sequences: [[Int32]] = [[1, 2, 3, 4, 5], [6, 7], [], [8, 9, 10]]

    struct Case: Sendable, CustomTestStringConvertible {
        let padding: PaddingSide
        let truncating: TruncationSide
        let rows: [[Int32]]
        var testDescription: String { "padding \(padding), truncating \(truncating)" }
    }

    static let cases: [Case] = [
        Case(padding: .pre, truncating: .pre, rows: [[3, 4, 5], [0, 6, 7], [0, 0, 0], [8, 9, 10]]),
        Case(padding: .post, truncating: .pre, rows: [[3, 4, 5], [6, 7, 0], [0, 0, 0], [8, 9, 10]]),
        Case(padding: .pre, truncating: .post, rows: [[1, 2, 3], [0, 6, 7], [0, 0, 0], [8, 9, 10]]),
        Case(padding: .post, truncating: .post, rows: [[1, 2, 3], [6, 7, 0], [0, 0, 0], [8, 9, 10]]),
    ]

    @Test(arguments: cases)
    func matchesKeras(_ expected: Case) throws {
        let padded = try padSequences(Self.sequences, maxLength: 3, padding: expected.padding, truncating: expected.truncating)
        #expect(padded.ids == expected.rows.flatMap { $0 })
        #expect(padded.lengths == [3, 2, 0, 3])
        #expect(padded.maxLength == 3)
        #expect(padded.count == 4)
        #expect(padded.padding == expected.padding)
    }

    @Test func defaultsArePreAndLongestLength() throws {
        let padded = try padSequences(Self.sequences)
        #expect(padded.maxLength == 5)
        #expect(padded.ids == [1, 2, 3, 4, 5, 0, 0, 0, 6, 7, 0, 0, 0, 0, 0, 0, 0, 8, 9, 10])
        #expect(padded.lengths == [5, 2, 0, 3])
    }

    @Test func customPaddingValue() throws {
        let padded = try padSequences([[4], [5, 6]], maxLength: 3, padding: .post, value: -1)
        #expect(padded.ids == [4, -1, -1, 5, 6, -1])
    }

    @Test func emptySequencesAreFlaggedAndCanBeDropped() throws {
        let padded = try padSequences(Self.sequences, maxLength: 3)
        #expect(padded.hasEmptySequences)
        #expect(padded.nonEmptyIndices == [0, 1, 3])
        let error = recurError { try padded.checkNonEmpty() }
        #expect(error?.description.contains("1 of 4 sequences are empty (the first is sequence 2)") == true)

        let kept = padded.subset(padded.nonEmptyIndices)
        #expect(kept.ids == [3, 4, 5, 0, 6, 7, 8, 9, 10])
        #expect(kept.lengths == [3, 2, 3])
        #expect(!kept.hasEmptySequences)
        try kept.checkNonEmpty()
    }

    @Test func edgeCases() throws {
        let none = try padSequences([])
        #expect(none.ids.isEmpty && none.lengths.isEmpty && none.maxLength == 0)
        #expect(recurError { _ = try padSequences([[1]], maxLength: -1) } != nil)
    }

    @Test func batchIsTimeMajor() throws {
        let padded = try padSequences(Self.sequences, maxLength: 3)
        // Rows 3 and 0: [8, 9, 10] and [3, 4, 5] become steps [8, 3], [9, 4], [10, 5].
        let batch = padded.batch([3, 0])
        #expect(batch.ids == [8, 3, 9, 4, 10, 5])
        #expect(batch.lengths == [3, 3])
        #expect(batch.steps == 3)
        #expect(batch.batchSize == 2)
    }
}
