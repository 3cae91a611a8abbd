// Running a trained model on new, unlabelled input: texts for classifiers, token lines for
// taggers, the recent values of a series for forecasters. The input is encoded as the model's
// training data was, from what the checkpoint recorded (`RecordedData`): the same tokenizer,
// vocabulary, sequence length, padding and truncating sides and masking, the same class and tag
// order, the same standardisation and series transform.
//
// Shape legend: B sequences in a batch, T = the recorded sequence length, K outputs, H horizon.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Predictions of a trained classifier, tagger, language model or forecaster.
///
/// For a language model the prediction is the distribution of the token after a text; continuing
/// the text one sampled token at a time is `TextGenerator`'s (`recur generate`) work.
public struct Predictor {
    /// One text's class: the most probable and every class's probability.
    public struct Classification: Sendable, Equatable {
        /// The most probable class.
        public var label: String
        /// Class name to probability: the sigmoid of the one logit of a two-class model (the
        /// second class's; the first has 1 − p), else the softmax of the logits.
        public var probabilities: [String: Double]
    }

    /// The sequences (classifier and tagger) or windows (forecaster) run through the model at
    /// once when the caller gives no batch size: memory stays bounded by it, not by the input.
    public static let defaultBatchSize = 64

    /// The model's architecture, from the checkpoint.
    public let specification: ModelSpecification
    /// The model with the checkpoint's weights.
    public let model: Sequential
    /// How the training data was read: tokenizer, sequence length, padding, horizon, columns.
    public let source: DataSource
    /// The ids of the input tokens (classifier and tagger).
    public let vocabulary: Vocabulary?
    /// Class names in label order (classifier).
    public let classNames: [String]
    /// The tag ids (tagger).
    public let tags: Vocabulary?
    /// The forecaster's standardisation; identity when none was recorded. With several columns,
    /// the first target's (see `standardizations`).
    public let standardization: Standardization
    /// A forecaster of several columns: each input feature's standardisation, in
    /// `columnNames` order; `[standardization]` for one column.
    public let standardizations: [Standardization]
    /// A forecaster of several columns: the column each input feature reads, targets first;
    /// empty for one column.
    public let columnNames: [String]
    /// J: the columns a forecast predicts, the first J of `columnNames` (1 for one column).
    public let targetCount: Int
    /// How the forecaster's windows are scaled (`source.transform`).
    public var transform: SeriesTransform { source.transform }
    /// Sequences per forward pass.
    public var batchSize: Int

    /// What the model predicts.
    public var task: ModelTask { specification.task }
    /// T: the longest text a classifier reads (longer ones are truncated as in training), the
    /// tokens a tagger reads at once, the values a forecaster reads.
    public var sequenceLength: Int { source.sequenceLength }
    /// H: the steps a forecast predicts (its values, for one target column).
    public var horizon: Int { specification.outputSize / targetCount }
    /// F: the values a forecaster reads per step.
    public var features: Int { specification.inputFeatures ?? 1 }

    /// A predictor for the model in `checkpoint`, on `backend`.
    /// - Throws: `RecurError.invalidArgument` when the recorded data does not fit the model (no
    ///   vocabulary, classes or tags, or as many as the model has no outputs for);
    ///   `RecurError.malformed` for unreadable metadata.
    public init(checkpoint: Checkpoint, backend: any Backend, batchSize: Int = Predictor.defaultBatchSize) throws {
        let operation = "Predictor"
        let specification = checkpoint.specification
        guard batchSize >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "batch size must be at least 1, got \(batchSize)")
        }
        let recorded = try RecordedData(metadata: checkpoint.metadata)
        guard let source = recorded.source else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the checkpoint records no data source (data.source), so how its "
                    + "inputs were read is unknown")
        }
        guard source.task == specification.task else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the checkpoint holds a \(specification.task) model but records "
                    + "\(source.format.rawValue) data, which is for \(source.task)")
        }
        func missing(_ what: String, _ key: String) -> RecurError {
            .invalidArgument(operation: operation, detail: "the \(specification.task) checkpoint records no \(what) (\(key))")
        }
        var classNames: [String] = []
        switch specification.task {
        case .classify:
            guard recorded.vocabulary != nil else { throw missing("vocabulary", RecordedData.vocabularyKey) }
            guard let names = recorded.classNames else { throw missing("class names", RecordedData.classesKey) }
            let outputs = names.count == 2 ? 1 : names.count
            guard names.count >= 2, outputs == specification.outputSize else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the checkpoint records \(names.count) classes \(names) but its "
                        + "model has \(specification.outputSize) outputs")
            }
            classNames = names
        case .lm:
            guard recorded.vocabulary != nil else { throw missing("vocabulary", RecordedData.vocabularyKey) }
        case .tag:
            guard recorded.vocabulary != nil else { throw missing("vocabulary", RecordedData.vocabularyKey) }
            guard let tags = recorded.tags else { throw missing("tags", RecordedData.tagsKey) }
            guard tags.count == specification.outputSize else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the checkpoint records \(tags.count) tag ids but its model has "
                        + "\(specification.outputSize) outputs")
            }
        case .forecast:
            let names = recorded.columnNames ?? []
            let features = specification.inputFeatures ?? 1
            guard names.isEmpty ? features == 1 : names.count == features,
                  recorded.standardizations.map({ $0.count == features }) ?? names.isEmpty else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the checkpoint records the columns \(names) and "
                        + "\(recorded.standardizations?.count ?? 0) standardisations (\(RecordedData.columnsKey), "
                        + "\(RecordedData.standardizationsKey)) but its model reads \(features) features per step")
            }
            // K = H · J outputs, J of the F columns forecast.
            let targets = specification.outputSize / max(source.horizon, 1)
            guard source.horizon >= 1, specification.outputSize == source.horizon * targets, targets <= features else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the checkpoint records a horizon of \(source.horizon) but its "
                        + "model has \(specification.outputSize) outputs from \(features) columns")
            }
        }
        self.specification = specification
        self.model = try checkpoint.makeModel(backend: backend)
        self.source = source
        self.vocabulary = recorded.vocabulary
        self.classNames = classNames
        self.tags = recorded.tags
        let standardization = recorded.standardization ?? Standardization(mean: 0, standardDeviation: 1)
        self.standardization = standardization
        self.standardizations = recorded.standardizations ?? [standardization]
        self.columnNames = recorded.columnNames ?? []
        self.targetCount = specification.task == .forecast ? specification.outputSize / max(source.horizon, 1) : 1
        self.batchSize = batchSize
    }

    private func require(_ task: ModelTask, _ operation: String) throws {
        guard self.task == task else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the model is a \(self.task) model, not a \(task) model")
        }
    }

    // MARK: Classify

    /// The class of each text, in order. Texts are read as in training: one longer than the
    /// sequence length loses tokens on the recorded truncating side, and one with no known token
    /// (an empty text among them) is read as a single out-of-vocabulary token.
    public func predict(texts: [String]) throws -> [Classification] {
        let operation = "Predictor.predict(texts:)"
        try require(.classify, operation)
        var result: [Classification] = []
        result.reserveCapacity(texts.count)
        for start in stride(from: 0, to: texts.count, by: batchSize) {
            let part = Array(texts[start ..< min(start + batchSize, texts.count)])
            let sequences = try source.classificationSequences(part, vocabulary: vocabulary!)
            let logits = try run(sequences)  // [B, K]
            let k = specification.outputSize
            for row in 0..<part.count {
                result.append(classification(Array(logits[row * k ..< (row + 1) * k])))
            }
        }
        return result
    }

    /// The probabilities of `logits` (one text's, `[K]`), as the training loss reads them.
    func classification(_ logits: [Float]) -> Classification {
        if logits.count == 1 {
            let logit = Double(logits[0])
            let p = 1 / (1 + exp(-logit))
            // The accuracy metric's rule: the second class where the logit is positive.
            return Classification(label: classNames[logit > 0 ? 1 : 0],
                                  probabilities: [classNames[0]: 1 - p, classNames[1]: p])
        }
        let values = logits.map(Double.init)
        var probabilities: [String: Double] = [:]
        for (name, p) in zip(classNames, Self.softmax(logits)) { probabilities[name] = p }
        let best = values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) } ?? 0
        return Classification(label: classNames[best], probabilities: probabilities)
    }

    /// softmax(x)_k = exp(x_k − max x) / Σ_j exp(x_j − max x), in Double: the largest term is 1,
    /// so nothing overflows.
    static func softmax(_ logits: some Collection<Float>) -> [Double] {
        let largest = Double(logits.max() ?? 0)
        let weights = logits.map { exp(Double($0) - largest) }
        let total = weights.reduce(0, +)
        return weights.map { $0 / total }
    }

    // MARK: Tag

    /// One tag per token of each line of space-separated tokens (the token column of the tagged
    /// format), in order; an empty line has no tokens and gets no tags.
    public func predict(tokenLines lines: [String]) throws -> [[String]] {
        try predict(tokens: lines.map { $0.split(separator: " ").map(String.init) })
    }

    /// One tag per token of each sequence, in order. Tokens are looked up as in training (as
    /// written, unknown ones as out-of-vocabulary). A sequence longer than the sequence length is
    /// tagged in consecutive pieces of that length, each read from a fresh state as every
    /// training example was, so that every token gets a tag rather than only the first or last
    /// T. The tag is the most probable of the real tags (never the padding or out-of-vocabulary
    /// tag, which no training token had).
    public func predict(tokens sequences: [[String]]) throws -> [[String]] {
        let firstTag = Int(Vocabulary.firstWordID)
        let k = specification.outputSize
        return try tagLogits(tokens: sequences, operation: "Predictor.predict(tokens:)").map { steps in
            steps.map { logits in
                var best = firstTag
                for id in firstTag ..< k where logits[logits.startIndex + id] > logits[logits.startIndex + best] {
                    best = id
                }
                return tags!.tokens[best]
            }
        }
    }

    /// The probability of every tag id (the softmax of the head, padding and out-of-vocabulary
    /// tags included, in the order of the recorded tags) at each token of each sequence, read as
    /// `predict(tokens:)` reads them.
    public func tagProbabilities(tokens sequences: [[String]]) throws -> [[[Double]]] {
        try tagLogits(tokens: sequences, operation: "Predictor.tagProbabilities(tokens:)").map { steps in
            steps.map(Self.softmax)
        }
    }

    /// The head's logits `[K]` at each token of each sequence, piece by piece.
    private func tagLogits(tokens sequences: [[String]], operation: String) throws -> [[ArraySlice<Float>]] {
        try require(.tag, operation)
        guard let vocabulary else { return [] }
        let length = sequenceLength
        // Every piece of every sequence: (sequence, ids).
        var pieces: [(sequence: Int, ids: [Int32])] = []
        for (index, tokens) in sequences.enumerated() {
            let ids = vocabulary.encode(tokens)
            for start in stride(from: 0, to: ids.count, by: length) {
                pieces.append((index, Array(ids[start ..< min(start + length, ids.count)])))
            }
        }
        var result = [[ArraySlice<Float>]](repeating: [], count: sequences.count)
        for start in stride(from: 0, to: pieces.count, by: batchSize) {
            let part = pieces[start ..< min(start + batchSize, pieces.count)]
            let padded = try padSequences(part.map(\.ids), maxLength: length, padding: source.padding,
                                          truncating: source.truncating)
            let output = try run(padded)  // [T, B, K]
            for (column, piece) in part.enumerated() {
                for t in validSteps(of: piece.ids.count) {
                    result[piece.sequence].append(stepLogits(output, step: t, column: column, batch: part.count))
                }
            }
        }
        return result
    }

    /// The steps of a padded row that hold its `count` ids.
    private func validSteps(of count: Int) -> Range<Int> {
        let offset = source.padding == .pre ? sequenceLength - count : 0
        return offset ..< offset + count
    }

    /// Row (t, b) of a `[T, B, K]` output.
    private func stepLogits(_ output: [Float], step t: Int, column b: Int, batch: Int) -> ArraySlice<Float> {
        let k = specification.outputSize
        return output[(t * batch + b) * k ..< (t * batch + b + 1) * k]
    }

    // MARK: Language model

    /// The distribution of the token after each text: the softmax of the language model's head at
    /// the text's last token, over every id of the vocabulary (padding and out-of-vocabulary
    /// included). The text is tokenized as the training text was (characters as written, or
    /// words as the word tokenizer splits them) and only its last `sequenceLength` tokens are
    /// read, from a fresh state, as the training windows were.
    /// - Throws: `RecurError.invalidArgument` for a text without a token.
    public func nextTokenProbabilities(texts: [String]) throws -> [[Double]] {
        let operation = "Predictor.nextTokenProbabilities(texts:)"
        try require(.lm, operation)
        guard let vocabulary else { return [] }
        var result: [[Double]] = []
        for start in stride(from: 0, to: texts.count, by: batchSize) {
            let part = texts[start ..< min(start + batchSize, texts.count)]
            let ids = try part.enumerated().map { offset, text in
                let ids = switch source.tokenizer {
                case .character: try TokenStream.characters(in: text, vocabulary: vocabulary).ids
                case .word: vocabulary.encode(WordTokenizer().tokens(in: text))
                }
                guard !ids.isEmpty else {
                    throw RecurError.invalidArgument(
                        operation: operation, detail: "text \(start + offset) has no token to continue")
                }
                return Array(ids.suffix(sequenceLength))
            }
            let padded = try padSequences(ids, maxLength: sequenceLength, padding: source.padding)
            let output = try run(padded)  // [T, B, V]
            for (column, sequence) in ids.enumerated() {
                let last = validSteps(of: sequence.count).last!
                result.append(Self.softmax(stepLogits(output, step: last, column: column, batch: ids.count)))
            }
        }
        return result
    }

    // MARK: Forecast

    /// The next `horizon` values of a series, in its own units, from its last `sequenceLength`
    /// values (earlier ones are not read: the model was trained on windows of that length).
    /// The window x is scaled as in training, z = (x − c) / s with the recorded transform's c and
    /// s of this window, and the model's output z' read back as ŷ = c + s · z'.
    /// - Throws: `RecurError.invalidArgument` for fewer values than the sequence length or a
    ///   value that is not finite.
    public func predict(series values: [Float]) throws -> [Float] {
        try predict(windows: [values]).first ?? []
    }

    /// The forecast of each series, in order (see `predict(series:)`).
    public func predict(windows series: [[Float]]) throws -> [[Float]] {
        let operation = "Predictor.predict(series:)"
        try require(.forecast, operation)
        guard features == 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the model reads \(features) columns per step (\(columnNames)): "
                    + "give them to predict(steps:)")
        }
        let length = sequenceLength
        for (index, values) in series.enumerated() {
            guard values.count >= length else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the model reads the last \(length) values of a series, "
                        + "but series \(index) has \(values.count)")
            }
            if let bad = values.suffix(length).firstIndex(where: { !$0.isFinite }) {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "value \(bad) of series \(index) is \(values[bad])")
            }
        }
        // One column per step: each window's rows hold one value; J = 1, so a window's H rows
        // of one value are its H forecast values.
        let windows = series.map { values in values.suffix(length).map { [$0] } }
        return try forecast(windows).map { rows in rows.map { $0[0] } }
    }

    /// The forecast of a series of several columns: `steps` holds one row of F values per time
    /// step, in `columnNames` order (targets first), and the model reads the last
    /// `sequenceLength` rows. Each column's window is scaled as in training, z = (x − c_f) / s_f
    /// with the recorded transform's c and s of that column, and output (h, j) read back as
    /// ŷ = c_j + s_j · z'. Returns H rows of J values, the target columns' next values.
    /// - Throws: `RecurError.invalidArgument` for fewer rows than the sequence length, a row of
    ///   another width than F, or a value that is not finite.
    public func predict(steps: [[Float]]) throws -> [[Float]] {
        let operation = "Predictor.predict(steps:)"
        try require(.forecast, operation)
        let length = sequenceLength
        guard steps.count >= length else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the model reads the last \(length) steps, but \(steps.count) were given")
        }
        let window = steps.suffix(length)
        for (t, row) in zip(window.indices, window) {
            guard row.count == features else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "step \(t) has \(row.count) values, but the model reads \(features)")
            }
            if let bad = row.firstIndex(where: { !$0.isFinite }) {
                throw RecurError.invalidArgument(operation: operation, detail: "value \(bad) of step \(t) is \(row[bad])")
            }
        }
        return try forecast([Array(window)])[0]
    }

    /// The forecasts of checked windows of `sequenceLength` rows of F values each, `batchSize`
    /// windows a pass: each column f of a window is scaled as in training,
    /// z = (x − c_f) / s_f with the recorded transform's c and s of that column in that window,
    /// and output (h, j) read back as ŷ = c_j + s_j · z'. Returns each window's H rows of J values.
    private func forecast(_ windows: [[[Float]]]) throws -> [[[Float]]] {
        let length = sequenceLength
        var result: [[[Float]]] = []
        for start in stride(from: 0, to: windows.count, by: batchSize) {
            let part = windows[start ..< min(start + batchSize, windows.count)]
            let b = part.count
            var input = [Float](repeating: 0, count: length * b * features)  // [T, B, F]
            var scalings: [[Standardization]] = []
            for (column, window) in part.enumerated() {
                let scaling = (0..<features).map { f in
                    transform.scaling(of: window.map { $0[f] }, fitted: standardizations[f])
                }
                scalings.append(scaling)
                for (t, row) in window.enumerated() {
                    for f in 0..<features {
                        input[(t * b + column) * features + f] = (row[f] - scaling[f].mean) / scaling[f].standardDeviation
                    }
                }
            }
            let tensor = try model.backend.upload(input, shape: [length, b, features])
            let output = try model.backend.download(try model.forward(tensor, training: false))  // [B, H · J]
            let width = horizon * targetCount
            for (column, scaling) in scalings.enumerated() {
                result.append((0..<horizon).map { h in
                    (0..<targetCount).map { j in
                        output[column * width + h * targetCount + j] * scaling[j].standardDeviation + scaling[j].mean
                    }
                })
            }
        }
        return result
    }

    /// The model's output for padded id sequences: `[B, K]` for a classifier, `[T, B, K]` for a
    /// tagger.
    private func run(_ sequences: PaddedSequences) throws -> [Float] {
        let batch = sequences.batch(0..<sequences.count)  // [T, B]
        let output = try model.forward(ids: batch.ids, shape: [batch.steps, batch.batchSize], lengths: batch.lengths,
                                       padding: sequences.padding, training: false)
        return try model.backend.download(output)
    }
}

// MARK: Series input

extension Predictor {
    /// Reads a forecaster's series one line at a time, as its training file was read: the value
    /// in the recorded value column of a comma-separated row (RFC 4180 quotes), or the only field
    /// of a row that has one (a series of one value per line). The first row is a header when
    /// training's was said to be one, or, unsaid, when its value is not a number. Blank lines are
    /// skipped.
    public struct SeriesLineReader {
        public let valueColumn: Int
        public let hasHeader: Bool?
        private var line = 0
        private var sawFirstRow = false
        private let source: String

        /// - Parameters:
        ///   - predictor: the forecaster whose recorded column and header the lines follow.
        ///   - source: names the input in errors (a path, or "stdin").
        public init(for predictor: Predictor, source: String) {
            valueColumn = predictor.source.valueColumn
            hasHeader = predictor.source.hasHeader
            self.source = source
        }

        /// The value of the next line, or nil for a header or blank line.
        /// - Throws: `RecurError.malformed` with `source:line` for a row without a number where
        ///   the value should be.
        public mutating func value(of text: String) throws -> Float? {
            line += 1
            var bytes = Array(text.utf8)
            if line == 1 { bytes = Array(droppingByteOrderMark(bytes)) }
            let format = DelimitedTextFormat(delimiter: ",", hasHeader: false)
            var parser = DelimitedParser(bytes: bytes[...], format: format, path: source)
            let fields: [String]
            switch try parser.next() {
            case nil: return nil
            case .malformed(let detail, _)?: throw RecurError.malformed(source: "\(source):\(line)", detail: detail)
            case .record(let record)?: fields = record.fields
            }
            let first = !sawFirstRow
            sawFirstRow = true
            let field = fields.count == 1 ? fields[0] : fields.indices.contains(valueColumn) ? fields[valueColumn] : nil
            if first, hasHeader == true { return nil }
            guard let field else {
                throw RecurError.malformed(
                    source: "\(source):\(line)",
                    detail: "\(fields.count) fields, no value column \(valueColumn) (the column the model was trained on)")
            }
            guard let value = NumericSeries.decimalValue(field) else {
                if first, hasHeader == nil { return nil }
                let place = fields.count == 1 ? "" : " in column \(valueColumn)"
                throw RecurError.malformed(
                    source: "\(source):\(line)", detail: "'\(field)'\(place) is not a finite decimal number")
            }
            return value
        }
    }
}
