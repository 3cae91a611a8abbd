import Foundation
import Testing
@testable import Recur

// The `recur` commands run through the built executable, as a user runs them: exit status, what
// each prints, and the files it writes. Sizes are tiny and the device is the CPU backend wherever
// the command, not the device, is the point; `devices` and `tune` use OpenCL because that is what
// they are about, `tune` with one candidate so that it compiles two GEMM kernels in all.

/// What a finished `recur` process left.
private struct Run: CustomStringConvertible {
    let status: Int32
    let output: String
    let error: String

    var outputLines: [String] { output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    var errorLines: [String] { error.split(separator: "\n").map(String.init) }
    var description: String { "exit \(status)\n--- stdout\n\(output)--- stderr\n\(error)" }
}

/// Runs `recur arguments` in `folder` and waits for it; a run that takes longer than `limit`
/// seconds is ended, so a hang fails the test instead of stalling the suite.
private func recur(_ arguments: [String], in folder: TemporaryFolder, environment: [String: String] = [:],
                   limit: TimeInterval = 240) throws -> Run {
    let run = try runRecur(arguments, in: folder.path, timeLimit: limit, environment: environment)
    return Run(status: run.status, output: run.stdout, error: run.stderr)
}

/// Each line of `text` as a JSON object; records an issue for a line that is not one.
private func jsonObjects(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { line in
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        if object == nil { Issue.record("not a JSON object: \(line)", sourceLocation: sourceLocation) }
        return object
    }
}

@Suite("Commands end to end")
struct CommandEndToEndTests {
    @Test func devicesListsTheCPUAndEveryOpenCLDevice() throws {
        let folder = try TemporaryFolder()
        let run = try recur(["devices", "--device", "cpu"], in: folder)
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.first?.hasPrefix("cpu ") == true && run.outputLines.first?.hasSuffix("<- selected") == true,
                "\(run)")
        let devices = try OpenCLDevice.all()
        for device in devices {
            #expect(run.outputLines.contains { $0.hasPrefix("opencl:\(device.index)  \(device.name)") }, "\(run)")
        }
        guard !devices.isEmpty else {
            #expect(TestBackends.allowsMissingOpenCL, "no OpenCL device: \(run)")
            return
        }
        // Naming the first OpenCL device moves the mark to it.
        let openCL = try recur(["devices", "--device", "opencl:0"], in: folder)
        #expect(openCL.status == 0, "\(openCL)")
        #expect(openCL.outputLines.filter { $0.hasSuffix("<- selected") }.map { $0.prefix(9) } == ["opencl:0 "],
                "\(openCL)")
    }

    @Test func verifyOnTheCPUPrintsItsPassCountAndExitsZero() throws {
        let folder = try TemporaryFolder()
        let run = try recur(["verify", "--device", "cpu", "--quiet"], in: folder)
        #expect(run.status == 0, "\(run)")
        let summary = run.outputLines.last { !$0.isEmpty } ?? ""
        let passed = summary.hasPrefix("all: ") && summary.hasSuffix(" passed, 0 failed")
            ? Int(summary.dropFirst(5).prefix { $0 != " " }) : nil
        #expect((passed ?? 0) > 100, "\(run)")
        #expect(run.outputLines.contains("training ops of the CPU backend against the float64 reference"), "\(run)")

        // With a PyTorch fixture, the summary adds its checks.
        guard let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            Issue.record("the Fixtures folder is not among the test resources")
            return
        }
        let fixture = fixtures.appendingPathComponent("lstm_L1_uni_T5_B3_I4_H6.safetensors").path
        let withFixture = try recur(["verify", "--device", "cpu", "--quiet", "--fixture", fixture], in: folder)
        #expect(withFixture.status == 0, "\(withFixture)")
        #expect(withFixture.outputLines.contains { $0.hasPrefix("all: ") && $0.hasSuffix(" passed, 0 failed") },
                "\(withFixture)")
    }

    @Test func benchPrintsARowPerPassAndJSONLines() throws {
        let folder = try TemporaryFolder()
        let sizes = ["--device", "cpu", "--batch", "2", "--steps", "3", "--input", "4", "--hidden", "5",
                     "--warmup", "0", "--repetitions", "1"]
        let table = try recur(["bench"] + sizes + ["--cell", "lstm", "--gemm", "0"], in: folder)
        #expect(table.status == 0, "\(table)")
        for pass in ["forward", "forward+backward", "train-step"] {
            let rows = table.outputLines.filter {
                $0.hasPrefix("lstm B=2 T=3 I=4 H=5") && $0.split(separator: " ", omittingEmptySubsequences: true)
                    .contains { $0 == pass }
            }
            #expect(rows.count == 1, "\(pass): \(table)")
        }

        let json = try recur(["bench"] + sizes + ["--cell", "lstm", "--cell", "gru", "--gemm", "8", "--json"],
                             in: folder)
        #expect(json.status == 0, "\(json)")
        let objects = jsonObjects(json.output)
        #expect(objects.count == 7, "2 cells x 3 passes and one GEMM: \(json)")
        let rows = objects.map { "\($0["cell"] ?? $0["name"] ?? "?") \($0["pass"] ?? "?")" }
        #expect(Set(rows) == ["lstm forward", "lstm forward+backward", "lstm train-step", "gru forward",
                              "gru forward+backward", "gru train-step", "gemm 8x8x8 gemm"], "\(rows)")
        #expect(objects.allSatisfy { ($0["median_ms"] as? Double ?? 0) > 0 && $0["device"] as? String == "cpu" },
                "\(json)")
    }

    @Test func tuneSearchesReportsSavesAndResets() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let folder = try TemporaryFolder()
        // Its own parameter store: what it saves must not reach the other tests' backends.
        let environment = ["RECUR_CACHE_DIR": folder.path + "/cache"]
        let run = try recur(["tune", "--device", "opencl:\(device.index)", "--sizes", "16", "--max-candidates", "1",
                             "--seconds", "120", "--repetitions", "1"], in: folder, environment: environment)
        #expect(run.status == 0, "\(run)")
        let field = { (name: String) in
            run.outputLines.filter { $0.hasPrefix(name.padding(toLength: 12, withPad: " ", startingAt: 0)) }
        }
        #expect(field("device").first?.contains(device.name) == true, "\(run)")
        #expect(field("kernel").first?.hasPrefix("kernel      XgemmDirect") == true, "\(run)")
        #expect(field("candidates").first == "candidates  1 tried, 0 failed", "\(run)")
        #expect(field("default").first?.hasSuffix("GFLOP/s") == true, "\(run)")
        #expect(field("best").first?.contains("speed-up") == true, "\(run)")
        // The candidate is saved only when it timed faster than CLBlast's defaults, which a run
        // this short leaves to chance: either way the report says what it did, and did it.
        let cache = folder.path + "/cache"
        let savedFiles = { ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.hasPrefix("gemm-") } }
        let saved = field("saved")
        #expect(!saved.isEmpty, "\(run)")
        if saved == ["saved       nothing (the defaults were fastest)"] {
            #expect(savedFiles().isEmpty, "\(run)")
        } else {
            // The kernel's parameters, and the routine threshold that sends n = 16 to that kernel.
            #expect(saved.count == 2 && saved.allSatisfy { $0.contains(cache + "/gemm-") }, "\(run)")
            #expect(savedFiles().count == 2, "\(savedFiles()): \(run)")
        }

        let count = savedFiles().count
        let reset = try recur(["tune", "--device", "opencl:\(device.index)", "--reset"], in: folder,
                              environment: environment)
        #expect(reset.status == 0, "\(reset)")
        #expect(reset.outputLines.filter { $0.hasPrefix("deleted " + cache) }.count == count, "\(reset)")
        #expect(savedFiles().isEmpty, "\(savedFiles()) after --reset")
    }

    @Test func trainGenerateAndEvaluateATextModel() throws {
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 17)
        let words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it"]
        let text = (0..<400).map { _ in words.randomElement(using: &random)! }.joined(separator: " ") + "\n"
        try folder.write("text.txt", bytes: Array(text.utf8))
        let train = try recur(["train", "--device", "cpu", "--data", "text.txt", "--format", "text", "--max-length", "8",
                               "--embedding", "4", "--hidden", "8", "--epochs", "1", "--batch-size", "16", "--seed", "1",
                               "--test-split", "0.1", "--checkpoint-dir", "run", "--json"], in: folder)
        #expect(train.status == 0, "\(train)")
        let final = try #require(jsonObjects(train.output).last { $0["final"] as? Bool == true }, "\(train)")
        let checkpoint = folder.path + "/run/last.safetensors"

        // generate: the prime, then N characters (the out-of-vocabulary token prints as <OOV>).
        let prime = "the "
        let generate = ["generate", "--device", "cpu", "--checkpoint", checkpoint, "--prime", prime, "--length", "12",
                        "--seed", "3"]
        let generated = try recur(generate, in: folder)
        #expect(generated.status == 0, "\(generated)")
        #expect(generated.output.hasPrefix(prime) && generated.output.hasSuffix("\n"), "\(generated)")
        let continuation = generated.output.dropFirst(prime.count).dropLast()
        let tokens = continuation.components(separatedBy: Vocabulary.outOfVocabularyToken)
        #expect(tokens.count - 1 + tokens.map(\.count).reduce(0, +) == 12, "\(generated)")
        #expect(continuation.allSatisfy { text.contains($0) || "<OOV>".contains($0) }, "\(generated)")
        #expect(try recur(generate, in: folder).output == generated.output, "the same seed samples the same text")
        let primeOnly = try recur(["generate", "--device", "cpu", "--checkpoint", checkpoint, "--prime", prime,
                                   "--length", "0"], in: folder)
        #expect(primeOnly.status == 0 && primeOnly.output == prime + "\n", "\(primeOnly)")

        // evaluate --json: the test split's metrics, as the training run reported them.
        let evaluate = try recur(["evaluate", "--device", "cpu", "--checkpoint", checkpoint, "--json"], in: folder)
        #expect(evaluate.status == 0, "\(evaluate)")
        let metrics = try #require(jsonObjects(evaluate.output).first, "\(evaluate)")
        #expect(metrics["split"] as? String == "test")
        #expect((metrics["examples"] as? Int ?? 0) > 0, "\(evaluate)")
        let (loss, testLoss) = (metrics["loss"] as? Double ?? .nan, final["test_loss"] as? Double ?? .nan)
        #expect(abs(loss - testLoss) <= 1e-5 * testLoss, "evaluate \(loss), train's final test_loss \(testLoss)")
        #expect(metrics["accuracy"] as? Double == final["test_accuracy"] as? Double, "\(evaluate)")
        let perplexity = metrics["perplexity"] as? Double ?? .nan
        #expect(abs(perplexity - exp(loss)) <= 1e-4 * perplexity, "\(evaluate)")

        let validation = try recur(["evaluate", "--device", "cpu", "--checkpoint", checkpoint, "--split", "validation"],
                                   in: folder)
        #expect(validation.status == 0, "\(validation)")
        #expect(validation.outputLines.first?.hasPrefix("validation (") == true
                    && validation.outputLines.first?.contains("loss ") == true, "\(validation)")
    }

    @Test func demoQuickWritesItsPlotsAndSummary() throws {
        let folder = try TemporaryFolder()
        // --quick with still smaller sizes: its own defaults take minutes in a debug build.
        let run = try recur(["demo", "--quick", "--device", "cpu", "--output", "demo", "--lengths", "4", "--steps", "3",
                             "--hidden", "4", "--batch", "4"], in: folder)
        #expect(run.status == 0, "\(run)")
        #expect(run.outputLines.contains { $0.hasPrefix("[8/8] ") }, "3 cells with and without clipping, 2 exploding: \(run)")
        #expect(run.outputLines.contains { $0.hasPrefix("wrote 6 files to demo/") }, "\(run)")
        for file in ["loss.svg", "gradient_flow_rnn.svg", "gradient_flow_lstm.svg", "gradient_flow_gru.svg",
                     "exploding.svg", "summary.md"] {
            let bytes = try FileBytes.read(contentsOf: folder.path + "/demo/" + file)
            #expect(!bytes.isEmpty, "\(file)")
        }
    }

    /// Mistakes on the command line: usage errors exit with 2 (as most command-line tools do)
    /// after one line that says what is wrong and the usage; errors found while running exit with
    /// 1 after one line. Nothing goes to standard output.
    @Test(arguments: [
        (["frobnicate"], 2, "Unexpected argument 'frobnicate'"),
        (["bench", "--device", "cpu", "--cell", "lstn"], 2, "unknown cell 'lstn'"),
        (["bench", "--device", "cpu", "--batch", "2"], 2, "give all of --batch, --steps, --input and --hidden"),
        (["generate", "--device", "cpu", "--checkpoint", "x", "--temperature", "0"], 2, "--temperature must be positive"),
        (["demo", "--device", "cpu", "--lengths", "1"], 2, "--lengths must be comma-separated integers"),
        (["train", "--device", "cpu", "--data", "missing.txt", "--format", "text"], 1, "missing.txt"),
        (["evaluate", "--device", "cpu", "--checkpoint", "missing.safetensors"], 1, "missing.safetensors"),
        (["tune", "--device", "cpu"], 1, "nothing to tune"),
        (["devices", "--device", "nope"], 1, "no device matches 'nope'"),
    ] as [([String], Int32, String)])
    func badArgumentsExitWithAOneLineMessage(arguments: [String], status: Int32, message: String) throws {
        let folder = try TemporaryFolder()
        let run = try recur(arguments, in: folder)
        #expect(run.status == status, "\(arguments): \(run)")
        #expect(run.output.isEmpty, "\(arguments): \(run)")
        let lines = run.errorLines
        #expect(lines.first?.hasPrefix("Error: ") == true && lines.first?.contains(message) == true, "\(arguments): \(run)")
        if status == 1 {
            #expect(lines.count == 1, "\(arguments): \(run)")
        } else {
            #expect(lines.dropFirst().first?.hasPrefix("Usage: recur") == true, "\(arguments): \(run)")
        }
    }
}
