// What every layer offers a model that composes it: forward, backward, named parameters, the
// device. Narrower protocols add what only some layers have (ids as input, sequence layout,
// recurrent state, dropout streams, gradient-flow records), so a model asks a layer what it can
// do instead of switching over the kinds of layer it knows.
//
// Shape legend: T time steps, B batch, F features.

/// What one forward pass tells every layer it runs: whether it trains, and the sequences' valid
/// lengths and padding side for the layers that read sequences.
public struct LayerContext: Sendable {
    /// Whether the pass trains: dropout draws masks; false runs the deterministic inference pass.
    public var training: Bool
    /// Each sequence's valid length, in the batch's order; nil means every sequence fills all T
    /// steps. Layers that do not read sequences ignore it.
    public var lengths: [Int]?
    /// Which end of each sequence holds the padding.
    public var padding: PaddingSide

    /// - Parameters:
    ///   - training: see ``training``.
    ///   - lengths: see ``lengths``; default nil (full length).
    ///   - padding: see ``padding``; default `.post`.
    public init(training: Bool, lengths: [Int]? = nil, padding: PaddingSide = .post) {
        self.training = training
        self.lengths = lengths
        self.padding = padding
    }
}

/// A differentiable layer with explicit `forward` and `backward` passes, the unit models are
/// composed of (`Sequential` chains them).
///
/// A layer is a reference type: it owns its parameters and their gradients on one backend, and
/// remembers what its last `forward` needs for the `backward` that follows. `backward`
/// accumulates (+=) into the parameter gradients until they are zeroed.
///
/// A layer with several inputs (attention reading decoder states, encoder outputs and a source
/// mask) is a composition too: a model object holds the layers, runs their `forward`s in its own
/// order, feeds each the tensors it needs, and runs the `backward`s in reverse, adding the
/// gradients of a tensor read twice. It names its children's parameters with their paths as
/// prefixes, as `Sequential` does with its indices (``parameters(prefixedBy:)``).
public protocol Layer: AnyObject {
    /// The device that holds the parameters and runs the layer; every operand must live on it.
    var backend: any Backend { get }

    /// The trainable tensors with their gradients, under the layer's own state-dict names
    /// (`weight`, `weight_ih_l0`, …); a model that composes the layer prefixes them with its
    /// path. Empty for a layer without parameters. The order is the state dict's.
    var parameters: [NamedParameter] { get }

    /// The features the layer reads from its input's last axis, when it fixes them; nil when it
    /// takes any (dropout) or reads no float features (an embedding reads ids). Default nil.
    var inputFeatures: Int? { get }

    /// The features of the output's last axis.
    /// - Parameter input: the features of the input's last axis, when known.
    /// - Returns: the output's features, or nil when they cannot be known. Default: `input`
    ///   (a layer that keeps its input's width).
    func outputFeatures(input: Int?) -> Int?

    /// Runs the layer on `input`, keeping what `backward(from:)` needs.
    /// - Parameters:
    ///   - input: the layer's input; a layer that reads ids takes them as an int32 tensor.
    ///   - context: the pass's training flag and the sequences' lengths and padding.
    /// - Returns: the output, a new tensor or (for an identity pass, such as dropout at
    ///   inference) the input itself.
    func forward(_ input: Tensor, context: LayerContext) throws -> Tensor

    /// Back-propagates through the last `forward`, accumulating (+=) into the parameter
    /// gradients.
    /// - Parameter outputGradient: dL/d output, shaped like the last forward's output (not
    ///   modified).
    /// - Returns: dL/d input, shaped like the last forward's input; nil when the input has no
    ///   gradient (ids).
    func backward(from outputGradient: Tensor) throws -> Tensor?

    /// Sets every parameter's gradient to 0. Default: fills each of ``parameters``' gradients.
    func zeroGradients() throws
}

extension Layer {
    /// nil: the layer takes any features.
    public var inputFeatures: Int? { nil }

    /// The input's features: the layer keeps its input's width.
    /// - Parameter input: the features of the input's last axis, when known.
    /// - Returns: `input`.
    public func outputFeatures(input: Int?) -> Int? { input }

    /// Fills each of ``parameters``' gradients (and per-occurrence squares, where kept) with 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    /// ``parameters`` renamed `"\(prefix).\(name)"`, the names the layer's parameters take
    /// inside a model that composes it (`1.weight_ih_l0` for layer 1 of a `Sequential`).
    /// - Parameter prefix: the layer's path in the model, without the final dot.
    /// - Returns: the same tensors and gradients under the longer names, in the same order.
    public func parameters(prefixedBy prefix: String) -> [NamedParameter] {
        parameters.map {
            NamedParameter(name: "\(prefix).\($0.name)", value: $0.value, gradient: $0.gradient,
                           squaredGradient: $0.squaredGradient)
        }
    }
}

/// A layer that reads token ids from the host, such as ``Embedding``: a model's first layer, so
/// the ids are checked on the host before they are uploaded, and the model can derive each
/// sequence's length from the padding id.
public protocol TokenInputLayer: Layer {
    /// The ids the layer has a row for: `0 ..< vocabularySize`.
    var vocabularySize: Int { get }
    /// The id that pads sequences, or nil when the layer has none.
    var paddingIndex: Int32? { get }
    /// Runs the layer on host ids; `backward(from:)` then returns nil.
    /// - Parameters:
    ///   - ids: host ids, row-major in `shape`.
    ///   - shape: the shape of `ids`.
    /// - Returns: the output, `[shape..., features]`.
    func forward(ids: [Int32], shape: Shape) throws -> Tensor
}

/// A layer that reads sequences laid out `[T, B, F]` or `[B, T, F]` with per-sequence lengths
/// (``LayerContext/lengths``), which a model checks before any layer runs.
public protocol SequenceLayer: Layer {
    /// Whether the input is `[B, T, F]` instead of `[T, B, F]`.
    var batchFirst: Bool { get }
    /// Throws unless `lengths` fit a batch of `batch` sequences of `steps` steps.
    /// - Parameters:
    ///   - lengths: the valid lengths, one per sequence.
    ///   - steps: T.
    ///   - batch: B.
    ///   - operation: the operation the error names.
    func checkLengths(_ lengths: [Int], steps: Int, batch: Int, operation: String) throws
}

/// A sequence layer that carries a recurrent state from one pass to the next: a stateful
/// caller passes the final state of a pass as the initial state of the next.
public protocol StatefulLayer: SequenceLayer {
    /// The shapes of the state for a batch of `batchSize` sequences.
    /// - Parameter batchSize: B.
    /// - Returns: the hidden state's shape, and the cell state's when the layer has one.
    func stateShapes(batchSize: Int) -> (hidden: Shape, cell: Shape?)

    /// Runs the layer from `initialState`, keeping what `backward(from:)` needs.
    /// - Parameters:
    ///   - input: the sequences, in the layout ``SequenceLayer/batchFirst`` names.
    ///   - initialState: the state to start from, shaped as ``stateShapes(batchSize:)``; nil
    ///     starts from zeros.
    ///   - context: the pass's training flag and the sequences' lengths and padding.
    /// - Returns: the output and the state after each sequence's last valid step.
    func forward(_ input: Tensor, initialState: RecurrentState?, context: LayerContext) throws -> RecurrentOutput

    /// Whether a sequence fed in pieces, each from the final state of the one before, gives the
    /// same outputs as when fed whole: what generating one token at a time needs (true for a
    /// unidirectional layer that returns every step).
    var continuesAcrossPasses: Bool { get }
}

extension StatefulLayer {
    /// A zero state for `batchSize` sequences, the start of a stream.
    /// - Parameter batchSize: B.
    /// - Returns: zero tensors shaped as ``stateShapes(batchSize:)``.
    public func zeroState(batchSize: Int) throws -> RecurrentState {
        let shapes = stateShapes(batchSize: batchSize)
        return RecurrentState(hidden: try backend.zeros(shapes.hidden), cell: try shapes.cell.map { try backend.zeros($0) })
    }
}

/// A layer whose training passes draw random masks from a seeded stream of its own.
public protocol StochasticLayer: Layer {
    /// Restarts the layer's random stream, so the next passes draw the same masks as after
    /// construction with this seed.
    /// - Parameter seed: the stream's seed.
    func seedDropout(_ seed: UInt64)
}

/// A layer that can record ‖dL/dh_t‖ at every step of its backward passes (see ``GradientFlow``).
public protocol GradientFlowRecording: Layer {
    /// Whether `backward` records ``gradientFlow``.
    var recordsGradientFlow: Bool { get set }
    /// The records of the last backward pass that ran while recording, under the layer's own
    /// names; empty otherwise.
    var gradientFlow: [GradientFlow] { get }
}

extension Backend {
    /// Sets the parameters' gradients (and per-occurrence squares, where kept) to 0 in one `zero`.
    func zeroGradients(of parameters: [NamedParameter]) throws {
        try zero(parameters.flatMap { [$0.gradient] + ($0.squaredGradient.map { [$0] } ?? []) })
    }
}
