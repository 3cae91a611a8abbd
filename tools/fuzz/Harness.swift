// libFuzzer entry point over Recur's parsers, compiled together with their sources by
// tools/fuzz.sh (one binary per parser, chosen with -D FUZZ_<PARSER>). Each input must parse or
// throw a RecurError; any other error, a trap, a leak or an out-of-bounds access (AddressSanitizer)
// is a finding, and libFuzzer saves the input as crash-<hash>.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        try parse(bytes)
    } catch is RecurError {
        // A rejection with a typed error is the expected outcome for most inputs.
    } catch {
        fatalError("parser threw \(type(of: error)), not a RecurError: \(error)")
    }
    return 0
}

/// Splits off the first byte as a choice of options, so one corpus explores every variant.
private func choice(_ bytes: [UInt8]) -> (UInt8, [UInt8]) {
    bytes.isEmpty ? (0, []) : (bytes[0], Array(bytes.dropFirst()))
}

private func parse(_ bytes: [UInt8]) throws {
    #if FUZZ_SAFETENSORS
    let file = try SafeTensorsFile(bytes: bytes, source: "fuzz")
    for name in file.names {
        switch try file.dtype(of: name) {
        case .float32, .float64, .float16, .bfloat16: _ = try file.floats(name)
        case .int64: _ = try file.int64s(name)
        case .int32: _ = try file.int32s(name)
        default: break
        }
    }
    #elseif FUZZ_DELIMITED
    let (options, rest) = choice(bytes)
    let formats = [DelimitedTextFormat.csv, .tsv, DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none)]
    let dataset = try TextClassificationDataset.readDelimited(
        bytes: rest, source: "fuzz", format: formats[Int(options % 3)], labelColumn: .index(0), textColumn: .index(1),
        labels: options & 4 == 0 ? .sorted : .firstSeen, onMalformed: options & 8 == 0 ? .fail : .skip)
    precondition(dataset.texts.count == dataset.labels.count)
    #elseif FUZZ_SERIES
    let (options, rest) = choice(bytes)
    let series = try NumericSeries.readCSV(bytes: rest, source: "fuzz", onMalformed: options & 1 == 0 ? .fail : .skip)
    precondition(series.values.allSatisfy { $0.isFinite })
    #elseif FUZZ_LINES
    let (options, rest) = choice(bytes)
    let split = rest.isEmpty ? 0 : Int(options) % (rest.count + 1)
    _ = try TextClassificationDataset.readLines(
        classContents: [("neg", "neg", Array(rest[..<split])), ("pos", "pos", Array(rest[split...]))],
        onMalformed: options & 1 == 0 ? .fail : .skip)
    #elseif FUZZ_TEXT
    let (options, rest) = choice(bytes)
    let text = TokenStream.decodedText(rest)
    let stream = options & 1 == 0
        ? try TokenStream.characters(in: text, lowercases: options & 2 != 0, numWords: options & 4 == 0 ? nil : Int(options >> 3))
        : TokenStream(ids: [], vocabulary: try Vocabulary(fittingTexts: [text], tokenizer: WordTokenizer()))
    _ = try stream.vocabulary.decode(stream.ids)
    #elseif FUZZ_VOCABULARY
    let vocabulary = try Vocabulary(serialized: String(decoding: bytes, as: UTF8.self))
    let reread = try Vocabulary(serialized: vocabulary.serialized)
    precondition(reread == vocabulary, "a serialized vocabulary reads back differently")
    #elseif FUZZ_REVIEWNAMES
    let name = String(decoding: bytes, as: UTF8.self)
    if name.hasSuffix(".txt") { _ = try ReviewFileName(name, folder: "fuzz", className: "pos") }
    #else
    #error("compile with one of -D FUZZ_SAFETENSORS, FUZZ_DELIMITED, FUZZ_SERIES, FUZZ_LINES, FUZZ_TEXT, FUZZ_VOCABULARY, FUZZ_REVIEWNAMES")
    #endif
}
