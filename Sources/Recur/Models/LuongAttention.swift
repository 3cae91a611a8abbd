// Global attention inside the encoder–decoder (Luong, Pham, Manning 2015), as the model's
// decoder-output transform: every top-layer decoder output h_t attends over the encoder's
// outputs h̄_s, and the output layer reads the attentional state h̃_t instead of h_t.
//
//     c_t = Σ_s a_ts h̄_s,  a_t = softmax_s(score(h_t, h̄_s)) over the valid source steps
//     h̃_t = tanh(W_c [c_t; h_t] + b_c)
//
// Shape legend: T target steps the decoder ran, S source steps, B batch, K decoder hidden units,
// M encoder features.

/// Whether and how an ``EncoderDecoder`` attends over the encoder's outputs: the value of
/// ``EncoderDecoderSpecification/attention``, as checkpoints and the command line name it.
public enum DecoderAttention: String, Sendable, CaseIterable, Codable {
    /// No attention: the output layer reads the decoder's outputs (the plain model).
    case none
    /// Luong's dot score hᵀ h̄; needs K = M (the decoder as wide as the encoder's outputs).
    case dot
    /// Luong's general score hᵀ W_a h̄; any K and M.
    case general
    /// The additive (concat) score vᵀ tanh(W_q h + W_k h̄), on h_t as Luong places it.
    case additive

    /// The score kind of the ``Attention`` layer; nil for `.none`.
    public var kind: AttentionKind? {
        switch self {
        case .none: nil
        case .dot: .dot
        case .general: .general
        case .additive: .additive
        }
    }
}

/// Luong et al. (2015)'s global attention as a ``DecoderOutputTransform``: the context
/// c_t = Attention(h_t, encoder outputs, source lengths), masked over source padding, then the
/// attentional state h̃_t = tanh(W_c [c_t; h_t] + b_c), which the output layer reads (F = K).
///
/// The concatenation puts the context first: [c_t; h_t] has M context features, then K decoder
/// features, so `combine.weight` is `[K, M + K]`, its first M columns reading c_t.
///
/// Parameter names (under the model's `attention.` prefix): the score's, as ``Attention`` names
/// them (`score.weight` `[M, K]` for `.general`; `score.query.weight` `[M, K]`,
/// `score.key.weight` `[M, M]` and `score.v` `[M]` for `.additive`, whose attention size is M;
/// none for `.dot`), then `combine.weight` `[K, M + K]` and `combine.bias` `[K]` (W_c with a
/// bias, a ``Dense`` with tanh).
///
/// The scores read h_t, the decoder's output at the same step, for every kind. That is Luong's
/// placement; Bahdanau et al. (2015)'s original additive attention scores h_{t−1}, the state
/// before the step, and feeds the context into the step's input: that needs the decoder to run
/// step by step and is not what `.additive` does here. Luong's input feeding (h̃_{t−1} as part of
/// the next input) is the encoder–decoder's (``EncoderDecoderSpecification/inputFeeding``),
/// which then steps its decoder and this transform one target token at a time.
///
/// The dot score needs K = M; ``EncoderDecoderSpecification/validate()`` refuses other sizes
/// (use `.general`, which projects).
public final class LuongAttention: DecoderOutputTransform {
    /// The score and the context.
    public let attention: Attention
    /// W_c and b_c: `[c; h]` `[T, B, M + K]` → h̃ `[T, B, K]`, tanh.
    public let combine: Dense
    /// The device every part runs on.
    public let backend: any Backend
    /// K.
    public let decoderFeatures: Int
    /// M.
    public let memoryFeatures: Int
    private var awaitsBackward = false

    /// Makes the transform with initialised parameters and zero gradients.
    /// - Parameters:
    ///   - kind: the score.
    ///   - decoderFeatures: K, the features of a decoder output (the query).
    ///   - memoryFeatures: M, the features of an encoder output (the keys and values).
    ///   - seed: seeds the parameters: the score's, then W_c's and b_c's.
    ///   - backend: the device every part runs on.
    /// - Throws: `RecurError.invalidArgument` for sizes below 1, or a dot score with K ≠ M.
    public init(kind: AttentionKind, decoderFeatures: Int, memoryFeatures: Int, seed: UInt64,
                backend: any Backend) throws {
        var seeds = SeededRandom(seed: seed)
        attention = try Attention(kind: kind, querySize: decoderFeatures, keySize: memoryFeatures,
                                  seed: seeds.next(), backend: backend)
        combine = try Dense(inputSize: memoryFeatures + decoderFeatures, outputSize: decoderFeatures,
                            activation: .tanh, seed: seeds.next(), backend: backend)
        self.backend = backend
        self.decoderFeatures = decoderFeatures
        self.memoryFeatures = memoryFeatures
    }

    /// What the last forward left for its backward (the score's and W_c's), for a decoder that
    /// steps with input feeding and back-propagates through its steps in reverse.
    struct ForwardRecord {
        var attention: Attention.Cache?
        var combine: (inputs: [Tensor], output: Tensor)?
        var awaitsBackward: Bool
    }

    /// The record of the last forward; setting it makes the next backward that forward's.
    var forwardRecord: ForwardRecord {
        get {
            ForwardRecord(attention: attention.forwardRecord, combine: combine.forwardRecord,
                          awaitsBackward: awaitsBackward)
        }
        set {
            attention.forwardRecord = newValue.attention
            combine.forwardRecord = newValue.combine
            awaitsBackward = newValue.awaitsBackward
        }
    }

    /// `attention`.
    public var name: String { "attention" }

    /// The score's parameters under `score.`, then `combine.weight` and `combine.bias`.
    public var parameters: [NamedParameter] {
        attention.parameters(prefixedBy: "score") + combine.parameters(prefixedBy: "combine")
    }

    /// K: h̃ is as wide as the decoder's outputs.
    /// - Parameters:
    ///   - decoderFeatures: K.
    ///   - memoryFeatures: M.
    /// - Returns: K.
    public func outputFeatures(decoderFeatures: Int, memoryFeatures: Int) -> Int { decoderFeatures }

    /// The attention weights of the last forward pass, `[B, T, S]`: row (b, t) is target step t's
    /// distribution over the source steps of sequence b, 0 at padded steps.
    public var attentionWeights: Tensor? { attention.attentionWeights }

    /// h̃ = tanh(W_c [c; h] + b_c) with c the attention context of h over the valid source steps.
    /// - Parameters:
    ///   - decoderOutput: h, `[T, B, K]`.
    ///   - memory: the encoder's outputs `[S, B, M]` and the source lengths.
    ///   - training: unused (no dropout inside).
    /// - Returns: h̃, `[T, B, K]`.
    public func forward(decoderOutput: Tensor, memory: EncoderMemory, training: Bool) throws -> Tensor {
        try forward(decoderOutput: decoderOutput, memory: memory, select: { $0 })
    }

    /// h̃ at the scored places only: the context of every place (the scores are per source
    /// sequence), then W_c on the scored rows of c and h, the layer that costs most per place.
    /// - Parameters:
    ///   - decoderOutput: h, `[T, B, K]`.
    ///   - memory: the encoder's outputs `[S, B, M]` and the source lengths.
    ///   - rows: the scored places.
    ///   - training: unused (no dropout inside).
    /// - Returns: h̃ `[N, K]`.
    public func forward(decoderOutput: Tensor, memory: EncoderMemory, rows: ScoredRows, training: Bool) throws
        -> Tensor
    {
        try forward(decoderOutput: decoderOutput, memory: memory, select: rows.gather)
    }

    /// The forward of either kind: the context of every place, then W_c on the places `select`
    /// keeps of c and h.
    private func forward(decoderOutput: Tensor, memory: EncoderMemory, select: (Tensor) throws -> Tensor) throws
        -> Tensor
    {
        let context = try attention.forward(queries: decoderOutput, memory: memory.outputs,
                                            sourceLengths: memory.lengths, padding: .post)  // [T, B, M]
        // W_c [c; h] as W_c's context columns times c plus its decoder columns times h.
        awaitsBackward = true
        return try combine.forward(concatenating: [try select(context), try select(decoderOutput)])
    }

    /// Back-propagates dL/dh̃ `[N, K]` of the scored places through W_c and the attention.
    /// - Parameters:
    ///   - outputGradient: dL/dh̃ at the scored places, `[N, K]`.
    ///   - rows: the scored places of the forward.
    /// - Returns: dL/dh `[T, B, K]` and dL/d encoder outputs `[S, B, M]`, as ``backward(from:)``.
    public func backward(from outputGradient: Tensor, rows: ScoredRows) throws
        -> (decoderOutput: Tensor, memory: Tensor)
    {
        try backward(throughCombine: outputGradient, spread: rows.scatter)
    }

    /// Back-propagates dL/dh̃ through W_c and the attention, accumulating (+=) into every
    /// parameter gradient.
    /// - Parameter outputGradient: dL/dh̃, `[T, B, K]`.
    /// - Returns: dL/dh `[T, B, K]` (through W_c and through the scores) and dL/d encoder outputs
    ///   `[S, B, M]` (through the keys and the values).
    public func backward(from outputGradient: Tensor) throws -> (decoderOutput: Tensor, memory: Tensor) {
        try backward(throughCombine: outputGradient, spread: { $0 })
    }

    /// The backward of either forward: W_c's on the rows it ran on, `spread` to `[T, B, ·]`.
    private func backward(throughCombine outputGradient: Tensor, spread: (Tensor) throws -> Tensor) throws
        -> (decoderOutput: Tensor, memory: Tensor)
    {
        guard awaitsBackward else {
            throw RecurError.invalidArgument(
                operation: "LuongAttention.backward", detail: "backward needs a forward pass first")
        }
        let joinedGradient = try combine.backward(toParts: outputGradient)  // dc, dh ([T, B, ·] or [N, ·])
        let attended = try attention.backward(from: try spread(joinedGradient[0]))
        let decoderGradient = try spread(joinedGradient[1])
        // h reaches h̃ twice: directly through W_c, and as the query of the scores.
        try backend.axpy(alpha: 1, attended.queries, decoderGradient)
        awaitsBackward = false
        guard let memoryGradient = attended.memory else {
            throw RecurError.invalidArgument(
                operation: "LuongAttention.backward", detail: "the attention read keys and values apart")
        }
        return (decoderGradient, memoryGradient)
    }
}
