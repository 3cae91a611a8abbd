import Foundation
import Testing
@testable import Recur
@testable import recur

// Data input that used to be read without a word and give a wrong training set, or to fail with
// a message that did not say what to do: each case is now read correctly or refused with the
// file (and line) and what to change. Library cases go through `DataSource`; option cases
// through `DataOptions` as `recur train` parses them (parse, validate, source, prepare), and a
// few through the built `recur` executable.

/// `recur train`'s data options from `arguments`, then the prepared data, as `recur train` gets it.
private func prepare(_ arguments: [String]) throws -> PreparedData {
    try DataOptions.parse(arguments).source().prepare()
}

/// The message `recur` prints for the error `body` throws, or nil (and an issue) if it throws none.
private func message(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> String? {
    do {
        try body()
        Issue.record("expected an error, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch {
        return RecurCommand.message(for: error)
    }
}

/// A labelled table: `count` rows of "pos" or "neg" (seeded), each with a distinct text.
private func labelledRows(_ count: Int, seed: UInt64, delimiter: String = "\t") -> [String] {
    var random = SeededGenerator(seed: seed)
    return (0..<count).map { index in
        let positive = Bool.random(using: &random)
        return (positive ? "pos" : "neg") + delimiter + (positive ? "a good film " : "a dull film ") + "number \(index)"
    }
}

@Suite("Data input checks")
struct DataInputCheckTests {
    // MARK: Headers

    @Test func tableWhoseFirstRowLooksLikeAHeaderIsRefusedUnlessSaid() throws {
        let folder = try TemporaryFolder()
        let rows = labelledRows(20, seed: 1)
        let path = try folder.write("reviews.tsv", (["label\ttext"] + rows).joined(separator: "\n") + "\n")
        var source = DataSource(format: .tsv, paths: [path])
        source.validationFraction = 0
        let error = recurError { _ = try source.prepare() }
        guard case let .malformed(place, detail)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(place == "\(path):1")
        #expect(detail.contains("looks like a header") && detail.contains("'label'") && detail.contains("--header"))

        source.hasHeader = true
        let skipped = try source.prepare()
        #expect(skipped.classNames == ["neg", "pos"] && skipped.training.count == 20)
        // Said to be data, the row is data: a class of its own.
        source.hasHeader = false
        #expect(try source.prepare().classNames == ["label", "neg", "pos"])

        // The same through the options, and for CSV.
        let options = ["--data", path, "--format", "tsv", "--validation-split", "0"]
        #expect(message { _ = try prepare(options) }?.contains("--no-header reads it as an example") == true)
        #expect(try prepare(options + ["--header"]).training.count == 20)
        #expect(try prepare(options + ["--no-header"]).classNames.count == 3)
        let csv = try folder.write("reviews.csv", (["label,text"] + labelledRows(12, seed: 2, delimiter: ",")).joined(separator: "\n"))
        #expect(message { _ = try prepare(["--data", csv, "--validation-split", "0"]) }?.contains("\(csv):1") == true)
    }

    @Test func firstRowsThatAreDataAreRead() throws {
        let folder = try TemporaryFolder()
        // The first label repeats: data.
        let repeated = try folder.write("a.tsv", labelledRows(10, seed: 3).joined(separator: "\n"))
        var source = DataSource(format: .tsv, paths: [repeated])
        source.validationFraction = 0
        #expect(try source.prepare().training.count == 10)
        // No label repeats at all: nothing to tell a header by, so the rows are read.
        source.paths = [try folder.write("b.tsv", "a\tx\nb\ty\nc\tz\n")]
        #expect(try source.prepare().classNames == ["a", "b", "c"])
    }

    @Test func headerlessSeriesKeepsItsFirstValue() throws {
        let folder = try TemporaryFolder()
        let values = (0..<20).map { Float($0 * $0 % 7) + 1 }
        let rows = values.enumerated().map { "\($0.offset),\(Int($0.element))" }
        let headerless = try folder.write("headerless.csv", rows.joined(separator: "\n"))
        let headed = try folder.write("headed.csv", "t,value\n" + rows.joined(separator: "\n"))
        func read(_ path: String, header: Bool? = nil) throws -> PreparedData {
            var source = DataSource(format: .series, paths: [path])
            source.hasHeader = header
            source.sequenceLength = 3
            source.validationFraction = 0
            return try source.prepare()
        }
        // 20 values give 20 − 3 − 1 + 1 = 17 windows; the mean is that of all 20.
        let mean = values.reduce(0, +) / 20
        for path in [headerless, headed] {
            let prepared = try read(path)
            #expect(prepared.training.count == 17, "\(path)")
            #expect(abs((prepared.standardization?.mean ?? 0) - mean) < 1e-5, "\(path)")
        }
        // Said to have a header, the first row is one.
        #expect(try read(headerless, header: true).training.count == 16)
        // Said to have none, a header is a malformed row.
        #expect(recurError { _ = try read(headed, header: false) } ==
                .malformed(source: "\(headed):1", detail: "'value' in column 1 is not a finite decimal number"))

        let options = ["--format", "series", "--max-length", "3", "--validation-split", "0"]
        #expect(try prepare(["--data", headerless] + options).training.count == 17)
        #expect(try prepare(["--data", headed] + options).training.count == 17)
        #expect(try prepare(["--data", headerless, "--header"] + options).training.count == 16)
        // One column: its values by --value-column 0.
        let single = try folder.write("single.csv", values.map { "\(Int($0))" }.joined(separator: "\r\n"))
        #expect(try prepare(["--data", single, "--value-column", "0"] + options).training.count == 17)
    }

    // MARK: Files

    @Test func secondFileIsRefusedOutsideFormatLines() throws {
        let folder = try TemporaryFolder()
        let first = try folder.write("a.tsv", labelledRows(10, seed: 4).joined(separator: "\n"))
        let second = try folder.write("b.tsv", labelledRows(10, seed: 5).joined(separator: "\n"))
        for format in DataSource.Format.allCases where format != .lines {
            let source = DataSource(format: format, paths: [first, second])
            let error = recurError { _ = try source.prepare() }
            #expect(error?.description.contains("format \(format.rawValue) reads one file or folder, but 2 were given") == true)
            #expect(error?.description.contains("\(first), \(second)") == true)
        }
        #expect(message { _ = try prepare(["--data", first, "--data", second, "--format", "tsv"]) }?
            .contains("only format lines takes several") == true)
    }

    @Test func classFileWithoutExamplesIsRefused() throws {
        let folder = try TemporaryFolder()
        let good = try folder.write("pos.txt", "a good film\nanother\n")
        let empty = try folder.write("neg.txt", "")
        let blank = try folder.write("blank.txt", "\n  \r\n")
        #expect(recurError { _ = try TextClassificationDataset.readLines(classFiles: ["pos": good, "neg": empty]) } ==
                .malformed(source: empty, detail: "no examples for class 'neg': the file is empty"))
        // Skipping empty lines leaves the class without examples too.
        #expect(recurError {
            _ = try TextClassificationDataset.readLines(classFiles: ["pos": good, "neg": blank], onMalformed: .skip)
        } == .malformed(source: blank, detail: "no examples for class 'neg': its 2 lines are all empty"))

        let text = message { _ = try prepare(["--data", good, "--data", empty, "--format", "lines"]) }
        #expect(text?.contains("\(empty): no examples for class 'neg.txt'") == true)
        // A table with one class trains nothing either.
        let oneClass = try folder.write("one.tsv", "pos\ta\npos\tb\npos\tc\n")
        #expect(message { _ = try prepare(["--data", oneClass, "--format", "tsv"]) }?
            .contains("\(oneClass) holds one class only, [\"pos\"]") == true)
    }

    // MARK: Columns

    @Test func labelColumnThatIsTheTextColumnIsRefused() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("a.tsv", labelledRows(10, seed: 6).joined(separator: "\n"))
        for format in [DataSource.Format.tsv, .csv, .tagged] {
            var source = DataSource(format: format, paths: [path])
            source.textColumn = 0
            #expect(recurError { _ = try source.prepare() } == .invalidArgument(
                operation: "DataSource", detail: "label and text column of \(path) are both 0: the label would be the input"))
        }
        let text = message {
            _ = try RecurCommand.parseAsRoot(["train", "--data", path, "--text-column", "0", "--label-column", "0"])
        }
        #expect(text?.contains("--label-column and --text-column are both 0") == true)
        // Format lines has no columns: nothing to refuse.
        #expect(throws: Never.self) { _ = try DataOptions.parse(["--data", path, "--format", "lines", "--text-column", "0"]) }
    }

    @Test(arguments: ["--label-column", "--text-column", "--value-column"])
    func negativeColumnsAreRefused(_ option: String) throws {
        // Written as two arguments: "-1" must reach the option, not be read as a flag.
        for arguments in [[option, "-1"], ["\(option)=-1"]] {
            let text = message { _ = try RecurCommand.parseAsRoot(["train", "--data", "a.tsv"] + arguments) }
            #expect(text?.contains("\(option) must be 0 or more, got -1") == true, "\(arguments): \(text ?? "")")
        }
        var source = DataSource(format: option == "--value-column" ? .series : .tsv, paths: ["a.csv"])
        switch option {
        case "--label-column": source.labelColumn = -1
        case "--text-column": source.textColumn = -1
        default: source.valueColumn = -1
        }
        #expect(recurError { _ = try source.prepare() }?.description.contains("column -1 of a.csv: columns are 0 or more") == true)
    }

    // MARK: Messages

    @Test func emptySeriesNamesTheFile() throws {
        let folder = try TemporaryFolder()
        let empty = try folder.write("empty.csv", "")
        let headerOnly = try folder.write("header.csv", "\"Month\",\"Passengers\"\r\n")
        #expect(recurError { _ = try DataSource(format: .series, paths: [empty]).prepare() } ==
                .malformed(source: empty, detail: "no values: the file holds no rows"))
        #expect(recurError { _ = try DataSource(format: .series, paths: [headerOnly]).prepare() } ==
                .malformed(source: headerOnly, detail: "no values after the header row"))
        // Values, but none left for training once validation and test have theirs.
        let one = try folder.write("one.csv", "5,7")
        var source = DataSource(format: .series, paths: [one])
        source.validationFraction = 0.5
        #expect(recurError { _ = try source.prepare() }?.description.contains("the 1 values of \(one) leave none for training") == true)
    }

    @Test func guessedFormatIsNamedInReadingErrors() throws {
        let folder = try TemporaryFolder()
        // A tab-separated file named .csv, its first line holding a comma (as the SMS Spam
        // Collection's does), so that the CSV reader fails on line 2.
        let sms = try TestDatasets.bytes("sms_spam/SMSSpamCollection")
        let path = try folder.write("sms.csv", bytes: sms)
        let source = try DataOptions.parse(["--data", path]).source()
        #expect(source.format == .csv && source.formatIsGuessed)
        #expect(recurError { _ = try source.prepare() } == .malformed(
            source: "\(path):2",
            detail: "expected 2 fields, found 1 (format csv guessed from the file name; its first line holds tabs: "
                + "pass --format tsv)"))
        // Told the format, the reader's own message.
        #expect(message { _ = try prepare(["--data", path, "--format", "csv"]) } == "\(path):2: expected 2 fields, found 1")
        #expect(try prepare(["--data", path, "--format", "tsv"]).classNames == ["ham", "spam"])
        // The note stays out of checkpoints: it says how this run chose the format.
        #expect(try !source.json().contains("formatIsGuessed"))
        // A comma-separated file whose name gives no format is read as tsv.
        let commas = try folder.write("reviews.data", labelledRows(6, seed: 7, delimiter: ",").joined(separator: "\n"))
        #expect(message { _ = try prepare(["--data", commas]) }?
            .contains("(format tsv guessed from the file name; its first line holds commas and no tab: pass --format csv)") == true)
    }

    @Test func everyRowSkippedIsSaid() throws {
        let folder = try TemporaryFolder()
        // Seeded garbage without tabs, commas, quotes or line breaks, cut into 40 lines: no line
        // holds the two fields of a table, nor a number.
        var random = SeededGenerator(seed: 8)
        let excluded: Set<UInt8> = [9, 10, 13, UInt8(ascii: ","), UInt8(ascii: "\""), UInt8(ascii: " ")]
        let lines = (0..<40).map { _ in
            (0..<Int.random(in: 1...60, using: &random)).map { _ in
                var byte: UInt8
                repeat { byte = UInt8.random(in: 0...255, using: &random) } while excluded.contains(byte)
                return byte
            }
        }
        let garbage = lines.joined(separator: [10]).map { $0 }
        let tsv = try folder.write("garbage.tsv", bytes: garbage)
        let csv = try folder.write("garbage.csv", bytes: garbage)
        let expected = "all 40 rows were malformed and skipped; the first, line 1: found 1 field, but column 1 needs at least 2"
        #expect(recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: tsv, format: DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none),
                labelColumn: .index(0), textColumn: .index(1), onMalformed: .skip)
        } == .malformed(source: tsv, detail: expected))
        #expect(message { _ = try prepare(["--data", tsv, "--format", "tsv", "--skip-malformed"]) } == "\(tsv): \(expected)")
        #expect(message { _ = try prepare(["--data", csv, "--format", "series", "--skip-malformed"]) } == "\(csv): \(expected)")
        #expect(message { _ = try prepare(["--data", tsv, "--format", "tagged", "--skip-malformed"]) } == "\(tsv): \(expected)")
        // Without skipping, the first line is the error.
        #expect(message { _ = try prepare(["--data", tsv, "--format", "tsv"]) } ==
                "\(tsv):1: found 1 field, but column 1 needs at least 2")
        // One good row among them is read.
        let mixed = try folder.write("mixed.tsv", bytes: garbage + Array("\npos\tfine\nneg\tfine too\n".utf8))
        let prepared = try prepare(["--data", mixed, "--format", "tsv", "--skip-malformed", "--validation-split", "0"])
        #expect(prepared.training.count == 2 && prepared.skippedCount == 40)
    }

    // MARK: Through the executable

    /// `recur train` refuses a header it was not told about with a failing exit status and the
    /// message on stderr, and trains on a headerless series without losing its first value.
    @Test func recurTrainSaysWhatToChange() throws {
        let folder = try TemporaryFolder()
        let table = try folder.write("reviews.tsv", (["label\ttext"] + labelledRows(16, seed: 9)).joined(separator: "\n"))
        let refused = try runRecur(["train", "--device", "cpu", "--data", table, "--format", "tsv", "--epochs", "1"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("\(table):1: the first row looks like a header"), "\(refused.stderr)")

        let series = try folder.write("series.csv", (0..<24).map { "\($0 % 5 + 1)" }.joined(separator: "\n"))
        let trained = try runRecur(["train", "--device", "cpu", "--data", series, "--format", "series", "--value-column", "0",
                                    "--max-length", "4", "--hidden", "4", "--epochs", "1", "--validation-split", "0"])
        #expect(trained.status == 0, "\(trained.stderr)")
        // 24 values, none lost to a header: 24 − 4 − 1 + 1 = 20 training windows.
        #expect(trained.stdout.contains("20 training") || trained.stderr.contains("20 training"), "\(trained.stdout)")
    }
}
