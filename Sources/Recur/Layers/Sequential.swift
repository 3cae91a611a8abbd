// A chain of layers run one after another, with PyTorch's nn.Sequential parameter names.
//
// Shape legend: T time steps, B batch, D embedding width, H hidden units, O outputs.

/// Layers applied in order, with explicit `forward` and `backward`; for example a classifier
/// Embedding → RecurrentLayer (many-to-one) → Dense, or a tagger or language model
/// Embedding → RecurrentLayer (sequences) → Dropout → Dense.
///
/// Parameter names follow PyTorch's `nn.Sequential` state dict: the layer's index, a dot, then
/// the layer's own name (`0.weight`, `1.weight_ih_l0`, `2.weight`); layers without parameters
/// (dropout) still take an index. Every layer receives the batch's sequence lengths (in a
/// `LayerContext`), given or computed from the embedding's padding; the sequence layers read them.
///
/// Any type that conforms to `Layer` fits in the chain; `Sequential` asks each layer through the
/// narrower protocols what else it does: reads ids (`TokenInputLayer`, layer 0 only), carries
/// a recurrent state (`StatefulLayer`), or draws dropout masks (`StochasticLayer`).
public final class Sequential {
    /// The layers in the order `forward` runs them; the index is the first part of each parameter name.
    public let layers: [any Layer]
    /// The device every layer runs on.
    public let backend: any Backend
    /// The features of the last layer's output (its last axis), when the layers fix them.
    public let outputFeatures: Int?
    /// Whether the last forward started from ids (so backward ends in the embedding).
    private var startedFromIDs = false
    /// h_n (and c_n) of every recurrent layer after the last forward, in layer order: what a
    /// stateful caller passes as `initialStates` of the next forward. New tensors of each pass,
    /// so holding them keeps no activation of the pass alive.
    public private(set) var finalStates: [RecurrentState] = []

    /// Checks that the layers fit together: a layer that reads ids only first, one backend, and
    /// each layer's input features equal to what the layer before produces.
    /// - Parameter layers: the layers in the order `forward` runs them; at least one.
    public init(_ layers: [any Layer]) throws {
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
            if layer is any TokenInputLayer, index > 0 {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "layer \(index) reads ids (an embedding); only layer 0 may")
            }
            if let expected = layer.inputFeatures, let features, expected != features {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "layer \(index) reads \(expected) features, layer \(index - 1) produces \(features)")
            }
            features = layer.outputFeatures(input: features)
        }
        self.layers = layers
        outputFeatures = features
    }

    // MARK: Parameters

    /// Every layer's parameters in order, named `"\(index).\(name)"` as in PyTorch.
    public var parameters: [NamedParameter] {
        layers.enumerated().flatMap { index, layer in layer.parameters(prefixedBy: "\(index)") }
    }

    /// Sets every gradient (and every per-occurrence square, where kept) to 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    /// Restarts the dropout streams of every layer that has one (recurrent and dropout layers),
    /// each from its own seed derived from `seed`: a training loop that seeds each step gets the
    /// same masks again when it repeats that step (after resuming from a checkpoint).
    public func seedDropout(_ seed: UInt64) {
        var random = SeededRandom(seed: seed)
        for case let layer as any StochasticLayer in layers { layer.seedDropout(random.next()) }
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
        let embedding = try tokenInputLayer()
        guard shape.rank == 2 else {
            throw RecurError.shapeMismatch(
                operation: "Sequential.forward", detail: "ids must be [T, B] or [B, T], got \(shape)")
        }
        let batchFirst = firstSequenceLayer?.batchFirst ?? false
        var sequenceLengths = lengths
        if sequenceLengths == nil, let paddingIndex = embedding.paddingIndex, firstSequenceLayer != nil {
            sequenceLengths = try Embedding.lengths(
                ofPadded: ids, steps: batchFirst ? shape[1] : shape[0], padding: padding, paddingIndex: paddingIndex,
                batchFirst: batchFirst)
        }
        return try forward(ids: ids, shape: shape, exactLengths: sequenceLengths, padding: padding,
                           initialStates: initialStates, training: training)
    }

    /// Runs the model on ids with `lengths` as given, never derived from the padding: what
    /// feeding a sequence piece by piece (`TextGenerator`) needs, where nil means full length.
    func forward(ids: [Int32], shape: Shape, exactLengths lengths: [Int]?, padding: PaddingSide,
                 initialStates: [RecurrentState]?, training: Bool) throws -> Tensor {
        let embedding = try tokenInputLayer()
        try checkLengthsBeforeRunning(lengths, leadingAxes: shape)
        try checkStateCount(initialStates)
        let embedded = try embedding.forward(ids: ids, shape: shape)  // [T, B, D] or [B, T, D]
        startedFromIDs = true
        return try run(embedded, from: 1, lengths: lengths, padding: padding, initialStates: initialStates,
                       training: training)
    }

    /// Layer 0 as a layer that reads ids.
    /// - Throws: `RecurError.invalidArgument` when layer 0 reads no ids.
    func tokenInputLayer() throws -> any TokenInputLayer {
        guard let layer = layers[0] as? any TokenInputLayer else {
            throw RecurError.invalidArgument(
                operation: "Sequential.forward", detail: "forward(ids:) needs an embedding as layer 0")
        }
        return layer
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
        if layers[0] is any TokenInputLayer {
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
    /// first sequence layer's layout) before any layer runs, so a bad request enqueues nothing.
    private func checkLengthsBeforeRunning(_ lengths: [Int]?, leadingAxes shape: Shape) throws {
        guard let lengths, let sequenceLayer = firstSequenceLayer, shape.rank >= 2 else { return }
        let (steps, batch) = sequenceLayer.batchFirst ? (shape[1], shape[0]) : (shape[0], shape[1])
        try sequenceLayer.checkLengths(lengths, steps: steps, batch: batch, operation: "Sequential.forward")
    }

    /// Checks that `states` holds one state per stateful layer (their shapes each layer checks).
    private func checkStateCount(_ states: [RecurrentState]?) throws {
        guard let states else { return }
        let recurrentCount = statefulLayers.count
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
            // Only a layer that reads ids, layer 0, has no input gradient.
            guard let inputGradient = try layer.backward(from: gradient) else { return nil }
            gradient = inputGradient
        }
        return startedFromIDs ? nil : gradient
    }

    /// The layers that carry a recurrent state, in layer order: `finalStates` and
    /// `initialStates` hold one state for each.
    public var statefulLayers: [any StatefulLayer] {
        layers.compactMap { $0 as? any StatefulLayer }
    }

    /// The first layer that reads sequences: its layout is the one of the lengths.
    var firstSequenceLayer: (any SequenceLayer)? {
        layers.lazy.compactMap { $0 as? any SequenceLayer }.first
    }

    private func run(_ input: Tensor, from start: Int, lengths: [Int]?, padding: PaddingSide,
                     initialStates: [RecurrentState]?, training: Bool) throws -> Tensor {
        var x = input
        var states: [RecurrentState] = []
        finalStates = []
        let context = LayerContext(training: training, lengths: lengths, padding: padding)
        for layer in layers[start...] {
            if let stateful = layer as? any StatefulLayer {
                let result = try stateful.forward(x, initialState: initialStates?[states.count], context: context)
                states.append(result.finalState)
                x = result.output
            } else {
                x = try layer.forward(x, context: context)
            }
        }
        finalStates = states
        return x
    }
}

/// A `Sequential` is a layer itself, so a larger model can hold chains (an encoder, a decoder)
/// and name their parameters under its own prefixes.
extension Sequential: StochasticLayer {
    /// Layer 0's input features, when it fixes them.
    public var inputFeatures: Int? { layers[0].inputFeatures }

    /// The features of the last layer's output.
    /// - Parameter input: the features of the input's last axis, when known.
    /// - Returns: ``outputFeatures`` when the layers fix it, else what the chain makes of `input`.
    public func outputFeatures(input: Int?) -> Int? {
        outputFeatures ?? layers.reduce(input) { $1.outputFeatures(input: $0) }
    }

    /// Runs the chain from a zero state, with the context's lengths, padding and training flag.
    /// - Parameters:
    ///   - input: what layer 0 reads; int32 ids `[T, B]` (or `[B, T]`) when it reads ids, which
    ///     are read back to the host to be checked, as ``forward(ids:shape:lengths:padding:initialStates:training:)``
    ///     takes them.
    ///   - context: the training flag, lengths and padding.
    /// - Returns: the last layer's output.
    public func forward(_ input: Tensor, context: LayerContext) throws -> Tensor {
        guard layers[0] is any TokenInputLayer else {
            return try forward(input, lengths: context.lengths, padding: context.padding, training: context.training)
        }
        try backend.checkOperands("Sequential.forward", [input], dtype: .int32)
        return try forward(ids: try backend.downloadInt32(input), shape: input.shape, lengths: context.lengths,
                           padding: context.padding, training: context.training)
    }

    /// ``backward(_:)``.
    /// - Parameter outputGradient: dL/d output of the last forward.
    /// - Returns: dL/d input; nil when the chain started from ids.
    public func backward(from outputGradient: Tensor) throws -> Tensor? {
        try backward(outputGradient)
    }
}
