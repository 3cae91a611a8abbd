/// Keras's `MaxNorm` weight constraint (Srivastava et al. 2014, "Dropout", section 5.1): after
/// each optimizer step, every row r of a weight is rescaled to norm at most `maxNorm`:
/// r *= min(‖r‖, maxNorm) / (‖r‖ + 1e-7), as Keras computes it (so rows below the bound shrink by
/// a factor within 1e-7 / ‖r‖ of 1).
///
/// Axis: rows of PyTorch's layout, `[out, in]` for `Dense.weight` and `[G, I]` / `[G, H]` for
/// `weight_ih` / `weight_hh`: each row holds the incoming weights of one unit (or gate unit). That
/// is Keras's default `axis=0` on its transposed kernels `[in, out]`.
public struct MaxNormConstraint: Sendable, Equatable {
    /// The largest norm a row may keep. Keras's default 2.
    public let maxNorm: Float

    /// - Throws: `RecurError.invalidArgument` unless `maxNorm` is positive and finite.
    public init(maxNorm: Float = 2) throws {
        guard maxNorm > 0, maxNorm.isFinite else {
            throw RecurError.invalidArgument(
                operation: "MaxNormConstraint", detail: "maxNorm \(maxNorm) must be positive and finite")
        }
        self.maxNorm = maxNorm
    }

    /// Constrains the rows of a rank-2 weight in place.
    public func apply(to weight: Tensor) throws {
        guard weight.shape.rank == 2 else {
            throw RecurError.shapeMismatch(
                operation: "MaxNormConstraint.apply", detail: "needs a rank-2 weight [rows, columns], got \(weight.shape)")
        }
        try weight.backend.constrainRowNorms(weight, rowLength: weight.shape[1], maxNorm: maxNorm)
    }

    /// Constrains every rank-2 parameter whose name `selects` accepts (for example
    /// `{ $0.hasSuffix("weight") }`); vectors such as biases are skipped.
    public func apply(to parameters: [NamedParameter], where selects: (String) -> Bool) throws {
        for parameter in parameters where parameter.value.shape.rank == 2 && selects(parameter.name) {
            try apply(to: parameter.value)
        }
    }
}
