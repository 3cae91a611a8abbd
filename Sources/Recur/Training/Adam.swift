/// Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1), as
/// PyTorch's `torch.optim.Adam` without AMSGrad, at step t:
///
///     g = ∇ + weightDecay · p              (an L2 penalty; see `AdamW` for decoupled decay)
///     m = β1 · m + (1 − β1) · g
///     v = β2 · v + (1 − β2) · g²
///     p = p − learningRate · m̂ / (√v̂ + ε),   m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)
///
/// with ε added after the square root of the bias-corrected v, as in PyTorch. Defaults as
/// PyTorch: learning rate 1e-3, β1 0.9, β2 0.999, ε 1e-8, weight decay 0. State: `exp_avg` (m)
/// and `exp_avg_sq` (v). One fused `Backend.adamSteps` over all parameters of a step.
///
/// A parameter with a `squaredGradient` (an `Embedding` under `.perOccurrence`) adds it in place
/// of g² to v, as Keras on TensorFlow does for sparse embedding gradients; it needs weight decay 0
/// (or AdamW's decoupled decay).
///
/// Keras adds its ε (default 1e-7) to √v before the bias correction,
/// p = p − learningRate · √(1 − β2^t) / (1 − β1^t) · m / (√v + ε_Keras), which is this update with
/// ε = ε_Keras / √(1 − β2^t): the two agree when ε is far below every √v̂.
public class Adam: Optimizer {
    public let backend: any Backend
    public var learningRate: Float
    /// β1: decay of the first-moment (mean) estimate m.
    public let beta1: Float
    /// β2: decay of the second-moment estimate v.
    public let beta2: Float
    /// ε, added after the square root of v̂.
    public let epsilon: Float
    /// L2 penalty added to the gradient (decoupled from it in `AdamW`).
    public let weightDecay: Float
    /// true for AdamW: the decay shrinks the parameter instead of entering the gradient.
    public let decoupledWeightDecay: Bool
    public let slots = OptimizerSlots()
    public let slotNames = ["exp_avg", "exp_avg_sq"]

    /// - Throws: `RecurError.invalidArgument` for a negative learning rate, ε or weight decay, or
    ///   a β outside [0, 1).
    public convenience init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                            epsilon: Float = 1e-8, weightDecay: Float = 0, backend: any Backend) throws {
        try self.init(operation: "Adam.init", learningRate: learningRate, beta1: beta1, beta2: beta2,
                      epsilon: epsilon, weightDecay: weightDecay, decoupledWeightDecay: false, backend: backend)
    }

    init(operation: String, learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float,
         decoupledWeightDecay: Bool, backend: any Backend) throws {
        try OptimizerCheck.notNegative(
            operation, ["learningRate": learningRate, "epsilon": epsilon, "weightDecay": weightDecay])
        try OptimizerCheck.fraction(operation, ["beta1": beta1, "beta2": beta2])
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.backend = backend
    }

    public func update(_ parameter: NamedParameter, state: [Tensor], step: Int, learningRate: Float) throws {
        try updateAll([ParameterUpdate(parameter: parameter, state: state, step: step)], learningRate: learningRate)
    }

    /// One `Backend.adamSteps` over every parameter: on OpenCL a launch per eight parameters.
    public func updateAll(_ updates: [ParameterUpdate], learningRate: Float) throws {
        try backend.adamSteps(updates.map { update in
            AdamStep(parameter: update.parameter.value, gradient: update.parameter.gradient,
                     squaredGradient: update.parameter.squaredGradient, firstMoment: update.state[0],
                     secondMoment: update.state[1],
                     hyperparameters: AdamUpdate(learningRate: learningRate, beta1: beta1, beta2: beta2,
                                                 epsilon: epsilon, weightDecay: weightDecay,
                                                 decoupledWeightDecay: decoupledWeightDecay, step: update.step))
        })
    }
}

/// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", Algorithm 2), as
/// PyTorch's `torch.optim.AdamW` without AMSGrad: Adam whose weight decay shrinks the parameter
/// directly, scaled by the learning rate, instead of entering the gradient (and so the moments):
///
///     p = p · (1 − learningRate · weightDecay)
///     then Adam's update with g = ∇
///
/// Defaults as PyTorch: learning rate 1e-3, β1 0.9, β2 0.999, ε 1e-8, weight decay 0.01. State:
/// `exp_avg` and `exp_avg_sq`. One fused `Backend.adamSteps` over all parameters of a step.
public final class AdamW: Adam {
    /// - Throws: `RecurError.invalidArgument` for a negative learning rate, ε or weight decay, or
    ///   a β outside [0, 1).
    public convenience init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                            epsilon: Float = 1e-8, weightDecay: Float = 0.01, backend: any Backend) throws {
        try self.init(operation: "AdamW.init", learningRate: learningRate, beta1: beta1, beta2: beta2,
                      epsilon: epsilon, weightDecay: weightDecay, decoupledWeightDecay: true, backend: backend)
    }
}
