/// Splits text into tokens for a `Vocabulary`.
public protocol Tokenizer: Sendable {
    /// The tokens of `text`, in order.
    func tokens(in text: String) -> [String]
}

/// Words, as Keras's `text_to_word_sequence` finds them: lowercase the text, turn every filter
/// character into a separator, split, and drop empty pieces. `don't` stays one word, because
/// the apostrophe is not a Keras filter.
///
/// Two differences from Keras, both for real corpora:
/// - Every Unicode whitespace character separates words. Keras splits on the space only, after
///   the filters turned tab and newline into spaces, so a CR of a CRLF file or a no-break space
///   would stay inside a word there.
/// - HTML line breaks (`<br />`, `<br/>`, `<br>`, any letter case), which the IMDB reviews use
///   for paragraphs, separate words when `removesLineBreakTags` is set (the default). Filtering
///   alone would leave a word `br` wherever a paragraph ends.
public struct WordTokenizer: Tokenizer, Equatable {
    /// Keras's default filters: `!"#$%&()*+,-./:;<=>?@[\]^_{|}~`, the backtick, tab and newline.
    public static let kerasFilters = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"

    /// Whether the text is lowercased before splitting (Keras `lower=True`).
    public var lowercases: Bool
    /// Characters that separate words and never appear in one.
    public var filters: Set<Unicode.Scalar>
    /// Whether `<br />` tags separate words instead of leaving `br` behind.
    public var removesLineBreakTags: Bool

    /// - Parameters:
    ///   - lowercases: lowercase the text first (Keras default `true`).
    ///   - filters: the characters to treat as separators (Keras's defaults unless given).
    ///   - removesLineBreakTags: treat `<br />` tags as separators (default `true`).
    public init(lowercases: Bool = true, filters: String = WordTokenizer.kerasFilters,
                removesLineBreakTags: Bool = true) {
        self.lowercases = lowercases
        self.filters = Set(filters.unicodeScalars)
        self.removesLineBreakTags = removesLineBreakTags
    }

    public func tokens(in text: String) -> [String] {
        let scalars = (lowercases ? text.lowercased() : text).unicodeScalars
        var tokens: [String] = []
        var wordStart: String.UnicodeScalarView.Index?
        var index = scalars.startIndex
        while index < scalars.endIndex {
            let scalar = scalars[index]
            var separatorEnd: String.UnicodeScalarView.Index?
            if removesLineBreakTags && scalar == "<" {
                separatorEnd = Self.endOfLineBreakTag(in: scalars, at: index)
            }
            if separatorEnd == nil && (filters.contains(scalar) || scalar.properties.isWhitespace) {
                separatorEnd = scalars.index(after: index)
            }
            if let separatorEnd {
                if let start = wordStart {
                    tokens.append(String(scalars[start..<index]))
                    wordStart = nil
                }
                index = separatorEnd
            } else {
                if wordStart == nil { wordStart = index }
                index = scalars.index(after: index)
            }
        }
        if let start = wordStart { tokens.append(String(scalars[start...])) }
        return tokens
    }

    /// Where a `<br>` tag starting at `start` (the `<`) ends, or nil if none starts there.
    /// Accepts `<br`, then optional whitespace, an optional `/`, and `>`, in any letter case.
    private static func endOfLineBreakTag(
        in scalars: String.UnicodeScalarView, at start: String.UnicodeScalarView.Index
    ) -> String.UnicodeScalarView.Index? {
        var index = scalars.index(after: start)
        let letters: [(lower: Unicode.Scalar, upper: Unicode.Scalar)] = [("b", "B"), ("r", "R")]
        for letter in letters {
            guard index < scalars.endIndex, scalars[index] == letter.lower || scalars[index] == letter.upper else {
                return nil
            }
            index = scalars.index(after: index)
        }
        while index < scalars.endIndex && scalars[index].properties.isWhitespace {
            index = scalars.index(after: index)
        }
        if index < scalars.endIndex && scalars[index] == "/" { index = scalars.index(after: index) }
        guard index < scalars.endIndex && scalars[index] == ">" else { return nil }
        return scalars.index(after: index)
    }
}

/// Characters as tokens, for character-level language models: every Unicode scalar of the text
/// is one token, whitespace and newlines included. A character here is a Unicode scalar (a code
/// point), as Python's `list(text)` and Keras's `char_level=True` see it, not a Swift
/// `Character`: a CRLF is two tokens and a combining accent is its own token, so the token count
/// equals the code point count other tools report.
public struct CharacterTokenizer: Tokenizer, Equatable {
    /// Whether the text is lowercased first (default `false`: case carries meaning in prose).
    public var lowercases: Bool

    public init(lowercases: Bool = false) {
        self.lowercases = lowercases
    }

    public func tokens(in text: String) -> [String] {
        (lowercases ? text.lowercased() : text).unicodeScalars.map { String($0) }
    }
}
