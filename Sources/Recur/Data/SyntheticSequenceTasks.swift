// Synthetic sequence-to-sequence tasks, generated from a seed: source and target differ in
// length or order, so a model must read the whole source before it writes (an encoder–decoder
// with attention learns them in minutes on a CPU). Nothing to download.
//
// Each task yields `SequencePair`s of text, character-tokenised on both sides; group them with
// `SequencePairs(pairs:)`.

/// A seeded generator of source–target pairs.
public protocol SequencePairTask {
    /// The next pair of the seeded stream.
    mutating func nextPair() -> SequencePair
}

extension SequencePairTask {
    /// The next `count` pairs of the seeded stream: the same seed gives the same pairs.
    /// - Parameter count: how many pairs.
    public mutating func pairs(count: Int) -> [SequencePair] {
        (0..<count).map { _ in nextPair() }
    }
}

/// Reverse a string: `"abcde"` → `"edcba"`. The first target character depends on the last
/// source character, the longest dependency a sequence of that length has.
public struct ReverseStringTask: SequencePairTask, Sendable {
    /// The characters sources are drawn from, each equally likely.
    public let alphabet: [Unicode.Scalar]
    /// The source lengths, each equally likely.
    public let lengths: ClosedRange<Int>
    private var random: SeededRandom

    /// - Parameters:
    ///   - alphabet: the characters to draw from (default the 26 lowercase letters); neither a
    ///     tab nor a line break.
    ///   - lengths: the source lengths (default 1 … 12), at least 1.
    ///   - seed: the stream's seed.
    /// - Throws: `RecurError.invalidArgument` for an empty alphabet, a tab or line break in it, or
    ///   lengths below 1.
    public init(alphabet: String = "abcdefghijklmnopqrstuvwxyz", lengths: ClosedRange<Int> = 1...12,
                seed: UInt64) throws {
        self.alphabet = try checkedAlphabet(alphabet, operation: "ReverseStringTask.init")
        self.lengths = try checkedLengths(lengths, operation: "ReverseStringTask.init")
        random = SeededRandom(seed: seed)
    }

    /// A random string and the same string reversed.
    public mutating func nextPair() -> SequencePair {
        let count = lengths.lowerBound + random.next(below: lengths.count)
        var source = String.UnicodeScalarView()
        for _ in 0..<count { source.append(alphabet[random.next(below: alphabet.count)]) }
        return SequencePair(source: String(source), target: String(String.UnicodeScalarView(source.reversed())))
    }
}

/// Sort digits: `"4091"` → `"0149"`. Every target position depends on the whole source.
public struct SortDigitsTask: SequencePairTask, Sendable {
    /// The source lengths, each equally likely.
    public let lengths: ClosedRange<Int>
    private var random: SeededRandom

    /// - Parameters:
    ///   - lengths: the source lengths (default 1 … 10), at least 1.
    ///   - seed: the stream's seed.
    /// - Throws: `RecurError.invalidArgument` for lengths below 1.
    public init(lengths: ClosedRange<Int> = 1...10, seed: UInt64) throws {
        self.lengths = try checkedLengths(lengths, operation: "SortDigitsTask.init")
        random = SeededRandom(seed: seed)
    }

    /// Random decimal digits and the same digits in ascending order.
    public mutating func nextPair() -> SequencePair {
        let count = lengths.lowerBound + random.next(below: lengths.count)
        let digits = (0..<count).map { _ in Character(String(random.next(below: 10))) }
        return SequencePair(source: String(digits), target: String(digits.sorted()))
    }
}

/// Rewrite a date written in one of several human formats as ISO 8601: `"Tue 3 Mar 1998"`,
/// `"March 3, 1998"`, `"03/03/98"` … → `"1998-03-03"`. The model must recognise the format,
/// spell out month names into numbers, and expand two-digit years.
///
/// Dates are drawn as a uniform year in `years`, a uniform month and a uniform valid day of that
/// month (leap years in the Gregorian calendar); then a uniform format among `formats`.
public struct DateRewritingTask: SequencePairTask, Sendable {
    /// The human formats a source is written in.
    public enum Format: String, Sendable, CaseIterable {
        /// `3 March 1998`.
        case dayMonthYear
        /// `March 3, 1998`.
        case monthDayYear
        /// `03/03/98`: month, day, two-digit year (the US order).
        case usNumeric
        /// `Tue 3 Mar 1998`.
        case weekdayAbbreviated
        /// `Tuesday, March 3rd, 1998`.
        case weekdayOrdinal
        /// `3.3.1998`: day, month, year (the German order).
        case dotted
        /// `03-Mar-98`.
        case dayMonthShortYear

        /// Whether the format writes the year with two digits.
        public var hasTwoDigitYear: Bool { self == .usNumeric || self == .dayMonthShortYear }

        /// The date written in this format.
        ///
        /// - Parameters:
        ///   - year: the year, 1000 … 9999.
        ///   - month: 1 … 12.
        ///   - day: 1 … the month's length.
        public func text(year: Int, month: Int, day: Int) -> String {
            let monthName = DateRewritingTask.monthNames[month - 1]
            let shortMonth = String(monthName.prefix(3))
            let weekday = DateRewritingTask.weekdayNames[DateRewritingTask.weekday(year: year, month: month, day: day)]
            switch self {
            case .dayMonthYear: return "\(day) \(monthName) \(year)"
            case .monthDayYear: return "\(monthName) \(day), \(year)"
            case .usNumeric: return "\(twoDigits(month))/\(twoDigits(day))/\(twoDigits(year % 100))"
            case .weekdayAbbreviated: return "\(weekday.prefix(3)) \(day) \(shortMonth) \(year)"
            case .weekdayOrdinal: return "\(weekday), \(monthName) \(day)\(Self.ordinalSuffix(day)), \(year)"
            case .dotted: return "\(day).\(month).\(year)"
            case .dayMonthShortYear: return "\(twoDigits(day))-\(shortMonth)-\(twoDigits(year % 100))"
            }
        }

        /// `st`, `nd`, `rd` or `th`, as English writes 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st.
        static func ordinalSuffix(_ day: Int) -> String {
            if (11...13).contains(day % 100) { return "th" }
            switch day % 10 {
            case 1: return "st"
            case 2: return "nd"
            case 3: return "rd"
            default: return "th"
            }
        }
    }

    /// English month names, January first.
    public static let monthNames = ["January", "February", "March", "April", "May", "June", "July",
                                    "August", "September", "October", "November", "December"]
    /// English weekday names, Sunday first (the numbering of `weekday(year:month:day:)`).
    public static let weekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    /// The formats sources are written in.
    public let formats: [Format]
    /// The years dates are drawn from.
    public let years: ClosedRange<Int>
    private var random: SeededRandom

    /// - Parameters:
    ///   - formats: the source formats (default all), at least one.
    ///   - years: the years to draw from (default 1950 … 2049), within 1000 … 9999; at most 100
    ///     years when a format writes two-digit years, so that each two-digit year means one year.
    ///   - seed: the stream's seed.
    /// - Throws: `RecurError.invalidArgument` for no formats or years outside those bounds.
    public init(formats: [Format] = Format.allCases, years: ClosedRange<Int> = 1950...2049, seed: UInt64) throws {
        let operation = "DateRewritingTask.init"
        guard !formats.isEmpty else {
            throw RecurError.invalidArgument(operation: operation, detail: "no date formats")
        }
        guard years.lowerBound >= 1000 && years.upperBound <= 9999 else {
            throw RecurError.invalidArgument(operation: operation, detail: "years \(years) are not all of four digits")
        }
        if years.count > 100, let format = formats.first(where: \.hasTwoDigitYear) {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(years.count) years with the two-digit-year format \(format.rawValue): a two-digit year would stand for several")
        }
        self.formats = formats
        self.years = years
        random = SeededRandom(seed: seed)
    }

    /// A random date in a random format, and the date as `YYYY-MM-DD`.
    public mutating func nextPair() -> SequencePair {
        let year = years.lowerBound + random.next(below: years.count)
        let month = 1 + random.next(below: 12)
        let day = 1 + random.next(below: Self.daysInMonth(year: year, month: month))
        let format = formats[random.next(below: formats.count)]
        return SequencePair(source: format.text(year: year, month: month, day: day),
                            target: Self.iso(year: year, month: month, day: day))
    }

    /// The date as ISO 8601 writes it, `YYYY-MM-DD`.
    ///
    /// - Parameters:
    ///   - year: the year, 1000 … 9999.
    ///   - month: 1 … 12.
    ///   - day: 1 … 31.
    public static func iso(year: Int, month: Int, day: Int) -> String {
        "\(year)-\(twoDigits(month))-\(twoDigits(day))"
    }

    /// The number of days of `month` in `year` of the Gregorian calendar.
    ///
    /// - Parameters:
    ///   - year: the year.
    ///   - month: 1 … 12.
    public static func daysInMonth(year: Int, month: Int) -> Int {
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        return [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// The day of the week, 0 Sunday … 6 Saturday, in the Gregorian calendar (Sakamoto's method).
    ///
    /// - Parameters:
    ///   - year: the year, 1 or later.
    ///   - month: 1 … 12.
    ///   - day: 1 … 31.
    public static func weekday(year: Int, month: Int, day: Int) -> Int {
        let offsets = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4]
        let y = month < 3 ? year - 1 : year  // January and February count with the year before
        return (y + y / 4 - y / 100 + y / 400 + offsets[month - 1] + day) % 7
    }
}

/// `n` with at least two digits: `3` → `"03"`.
private func twoDigits(_ n: Int) -> String {
    n < 10 ? "0\(n)" : "\(n)"
}

/// The scalars of `alphabet`, checked to be usable in a pair.
private func checkedAlphabet(_ alphabet: String, operation: String) throws -> [Unicode.Scalar] {
    let scalars = Array(alphabet.unicodeScalars)
    guard !scalars.isEmpty else {
        throw RecurError.invalidArgument(operation: operation, detail: "empty alphabet")
    }
    if let bad = scalars.first(where: { $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
        throw RecurError.invalidArgument(
            operation: operation, detail: "the alphabet holds U+\(String(bad.value, radix: 16, uppercase: true)), a tab or line break")
    }
    return scalars
}

/// `lengths`, checked to start at 1 or more.
private func checkedLengths(_ lengths: ClosedRange<Int>, operation: String) throws -> ClosedRange<Int> {
    guard lengths.lowerBound >= 1 else {
        throw RecurError.invalidArgument(operation: operation, detail: "lengths \(lengths) include lengths below 1")
    }
    return lengths
}
