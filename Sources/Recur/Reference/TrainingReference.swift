#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The plain float64 specification of every loss, optimizer step and constraint of ``Backend``:
/// one readable loop per op, in the same notation as the protocol's documentation, with no
/// vectorisation, tiling or threads. Both backends are tested against it, and `recur verify`
/// (``SelfCheck/trainingOps()``) compares the selected device and the CPU backend with it.
///
/// The tuned CPU loops live in `Backend/CPU`; nothing here is used on a training path.
/// Hyperparameters arrive as the backends' float32 update structs and are widened to float64,
/// so a backend and this reference use exactly the same constants. Operands of different counts
/// are a programmer error here (the backends throw for them) and stop with a precondition.
public enum TrainingReference {
    // MARK: Losses

    /// Sigmoid binary cross-entropy on logits, mean or weighted mean (PyTorch's `BCEWithLogitsLoss`):
    ///
    ///     ℓ_i = max(x_i, 0) − x_i y_i + log(1 + e^−|x_i|)
    ///     L = Σ w_i ℓ_i / Σ w_i,   dL/dx_i = w_i (σ(x_i) − y_i) / Σ w_i
    ///
    /// with every w_i = 1 when `weights` is nil; Σ w = 0 gives L = 0 and a zero gradient.
    /// - Parameters:
    ///   - logits: x, N values.
    ///   - targets: y, N values in [0, 1].
    ///   - weights: w, N values ≥ 0, or nil for the plain mean.
    /// - Returns: L and dL/dx.
    public static func sigmoidCrossEntropy(logits: [Double], targets: [Double], weights: [Double]? = nil)
        -> (loss: Double, gradient: [Double])
    {
        precondition(targets.count == logits.count && (weights?.count ?? logits.count) == logits.count,
                     "sigmoidCrossEntropy: logits, targets and weights differ in count")
        let w = weights ?? [Double](repeating: 1, count: logits.count)
        let total = w.reduce(0, +)
        guard total > 0 else { return (0, [Double](repeating: 0, count: logits.count)) }
        var loss = 0.0
        var gradient: [Double] = []
        for i in logits.indices {
            let (x, y) = (logits[i], targets[i])
            loss += w[i] * (max(x, 0) - x * y + log1p(exp(-abs(x))))
            gradient.append(w[i] * (1 / (1 + exp(-x)) - y) / total)
        }
        return (loss / total, gradient)
    }

    /// Softmax cross-entropy over rows of `classes` logits, mean or weighted mean over the rows whose
    /// target is not `ignoreIndex` (PyTorch's `CrossEntropyLoss(weight:, ignore_index:)`):
    ///
    ///     ℓ_n = log Σ_c e^x_nc − x_n,y_n
    ///     L = Σ w_n ℓ_n / Σ w_n,   dL/dx_nc = w_n (softmax(x_n)_c − [c = y_n]) / Σ w_n
    ///
    /// over the kept rows, with every w_n = 1 when `weights` is nil; ignored rows get a zero gradient
    /// and a zero total gives L = 0. The log-sum-exp subtracts the row's largest logit first.
    /// - Parameters:
    ///   - logits: x, rows × classes values, row-major.
    ///   - classes: C, the length of a row.
    ///   - targets: y_n, one class per row.
    ///   - ignoreIndex: a target value whose rows are left out, or nil.
    ///   - weights: w_n, one value ≥ 0 per row, or nil for the plain mean.
    /// - Returns: L and dL/dx.
    public static func softmaxCrossEntropy(logits: [Double], classes: Int, targets: [Int32], ignoreIndex: Int32?,
                                           weights: [Double]? = nil) -> (loss: Double, gradient: [Double])
    {
        precondition(classes >= 1 && logits.count == targets.count * classes
                     && (weights?.count ?? targets.count) == targets.count,
                     "softmaxCrossEntropy: logits, targets and weights do not describe the same rows")
        var gradient = [Double](repeating: 0, count: logits.count)
        let kept = targets.indices.filter { targets[$0] != ignoreIndex }
        let total = kept.reduce(0.0) { $0 + (weights?[$1] ?? 1) }
        guard total > 0 else { return (0, gradient) }
        var loss = 0.0
        for n in kept {
            let w = weights?[n] ?? 1
            let target = Int(targets[n])
            let row = logits[(n * classes)..<((n + 1) * classes)]
            let largest = row.max()!
            let sum = row.reduce(0) { $0 + exp($1 - largest) }
            loss += w * (log(sum) + largest - row[n * classes + target])
            for c in 0..<classes {
                let probability = exp(row[n * classes + c] - largest) / sum
                gradient[n * classes + c] = w * (probability - (c == target ? 1 : 0)) / total
            }
        }
        return (loss / total, gradient)
    }

    /// Mean squared error (PyTorch's `MSELoss`): L = (1/N) Σ (p_i − y_i)², dL/dp_i = 2 (p_i − y_i) / N.
    /// - Parameters:
    ///   - predictions: p, N values.
    ///   - targets: y, N values.
    /// - Returns: L and dL/dp.
    public static func meanSquaredError(predictions: [Double], targets: [Double])
        -> (loss: Double, gradient: [Double])
    {
        precondition(targets.count == predictions.count,
                     "meanSquaredError: predictions and targets differ in count")
        let n = Double(predictions.count)
        let differences = zip(predictions, targets).map { $0 - $1 }
        return (differences.reduce(0) { $0 + $1 * $1 } / n, differences.map { 2 * $0 / n })
    }

    // MARK: Optimizer steps

    /// One SGD step (``SGDUpdate``, PyTorch's `torch.optim.SGD`), element by element:
    ///
    ///     g = ∇ + weightDecay · p
    ///     buffer = g on the first step, else momentum · buffer + (1 − dampening) · g   (momentum ≠ 0)
    ///     g = nesterov ? g + momentum · buffer : buffer                                  (momentum ≠ 0)
    ///     p = p − learningRate · g
    /// - Parameters:
    ///   - parameter: p, updated in place.
    ///   - gradient: ∇, as many values as p.
    ///   - momentumBuffer: the buffer, updated in place; nil exactly when the momentum is 0 (a nil
    ///     buffer steps without momentum).
    ///   - h: the hyperparameters and whether this is the first step.
    public static func sgdStep(parameter: inout [Double], gradient: [Double], momentumBuffer: inout [Double]?,
                               hyperparameters h: SGDUpdate) {
        let (lr, momentum, dampening) = (Double(h.learningRate), Double(h.momentum), Double(h.dampening))
        guard momentum != 0, var buffer = momentumBuffer else {
            for i in parameter.indices {
                parameter[i] -= lr * (gradient[i] + Double(h.weightDecay) * parameter[i])
            }
            return
        }
        for i in parameter.indices {
            var g = gradient[i] + Double(h.weightDecay) * parameter[i]
            buffer[i] = h.isFirstStep ? g : momentum * buffer[i] + (1 - dampening) * g
            g = h.nesterov ? g + momentum * buffer[i] : buffer[i]
            parameter[i] -= lr * g
        }
        momentumBuffer = buffer
    }

    /// One Adam or AdamW step (``AdamUpdate``, PyTorch's `torch.optim.Adam` and `AdamW`) at step t:
    ///
    ///     p = p · (1 − learningRate · weightDecay)        AdamW
    ///     g = ∇ + weightDecay · p                          Adam
    ///     m = β1 · m + (1 − β1) · g
    ///     v = β2 · v + (1 − β2) · g²          (S in place of g² when given)
    ///     p = p − learningRate / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
    /// - Parameters:
    ///   - parameter: p, updated in place.
    ///   - gradient: ∇, as many values as p.
    ///   - squaredGradient: S, an embedding's per-occurrence squares (Keras on TensorFlow), as
    ///     many values as p; nil (default) squares g.
    ///   - firstMoment: m, updated in place.
    ///   - secondMoment: v, updated in place.
    ///   - h: the hyperparameters and t.
    public static func adamStep(parameter: inout [Double], gradient: [Double], squaredGradient: [Double]? = nil,
                                firstMoment: inout [Double], secondMoment: inout [Double],
                                hyperparameters h: AdamUpdate) {
        let (lr, beta1, beta2) = (Double(h.learningRate), Double(h.beta1), Double(h.beta2))
        let (weightDecay, t) = (Double(h.weightDecay), Double(h.step))
        let firstCorrection = 1 - pow(beta1, t)
        let secondCorrection = (1 - pow(beta2, t)).squareRoot()
        for i in parameter.indices {
            var g = gradient[i]
            if h.decoupledWeightDecay {
                parameter[i] *= 1 - lr * weightDecay
            } else {
                g += weightDecay * parameter[i]
            }
            firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * g
            if let squaredGradient {
                secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * squaredGradient[i]
            } else {
                secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * g * g
            }
            let denominator = secondMoment[i].squareRoot() / secondCorrection + Double(h.epsilon)
            parameter[i] -= lr / firstCorrection * firstMoment[i] / denominator
        }
    }

    /// One RMSProp step (``RMSPropUpdate``, PyTorch's `torch.optim.RMSprop`, not centered):
    ///
    ///     g = ∇ + weightDecay · p
    ///     s = α · s + (1 − α) · g²,   a = √s + ε      (S in place of g² when given)
    ///     momentum ≠ 0:  buffer = momentum · buffer + g / a;  p = p − learningRate · buffer
    ///     momentum = 0:  p = p − learningRate · g / a
    /// - Parameters:
    ///   - parameter: p, updated in place.
    ///   - gradient: ∇, as many values as p.
    ///   - squaredGradient: S, an embedding's per-occurrence squares, as many values as p; nil
    ///     (default) squares g.
    ///   - squareAverage: s, updated in place.
    ///   - momentumBuffer: the buffer, updated in place; nil exactly when the momentum is 0 (a nil
    ///     buffer steps without momentum).
    ///   - h: the hyperparameters.
    public static func rmsPropStep(parameter: inout [Double], gradient: [Double], squaredGradient: [Double]? = nil,
                                   squareAverage: inout [Double], momentumBuffer: inout [Double]?,
                                   hyperparameters h: RMSPropUpdate) {
        let (lr, alpha, momentum) = (Double(h.learningRate), Double(h.alpha), Double(h.momentum))
        var buffer = momentum != 0 ? momentumBuffer : nil
        for i in parameter.indices {
            let g = gradient[i] + Double(h.weightDecay) * parameter[i]
            if let squaredGradient {
                squareAverage[i] = alpha * squareAverage[i] + (1 - alpha) * squaredGradient[i]
            } else {
                squareAverage[i] = alpha * squareAverage[i] + (1 - alpha) * g * g
            }
            let average = squareAverage[i].squareRoot() + Double(h.epsilon)
            if buffer != nil {
                buffer![i] = momentum * buffer![i] + g / average
                parameter[i] -= lr * buffer![i]
            } else {
                parameter[i] -= lr * g / average
            }
        }
        if buffer != nil { momentumBuffer = buffer }
    }

    // MARK: Clipping and constraints

    /// x_i = min(max(x_i, minimum), maximum) (PyTorch's `clamp`).
    /// - Parameters:
    ///   - x: the values.
    ///   - minimum: the lower bound.
    ///   - maximum: the upper bound, at least `minimum`.
    /// - Returns: the clamped values.
    public static func clamp(_ x: [Double], minimum: Double, maximum: Double) -> [Double] {
        x.map { min(max($0, minimum), maximum) }
    }

    /// Keras's `MaxNorm`: each row r of `rowLength` values becomes r · min(‖r‖, maxNorm) / (‖r‖ + 1e-7).
    /// - Parameters:
    ///   - x: the values, a whole number of rows.
    ///   - rowLength: the length of a row.
    ///   - maxNorm: the largest Euclidean norm a row keeps.
    /// - Returns: the rescaled values.
    public static func constrainRowNorms(_ x: [Double], rowLength: Int, maxNorm: Double) -> [Double] {
        precondition(rowLength >= 1 && x.count % rowLength == 0,
                     "constrainRowNorms: \(x.count) values are not whole rows of \(rowLength)")
        var result = x
        for start in stride(from: 0, to: x.count, by: rowLength) {
            let row = start..<(start + rowLength)
            let norm = x[row].reduce(0) { $0 + $1 * $1 }.squareRoot()
            let factor = min(norm, maxNorm) / (norm + 1e-7)
            for i in row { result[i] *= factor }
        }
        return result
    }
}
