import Foundation
import Testing
@testable import Recur
import RecurDistributed

// Runs the built `recur-distributed` under `mpirun` on this machine (ranks oversubscribe the
// cores) and alone, on a small synthetic token task, and compares what they print and save.
//
// Tolerance: N ranks sum N float32 partial gradients where one process sums one batch, so the
// two differ by float32 rounding (about 1e-7 relative per step); after a few Adam steps weights
// and losses agree to within 2e-5 absolute + 1e-4 relative.

/// Where `mpirun` and the entry point are, and how a test launches them.
enum MPILaunch {
    static let mpirun: String? = {
        let folders = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        return folders.map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// The `recur-distributed` built beside the test bundle (the test target depends on it).
    static let executable: String = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("recur-distributed").path
    }()

    /// The `recur` CLI built beside it (`recur train --distributed`).
    static let cli: String = {
        URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("recur").path
    }()

    static let skipReason: Comment = "mpirun is not on PATH: install openmpi-bin (tools/setup.sh) to run the MPI tests"

    /// Flags that let Open MPI start ranks as root, beyond the core count, inside a container:
    /// shared memory without the single-copy (CMA) mechanism that containers usually forbid.
    static let quietLocalFlags = [
        "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
        "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none",
    ]

    struct Outcome {
        var status: Int32
        var standardOutput: String
        var standardError: String
        var timedOut: Bool
    }

    /// Runs `program` (default `recur-distributed`) with `arguments` on `ranks` ranks (0: without
    /// mpirun), killing it after `timeout` seconds.
    static func run(ranks: Int, _ arguments: [String], program: String = executable,
                    timeout: Double = 120) throws -> Outcome {
        if ranks == 0 { return try launch(program, arguments, timeout: timeout) }
        return try launch(mpirun!, quietLocalFlags + ["-np", "\(ranks)", program] + arguments, timeout: timeout)
    }

    /// Runs an MPMD launch: one rank per argument list.
    static func runEachRank(_ argumentsPerRank: [[String]], timeout: Double = 120) throws -> Outcome {
        let parts = argumentsPerRank.map { ["-np", "1", executable] + $0 }
        return try launch(mpirun!, quietLocalFlags + Array(parts.joined(separator: [":"])), timeout: timeout)
    }

    private static func launch(_ path: String, _ arguments: [String], timeout: Double) throws -> Outcome {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recur-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let outputURL = folder.appendingPathComponent("stdout")
        let errorURL = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: outputURL)
        process.standardError = try FileHandle(forWritingTo: errorURL)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let timedOut = process.isRunning
        if timedOut {
            process.terminate()
            process.waitUntilExit()
        }
        return Outcome(status: process.terminationStatus,
                       standardOutput: try String(contentsOf: outputURL, encoding: .utf8),
                       standardError: try String(contentsOf: errorURL, encoding: .utf8),
                       timedOut: timedOut)
    }
}

/// A synthetic task file: sequences of `length` ids (pre-padded, lengths 2 ... length) whose label
/// is whether id 2 occurs, written as the `--tokens` safetensors file.
struct TokenTask {
    static let vocabulary = 16
    static let length = 6
    var ids: [Int32]  // [count, length]
    var labels: [Float]  // [count]

    init(count: Int, seed: UInt64) {
        var random = SeededRandom(seed: seed)
        ids = []
        labels = []
        for _ in 0..<count {
            let tokens = 2 + random.next(below: Self.length - 1)
            var row = [Int32](repeating: 0, count: Self.length - tokens)
            row += (0..<tokens).map { _ in Int32(2 + random.next(below: Self.vocabulary - 2)) }
            ids += row
            labels.append(row.contains(2) ? 1 : 0)
        }
    }

    func write(to path: String) throws {
        var writer = SafeTensorsWriter()
        try writer.add("ids", int32s: ids, shape: [labels.count, Self.length])
        try writer.add("labels", floats: labels, shape: [labels.count])
        try writer.write(to: path)
    }
}

/// A fresh temporary folder, removed by the caller.
func temporaryFolder() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recur-mpi-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.path
}

/// The losses of the `step i/k loss x` lines, by step.
func reportedLosses(_ output: String) -> [Int: Double] {
    var losses: [Int: Double] = [:]
    for line in output.split(separator: "\n") where line.hasPrefix("step ") {
        let words = line.split(separator: " ")
        guard words.count == 4, let step = Int(words[1].split(separator: "/")[0]), let loss = Double(words[3]) else {
            continue
        }
        losses[step] = loss
    }
    return losses
}

/// Expects equal names and values within `2e-5 + 1e-4 |reference|` in two checkpoints' tensors
/// under `prefix` (integer tensors exactly equal).
func expectSameTensors(_ path: String, _ referencePath: String, prefix: String = CheckpointKey.modelPrefix) throws {
    let file = try SafeTensorsFile(contentsOf: path)
    let reference = try SafeTensorsFile(contentsOf: referencePath)
    let names = reference.names.filter { $0.hasPrefix(prefix) }
    #expect(!names.isEmpty)
    #expect(file.names.filter { $0.hasPrefix(prefix) } == names)
    for name in names where file.contains(name) {
        if try reference.dtype(of: name) == .int32 {  // optimizer step counts
            #expect(try file.int32s(name) == reference.int32s(name), "\(name)")
            continue
        }
        let values = try file.floats(name)
        let expected = try reference.floats(name)
        #expect(values.count == expected.count, "\(name)")
        // The index whose error uses most of its tolerance.
        var worst = 0
        var worstRatio: Float = 0
        for index in 0..<min(values.count, expected.count) {
            let tolerance: Float = 2e-5 + 1e-4 * abs(expected[index])
            let ratio = abs(values[index] - expected[index]) / tolerance
            if ratio > worstRatio || ratio.isNaN { (worst, worstRatio) = (index, ratio) }
        }
        #expect(worstRatio <= 1, "\(name)[\(worst)]: \(values[worst]) vs \(expected[worst])")
    }
}

func expectSameLosses(_ losses: [Int: Double], _ reference: [Int: Double], steps: ClosedRange<Int>) {
    for step in steps {
        guard let loss = losses[step], let expected = reference[step] else {
            Issue.record("no loss reported for step \(step)")
            continue
        }
        #expect(abs(loss - expected) <= 2e-5 + 1e-4 * abs(expected), "step \(step): \(loss) vs \(expected)")
    }
}

@Suite("Data-parallel training over MPI", .serialized, .enabled(if: MPILaunch.mpirun != nil, MPILaunch.skipReason))
struct MPILaunchTests {
    /// Model and training flags shared by every launch (clipping active: the task's early
    /// gradients exceed a norm of 0.5).
    static func arguments(data: String, batchSize: Int, steps: Int, checkpoint: String) -> [String] {
        ["--tokens", data, "--vocabulary", "\(TokenTask.vocabulary)", "--embedding", "4", "--hidden", "5",
         "--batch-size", "\(batchSize)", "--steps", "\(steps)", "--learning-rate", "0.02", "--clip-norm", "0.5",
         "--seed", "7", "--device", "cpu", "--report-every", "1", "--checkpoint", checkpoint]
    }

    @Test(arguments: [2, 4])
    func ranksWithBatchBMatchOneProcessWithBatchNTimesB(ranks: Int) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/task.safetensors"
        try TokenTask(count: 96, seed: 5).write(to: data)
        let (b, steps) = (8 / ranks, 5)

        let alone = try MPILaunch.run(ranks: 0, Self.arguments(data: data, batchSize: ranks * b, steps: steps,
                                                                checkpoint: folder + "/alone.safetensors"))
        #expect(alone.status == 0, "\(alone.standardError)")
        let parallel = try MPILaunch.run(ranks: ranks, Self.arguments(data: data, batchSize: b, steps: steps,
                                                                       checkpoint: folder + "/ranks.safetensors"))
        #expect(parallel.status == 0, "\(parallel.standardError)")
        #expect(parallel.standardOutput.contains("\(ranks) rank(s) x batch \(b)"))

        expectSameLosses(reportedLosses(parallel.standardOutput), reportedLosses(alone.standardOutput), steps: 1...steps)
        try expectSameTensors(folder + "/ranks.safetensors", folder + "/alone.safetensors")
        try expectSameTensors(folder + "/ranks.safetensors", folder + "/alone.safetensors",
                              prefix: CheckpointKey.optimizerPrefix)
    }

    @Test func aCheckpointOfTwoRanksResumesOnFourLikeOneUninterruptedProcess() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/task.safetensors"
        try TokenTask(count: 96, seed: 9).write(to: data)
        let checkpoint = folder + "/resumed.safetensors"

        let alone = try MPILaunch.run(ranks: 0, Self.arguments(data: data, batchSize: 8, steps: 6,
                                                                checkpoint: folder + "/alone.safetensors"))
        #expect(alone.status == 0, "\(alone.standardError)")
        let first = try MPILaunch.run(ranks: 2, Self.arguments(data: data, batchSize: 4, steps: 3, checkpoint: checkpoint))
        #expect(first.status == 0, "\(first.standardError)")
        #expect(try SafeTensorsFile(contentsOf: checkpoint).metadata[CheckpointKey.worldSize] == "2")
        let second = try MPILaunch.run(
            ranks: 4, Self.arguments(data: data, batchSize: 2, steps: 6, checkpoint: checkpoint) + ["--resume", checkpoint])
        #expect(second.status == 0, "\(second.standardError)")
        #expect(second.standardOutput.contains("from step 3 to 6"))

        let resumed = reportedLosses(first.standardOutput).merging(reportedLosses(second.standardOutput)) { $1 }
        expectSameLosses(resumed, reportedLosses(alone.standardOutput), steps: 1...6)
        try expectSameTensors(checkpoint, folder + "/alone.safetensors")
    }

    @Test func aRankThatFailsEndsEveryRankAndKeepsTheLastCheckpoint() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/task.safetensors"
        var task = TokenTask(count: 96, seed: 11)
        // Rank 1's first example of the 4th step (index 3) gets an id beyond the vocabulary.
        let b = 4
        let plan = try MiniBatchPlan(count: 96, batchSize: 2 * b, seed: 7, keepsPartialBatch: false)
        let global = plan.batches(epoch: 0)[3]
        let victim = global[global.startIndex + b]
        task.ids[victim * TokenTask.length + TokenTask.length - 1] = Int32(TokenTask.vocabulary + 3)
        try task.write(to: data)
        let checkpoint = folder + "/run.safetensors"
        let arguments = Self.arguments(data: data, batchSize: b, steps: 8, checkpoint: checkpoint)

        // The launch is killed after 60 s; a hang would show as timedOut, not as a slow pass.
        let failed = try MPILaunch.run(ranks: 2, arguments + ["--checkpoint-every", "2"], timeout: 60)
        #expect(!failed.timedOut, "the ranks did not end after rank 1 failed")
        #expect(failed.status != 0)
        #expect(failed.standardError.contains("rank 1 of 2 failed"), "\(failed.standardError)")
        #expect(failed.standardError.contains("id \(TokenTask.vocabulary + 3)"), "\(failed.standardError)")
        #expect(failed.standardError.contains("outside the vocabulary"), "\(failed.standardError)")
        #expect(!failed.standardOutput.contains("step 4/8"))

        // The checkpoint of step 2 is intact and resumes (up to the step before the bad example).
        #expect(try SafeTensorsFile(contentsOf: checkpoint).metadata[CheckpointKey.step] == "2")
        let resumed = try MPILaunch.run(ranks: 2, Self.arguments(data: data, batchSize: b, steps: 3, checkpoint: checkpoint)
                                                  + ["--resume", checkpoint])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("from step 2 to 3"))
    }

    @Test func ranksGivenDifferentModelsStopAtStart() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/task.safetensors"
        try TokenTask(count: 32, seed: 13).write(to: data)
        let arguments = Self.arguments(data: data, batchSize: 4, steps: 2, checkpoint: folder + "/run.safetensors")
        let outcome = try MPILaunch.runEachRank([arguments, arguments + ["--hidden", "6"]], timeout: 60)
        #expect(!outcome.timedOut)
        #expect(outcome.status != 0)
        #expect(outcome.standardError.contains("the model specification differs between ranks"), "\(outcome.standardError)")
        #expect(outcome.standardError.contains("rank(s) 1 disagree with rank 0"), "\(outcome.standardError)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/run.safetensors"))
    }

    @Test func recurTrainDistributedOnTwoRanksMatchesRecurTrainAlone() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // 64 labelled texts: positive when "good" occurs among filler words.
        var random = SeededRandom(seed: 17)
        let filler = ["the", "a", "film", "plot", "was", "and", "actor", "scene", "long", "music"]
        var lines: [String] = []
        for _ in 0..<64 {
            var words = (0..<(3 + random.next(below: 5))).map { _ in filler[random.next(below: filler.count)] }
            let positive = random.next(below: 2) == 1
            if positive { words[random.next(below: words.count)] = "good" }
            lines.append((positive ? "pos" : "neg") + "\t" + words.joined(separator: " "))
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: folder + "/reviews.tsv", atomically: true, encoding: .utf8)
        func arguments(_ directory: String) -> [String] {
            ["train", "--data", folder + "/reviews.tsv", "--format", "tsv", "--validation-split", "0",
             "--max-length", "8", "--embedding", "4", "--hidden", "5", "--epochs", "2", "--batch-size", "8",
             "--learning-rate", "0.02", "--clip-norm", "0.5", "--seed", "3", "--device", "cpu",
             "--checkpoint-dir", folder + "/" + directory]
        }

        let alone = try MPILaunch.run(ranks: 0, arguments("alone"), program: MPILaunch.cli)
        #expect(alone.status == 0, "\(alone.standardError)")
        let parallel = try MPILaunch.run(ranks: 2, arguments("ranks") + ["--distributed"], program: MPILaunch.cli)
        #expect(parallel.status == 0, "\(parallel.standardError)")
        try expectSameTensors(folder + "/ranks/last.safetensors", folder + "/alone/last.safetensors")
        try expectSameTensors(folder + "/ranks/last.safetensors", folder + "/alone/last.safetensors",
                              prefix: CheckpointKey.optimizerPrefix)
    }
}
