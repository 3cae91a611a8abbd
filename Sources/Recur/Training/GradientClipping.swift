// Gradient clipping between backward and the optimizer step. Every method first measures each
// gradient's sum of squares into one slot of a device tensor (`Backend.sumsOfSquares(_:into:at:)`)
// and reads those P values back once: the only host read of the step. From them come the global
// norm (reported every step, for logging), the per-parameter norms and the non-finite check.
//
// Shape legend: P parameters.

/// How `GradientClipper` limits gradients.
///
/// Norms are measured on the summed gradient, also for an embedding under `.perOccurrence`.
/// Keras on TensorFlow measures an embedding's sparse slices one by one: its `global_clipnorm`
/// squares each slice before summing (‖g‖² = Σ S, not Σ (Σ_i g_i)²), and `clipnorm` takes the norm
/// of the slice values, so with repeated ids Keras's norms come out larger and its thresholds bind
/// sooner than these. A clip scales an embedding's per-occurrence squares by the factor squared, as
/// Keras scales each slice; `.value` clipping refuses them.
public enum GradientClipping: Sendable, Equatable, Codable {
    /// Measure only (the global norm is still reported and checked for non-finite values).
    case none
    /// Scale all gradients together so their global norm is at most `maxNorm`, exactly as PyTorch's
    /// `torch.nn.utils.clip_grad_norm_` (Pascanu, Mikolov, Bengio 2013): with
    /// total = √(Σ_i ‖g_i‖²), every g_i *= maxNorm / (total + 1e-6) when that factor is < 1.
    case globalNorm(maxNorm: Float)
    /// Scale each gradient on its own: g_i *= maxNorm / (‖g_i‖ + 1e-6) when that factor is < 1.
    case parameterNorm(maxNorm: Float)
    /// Clamp every element to [−limit, limit], as PyTorch's `torch.nn.utils.clip_grad_value_`.
    case value(limit: Float)
    /// AutoClip (Seetharaman, Wichern, Pardo, Le Roux 2020, "AutoClip: Adaptive Gradient Clipping
    /// for Source Separation Networks"): append this step's global norm to the history of global
    /// norms, then clip the global norm, as `globalNorm`, to the `percentile`-th percentile of that
    /// history (linear interpolation between order statistics, NumPy's default). The paper
    /// recommends percentile 10.
    case adaptive(percentile: Double)
}

/// What to do when some gradient holds a NaN or an infinity (its sum of squares is not finite).
public enum NonFiniteGradientPolicy: String, Sendable, CaseIterable, Codable {
    /// Throw `RecurError.nonFinite` naming the step and the first such parameter.
    case throwError
    /// Leave every gradient untouched and report `isFinite == false`, so the caller skips the
    /// optimizer step (zeroing the gradients instead), as mixed-precision loss scalers do.
    case skipStep
}

/// What one `GradientClipper.clip` measured and did.
public struct GradientClipReport: Sendable, Equatable {
    /// The global norm √(Σ_i ‖g_i‖²) before clipping (not finite when `isFinite` is false).
    public var globalNorm: Float
    /// ‖g_i‖ of each parameter before clipping, in the order given. `[P]`
    public var parameterNorms: [Float]
    /// false when some gradient is not finite (only returned under `.skipStep`): nothing was clipped.
    public var isFinite: Bool
    /// The first parameter whose gradient is not finite, if any.
    public var nonFiniteParameter: String?
    /// The factor every gradient was multiplied by (global norm and AutoClip), else 1.
    public var scale: Float
    /// The norm clipped to: `maxNorm`, or AutoClip's percentile of this step; nil for other methods.
    public var threshold: Float?
}

/// Clips the gradients of a model's parameters once per optimizer step; see `GradientClipping`.
///
/// ```swift
/// let clipper = try GradientClipper(.globalNorm(maxNorm: 1))
/// let report = try clipper.clip(model.parameters, step: optimizer.stepCount)
/// if report.isFinite { try optimizer.step(model.parameters) }
/// ```
public final class GradientClipper {
    public let clipping: GradientClipping
    public let nonFinitePolicy: NonFiniteGradientPolicy
    /// AutoClip's history: the global norm of every finite step so far, oldest first. It grows by
    /// one value per step; save and restore it with a checkpoint to resume the same thresholds.
    public var normHistory: [Float] = []

    /// The slack PyTorch adds to the norm before dividing, so a zero gradient is left alone.
    static let normEpsilon: Double = 1e-6

    /// - Parameters:
    ///   - clipping: the method.
    ///   - nonFinitePolicy: default `.throwError`.
    /// - Throws: `RecurError.invalidArgument` for a norm or limit that is not positive and finite,
    ///   or a percentile outside [0, 100].
    public init(_ clipping: GradientClipping, nonFinitePolicy: NonFiniteGradientPolicy = .throwError) throws {
        let operation = "GradientClipper.init"
        switch clipping {
        case .none:
            break
        case .globalNorm(let bound), .parameterNorm(let bound), .value(let bound):
            guard bound > 0, bound.isFinite else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "\(clipping) needs a positive, finite bound")
            }
        case .adaptive(let percentile):
            guard percentile >= 0, percentile <= 100 else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the percentile \(percentile) must lie in [0, 100]")
            }
        }
        self.clipping = clipping
        self.nonFinitePolicy = nonFinitePolicy
    }

    /// Measures the gradients and clips them in place.
    /// - Parameters:
    ///   - parameters: the model's parameters (all on one backend).
    ///   - step: the optimizer step, named in the non-finite error.
    /// - Throws: `RecurError.nonFinite` under `.throwError` when a gradient is not finite.
    @discardableResult
    public func clip(_ parameters: [NamedParameter], step: Int) throws -> GradientClipReport {
        let operation = "GradientClipper.clip"
        guard let backend = parameters.first?.gradient.backend else {
            return GradientClipReport(globalNorm: 0, parameterNorms: [], isFinite: true, scale: 1)
        }
        let slots = try backend.zeros([parameters.count])  // [P]
        try backend.sumsOfSquares(parameters.map(\.gradient), into: slots, at: 0)
        let sumsOfSquares = try backend.download(slots)  // [P], the step's one read
        let parameterNorms = sumsOfSquares.map { Float(Double($0).squareRoot()) }
        let total = sumsOfSquares.reduce(0.0) { $0 + Double($1) }.squareRoot()
        var report = GradientClipReport(
            globalNorm: Float(total), parameterNorms: parameterNorms, isFinite: true, scale: 1)

        if let index = sumsOfSquares.firstIndex(where: { !$0.isFinite }) {
            let name = parameters[index].name
            switch nonFinitePolicy {
            case .throwError:
                throw RecurError.nonFinite(
                    operation: operation,
                    detail: "step \(step): the gradient of '\(name)' is not finite (sum of squares \(sumsOfSquares[index]))")
            case .skipStep:
                report.isFinite = false
                report.nonFiniteParameter = name
                return report
            }
        }

        switch clipping {
        case .none:
            break
        case .globalNorm(let maxNorm):
            report.threshold = maxNorm
            report.scale = try scaleAll(parameters, norm: total, bound: Double(maxNorm), backend: backend)
        case .parameterNorm(let maxNorm):
            for (parameter, norm) in zip(parameters, parameterNorms) {
                let factor = Double(maxNorm) / (Double(norm) + Self.normEpsilon)
                if factor < 1 { try Self.scale(parameter, by: Float(factor)) }
            }
        case .value(let limit):
            if let parameter = parameters.first(where: { $0.squaredGradient != nil }) {
                throw RecurError.invalidArgument(
                    operation: operation,
                    detail: "value clipping cannot clip the per-occurrence squared gradient of '\(parameter.name)' "
                        + "(each occurrence would need its own clamp); clip by norm instead")
            }
            for parameter in parameters {
                try backend.clamp(parameter.gradient, minimum: -limit, maximum: limit)
            }
        case .adaptive(let percentile):
            normHistory.append(Float(total))
            let threshold = Self.percentile(normHistory, percentile)
            report.threshold = threshold
            report.scale = try scaleAll(parameters, norm: total, bound: Double(threshold), backend: backend)
        }
        return report
    }

    /// Multiplies every gradient by bound / (norm + 1e-6) when that is < 1; returns the factor used.
    private func scaleAll(_ parameters: [NamedParameter], norm: Double, bound: Double,
                          backend: any Backend) throws -> Float {
        let factor = bound / (norm + Self.normEpsilon)
        guard factor < 1 else { return 1 }
        try Self.scale(parameters, by: Float(factor), backend: backend)
        return Float(factor)
    }

    /// `scale(_:by:)` on every parameter in one grouped backend `scale`.
    static func scale(_ parameters: [NamedParameter], by factor: Float, backend: any Backend) throws {
        var tensors: [Tensor] = []
        var factors: [Float] = []
        for parameter in parameters {
            tensors.append(parameter.gradient)
            factors.append(factor)
            if let squares = parameter.squaredGradient {
                tensors.append(squares)
                factors.append(factor * factor)
            }
        }
        try backend.scale(tensors, by: factors)
    }

    /// g *= factor, and the per-occurrence squares, where kept, *= factor²: every occurrence's
    /// contribution is scaled alike, as clipping Keras's sparse slices scales each of them.
    static func scale(_ parameter: NamedParameter, by factor: Float) throws {
        let backend = parameter.gradient.backend
        try backend.scale(parameter.gradient, by: factor)
        if let squares = parameter.squaredGradient { try backend.scale(squares, by: factor * factor) }
    }

    /// The p-th percentile of `values` by linear interpolation between the order statistics at
    /// ⌊r⌋ and ⌈r⌉, r = p / 100 · (n − 1) (NumPy's default `linear` method).
    static func percentile(_ values: [Float], _ p: Double) -> Float {
        let sorted = values.sorted()
        guard sorted.count > 1 else { return sorted.first ?? 0 }
        let rank = p / 100 * Double(sorted.count - 1)
        let (low, high) = (Int(rank.rounded(.down)), Int(rank.rounded(.up)))
        let fraction = rank - Double(low)
        return Float(Double(sorted[low]) + (Double(sorted[high]) - Double(sorted[low])) * fraction)
    }
}
