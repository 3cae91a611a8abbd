#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The learning rate as a function of the optimizer step s = 0, 1, 2, ... (`Optimizer.stepCount`
/// before the step): constant, step decay or cosine decay, optionally after a linear warm-up.
///
/// ```swift
/// let schedule = try LearningRateSchedule.cosine(learningRate: 1e-3, totalSteps: 10_000, minimum: 1e-5)
///     .withWarmup(steps: 500)
/// try optimizer.step(model.parameters, schedule: schedule)
/// ```
public struct LearningRateSchedule: Sendable, Equatable, Codable {
    private indirect enum Kind: Sendable, Equatable, Codable {
        case constant(learningRate: Float)
        case stepDecay(learningRate: Float, stepSize: Int, factor: Float)
        case cosine(learningRate: Float, totalSteps: Int, minimum: Float)
        case warmup(steps: Int, then: Kind)
    }

    private let kind: Kind

    private init(_ kind: Kind) {
        self.kind = kind
    }

    /// The same rate at every step.
    public static func constant(_ learningRate: Float) -> LearningRateSchedule {
        LearningRateSchedule(.constant(learningRate: learningRate))
    }

    /// Step decay, PyTorch's `StepLR`: lr(s) = learningRate · factor^⌊s / stepSize⌋.
    /// - Parameters:
    ///   - learningRate: the rate until the first decay.
    ///   - stepSize: steps between decays, at least 1.
    ///   - factor: PyTorch's `gamma`, in (0, 1]. Default 0.1, as PyTorch.
    public static func stepDecay(learningRate: Float, stepSize: Int, factor: Float = 0.1) throws
        -> LearningRateSchedule
    {
        guard stepSize >= 1, factor > 0, factor <= 1 else {
            throw RecurError.invalidArgument(
                operation: "LearningRateSchedule.stepDecay",
                detail: "stepSize \(stepSize) must be at least 1 and factor \(factor) must lie in (0, 1]")
        }
        return LearningRateSchedule(.stepDecay(learningRate: learningRate, stepSize: stepSize, factor: factor))
    }

    /// Cosine decay (Loshchilov & Hutter 2017, "SGDR", one cycle without restarts; PyTorch's
    /// `CosineAnnealingLR` in closed form with `T_max` = totalSteps and `eta_min` = minimum):
    /// lr(s) = minimum + (learningRate − minimum) · (1 + cos(π · min(s, S) / S)) / 2 for S =
    /// totalSteps, so it stays at `minimum` after S steps rather than rising again.
    /// - Parameters:
    ///   - learningRate: the rate at step 0.
    ///   - totalSteps: S, at least 1.
    ///   - minimum: the final rate, at most `learningRate`. Default 0.
    public static func cosine(learningRate: Float, totalSteps: Int, minimum: Float = 0) throws
        -> LearningRateSchedule
    {
        guard totalSteps >= 1, minimum >= 0, minimum <= learningRate else {
            throw RecurError.invalidArgument(
                operation: "LearningRateSchedule.cosine",
                detail: "totalSteps \(totalSteps) must be at least 1 and minimum \(minimum) in [0, \(learningRate)]")
        }
        return LearningRateSchedule(.cosine(learningRate: learningRate, totalSteps: totalSteps, minimum: minimum))
    }

    /// This schedule after a linear warm-up of W steps (Goyal et al. 2017, "Accurate, Large
    /// Minibatch SGD"): lr(s) = r · (s + 1) / (W + 1) for s < W, where r is this schedule's first
    /// rate, then this schedule started afresh: lr(s) = self(s − W). The ramp never gives a zero
    /// rate, and reaches r at step W.
    /// - Parameter steps: W, at least 1.
    public func withWarmup(steps: Int) throws -> LearningRateSchedule {
        guard steps >= 1 else {
            throw RecurError.invalidArgument(
                operation: "LearningRateSchedule.withWarmup", detail: "steps must be at least 1, got \(steps)")
        }
        return LearningRateSchedule(.warmup(steps: steps, then: kind))
    }

    /// The learning rate at optimizer step `step` (0 for the first step).
    public func learningRate(atStep step: Int) -> Float {
        Self.rate(kind, at: max(step, 0))
    }

    private static func rate(_ kind: Kind, at step: Int) -> Float {
        switch kind {
        case .constant(let learningRate):
            return learningRate
        case let .stepDecay(learningRate, stepSize, factor):
            return Float(Double(learningRate) * pow(Double(factor), Double(step / stepSize)))
        case let .cosine(learningRate, totalSteps, minimum):
            let progress = Double(min(step, totalSteps)) / Double(totalSteps)
            let (high, low) = (Double(learningRate), Double(minimum))
            return Float(low + (high - low) * (1 + cos(Double.pi * progress)) / 2)
        case let .warmup(steps, then):
            guard step < steps else { return rate(then, at: step - steps) }
            // steps + 1 in Double: W may be Int.max.
            return Float(Double(rate(then, at: 0)) * Double(step + 1) / (Double(steps) + 1))
        }
    }
}
