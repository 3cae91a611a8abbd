// Turning file bytes into text for the readers in this folder.
//
// Real corpora are not all UTF-8: rt_polarity is Windows-1252, as are many older English
// corpora. A reader that fails on them, or that silently swaps every such byte for U+FFFD,
// loses words, so a file that is not valid UTF-8 is read as Windows-1252 instead. Windows-1252
// assigns a character to every byte (the five bytes it leaves undefined are mapped to the C1
// controls of the same value, as Latin-1 does), so this decoding cannot fail.

/// The encoding a file's bytes were found to be in.
enum TextEncoding: Sendable, Equatable {
    case utf8
    case windows1252

    /// UTF-8 when all of `bytes` is valid UTF-8, else Windows-1252. Decided once per file: a file
    /// has one encoding, and a Windows-1252 file whose line happens to be valid UTF-8 (every
    /// ASCII line is) decodes the same either way.
    static func detect(_ bytes: ArraySlice<UInt8>) -> TextEncoding {
        String(validating: bytes, as: UTF8.self) == nil ? .windows1252 : .utf8
    }

    /// `bytes` as text in this encoding. Invalid UTF-8 (only possible when the encoding was not
    /// detected from these bytes) becomes U+FFFD.
    func decode(_ bytes: ArraySlice<UInt8>) -> String {
        switch self {
        case .utf8:
            return String(decoding: bytes, as: UTF8.self)
        case .windows1252:
            var scalars = String.UnicodeScalarView()
            for byte in bytes {
                scalars.append(Self.windows1252Scalar(byte))
            }
            return String(scalars)
        }
    }

    /// The character Windows-1252 assigns to `byte`. Only 0x80...0x9F differ from Latin-1.
    static func windows1252Scalar(_ byte: UInt8) -> Unicode.Scalar {
        guard (0x80...0x9F).contains(byte) else { return Unicode.Scalar(byte) }
        return Unicode.Scalar(windows1252High[Int(byte) - 0x80])!
    }

    /// Code points of bytes 0x80...0x9F; the undefined 0x81, 0x8D, 0x8F, 0x90 and 0x9D map to
    /// the C1 control of the same value.
    private static let windows1252High: [UInt32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,  // 0x80
        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,  // 0x88
        0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,  // 0x90
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,  // 0x98
    ]
}

/// The file's bytes without a leading UTF-8 byte-order mark, which some editors write and which
/// would otherwise stick to the first header name or the first example.
func droppingByteOrderMark(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
    if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
        return bytes[3...]
    }
    return bytes[...]
}

/// One line of a file: its bytes without the line break, and its 1-based number.
struct NumberedLine {
    var bytes: ArraySlice<UInt8>
    var number: Int
}

/// The lines of `bytes`, split on LF only, with a CR before the LF dropped (CRLF files). Other
/// characters some splitters treat as breaks (U+0085, U+2028, a lone CR) stay in the line: in
/// Windows-1252 text byte 0x85 is an ellipsis, not a line break. A final line without a newline
/// is a line; a final newline does not start an empty one.
func splitLines(_ bytes: ArraySlice<UInt8>) -> [NumberedLine] {
    var lines: [NumberedLine] = []
    var start = bytes.startIndex
    var number = 1
    let newline = UInt8(ascii: "\n")
    let carriageReturn = UInt8(ascii: "\r")
    while start < bytes.endIndex {
        let end = bytes[start...].firstIndex(of: newline) ?? bytes.endIndex
        var contentEnd = end
        if contentEnd > start && bytes[contentEnd - 1] == carriageReturn { contentEnd -= 1 }
        lines.append(NumberedLine(bytes: bytes[start..<contentEnd], number: number))
        number += 1
        start = end == bytes.endIndex ? end : end + 1
    }
    return lines
}
