import Foundation
import Testing
@testable import Recur

/// Excerpts of real datasets committed with the tests in `Datasets/` (each folder's README says
/// where the data comes from, under what licence, and how the excerpt was cut), so that the data
/// tests run in a fresh clone with nothing beside it.
enum TestDatasets {
    /// The path of `relative` inside `Datasets/`.
    ///
    /// - Throws: `RecurError.io` when the resource is missing: a packaging mistake, never a
    ///   reason to skip.
    static func path(_ relative: String) throws -> String {
        guard let folder = Bundle.module.url(forResource: "Datasets", withExtension: nil) else {
            throw RecurError.io(path: "Datasets", detail: "not found among the test resources")
        }
        let path = folder.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw RecurError.io(path: path, detail: "no such test dataset")
        }
        return path
    }

    /// The bytes of `relative` inside `Datasets/`.
    static func bytes(_ relative: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: try path(relative))))
    }
}

/// The full datasets the excerpts were cut from, when a run names their folder in
/// `RECUR_FULL_DATA` (the layout of the excerpts' READMEs). Only the optional full-data suite
/// reads them; every other test passes without.
enum FullDatasets {
    static let root: String? = {
        guard let named = ProcessInfo.processInfo.environment["RECUR_FULL_DATA"], !named.isEmpty else { return nil }
        return named
    }()

    /// The path of `relative` inside the full data folder.
    static func path(_ relative: String) throws -> String {
        let path = (root ?? "") + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else {
            throw RecurError.io(path: path, detail: "not in the full data folder")
        }
        return path
    }
}

/// One-line-per-example files in Windows-1252, built like rt_polarity's `rt-polarity.{pos,neg}`
/// (lower-cased tokens with spaces around punctuation, most lines ending in a space, LF line ends,
/// a final LF), with the bytes that tell Windows-1252 from UTF-8 and Latin-1: accented letters,
/// and 0x85, 0x91, 0x92, 0x96, 0x97, which are punctuation in Windows-1252 and C1 controls in
/// Latin-1 (0x85 is NEL, a line break to some splitters). Generated, because rt_polarity states no
/// licence under which it could be copied here.
struct Windows1252Lines {
    /// The file's bytes.
    var bytes: [UInt8] = []
    /// Each line as a reader must decode it.
    var lines: [String] = []

    /// The special bytes and the characters they stand for.
    static let specials: [(UInt8, String)] = [
        (0xE9, "é"), (0xF3, "ó"), (0xE1, "á"), (0x85, "…"), (0x91, "‘"), (0x92, "’"), (0x96, "–"), (0x97, "—"),
        (0xBD, "½"),
    ]

    init(seed: UInt64, count: Int) {
        var random = SeededGenerator(seed: seed)
        let words = ["the", "film", "is", "a", "slew", "of", "songs", ",", ".", "clich", "caf", "'s", "\"", "and", "it"]
        for index in 0..<count {
            var lineBytes: [UInt8] = []
            var text = ""
            for position in 0..<Int.random(in: 2...9, using: &random) {
                if position > 0 {
                    lineBytes.append(UInt8(ascii: " "))
                    text += " "
                }
                // Every third line holds special bytes, the first one several, mid-line.
                if (index % 3 == 0 && Int.random(in: 0..<3, using: &random) == 0) || (index == 0 && position == 1) {
                    let (byte, character) = Self.specials[Int.random(in: 0..<Self.specials.count, using: &random)]
                    lineBytes.append(byte)
                    text += character
                }
                let word = words[Int.random(in: 0..<words.count, using: &random)]
                lineBytes += Array(word.utf8)
                text += word
            }
            if Int.random(in: 0..<10, using: &random) < 9 {
                lineBytes.append(UInt8(ascii: " "))
                text += " "
            }
            bytes += lineBytes + [UInt8(ascii: "\n")]
            lines.append(text)
        }
    }
}

/// A folder tree in the aclImdb layout (`<root>/{train,test}/{neg,pos}/<id>_<rating>.txt`), with
/// the entries a real copy holds beside the reviews (`unsup/`, `urls_*.txt`, `*.feat`, `README`,
/// `.DS_Store`), which a reader must leave alone. Generated, because aclImdb states no licence
/// under which its reviews could be copied here.
struct GeneratedIMDB {
    struct Review {
        var id: Int
        var rating: Int
        var text: String
    }

    let root: String
    /// The reviews of each split and class, in file-system order of creation (not sorted).
    private(set) var reviews: [IMDBReviews.Split: [String: [Review]]] = [:]

    init(in folder: TemporaryFolder, seed: UInt64, perFolder count: Int) throws {
        root = folder.path + "/aclImdb"
        var random = SeededGenerator(seed: seed)
        let words = ["a", "film", "plot", "actor", "great", "dull", "café", "naïve", "scene", "ending"]
        try folder.write("aclImdb/README", "Large Movie Review Dataset v1.0 (generated stand-in)\n")
        try folder.write("aclImdb/imdb.vocab", words.joined(separator: "\n"))
        for split in IMDBReviews.Split.allCases {
            try folder.write("aclImdb/\(split.rawValue)/labeledBow.feat", "0 0:1\n")
            for className in IMDBReviews.classNames {
                // Ids spread over 0..<12500 with different digit counts, so a sort by name would
                // differ from a sort by id.
                var ids = Set<Int>()
                while ids.count < count { ids.insert(Int.random(in: 0..<12500, using: &random) / (ids.count % 3 == 0 ? 100 : 1)) }
                var folderReviews: [Review] = []
                for id in ids {
                    let rating = className == "neg" ? Int.random(in: 1...4, using: &random) : Int.random(in: 7...10, using: &random)
                    var parts = (0..<Int.random(in: 3...12, using: &random)).map { _ in words[Int.random(in: 0..<words.count, using: &random)] }
                    if Bool.random(using: &random) { parts.insert("<br /><br />", at: parts.count / 2) }
                    let text = parts.joined(separator: " ")  // one line, no final newline, as in aclImdb
                    try folder.write("aclImdb/\(split.rawValue)/\(className)/\(id)_\(rating).txt", text)
                    folderReviews.append(Review(id: id, rating: rating, text: text))
                }
                reviews[split, default: [:]][className] = folderReviews
                try folder.write("aclImdb/\(split.rawValue)/\(className)/.DS_Store", bytes: [0, 0, 0, 1, 0x42, 0x75, 0x64, 0x31])
                try folder.write("aclImdb/\(split.rawValue)/urls_\(className).txt", "http://www.imdb.com/title/tt0000000/usercomments\n")
            }
        }
        try folder.write("aclImdb/train/unsup/0_0.txt", "unlabelled, never read")
        try folder.write("aclImdb/train/urls_unsup.txt", "http://www.imdb.com/title/tt0000001/usercomments\n")
    }

    /// What `IMDBReviews.read` must return for `split`: neg then pos, each by ascending id.
    func expected(_ split: IMDBReviews.Split) -> (texts: [String], ids: [Int], ratings: [Int], labels: [Int32]) {
        var result: (texts: [String], ids: [Int], ratings: [Int], labels: [Int32]) = ([], [], [], [])
        for (label, className) in IMDBReviews.classNames.enumerated() {
            for review in (reviews[split]?[className] ?? []).sorted(by: { $0.id < $1.id }) {
                result.texts.append(review.text)
                result.ids.append(review.id)
                result.ratings.append(review.rating)
                result.labels.append(Int32(label))
            }
        }
        return result
    }
}

/// A fresh temporary folder for files a test writes, removed when the value is released.
final class TemporaryFolder {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("recur-data-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes `bytes` to `relative` inside the folder (creating subfolders) and returns its path.
    @discardableResult
    func write(_ relative: String, bytes: [UInt8]) throws -> String {
        let file = path + "/" + relative
        let folder = (file as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// Writes `text` as UTF-8.
    @discardableResult
    func write(_ relative: String, _ text: String) throws -> String {
        try write(relative, bytes: Array(text.utf8))
    }
}

/// Runs `body` and returns the `RecurError` it throws, recording an issue if it throws none or
/// another error.
func recurError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> RecurError? {
    do {
        try body()
        Issue.record("expected a RecurError, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as RecurError {
        return error
    } catch {
        Issue.record("expected a RecurError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
