import Foundation
import Testing
@testable import Recur

// `recur train` killed with SIGKILL at random moments, again and again, then resumed from its
// last checkpoint each time: the checkpoint always reads back whole, and the finished run's
// per-epoch metrics equal, digit for digit, those of a run that was never killed (CPU backend).


@Suite("Kill and resume", .serialized)
struct KillResumeTests {
    /// A labelled table: a line is "pos" when it holds the word "good", "neg" when it holds "bad".
    private func writeData(to path: String) throws {
        var random = SeededGenerator(seed: 12)
        let filler = ["the", "film", "was", "plot", "actor", "scene", "long", "music"]
        var lines: [String] = []
        for _ in 0..<240 {
            let positive = Bool.random(using: &random)
            var words = (0..<Int.random(in: 2...7, using: &random)).map { _ in filler.randomElement(using: &random)! }
            words.insert(positive ? "good" : "bad", at: Int.random(in: 0...words.count, using: &random))
            lines.append((positive ? "pos" : "neg") + "\t" + words.joined(separator: " "))
        }
        try FileBytes.writeAtomically(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }

    private func arguments(data: String, folder: String, resume: Bool) -> [String] {
        ["train", "--device", "cpu", "--data", data, "--format", "tsv", "--max-length", "8", "--embedding", "8",
         "--hidden", "8", "--dropout", "0.1", "--recurrent-dropout", "0.1", "--epochs", "4", "--batch-size", "8",
         "--seed", "3", "--clip-norm", "1", "--checkpoint-dir", folder, "--checkpoint-every", "3", "--json"]
            + (resume ? ["--resume"] : [])
    }

    /// Starts `recur` and returns the process (output discarded).
    private func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: recurExecutablePath)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Each epoch's metrics from `log.jsonl`, without the wall-clock seconds.
    private func epochs(in folder: String) throws -> [[String: Double]] {
        let text = try String(contentsOfFile: folder + "/log.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            var metrics = (object["metrics"] as! [String: Double])
            metrics["step"] = Double(object["step"] as! Int)
            return metrics
        }
    }

    @Test func killedRunsResumeToTheUninterruptedResult() throws {
        let folder = try TemporaryFolder()
        let data = folder.path + "/data.tsv"
        try writeData(to: data)

        let straight = try start(arguments(data: data, folder: folder.path + "/straight", resume: false))
        straight.waitUntilExit()
        #expect(straight.terminationStatus == 0)
        let expected = try epochs(in: folder.path + "/straight")
        #expect(expected.count == 4)

        let killed = folder.path + "/killed"
        let checkpoint = killed + "/last.safetensors"
        var random = SeededGenerator(seed: 99)
        var kills = 0
        var finished = false
        var savedSteps: [Int] = []
        for _ in 0..<8 where !finished {
            let resume = FileManager.default.fileExists(atPath: checkpoint)
            let process = try start(arguments(data: data, folder: killed, resume: resume))
            Thread.sleep(forTimeInterval: Double.random(in: 0.15...0.9, using: &random))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                kills += 1
            }
            process.waitUntilExit()
            finished = process.terminationReason == .exit && process.terminationStatus == 0
            if FileManager.default.fileExists(atPath: checkpoint) {
                // Whatever moment the kill came, the last checkpoint reads back whole.
                savedSteps.append(try Checkpoint(contentsOf: checkpoint).progress.step)
            }
        }
        if !finished {
            let process = try start(arguments(data: data, folder: killed, resume: true))
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
        #expect(kills >= 2, "only \(kills) runs were killed: the kills came after the runs finished")
        #expect(Set(savedSteps.filter { $0 > 0 && $0 < 120 }).count >= 2,
                "the kills should leave checkpoints at several points mid-run: \(savedSteps)")
        let resumed = try epochs(in: killed)
        #expect(resumed.count == expected.count)
        for (epoch, (got, want)) in zip(resumed, expected).enumerated() {
            #expect(got == want, "epoch \(epoch + 1) after \(kills) kills: \(got) vs \(want)")
        }
    }
}
