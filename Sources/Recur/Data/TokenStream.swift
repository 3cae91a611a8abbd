// Plain text as one long stream of token ids, for next-token language models.
//
// Shape legend: T steps per window (sequenceLength), B parallel streams (batchSize),
// L ids per stream.

/// A text as one stream of token ids, with its vocabulary: the input of a language model.
public struct TokenStream: Sendable, Equatable {
    /// The ids, in text order.
    public var ids: [Int32]
    /// The vocabulary the ids index.
    public var vocabulary: Vocabulary

    public init(ids: [Int32], vocabulary: Vocabulary) {
        self.ids = ids
        self.vocabulary = vocabulary
    }

    /// The number of ids.
    public var count: Int { ids.count }

    /// The ids in `range`, with the same vocabulary (for a validation tail, use
    /// `ValidationSplit(count:validationFraction:)`).
    public func slice(_ range: Range<Int>) -> TokenStream {
        TokenStream(ids: Array(ids[range]), vocabulary: vocabulary)
    }

    /// Next-token batches of this stream (see `LanguageModelBatches`).
    public func batches(sequenceLength: Int, batchSize: Int) throws -> LanguageModelBatches {
        try LanguageModelBatches(ids: ids, sequenceLength: sequenceLength, batchSize: batchSize)
    }
}

// MARK: Reading

extension TokenStream {
    /// The characters of the file at `path` as ids: every Unicode scalar one token, newlines
    /// included (`CharacterTokenizer`). A file that is not valid UTF-8 is read as Windows-1252.
    ///
    /// - Parameters:
    ///   - path: the text file to read.
    ///   - lowercases: lowercase the text first (default `false`).
    ///   - vocabulary: encode with this vocabulary (a trained model's); `nil` fits one to the
    ///     text (see `Vocabulary.init(fitting:numWords:)` for the id order).
    ///   - numWords: when fitting, keep the ids below this (padding and OOV included).
    public static func characters(
        contentsOf path: String, lowercases: Bool = false, vocabulary: Vocabulary? = nil, numWords: Int? = nil
    ) throws -> TokenStream {
        try characters(in: readText(path), lowercases: lowercases, vocabulary: vocabulary, numWords: numWords)
    }

    /// The characters of `text` as ids; see `characters(contentsOf:lowercases:vocabulary:numWords:)`.
    public static func characters(
        in text: String, lowercases: Bool = false, vocabulary: Vocabulary? = nil, numWords: Int? = nil
    ) throws -> TokenStream {
        // Works on scalars rather than `CharacterTokenizer`'s strings: a megabyte of text would
        // otherwise make a million one-character strings. The ids are the same.
        let scalars = (lowercases ? text.lowercased() : text).unicodeScalars
        let vocabulary = try vocabulary ?? fittedCharacterVocabulary(scalars, numWords: numWords)

        var asciiIDs = [Int32](repeating: Vocabulary.outOfVocabularyID, count: 128)
        var otherIDs: [Unicode.Scalar: Int32] = [:]
        for (offset, word) in vocabulary.words.enumerated() {
            let wordScalars = word.unicodeScalars
            guard wordScalars.count == 1, let scalar = wordScalars.first else { continue }
            let id = Vocabulary.firstWordID + Int32(offset)
            if scalar.isASCII { asciiIDs[Int(scalar.value)] = id } else { otherIDs[scalar] = id }
        }
        var ids: [Int32] = []
        ids.reserveCapacity(text.utf8.count)
        for scalar in scalars {
            ids.append(scalar.isASCII
                ? asciiIDs[Int(scalar.value)]
                : otherIDs[scalar] ?? Vocabulary.outOfVocabularyID)
        }
        return TokenStream(ids: ids, vocabulary: vocabulary)
    }

    private static func fittedCharacterVocabulary(_ scalars: String.UnicodeScalarView, numWords: Int?) throws -> Vocabulary {
        var counter = TokenCounter<Unicode.Scalar>()
        for scalar in scalars { counter.add(scalar) }
        return try Vocabulary(counter: counter, numWords: numWords, describe: { String($0) })
    }

    /// The words of the file at `path` as ids, split by `tokenizer` (line breaks separate words
    /// and leave no token). A file that is not valid UTF-8 is read as Windows-1252.
    ///
    /// - Parameters:
    ///   - path: the text file to read.
    ///   - tokenizer: splits the text into words (Keras's `Tokenizer` defaults).
    ///   - vocabulary: encode with this vocabulary; `nil` fits one to the text.
    ///   - numWords: when fitting, keep the ids below this (padding and OOV included).
    public static func words(
        contentsOf path: String, tokenizer: WordTokenizer = WordTokenizer(), vocabulary: Vocabulary? = nil,
        numWords: Int? = nil
    ) throws -> TokenStream {
        let tokens = tokenizer.tokens(in: try readText(path))
        let vocabulary = try vocabulary ?? Vocabulary(fitting: [tokens], numWords: numWords)
        return TokenStream(ids: vocabulary.encode(tokens), vocabulary: vocabulary)
    }

    private static func readText(_ path: String) throws -> String {
        decodedText(try FileBytes.read(contentsOf: path))
    }

    /// A file's bytes as text: without a byte-order mark, UTF-8 if valid, else Windows-1252.
    static func decodedText(_ fileBytes: [UInt8]) -> String {
        let bytes = droppingByteOrderMark(fileBytes)
        return TextEncoding.detect(bytes).decode(bytes)
    }
}

// MARK: Batching

/// Next-token prediction batches of one id stream, in the layout of truncated backpropagation
/// through time (char-rnn, PyTorch's word-language-model example):
///
/// The stream is cut into B equal parallel streams of L = ⌊(n − 1) / B⌋ ids each: stream b holds
/// ids `b·L ..< (b+1)·L`. Batch k holds steps `k·T ..< (k+1)·T` of every stream; targets are the
/// inputs shifted one id ahead in the original stream. Batch k+1 continues batch k in every
/// column, so a model may carry its hidden state from one batch to the next. The ⌊L / T⌋ batches
/// leave out the last `L mod T` ids of each stream and the stream's last `(n − 1) mod B` ids.
public struct LanguageModelBatches: RandomAccessCollection, Sendable {
    /// One window of every parallel stream.
    public struct Batch: Sendable, Equatable {
        /// `inputs[t * batchSize + b]` is step t of stream b. `[T, B]`
        public var inputs: [Int32]
        /// The id following each input. `[T, B]`
        public var targets: [Int32]
    }

    /// T, the steps per batch.
    public let sequenceLength: Int
    /// B, the number of parallel streams.
    public let batchSize: Int
    /// L, the ids of each parallel stream.
    public let streamLength: Int
    private let ids: [Int32]

    /// - Throws: `RecurError.invalidArgument` for a sequence length or batch size below 1, or a
    ///   stream too short to fill one batch (it needs `T · B + 1` ids).
    public init(ids: [Int32], sequenceLength: Int, batchSize: Int) throws {
        guard sequenceLength >= 1, batchSize >= 1 else {
            throw RecurError.invalidArgument(
                operation: "LanguageModelBatches",
                detail: "sequence length \(sequenceLength) and batch size \(batchSize) must be at least 1")
        }
        let streamLength = Swift.max(ids.count - 1, 0) / batchSize
        guard streamLength >= sequenceLength else {
            throw RecurError.invalidArgument(
                operation: "LanguageModelBatches",
                detail: "\(ids.count) ids are too few for one batch of \(sequenceLength) steps × \(batchSize) streams "
                    + "(need \(sequenceLength * batchSize + 1))")
        }
        self.ids = ids
        self.sequenceLength = sequenceLength
        self.batchSize = batchSize
        self.streamLength = streamLength
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { streamLength / sequenceLength }

    public subscript(position: Int) -> Batch {
        precondition(indices.contains(position), "batch \(position) outside 0..<\(endIndex)")
        var inputs = [Int32](repeating: 0, count: sequenceLength * batchSize)  // [T, B]
        var targets = inputs  // [T, B]
        for b in 0..<batchSize {
            let start = b * streamLength + position * sequenceLength
            for t in 0..<sequenceLength {
                inputs[t * batchSize + b] = ids[start + t]
                targets[t * batchSize + b] = ids[start + t + 1]
            }
        }
        return Batch(inputs: inputs, targets: targets)
    }
}
