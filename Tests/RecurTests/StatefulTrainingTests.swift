import Testing
@testable import Recur

// Stateful training (truncated backpropagation through time): the stream layout, the state a
// model carries from one window into the next, its reset at every epoch, resuming mid-epoch,
// and the models and runs it refuses.

/// A seeded stream of `count` ids in 2 ..< vocabulary (never padding).
private func randomIDs(_ count: Int, vocabulary: Int, seed: UInt64) -> [Int32] {
    var random = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Int32.random(in: 2..<Int32(vocabulary), using: &random) }
}

private func languageModel(_ cell: RecurrentCell = .lstm, layers: Int = 1, bidirectional: Bool = false,
                           dropout: Float = 0) -> ModelSpecification {
    ModelSpecification(task: .lm, vocabularySize: 10, embeddingSize: 5, cell: cell, hiddenSize: 6, layerCount: layers,
                       bidirectional: bidirectional, recurrentDropout: dropout, outputSize: 10, seed: 3)
}

private func statefulConfiguration(epochs: Int, learningRate: Float = 0.01) -> TrainingConfiguration {
    TrainingConfiguration(epochs: epochs, batchSize: 4, optimizer: .adam(learningRate: learningRate), seed: 2,
                          stateful: true)
}

/// Every step's loss of a run, in order.
private final class LossRecorder: @unchecked Sendable {
    private(set) var losses: [Float] = []
    func record(_ event: TrainingEvent) {
        if case .step(_, _, _, _, let loss, _) = event { losses.append(loss) }
    }
}

/// Stopping windows (a stateful run stopped mid-epoch by bad data) are windows of one stream.
extension StoppingExamples: StreamWindows where Inner: StreamWindows {
    var isContiguous: Bool { inner.isContiguous }
    var length: Int { inner.length }
    var stride: Int { inner.stride }
}

/// The message of the `RecurError` that `body` throws ("" when none).
private func refusal(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> String {
    recurError(sourceLocation: sourceLocation, body).map { "\($0)" } ?? ""
}

/// Two processes that never communicate: enough for the checks made before any collective.
private final class TwoProcesses: TrainingCommunicator {
    var rank: Int { 0 }
    var worldSize: Int { 2 }
    func broadcast(_ parameters: [NamedParameter], from root: Int) throws {}
    func averageGradients(_ parameters: [NamedParameter]) throws {}
    func sum(_ values: [Double]) throws -> [Double] { values }
    func requireIdentical(_ value: String, what: String) throws {}
}

@Suite("Stateful training")
struct StatefulTrainingTests {
    @Test func streamsCoverEveryWindowOnceAndContinueEachOther() throws {
        // 3 · 4 · 5 + 1 ids 1, 2, …: N = 20 windows of T = 3, B = 3 streams of M = 6 (2 left out).
        let (steps, streams) = (3, 3)
        let ids = (1...61).map(Int32.init)
        let layout = try StreamBatches(try LanguageModelWindows(ids: ids, length: steps), streams: streams)
        #expect(layout.windowsPerStream == 6 && layout.count == 18)
        var seen: [Int32] = []
        var previous: TrainingBatch?
        for k in 0..<layout.windowsPerStream {
            let batch = layout.batch(window: k)
            guard case .ids(let inputs, _, _, _) = batch.input, case .classes(let targets) = batch.targets,
                  case .ids(let before, _, _, _)? = previous?.input else {
                if case .ids(let inputs, _, _, _) = batch.input { seen += inputs }
                previous = batch
                continue
            }
            for b in 0..<streams {
                // Column b starts with the id after the last one it read in batch k − 1, which
                // was that batch's last target.
                #expect(inputs[b] == before[(steps - 1) * streams + b] + 1, "stream \(b), batch \(k)")
                #expect(targets[b] == inputs[b] + 1)
            }
            seen += inputs
            previous = batch
        }
        // Every id of the first M · B windows exactly once, none after.
        #expect(seen.sorted() == Array(1...Int32(layout.count * steps)))
        // Stream b is a contiguous stretch: it starts at window b · M.
        guard case .ids(let first, _, _, _) = layout.batch(window: 0).input else { return }
        #expect(Array(first.prefix(streams)) == [1, 19, 37])
    }

    @Test func seriesWindowsLayOutTheSameWayAndOverlapIsRefused() throws {
        let values = (0..<40).map(Float.init)
        let windows = SeriesWindows(try ForecastWindows(values: values, length: 4, horizon: 2, stride: 4))
        let layout = try StreamBatches(windows, streams: 2)  // N = 9, M = 4
        #expect(layout.count == 8)
        guard case .values(let inputs, _, _) = layout.batch(window: 1).input,
              case .values(let targets, _) = layout.batch(window: 1).targets else {
            Issue.record("forecast batches hold values")
            return
        }
        // [T, B, 1]: stream 0 reads 4 ..< 8, stream 1 reads 20 ..< 24 (window 5), and each predicts
        // the 2 values after.
        #expect(inputs == [4, 20, 5, 21, 6, 22, 7, 23])
        #expect(targets == [8, 9, 24, 25])

        let overlapping = SeriesWindows(try ForecastWindows(values: values, length: 4, horizon: 1))
        #expect(refusal { _ = try StreamBatches(overlapping, streams: 2) }.contains("stride"))
        #expect(refusal { _ = try StreamBatches(windows, streams: 10) }.contains("too few"))
    }

    /// Two windows run one after the other, the second from the first's final state, give the
    /// outputs of one window twice as long: the carried state is the state of the whole sequence.
    @Test(arguments: [RecurrentCell.lstm, .gru, .rnnTanh])
    func twoCarriedWindowsEqualOneLongWindow(cell: RecurrentCell) throws {
        let backends: [any Backend] = [TestBackends.cpu] + [try TestBackends.openCL()].compactMap { $0 }
        let (steps, batch) = (5, 3)
        let ids = randomIDs(2 * steps * batch, vocabulary: 10, seed: 11)  // [2T, B]
        for backend in backends {
            let model = try languageModel(cell, layers: 2).makeModel(backend: backend)
            let whole = try backend.download(
                try model.forward(ids: ids, shape: [2 * steps, batch], padding: .post, training: false))
            let half = steps * batch
            let first = try backend.download(
                try model.forward(ids: Array(ids[..<half]), shape: [steps, batch], padding: .post, training: false))
            let second = try backend.download(
                try model.forward(ids: Array(ids[half...]), shape: [steps, batch], padding: .post,
                                  initialStates: model.finalStates, training: false))
            assertClose(first + second, whole, relativeTolerance: 1e-4, absoluteTolerance: 1e-5,
                        "\(cell) on \(backend.deviceName): two carried windows vs one")
            // From zeros instead, the second window reads differently.
            let cold = try backend.download(
                try model.forward(ids: Array(ids[half...]), shape: [steps, batch], padding: .post, training: false))
            #expect(zip(cold, second).contains { abs($0 - $1) > 1e-3 })
        }
    }

    /// With a learning rate of 0 every epoch repeats the first step for step, which holds only if
    /// the state restarts at zero at each epoch; training's loss equals streamed evaluation's,
    /// and differs from the loss of the same windows read each from a zero state (the state is
    /// carried).
    @Test func stateRestartsEveryEpochAndTrainingStreamsAsEvaluationDoes() throws {
        let windows = try LanguageModelWindows(ids: randomIDs(201, vocabulary: 10, seed: 4), length: 5)  // 40
        var configuration = statefulConfiguration(epochs: 2)
        configuration.optimizer = .sgd(learningRate: 0)
        for backend in [TestBackends.cpu] + [try TestBackends.openCL()].compactMap({ $0 }) as [any Backend] {
            let trainer = try Trainer(specification: languageModel(), configuration: configuration, backend: backend)
            let recorder = LossRecorder()
            trainer.observer = { recorder.record($0) }
            let history = try trainer.fit(training: windows)
            #expect(recorder.losses.count == 20)  // 10 batches of 4 streams, twice
            #expect(Array(recorder.losses[10...]) == Array(recorder.losses[..<10]), "\(backend.deviceName)")
            let streamed = try trainer.evaluate(windows)["loss"]!
            let trained = history[0].metrics["loss"]!
            #expect(abs(streamed - trained) <= 1e-5 * trained, "\(backend.deviceName): \(streamed) vs \(trained)")
            let independent = try trainer.evaluation(windows, stateful: false).metrics["loss"]!
            #expect(abs(independent - streamed) > 1e-3, "\(backend.deviceName)")
        }

        // Any language model can be evaluated streaming.
        configuration.stateful = false
        let stateless = try Trainer(specification: languageModel(), configuration: configuration,
                                    backend: TestBackends.cpu)
        let stateful = try Trainer(specification: languageModel(), configuration: statefulConfiguration(epochs: 1),
                                   backend: TestBackends.cpu)
        #expect(try stateless.evaluation(windows, stateful: true).metrics == stateful.evaluate(windows))
    }

    @Test func aStatefulRunResumedMidEpochMatchesAnUninterruptedOne() throws {
        let windows = try LanguageModelWindows(ids: randomIDs(161, vocabulary: 10, seed: 6), length: 4)  // 40
        let validation = try LanguageModelWindows(ids: randomIDs(41, vocabulary: 10, seed: 7), length: 4)
        var configuration = statefulConfiguration(epochs: 2)
        configuration.checkpointEverySteps = 3  // 10 batches per epoch: checkpoints fall mid-epoch
        let specification = languageModel(dropout: 0.2)
        let straight = try Trainer(specification: specification, configuration: configuration, backend: TestBackends.cpu)
        let expected = try straight.fit(training: windows, validation: validation)

        let folder = try TemporaryFolder()
        let interrupted = try Trainer(specification: specification, configuration: configuration,
                                      backend: TestBackends.cpu)
        interrupted.checkpointDirectory = folder.path
        let counter = StepCounter()
        interrupted.observer = { if case .step = $0 { counter.increment() } }
        #expect(throws: RecurError.self) {
            try interrupted.fit(training: StoppingExamples(inner: windows, stopAfterSteps: 14, counter: counter),
                                validation: validation)
        }
        let checkpoint = try Checkpoint(contentsOf: folder.path + "/last.safetensors")
        #expect(checkpoint.progress.step == 12 && checkpoint.progress.batchInEpoch == 2)
        #expect(checkpoint.configuration.stateful)
        #expect(checkpoint.carriedState.keys.sorted() == ["0.cell", "0.hidden"])

        let resumed = try Trainer(resumingFrom: checkpoint, backend: TestBackends.cpu)
        let history = try resumed.fit(training: windows, validation: validation)
        #expect(history.map(\.metrics) == expected.map(\.metrics))
        for (got, want) in zip(resumed.model.parameters, straight.model.parameters) {
            #expect(try got.value.toArray() == want.value.toArray(), "\(got.name) differs after resuming")
        }

        // A checkpoint of a stateful run stopped mid-epoch that lost its state is refused.
        var stateless = checkpoint
        stateless.carriedState = [:]
        #expect(refusal { _ = try Trainer(resumingFrom: stateless, backend: TestBackends.cpu) }.contains("carried state"))
    }

    @Test func refusesWhatCannotCarryAState() throws {
        let configuration = statefulConfiguration(epochs: 1)
        let cpu = TestBackends.cpu
        #expect(refusal {
            _ = try Trainer(specification: languageModel(bidirectional: true), configuration: configuration, backend: cpu)
        }.contains("bidirectional"))
        #expect(refusal {
            _ = try Trainer(specification: markerSpecification, configuration: configuration, backend: cpu)
        }.contains("classify"))
        #expect(refusal {
            _ = try Trainer(specification: languageModel(), configuration: configuration, backend: cpu,
                            communicator: TwoProcesses())
        }.contains("one process"))

        let trainer = try Trainer(specification: languageModel(), configuration: configuration, backend: cpu)
        let ids = randomIDs(101, vocabulary: 10, seed: 8)
        #expect(refusal { try trainer.fit(training: try LanguageModelWindows(ids: ids, length: 5, stride: 2)) }
            .contains("stride"))
        let labelled = try markerExamples(count: 8, vocabulary: 10, steps: 4, seed: 1)
        #expect(refusal { try trainer.fit(training: labelled) }.contains("windows of one stream"))
    }

    @Test func configurationsWithoutTheFieldReadAsStateless() throws {
        let recorded = try RecurJSON.string(statefulConfiguration(epochs: 3))
        #expect(try RecurJSON.decode(TrainingConfiguration.self, from: recorded, source: "t", what: "c").stateful)
        let older = recorded.replacing(",\"stateful\":true", with: "").replacing("\"stateful\":true,", with: "")
        #expect(!older.contains("stateful"))
        #expect(try !RecurJSON.decode(TrainingConfiguration.self, from: older, source: "t", what: "c").stateful)
    }
}
