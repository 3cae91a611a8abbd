import Testing
@testable import Recur

@Suite("Synthetic sequence-to-sequence tasks")
struct SyntheticSequenceTaskTests {
    @Test("reverse a string: targets reverse their sources; lengths and characters as asked; seeded")
    func reverse() throws {
        var task = try ReverseStringTask(alphabet: "abcxyz", lengths: 2...6, seed: 3)
        let pairs = task.pairs(count: 500)
        var again = try ReverseStringTask(alphabet: "abcxyz", lengths: 2...6, seed: 3)
        #expect(again.pairs(count: 500) == pairs)
        var other = try ReverseStringTask(alphabet: "abcxyz", lengths: 2...6, seed: 4)
        #expect(other.pairs(count: 500) != pairs)
        for pair in pairs {
            #expect(String(pair.source.reversed()) == pair.target)
            #expect((2...6).contains(pair.source.count))
            #expect(pair.source.allSatisfy { "abcxyz".contains($0) })
        }
        #expect(Set(pairs.map(\.source.count)) == Set(2...6))
        let grouped = try SequencePairs(pairs: pairs)
        #expect(grouped.pairCount == 500)
        for invalid in [(alphabet: "", lengths: 1...3), (alphabet: "a\tb", lengths: 1...3), (alphabet: "ab", lengths: 0...3)] {
            #expect(recurError { _ = try ReverseStringTask(alphabet: invalid.alphabet, lengths: invalid.lengths, seed: 0) } != nil)
        }
    }

    @Test("sort digits: targets are their sources' digits in ascending order; seeded")
    func sortDigits() throws {
        var task = try SortDigitsTask(lengths: 1...8, seed: 11)
        let pairs = task.pairs(count: 500)
        var again = try SortDigitsTask(lengths: 1...8, seed: 11)
        #expect(again.pairs(count: 500) == pairs)
        for pair in pairs {
            #expect(pair.source.allSatisfy(\.isASCII) && pair.source.allSatisfy(\.isWholeNumber))
            #expect(pair.target == String(pair.source.sorted()))
            #expect((1...8).contains(pair.source.count))
        }
        #expect(Set(pairs.flatMap { Array($0.source) }).count == 10)
        #expect(recurError { _ = try SortDigitsTask(lengths: 0...4, seed: 0) } != nil)
    }

    @Test("date formats on hand-checked dates, ordinal suffixes and weekdays")
    func dateFormats() {
        let expected: [DateRewritingTask.Format: String] = [
            .dayMonthYear: "3 March 1998", .monthDayYear: "March 3, 1998", .usNumeric: "03/03/98",
            .weekdayAbbreviated: "Tue 3 Mar 1998", .weekdayOrdinal: "Tuesday, March 3rd, 1998",
            .dotted: "3.3.1998", .dayMonthShortYear: "03-Mar-98",
        ]
        for format in DateRewritingTask.Format.allCases {
            #expect(format.text(year: 1998, month: 3, day: 3) == expected[format], "\(format)")
        }
        #expect(DateRewritingTask.Format.usNumeric.text(year: 2004, month: 11, day: 25) == "11/25/04")
        #expect(DateRewritingTask.Format.weekdayOrdinal.text(year: 2000, month: 2, day: 29) == "Tuesday, February 29th, 2000")
        #expect(DateRewritingTask.Format.dayMonthShortYear.text(year: 2011, month: 9, day: 12) == "12-Sep-11")
        let suffixes = [1: "st", 2: "nd", 3: "rd", 4: "th", 11: "th", 12: "th", 13: "th", 21: "st", 22: "nd", 23: "rd", 30: "th", 31: "st"]
        for (day, suffix) in suffixes {
            #expect(DateRewritingTask.Format.ordinalSuffix(day) == suffix, "\(day)")
        }
        #expect(DateRewritingTask.iso(year: 1998, month: 3, day: 3) == "1998-03-03")
        // Weekdays by counting days from Thursday 1 January 1970, over every day of 1950-2049.
        var daysSinceEpoch = 0
        for year in 1950..<1970 {
            daysSinceEpoch -= DateRewritingTask.daysInMonth(year: year, month: 2) == 29 ? 366 : 365
        }
        for year in 1950...2049 {
            for month in 1...12 {
                for day in 1...DateRewritingTask.daysInMonth(year: year, month: month) {
                    let weekday = ((daysSinceEpoch + 4) % 7 + 7) % 7
                    #expect(DateRewritingTask.weekday(year: year, month: month, day: day) == weekday, "\(year)-\(month)-\(day)")
                    daysSinceEpoch += 1
                }
            }
        }
        #expect(DateRewritingTask.daysInMonth(year: 1900, month: 2) == 28 && DateRewritingTask.daysInMonth(year: 2000, month: 2) == 29)
    }

    @Test("date rewriting: every source is its ISO target in one of the formats; every format and year appears; seeded")
    func dateRewriting() throws {
        var task = try DateRewritingTask(seed: 5)
        let pairs = task.pairs(count: 3000)
        var again = try DateRewritingTask(seed: 5)
        #expect(again.pairs(count: 3000) == pairs)
        var formatsSeen = Set<DateRewritingTask.Format>()
        var yearsSeen = Set<Int>()
        for pair in pairs {
            let fields = pair.target.split(separator: "-").compactMap { Int($0) }
            guard fields.count == 3, pair.target.count == 10 else {
                Issue.record("target \(pair.target) is not YYYY-MM-DD")
                continue
            }
            let (year, month, day) = (fields[0], fields[1], fields[2])
            #expect((1950...2049).contains(year) && (1...12).contains(month))
            #expect((1...DateRewritingTask.daysInMonth(year: year, month: month)).contains(day))
            let matching = DateRewritingTask.Format.allCases.filter { $0.text(year: year, month: month, day: day) == pair.source }
            #expect(!matching.isEmpty, "\(pair.source) → \(pair.target)")
            formatsSeen.formUnion(matching)
            yearsSeen.insert(year)
        }
        #expect(formatsSeen == Set(DateRewritingTask.Format.allCases))
        #expect(yearsSeen.count == 100)

        var onlyDotted = try DateRewritingTask(formats: [.dotted], years: 1800...2200, seed: 1)
        #expect(onlyDotted.pairs(count: 50).allSatisfy { $0.source.split(separator: ".").count == 3 })
        #expect(recurError { _ = try DateRewritingTask(formats: [], seed: 0) } != nil)
        #expect(recurError { _ = try DateRewritingTask(years: 1800...2200, seed: 0) } != nil)
        #expect(recurError { _ = try DateRewritingTask(years: 999...1100, seed: 0) } != nil)
    }
}
