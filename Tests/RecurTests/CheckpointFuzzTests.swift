import Foundation
import Testing
@testable import Recur

// Mutation fuzzing of what a checkpoint's metadata holds (model specification, training
// configuration, progress, data source) and of whole checkpoint files: every input is accepted
// (and then valid) or refused with a `RecurError` that names its source; none allocates a model.

@Suite("Checkpoint fuzzing")
struct CheckpointFuzzTests {
    private static let specification = ModelSpecification(
        task: .classify, vocabularySize: 12, embeddingSize: 4, cell: .lstm, hiddenSize: 4, layerCount: 2,
        bidirectional: true, recurrentDropout: 0.1, outputSize: 1, seed: 3)

    @Test func metadataJSON() throws {
        var source = DataSource(format: .lines, paths: ["neg.txt", "pos.txt"])
        source.classNames = ["neg", "pos"]
        var progress = TrainingProgress()
        progress.history = [EpochRecord(epoch: 1, step: 3, metrics: ["loss": 0.5, "val_loss": .nan], learningRate: 0.001,
                                        meanGradientNorm: 1, maxGradientNorm: 2, skippedSteps: 0, seconds: 1)]
        progress.normHistory = [1, 2, 3]
        let configuration = TrainingConfiguration(
            epochs: 3, batchSize: 8, optimizer: .sgd(learningRate: 0.1, momentum: 0.9, nesterov: true),
            schedule: try LearningRateSchedule.cosine(learningRate: 0.1, totalSteps: 10).withWarmup(steps: 2),
            clipping: .adaptive(percentile: 10), earlyStoppingPatience: 2)
        let seeds = [
            try Self.specification.json(), try RecurJSON.string(configuration), try RecurJSON.string(progress),
            try source.json(),
        ].map { Array($0.utf8) }
        let dictionary = ["\"hiddenSize\"", "\"task\"", "\"lm\"", "\"forecast\"", "9223372036854775807", "-1", "1e308",
                          "\"nan\"", "null", "\"adamW\"", "\"globalNorm\""]
        let tally = fuzz("checkpoint metadata", seeds: seeds, dictionary: dictionary,
                         iterations: FuzzBudget.iterations(6_000), seedOffset: 40) { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            // Each reader in turn: the input is for one of them; the others must refuse it cleanly.
            var accepted = false
            if let specification = try? ModelSpecification(json: text, source: "fuzz") {
                try specification.validate()
                #expect(specification.parameterCount <= 1 << 31)
                accepted = true
            }
            if let decoded = try? RecurJSON.decode(TrainingConfiguration.self, from: text, source: "fuzz", what: "training") {
                _ = try? decoded.validate()
                accepted = true
            }
            if (try? RecurJSON.decode(TrainingProgress.self, from: text, source: "fuzz", what: "progress")) != nil {
                accepted = true
            }
            if (try? DataSource(json: text)) != nil { accepted = true }
            if !accepted { _ = try ModelSpecification(json: text, source: "fuzz") }
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }

    @Test func wholeCheckpointFiles() throws {
        let folder = try TemporaryFolder()
        let trainer = try Trainer(
            specification: Self.specification,
            configuration: TrainingConfiguration(epochs: 1, batchSize: 4, optimizer: .adam(learningRate: 0.01)),
            backend: TestBackends.cpu)
        trainer.checkpointDirectory = folder.path
        let sequences = try padSequences([[2, 3], [4, 5, 6], [7], [8, 9]], maxLength: 3)
        try trainer.fit(training: try LabeledSequences(sequences: sequences, labels: [0, 1, 0, 1], classCount: 2))
        let bytes = try FileBytes.read(contentsOf: folder.path + "/last.safetensors")
        let tally = fuzz("checkpoint file", seeds: [bytes], dictionary: ["\"recur.model\"", "\"hiddenSize\\\":"],
                         iterations: FuzzBudget.iterations(1_500), seedOffset: 41, maximumLength: 1 << 16) { input in
            let checkpoint = try Checkpoint(file: try SafeTensorsFile(bytes: input, source: "fuzz.safetensors"))
            // An accepted checkpoint restores into its model only when every tensor fits it. (A
            // mutated size may describe a valid but large model; building those would only test
            // the machine's memory.)
            guard checkpoint.specification.parameterCount < 100_000 else { return }
            let model = try checkpoint.specification.makeModel(backend: TestBackends.cpu)
            _ = try? checkpoint.restoreParameters(of: model)
        }
        #expect(tally.accepted > 0 && tally.rejected > 0)
    }
}
