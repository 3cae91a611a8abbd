// Synchronous data-parallel training of a sequence classifier over any TrainingCommunicator:
// every rank holds a replica, takes its shard of each global batch, and after backward the
// gradients are averaged, clipped by their global norm and applied identically on every rank,
// so the replicas stay equal and N ranks with batch b follow one process with batch N x b.
//
// Shard rule (the one the library's training loop follows): the global batch is batch `step` of
// `MiniBatchPlan(batchSize: N * b)` (a partial last batch is dropped when N > 1); rank r takes
// its positions r * b ..< (r + 1) * b.

import Recur

/// The model trained here: Embedding(V, E) → recurrent stack (cell, H, L layers, many-to-one) →
/// Dense(1), trained with sigmoid cross-entropy (the IMDB recipe's shape).
public struct SequenceClassifierSpecification: Sendable, Equatable, CustomStringConvertible {
    public var cell: RecurrentCell
    public var vocabularySize: Int
    public var embeddingSize: Int
    public var hiddenSize: Int
    public var layerCount: Int

    public init(cell: RecurrentCell = .lstm, vocabularySize: Int, embeddingSize: Int, hiddenSize: Int,
                layerCount: Int = 1) {
        self.cell = cell
        self.vocabularySize = vocabularySize
        self.embeddingSize = embeddingSize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
    }

    /// One line that names every field: compared across ranks and stored in checkpoints.
    public var description: String {
        "Embedding(\(vocabularySize), \(embeddingSize)) -> \(cell.rawValue)(\(hiddenSize), layers \(layerCount)) -> Dense(1)"
    }

    /// The model with initial parameters drawn from `seed`.
    public func makeModel(seed: UInt64, backend: any Backend) throws -> Sequential {
        try Sequential([
            .embedding(try Embedding(vocabularySize: vocabularySize, embeddingSize: embeddingSize, seed: seed,
                                     backend: backend)),
            .recurrent(try RecurrentLayer(cell: cell, inputSize: embeddingSize, hiddenSize: hiddenSize,
                                          layerCount: layerCount, returnSequences: false, seed: seed &+ 1,
                                          backend: backend)),
            .dense(try Dense(inputSize: hiddenSize, outputSize: 1, seed: seed &+ 2, backend: backend)),
        ])
    }
}

/// How `DataParallelClassifierTraining` trains.
public struct DataParallelConfiguration: Sendable {
    /// b: the examples each rank takes from every global batch of N * b.
    public var batchSizePerRank: Int
    /// The step count to reach (including the steps a resumed checkpoint already took).
    public var steps: Int
    public var learningRate: Float
    /// The global gradient norm is clipped to this (computed on the averaged gradients); nil: no clipping.
    public var maxGradientNorm: Float?
    /// Seeds the initial weights (on rank 0, then broadcast) and the shuffle.
    public var seed: UInt64
    /// Where rank 0 writes checkpoints; nil: none.
    public var checkpointPath: String?
    /// A checkpoint every this many steps, and one after the last step.
    public var checkpointInterval: Int
    /// Losses are reduced across ranks and logged every this many steps, and after the last.
    public var reportInterval: Int

    public init(batchSizePerRank: Int, steps: Int, learningRate: Float = 1e-3, maxGradientNorm: Float? = nil,
                seed: UInt64 = 0, checkpointPath: String? = nil, checkpointInterval: Int = 100,
                reportInterval: Int = 10) {
        self.batchSizePerRank = batchSizePerRank
        self.steps = steps
        self.learningRate = learningRate
        self.maxGradientNorm = maxGradientNorm
        self.seed = seed
        self.checkpointPath = checkpointPath
        self.checkpointInterval = checkpointInterval
        self.reportInterval = reportInterval
    }
}

/// A sequence classifier trained data-parallel: construction makes the replicas identical (rank
/// 0's weights broadcast, then checked on every rank) and `train` runs the synchronous steps.
public final class DataParallelClassifierTraining {
    public let specification: SequenceClassifierSpecification
    public let configuration: DataParallelConfiguration
    public let communicator: any TrainingCommunicator
    public let model: Sequential
    public let optimizer: Adam
    /// The number of optimizer steps taken, including a resumed checkpoint's.
    public private(set) var step = 0
    /// Called after each step on every rank, with the step count so far.
    public var stepFinished: ((Int) -> Void)?
    private let clipper: GradientClipper?

    /// Builds the replica, checks that every rank has the same model specification and training
    /// configuration, and broadcasts rank 0's initial weights (`MPICommunicator` checks them after).
    /// - Throws: `RecurError.invalidArgument` on every rank when ranks were given different
    ///   specifications (the usual cause: different command lines or builds).
    public init(specification: SequenceClassifierSpecification, configuration: DataParallelConfiguration,
                communicator: any TrainingCommunicator, backend: any Backend) throws {
        guard configuration.batchSizePerRank >= 1, configuration.steps >= 0, configuration.checkpointInterval >= 1,
              configuration.reportInterval >= 1
        else {
            throw RecurError.invalidArgument(
                operation: "DataParallelClassifierTraining",
                detail: "need batch size per rank >= 1, steps >= 0, checkpoint and report intervals >= 1")
        }
        self.specification = specification
        self.configuration = configuration
        self.communicator = communicator
        try communicator.requireIdentical(specification.description, what: "the model specification")
        try communicator.requireIdentical(
            "batch size per rank \(configuration.batchSizePerRank), steps \(configuration.steps), "
                + "learning rate \(configuration.learningRate), max gradient norm "
                + "\(configuration.maxGradientNorm.map { "\($0)" } ?? "none"), seed \(configuration.seed)",
            what: "the training configuration")
        model = try specification.makeModel(seed: configuration.seed, backend: backend)
        optimizer = try Adam(learningRate: configuration.learningRate, backend: backend)
        clipper = try configuration.maxGradientNorm.map { try GradientClipper(.globalNorm(maxNorm: $0)) }
        try communicator.broadcast(model.parameters, from: 0)
    }

    /// Continues from a checkpoint `writeCheckpoint` wrote, with any number of ranks: every rank
    /// reads the file (on a shared file system, or a copy on each host) and the weights are checked
    /// to be equal everywhere.
    /// - Throws: `RecurError.malformed` for a checkpoint of another model or without a step count.
    public func resume(from path: String) throws {
        let file = try SafeTensorsFile(contentsOf: path)
        guard file.metadata[CheckpointKey.specification] == specification.description else {
            throw RecurError.malformed(
                source: path,
                detail: "the checkpoint is of \(file.metadata[CheckpointKey.specification] ?? "an unnamed model"), "
                    + "this run trains \(specification.description)")
        }
        guard let savedStep = file.metadata[CheckpointKey.step].flatMap({ Int($0) }), savedStep >= 0 else {
            throw RecurError.malformed(source: path, detail: "no step count under \(CheckpointKey.step) in its metadata")
        }
        try StateDictionary.load(model.parameters, from: file, prefix: CheckpointKey.modelPrefix,
                                 isParameterEntry: { $0.hasPrefix(CheckpointKey.modelPrefix) })
        var state: [NamedTensor] = []
        for name in file.names where name.hasPrefix(CheckpointKey.optimizerPrefix) {
            let key = String(name.dropFirst(CheckpointKey.optimizerPrefix.count))
            let backend = model.backend
            let tensor = try file.dtype(of: name) == .int32
                ? backend.upload(try file.int32s(name), shape: try file.shape(of: name))
                : backend.upload(try file.floats(name), shape: try file.shape(of: name))
            state.append(NamedTensor(name: key, tensor: tensor))
        }
        try optimizer.load(state: state)
        step = savedStep
        try communicator.requireIdentical("\(step)", what: "the resumed step")
        try requireIdenticalWeights()
    }

    /// Trains until `configuration.steps` steps.
    /// - Parameters:
    ///   - sequences: the padded training sequences (pre-padded), identical on every rank.
    ///   - labels: one 0/1 label per sequence.
    ///   - log: receives progress lines; called on rank 0 only.
    /// - Returns: the mean loss over each global batch of the steps this call took, on every rank.
    /// - Throws: `RecurError.invalidArgument` when the data differ between ranks or hold fewer
    ///   examples than one global batch; any error of a step (a token id beyond the vocabulary).
    public func train(sequences: PaddedSequences, labels: [Float], log: (String) -> Void = { _ in }) throws -> [Double] {
        let operation = "DataParallelClassifierTraining.train"
        let (rank, ranks, b) = (communicator.rank, communicator.worldSize, configuration.batchSizePerRank)
        guard labels.count == sequences.count else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "\(sequences.count) sequences but \(labels.count) labels")
        }
        try communicator.requireIdentical(dataFingerprint(sequences, labels), what: "the training data")
        let plan = try MiniBatchPlan(count: sequences.count, batchSize: ranks * b, seed: configuration.seed,
                                     keepsPartialBatch: ranks == 1)
        guard plan.batchesPerEpoch > 0 else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(sequences.count) examples do not fill one global batch of \(ranks) x \(b)")
        }
        let backend = model.backend
        let lossSlot = try backend.zeros([1])
        var pendingLossSums: [Double] = []  // per step since the last report: local loss sum, local count
        var losses: [Double] = []
        var epoch = -1
        var batches: [ArraySlice<Int>] = []
        while step < configuration.steps {
            if step / plan.batchesPerEpoch != epoch {
                epoch = step / plan.batchesPerEpoch
                batches = plan.batches(epoch: epoch)
            }
            let global = batches[step % plan.batchesPerEpoch]
            let lower = min(global.startIndex + rank * b, global.endIndex)
            let shard = global[lower ..< min(lower + b, global.endIndex)]  // empty only on a partial batch

            try model.zeroGradients()
            if !shard.isEmpty {
                let batch = sequences.batch(shard)
                let logits = try model.forward(ids: batch.ids, shape: [sequences.maxLength, shard.count],
                                               padding: sequences.padding, training: true)  // [b, 1]
                let targets = try backend.upload(shard.map { labels[$0] }, shape: [shard.count, 1])
                let gradient = try Loss.sigmoidCrossEntropy.evaluate(output: logits, targets: targets, loss: lossSlot,
                                                                     at: 0)
                try model.backward(gradient)
                let meanLoss = Double(try backend.download(lossSlot)[0])
                pendingLossSums += [meanLoss * Double(shard.count), Double(shard.count)]
            } else {
                pendingLossSums += [0, 0]
            }
            // Each rank's gradient is of its shard's mean loss; the mean over ranks is the gradient
            // of the global batch's mean loss when every shard has b examples (always when N > 1).
            try communicator.averageGradients(model.parameters)
            if let clipper { _ = try clipper.clip(model.parameters, step: step) }
            try optimizer.step(model.parameters)
            step += 1

            let isLast = step == configuration.steps
            if step % configuration.reportInterval == 0 || isLast {
                let reduced = try communicator.sum(pendingLossSums)
                pendingLossSums = []
                let first = step - reduced.count / 2
                for index in 0 ..< reduced.count / 2 {
                    let mean = reduced[2 * index] / reduced[2 * index + 1]
                    losses.append(mean)
                    if rank == 0 { log("step \(first + index + 1)/\(configuration.steps) loss \(mean)") }
                }
            }
            if step % configuration.checkpointInterval == 0 || isLast { try writeCheckpoint() }
            stepFinished?(step)
        }
        return losses
    }

    /// Checks that the replicas agree, then rank 0 writes the model, the optimizer state and the
    /// step to `configuration.checkpointPath` atomically: a crash mid-write keeps the previous file.
    public func writeCheckpoint() throws {
        guard let path = configuration.checkpointPath else { return }
        try requireIdenticalWeights()
        guard communicator.rank == 0 else { return }
        var writer = SafeTensorsWriter(metadata: [
            CheckpointKey.specification: specification.description,
            CheckpointKey.step: "\(step)",
            CheckpointKey.worldSize: "\(communicator.worldSize)",
            CheckpointKey.batchSizePerRank: "\(configuration.batchSizePerRank)",
        ])
        for parameter in model.parameters {
            try writer.add(CheckpointKey.modelPrefix + parameter.name, floats: try parameter.value.toArray(),
                           shape: parameter.value.shape)
        }
        for entry in try optimizer.state() {
            let name = CheckpointKey.optimizerPrefix + entry.name
            if entry.tensor.dtype == .int32 {
                try writer.add(name, int32s: try model.backend.downloadInt32(entry.tensor), shape: entry.tensor.shape)
            } else {
                try writer.add(name, floats: try entry.tensor.toArray(), shape: entry.tensor.shape)
            }
        }
        try writer.write(to: path)
    }

    /// Throws on every rank when any replica's weights differ from rank 0's (bit for bit).
    private func requireIdenticalWeights() throws {
        var hash = Fingerprint()
        for parameter in model.parameters {
            for value in try parameter.value.toArray() { hash.add(value.bitPattern) }
        }
        try communicator.requireIdentical(hash.hexadecimal, what: "the fingerprint of the model weights")
    }

    private func dataFingerprint(_ sequences: PaddedSequences, _ labels: [Float]) -> String {
        var hash = Fingerprint()
        for id in sequences.ids { hash.add(UInt32(bitPattern: id)) }
        for label in labels { hash.add(label.bitPattern) }
        return "\(sequences.count) sequences of \(sequences.maxLength) steps, fingerprint \(hash.hexadecimal)"
    }
}

/// The names a data-parallel checkpoint uses (safetensors tensor prefixes and metadata keys).
public enum CheckpointKey {
    public static let modelPrefix = "model."
    public static let optimizerPrefix = "optimizer."
    public static let specification = "recur.specification"
    public static let step = "recur.step"
    public static let worldSize = "recur.world_size"
    public static let batchSizePerRank = "recur.batch_size_per_rank"
}
