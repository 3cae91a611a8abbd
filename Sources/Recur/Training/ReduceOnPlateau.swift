// A learning rate that falls when the monitored metric stops improving, decided once per epoch
// by the Trainer, with its state in `TrainingProgress` so that a resumed run continues it.

/// Keras's `ReduceLROnPlateau` without cooldown and with `min_delta` 0: after every epoch, when
/// the monitored metric has not improved (strictly, in its direction) for `patience` epochs in a
/// row, lr ← max(lr · factor, minimum) and the count starts again; a rate already at the minimum
/// stays.
public struct ReduceOnPlateau: Sendable, Equatable, Codable {
    /// In (0, 1).
    public var factor: Float
    /// Epochs without improvement before a reduction, at least 1.
    public var patience: Int
    /// The lowest rate, at least 0.
    public var minimum: Float

    public init(factor: Float = 0.1, patience: Int = 2, minimum: Float = 0) {
        self.factor = factor
        self.patience = patience
        self.minimum = minimum
    }

    /// Checks the fields, naming the first bad one.
    public func validate() throws {
        let operation = "ReduceOnPlateau"
        guard factor > 0, factor < 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "factor must lie in (0, 1), got \(factor)")
        }
        guard patience >= 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "patience must be at least 1, got \(patience)")
        }
        guard minimum >= 0, minimum.isFinite else {
            throw RecurError.invalidArgument(operation: operation, detail: "minimum must be at least 0, got \(minimum)")
        }
    }

    /// The rate and count after an epoch: `improved` resets the count; otherwise it grows, and
    /// at `patience` a rate above the minimum is reduced and the count reset.
    public func next(rate: Float, epochsWithoutImprovement: Int, improved: Bool) -> (rate: Float, epochs: Int) {
        if improved { return (rate, 0) }
        let count = epochsWithoutImprovement + 1
        guard count >= patience, rate > minimum else { return (rate, count) }
        return (max(rate * factor, minimum), 0)
    }
}
