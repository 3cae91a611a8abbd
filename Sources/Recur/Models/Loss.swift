/// A training loss: one fused backend op that writes the batch's mean loss into a slot of a
/// device tensor and returns the gradient with respect to the model's output.
public enum Loss: Sendable, Equatable, Codable {
    /// Sigmoid binary cross-entropy on logits (`Backend.sigmoidCrossEntropy`), mean over every
    /// element; float targets in [0, 1] shaped like the output. For binary classification with a
    /// `Dense(outputSize: 1)` head.
    case sigmoidCrossEntropy
    /// Softmax cross-entropy over the last axis (`Backend.softmaxCrossEntropy`), mean over the
    /// targets that are not `ignoreIndex`; int32 class targets, one per output row. Language
    /// models and taggers pass 0, the padding id.
    case softmaxCrossEntropy(ignoreIndex: Int32?)
    /// Mean squared error over every element (`Backend.meanSquaredError`).
    case meanSquaredError

    /// Computes the loss of `output` against `targets`.
    /// - Parameters:
    ///   - output: the model's output: logits for the cross-entropies, predictions for MSE.
    ///   - targets: float targets shaped like `output` (sigmoid, MSE), or int32 class ids, one per
    ///     row of `output` (softmax).
    ///   - weights: per-example weights for the cross-entropies (one per element of a sigmoid
    ///     output, one per row of a softmax output): the loss becomes Σ w_i ℓ_i / Σ w_i. Mean
    ///     squared error takes none.
    ///   - loss: receives the mean loss at `index` (a running tensor of per-step losses, read back
    ///     when the caller chooses).
    ///   - index: the element of `loss` to write.
    /// - Returns: dL/d output, a new tensor shaped like `output`.
    public func evaluate(output: Tensor, targets: Tensor, weights: Tensor? = nil, loss: Tensor, at index: Int) throws
        -> Tensor
    {
        let backend = output.backend
        let gradient = try backend.zeros(output.shape)
        switch self {
        case .sigmoidCrossEntropy:
            try backend.sigmoidCrossEntropy(logits: output, targets: targets, weights: weights, gradient: gradient,
                                            loss: loss, at: index)
        case .softmaxCrossEntropy(let ignoreIndex):
            try backend.softmaxCrossEntropy(logits: output, targets: targets, ignoreIndex: ignoreIndex, weights: weights,
                                            gradient: gradient, loss: loss, at: index)
        case .meanSquaredError:
            if weights != nil {
                throw RecurError.invalidArgument(operation: "Loss.evaluate", detail: "mean squared error takes no weights")
            }
            try backend.meanSquaredError(predictions: output, targets: targets, gradient: gradient, loss: loss,
                                         at: index)
        }
        return gradient
    }
}
