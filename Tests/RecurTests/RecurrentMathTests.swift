import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The vectorised exp, sigmoid and tanh of the CPU step loops against float64 libm, on a dense grid
// over [-100, 100] plus the edges: the bounds their doc comments state.

@Suite("Recurrent CPU math")
struct RecurrentMathTests {
    /// A grid of step 1/512 over [-100, 100], the values near 0 at many scales, and
    /// the special values.
    static let grid: [Float] = {
        var values = (-51_200...51_200).map { Float($0) / 512 }
        for exponent in -40...0 {
            let scale = Float(sign: .plus, exponent: exponent, significand: 1.37)
            values += [scale, -scale]
        }
        values += [0.249_999_98, 0.25, -0.25, 0.250_000_03, .infinity, -.infinity, .greatestFiniteMagnitude, -1e30]
        return values
    }()

    /// Applies a lanes function to every grid value.
    static func apply(_ f: (CPULanes) -> CPULanes, to values: [Float]) -> [Float] {
        var result: [Float] = []
        result.reserveCapacity(values.count)
        for start in stride(from: 0, to: values.count, by: CPULanes.scalarCount) {
            var lanes = CPULanes()
            let count = min(CPULanes.scalarCount, values.count - start)
            for k in 0..<count { lanes[k] = values[start + k] }
            let output = f(lanes)
            for k in 0..<count { result.append(output[k]) }
        }
        return result
    }

    /// The largest |actual - expected| / |expected| where |expected| >= floor, and where it occurs.
    static func worstRelativeError(_ inputs: [Float], _ actual: [Float], _ expected: (Double) -> Double,
                                   floor: Double = 0) -> (error: Double, at: Float) {
        var worst = (error: 0.0, at: Float(0))
        for (x, y) in zip(inputs, actual) {
            let exact = expected(Double(x))
            guard abs(exact) >= floor, exact.isFinite else { continue }
            let error = exact == 0 ? abs(Double(y)) : abs(Double(y) - exact) / abs(exact)
            if !(error <= worst.error) { worst = (error, x) }
        }
        return worst
    }

    @Test("exp: within 4e-7 relative on [-87, 88], saturating outside")
    func exponential() {
        let inside = Self.grid.filter { $0 >= -87 && $0 <= 88 }
        let worst = Self.worstRelativeError(inside, Self.apply(CPUMath.exp, to: inside), { libmExp($0) })
        #expect(worst.error < 4e-7, "worst \(worst.error) at \(worst.at)")
        let edges = Self.apply(CPUMath.exp, to: [-1000, -88, 89, 1000, .infinity, -.infinity])
        #expect(edges.allSatisfy { $0.isFinite && $0 > 0 })
    }

    @Test("sigmoid: within 5e-7 relative above -87, below 2e-38 absolute under it, 0 ... 1")
    func sigmoid() {
        let values = Self.apply(CPUMath.sigmoid, to: Self.grid)
        let exact = { (x: Double) in 1 / (1 + libmExp(-x)) }
        let above = Self.grid.indices.filter { Self.grid[$0] >= -87 }
        let worst = Self.worstRelativeError(above.map { Self.grid[$0] }, above.map { values[$0] }, exact)
        #expect(worst.error < 5e-7, "worst \(worst.error) at \(worst.at)")
        for (x, y) in zip(Self.grid, values) where x < -87 {
            #expect(abs(Double(y) - exact(Double(x))) < 2e-38, "σ(\(x)) = \(y)")
        }
        #expect(values.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    @Test("tanh: within 5e-7 relative everywhere, odd, exactly ±1 far out")
    func hyperbolicTangent() {
        let values = Self.apply(CPUMath.tanh, to: Self.grid)
        let worst = Self.worstRelativeError(Self.grid, values, { libmTanh($0) })
        #expect(worst.error < 5e-7, "worst \(worst.error) at \(worst.at)")
        for (x, y) in zip(Self.grid, values) where x == 0 || abs(x) > 20 {
            #expect(y == (x == 0 ? 0 : (x > 0 ? 1 : -1)), "tanh(\(x)) = \(y)")
        }
        let negated = Self.apply(CPUMath.tanh, to: Self.grid.map { -$0 })
        #expect(zip(values, negated).allSatisfy { $0 == -$1 })
    }

    @Test("NaN stays NaN")
    func notANumber() {
        let nan = CPULanes(repeating: .nan)
        for f in [CPUMath.exp, CPUMath.sigmoid, CPUMath.tanh] {
            #expect(f(nan).indices.allSatisfy { f(nan)[$0].isNaN })
        }
    }
}

/// libm in float64, named apart from the lanes functions.
private func libmExp(_ x: Double) -> Double { exp(x) }
private func libmTanh(_ x: Double) -> Double { tanh(x) }
