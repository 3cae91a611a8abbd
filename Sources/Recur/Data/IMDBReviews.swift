/// The labelled reviews of one split of the Large Movie Review Dataset (aclImdb, Maas et al.,
/// ACL 2011), read from its original folder layout:
///
/// ```
/// aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt
/// ```
///
/// Class ids follow the folder names in alphabetical order, as Keras's
/// `text_dataset_from_directory` assigns them: `neg` 0, `pos` 1. Reviews come `neg` first, then
/// `pos`, each folder by ascending id (directory listings are in no useful order), so the result
/// is the same on every file system; shuffle before a validation split.
///
/// Texts are the files' contents as written, `<br />` tags included (`WordTokenizer` treats them
/// as separators). Files are UTF-8; one that is not is read as Windows-1252.
public struct IMDBReviews: Sendable, Equatable {
    /// Which half of the dataset.
    public enum Split: String, Sendable, CaseIterable {
        case train
        case test
    }

    /// The reviews and their `neg`/`pos` labels.
    public var reviews: TextClassificationDataset
    /// Each review's id from its file name; unique only within one folder.
    public var reviewIDs: [Int]
    /// Each review's IMDb star rating from its file name: 1...4 for `neg`, 7...10 for `pos`.
    public var ratings: [Int]

    /// The class folders in class id order.
    public static let classNames = ["neg", "pos"]

    /// Reads the labelled reviews of `split` under `root` (the `aclImdb` folder).
    ///
    /// Files are read one at a time into their texts and nothing else is kept, so memory grows
    /// with the texts alone (a full 25,000-review split is about 33 MB of text). In a class folder
    /// only visible `.txt` files are reviews; other entries, such as `.DS_Store`, are passed over
    /// (`urls_*.txt`, the `.feat` files and `unsup/` sit one level up and are not read). A review
    /// file whose name is not `<id>_<rating>.txt`, or whose rating doesn't belong to its folder,
    /// is malformed.
    ///
    /// - Parameters:
    ///   - root: the `aclImdb` folder.
    ///   - split: which of its folders, `train` or `test`.
    ///   - policy: `onMalformed:`, fail (default) or skip malformed file names.
    /// - Throws: `RecurError.io` naming a missing or unreadable folder or file;
    ///   `RecurError.malformed` naming the file for a malformed name (unless skipped).
    public static func read(root: String, split: Split, onMalformed policy: MalformedRowPolicy = .fail) throws -> IMDBReviews {
        let splitPath = root + "/" + split.rawValue
        var texts: [String] = []
        var labels: [Int32] = []
        var reviewIDs: [Int] = []
        var ratings: [Int] = []
        var skipped = 0
        for (classID, className) in classNames.enumerated() {
            let folder = splitPath + "/" + className
            guard DirectoryListing.isDirectory(folder) else {
                throw RecurError.io(path: folder, detail: "no such folder: expected the aclImdb layout <root>/\(split.rawValue)/{neg,pos}/<id>_<rating>.txt")
            }
            var files: [ReviewFileName] = []
            for name in try DirectoryListing.names(in: folder) where name.hasSuffix(".txt") && !name.hasPrefix(".") {
                do {
                    files.append(try ReviewFileName(name, folder: folder, className: className))
                } catch let error as RecurError {
                    guard policy == .skip else { throw error }
                    skipped += 1
                }
            }
            files.sort { $0.id < $1.id }
            texts.reserveCapacity(texts.count + files.count)
            for file in files {
                let bytes = try FileBytes.read(contentsOf: folder + "/" + file.name)
                let content = droppingByteOrderMark(bytes)
                texts.append(TextEncoding.detect(content).decode(content))
                labels.append(Int32(classID))
                reviewIDs.append(file.id)
                ratings.append(file.rating)
            }
        }
        let reviews = TextClassificationDataset(texts: texts, labels: labels, classNames: classNames, skippedCount: skipped)
        return IMDBReviews(reviews: reviews, reviewIDs: reviewIDs, ratings: ratings)
    }
}

/// A review file name, `<id>_<rating>.txt`, parsed and checked against its folder.
struct ReviewFileName {
    let name: String
    let id: Int
    let rating: Int

    init(_ name: String, folder: String, className: String) throws {
        self.name = name
        let stem = name.dropLast(".txt".count)
        let parts = stem.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 2, let id = Self.decimal(parts[0]), let rating = Self.decimal(parts[1]) else {
            throw RecurError.malformed(
                source: folder + "/" + name, detail: "review file name is not <id>_<rating>.txt (digits only)")
        }
        let allowed = className == "neg" ? 1...4 : 7...10
        guard allowed.contains(rating) else {
            throw RecurError.malformed(
                source: folder + "/" + name, detail: "rating \(rating) outside \(allowed) for a '\(className)' review")
        }
        self.id = id
        self.rating = rating
    }

    /// A non-empty run of ASCII digits as a number (no sign, no spaces: `Int("+3")` would pass).
    private static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Int(text)
    }
}
