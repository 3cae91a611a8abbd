// Where a training run's data comes from and how it becomes examples, as data: `recur train`
// fills one from its options and stores it in the checkpoint, so `recur evaluate` can read the
// same splits with the same vocabulary again.
//
// Splits: labelled texts are shuffled once with `splitSeed`, then the last `testFraction` is
// the test set and, of the rest, the last `validationFraction` validates. Streams (text for
// language models, series) are split in time: training first, then validation, then test.
// The vocabulary and any standardisation are fitted to the training part only.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A description of a data set on disk and how to turn it into `TrainingExamples`.
public struct DataSource: Sendable, Equatable, Codable {
    /// The layout of the files.
    public enum Format: String, Sendable, Equatable, Codable, CaseIterable {
        /// A table with a label and a text column (tab-separated; no quoting).
        case tsv
        /// A table with a label and a text column (comma-separated, RFC 4180 quotes).
        case csv
        /// One plain-text file per class, one example per line (`paths` in class order).
        case lines
        /// The aclImdb folder layout (`paths[0]` is the folder holding `train/` and `test/`).
        case imdb
        /// One plain-text file (language models).
        case text
        /// A numeric column of a CSV file (forecasting).
        case series
        /// A tab-separated file of `tokens<TAB>tags`, both space-separated and equally long.
        case tagged
    }

    /// How text becomes tokens.
    public enum TokenizerKind: String, Sendable, Equatable, Codable, CaseIterable {
        /// Keras's `Tokenizer`: lowercased words, punctuation filtered.
        case word
        /// Every character a token.
        case character
    }

    public var format: Format
    public var paths: [String]
    /// Class names of `lines` files, in `paths` order.
    public var classNames: [String]?
    /// Table columns (0-based).
    public var labelColumn = 0
    public var textColumn = 1
    public var valueColumn = 1
    /// A series of several columns: each an index (`"2"`) or a header name (`"realgdp"`). The
    /// model reads every one of them at each step; nil reads `valueColumn` alone.
    public var valueColumns: [String]?
    /// The columns of `valueColumns` a forecast predicts (default: the first). The model's input
    /// features are these first, then the other value columns in their order.
    public var targetColumns: [String]?
    /// Whether the first row of a table or series is a header; nil when the caller was not told.
    /// Unsaid, a series' first row is a header unless its value is a number; a labelled table
    /// has no header, and one whose first row looks like a header (its label on no other row,
    /// while other labels repeat) is refused rather than read as an example of a class of its
    /// own; a tagged file has no header.
    public var hasHeader: Bool?
    public var tokenizer: TokenizerKind = .word
    /// Keep only the ids below this (padding and OOV included), as Keras's `num_words`.
    public var numWords: Int?
    /// T: sequences are padded or truncated to this length; language-model and forecast windows
    /// have this length.
    public var sequenceLength = 100
    public var padding: PaddingSide = .pre
    public var truncating: TruncationSide = .pre
    /// Steps between language-model or forecast windows (default: the window length for text,
    /// 1 for series).
    public var stride: Int?
    /// Values a forecast predicts.
    public var horizon = 1
    /// How a series' windows are scaled for the model and its forecasts read back. A checkpoint
    /// written before transforms existed records none, and reads as `level`, which it used.
    public var transform = SeriesTransform.default
    public var validationFraction = 0.1
    public var testFraction = 0.0
    public var splitSeed: UInt64 = 0
    /// Skip (and count) malformed rows instead of failing on the first.
    public var skipsMalformed = false
    /// Classification: recurrent layers skip the padding (PyTorch's packed sequences, Keras's
    /// `mask_zero=True`); false feeds them the padding too (Keras's default Embedding).
    public var masksPadding = true
    /// Whether the caller guessed `format` from the file name rather than being told it. Errors
    /// in reading the files then say so, since a reader of the wrong format fails in terms of
    /// that format ("expected 2 fields"). Not part of the JSON: it describes how this run chose
    /// the format, not the data.
    public var formatIsGuessed = false

    private enum CodingKeys: String, CodingKey {
        case format, paths, classNames, labelColumn, textColumn, valueColumn, valueColumns, targetColumns
        case hasHeader, tokenizer, numWords
        case sequenceLength, padding, truncating, stride, horizon, transform, validationFraction, testFraction
        case splitSeed, skipsMalformed, masksPadding
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(Format.self, forKey: .format)
        paths = try container.decode([String].self, forKey: .paths)
        classNames = try container.decodeIfPresent([String].self, forKey: .classNames)
        labelColumn = try container.decode(Int.self, forKey: .labelColumn)
        textColumn = try container.decode(Int.self, forKey: .textColumn)
        valueColumn = try container.decode(Int.self, forKey: .valueColumn)
        // Absent in checkpoints of one column.
        valueColumns = try container.decodeIfPresent([String].self, forKey: .valueColumns)
        targetColumns = try container.decodeIfPresent([String].self, forKey: .targetColumns)
        hasHeader = try container.decodeIfPresent(Bool.self, forKey: .hasHeader)
        tokenizer = try container.decode(TokenizerKind.self, forKey: .tokenizer)
        numWords = try container.decodeIfPresent(Int.self, forKey: .numWords)
        sequenceLength = try container.decode(Int.self, forKey: .sequenceLength)
        padding = try container.decode(PaddingSide.self, forKey: .padding)
        truncating = try container.decode(TruncationSide.self, forKey: .truncating)
        stride = try container.decodeIfPresent(Int.self, forKey: .stride)
        horizon = try container.decode(Int.self, forKey: .horizon)
        // Absent in checkpoints written before transforms: those standardised every value.
        transform = try container.decodeIfPresent(SeriesTransform.self, forKey: .transform) ?? .level
        validationFraction = try container.decode(Double.self, forKey: .validationFraction)
        testFraction = try container.decode(Double.self, forKey: .testFraction)
        splitSeed = try container.decode(UInt64.self, forKey: .splitSeed)
        skipsMalformed = try container.decode(Bool.self, forKey: .skipsMalformed)
        masksPadding = try container.decode(Bool.self, forKey: .masksPadding)
    }

    public init(format: Format, paths: [String]) {
        self.format = format
        self.paths = paths
    }

    /// The source as JSON (for a checkpoint's metadata).
    public func json() throws -> String { try RecurJSON.string(self) }

    /// Reads a source `json()` wrote.
    /// - Throws: `RecurError.malformed` for JSON that is not a data source.
    public init(json: String) throws {
        self = try RecurJSON.decode(DataSource.self, from: json, source: "data.source", what: "the data source")
    }

    /// Reads and splits the data.
    /// - Parameters:
    ///   - vocabulary: encode with this vocabulary (a trained model's) instead of fitting one.
    ///   - classNames: the class order a trained model uses (evaluation), instead of the data's.
    ///   - tagVocabulary: a trained tagger's tag ids, instead of fitting them to the data.
    ///   - standardization: a trained forecaster's, instead of fitting one.
    ///   - standardizations: a trained forecaster's of several columns, one per input feature.
    public func prepare(vocabulary: Vocabulary? = nil, classNames: [String]? = nil,
                        tagVocabulary: Vocabulary? = nil, standardization: Standardization? = nil,
                        standardizations: [Standardization]? = nil) throws -> PreparedData {
        try validate()
        do {
            switch format {
            case .tsv, .csv, .lines, .imdb:
                return try prepareClassification(vocabulary: vocabulary, classNames: classNames)
            case .text:
                return try prepareLanguageModel(vocabulary: vocabulary)
            case .series:
                return valueColumns == nil
                    ? try prepareSeries(standardization: standardization)
                    : try prepareColumns(standardizations: standardizations)
            case .tagged:
                return try prepareTagging(vocabulary: vocabulary, tagVocabulary: tagVocabulary)
            }
        } catch let error as RecurError where formatIsGuessed {
            throw error.noting(guessedFormatNote())
        }
    }

    /// Says that the format was guessed, and which to pass when the first line gives it away: a
    /// tab-separated file named `.csv` is the usual case.
    private func guessedFormatNote() -> String {
        var note = "format \(format.rawValue) guessed from the file name"
        let firstLine = (try? FileBytes.read(contentsOf: paths[0]))?.prefix { $0 != UInt8(ascii: "\n") } ?? []
        let tabs = firstLine.contains(UInt8(ascii: "\t")), commas = firstLine.contains(UInt8(ascii: ","))
        if format == .csv && tabs {
            note += "; its first line holds tabs: pass --format tsv"
        } else if format != .csv && commas && !tabs {
            note += "; its first line holds commas and no tab: pass --format csv"
        } else {
            note += "; pass --format to read it as another (\(Format.allCases.map(\.rawValue).joined(separator: ", ")))"
        }
        return note
    }

    private func validate() throws {
        let operation = "DataSource"
        guard !paths.isEmpty else { throw RecurError.invalidArgument(operation: operation, detail: "no data path given") }
        guard sequenceLength >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "sequence length must be at least 1")
        }
        guard validationFraction >= 0, testFraction >= 0, validationFraction + testFraction < 1 else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "validation \(validationFraction) and test \(testFraction) fractions must be >= 0 and leave training data")
        }
        if let numWords, numWords < 3 {
            throw RecurError.invalidArgument(operation: operation, detail: "numWords must be at least 3, got \(numWords)")
        }
        if format == .lines, classNames?.count != paths.count {
            throw RecurError.invalidArgument(
                operation: operation, detail: "per-class files need one class name per file")
        }
        // Every other format reads paths[0]: a second file would be left out without a word.
        if format != .lines, paths.count > 1 {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "format \(format.rawValue) reads one file or folder, but \(paths.count) were given "
                    + "(\(paths.joined(separator: ", "))); only format lines takes several, one per class")
        }
        let columns: [(String, Int)] = switch format {
        case .tsv, .csv, .tagged: [("label", labelColumn), ("text", textColumn)]
        case .series: valueColumns == nil ? [("value", valueColumn)] : []
        case .lines, .imdb, .text: []
        }
        for (name, column) in columns where column < 0 {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(name) column \(column) of \(paths[0]): columns are 0 or more")
        }
        if let valueColumns, valueColumns.isEmpty || targetColumns?.isEmpty == true {
            throw RecurError.invalidArgument(operation: operation, detail: "no value or target column given")
        }
        if valueColumns == nil, targetColumns != nil {
            throw RecurError.invalidArgument(operation: operation, detail: "target columns need value columns")
        }
        if columns.count == 2, labelColumn == textColumn {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "label and text column of \(paths[0]) are both \(labelColumn): the label would be the input")
        }
    }

    private var policy: MalformedRowPolicy { skipsMalformed ? .skip : .fail }

    /// The tokenizer of classification texts.
    var textTokenizer: any Tokenizer {
        switch tokenizer {
        case .word: WordTokenizer()
        case .character: CharacterTokenizer()
        }
    }

    /// Index ranges of `count` examples: training, validation, test, in that order.
    private func splitRanges(_ count: Int) -> (Range<Int>, Range<Int>, Range<Int>) {
        let test = Int((Double(count) * testFraction).rounded())
        let validation = Int((Double(count) * validationFraction).rounded())
        let training = count - test - validation
        return (0..<training, training..<(training + validation), (training + validation)..<count)
    }

    // MARK: Classification

    private func readTexts() throws -> (TextClassificationDataset, TextClassificationDataset?) {
        switch format {
        case .tsv, .csv:
            let table: DelimitedTextFormat = format == .tsv
                ? DelimitedTextFormat(delimiter: "\t", hasHeader: hasHeader ?? false, quoting: .none)
                : DelimitedTextFormat(delimiter: ",", hasHeader: hasHeader ?? false)
            return (try TextClassificationDataset.readDelimited(
                bytes: try FileBytes.read(contentsOf: paths[0]), source: paths[0], format: table,
                labelColumn: .index(labelColumn), textColumn: .index(textColumn), onMalformed: policy,
                refusesHeaderLikeFirstRow: hasHeader == nil), nil)
        case .lines:
            let classFiles = zip(classNames ?? [], paths).map { (name: $0, path: $1) }
            return (try TextClassificationDataset.readLines(classFiles: classFiles, onMalformed: policy), nil)
        case .imdb:
            let train = try IMDBReviews.read(root: paths[0], split: .train, onMalformed: policy).reviews
            let test = testFraction == 0
                ? try IMDBReviews.read(root: paths[0], split: .test, onMalformed: policy).reviews : nil
            return (train, test)
        default:
            preconditionFailure("readTexts is for classification formats")
        }
    }

    private func prepareClassification(vocabulary: Vocabulary?, classNames: [String]?) throws -> PreparedData {
        var (all, separateTest) = try readTexts()
        // Training on a single class: the model learns a constant and its accuracy says 100%.
        // (Evaluation passes the model's classes, and its data may hold one class only.)
        if classNames == nil, all.count > 0, all.classNames.count < 2 {
            let skipped = all.skippedCount > 0 ? " (and \(all.skippedCount) malformed rows, skipped)" : ""
            throw RecurError.invalidArgument(
                operation: "DataSource",
                detail: "\(paths.joined(separator: ", ")) holds one class only, \(all.classNames)\(skipped): "
                    + "a classifier needs two or more")
        }
        all = all.shuffled(seed: splitSeed)
        if let classNames {
            all = try all.relabeled(as: classNames)
            separateTest = try separateTest?.relabeled(as: classNames)
        }
        let (trainRange, validationRange, testRange) = splitRanges(all.count)
        let training = all.subset(trainRange)
        let vocabulary = try vocabulary
            ?? Vocabulary(fittingTexts: training.texts, tokenizer: textTokenizer, numWords: numWords)

        func examples(_ part: TextClassificationDataset) throws -> LabeledSequences? {
            guard part.count > 0 else { return nil }
            return try LabeledSequences(sequences: classificationSequences(part.texts, vocabulary: vocabulary),
                                        labels: part.labels, classCount: all.classNames.count)
        }
        guard let trainingExamples = try examples(training) else {
            throw RecurError.invalidArgument(operation: "DataSource", detail: "no training examples in \(paths[0])")
        }
        return PreparedData(
            training: trainingExamples, validation: try examples(all.subset(validationRange)),
            test: try examples(separateTest ?? all.subset(testRange)), vocabulary: vocabulary,
            classNames: all.classNames, skippedCount: all.skippedCount + (separateTest?.skippedCount ?? 0))
    }

    /// Texts as a classifier reads them: tokenized, encoded with `vocabulary`, padded and
    /// truncated to `sequenceLength`, with the lengths the recurrent layers run for. Training
    /// and prediction both go through here, so a model sees new texts as it saw its own.
    func classificationSequences(_ texts: [String], vocabulary: Vocabulary) throws -> PaddedSequences {
        let padded = try padSequences(
            vocabulary.encode(texts: texts, tokenizer: textTokenizer), maxLength: sequenceLength,
            padding: padding, truncating: truncating)
        // A text with no known token would be an empty sequence: it keeps one OOV id, as a
        // text of unknown words is still an example to classify.
        let ids = padded.ids.enumerated().map { offset, id -> Int32 in
            let row = offset / sequenceLength, t = offset % sequenceLength
            guard padded.lengths[row] == 0 else { return id }
            let last = padding == .pre ? sequenceLength - 1 : 0
            return t == last ? Vocabulary.outOfVocabularyID : id
        }
        // Unmasked, every sequence is T steps long and the recurrent layer reads the padding
        // too, as a Keras model without `mask_zero` does.
        let lengths = padded.lengths.map { masksPadding ? max($0, 1) : sequenceLength }
        return PaddedSequences(ids: ids, lengths: lengths, maxLength: sequenceLength, padding: padding)
    }

    // MARK: Language models

    private func prepareLanguageModel(vocabulary: Vocabulary?) throws -> PreparedData {
        let stream: TokenStream = switch tokenizer {
        case .character: try TokenStream.characters(contentsOf: paths[0], vocabulary: vocabulary, numWords: numWords)
        case .word: try TokenStream.words(contentsOf: paths[0], vocabulary: vocabulary, numWords: numWords)
        }
        let (trainRange, validationRange, testRange) = splitRanges(stream.count)
        // Vocabulary fitted to the whole text when none is given: a character model must be able
        // to emit every character, and the split is in time, not by example.
        func windows(_ range: Range<Int>) throws -> LanguageModelWindows? {
            guard range.count > sequenceLength else { return nil }
            return try LanguageModelWindows(ids: Array(stream.ids[range]), length: sequenceLength, stride: stride)
        }
        guard let training = try windows(trainRange) else {
            throw RecurError.invalidArgument(
                operation: "DataSource", detail: "\(paths[0]) is too short for one window of \(sequenceLength) tokens")
        }
        return PreparedData(
            training: training, validation: try windows(validationRange), test: try windows(testRange),
            vocabulary: stream.vocabulary, classNames: [], skippedCount: 0)
    }

    // MARK: Forecasting

    private func prepareSeries(standardization given: Standardization?) throws -> PreparedData {
        let bytes = try FileBytes.read(contentsOf: paths[0])
        let header = hasHeader ?? NumericSeries.firstRecordIsHeader(bytes: bytes, valueColumn: valueColumn)
        let series = try NumericSeries.readCSV(
            bytes: bytes, source: paths[0], format: DelimitedTextFormat(delimiter: ",", hasHeader: header),
            timestampColumn: nil, valueColumn: .index(valueColumn), onMalformed: policy)
        guard series.count > 0 else {
            throw RecurError.malformed(
                source: paths[0],
                detail: header ? "no values after the header row" : "no values: the file holds no rows")
        }
        let (trainRange, validationRange, testRange) = splitRanges(series.count)
        guard !trainRange.isEmpty else {
            throw RecurError.invalidArgument(
                operation: "DataSource",
                detail: "the \(series.count) values of \(paths[0]) leave none for training after the validation "
                    + "and test parts")
        }
        let standardization = try given ?? transform.fitted(to: series.values[trainRange])
        // Windows whose targets lie in a part; their inputs may reach back into the part before.
        // Each is scaled by `transform`; where the scale differs between windows (revin), each
        // window's scale s goes with it, so that errors are counted in the series' units.
        func windows(_ range: Range<Int>) throws -> SeriesWindows? {
            let start = max(range.lowerBound - sequenceLength, 0)
            guard range.upperBound - start >= sequenceLength + horizon, !range.isEmpty else { return nil }
            let raw = try ForecastWindows(
                values: series.values[start..<range.upperBound], length: sequenceLength, horizon: horizon,
                stride: stride ?? 1)
            guard raw.count > 0 else { return nil }
            let (windows, scalings) = raw.transformed(transform, fitted: standardization)
            return SeriesWindows(windows, errorScales: transform == .revin ? scalings.map(\.standardDeviation) : nil)
        }
        guard let training = try windows(trainRange) else {
            throw RecurError.invalidArgument(
                operation: "DataSource",
                detail: "\(trainRange.count) training values are too few for a window of \(sequenceLength) + \(horizon)")
        }
        return PreparedData(
            training: training, validation: try windows(validationRange), test: try windows(testRange),
            vocabulary: nil, classNames: [], skippedCount: series.skippedCount, standardization: standardization,
            transform: transform)
    }

    /// The columns of `valueColumns` as selectors: an index where the text is a whole number,
    /// else a header name.
    private static func selector(_ text: String) -> ColumnSelector {
        Int(text).map { .index($0) } ?? .name(text)
    }

    /// The value columns of a file laid out as the training file (`valueColumns`, header as
    /// `hasHeader` or guessed), in the model's feature order: the target columns first, then the
    /// others; and J, the number of targets.
    /// - Throws: as `NumericColumns.readCSV`, and `RecurError.invalidArgument` for a target that
    ///   is not one of the value columns.
    public func readColumns(bytes: [UInt8], source: String) throws -> (columns: NumericColumns, targetCount: Int) {
        let values = (valueColumns ?? ["\(valueColumn)"]).map(Self.selector)
        let targets = (targetColumns ?? [valueColumns?.first ?? "\(valueColumn)"]).map(Self.selector)
        // Unsaid, a header is there when a column is named, or the first row's value in the
        // first indexed column is not a number, as for one column.
        let firstIndex = values.lazy.compactMap { if case let .index(index) = $0 { index } else { nil } }.first
        let header = hasHeader ?? (values.contains { if case .name = $0 { true } else { false } }
            || firstIndex.map { NumericSeries.firstRecordIsHeader(bytes: bytes, valueColumn: $0) } ?? false)
        let read = try NumericColumns.readCSV(
            bytes: bytes, source: source, format: DelimitedTextFormat(delimiter: ",", hasHeader: header),
            columns: values, onMalformed: policy)
        // A target by index or by name, so that "7" and "cpi" are the same column.
        var order: [Int] = []
        for target in targets {
            let found = switch target {
            case let .index(index): read.positions.firstIndex(of: index)
            case let .name(name): header ? read.names.firstIndex(of: name) : nil
            }
            guard let position = found else {
                throw RecurError.invalidArgument(
                    operation: "DataSource",
                    detail: "target \(target) of \(source) is not one of the value columns \(read.names)")
            }
            if !order.contains(position) { order.append(position) }
        }
        let targetCount = order.count
        order += read.names.indices.filter { !order.contains($0) }
        var reordered = read
        reordered.columns = order.map { read.columns[$0] }
        reordered.names = order.map { read.names[$0] }
        reordered.positions = order.map { read.positions[$0] }
        return (reordered, targetCount)
    }

    /// A series of several columns (`valueColumns`): each column standardised with its own
    /// training part's mean and deviation, each window scaled column by column by `transform`.
    /// The model reads F features per step, the target columns first, and predicts H · J values,
    /// output (h − 1) · J + j being target j at step h.
    private func prepareColumns(standardizations given: [Standardization]?) throws -> PreparedData {
        let operation = "DataSource"
        let (read, targetCount) = try readColumns(bytes: try FileBytes.read(contentsOf: paths[0]), source: paths[0])
        let (columns, names) = (read.columns, read.names)
        let count = read.count
        let (trainRange, validationRange, testRange) = splitRanges(count)
        guard !trainRange.isEmpty else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the \(count) rows of \(paths[0]) leave none for training after the validation and test parts")
        }
        if let given, given.count != columns.count {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(given.count) recorded standardisations for the \(columns.count) columns \(names)")
        }
        let standardizations = try given ?? columns.map { try transform.fitted(to: $0[trainRange]) }
        func windows(_ range: Range<Int>) throws -> SeriesWindows? {
            let start = max(range.lowerBound - sequenceLength, 0)
            guard range.upperBound - start >= sequenceLength + horizon, !range.isEmpty else { return nil }
            let raw = try ForecastWindows(
                columns: columns.map { Array($0[start..<range.upperBound]) }, targetCount: targetCount,
                length: sequenceLength, horizon: horizon, stride: stride ?? 1)
            guard raw.count > 0 else { return nil }
            let (windows, scalings) = raw.transformed(transform, fitted: standardizations)
            // Errors back in each target's units: s of the target's column in its window, per
            // output when targets differ in units, per window for one revin target, else σ of
            // the one target for all (`PreparedData.errorScale`).
            let scales: [Float]? = if targetCount > 1 {
                scalings.flatMap { window in (0..<raw.outputs).map { window[$0 % targetCount].standardDeviation } }
            } else if transform == .revin {
                scalings.map { $0[0].standardDeviation }
            } else {
                nil
            }
            return SeriesWindows(windows, errorScales: scales)
        }
        guard let training = try windows(trainRange) else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(trainRange.count) training rows are too few for a window of \(sequenceLength) + \(horizon)")
        }
        var prepared = PreparedData(
            training: training, validation: try windows(validationRange), test: try windows(testRange),
            vocabulary: nil, classNames: [], skippedCount: read.skippedCount, standardization: standardizations[0],
            transform: transform)
        prepared.standardizations = standardizations
        prepared.seriesNames = names
        prepared.targetCount = targetCount
        return prepared
    }

    // MARK: Tagging

    private func prepareTagging(vocabulary: Vocabulary?, tagVocabulary: Vocabulary?) throws -> PreparedData {
        let table = DelimitedTextFormat(delimiter: "\t", hasHeader: hasHeader ?? false, quoting: .none)
        var rows = try DelimitedTable(
            contentsOf: paths[0], format: table,
            requiredFieldCount: DelimitedTable.requiredFieldCount(.index(textColumn), .index(labelColumn)),
            onMalformed: policy)
        let tokenColumn = try rows.position(of: .index(textColumn))
        let tagColumn = try rows.position(of: .index(labelColumn))
        var tokens: [[String]] = []
        var tags: [[String]] = []
        for record in rows.records {
            let words = record.fields[tokenColumn].split(separator: " ").map(String.init)
            let labels = record.fields[tagColumn].split(separator: " ").map(String.init)
            guard !words.isEmpty, words.count == labels.count else {
                try rows.reject(line: record.line, "\(words.count) tokens but \(labels.count) tags")
                continue
            }
            tokens.append(words)
            tags.append(labels)
        }
        if let error = rows.everyRowSkipped(accepted: tokens.count) { throw error }
        let order = seededPermutation(count: tokens.count, seed: splitSeed)
        let (trainRange, validationRange, testRange) = splitRanges(tokens.count)
        let trainingOrder = order[trainRange]
        let vocabulary = try vocabulary ?? Vocabulary(fitting: trainingOrder.map { tokens[$0] }, numWords: numWords)
        let tagVocabulary = try tagVocabulary ?? Vocabulary(fitting: trainingOrder.map { tags[$0] })
        func examples(_ range: Range<Int>) throws -> TaggedSequences? {
            guard !range.isEmpty else { return nil }
            let picked = order[range]
            let ids = try padSequences(picked.map { vocabulary.encode(tokens[$0]) }, maxLength: sequenceLength,
                                       padding: padding, truncating: truncating)
            let tagIDs = try padSequences(picked.map { tagVocabulary.encode(tags[$0]) }, maxLength: sequenceLength,
                                          padding: padding, truncating: truncating)
            return try TaggedSequences(sequences: ids, tags: tagIDs)
        }
        guard let training = try examples(trainRange) else {
            throw RecurError.invalidArgument(operation: "DataSource", detail: "no training rows in \(paths[0])")
        }
        return PreparedData(
            training: training, validation: try examples(validationRange), test: try examples(testRange),
            vocabulary: vocabulary, classNames: Array(tagVocabulary.tokens), skippedCount: rows.skippedCount,
            tagVocabulary: tagVocabulary)
    }
}

extension RecurError {
    /// The error with `note` added to its detail, for context its raiser did not have.
    func noting(_ note: String) -> RecurError {
        switch self {
        case let .malformed(source, detail): .malformed(source: source, detail: "\(detail) (\(note))")
        case let .invalidArgument(operation, detail): .invalidArgument(operation: operation, detail: "\(detail) (\(note))")
        default: self
        }
    }
}

extension TextClassificationDataset {
    /// The same examples with label ids in the order of `classNames` (a trained model's), so a
    /// model sees class k as it did in training.
    /// - Throws: `RecurError.invalidArgument` naming a class of the data the model doesn't know.
    func relabeled(as classNames: [String]) throws -> TextClassificationDataset {
        var ids: [String: Int32] = [:]
        for (id, name) in classNames.enumerated() { ids[name] = Int32(id) }
        let labels = try labels.map { label -> Int32 in
            let name = self.classNames[Int(label)]
            guard let id = ids[name] else {
                throw RecurError.invalidArgument(
                    operation: "DataSource", detail: "class '\(name)' is not one of the model's classes \(classNames)")
            }
            return id
        }
        return TextClassificationDataset(texts: texts, labels: labels, classNames: classNames, skippedCount: skippedCount)
    }
}

/// A data source read and split into examples.
public struct PreparedData: Sendable {
    public var training: any TrainingExamples
    public var validation: (any TrainingExamples)?
    public var test: (any TrainingExamples)?
    /// The ids of the text (nil for series).
    public var vocabulary: Vocabulary?
    /// Class names in label order (classification), or tag names (tagging).
    public var classNames: [String]
    /// Rows skipped as malformed.
    public var skippedCount: Int
    /// The standardisation fitted to a series' training part.
    public var standardization: Standardization?
    /// The tags' ids (tagging).
    public var tagVocabulary: Vocabulary?
    /// How a series' windows were scaled (`level` for data that is no series).
    public var transform: SeriesTransform
    /// A series of several columns: each input feature's standardisation, in feature order; nil
    /// for one column (`standardization`).
    public var standardizations: [Standardization]?
    /// A series of several columns: each input feature's column name (header field or
    /// `column <index>`), the targets first; empty for one column.
    public var seriesNames: [String] = []
    /// J, the columns a forecast predicts: the first J features (1 for one column).
    public var targetCount = 1

    /// The names of the forecast's targets: `["value"]` for one column.
    public var targetNames: [String] { seriesNames.isEmpty ? ["value"] : Array(seriesNames.prefix(targetCount)) }

    /// F, the values a forecaster reads per step.
    public var featureCount: Int { max(seriesNames.count, 1) }

    public init(training: any TrainingExamples, validation: (any TrainingExamples)?, test: (any TrainingExamples)?,
                vocabulary: Vocabulary?, classNames: [String], skippedCount: Int,
                standardization: Standardization? = nil, tagVocabulary: Vocabulary? = nil,
                transform: SeriesTransform = .level) {
        self.training = training
        self.validation = validation
        self.test = test
        self.vocabulary = vocabulary
        self.classNames = classNames
        self.skippedCount = skippedCount
        self.standardization = standardization
        self.tagVocabulary = tagVocabulary
        self.transform = transform
    }

    /// `Trainer.errorScale` for this data: σ of the training part for `level` and `difference`,
    /// whose windows all share it (|ŷ − y| = σ · |ŷ_z − y_z|); 1 for `revin`, whose windows carry
    /// their own s in `TrainingBatch.errorScales`; 1 for data that is no series.
    /// Several targets carry each output's s in `TrainingBatch.errorScales`, and this is 1 too.
    public var errorScale: Double {
        transform == .revin || targetCount > 1 ? 1 : Double(standardization?.standardDeviation ?? 1)
    }
}
