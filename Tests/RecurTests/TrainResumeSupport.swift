import Foundation
import Testing
@testable import Recur

/// What `expectTrainingResumesExactly` leaves for the caller's further checks.
struct ResumedTraining {
    /// Holds the data and both runs' folders; they are deleted with it.
    var folder: TemporaryFolder
    /// The colour data set both runs trained on.
    var data: String
    /// The checkpoint folder of the run that was stopped after one epoch and resumed.
    var resumedCheckpoints: String
    /// The uninterrupted run's output.
    var uninterrupted: CommandRun
}

/// Trains a small classifier (`recur train` on seeded colour sentences, `cellArguments` choosing
/// the cell) for two epochs in one run, and for one epoch then a resumed second; the step logs'
/// losses must agree bit for bit.
func expectTrainingResumesExactly(_ cellArguments: [String], seed: UInt64,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws -> ResumedTraining {
    let folder = try TemporaryFolder()
    var random = SeededGenerator(seed: seed)
    let words = ["red", "blue", "green", "dark", "light"]
    let lines = (0..<24).map { _ -> String in
        let text = (0..<Int.random(in: 2...5, using: &random)).map { _ in words.randomElement(using: &random)! }
        return (text.contains("red") ? "warm" : "cold") + "\t" + text.joined(separator: " ")
    }
    let data = try folder.write("colours.tsv", lines.joined(separator: "\n") + "\n")
    func train(epochs: Int, _ extra: [String]) throws -> CommandRun {
        try runRecur(["train", "--device", "cpu"] + cellArguments + ["--data", data, "--format", "tsv",
                      "--no-header", "--max-length", "5", "--embedding", "4", "--hidden", "5", "--epochs",
                      "\(epochs)", "--batch-size", "8", "--validation-split", "0"] + extra)
    }
    func losses(_ log: String) throws -> [String] {
        // The loss field as written, so equal runs compare bit for bit.
        try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            String($0.split(separator: ",").first { $0.contains("\"loss\"") } ?? "")
        }
    }
    let (whole, wholeLog) = (folder.path + "/whole", folder.path + "/whole.jsonl")
    let uninterrupted = try train(epochs: 2, ["--checkpoint-dir", whole, "--step-log", wholeLog])
    #expect(uninterrupted.status == 0, "\(uninterrupted.stderr)", sourceLocation: sourceLocation)
    let (parts, partsLog) = (folder.path + "/parts", folder.path + "/parts.jsonl")
    let first = try train(epochs: 1, ["--checkpoint-dir", parts, "--step-log", partsLog])
    #expect(first.status == 0, "\(first.stderr)", sourceLocation: sourceLocation)
    let resumed = try train(epochs: 2, ["--checkpoint-dir", parts, "--step-log", partsLog, "--resume"])
    #expect(resumed.status == 0, "\(resumed.stderr)", sourceLocation: sourceLocation)
    let expected = try losses(wholeLog)
    #expect(expected.count == 6 && !expected.contains(""), "\(expected)", sourceLocation: sourceLocation)
    #expect(try losses(partsLog) == expected, sourceLocation: sourceLocation)
    return ResumedTraining(folder: folder, data: data, resumedCheckpoints: parts, uninterrupted: uninterrupted)
}
