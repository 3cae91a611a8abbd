import Foundation
import Testing
@testable import Recur

// What the training loop refuses and how it says so: a monitored metric the task does not report,
// a checkpoint whose recorded progress cannot belong to its run (edited or damaged), metadata of
// the wrong JSON type; and that higher-is-better metrics keep their best epoch.

private let classifier = ModelSpecification(
    task: .classify, vocabularySize: 10, embeddingSize: 4, cell: .gru, hiddenSize: 6, outputSize: 1, seed: 3)

private func configuration(epochs: Int, monitor: String = "val_loss") -> TrainingConfiguration {
    TrainingConfiguration(epochs: epochs, batchSize: 8, optimizer: .adam(learningRate: 0.03), seed: 4, monitor: monitor)
}

/// Two epochs of the classifier on 16 sequences, checkpoints in `folder`.
private func trainTwoEpochs(checkpointingIn folder: TemporaryFolder) throws {
    let trainer = try Trainer(specification: classifier, configuration: configuration(epochs: 2), backend: TestBackends.cpu)
    trainer.checkpointDirectory = folder.path
    try trainer.fit(training: try markerExamples(count: 16, vocabulary: 10, steps: 5, seed: 5))
}

@Suite("Training hardening")
struct TrainingHardeningTests {
    @Test func anUnknownMonitoredMetricIsRefusedBeforeTraining() throws {
        for monitor in ["foo", "val_mae", "perplexity", "val_"] {
            let error = recurError {
                _ = try Trainer(specification: classifier, configuration: configuration(epochs: 1, monitor: monitor),
                                backend: TestBackends.cpu)
            }
            #expect(error?.description.contains("cannot monitor '\(monitor)'") == true, "\(String(describing: error))")
            #expect(error?.description.contains("val_accuracy") == true)
        }
        for monitor in ["loss", "val_loss", "accuracy", "val_accuracy"] {
            _ = try Trainer(specification: classifier, configuration: configuration(epochs: 1, monitor: monitor),
                            backend: TestBackends.cpu)
        }
    }

    @Test func metricDirections() {
        #expect(MetricSums.higherIsBetter("accuracy") && MetricSums.higherIsBetter("val_accuracy"))
        for name in ["loss", "val_loss", "perplexity", "val_perplexity", "mae", "val_mae"] {
            #expect(!MetricSums.higherIsBetter(name), "\(name)")
        }
        for task in [ModelTask.classify, .tag, .lm, .forecast] {
            // Every name `names(for:)` lists is one `values(for:)` gives, and the other way round.
            #expect(Set(MetricSums.names(for: task)) == Set(MetricSums().values(for: task).keys), "\(task)")
        }
    }

    /// The best epoch is the one with the highest accuracy when accuracy is monitored, the lowest
    /// loss when the loss is: best.safetensors holds that epoch's weights.
    @Test(arguments: ["val_accuracy", "val_loss"])
    func theBestEpochFollowsTheMetricsDirection(monitor: String) throws {
        let training = try markerExamples(count: 64, vocabulary: 10, steps: 5, seed: 1)
        let validation = try markerExamples(count: 24, vocabulary: 10, steps: 5, seed: 2)
        let folder = try TemporaryFolder()
        let trainer = try Trainer(specification: classifier, configuration: configuration(epochs: 5, monitor: monitor),
                                  backend: TestBackends.cpu)
        trainer.checkpointDirectory = folder.path
        let history = try trainer.fit(training: training, validation: validation)
        let values = history.map { $0.metrics[monitor]! }
        let best = monitor == "val_accuracy" ? values.max()! : values.min()!
        let bestEpoch = values.firstIndex(of: best)! + 1
        #expect(trainer.progress.bestEpoch == bestEpoch, "\(monitor) by epoch: \(values)")
        #expect(trainer.progress.best == best)
        let saved = try Checkpoint(contentsOf: folder.path + "/best.safetensors")
        #expect(saved.progress.epoch == bestEpoch)
    }

    /// A checkpoint edited to claim epochs it cannot have is refused when read, naming the file.
    @Test func aCheckpointsProgressMustFitItsRun() throws {
        let folder = try TemporaryFolder()
        try trainTwoEpochs(checkpointingIn: folder)
        let path = folder.path + "/last.safetensors"
        let good = try Checkpoint(contentsOf: path)
        #expect(good.progress.epoch == 2)

        let edits: [(String, (inout Checkpoint) -> Void)] = [
            ("epoch 99 of 2", { $0.progress.epoch = 99 }),
            ("epoch -2", { $0.progress.epoch = -2 }),
            ("more epochs than records", { $0.progress.epoch = 1; $0.configuration.epochs = 3 }),
            ("a negative step", { $0.progress.step = -1 }),
            ("records out of order", { $0.progress.history.swapAt(0, 1) }),
            ("a best epoch never run", { $0.progress.bestEpoch = 7 }),
            ("a billion epochs", { $0.configuration.epochs = 1_000_000_000 }),
        ]
        for (name, edit) in edits {
            var edited = good
            edit(&edited)
            let editedPath = folder.path + "/edited.safetensors"
            try edited.write(to: editedPath)
            let error = recurError { _ = try Checkpoint(contentsOf: editedPath) }
            #expect(error?.description.hasPrefix(editedPath) == true, "\(name): \(String(describing: error))")
        }
    }

    /// A run killed after writing its last checkpoint but before its log leaves the log an epoch
    /// short; resuming rewrites it from the checkpoint, even with no epoch left to train.
    @Test func resumingRepairsALogOneEpochShort() throws {
        let folder = try TemporaryFolder()
        try trainTwoEpochs(checkpointingIn: folder)
        let log = folder.path + "/log.jsonl"
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        try folder.write("log.jsonl", lines[0] + "\n")
        let trainer = try Trainer(resumingFrom: try Checkpoint(contentsOf: folder.path + "/last.safetensors"),
                                  backend: TestBackends.cpu)
        trainer.checkpointDirectory = folder.path
        try trainer.fit(training: try markerExamples(count: 16, vocabulary: 10, steps: 5, seed: 5))
        #expect(try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") == lines)
    }

    /// A resumed run whose total epochs are fewer than those already done is refused.
    @Test func resumingWithFewerEpochsThanDoneIsRefused() throws {
        let folder = try TemporaryFolder()
        try trainTwoEpochs(checkpointingIn: folder)
        let checkpoint = try Checkpoint(contentsOf: folder.path + "/last.safetensors")
        let error = recurError { _ = try Trainer(resumingFrom: checkpoint, epochs: 1, backend: TestBackends.cpu) }
        #expect(error?.description.contains("already completed 2 epochs") == true, "\(String(describing: error))")
    }

    /// A float where the progress holds an integer is reported as that field, not as invalid JSON.
    @Test func aWronglyTypedFieldIsNamed() throws {
        let folder = try TemporaryFolder()
        try trainTwoEpochs(checkpointingIn: folder)
        let file = try SafeTensorsFile(contentsOf: folder.path + "/last.safetensors")
        var metadata = file.metadata
        let progress = try #require(metadata["recur.progress"])
        metadata["recur.progress"] = progress.replacingOccurrences(of: "\"epoch\":2,", with: "\"epoch\":1.5,")
        #expect(metadata["recur.progress"] != progress)
        var writer = SafeTensorsWriter(metadata: metadata)
        for name in file.names {
            if try file.dtype(of: name) == .int32 {
                try writer.add(name, int32s: try file.int32s(name), shape: try file.shape(of: name))
            } else {
                try writer.add(name, floats: try file.floats(name), shape: try file.shape(of: name))
            }
        }
        let edited = folder.path + "/edited.safetensors"
        try writer.write(to: edited)
        let error = recurError { _ = try Checkpoint(contentsOf: edited) }
        #expect(error?.description.contains("field 'epoch' is 1.5") == true, "\(String(describing: error))")
        // The best loss is a fraction in a field of fractions: not named.
        #expect(error?.description.contains("field 'best'") == false, "\(String(describing: error))")
    }

    /// Temporary files of killed writers go; a live process's file and other files stay.
    @Test func leftoverTemporaryFilesAreRemoved() throws {
        let folder = try TemporaryFolder()
        // Process ids stop far below 2^30 (the kernel's pid_max is at most 2^22), so no process
        // has this one.
        let stale = try folder.write(".last.safetensors.tmp-1073741000-1f2e3d", "half a checkpoint")
        let live = try folder.write(".last.safetensors.tmp-\(getpid())-abc", "being written")
        let other = try folder.write(".notes.tmp-x-y", "not ours")
        let removed = try ReportFile.prepareWritableDirectory(folder.path)
        #expect(removed == [".last.safetensors.tmp-1073741000-1f2e3d"])
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: live) && FileManager.default.fileExists(atPath: other))
        // A path through a regular file cannot be a folder: refused before anything is written.
        let error = recurError { try ReportFile.prepareWritableDirectory(other + "/runs") }
        #expect(error != nil)
    }

    /// Generation hands out each token as it is sampled, and the pieces make the whole text.
    @Test func generationStreamsAndIsBounded() throws {
        let vocabulary = try Vocabulary(words: ["a", "b", "c", "d"])
        let specification = ModelSpecification(
            task: .lm, vocabularySize: vocabulary.count, embeddingSize: 4, cell: .lstm, hiddenSize: 5,
            outputSize: vocabulary.count, seed: 2)
        let generator = try TextGenerator(model: try specification.makeModel(backend: TestBackends.cpu),
                                          vocabulary: vocabulary, tokenizer: .character)
        var pieces: [String] = []
        try generator.generate(prime: "ab", length: 30, seed: 7) { pieces.append($0) }
        #expect(pieces.count == 30)
        #expect(pieces.joined() == (try generator.generate(prime: "ab", length: 30, seed: 7)))
        let error = recurError {
            try generator.generate(prime: "ab", length: TextGenerator.maximumLength + 1) { _ in }
        }
        #expect(error?.description.contains("length") == true)
    }
}
