// The one FNV-1a implementation: program-cache keys and checksums, tuned-parameter file names,
// training-data fingerprints and the cross-rank checks of distributed training all hash with it.

/// The 64-bit FNV-1a hash (Fowler, Noll and Vo): cheap, and stable across runs and platforms
/// (unlike `Hasher`), so its values can be written to files and compared between processes.
/// Good enough to tell sources, cache files and data sets apart; not a security hash.
public struct FNV1a64: Sendable, Equatable {
    /// The hash of everything added so far (the FNV offset basis before anything is added).
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    private static let prime: UInt64 = 0x0000_0100_0000_01b3

    /// The hash of nothing yet.
    public init() {}

    /// Adds one byte, as FNV-1a defines it: xor, then multiply by the FNV prime.
    /// - Parameter byte: the next byte of the hashed data.
    public mutating func add(byte: UInt8) {
        value = (value ^ UInt64(byte)) &* Self.prime
    }

    /// Adds the four bytes of `word`, least significant first.
    /// - Parameter word: the next 32-bit word of the hashed data.
    public mutating func add(littleEndian word: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) {
            add(byte: UInt8(truncatingIfNeeded: word >> UInt32(shift)))
        }
    }

    /// Adds a whole 64-bit word in one xor-multiply step instead of eight: the variant that
    /// training-data fingerprints use, kept so that fingerprints recorded in checkpoints still
    /// match.
    /// - Parameter word: the next word of the hashed data.
    public mutating func add(wholeWord word: UInt64) {
        value = (value ^ word) &* Self.prime
    }

    /// The FNV-1a hash of `bytes`.
    /// - Parameter bytes: the data to hash.
    /// - Returns: the 64-bit hash.
    public static func hash(_ bytes: [UInt8]) -> UInt64 {
        var hasher = FNV1a64()
        for byte in bytes { hasher.add(byte: byte) }
        return hasher.value
    }
}
