// Vectorised transcendentals for the CPU step loops. libm's scalar calls cost more than the whole
// recurrent GEMM of a small step (tanhf, through expm1f, was over half of an LSTM forward at
// H = 32), and a call in the loop forces every live value to the stack. These work on all lanes
// (eight, or sixteen with AVX-512) at once with nothing but multiply, add, divide and bit operations, so the compiler keeps the
// loop in vector registers.
//
// They are `@_transparent` rather than `@inline(__always)`: the optimizer stops inlining even
// always-inline functions into a caller that has grown large, and the LSTM step loops did; the
// outlined calls then passed every lane vector through memory in two halves. Polynomials are
// evaluated by Horner's rule with fused multiply-adds (`addingProduct`), one rounding per term.
//
// Accuracy (tested against float64 on a dense grid): exp within 4e-7 relative on [-87, 88];
// sigmoid within 5e-7 relative for x >= -87 (absolute 2e-38 below); tanh within 5e-7 relative.
// NaN stays NaN.

#if RECUR_AVX512
/// Sixteen float32 lanes, one AVX-512 register: the unit of the vectorised step loops.
typealias CPULanes = SIMD16<Float>
/// The lanes' bits, for exponent and sign manipulation.
typealias CPULaneBits = SIMD16<UInt32>
#else
/// Eight float32 lanes, one AVX2 register: the unit of the vectorised step loops.
typealias CPULanes = SIMD8<Float>
/// The lanes' bits, for exponent and sign manipulation.
typealias CPULaneBits = SIMD8<UInt32>
#endif

extension CPUMath {
    /// e^x. x = n ln 2 + r with n = round(x / ln 2) and |r| <= ln 2 / 2, reduced in two parts
    /// (Cody & Waite: ln 2 = hi + lo with n · hi exact); e^r by its Taylor series to r⁷, whose
    /// remainder is below 0.347⁸ / 8! ≈ 5e-9; 2^n written straight into the exponent bits.
    /// x is clamped to [-87, 88] so 2^n stays a normal float: e^x saturates at ≈ 1.2e-38 and 1.7e38.
    @_transparent
    static func exp(_ x: CPULanes) -> CPULanes {
        let clamped = x.replacing(with: -87, where: x .< -87).replacing(with: 88, where: x .> 88)
        // Adding 1.5 · 2^23 rounds to an integer held in the low mantissa bits.
        let magic: Float = 12_582_912
        let shifted = clamped * 1.442_695_04 + magic  // x / ln 2 + magic
        let n = shifted - magic
        let r = (clamped - n * 0.693_359_375) - n * -2.121_944_4e-4
        var p = CPULanes(repeating: 1 / 720).addingProduct(r, CPULanes(repeating: 1 / 5040))
        p = CPULanes(repeating: 1 / 120).addingProduct(p, r)
        p = CPULanes(repeating: 1 / 24).addingProduct(p, r)
        p = CPULanes(repeating: 1 / 6).addingProduct(p, r)
        p = CPULanes(repeating: 0.5).addingProduct(p, r)
        p = CPULanes(repeating: 1).addingProduct(p, r)
        p = CPULanes(repeating: 1).addingProduct(p, r)
        // The bits of `shifted` are those of magic + n: shifting left by 23 drops magic's bits and
        // leaves (n + 127) in the exponent field.
        let exponent = (unsafeBitCast(shifted, to: CPULaneBits.self) &+ 127) &<< 23
        let result = p * unsafeBitCast(exponent, to: CPULanes.self)
        return result.replacing(with: x, where: x .!= x)
    }

    /// |x|: the sign bit cleared.
    @_transparent
    static func magnitude(_ x: CPULanes) -> CPULanes {
        unsafeBitCast(unsafeBitCast(x, to: CPULaneBits.self) & 0x7FFF_FFFF, to: CPULanes.self)
    }

    /// σ(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, so e^-|x| never overflows.
    @_transparent
    static func sigmoid(_ x: CPULanes) -> CPULanes {
        let e = exp(-magnitude(x))
        let numerator = CPULanes(repeating: 1).replacing(with: e, where: x .< 0)
        return numerator / (1 + e)
    }

    /// tanh x. |x| < 0.25: the odd Taylor series
    /// x (1 - x²/3 + 2x⁴/15 - 17x⁶/315 + 62x⁸/2835 - 1382x¹⁰/155925), first omitted term below
    /// 1e-9 relative; otherwise sign(x) (1 - 2 / (e^{2|x|} + 1)), where |tanh x| > 0.24 keeps the
    /// subtraction within a few ulp. Both are computed and one chosen per lane.
    @_transparent
    static func tanh(_ x: CPULanes) -> CPULanes {
        let a = magnitude(x)
        let z = x * x
        var series = CPULanes(repeating: 0.021_869_488).addingProduct(z, CPULanes(repeating: -0.008_863_235_5))
        series = CPULanes(repeating: -0.053_968_254).addingProduct(series, z)
        series = CPULanes(repeating: 0.133_333_34).addingProduct(series, z)
        series = CPULanes(repeating: -0.333_333_34).addingProduct(series, z)
        let near = x.addingProduct(x, series * z)
        let magnitude = 1 - 2 / (exp(2 * a) + 1)
        let far = magnitude.replacing(with: -magnitude, where: x .< 0)
        return far.replacing(with: near, where: a .< 0.25)
    }
}

extension UnsafeMutablePointer<Float> {
    /// Up to `CPULanes.scalarCount` consecutive values from here; lanes past `count` are 0. A step loop's last
    /// chunk of a row may be short, and goes element by element in a call of its own: inlined,
    /// the element-wise lane inserts led the compiler to split the whole step's vector math into
    /// scalar instructions.
    @inline(__always)
    func loadLanes(_ count: Int) -> CPULanes {
        if count == CPULanes.scalarCount {
            return UnsafeRawPointer(self).loadUnaligned(as: CPULanes.self)
        }
        return loadPartialLanes(count)
    }

    /// Stores the first `count` (up to `CPULanes.scalarCount`) lanes here; a short chunk as in `loadLanes`.
    @inline(__always)
    func storeLanes(_ lanes: CPULanes, _ count: Int) {
        if count == CPULanes.scalarCount {
            UnsafeMutableRawPointer(self).storeBytes(of: lanes, as: CPULanes.self)
            return
        }
        storePartialLanes(lanes, count)
    }

    @inline(never)
    private func loadPartialLanes(_ count: Int) -> CPULanes {
        var lanes = CPULanes()
        for k in 0..<count { lanes[k] = self[k] }
        return lanes
    }

    @inline(never)
    private func storePartialLanes(_ lanes: CPULanes, _ count: Int) {
        for k in 0..<count { self[k] = lanes[k] }
    }
}

/// Runs `body(j, n)` over the chunks of a row of `count` units: every full chunk first, with n the
/// constant lane count, then one short chunk if `count` is not a multiple of it. Keeping the full
/// chunks in their own loop lets the compiler fold `loadLanes` / `storeLanes` into single vector
/// moves there, but only if `body` is inlined into that loop: callers pass an `@inline(__always)`
/// local function, not a closure literal. A large closure literal (the LSTM step's, once the
/// transcendentals are inlined into it) called from two places stays a function of its own with
/// n unknown, and the compiler then ran its gate math four lanes at a time (83% of the LSTM
/// forward step's samples were 128-bit instructions, with AVX2 and with AVX-512 alike).
@inline(__always)
func forEachLaneChunk(_ count: Int, _ body: (_ start: Int, _ count: Int) -> Void) {
    let width = CPULanes.scalarCount
    var start = 0
    while start + width <= count {
        body(start, width)
        start += width
    }
    if start < count { body(start, count - start) }
}
