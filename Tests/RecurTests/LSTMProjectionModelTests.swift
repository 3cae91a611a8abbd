import Foundation
import Testing
@testable import Recur
@testable import RecurExport

// The LSTM with a projection above the op: the model specification and checkpoints carry P,
// `recur train --cell lstm --projection P` trains and resumes it, `recur predict` reads it, the
// exports say what they can do with it, and OpenCL training matches the CPU's losses. (The op
// itself, its reference and the PyTorch fixtures: LSTMProjectionTests, RecurrentCellTests,
// PyTorchParityTests.)

@Suite("LSTM with a projection: models, checkpoints, CLI")
struct LSTMProjectionModelTests {
    static let specification = ModelSpecification(
        task: .tag, vocabularySize: 7, embeddingSize: 3, cell: .lstm, hiddenSize: 5, projectionSize: 2,
        layerCount: 2, bidirectional: true, outputSize: 4, seed: 3)

    @Test("the specification names lstm_projection and P, counts its parameters and round-trips through JSON")
    func specification() throws {
        let spec = Self.specification
        #expect(spec.cell == .lstmProjection && spec.projectionSize == 2)
        let json = try spec.json()
        #expect(json.contains("\"cell\":\"lstm_projection\"") && json.contains("\"projectionSize\":2"), "\(json)")
        #expect(try ModelSpecification(json: json, source: "test") == spec)
        // A model without a projection writes what it always wrote.
        var plain = spec
        (plain.cell, plain.projectionSize) = (.lstm, nil)
        #expect(!(try plain.json()).contains("projection"))

        let model = try spec.makeModel(backend: TestBackends.cpu)
        #expect(model.parameters.reduce(0) { $0 + $1.value.count } == spec.parameterCount)
        let names = Set(model.parameters.map(\.name))
        #expect(names.isSuperset(of: ["1.weight_hr_l0", "1.weight_hr_l0_reverse", "1.weight_hr_l1_reverse"]))
        #expect(model.parameters.first { $0.name == "1.weight_ih_l1" }?.value.shape == [20, 4])
        #expect(model.parameters.first { $0.name == "2.weight" }?.value.shape == [4, 4])  // Dense [K, D P]
        let estimate = MemoryEstimate(spec, batchSize: 2, steps: 3, optimizer: nil)
        #expect(estimate.parameters == 4 * spec.parameterCount)

        for (cell, size) in [(RecurrentCell.gru, 2), (.lstm, 5), (.lstmProjection, 0)] {
            var wrong = spec
            (wrong.cell, wrong.projectionSize) = (cell, size == 0 ? nil : size)
            #expect(throws: RecurError.self, "\(cell) P \(size)") { try wrong.validate() }
        }
    }

    @Test("a checkpoint restores the model exactly")
    func checkpointRestoresExactly() throws {
        let backend = TestBackends.cpu
        let spec = Self.specification
        let configuration = TrainingConfiguration(epochs: 1, batchSize: 2, optimizer: .sgd(learningRate: 0.1))
        let model = try spec.makeModel(backend: backend)
        var random = SeededGenerator(seed: 9)
        for parameter in model.parameters {
            try recurrentSetValues(parameter.value, random.values(parameter.value.count))
        }
        let saved = try Checkpoint(specification: spec, configuration: configuration, progress: TrainingProgress(),
                                   model: model, optimizer: try configuration.optimizer.makeOptimizer(backend: backend),
                                   metadata: [:])
        let folder = try TemporaryFolder()
        let path = folder.path + "/model.safetensors"
        try saved.write(to: path)
        let loaded = try Checkpoint(contentsOf: path)
        #expect(loaded.specification == spec)
        #expect(loaded.parameters["1.weight_hr_l1"]?.shape == [2, 5])
        let restored = try loaded.makeModel(backend: backend)
        let ids = (0..<8).map { Int32(1 + $0 % 6) }  // [T, B]
        let run = { (model: Sequential) in
            try backend.download(try model.forward(ids: ids, shape: [4, 2], padding: .post, training: false))
        }
        #expect(try run(restored) == run(model))
    }

    @Test("ONNX export refuses it, naming why; the PyTorch export keeps weight_hr")
    func exports() throws {
        let backend = TestBackends.cpu
        let configuration = TrainingConfiguration(epochs: 1, batchSize: 2, optimizer: .sgd(learningRate: 0.1))
        let saved = try Checkpoint(
            specification: Self.specification, configuration: configuration, progress: TrainingProgress(),
            model: try Self.specification.makeModel(backend: backend),
            optimizer: try configuration.optimizer.makeOptimizer(backend: backend), metadata: [:])
        guard case .invalidArgument(_, let reason)? = recurError({ _ = try ONNXExport.model(of: saved) }) else {
            Issue.record("the ONNX export did not refuse the projection")
            return
        }
        #expect(reason.contains("lstm_projection") && reason.contains("projection") && reason.contains("proj_size"),
                "\(reason)")
        let folder = try TemporaryFolder()
        try PyTorchExport.write(saved, to: folder.path + "/model.safetensors")
        let exported = try SafeTensorsFile(contentsOf: folder.path + "/model.safetensors")
        #expect(try exported.shape(of: "1.weight_hr_l0_reverse") == [2, 5])
        #expect(try exported.shape(of: "1.weight_hh_l1") == [20, 2])
    }

    @Test("recur train --device opencl --cell lstm --projection P trains to the CPU run's losses")
    func trainsOnOpenCL() throws {
        guard try TestBackends.openCLDevice() != nil else { return }
        let folder = try TemporaryFolder()
        var random = SeededGenerator(seed: 23)
        let words = ["red", "blue", "green", "dark", "light"]
        let lines = (0..<24).map { _ -> String in
            let text = (0..<Int.random(in: 2...5, using: &random)).map { _ in words.randomElement(using: &random)! }
            return (text.contains("red") ? "warm" : "cold") + "\t" + text.joined(separator: " ")
        }
        let data = try folder.write("colours.tsv", lines.joined(separator: "\n") + "\n")
        func losses(_ device: String) throws -> [Double] {
            let log = folder.path + "/\(device).jsonl"
            let run = try runRecur(["train", "--device", device, "--cell", "lstm", "--projection", "3",
                                    "--bidirectional", "--layers", "2", "--data", data, "--format", "tsv",
                                    "--no-header", "--max-length", "5", "--embedding", "4", "--hidden", "5",
                                    "--epochs", "2", "--batch-size", "8", "--validation-split", "0",
                                    "--step-log", log])
            #expect(run.status == 0, "\(device): \(run.stderr)")
            return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
                let field = line.split(separator: ",").first { $0.contains("\"loss\"") }
                return field.flatMap { Double($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
            }
        }
        let (device, cpu) = (try losses("opencl"), try losses("cpu"))
        #expect(cpu.count == 6 && device.count == cpu.count, "\(device) \(cpu)")
        for (actual, expected) in zip(device, cpu) {
            #expect(abs(actual - expected) <= 1e-4 * abs(expected), "OpenCL \(device), CPU \(cpu)")
        }
    }

    @Test("recur bench --cell lstm --projection P times lstm_projection; P must suit the cell and H")
    func bench() throws {
        let sizes = ["bench", "--device", "cpu", "--batch", "3", "--steps", "4", "--input", "5", "--hidden", "6",
                     "--gemm", "0", "--warmup", "0", "--repetitions", "1"]
        let timed = try runRecur(sizes + ["--cell", "lstm", "--projection", "2", "--json"])
        #expect(timed.status == 0, "\(timed.stderr)")
        let lines = timed.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains("\"cell\": \"lstm_projection\"") && $0.contains("\"P\": 2") },
                "\(timed.stdout)")
        for (arguments, message) in [(["--cell", "gru", "--projection", "2"], "only valid with the lstm cell"),
                                     (["--cell", "lstm", "--projection", "6"], "1 ..< H = 6")] {
            let refused = try runRecur(sizes + arguments)
            #expect(refused.status != 0 && refused.stderr.contains(message) && refused.stdout.isEmpty, "\(refused)")
        }
        let suite = try runRecur(["bench", "--device", "cpu", "--cell", "lstm", "--projection", "64", "--gemm", "0"])
        #expect(suite.status != 0 && suite.stderr.contains("must be below H = 32") && suite.stdout.isEmpty, "\(suite)")
    }

    @Test("recur train --cell lstm --projection P trains; a checkpoint resumes to the uninterrupted run's losses; predict reads it")
    func trainResumeAndPredict() throws {
        let run = try expectTrainingResumesExactly(["--cell", "lstm", "--projection", "3", "--bidirectional"], seed: 19)
        let (parts, data, uninterrupted) = (run.resumedCheckpoints, run.data, run.uninterrupted)
        #expect(uninterrupted.stdout.contains("lstm_projection H=5") && uninterrupted.stdout.contains("P=3"),
                "\(uninterrupted.stdout)")
        let checkpoint = try Checkpoint(contentsOf: parts + "/last.safetensors")
        #expect(checkpoint.specification.projectionSize == 3)
        #expect(checkpoint.parameters["1.weight_hr_l0_reverse"]?.shape == [3, 5])

        let predicted = try runRecur(["predict", "--device", "cpu", "--checkpoint", parts + "/last.safetensors"],
                                     input: "red dark\nblue green light\n")
        #expect(predicted.status == 0, "\(predicted.stderr)")
        #expect(predicted.stdout.split(separator: "\n").count == 2, "\(predicted.stdout)")

        let refused = try runRecur(["train", "--device", "cpu", "--cell", "gru", "--projection", "3", "--data", data,
                                    "--format", "tsv", "--no-header", "--hidden", "5"])
        #expect(refused.status != 0 && refused.stderr.contains("only valid with the lstm cell"), "\(refused.stderr)")
        let tooWide = try runRecur(["train", "--device", "cpu", "--cell", "lstm", "--projection", "5", "--data", data,
                                    "--format", "tsv", "--no-header", "--hidden", "5"])
        #expect(tooWide.status != 0 && tooWide.stderr.contains("1 ..< H = 5"), "\(tooWide.stderr)")
    }
}
