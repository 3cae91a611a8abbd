import Foundation
import Testing
@testable import Recur

// `recur train --stateful` and `recur evaluate` on its checkpoints, through the executable:
// held-out loss measured streaming as training streamed, resuming, and the runs refused.

/// The last JSON object of `text` whose "final" is true, or the first object when none is.
private func finalObject(_ text: String) -> [String: Any]? {
    let objects = text.split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
    return objects.last { $0["final"] as? Bool == true } ?? objects.first
}

@Suite("Stateful training commands")
struct StatefulCommandTests {
    @Test func trainEvaluateAndResumeAStatefulLanguageModel() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 23)
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
        let text = (0..<300).map { _ in words.randomElement(using: &random)! }.joined(separator: " ") + "\n"
        try folder.write("text.txt", text)
        let options = ["--device", "cpu", "--data", "text.txt", "--format", "text", "--max-length", "8",
                       "--embedding", "4", "--hidden", "8", "--batch-size", "4", "--seed", "1", "--test-split", "0.1",
                       "--stateful", "--checkpoint-dir", "run"]
        let train = try runRecur(["train", "--epochs", "1", "--json"] + options, in: folder.path)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stderr.contains("stateful: 4 streams of"), "\(train.stderr)")
        let testLoss = try #require(finalObject(train.stdout)?["test_loss"] as? Double, "\(train.stdout)")

        // evaluate streams the test split as training did (4 streams by default), so it finds the
        // same loss; --no-stateful reads every window from a zero state instead.
        let checkpoint = folder.path + "/run/last.safetensors"
        let evaluate = try runRecur(["evaluate", "--device", "cpu", "--checkpoint", checkpoint, "--json"],
                                    in: folder.path)
        #expect(evaluate.status == 0, "\(evaluate.stderr)")
        let streamed = try #require(finalObject(evaluate.stdout)?["loss"] as? Double, "\(evaluate.stdout)")
        #expect(abs(streamed - testLoss) <= 1e-5 * testLoss, "evaluate \(streamed), train's test_loss \(testLoss)")
        let windows = try runRecur(["evaluate", "--device", "cpu", "--checkpoint", checkpoint, "--json", "--no-stateful"],
                                   in: folder.path)
        let independent = try #require(finalObject(windows.stdout)?["loss"] as? Double, "\(windows.stdout)")
        #expect(independent != streamed)

        // The original options continue the run; leaving out --stateful describes another run.
        let resumed = try runRecur(["train", "--epochs", "2", "--resume"] + options, in: folder.path)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Checkpoint(contentsOf: checkpoint).progress.epoch == 2)
        let stateless = options.filter { $0 != "--stateful" }
        expectCleanFailure(try runRecur(["train", "--epochs", "3", "--resume"] + stateless, in: folder.path),
                           "stateful false (recorded true)")
    }

    @Test func aStatefulForecastStepsItsWindowsByTheirLength() throws {
        let folder = try TemporaryFolder()
        let rows = (0..<120).map { "\($0),\(sin(Double($0) / 3) + Double($0 % 7) / 10)" }
        try folder.write("wave.csv", "t,value\n" + rows.joined(separator: "\n") + "\n")
        let base = ["train", "--device", "cpu", "--data", "wave.csv", "--format", "series", "--max-length", "6",
                    "--hidden", "4", "--epochs", "1", "--batch-size", "4", "--stateful"]
        let train = try runRecur(base, in: folder.path)
        #expect(train.status == 0, "\(train.stderr)")
        // 108 training values make 17 windows of 6 (stride 6): 4 streams of 4.
        #expect(train.stdout.contains("17 training") && train.stdout.contains("stateful: 4 streams of 4 windows"),
                "\(train.stdout)")
        expectCleanFailure(try runRecur(base + ["--stride", "2"], in: folder.path), "stride 2", "windows of 6")
    }

    @Test func refusesWhatCannotCarryAState() throws {
        let folder = try TemporaryFolder()
        try folder.write("text.txt", String(repeating: "the cat sat on the mat. ", count: 20))
        let base = ["train", "--device", "cpu", "--data", "text.txt", "--format", "text", "--max-length", "8",
                    "--hidden", "4", "--epochs", "1", "--stateful"]
        expectCleanFailure(try runRecur(base + ["--bidirectional"], in: folder.path), "bidirectional")
        try folder.write("labels.tsv", (0..<20).map { "\($0 % 2)\tthe cat \($0)" }.joined(separator: "\n") + "\n")
        expectCleanFailure(
            try runRecur(["train", "--device", "cpu", "--data", "labels.tsv", "--format", "tsv", "--stateful"],
                         in: folder.path),
            "language models and forecasts")
    }
}
