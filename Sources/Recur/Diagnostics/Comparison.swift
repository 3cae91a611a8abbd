/// How far computed values are from reference values.
///
/// The relative error is norm-wise: the largest absolute difference divided by the largest
/// reference magnitude, `max|a - r| / max|r|`. Unlike an element-wise ratio it stays meaningful
/// where a reference value is near zero, and for float32 arithmetic it is bounded by a small
/// multiple of the unit roundoff (6e-8) times the depth of the computation.
public struct Comparison: Sendable, CustomStringConvertible {
    public let name: String
    public let count: Int
    public let maxAbsoluteError: Double
    public let relativeError: Double
    /// Where the largest absolute difference is (flat index), for a report.
    public let worstIndex: Int
    public let tolerance: Double

    public var passed: Bool { relativeError <= tolerance }

    /// Compares `actual` with `expected` element by element. A count mismatch or a non-finite
    /// value where the reference is finite counts as an infinite error.
    public init(_ name: String, actual: [Float], expected: [Double], tolerance: Double) {
        self.name = name
        self.tolerance = tolerance
        count = expected.count
        guard actual.count == expected.count else {
            maxAbsoluteError = .infinity
            relativeError = .infinity
            worstIndex = -1
            return
        }
        var worst = 0.0
        var worstAt = 0
        var scale = 0.0
        for i in expected.indices {
            let difference = abs(Double(actual[i]) - expected[i])
            let error = difference.isNaN ? Double.infinity : difference
            if error > worst {
                worst = error
                worstAt = i
            }
            scale = max(scale, abs(expected[i]))
        }
        maxAbsoluteError = worst
        worstIndex = worstAt
        relativeError = worst == 0 ? 0 : worst / max(scale, Double.leastNormalMagnitude)
    }

    public init(_ name: String, actual: [Float], expected: [Float], tolerance: Double) {
        self.init(name, actual: actual, expected: expected.map(Double.init), tolerance: tolerance)
    }

    public var description: String {
        "\(name): relative error \(relativeError) (tolerance \(tolerance)), max |difference| \(maxAbsoluteError) at \(worstIndex)"
    }
}
