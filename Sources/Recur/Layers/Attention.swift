// Attention as a layer: the projections of a score kind (GEMMs) around the backend's fused
// attention op (Backend/AttentionOps.swift), with explicit forward and backward and PyTorch-style
// parameter names. A decoder runs it with its states as queries and the encoder's outputs as keys
// and values; Luong's attentional state h̃ = tanh(W_c [c; h]) is the model's own Dense layer.
//
// Shape legend: Ty target steps, Tx source steps, B batch, Dq query features, Dk key features,
// Dv value features, A the additive score's attention size. Sequences are time-major.

/// How `Attention` scores a query h (a decoder state) against a key h̄ (an encoder output).
public enum AttentionKind: String, Sendable, CaseIterable, Codable {
    /// Luong's dot: s = hᵀ h̄ (Dq = Dk). No parameters.
    case dot
    /// Luong's general: s = hᵀ W_a h̄, computed as the dot score of the projected query W h with
    /// `weight` W = W_aᵀ `[Dk, Dq]` (PyTorch's `nn.Linear(Dq, Dk, bias=False)`).
    case general
    /// Bahdanau's additive (concat): s = vᵀ tanh(W_q h + W_k h̄), with `query.weight` W_q
    /// `[A, Dq]`, `key.weight` W_k `[A, Dk]` (each an `nn.Linear` without bias) and `v` `[A]`.
    case additive
}

/// The gradients `Attention.backward(from:)` returns, one per input of the last forward pass.
public struct AttentionGradients: Sendable {
    /// dL/d queries, `[Ty, B, Dq]`.
    public let queries: Tensor
    /// dL/d keys, `[Tx, B, Dk]`; 0 at padded source steps.
    public let keys: Tensor
    /// dL/d values, `[Tx, B, Dv]`; 0 at padded source steps.
    public let values: Tensor
    /// dL/d keys + dL/d values, set when the forward pass read one tensor as both keys and values
    /// (the usual encoder outputs, `Attention.forward(queries:memory:sourceLengths:padding:)`):
    /// the whole gradient to pass back to that tensor. nil otherwise.
    public let memory: Tensor?
}

/// Attention over the valid source steps of each sequence, with explicit `forward` and
/// `backward`: c_i = Σ_j a_ij V_j, a_i = softmax_j(score(q_i, k_j)) over the valid j, the score
/// one of `AttentionKind`'s.
///
/// Parameters (state-dict names): `.dot` none; `.general` `weight` `[Dk, Dq]`; `.additive`
/// `query.weight` `[A, Dq]`, `key.weight` `[A, Dk]`, `v` `[A]`. `backward(from:)` accumulates
/// (+=) into their gradients until `zeroGradients()`. The last forward pass's attention weights
/// stay readable in ``attentionWeights`` (`[B, Ty, Tx]`, one heat map per sequence).
public final class Attention {
    /// How queries are scored against keys.
    public let kind: AttentionKind
    /// Dq: features of a query.
    public let querySize: Int
    /// Dk: features of a key.
    public let keySize: Int
    /// The features the score compares: A for `.additive`, Dk otherwise.
    public let attentionSize: Int
    /// The device that holds the parameters and runs the layer.
    public let backend: any Backend

    /// `.general`: `weight` W `[Dk, Dq]`. `.additive`: `query.weight` W_q `[A, Dq]`. nil for `.dot`.
    public let queryWeight: Tensor?
    /// `.additive` only: `key.weight` W_k `[A, Dk]`.
    public let keyWeight: Tensor?
    /// `.additive` only: `v` `[A]`.
    public let scoreVector: Tensor?
    private let queryWeightGradient: Tensor?  // like queryWeight
    private let keyWeightGradient: Tensor?  // [A, Dk]
    private let scoreVectorGradient: Tensor?  // [A]

    /// The attention weights of the last forward pass, `[B, Ty, Tx]`: row (b, i) is target step
    /// i's distribution over the source steps of sequence b, 0 at padded steps. nil before the
    /// first forward pass.
    public private(set) var attentionWeights: Tensor?

    /// What the last forward pass read, kept for `backward`.
    struct Cache {
        /// The inputs as passed, and whether keys and values were one tensor.
        let queries: Tensor, keys: Tensor, values: Tensor
        let sharedMemory: Bool
        /// The op's operands (queries and keys after the projections).
        let operands: AttentionOperands
        let weights: Tensor
        let contextShape: Shape
    }
    private var cache: Cache?

    /// What the last forward left for its backward; see `RecurrentLayer.forwardRecord`.
    var forwardRecord: Cache? {
        get { cache }
        set { cache = newValue }
    }

    /// Makes the layer with initialised parameters and zero gradients on `backend`.
    /// - Parameters:
    ///   - kind: how queries are scored against keys.
    ///   - querySize: Dq, the features of a query.
    ///   - keySize: Dk, the features of a key (for `.dot`, Dq itself).
    ///   - attentionSize: A for `.additive`; nil (the default) takes Dk. Ignored by the others.
    ///   - initialization: `.pytorch` (the default): every weight U(±1/√fan_in) as `nn.Linear`,
    ///     `v` U(±1/√A); `.glorotUniform`: every weight U(±√(6 / (fan_in + fan_out))) as Keras, `v`
    ///     U(±√(3 / A)) (Keras's fans of a vector are both its length).
    ///   - seed: seeds the initial parameters (`SeededRandom`, drawn in state-dict order), the
    ///     same values on every backend.
    ///   - backend: the device that holds the parameters and runs the layer.
    public init(kind: AttentionKind, querySize: Int, keySize: Int, attentionSize: Int? = nil,
                initialization: DenseInitialization = .pytorch, seed: UInt64 = 0, backend: any Backend) throws {
        let operation = "Attention.init"
        let size = kind == .additive ? attentionSize ?? keySize : keySize
        for (name, value) in [("querySize", querySize), ("keySize", keySize), ("attentionSize", size)] where value < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(value)")
        }
        if kind == .dot, querySize != keySize {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "the dot score needs queries and keys of one size, got \(querySize) and \(keySize)")
        }
        self.kind = kind
        self.querySize = querySize
        self.keySize = keySize
        self.attentionSize = size
        self.backend = backend
        var random = SeededRandom(seed: seed)
        // A [rows, columns] weight drawn as `initialization` draws a layer with `columns` inputs.
        func weight(_ rows: Int, _ columns: Int) throws -> Tensor {
            let bound = initialization == .pytorch
                ? 1 / Double(columns).squareRoot() : (6 / Double(rows + columns)).squareRoot()
            return try backend.upload((0..<(rows * columns)).map { _ in random.uniform(bound: bound) },
                                      shape: [rows, columns])
        }
        switch kind {
        case .dot:
            (queryWeight, keyWeight, scoreVector) = (nil, nil, nil)
        case .general:
            (queryWeight, keyWeight, scoreVector) = (try weight(keySize, querySize), nil, nil)
        case .additive:
            queryWeight = try weight(size, querySize)
            keyWeight = try weight(size, keySize)
            let bound = initialization == .pytorch ? 1 / Double(size).squareRoot() : (3 / Double(size)).squareRoot()
            scoreVector = try backend.upload((0..<size).map { _ in random.uniform(bound: bound) }, shape: [size])
        }
        queryWeightGradient = try queryWeight.map { try backend.zeros($0.shape) }
        keyWeightGradient = try keyWeight.map { try backend.zeros($0.shape) }
        scoreVectorGradient = try scoreVector.map { try backend.zeros($0.shape) }
    }

    // MARK: Parameters

    /// The parameters with their gradients, under their state-dict names: none for `.dot`,
    /// `weight` for `.general`, `query.weight`, `key.weight` and `v` for `.additive`.
    public var parameters: [NamedParameter] {
        let queryName = kind == .general ? "weight" : "query.weight"
        let named: [(String, Tensor?, Tensor?)] = [
            (queryName, queryWeight, queryWeightGradient), ("key.weight", keyWeight, keyWeightGradient),
            ("v", scoreVector, scoreVectorGradient),
        ]
        return named.compactMap { name, value, gradient in
            guard let value, let gradient else { return nil }
            return NamedParameter(name: name, value: value, gradient: gradient)
        }
    }

    /// ``parameters`` renamed `"\(prefix).\(name)"`, the names they take inside a model that
    /// composes the layer (`attention.query.weight`).
    /// - Parameter prefix: the layer's path in the model, without the final dot.
    /// - Returns: the same tensors and gradients under the longer names, in the same order.
    public func parameters(prefixedBy prefix: String) -> [NamedParameter] {
        parameters.map { NamedParameter(name: "\(prefix).\($0.name)", value: $0.value, gradient: $0.gradient) }
    }

    /// Sets every gradient to 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    // MARK: Forward and backward

    /// Attends from every query to the valid keys of its sequence, keeping what `backward` needs.
    /// - Parameters:
    ///   - queries: `[Ty, B, Dq]`, time-major (the decoder's states).
    ///   - keys: `[Tx, B, Dk]`, time-major (the encoder's outputs).
    ///   - values: `[Tx, B, Dv]`, time-major; often the keys themselves (see
    ///     ``forward(queries:memory:sourceLengths:padding:)``).
    ///   - sourceLengths: each sequence's valid source steps, each in 1...Tx, checked here; nil
    ///     (the default) when all Tx are valid.
    ///   - padding: which end of the source axis holds the padding; default `.post`.
    /// - Returns: the context `[Ty, B, Dv]`; the weights are in ``attentionWeights``.
    public func forward(queries: Tensor, keys: Tensor, values: Tensor, sourceLengths: [Int]? = nil,
                        padding: PaddingSide = .post) throws -> Tensor {
        let operation = "Attention.forward"
        try backend.checkOperands(operation, [queries, keys, values])
        for (name, tensor, size) in [("queries", queries, querySize), ("keys", keys, keySize)]
        where tensor.shape.rank != 3 || tensor.shape[2] != size {
            throw RecurError.shapeMismatch(
                operation: operation, detail: "\(name) must be [T, B, \(size)], got \(tensor.shape)")
        }
        guard values.shape.rank == 3 else {
            throw RecurError.shapeMismatch(operation: operation, detail: "values must be [Tx, B, Dv], got \(values.shape)")
        }
        let (ty, tx, batch) = (queries.shape[0], keys.shape[0], queries.shape[1])
        var lengths: Tensor?
        if let sourceLengths {
            guard sourceLengths.count == batch else {
                throw RecurError.shapeMismatch(
                    operation: operation, detail: "\(sourceLengths.count) source lengths for a batch of \(batch)")
            }
            let values = sourceLengths.map { Int32(clamping: $0) }
            try backend.checkAttentionLengths(operation, values, sourceSteps: tx)
            lengths = try backend.upload(values, shape: [batch])
        }
        let projectedQueries = try project(queries, by: queryWeight)
        let projectedKeys = try project(keys, by: keyWeight)
        let operands = AttentionOperands(
            score: kind == .additive ? .additive : .dot, queries: projectedQueries, keys: projectedKeys, values: values,
            scoreVector: scoreVector, sourceLengths: lengths, padding: padding)
        let context = try backend.uninitialized([ty, batch, values.shape[2]])  // [Ty, B, Dv]
        let weights = try backend.uninitialized([batch, ty, tx])  // [B, Ty, Tx]
        try backend.attentionForward(AttentionForward(operands: operands, context: context, weights: weights))
        cache = Cache(queries: queries, keys: keys, values: values, sharedMemory: keys === values, operands: operands,
                      weights: weights, contextShape: context.shape)
        attentionWeights = weights
        return context
    }

    /// ``forward(queries:keys:values:sourceLengths:padding:)`` with one tensor as keys and values,
    /// the encoder's outputs; `backward(from:)` then also returns their summed gradient
    /// (``AttentionGradients/memory``).
    /// - Parameters:
    ///   - queries: `[Ty, B, Dq]`, time-major.
    ///   - memory: `[Tx, B, Dk]`, time-major: the keys and the values.
    ///   - sourceLengths: each sequence's valid source steps, each in 1...Tx; nil for all Tx.
    ///   - padding: which end of the source axis holds the padding; default `.post`.
    /// - Returns: the context `[Ty, B, Dk]`.
    public func forward(queries: Tensor, memory: Tensor, sourceLengths: [Int]? = nil,
                        padding: PaddingSide = .post) throws -> Tensor {
        try forward(queries: queries, keys: memory, values: memory, sourceLengths: sourceLengths, padding: padding)
    }

    /// Back-propagates dL/d context through the last forward pass, accumulating (+=) into the
    /// parameter gradients.
    /// - Parameter contextGradient: dL/d context, `[Ty, B, Dv]` like the context (not modified).
    /// - Returns: the gradients of the queries, keys and values (and of the memory, when keys and
    ///   values were one tensor).
    public func backward(from contextGradient: Tensor) throws -> AttentionGradients {
        let operation = "Attention.backward"
        guard let cache else {
            throw RecurError.invalidArgument(operation: operation, detail: "backward needs a forward pass first")
        }
        try backend.checkOperands(operation, [contextGradient])
        guard contextGradient.shape == cache.contextShape else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "contextGradient must be \(cache.contextShape) like the context, got \(contextGradient.shape)")
        }
        let operands = cache.operands
        let projectedQueriesGradient = try backend.uninitialized(operands.queries.shape)  // [Ty, B, D]
        let projectedKeysGradient = try backend.uninitialized(operands.keys.shape)  // [Tx, B, D]
        let valuesGradient = try backend.uninitialized(cache.values.shape)  // [Tx, B, Dv]
        try backend.attentionBackward(AttentionBackward(
            operands: operands, weights: cache.weights, contextGradient: contextGradient,
            queriesGradient: projectedQueriesGradient, keysGradient: projectedKeysGradient,
            valuesGradient: valuesGradient, scoreVectorGradient: scoreVectorGradient))
        let queriesGradient = try projectBack(projectedQueriesGradient, of: cache.queries, weight: queryWeight,
                                              weightGradient: queryWeightGradient)
        let keysGradient = try projectBack(projectedKeysGradient, of: cache.keys, weight: keyWeight,
                                           weightGradient: keyWeightGradient)
        var memory: Tensor?
        if cache.sharedMemory {
            memory = try backend.uninitialized(cache.keys.shape)
            try backend.add(keysGradient, valuesGradient, into: memory!)
        }
        return AttentionGradients(queries: queriesGradient, keys: keysGradient, values: valuesGradient, memory: memory)
    }

    /// x Wᵀ over the rows of x `[T, B, I]`, giving `[T, B, O]` for W `[O, I]`; x itself without W.
    private func project(_ x: Tensor, by weight: Tensor?) throws -> Tensor {
        guard let weight else { return x }
        let (rows, inputs, outputs) = (x.shape[0] * x.shape[1], weight.shape[1], weight.shape[0])
        let y = try backend.uninitialized([x.shape[0], x.shape[1], outputs])
        try backend.gemm(m: rows, n: outputs, k: inputs, alpha: 1, a: MatrixOperand(x, leadingDimension: inputs),
                         b: MatrixOperand(weight, leadingDimension: inputs, transposed: true), beta: 0,
                         c: MatrixOperand(y, leadingDimension: outputs))
        return y
    }

    /// The backward of `project`: dW += dyᵀ x, and returns dx = dy W; dy itself without W.
    private func projectBack(_ dy: Tensor, of x: Tensor, weight: Tensor?, weightGradient: Tensor?) throws -> Tensor {
        guard let weight, let weightGradient else { return dy }
        let (rows, inputs, outputs) = (x.shape[0] * x.shape[1], weight.shape[1], weight.shape[0])
        // dW[O, I] += dyᵀ x: [O, N] [N, I].
        try backend.gemm(m: outputs, n: inputs, k: rows, alpha: 1,
                         a: MatrixOperand(dy, leadingDimension: outputs, transposed: true),
                         b: MatrixOperand(x, leadingDimension: inputs), beta: 1,
                         c: MatrixOperand(weightGradient, leadingDimension: inputs))
        // dx[N, I] = dy W: [N, O] [O, I].
        let dx = try backend.uninitialized(x.shape)
        try backend.gemm(m: rows, n: inputs, k: outputs, alpha: 1, a: MatrixOperand(dy, leadingDimension: outputs),
                         b: MatrixOperand(weight, leadingDimension: inputs), beta: 0,
                         c: MatrixOperand(dx, leadingDimension: inputs))
        return dx
    }
}
