import Foundation
import Testing
@testable import Recur
@testable import recur

// `recur train --class-weight balanced` and `--schedule plateau` through the executable: the
// weights recorded in the checkpoint and used by --resume and evaluate, and bad combinations
// refused with a clear message.

private func skewedTable(_ folder: TemporaryFolder) throws -> String {
    // 30 "neg" rows and 6 "pos" rows, interleaved.
    var random = SeededGenerator(seed: 3)
    let words = ["the", "film", "plot", "was", "long"]
    let lines = (0..<36).map { index -> String in
        let positive = index % 6 == 5
        let text = (0..<3).map { _ in words.randomElement(using: &random)! } + [positive ? "good" : "bad"]
        return (positive ? "pos" : "neg") + "\t" + text.joined(separator: " ")
    }
    return try folder.write("skewed.tsv", lines.joined(separator: "\n") + "\n")
}

@Suite("recur train --class-weight and --schedule plateau", .serialized)
struct ClassWeightCommandTests {
    private func arguments(_ data: String, _ folder: String) -> [String] {
        ["train", "--device", "cpu", "--data", data, "--format", "tsv", "--no-header", "--max-length", "6",
         "--embedding", "4", "--hidden", "4", "--cell", "gru", "--epochs", "2", "--batch-size", "8",
         "--validation-split", "0", "--monitor", "loss", "--checkpoint-dir", folder]
    }

    @Test func balancedWeightsAreRecordedAndResumed() throws {
        let folder = try TemporaryFolder()
        let data = try skewedTable(folder)
        let runs = folder.path + "/run"
        let options = ["--class-weight", "balanced", "--schedule", "plateau", "--plateau-patience", "1"]
        let train = try runRecur(arguments(data, runs) + options + ["--json"])
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("\"final\":true") || train.stdout.contains("\"final\": true"), "\(train.stdout)")
        let checkpoint = try Checkpoint(contentsOf: runs + "/last.safetensors")
        let recorded = try #require(checkpoint.configuration.classWeights)
        #expect(checkpoint.configuration.plateau == ReduceOnPlateau(factor: 0.1, patience: 1, minimum: 0))
        // The training split's counts, whichever class name got id 0.
        let counts = ClassWeights.counts(
            in: try checkpoint.recordedData().prepareRecordedSource().training,
            classes: 2)
        #expect(recorded == (try ClassWeights.balanced(counts: counts)))
        #expect(counts.sorted() == [6, 30], "counts \(counts)")
        // The original options continue the run; leaving out --class-weight describes another.
        let other = try runRecur(arguments(data, runs).replacingEpochs(3) + ["--resume"])
        expectCleanFailure(other, "describe another run", "classWeights")
        let resumed = try runRecur(arguments(data, runs).replacingEpochs(3) + options + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let last = try Checkpoint(contentsOf: runs + "/last.safetensors")
        #expect(last.configuration.classWeights == recorded)

        // recur evaluate reports the weighted loss of the recorded weights, and the unweighted
        // accuracy, as the library computes them.
        let evaluate = try runRecur(["evaluate", "--device", "cpu", "--checkpoint", runs + "/last.safetensors",
                                     "--split", "training", "--json"])
        #expect(evaluate.status == 0, "\(evaluate.stderr)")
        let trainer = try Trainer(resumingFrom: last, backend: TestBackends.cpu)
        let prepared = try last.recordedData().prepareRecordedSource()
        let expected = try trainer.evaluate(prepared.training, batchSize: 64)
        #expect(evaluate.stdout.contains("\"loss\":\(expected["loss"]!)"), "\(evaluate.stdout) vs \(expected)")
        #expect(evaluate.stdout.contains("\"accuracy\":\(expected["accuracy"]!)"), "\(evaluate.stdout) vs \(expected)")
    }

    @Test func badCombinationsFailWithOneLine() throws {
        let folder = try TemporaryFolder()
        let data = try skewedTable(folder)
        let base = arguments(data, folder.path + "/bad")
        let unknown = try runRecur(base + ["--class-weight", "inverse"])
        expectCleanFailure(unknown, "--class-weight is none or balanced")
        let warmup = try runRecur(base + ["--schedule", "plateau", "--warmup", "3"])
        expectCleanFailure(warmup, "--warmup does not combine with --schedule plateau")
        let stray = try runRecur(base + ["--plateau-factor", "0.5"])
        expectCleanFailure(stray, "need --schedule plateau")
        let factor = try runRecur(base + ["--schedule", "plateau", "--plateau-factor", "1.5"])
        expectCleanFailure(factor, "factor must lie in (0, 1)")

        let rows = (0..<40).map { "\($0),\(Double($0 % 7))" }
        try folder.write("series.csv", "t,value\n" + rows.joined(separator: "\n") + "\n")
        let series = try runRecur(
            ["train", "--device", "cpu", "--data", "series.csv", "--format", "series", "--max-length", "4",
             "--embedding", "4", "--hidden", "4", "--epochs", "1", "--batch-size", "8", "--class-weight", "balanced"],
            in: folder.path)
        expectCleanFailure(series, "--class-weight balanced applies to classify data only, not to forecast")
        #expect(series.stderr.split(separator: "\n").count == 1, "one line: \(series.stderr)")
    }
}

private extension Array where Element == String {
    /// The same arguments with `--epochs` set to `epochs`.
    func replacingEpochs(_ epochs: Int) -> [String] {
        guard let index = firstIndex(of: "--epochs") else { return self + ["--epochs", "\(epochs)"] }
        var copy = self
        copy[index + 1] = "\(epochs)"
        return copy
    }
}
