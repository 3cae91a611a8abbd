import Foundation
import Testing
@testable import Recur

/// The readers on the full datasets the committed excerpts were cut from, with the counts of
/// their provenance notes, when a run names the data's folder in RECUR_FULL_DATA (`FullDatasets`).
/// Without it the suite is skipped, and the same readers run on the excerpts and generated files
/// instead (DataReaderTests, DataSeriesTests, DataLanguageModelTests).
@Suite(.enabled(if: FullDatasets.root != nil, "no full data folder (set RECUR_FULL_DATA)"))
struct DataFullSetTests {
    /// The excerpts are the cuts their READMEs describe.
    @Test func excerptsAreTheStatedCuts() throws {
        func lines(_ bytes: [UInt8], _ count: Int) -> [UInt8] {
            var ends = 0
            let end = bytes.firstIndex { byte in
                if byte == UInt8(ascii: "\n") { ends += 1 }
                return ends == count
            } ?? bytes.endIndex - 1
            return Array(bytes[...end])
        }
        func full(_ relative: String) throws -> [UInt8] {
            Array(try Data(contentsOf: URL(fileURLWithPath: try FullDatasets.path(relative))))
        }
        #expect(try TestDatasets.bytes("sms_spam/SMSSpamCollection") == lines(full("sms_spam/SMSSpamCollection"), 200))
        #expect(try TestDatasets.bytes("tinyshakespeare/input.txt") == lines(full("tinyshakespeare/input.txt"), 300))
        #expect(try TestDatasets.bytes("macrodata/macrodata.csv") == full("timeseries/macrodata.csv"))
    }

    @Test func smsSpamCollection() throws {
        let sms = try TextClassificationDataset.readDelimited(
            contentsOf: FullDatasets.path("sms_spam/SMSSpamCollection"),
            format: DelimitedTextFormat(delimiter: "\t", hasHeader: false, quoting: .none),
            labelColumn: .index(0), textColumn: .index(1))
        #expect(sms.count == 5574)
        #expect(sms.classCounts == [4827, 747])
        #expect(sms.texts.filter { $0.contains("\"") }.count == 145)
        #expect(!sms.texts.contains { $0.contains("\u{FFFD}") })
    }

    @Test func rtPolarity() throws {
        let data = try TextClassificationDataset.readLines(classFiles: [
            "neg": FullDatasets.path("rt_polarity/rt-polarity.neg"),
            "pos": FullDatasets.path("rt_polarity/rt-polarity.pos"),
        ])
        // 5,331 lines each: a splitter that broke lines at 0x85 (NEL) would find more.
        #expect(data.classCounts == [5331, 5331])
        #expect(data.texts[0] == "simplistic , silly and tedious . ")
        // Line 97 of .pos holds 0xE9, line 58 the cp1252 em dash 0x97.
        #expect(data.texts[5331 + 96].contains("the clichés disappear"))
        #expect(data.texts[5331 + 57].contains("a slew of songs — a few"))
        #expect(!data.texts.contains { $0.contains("\u{FFFD}") || $0.contains("\u{85}") })
    }

    @Test func imdbSample() throws {
        let root = try FullDatasets.path("imdb/aclImdb")
        for (split, ratingCounts) in [
            (IMDBReviews.Split.train, [1: 98, 2: 37, 3: 56, 4: 59, 7: 39, 8: 65, 9: 47, 10: 99]),
            (.test, [1: 102, 2: 43, 3: 45, 4: 60, 7: 44, 8: 60, 9: 47, 10: 99]),
        ] {
            let imdb = try IMDBReviews.read(root: root, split: split)
            #expect(imdb.reviews.classCounts == [250, 250])
            #expect(Dictionary(grouping: imdb.ratings, by: { $0 }).mapValues(\.count) == ratingCounts)
            let ids = Array(stride(from: 0, through: 12450, by: 50))
            #expect(imdb.reviewIDs == ids + ids)
        }
        let train = try IMDBReviews.read(root: root, split: .train)
        #expect(train.reviews.texts[250].hasPrefix("Bromwell High is a cartoon comedy"))
        let test = try IMDBReviews.read(root: root, split: .test)
        let all = train.reviews.texts + test.reviews.texts
        #expect(all.filter { $0.contains("<br /><br />") }.count == 582)
        #expect(all.filter { !$0.unicodeScalars.allSatisfy(\.isASCII) }.count == 87)
    }

    @Test func monthlySeries() throws {
        let airline = try NumericSeries.readCSV(contentsOf: FullDatasets.path("timeseries/airline-passengers.csv"))
        #expect(airline.count == 144)
        #expect(airline.values.reduce(0, +) == 40363)
        #expect(airline.timestamps.first == "1949-01" && airline.timestamps.last == "1960-12")
        let sunspots = try NumericSeries.readCSV(contentsOf: FullDatasets.path("timeseries/monthly-sunspots.csv"))
        #expect(sunspots.count == 2820)
        #expect(sunspots.values.min() == 0 && sunspots.values.max() == 253.8)
        #expect(abs(sunspots.values.reduce(0.0) { $0 + Double($1) } - 144_570.0) < 0.01)
    }

    @Test func tinyShakespeare() throws {
        let stream = try TokenStream.characters(contentsOf: FullDatasets.path("tinyshakespeare/input.txt"))
        #expect(stream.count == 1_115_394)
        #expect(stream.vocabulary.count == 67)
        #expect(Array(stream.vocabulary.words.prefix(5)) == [" ", "e", "t", "o", "a"])
        #expect(try stream.vocabulary.decode(stream.ids.suffix(24)).joined() == "Whiles thou art waking.\n")
    }
}
