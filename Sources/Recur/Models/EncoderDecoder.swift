// The encoder–decoder (Cho et al. 2014; Sutskever, Vinyals, Le 2014): a recurrent encoder reads
// the source, a bridge turns its top layer's final state into the decoder's initial state, and a
// recurrent decoder writes the target one token after another, scored by softmax cross-entropy.
//
// Shape legend: S source steps, T target steps (start and end markers included), B batch,
// E embedding width, H encoder hidden units per direction, D encoder directions, M = D · H
// encoder features, K decoder hidden units, L_e / L_d encoder / decoder layers, F features the
// output layer reads (K, or what a decoder-output transform makes of them), V target vocabulary.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The architecture of an ``EncoderDecoder``, as data: enough to build the same model again, and
/// what its checkpoints store.
public struct EncoderDecoderSpecification: Sendable, Equatable, Codable {
    /// Source ids the source embedding knows (the four reserved ids of `SequenceVocabulary` included).
    public var sourceVocabularySize: Int
    /// V: target ids the target embedding and the output layer know.
    public var targetVocabularySize: Int
    /// E: the width of both embeddings.
    public var embeddingSize: Int
    /// The cell of every encoder and decoder layer.
    public var cell: RecurrentCell
    /// H: encoder hidden units per direction.
    public var hiddenSize: Int
    /// K: decoder hidden units.
    public var decoderHiddenSize: Int
    /// L_e: stacked encoder layers.
    public var encoderLayers: Int
    /// L_d: stacked decoder layers.
    public var decoderLayers: Int
    /// Whether every encoder layer also reads the source backwards (D = 2).
    public var bidirectional: Bool
    /// Inverted dropout on both embeddings' outputs, between stacked recurrent layers and on the
    /// decoder's output before the output layer; training only.
    public var dropout: Float
    /// Seeds the initial parameters of every part.
    public var seed: UInt64
    /// Whether and how the decoder attends over the encoder's outputs (``LuongAttention``, the
    /// model's decoder-output transform); `.none` is the plain model. Specifications written
    /// before attention existed read as `.none`, and `.none` is not written, so a plain model's
    /// JSON is what it always was.
    public var attention: DecoderAttention
    /// Luong et al. (2015)'s input feeding: every decoder step reads the attentional state h̃ of
    /// the step before beside its token's embedding (zeros at the first step), so the decoder
    /// knows which source steps it already attended to. Needs ``attention``; the decoder then
    /// steps one target token at a time, in training too. Written only when true.
    public var inputFeeding: Bool

    /// - Parameters:
    ///   - sourceVocabularySize: see ``sourceVocabularySize``.
    ///   - targetVocabularySize: see ``targetVocabularySize``.
    ///   - embeddingSize: see ``embeddingSize``.
    ///   - cell: see ``cell``; default LSTM.
    ///   - hiddenSize: see ``hiddenSize``.
    ///   - decoderHiddenSize: see ``decoderHiddenSize``; nil (the default) takes M = D · H, so
    ///     the bridge is the identity.
    ///   - encoderLayers: see ``encoderLayers``; default 1.
    ///   - decoderLayers: see ``decoderLayers``; default 1.
    ///   - bidirectional: see ``bidirectional``; default false.
    ///   - dropout: see ``dropout``; default 0.
    ///   - seed: see ``seed``; default 0.
    ///   - attention: see ``attention``; default `.none`.
    ///   - inputFeeding: see ``inputFeeding``; default false.
    public init(sourceVocabularySize: Int, targetVocabularySize: Int, embeddingSize: Int, cell: RecurrentCell = .lstm,
                hiddenSize: Int, decoderHiddenSize: Int? = nil, encoderLayers: Int = 1, decoderLayers: Int = 1,
                bidirectional: Bool = false, dropout: Float = 0, seed: UInt64 = 0, attention: DecoderAttention = .none,
                inputFeeding: Bool = false) {
        self.sourceVocabularySize = sourceVocabularySize
        self.targetVocabularySize = targetVocabularySize
        self.embeddingSize = embeddingSize
        self.cell = cell
        self.hiddenSize = hiddenSize
        self.decoderHiddenSize = decoderHiddenSize ?? hiddenSize * (bidirectional ? 2 : 1)
        self.encoderLayers = encoderLayers
        self.decoderLayers = decoderLayers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.seed = seed
        self.attention = attention
        self.inputFeeding = inputFeeding
    }

    private enum CodingKeys: String, CodingKey {
        case sourceVocabularySize, targetVocabularySize, embeddingSize, cell, hiddenSize, decoderHiddenSize,
             encoderLayers, decoderLayers, bidirectional, dropout, seed, attention, inputFeeding
    }

    /// Reads a specification; an absent `attention` (a plain model, or one saved before attention
    /// existed) reads as `.none`, an absent `inputFeeding` as false.
    /// - Parameter decoder: the decoder to read from.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sourceVocabularySize = try container.decode(Int.self, forKey: .sourceVocabularySize)
        targetVocabularySize = try container.decode(Int.self, forKey: .targetVocabularySize)
        embeddingSize = try container.decode(Int.self, forKey: .embeddingSize)
        cell = try container.decode(RecurrentCell.self, forKey: .cell)
        hiddenSize = try container.decode(Int.self, forKey: .hiddenSize)
        decoderHiddenSize = try container.decode(Int.self, forKey: .decoderHiddenSize)
        encoderLayers = try container.decode(Int.self, forKey: .encoderLayers)
        decoderLayers = try container.decode(Int.self, forKey: .decoderLayers)
        bidirectional = try container.decode(Bool.self, forKey: .bidirectional)
        dropout = try container.decode(Float.self, forKey: .dropout)
        seed = try container.decode(UInt64.self, forKey: .seed)
        attention = try container.decodeIfPresent(DecoderAttention.self, forKey: .attention) ?? .none
        inputFeeding = try container.decodeIfPresent(Bool.self, forKey: .inputFeeding) ?? false
    }

    /// Writes the specification; `attention` only when it is not `.none`, `inputFeeding` only
    /// when true.
    /// - Parameter encoder: the encoder to write to.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sourceVocabularySize, forKey: .sourceVocabularySize)
        try container.encode(targetVocabularySize, forKey: .targetVocabularySize)
        try container.encode(embeddingSize, forKey: .embeddingSize)
        try container.encode(cell, forKey: .cell)
        try container.encode(hiddenSize, forKey: .hiddenSize)
        try container.encode(decoderHiddenSize, forKey: .decoderHiddenSize)
        try container.encode(encoderLayers, forKey: .encoderLayers)
        try container.encode(decoderLayers, forKey: .decoderLayers)
        try container.encode(bidirectional, forKey: .bidirectional)
        try container.encode(dropout, forKey: .dropout)
        try container.encode(seed, forKey: .seed)
        if attention != .none { try container.encode(attention, forKey: .attention) }
        if inputFeeding { try container.encode(inputFeeding, forKey: .inputFeeding) }
    }

    /// M = D · H: the features of every encoder output step and of the top layer's final state.
    public var encoderFeatures: Int { hiddenSize * (bidirectional ? 2 : 1) }

    /// Throws unless every size is at least 1, both vocabularies hold more than the four reserved
    /// ids, the dropout lies in [0, 1), a dot attention score has K = M, and input feeding has an
    /// attention to feed.
    public func validate() throws {
        let operation = "EncoderDecoderSpecification"
        let sizes = [("sourceVocabularySize", sourceVocabularySize), ("targetVocabularySize", targetVocabularySize),
                     ("embeddingSize", embeddingSize), ("hiddenSize", hiddenSize),
                     ("decoderHiddenSize", decoderHiddenSize), ("encoderLayers", encoderLayers),
                     ("decoderLayers", decoderLayers)]
        for (name, size) in sizes where size < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(size)")
        }
        for (name, size) in [("sourceVocabularySize", sourceVocabularySize), ("targetVocabularySize", targetVocabularySize)]
        where size <= Int(SequenceVocabulary.endID) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(name) \(size) leaves no id beside the four reserved ones")
        }
        guard dropout >= 0, dropout < 1 else {
            throw RecurError.invalidArgument(operation: operation, detail: "dropout must lie in [0, 1), got \(dropout)")
        }
        if attention == .dot, decoderHiddenSize != encoderFeatures {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the dot attention score needs decoderHiddenSize \(decoderHiddenSize) to equal the encoder's "
                    + "\(encoderFeatures) output features; the general score projects between different sizes")
        }
        if inputFeeding, attention == .none {
            throw RecurError.invalidArgument(
                operation: operation, detail: "input feeding feeds the attentional state back: it needs an attention")
        }
    }

    /// The width of a decoder step's input: E, and K more with input feeding.
    public var decoderInputSize: Int { embeddingSize + (inputFeeding ? decoderHiddenSize : 0) }

    /// The specification as JSON with sorted keys, as a checkpoint stores it.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Reads a specification `json()` wrote, and validates it.
    /// - Parameters:
    ///   - json: the JSON text.
    ///   - source: what error messages call the text (a checkpoint's path).
    /// - Throws: `RecurError.malformed` naming `source` for JSON that is not a valid specification.
    public init(json: String, source: String) throws {
        self = try RecurJSON.decode(EncoderDecoderSpecification.self, from: json, source: source, what: "recur.model")
        do {
            try validate()
        } catch {
            throw RecurError.malformed(source: source, detail: "the model specification is invalid: \(error)")
        }
    }
}

/// What the encoder hands a decoder-output transform: every source step's top-layer output and
/// each source's length (steps at and after it are padding, which a transform must not read).
public struct EncoderMemory: Sendable {
    /// The encoder's output, `[S, B, M]`, 0 at padded steps.
    public var outputs: Tensor
    /// Each source's valid steps, `[B]`.
    public var lengths: [Int]

    /// - Parameters:
    ///   - outputs: see ``outputs``.
    ///   - lengths: see ``lengths``.
    public init(outputs: Tensor, lengths: [Int]) {
        self.outputs = outputs
        self.lengths = lengths
    }
}

/// The decoder's state between steps: the recurrent state of every decoder layer and, with
/// input feeding, the attentional state h̃ of the step before, which the next step reads.
public struct DecoderState: Sendable {
    /// h (and c) of every decoder layer, `[L_d, B, K]`.
    public var recurrent: RecurrentState
    /// h̃_{t−1}, `[1, B, K]`, with ``EncoderDecoderSpecification/inputFeeding`` (zeros before the
    /// first step); nil without.
    public var attentional: Tensor?

    /// - Parameters:
    ///   - recurrent: see ``recurrent``.
    ///   - attentional: see ``attentional``.
    public init(recurrent: RecurrentState, attentional: Tensor? = nil) {
        self.recurrent = recurrent
        self.attentional = attentional
    }
}

/// The one place where a decoder's outputs may be rewritten before the output layer reads them:
/// attention (Luong et al. 2015's global attention, which scores each decoder output against
/// the encoder's outputs) plugs in here. The transform sees the decoder's top-layer output of
/// every step it ran (all target steps under teacher forcing, one step while decoding) and the
/// encoder's memory, and returns the features the output layer reads.
///
/// A transform caches what its `backward` needs, like a ``Layer``; `backward` accumulates (+=)
/// into its parameter gradients.
public protocol DecoderOutputTransform: AnyObject {
    /// The prefix of the transform's parameter names in the model's state dict (`attention`).
    var name: String { get }
    /// The trainable tensors with their gradients, under the transform's own names.
    var parameters: [NamedParameter] { get }
    /// F, the features the transform returns.
    /// - Parameters:
    ///   - decoderFeatures: K.
    ///   - memoryFeatures: M.
    /// - Returns: F.
    func outputFeatures(decoderFeatures: Int, memoryFeatures: Int) -> Int
    /// Rewrites the decoder's outputs.
    /// - Parameters:
    ///   - decoderOutput: `[T, B, K]`, 0 at padded target steps.
    ///   - memory: the encoder's outputs and the source lengths.
    ///   - training: whether the pass trains.
    /// - Returns: `[T, B, F]`.
    func forward(decoderOutput: Tensor, memory: EncoderMemory, training: Bool) throws -> Tensor
    /// Back-propagates through the last `forward`.
    /// - Parameter outputGradient: dL/d output, `[T, B, F]`.
    /// - Returns: dL/d decoder output `[T, B, K]` and dL/d encoder outputs `[S, B, M]`.
    func backward(from outputGradient: Tensor) throws -> (decoderOutput: Tensor, memory: Tensor)
    /// Rewrites the decoder's outputs at the scored places only (a teacher-forced batch with
    /// padding): the default runs ``forward(decoderOutput:memory:training:)`` and gathers the
    /// scored rows; a transform whose cost lies in per-place layers does better by gathering first.
    /// - Parameters:
    ///   - decoderOutput: `[T, B, K]`, 0 at padded target steps.
    ///   - memory: the encoder's outputs and the source lengths.
    ///   - rows: the scored places.
    ///   - training: whether the pass trains.
    /// - Returns: `[N, F]`, one row per scored place in the order of `rows`.
    func forward(decoderOutput: Tensor, memory: EncoderMemory, rows: ScoredRows, training: Bool) throws -> Tensor
    /// Back-propagates through the last ``forward(decoderOutput:memory:rows:training:)``.
    /// - Parameters:
    ///   - outputGradient: dL/d output at the scored places, `[N, F]`.
    ///   - rows: the scored places of that forward.
    /// - Returns: dL/d decoder output `[T, B, K]` and dL/d encoder outputs `[S, B, M]`.
    func backward(from outputGradient: Tensor, rows: ScoredRows) throws -> (decoderOutput: Tensor, memory: Tensor)
}

extension DecoderOutputTransform {
    /// The transform on every place, then the scored rows of its output.
    public func forward(decoderOutput: Tensor, memory: EncoderMemory, rows: ScoredRows, training: Bool) throws
        -> Tensor
    {
        try rows.gather(try forward(decoderOutput: decoderOutput, memory: memory, training: training))
    }

    /// The gradient spread to every place (0 at the places left out), then the full backward.
    public func backward(from outputGradient: Tensor, rows: ScoredRows) throws
        -> (decoderOutput: Tensor, memory: Tensor)
    {
        try backward(from: try rows.scatter(outputGradient))
    }
}

/// An encoder–decoder for sequence-to-sequence tasks whose source and target lengths differ
/// (translation, grapheme to phoneme), with explicit forward and backward passes:
///
///     source ids [S, B] → source embedding → encoder stack (any cell, L_e layers, D directions)
///         → top layer's final state [B, M] (h, and c for cells with a cell state; both
///           directions side by side)
///         → bridge: for every decoder layer, tanh(W x + b) when K ≠ M, else x itself
///         → decoder initial state [L_d, B, K]
///     target ids <s> y_1 … y_{n−1} [T − 1, B] → target embedding → decoder stack
///         → [decoder-output transform] → output Dense → logits [T − 1, B, V]
///         → softmax cross-entropy against y_1 … y_n </s>, padding ignored
///
/// Padding is masked everywhere: the encoder and the decoder run with each sequence's length,
/// so padded steps change no state, carry no gradient and are not scored; neither the ids at
/// padded places nor the amount of padding changes the loss or a gradient. In a training pass
/// the layers after the decoder's recurrent op (the output transform, the output dropout and
/// layer) and the loss run on the scored places only (``ScoredRows``), not on the padding.
///
/// With ``EncoderDecoderSpecification/attention`` set, the transform is ``LuongAttention``.
/// With ``EncoderDecoderSpecification/inputFeeding`` as well, the decoder reads
/// [e_t; h̃_{t−1}] and steps one token at a time: the forward keeps every step's record and the
/// backward runs through the steps in reverse (back-propagation through time across the
/// attention), so it costs a decoder op per target step instead of one for all of them.
///
/// Parameter names: `source_embedding.weight`, `encoder.<PyTorch RNN names>`,
/// `bridge_h.<l>.weight` / `.bias` and `bridge_c.<l>.…` (when K ≠ M), `target_embedding.weight`,
/// `decoder.<PyTorch RNN names>`, `<transform name>.…`, `output.weight`, `output.bias`.
///
/// The model is written against `Backend` only, so it runs on every device.
public final class EncoderDecoder {
    /// The architecture.
    public let specification: EncoderDecoderSpecification
    /// The device every part runs on.
    public let backend: any Backend
    /// Source ids → `[S, B, E]`.
    public let sourceEmbedding: Embedding
    /// The encoder stack, `[S, B, E]` → `[S, B, M]`.
    public let encoder: RecurrentLayer
    /// One projection of the top encoder state per decoder layer for h; empty when K = M.
    public let hiddenBridge: [Dense]
    /// The same for c (cells with a cell state only); empty when K = M or the cell has none.
    public let cellBridge: [Dense]
    /// Target ids → `[T, B, E]`.
    public let targetEmbedding: Embedding
    /// The decoder stack, `[T, B, E]` → `[T, B, K]`.
    public let decoder: RecurrentLayer
    /// The decoder-output hook (attention), if any.
    public let outputTransform: (any DecoderOutputTransform)?
    /// `[T, B, F]` → logits `[T, B, V]`.
    public let output: Dense
    private let sourceDropout: Dropout
    private let targetDropout: Dropout
    private let outputDropout: Dropout
    /// The attention whose h̃ the decoder reads back, with input feeding.
    private let feedingAttention: LuongAttention?
    private var cache: ForwardCache?

    /// Builds the model with initialised parameters and zero gradients.
    /// - Parameters:
    ///   - specification: the architecture and seed.
    ///   - outputTransform: the decoder-output hook; nil (the default) takes the specification's
    ///     ``EncoderDecoderSpecification/attention`` (``LuongAttention``, seeded after every other
    ///     part, so a plain model's parameters do not change), or none for `.none`. Its
    ///     parameters must live on `backend`.
    ///   - backend: the device every part runs on.
    /// - Throws: `RecurError.invalidArgument` for an invalid specification, or a transform given
    ///   beside a specification that names an attention.
    public init(specification: EncoderDecoderSpecification, outputTransform: (any DecoderOutputTransform)? = nil,
                backend: any Backend) throws {
        try specification.validate()
        if outputTransform != nil, specification.attention != .none {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.init",
                detail: "the specification names \(specification.attention) attention and a transform was given too")
        }
        self.specification = specification
        self.backend = backend
        let s = specification
        var seeds = SeededRandom(seed: s.seed)
        sourceEmbedding = try Embedding(vocabularySize: s.sourceVocabularySize, embeddingSize: s.embeddingSize,
                                        seed: seeds.next(), backend: backend)
        encoder = try RecurrentLayer(cell: s.cell, inputSize: s.embeddingSize, hiddenSize: s.hiddenSize,
                                     layerCount: s.encoderLayers, bidirectional: s.bidirectional, dropout: s.dropout,
                                     seed: seeds.next(), backend: backend)
        let bridged = s.decoderHiddenSize != s.encoderFeatures
        func bridge() throws -> [Dense] {
            try (0..<s.decoderLayers).map { _ in
                try Dense(inputSize: s.encoderFeatures, outputSize: s.decoderHiddenSize, activation: .tanh,
                          seed: seeds.next(), backend: backend)
            }
        }
        hiddenBridge = bridged ? try bridge() : []
        cellBridge = bridged && s.cell.hasCellState ? try bridge() : []
        targetEmbedding = try Embedding(vocabularySize: s.targetVocabularySize, embeddingSize: s.embeddingSize,
                                        seed: seeds.next(), backend: backend)
        decoder = try RecurrentLayer(cell: s.cell, inputSize: s.decoderInputSize, hiddenSize: s.decoderHiddenSize,
                                     layerCount: s.decoderLayers, dropout: s.dropout, seed: seeds.next(),
                                     backend: backend)
        // Luong attention returns K features, as the plain decoder does.
        let features = outputTransform?.outputFeatures(decoderFeatures: s.decoderHiddenSize,
                                                       memoryFeatures: s.encoderFeatures) ?? s.decoderHiddenSize
        output = try Dense(inputSize: features, outputSize: s.targetVocabularySize, seed: seeds.next(),
                           backend: backend)
        sourceDropout = try Dropout(probability: s.dropout, seed: seeds.next(), backend: backend)
        targetDropout = try Dropout(probability: s.dropout, seed: seeds.next(), backend: backend)
        outputDropout = try Dropout(probability: s.dropout, seed: seeds.next(), backend: backend)
        if let kind = s.attention.kind {
            let attention = try LuongAttention(
                kind: kind, decoderFeatures: s.decoderHiddenSize, memoryFeatures: s.encoderFeatures,
                seed: seeds.next(), backend: backend)
            self.outputTransform = attention
            feedingAttention = s.inputFeeding ? attention : nil
        } else {
            self.outputTransform = outputTransform
            feedingAttention = nil
        }
    }

    // MARK: Parameters

    /// Every parameter with its gradient, under the names listed in the type's description, in
    /// the order the data flows.
    public var parameters: [NamedParameter] {
        var list = sourceEmbedding.parameters(prefixedBy: "source_embedding")
        list += encoder.parameters(prefixedBy: "encoder")
        for (l, dense) in hiddenBridge.enumerated() { list += dense.parameters(prefixedBy: "bridge_h.\(l)") }
        for (l, dense) in cellBridge.enumerated() { list += dense.parameters(prefixedBy: "bridge_c.\(l)") }
        list += targetEmbedding.parameters(prefixedBy: "target_embedding")
        list += decoder.parameters(prefixedBy: "decoder")
        if let outputTransform {
            list += outputTransform.parameters.map {
                NamedParameter(name: "\(outputTransform.name).\($0.name)", value: $0.value, gradient: $0.gradient)
            }
        }
        list += output.parameters(prefixedBy: "output")
        return list
    }

    /// Sets every gradient to 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    /// Restarts every dropout stream from seeds derived from `seed`: a loop that seeds each step
    /// draws the same masks again when it repeats the step (after resuming).
    /// - Parameter seed: the step's seed.
    public func seedDropout(_ seed: UInt64) {
        var random = SeededRandom(seed: seed)
        encoder.seedDropout(random.next())
        decoder.seedDropout(random.next())
        sourceDropout.seed(random.next())
        targetDropout.seed(random.next())
        outputDropout.seed(random.next())
    }

    // MARK: Encoder and bridge

    /// What backward needs from the last training forward.
    private struct ForwardCache {
        /// B.
        var batch: Int
        /// dL/d logits, written by the loss: `[N, V]` with `rows`, else `[T − 1, B, V]`.
        var logitGradient: Tensor
        /// The scored places the layers after the decoder ran on; nil when every place is scored.
        var rows: ScoredRows?
        /// With input feeding: every decoder step's record, and the shape of the encoder's outputs.
        var inputFed: (steps: [InputFedStep], memoryShape: Shape)?
    }

    /// What one decoder step with input feeding leaves for its backward.
    struct InputFedStep {
        var decoder: RecurrentLayer.ForwardCache?
        var attention: LuongAttention.ForwardRecord
    }

    /// Runs the encoder and the bridge.
    /// - Parameters:
    ///   - source: `[S, B]` ids with each column's length.
    ///   - training: applies dropout.
    /// - Returns: the encoder's memory and the decoder's initial state `[L_d, B, K]` (with input
    ///   feeding, h̃_0 = 0 `[1, B, K]` beside it).
    func encode(_ source: SequenceBatch, training: Bool) throws -> (memory: EncoderMemory, state: DecoderState) {
        let operation = "EncoderDecoder.encode"
        let batch = source.batchSize
        guard batch > 0, source.ids.count == source.steps * batch else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "\(source.ids.count) source ids for \(source.steps) steps of \(batch) sources")
        }
        if let empty = source.lengths.firstIndex(where: { $0 < 1 }) {
            throw RecurError.invalidArgument(operation: operation, detail: "source \(empty) is empty")
        }
        let embedded = try sourceEmbedding.forward(ids: source.ids, shape: [source.steps, batch])  // [S, B, E]
        let encoded = try encoder.forward(try sourceDropout.forward(embedded, training: training),
                                          lengths: source.lengths, padding: .post, training: training)
        let s = specification
        let directions = s.bidirectional ? 2 : 1
        let top = (s.encoderLayers - 1) * directions  // the top layer's first state slot
        let state = RecurrentState(
            hidden: try bridged(try topState(encoded.finalState.hidden, from: top, batch: batch), through: hiddenBridge),
            cell: try encoded.finalState.cell.map {
                try bridged(try topState($0, from: top, batch: batch), through: cellBridge)
            })
        let attentional = s.inputFeeding ? try backend.zeros([1, batch, s.decoderHiddenSize]) : nil
        return (EncoderMemory(outputs: encoded.output, lengths: source.lengths),
                DecoderState(recurrent: state, attentional: attentional))
    }

    /// The top layer's final state `[B, M]`: row b holds each direction's `[H]` side by side.
    private func topState(_ state: Tensor, from slot: Int, batch: Int) throws -> Tensor {
        let h = specification.hiddenSize
        let directions = specification.bidirectional ? 2 : 1
        let top = try backend.zeros([batch, directions * h])  // [B, M]
        for direction in 0..<directions {
            try backend.copyRows(batch, width: h, from: state, offset: (slot + direction) * batch * h, stride: h,
                         into: top, offset: direction * h, stride: directions * h)
        }
        return top
    }

    /// The decoder's initial state `[L_d, B, K]` from the top state `[B, M]`: each layer's
    /// projection of it, or the state itself in every layer when there is no projection.
    private func bridged(_ top: Tensor, through projections: [Dense]) throws -> Tensor {
        let (layers, batch, k) = (specification.decoderLayers, top.shape[0], specification.decoderHiddenSize)
        let state = try backend.zeros([layers, batch, k])  // [L_d, B, K]
        for l in 0..<layers {
            let source = projections.isEmpty ? top : try projections[l].forward(top)  // [B, K]
            try backend.copy(source, sourceOffset: 0, into: state, destinationOffset: l * batch * k, count: batch * k)
        }
        return state
    }

    /// Back-propagates the decoder's initial-state gradient `[L_d, B, K]` through the bridge.
    /// - Returns: dL/d top state `[B, M]`.
    private func bridgeBackward(_ gradient: Tensor, through projections: [Dense], batch: Int) throws -> Tensor {
        let (layers, k) = (specification.decoderLayers, specification.decoderHiddenSize)
        let topGradient = try backend.zeros([batch, specification.encoderFeatures])  // [B, M]
        for l in 0..<layers {
            let slice = try backend.zeros([batch, k])  // [B, K]
            try backend.copy(gradient, sourceOffset: l * batch * k, into: slice, destinationOffset: 0, count: batch * k)
            let contribution = projections.isEmpty ? slice : try projections[l].backward(slice)
            try backend.axpy(alpha: 1, contribution, topGradient)
        }
        return topGradient
    }

    /// Spreads dL/d top state `[B, M]` into an encoder final-state gradient `[L_e · D, B, H]`.
    private func finalStateGradient(_ topGradient: Tensor, batch: Int) throws -> Tensor {
        let s = specification
        let directions = s.bidirectional ? 2 : 1
        let h = s.hiddenSize
        let gradient = try backend.zeros([s.encoderLayers * directions, batch, h])
        let slot = (s.encoderLayers - 1) * directions
        for direction in 0..<directions {
            try backend.copyRows(batch, width: h, from: topGradient, offset: direction * h, stride: directions * h,
                         into: gradient, offset: (slot + direction) * batch * h, stride: h)
        }
        return gradient
    }

    // MARK: Decoder

    /// Runs the decoder from `state` over `inputs` and the output layer.
    /// - Parameters:
    ///   - inputs: `[T', B]` decoder input ids.
    ///   - lengths: each column's valid steps; nil means all T'.
    ///   - state: the decoder's initial state.
    ///   - memory: the encoder's memory, for the output transform.
    ///   - training: applies dropout.
    /// - Returns: logits `[T', B, V]` and the decoder's final state.
    func decode(_ inputs: [Int32], steps: Int, lengths: [Int]?, from state: DecoderState, memory: EncoderMemory,
                training: Bool) throws -> (logits: Tensor, state: DecoderState) {
        let decoded = try decodeScored(inputs, steps: steps, lengths: lengths, rows: nil, from: state, memory: memory,
                                       training: training)
        return (decoded.logits, decoded.state)
    }

    /// `decode`, with everything after the decoder's recurrent op (the output transform, the
    /// output dropout and layer) on the scored `rows` only when given.
    /// - Returns: logits `[N, V]` with `rows`, else `[T', B, V]`, the decoder's final state, and
    ///   with input feeding every step's record for the backward.
    private func decodeScored(_ inputs: [Int32], steps: Int, lengths: [Int]?, rows: ScoredRows?,
                              from state: DecoderState, memory: EncoderMemory, training: Bool) throws
        -> (logits: Tensor, state: DecoderState, inputFed: [InputFedStep]?)
    {
        let batch = memory.lengths.count
        let embedded = try targetDropout.forward(
            try targetEmbedding.forward(ids: inputs, shape: [steps, batch]), training: training)  // [T', B, E]
        var features: Tensor  // [T', B, F], or [N, F] with rows
        let finalState: DecoderState
        var records: [InputFedStep]? = nil
        if let feedingAttention {
            let fed = try inputFedSteps(embedded, from: state, memory: memory, attention: feedingAttention,
                                        training: training)
            (features, finalState, records) = (fed.features, fed.state, fed.records)
            if let rows { features = try rows.gather(features) }
        } else {
            let decoded = try decoder.forward(embedded, lengths: lengths, padding: .post,
                                              initialState: state.recurrent, training: training)  // [T', B, K]
            features = decoded.output
            finalState = DecoderState(recurrent: decoded.finalState)
            switch (outputTransform, rows) {
            case let (transform?, rows?):
                features = try transform.forward(decoderOutput: features, memory: memory, rows: rows,
                                                 training: training)
            case let (transform?, nil):
                features = try transform.forward(decoderOutput: features, memory: memory, training: training)
            case let (nil, rows?):
                features = try rows.gather(features)
            case (nil, nil):
                break
            }
        }
        let logits = try output.forward(try outputDropout.forward(features, training: training))
        return (logits, finalState, records)
    }

    /// The decoder with input feeding (Luong et al. 2015, section 3.3), one step at a time:
    ///
    ///     x_t = [e_t; h̃_{t−1}],  h_t = decoder step(x_t, state_{t−1}),  h̃_t = attention(h_t, memory)
    ///
    /// with h̃_{−1} the state's (zeros after `encode`). Every sequence runs every step: a step past
    /// a target's length changes only states no scored place reads (a sequence's scored places
    /// come first), so it adds exactly nothing to a gradient and needs no mask.
    /// - Returns: h̃ of every step `[T', B, K]`, the state after the last, and each step's record.
    private func inputFedSteps(_ embedded: Tensor, from state: DecoderState, memory: EncoderMemory,
                               attention: LuongAttention, training: Bool) throws
        -> (features: Tensor, state: DecoderState, records: [InputFedStep])
    {
        let (steps, batch, e, k) = (embedded.shape[0], embedded.shape[1], specification.embeddingSize,
                                    specification.decoderHiddenSize)
        guard var fed = state.attentional, fed.shape == [1, batch, k] else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.decode", detail: "input feeding needs h̃ of the step before, [1, \(batch), \(k)]")
        }
        var recurrent = state.recurrent
        let features = try backend.uninitialized([steps, batch, k])  // h̃ [T', B, K]
        var records: [InputFedStep] = []
        records.reserveCapacity(steps)
        // The weights stay as they are for every step and for the backward of each.
        try decoder.withUnchangingWeights { for t in 0..<steps {
            let input = try backend.uninitialized([1, batch, e + k])  // [e_t; h̃_{t−1}]
            try backend.copyRows(batch, width: e, from: embedded, offset: t * batch * e, stride: e, into: input,
                                 offset: 0, stride: e + k)
            try backend.copyRows(batch, width: k, from: fed, offset: 0, stride: k, into: input, offset: e,
                                 stride: e + k)
            let stepped = try decoder.forward(input, initialState: recurrent, training: training)  // h_t [1, B, K]
            fed = try attention.forward(decoderOutput: stepped.output, memory: memory, training: training)
            try backend.copy(fed, sourceOffset: 0, into: features, destinationOffset: t * batch * k, count: batch * k)
            recurrent = stepped.finalState
            records.append(InputFedStep(decoder: decoder.forwardRecord, attention: attention.forwardRecord))
        } }
        return (features, DecoderState(recurrent: recurrent, attentional: fed), records)
    }

    /// Back-propagates through the steps of an input-fed pass in reverse: dL/dh̃_t is the output
    /// layer's plus what step t + 1's input sends back through its h̃_t columns, and dL/d state
    /// flows from each step to the one before.
    /// - Parameters:
    ///   - featureGradient: dL/dh̃ from the output layer, `[T', B, K]`, 0 at unscored places.
    ///   - steps: the forward's records.
    ///   - attention: the attention whose records they hold.
    ///   - memoryShape: `[S, B, M]`.
    /// - Returns: dL/d embedded targets `[T', B, E]`, dL/d the decoder's initial state, and dL/d
    ///   encoder outputs `[S, B, M]`.
    private func inputFedBackward(_ featureGradient: Tensor, steps: [InputFedStep], attention: LuongAttention,
                                  memoryShape: Shape) throws
        -> (embedded: Tensor, initialState: RecurrentState, memory: Tensor)
    {
        let (batch, e, k) = (featureGradient.shape[1], specification.embeddingSize, specification.decoderHiddenSize)
        let embeddedGradient = try backend.uninitialized([steps.count, batch, e])  // [T', B, E]
        let memoryGradient = try backend.zeros(memoryShape)  // [S, B, M]
        var fedGradient: Tensor? = nil  // dL/dh̃_t through step t + 1's input, [1, B, K]
        var stateGradient: RecurrentState? = nil  // dL/d state after step t
        for (t, step) in steps.enumerated().reversed() {
            let attentionalGradient = try backend.uninitialized([1, batch, k])  // dL/dh̃_t
            try backend.copy(featureGradient, sourceOffset: t * batch * k, into: attentionalGradient,
                             destinationOffset: 0, count: batch * k)
            if let fedGradient { try backend.axpy(alpha: 1, fedGradient, attentionalGradient) }
            attention.forwardRecord = step.attention
            let attended = try attention.backward(from: attentionalGradient)
            try backend.axpy(alpha: 1, attended.memory, memoryGradient)
            decoder.forwardRecord = step.decoder
            let stepped = try decoder.backward(outputGradient: attended.decoderOutput,
                                               finalStateGradient: stateGradient)  // dL/dx_t [1, B, E + K]
            try backend.copyRows(batch, width: e, from: stepped.input, offset: 0, stride: e + k,
                                 into: embeddedGradient, offset: t * batch * e, stride: e)
            let fed = try backend.uninitialized([1, batch, k])
            try backend.copyRows(batch, width: k, from: stepped.input, offset: e, stride: e + k, into: fed, offset: 0,
                                 stride: k)
            fedGradient = fed
            stateGradient = stepped.initialState
        }
        guard let stateGradient else {
            throw RecurError.invalidArgument(operation: "EncoderDecoder.backward", detail: "the pass ran no step")
        }
        decoder.forwardRecord = nil
        return (embeddedGradient, stateGradient, memoryGradient)
    }

    // MARK: Training pass

    /// The decoder's inputs and scored targets of a batch: rows `0 ..< T − 1` and `1 ..< T` of
    /// the target ids, the targets padding (ignored) beyond each column's length, and each
    /// column's `length − 1` valid steps.
    static func teacherForcedRows(_ target: SequenceBatch) throws -> (inputs: [Int32], targets: [Int32], lengths: [Int]) {
        let (steps, batch) = (target.steps, target.batchSize)
        guard steps >= 2, target.ids.count == steps * batch else {
            throw RecurError.shapeMismatch(
                operation: "EncoderDecoder.forward",
                detail: "targets need the start marker and at least one more id per column, got \(steps) steps")
        }
        if let short = target.lengths.firstIndex(where: { $0 < 2 || $0 > steps }) {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.forward",
                detail: "target \(short) has length \(target.lengths[short]): it must lie in 2...\(steps) "
                    + "(markers included)")
        }
        // Scored places come from the lengths, not from the ids, so whatever a padded place holds
        // is never scored.
        var targets = [Int32](repeating: SequenceVocabulary.paddingID, count: (steps - 1) * batch)  // [T - 1, B]
        for b in 0..<batch {
            for t in 0..<(target.lengths[b] - 1) { targets[t * batch + b] = target.ids[(t + 1) * batch + b] }
        }
        return (Array(target.ids[0..<((steps - 1) * batch)]), targets, target.lengths.map { $0 - 1 })
    }

    /// Runs the model on a batch, computes the mean loss over the target tokens (padding
    /// ignored) and keeps what ``backward()`` needs.
    ///
    /// With `teacherForcing` 1 the decoder reads `<s> y_1 … y_{n−1}` in one recurrent op. Below 1
    /// the decoder first steps through the target one token at a time (inference mode, so no
    /// dropout draws), and at every step t ≥ 1 of every sequence reads y_t with probability
    /// `teacherForcing`, else its own most likely token of step t − 1 (scheduled sampling,
    /// Bengio et al. 2015); then it reruns over those inputs in one op in training mode. The
    /// token fed back is an argmax, which has no gradient, so back-propagating through the rerun
    /// is back-propagating through the steps.
    ///
    /// - Parameters:
    ///   - batch: the pairs, sources `[S, B]` and targets `[T, B]` with their markers.
    ///   - teacherForcing: the probability, in [0, 1], that a step reads the reference token.
    ///   - seed: seeds the teacher-forcing draws (unused at 1).
    ///   - labelSmoothing: ε in [0, 1): the loss scores against (1 − ε) one-hot + ε / V, as
    ///     PyTorch's `CrossEntropyLoss(label_smoothing:)`; default 0.
    ///   - training: applies dropout.
    /// - Returns: the loss and the logits `[T − 1, B, V]`.
    public func forward(_ batch: SequencePairBatch, teacherForcing: Double = 1, seed: UInt64 = 0,
                        labelSmoothing: Float = 0, training: Bool) throws -> (loss: Float, logits: Tensor) {
        guard labelSmoothing >= 0, labelSmoothing < 1 else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.forward", detail: "labelSmoothing must lie in [0, 1), got \(labelSmoothing)")
        }
        guard teacherForcing >= 0, teacherForcing <= 1 else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.forward", detail: "teacherForcing must lie in [0, 1], got \(teacherForcing)")
        }
        guard batch.source.batchSize == batch.target.batchSize else {
            throw RecurError.shapeMismatch(
                operation: "EncoderDecoder.forward",
                detail: "\(batch.source.batchSize) sources for \(batch.target.batchSize) targets")
        }
        var (inputs, targets, lengths) = try Self.teacherForcedRows(batch.target)
        let (memory, state) = try encode(batch.source, training: training)
        let steps = batch.target.steps - 1
        if teacherForcing < 1 {
            inputs = try scheduledInputs(inputs, steps: steps, from: state, memory: memory,
                                         teacherForcing: teacherForcing, seed: seed)
        }
        // The layers after the decoder's recurrent op, and the loss, see the scored places only.
        let rows = try ScoredRows(steps: steps, lengths: lengths, backend: backend)
        let (logits, _, inputFed) = try decodeScored(inputs, steps: steps, lengths: lengths, rows: rows, from: state,
                                                     memory: memory, training: training)  // [N, V] or [T - 1, B, V]
        let targetTensor = try rows.map { try backend.upload($0.scored(targets), shape: [$0.count]) }  // [N]
            ?? backend.upload(targets, shape: [steps, batch.target.batchSize])  // [T - 1, B]
        let lossSlot = try backend.zeros([2])  // the cross-entropy, and the smoothing's term
        let gradient = try Loss.softmaxCrossEntropy(ignoreIndex: SequenceVocabulary.paddingID)
            .evaluate(output: logits, targets: targetTensor, loss: lossSlot, at: 0)
        if labelSmoothing > 0 {
            try addLabelSmoothing(labelSmoothing, logits: logits, targets: targetTensor, gradient: gradient,
                                  loss: lossSlot)
        }
        cache = ForwardCache(batch: batch.target.batchSize, logitGradient: gradient, rows: rows,
                             inputFed: inputFed.map { ($0, memory.outputs.shape) })
        let losses = try backend.download(lossSlot)
        // The logits in the full layout, 0 at padded places.
        return (losses[0] + losses[1], try rows?.scatter(logits) ?? logits)
    }

    /// Turns the cross-entropy of `loss[0]` and `gradient` into PyTorch's label-smoothed one
    /// (`CrossEntropyLoss(label_smoothing: ε)`, Szegedy et al. 2016): the target distribution
    /// (1 − ε) one-hot + ε / V gives, per scored row, lse(x) − x_y + ε (x_y − mean_c x_c).
    ///
    /// The extra term is linear in the logits, ⟨K, x⟩ with K = ε (one-hot − 1 / V) / M over the
    /// M scored rows (0 on ignored ones), and K is −ε times the gradient the cross-entropy op
    /// gives for all-zero logits: so the smoothing needs no op of its own on any backend.
    /// Writes ⟨K, x⟩ into `loss[1]` and adds K to `gradient`.
    private func addLabelSmoothing(_ epsilon: Float, logits: Tensor, targets: Tensor, gradient: Tensor,
                                   loss: Tensor) throws {
        let count = logits.count
        let uniform = try backend.zeros(logits.shape)  // K, [T - 1, B, V]
        let constant = try backend.zeros([1])  // log V, unused
        try backend.softmaxCrossEntropy(logits: try backend.zeros(logits.shape), targets: targets,
                                        ignoreIndex: SequenceVocabulary.paddingID, gradient: uniform,
                                        loss: constant, at: 0)
        try backend.scale(uniform, by: -epsilon)
        // ⟨K, x⟩ as a [1, N] · [N, 1] product.
        try backend.gemm(m: 1, n: 1, k: count, alpha: 1, a: MatrixOperand(uniform, leadingDimension: count),
                         b: MatrixOperand(logits, leadingDimension: 1), beta: 0,
                         c: MatrixOperand(loss, offset: 1, leadingDimension: 1))
        try backend.axpy(alpha: 1, uniform, gradient)
    }

    /// The decoder inputs of scheduled sampling: step by step, each input after the first is
    /// the reference with probability `teacherForcing`, else the argmax of the step before.
    private func scheduledInputs(_ reference: [Int32], steps: Int, from initial: DecoderState,
                                 memory: EncoderMemory, teacherForcing: Double, seed: UInt64) throws -> [Int32] {
        let batch = memory.lengths.count
        var random = SeededRandom(seed: seed)
        var inputs = reference
        var state = initial
        for t in 0..<(steps - 1) {
            let row = Array(inputs[(t * batch)..<((t + 1) * batch)])
            let step = try decode(row, steps: 1, lengths: nil, from: state, memory: memory, training: false)
            state = step.state
            let predicted = argmaxRows(try backend.download(step.logits), classes: specification.targetVocabularySize)
            for b in 0..<batch where random.unit() >= teacherForcing {
                let index = (t + 1) * batch + b
                // Padded places stay padding: they are masked either way, and a padding id keeps
                // them visibly so.
                if reference[index] != SequenceVocabulary.paddingID { inputs[index] = predicted[b] }
            }
        }
        return inputs
    }

    /// Back-propagates the loss of the last `forward(_:teacherForcing:seed:training:)`,
    /// accumulating (+=) into every parameter gradient.
    public func backward() throws {
        guard let cache else {
            throw RecurError.invalidArgument(
                operation: "EncoderDecoder.backward", detail: "backward needs a forward pass first")
        }
        let batch = cache.batch
        // [N, F] with scored rows, else [T - 1, B, F]
        let featureGradient = try outputDropout.backward(try output.backward(cache.logitGradient))
        // dL/d embedded targets [T - 1, B, E], dL/d the decoder's initial state and, with a
        // transform, dL/d encoder outputs [S, B, M].
        let embeddedGradient: Tensor
        let decoderStateGradient: RecurrentState
        var memoryGradient: Tensor? = nil
        if let feedingAttention, let inputFed = cache.inputFed {
            let fedBack = try inputFedBackward(try cache.rows?.scatter(featureGradient) ?? featureGradient,
                                               steps: inputFed.steps, attention: feedingAttention,
                                               memoryShape: inputFed.memoryShape)
            (embeddedGradient, decoderStateGradient, memoryGradient) = (fedBack.embedded, fedBack.initialState,
                                                                        fedBack.memory)
        } else {
            var decoderOutputGradient = featureGradient  // [T - 1, B, K]
            switch (outputTransform, cache.rows) {
            case let (transform?, rows?):
                (decoderOutputGradient, memoryGradient) = try transform.backward(from: featureGradient, rows: rows)
            case let (transform?, nil):
                (decoderOutputGradient, memoryGradient) = try transform.backward(from: featureGradient)
            case let (nil, rows?):
                decoderOutputGradient = try rows.scatter(featureGradient)
            case (nil, nil):
                break
            }
            let decoded = try decoder.backward(outputGradient: decoderOutputGradient)
            (embeddedGradient, decoderStateGradient) = (decoded.input, decoded.initialState)
        }
        try targetEmbedding.backward(try targetDropout.backward(embeddedGradient))
        let hiddenTop = try bridgeBackward(decoderStateGradient.hidden, through: hiddenBridge, batch: batch)
        let cellTop = try decoderStateGradient.cell.map { try bridgeBackward($0, through: cellBridge, batch: batch) }
        let stateGradient = RecurrentState(hidden: try finalStateGradient(hiddenTop, batch: batch),
                                           cell: try cellTop.map { try finalStateGradient($0, batch: batch) })
        let encoded = try encoder.backward(outputGradient: memoryGradient, finalStateGradient: stateGradient)
        try sourceEmbedding.backward(try sourceDropout.backward(encoded.input))
        self.cache = nil
    }
}

/// The index of the largest value of each row of `classes` values (the first on ties).
func argmaxRows(_ values: [Float], classes: Int) -> [Int32] {
    stride(from: 0, to: values.count, by: classes).map { start in
        var best = start
        for i in (start + 1)..<(start + classes) where values[i] > values[best] { best = i }
        return Int32(best - start)
    }
}
