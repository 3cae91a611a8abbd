import Foundation
import Testing
@testable import Recur

/// The labelled-text readers on a committed excerpt of a real file (`Datasets/`, counts taken from
/// the excerpt), on generated files in the layouts of data sets that cannot be copied here, and on
/// small malformed files written for each error.
@Suite struct DataReaderTests {
    static let smsFormat = DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none)

    // MARK: Delimited files

    /// The first 200 lines of the SMS Spam Collection (`Datasets/sms_spam`).
    @Test func smsSpamCollectionLoads() throws {
        let path = try TestDatasets.path("sms_spam/SMSSpamCollection")
        let sms = try TextClassificationDataset.readDelimited(
            contentsOf: path, format: Self.smsFormat, labelColumn: .index(0), textColumn: .index(1))
        #expect(sms.count == 200)
        #expect(sms.classNames == ["ham", "spam"])
        #expect(sms.classCounts == [167, 33])
        #expect(sms.skippedCount == 0)
        #expect(sms.texts[0].hasPrefix("Go until jurong point, crazy.."))
        #expect(sms.labels[0] == 0)
        #expect(sms.labels[2] == 1)
        #expect(sms.texts[199].hasSuffix("Txt back if u can. :) xxx"))
        // Nothing unescaped or lost: quotes and HTML entities stay, non-ASCII decodes.
        #expect(sms.texts.filter { $0.contains("\"") }.count == 6)
        #expect(sms.texts.filter { $0.contains("&lt;") }.count == 5)
        #expect(sms.texts.filter { $0.contains("£") }.count == 14)
        #expect(sms.texts.filter { !$0.unicodeScalars.allSatisfy(\.isASCII) }.count == 22)
        #expect(!sms.texts.contains { $0.contains("\u{FFFD}") })

        // As `recur train --format tsv` reads it, told nothing about a header: the first row's
        // label repeats, so it is data.
        var source = DataSource(format: .tsv, paths: [path])
        source.validationFraction = 0
        let prepared = try source.prepare()
        #expect(prepared.training.count == 200 && prepared.classNames == ["ham", "spam"])
    }

    @Test func labelMappings() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("labels.csv", "label,text\nspam,a\nham,b\nspam,c\negg,d\n")
        func read(_ mapping: LabelMapping, _ policy: MalformedRowPolicy = .fail) throws -> TextClassificationDataset {
            try .readDelimited(contentsOf: path, format: .csv, labelColumn: .name("label"), textColumn: .name("text"),
                               labels: mapping, onMalformed: policy)
        }
        let sorted = try read(.sorted)
        #expect(sorted.classNames == ["egg", "ham", "spam"] && sorted.labels == [2, 1, 2, 0])
        let firstSeen = try read(.firstSeen)
        #expect(firstSeen.classNames == ["spam", "ham", "egg"] && firstSeen.labels == [0, 1, 0, 2])

        let error = recurError { _ = try read(.explicit(["ham", "spam"])) }
        #expect(error == .malformed(source: "\(path):5", detail: "label 'egg' is not one of [\"ham\", \"spam\"]"))
        let skipped = try read(.explicit(["ham", "spam"]), .skip)
        #expect(skipped.texts == ["a", "b", "c"] && skipped.labels == [1, 0, 1] && skipped.skippedCount == 1)
        #expect(recurError { _ = try read(.explicit(["a", "a"])) } != nil)
    }

    @Test func quotedFieldsFollowRFC4180() throws {
        let folder = try TemporaryFolder()
        // Header, a quoted field with a delimiter, doubled quotes and a CRLF inside, an empty
        // line, a quoted label, and a last line without a newline.
        let path = try folder.write(
            "quoted.csv",
            "label,text\r\npos,\"Hello, \"\"world\"\"\r\nsecond line\"\r\n\r\n\"neg\",plain \"inner\" quote\r\nneg,")
        let data = try TextClassificationDataset.readDelimited(
            contentsOf: path, format: .csv, labelColumn: .index(0), textColumn: .name("text"))
        #expect(data.texts == ["Hello, \"world\"\r\nsecond line", "plain \"inner\" quote", ""])
        #expect(data.labels == [1, 0, 0])
    }

    @Test func unterminatedQuoteNamesTheLineItOpensOn() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("open.csv", "label,text\npos,fine\nneg,\"never closed\nmore\n")
        for policy in [MalformedRowPolicy.fail, .skip] {
            let error = recurError {
                _ = try TextClassificationDataset.readDelimited(
                    contentsOf: path, format: .csv, labelColumn: .index(0), textColumn: .index(1), onMalformed: policy)
            }
            #expect(error == .malformed(source: "\(path):3", detail: "quoted field opened on this line is never closed"))
        }
    }

    @Test func wrongFieldCountNamesFileAndLineAfterMultilineFields() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("count.csv", "label,text\npos,\"two\nlines\"\nneg,too,many\nneg,ok\nlonely")
        let error = recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: path, format: .csv, labelColumn: .index(0), textColumn: .index(1))
        }
        #expect(error == .malformed(source: "\(path):4", detail: "expected 2 fields, found 3"))
        #expect(error?.description == "\(path):4: expected 2 fields, found 3")

        let skipped = try TextClassificationDataset.readDelimited(
            contentsOf: path, format: .csv, labelColumn: .index(0), textColumn: .index(1), onMalformed: .skip)
        #expect(skipped.texts == ["two\nlines", "ok"])
        #expect(skipped.skippedCount == 2)
    }

    @Test func textAfterClosingQuoteIsMalformed() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("junk.tsv", "pos\t\"quoted\"junk\nneg\tfine\n")
        let format = DelimitedTextFormat(delimiter: "\t", hasHeader: false)
        let error = recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: path, format: format, labelColumn: .index(0), textColumn: .index(1))
        }
        #expect(error == .malformed(source: "\(path):1", detail: "unexpected character after the closing quote of field 2"))
        let skipped = try TextClassificationDataset.readDelimited(
            contentsOf: path, format: format, labelColumn: .index(0), textColumn: .index(1), onMalformed: .skip)
        #expect(skipped.texts == ["fine"] && skipped.skippedCount == 1)
    }

    @Test func missingColumnsAndFiles() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("header.csv", "label,text\npos,a\n")
        let noName = recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: path, format: .csv, labelColumn: .name("class"), textColumn: .index(1))
        }
        #expect(noName?.description.hasPrefix("\(path):1: no column named 'class'") == true)
        #expect(recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: path, format: .csv, labelColumn: .index(0), textColumn: .index(2))
        } != nil)
        let missing = recurError {
            _ = try TextClassificationDataset.readDelimited(
                contentsOf: folder.path + "/absent.csv", format: .csv, labelColumn: .index(0), textColumn: .index(1))
        }
        guard case let .io(missingPath, _)? = missing else { Issue.record("expected io, got \(String(describing: missing))"); return }
        #expect(missingPath == folder.path + "/absent.csv")
    }

    // MARK: One file per class

    /// Generated files in rt_polarity's layout and encoding (`Windows1252Lines`).
    @Test func rtPolarityLayoutLoadsAsWindows1252() throws {
        let folder = try TemporaryFolder()
        let neg = Windows1252Lines(seed: 21, count: 120)
        let pos = Windows1252Lines(seed: 22, count: 90)
        // The generated bytes are what the test is about: not UTF-8, with 0x85 inside lines.
        #expect(String(validating: neg.bytes, as: UTF8.self) == nil)
        #expect(neg.bytes.contains(0x85) && pos.bytes.contains(0x85))
        let data = try TextClassificationDataset.readLines(classFiles: [
            "neg": try folder.write("rt-polarity.neg", bytes: neg.bytes),
            "pos": try folder.write("rt-polarity.pos", bytes: pos.bytes),
        ])
        #expect(data.classNames == ["neg", "pos"])
        #expect(data.classCounts == [120, 90])
        // Every line decoded as Windows-1252, trailing spaces kept, 0x85 read as "…" and not as a
        // line break.
        #expect(data.texts == neg.lines + pos.lines)
        #expect(data.texts.contains { $0.contains("…") })
        #expect(!data.texts.contains { $0.contains("\u{FFFD}") || $0.contains("\u{85}") })
    }

    @Test func emptyLinesInClassFilesAreMalformed() throws {
        let folder = try TemporaryFolder()
        let good = try folder.write("good.txt", "one\r\ntwo\n")
        let bad = try folder.write("bad.txt", "three\n   \nfour")
        let error = recurError { _ = try TextClassificationDataset.readLines(classFiles: ["a": good, "b": bad]) }
        #expect(error == .malformed(source: "\(bad):2", detail: "empty line: no example"))
        let skipped = try TextClassificationDataset.readLines(classFiles: ["a": good, "b": bad], onMalformed: .skip)
        #expect(skipped.texts == ["one", "two", "three", "four"])
        #expect(skipped.labels == [0, 0, 1, 1])
        #expect(skipped.skippedCount == 1)
        #expect(recurError { _ = try TextClassificationDataset.readLines(classFiles: ["a": good, "a": bad]) } != nil)
    }

    @Test func windows1252FallbackDecodesEveryByte() throws {
        let folder = try TemporaryFolder()
        // "café … “x” €" in Windows-1252, which is not valid UTF-8.
        let path = try folder.write("cp1252.txt", bytes: [0x63, 0x61, 0x66, 0xE9, 0x20, 0x85, 0x20, 0x93, 0x78, 0x94, 0x20, 0x80, 0x0A])
        let data = try TextClassificationDataset.readLines(classFiles: ["only": path])
        #expect(data.texts == ["café … “x” €"])
    }

    // MARK: aclImdb

    /// A generated tree in the aclImdb layout (`GeneratedIMDB`), with the entries beside the
    /// reviews that a real copy holds.
    @Test func imdbLayoutLoads() throws {
        let folder = try TemporaryFolder()
        let imdb = try GeneratedIMDB(in: folder, seed: 31, perFolder: 15)
        for split in IMDBReviews.Split.allCases {
            let read = try IMDBReviews.read(root: imdb.root, split: split)
            let expected = imdb.expected(split)
            #expect(read.reviews.count == 30)
            #expect(read.reviews.classNames == ["neg", "pos"])
            #expect(read.reviews.classCounts == [15, 15])
            // neg then pos, each by ascending id (not by file name: "100_3" sorts before "7_1").
            #expect(read.reviewIDs == expected.ids)
            #expect(read.ratings == expected.ratings)
            #expect(read.reviews.labels == expected.labels)
            // Texts as written: one line, no newline added, "<br /><br />" and UTF-8 kept.
            #expect(read.reviews.texts == expected.texts)
            #expect(read.reviews.texts.contains { $0.contains("<br /><br />") })
            #expect(read.reviews.texts.contains { !$0.unicodeScalars.allSatisfy(\.isASCII) })
            #expect(read.reviews.skippedCount == 0)
        }
    }

    @Test func imdbRejectsMalformedFileNames() throws {
        let folder = try TemporaryFolder()
        try folder.write("aclImdb/train/neg/3_2.txt", "bad")
        try folder.write("aclImdb/train/neg/1_4.txt", "poor")
        try folder.write("aclImdb/train/neg/.DS_Store", "ignored")
        try folder.write("aclImdb/train/pos/2_8.txt", "good")
        try folder.write("aclImdb/train/pos/notes.md", "ignored")
        let root = folder.path + "/aclImdb"
        let good = try IMDBReviews.read(root: root, split: .train)
        #expect(good.reviews.texts == ["poor", "bad", "good"])
        #expect(good.reviewIDs == [1, 3, 2] && good.ratings == [4, 2, 8])

        let badName = try folder.write("aclImdb/train/pos/12_x.txt", "bad name")
        let error = recurError { _ = try IMDBReviews.read(root: root, split: .train) }
        #expect(error == .malformed(source: badName, detail: "review file name is not <id>_<rating>.txt (digits only)"))
        let wrongRating = try folder.write("aclImdb/train/pos/13_3.txt", "rated as negative")
        let skipped = try IMDBReviews.read(root: root, split: .train, onMalformed: .skip)
        #expect(skipped.reviews.count == 3 && skipped.reviews.skippedCount == 2)
        try FileManager.default.removeItem(atPath: badName)
        #expect(recurError { _ = try IMDBReviews.read(root: root, split: .train) } ==
                .malformed(source: wrongRating, detail: "rating 3 outside 7...10 for a 'pos' review"))
    }

    @Test func imdbMissingFolderIsNamed() throws {
        let folder = try TemporaryFolder()
        try folder.write("aclImdb/test/neg/0_1.txt", "only neg")
        let error = recurError { _ = try IMDBReviews.read(root: folder.path + "/aclImdb", split: .test) }
        guard case let .io(path, detail)? = error else { Issue.record("expected io, got \(String(describing: error))"); return }
        #expect(path == folder.path + "/aclImdb/test/pos")
        #expect(detail.contains("no such folder"))
    }
}
