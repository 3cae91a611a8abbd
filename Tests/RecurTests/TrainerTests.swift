import Testing
@testable import Recur
import COpenCL

#if canImport(Glibc)
import Glibc
#endif

// The training loop on small synthetic data: it learns, resumes exactly, stops early, handles
// non-finite values by policy, and its checkpoints reject corruption. Sizes are tiny because
// tests build without optimisation.

/// Sequences labelled by whether they hold the marker id 2 (else the marker 3), among filler
/// ids 4 ..< vocabulary, padded in front: a task an LSTM learns in a few epochs.
func markerExamples(count: Int, vocabulary: Int, steps: Int, seed: UInt64) throws -> LabeledSequences {
    var random = SeededGenerator(seed: seed)
    var sequences: [[Int32]] = []
    var labels: [Int32] = []
    for _ in 0..<count {
        let length = Int.random(in: 2...steps, using: &random)
        var sequence = (0..<length).map { _ in Int32.random(in: 4..<Int32(vocabulary), using: &random) }
        let positive = Bool.random(using: &random)
        sequence[Int.random(in: 0..<length, using: &random)] = positive ? 2 : 3
        sequences.append(sequence)
        labels.append(positive ? 1 : 0)
    }
    return try LabeledSequences(
        sequences: try padSequences(sequences, maxLength: steps, padding: .pre), labels: labels, classCount: 2)
}

let markerSpecification = ModelSpecification(
    task: .classify, vocabularySize: 12, embeddingSize: 6, cell: .lstm, hiddenSize: 8, inputDropout: 0.1,
    recurrentDropout: 0.1, outputSize: 1, seed: 5)

func markerConfiguration(epochs: Int) -> TrainingConfiguration {
    TrainingConfiguration(epochs: epochs, batchSize: 16, optimizer: .adam(learningRate: 0.02),
                          clipping: .globalNorm(maxNorm: 1), seed: 9)
}

@Suite("Trainer")
struct TrainerTests {
    @Test func fitLearnsAndReportsMetricsEveryEpoch() throws {
        let training = try markerExamples(count: 384, vocabulary: 12, steps: 6, seed: 1)
        let validation = try markerExamples(count: 128, vocabulary: 12, steps: 6, seed: 2)
        let trainer = try Trainer(specification: markerSpecification, configuration: markerConfiguration(epochs: 6),
                                  backend: TestBackends.cpu)
        var steps = 0
        let counter = StepCounter()
        trainer.observer = { event in if case .step = event { counter.increment() } }
        let history = try trainer.fit(training: training, validation: validation)
        steps = counter.value
        #expect(history.count == 6)
        #expect(steps == 6 * 24)
        #expect(history.map(\.step) == [24, 48, 72, 96, 120, 144])
        let first = history[0].metrics, last = history[5].metrics
        #expect(last["loss"]! < first["loss"]! / 3, "training loss \(first["loss"]!) → \(last["loss"]!)")
        #expect(last["val_accuracy"]! >= 0.95, "validation accuracy \(last["val_accuracy"]!)")
        #expect(history.allSatisfy { $0.meanGradientNorm > 0 && $0.maxGradientNorm >= $0.meanGradientNorm })
        // evaluate gives the epoch's validation numbers again.
        let again = try trainer.evaluate(validation)
        #expect(abs(again["loss"]! - last["val_loss"]!) < 1e-6)
        #expect(again["accuracy"]! == last["val_accuracy"]!)
        // predict returns one logit per example, which evaluate's accuracy agrees with.
        let logits = try trainer.predict(validation)
        #expect(logits.count == validation.count)
        let correct = zip(logits, validation.labels).count { ($0 > 0) == ($1 == 1) }
        #expect(Double(correct) / Double(validation.count) == again["accuracy"]!)
    }

    @Test func aResumedRunMatchesAnUninterruptedOne() throws {
        let training = try markerExamples(count: 100, vocabulary: 12, steps: 6, seed: 3)
        let validation = try markerExamples(count: 40, vocabulary: 12, steps: 6, seed: 4)
        let folder = try TemporaryFolder()
        var configuration = markerConfiguration(epochs: 3)
        configuration.checkpointEverySteps = 4  // 7 batches per epoch: checkpoints fall mid-epoch
        configuration.clipping = .adaptive(percentile: 50)

        let straight = try Trainer(specification: markerSpecification, configuration: configuration,
                                   backend: TestBackends.cpu)
        let expected = try straight.fit(training: training, validation: validation)

        // Stop after 11 steps (mid-epoch 2, right after the step-8 checkpoint and 3 more), then
        // resume from the last checkpoint, which holds step 8.
        let checkpoint = try checkpointOfARunStopped(
            afterSteps: 11, specification: markerSpecification, configuration: configuration, training: training,
            validation: validation, folder: folder)
        #expect(checkpoint.progress.step == 8)
        #expect(checkpoint.progress.epoch == 1 && checkpoint.progress.batchInEpoch == 1)
        let resumed = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu)
        let history = try resumed.fit(training: training, validation: validation)

        #expect(history.count == expected.count)
        for (got, want) in zip(history, expected) {
            for (name, value) in want.metrics {
                #expect(got.metrics[name] == value, "epoch \(want.epoch) \(name): resumed \(got.metrics[name] ?? .nan), straight \(value)")
            }
        }
        for (got, want) in zip(resumed.model.parameters, straight.model.parameters) {
            #expect(try got.value.toArray() == want.value.toArray(), "\(got.name) differs after resuming")
        }
        // The log holds each epoch once.
        let log = String(decoding: try FileBytes.read(contentsOf: folder.path + "/log.jsonl"), as: UTF8.self)
        #expect(log.split(separator: "\n").count == 1, "the interrupted run logged epoch 1 only")
    }

    @Test func earlyStoppingEndsTheRunAndKeepsTheBestCheckpoint() throws {
        let training = try markerExamples(count: 64, vocabulary: 12, steps: 5, seed: 5)
        let validation = try markerExamples(count: 32, vocabulary: 12, steps: 5, seed: 6)
        let folder = try TemporaryFolder()
        // A learning rate of 0 never improves on epoch 1's validation loss.
        var configuration = TrainingConfiguration(epochs: 10, batchSize: 16, optimizer: .sgd(learningRate: 0))
        configuration.earlyStoppingPatience = 2
        let trainer = try Trainer(specification: markerSpecification, configuration: configuration, backend: TestBackends.cpu)
        trainer.checkpointDirectory = folder.path
        let history = try trainer.fit(training: training, validation: validation)
        #expect(history.count == 3)
        #expect(trainer.progress.stoppedEarly)
        #expect(trainer.progress.bestEpoch == 1)
        let best = try Checkpoint(contentsOf: folder.path + "/best.safetensors")
        #expect(best.progress.epoch == 1)
    }

    @Test func nonFiniteGradientsStopOrSkipByPolicy() throws {
        let training = try markerExamples(count: 48, vocabulary: 12, steps: 5, seed: 7)
        let specification = ModelSpecification(
            task: .classify, vocabularySize: 12, embeddingSize: 4, cell: .gru, hiddenSize: 4, outputSize: 1, seed: 1)

        func poisoned(_ policy: NonFiniteGradientPolicy) throws -> Trainer {
            var configuration = TrainingConfiguration(epochs: 1, batchSize: 16, optimizer: .adam(learningRate: 0.01))
            configuration.nonFinitePolicy = policy
            let trainer = try Trainer(specification: specification, configuration: configuration, backend: TestBackends.cpu)
            // Filler id 7's embedding row becomes NaN: every batch holding it gets a NaN loss.
            let embedding = trainer.model.parameters[0].value
            var table = try embedding.toArray()
            for column in 0..<4 { table[7 * 4 + column] = .nan }
            try TestBackends.cpu.copy(try TestBackends.cpu.upload(table, shape: embedding.shape), sourceOffset: 0,
                                      into: embedding, destinationOffset: 0, count: embedding.count)
            return trainer
        }

        let stopping = try poisoned(.throwError)
        #expect {
            try stopping.fit(training: training)
        } throws: { error in
            let text = "\(error)"
            return text.contains("step 1") && text.contains("not finite") && text.contains("0.weight")
        }

        let skipping = try poisoned(.skipStep)
        let history = try skipping.fit(training: training)
        #expect(history[0].skippedSteps == 3)
        #expect(history[0].step == 3)
    }

    @Test func checkpointsRejectCorruptionWithClearErrors() throws {
        let folder = try TemporaryFolder()
        let trainer = try Trainer(specification: markerSpecification, configuration: markerConfiguration(epochs: 1),
                                  backend: TestBackends.cpu)
        trainer.checkpointDirectory = folder.path
        try trainer.fit(training: try markerExamples(count: 32, vocabulary: 12, steps: 4, seed: 8))
        let path = folder.path + "/last.safetensors"
        let bytes = try FileBytes.read(contentsOf: path)
        let good = try Checkpoint(contentsOf: path)
        #expect(good.specification == markerSpecification)
        #expect(good.configuration == markerConfiguration(epochs: 1))

        func rejects(_ corrupt: [UInt8], _ expectedText: String) throws {
            let bad = folder.path + "/bad.safetensors"
            try FileBytes.writeAtomically(corrupt, to: bad)
            #expect(throws: RecurError.self) { try Checkpoint(contentsOf: bad) }
            do { _ = try Checkpoint(contentsOf: bad) } catch {
                #expect("\(error)".contains(expectedText), "\(error)")
            }
        }
        try rejects(Array(bytes.prefix(bytes.count / 2)), "bad.safetensors")
        try rejects(Array(bytes.prefix(5)), "bad.safetensors")
        // A model specification that does not validate (hidden size 0), same byte length.
        let pattern = Array(#"\"hiddenSize\":8"#.utf8)
        var absurd = bytes
        let start = (0...(bytes.count - pattern.count)).first { Array(bytes[$0 ..< $0 + pattern.count]) == pattern }
        #expect(start != nil, "the checkpoint's metadata names hiddenSize")
        if let start { absurd[start + pattern.count - 1] = UInt8(ascii: "0") }
        try rejects(absurd, "bad.safetensors")
    }

    @Test func dataFingerprintsTellDataSetsApart() throws {
        let first = try markerExamples(count: 40, vocabulary: 12, steps: 5, seed: 20)
        let same = try markerExamples(count: 40, vocabulary: 12, steps: 5, seed: 20)
        let other = try markerExamples(count: 40, vocabulary: 12, steps: 5, seed: 21)
        #expect(first.fingerprint() == same.fingerprint())
        #expect(first.fingerprint() != other.fingerprint())
        #expect(first.fingerprint().hasPrefix("40 examples"))
    }

    @Test func languageModelWindowsShiftTargetsByOne() throws {
        let ids: [Int32] = Array(2...30)
        let windows = try LanguageModelWindows(ids: ids, length: 5, stride: 3)
        #expect(windows.count == (29 - 1 - 5) / 3 + 1)
        let batch = windows.batch([0, 2])
        guard case let .ids(inputs, steps, _, _) = batch.input, case let .classes(targets) = batch.targets else {
            Issue.record("unexpected batch layout")
            return
        }
        #expect(steps == 5)
        // [T, B]: column 0 is window 0 (ids 2...6), column 1 window 2 (ids 8...12).
        let firstColumn: [Int32] = (0..<5).map { inputs[$0 * 2] }
        let secondColumn: [Int32] = (0..<5).map { inputs[$0 * 2 + 1] }
        let secondTargets: [Int32] = (0..<5).map { targets[$0 * 2 + 1] }
        #expect(firstColumn == [2, 3, 4, 5, 6])
        #expect(secondColumn == [8, 9, 10, 11, 12])
        #expect(secondTargets == [9, 10, 11, 12, 13])
        #expect(throws: RecurError.self) { try LanguageModelWindows(ids: [2, 3], length: 2) }
    }

    @Test func greedyGenerationFollowsTheModelsMostLikelyToken() throws {
        let vocabulary = try Vocabulary(words: ["a", "b", "c", "d"])
        let specification = ModelSpecification(
            task: .lm, vocabularySize: vocabulary.count, embeddingSize: 4, cell: .lstm, hiddenSize: 6,
            outputSize: vocabulary.count, seed: 3)
        let model = try specification.makeModel(backend: TestBackends.cpu)
        let generator = try TextGenerator(model: model, vocabulary: vocabulary, tokenizer: .word)
        let text = try generator.generate(prime: "a b", length: 4, topK: 1)
        // The same tokens by running the whole growing sequence through the model each time.
        var ids: [Int32] = generator.encode("a b")
        for _ in 0..<4 {
            let logits = try model.forward(ids: ids, shape: [ids.count, 1], padding: .post, training: false).toArray()
            let last = Array(logits.suffix(vocabulary.count))
            var best = 1
            for index in 2..<last.count where last[index] > last[best] { best = index }
            ids.append(Int32(best))
        }
        #expect(text == (try vocabulary.decode(ids.suffix(4))).joined(separator: " "))
        let sampled = try generator.generate(prime: "a", length: 20, temperature: 1.5, seed: 4)
        #expect(sampled == (try generator.generate(prime: "a", length: 20, temperature: 1.5, seed: 4)))
        #expect(throws: RecurError.self) { try generator.generate(prime: "a", length: 3, temperature: 0) }
    }
}

/// Counts events from the trainer's observer.
final class StepCounter: @unchecked Sendable {
    private(set) var value = 0
    func increment() { value += 1 }
}

/// Examples whose batches turn bad once `stopAfterSteps` steps have run: the next forward pass
/// throws (an id outside the vocabulary), as a run stopped mid-epoch by bad data.
struct StoppingExamples<Inner: TrainingExamples>: TrainingExamples, @unchecked Sendable {
    let inner: Inner
    let stopAfterSteps: Int
    let counter: StepCounter

    var count: Int { inner.count }

    func batch(_ indices: ArraySlice<Int>) -> TrainingBatch {
        var batch = inner.batch(indices)
        if counter.value >= stopAfterSteps, case let .ids(ids, steps, lengths, padding) = batch.input {
            batch.input = .ids(ids.map { _ in 99 }, steps: steps, lengths: lengths, padding: padding)
        }
        return batch
    }
}

/// Trains `specification` with `configuration` (which checkpoints into `folder`) until bad data
/// stops it after `steps` steps, and returns the last checkpoint it wrote: a run interrupted
/// partway, to resume.
func checkpointOfARunStopped(afterSteps steps: Int, specification: ModelSpecification,
                             configuration: TrainingConfiguration, training: LabeledSequences,
                             validation: LabeledSequences, folder: TemporaryFolder) throws -> Checkpoint {
    let interrupted = try Trainer(specification: specification, configuration: configuration, backend: TestBackends.cpu)
    interrupted.checkpointDirectory = folder.path
    let stopper = StepCounter()
    interrupted.observer = { event in
        if case .step = event { stopper.increment() }
    }
    #expect(throws: RecurError.self) {
        try interrupted.fit(training: StoppingExamples(inner: training, stopAfterSteps: steps, counter: stopper),
                            validation: validation)
    }
    return try Checkpoint(contentsOf: folder.path + "/last.safetensors")
}

@Suite("Trainer under OpenCL faults", .serialized)
struct TrainerFaultTests {
    /// A kernel launch, an allocation and a lost device in the second epoch: `fit` throws the
    /// decoded OpenCL error, and the checkpoint of epoch 1 stays readable and resumes.
    @Test(arguments: ["enqueue", "allocation", "lost"])
    func aFaultStopsTrainingAndKeepsTheLastCheckpoint(fault: String) throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device)
        let training = try markerExamples(count: 48, vocabulary: 12, steps: 5, seed: 10)
        let folder = try TemporaryFolder()
        let trainer = try Trainer(specification: markerSpecification, configuration: markerConfiguration(epochs: 3),
                                  backend: backend)
        trainer.checkpointDirectory = folder.path
        let injector = backend.faultInjector
        let armed = StepCounter()
        trainer.observer = { event in
            // Arm the fault once epoch 1's checkpoint is on disk, 2 steps into epoch 2.
            guard case let .step(epoch, batch, _, _, _, _) = event, epoch == 2, batch == 2, armed.value == 0 else { return }
            armed.increment()
            switch fault {
            case "enqueue": injector.fail(.enqueue, onCall: 5, with: CL_OUT_OF_RESOURCES)
            case "allocation": injector.fail(.allocation, onCall: 3, with: CL_MEM_OBJECT_ALLOCATION_FAILURE)
            default: injector.loseDevice()
            }
        }
        #expect {
            try trainer.fit(training: training)
        } throws: { error in
            let text = "\(error)"
            return text.contains("CL_OUT_OF_RESOURCES") || text.contains("CL_MEM_OBJECT_ALLOCATION_FAILURE")
                || text.contains("CL_DEVICE_NOT_AVAILABLE")
        }
        injector.reset()
        let checkpoint = try Checkpoint(contentsOf: folder.path + "/last.safetensors")
        #expect(checkpoint.progress.epoch == 1 && checkpoint.progress.batchInEpoch == 0)
        let resumed = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu)
        let history = try resumed.fit(training: training)
        #expect(history.count == 3 && history.allSatisfy { $0.metrics["loss"]!.isFinite })
    }
}
