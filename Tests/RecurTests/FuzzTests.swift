import Foundation
import Testing
@testable import Recur

// Seeded mutation fuzzing of every reader of untrusted input. Each test mutates valid seed
// inputs (`Mutator`) and hands each result to one parser, which must either accept it, with the
// result's own invariants holding, or throw a `RecurError` that names its source or operation
// and says what is wrong. Anything else (a trap, another error type, a hang) fails the run.
//
// The default iteration counts add up to over 100,000 inputs and fit CI's time in a debug build.
// `tools/fuzz.sh` runs longer: RECUR_FUZZ_ITERATIONS sets every test's count, RECUR_FUZZ_SEED
// the seed. A failure prints the seed and iteration; the input is reproduced from those alone.

/// Iteration counts and seed, overridable from the environment for long runs.
enum FuzzBudget {
    static func iterations(_ defaultCount: Int) -> Int {
        environmentInteger("RECUR_FUZZ_ITERATIONS").map { max(1, $0) } ?? defaultCount
    }

    static var seed: UInt64 {
        environmentInteger("RECUR_FUZZ_SEED").map { UInt64(truncatingIfNeeded: $0) } ?? 0x5EED_F022
    }

    private static func environmentInteger(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) }
    }
}

/// What a fuzz run saw: inputs the parser accepted and rejected. Printed so that CI logs show
/// how much of each parser the mutations reached.
struct FuzzTally: CustomStringConvertible {
    let parser: String
    var accepted = 0
    var rejected = 0
    var total: Int { accepted + rejected }
    var description: String { "fuzz \(parser): \(total) inputs, \(accepted) accepted, \(rejected) rejected" }
}

/// Feeds `iterations` mutations of `seeds` to `parse`. Accepting or throwing a `RecurError`
/// with context passes; throwing anything else records an issue with the reproducing input.
func fuzz(
    _ parser: String, seeds: [[UInt8]], dictionary: [String] = [], iterations: Int, seedOffset: UInt64 = 0,
    maximumLength: Int = 4096, sourceLocation: SourceLocation = #_sourceLocation,
    _ parse: ([UInt8]) throws -> Void
) -> FuzzTally {
    var mutator = Mutator(seed: FuzzBudget.seed &+ seedOffset, dictionary: dictionary, maximumLength: maximumLength)
    var tally = FuzzTally(parser: parser)
    for seed in seeds {
        check(seed, parser: parser, iteration: -1, tally: &tally, sourceLocation: sourceLocation, parse)
    }
    for iteration in 0..<iterations {
        let input = mutator.mutate(seeds)
        check(input, parser: parser, iteration: iteration, tally: &tally, sourceLocation: sourceLocation, parse)
    }
    print(tally)
    return tally
}

private func check(
    _ input: [UInt8], parser: String, iteration: Int, tally: inout FuzzTally, sourceLocation: SourceLocation,
    _ parse: ([UInt8]) throws -> Void
) {
    do {
        try parse(input)
        tally.accepted += 1
    } catch let error as RecurError {
        tally.rejected += 1
        if let problem = missingContext(error) {
            Issue.record("\(parser) iteration \(iteration): \(problem) in \(error); input \(hex(input))",
                         sourceLocation: sourceLocation)
        }
    } catch {
        let message = "\(parser) iteration \(iteration): threw \(type(of: error)) \(error), not a RecurError; "
            + "input \(hex(input))"
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
    }
}

/// Why `error` would not help a user find the problem, or nil when it names where and what.
func missingContext(_ error: RecurError) -> String? {
    let (place, detail): (String, String) = switch error {
    case let .shapeMismatch(operation, detail), let .invalidArgument(operation, detail),
         let .wrongDevice(operation, detail), let .nonFinite(operation, detail):
        (operation, detail)
    case let .outOfMemory(operation, _, detail): (operation, detail)
    case let .deviceNotFound(specification, detail): (specification.isEmpty ? "-" : specification, detail)
    case let .io(path, detail): (path, detail)
    case let .malformed(source, detail): (source, detail)
    }
    if place.isEmpty { return "no source or operation" }
    if detail.trimmingCharacters(in: .whitespaces).isEmpty { return "no detail" }
    return nil
}

private func hex(_ bytes: [UInt8]) -> String {
    let shown = bytes.prefix(512).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
    return "[\(bytes.count) bytes] " + shown.joined() + (bytes.count > 512 ? "…" : "")
}

/// The first `count` bytes of a committed dataset excerpt (`Datasets/`), as a realistic seed.
private func datasetSeed(_ relative: String, prefix count: Int) throws -> [UInt8] {
    Array(try TestDatasets.bytes(relative).prefix(count))
}

@Suite("Parser fuzzing", .timeLimit(.minutes(2)))
struct FuzzTests {
    // MARK: safetensors

    /// Small valid files covering every dtype reader, metadata, scalars and empty tensors.
    static func safeTensorsSeeds() throws -> [[UInt8]] {
        var mixed = SafeTensorsWriter(metadata: ["cell": "lstm", "vocabulary": #"["","<OOV>","a"]"#])
        try mixed.add("weight_ih_l0", floats: [1, -2, 3, 0.5, 0, -0.25], shape: [3, 2])
        try mixed.add("bias", doubles: [0.1, -1e300], shape: [2])
        try mixed.add("ids", int32s: [0, 7, .max], shape: [3])
        try mixed.add("steps", int64s: [.min, 2], shape: [2])
        try mixed.add("scalar", floats: [42], shape: [])
        try mixed.add("empty", floats: [], shape: [0, 4])
        var single = SafeTensorsWriter()
        try single.add("x", floats: [1, 2, 3, 4], shape: [2, 2])
        let half = Array(#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#.utf8)
        var halfFile: [UInt8] = []
        withUnsafeBytes(of: UInt64(half.count).littleEndian) { halfFile.append(contentsOf: $0) }
        halfFile += half + [0x00, 0x3C, 0x00, 0xFC, 0x80, 0x3F]
        return [mixed.serialized(), single.serialized(), SafeTensorsWriter().serialized(), halfFile]
    }

    /// Reads every tensor of an accepted file with the reader its dtype allows, and checks that
    /// nothing read exceeds what the file holds (no allocation beyond the input's size).
    static func readEverything(_ file: SafeTensorsFile, inputSize: Int) throws {
        var elementsRead = 0
        for name in file.names {
            let info = try file.info(name)
            let count: Int
            switch info.dtype {
            case .float32, .float64, .float16, .bfloat16: count = try file.floats(name).count
            case .int64: count = try file.int64s(name).count
            case .int32: count = try file.int32s(name).count
            default: count = info.shape.dimensions.reduce(1, *)
            }
            #expect(count == info.shape.dimensions.reduce(1, *), "\(name): \(count) values for \(info.shape)")
            #expect(info.byteRange.count <= inputSize)
            elementsRead += count
        }
        #expect(elementsRead <= inputSize, "read \(elementsRead) elements from \(inputSize) bytes")
    }

    @Test func safeTensorsByteMutations() throws {
        let tally = fuzz("safetensors", seeds: try Self.safeTensorsSeeds(),
                         dictionary: ["\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"F32\"",
                                      "\"I64\"", "\"F16\"", "\"BOOL\"", "[]", "[0,0]"],
                         iterations: FuzzBudget.iterations(30_000)) { bytes in
            try Self.readEverything(try SafeTensorsFile(bytes: bytes, source: "fuzz.safetensors"), inputSize: bytes.count)
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    /// Headers built from boundary integers: huge and negative lengths, dimensions whose
    /// product overflows, offsets that overlap, leave gaps or run past the file, length fields
    /// that lie. The data section is small, so a parser that trusted a header would allocate or
    /// read far beyond the input.
    @Test func safeTensorsBoundaryHeaders() throws {
        var mutator = Mutator(seed: FuzzBudget.seed &+ 1)
        let integers = Mutator.boundaryIntegers + ["0", "1", "2", "3", "4", "6", "12", "16", "24"]
        let dtypes = SafeTensorsDType.allCases.map(\.rawValue) + ["f32", "F31", ""]
        var tally = FuzzTally(parser: "safetensors headers")
        for _ in 0..<FuzzBudget.iterations(10_000) {
            var entries: [String] = []
            for index in 0..<mutator.integer(in: 0...3) {
                let rank = mutator.integer(in: 0...4)
                let shape = (0..<rank).map { _ in mutator.pick(integers) }.joined(separator: ",")
                let begin = mutator.pick(integers)
                let end = mutator.pick(integers)
                entries.append(#""t\#(index)":{"dtype":"\#(mutator.pick(dtypes))","shape":[\#(shape)],"data_offsets":[\#(begin),\#(end)]}"#)
            }
            let header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
            let dataLength = mutator.pick([0, 1, 4, 8, 12, 16, 24, 64])
            var bytes: [UInt8] = []
            let lengthField: UInt64 = switch mutator.integer(in: 0...7) {
            case 0: UInt64.max
            case 1: UInt64(Int64.max) + 1
            case 2: UInt64(header.count + dataLength + 1)
            case 3: UInt64(max(header.count - 1, 0))
            default: UInt64(header.count)
            }
            withUnsafeBytes(of: lengthField.littleEndian) { bytes.append(contentsOf: $0) }
            bytes += header + (0..<dataLength).map { UInt8(truncatingIfNeeded: $0 &* 37) }
            check(bytes, parser: tally.parser, iteration: tally.total, tally: &tally, sourceLocation: #_sourceLocation) {
                try Self.readEverything(try SafeTensorsFile(bytes: $0, source: "boundary.safetensors"), inputSize: $0.count)
            }
        }
        print(tally)
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    // MARK: Delimited text

    static func delimitedSeeds() -> [[UInt8]] {
        let handMade = [
            "label,text\nham,\"Go until jurong point, crazy..\"\nspam,\"Free \"\"entry\"\" in 2 a wkly comp\"\n",
            "ham\tOk lar... Joking wif u oni...\nspam\tWINNER!! \"claim\" now\r\nham\tU dun say so early hor\n",
            "\"Month\",\"Passengers\"\r\n\"1949-01\",112\r\n\"1949-02\",118\r\n\"1949-03\",-1.5e3",
            "a,b,c\n1,2,3\n\n4,\"multi\nline\",6\n",
        ]
        return handMade.map { Array($0.utf8) } + [[0xEF, 0xBB, 0xBF] + Array("x,y\n1,caf\u{E9}\n".utf8)]
    }

    @Test func delimitedTextClassification() throws {
        let seeds = Self.delimitedSeeds() + [try datasetSeed("sms_spam/SMSSpamCollection", prefix: 600)]
        let formats = [
            DelimitedTextFormat.csv, .tsv, DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none),
            DelimitedTextFormat(delimiter: ",", hasHeader: false),
        ]
        let mappings: [LabelMapping] = [.sorted, .firstSeen, .explicit(["ham", "spam"])]
        var choice = SeededGenerator(seed: FuzzBudget.seed &+ 2)
        let tally = fuzz("delimited text", seeds: seeds, iterations: FuzzBudget.iterations(14_000), seedOffset: 2) { bytes in
            let format = formats[Int.random(in: 0..<formats.count, using: &choice)]
            let mapping = mappings[Int.random(in: 0..<mappings.count, using: &choice)]
            let policy: MalformedRowPolicy = Bool.random(using: &choice) ? .fail : .skip
            let named = format.hasHeader && Bool.random(using: &choice)
            let dataset = try TextClassificationDataset.readDelimited(
                bytes: bytes, source: "fuzz.csv", format: format,
                labelColumn: named ? .name("label") : .index(0), textColumn: named ? .name("text") : .index(1),
                labels: mapping, onMalformed: policy)
            #expect(dataset.texts.count == dataset.labels.count)
            #expect(dataset.labels.allSatisfy { $0 >= 0 && Int($0) < dataset.classNames.count })
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    @Test func numericSeriesCSV() throws {
        let seeds = Self.delimitedSeeds() + [
            try datasetSeed("macrodata/macrodata.csv", prefix: 400),
            Array(MonthlySeriesFile(seed: 3, years: 2).text.utf8),
        ]
        var choice = SeededGenerator(seed: FuzzBudget.seed &+ 3)
        let tally = fuzz("numeric series", seeds: seeds, iterations: FuzzBudget.iterations(10_000), seedOffset: 3) { bytes in
            let policy: MalformedRowPolicy = Bool.random(using: &choice) ? .fail : .skip
            let series = try NumericSeries.readCSV(bytes: bytes, source: "fuzz.csv", onMalformed: policy)
            #expect(series.values.allSatisfy { $0.isFinite })
            #expect(series.timestamps.count == series.values.count)
            if series.count >= 3 {
                let windows = try ForecastWindows(values: series.values, length: 2)
                #expect(windows.count == series.count - 2)
            }
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    // MARK: Plain text

    @Test func perClassLineFiles() throws {
        let seeds = [
            Array("the rock is destined to be the 21st century's new \" conan \"\nit's a lovely film\r\n".utf8),
            Array("simplistic , silly and tedious . \nboring\n".utf8),
            Windows1252Lines(seed: 4, count: 8).bytes,
        ]
        var choice = SeededGenerator(seed: FuzzBudget.seed &+ 4)
        let tally = fuzz("per-class lines", seeds: seeds, iterations: FuzzBudget.iterations(10_000), seedOffset: 4) { bytes in
            let split = Int.random(in: 0...bytes.count, using: &choice)
            let policy: MalformedRowPolicy = Bool.random(using: &choice) ? .fail : .skip
            let dataset = try TextClassificationDataset.readLines(
                classContents: [("neg", "neg.txt", Array(bytes[..<split])), ("pos", "pos.txt", Array(bytes[split...]))],
                onMalformed: policy)
            #expect(dataset.texts.allSatisfy { !$0.isEmpty })
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    /// Text files for language models, both tokenisations, with the vocabulary fitted to the
    /// text or given: every id must index the vocabulary and decode back.
    @Test func tokenStreamText() throws {
        let seeds = [
            Array("First Citizen:\nBefore we proceed any further, hear me speak.\n".utf8),
            Array("Caf\u{E9} na\u{EF}ve <br /><BR>r\u{E9}sum\u{E9} \u{1F600}\r\n\t".utf8),
            try datasetSeed("tinyshakespeare/input.txt", prefix: 300),
            Windows1252Lines(seed: 5, count: 5).bytes,
        ]
        let given = try Vocabulary(words: ["e", "t", " ", "\n", "the", "br"])
        var choice = SeededGenerator(seed: FuzzBudget.seed &+ 5)
        let tally = fuzz("token stream", seeds: seeds, iterations: FuzzBudget.iterations(10_000), seedOffset: 5,
                         maximumLength: 1024) { bytes in
            let text = TokenStream.decodedText(bytes)
            let vocabulary: Vocabulary? = Bool.random(using: &choice) ? given : nil
            let numWords: Int? = Bool.random(using: &choice) ? nil : Int.random(in: 0...12, using: &choice)
            let stream = Bool.random(using: &choice)
                ? try TokenStream.characters(in: text, lowercases: Bool.random(using: &choice), vocabulary: vocabulary,
                                             numWords: numWords)
                : try TokenStream(
                    ids: (vocabulary ?? Vocabulary(fittingTexts: [text], tokenizer: WordTokenizer(), numWords: numWords))
                        .encode(text, tokenizer: WordTokenizer()),
                    vocabulary: vocabulary ?? Vocabulary(fittingTexts: [text], tokenizer: WordTokenizer(), numWords: numWords))
            #expect(stream.ids.allSatisfy { $0 >= 1 && Int($0) < stream.vocabulary.count })
            _ = try stream.vocabulary.decode(stream.ids)
            if stream.count > 7 {
                let batches = try stream.batches(sequenceLength: 3, batchSize: 2)
                #expect(batches.allSatisfy { $0.inputs.count == 6 })
            }
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    /// Serialized vocabularies, as checkpoint metadata stores them: an accepted one must survive
    /// a second round trip unchanged.
    @Test func serializedVocabulary() throws {
        let seeds = [
            try Vocabulary(words: ["the", "a", "\n", "\"quoted\"", "caf\u{E9}", "\u{1F600}", "tab\there"]).serialized,
            #"["","<OOV>","\u00e9","\ud83d\ude00","\\","\/"]"#,
        ].map { Array($0.utf8) }
        let tally = fuzz("vocabulary", seeds: seeds, dictionary: ["\"<OOV>\"", "\"\"", "\\ud83d", "\\udc00"],
                         iterations: FuzzBudget.iterations(10_000), seedOffset: 6) { bytes in
            let vocabulary = try Vocabulary(serialized: String(decoding: bytes, as: UTF8.self))
            #expect(try Vocabulary(serialized: vocabulary.serialized) == vocabulary)
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    // MARK: aclImdb

    @Test func imdbReviewFileNames() throws {
        let seeds = ["0_3.txt", "12500_10.txt", "7_7.txt", "10_1.txt", "123_4.txt"].map { Array($0.utf8) }
        var choice = SeededGenerator(seed: FuzzBudget.seed &+ 7)
        let tally = fuzz("review file names", seeds: seeds, dictionary: ["_", ".txt", "+", "-", "٣"],
                         iterations: FuzzBudget.iterations(10_000), seedOffset: 7, maximumLength: 64) { bytes in
            let name = String(decoding: bytes, as: UTF8.self)
            guard name.hasSuffix(".txt") else { return }
            let className = Bool.random(using: &choice) ? "neg" : "pos"
            let parsed = try ReviewFileName(name, folder: "aclImdb/train/\(className)", className: className)
            #expect(parsed.id >= 0)
            #expect((className == "neg" ? 1...4 : 7...10).contains(parsed.rating))
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    /// Whole aclImdb folders on disk with mutated names and contents (few: each writes files).
    @Test func imdbFolders() throws {
        var mutator = Mutator(seed: FuzzBudget.seed &+ 8, maximumLength: 64)
        let nameSeeds = ["0_3.txt", "1_10.txt", "2_8.txt", "3_1.txt", ".DS_Store", "urls_pos.txt"].map { Array($0.utf8) }
        let textSeeds = [Array("A <br />good film.".utf8), [0x93, 0x61, 0x94]]
        var tally = FuzzTally(parser: "aclImdb folders")
        for iteration in 0..<FuzzBudget.iterations(40) {
            let folder = try TemporaryFolder()
            for className in ["neg", "pos"] {
                for _ in 0..<3 {
                    let name = String(decoding: mutator.mutate(nameSeeds), as: UTF8.self)
                    guard !name.contains("/"), !name.contains("\0"), !name.isEmpty, name != ".", name != ".." else { continue }
                    // A name the file system refuses (too long) is simply not there.
                    _ = try? folder.write("train/\(className)/\(name)", bytes: mutator.mutate(textSeeds))
                }
            }
            let policy: MalformedRowPolicy = iteration.isMultiple(of: 2) ? .fail : .skip
            check([], parser: tally.parser, iteration: iteration, tally: &tally, sourceLocation: #_sourceLocation) { _ in
                let reviews = try IMDBReviews.read(root: folder.path, split: .train, onMalformed: policy)
                #expect(reviews.ratings.count == reviews.reviews.count)
            }
        }
        print(tally)
    }

    // MARK: Device specifications

    /// `--device` and RECUR_DEVICE text. Rejections list the devices present, so this enumerates
    /// OpenCL devices each time and runs fewer inputs.
    @Test func deviceSpecifications() throws {
        let seeds = ["cpu", "opencl", "opencl:0", "opencl:pthread", " auto ", "OpenCL: 1 "].map { Array($0.utf8) }
        let tally = fuzz("device specification", seeds: seeds, dictionary: ["opencl:", ":", "-"],
                         iterations: FuzzBudget.iterations(2_000), seedOffset: 9, maximumLength: 64) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            let specification = try DeviceSpecification(parsing: text)
            #expect(try DeviceSpecification(parsing: specification.description) == specification)
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }
}
