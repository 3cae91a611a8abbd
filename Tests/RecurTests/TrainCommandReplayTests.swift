import Foundation
import Testing
@testable import Recur
@testable import recur

// The `recur train` options that let another framework replay a run step by step
// (tools/keras_trajectory.py): --initial-weights, --step-log, --no-shuffle, --freeze and --epsilon.

private func labelledTable(_ folder: TemporaryFolder) throws -> String {
    var random = SeededGenerator(seed: 11)
    let words = ["the", "film", "plot", "was", "long", "good", "bad"]
    let lines = (0..<40).map { _ -> String in
        let text = (0..<Int.random(in: 2...6, using: &random)).map { _ in words.randomElement(using: &random)! }
        return (text.filter { $0 == "good" }.count >= text.filter { $0 == "bad" }.count ? "pos" : "neg") + "\t"
            + text.joined(separator: " ")
    }
    return try folder.write("table.tsv", lines.joined(separator: "\n") + "\n")
}

private struct StepLine: Decodable {
    var step: Int
    var epoch: Int
    var batch: Int
    var loss: Double
    var grad_norm: Double
}

private func stepLines(_ path: String) throws -> [StepLine] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
        try JSONDecoder().decode(StepLine.self, from: Data($0.utf8))
    }
}

@Suite("recur train --initial-weights, --step-log, --no-shuffle, --freeze, --epsilon", .serialized)
struct TrainCommandReplayTests {
    private func arguments(_ data: String, epochs: Int = 2) -> [String] {
        ["train", "--device", "cpu", "--data", data, "--format", "tsv", "--no-header", "--max-length", "6",
         "--embedding", "4", "--hidden", "4", "--epochs", "\(epochs)", "--batch-size", "8", "--validation-split", "0"]
    }

    @Test func replayOptionsAreWrittenRecordedAndObeyed() throws {
        let folder = try TemporaryFolder()
        let data = try labelledTable(folder)
        let runs = folder.path + "/run"
        let (initial, log) = (folder.path + "/initial.safetensors", folder.path + "/steps.jsonl")
        // PyTorch's initialisation gives bias_hh nonzero values, so that keeping them is visible.
        let train = try runRecur(arguments(data) + [
            "--initialization", "pytorch", "--no-shuffle", "--freeze", "1.bias_hh_l0", "--epsilon", "1e-6",
            "--initial-weights", initial, "--step-log", log, "--checkpoint-dir", runs])
        #expect(train.status == 0, "\(train.stderr)")

        // One line per step, 5 batches of 8 in each of 2 epochs.
        let steps = try stepLines(log)
        #expect(steps.map(\.step) == Array(1...10))
        #expect(steps.map(\.epoch) == [Int](repeating: 1, count: 5) + [Int](repeating: 2, count: 5))
        #expect(steps.map(\.batch) == Array(1...5) + Array(1...5))
        #expect(steps.allSatisfy { $0.loss.isFinite && $0.loss > 0 && $0.grad_norm > 0 })

        let checkpoint = try Checkpoint(contentsOf: runs + "/last.safetensors")
        #expect(checkpoint.configuration.shuffles == false)
        #expect(checkpoint.configuration.frozenParameters == ["1.bias_hh_l0"])
        #expect(checkpoint.configuration.optimizer == .adam(learningRate: 1e-3, weightDecay: 0, epsilon: 1e-6))
        // The initial weights are the recorded model's, before any step; the frozen bias kept them.
        let start = try SafeTensorsFile(contentsOf: initial)
        let fresh = try checkpoint.specification.makeModel(backend: TestBackends.cpu)
        let trained = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu).model
        for (made, final) in zip(fresh.parameters, trained.parameters) {
            let values = try start.floats(made.name)
            #expect(values == (try made.value.toArray()), "\(made.name)")
            let moved = values != (try final.value.toArray())
            #expect(moved == (made.name != "1.bias_hh_l0"), "\(made.name) moved: \(moved)")
        }
    }

    @Test func withoutShufflingEveryEpochSeesTheSameBatches() throws {
        let folder = try TemporaryFolder()
        let data = try labelledTable(folder)
        // A zero learning rate keeps the weights, so a batch's loss depends on the batch alone.
        func losses(_ options: [String]) throws -> (first: [Double], second: [Double]) {
            let log = folder.path + "/steps.jsonl"
            let run = try runRecur(arguments(data) + ["--learning-rate", "0", "--step-log", log] + options)
            #expect(run.status == 0, "\(run.stderr)")
            let steps = try stepLines(log)
            return (steps.filter { $0.epoch == 1 }.map(\.loss), steps.filter { $0.epoch == 2 }.map(\.loss))
        }
        let unshuffled = try losses(["--no-shuffle"])
        #expect(unshuffled.first == unshuffled.second)
        let shuffled = try losses([])
        #expect(shuffled.first != shuffled.second)
    }

    @Test func aResumedRunContinuesTheStepLog() throws {
        let folder = try TemporaryFolder()
        let data = try labelledTable(folder)
        let (runs, log) = (folder.path + "/run", folder.path + "/steps.jsonl")
        let first = try runRecur(arguments(data, epochs: 1) + ["--step-log", log, "--checkpoint-dir", runs])
        #expect(first.status == 0, "\(first.stderr)")
        let resumed = try runRecur(arguments(data) + ["--step-log", log, "--checkpoint-dir", runs, "--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let steps = try stepLines(log)
        #expect(steps.map(\.step) == Array(1...10))
        #expect(steps.map(\.epoch) == [Int](repeating: 1, count: 5) + [Int](repeating: 2, count: 5))
    }

    @Test func badReplayOptionsFailWithOneLine() throws {
        let folder = try TemporaryFolder()
        let data = try labelledTable(folder)
        expectCleanFailure(try runRecur(arguments(data) + ["--freeze", "1.bias"]), "cannot freeze '1.bias'",
                           "1.bias_hh_l0")
        expectCleanFailure(try runRecur(arguments(data) + ["--optimizer", "sgd", "--epsilon", "1e-7"]),
                           "--epsilon applies to --optimizer adam or adamw")
        expectCleanFailure(try runRecur(arguments(data) + ["--step-log", folder.path + "/missing/steps.jsonl"]),
                           "cannot open the step log")
        expectCleanFailure(
            try runRecur(arguments(data) + ["--checkpoint-dir", folder.path + "/run", "--resume",
                                            "--initial-weights", folder.path + "/w.safetensors"]),
            "--initial-weights applies to a new run")
    }

    @Test func configurationsWithoutTheNewFieldsReadAsBefore() throws {
        // A configuration as checkpoints recorded it before ε and frozen parameters existed.
        let plain = TrainingConfiguration(epochs: 2, batchSize: 8, optimizer: .adam(learningRate: 1e-3))
        let text = try RecurJSON.string(plain)
        #expect(!text.contains("epsilon") && !text.contains("frozenParameters"), "\(text)")
        let read = try RecurJSON.decode(TrainingConfiguration.self, from: text, source: "test", what: "configuration")
        #expect(read == plain)
        let optimizer = try read.optimizer.makeOptimizer(backend: TestBackends.cpu)
        #expect((optimizer as? Adam)?.epsilon == 1e-8)
    }
}
