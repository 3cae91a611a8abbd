// How a `Trainer` trains, as data: stored in every checkpoint so that `--resume` continues with
// the same optimizer, schedule, clipping and batches.

/// Which optimizer to make, with its hyper-parameters (each type's other defaults as PyTorch's).
public enum OptimizerSpecification: Sendable, Equatable, Codable {
    /// `SGD` with optional (Nesterov) momentum and L2 weight decay.
    case sgd(learningRate: Float, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0)
    /// `Adam` (Kingma & Ba), bias-corrected, L2 weight decay; ε nil is PyTorch's 1e-8.
    case adam(learningRate: Float, weightDecay: Float = 0, epsilon: Float? = nil)
    /// `AdamW` (Loshchilov & Hutter), decoupled weight decay; ε nil is PyTorch's 1e-8.
    case adamW(learningRate: Float, weightDecay: Float = 0.01, epsilon: Float? = nil)
    /// `RMSProp` (Hinton), α 0.99.
    case rmsProp(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0)

    /// The base learning rate.
    public var learningRate: Float {
        switch self {
        case .sgd(let rate, _, _, _), .adam(let rate, _, _), .adamW(let rate, _, _), .rmsProp(let rate, _, _): rate
        }
    }

    public func makeOptimizer(backend: any Backend) throws -> any Optimizer {
        switch self {
        case let .sgd(rate, momentum, nesterov, decay):
            try SGD(learningRate: rate, momentum: momentum, weightDecay: decay, nesterov: nesterov, backend: backend)
        case let .adam(rate, decay, epsilon):
            try Adam(learningRate: rate, epsilon: epsilon ?? 1e-8, weightDecay: decay, backend: backend)
        case let .adamW(rate, decay, epsilon):
            try AdamW(learningRate: rate, epsilon: epsilon ?? 1e-8, weightDecay: decay, backend: backend)
        case let .rmsProp(rate, momentum, decay):
            try RMSProp(learningRate: rate, weightDecay: decay, momentum: momentum, backend: backend)
        }
    }
}

/// Everything about a training run but the model and the data.
public struct TrainingConfiguration: Sendable, Equatable, Codable {
    /// Passes over the training examples.
    public var epochs: Int
    /// Examples per optimizer step, over all processes (each of N processes takes batchSize / N).
    public var batchSize: Int
    /// The optimizer and its hyper-parameters.
    public var optimizer: OptimizerSpecification
    /// The learning rate by step; nil keeps the optimizer's.
    public var schedule: LearningRateSchedule?
    /// How gradients are limited before each step (`.none` measures only).
    public var clipping: GradientClipping
    /// What a NaN or infinity in the loss or a gradient does: stop with an error naming the step
    /// and the first bad parameter, or skip that update and go on.
    public var nonFinitePolicy: NonFiniteGradientPolicy
    /// Seeds the shuffles and the dropout masks.
    public var seed: UInt64
    /// Visit the training examples in a new seeded order every epoch (Keras's default).
    public var shuffles: Bool
    /// Stop when the monitored metric has not improved for this many epochs; nil never stops.
    public var earlyStoppingPatience: Int?
    /// The metric early stopping and the best checkpoint watch: `val_loss` by default, `loss`
    /// when there is no validation data; lower is better except for accuracy, precision, recall,
    /// F1 and AUC (`MetricSums.higherIsBetter`).
    public var monitor: String
    /// Also write the last checkpoint every this many steps (not only at the end of each epoch).
    public var checkpointEverySteps: Int?
    /// Loss weight of each class of a classifier (index = class id; a single sigmoid output has
    /// two, for labels 0 and 1): the loss is Σ w_{y_i} ℓ_i / Σ w_{y_i} in training and in
    /// evaluation, while accuracy and the other metrics count every example once. nil weighs all
    /// alike.
    public var classWeights: [Float]?
    /// Reduce the learning rate when the monitored metric stops improving; excludes `schedule`.
    public var plateau: ReduceOnPlateau?
    /// Parameters (by their checkpoint names, `0.weight`, `1.bias_hh_l0`, …) that keep their
    /// initial values: left out of clipping and of every optimizer step, as Keras's
    /// `trainable=False` or PyTorch's `requires_grad_(False)`. nil trains every parameter.
    public var frozenParameters: [String]?
    /// Stateful training (truncated backpropagation through time) for language models and
    /// forecasts: the training windows are laid out as `batchSize` parallel streams
    /// (`StreamBatches`), visited in order (`shuffles` does not apply), and each stream's final
    /// hidden state after batch k is the initial state of batch k + 1, detached: no gradient
    /// crosses a window boundary. The state starts at zero at every epoch and after a skipped
    /// step. Evaluation streams the same way, from zero. The windows must continue each other
    /// (stride = length); bidirectional models and several processes are refused.
    public var stateful: Bool
    /// What Adam's and RMSProp's second moment adds for an embedding row that ids of one batch
    /// share: `.summed` (PyTorch, the default) or `.perOccurrence` (Keras on TensorFlow). See
    /// `EmbeddingSecondMoment`. `.perOccurrence` needs Adam or RMSProp without L2 weight decay
    /// (AdamW's decoupled decay is fine) and clipping by norm or none.
    public var embeddingSecondMoment: EmbeddingSecondMoment

    public init(epochs: Int, batchSize: Int, optimizer: OptimizerSpecification, schedule: LearningRateSchedule? = nil,
                clipping: GradientClipping = .none, nonFinitePolicy: NonFiniteGradientPolicy = .throwError,
                seed: UInt64 = 0, shuffles: Bool = true, earlyStoppingPatience: Int? = nil,
                monitor: String = "val_loss", checkpointEverySteps: Int? = nil, classWeights: [Float]? = nil,
                plateau: ReduceOnPlateau? = nil, frozenParameters: [String]? = nil, stateful: Bool = false,
                embeddingSecondMoment: EmbeddingSecondMoment = .summed) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.schedule = schedule
        self.clipping = clipping
        self.nonFinitePolicy = nonFinitePolicy
        self.seed = seed
        self.shuffles = shuffles
        self.earlyStoppingPatience = earlyStoppingPatience
        self.monitor = monitor
        self.checkpointEverySteps = checkpointEverySteps
        self.classWeights = classWeights
        self.plateau = plateau
        self.frozenParameters = frozenParameters
        self.stateful = stateful
        self.embeddingSecondMoment = embeddingSecondMoment
    }

    private enum CodingKeys: String, CodingKey {
        case epochs, batchSize, optimizer, schedule, clipping, nonFinitePolicy, seed, shuffles, earlyStoppingPatience
        case monitor, checkpointEverySteps, classWeights, plateau, frozenParameters, stateful, embeddingSecondMoment
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try container.decode(Int.self, forKey: .epochs)
        batchSize = try container.decode(Int.self, forKey: .batchSize)
        optimizer = try container.decode(OptimizerSpecification.self, forKey: .optimizer)
        schedule = try container.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule)
        clipping = try container.decode(GradientClipping.self, forKey: .clipping)
        nonFinitePolicy = try container.decode(NonFiniteGradientPolicy.self, forKey: .nonFinitePolicy)
        seed = try container.decode(UInt64.self, forKey: .seed)
        shuffles = try container.decode(Bool.self, forKey: .shuffles)
        earlyStoppingPatience = try container.decodeIfPresent(Int.self, forKey: .earlyStoppingPatience)
        monitor = try container.decode(String.self, forKey: .monitor)
        checkpointEverySteps = try container.decodeIfPresent(Int.self, forKey: .checkpointEverySteps)
        classWeights = try container.decodeIfPresent([Float].self, forKey: .classWeights)
        plateau = try container.decodeIfPresent(ReduceOnPlateau.self, forKey: .plateau)
        frozenParameters = try container.decodeIfPresent([String].self, forKey: .frozenParameters)
        // Absent in checkpoints written before stateful training existed: those were stateless.
        stateful = try container.decodeIfPresent(Bool.self, forKey: .stateful) ?? false
        // Absent in checkpoints written before the choice existed: those summed.
        embeddingSecondMoment = try container.decodeIfPresent(
            EmbeddingSecondMoment.self, forKey: .embeddingSecondMoment) ?? .summed
    }

    /// The most epochs a run may plan: far more than any run needs, and small enough that step
    /// counts (epochs × batches per epoch) stay far from overflow.
    public static let maximumEpochs = 1_000_000

    /// Checks the counts, naming the first bad field.
    public func validate() throws {
        let operation = "TrainingConfiguration"
        for (name, value) in [("epochs", epochs), ("batchSize", batchSize)] where value < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(value)")
        }
        guard epochs <= Self.maximumEpochs else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "epochs must be at most \(Self.maximumEpochs), got \(epochs)")
        }
        if let patience = earlyStoppingPatience, patience < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "patience must be at least 1, got \(patience)")
        }
        if let every = checkpointEverySteps, every < 1 {
            throw RecurError.invalidArgument(
                operation: operation, detail: "checkpointEverySteps must be at least 1, got \(every)")
        }
        if let plateau {
            try plateau.validate()
            if schedule != nil {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "a plateau schedule cannot be combined with another schedule")
            }
        }
        if let weights = classWeights, let bad = weights.firstIndex(where: { !($0 > 0 && $0.isFinite) }) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "class weight \(bad) must be positive and finite, got \(weights[bad])")
        }
        if embeddingSecondMoment == .perOccurrence {
            try checkPerOccurrence(operation)
        }
    }

    /// Throws unless the optimizer keeps a second moment without an L2 term in the gradient and
    /// the clipping scales (rather than clamps) gradients: the combinations in which the
    /// per-occurrence squares stay the squares of what the optimizer steps with.
    private func checkPerOccurrence(_ operation: String) throws {
        let prefix = "the per-occurrence embedding second moment"
        switch optimizer {
        case .sgd:
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(prefix) needs Adam, AdamW or RMSProp; SGD keeps no second moment")
        case .adam(_, let decay, _) where decay != 0, .rmsProp(_, _, let decay) where decay != 0:
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(prefix) cannot be combined with L2 weight decay \(decay) in the gradient (Keras's "
                    + "optimizers have none); use AdamW's decoupled decay or weight decay 0")
        default:
            break
        }
        if case .value = clipping {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(prefix) cannot be combined with value clipping; clip by norm instead")
        }
    }
}
