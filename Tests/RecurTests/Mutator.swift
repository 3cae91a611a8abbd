@testable import Recur

// A seeded byte mutator for the parser fuzz tests, in the manner of libFuzzer's and AFL's
// mutators: each call applies a few stacked edits to one of the seed inputs, favouring the edits
// that reach parser corners (boundary integers where numbers were, invalid UTF-8, structural
// characters, splices of two seeds). Seeded, so a failing input is reproduced by its seed and
// iteration alone.

struct Mutator {
    private var random: SeededGenerator
    /// Tokens that mean something to the parser under test (`"data_offsets"`, `","`, `"\""`).
    private let dictionary: [[UInt8]]
    /// Inputs longer than this are cut, so a run of insertions cannot grow one without bound.
    let maximumLength: Int

    init(seed: UInt64, dictionary: [String] = [], maximumLength: Int = 4096) {
        random = SeededGenerator(seed: seed)
        self.dictionary = (dictionary + Self.structuralTokens).map { Array($0.utf8) }
        self.maximumLength = maximumLength
    }

    /// Integers at the edges of what parsers convert: zero, signs, 2^31, 2^32, 2^53, 2^63, 2^64,
    /// and forms that are numbers to JSON but not to an integer reader.
    static let boundaryIntegers = [
        "0", "1", "-1", "-0", "7", "8", "255", "256", "65536", "2147483647", "2147483648", "-2147483649",
        "4294967295", "4294967296", "9007199254740993", "9223372036854775807", "9223372036854775808",
        "-9223372036854775808", "18446744073709551615", "18446744073709551616",
        "1000000000000", "99999999999999999999999999", "1e3", "1.0", "1E400", "0x10", "00", "+1",
    ]

    /// Byte sequences that are not UTF-8: a lone continuation byte, an overlong encoding, an
    /// encoded surrogate, a code point beyond U+10FFFF, truncated sequences, bytes never valid.
    static let invalidUTF8: [[UInt8]] = [
        [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xF0, 0x9F],
        [0xFF], [0xFE], [0xC3], [0xEF, 0xBB, 0xBF],
    ]

    private static let structuralTokens = [
        "\"", "\"\"", ",", "\t", "\n", "\r\n", "\r", " ", "{", "}", "[", "]", ":", "\\", "\\u", "\\ud800",
        "\u{0}", "\u{85}", "\u{2028}", "\u{FEFF}", "null", "true", "-", ".", "e", "E",
    ]

    /// `seeds[i]` with one to four stacked edits, sometimes spliced with another seed.
    mutating func mutate(_ seeds: [[UInt8]]) -> [UInt8] {
        var bytes = seeds[Int.random(in: 0..<seeds.count, using: &random)]
        let edits = Int.random(in: 1...4, using: &random)
        for _ in 0..<edits {
            edit(&bytes, seeds: seeds)
        }
        if bytes.count > maximumLength { bytes.removeLast(bytes.count - maximumLength) }
        return bytes
    }

    private mutating func edit(_ bytes: inout [UInt8], seeds: [[UInt8]]) {
        switch Int.random(in: 0..<11, using: &random) {
        case 0 where !bytes.isEmpty:
            // Flip one bit.
            let index = position(in: bytes)
            bytes[index] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
        case 1 where !bytes.isEmpty:
            // Overwrite one byte with any value.
            bytes[position(in: bytes)] = UInt8.random(in: 0...255, using: &random)
        case 2:
            // Insert a few random bytes.
            let count = Int.random(in: 1...8, using: &random)
            let inserted = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            bytes.insert(contentsOf: inserted, at: insertionPoint(in: bytes))
        case 3 where !bytes.isEmpty:
            // Delete a range.
            let start = position(in: bytes)
            let end = min(bytes.count, start + Int.random(in: 1...16, using: &random))
            bytes.removeSubrange(start..<end)
        case 4 where !bytes.isEmpty:
            // Duplicate a range in place (repeated fields, lines, keys).
            let start = position(in: bytes)
            let end = min(bytes.count, start + Int.random(in: 1...32, using: &random))
            bytes.insert(contentsOf: bytes[start..<end], at: end)
        case 5:
            // Splice: this input's head with another seed's tail.
            let other = seeds[Int.random(in: 0..<seeds.count, using: &random)]
            let cut = insertionPoint(in: bytes)
            let otherCut = insertionPoint(in: other)
            bytes = Array(bytes[..<cut]) + Array(other[otherCut...])
        case 6, 7:
            // Replace a run of digits (a number in the input) by a boundary integer.
            replaceNumber(in: &bytes)
        case 8:
            // Insert a token the parser gives meaning to.
            let token = dictionary[Int.random(in: 0..<dictionary.count, using: &random)]
            bytes.insert(contentsOf: token, at: insertionPoint(in: bytes))
        case 9:
            // Insert a byte sequence that is not UTF-8.
            let sequence = Self.invalidUTF8[Int.random(in: 0..<Self.invalidUTF8.count, using: &random)]
            bytes.insert(contentsOf: sequence, at: insertionPoint(in: bytes))
        default:
            // Truncate.
            bytes.removeSubrange(insertionPoint(in: bytes)...)
        }
    }

    /// Replaces the digits around a random digit with a boundary integer, or inserts one when
    /// the input has no digits.
    private mutating func replaceNumber(in bytes: inout [UInt8]) {
        let replacement = Array(Self.boundaryIntegers[Int.random(in: 0..<Self.boundaryIntegers.count, using: &random)].utf8)
        let digits = bytes.indices.filter { bytes[$0] >= UInt8(ascii: "0") && bytes[$0] <= UInt8(ascii: "9") }
        guard let chosen = digits.randomElement(using: &random) else {
            bytes.insert(contentsOf: replacement, at: insertionPoint(in: bytes))
            return
        }
        var start = chosen
        var end = chosen + 1
        let isDigit = { (byte: UInt8) in byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        while start > 0 && isDigit(bytes[start - 1]) { start -= 1 }
        while end < bytes.count && isDigit(bytes[end]) { end += 1 }
        bytes.replaceSubrange(start..<end, with: replacement)
    }

    private mutating func position(in bytes: [UInt8]) -> Int {
        Int.random(in: 0..<bytes.count, using: &random)
    }

    private mutating func insertionPoint(in bytes: [UInt8]) -> Int {
        Int.random(in: 0...bytes.count, using: &random)
    }

    /// A random element of `values`, for callers building structured inputs.
    mutating func pick<Element>(_ values: [Element]) -> Element {
        values[Int.random(in: 0..<values.count, using: &random)]
    }

    /// A random integer in `range`, for callers building structured inputs.
    mutating func integer(in range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &random)
    }
}
