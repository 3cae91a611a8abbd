import Foundation
import Testing
@testable import Recur

@Suite("Sequence pairs: reading, grouping, split, vocabularies, batches")
struct SequencePairDataTests {
    // MARK: Reading

    @Test("lines with the same source are one group, adjacent or not, references in file order")
    func grouping() throws {
        let pairs = try SequencePairs(text: "AB\tx y\nC\tz\nAB\tw\nC\tz q\n", targetTokenizer: .word)
        #expect(pairs.count == 2)
        #expect(pairs.pairCount == 4)
        #expect(pairs.groups.map(\.source) == ["AB", "C"])
        #expect(pairs.groups[0].sourceTokens == ["A", "B"])
        #expect(pairs.groups[0].references == [["x", "y"], ["w"]])
        #expect(pairs.groups[1].references == [["z"], ["z", "q"]])
    }

    @Test("a file with a byte-order mark, CRLF line ends and empty lines reads as its pairs")
    func fileLayout() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("pairs.tsv", bytes: [0xEF, 0xBB, 0xBF] + Array("ab\tb a\r\n\r\n\ncd\td c\r\nab\ta".utf8))
        let pairs = try SequencePairs(contentsOf: path)
        #expect(pairs.groups.map(\.source) == ["ab", "cd"])
        #expect(pairs.groups[0].references == [["b", " ", "a"], ["a"]])
        #expect(pairs.groups[1].references == [["d", " ", "c"]])
    }

    @Test("a malformed line is an error naming the file and line")
    func malformedLines() throws {
        let folder = try TemporaryFolder()
        let cases: [(name: String, bytes: [UInt8], line: Int, says: String)] = [
            ("no tab", Array("a\tb\nab\n".utf8), 2, "no tab"),
            ("two tabs", Array("a\tb\n\na\tb\tc\n".utf8), 3, "2 tabs"),
            ("empty source", Array("\tb\n".utf8), 1, "empty source"),
            ("empty target", Array("a\tb\nc\t\n".utf8), 2, "empty target"),
            ("empty target of a known source", Array("a\tb\na\t\n".utf8), 2, "empty target"),
            ("blank target words", Array("a\tb\nc\t   \n".utf8), 2, "empty target"),
            ("not UTF-8", Array("a\tb\nc\td\n".utf8) + [0x65, 0x09, 0xFF, 0x0A], 3, "UTF-8"),
        ]
        for item in cases {
            let path = try folder.write("\(item.name).tsv", bytes: item.bytes)
            let error = recurError { _ = try SequencePairs(contentsOf: path, targetTokenizer: .word) }
            guard case let .malformed(source, detail) = error else {
                Issue.record("\(item.name): expected a malformed error, got \(String(describing: error))")
                continue
            }
            #expect(source == "\(path):\(item.line)", "\(item.name)")
            #expect(detail.contains(item.says), "\(item.name): \(detail)")
        }
        let empty = try folder.write("empty.tsv", "\n\n")
        #expect(recurError { _ = try SequencePairs(contentsOf: empty) } == .malformed(source: empty, detail: "no pairs"))
        let missing = folder.path + "/missing.tsv"
        guard case .io(missing, _) = recurError({ _ = try SequencePairs(contentsOf: missing) }) else {
            Issue.record("a missing file should be an io error")
            return
        }
    }

    @Test("pairs given in memory follow the rules of lines")
    func pairsInMemory() throws {
        let pairs = try SequencePairs(pairs: [SequencePair(source: "ab", target: "ba"), SequencePair(source: "ab", target: "b")])
        #expect(pairs.count == 1 && pairs.groups[0].references == [["b", "a"], ["b"]])
        let tab = recurError { _ = try SequencePairs(pairs: [SequencePair(source: "a", target: "b"), SequencePair(source: "a\tb", target: "c")]) }
        guard case .malformed("pairs:2", _) = tab else {
            Issue.record("a tab inside a side should be malformed at pairs:2, got \(String(describing: tab))")
            return
        }
        #expect(recurError { _ = try SequencePairs(pairs: [SequencePair(source: "a", target: "")]) }
            == .malformed(source: "pairs:1", detail: "empty target"))
    }

    @Test("tokenizers: characters are Unicode scalars; words split on whitespace, as written")
    func tokenizers() {
        #expect(PairTokenizer.character.tokens(in: "Naïve é") == ["N", "a", "ï", "v", "e", " ", "é"])
        #expect(PairTokenizer.character.tokens(in: "e\u{301}") == ["e", "\u{301}"])
        #expect(PairTokenizer.word.tokens(in: "  AH  B\u{00A0}AE0 don't, ") == ["AH", "B", "AE0", "don't,"])
        #expect(PairTokenizer.word.tokens(in: " \t ").isEmpty)
        #expect(PairTokenizer(rawValue: "word") == .word && PairTokenizer(rawValue: "character") == .character)
    }

    // MARK: Split by source

    @Test("the split hash: FNV-1a 64 and the first SplitMix64 draw match their published values")
    func splitHash() {
        #expect(SequencePairs.fnv1a64([UInt8]()) == 0xCBF2_9CE4_8422_2325)
        #expect(SequencePairs.fnv1a64(Array("ABADI".utf8)) == 0x774D_174A_58EE_35D2)
        var random = SeededRandom(seed: 0)
        #expect(random.next() == 0xE220_A839_7B1D_CDAF)
        // The same sources as tools/g2p_pytorch.py's is_validation(word, 0.5, seed) picks.
        let words = ["AAA", "ABADI", "ZUVER", "CAT", "DOG", "naïve", "日本"]
        #expect(words.filter { SequencePairs.isValidation(source: $0, fraction: 0.5, seed: 0) }
            == ["AAA", "ABADI", "ZUVER", "DOG", "naïve"])
        #expect(words.filter { SequencePairs.isValidation(source: $0, fraction: 0.5, seed: 7) } == ["ABADI", "ZUVER", "日本"])
    }

    @Test("the split is by source: disjoint, complete, deterministic, independent of order; as the PyTorch script splits")
    func split() throws {
        let pairs = try Self.excerpt("g014b2b.train")
        let split = try pairs.split(validationFraction: 0.05, seed: 0)
        let again = try pairs.split(validationFraction: 0.05, seed: 0)
        #expect(split == again)
        // The counts and first held-out words tools/g2p_pytorch.py finds on this file.
        #expect(split.training.count == 2037 && split.validation.count == 100)
        #expect(split.validation.pairCount == 114)
        #expect(split.validation.groups.prefix(3).map(\.source) == ["ABINGTON", "ALTSCHILLER", "AMOROSO"])
        for (seed, held) in [(UInt64(1), 90), (2, 95)] {
            #expect(try pairs.split(validationFraction: 0.05, seed: seed).validation.count == held)
        }

        let trainingSources = Set(split.training.groups.map(\.source))
        let validationSources = Set(split.validation.groups.map(\.source))
        #expect(trainingSources.isDisjoint(with: validationSources))
        #expect(trainingSources.union(validationSources) == Set(pairs.groups.map(\.source)))
        // Every reference of a source lands on its side.
        let whole = Dictionary(uniqueKeysWithValues: pairs.groups.map { ($0.source, $0.references) })
        for group in split.training.groups + split.validation.groups {
            #expect(group.references == whole[group.source])
        }
        #expect(split.training.pairCount + split.validation.pairCount == pairs.pairCount)

        // The same sources in reverse order are held out the same way.
        let reversed = try SequencePairs(
            pairs: pairs.groups.reversed().flatMap { group in
                group.references.map { SequencePair(source: group.source, target: $0.joined(separator: " ")) }
            },
            targetTokenizer: .word)
        let reversedSplit = try reversed.split(validationFraction: 0.05, seed: 0)
        #expect(Set(reversedSplit.validation.groups.map(\.source)) == validationSources)
        #expect(try pairs.split(validationFraction: 0.05, seed: 3).validation != split.validation)
    }

    @Test("a split fraction outside (0, 1), or a split that leaves a side empty, is refused")
    func splitErrors() throws {
        let pairs = try SequencePairs(text: "a\tb\nc\td\n")
        for fraction in [0.0, 1, -0.5, 1.5, Double.nan] {
            guard case .invalidArgument = recurError({ _ = try pairs.split(validationFraction: fraction, seed: 0) }) else {
                Issue.record("fraction \(fraction) should be refused")
                continue
            }
        }
        guard case .invalidArgument = recurError({ _ = try pairs.split(validationFraction: 1e-9, seed: 0) }) else {
            Issue.record("a split without validation sources should be refused")
            return
        }
    }

    // MARK: Vocabularies and batches

    @Test("vocabulary: reserved ids 0-3, then tokens by count, ties by first appearance; encode, decode")
    func vocabulary() throws {
        let vocabulary = try SequenceVocabulary(fitting: [["b", "a", "c"], ["a", "<s>", "c", "a"]])
        #expect(vocabulary.tokens == ["<pad>", "<unk>", "<s>", "</s>", "a", "c", "b", "<s>"])
        #expect(vocabulary.count == 8)
        #expect(vocabulary.encode(["a", "b", "zz", "<s>"]) == [4, 6, SequenceVocabulary.unknownID, 7])
        #expect(try vocabulary.decode([2, 4, 1, 6, 3, 5, 0]) == ["a", "<unk>", "b"])
        #expect(try vocabulary.decode([0, 5, 5]) == ["c", "c"])
        guard case .invalidArgument = recurError({ _ = try vocabulary.decode([4, 8]) }) else {
            Issue.record("an id beyond the vocabulary should be refused")
            return
        }
        #expect(recurError { _ = try SequenceVocabulary(tokens: ["a", ""]) } != nil)
    }

    @Test("batches: time-major sources and targets padded with 0, targets with start and end, groups kept")
    func batches() throws {
        let pairs = try SequencePairs(text: "abc\tX Y\nd\tZ\nabc\tY\n", targetTokenizer: .word)
        let encoded = try EncodedSequencePairs(fitting: pairs)
        // Sources: a b c d → 4 5 6 7. Targets: Y (2) first, then X, Z → Y 4, X 5, Z 6.
        #expect(encoded.sources == [[4, 5, 6], [7]])
        #expect(encoded.references == [[[5, 4], [4]], [[6]]])
        #expect(encoded.examples == [PairExample(group: 0, reference: 0), PairExample(group: 0, reference: 1),
                                     PairExample(group: 1, reference: 0)])
        let batch = encoded.batch([2, 0, 1])
        #expect(batch.sourceShape == [3, 3] && batch.targetShape == [4, 3])
        #expect(batch.source.ids == [7, 4, 4,
                                     0, 5, 5,
                                     0, 6, 6])
        #expect(batch.source.lengths == [1, 3, 3])
        #expect(batch.target.ids == [2, 2, 2,
                                     6, 5, 4,
                                     3, 4, 3,
                                     0, 3, 0])
        #expect(batch.target.lengths == [3, 4, 3])
        #expect(batch.groups == [1, 0, 0])
        let sources = encoded.sourceBatch(groups: [1, 0])
        #expect(sources.ids == [7, 4, 0, 5, 0, 6] && sources.lengths == [1, 3] && sources.steps == 3)

        // Validation data takes the training vocabularies; unseen tokens are unknown.
        let other = try SequencePairs(text: "dq\tZ W\n", targetTokenizer: .word)
        let encodedOther = EncodedSequencePairs(other, vocabulariesOf: encoded)
        #expect(encodedOther.sources == [[7, SequenceVocabulary.unknownID]])
        #expect(encodedOther.references == [[[6, SequenceVocabulary.unknownID]]])
    }

    // MARK: The committed CMU dictionary excerpt

    static func excerpt(_ name: String) throws -> SequencePairs {
        try SequencePairs(contentsOf: TestDatasets.path("cmudict/" + name), targetTokenizer: .word)
    }

    @Test("the CMU dictionary excerpt reads as its README says, and fits the vocabularies the PyTorch script fits")
    func cmudictExcerpt() throws {
        let training = try Self.excerpt("g014b2b.train")
        #expect(training.pairCount == 2263 && training.count == 2137)
        #expect(training.groups.filter { $0.references.count > 1 }.count == 108)
        #expect(training.groups[0].source == "AAA" && training.groups[0].references == [["T", "R", "IH", "P", "AH", "L", "EY"]])
        let test = try Self.excerpt("g014b2b.test")
        #expect(test.pairCount == 321 && test.count == 300)
        #expect(test.groups.filter { $0.references.count > 1 }.count == 20)
        #expect(Set(training.groups.map(\.source)).isDisjoint(with: test.groups.map(\.source)))

        let split = try training.split(validationFraction: 0.05, seed: 0)
        let encoded = try EncodedSequencePairs(fitting: split.training)
        #expect(encoded.sourceVocabulary.count == 31 && encoded.targetVocabulary.count == 43)
        #expect(encoded.sourceVocabulary.tokens[4...7] == ["E", "A", "R", "I"])
        #expect(encoded.targetVocabulary.tokens[4...7] == ["AH", "N", "L", "T"])
        #expect(encoded.count == split.training.pairCount)
    }
}
