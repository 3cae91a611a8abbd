import Foundation
import Testing
@testable import Recur
@testable import recur

// `recur train`, `generate` and the kernel-compilation notice through the executable: what a
// resumed run refuses, folders checked before the first epoch, leftovers of killed runs removed,
// generation bounded and streamed. Each failure must be one clear message with exit status 1
// or 2, and must leave what was saved as it was.

/// A labelled table a GRU learns a little from in one epoch: "pos" rows hold "good".
private func writeTable(_ folder: TemporaryFolder, rows: Int = 48, seed: UInt64 = 1, name: String = "data.tsv") throws
    -> String
{
    var random = SeededGenerator(seed: seed)
    let words = ["the", "film", "plot", "was", "long", "scene"]
    let lines = (0..<rows).map { _ -> String in
        let positive = Bool.random(using: &random)
        let text = (0..<4).map { _ in words.randomElement(using: &random)! } + [positive ? "good" : "bad"]
        return (positive ? "pos" : "neg") + "\t" + text.joined(separator: " ")
    }
    return try folder.write(name, lines.joined(separator: "\n") + "\n")
}

private func trainArguments(data: String, folder: String, epochs: Int = 1) -> [String] {
    ["train", "--device", "cpu", "--data", data, "--format", "tsv", "--no-header", "--max-length", "6",
     "--embedding", "4", "--hidden", "4", "--cell", "gru", "--epochs", "\(epochs)", "--batch-size", "8",
     "--checkpoint-dir", folder]
}

@Suite("recur train and generate refuse what they cannot honour", .serialized)
struct TrainCommandHardeningTests {
    @Test func theOptionsAResumedRunCannotChangeAreNamed() {
        #expect(TrainCommand.optionsResumeCannotChange(in: ["--resume", "--checkpoint-dir", "x", "--epochs", "9"]) == [])
        #expect(TrainCommand.optionsResumeCannotChange(
            in: ["--resume", "--hidden", "64", "--cell=lstm", "--checkpoint-dir", "x", "--hidden", "8",
                 "--learning-rate", "-1e-3", "--data", "d.tsv", "--max-length", "9"])
            == ["--hidden", "--cell", "--learning-rate", "--data", "--max-length"])
        #expect(TrainCommand.optionsResumeCannotChange(in: ["--device", "cpu", "--json", "--plots", "p", "--", "--x"]) == [])
    }

    @Test func aResumeThatWouldChangeTheRunIsRefusedAndTheCheckpointKept() throws {
        let folder = try TemporaryFolder()
        let data = try writeTable(folder)
        let runs = folder.path + "/run"
        let first = try runRecur(trainArguments(data: data, folder: runs))
        #expect(first.status == 0, "\(first.stderr)")
        let checkpoint = runs + "/last.safetensors"
        let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint))

        let changed = try runRecur(trainArguments(data: data, folder: runs, epochs: 2)
                                    + ["--resume", "--hidden", "64", "--learning-rate", "0.5"])
        expectCleanFailure(changed, "describe another run", "hiddenSize 64 (recorded 4)", "learningRate: 0.5")
        #expect(!changed.stderr.contains("cell"), "only what differs is named: \(changed.stderr)")
        // The original command line again, with a larger total of epochs, continues the run.
        let same = try runRecur(trainArguments(data: data, folder: runs + "-copy", epochs: 1))
        #expect(same.status == 0, "\(same.stderr)")
        let continued = try runRecur(trainArguments(data: data, folder: runs + "-copy", epochs: 2) + ["--resume"])
        #expect(continued.status == 0, "\(continued.stderr)")
        #expect(try Checkpoint(contentsOf: runs + "-copy/last.safetensors").progress.epoch == 2)

        // The same data moved elsewhere: --data says where, and the run continues.
        let moved = try folder.write("moved/data.tsv", bytes: Array(try Data(contentsOf: URL(fileURLWithPath: data))))
        let relocated = try runRecur(trainArguments(data: moved, folder: runs + "-copy", epochs: 3) + ["--resume"])
        #expect(relocated.status == 0, "\(relocated.stderr)")
        let relocatedCheckpoint = try Checkpoint(contentsOf: runs + "-copy/last.safetensors")
        #expect(relocatedCheckpoint.progress.epoch == 3)
        #expect(try DataSource(json: relocatedCheckpoint.metadata["data.source"] ?? "").paths == [moved])

        // The same data with one more row: the training split is no longer the recorded one.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: data))
        handle.seekToEndOfFile()
        handle.write(Data("pos\tgood film\n".utf8))
        try handle.close()
        let appended = try runRecur(["train", "--device", "cpu", "--checkpoint-dir", runs, "--resume", "--epochs", "2"])
        expectCleanFailure(appended, "no longer holds the data this run was trained on")
        #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == saved)
    }

    @Test func aMonitoredMetricTheTaskLacksIsRefusedBeforeTraining() throws {
        let folder = try TemporaryFolder()
        let data = try writeTable(folder)
        let run = try runRecur(trainArguments(data: data, folder: folder.path + "/run") + ["--monitor", "foo"])
        expectCleanFailure(run, "cannot monitor 'foo'", "val_accuracy")
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/run/last.safetensors"))
    }

    @Test func foldersThatCannotBeWrittenAreRefusedAtTheStart() throws {
        let folder = try TemporaryFolder()
        let data = try writeTable(folder)
        let file = try folder.write("not-a-folder", "x")
        let checkpoints = try runRecur(trainArguments(data: data, folder: file + "/run"), timeLimit: 30)
        expectCleanFailure(checkpoints, "not-a-folder")
        #expect(!checkpoints.stdout.contains("epoch"), "it trained before failing: \(checkpoints.stdout)")

        let plots = try runRecur(trainArguments(data: data, folder: folder.path + "/run") + ["--plots", file + "/plots"],
                                 timeLimit: 30)
        expectCleanFailure(plots, "not-a-folder")
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/run/last.safetensors"))
    }

    @Test func aKilledRunsTemporaryFilesAreRemovedAtTheNextStart() throws {
        let folder = try TemporaryFolder()
        let data = try writeTable(folder)
        let stale = try folder.write("run/.last.safetensors.tmp-1073741001-9a8b", "torn")
        let run = try runRecur(trainArguments(data: data, folder: folder.path + "/run"))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("removed 1 temporary file"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    @Test func generateRefusesAnUnboundedLengthAndStreamsTheRest() throws {
        let huge = try runRecur(["generate", "--device", "cpu", "--checkpoint", "/nonexistent.safetensors",
                                 "--length", "9223372036854775807"], timeLimit: 30)
        expectCleanFailure(huge, "--length must be 0 ... 1000000")

        let folder = try TemporaryFolder()
        let text = try folder.write("text.txt", String(repeating: "the cat sat on the mat. ", count: 40))
        let trained = try runRecur(["train", "--device", "cpu", "--data", text, "--format", "text", "--max-length", "12",
                                    "--embedding", "4", "--hidden", "8", "--epochs", "1", "--checkpoint-dir",
                                    folder.path + "/lm"])
        #expect(trained.status == 0, "\(trained.stderr)")
        let generated = try runRecur(["generate", "--device", "cpu", "--checkpoint", folder.path + "/lm/last.safetensors",
                                      "--prime", "the ", "--length", "40", "--seed", "3"])
        #expect(generated.status == 0, "\(generated.stderr)")
        #expect(generated.stdout.hasPrefix("the ") && generated.stdout.hasSuffix("\n"))
        // Each sampled token is one character, or the out-of-vocabulary token's name.
        let sampled = generated.stdout.dropFirst(4).dropLast().replacingOccurrences(of: Vocabulary.outOfVocabularyToken,
                                                                                   with: "?")
        #expect(sampled.count == 40, "\(generated.stdout.debugDescription)")
    }

    /// The first compilation for a device says so on stderr, once; a run that finds its kernels
    /// in the cache says nothing.
    @Test func theFirstCompilationForADeviceIsAnnounced() throws {
        guard try TestBackends.openCLDevice() != nil else { return }
        let folder = try TemporaryFolder()
        let data = try writeTable(folder, rows: 24)
        let environment = ["RECUR_CACHE_DIR": folder.path + "/kernels"]
        let arguments = ["train", "--device", "opencl", "--data", data, "--format", "tsv", "--no-header", "--max-length",
                         "6", "--embedding", "4", "--hidden", "4", "--cell", "rnn", "--epochs", "1", "--batch-size", "8"]
        let cold = try runRecur(arguments, environment: environment)
        #expect(cold.status == 0, "\(cold.stderr)")
        let notices = cold.stderr.split(separator: "\n").filter { $0.hasPrefix("compiling kernels for ") }
        #expect(notices.count == 1, "\(cold.stderr)")
        #expect(notices.first?.hasSuffix("(cached for next time)") == true)
        let warm = try runRecur(arguments, environment: environment)
        #expect(warm.status == 0, "\(warm.stderr)")
        #expect(!warm.stderr.contains("compiling kernels"), "\(warm.stderr)")
    }
}
