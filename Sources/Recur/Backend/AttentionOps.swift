// The attention ops: for every target step i and sequence b, a softmax over the valid source
// steps j of a score between query i and key j, and the context, the values weighted by it
// (Bahdanau et al. 2015; Luong et al. 2015). The projections that precede a score (Luong's W_a,
// Bahdanau's W_q and W_k) are the layer's GEMMs (`Attention` in Layers/); the ops fuse what comes
// after them: the score, the mask, the softmax and the weighted sum.
//
// Shape legend: Ty target steps (queries), Tx source steps (keys and values), B batch, D features
// of a query and a key (for the additive score: the attention size after the projections), Dv
// features of a value. Sequences are time-major like every sequence in Recur: row (t, b) of a
// `[T, B, F]` tensor is row t * B + b of the matrix `[T * B, F]`. The attention weights are kept
// batch-first, `[B, Ty, Tx]`: one `[Ty, Tx]` heat map per sequence.
//
// Forward, for each (i, b), over the valid source steps j of sequence b:
//
//     s[b, i, j] = q[i, b] · k[j, b]                         dot
//     s[b, i, j] = vᵀ tanh(q[i, b] + k[j, b])                additive
//     a[b, i, j] = exp(s[b, i, j] − m) / Σ_j' exp(s[b, i, j'] − m),   m = max_j s[b, i, j]
//     c[i, b]    = Σ_j a[b, i, j] V[j, b]
//
// and a[b, i, j] = 0 at the padded source steps, which are never read.
//
// Backward, from dC = dL/dc (each line differentiates the forward line it names):
//
//     dA[b, i, j] = dC[i, b] · V[j, b]                        c = Σ a V
//     dV[j, b]    = Σ_i a[b, i, j] dC[i, b]                   c = Σ a V
//     dS[b, i, j] = a[b, i, j] (dA[b, i, j] − Σ_j' a[b, i, j'] dA[b, i, j'])     softmax
//     dot:       dQ[i, b] = Σ_j dS[b, i, j] K[j, b],   dK[j, b] = Σ_i dS[b, i, j] Q[i, b]
//     additive:  with u = tanh(q[i, b] + k[j, b]) and g = dS[b, i, j] v ⊙ (1 − u²),
//                dQ[i, b] = Σ_j g,   dK[j, b] = Σ_i g,   dv = Σ_b Σ_i Σ_j dS[b, i, j] u

/// How an attention op scores a query against a key (the layer's projections already applied).
public enum AttentionScore: String, Sendable, CaseIterable, Codable {
    /// s = q · k: Luong's "dot" score, and his "general" score once the layer has projected the
    /// queries by W_a.
    case dot
    /// s = vᵀ tanh(q + k): Bahdanau's additive score, with q = W_q h and k = W_k h̄ projected by
    /// the layer, and the score vector v.
    case additive
}

/// What both attention ops read: the score, the queries, keys and values, and which source steps
/// of each sequence are valid.
///
/// Padding: with `sourceLengths`, a source step outside a sequence's valid range gets the weight
/// exactly 0, its key and value are never read (any values there, even non-finite ones, change
/// nothing), and it receives a zero gradient.
public struct AttentionOperands: Sendable {
    /// How queries and keys are scored.
    public var score: AttentionScore
    /// Q: `[Ty, B, D]`, time-major.
    public var queries: Tensor
    /// K: `[Tx, B, D]`, time-major.
    public var keys: Tensor
    /// V: `[Tx, B, Dv]`, time-major; may be the same tensor as `keys` (then D = Dv).
    public var values: Tensor
    /// v: `[D]`, the additive score's vector; required for `.additive`, must be nil for `.dot`.
    public var scoreVector: Tensor?
    /// Valid source steps per sequence, int32 `[B]`, each in 1...Tx; nil means all Tx are valid.
    /// The CPU backend checks the values; a device backend checks them when they were uploaded
    /// from the host (their range is known) and otherwise trusts the layer, which checks them
    /// before uploading.
    public var sourceLengths: Tensor?
    /// Which end of the source axis holds the padding; read only when `sourceLengths` is set.
    public var padding: PaddingSide

    /// The operands of one attention op.
    ///
    /// - Parameters:
    ///   - score: how queries and keys are scored.
    ///   - queries: Q, `[Ty, B, D]`.
    ///   - keys: K, `[Tx, B, D]`.
    ///   - values: V, `[Tx, B, Dv]`.
    ///   - scoreVector: v, `[D]`, for `.additive` only.
    ///   - sourceLengths: valid source steps per sequence, int32 `[B]`; nil for all Tx.
    ///   - padding: which end of the source axis holds the padding; default `.post`.
    public init(score: AttentionScore, queries: Tensor, keys: Tensor, values: Tensor, scoreVector: Tensor? = nil,
                sourceLengths: Tensor? = nil, padding: PaddingSide = .post) {
        self.score = score
        self.queries = queries
        self.keys = keys
        self.values = values
        self.scoreVector = scoreVector
        self.sourceLengths = sourceLengths
        self.padding = padding
    }
}

/// Forward request: the attention weights and the context of every target step.
///
/// Overwrites `context` and `weights` (0 at padded source steps); reads nothing it writes.
public struct AttentionForward: Sendable {
    /// What the op reads.
    public var operands: AttentionOperands
    /// C: `[Ty, B, Dv]`, time-major.
    public var context: Tensor
    /// A: `[B, Ty, Tx]`, each row a distribution over the valid source steps; kept for the
    /// backward op and for heat maps.
    public var weights: Tensor

    /// A forward request.
    ///
    /// - Parameters:
    ///   - operands: what the op reads.
    ///   - context: C, `[Ty, B, Dv]`, overwritten.
    ///   - weights: A, `[B, Ty, Tx]`, overwritten.
    public init(operands: AttentionOperands, context: Tensor, weights: Tensor) {
        self.operands = operands
        self.context = context
        self.weights = weights
    }
}

/// Backward request for an `AttentionForward` that ran with the same `operands` and wrote
/// `weights`.
///
/// OVERWRITES `queriesGradient`, `keysGradient` and `valuesGradient` (0 at padded source steps):
/// when keys and values are one tensor, the caller adds the two. ACCUMULATES (+=) into
/// `scoreVectorGradient`, a parameter's gradient, so that several calls add up until it is zeroed.
/// No written tensor may be one the op reads, or another written one.
public struct AttentionBackward: Sendable {
    /// What the forward op read.
    public var operands: AttentionOperands
    /// A: `[B, Ty, Tx]`, as the forward op wrote it.
    public var weights: Tensor
    /// dL/dC: `[Ty, B, Dv]`.
    public var contextGradient: Tensor
    /// dL/dQ: `[Ty, B, D]`, overwritten.
    public var queriesGradient: Tensor
    /// dL/dK: `[Tx, B, D]`, overwritten.
    public var keysGradient: Tensor
    /// dL/dV: `[Tx, B, Dv]`, overwritten.
    public var valuesGradient: Tensor
    /// dL/dv: `[D]`, accumulated (+=); required for `.additive`, must be nil for `.dot`.
    public var scoreVectorGradient: Tensor?

    /// A backward request.
    ///
    /// - Parameters:
    ///   - operands: what the forward op read.
    ///   - weights: A, `[B, Ty, Tx]`, from the forward op.
    ///   - contextGradient: dL/dC, `[Ty, B, Dv]`.
    ///   - queriesGradient: dL/dQ, `[Ty, B, D]`, overwritten.
    ///   - keysGradient: dL/dK, `[Tx, B, D]`, overwritten.
    ///   - valuesGradient: dL/dV, `[Tx, B, Dv]`, overwritten.
    ///   - scoreVectorGradient: dL/dv, `[D]`, accumulated; `.additive` only.
    public init(operands: AttentionOperands, weights: Tensor, contextGradient: Tensor, queriesGradient: Tensor,
                keysGradient: Tensor, valuesGradient: Tensor, scoreVectorGradient: Tensor? = nil) {
        self.operands = operands
        self.weights = weights
        self.contextGradient = contextGradient
        self.queriesGradient = queriesGradient
        self.keysGradient = keysGradient
        self.valuesGradient = valuesGradient
        self.scoreVectorGradient = scoreVectorGradient
    }
}

/// The sizes of a validated attention request.
struct AttentionDimensions {
    /// Ty, Tx, B.
    var targetSteps: Int
    var sourceSteps: Int
    var batch: Int
    /// D, Dv.
    var features: Int
    var valueFeatures: Int
}

/// The valid source steps of one sequence: `first ..< first + count`.
struct AttentionSourceRange {
    var first: Int
    var count: Int

    /// The range of a sequence with `length` valid steps of `steps`, padded on `padding`'s side.
    init(length: Int, steps: Int, padding: PaddingSide) {
        first = padding == .pre ? steps - length : 0
        count = length
    }
}

// MARK: Validation shared by every backend

extension Backend {
    /// Validates a forward request (shapes, element types, ownership, aliasing); the values of
    /// `sourceLengths` are not read here.
    func checkAttentionForward(_ request: AttentionForward) throws -> AttentionDimensions {
        let operation = "attentionForward"
        let size = try checkAttentionOperands(operation, request.operands)
        try checkAttentionOutputs(operation, size, context: request.context, weights: request.weights)
        try checkAttentionWrites(operation, written: [request.context, request.weights],
                                 read: readTensors(request.operands))
        return size
    }

    /// Validates a backward request like `checkAttentionForward`, and the gradients' shapes.
    func checkAttentionBackward(_ request: AttentionBackward) throws -> AttentionDimensions {
        let operation = "attentionBackward"
        let operands = request.operands
        let size = try checkAttentionOperands(operation, operands)
        try checkAttentionOutputs(operation, size, context: request.contextGradient, weights: request.weights)
        let gradients: [(String, Tensor, Tensor)] = [
            ("queriesGradient", request.queriesGradient, operands.queries),
            ("keysGradient", request.keysGradient, operands.keys),
            ("valuesGradient", request.valuesGradient, operands.values),
        ]
        for (name, gradient, tensor) in gradients {
            try checkOperands(operation, [gradient])
            guard gradient.shape == tensor.shape else {
                throw RecurError.shapeMismatch(
                    operation: operation, detail: "\(name) must be \(tensor.shape) like its operand, got \(gradient.shape)")
            }
        }
        try checkScoreVector(operation, operands.score, request.scoreVectorGradient, name: "scoreVectorGradient",
                             features: size.features)
        let written = [request.queriesGradient, request.keysGradient, request.valuesGradient]
            + [request.scoreVectorGradient].compactMap { $0 }
        try checkAttentionWrites(operation, written: written,
                                 read: readTensors(operands) + [request.weights, request.contextGradient])
        return size
    }

    /// Throws for a source length outside 1...Tx, naming the sequence.
    func checkAttentionLengths(_ operation: String, _ lengths: some Sequence<Int32>, sourceSteps: Int) throws {
        for (b, length) in lengths.enumerated() where length < 1 || Int(length) > sourceSteps {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "source length \(length) of sequence \(b) outside 1...\(sourceSteps) (Tx): "
                    + "every sequence needs a valid source step to attend to")
        }
    }

    private func readTensors(_ operands: AttentionOperands) -> [Tensor] {
        [operands.queries, operands.keys, operands.values] + [operands.scoreVector].compactMap { $0 }
    }

    private func checkAttentionOperands(_ operation: String, _ operands: AttentionOperands) throws
        -> AttentionDimensions
    {
        let (q, k, v) = (operands.queries, operands.keys, operands.values)
        try checkOperands(operation, [q, k, v])
        for (name, tensor, layout) in [("queries", q, "[Ty, B, D]"), ("keys", k, "[Tx, B, D]"), ("values", v, "[Tx, B, Dv]")]
        where tensor.shape.rank != 3 {
            throw RecurError.shapeMismatch(operation: operation, detail: "\(name) must be \(layout), got \(tensor.shape)")
        }
        guard k.shape[1] == q.shape[1], v.shape[1] == q.shape[1], v.shape[0] == k.shape[0], k.shape[2] == q.shape[2]
        else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "queries \(q.shape), keys \(k.shape) and values \(v.shape) must be [Ty, B, D], [Tx, B, D] "
                    + "and [Tx, B, Dv]")
        }
        let size = AttentionDimensions(targetSteps: q.shape[0], sourceSteps: k.shape[0], batch: q.shape[1],
                                       features: q.shape[2], valueFeatures: v.shape[2])
        try checkScoreVector(operation, operands.score, operands.scoreVector, name: "scoreVector",
                             features: size.features)
        if let lengths = operands.sourceLengths {
            try checkOperands(operation, [lengths], dtype: .int32)
            guard lengths.count == size.batch else {
                throw RecurError.shapeMismatch(
                    operation: operation, detail: "sourceLengths \(lengths.shape) must hold one length per sequence, \(size.batch)")
            }
        }
        return size
    }

    private func checkScoreVector(_ operation: String, _ score: AttentionScore, _ vector: Tensor?, name: String,
                                  features: Int) throws {
        switch (score, vector) {
        case (.dot, nil):
            return
        case (.dot, .some):
            throw RecurError.invalidArgument(operation: operation, detail: "the dot score takes no \(name)")
        case (.additive, nil):
            throw RecurError.invalidArgument(operation: operation, detail: "the additive score needs \(name) [D]")
        case let (.additive, .some(vector)):
            try checkOperands(operation, [vector])
            guard vector.shape == [features] else {
                throw RecurError.shapeMismatch(
                    operation: operation, detail: "\(name) must be [\(features)] (D), got \(vector.shape)")
            }
        }
    }

    private func checkAttentionOutputs(_ operation: String, _ size: AttentionDimensions, context: Tensor,
                                       weights: Tensor) throws {
        try checkOperands(operation, [context, weights])
        let contextShape: Shape = [size.targetSteps, size.batch, size.valueFeatures]
        guard context.shape == contextShape else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "the context (or its gradient) must be \(contextShape), got \(context.shape)")
        }
        let weightsShape: Shape = [size.batch, size.targetSteps, size.sourceSteps]
        guard weights.shape == weightsShape else {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "weights must be \(weightsShape) ([B, Ty, Tx]), got \(weights.shape)")
        }
    }

    /// Throws when a written tensor is read by the op or written twice.
    private func checkAttentionWrites(_ operation: String, written: [Tensor], read: [Tensor]) throws {
        for (index, tensor) in written.enumerated() {
            let others = read + written[..<index]
            if others.contains(where: { $0.buffer === tensor.buffer }) {
                throw RecurError.invalidArgument(
                    operation: operation,
                    detail: "\(tensor) is written by the op and also read or written through another operand")
            }
        }
    }
}
