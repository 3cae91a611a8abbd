import Foundation
import Testing
@testable import Recur

/// The real datasets in `shared/data`, which sits beside the repository checkout
/// (`<checkout>/../shared/data`). Found from this file's path so that tests run from any working
/// directory.
enum SharedData {
    static let root: String = {
        let here = URL(fileURLWithPath: #filePath)  // <checkout>/Tests/RecurTests/DataTestSupport.swift
        return here.deletingLastPathComponent()  // RecurTests
            .appendingPathComponent("../../../shared/data").standardizedFileURL.path
    }()

    /// The path of `relative` inside `shared/data`.
    ///
    /// - Throws: `MissingSharedData` (failing the test with a message saying where the data was
    ///   looked for) when the folder or file is absent. CI has the data, so a missing folder is a
    ///   setup problem, never a reason to skip.
    static func path(_ relative: String) throws -> String {
        let path = root + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else {
            throw MissingSharedData(path: path)
        }
        return path
    }

    struct MissingSharedData: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "shared test data not found at \(path): the data tests expect the 'shared' folder (with data/) "
                + "beside the repository checkout, i.e. <checkout>/../shared/data"
        }
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
