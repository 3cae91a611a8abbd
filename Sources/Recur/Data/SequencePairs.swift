// Pairs of token sequences for sequence-to-sequence models (translation, grapheme to phoneme):
// `source<TAB>target` files, the references of each source kept together, a held-out split by
// source, vocabularies with start and end markers, and padded time-major batches.
//
// The rules here (line format, split, vocabulary order) are also written out in
// tools/g2p_pytorch.py, so that the PyTorch reference trains and scores on exactly the same data.
//
// Shape legend: S source steps, T target steps (start and end markers included), B batch.

/// How one side of a pair file is split into tokens. The raw values are the names a command
/// line uses (`character`, `word`).
public enum PairTokenizer: String, Sendable, CaseIterable, Codable, Tokenizer {
    /// Every Unicode scalar is a token, as `CharacterTokenizer` splits (no lowercasing): a word's
    /// spelling.
    case character
    /// Tokens separated by whitespace, kept exactly as written: no lowercasing and no punctuation
    /// filter (unlike `WordTokenizer`), so phone strings such as `AH B AE D IY` keep their phones.
    case word

    /// The tokens of `text`, in order.
    /// - Parameter text: one side of a pair.
    public func tokens(in text: String) -> [String] {
        switch self {
        case .character:
            text.unicodeScalars.map { String($0) }
        case .word:
            text.unicodeScalars.split(whereSeparator: { $0.properties.isWhitespace }).map { String($0) }
        }
    }
}

/// One source text and one target text, as a pair file's line or a synthetic task gives them.
public struct SequencePair: Sendable, Equatable, Hashable {
    /// The input side.
    public var source: String
    /// The output side.
    public var target: String

    /// - Parameters:
    ///   - source: the input side.
    ///   - target: the output side.
    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }
}

/// Pairs grouped by source: every source once, with all of its targets as references.
///
/// A file lists one pair a line, `source<TAB>target`; a source with several acceptable targets
/// (a word with two pronunciations) has several lines, adjacent or not. Training uses every
/// (source, reference) pair; scoring counts an output right when it equals any reference of its
/// source (`SequenceMetricSums`).
///
/// The file rules: UTF-8 (a leading byte-order mark is dropped), lines split on LF with a CR
/// before it dropped, empty lines skipped; every other line holds exactly one tab, and both sides
/// have at least one token. A line that breaks a rule is a `RecurError.malformed` naming the file
/// and line.
///
/// ```swift
/// let pairs = try SequencePairs(contentsOf: "g014b2b.train", targetTokenizer: .word)
/// let split = try pairs.split(validationFraction: 0.05, seed: 0)
/// let training = try EncodedSequencePairs(fitting: split.training)
/// let validation = EncodedSequencePairs(split.validation, vocabulariesOf: training)
/// ```
public struct SequencePairs: Sendable, Equatable {
    /// One source and its references.
    public struct Group: Sendable, Equatable {
        /// The source text exactly as written: the key that groups lines and splits data.
        public var source: String
        /// The source's tokens.
        public var sourceTokens: [String]
        /// The tokens of each target listed for this source, in the order given.
        public var references: [[String]]
    }

    /// The groups, in the order their sources first appear.
    public private(set) var groups: [Group]
    /// How sources were split into tokens.
    public let sourceTokenizer: PairTokenizer
    /// How targets were split into tokens.
    public let targetTokenizer: PairTokenizer

    /// The number of sources.
    public var count: Int { groups.count }
    /// The number of (source, reference) pairs: the training examples.
    public var pairCount: Int { groups.reduce(0) { $0 + $1.references.count } }

    /// Reads a pair file.
    ///
    /// - Parameters:
    ///   - path: the file, `source<TAB>target` a line.
    ///   - sourceTokenizer: how sources split into tokens (default characters).
    ///   - targetTokenizer: how targets split into tokens (default characters).
    /// - Throws: `RecurError.io` when the file can't be read; `RecurError.malformed` with source
    ///   `path:line` for a line that is not UTF-8, lacks the tab, has more than one, or has an
    ///   empty side, and with source `path` for a file without pairs.
    public init(contentsOf path: String, sourceTokenizer: PairTokenizer = .character,
                targetTokenizer: PairTokenizer = .character) throws {
        let bytes = try FileBytes.read(contentsOf: path)
        try self.init(bytes: droppingByteOrderMark(bytes), name: path,
                      sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer)
    }

    /// Reads pairs from text laid out as a pair file.
    ///
    /// - Parameters:
    ///   - text: the lines, `source<TAB>target` each.
    ///   - name: what error messages call the text, in place of a file name.
    ///   - sourceTokenizer: how sources split into tokens (default characters).
    ///   - targetTokenizer: how targets split into tokens (default characters).
    /// - Throws: `RecurError.malformed` as `init(contentsOf:sourceTokenizer:targetTokenizer:)`.
    public init(text: String, name: String = "pairs", sourceTokenizer: PairTokenizer = .character,
                targetTokenizer: PairTokenizer = .character) throws {
        try self.init(bytes: Array(text.utf8)[...], name: name,
                      sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer)
    }

    /// Groups pairs given in memory (a synthetic task's), with the rules of a file's lines: pair
    /// `i` is line `i + 1` in messages, and a tab or line break inside a side is malformed.
    ///
    /// - Parameters:
    ///   - pairs: the pairs, in order.
    ///   - name: what error messages call the pairs, in place of a file name.
    ///   - sourceTokenizer: how sources split into tokens (default characters).
    ///   - targetTokenizer: how targets split into tokens (default characters).
    /// - Throws: `RecurError.malformed` for an empty side, a side holding a tab or line break, or
    ///   no pairs at all.
    public init(pairs: [SequencePair], name: String = "pairs", sourceTokenizer: PairTokenizer = .character,
                targetTokenizer: PairTokenizer = .character) throws {
        self.sourceTokenizer = sourceTokenizer
        self.targetTokenizer = targetTokenizer
        groups = []
        var builder = GroupBuilder()
        for (index, pair) in pairs.enumerated() {
            let place = "\(name):\(index + 1)"
            for side in [pair.source, pair.target] where side.contains(where: { $0 == "\t" || $0.isNewline }) {
                throw RecurError.malformed(source: place, detail: "a side holds a tab or a line break: '\(side)'")
            }
            try builder.add(source: pair.source, target: pair.target, place: place,
                            sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer)
        }
        groups = try builder.finished(name: name)
    }

    private init(bytes: ArraySlice<UInt8>, name: String, sourceTokenizer: PairTokenizer,
                 targetTokenizer: PairTokenizer) throws {
        self.sourceTokenizer = sourceTokenizer
        self.targetTokenizer = targetTokenizer
        var builder = GroupBuilder()
        for line in splitLines(bytes) where !line.bytes.isEmpty {
            let place = "\(name):\(line.number)"
            guard let text = String(validating: line.bytes, as: UTF8.self) else {
                throw RecurError.malformed(source: place, detail: "not valid UTF-8")
            }
            let fields = text.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 2 else {
                let detail = fields.count == 1
                    ? "no tab: expected source<TAB>target"
                    : "\(fields.count - 1) tabs: expected exactly one, between source and target"
                throw RecurError.malformed(source: place, detail: detail)
            }
            try builder.add(source: String(fields[0]), target: String(fields[1]), place: place,
                            sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer)
        }
        groups = try builder.finished(name: name)
    }

    private init(groups: [Group], sourceTokenizer: PairTokenizer, targetTokenizer: PairTokenizer) {
        self.groups = groups
        self.sourceTokenizer = sourceTokenizer
        self.targetTokenizer = targetTokenizer
    }

    /// Collects groups keyed by source text, in first-appearance order.
    private struct GroupBuilder {
        var groups: [Group] = []
        var indexBySource: [String: Int] = [:]

        mutating func add(source: String, target: String, place: String,
                          sourceTokenizer: PairTokenizer, targetTokenizer: PairTokenizer) throws {
            let targetTokens = targetTokenizer.tokens(in: target)
            if let index = indexBySource[source] {
                guard !targetTokens.isEmpty else { throw RecurError.malformed(source: place, detail: "empty target") }
                groups[index].references.append(targetTokens)
                return
            }
            let sourceTokens = sourceTokenizer.tokens(in: source)
            guard !sourceTokens.isEmpty else { throw RecurError.malformed(source: place, detail: "empty source") }
            guard !targetTokens.isEmpty else { throw RecurError.malformed(source: place, detail: "empty target") }
            indexBySource[source] = groups.count
            groups.append(Group(source: source, sourceTokens: sourceTokens, references: [targetTokens]))
        }

        func finished(name: String) throws -> [Group] {
            guard !groups.isEmpty else { throw RecurError.malformed(source: name, detail: "no pairs") }
            return groups
        }
    }
}

// MARK: Split by source

/// The two sides of `SequencePairs.split(validationFraction:seed:)`.
public struct SequencePairSplit: Sendable, Equatable {
    /// The sources that train, with all their references.
    public var training: SequencePairs
    /// The held-out sources, with all their references.
    public var validation: SequencePairs
}

extension SequencePairs {
    /// Holds out sources for validation: each source goes to validation when
    /// `isValidation(source:fraction:seed:)` says so, with every one of its references, so no
    /// word is seen in training with one pronunciation and scored on another. Group order is kept
    /// on both sides.
    ///
    /// - Parameters:
    ///   - validationFraction: the expected fraction of sources held out, strictly between 0 and 1.
    ///   - seed: which sources; the same seed and fraction give the same split of the same sources.
    /// - Throws: `RecurError.invalidArgument` when the fraction is not strictly between 0 and 1 or
    ///   a side ends up without sources.
    public func split(validationFraction: Double, seed: UInt64) throws -> SequencePairSplit {
        let operation = "SequencePairs.split"
        guard validationFraction > 0 && validationFraction < 1 else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "validation fraction \(validationFraction) is not strictly between 0 and 1")
        }
        var training: [Group] = []
        var validation: [Group] = []
        for group in groups {
            if Self.isValidation(source: group.source, fraction: validationFraction, seed: seed) {
                validation.append(group)
            } else {
                training.append(group)
            }
        }
        guard !training.isEmpty && !validation.isEmpty else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(count) sources split with fraction \(validationFraction) and seed \(seed) leave "
                    + "\(training.count) for training and \(validation.count) for validation: a side is empty")
        }
        return SequencePairSplit(
            training: SequencePairs(groups: training, sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer),
            validation: SequencePairs(groups: validation, sourceTokenizer: sourceTokenizer, targetTokenizer: targetTokenizer))
    }

    /// Whether `source` is held out: with h the 64-bit FNV-1a hash of the source's UTF-8 bytes,
    /// the first draw of SplitMix64 seeded with h XOR `seed`, as a number in [0, 1) from its top
    /// 53 bits, is below `fraction`.
    ///
    /// Each source decides alone, so a word's side does not depend on the other words of the file
    /// or their order, and a reader that streams the file can split it line by line. The count
    /// held out is close to, not exactly, `fraction` of the sources. tools/g2p_pytorch.py
    /// computes the same rule.
    ///
    /// - Parameters:
    ///   - source: the source text as written in the pair file.
    ///   - fraction: the expected fraction held out.
    ///   - seed: the split's seed.
    public static func isValidation(source: String, fraction: Double, seed: UInt64) -> Bool {
        var random = SeededRandom(seed: fnv1a64(source.utf8) ^ seed)
        return random.unit() < fraction
    }

    /// FNV-1a, 64 bits (Fowler, Noll, Vo): a hash that is the same on every platform and run,
    /// unlike `Hasher`, which is seeded per process.
    static func fnv1a64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}

// MARK: Vocabulary

/// Token ids for one side of a sequence-to-sequence model: four reserved ids, then the tokens.
///
/// - 0 padding (`<pad>`), never a token; batches pad with it and metrics skip it;
/// - 1 unknown (`<unk>`): every token outside the vocabulary encodes to it;
/// - 2 start (`<s>`): the decoder's first input;
/// - 3 end (`</s>`): the decoder's last output, which ends decoding;
/// - 4, 5, … the tokens of the fitting sequences by descending count, equal counts in order of
///   first appearance (the order of `Vocabulary`).
///
/// The reserved ids are positions, not tokens: a data token spelled `<s>` gets an id of its own.
public struct SequenceVocabulary: Sendable, Equatable, CustomStringConvertible {
    /// The id of padding.
    public static let paddingID: Int32 = 0
    /// The id every token outside the vocabulary encodes to.
    public static let unknownID: Int32 = 1
    /// The id of the start marker, the decoder's first input.
    public static let startID: Int32 = 2
    /// The id of the end marker, the last id of every target.
    public static let endID: Int32 = 3
    /// The id of the most frequent token.
    public static let firstTokenID: Int32 = 4
    /// The names `tokens` lists for ids 0 … 3.
    public static let reservedNames = ["<pad>", "<unk>", "<s>", "</s>"]

    /// The name of every id: `reservedNames`, then the tokens from id 4 on.
    public let tokens: [String]
    private let idsByToken: [String: Int32]

    /// The number of ids, reserved ones included: the embedding's and the output layer's size.
    public var count: Int { tokens.count }

    public var description: String { "SequenceVocabulary(\(count) ids: 4 reserved, \(count - 4) tokens)" }

    /// A vocabulary of `tokens`, which get ids 4, 5, … in the order given.
    ///
    /// - Parameter tokens: the tokens, each once.
    /// - Throws: `RecurError.invalidArgument` for an empty token or one listed twice.
    public init(tokens: [String]) throws {
        var names = Self.reservedNames
        var idsByToken: [String: Int32] = [:]
        idsByToken.reserveCapacity(tokens.count)
        for token in tokens {
            guard !token.isEmpty else {
                throw RecurError.invalidArgument(operation: "SequenceVocabulary", detail: "empty token at id \(names.count)")
            }
            guard idsByToken.updateValue(Int32(names.count), forKey: token) == nil else {
                throw RecurError.invalidArgument(operation: "SequenceVocabulary", detail: "token '\(token)' listed twice")
            }
            names.append(token)
        }
        self.tokens = names
        self.idsByToken = idsByToken
    }

    /// Fits a vocabulary to token sequences: every distinct non-empty token gets an id, the most
    /// frequent first, equal counts in order of first appearance.
    ///
    /// - Parameter sequences: the token sequences (a training part's sources, or its references).
    /// - Throws: never for tokens from a `PairTokenizer`; `RecurError.invalidArgument` only as
    ///   `init(tokens:)` would.
    public init<Sequences: Sequence>(fitting sequences: Sequences) throws
    where Sequences.Element: Sequence, Sequences.Element.Element == String {
        var counter = TokenCounter<String>()
        for sequence in sequences {
            for token in sequence where !token.isEmpty { counter.add(token) }
        }
        // Descending count, ties by first appearance; spelled out because Swift's sort is not
        // promised to be stable.
        let order = counter.counts.indices.sorted { left, right in
            counter.counts[left] != counter.counts[right] ? counter.counts[left] > counter.counts[right] : left < right
        }
        try self.init(tokens: order.map { counter.keys[$0] })
    }

    /// The id of `token`, or `unknownID` when the vocabulary doesn't hold it.
    /// - Parameter token: a token.
    public func id(of token: String) -> Int32 {
        idsByToken[token] ?? Self.unknownID
    }

    /// The ids of `tokens`, without markers; unknown tokens become `unknownID`.
    /// - Parameter tokens: the tokens, in order.
    public func encode(_ tokens: some Sequence<String>) -> [Int32] {
        tokens.map { id(of: $0) }
    }

    /// The tokens of a decoder's output: up to the first end marker (excluded), with padding and
    /// start markers left out and `<unk>` for the unknown id.
    ///
    /// - Parameter ids: the ids, as a decoder produced them.
    /// - Throws: `RecurError.invalidArgument` for an id outside `0 ..< count`.
    public func decode(_ ids: some Sequence<Int32>) throws -> [String] {
        var tokens: [String] = []
        for id in ids {
            guard id >= 0 && Int(id) < count else {
                throw RecurError.invalidArgument(
                    operation: "SequenceVocabulary.decode", detail: "id \(id) outside the vocabulary's 0..<\(count)")
            }
            if id == Self.endID { break }
            if id == Self.paddingID || id == Self.startID { continue }
            tokens.append(self.tokens[Int(id)])
        }
        return tokens
    }
}

// MARK: Encoded pairs and batches

/// One (source, reference) training example of `EncodedSequencePairs`.
public struct PairExample: Sendable, Equatable, Hashable {
    /// The group: the index of the source.
    public var group: Int
    /// Which of the group's references.
    public var reference: Int
}

/// A batch of pairs, time-major and padded with 0 after each sequence's ids.
///
/// The target holds the start marker, the target's ids and the end marker: a decoder reads
/// rows `0 ..< T - 1` as its inputs (teacher forcing) and is scored on rows `1 ..< T`, so
/// `targetLengths - 1` ids of each column are predicted, the end marker included.
public struct SequencePairBatch: Sendable, Equatable {
    /// The sources, `[S, B]`, with `lengths` the real ids of each.
    public var source: SequenceBatch
    /// The targets with their markers, `[T, B]`, with `lengths` counting the markers.
    public var target: SequenceBatch
    /// The group each column came from, for scoring against all its references. `[B]`
    public var groups: [Int]

    /// `[S, B]`.
    public var sourceShape: Shape { [source.steps, source.batchSize] }
    /// `[T, B]`.
    public var targetShape: Shape { [target.steps, target.batchSize] }
}

/// Sequence pairs as ids, ready to batch: the sources once per group, the references per group,
/// and the training examples, one per (source, reference).
///
/// Batches are built on demand from example indices (a `MiniBatchPlan`'s), so a pass holds one
/// padded batch at a time, not the whole padded data set.
public struct EncodedSequencePairs: Sendable, Equatable {
    /// The source side's ids.
    public let sourceVocabulary: SequenceVocabulary
    /// The target side's ids.
    public let targetVocabulary: SequenceVocabulary
    /// Each group's source ids, without markers. `[groups][S_g]`
    public let sources: [[Int32]]
    /// Each group's references' ids, without markers. `[groups][references][T_r]`
    public let references: [[[Int32]]]
    /// The training examples: every (group, reference), in group order.
    public let examples: [PairExample]

    /// The number of training examples.
    public var count: Int { examples.count }

    /// Encodes pairs with vocabularies fitted to them: the training part's own.
    ///
    /// - Parameter pairs: the training pairs.
    /// - Throws: never for pairs from `SequencePairs`' readers; see `SequenceVocabulary.init(fitting:)`.
    public init(fitting pairs: SequencePairs) throws {
        let sourceVocabulary = try SequenceVocabulary(fitting: pairs.groups.lazy.map(\.sourceTokens))
        let targetVocabulary = try SequenceVocabulary(fitting: pairs.groups.lazy.flatMap(\.references))
        self.init(pairs, sourceVocabulary: sourceVocabulary, targetVocabulary: targetVocabulary)
    }

    /// Encodes pairs with the vocabularies of `fitted` (validation and test data with the
    /// training part's ids; their unseen tokens become `unknownID`).
    ///
    /// - Parameters:
    ///   - pairs: the pairs to encode.
    ///   - fitted: the encoded training part whose vocabularies to use.
    public init(_ pairs: SequencePairs, vocabulariesOf fitted: EncodedSequencePairs) {
        self.init(pairs, sourceVocabulary: fitted.sourceVocabulary, targetVocabulary: fitted.targetVocabulary)
    }

    /// Encodes pairs with the vocabularies given.
    ///
    /// - Parameters:
    ///   - pairs: the pairs to encode.
    ///   - sourceVocabulary: the ids of source tokens.
    ///   - targetVocabulary: the ids of target tokens.
    public init(_ pairs: SequencePairs, sourceVocabulary: SequenceVocabulary, targetVocabulary: SequenceVocabulary) {
        self.sourceVocabulary = sourceVocabulary
        self.targetVocabulary = targetVocabulary
        sources = pairs.groups.map { sourceVocabulary.encode($0.sourceTokens) }
        references = pairs.groups.map { group in group.references.map { targetVocabulary.encode($0) } }
        var examples: [PairExample] = []
        for (group, references) in references.enumerated() {
            for reference in references.indices { examples.append(PairExample(group: group, reference: reference)) }
        }
        self.examples = examples
    }

    /// The training examples at `indices` (positions in `examples`) as one batch.
    ///
    /// - Parameter indices: example indices, at least one.
    public func batch(_ indices: some Collection<Int>) -> SequencePairBatch {
        precondition(!indices.isEmpty, "a batch holds at least one example")
        let chosen = indices.map { examples[$0] }
        let targets = chosen.map { [SequenceVocabulary.startID] + references[$0.group][$0.reference] + [SequenceVocabulary.endID] }
        return SequencePairBatch(source: Self.timeMajor(chosen.map { sources[$0.group] }),
                                 target: Self.timeMajor(targets), groups: chosen.map(\.group))
    }

    /// The sources of the groups at `groups`, one column each, for decoding and scoring against
    /// `references`.
    ///
    /// - Parameter groups: group indices, at least one.
    public func sourceBatch(groups: some Collection<Int>) -> SequenceBatch {
        precondition(!groups.isEmpty, "a batch holds at least one source")
        return Self.timeMajor(groups.map { sources[$0] })
    }

    /// Id sequences as one time-major batch, padded with 0 after each: `[T, B]` with T the
    /// longest sequence. Use it for sources that come without targets (lines read one chunk at a
    /// time for translation).
    ///
    /// - Parameter sequences: the id sequences, at least one.
    public static func timeMajor(_ sequences: [[Int32]]) -> SequenceBatch {
        precondition(!sequences.isEmpty, "a batch holds at least one sequence")
        let batchSize = sequences.count
        let steps = sequences.map(\.count).max() ?? 0
        var ids = [Int32](repeating: SequenceVocabulary.paddingID, count: steps * batchSize)  // [T, B]
        for (b, sequence) in sequences.enumerated() {
            for (t, id) in sequence.enumerated() { ids[t * batchSize + b] = id }
        }
        return SequenceBatch(ids: ids, lengths: sequences.map(\.count), steps: steps)
    }
}
