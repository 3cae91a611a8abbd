// The training loop: fit / evaluate / predict over `TrainingExamples`, with seeded shuffling,
// validation, metrics, gradient clipping, non-finite detection, early stopping, checkpoints that
// resume exactly, and data parallelism through a `TrainingCommunicator`.
//
// One optimizer step, on every process:
//   shard = this process's part of the global batch        (rank r of N takes b = batchSize / N)
//   y = model(x);  L = loss(y, targets);  ∇ = backward     (dropout masks seeded by step;
//                                                          L weighted by class if configured)
//   ∇ = mean over processes of ∇                           (communicator.averageGradients)
//   report = clip(∇)                                       (global norm logged every step)
//   if L and ∇ are finite: θ = optimizer(θ, ∇, lr(step))   else: stop or skip, by policy
// and after each epoch a plateau schedule may lower lr for the next (ReduceOnPlateau).
// Stateful (configuration.stateful): batch k is window k of B parallel streams (StreamBatches),
// and the forward of batch k starts from the final state of batch k − 1 (zeros at k = 0),
// detached: h0_k = stop_gradient(h_T of batch k − 1), truncated backpropagation through time.
//
// Shape legend: T time steps, B batch, K outputs.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The metrics and statistics of one finished epoch.
public struct EpochRecord: Sendable, Equatable, Codable {
    /// 1-based.
    public var epoch: Int
    /// Optimizer steps taken by the end of the epoch (skipped ones included).
    public var step: Int
    /// `loss`, `accuracy`, `precision`, `recall`, `f1`, `perplexity`, `mae` on the training
    /// batches (running, with dropout, as Keras reports them), and the same with `val_` on the
    /// validation data, where a classifier of two classes also has `val_auc`.
    public var metrics: [String: Double]
    /// The learning rate of the epoch's last step.
    public var learningRate: Double
    /// The mean and the largest global gradient norm (before clipping) over the epoch's steps.
    public var meanGradientNorm: Double
    public var maxGradientNorm: Double
    /// Steps whose update was skipped for a non-finite loss or gradient.
    public var skippedSteps: Int
    /// Wall-clock seconds of the epoch (training and validation).
    public var seconds: Double
    /// The backend's live buffers and bytes at the end of the epoch (flat over a healthy run).
    public var liveBuffers: Int?
    public var liveBytes: Int?
}

/// Where a run stands, saved in every checkpoint: enough to continue it exactly.
public struct TrainingProgress: Sendable, Equatable, Codable {
    /// Completed epochs.
    public var epoch = 0
    /// Global batches done in the current epoch.
    public var batchInEpoch = 0
    /// Optimizer steps done (skipped ones included).
    public var step = 0
    /// The current epoch's running sums, and its gradient-norm and time statistics so far.
    public var partialSums = MetricSums()
    public var partialNormSum = 0.0
    public var partialNormMax = 0.0
    public var partialSkipped = 0
    public var partialSeconds = 0.0
    /// Every finished epoch.
    public var history: [EpochRecord] = []
    /// The best value of the monitored metric so far, and its epoch.
    public var best: Double?
    public var bestEpoch: Int?
    public var epochsWithoutImprovement = 0
    public var stoppedEarly = false
    /// AutoClip's record of global norms (`GradientClipper.normHistory`).
    public var normHistory: [Float] = []
    /// The plateau schedule's current rate (nil before its first reduction: the optimizer's rate)
    /// and its epochs without improvement since the last improvement or reduction.
    public var plateauLearningRate: Float?
    public var plateauEpochsWithoutImprovement: Int?

    public init() {}

    /// Checks that this progress can belong to a run of `epochs` epochs: completed epochs within
    /// 0 ... epochs, one history record per completed epoch, numbered 1, 2, … with steps that
    /// never decrease, and a best epoch among them. A checkpoint edited by hand (or damaged)
    /// fails here instead of resuming a run that never existed.
    /// - Throws: `RecurError.malformed` with `source` and what does not fit.
    public func validate(epochs: Int, source: String = "recur.progress") throws {
        func fail(_ detail: String) -> RecurError {
            RecurError.malformed(source: source, detail: detail)
        }
        guard (0...epochs).contains(epoch) else {
            throw fail("records \(epoch) completed epochs of a run of \(epochs)")
        }
        guard history.count == epoch else {
            throw fail("records \(epoch) completed epochs but \(history.count) epoch records")
        }
        guard step >= 0, batchInEpoch >= 0, epochsWithoutImprovement >= 0, partialSkipped >= 0,
              (plateauEpochsWithoutImprovement ?? 0) >= 0 else {
            throw fail("has a negative count (step \(step), batch \(batchInEpoch))")
        }
        if let rate = plateauLearningRate, !(rate >= 0 && rate.isFinite) {
            throw fail("records a plateau learning rate of \(rate)")
        }
        var previousStep = 0
        for (index, record) in history.enumerated() {
            guard record.epoch == index + 1, record.step >= previousStep, record.step <= step else {
                throw fail("epoch record \(index + 1) says epoch \(record.epoch) at step \(record.step) of \(step)")
            }
            previousStep = record.step
        }
        if let bestEpoch, !(1...max(epoch, 1)).contains(bestEpoch) || epoch == 0 {
            throw fail("names epoch \(bestEpoch) as the best of \(epoch)")
        }
    }
}

/// What a `Trainer` reports while it runs.
public enum TrainingEvent: Sendable {
    /// One optimizer step finished.
    case step(epoch: Int, batch: Int, batchesPerEpoch: Int, step: Int, loss: Float, globalNorm: Float)
    /// A step's update was skipped (`NonFiniteGradientPolicy.skipStep`).
    case skippedStep(step: Int, detail: String)
    /// An epoch finished (validation included).
    case epoch(EpochRecord)
    /// A checkpoint was written.
    case checkpoint(path: String)
    /// Early stopping ended the run after this epoch.
    case stoppedEarly(epoch: Int, best: Double, bestEpoch: Int)
    /// The norm of dL/dh_t at every step of every recurrent layer-direction, after the backward
    /// pass of this step (`Trainer.recordsGradientFlow`).
    case gradientFlow(step: Int, flows: [GradientFlow])
}

/// Trains a `ModelSpecification`'s model with a `TrainingConfiguration`.
///
/// ```swift
/// let trainer = try Trainer(specification: spec, configuration: config, backend: backend)
/// trainer.checkpointDirectory = "runs/imdb"
/// try trainer.fit(training: train, validation: validation)
/// let test = try trainer.evaluate(testExamples)   // ["loss": …, "accuracy": …]
/// ```
///
/// With a checkpoint directory, rank 0 writes `last.safetensors` after every epoch (and every
/// `checkpointEverySteps` steps), `best.safetensors` whenever the monitored metric improves, and
/// `log.jsonl`, one JSON object per epoch. `Trainer(resumingFrom:)` continues from such a file:
/// on the CPU backend the resumed run's losses equal those of a run never stopped, because each
/// epoch's order depends only on (seed, epoch) and each step's dropout masks only on (seed, step).
public final class Trainer {
    /// The architecture `model` was built from.
    public let specification: ModelSpecification
    /// How the run trains; a resumed run may have raised the epoch total or changed the checkpoint interval.
    public private(set) var configuration: TrainingConfiguration
    /// The model being trained.
    public let model: Sequential
    /// The optimizer `configuration.optimizer` describes, with its state.
    public let optimizer: any Optimizer
    /// Measures, checks and clips the gradients of every step.
    public let clipper: GradientClipper
    /// The processes training together; `LocalCommunicator` for one.
    public let communicator: any TrainingCommunicator
    /// The device the model runs on.
    public var backend: any Backend { model.backend }
    /// Where the run stands: epoch, step, early stopping; saved in every checkpoint.
    public private(set) var progress: TrainingProgress
    /// Where checkpoints and the log go; nil writes none.
    public var checkpointDirectory: String?
    /// Extra entries for every checkpoint's metadata (a vocabulary, where the data came from).
    /// Keys must not start with `recur.`.
    public var metadata: [String: String] = [:]
    /// Multiplies `mae` (a standardised series' error back into its own units). Windows scaled
    /// each by their own deviation carry their scales in `TrainingBatch.errorScales` instead, and
    /// this stays 1 (`PreparedData.errorScale`).
    public var errorScale: Double = 1
    /// Receives progress as the run goes (rank 0 only, where a communicator has several).
    public var observer: (@Sendable (TrainingEvent) -> Void)?
    /// Reports `TrainingEvent.gradientFlow` on the first step and the last step of every epoch:
    /// how the gradient reaching each step's hidden state shrinks (vanishes) or grows (explodes)
    /// with its distance from the loss, as training goes on. Costs a `[T, B, H]` buffer and one
    /// read per layer-direction on those steps only.
    public var recordsGradientFlow = false

    private let lossSlot: Tensor  // [1]
    /// Stateful training: each recurrent layer's final state after the last batch, the initial
    /// state of the next; nil starts from zeros (an epoch's first batch).
    private var carriedState: [RecurrentState]?

    /// A new run: builds the model and the optimizer, and (with several processes) checks that
    /// every process has the same specification and configuration, then gives all rank 0's
    /// initial weights.
    public init(specification: ModelSpecification, configuration: TrainingConfiguration, backend: any Backend,
                communicator: any TrainingCommunicator = LocalCommunicator()) throws {
        try configuration.validate()
        try Self.checkMonitor(configuration.monitor, specification: specification)
        try Self.checkClassWeights(configuration.classWeights, specification: specification)
        if configuration.stateful {
            try Self.checkStateful(specification: specification, worldSize: communicator.worldSize)
        }
        self.specification = specification
        self.configuration = configuration
        self.model = try specification.makeModel(backend: backend)
        try Self.prepareEmbeddings(of: model, configuration.embeddingSecondMoment)
        try Self.checkFrozenParameters(configuration.frozenParameters, model: model)
        self.optimizer = try configuration.optimizer.makeOptimizer(backend: backend)
        self.clipper = try GradientClipper(configuration.clipping, nonFinitePolicy: configuration.nonFinitePolicy)
        self.communicator = communicator
        self.progress = TrainingProgress()
        self.lossSlot = try backend.zeros([1])
        try synchronizeStart()
    }

    /// Continues the run saved in `checkpoint`: model, optimizer state, AutoClip record and
    /// progress as they were when it was written.
    /// - Parameters:
    ///   - checkpoint: the run to continue (`Checkpoint(contentsOf:)` of its `last.safetensors`).
    ///   - epochs: a new total number of epochs (to train longer than first planned); nil keeps it.
    ///   - checkpointEverySteps: a new interval of mid-epoch checkpoints; nil keeps the recorded one.
    ///   - backend: the device to continue on, which may differ from the one the run started on.
    ///   - communicator: the processes training together (one by default).
    public init(resumingFrom checkpoint: Checkpoint, epochs: Int? = nil, checkpointEverySteps: Int? = nil,
                backend: any Backend, communicator: any TrainingCommunicator = LocalCommunicator()) throws {
        var configuration = checkpoint.configuration
        if let epochs { configuration.epochs = epochs }
        if let checkpointEverySteps { configuration.checkpointEverySteps = checkpointEverySteps }
        try configuration.validate()
        if checkpoint.progress.epoch > configuration.epochs {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "the checkpoint has already completed \(checkpoint.progress.epoch) "
                    + "epochs; a total of \(configuration.epochs) cannot continue it")
        }
        try Self.checkMonitor(configuration.monitor, specification: checkpoint.specification)
        try Self.checkClassWeights(configuration.classWeights, specification: checkpoint.specification)
        if configuration.stateful {
            try Self.checkStateful(specification: checkpoint.specification, worldSize: communicator.worldSize)
        }
        self.specification = checkpoint.specification
        self.configuration = configuration
        self.model = try checkpoint.specification.makeModel(backend: backend)
        try Self.prepareEmbeddings(of: model, configuration.embeddingSecondMoment)
        try Self.checkFrozenParameters(configuration.frozenParameters, model: model)
        try checkpoint.restoreParameters(of: model)
        self.optimizer = try configuration.optimizer.makeOptimizer(backend: backend)
        try optimizer.load(state: checkpoint.optimizerState(backend: backend))
        self.clipper = try GradientClipper(configuration.clipping, nonFinitePolicy: configuration.nonFinitePolicy)
        clipper.normHistory = checkpoint.progress.normHistory
        self.communicator = communicator
        self.progress = checkpoint.progress
        self.metadata = checkpoint.metadata
        self.lossSlot = try backend.zeros([1])
        // A stateful run stopped mid-epoch continues from the state it carried then; at an epoch
        // boundary the state restarts at zero anyway.
        if configuration.stateful && checkpoint.progress.batchInEpoch > 0 {
            guard let state = try checkpoint.carriedState(for: model, batch: configuration.batchSize, backend: backend) else {
                throw RecurError.malformed(
                    source: "checkpoint", detail: "a stateful run stopped mid-epoch, but the checkpoint holds no carried state")
            }
            carriedState = state
        }
        try synchronizeStart()
    }

    /// Sets the second moment every embedding of `model` prepares for the optimizer.
    static func prepareEmbeddings(of model: Sequential, _ rule: EmbeddingSecondMoment) throws {
        for case let embedding as Embedding in model.layers { try embedding.setSecondMoment(rule) }
    }

    /// Averages the embeddings' per-occurrence squares over the processes the way their
    /// gradients were averaged: each process's gradient enters the mean with weight 1/N, so each
    /// occurrence's square with 1/N².
    private func averageSquaredGradients() throws {
        let world = communicator.worldSize
        guard world > 1 else { return }
        let squares = model.parameters.compactMap { parameter in
            parameter.squaredGradient.map { NamedParameter(name: parameter.name, value: parameter.value, gradient: $0) }
        }
        guard !squares.isEmpty else { return }
        try communicator.averageGradients(squares)
        for entry in squares { try backend.scale(entry.gradient, by: 1 / Float(world)) }
    }

    /// Throws unless a model of `specification` can train statefully on `worldSize` processes:
    /// a language model or a forecaster (other tasks read independent padded examples), read in
    /// one direction (a reverse direction would need the state of the future, which the next
    /// window holds), on one process (each would need its own streams).
    static func checkStateful(specification: ModelSpecification, worldSize: Int) throws {
        let operation = "Trainer"
        guard specification.task == .lm || specification.task == .forecast else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "stateful training applies to language models and forecasts, "
                    + "not to \(specification.task) models, whose examples are independent")
        }
        guard !specification.bidirectional else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "stateful training cannot carry the state of a bidirectional model: "
                    + "its reverse direction starts from the end of each window, which the next window holds")
        }
        guard worldSize == 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "stateful training runs on one process, not \(worldSize)")
        }
    }

    /// Throws unless `monitor` is a metric the model's task reports, on the training data or
    /// (`val_`) on the validation data: a misspelt name would otherwise never improve, so no best
    /// checkpoint would be written and early stopping would never fire. `auc` exists on the
    /// validation data only (`MetricSums.evaluationOnlyNames`).
    static func checkMonitor(_ monitor: String, specification: ModelSpecification) throws {
        let task = specification.task
        let names = MetricSums.names(for: task)
        let validationNames = names + MetricSums.evaluationOnlyNames(for: task, outputSize: specification.outputSize)
        let known = monitor.hasPrefix("val_") ? validationNames.contains(String(monitor.dropFirst(4)))
            : names.contains(monitor)
        guard known else {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "cannot monitor '\(monitor)': a \(task) model reports "
                    + (names + validationNames.map { "val_" + $0 }).joined(separator: ", "))
        }
    }

    /// Throws unless `weights` is nil or holds one weight per class of a classifier (two for a
    /// single sigmoid output).
    static func checkFrozenParameters(_ names: [String]?, model: Sequential) throws {
        let known = Set(model.parameters.map(\.name))
        for name in names ?? [] where !known.contains(name) {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "cannot freeze '\(name)': the model's parameters are "
                    + model.parameters.map(\.name).joined(separator: ", "))
        }
    }

    /// The parameters that clipping and the optimizer see: all but the frozen ones.
    private var trainableParameters: [NamedParameter] {
        guard let frozen = configuration.frozenParameters, !frozen.isEmpty else { return model.parameters }
        return model.parameters.filter { !frozen.contains($0.name) }
    }

    static func checkClassWeights(_ weights: [Float]?, specification: ModelSpecification) throws {
        guard let weights else { return }
        guard specification.task == .classify else {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "class weights apply to classify models only, not to \(specification.task)")
        }
        let classes = max(specification.outputSize, 2)
        guard weights.count == classes else {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "\(weights.count) class weights for a model of \(classes) classes")
        }
    }

    /// Each example's class weight, on the backend, and their sum W_b, which the batch's loss
    /// counts with in `MetricSums` (nil for both without class weights).
    private func exampleWeights(_ batch: TrainingBatch) throws -> (tensor: Tensor, total: Double)? {
        guard let classWeights = configuration.classWeights else { return nil }
        let weights = ClassWeights.classes(of: batch.targets).map { classWeights[$0] }
        return (try backend.upload(weights, shape: [weights.count]), weights.reduce(0) { $0 + Double($1) })
    }

    private func synchronizeStart() throws {
        guard communicator.worldSize > 1 else { return }
        try communicator.requireIdentical(try specification.json(), what: "model specification")
        try communicator.requireIdentical(try RecurJSON.string(configuration), what: "training configuration")
        guard configuration.batchSize % communicator.worldSize == 0 else {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "batch size \(configuration.batchSize) is not a multiple of "
                    + "\(communicator.worldSize) processes")
        }
        try communicator.broadcast(model.parameters, from: 0)
    }

    private var isLeader: Bool { communicator.rank == 0 }

    // MARK: Fit

    /// Trains until `configuration.epochs` epochs are done or early stopping ends the run.
    /// With `configuration.stateful` the training examples must be `StreamWindows` that continue
    /// each other; they are laid out as `configuration.batchSize` streams (`StreamBatches`).
    /// - Parameters:
    ///   - examples: the examples to learn from (the same on every process: each takes its shard).
    ///   - validation: evaluated after every epoch (`val_` metrics); nil for none.
    /// - Returns: every epoch's record, earlier runs' included when resumed.
    /// - Throws: `RecurError.nonFinite` naming the step and parameter under `.throwError`; any
    ///   backend error. Checkpoints written before the error stay as they were.
    @discardableResult
    public func fit(training examples: any TrainingExamples, validation: (any TrainingExamples)? = nil) throws
        -> [EpochRecord]
    {
        let operation = "Trainer.fit"
        let world = communicator.worldSize
        let training = configuration.stateful
            ? try Self.streams(examples, count: configuration.batchSize) : examples
        if world > 1 {
            try communicator.requireIdentical(
                "\(training.fingerprint()) \(validation.map { $0.fingerprint() } ?? "none")", what: "training and validation data")
        }
        let plan = try MiniBatchPlan(
            count: training.count, batchSize: configuration.batchSize,
            shuffles: configuration.shuffles && !configuration.stateful,
            seed: configuration.seed, keepsPartialBatch: world == 1)
        guard plan.batchesPerEpoch > 0 else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(training.count) examples make no batch of \(configuration.batchSize)")
        }
        let monitor = validation == nil && configuration.monitor.hasPrefix("val_")
            ? String(configuration.monitor.dropFirst(4)) : configuration.monitor
        if isLeader, let directory = checkpointDirectory, !progress.history.isEmpty {
            // A run killed between writing last.safetensors and log.jsonl left a log one epoch
            // short; the log is rewritten from the progress being resumed, so that it always
            // matches it, even when no epoch is left to train.
            try ReportFile.createDirectory(directory)
            try writeLog(to: directory + "/log.jsonl")
        }
        let clock = ContinuousClock()

        while progress.epoch < configuration.epochs && !progress.stoppedEarly {
            let epochStart = clock.now
            let batches = plan.batches(epoch: progress.epoch)
            if progress.batchInEpoch == 0 { carriedState = nil }
            while progress.batchInEpoch < batches.count {
                let global = batches[progress.batchInEpoch]
                let share = global.count / world
                let shard = global.dropFirst(communicator.rank * share).prefix(share)
                let recordsFlow = recordsGradientFlow
                    && (progress.step == 0 || progress.batchInEpoch == batches.count - 1)
                try trainStep(training.batch(shard), batchesPerEpoch: batches.count, recordsFlow: recordsFlow)
                progress.batchInEpoch += 1
                if let every = configuration.checkpointEverySteps, progress.step % every == 0,
                   progress.batchInEpoch < batches.count {
                    progress.partialSeconds += seconds(since: epochStart, clock)
                    try saveCheckpoint(best: false)
                    progress.partialSeconds -= seconds(since: epochStart, clock)
                }
            }
            var metrics = try reduced(progress.partialSums).values(for: specification.task, scale: errorScale)
            if let validation {
                for (name, value) in try evaluate(validation) { metrics["val_" + name] = value }
            }
            let steps = Double(max(batches.count, 1))
            let record = EpochRecord(
                epoch: progress.epoch + 1, step: progress.step, metrics: metrics,
                learningRate: Double(learningRate(atStep: max(progress.step - 1, 0))),
                meanGradientNorm: progress.partialNormSum / steps, maxGradientNorm: progress.partialNormMax,
                skippedSteps: progress.partialSkipped,
                seconds: progress.partialSeconds + seconds(since: epochStart, clock),
                liveBuffers: backend.memoryStatistics.liveBuffers, liveBytes: backend.memoryStatistics.liveBytes)
            finishEpoch(record, monitor: monitor)
            try saveCheckpoint(best: progress.bestEpoch == record.epoch)
            if isLeader {
                observer?(.epoch(record))
                if progress.stoppedEarly, let best = progress.best, let bestEpoch = progress.bestEpoch {
                    observer?(.stoppedEarly(epoch: record.epoch, best: best, bestEpoch: bestEpoch))
                }
            }
        }
        return progress.history
    }

    private func seconds(since start: ContinuousClock.Instant, _ clock: ContinuousClock) -> Double {
        (clock.now - start).inSeconds
    }

    private func learningRate(atStep step: Int) -> Float {
        if configuration.plateau != nil {
            return progress.plateauLearningRate ?? configuration.optimizer.learningRate
        }
        return configuration.schedule?.learningRate(atStep: step) ?? configuration.optimizer.learningRate
    }

    /// One optimizer step on this process's shard of a global batch.
    private func trainStep(_ batch: TrainingBatch, batchesPerEpoch: Int, recordsFlow: Bool) throws {
        let step = progress.step + 1  // 1-based in messages
        model.seedDropout(Self.dropoutSeed(configuration.seed, step: progress.step, rank: communicator.rank))
        try model.zeroGradients()
        let output = try forward(batch, initialStates: carriedState, training: true)
        // The next batch continues from this one's final state; backward below sends no
        // gradient into it (dL/dh0 is dropped): truncated backpropagation through time.
        if configuration.stateful { carriedState = model.finalStates }
        let targets = try targetTensor(batch)
        let weights = try exampleWeights(batch)
        let gradient = try specification.loss.evaluate(output: output, targets: targets,
                                                       weights: weights?.tensor, loss: lossSlot, at: 0)
        model.recordsGradientFlow = recordsFlow
        try model.backward(gradient)
        if recordsFlow {
            model.recordsGradientFlow = false
            if isLeader { observer?(.gradientFlow(step: step, flows: model.gradientFlow)) }
        }
        try communicator.averageGradients(model.parameters)
        try averageSquaredGradients()
        let report = try clipper.clip(trainableParameters, step: step)
        let loss = try backend.download(lossSlot)[0]
        let nonFiniteLosses = try communicator.sum([loss.isFinite ? 0 : 1])[0]  // over every process

        var skipped = !report.isFinite
        if nonFiniteLosses > 0 {
            switch configuration.nonFinitePolicy {
            case .throwError:
                throw RecurError.nonFinite(
                    operation: "Trainer.fit", detail: "step \(step): the loss is \(loss) on some process")
            case .skipStep:
                skipped = true
            }
        }
        if skipped {
            // A non-finite loss may come from a non-finite state, which would spoil every later
            // window of the epoch: the streams restart from zero.
            carriedState = nil
            progress.partialSkipped += 1
            let detail = report.nonFiniteParameter.map { "the gradient of '\($0)' is not finite" } ?? "the loss is \(loss)"
            if isLeader { observer?(.skippedStep(step: step, detail: detail)) }
        } else {
            try optimizer.step(trainableParameters, learningRate: learningRate(atStep: progress.step))
            progress.partialSums.add(
                loss: loss, outputs: try backend.download(output), targets: batch.targets, task: specification.task,
                lossWeight: weights?.total, errorScales: batch.errorScales)
            progress.partialNormSum += Double(report.globalNorm)
            progress.partialNormMax = max(progress.partialNormMax, Double(report.globalNorm))
        }
        progress.step += 1
        progress.normHistory = clipper.normHistory
        if isLeader {
            observer?(.step(epoch: progress.epoch + 1, batch: progress.batchInEpoch + 1, batchesPerEpoch: batchesPerEpoch,
                            step: progress.step, loss: loss, globalNorm: report.globalNorm))
        }
    }

    /// Each (seed, step, process) gets its own dropout stream, so a resumed run draws the masks
    /// the uninterrupted run drew.
    static func dropoutSeed(_ seed: UInt64, step: Int, rank: Int) -> UInt64 {
        var mixer = SeededRandom(seed: seed ^ 0x6A09_E667_F3BC_C909)
        var value = mixer.next() &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15
        value ^= UInt64(rank) &* 0xBB67_AE85_84CA_A73B
        var final = SeededRandom(seed: value)
        return final.next()
    }

    /// Closes an epoch: records it, and updates the best metric and early stopping.
    private func finishEpoch(_ record: EpochRecord, monitor: String) {
        progress.history.append(record)
        progress.epoch += 1
        progress.batchInEpoch = 0
        progress.partialSums = MetricSums()
        (progress.partialNormSum, progress.partialNormMax, progress.partialSkipped, progress.partialSeconds) = (0, 0, 0, 0)
        guard let value = record.metrics[monitor], value.isFinite else { return }
        let improves = MetricSums.higherIsBetter(monitor)
            ? progress.best.map { value > $0 } ?? true
            : progress.best.map { value < $0 } ?? true
        if let plateau = configuration.plateau {
            // The rate of the next epoch: the same improvement test as the best checkpoint's.
            let (rate, epochs) = plateau.next(
                rate: progress.plateauLearningRate ?? configuration.optimizer.learningRate,
                epochsWithoutImprovement: progress.plateauEpochsWithoutImprovement ?? 0, improved: improves)
            (progress.plateauLearningRate, progress.plateauEpochsWithoutImprovement) = (rate, epochs)
        }
        if improves {
            progress.best = value
            progress.bestEpoch = record.epoch
            progress.epochsWithoutImprovement = 0
        } else {
            progress.epochsWithoutImprovement += 1
            if let patience = configuration.earlyStoppingPatience, progress.epochsWithoutImprovement >= patience {
                progress.stoppedEarly = true
            }
        }
    }

    // MARK: Evaluate and predict

    /// The metrics of the model on `data` (no dropout), by name: `loss` and the task's others,
    /// and `auc` for a classifier of two classes.
    /// With several processes each evaluates every N-th example and the sums are added.
    public func evaluate(_ data: any TrainingExamples, batchSize: Int? = nil) throws -> [String: Double] {
        try evaluation(data, batchSize: batchSize).metrics
    }

    /// What `evaluate` computes, with the sums behind it (the confusion matrix, for per-class
    /// scores).
    public struct Evaluation: Sendable {
        public var metrics: [String: Double]
        public var sums: MetricSums
    }

    /// `evaluate`'s metrics and the summed `MetricSums`.
    /// - Parameters:
    ///   - data: the examples to evaluate.
    ///   - batchSize: examples per batch (streams when stateful); nil for `configuration.batchSize`.
    ///   - stateful: stream the windows with the state carried from batch to batch
    ///     (`StreamBatches` of `batchSize` streams, or as many as there are windows when fewer;
    ///     the state starts at zero); nil does what the run trains with (`configuration.stateful`).
    public func evaluation(_ data: any TrainingExamples, batchSize: Int? = nil, stateful: Bool? = nil) throws
        -> Evaluation
    {
        let size = batchSize ?? configuration.batchSize
        if stateful ?? configuration.stateful {
            try Self.checkStateful(specification: specification, worldSize: communicator.worldSize)
            return try streamedEvaluation(Self.streams(data, count: min(size, data.count)))
        }
        let mine = Array(stride(from: communicator.rank, to: data.count, by: communicator.worldSize))
        let scoresAUC = MetricSums.evaluationOnlyNames(for: specification.task, outputSize: specification.outputSize)
            .contains("auc")
        // AUC ranks every example's logit: (logit, label) at each example's index, zero where
        // another process holds it, so that summing over processes gathers them all.
        var scored = scoresAUC ? [Double](repeating: 0, count: 2 * data.count) : []
        var sums = MetricSums()
        for start in stride(from: 0, to: mine.count, by: size) {
            let indices = mine[start ..< min(start + size, mine.count)]
            let batch = data.batch(indices)
            let output = try forward(batch, training: false)
            let weights = try exampleWeights(batch)
            _ = try specification.loss.evaluate(output: output, targets: try targetTensor(batch),
                                                weights: weights?.tensor, loss: lossSlot, at: 0)
            let outputs = try backend.download(output)
            sums.add(loss: try backend.download(lossSlot)[0], outputs: outputs,
                     targets: batch.targets, task: specification.task, lossWeight: weights?.total,
                     errorScales: batch.errorScales)
            if scoresAUC, case .values(let labels, _) = batch.targets {
                for (offset, index) in indices.enumerated() {
                    scored[2 * index] = Double(outputs[offset])
                    scored[2 * index + 1] = Double(labels[offset])
                }
            }
        }
        let total = try reduced(sums)
        var metrics = total.values(for: specification.task, scale: errorScale)
        if scoresAUC {
            if communicator.worldSize > 1 { scored = try communicator.sum(scored) }
            metrics["auc"] = MetricSums.rocAUC(
                scores: stride(from: 0, to: scored.count, by: 2).map { Float(scored[$0]) },
                positives: stride(from: 1, to: scored.count, by: 2).map { scored[$0] >= 0.5 })
        }
        return Evaluation(metrics: metrics, sums: total)
    }

    /// Zero h (and c) for every recurrent layer, `[L * D, B, H]` with B the batch size: the state
    /// a stateful run starts a stream from.
    private func zeroStates() throws -> [RecurrentState] {
        try model.statefulLayers.map { try $0.zeroState(batchSize: configuration.batchSize) }
    }

    /// The metrics of `streams` read batch by batch in order, each batch starting from the final
    /// state of the one before (zeros for the first), without dropout.
    private func streamedEvaluation(_ streams: StreamBatches) throws -> Evaluation {
        var sums = MetricSums()
        var state: [RecurrentState]?
        for k in 0..<streams.windowsPerStream {
            let batch = streams.batch(window: k)
            let output = try forward(batch, initialStates: state, training: false)
            state = model.finalStates
            _ = try specification.loss.evaluate(output: output, targets: try targetTensor(batch),
                                                weights: nil, loss: lossSlot, at: 0)
            sums.add(loss: try backend.download(lossSlot)[0], outputs: try backend.download(output),
                     targets: batch.targets, task: specification.task, lossWeight: nil, errorScales: batch.errorScales)
        }
        return Evaluation(metrics: sums.values(for: specification.task, scale: errorScale), sums: sums)
    }

    /// `examples` as `count` parallel streams for stateful training or evaluation.
    /// - Throws: `RecurError.invalidArgument` for examples that are not windows of one stream,
    ///   and as `StreamBatches.init`.
    static func streams(_ examples: any TrainingExamples, count: Int) throws -> StreamBatches {
        guard let windows = examples as? any StreamWindows else {
            throw RecurError.invalidArgument(
                operation: "Trainer", detail: "stateful training and evaluation need windows of one stream "
                    + "(LanguageModelWindows, SeriesWindows), not \(type(of: examples))")
        }
        return try StreamBatches(windows, streams: count)
    }

    /// The model's outputs for every example of `data`, in order: logits `[N, K]` for
    /// classifiers, `[N, T, K]` for taggers and language models (example-major), forecasts
    /// `[N, K]`.
    public func predict(_ data: any TrainingExamples, batchSize: Int? = nil) throws -> [Float] {
        let size = batchSize ?? configuration.batchSize
        var result: [Float] = []
        for start in stride(from: 0, to: data.count, by: size) {
            let indices = Array(start ..< min(start + size, data.count))[...]
            let batch = data.batch(indices)
            let output = try backend.download(try forward(batch, training: false))
            if specification.returnsSequences, case .ids(_, let steps, _, _) = batch.input {
                // [T, B, K] → [B, T, K]
                let b = indices.count
                let k = output.count / (steps * b)
                for column in 0..<b {
                    for t in 0..<steps {
                        result.append(contentsOf: output[(t * b + column) * k ..< (t * b + column + 1) * k])
                    }
                }
            } else {
                result.append(contentsOf: output)
            }
        }
        return result
    }

    private func reduced(_ sums: MetricSums) throws -> MetricSums {
        guard communicator.worldSize > 1 else { return sums }
        var sized = sums
        // A process that saw no batch has no confusion matrix yet; every process must send one
        // of K × K counts.
        if specification.task == .classify { sized.reserveClasses(max(specification.outputSize, 2)) }
        return MetricSums(array: try communicator.sum(sized.array))
    }

    private func forward(_ batch: TrainingBatch, initialStates: [RecurrentState]? = nil, training: Bool) throws
        -> Tensor
    {
        switch batch.input {
        case let .ids(ids, steps, lengths, padding):
            return try model.forward(ids: ids, shape: [steps, batch.batchSize], lengths: lengths, padding: padding,
                                     initialStates: initialStates, training: training)
        case let .values(values, steps, features):
            let input = try backend.upload(values, shape: [steps, batch.batchSize, features])
            return try model.forward(input, initialStates: initialStates, training: training)
        }
    }

    private func targetTensor(_ batch: TrainingBatch) throws -> Tensor {
        switch batch.targets {
        case let .values(values, outputs):
            return try backend.upload(values, shape: [values.count / outputs, outputs])
        case let .classes(classes):
            return try backend.upload(classes, shape: [classes.count])
        }
    }

    // MARK: Checkpoints

    /// Writes `last.safetensors` (and `best.safetensors` when `best`) and `log.jsonl`, on rank 0.
    private func saveCheckpoint(best: Bool) throws {
        guard isLeader, let directory = checkpointDirectory else { return }
        try ReportFile.createDirectory(directory)
        let checkpoint = try Checkpoint(
            specification: specification, configuration: configuration, progress: progress, model: model,
            optimizer: optimizer, metadata: metadata,
            carriedState: configuration.stateful && progress.batchInEpoch > 0 ? try carriedState ?? zeroStates() : nil)
        let last = directory + "/last.safetensors"
        try checkpoint.write(to: last)
        observer?(.checkpoint(path: last))
        if best {
            try checkpoint.write(to: directory + "/best.safetensors")
        }
        try writeLog(to: directory + "/log.jsonl")
    }

    /// The epoch records as JSON lines, rewritten whole (atomically) so a resumed run's log holds
    /// each epoch once.
    private func writeLog(to path: String) throws {
        var text = ""
        for record in progress.history {
            text += try RecurJSON.string(record) + "\n"
        }
        try FileBytes.writeAtomically(Array(text.utf8), to: path)
    }
}
