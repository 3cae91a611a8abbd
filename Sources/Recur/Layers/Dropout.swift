// Inverted dropout between layers, with seeded masks.
//
// Shape legend: any shape; the mask has the input's shape.

/// Inverted dropout (Srivastava et al. 2014, in the inverted form PyTorch's `nn.Dropout` and
/// Keras's `Dropout` use): in training each element is zeroed with probability p and the others
/// are scaled by 1 / (1 − p), so inference is the identity and needs no rescaling.
///
/// Masks are drawn on the host from a seeded `SeededRandom` stream and uploaded, so a seed gives
/// the same masks on every backend.
public final class Dropout {
    /// p, in [0, 1).
    public let probability: Float
    /// The device the masks are uploaded to and the layer runs on.
    public let backend: any Backend
    private var random: SeededRandom
    /// The mask of the last training forward; nil after an inference forward (or with p = 0).
    private var mask: Tensor?

    /// - Parameters:
    ///   - probability: p, the chance that an element is dropped, in [0, 1).
    ///   - seed: seeds the masks' stream.
    ///   - backend: the device the layer runs on.
    public init(probability: Float, seed: UInt64 = 0, backend: any Backend) throws {
        guard probability >= 0, probability < 1 else {
            throw RecurError.invalidArgument(
                operation: "Dropout.init", detail: "probability must lie in [0, 1), got \(probability)")
        }
        self.probability = probability
        self.backend = backend
        random = SeededRandom(seed: seed)
    }

    /// Restarts the masks' stream, so the next forward passes draw the same masks as after
    /// construction with this seed.
    public func seed(_ seed: UInt64) {
        random = SeededRandom(seed: seed)
    }

    /// Training: x ⊙ mask with a fresh mask (0 with probability p, else 1 / (1 − p)), in a new
    /// tensor. Inference (or p = 0): x itself.
    public func forward(_ input: Tensor, training: Bool) throws -> Tensor {
        try backend.checkOperands("Dropout.forward", [input])
        guard training, probability > 0 else {
            mask = nil
            return input
        }
        let values = RecurrentInitializer.dropoutMask(count: input.count, probability: probability, using: &random)
        let mask = try backend.upload(values, shape: input.shape)  // same shape as x
        let output = try backend.zeros(input.shape)
        try backend.multiply(input, mask, into: output)
        self.mask = mask
        return output
    }

    /// dL/dx = dL/dy ⊙ mask (the same mask as the last forward), in a new tensor; dL/dy itself
    /// after an inference forward.
    public func backward(_ outputGradient: Tensor) throws -> Tensor {
        let operation = "Dropout.backward"
        try backend.checkOperands(operation, [outputGradient])
        guard let mask else { return outputGradient }
        guard outputGradient.shape == mask.shape else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "outputGradient must be \(mask.shape) like the output, got \(outputGradient.shape)")
        }
        let inputGradient = try backend.zeros(mask.shape)
        try backend.multiply(outputGradient, mask, into: inputGradient)
        return inputGradient
    }
}

extension Dropout: StochasticLayer {
    /// `forward(_:training:)` with the context's training flag.
    /// - Parameters:
    ///   - input: any shape.
    ///   - context: its `training` applies the mask.
    /// - Returns: the masked input, or the input itself at inference.
    public func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        try forward(input, training: context.training)
    }

    /// `backward(_:)`.
    /// - Parameter outputGradient: dL/dy, shaped like the output.
    /// - Returns: dL/dx.
    public func backward(from outputGradient: Tensor) throws -> Tensor? {
        try backward(outputGradient)
    }

    /// No parameters.
    public var parameters: [NamedParameter] { [] }

    /// `seed(_:)`.
    /// - Parameter seed: the masks' seed.
    public func seedDropout(_ seed: UInt64) {
        self.seed(seed)
    }
}
