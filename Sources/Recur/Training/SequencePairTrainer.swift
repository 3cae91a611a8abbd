// The training loop of an encoder–decoder on sequence pairs: epochs of shuffled batches, an
// optimizer with gradient clipping, and after every epoch the validation metrics of
// `SequenceMetricSums` (teacher-forced token accuracy, sequence and edit-distance error rates of
// decoded outputs against every reference of a source). Every random choice derives from the
// seed and the epoch or step, so a run resumed from a checkpoint repeats the same epochs.
//
// Shape legend: S source steps, T target steps, B batch, V target vocabulary.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a ``SequencePairTrainer`` trains, as data (stored in its checkpoints).
public struct SequencePairTrainingConfiguration: Sendable, Equatable, Codable {
    /// Passes over the training examples.
    public var epochs: Int
    /// Examples (source, reference) per optimizer step.
    public var batchSize: Int
    /// The optimizer; default Adam with learning rate 1e-3.
    public var optimizer: OptimizerSpecification
    /// The learning rate of each optimizer step (cosine decay, step decay, warm-up), counted over
    /// the whole run; nil (the default) keeps the optimizer's rate.
    public var schedule: LearningRateSchedule?
    /// Gradient clipping before each step; default the global norm at 1.
    public var clipping: GradientClipping
    /// The probability that a decoder step reads the reference token rather than its own
    /// previous prediction (see `EncoderDecoder.forward`); default 1.
    public var teacherForcing: Double
    /// ε of the training loss's label smoothing (`EncoderDecoder.forward`); default 0. Validation
    /// losses are plain cross-entropies.
    public var labelSmoothing: Float
    /// Seeds the epochs' orders, the dropout masks and the teacher-forcing draws.
    public var seed: UInt64
    /// Beams of the validation decoding; 1 (the default) decodes greedily.
    public var beamWidth: Int
    /// α of the beam search's length normalisation; default 0.
    public var lengthNormalization: Double
    /// Sources or examples per validation batch; default 64.
    public var evaluationBatchSize: Int

    /// - Parameters:
    ///   - epochs: see ``epochs``.
    ///   - batchSize: see ``batchSize``.
    ///   - optimizer: see ``optimizer``.
    ///   - schedule: see ``schedule``.
    ///   - clipping: see ``clipping``.
    ///   - teacherForcing: see ``teacherForcing``.
    ///   - labelSmoothing: see ``labelSmoothing``.
    ///   - seed: see ``seed``.
    ///   - beamWidth: see ``beamWidth``.
    ///   - lengthNormalization: see ``lengthNormalization``.
    ///   - evaluationBatchSize: see ``evaluationBatchSize``.
    public init(epochs: Int, batchSize: Int, optimizer: OptimizerSpecification = .adam(learningRate: 1e-3),
                schedule: LearningRateSchedule? = nil,
                clipping: GradientClipping = .globalNorm(maxNorm: 1), teacherForcing: Double = 1,
                labelSmoothing: Float = 0, seed: UInt64 = 0,
                beamWidth: Int = 1, lengthNormalization: Double = 0, evaluationBatchSize: Int = 64) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.schedule = schedule
        self.clipping = clipping
        self.teacherForcing = teacherForcing
        self.labelSmoothing = labelSmoothing
        self.seed = seed
        self.beamWidth = beamWidth
        self.lengthNormalization = lengthNormalization
        self.evaluationBatchSize = evaluationBatchSize
    }

    /// Throws unless the counts are at least 1 and the probabilities, ε and α in range.
    public func validate() throws {
        let operation = "SequencePairTrainingConfiguration"
        for (name, value) in [("epochs", epochs), ("batchSize", batchSize), ("beamWidth", beamWidth),
                              ("evaluationBatchSize", evaluationBatchSize)] where value < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(value)")
        }
        guard teacherForcing >= 0, teacherForcing <= 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "teacherForcing must lie in [0, 1], got \(teacherForcing)")
        }
        guard labelSmoothing >= 0, labelSmoothing < 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "labelSmoothing must lie in [0, 1), got \(labelSmoothing)")
        }
        guard lengthNormalization >= 0, lengthNormalization.isFinite else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "lengthNormalization must be finite and not negative, got \(lengthNormalization)")
        }
    }
}

/// One epoch of a ``SequencePairTrainer``.
public struct SequencePairEpoch: Sendable, Equatable, Codable {
    /// 1 for the first epoch.
    public var epoch: Int
    /// The mean of the epoch's batch losses (each the mean over its target tokens).
    public var loss: Double
    /// The validation loss, teacher forced, the mean over all validation target tokens.
    public var validationLoss: Double?
    /// The validation metrics: token accuracy (teacher forced), sequence and edit-distance error
    /// rates of the decoded outputs.
    public var validation: SequenceMetricSums?
    /// Wall-clock seconds of the epoch, validation included.
    public var seconds: Double

    /// - Parameters:
    ///   - epoch: see ``epoch``.
    ///   - loss: see ``loss``.
    ///   - validationLoss: see ``validationLoss``.
    ///   - validation: see ``validation``.
    ///   - seconds: see ``seconds``.
    public init(epoch: Int, loss: Double, validationLoss: Double?, validation: SequenceMetricSums?, seconds: Double) {
        self.epoch = epoch
        self.loss = loss
        self.validationLoss = validationLoss
        self.validation = validation
        self.seconds = seconds
    }
}

/// Where a ``SequencePairTrainer`` run stands: what a checkpoint needs to continue it.
public struct SequencePairTrainingProgress: Sendable, Equatable, Codable {
    /// Epochs finished.
    public var completedEpochs: Int
    /// Optimizer steps taken.
    public var step: Int
    /// Every finished epoch, in order.
    public var history: [SequencePairEpoch]

    /// - Parameters:
    ///   - completedEpochs: see ``completedEpochs``.
    ///   - step: see ``step``.
    ///   - history: see ``history``.
    public init(completedEpochs: Int = 0, step: Int = 0, history: [SequencePairEpoch] = []) {
        self.completedEpochs = completedEpochs
        self.step = step
        self.history = history
    }
}

/// Trains an ``EncoderDecoder`` on ``EncodedSequencePairs``.
///
/// ```swift
/// let split = try SequencePairs(pairs: task.pairs(count: 2000)).split(validationFraction: 0.1, seed: 0)
/// let training = try EncodedSequencePairs(fitting: split.training)
/// let validation = EncodedSequencePairs(split.validation, vocabulariesOf: training)
/// let model = try EncoderDecoder(specification: EncoderDecoderSpecification(
///     sourceVocabularySize: training.sourceVocabulary.count, targetVocabularySize: training.targetVocabulary.count,
///     embeddingSize: 16, hiddenSize: 64), backend: backend)
/// let trainer = try SequencePairTrainer(model: model, configuration: .init(epochs: 10, batchSize: 32),
///                                       sourceVocabulary: training.sourceVocabulary,
///                                       targetVocabulary: training.targetVocabulary)
/// try trainer.fit(training: training, validation: validation)
/// ```
public final class SequencePairTrainer {
    /// The model being trained.
    public let model: EncoderDecoder
    /// How it trains.
    public let configuration: SequencePairTrainingConfiguration
    /// The source ids the model reads, saved with every checkpoint.
    public let sourceVocabulary: SequenceVocabulary
    /// The target ids the model writes, saved with every checkpoint.
    public let targetVocabulary: SequenceVocabulary
    /// The optimizer, with its state.
    public let optimizer: any Optimizer
    /// The gradient clipping.
    public let clipper: GradientClipper
    /// Where the run stands.
    public private(set) var progress: SequencePairTrainingProgress
    /// How the pairs' sources were split into tokens, recorded in checkpoints for translating
    /// new text; default characters.
    public var sourceTokenizer = PairTokenizer.character
    /// How the pairs' targets were split into tokens (and outputs are joined); default characters.
    public var targetTokenizer = PairTokenizer.character
    /// When set, ``fit(training:validation:)`` writes a checkpoint here after every epoch.
    public var checkpointPath: String?
    /// Called after every epoch with its record.
    public var onEpoch: ((SequencePairEpoch) -> Void)?

    /// Starts a run.
    /// - Parameters:
    ///   - model: the model to train.
    ///   - configuration: how to train it.
    ///   - sourceVocabulary: the source ids the model reads.
    ///   - targetVocabulary: the target ids the model writes.
    /// - Throws: `RecurError.invalidArgument` for an invalid configuration or vocabularies whose
    ///   sizes differ from the model's.
    public init(model: EncoderDecoder, configuration: SequencePairTrainingConfiguration,
                sourceVocabulary: SequenceVocabulary, targetVocabulary: SequenceVocabulary) throws {
        try configuration.validate()
        let s = model.specification
        guard sourceVocabulary.count == s.sourceVocabularySize, targetVocabulary.count == s.targetVocabularySize else {
            throw RecurError.invalidArgument(
                operation: "SequencePairTrainer.init",
                detail: "vocabularies of \(sourceVocabulary.count) and \(targetVocabulary.count) ids for a model of "
                    + "\(s.sourceVocabularySize) and \(s.targetVocabularySize)")
        }
        self.model = model
        self.configuration = configuration
        self.sourceVocabulary = sourceVocabulary
        self.targetVocabulary = targetVocabulary
        optimizer = try configuration.optimizer.makeOptimizer(backend: model.backend)
        clipper = try GradientClipper(configuration.clipping)
        progress = SequencePairTrainingProgress()
    }

    /// Resumes the run a checkpoint recorded: its model, optimizer state and progress.
    /// - Parameters:
    ///   - checkpoint: the checkpoint.
    ///   - epochs: a new total of epochs (at least those finished); nil keeps the recorded one.
    ///   - backend: the device to continue on.
    public convenience init(resuming checkpoint: SequencePairCheckpoint, epochs: Int? = nil,
                            backend: any Backend) throws {
        var configuration = checkpoint.configuration
        if let epochs {
            guard epochs >= checkpoint.progress.completedEpochs else {
                throw RecurError.invalidArgument(
                    operation: "SequencePairTrainer.init",
                    detail: "\(epochs) epochs, but the checkpoint finished \(checkpoint.progress.completedEpochs)")
            }
            configuration.epochs = epochs
        }
        try self.init(model: try checkpoint.makeModel(backend: backend), configuration: configuration,
                      sourceVocabulary: checkpoint.sourceVocabulary, targetVocabulary: checkpoint.targetVocabulary)
        try optimizer.load(state: try checkpoint.optimizerState(backend: backend))
        progress = checkpoint.progress
        sourceTokenizer = checkpoint.sourceTokenizer
        targetTokenizer = checkpoint.targetTokenizer
    }

    // MARK: Training

    /// Runs the epochs left (up to ``SequencePairTrainingConfiguration/epochs``), writing a
    /// checkpoint after each when ``checkpointPath`` is set.
    /// - Parameters:
    ///   - training: the training pairs, encoded with the trainer's vocabularies.
    ///   - validation: held-out pairs scored after every epoch, or nil.
    /// - Returns: the records of the epochs this call ran.
    @discardableResult
    public func fit(training: EncodedSequencePairs, validation: EncodedSequencePairs?) throws -> [SequencePairEpoch] {
        try checkVocabularies(training, operation: "SequencePairTrainer.fit")
        if let validation { try checkVocabularies(validation, operation: "SequencePairTrainer.fit") }
        var records: [SequencePairEpoch] = []
        while progress.completedEpochs < configuration.epochs {
            let record = try runEpoch(training: training, validation: validation)
            records.append(record)
            onEpoch?(record)
            if let checkpointPath { try checkpoint().write(to: checkpointPath) }
        }
        return records
    }

    /// The order of the training examples in epoch `epoch` (1-based): a shuffle seeded by the
    /// run's seed and the epoch alone.
    /// - Parameters:
    ///   - epoch: the epoch, from 1.
    ///   - count: the number of examples.
    /// - Returns: a permutation of `0 ..< count`.
    public func exampleOrder(epoch: Int, count: Int) -> [Int] {
        var random = SeededRandom(seed: Self.derivedSeed(configuration.seed, 0x5EED_0F_E90C, UInt64(epoch)))
        var order = Array(0..<count)
        random.shuffle(&order)
        return order
    }

    private func runEpoch(training: EncodedSequencePairs, validation: EncodedSequencePairs?) throws -> SequencePairEpoch {
        let clock = ContinuousClock()
        let start = clock.now
        let epoch = progress.completedEpochs + 1
        let order = exampleOrder(epoch: epoch, count: training.count)
        var lossSum = 0.0
        var batches = 0
        for first in stride(from: 0, to: order.count, by: configuration.batchSize) {
            let batch = training.batch(order[first..<min(first + configuration.batchSize, order.count)])
            let step = UInt64(progress.step)
            model.seedDropout(Self.derivedSeed(configuration.seed, 0xD60_90C7, step))
            try model.zeroGradients()
            let (loss, _) = try model.forward(
                batch, teacherForcing: configuration.teacherForcing,
                seed: Self.derivedSeed(configuration.seed, 0x7EAC_4E5, step),
                labelSmoothing: configuration.labelSmoothing, training: true)
            try model.backward()
            let parameters = model.parameters
            try clipper.clip(parameters, step: progress.step)
            if let schedule = configuration.schedule {
                try optimizer.step(parameters, schedule: schedule)
            } else {
                try optimizer.step(parameters)
            }
            progress.step += 1
            lossSum += Double(loss)
            batches += 1
        }
        var record = SequencePairEpoch(epoch: epoch, loss: lossSum / Double(max(batches, 1)), validationLoss: nil,
                                       validation: nil, seconds: 0)
        if let validation {
            let evaluation = try evaluate(validation)
            record.validationLoss = evaluation.loss
            record.validation = evaluation.metrics
        }
        record.seconds = (clock.now - start).inSeconds
        progress.completedEpochs = epoch
        progress.history.append(record)
        return record
    }

    // MARK: Evaluation

    /// Scores the model on pairs: the teacher-forced loss and token accuracy over every
    /// (source, reference) example, and each source's decoded output (greedy, or the beam search
    /// of ``SequencePairTrainingConfiguration/beamWidth``) against all of its references.
    /// - Parameter pairs: the pairs, encoded with the trainer's vocabularies.
    /// - Returns: the mean loss per target token and the metric sums.
    public func evaluate(_ pairs: EncodedSequencePairs) throws -> (loss: Double, metrics: SequenceMetricSums) {
        try checkVocabularies(pairs, operation: "SequencePairTrainer.evaluate")
        var metrics = SequenceMetricSums()
        var weightedLoss = 0.0
        let size = configuration.evaluationBatchSize
        let vocabulary = model.specification.targetVocabularySize
        for first in stride(from: 0, to: pairs.count, by: size) {
            let batch = pairs.batch(first..<min(first + size, pairs.count))
            let (loss, logits) = try model.forward(batch, training: false)
            let targets = try EncoderDecoder.teacherForcedRows(batch.target).targets  // [T - 1, B]
            let before = metrics.countedTokens
            metrics.addTeacherForced(predictions: argmaxRows(try logits.toArray(), classes: vocabulary), targets: targets)
            weightedLoss += Double(loss) * Double(metrics.countedTokens - before)
        }
        for first in stride(from: 0, to: pairs.sources.count, by: size) {
            let groups = first..<min(first + size, pairs.sources.count)
            let source = pairs.sourceBatch(groups: groups)
            let outputs = configuration.beamWidth == 1
                ? try model.greedyDecode(source)
                : try model.beamSearch(source, width: configuration.beamWidth,
                                       lengthNormalization: configuration.lengthNormalization)
            for (group, output) in zip(groups, outputs) {
                metrics.addHypothesis(output, references: pairs.references[group])
            }
        }
        return (weightedLoss / Double(max(metrics.countedTokens, 1)), metrics)
    }

    // MARK: Checkpoints

    /// The run as it stands: the model's parameters, the optimizer's state, the vocabularies,
    /// the configuration and the progress.
    public func checkpoint() throws -> SequencePairCheckpoint {
        try SequencePairCheckpoint(model: model, configuration: configuration, progress: progress,
                                   optimizer: optimizer, sourceVocabulary: sourceVocabulary,
                                   targetVocabulary: targetVocabulary, sourceTokenizer: sourceTokenizer,
                                   targetTokenizer: targetTokenizer)
    }

    private func checkVocabularies(_ pairs: EncodedSequencePairs, operation: String) throws {
        guard pairs.sourceVocabulary == sourceVocabulary, pairs.targetVocabulary == targetVocabulary else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the pairs are encoded with other vocabularies than the model's")
        }
    }

    /// A seed for one purpose (`stream`) and one index (epoch or step), apart from every other.
    static func derivedSeed(_ seed: UInt64, _ stream: UInt64, _ index: UInt64) -> UInt64 {
        var random = SeededRandom(seed: seed ^ (stream &* 0x9E37_79B9_7F4A_7C15))
        var mixed = SeededRandom(seed: random.next() ^ index)
        return mixed.next()
    }
}
