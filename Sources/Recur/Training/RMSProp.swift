/// RMSProp (Hinton, Srivastava, Swersky 2012, "Neural Networks for Machine Learning", lecture
/// 6e), as PyTorch's `torch.optim.RMSprop` (not centered):
///
///     g = ∇ + weightDecay · p
///     s = α · s + (1 − α) · g²
///     buffer = momentum · buffer + g / (√s + ε);  p = p − learningRate · buffer     (momentum ≠ 0)
///     p = p − learningRate · g / (√s + ε)                                          (momentum = 0)
///
/// with ε added after the square root, and s and the buffer starting at 0. Defaults as PyTorch:
/// learning rate 1e-2, α 0.99, ε 1e-8, weight decay 0, momentum 0. State: `square_avg`, and
/// `momentum_buffer` when momentum ≠ 0. One fused `Backend.rmsPropStep` per parameter.
public final class RMSProp: Optimizer {
    public let backend: any Backend
    public var learningRate: Float
    /// α: decay of the running mean of squared gradients s.
    public let alpha: Float
    /// ε, added after the square root of s.
    public let epsilon: Float
    /// L2 penalty added to the gradient.
    public let weightDecay: Float
    /// Momentum on the scaled gradient; 0 for none.
    public let momentum: Float
    public let slots = OptimizerSlots()

    /// - Throws: `RecurError.invalidArgument` for a negative learning rate, ε, weight decay or
    ///   momentum, or α outside [0, 1).
    public init(learningRate: Float = 1e-2, alpha: Float = 0.99, epsilon: Float = 1e-8, weightDecay: Float = 0,
                momentum: Float = 0, backend: any Backend) throws {
        try OptimizerCheck.notNegative(
            "RMSProp.init", ["learningRate": learningRate, "epsilon": epsilon, "weightDecay": weightDecay,
                             "momentum": momentum])
        try OptimizerCheck.fraction("RMSProp.init", ["alpha": alpha])
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.backend = backend
    }

    public var slotNames: [String] { momentum != 0 ? ["square_avg", "momentum_buffer"] : ["square_avg"] }

    public func update(_ parameter: NamedParameter, state: [Tensor], step: Int, learningRate: Float) throws {
        try backend.rmsPropStep(
            parameter: parameter.value, gradient: parameter.gradient, squaredGradient: parameter.squaredGradient,
            squareAverage: state[0],
            momentumBuffer: state.count > 1 ? state[1] : nil,
            hyperparameters: RMSPropUpdate(learningRate: learningRate, alpha: alpha, epsilon: epsilon,
                                           weightDecay: weightDecay, momentum: momentum))
    }
}
