/// Gradient accumulation over k micro-batches: one optimizer step per k forward/backward passes,
/// for an effective batch k times larger than fits at once.
///
/// Layers accumulate (+=) into their gradients, so k backward passes leave the sum of the k
/// micro-batch gradients. When the k-th is in, `add` scales them by 1/k: each loss is a mean over
/// its micro-batch, so the result is the average of the k micro-batch means, which equals the
/// gradient of the mean over all k micro-batches when they hold equally many (non-ignored)
/// targets. Clip after `add` returns true, then step, then zero the gradients.
///
/// ```swift
/// var accumulation = try GradientAccumulation(microBatchCount: 4)
/// for batch in batches {
///     // forward, loss, backward (gradients add up)
///     if try accumulation.add(model.parameters) {
///         try clipper.clip(model.parameters, step: optimizer.stepCount)
///         try optimizer.step(model.parameters)
///         try model.zeroGradients()
///     }
/// }
/// ```
public struct GradientAccumulation: Sendable, Equatable {
    /// k, at least 1 (1: a step after every batch, no scaling).
    public let microBatchCount: Int
    /// Micro-batches added since the last step, in 0 ..< k.
    public private(set) var pending = 0

    /// - Throws: `RecurError.invalidArgument` when `microBatchCount` is below 1.
    public init(microBatchCount: Int) throws {
        guard microBatchCount >= 1 else {
            throw RecurError.invalidArgument(
                operation: "GradientAccumulation", detail: "microBatchCount must be at least 1, got \(microBatchCount)")
        }
        self.microBatchCount = microBatchCount
    }

    /// Records that one more micro-batch's gradients were accumulated. On the k-th, scales every
    /// gradient by 1/k (and per-occurrence squared gradients by 1/k², each occurrence's share of
    /// the average) and returns true: the optimizer step is due.
    public mutating func add(_ parameters: [NamedParameter]) throws -> Bool {
        pending += 1
        guard pending == microBatchCount else { return false }
        pending = 0
        if microBatchCount > 1 {
            guard let backend = parameters.first?.gradient.backend else { return true }
            try GradientClipper.scale(parameters, by: 1 / Float(microBatchCount), backend: backend)
        }
        return true
    }
}
