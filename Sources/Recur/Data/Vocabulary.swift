/// A mapping between tokens and integer ids with the semantics of Keras's `Tokenizer`
/// (`oov_token="<OOV>"`), so that ids, padding and `numWords` mean what a Keras user expects:
///
/// - id 0 is padding and never stands for a token;
/// - id 1 is the out-of-vocabulary token `<OOV>`, which every unknown or dropped word encodes to;
/// - ids 2, 3, … are the words of the fitting texts by descending frequency. Words with the same
///   count keep the order of their first appearance in the fitting texts, which is what Keras's
///   stable sort over its insertion-ordered `word_counts` gives;
/// - `numWords` keeps ids below it, as Keras's `num_words` does, so it counts the padding and
///   OOV slots too: `numWords: 10` keeps the 8 most frequent words. It is also the number of rows
///   an embedding for this vocabulary needs (`count`).
///
/// Unlike Keras, which keeps every word in `word_index` and applies `num_words` while encoding,
/// the dropped words are not stored at all; encoding gives the same ids either way.
public struct Vocabulary: Sendable, Equatable, CustomStringConvertible {
    /// The id of padding (Keras pads with 0).
    public static let paddingID: Int32 = 0
    /// The id every token outside the vocabulary encodes to.
    public static let outOfVocabularyID: Int32 = 1
    /// The token that stands for every word outside the vocabulary.
    public static let outOfVocabularyToken = "<OOV>"
    /// The token listed for id 0 in `tokens`; it is never produced by tokenizers.
    public static let paddingToken = ""
    /// The id of the most frequent word.
    public static let firstWordID: Int32 = 2

    /// The tokens by id: `tokens[0]` is the padding token `""`, `tokens[1]` is `<OOV>`, then the
    /// words from id 2 on.
    public let tokens: [String]
    private let idsByToken: [String: Int32]

    /// The number of ids in use, padding and OOV included: the embedding's row count.
    public var count: Int { tokens.count }

    /// The words (ids 2, 3, …) in id order.
    public var words: ArraySlice<String> { tokens[Int(Self.firstWordID)...] }

    public var description: String { "Vocabulary(\(count) ids: padding, <OOV>, \(count - 2) words)" }

    /// A vocabulary of `words`, which get ids 2, 3, … in the order given.
    ///
    /// - Throws: `RecurError.invalidArgument` for an empty word, a word listed twice, or `<OOV>`
    ///   among the words (it has its own id).
    public init(words: [String]) throws {
        var tokens = [Self.paddingToken, Self.outOfVocabularyToken]
        var idsByToken: [String: Int32] = [:]
        idsByToken.reserveCapacity(words.count)
        for word in words {
            guard !word.isEmpty else {
                throw RecurError.invalidArgument(operation: "Vocabulary", detail: "empty word at id \(tokens.count)")
            }
            guard word != Self.outOfVocabularyToken else {
                throw RecurError.invalidArgument(
                    operation: "Vocabulary", detail: "\(Self.outOfVocabularyToken) listed as a word at id \(tokens.count)")
            }
            guard idsByToken.updateValue(Int32(tokens.count), forKey: word) == nil else {
                throw RecurError.invalidArgument(operation: "Vocabulary", detail: "word '\(word)' listed twice")
            }
            tokens.append(word)
        }
        self.tokens = tokens
        self.idsByToken = idsByToken
    }

    /// Fits a vocabulary to token sequences (Keras `fit_on_texts` after tokenising).
    ///
    /// Empty tokens and the token `<OOV>` are not counted: the first is the padding token's name
    /// and the second already has id 1. (Keras would count a literal `<OOV>` word, and then give
    /// it two ids.)
    ///
    /// - Parameters:
    ///   - sequences: the tokenised texts whose tokens are counted.
    ///   - numWords: keep the ids below this, padding and OOV included (at least 2);
    ///     `nil` keeps every word.
    /// - Throws: `RecurError.invalidArgument` when `numWords` is below 2.
    public init<Sequences: Sequence>(fitting sequences: Sequences, numWords: Int? = nil) throws
    where Sequences.Element: Sequence, Sequences.Element.Element == String {
        var counter = TokenCounter<String>()
        for sequence in sequences {
            for token in sequence where !token.isEmpty && token != Self.outOfVocabularyToken {
                counter.add(token)
            }
        }
        try self.init(counter: counter, numWords: numWords, describe: { $0 })
    }

    /// Fits a vocabulary to texts split by `tokenizer` (Keras `Tokenizer.fit_on_texts`).
    /// See `init(fitting:numWords:)` for the ordering and `numWords`.
    public init(fittingTexts texts: some Sequence<String>, tokenizer: some Tokenizer, numWords: Int? = nil) throws {
        try self.init(fitting: texts.lazy.map { tokenizer.tokens(in: $0) }, numWords: numWords)
    }

    /// Builds the vocabulary from tokens counted in first-appearance order; `describe` turns a
    /// counted key into its token text.
    init<Key>(counter: TokenCounter<Key>, numWords: Int?, describe: (Key) -> String) throws {
        if let numWords, numWords < 2 {
            throw RecurError.invalidArgument(
                operation: "Vocabulary", detail: "numWords \(numWords) leaves no room for padding and <OOV> (minimum 2)")
        }
        // Sort by descending count; equal counts keep first-appearance order. Swift's sort is not
        // documented as stable, so the tie-break is explicit.
        let order = counter.counts.indices.sorted { left, right in
            let leftCount = counter.counts[left]
            let rightCount = counter.counts[right]
            return leftCount != rightCount ? leftCount > rightCount : left < right
        }
        let kept = numWords.map { min($0 - Int(Self.firstWordID), order.count) } ?? order.count
        try self.init(words: order.prefix(kept).map { describe(counter.keys[$0]) })
    }

    /// The id of `token`, or 1 (`<OOV>`) when the vocabulary doesn't hold it.
    public func id(of token: String) -> Int32 {
        idsByToken[token] ?? Self.outOfVocabularyID
    }

    /// The ids of `tokens`; unknown tokens become 1 (`<OOV>`). Keras `texts_to_sequences`.
    public func encode(_ tokens: some Sequence<String>) -> [Int32] {
        tokens.map { id(of: $0) }
    }

    /// The ids of the tokens `tokenizer` finds in `text`.
    public func encode(_ text: String, tokenizer: some Tokenizer) -> [Int32] {
        encode(tokenizer.tokens(in: text))
    }

    /// The ids of each text's tokens, one sequence per text.
    public func encode(texts: some Sequence<String>, tokenizer: some Tokenizer) -> [[Int32]] {
        texts.map { encode($0, tokenizer: tokenizer) }
    }

    /// The tokens of `ids`, with padding (id 0) left out and `<OOV>` for id 1. (Keras's
    /// `sequences_to_texts` writes the OOV token for id 0 too; dropping padding is what a reader
    /// of a padded sequence wants.)
    ///
    /// - Throws: `RecurError.invalidArgument` for an id outside `0 ..< count`.
    public func decode(_ ids: some Sequence<Int32>) throws -> [String] {
        var tokens: [String] = []
        for id in ids where id != Self.paddingID {
            guard id > 0 && Int(id) < count else {
                throw RecurError.invalidArgument(
                    operation: "Vocabulary.decode", detail: "id \(id) outside the vocabulary's 0..<\(count)")
            }
            tokens.append(self.tokens[Int(id)])
        }
        return tokens
    }

    public static func == (left: Vocabulary, right: Vocabulary) -> Bool {
        left.tokens == right.tokens
    }
}

// MARK: Serialisation

extension Vocabulary {
    /// The vocabulary as a JSON array of strings, the token of id `i` at index `i`:
    /// `["", "<OOV>", "the", "and", …]`. JSON rather than one token a line because character
    /// vocabularies hold the newline as a token. Suitable for checkpoint metadata.
    public var serialized: String {
        "[" + tokens.map(SafeTensorsJSON.quoted).joined(separator: ",") + "]"
    }

    /// Reads a vocabulary written by `serialized`.
    ///
    /// - Throws: `RecurError.malformed` when `text` is not a JSON array of strings starting with
    ///   `""` and `"<OOV>"`, or lists a word twice.
    public init(serialized text: String) throws {
        let source = "serialized vocabulary"
        let value: SafeTensorsJSON
        do {
            value = try SafeTensorsJSON.parse(Array(text.utf8)[...])
        } catch {
            throw RecurError.malformed(source: source, detail: "invalid JSON at byte \(error.offset): \(error.reason)")
        }
        guard case let .array(elements) = value else {
            throw RecurError.malformed(source: source, detail: "expected a JSON array of tokens")
        }
        var tokens: [String] = []
        tokens.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case let .string(token) = element else {
                throw RecurError.malformed(source: source, detail: "element \(index) is not a string")
            }
            tokens.append(token)
        }
        guard tokens.count >= 2, tokens[0] == Self.paddingToken, tokens[1] == Self.outOfVocabularyToken else {
            throw RecurError.malformed(
                source: source, detail: "the first two tokens must be \"\" (padding) and \"\(Self.outOfVocabularyToken)\"")
        }
        do {
            try self.init(words: Array(tokens[2...]))
        } catch let RecurError.invalidArgument(_, detail) {
            throw RecurError.malformed(source: source, detail: detail)
        }
    }
}

// MARK: Counting

/// Token counts in first-appearance order: `keys[i]` was the i-th distinct token seen and
/// appeared `counts[i]` times. Generic so that a character stream can count `Unicode.Scalar`s
/// without making a `String` per character.
struct TokenCounter<Key: Hashable> {
    private(set) var keys: [Key] = []
    private(set) var counts: [Int] = []
    private var slots: [Key: Int] = [:]

    mutating func add(_ key: Key, count: Int = 1) {
        if let slot = slots[key] {
            counts[slot] += count
        } else {
            slots[key] = keys.count
            keys.append(key)
            counts.append(count)
        }
    }
}
