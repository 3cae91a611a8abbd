import Foundation
import Testing
@testable import Recur

/// The labelled-text readers on the real files in shared/data (counts from its README) and on
/// small malformed files written for each error.
@Suite struct DataReaderTests {
    static let smsFormat = DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none)

    // MARK: Delimited files

    @Test func smsSpamCollectionLoads() throws {
        let sms = try TextClassificationDataset.readDelimited(
            contentsOf: SharedData.path("sms_spam/SMSSpamCollection"), format: Self.smsFormat,
            labelColumn: .index(0), textColumn: .index(1))
        #expect(sms.count == 5574)
        #expect(sms.classNames == ["ham", "spam"])
        #expect(sms.classCounts == [4827, 747])
        #expect(sms.skippedCount == 0)
        #expect(sms.texts[0].hasPrefix("Go until jurong point, crazy.."))
        #expect(sms.labels[0] == 0)
        #expect(sms.labels[2] == 1)
        // Nothing unescaped or lost: quotes and HTML entities stay, non-ASCII decodes.
        #expect(sms.texts.filter { $0.contains("\"") }.count == 145)
        #expect(sms.texts.contains { $0.contains("&lt;") })
        #expect(sms.texts.contains { $0.contains("£") })
        #expect(!sms.texts.contains { $0.contains("\u{FFFD}") })
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

    @Test func rtPolarityLoadsAsWindows1252() throws {
        let data = try TextClassificationDataset.readLines(classFiles: [
            "neg": SharedData.path("rt_polarity/rt-polarity.neg"),
            "pos": SharedData.path("rt_polarity/rt-polarity.pos"),
        ])
        #expect(data.count == 10662)
        #expect(data.classCounts == [5331, 5331])
        #expect(data.classNames == ["neg", "pos"])
        #expect(data.texts[0] == "simplistic , silly and tedious . ")
        #expect(data.texts[5331].hasPrefix("the rock is destined to be the 21st century's new \" conan \""))
        // Line 97 of .pos holds 0xE9, line 58 the cp1252 em dash 0x97.
        #expect(data.texts[5331 + 96].contains("the clichés disappear"))
        #expect(data.texts[5331 + 57].contains("a slew of songs — a few"))
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

    @Test func imdbSampleLoads() throws {
        let root = try SharedData.path("imdb/aclImdb")
        for (split, ratingCounts) in [
            (IMDBReviews.Split.train, [1: 98, 2: 37, 3: 56, 4: 59, 7: 39, 8: 65, 9: 47, 10: 99]),
            (.test, [1: 102, 2: 43, 3: 45, 4: 60, 7: 44, 8: 60, 9: 47, 10: 99]),
        ] {
            let imdb = try IMDBReviews.read(root: root, split: split)
            #expect(imdb.reviews.count == 500)
            #expect(imdb.reviews.classNames == ["neg", "pos"])
            #expect(imdb.reviews.classCounts == [250, 250])
            #expect(Dictionary(grouping: imdb.ratings, by: { $0 }).mapValues(\.count) == ratingCounts)
            // neg then pos, each by ascending id: the multiples of 50 from 0 to 12450.
            let ids = Array(stride(from: 0, through: 12450, by: 50))
            #expect(imdb.reviewIDs == ids + ids)
            #expect(imdb.reviews.labels == Array(repeating: 0, count: 250) + Array(repeating: 1, count: 250))
        }
        let train = try IMDBReviews.read(root: root, split: .train)
        #expect(train.reviews.texts[250].hasPrefix("Bromwell High is a cartoon comedy"))
        #expect(train.ratings[250] == 9)
        let test = try IMDBReviews.read(root: root, split: .test)
        let shortest = try #require(test.reviewIDs.indices.first { test.reviewIDs[$0] == 6850 && test.reviews.labels[$0] == 0 })
        #expect(test.reviews.texts[shortest] == "Read the book, forget the movie!")
        let all = train.reviews.texts + test.reviews.texts
        #expect(all.filter { $0.contains("<br /><br />") }.count == 582)
        #expect(all.filter { !$0.unicodeScalars.allSatisfy(\.isASCII) }.count == 87)
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
