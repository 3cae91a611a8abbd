import Foundation
import Testing
@testable import Recur
@testable import recur

// Sizes from flags, checkpoints and fixtures that no machine could hold, and numbers of any
// magnitude in the progress lines: the `recur` executable must end with one line saying so (exit
// status 1), or print the number, never trap or fail an allocation. Every size here is far
// beyond any machine's memory, so each refusal comes before anything is allocated and the test
// is instant.


@Suite("Command-line sizes", .serialized)
struct CommandLineSizeTests {
    /// Runs `recur` with `arguments` in `folder`; returns the exit status and standard error.
    private func run(_ arguments: [String], in folder: String) throws -> (status: Int32, error: String, output: String) {
        let run = try runRecur(arguments, in: folder)
        #expect(!run.signalled && !run.timedOut, "\(arguments): ended by a signal or its time limit: \(run.stderr)")
        return (run.status, run.stderr, run.stdout)
    }

    /// `arguments` must exit with status 1 and one line on stderr that contains every one of `words`.
    private func expectRefused(_ arguments: [String], in folder: String, saying words: [String]) throws {
        let (status, error, _) = try run(arguments, in: folder)
        #expect(status == 1, "\(arguments): status \(status), \(error)")
        let lines = error.split(separator: "\n")
        #expect(lines.count == 1, "\(arguments): \(error)")
        for word in words { #expect(error.contains(word), "\(arguments): \(error)") }
    }

    private func writeText(_ folder: String) throws -> String {
        var random = SeededGenerator(seed: 5)
        let words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "to", "be"]
        let text = (0..<160).map { _ in (0..<8).map { _ in words[Int(random.next() % UInt64(words.count))] }
            .joined(separator: " ") }.joined(separator: "\n")
        try text.write(toFile: folder + "/text.txt", atomically: true, encoding: .utf8)
        return "text.txt"
    }

    private func writeTable(_ folder: String) throws -> String {
        var random = SeededGenerator(seed: 6)
        let lines = (0..<40).map { _ in
            (random.next() % 2 == 0 ? "pos\tgood film" : "neg\tbad plot") + " scene \(random.next() % 5)"
        }
        try lines.joined(separator: "\n").write(toFile: folder + "/table.tsv", atomically: true, encoding: .utf8)
        return "table.tsv"
    }

    /// A language model whose loss passes 43.7 has a perplexity beyond Int.max: the progress lines
    /// print it in scientific notation (they trapped converting it to Int).
    @Test func aDivergingLanguageModelPrintsItsPerplexity() throws {
        let folder = try TemporaryFolder()
        let data = try writeText(folder.path)
        let (status, error, output) = try run(
            ["train", "--device", "cpu", "--data", data, "--format", "text", "--hidden", "8", "--embedding", "8",
             "--epochs", "2", "--max-length", "20", "--optimizer", "sgd", "--learning-rate", "1000", "--seed", "1"],
            in: folder.path)
        #expect(status == 0, "\(error)")
        #expect(output.contains("final after 2 epochs"), "\(output)")
        #expect(output.contains("perplexity") && output.contains("e+"), "\(output)")
    }

    @Test func trainingSizesBeyondMemoryAreRefused() throws {
        let folder = try TemporaryFolder()
        let table = try writeTable(folder.path)
        let train = ["train", "--device", "cpu", "--data", table, "--epochs", "1", "--checkpoint-dir", "run"]
        try expectRefused(train + ["--hidden", "1000000"], in: folder.path,
                          saying: ["recur train: needs about", "parameters", "--hidden"])
        try expectRefused(train + ["--max-length", "100000000000"], in: folder.path,
                          saying: ["recur train: needs about", "activations", "--max-length"])
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/run/last.safetensors"))
    }

    /// A series in large units (values near 1e27): training and evaluating print its error in
    /// scientific notation (the conversion to Int trapped).
    @Test func aSeriesInLargeUnitsTrainsAndEvaluates() throws {
        let folder = try TemporaryFolder()
        let values = (0..<80).map { "\($0),\(Double(1 + $0 % 7) * 1e27)" }
        try (["t,v"] + values).joined(separator: "\n").write(toFile: folder.path + "/big.csv", atomically: true,
                                                             encoding: .utf8)
        let (status, error, output) = try run(
            ["train", "--device", "cpu", "--data", "big.csv", "--format", "series", "--max-length", "8", "--hidden", "4",
             "--epochs", "1", "--checkpoint-dir", "run"], in: folder.path)
        #expect(status == 0, "\(error)")
        #expect(output.contains("mae") && output.contains("e+2"), "\(output)")
        let evaluated = try run(["evaluate", "--device", "cpu", "--checkpoint", "run/last.safetensors", "--split",
                                 "validation"], in: folder.path)
        #expect(evaluated.status == 0, "\(evaluated.error)")
        #expect(evaluated.output.contains("mae") && evaluated.output.contains("e+2"), "\(evaluated.output)")
    }

    /// `tune` sizes no device holds are refused before a buffer is made.
    @Test func tuneSizesBeyondTheDeviceAreRefused() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let folder = try TemporaryFolder()
        try expectRefused(["tune", "--device", "opencl:\(device.index)", "--sizes", "1000000"], in: folder.path,
                          saying: ["recur tune: needs about", "lower --sizes"])
    }

    /// A batch larger than the data is one batch of all of it, even at Int.max (the batch count
    /// trapped on overflow).
    @Test func theLargestBatchSizeTrainsOneBatchPerEpoch() throws {
        let folder = try TemporaryFolder()
        let table = try writeTable(folder.path)
        let (status, error, output) = try run(
            ["train", "--device", "cpu", "--data", table, "--epochs", "1", "--hidden", "4", "--embedding", "4",
             "--batch-size", "\(Int.max)"], in: folder.path)
        #expect(status == 0, "\(error)")
        #expect(output.contains("final after 1 epochs"), "\(output)")
    }

    /// A checkpoint that records a sequence length of 1e12: `evaluate` and `train --resume`
    /// refuse it before reading the data, and the checkpoint stays as it was.
    @Test func aCheckpointsSequenceLengthIsChecked() throws {
        let folder = try TemporaryFolder()
        let table = try writeTable(folder.path)
        let (status, error, _) = try run(
            ["train", "--device", "cpu", "--data", table, "--epochs", "1", "--hidden", "4", "--embedding", "4",
             "--max-length", "6", "--checkpoint-dir", "run"], in: folder.path)
        try #require(status == 0, "\(error)")
        let path = folder.path + "/run/last.safetensors"
        var checkpoint = try Checkpoint(contentsOf: path)
        var source = try DataSource(json: checkpoint.metadata["data.source"]!)
        source.sequenceLength = 1_000_000_000_000
        checkpoint.metadata["data.source"] = try source.json()
        try checkpoint.write(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        try expectRefused(["evaluate", "--device", "cpu", "--checkpoint", "run/last.safetensors"], in: folder.path,
                          saying: ["recur evaluate: needs about", "activations"])
        try expectRefused(["train", "--device", "cpu", "--checkpoint-dir", "run", "--resume"], in: folder.path,
                          saying: ["recur train --resume: needs about", "last.safetensors"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test(arguments: [
        ["bench", "--device", "cpu", "--batch", "100000", "--steps", "100000", "--input", "4", "--hidden", "100000"],
        ["bench", "--device", "cpu", "--gemm", "100000000", "--gemm-only"],
        ["bench", "--device", "cpu", "--layers", "1000000000", "--gemm", "0"],
        ["bench", "--device", "cpu", "--batch", "3037000500", "--steps", "3037000500", "--input", "3037000500",
         "--hidden", "1"],
        ["demo", "--device", "cpu", "--lengths", "100000000000", "--output", "demo"],
    ])
    func benchAndDemoSizesBeyondMemoryAreRefused(_ arguments: [String]) throws {
        let folder = try TemporaryFolder()
        try expectRefused(arguments, in: folder.path, saying: ["needs about", "lower --"])
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/demo"))
    }

    @Test func aFixtureWhoseMetadataTheTensorsContradictIsRefused() throws {
        let folder = try TemporaryFolder()
        let source = try #require(try PyTorchFixture.all().first { $0.name.hasPrefix("gru_L1_uni") })
        var writer = SafeTensorsWriter(metadata: source.file.metadata.merging(["num_layers": "100000000"]) { $1 })
        for name in source.file.names {
            try writer.add(name, doubles: try source.file.doubles(name), shape: try source.file.shape(of: name))
        }
        try writer.write(to: folder.path + "/deep.safetensors")
        let (status, error, _) = try run(["verify", "--device", "cpu", "--quiet", "--fixture", "deep.safetensors"],
                                         in: folder.path)
        #expect(status == 1)
        #expect(error.contains("deep.safetensors: the metadata says num_layers 100000000"), "\(error)")
    }
}
