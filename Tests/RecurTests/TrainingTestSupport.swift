import Testing
@testable import Recur

// Helpers for the training tests (layers, losses, optimizers, clipping). They take `any Backend`,
// so each check is written once and run on every backend.

/// Overwrites a tensor's values.
func trainingSetValues(_ tensor: Tensor, _ values: [Float]) throws {
    let staged = try tensor.backend.upload(values, shape: tensor.shape)
    try tensor.backend.copy(staged, sourceOffset: 0, into: tensor, destinationOffset: 0, count: tensor.count)
}

/// Σ a ⊙ b in float64.
func trainingDot(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

/// Central differences (f(x + eps e_i) − f(x − eps e_i)) / 2 eps at every coordinate i.
func trainingNumericGradient(_ values: [Float], eps: Float, _ f: ([Float]) throws -> Double) rethrows -> [Double] {
    var gradient: [Double] = []
    var probe = values
    for i in values.indices {
        probe[i] = values[i] + eps
        let plus = try f(probe)
        probe[i] = values[i] - eps
        let minus = try f(probe)
        probe[i] = values[i]
        gradient.append((plus - minus) / (2 * Double(eps)))
    }
    return gradient
}

/// Expects every analytic derivative within `absolute + relative · max(|numeric|, |analytic|)` of
/// the numeric one, and reports the worst coordinate.
func expectGradientsMatch(numeric: [Double], analytic: [Float], absolute: Double = 2e-3, relative: Double = 1e-2,
                          _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard numeric.count == analytic.count else {
        Issue.record("\(what): \(analytic.count) analytic values, \(numeric.count) numeric", sourceLocation: sourceLocation)
        return
    }
    var worst: (index: Int, excess: Double)?
    for i in numeric.indices {
        let a = Double(analytic[i])
        let excess = abs(numeric[i] - a) - (absolute + relative * max(abs(numeric[i]), abs(a)))
        if excess > 0, worst == nil || excess > worst!.excess { worst = (i, excess) }
    }
    if let worst {
        Issue.record(
            "\(what): coordinate \(worst.index) analytic \(analytic[worst.index]), numeric \(numeric[worst.index])",
            sourceLocation: sourceLocation)
    }
}

/// Expects the gradient accumulated in each of `parameters` to match central differences of
/// `loss` at every `step`-th coordinate (a stride keeps an OpenCL run short while every kind of
/// parameter is still covered); each parameter is restored afterwards.
func expectParameterGradientsMatch(_ parameters: [NamedParameter], probingEvery step: Int, _ what: String,
                                   loss: () throws -> Double,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    for parameter in parameters {
        let original = try parameter.value.toArray()
        let probed = Array(stride(from: 0, to: original.count, by: step))
        let numeric = try trainingNumericGradient(probed.map { original[$0] }, eps: 1e-2) { values in
            var full = original
            for (k, index) in probed.enumerated() { full[index] = values[k] }
            try trainingSetValues(parameter.value, full)
            return try loss()
        }
        try trainingSetValues(parameter.value, original)
        let analytic = try parameter.gradient.toArray()
        expectGradientsMatch(numeric: numeric, analytic: probed.map { analytic[$0] }, "\(what) dL/d\(parameter.name)",
                             sourceLocation: sourceLocation)
    }
}
