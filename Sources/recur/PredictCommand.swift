import ArgumentParser
import Recur

#if canImport(Glibc)
import Glibc
#endif

/// `recur predict`: a checkpoint's predictions on new, unlabelled input, streamed.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Predict with a classifier, tagger, language model or forecaster on new input.",
        discussion: """
            Reads standard input, or --input, and encodes it as the training data was (tokenizer, \
            vocabulary, sequence length, padding, classes, standardisation, series transform: all \
            recorded in the checkpoint). Classifier: one text per line in, one JSON object per line out, \
            {"label":...,"probabilities":{...}}; a blank line gives {"error":"empty line"}. Tagger: \
            space-separated tokens per line in, {"tags":[...]} out with one tag per token; lines \
            longer than the training length are tagged in pieces of that length; --probabilities \
            adds "probabilities":[[...],...], every tag id's probability at each token. Language \
            model: a text per line in, {"next":...,"probability":...} out, the most probable next \
            token; --probabilities adds "probabilities":[...], every vocabulary id's. Lines are read, \
            predicted and written a batch at a time. Forecaster: the series in (the value column \
            and header of the training file, or one value per line), the next horizon values after \
            its last value out as CSV rows step,value, in the series' units whatever the transform \
            (--transform of recur train); only the last --max-length values are read \
            and kept. A forecaster of several columns reads a CSV with the training file's \
            columns and prints rows step,<target>,... for each target column. To continue a text \
            token by token, use recur generate.
            """
    )

    @OptionGroup var device: DeviceOptions
    @Option(help: "A checkpoint written by recur train (best.safetensors or last.safetensors).") var checkpoint: String
    @Option(help: "Read this file instead of standard input.") var input: String?
    @Option(help: "Lines (or pieces of a long tagged line) run through the model at once.") var batchSize = 64
    @Flag(help: "Taggers and language models: also print every id's probability.") var probabilities = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let backend = try device.makeBackend()
        let saved = try Checkpoint(contentsOf: checkpoint)
        let predictor = try Predictor(checkpoint: saved, backend: backend, batchSize: batchSize)
        var lines = try LineReader(path: input)
        defer { lines.close() }
        switch predictor.task {
        case .classify, .tag, .lm:
            while true {
                var batch: [String] = []
                while batch.count < batchSize, let line = try lines.next() { batch.append(line) }
                guard !batch.isEmpty else { break }
                for line in try Self.predictions(of: batch, predictor, probabilities: probabilities) { print(line) }
                // Each batch is out before the next is read: a pipeline sees results as they come.
                fflush(nil)
            }
        case .forecast:
            try forecast(predictor, lines: &lines)
        }
    }

    /// One JSON line per line of `batch`; `probabilities` adds every id's probability for
    /// taggers and language models.
    static func predictions(of batch: [String], _ predictor: Predictor, probabilities: Bool = false) throws -> [String] {
        if predictor.task == .tag {
            let tags = try predictor.predict(tokenLines: batch)
            guard probabilities else { return tags.map { "{\"tags\":" + jsonArray($0) + "}" } }
            let distributions = try predictor.tagProbabilities(tokens: batch.map { $0.split(separator: " ").map(String.init) })
            return zip(tags, distributions).map { tags, steps in
                "{\"tags\":" + jsonArray(tags) + ",\"probabilities\":[" + steps.map(jsonArray).joined(separator: ",") + "]}"
            }
        }
        // A blank line is no text to classify or continue: it is answered as one, keeping the
        // output in step with the input, rather than read as a text of unknown words.
        let isBlank = batch.map { $0.allSatisfy { $0 == " " || $0 == "\t" } }
        let texts = zip(batch, isBlank).filter { !$0.1 }.map(\.0)
        let empty = #"{"error":"empty line"}"#
        if predictor.task == .lm {
            var distributions = try predictor.nextTokenProbabilities(texts: texts).makeIterator()
            let tokens = predictor.vocabulary?.tokens ?? []
            return isBlank.map { blank in
                guard !blank, let distribution = distributions.next() else { return empty }
                let best = distribution.indices.max { distribution[$0] < distribution[$1] } ?? 0
                let line = "{\"next\":" + quotedJSON(tokens[best]) + ",\"probability\":" + JSONScalar.number(distribution[best]).text
                return line + (probabilities ? ",\"probabilities\":" + jsonArray(distribution) : "") + "}"
            }
        }
        var classified = try predictor.predict(texts: texts).makeIterator()
        return isBlank.map { blank in
            guard !blank, let result = classified.next() else { return empty }
            let probabilities = predictor.classNames.map { ($0, JSONScalar.number(result.probabilities[$0] ?? .nan)) }
            return "{\"label\":" + quotedJSON(result.label) + ",\"probabilities\":" + jsonObject(probabilities) + "}"
        }
    }

    private static func jsonArray(_ strings: [String]) -> String {
        "[" + strings.map(quotedJSON).joined(separator: ",") + "]"
    }

    private static func jsonArray(_ numbers: [Double]) -> String {
        "[" + numbers.map { JSONScalar.number($0).text }.joined(separator: ",") + "]"
    }

    /// Reads the series, keeping only the values the model reads, and prints the forecast.
    private func forecast(_ predictor: Predictor, lines: inout LineReader) throws {
        if predictor.source.valueColumns != nil { return try forecastColumns(predictor, lines: &lines) }
        let length = predictor.sequenceLength
        var reader = Predictor.SeriesLineReader(for: predictor, source: input ?? "stdin")
        var recent: [Float] = []
        var count = 0
        while let line = try lines.next() {
            guard let value = try reader.value(of: line) else { continue }
            recent.append(value)
            count += 1
            // Trimmed in halves, so that keeping the last T values costs O(1) per value.
            if recent.count >= 2 * length { recent.removeFirst(recent.count - length) }
        }
        guard count >= length else {
            throw RecurError.invalidArgument(
                operation: "recur predict", detail: "\(input ?? "stdin") holds \(count) values, but the model reads "
                    + "the last \(length) (the --max-length it was trained with)")
        }
        let values = try predictor.predict(series: Array(recent.suffix(length)))
        print("step,value")
        for (step, value) in values.enumerated() { print("\(step + 1),\(value)") }
    }
}

extension PredictCommand {
    /// A forecaster of several columns: reads the whole input as its training file was read (the
    /// same value columns, by index or header name) and prints `step,<target>,…` rows for the
    /// next horizon steps from its last --max-length rows.
    private func forecastColumns(_ predictor: Predictor, lines: inout LineReader) throws {
        var bytes: [UInt8] = []
        while let line = try lines.next() { bytes += Array(line.utf8) + [UInt8(ascii: "\n")] }
        let read = try predictor.source.readColumns(bytes: bytes, source: input ?? "stdin").columns
        guard read.names.count == predictor.features else {
            throw RecurError.invalidArgument(
                operation: "recur predict", detail: "\(input ?? "stdin") gives the columns \(read.names), but the "
                    + "model reads \(predictor.features): \(predictor.columnNames)")
        }
        let length = predictor.sequenceLength
        guard read.count >= length else {
            throw RecurError.invalidArgument(
                operation: "recur predict", detail: "\(input ?? "stdin") holds \(read.count) rows, but the model reads "
                    + "the last \(length) (the --max-length it was trained with)")
        }
        let steps = (read.count - length ..< read.count).map { t in read.columns.map { $0[t] } }
        let forecast = try predictor.predict(steps: steps)
        print((["step"] + predictor.columnNames.prefix(predictor.targetCount)).joined(separator: ","))
        for (step, values) in forecast.enumerated() {
            print(([String(step + 1)] + values.map { "\($0)" }).joined(separator: ","))
        }
    }
}

/// Lines of a file or of standard input, one at a time, without their line break (LF or CRLF).
struct LineReader {
    private let file: UnsafeMutablePointer<FILE>
    private let path: String
    private let ownsFile: Bool
    private var buffer: UnsafeMutablePointer<CChar>?
    private var capacity = 0

    init(path: String?) throws {
        guard let path else {
            guard let input = fdopen(0, "r") else {
                throw RecurError.io(path: "stdin", detail: "cannot read: \(String(cString: strerror(errno)))")
            }
            (file, self.path, ownsFile) = (input, "stdin", false)
            return
        }
        guard let opened = fopen(path, "r") else {
            throw RecurError.io(path: path, detail: "cannot open: \(String(cString: strerror(errno)))")
        }
        (file, self.path, ownsFile) = (opened, path, true)
    }

    /// The next line, or nil at the end.
    /// - Throws: `RecurError.io` when reading fails (a folder given as the file, a device error).
    mutating func next() throws -> String? {
        let count = getline(&buffer, &capacity, file)
        guard count >= 0, let buffer else {
            if ferror(file) != 0 {
                throw RecurError.io(path: path, detail: "cannot read: \(String(cString: strerror(errno)))")
            }
            return nil
        }
        var bytes = UnsafeBufferPointer(start: UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self),
                                        count: count)[...]
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    func close() {
        free(buffer)
        if ownsFile { fclose(file) }
    }
}
