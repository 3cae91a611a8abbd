/// How a reader turns label strings into class ids 0, 1, ….
public enum LabelMapping: Sendable, Equatable {
    /// Ids in sorted order of the distinct labels (`ham` 0, `spam` 1), like scikit-learn's
    /// `LabelEncoder` and Keras's alphabetical class folders. The ids don't depend on row order,
    /// so a shuffled copy of a file gets the same ids.
    case sorted
    /// Ids in order of each label's first appearance in the file.
    case firstSeen
    /// The given names get ids 0, 1, … in order; a row with any other label is malformed. Use
    /// this to fix the ids across files that may not all hold every class.
    case explicit([String])
}

/// Texts with class ids, as readers return them.
public struct TextClassificationDataset: Sendable, Equatable {
    /// The examples' texts.
    public var texts: [String]
    /// Each text's class id, an index into `classNames`.
    public var labels: [Int32]
    /// The class names by id.
    public var classNames: [String]
    /// How many malformed rows the reader left out (`MalformedRowPolicy.skip`); 0 otherwise.
    public var skippedCount: Int

    /// - Precondition: as many labels as texts, each a valid index into `classNames`.
    public init(texts: [String], labels: [Int32], classNames: [String], skippedCount: Int = 0) {
        precondition(texts.count == labels.count, "\(texts.count) texts but \(labels.count) labels")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < classNames.count }, "label outside the class names")
        self.texts = texts
        self.labels = labels
        self.classNames = classNames
        self.skippedCount = skippedCount
    }

    /// The number of examples.
    public var count: Int { texts.count }

    /// How many examples each class has, by class id.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classNames.count)
        for label in labels { counts[Int(label)] += 1 }
        return counts
    }

    /// The examples at `indices`, in that order, with the same class names.
    public func subset(_ indices: some Sequence<Int>) -> TextClassificationDataset {
        var texts: [String] = []
        var labels: [Int32] = []
        for index in indices {
            texts.append(self.texts[index])
            labels.append(self.labels[index])
        }
        return TextClassificationDataset(texts: texts, labels: labels, classNames: classNames, skippedCount: skippedCount)
    }

    /// The examples in a seeded random order (`seededPermutation`). Files are often grouped by
    /// class, and a validation split takes the last examples, so shuffle before splitting.
    public func shuffled(seed: UInt64) -> TextClassificationDataset {
        subset(seededPermutation(count: count, seed: seed))
    }
}

// MARK: Delimited files

extension TextClassificationDataset {
    /// Reads labelled texts from a delimited file: one example per record, the label and text
    /// taken from the given columns. Fields are used as written: no trimming, no unescaping of
    /// HTML entities. A file that is not valid UTF-8 is read as Windows-1252.
    ///
    /// The SMS Spam Collection (`ham<TAB>text`, no header, no quoting):
    /// ```swift
    /// let format = DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none)
    /// let sms = try TextClassificationDataset.readDelimited(
    ///     contentsOf: path, format: format, labelColumn: .index(0), textColumn: .index(1))
    /// ```
    ///
    /// - Parameters:
    ///   - path: the file to read.
    ///   - format: delimiter, header and quoting.
    ///   - labelColumn: the column holding each example's label.
    ///   - textColumn: the column holding each example's text.
    ///   - mapping: `labels:`, how label strings become ids (default sorted).
    ///   - policy: `onMalformed:`, fail (default) or skip rows with the wrong field count or, with
    ///     `.explicit` labels, an unknown label.
    /// - Throws: `RecurError.io` when the file can't be read; `RecurError.malformed` with source
    ///   `path:line` for a malformed row (unless skipped) and for an unterminated quote (always),
    ///   and with source `path` when every row was malformed and skipped;
    ///   `RecurError.invalidArgument` for a column the file doesn't have or repeated explicit names.
    public static func readDelimited(
        contentsOf path: String, format: DelimitedTextFormat, labelColumn: ColumnSelector,
        textColumn: ColumnSelector, labels mapping: LabelMapping = .sorted,
        onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> TextClassificationDataset {
        try readDelimited(
            bytes: try FileBytes.read(contentsOf: path), source: path, format: format, labelColumn: labelColumn,
            textColumn: textColumn, labels: mapping, onMalformed: policy)
    }

    /// `readDelimited(contentsOf:...)` on the bytes of a file; `source` names it in errors.
    ///
    /// With `refusesHeaderLikeFirstRow` (for callers that were not told whether the file has a
    /// header), a file without a header whose first row looks like one is refused rather than
    /// read with a class made of the header's label: see `checkFirstRowIsNotAHeader`.
    static func readDelimited(
        bytes: [UInt8], source path: String, format: DelimitedTextFormat, labelColumn: ColumnSelector,
        textColumn: ColumnSelector, labels mapping: LabelMapping = .sorted,
        onMalformed policy: MalformedRowPolicy = .fail, refusesHeaderLikeFirstRow: Bool = false
    ) throws -> TextClassificationDataset {
        if case let .explicit(names) = mapping, names.isEmpty || Set(names).count != names.count {
            throw RecurError.invalidArgument(
                operation: "TextClassificationDataset.readDelimited",
                detail: "explicit class names must be distinct and at least one: \(names)")
        }
        var table = try DelimitedTable(
            bytes: bytes, source: path, format: format,
            requiredFieldCount: DelimitedTable.requiredFieldCount(labelColumn, textColumn), onMalformed: policy)
        let labelPosition = try table.position(of: labelColumn)
        let textPosition = try table.position(of: textColumn)

        let classifier = LabelClassifier(mapping: mapping)
        var texts: [String] = []
        var labelNames: [String] = []
        var firstAcceptedLine: Int?
        for record in table.records {
            let label = record.fields[labelPosition]
            guard classifier.accepts(label) else {
                try table.reject(line: record.line, "label '\(label)' is not one of \(classifier.names)")
                continue
            }
            if firstAcceptedLine == nil { firstAcceptedLine = record.line }
            labelNames.append(label)
            texts.append(record.fields[textPosition])
        }
        if let error = table.everyRowSkipped(accepted: labelNames.count) { throw error }
        if refusesHeaderLikeFirstRow, !format.hasHeader, let line = firstAcceptedLine, line == table.records.first?.line {
            try checkFirstRowIsNotAHeader(labelNames, line: line, path: path)
        }
        let (names, ids) = classifier.assign(labelNames)
        return TextClassificationDataset(texts: texts, labels: ids, classNames: names, skippedCount: table.skippedCount)
    }
}

extension TextClassificationDataset {
    /// Refuses labels whose first one looks like a header's column name: it is on no other row,
    /// while the rows after it repeat their labels, as the classes of a labelled file do. Read as
    /// data, such a row becomes an example of a class of its own ("label"), and a two-class
    /// problem silently trains as three. A file with a real one-example class first is the rare
    /// case, and saying that there is no header reads it.
    static func checkFirstRowIsNotAHeader(_ labels: [String], line: Int, path: String) throws {
        guard labels.count >= 3, let first = labels.first else { return }
        let rest = labels.dropFirst()
        guard !rest.contains(first), Set(rest).count < rest.count else { return }
        throw RecurError.malformed(
            source: "\(path):\(line)",
            detail: "the first row looks like a header: its label '\(first)' is on no other row; say whether the file "
                + "has a header (recur train: --header skips the row, --no-header reads it as an example)")
    }
}

/// Label strings to ids under a `LabelMapping`.
private struct LabelClassifier {
    let mapping: LabelMapping

    /// The explicit names, for messages; empty for the other mappings.
    var names: [String] {
        if case let .explicit(names) = mapping { return names }
        return []
    }

    func accepts(_ label: String) -> Bool {
        if case let .explicit(names) = mapping { return names.contains(label) }
        return true
    }

    /// The class names and each label's id.
    func assign(_ labels: [String]) -> (names: [String], ids: [Int32]) {
        let names: [String]
        switch mapping {
        case .sorted:
            names = Set(labels).sorted()
        case .firstSeen:
            var seen = Set<String>()
            names = labels.filter { seen.insert($0).inserted }
        case let .explicit(explicit):
            names = explicit
        }
        var ids: [String: Int32] = [:]
        for (id, name) in names.enumerated() where ids[name] == nil {
            ids[name] = Int32(id)
        }
        return (names, labels.map { ids[$0]! })
    }
}

// MARK: One file per class

extension TextClassificationDataset {
    /// Reads one plain-text file per class, one example per line (the layout of rt_polarity's
    /// `rt-polarity.pos` and `rt-polarity.neg`). Classes get ids in the order given.
    ///
    /// Lines end at LF (a CR before it is dropped); U+0085 and other characters some splitters
    /// treat as line breaks are text. Each line is kept as written, trailing spaces included.
    /// A file that is not valid UTF-8 is read as Windows-1252, as rt_polarity needs.
    ///
    /// ```swift
    /// let reviews = try TextClassificationDataset.readLines(classFiles: ["neg": negPath, "pos": posPath])
    /// ```
    ///
    /// - Parameters:
    ///   - classFiles: class name and file path, in class id order.
    ///   - policy: `onMalformed:`, fail (default) or skip empty and whitespace-only lines, which hold no
    ///     example.
    /// - Throws: `RecurError.io` when a file can't be read; `RecurError.malformed` with source
    ///   `path:line` for an empty line (unless skipped), and with source `path` for a file with no
    ///   example (empty, or only empty lines), whatever the policy; `RecurError.invalidArgument`
    ///   for no classes or a class named twice.
    public static func readLines(
        classFiles: KeyValuePairs<String, String>, onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> TextClassificationDataset {
        try readLines(classFiles: classFiles.map { (name: $0.key, path: $0.value) }, onMalformed: policy)
    }

    /// The same as `readLines(classFiles:onMalformed:)` with the classes as a list of
    /// (name, path) pairs, for callers that assemble it at run time.
    public static func readLines(
        classFiles: [(name: String, path: String)], onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> TextClassificationDataset {
        try checkClassNames(classFiles.map(\.name))
        let files = try classFiles.map { name, path in
            (name: name, source: path, bytes: try FileBytes.read(contentsOf: path))
        }
        return try readLines(classContents: files, onMalformed: policy)
    }

    /// `readLines(classFiles:onMalformed:)` on each class file's bytes; `source` names it in errors.
    static func readLines(
        classContents: [(name: String, source: String, bytes: [UInt8])], onMalformed policy: MalformedRowPolicy = .fail
    ) throws -> TextClassificationDataset {
        let names = classContents.map(\.name)
        try checkClassNames(names)
        var texts: [String] = []
        var labels: [Int32] = []
        var skipped = 0
        for (id, file) in classContents.enumerated() {
            let path = file.source
            let bytes = droppingByteOrderMark(file.bytes)
            let encoding = TextEncoding.detect(bytes)
            var examples = 0
            var emptyLines = 0
            for line in splitLines(bytes) {
                let text = encoding.decode(line.bytes)
                guard !text.unicodeScalars.allSatisfy(\.properties.isWhitespace) else {
                    guard policy == .skip else {
                        throw RecurError.malformed(source: "\(path):\(line.number)", detail: "empty line: no example")
                    }
                    skipped += 1
                    emptyLines += 1
                    continue
                }
                texts.append(text)
                labels.append(Int32(id))
                examples += 1
            }
            // A class without examples would still get an id and an output, and the model would
            // train on the other classes alone without a word of warning.
            guard examples > 0 else {
                let content = emptyLines == 0 ? "the file is empty" : "its \(emptyLines) lines are all empty"
                throw RecurError.malformed(source: path, detail: "no examples for class '\(file.name)': \(content)")
            }
        }
        return TextClassificationDataset(texts: texts, labels: labels, classNames: names, skippedCount: skipped)
    }

    private static func checkClassNames(_ names: [String]) throws {
        guard !names.isEmpty, Set(names).count == names.count else {
            throw RecurError.invalidArgument(
                operation: "TextClassificationDataset.readLines", detail: "class names must be distinct and at least one: \(names)")
        }
    }
}
