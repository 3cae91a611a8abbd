#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The scalars of one fused optimizer update, and the argument checks shared by every backend's
// losses, optimizer steps and clipping ops. Each update follows PyTorch's single-tensor
// implementation line by line (torch/optim/sgd.py, adam.py, adamw.py, rmsprop.py), so results
// match it within float32 rounding; the kernels and the CPU loops follow these comments.
//
// Shape legend: N elements of a parameter (any shape); every state tensor has N elements too.

/// One step of SGD for one parameter, as PyTorch's `torch.optim.SGD` (Sutskever et al. 2013 for
/// the momentum form; Nesterov as PyTorch defines it):
///
///     g = ∇ + weightDecay · p
///     if momentum ≠ 0:
///         buffer = g                                         on the parameter's first step
///         buffer = momentum · buffer + (1 − dampening) · g   after it
///         g = nesterov ? g + momentum · buffer : buffer
///     p = p − learningRate · g
public struct SGDUpdate: Sendable, Equatable {
    public var learningRate: Float
    /// Default 0 (plain SGD, no state).
    public var momentum: Float
    /// Default 0.
    public var dampening: Float
    /// L2 penalty added to the gradient. Default 0.
    public var weightDecay: Float
    /// Default false. Needs momentum > 0 and dampening 0, as in PyTorch.
    public var nesterov: Bool
    /// Whether this is the parameter's first step, when the momentum buffer starts as g.
    public var isFirstStep: Bool

    public init(learningRate: Float, momentum: Float = 0, dampening: Float = 0, weightDecay: Float = 0,
                nesterov: Bool = false, isFirstStep: Bool) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.isFirstStep = isFirstStep
    }
}

/// One step of Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization") or AdamW
/// (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") for one parameter, as
/// PyTorch's `torch.optim.Adam` and `torch.optim.AdamW` (no AMSGrad), at step t ≥ 1:
///
///     p = p · (1 − learningRate · weightDecay)      AdamW only (decoupled)
///     g = ∇ + weightDecay · p                        Adam only (an L2 penalty in the gradient)
///     m = β1 · m + (1 − β1) · g
///     v = β2 · v + (1 − β2) · g²
///     p = p − stepSize · m / (√v / √(1 − β2^t) + ε),   stepSize = learningRate / (1 − β1^t)
///
/// ε is added after the square root of the bias-corrected v, as in PyTorch (the paper's
/// m̂ / (√v̂ + ε)). The bias corrections are computed on the host in float64.
public struct AdamUpdate: Sendable, Equatable {
    public var learningRate: Float
    /// β1, the decay of the first moment m. PyTorch's default 0.9.
    public var beta1: Float
    /// β2, the decay of the second moment v. PyTorch's default 0.999.
    public var beta2: Float
    /// ε. PyTorch's default 1e-8.
    public var epsilon: Float
    /// Adam: the L2 penalty (PyTorch's default 0). AdamW: the decoupled decay (default 0.01).
    public var weightDecay: Float
    /// true for AdamW: decay the parameter directly instead of adding to the gradient.
    public var decoupledWeightDecay: Bool
    /// t, the parameter's update count including this one: 1 on the first step.
    public var step: Int

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, decoupledWeightDecay: Bool = false, step: Int) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.step = step
    }

    /// learningRate / (1 − β1^t).
    var stepSize: Float {
        Float(Double(learningRate) / (1 - pow(Double(beta1), Double(step))))
    }

    /// √(1 − β2^t).
    var secondMomentCorrection: Float {
        Float((1 - pow(Double(beta2), Double(step))).squareRoot())
    }

    /// The factor p is multiplied by before the update: 1 − learningRate · weightDecay for AdamW, else 1.
    var decayFactor: Float {
        decoupledWeightDecay ? 1 - learningRate * weightDecay : 1
    }

    /// The weight decay added to the gradient: weightDecay for Adam, 0 for AdamW.
    var gradientWeightDecay: Float {
        decoupledWeightDecay ? 0 : weightDecay
    }
}

/// One parameter's part of `Backend.adamSteps`: the operands and hyperparameters of its
/// `adamStep`.
public struct AdamStep {
    public var parameter: Tensor
    public var gradient: Tensor
    public var squaredGradient: Tensor?
    public var firstMoment: Tensor
    public var secondMoment: Tensor
    public var hyperparameters: AdamUpdate

    public init(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor? = nil, firstMoment: Tensor,
                secondMoment: Tensor, hyperparameters: AdamUpdate) {
        self.parameter = parameter
        self.gradient = gradient
        self.squaredGradient = squaredGradient
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
        self.hyperparameters = hyperparameters
    }
}

/// One step of RMSProp (Hinton, Srivastava, Swersky 2012, "Neural Networks for Machine
/// Learning", lecture 6e) for one parameter, as PyTorch's `torch.optim.RMSprop` (not centered):
///
///     g = ∇ + weightDecay · p
///     s = α · s + (1 − α) · g²
///     a = √s + ε
///     if momentum ≠ 0:  buffer = momentum · buffer + g / a;  p = p − learningRate · buffer
///     else:             p = p − learningRate · g / a
///
/// s and the momentum buffer start at 0.
public struct RMSPropUpdate: Sendable, Equatable {
    public var learningRate: Float
    /// α, the decay of the square average. PyTorch's default 0.99.
    public var alpha: Float
    /// ε, added after the square root. PyTorch's default 1e-8.
    public var epsilon: Float
    /// Default 0.
    public var weightDecay: Float
    /// Default 0 (no buffer).
    public var momentum: Float

    public init(learningRate: Float, alpha: Float = 0.99, epsilon: Float = 1e-8, weightDecay: Float = 0,
                momentum: Float = 0) {
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
    }
}

// MARK: Checks shared by the backends

extension Backend {
    /// Validates an elementwise loss (sigmoid cross-entropy, MSE): float operands of one count
    /// owned here, and a loss slot inside `loss`. Returns N.
    func checkElementwiseLoss(_ operation: String, input: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor,
                              at index: Int) throws -> Int {
        try checkOperands(operation, [input, targets, gradient, loss])
        try checkSameCount(operation, [input, targets, gradient])
        try checkRange("\(operation) (loss slot)", loss, offset: index, count: 1)
        return input.count
    }

    /// Validates a loss's per-example `weights`: floats owned here, `count` of them.
    func checkLossWeights(_ operation: String, _ weights: Tensor?, count: Int) throws {
        guard let weights else { return }
        try checkOperands(operation, [weights])
        guard weights.count == count else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "weights \(weights.shape) hold \(weights.count) values for \(count) examples")
        }
    }

    /// Validates a softmax cross-entropy and returns (N rows, C classes).
    func checkSoftmaxCrossEntropy(logits: Tensor, targets: Tensor, gradient: Tensor, loss: Tensor, at index: Int)
        throws -> (rows: Int, classes: Int)
    {
        let operation = "softmaxCrossEntropy"
        try checkOperands(operation, [logits, gradient, loss])
        try checkOperands(operation, [targets], dtype: .int32)
        try checkSameCount(operation, [logits, gradient])
        try checkRange("\(operation) (loss slot)", loss, offset: index, count: 1)
        let classes = logits.shape.dimensions.last!
        let rows = logits.count / classes
        guard targets.count == rows else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "logits \(logits.shape) hold \(rows) rows of \(classes) classes, "
                    + "targets \(targets.shape) hold \(targets.count)")
        }
        return (rows, classes)
    }

    /// Throws for the first target outside `0 ..< classes` that is not `ignoreIndex`, naming it
    /// and its position.
    func checkClassTargets(_ values: [Int32], classes: Int, ignoreIndex: Int32?) throws {
        let position = values.firstIndex { target in
            target != ignoreIndex && (target < 0 || Int(target) >= classes)
        }
        if let position {
            let ignored = ignoreIndex.map { " and is not the ignored index \($0)" } ?? ""
            throw RecurError.invalidArgument(
                operation: "softmaxCrossEntropy",
                detail: "target \(values[position]) at position \(position) lies outside 0..<\(classes)\(ignored)")
        }
    }

    /// Validates one optimizer step: every tensor owned here, float, with the parameter's count,
    /// and a finite learning rate.
    func checkOptimizerStep(_ operation: String, parameter: Tensor, gradient: Tensor, state: [Tensor],
                            learningRate: Float) throws {
        try checkOperands(operation, [parameter, gradient] + state)
        try checkSameCount(operation, [parameter, gradient] + state)
        guard learningRate.isFinite, learningRate >= 0 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "learning rate \(learningRate) must be finite and not negative")
        }
    }

    /// Throws unless a momentum buffer is passed exactly when `momentum` is not 0.
    func checkMomentumBuffer(_ operation: String, _ buffer: Tensor?, momentum: Float) throws {
        switch (buffer, momentum != 0) {
        case (nil, true):
            throw RecurError.invalidArgument(
                operation: operation, detail: "momentum \(momentum) needs a momentum buffer")
        case (.some, false):
            throw RecurError.invalidArgument(
                operation: operation, detail: "a momentum buffer was passed with momentum 0")
        default:
            break
        }
    }

    /// Validates an SGD step.
    func checkSGD(parameter: Tensor, gradient: Tensor, momentumBuffer: Tensor?, hyperparameters h: SGDUpdate) throws {
        let operation = "sgdStep"
        try checkOptimizerStep(operation, parameter: parameter, gradient: gradient,
                               state: momentumBuffer.map { [$0] } ?? [], learningRate: h.learningRate)
        try checkMomentumBuffer(operation, momentumBuffer, momentum: h.momentum)
        if h.nesterov, !(h.momentum > 0 && h.dampening == 0) {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "Nesterov momentum needs momentum > 0 and dampening 0, got \(h.momentum) and \(h.dampening)")
        }
    }

    /// Validates an Adam or AdamW step.
    func checkAdam(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, firstMoment: Tensor,
                   secondMoment: Tensor, hyperparameters h: AdamUpdate) throws {
        let operation = "adamStep"
        try checkOptimizerStep(operation, parameter: parameter, gradient: gradient,
                               state: [firstMoment, secondMoment] + (squaredGradient.map { [$0] } ?? []),
                               learningRate: h.learningRate)
        try checkSquaredGradient(operation, squaredGradient, gradientWeightDecay: h.gradientWeightDecay)
        guard h.step >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "step \(h.step) must be at least 1")
        }
        for (name, beta) in [("beta1", h.beta1), ("beta2", h.beta2)] where !(beta >= 0 && beta < 1) {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) \(beta) must lie in [0, 1)")
        }
    }

    /// Validates every step of an `adamSteps` call before any is taken, so a refused call changes
    /// nothing; a parameter may appear once (in one launch a second update would not see the first).
    func checkAdamSteps(_ steps: [AdamStep]) throws {
        var seen = Set<ObjectIdentifier>()
        for step in steps {
            try checkAdam(parameter: step.parameter, gradient: step.gradient, squaredGradient: step.squaredGradient,
                          firstMoment: step.firstMoment, secondMoment: step.secondMoment,
                          hyperparameters: step.hyperparameters)
            guard seen.insert(ObjectIdentifier(step.parameter)).inserted else {
                throw RecurError.invalidArgument(
                    operation: "adamSteps", detail: "\(step.parameter) is updated twice in one call")
            }
        }
    }

    /// Validates an RMSProp step.
    func checkRMSProp(parameter: Tensor, gradient: Tensor, squaredGradient: Tensor?, squareAverage: Tensor,
                      momentumBuffer: Tensor?, hyperparameters h: RMSPropUpdate) throws {
        let operation = "rmsPropStep"
        try checkOptimizerStep(operation, parameter: parameter, gradient: gradient,
                               state: [squareAverage] + (momentumBuffer.map { [$0] } ?? [])
                                   + (squaredGradient.map { [$0] } ?? []),
                               learningRate: h.learningRate)
        try checkSquaredGradient(operation, squaredGradient, gradientWeightDecay: h.weightDecay)
        try checkMomentumBuffer(operation, momentumBuffer, momentum: h.momentum)
    }

    /// Throws when per-occurrence squares meet an L2 penalty in the gradient: the penalty wd · p
    /// would have to be split over the occurrences, which Keras (whose Adam and RMSprop have no
    /// L2 term) never defines.
    func checkSquaredGradient(_ operation: String, _ squaredGradient: Tensor?, gradientWeightDecay: Float) throws {
        guard squaredGradient != nil, gradientWeightDecay != 0 else { return }
        throw RecurError.invalidArgument(
            operation: operation,
            detail: "per-occurrence squared gradients cannot be combined with L2 weight decay \(gradientWeightDecay) "
                + "in the gradient; use AdamW's decoupled decay or weight decay 0")
    }

    /// Validates a clamp.
    func checkClamp(_ x: Tensor, minimum: Float, maximum: Float) throws {
        try checkOperands("clamp", [x])
        guard minimum <= maximum else {
            throw RecurError.invalidArgument(
                operation: "clamp", detail: "minimum \(minimum) is above maximum \(maximum)")
        }
    }

    /// Validates a row-norm constraint and returns the number of rows.
    func checkRowNorms(_ x: Tensor, rowLength: Int, maxNorm: Float) throws -> Int {
        let operation = "constrainRowNorms"
        try checkOperands(operation, [x])
        guard rowLength >= 1, x.count % rowLength == 0 else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "\(x.shape) does not split into rows of \(rowLength)")
        }
        guard maxNorm > 0, maxNorm.isFinite else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "maxNorm \(maxNorm) must be positive and finite")
        }
        return x.count / rowLength
    }
}
