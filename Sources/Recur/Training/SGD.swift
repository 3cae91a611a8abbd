/// Stochastic gradient descent with momentum, as PyTorch's `torch.optim.SGD` (Robbins & Monro
/// 1951; momentum in the form of Sutskever et al. 2013, "On the importance of initialization and
/// momentum in deep learning", with Nesterov momentum as PyTorch defines it).
///
///     g = ∇ + weightDecay · p
///     buffer = g on the first step, then momentum · buffer + (1 − dampening) · g
///     g = nesterov ? g + momentum · buffer : buffer        (when momentum ≠ 0)
///     p = p − learningRate · g
///
/// Defaults as PyTorch: momentum 0, dampening 0, weight decay 0, no Nesterov (PyTorch's default
/// learning rate is 1e-3). State: `momentum_buffer` when momentum ≠ 0, none otherwise. One fused
/// `Backend.sgdStep` per parameter.
public final class SGD: Optimizer {
    public let backend: any Backend
    public var learningRate: Float
    /// μ: how much of the previous update the momentum buffer keeps; 0 for plain SGD.
    public let momentum: Float
    /// Scales the new gradient's share of the momentum buffer by 1 − dampening.
    public let dampening: Float
    /// L2 penalty added to the gradient.
    public let weightDecay: Float
    /// Whether the step looks ahead along the momentum (Nesterov).
    public let nesterov: Bool
    public let slots = OptimizerSlots()

    /// - Throws: `RecurError.invalidArgument` for a negative learning rate, momentum or weight
    ///   decay, or Nesterov without momentum > 0 and dampening 0 (as PyTorch).
    public init(learningRate: Float = 1e-3, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0,
                nesterov: Bool = false, backend: any Backend) throws {
        let operation = "SGD.init"
        try OptimizerCheck.notNegative(operation, ["learningRate": learningRate, "momentum": momentum,
                                                   "weightDecay": weightDecay])
        if nesterov, !(momentum > 0 && dampening == 0) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "Nesterov momentum needs momentum > 0 and dampening 0")
        }
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.backend = backend
    }

    public var slotNames: [String] { momentum != 0 ? ["momentum_buffer"] : [] }

    public func update(_ parameter: NamedParameter, state: [Tensor], step: Int, learningRate: Float) throws {
        try backend.sgdStep(
            parameter: parameter.value, gradient: parameter.gradient, momentumBuffer: state.first,
            hyperparameters: SGDUpdate(learningRate: learningRate, momentum: momentum, dampening: dampening,
                                       weightDecay: weightDecay, nesterov: nesterov, isFirstStep: step == 1))
    }
}

/// Argument checks of the optimizers' initialisers.
enum OptimizerCheck {
    static func notNegative(_ operation: String, _ values: KeyValuePairs<String, Float>) throws {
        for (name, value) in values where !(value >= 0 && value.isFinite) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(name) must be finite and not negative, got \(value)")
        }
    }

    static func fraction(_ operation: String, _ values: KeyValuePairs<String, Float>) throws {
        for (name, value) in values where !(value >= 0 && value < 1) {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must lie in [0, 1), got \(value)")
        }
    }
}
