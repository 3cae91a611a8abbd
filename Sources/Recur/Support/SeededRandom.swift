#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator whose stream depends
/// only on the seed, so initial weights, dropout masks and data order are reproducible on every
/// platform. Shared by every layer's initialisation and dropout and by data shuffling.
///
/// Bounded draws and the shuffle are written out here rather than taken from the standard
/// library, whose `shuffle(using:)` and `random(in:using:)` algorithms are not promised to stay
/// the same across releases; a checkpoint resumed on a newer toolchain must see the same order.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in [-bound, bound).
    mutating func uniform(bound: Double) -> Float {
        Float((2 * unit() - 1) * bound)
    }

    /// Standard normal, Box–Muller (one of the pair; simplicity over speed: used for init only).
    mutating func gaussian() -> Double {
        let u = 1 - unit()  // (0, 1], so the log is finite
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * unit())
    }

    /// Uniform in `0 ..< bound` without modulo bias: draws that fall in the incomplete last
    /// block of 2^64 are rejected and redrawn.
    mutating func next(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let range = UInt64(bound)
        let limit = UInt64.max - UInt64.max % range
        while true {
            let value = next()
            if value < limit { return Int(value % range) }
        }
    }

    /// Fisher–Yates: shuffles `elements` in place, each permutation equally likely.
    mutating func shuffle<Element>(_ elements: inout [Element]) {
        guard elements.count > 1 else { return }
        for i in stride(from: elements.count - 1, to: 0, by: -1) {
            let j = next(below: i + 1)
            if i != j { elements.swapAt(i, j) }
        }
    }
}
