// A small, strict JSON reader and string encoder for safetensors headers.
//
// The header is untrusted input, so the parser is written for it rather than borrowed from
// Foundation: it rejects duplicate keys (a general decoder silently keeps one of them), bounds
// nesting depth (no stack overflow on `[[[[...`), keeps numbers as their source text so that
// offsets beyond 2^53 are never rounded through a Double, and reports the byte position of
// every error.

/// JSON text for writers outside this file (logs, benchmark lines).
public enum JSONString {
    /// `text` as a JSON string literal, quotes included (see `SafeTensorsJSON.quoted`).
    public static func quoted(_ text: String) -> String { SafeTensorsJSON.quoted(text) }
}

/// A parsed JSON value. Objects keep their keys in source order; duplicates are a parse error.
enum SafeTensorsJSON {
    case null
    case bool(Bool)
    /// The number exactly as written (`12`, `-3.5e2`); callers convert what they expect.
    case number(String)
    case string(String)
    case array([SafeTensorsJSON])
    case object([(key: String, value: SafeTensorsJSON)])

    /// Why a header is not valid JSON, with the byte offset (within the header) where it broke.
    struct ParseError: Error {
        var offset: Int
        var reason: String
        var description: String { "invalid JSON at header byte \(offset): \(reason)" }
    }

    /// Deeper nesting than this is rejected; a safetensors header needs three levels.
    static let maximumDepth = 64

    /// Parses one JSON value that must span all of `bytes` (surrounding whitespace allowed).
    /// The bytes must be valid UTF-8; the caller checks that once for the whole header.
    static func parse(_ bytes: ArraySlice<UInt8>) throws(ParseError) -> SafeTensorsJSON {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        if parser.position < bytes.endIndex {
            throw parser.error("unexpected content after the top-level value")
        }
        return value
    }

    /// `text` as a JSON string literal, quotes included. Escapes what JSON requires (quote,
    /// backslash, control characters) and leaves all other characters as UTF-8.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\u{08}": result += "\\b"
            case "\u{0C}": result += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

private struct Parser {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    func error(_ reason: String) -> SafeTensorsJSON.ParseError {
        SafeTensorsJSON.ParseError(offset: position - bytes.startIndex, reason: reason)
    }

    var current: UInt8? { position < bytes.endIndex ? bytes[position] : nil }

    mutating func skipWhitespace() {
        while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
            position += 1
        }
    }

    mutating func expect(_ literal: String, producing value: SafeTensorsJSON) throws(SafeTensorsJSON.ParseError) -> SafeTensorsJSON {
        for byte in literal.utf8 {
            guard current == byte else { throw error("expected '\(literal)'") }
            position += 1
        }
        return value
    }

    mutating func parseValue(depth: Int) throws(SafeTensorsJSON.ParseError) -> SafeTensorsJSON {
        guard depth < SafeTensorsJSON.maximumDepth else {
            throw error("nesting deeper than \(SafeTensorsJSON.maximumDepth) levels")
        }
        guard let byte = current else { throw error("unexpected end of header") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", producing: .bool(true))
        case UInt8(ascii: "f"): return try expect("false", producing: .bool(false))
        case UInt8(ascii: "n"): return try expect("null", producing: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(Character(Unicode.Scalar(byte)))'")
        }
    }

    mutating func parseObject(depth: Int) throws(SafeTensorsJSON.ParseError) -> SafeTensorsJSON {
        position += 1  // '{'
        var members: [(key: String, value: SafeTensorsJSON)] = []
        var seen: Set<String> = []
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            position += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyPosition = position
            let key = try parseString()
            guard seen.insert(key).inserted else {
                throw SafeTensorsJSON.ParseError(
                    offset: keyPosition - bytes.startIndex, reason: "duplicate key \(SafeTensorsJSON.quoted(key))")
            }
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            position += 1
            skipWhitespace()
            members.append((key, try parseValue(depth: depth + 1)))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                return .object(members)
            default: throw error("expected ',' or '}' in an object")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(SafeTensorsJSON.ParseError) -> SafeTensorsJSON {
        position += 1  // '['
        var elements: [SafeTensorsJSON] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            position += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                return .array(elements)
            default: throw error("expected ',' or ']' in an array")
            }
        }
    }

    /// Parses a string literal starting at its opening quote. Raw bytes between escapes are
    /// copied through, so multi-byte UTF-8 needs no special handling here.
    mutating func parseString() throws(SafeTensorsJSON.ParseError) -> String {
        position += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            guard let byte = current else { throw error("unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                position += 1
                try parseEscape(into: &utf8)
            case 0..<0x20:
                throw error("unescaped control character in a string")
            default:
                utf8.append(byte)
                position += 1
            }
        }
    }

    mutating func parseEscape(into utf8: inout [UInt8]) throws(SafeTensorsJSON.ParseError) {
        guard let byte = current else { throw error("unterminated escape") }
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(byte)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            var value = try parseHexQuad()
            // A high surrogate must be followed by an escaped low surrogate; together they
            // name one scalar outside the Basic Multilingual Plane.
            if (0xD800..<0xDC00).contains(value) {
                guard current == UInt8(ascii: "\\") else { throw error("unpaired surrogate") }
                position += 1
                guard current == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
                position += 1
                let low = try parseHexQuad()
                guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(value) {
                throw error("unpaired surrogate")
            }
            guard let scalar = Unicode.Scalar(value) else { throw error("invalid \\u escape") }
            utf8.append(contentsOf: String(Character(scalar)).utf8)
        default:
            throw error("invalid escape '\\\(Character(Unicode.Scalar(byte)))'")
        }
    }

    mutating func parseHexQuad() throws(SafeTensorsJSON.ParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current else { throw error("unterminated \\u escape") }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in a \\u escape")
            }
            value = value * 16 + UInt32(digit)
            position += 1
        }
        return value
    }

    /// Checks the JSON number grammar (`-? int frac? exp?`) and returns the literal's text.
    mutating func parseNumber() throws(SafeTensorsJSON.ParseError) -> SafeTensorsJSON {
        let start = position
        if current == UInt8(ascii: "-") { position += 1 }
        guard let first = current, isDigit(first) else { throw error("expected a digit") }
        position += 1
        if first != UInt8(ascii: "0") {
            skipDigits()
        }
        if current == UInt8(ascii: ".") {
            position += 1
            guard let byte = current, isDigit(byte) else { throw error("expected a digit after '.'") }
            skipDigits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard let byte = current, isDigit(byte) else { throw error("expected a digit in an exponent") }
            skipDigits()
        }
        return .number(String(decoding: bytes[start..<position], as: UTF8.self))
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    mutating func skipDigits() {
        while let byte = current, isDigit(byte) { position += 1 }
    }
}
