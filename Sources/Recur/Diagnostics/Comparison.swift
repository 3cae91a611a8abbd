/// How far computed values are from reference values.
///
/// The relative error is norm-wise: the largest absolute difference divided by the largest
/// reference magnitude, `max|a - r| / max|r|` (with an optional floor under `max|r|`). Unlike an
/// element-wise ratio it stays meaningful where a reference value is near zero, and for float32
/// arithmetic it is bounded by a small multiple of the unit roundoff (6e-8) times the depth of
/// the computation.
public struct Comparison: Sendable, CustomStringConvertible {
    public let name: String
    /// Elements of the reference.
    public let count: Int
    /// Elements of the computed values; a count other than `count` fails the comparison.
    public let actualCount: Int
    public let maxAbsoluteError: Double
    public let relativeError: Double
    /// Where the largest absolute difference is (flat index), for a report.
    public let worstIndex: Int
    public let tolerance: Double
    /// max |reference|; 0 for an all-zero reference.
    public let scale: Double

    public var passed: Bool { relativeError <= tolerance }

    /// Compares `actual` with `expected` element by element. A count mismatch or a non-finite
    /// value where the reference is finite counts as an infinite error.
    /// - Parameters:
    ///   - name: names the compared values in a report.
    ///   - actual: the computed values.
    ///   - expected: the reference values.
    ///   - tolerance: the largest relative error that passes.
    ///   - scaleFloor: the error is relative to max(max |expected|, scaleFloor), so a
    ///     reference smaller than that (all zeros above all) is compared absolutely; the default
    ///     keeps the error relative at every scale.
    public init(_ name: String, actual: [Float], expected: [Double], tolerance: Double,
                scaleFloor: Double = Double.leastNormalMagnitude) {
        self.name = name
        self.tolerance = tolerance
        count = expected.count
        actualCount = actual.count
        guard actual.count == expected.count else {
            maxAbsoluteError = .infinity
            relativeError = .infinity
            worstIndex = -1
            scale = expected.reduce(0) { max($0, abs($1)) }
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
        self.scale = scale
        relativeError = worst == 0 ? 0 : worst / max(scale, scaleFloor, Double.leastNormalMagnitude)
    }

    public init(_ name: String, actual: [Float], expected: [Float], tolerance: Double) {
        self.init(name, actual: actual, expected: expected.map(Double.init), tolerance: tolerance)
    }

    /// Why a failed comparison failed, where the error alone does not say: a count mismatch, or
    /// an all-zero reference. Nil otherwise.
    public var note: String? {
        if actualCount != count { return "\(actualCount) values computed, \(count) expected" }
        if scale == 0, maxAbsoluteError > 0 { return "expected all zero, max |actual| \(maxAbsoluteError)" }
        return nil
    }

    public var description: String {
        "\(name): relative error \(relativeError) (tolerance \(tolerance)), max |difference| \(maxAbsoluteError) at \(worstIndex)"
    }
}
