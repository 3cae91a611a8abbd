/// How a delimited text file (CSV, TSV) is laid out.
public struct DelimitedTextFormat: Sendable, Equatable {
    /// How double quotes in a field are read.
    public enum Quoting: String, Sendable, Equatable {
        /// RFC 4180: a field that starts with `"` runs to the matching closing quote and may hold
        /// delimiters, line breaks and doubled quotes (`""` for one `"`). A quote inside a field
        /// that did not start with one is an ordinary character, as Python's `csv` reads it.
        case rfc4180
        /// Quotes are ordinary characters and every line is one record (Python's
        /// `csv.QUOTE_NONE`). Needed for files like the SMS Spam Collection, whose messages
        /// contain unbalanced quotes.
        case none
    }

    /// The field separator, an ASCII character.
    public var delimiter: Unicode.Scalar
    /// Whether the first record names the columns.
    public var hasHeader: Bool
    /// How quotes are read.
    public var quoting: Quoting

    /// - Precondition: `delimiter` is ASCII and neither a quote nor a line break.
    public init(delimiter: Unicode.Scalar, hasHeader: Bool, quoting: Quoting = .rfc4180) {
        precondition(delimiter.isASCII && delimiter != "\"" && delimiter != "\n" && delimiter != "\r",
                     "the delimiter must be an ASCII character other than a quote or a line break")
        self.delimiter = delimiter
        self.hasHeader = hasHeader
        self.quoting = quoting
    }

    /// Comma-separated, RFC 4180 quoting, with a header row.
    public static let csv = DelimitedTextFormat(delimiter: ",", hasHeader: true)
    /// Tab-separated, RFC 4180 quoting, with a header row.
    public static let tsv = DelimitedTextFormat(delimiter: "\t", hasHeader: true)
}

/// A column of a delimited file, by 0-based position or by its header name.
public enum ColumnSelector: Sendable, Equatable, CustomStringConvertible {
    case index(Int)
    /// The column whose header field equals this name exactly (needs a header row).
    case name(String)

    public var description: String {
        switch self {
        case let .index(index): "column \(index)"
        case let .name(name): "column '\(name)'"
        }
    }
}

/// What a reader does with a malformed row (wrong field count, bad label, bad number, bad file
/// name): stop with an error naming the file and line, or skip the row and count it.
public enum MalformedRowPolicy: String, Sendable, Equatable {
    /// Throw `RecurError.malformed` with source `path:line` (the default).
    case fail
    /// Leave the row out; the dataset's `skippedCount` says how many were left out.
    case skip
}

// MARK: Records

/// The records of a delimited file, with the file name and line number of each, and the checks
/// every reader of such files shares (field count, column lookup, malformed-row policy).
struct DelimitedTable {
    /// One record's fields and the line it starts on (1-based).
    struct Record {
        var fields: [String]
        var line: Int
    }

    let path: String
    /// The header's fields, when the format has a header.
    private(set) var header: [String]?
    /// The line the header is on (1 unless empty lines precede it).
    private var headerLine = 1
    /// The records after the header that have the table's field count.
    private(set) var records: [Record] = []
    /// Rows left out under `MalformedRowPolicy.skip`.
    private(set) var skippedCount = 0
    /// The first row left out and why, for the message when every row was.
    private(set) var firstSkipped: (line: Int, detail: String)?
    let policy: MalformedRowPolicy

    /// Reads and splits the file at `path`. Every record must have as many fields as the header
    /// (or, without a header, as the first record that holds `requiredFieldCount` fields). Empty
    /// lines are not records and are passed over. An unterminated quoted field is an error in
    /// either policy: it swallows the rest of the file, so no later row could be trusted.
    init(contentsOf path: String, format: DelimitedTextFormat, requiredFieldCount: Int = 0,
         onMalformed policy: MalformedRowPolicy) throws {
        try self.init(bytes: try FileBytes.read(contentsOf: path), source: path, format: format,
                      requiredFieldCount: requiredFieldCount, onMalformed: policy)
    }

    /// Splits `bytes` as the contents of a file; `source` names it in errors as a path would.
    ///
    /// Without a header, a record with fewer than `requiredFieldCount` fields (the columns the
    /// reader asks for by index) is malformed and does not fix the field count: otherwise a
    /// first line of garbage would make every good row after it the malformed one.
    init(bytes: [UInt8], source path: String, format: DelimitedTextFormat, requiredFieldCount: Int = 0,
         onMalformed policy: MalformedRowPolicy) throws
    {
        self.path = path
        self.policy = policy
        var parser = DelimitedParser(bytes: droppingByteOrderMark(bytes), format: format, path: path)

        var fieldCount: Int?
        while let parsed = try parser.next() {
            switch parsed {
            case let .malformed(detail, line):
                try reject(line: line, detail)
            case let .record(record):
                if format.hasHeader && header == nil {
                    header = record.fields
                    headerLine = record.line
                    fieldCount = record.fields.count
                    continue
                }
                if fieldCount == nil && record.fields.count < requiredFieldCount {
                    try reject(line: record.line, "found \(record.fields.count) field\(record.fields.count == 1 ? "" : "s"), "
                               + "but column \(requiredFieldCount - 1) needs at least \(requiredFieldCount)")
                    continue
                }
                let expected = fieldCount ?? record.fields.count
                fieldCount = expected
                if record.fields.count != expected {
                    try reject(line: record.line, "expected \(expected) fields, found \(record.fields.count)")
                    continue
                }
                records.append(record)
            }
        }
    }

    /// The 0-based position of `column`.
    ///
    /// - Throws: `RecurError.malformed` naming the header line when a named column is absent;
    ///   `RecurError.invalidArgument` for a name without a header or an index beyond the fields.
    func position(of column: ColumnSelector) throws -> Int {
        switch column {
        case let .name(name):
            guard let header else {
                throw RecurError.invalidArgument(
                    operation: "DelimitedTextFormat", detail: "\(path): column '\(name)' asked for by name, but the format has no header")
            }
            guard let position = header.firstIndex(of: name) else {
                throw RecurError.malformed(
                    source: "\(path):\(headerLine)", detail: "no column named '\(name)' in the header \(header)")
            }
            return position
        case let .index(index):
            let available = header?.count ?? records.first?.fields.count
            if index < 0 || (available.map { index >= $0 } ?? false) {
                throw RecurError.invalidArgument(
                    operation: "DelimitedTextFormat",
                    detail: "\(path): column index \(index) outside the \(available ?? 0) columns")
            }
            return index
        }
    }

    /// Applies the malformed-row policy: throws `malformed` naming `path:line`, or counts a skip.
    mutating func reject(line: Int, _ detail: String) throws {
        switch policy {
        case .fail: throw RecurError.malformed(source: "\(path):\(line)", detail: detail)
        case .skip:
            skippedCount += 1
            if firstSkipped == nil { firstSkipped = (line, detail) }
        }
    }

    /// The error for a file whose rows were all skipped as malformed (`accepted` rows were
    /// kept), or nil when some row was kept or none was skipped. An empty result would otherwise
    /// surface later as a confusing "no examples", or not at all.
    func everyRowSkipped(accepted: Int) -> RecurError? {
        guard accepted == 0, skippedCount > 0, let firstSkipped else { return nil }
        let rows = skippedCount == 1 ? "the only row was" : "all \(skippedCount) rows were"
        return .malformed(
            source: path,
            detail: "\(rows) malformed and skipped; the first, line \(firstSkipped.line): \(firstSkipped.detail)")
    }

    /// The fields a record needs to hold every column asked for by index (0 when all are names).
    static func requiredFieldCount(_ columns: ColumnSelector...) -> Int {
        columns.reduce(0) { count, column in
            if case let .index(index) = column { return max(count, index + 1) }
            return count
        }
    }
}

/// A byte-level RFC 4180 splitter. Works on bytes because the delimiter, quote and line breaks
/// are ASCII, and ASCII bytes never occur inside a multi-byte UTF-8 character (nor mean anything
/// else in Windows-1252), so fields are cut before they are decoded.
struct DelimitedParser {
    enum Parsed {
        case record(DelimitedTable.Record)
        /// A record that cannot be split, with the line it starts on; parsing goes on at the
        /// next line.
        case malformed(detail: String, line: Int)
    }

    private let bytes: ArraySlice<UInt8>
    private let delimiter: UInt8
    private let quotes: Bool
    private let encoding: TextEncoding
    private let path: String
    private var position: Int
    private var line = 1

    private static let quote = UInt8(ascii: "\"")
    private static let newline = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")

    init(bytes: ArraySlice<UInt8>, format: DelimitedTextFormat, path: String) {
        self.bytes = bytes
        self.delimiter = UInt8(format.delimiter.value)
        self.quotes = format.quoting == .rfc4180
        self.encoding = TextEncoding.detect(bytes)
        self.path = path
        self.position = bytes.startIndex
    }

    /// The next record, or nil at the end of the file. A record ends at LF or CRLF outside
    /// quotes, or at the end of the file (a final line needs no newline).
    ///
    /// - Throws: `RecurError.malformed` for a quoted field that never closes.
    mutating func next() throws -> Parsed? {
        skipEmptyLines()
        guard position < bytes.endIndex else { return nil }
        let recordLine = line
        var fields: [String] = []
        while true {
            if quotes && position < bytes.endIndex && bytes[position] == Self.quote {
                fields.append(try quotedField())
                // After the closing quote: a delimiter, the end of the record, or nothing else.
                if position == bytes.endIndex { break }
                if bytes[position] == delimiter {
                    position += 1
                    continue
                }
                if endRecordAtLineBreak() { break }
                skipRestOfLine()
                return .malformed(
                    detail: "unexpected character after the closing quote of field \(fields.count)", line: recordLine)
            }
            let start = position
            while position < bytes.endIndex && bytes[position] != delimiter && bytes[position] != Self.newline {
                position += 1
            }
            var end = position
            let endsRecord = position == bytes.endIndex || bytes[position] == Self.newline
            if endsRecord && end > start && bytes[end - 1] == Self.carriageReturn { end -= 1 }
            fields.append(encoding.decode(bytes[start..<end]))
            if position == bytes.endIndex { break }
            position += 1
            if endsRecord {
                line += 1
                break
            }
        }
        return .record(DelimitedTable.Record(fields: fields, line: recordLine))
    }

    /// Reads a quoted field starting at its opening quote and leaves `position` after the closing
    /// quote.
    private mutating func quotedField() throws -> String {
        let openingLine = line
        var content: [UInt8] = []
        position += 1
        while position < bytes.endIndex {
            let byte = bytes[position]
            if byte == Self.quote {
                if position + 1 < bytes.endIndex && bytes[position + 1] == Self.quote {
                    content.append(Self.quote)
                    position += 2
                    continue
                }
                position += 1
                return encoding.decode(content[...])
            }
            if byte == Self.newline { line += 1 }
            content.append(byte)
            position += 1
        }
        throw RecurError.malformed(
            source: "\(path):\(openingLine)", detail: "quoted field opened on this line is never closed")
    }

    /// Consumes an LF or CRLF at `position` and says whether there was one.
    private mutating func endRecordAtLineBreak() -> Bool {
        if bytes[position] == Self.newline {
            position += 1
        } else if bytes[position] == Self.carriageReturn && position + 1 < bytes.endIndex
                    && bytes[position + 1] == Self.newline {
            position += 2
        } else {
            return false
        }
        line += 1
        return true
    }

    private mutating func skipEmptyLines() {
        while position < bytes.endIndex && endRecordAtLineBreak() {}
    }

    private mutating func skipRestOfLine() {
        while position < bytes.endIndex && bytes[position] != Self.newline { position += 1 }
        if position < bytes.endIndex {
            position += 1
            line += 1
        }
    }
}
