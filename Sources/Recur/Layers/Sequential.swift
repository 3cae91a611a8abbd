// A chain of layers run one after another, with PyTorch's nn.Sequential parameter names.
//
// Shape legend: T time steps, B batch, D embedding width, H hidden units, O outputs.

/// One layer of a `Sequential`.
public enum SequentialLayer {
    /// Ids to vectors; only as the first layer.
    case embedding(Embedding)
    /// A recurrent stack; it receives the sequence lengths of the batch.
    case recurrent(RecurrentLayer)
    case dense(Dense)
    case dropout(Dropout)

    /// The layer's parameters under their own names (`weight`, `weight_ih_l0`, ...).
    public var parameters: [NamedParameter] {
        switch self {
        case .embedding(let layer): layer.parameters
        case .recurrent(let layer): layer.parameters
        case .dense(let layer): layer.parameters
        case .dropout: []
        }
    }

    var backend: any Backend {
        switch self {
        case .embedding(let layer): layer.backend
        case .recurrent(let layer): layer.backend
        case .dense(let layer): layer.backend
        case .dropout(let layer): layer.backend
        }
    }

    /// The features this layer reads from its input's last axis, if it fixes them.
    var inputFeatures: Int? {
        switch self {
        case .embedding, .dropout: nil
        case .recurrent(let layer): layer.inputSize
        case .dense(let layer): layer.inputSize
        }
    }

    /// The features of the output's last axis given those of the input.
    func outputFeatures(input: Int?) -> Int? {
        switch self {
        case .embedding(let layer): layer.embeddingSize
        case .recurrent(let layer): layer.directionCount * layer.hiddenSize
        case .dense(let layer): layer.outputSize
        case .dropout: input
        }
    }
}

/// Layers applied in order, with explicit `forward` and `backward`; for example a classifier
/// Embedding → RecurrentLayer (many-to-one) → Dense, or a tagger or language model
/// Embedding → RecurrentLayer (sequences) → Dropout → Dense.
///
/// Parameter names follow PyTorch's `nn.Sequential` state dict: the layer's index, a dot, then
/// the layer's own name (`0.weight`, `1.weight_ih_l0`, `2.weight`); layers without parameters
/// (dropout) still take an index. Every recurrent layer receives the batch's sequence lengths,
/// given or computed from the embedding's padding.
public final class Sequential {
    /// The layers in the order `forward` runs them; the index is the first part of each parameter name.
    public let layers: [SequentialLayer]
    /// The device every layer runs on.
    public let backend: any Backend
    /// Whether the last forward started from ids (so backward ends in the embedding).
    private var startedFromIDs = false
    /// h_n (and c_n) of every recurrent layer after the last forward, in layer order: what a
    /// stateful caller passes as `initialStates` of the next forward. New tensors of each pass,
    /// so holding them keeps no activation of the pass alive.
    public private(set) var finalStates: [RecurrentState] = []

    /// Checks that the layers fit together: an embedding only first, one backend, and each
    /// layer's input features equal to what the layer before produces.
    public init(_ layers: [SequentialLayer]) throws {
        let operation = "Sequential.init"
        guard let first = layers.first else {
            throw RecurError.invalidArgument(operation: operation, detail: "a Sequential needs at least one layer")
        }
        backend = first.backend
        var features: Int? = nil
        for (index, layer) in layers.enumerated() {
            guard layer.backend === backend else {
                throw RecurError.wrongDevice(
                    operation: operation,
                    detail: "layer \(index) runs on \(layer.backend.deviceName), layer 0 on \(backend.deviceName)")
            }
            if case .embedding = layer, index > 0 {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "layer \(index) is an embedding; only layer 0 may be one")
            }
            if let expected = layer.inputFeatures, let features, expected != features {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "layer \(index) reads \(expected) features, layer \(index - 1) produces \(features)")
            }
            features = layer.outputFeatures(input: features)
        }
        self.layers = layers
    }

    // MARK: Parameters

    /// Every layer's parameters in order, named `"\(index).\(name)"` as in PyTorch.
    public var parameters: [NamedParameter] {
        layers.enumerated().flatMap { index, layer in
            layer.parameters.map {
                NamedParameter(name: "\(index).\($0.name)", value: $0.value, gradient: $0.gradient)
            }
        }
    }

    /// Sets every gradient to 0.
    public func zeroGradients() throws {
        for parameter in parameters { try backend.fill(parameter.gradient, with: 0) }
    }

    /// Restarts the dropout streams of every layer that has one (recurrent and dropout layers),
    /// each from its own seed derived from `seed`: a training loop that seeds each step gets the
    /// same masks again when it repeats that step (after resuming from a checkpoint).
    public func seedDropout(_ seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for layer in layers {
            switch layer {
            case .recurrent(let recurrent): recurrent.seedDropout(random.next())
            case .dropout(let dropout): dropout.seed(random.next())
            case .embedding, .dense: break
            }
        }
    }

    // MARK: Forward and backward

    /// Runs the model on a batch of padded ids; layer 0 must be an embedding.
    /// - Parameters:
    ///   - ids: host ids `[T, B]` time-major (as `SequenceBatch.ids`), or `[B, T]` when the first
    ///     recurrent layer is batch-first.
    ///   - shape: `[T, B]` or `[B, T]`.
    ///   - lengths: each sequence's length; nil computes them from the embedding's padding index
    ///     (`Embedding.lengths(ofPadded:...)`), or uses full length when it has none.
    ///   - padding: which end of each sequence holds the padding.
    ///   - initialStates: h0 (and c0) of each recurrent layer in order, `[L * D, B, H]` each (a
    ///     previous pass's `finalStates`); nil starts every layer from zeros.
    ///   - training: applies dropout.
    /// - Returns: the last layer's output.
    /// - Throws: `RecurError.invalidArgument` for an id outside the vocabulary (naming it and its
    ///   position) or a sequence of padding only (length 0, which recurrent layers reject).
    public func forward(ids: [Int32], shape: Shape, lengths: [Int]? = nil, padding: PaddingSide,
                        initialStates: [RecurrentState]? = nil, training: Bool) throws -> Tensor {
        guard case .embedding(let embedding) = layers[0] else {
            throw RecurError.invalidArgument(
                operation: "Sequential.forward", detail: "forward(ids:) needs an embedding as layer 0")
        }
        guard shape.rank == 2 else {
            throw RecurError.shapeMismatch(
                operation: "Sequential.forward", detail: "ids must be [T, B] or [B, T], got \(shape)")
        }
        let batchFirst = firstRecurrentLayer?.batchFirst ?? false
        var sequenceLengths = lengths
        if sequenceLengths == nil, let paddingIndex = embedding.paddingIndex, firstRecurrentLayer != nil {
            sequenceLengths = try Embedding.lengths(
                ofPadded: ids, steps: batchFirst ? shape[1] : shape[0], padding: padding, paddingIndex: paddingIndex,
                batchFirst: batchFirst)
        }
        try checkLengthsBeforeRunning(sequenceLengths, leadingAxes: shape)
        try checkStateCount(initialStates)
        let embedded = try embedding.forward(ids: ids, shape: shape)  // [T, B, D] or [B, T, D]
        startedFromIDs = true
        return try run(embedded, from: 1, lengths: sequenceLengths, padding: padding, initialStates: initialStates,
                       training: training)
    }

    /// Runs the model on a float input (for a model without an embedding).
    /// - Parameters:
    ///   - input: what layer 0 reads (`[T, B, I]` for a recurrent layer, `[..., I]` for a dense one).
    ///   - lengths: each sequence's length for the recurrent layers; nil means full length.
    ///   - padding: which end of each sequence holds the padding. Default `.post`.
    ///   - initialStates: as in `forward(ids:...)`.
    ///   - training: applies dropout.
    public func forward(_ input: Tensor, lengths: [Int]? = nil, padding: PaddingSide = .post,
                        initialStates: [RecurrentState]? = nil, training: Bool) throws -> Tensor {
        if case .embedding = layers[0] {
            throw RecurError.invalidArgument(
                operation: "Sequential.forward", detail: "layer 0 is an embedding: use forward(ids:shape:...)")
        }
        try checkLengthsBeforeRunning(lengths, leadingAxes: input.shape)
        try checkStateCount(initialStates)
        startedFromIDs = false
        return try run(input, from: 0, lengths: lengths, padding: padding, initialStates: initialStates,
                       training: training)
    }

    /// Checks `lengths` against the time and batch axes (the first two of `leadingAxes`, in the
    /// first recurrent layer's layout) before any layer runs, so a bad request enqueues nothing.
    private func checkLengthsBeforeRunning(_ lengths: [Int]?, leadingAxes shape: Shape) throws {
        guard let lengths, let recurrent = firstRecurrentLayer, shape.rank >= 2 else { return }
        let (steps, batch) = recurrent.batchFirst ? (shape[1], shape[0]) : (shape[0], shape[1])
        try recurrent.checkLengths("Sequential.forward", lengths, steps: steps, batch: batch)
    }

    /// Checks that `states` holds one state per recurrent layer (their shapes each layer checks).
    private func checkStateCount(_ states: [RecurrentState]?) throws {
        guard let states else { return }
        let recurrentCount = layers.filter { if case .recurrent = $0 { true } else { false } }.count
        guard states.count == recurrentCount else {
            throw RecurError.invalidArgument(
                operation: "Sequential.forward",
                detail: "\(states.count) initial states for \(recurrentCount) recurrent layers")
        }
    }

    /// Back-propagates dL/d output through every layer of the last forward, accumulating (+=)
    /// into every parameter gradient.
    /// - Returns: dL/d input for a float input; nil when the model started from ids.
    @discardableResult
    public func backward(_ outputGradient: Tensor) throws -> Tensor? {
        var gradient = outputGradient
        for layer in layers.reversed() {
            switch layer {
            case .embedding(let embedding):
                try embedding.backward(gradient)
                return nil
            case .recurrent(let recurrent):
                gradient = try recurrent.backward(outputGradient: gradient).input
            case .dense(let dense):
                gradient = try dense.backward(gradient)
            case .dropout(let dropout):
                gradient = try dropout.backward(gradient)
            }
        }
        return startedFromIDs ? nil : gradient
    }

    private var firstRecurrentLayer: RecurrentLayer? {
        for layer in layers {
            if case .recurrent(let recurrent) = layer { return recurrent }
        }
        return nil
    }

    private func run(_ input: Tensor, from start: Int, lengths: [Int]?, padding: PaddingSide,
                     initialStates: [RecurrentState]?, training: Bool) throws -> Tensor {
        var x = input
        var states: [RecurrentState] = []
        finalStates = []
        for layer in layers[start...] {
            switch layer {
            case .embedding:
                preconditionFailure("Sequential.init allows an embedding only as layer 0")
            case .recurrent(let recurrent):
                let result = try recurrent.forward(x, lengths: lengths, padding: padding,
                                                   initialState: initialStates?[states.count], training: training)
                states.append(result.finalState)
                x = result.output
            case .dense(let dense):
                x = try dense.forward(x)
            case .dropout(let dropout):
                x = try dropout.forward(x, training: training)
            }
        }
        finalStates = states
        return x
    }
}
