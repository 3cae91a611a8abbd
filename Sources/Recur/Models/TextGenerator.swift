// Sampling text from a trained language model one token at a time: the prime runs through the
// model once, then each sampled token is fed back with the recurrent state carried over, so
// each new token costs one step, not a pass over everything generated so far.
//
// Shape legend: V vocabulary, D embedding width, H hidden units, L layers.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Generates text from a `ModelTask.lm` model: Embedding → unidirectional RecurrentLayer →
/// [Dropout] → Dense(V), or any `Sequential` that reads ids, carries its state in stateful layers
/// that can run one step at a time, and predicts the vocabulary.
public struct TextGenerator {
    /// The language model: Embedding → recurrent → [Dropout] → Dense(V).
    public let model: Sequential
    /// The ids of the tokens, as in training.
    public let vocabulary: Vocabulary
    /// Whether tokens are characters (joined as they are) or words (joined with spaces).
    public let tokenizer: DataSource.TokenizerKind

    /// - Throws: `RecurError.invalidArgument` when the model does not read ids, has no stateful
    ///   layer, predicts other than the vocabulary, or has a layer that cannot run forward one
    ///   step at a time (a bidirectional or many-to-one recurrent layer).
    public init(model: Sequential, vocabulary: Vocabulary, tokenizer: DataSource.TokenizerKind) throws {
        let operation = "TextGenerator"
        let stateful = model.statefulLayers
        guard let input = model.layers[0] as? any TokenInputLayer, !stateful.isEmpty else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "a language model is Embedding → recurrent (sequences) → Dense")
        }
        guard stateful.allSatisfy(\.continuesAcrossPasses) else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "a model generates one token at a time only with unidirectional recurrent layers that "
                    + "return every step")
        }
        guard model.outputFeatures == vocabulary.count, input.vocabularySize == vocabulary.count else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the model predicts \(model.outputFeatures ?? 0) ids, the vocabulary has \(vocabulary.count)")
        }
        self.model = model
        self.vocabulary = vocabulary
        self.tokenizer = tokenizer
    }

    /// The ids of `text` as the model's vocabulary encodes it (unknown tokens become OOV).
    public func encode(_ text: String) -> [Int32] {
        switch tokenizer {
        case .character: vocabulary.encode(text.unicodeScalars.map { String($0) })
        case .word: vocabulary.encode(text, tokenizer: WordTokenizer())
        }
    }

    /// The most tokens one call generates: a bound on the time a mistyped length can take.
    public static let maximumLength = 1_000_000

    /// Continues `prime` with `length` sampled tokens.
    /// - Parameters:
    ///   - prime: the text the model reads first; the generated tokens continue it.
    ///   - length: the tokens to sample, at most ``maximumLength``.
    ///   - temperature: divides the logits before the softmax: below 1 sharpens the distribution,
    ///     above 1 flattens it; must be positive.
    ///   - topK: sample only among the k most likely tokens; nil samples from all.
    ///   - seed: seeds the sampling.
    /// - Returns: the generated tokens only (not the prime), joined.
    public func generate(prime: String, length: Int, temperature: Float = 1, topK: Int? = nil,
                         seed: UInt64 = 0) throws -> String {
        var text = ""
        try generate(prime: prime, length: length, temperature: temperature, topK: topK, seed: seed) { piece in
            text += piece
        }
        return text
    }

    /// Continues `prime` with `length` sampled tokens, handing each to `emit` as soon as it is
    /// sampled (a character, or a word with the space before it after the first), so a long
    /// generation streams instead of building up in memory.
    public func generate(prime: String, length: Int, temperature: Float = 1, topK: Int? = nil,
                         seed: UInt64 = 0, emit: (String) throws -> Void) throws {
        let operation = "TextGenerator.generate"
        guard temperature > 0, temperature.isFinite else {
            throw RecurError.invalidArgument(operation: operation, detail: "temperature must be positive, got \(temperature)")
        }
        if let topK, topK < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "topK must be at least 1, got \(topK)")
        }
        guard (0...Self.maximumLength).contains(length) else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "length must be 0 ... \(Self.maximumLength), got \(length)")
        }
        let primeIDs = encode(prime)
        guard !primeIDs.isEmpty else {
            throw RecurError.invalidArgument(operation: operation, detail: "the prime text has no tokens")
        }
        var random = SeededRandom(seed: seed)
        var (logits, state) = try run(primeIDs, state: nil)
        let separator = tokenizer == .character ? "" : " "
        for index in 0..<length {
            let id = sample(logits, temperature: temperature, topK: topK, random: &random)
            let token = try vocabulary.decode([id])[0]
            try emit(index == 0 ? token : separator + token)
            if index + 1 < length { (logits, state) = try run([id], state: state) }
        }
    }

    /// Feeds `ids` (one sequence) from `state` (one per stateful layer); returns the last step's
    /// logits `[V]` and the states after it.
    private func run(_ ids: [Int32], state: [RecurrentState]?) throws -> ([Float], [RecurrentState]) {
        // One sequence: [T, 1] and [1, T] hold the ids in the same order.
        let shape: Shape = model.firstSequenceLayer?.batchFirst == true ? [1, ids.count] : [ids.count, 1]
        // Lengths as given (none), not from padding: every id fed is a real token.
        let logits = try model.forward(ids: ids, shape: shape, exactLengths: nil, padding: .post,
                                       initialStates: state, training: false)  // [T, 1, V]
        let all = try logits.toArray()
        return (Array(all[(all.count - vocabulary.count)...]), model.finalStates)
    }

    /// One id drawn from softmax(logits / temperature), restricted to the top k; never the
    /// padding id.
    private func sample(_ logits: [Float], temperature: Float, topK: Int?, random: inout SeededRandom) -> Int32 {
        var candidates = Array(logits.indices.dropFirst(Int(Vocabulary.paddingID) + 1))
        if let topK, topK < candidates.count {
            candidates.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            candidates = Array(candidates.prefix(topK))
        }
        let largest = candidates.map { logits[$0] }.max() ?? 0
        // exp((x − max) / T): the largest term is 1, so nothing overflows.
        let weights = candidates.map { exp(Double((logits[$0] - largest) / temperature)) }
        let total = weights.reduce(0, +)
        var target = random.unit() * total
        for (candidate, weight) in zip(candidates, weights) {
            target -= weight
            if target < 0 { return Int32(candidate) }
        }
        return Int32(candidates.last ?? 1)
    }
}

