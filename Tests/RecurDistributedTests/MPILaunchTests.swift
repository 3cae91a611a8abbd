import Foundation
import Testing
@testable import Recur

// Runs the built `recur train --distributed` under `mpirun` on this machine (ranks oversubscribe
// the cores) and `recur train` alone, on a small generated table of labelled texts, and compares
// the per-epoch metrics of log.jsonl and the weights and Adam state of last.safetensors.
//
// Tolerance: N ranks sum N float32 partial gradients where one process sums one batch, so the
// two differ by float32 rounding (about 1e-7 relative per step); after a few dozen clipped Adam
// steps, metrics, weights and moments agree within 2e-5 absolute + 1e-4 relative.

/// Where `mpirun` and `recur` are, and how a test launches them.
enum MPILaunch {
    static let mpirun: String? = {
        let folders = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        return folders.map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// The `recur` built beside the test bundle (the test target depends on it).
    static let recur: String = {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("recur").path
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

    /// A started launch whose output goes to files until `finish`.
    final class Launch {
        let process = Process()
        private let folder: URL

        init(_ path: String, _ arguments: [String]) throws {
            folder = FileManager.default.temporaryDirectory.appendingPathComponent("recur-mpi-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for name in ["stdout", "stderr"] {
                _ = FileManager.default.createFile(atPath: folder.appendingPathComponent(name).path, contents: nil)
            }
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            var environment = ProcessInfo.processInfo.environment
            environment["OPENBLAS_NUM_THREADS"] = "1"
            process.environment = environment
            process.standardOutput = try FileHandle(forWritingTo: folder.appendingPathComponent("stdout"))
            process.standardError = try FileHandle(forWritingTo: folder.appendingPathComponent("stderr"))
            try process.run()
        }

        deinit { try? FileManager.default.removeItem(at: folder) }

        /// Waits for the launch to end, killing it after `timeout` seconds.
        func finish(timeout: Double) throws -> Outcome {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            let timedOut = process.isRunning
            if timedOut {
                process.terminate()
                process.waitUntilExit()
            }
            return Outcome(
                status: process.terminationStatus,
                standardOutput: try String(contentsOf: folder.appendingPathComponent("stdout"), encoding: .utf8),
                standardError: try String(contentsOf: folder.appendingPathComponent("stderr"), encoding: .utf8),
                timedOut: timedOut)
        }
    }

    /// Starts `recur` with `arguments` on `ranks` ranks (0: alone, without mpirun).
    static func start(ranks: Int, _ arguments: [String]) throws -> Launch {
        if ranks == 0 { return try Launch(recur, arguments) }
        return try Launch(mpirun!, quietLocalFlags + ["-np", "\(ranks)", recur] + arguments)
    }

    static func run(ranks: Int, _ arguments: [String], timeout: Double = 120) throws -> Outcome {
        try start(ranks: ranks, arguments).finish(timeout: timeout)
    }

    /// Runs an MPMD launch: one rank per argument list.
    static func runEachRank(_ argumentsPerRank: [[String]], timeout: Double = 120) throws -> Outcome {
        let parts = argumentsPerRank.map { ["-np", "1", recur] + $0 }
        return try Launch(mpirun!, quietLocalFlags + Array(parts.joined(separator: [":"]))).finish(timeout: timeout)
    }

    /// The process id of rank `rank` among the children of `launcher` (`mpirun` starts the ranks
    /// of its own host itself), read from /proc; nil while there is none.
    static func processIdentifier(ofRank rank: Int, launchedBy launcher: Int32) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let commandEnd = stat.lastIndex(of: ")") else { continue }
            // "pid (command) state ppid ...": the command may hold spaces, so read after its ")".
            let fields = stat[stat.index(after: commandEnd)...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == launcher,
                  let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }
}

/// `count` labelled texts, one `label<TAB>text` line each: "pos" when "good" occurs among filler
/// words, else "neg".
func writeReviews(count: Int, seed: UInt64, to path: String) throws {
    var random = SeededRandom(seed: seed)
    let filler = ["the", "a", "film", "plot", "was", "and", "actor", "scene", "long", "music"]
    var lines: [String] = []
    for _ in 0..<count {
        var words = (0..<(3 + random.next(below: 5))).map { _ in filler[random.next(below: filler.count)] }
        let positive = random.next(below: 2) == 1
        if positive { words[random.next(below: words.count)] = "good" }
        lines.append((positive ? "pos" : "neg") + "\t" + words.joined(separator: " "))
    }
    try FileBytes.writeAtomically(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
}

/// A fresh temporary folder, removed by the caller.
func temporaryFolder() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recur-mpi-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.path
}

/// Each epoch's metrics in `<folder>/log.jsonl`, with its step count and pre-clipping maximum
/// gradient norm (`step`, `max_gradient_norm`); not the wall-clock seconds.
func epochMetrics(in folder: String) throws -> [[String: Double]] {
    let text = try String(contentsOfFile: folder + "/log.jsonl", encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        var metrics = try #require(object["metrics"] as? [String: Double])
        metrics["step"] = Double(try #require(object["step"] as? Int))
        metrics["max_gradient_norm"] = try #require(object["maxGradientNorm"] as? Double)
        return metrics
    }
}

/// Whether `value` lies within `2e-5 + 1e-4 |expected|` of `expected`.
func isClose(_ value: Double, _ expected: Double) -> Bool {
    abs(value - expected) <= 2e-5 + 1e-4 * abs(expected)
}

/// Expects the same epochs with the same metric names, each value within tolerance.
func expectSameEpochs(_ epochs: [[String: Double]], _ reference: [[String: Double]],
                      sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(epochs.count == reference.count, "\(epochs.count) epochs vs \(reference.count)",
            sourceLocation: sourceLocation)
    for (index, (got, want)) in zip(epochs, reference).enumerated() {
        #expect(got.keys.sorted() == want.keys.sorted(), "epoch \(index + 1)", sourceLocation: sourceLocation)
        for name in want.keys.sorted() {
            guard let value = got[name], let expected = want[name] else { continue }
            #expect(isClose(value, expected), "epoch \(index + 1) \(name): \(value) vs \(expected)",
                    sourceLocation: sourceLocation)
        }
    }
}

/// Expects equal names and shapes, values within tolerance, in the weights and optimizer state of
/// two checkpoints (the optimizer's step counts exactly equal).
func expectSameState(_ path: String, _ referencePath: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let checkpoint = try Checkpoint(contentsOf: path)
    let reference = try Checkpoint(contentsOf: referencePath)
    #expect(checkpoint.progress.step == reference.progress.step, sourceLocation: sourceLocation)
    #expect(checkpoint.optimizerCounts == reference.optimizerCounts, sourceLocation: sourceLocation)
    for (kind, tensors, expectedTensors) in [("parameter", checkpoint.parameters, reference.parameters),
                                             ("optimizer", checkpoint.optimizerFloats, reference.optimizerFloats)] {
        #expect(!expectedTensors.isEmpty, sourceLocation: sourceLocation)
        #expect(tensors.keys.sorted() == expectedTensors.keys.sorted(), "\(kind) names", sourceLocation: sourceLocation)
        for (name, expected) in expectedTensors.sorted(by: { $0.key < $1.key }) {
            guard let tensor = tensors[name] else { continue }
            #expect(tensor.shape == expected.shape, "\(kind) \(name)", sourceLocation: sourceLocation)
            // The index whose error uses most of its tolerance.
            var (worst, worstRatio): (Int, Float) = (0, 0)
            for index in 0..<min(tensor.values.count, expected.values.count) {
                let tolerance: Float = 2e-5 + 1e-4 * abs(expected.values[index])
                let ratio = abs(tensor.values[index] - expected.values[index]) / tolerance
                if ratio > worstRatio || ratio.isNaN { (worst, worstRatio) = (index, ratio) }
            }
            #expect(worstRatio <= 1,
                    "\(kind) \(name)[\(worst)]: \(tensor.values[worst]) vs \(expected.values[worst])",
                    sourceLocation: sourceLocation)
        }
    }
}

@Suite("Data-parallel training over MPI", .serialized, .enabled(if: MPILaunch.mpirun != nil, MPILaunch.skipReason))
struct MPILaunchTests {
    /// 64 texts: 48 for training (6 global batches of 8, so no partial batch on any rank count)
    /// and 16 for validation.
    static let exampleCount = 64
    static let globalBatch = 8
    static let clipNorm = 0.1

    /// `recur train` flags shared by every launch: an LSTM classifier, Adam, global-norm clipping
    /// (active: the gradients exceed 0.1), no dropout (its masks differ per rank by design).
    static func arguments(data: String, folder: String, epochs: Int) -> [String] {
        ["train", "--data", data, "--format", "tsv", "--validation-split", "0.25", "--max-length", "8",
         "--cell", "lstm", "--embedding", "4", "--hidden", "5", "--epochs", "\(epochs)",
         "--batch-size", "\(globalBatch)", "--optimizer", "adam", "--learning-rate", "0.02",
         "--clip-norm", "\(clipNorm)", "--seed", "3", "--device", "cpu", "--checkpoint-dir", folder, "--json"]
    }

    @Test(arguments: [2, 4])
    func ranksMatchOneProcessWithTheSameGlobalBatch(ranks: Int) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/reviews.tsv"
        try writeReviews(count: Self.exampleCount, seed: 17, to: data)

        let alone = try MPILaunch.run(ranks: 0, Self.arguments(data: data, folder: folder + "/alone", epochs: 3))
        #expect(alone.status == 0, "\(alone.standardError)")
        let parallel = try MPILaunch.run(
            ranks: ranks, Self.arguments(data: data, folder: folder + "/ranks", epochs: 3) + ["--distributed"])
        #expect(parallel.status == 0, "\(parallel.standardError)")

        // Rank 0 alone reports: one JSON line per epoch and one final line, then the
        // communication line on stderr.
        let lines = parallel.standardOutput.split(separator: "\n")
        #expect(lines.count == 4, "\(parallel.standardOutput)")
        #expect(lines.filter { $0.contains("\"final\":true") }.count == 1, "\(parallel.standardOutput)")
        let communication = parallel.standardError.split(separator: "\n").filter { $0.hasPrefix("communication: ") }
        #expect(communication.count == 1, "\(parallel.standardError)")
        #expect(communication.first?.contains("ranks=\(ranks) steps=18 ") == true, "\(parallel.standardError)")

        let reference = try epochMetrics(in: folder + "/alone")
        #expect(reference.count == 3)
        #expect((reference.first?["max_gradient_norm"] ?? 0) > Self.clipNorm, "clipping never acted: \(reference)")
        expectSameEpochs(try epochMetrics(in: folder + "/ranks"), reference)
        try expectSameState(folder + "/ranks/last.safetensors", folder + "/alone/last.safetensors")
    }

    @Test func twoRanksStoppedThenResumedOnFourOrOneMatchAnUninterruptedRun() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/reviews.tsv"
        try writeReviews(count: Self.exampleCount, seed: 23, to: data)

        let straight = try MPILaunch.run(ranks: 0, Self.arguments(data: data, folder: folder + "/straight", epochs: 4))
        #expect(straight.status == 0, "\(straight.standardError)")
        // Checkpoints every 4 steps as well as every epoch (6 steps): some fall mid-epoch.
        let first = try MPILaunch.run(
            ranks: 2, Self.arguments(data: data, folder: folder + "/first", epochs: 2)
                + ["--checkpoint-every", "4", "--distributed"])
        #expect(first.status == 0, "\(first.standardError)")
        #expect(try Checkpoint(contentsOf: folder + "/first/last.safetensors").progress.step == 12)

        for (ranks, name) in [(4, "four"), (0, "one")] {
            try FileManager.default.copyItem(atPath: folder + "/first", toPath: folder + "/" + name)
            let resumed = try MPILaunch.run(
                ranks: ranks, Self.arguments(data: data, folder: folder + "/" + name, epochs: 4)
                    + ["--resume"] + (ranks > 0 ? ["--distributed"] : []))
            #expect(resumed.status == 0, "\(name): \(resumed.standardError)")
            #expect((resumed.standardOutput + resumed.standardError).contains("resuming after epoch 2, step 12"),
                    "\(name): \(resumed.standardError)")
            expectSameEpochs(try epochMetrics(in: folder + "/" + name), try epochMetrics(in: folder + "/straight"))
            try expectSameState(folder + "/\(name)/last.safetensors", folder + "/straight/last.safetensors")
        }
    }

    /// A rank killed with SIGKILL mid-training: `mpirun` ends the others within seconds and names
    /// the rank; the last checkpoint (rank 0 writes it atomically) reads back and resumes.
    @Test(arguments: [1, 0])
    func aKilledRankEndsEveryRankAndTheLastCheckpointResumes(victim: Int) throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/reviews.tsv"
        try writeReviews(count: Self.exampleCount, seed: 29, to: data)
        let run = folder + "/run"
        let checkpoint = run + "/last.safetensors"

        // Far more epochs than the test waits for: the kill comes once a checkpoint exists.
        let launch = try MPILaunch.start(
            ranks: 2, Self.arguments(data: data, folder: run, epochs: 100_000) + ["--checkpoint-every", "2", "--distributed"])
        let deadline = Date().addingTimeInterval(60)
        while launch.process.isRunning && !FileManager.default.fileExists(atPath: checkpoint) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let pid = MPILaunch.processIdentifier(ofRank: victim, launchedBy: launch.process.processIdentifier)
        #expect(pid != nil, "no process of rank \(victim) under mpirun")
        if let pid { kill(pid, SIGKILL) }
        let killed = Date()
        let outcome = try launch.finish(timeout: 30)
        let seconds = Date().timeIntervalSince(killed)
        #expect(!outcome.timedOut, "the other rank did not end after rank \(victim) was killed")
        #expect(outcome.status != 0)
        #expect(seconds < 15, "every rank ended \(seconds) s after the kill")
        #expect(outcome.standardError.contains("process rank \(victim) "), "\(outcome.standardError)")
        #expect(outcome.standardError.contains("signal 9"), "\(outcome.standardError)")

        let saved = try Checkpoint(contentsOf: checkpoint)
        #expect(saved.progress.step >= 2)
        let resumed = try MPILaunch.run(
            ranks: 2, Self.arguments(data: data, folder: run, epochs: saved.progress.epoch + 1)
                + ["--resume", "--distributed"])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(try Checkpoint(contentsOf: checkpoint).progress.epoch == saved.progress.epoch + 1)
    }

    /// A rank that throws (here: its data file is missing) reports the error with its rank and
    /// calls MPI_Abort, which releases rank 0 from the collective it waits in.
    @Test func aRankThatFailsEndsEveryRankNamingItself() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/reviews.tsv"
        try writeReviews(count: Self.exampleCount, seed: 31, to: data)
        let arguments = Self.arguments(data: data, folder: folder + "/run", epochs: 2) + ["--distributed"]
        let broken = Self.arguments(data: folder + "/missing.tsv", folder: folder + "/run", epochs: 2) + ["--distributed"]

        let started = Date()
        let outcome = try MPILaunch.runEachRank([arguments, broken], timeout: 60)
        #expect(!outcome.timedOut, "rank 0 did not end after rank 1 failed")
        #expect(Date().timeIntervalSince(started) < 30)
        #expect(outcome.status != 0)
        #expect(outcome.standardError.contains("recur: rank 1 of 2 failed: "), "\(outcome.standardError)")
        #expect(outcome.standardError.contains(folder + "/missing.tsv"), "\(outcome.standardError)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/run/last.safetensors"))
    }

    @Test func ranksGivenDifferentModelsStopAtStart() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = folder + "/reviews.tsv"
        try writeReviews(count: Self.exampleCount, seed: 37, to: data)
        let arguments = Self.arguments(data: data, folder: folder + "/run", epochs: 2) + ["--distributed"]

        let outcome = try MPILaunch.runEachRank([arguments, arguments + ["--hidden", "6"]], timeout: 60)
        #expect(!outcome.timedOut)
        #expect(outcome.status != 0)
        #expect(outcome.standardError.contains("model specification differs between ranks"), "\(outcome.standardError)")
        #expect(outcome.standardError.contains("rank(s) 1 disagree with rank 0"), "\(outcome.standardError)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/run/last.safetensors"))
    }
}
