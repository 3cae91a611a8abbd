import Testing
@testable import Recur

@Suite struct DataLanguageModelTests {
    /// The first 300 lines of Tiny Shakespeare (`Datasets/tinyshakespeare`).
    @Test func tinyShakespeareAsCharacters() throws {
        let stream = try TokenStream.characters(contentsOf: TestDatasets.path("tinyshakespeare/input.txt"))
        #expect(stream.count == 8948)
        // 56 distinct characters plus padding and <OOV>.
        #expect(stream.vocabulary.count == 58)
        // The space is the most frequent character (1,342 times), then e, t, o, i.
        #expect(Array(stream.vocabulary.words.prefix(5)) == [" ", "e", "t", "o", "i"])
        #expect(try stream.vocabulary.decode(stream.ids.prefix(14)).joined() == "First Citizen:")
        // Line 300, where the excerpt ends.
        #expect(try stream.vocabulary.decode(stream.ids.suffix(41)).joined() == "Would the nobility lay aside their ruth,\n")
        #expect(stream.ids.filter { $0 == 2 }.count == 1342)
        #expect(!stream.ids.contains(Vocabulary.outOfVocabularyID))
        #expect(try Vocabulary(serialized: stream.vocabulary.serialized) == stream.vocabulary)
    }

    @Test func characterStreamMatchesTheGeneralPath() throws {
        let text = "Hello, wörld!\nHELLO\r\n"
        let stream = try TokenStream.characters(in: text)
        let tokens = CharacterTokenizer().tokens(in: text)
        let vocabulary = try Vocabulary(fitting: [tokens])
        #expect(stream.vocabulary == vocabulary)
        #expect(stream.ids == vocabulary.encode(tokens))

        let lowered = try TokenStream.characters(in: text, lowercases: true, numWords: 5)
        // Counts after lowercasing: l 5, then h, e, o and the newline 2 each, in that order of
        // first appearance; numWords 5 keeps l, h, e.
        #expect(Array(lowered.vocabulary.words) == ["l", "h", "e"])
        #expect(lowered.ids.prefix(5) == [3, 4, 2, 2, 1])

        // An existing vocabulary encodes; unknown characters become <OOV>.
        let known = try TokenStream.characters(in: "hex", vocabulary: lowered.vocabulary)
        #expect(known.ids == [3, 4, 1])
    }

    @Test func wordStream() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("words.txt", "The cat.\nThe dog and the cat\n")
        let stream = try TokenStream.words(contentsOf: path)
        #expect(Array(stream.vocabulary.words) == ["the", "cat", "dog", "and"])
        #expect(stream.ids == [2, 3, 2, 4, 5, 2, 3])
    }

    @Test func batchesAreParallelStreamsShiftedByOne() throws {
        // 21 ids, B = 2 streams of L = ⌊20 / 2⌋ = 10: ids 0…9 and 10…19; T = 3 gives 3 batches.
        let batches = try LanguageModelBatches(ids: (0..<21).map(Int32.init), sequenceLength: 3, batchSize: 2)
        #expect(batches.streamLength == 10)
        #expect(batches.count == 3)
        #expect(batches[0].inputs == [0, 10, 1, 11, 2, 12])
        #expect(batches[0].targets == [1, 11, 2, 12, 3, 13])
        #expect(batches[2].inputs == [6, 16, 7, 17, 8, 18])
        #expect(batches[2].targets == [7, 17, 8, 18, 9, 19])
        // The smallest stream that fills one batch: T · B + 1 ids.
        #expect(try LanguageModelBatches(ids: Array(repeating: 0, count: 7), sequenceLength: 3, batchSize: 2).count == 1)
        #expect(recurError { _ = try LanguageModelBatches(ids: Array(repeating: 0, count: 6), sequenceLength: 3, batchSize: 2) } != nil)
        #expect(recurError { _ = try LanguageModelBatches(ids: [1, 2], sequenceLength: 0, batchSize: 1) } != nil)
    }

    @Test func tinyShakespeareBatchesAndValidationTail() throws {
        let stream = try TokenStream.characters(contentsOf: TestDatasets.path("tinyshakespeare/input.txt"))
        let split = try ValidationSplit(count: stream.count, validationFraction: 0.1)
        let training = stream.slice(split.training)
        // ⌊8948 × 0.9⌋ = 8053 training ids; 8 streams of ⌊8052 / 8⌋ = 1006; ⌊1006 / 20⌋ = 50 batches.
        #expect(training.count == 8053)
        let batches = try training.batches(sequenceLength: 20, batchSize: 8)
        #expect(batches.streamLength == 1006)
        #expect(batches.count == 50)
        let first = batches[0]
        #expect(try stream.vocabulary.decode((0..<14).map { first.inputs[$0 * 8] }).joined() == "First Citizen:")
        for t in 0..<19 {
            #expect(first.targets[t * 8 + 5] == first.inputs[(t + 1) * 8 + 5])
        }
    }
}
