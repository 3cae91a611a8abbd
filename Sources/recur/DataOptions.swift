import ArgumentParser
import Recur

/// Where the data of `recur train` comes from and how it is cut into examples.
struct DataOptions: ParsableArguments {
    @Option(help: "Data file or folder; only --format lines takes several (repeat it: one file per class).")
    var data: [String] = []
    @Option(help: "tsv, csv, lines, imdb, text, series, tagged, pairs (recur train: source<TAB>target lines for an encoder-decoder; default: from the name: imdb for aclImdb or a trailing /, csv for .csv, text for .txt, else tsv).")
    var format: String?
    @Option(help: "Class names of --format lines files, comma-separated, in --data order.") var classes: String?
    // Unconditional parsing reads `-1` as the value, so that validate() can say what is wrong
    // with it instead of ArgumentParser reporting a missing value.
    @Option(parsing: .unconditional, help: "Label column of a table (0-based).") var labelColumn = 0
    @Option(parsing: .unconditional, help: "Text (or tokens) column of a table (0-based).") var textColumn = 1
    @Option(parsing: .unconditional, help: """
        Value column of a series (0-based), or several, comma-separated, by index or header name (realgdp,cpi,3): \
        the model reads them all at each step.
        """)
    var valueColumn = "1"
    @Option(help: """
        Columns of --value-column that a series' forecast predicts, comma-separated, by index or header name \
        (default: the first value column).
        """)
    var targetColumn: String?
    @Flag(inversion: .prefixedNo, help: """
        The first row is a header (--header) or data (--no-header). Unsaid: a series' first row is a header unless \
        its value is a number; a table is read without one, and refused if its first row looks like a header (its \
        label on no other row while other labels repeat).
        """)
    var header: Bool?
    @Option(help: "word or character tokens.") var tokenizer: String?
    @Option(help: "Keep the most frequent ids below this (Keras's num_words).") var numWords: Int?
    @Option(help: "Sequence length T: pad/truncate texts to it; window length for text and series.") var maxLength = 100
    @Option(help: "Padding side: pre (Keras's default) or post.") var padding = "pre"
    @Option(help: "Truncating side: pre (Keras's default) or post.") var truncating = "pre"
    @Option(help: "Steps between windows of text or series (default: T for text, 1 for series).") var stride: Int?
    @Option(help: "Values a forecast predicts.") var horizon = 1
    @Option(help: """
        How a series is scaled for the model: difference (default: predict the change from the window's last value, \
        in units of the deviation of one step's change over the training part), revin (each window less its own mean, over its own deviation), \
        level (every value standardised by the training part's mean and deviation; cannot forecast beyond the \
        training range).
        """)
    var transform: String?
    @Option(help: "Fraction of the data for validation.") var validationSplit = 0.1
    @Option(help: "Fraction of the data held out for testing (imdb: 0 uses its test folder).") var testSplit = 0.0
    @Option(help: "Seed of the split's shuffle.") var splitSeed: UInt64 = 0
    @Flag(help: "Skip and count malformed rows instead of stopping at the first.") var skipMalformed = false
    @Flag(inversion: .prefixedNo, help: "Recurrent layers skip padding (default), or read it as Keras does without mask_zero.")
    var maskPadding = true

    func validate() throws {
        guard maxLength >= 1, horizon >= 1 else { throw ValidationError("--max-length and --horizon must be at least 1") }
        let valueIndices = Self.columnList(valueColumn).compactMap { Int($0) }
        for (name, column) in [("--label-column", labelColumn), ("--text-column", textColumn)]
            + valueIndices.map({ ("--value-column", $0) }) where column < 0 {
            throw ValidationError("\(name) must be 0 or more, got \(column)")
        }
        if Self.columnList(valueColumn).isEmpty || targetColumn.map({ Self.columnList($0).isEmpty }) == true {
            throw ValidationError("--value-column and --target-column name at least one column")
        }
        let formatName = format ?? data.first.map(Self.guessFormat)
        if ["tsv", "csv", "tagged"].contains(formatName), labelColumn == textColumn {
            throw ValidationError(
                "--label-column and --text-column are both \(labelColumn): the label would be fed to the model as its input")
        }
        guard ["pre", "post"].contains(padding), ["pre", "post"].contains(truncating) else {
            throw ValidationError("--padding and --truncating are pre or post")
        }
        if let transform {
            let names = SeriesTransform.allCases.map(\.rawValue)
            guard SeriesTransform(rawValue: transform) != nil else {
                throw ValidationError("--transform is \(names.joined(separator: ", ")), got '\(transform)'")
            }
            if let formatName, formatName != "series" {
                throw ValidationError("--transform scales a series; format \(formatName) has none")
            }
        }
    }

    /// The data source these options describe.
    func source() throws -> DataSource {
        guard !data.isEmpty else { throw ValidationError("--data is required") }
        let formatName = format ?? Self.guessFormat(data[0])
        guard let chosen = DataSource.Format(rawValue: formatName) else {
            throw ValidationError("unknown format '\(formatName)': \(DataSource.Format.allCases.map(\.rawValue))")
        }
        var source = DataSource(format: chosen, paths: data)
        source.formatIsGuessed = format == nil
        if chosen == .lines {
            source.classNames = classes?.split(separator: ",").map(String.init)
                ?? data.map { path in String(path.split(separator: "/").last ?? Substring(path)) }
        }
        source.labelColumn = labelColumn
        source.textColumn = textColumn
        // One column by index reads as it always has; several, a name, or targets read columns.
        let values = Self.columnList(valueColumn)
        if values.count == 1, let index = Int(values[0]), targetColumn == nil {
            source.valueColumn = index
        } else {
            source.valueColumns = values
            source.targetColumns = targetColumn.map(Self.columnList)
        }
        source.hasHeader = header
        let tokenizerName = tokenizer ?? (chosen == .text ? "character" : "word")
        guard let kind = DataSource.TokenizerKind(rawValue: tokenizerName) else {
            throw ValidationError("--tokenizer is word or character")
        }
        source.tokenizer = kind
        source.numWords = numWords
        source.sequenceLength = maxLength
        source.padding = padding == "pre" ? .pre : .post
        source.truncating = truncating == "pre" ? .pre : .post
        source.stride = stride
        source.horizon = horizon
        if let transform { source.transform = SeriesTransform(rawValue: transform) ?? .default }
        source.validationFraction = validationSplit
        source.testFraction = testSplit
        source.splitSeed = splitSeed
        source.skipsMalformed = skipMalformed
        source.masksPadding = maskPadding
        return source
    }

    /// The fields of a comma-separated list of columns, trimmed, empty ones left out.
    static func columnList(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
            .filter { !$0.isEmpty }
    }

    /// A format from a path: a folder is aclImdb, `.tsv`/`.csv`, `.txt` text; else tsv.
    static func guessFormat(_ path: String) -> String {
        if path.hasSuffix("/") || path.hasSuffix("aclImdb") { return "imdb" }
        if path.hasSuffix(".csv") { return "csv" }
        if path.hasSuffix(".txt") { return "text" }
        return "tsv"
    }

    // MARK: In checkpoints

    /// The source a checkpoint recorded (the schema is the library's `RecordedData`), or the
    /// command-line advice to name the data.
    static func source(in recorded: RecordedData) throws -> DataSource {
        guard let source = recorded.source else {
            throw ValidationError("the checkpoint records no data source (\(RecordedData.sourceKey)); give --data")
        }
        return source
    }
}
