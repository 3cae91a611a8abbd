// The recurrent stack: layers × directions of whole-sequence scans (`Backend.recurrentForward`
// and `recurrentBackward`, both directions of a layer in one call), with dropout on the input,
// between layers and on the recurrent state.
// Follows PyTorch's nn.RNN / nn.LSTM / nn.GRU for weights, names and state layout.
//
// Shape legend: T time steps, B batch, I input features, H hidden units, L layers, D directions
// (2 when bidirectional, else 1), G = gates * H, P the width of h and of each direction's output:
// the projection size with a projection (`lstm_projection`), else H. c keeps H.

/// A parameter tensor, its gradient (same shape, accumulated by `backward`), and its name.
public struct NamedParameter: Sendable {
    /// The PyTorch state-dict name (`weight_ih_l0`, `1.weight_ih_l0` inside a `Sequential`).
    public let name: String
    /// The parameter itself, which the optimizer updates in place.
    public let value: Tensor
    /// dL/d value, the same shape; `backward` passes add into it.
    public let gradient: Tensor
    /// Σ over the occurrences of each row of the square of that occurrence's contribution to
    /// `gradient`, the same shape; only an `Embedding` with `.perOccurrence` second moments has
    /// one. Adam and RMSProp put it in place of g² (Keras on TensorFlow squares each slice of an
    /// embedding's sparse gradient before summing). nil: they square `gradient`.
    public let squaredGradient: Tensor?

    /// - Parameters:
    ///   - name: the state-dict name.
    ///   - value: the parameter.
    ///   - gradient: its gradient, shaped like `value`.
    ///   - squaredGradient: the per-occurrence sum of squared contributions to `gradient`, or nil
    ///     (default) when the optimizer should square `gradient`.
    public init(name: String, value: Tensor, gradient: Tensor, squaredGradient: Tensor? = nil) {
        self.name = name
        self.value = value
        self.gradient = gradient
        self.squaredGradient = squaredGradient
    }
}

/// The hidden state of a whole stack, ordered like PyTorch's: index k * D + d is layer k,
/// direction d (0 forward, 1 reverse).
public struct RecurrentState: Sendable {
    /// h: `[L * D, B, P]` (P = H without a projection).
    public var hidden: Tensor
    /// c: `[L * D, B, H]`, LSTM only.
    public var cell: Tensor?

    public init(hidden: Tensor, cell: Tensor? = nil) {
        self.hidden = hidden
        self.cell = cell
    }
}

/// What `RecurrentLayer.forward` returns.
public struct RecurrentOutput: Sendable {
    /// With `returnSequences`: every step's output of the last layer, `[T, B, D * P]`
    /// (`[B, T, D * P]` when batch-first), 0 at padded steps. Otherwise `[B, D * P]`: the final
    /// hidden state of each direction of the last layer, see `RecurrentLayer.returnSequences`.
    public var output: Tensor
    /// h_n (and c_n): the state after the last valid step of each layer-direction.
    public var finalState: RecurrentState
}

/// What `RecurrentLayer.backward` returns.
public struct RecurrentInputGradient: Sendable {
    /// dL/d input, shaped like the input of the last forward; 0 at padded steps.
    public var input: Tensor
    /// dL/dh0 `[L * D, B, P]` (and dL/dc0 `[L * D, B, H]`); zeros when the forward had no initial state.
    public var initialState: RecurrentState
}

/// A stack of recurrent layers (simple RNN, LSTM or GRU), optionally bidirectional, with
/// explicit `forward` and `backward` passes; PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` with
/// Keras's dropout options.
///
/// Sequences are time-major `[T, B, I]` unless `batchFirst` (`[B, T, I]`, transposed on entry and
/// exit at the cost of T * B row copies). Each layer is one backend op: one scan, or for a
/// bidirectional layer both directions' scans together (`BidirectionalRecurrentForward`), which a
/// device runs side by side; the directions write the two halves of one `[T, B, 2H]` output
/// without copies.
///
/// Parameters use PyTorch's names and shapes: `weight_ih_l{k}` `[G, I_k]`, `weight_hh_l{k}`
/// `[G, P]`, `bias_ih_l{k}`, `bias_hh_l{k}` `[G]`, with a projection `weight_hr_l{k}` `[P, H]`,
/// with suffix `_reverse` for the reverse direction; I_0 = I and I_k = D * P above. `backward`
/// accumulates (+=) into their gradients until `zeroGradients()`.
public final class RecurrentLayer {
    /// The cell every layer-direction runs.
    public let cell: RecurrentCell
    /// I: features of each input step.
    public let inputSize: Int
    /// H: hidden units per direction (the width of c and of each gate).
    public let hiddenSize: Int
    /// P: the features of h and of each direction's output with a projection (PyTorch's
    /// `proj_size`, `lstm_projection`), or nil: h then has H features.
    public let projectionSize: Int?
    /// L (PyTorch's `num_layers`).
    public let layerCount: Int
    /// Whether each layer also scans the sequence backwards (D = 2).
    public let bidirectional: Bool
    /// Inverted dropout on the output of every layer but the last, a fresh mask per element of
    /// `[T, B, D * H]` (PyTorch's `dropout`). Training only.
    public let dropout: Float
    /// Inverted dropout on the input of the first layer with one `[B, I]` mask per sequence reused
    /// at every step (Keras's `dropout`), shared by both directions. Training only.
    public let inputDropout: Float
    /// Inverted dropout on h_{t-1} where it multiplies W_hh, one `[B, H]` mask per sequence per
    /// layer-direction reused at every step (Gal & Ghahramani 2016, Keras's `recurrent_dropout`).
    /// Training only.
    public let recurrentDropout: Float
    /// LSTM only: clip every c_t to [-cellClip, cellClip] (cuDNN's clip).
    public let cellClip: Float?
    /// true: `forward` returns every step's output. false (many-to-one): it returns, for each
    /// sequence, the final hidden state of each direction of the last layer, concatenated
    /// `[B, D * H]`: the forward direction's output at the last valid step and the reverse
    /// direction's output at the first valid step, each having read the whole sequence (Keras's
    /// `Bidirectional` with `return_sequences=False`; PyTorch's `h_n[-D:]`, not `output[-1]`).
    public let returnSequences: Bool
    /// Input and `returnSequences` output are `[B, T, F]` instead of `[T, B, F]`. States stay
    /// `[L * D, B, H]` as in PyTorch.
    public let batchFirst: Bool
    /// The device that holds the parameters and runs the scans.
    public let backend: any Backend

    /// D: 2 when bidirectional, else 1.
    public var directionCount: Int { bidirectional ? 2 : 1 }

    /// P: the features of h and of each direction's output, H without a projection.
    public var stateSize: Int { projectionSize ?? hiddenSize }

    /// Whether `backward` records `gradientFlow`. Recording costs one `[T, B, H]` buffer per
    /// layer-direction and its download after each backward pass; off, it costs nothing.
    public var recordsGradientFlow = false
    /// After a `backward` with `recordsGradientFlow` set: ‖dL/dh_t‖ for every time step of every
    /// layer-direction, named `l0`, `l0_reverse`, `l1`, … in PyTorch's parameter order (see
    /// `GradientFlow` for the norm). Empty before such a pass; cleared by a pass without recording.
    public private(set) var gradientFlow: [GradientFlow] = []

    /// Parameters and gradients, indexed [layer][direction].
    private var weights: [[RecurrentWeights]] = []
    private var gradients: [[RecurrentWeights]] = []
    private var names: [[String]] = []
    private var dropoutRandom: SeededRandom
    private var cache: ForwardCache?

    /// Makes the stack with initialised parameters and zero gradients on `backend`.
    /// - Parameters:
    ///   - cell: the cell every layer-direction runs.
    ///   - inputSize: I, the features of each input step.
    ///   - hiddenSize: H.
    ///   - layerCount: L, stacked layers (PyTorch's `num_layers`).
    ///   - bidirectional: add a reverse-direction scan to every layer (D = 2).
    ///   - dropout: see ``dropout``.
    ///   - inputDropout: see ``inputDropout``.
    ///   - recurrentDropout: see ``recurrentDropout``.
    ///   - cellClip: see ``cellClip``; LSTM only.
    ///   - projectionSize: see ``projectionSize``; nil or 0 for none. Only with the LSTM (which
    ///     it turns into `lstm_projection`), 0 < P < H.
    ///   - returnSequences: see ``returnSequences``.
    ///   - batchFirst: see ``batchFirst``.
    ///   - initialization: PyTorch's uniform ±1/√H (default) or Keras's initialisers.
    ///   - seed: seeds the initial parameters and, through a derived stream, the dropout masks.
    ///   - backend: the device that holds the parameters and runs the scans.
    public init(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, layerCount: Int = 1,
                bidirectional: Bool = false, dropout: Float = 0, inputDropout: Float = 0,
                recurrentDropout: Float = 0, cellClip: Float? = nil, projectionSize: Int? = nil,
                returnSequences: Bool = true, batchFirst: Bool = false,
                initialization: RecurrentInitialization = .pytorch, seed: UInt64 = 0, backend: any Backend) throws {
        let operation = "RecurrentLayer.init"
        for (name, size) in [("inputSize", inputSize), ("hiddenSize", hiddenSize), ("layerCount", layerCount)]
        where size < 1 {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must be at least 1, got \(size)")
        }
        let cell = try cell.projected(to: projectionSize, hiddenSize: hiddenSize, operation: operation)
        let projectionSize = cell.projectsHiddenState ? projectionSize : nil
        for (name, p) in [("dropout", dropout), ("inputDropout", inputDropout), ("recurrentDropout", recurrentDropout)]
        where !(p >= 0 && p < 1) {
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) must lie in [0, 1), got \(p)")
        }
        if let cellClip {
            guard cell.hasCellState else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "cellClip is only for cells with a cell state (lstm), not \(cell)")
            }
            guard cellClip > 0, cellClip.isFinite else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "cellClip must be positive and finite, got \(cellClip)")
            }
        }
        // Parameters whose values the host could not even build are refused before the first.
        try MemoryEstimate.recurrentStack(
            cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize,
            layerCount: layerCount, bidirectional: bidirectional, batchSize: 0, steps: 0, pass: .inference
        ).check(on: backend, operation: operation)
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.projectionSize = projectionSize
        self.layerCount = layerCount
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.inputDropout = inputDropout
        self.recurrentDropout = recurrentDropout
        self.cellClip = cellClip
        self.returnSequences = returnSequences
        self.batchFirst = batchFirst
        self.backend = backend
        dropoutRandom = SeededRandom(seed: Self.dropoutSeed(seed))

        var random = SeededRandom(seed: seed)
        let h = hiddenSize
        let directions = directionCount
        // One tensor per direction; a pair in one allocation, so that a device can batch the two
        // directions' GEMMs (see `Backend.tensorsInOneAllocation`).
        func perDirection(_ shape: Shape, _ values: [[Float]]? = nil) throws -> [Tensor] {
            guard directions == 2 else {
                return [try values.map { try backend.upload($0[0], shape: shape) } ?? backend.zeros(shape)]
            }
            let tensors = try backend.tensorsInOneAllocation([shape, shape], zeroed: true)
            for (tensor, direction) in zip(tensors, values ?? []) {
                try backend.copy(try backend.upload(direction, shape: shape), sourceOffset: 0, into: tensor,
                                 destinationOffset: 0, count: shape.count)
            }
            return tensors
        }
        for k in 0..<layerCount {
            let layerInput = k == 0 ? inputSize : directions * (projectionSize ?? hiddenSize)
            let values = (0..<directions).map { _ in
                RecurrentInitializer.weights(initialization, cell: cell, inputSize: layerInput, hiddenSize: h,
                                             projectionSize: projectionSize, using: &random)
            }
            let shapes = cell.parameterShapes(inputSize: layerInput, hiddenSize: h, projectionSize: projectionSize)
            // [parameter][direction]
            let parameterValues = try shapes.indices.map { p in try perDirection(shapes[p], values.map { $0[p] }) }
            let parameterGradients = try shapes.map { try perDirection($0) }
            weights.append((0..<directions).map { d in RecurrentWeights(parameterValues.map { $0[d] }) })
            gradients.append((0..<directions).map { d in RecurrentWeights(parameterGradients.map { $0[d] }) })
            names.append((0..<directions).map { d in "_l\(k)" + (d == 1 ? "_reverse" : "") })
        }
    }

    // MARK: Parameters

    /// Every parameter with its gradient, in PyTorch's order: for each layer, for each direction,
    /// the cell's parameters (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, then any of its own).
    public var parameters: [NamedParameter] {
        var list: [NamedParameter] = []
        for k in 0..<layerCount {
            for d in 0..<directionCount {
                let (values, gradients, suffix) = (weights[k][d].all, gradients[k][d].all, names[k][d])
                for (p, parameter) in cell.parameters.enumerated() {
                    list.append(NamedParameter(name: parameter.name + suffix, value: values[p], gradient: gradients[p]))
                }
            }
        }
        return list
    }

    /// The parameter called `name` (a PyTorch name such as `weight_hh_l1_reverse`), if any.
    public func parameter(named name: String) -> NamedParameter? {
        parameters.first { $0.name == name }
    }

    /// Sets every gradient to 0.
    public func zeroGradients() throws {
        try backend.zeroGradients(of: parameters)
    }

    /// Restarts the dropout masks' random stream, so the next forward passes draw the same masks
    /// as after construction with this seed.
    public func seedDropout(_ seed: UInt64) {
        dropoutRandom = SeededRandom(seed: Self.dropoutSeed(seed))
    }

    /// Dropout draws from a stream apart from the initialisation's.
    private static func dropoutSeed(_ seed: UInt64) -> UInt64 {
        var mixer = SeededRandom(seed: seed ^ 0xD1B5_4A32_D192_ED03)
        return mixer.next()
    }

    // MARK: Forward

    /// What backward needs from the last forward.
    struct ForwardCache {
        /// The scans that ran, [layer][direction]; they hold each layer's input (after dropout),
        /// its initial state, lengths and recurrent dropout mask.
        var scans: [[RecurrentScan]]
        var workspaces: [[RecurrentWorkspace]]
        /// The dropout mask applied to each layer's input, if any: `[T, B, I_k]`.
        var inputMasks: [Tensor?]
        var batch: Int
        /// The shape of the returned output, which the output gradient must have.
        var outputShape: Shape
    }

    /// What the last forward left for its backward. A model that runs the layer several times
    /// before back-propagating (a decoder that steps with input feeding) takes each pass's record
    /// after its forward and puts it back before that pass's backward.
    var forwardRecord: ForwardCache? {
        get { cache }
        set { cache = newValue }
    }

    /// Set while `withUnchangingWeights` runs: the scans' `weightPacks`.
    private var weightPacks: RecurrentWeightPacks?

    /// Runs `body`, in which this layer's weights must not change, letting the backend keep what
    /// it derives from them (the CPU backend's packed W_hh and W_ih) from one forward to the
    /// next: for a loop that runs the layer one step at a time (a decoder with input feeding,
    /// greedy and beam decoding). A backward of those passes may use the kept values too, until
    /// the weights change. Nested calls share the outer call's.
    func withUnchangingWeights<Result>(_ body: () throws -> Result) rethrows -> Result {
        guard weightPacks == nil else { return try body() }
        weightPacks = RecurrentWeightPacks()
        defer { weightPacks = nil }
        return try body()
    }

    /// Runs the stack over `input`.
    /// - Parameters:
    ///   - input: `[T, B, I]`, or `[B, T, I]` when batch-first.
    ///   - lengths: B valid lengths in 1...T; nil means every sequence has T steps. Padded steps
    ///     change no state, output 0 and get no gradient (PyTorch's packed sequences).
    ///   - padding: where the padding is: `post` (valid steps t < length) or `pre` (t >= T - length).
    ///   - initialState: h0 (and c0 for LSTM, required with h0), `[L * D, B, H]`; nil means zeros.
    ///   - training: applies the dropouts; false runs the deterministic inference pass.
    public func forward(_ input: Tensor, lengths: [Int]? = nil, padding: PaddingSide = .post,
                        initialState: RecurrentState? = nil, training: Bool) throws -> RecurrentOutput {
        let operation = "RecurrentLayer.forward"
        let (steps, batch) = try checkInput(operation, input)
        if let lengths { try checkLengths(operation, lengths, steps: steps, batch: batch) }
        if let initialState { try checkState(operation, "initialState", initialState, batch: batch, cellRequired: true) }

        // The previous pass's activations are of no further use: release them before allocating
        // this pass's, so a training loop holds one set at a time.
        cache = nil
        let (h, p, d, l) = (hiddenSize, stateSize, directionCount, layerCount)
        let timeMajor = batchFirst ? try swapLeadingAxes(input) : input  // [T, B, I]
        let lengthTensor = try lengths.map { try backend.upload($0.map { Int32($0) }, shape: [batch]) }  // int32 [B]
        let finalHidden = try backend.zeros([l * d, batch, p])  // h_n [L * D, B, P]
        let finalCell = cell.hasCellState ? try backend.zeros([l * d, batch, h]) : nil  // c_n [L * D, B, H]

        var inputMasks: [Tensor?] = []  // per layer: [T, B, I_k] or nil
        var layerInput = timeMajor  // [T, B, I_k], after dropout
        if training, inputDropout > 0 {
            // One [B, I] mask per sequence, repeated for every step.
            let perSequence = RecurrentInitializer.dropoutMask(
                count: batch * inputSize, probability: inputDropout, using: &dropoutRandom)
            let mask = try backend.upload(
                Array([[Float]](repeating: perSequence, count: steps).joined()), shape: [steps, batch, inputSize])
            layerInput = try masked(timeMajor, by: mask)
            inputMasks.append(mask)
        } else {
            inputMasks.append(nil)
        }

        var scans: [[RecurrentScan]] = []
        var workspaces: [[RecurrentWorkspace]] = []
        var layerOutput = layerInput
        for k in 0..<l {
            // Every element is written by the scans (padded steps with zeros).
            layerOutput = try backend.uninitialized([steps, batch, d * p])  // [T, B, D * P]
            var requests: [RecurrentForward] = []  // one per direction
            let pairWorkspaces = d == 2
                ? try RecurrentWorkspace.pair(cell: cell, steps: steps, batchSize: batch, hiddenSize: h,
                                              projectionSize: projectionSize, backend: backend)
                : nil
            for direction in 0..<d {
                let index = k * d + direction
                let mask = training && recurrentDropout > 0  // [B, P]
                    ? try backend.upload(
                        RecurrentInitializer.dropoutMask(count: batch * p, probability: recurrentDropout,
                                                         using: &dropoutRandom),
                        shape: [batch, p])
                    : nil
                var scan = RecurrentScan(
                    cell: cell, input: layerInput, weights: weights[k][direction],
                    initialHidden: try stateSlice(initialState?.hidden, index: index, batch: batch, width: p),
                    initialCell: cell.hasCellState
                        ? try stateSlice(initialState?.cell, index: index, batch: batch, width: h) : nil,
                    lengths: lengthTensor, padding: padding, reverse: direction == 1,
                    recurrentDropoutMask: mask, cellClip: cellClip, projectionSize: projectionSize)
                scan.weightPacks = weightPacks
                let workspace = try pairWorkspaces?[direction] ?? RecurrentWorkspace(
                    cell: cell, steps: steps, batchSize: batch, hiddenSize: h, projectionSize: projectionSize,
                    backend: backend)
                requests.append(RecurrentForward(
                    scan: scan, output: MatrixOperand(layerOutput, offset: direction * p, leadingDimension: d * p),
                    finalHidden: try backend.zeros([batch, p]),  // h_n [B, P]
                    finalCell: cell.hasCellState ? try backend.zeros([batch, h]) : nil,  // c_n [B, H]
                    workspace: workspace))
            }
            // Both directions in one op, so a device can run them side by side.
            if d == 2 {
                try backend.recurrentForward(BidirectionalRecurrentForward(forward: requests[0], reverse: requests[1]))
            } else {
                try backend.recurrentForward(requests[0])
            }
            for (direction, request) in requests.enumerated() {
                let index = k * d + direction
                try backend.copy(request.finalHidden, sourceOffset: 0, into: finalHidden,
                                 destinationOffset: index * batch * p, count: batch * p)
                if let cN = request.finalCell, let finalCell {
                    try backend.copy(cN, sourceOffset: 0, into: finalCell, destinationOffset: index * batch * h,
                                     count: batch * h)
                }
            }
            scans.append(requests.map(\.scan))
            workspaces.append(requests.map(\.workspace))
            if k + 1 < l {
                if training, dropout > 0 {
                    let count = steps * batch * d * p
                    let mask = try backend.upload(
                        RecurrentInitializer.dropoutMask(count: count, probability: dropout, using: &dropoutRandom),
                        shape: [steps, batch, d * p])
                    layerInput = try masked(layerOutput, by: mask)
                    inputMasks.append(mask)
                } else {
                    layerInput = layerOutput
                    inputMasks.append(nil)
                }
            }
        }

        let output: Tensor
        if returnSequences {
            output = batchFirst ? try swapLeadingAxes(layerOutput) : layerOutput
        } else {
            // [B, D * P]: row b is h_n of the last layer's directions side by side.
            output = try backend.zeros([batch, d * p])
            for direction in 0..<d {
                let index = (l - 1) * d + direction
                try backend.copyRows(batch, width: p, from: finalHidden, offset: index * batch * p, stride: p,
                             into: output, offset: direction * p, stride: d * p)
            }
        }
        cache = ForwardCache(scans: scans, workspaces: workspaces, inputMasks: inputMasks, batch: batch,
                             outputShape: output.shape)
        return RecurrentOutput(output: output, finalState: RecurrentState(hidden: finalHidden, cell: finalCell))
    }

    // MARK: Backward

    /// Back-propagates through the last `forward`, accumulating (+=) into the parameter gradients.
    /// - Parameters:
    ///   - outputGradient: dL/d output, shaped like the forward's output; nil means zero.
    ///   - finalStateGradient: dL/dh_n `[L * D, B, P]` (and dL/dc_n `[L * D, B, H]`); nil (or a nil
    ///     cell) means zero.
    /// - Returns: dL/d input and dL/d initial state.
    public func backward(outputGradient: Tensor?, finalStateGradient: RecurrentState? = nil) throws
        -> RecurrentInputGradient
    {
        let operation = "RecurrentLayer.backward"
        guard let cache else {
            throw RecurError.invalidArgument(operation: operation, detail: "backward needs a forward pass first")
        }
        let batch = cache.batch
        if let outputGradient {
            try backend.checkOperands(operation, [outputGradient])
            guard outputGradient.shape == cache.outputShape else {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "outputGradient must be \(cache.outputShape) like the output, got \(outputGradient.shape)")
            }
        }
        if let finalStateGradient {
            try checkState(operation, "finalStateGradient", finalStateGradient, batch: batch, cellRequired: false)
        }

        let (h, p, d, l) = (hiddenSize, stateSize, directionCount, layerCount)
        // dL/d output of layer k, [T, B, D * P] (nil means zero): the caller's for the last layer
        // when it returns sequences, then each layer's input gradient.
        var layerOutputGradient: Tensor? = nil
        // Many-to-one: dL/d output [B, D * P] adds to the last layer's dL/dh_n.
        var lastStateGradient: Tensor? = nil
        if let outputGradient {
            if returnSequences {
                layerOutputGradient = batchFirst ? try swapLeadingAxes(outputGradient) : outputGradient
            } else {
                lastStateGradient = outputGradient
            }
        }
        let initialHiddenGradient = try backend.zeros([l * d, batch, p])  // dh0 [L * D, B, P]
        let initialCellGradient = cell.hasCellState ? try backend.zeros([l * d, batch, h]) : nil  // dc0 [L * D, B, H]
        let steps = cache.scans[0][0].input.shape[0]
        // dL/dh_t of every step, [T, B, P] per layer-direction, indexed [layer][direction].
        let recorded: [[Tensor]]? = recordsGradientFlow
            ? try (0..<l).map { _ in try (0..<d).map { _ in try backend.zeros([steps, batch, p]) } }
            : nil

        for k in stride(from: l - 1, through: 0, by: -1) {
            let scans = cache.scans[k]
            // Overwritten by the first direction's backward op, added to by the second.
            let layerInputGradient = try backend.uninitialized(scans[0].input.shape)  // [T, B, I_k]
            var requests: [RecurrentBackward] = []  // one per direction
            for direction in 0..<d {
                let index = k * d + direction
                var hiddenGradient = try finalStateGradient.map {  // dh_n [B, P]
                    try stateSlice($0.hidden, index: index, batch: batch, width: p)
                }
                if k == l - 1, let lastStateGradient {
                    let column = try backend.zeros([batch, p])  // [B, P]
                    try backend.copyRows(batch, width: p, from: lastStateGradient, offset: direction * p, stride: d * p,
                                         into: column, offset: 0, stride: p)
                    if let hiddenGradient { try backend.axpy(alpha: 1, hiddenGradient, column) }
                    hiddenGradient = column
                }
                let cellGradient = try finalStateGradient?.cell.map {  // dc_n [B, H]
                    try stateSlice($0, index: index, batch: batch, width: h)
                }
                requests.append(RecurrentBackward(
                    scan: scans[direction], workspace: cache.workspaces[k][direction],
                    outputGradient: layerOutputGradient.map {
                        MatrixOperand($0, offset: direction * p, leadingDimension: d * p)
                    },
                    finalHiddenGradient: hiddenGradient, finalCellGradient: cellGradient,
                    // The directions read the same input: the reverse one adds its dL/dx.
                    inputGradient: layerInputGradient, accumulateInputGradient: direction > 0,
                    initialHiddenGradient: try backend.zeros([batch, p]),  // dh0 [B, P]
                    initialCellGradient: cell.hasCellState ? try backend.zeros([batch, h]) : nil,  // dc0 [B, H]
                    weightGradients: gradients[k][direction], hiddenStateGradients: recorded?[k][direction]))
            }
            if d == 2 {
                try backend.recurrentBackward(
                    BidirectionalRecurrentBackward(forward: requests[0], reverse: requests[1]))
            } else {
                try backend.recurrentBackward(requests[0])
            }
            for (direction, request) in requests.enumerated() {
                let index = k * d + direction
                try backend.copy(request.initialHiddenGradient, sourceOffset: 0, into: initialHiddenGradient,
                                 destinationOffset: index * batch * p, count: batch * p)
                if let dc0 = request.initialCellGradient, let initialCellGradient {
                    try backend.copy(dc0, sourceOffset: 0, into: initialCellGradient,
                                     destinationOffset: index * batch * h, count: batch * h)
                }
            }
            // Through the dropout on this layer's input: the same mask scales the gradient.
            layerOutputGradient = try cache.inputMasks[k].map { try masked(layerInputGradient, by: $0) }
                ?? layerInputGradient
        }
        gradientFlow = try recorded.map { perLayer in
            try (0..<l).flatMap { k in
                try (0..<d).map { direction in
                    GradientFlow(name: String(names[k][direction].dropFirst()),
                                 hiddenStateGradients: try backend.download(perLayer[k][direction]), steps: steps)
                }
            }
        } ?? []
        var input = layerOutputGradient!  // set by layer 0: [T, B, I]
        if batchFirst { input = try swapLeadingAxes(input) }
        return RecurrentInputGradient(
            input: input,
            initialState: RecurrentState(hidden: initialHiddenGradient, cell: initialCellGradient))
    }

    // MARK: Checks

    /// Validates the input tensor and returns (T, B).
    private func checkInput(_ operation: String, _ input: Tensor) throws -> (steps: Int, batch: Int) {
        try backend.checkOperands(operation, [input])
        let layout = batchFirst ? "[B, T, I]" : "[T, B, I]"
        guard input.shape.rank == 3 else {
            throw RecurError.shapeMismatch(operation: operation, detail: "input must be \(layout), got \(input.shape)")
        }
        guard input.shape[2] == inputSize else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "input \(layout) = \(input.shape) has \(input.shape[2]) features, the layer expects \(inputSize)")
        }
        return batchFirst ? (input.shape[1], input.shape[0]) : (input.shape[0], input.shape[1])
    }

    /// Throws unless there are `batch` lengths, each in 1...`steps`.
    func checkLengths(_ operation: String, _ lengths: [Int], steps: Int, batch: Int) throws {
        guard lengths.count == batch else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(lengths.count) lengths for a batch of \(batch) sequences")
        }
        for (b, length) in lengths.enumerated() where length < 1 || length > steps {
            throw RecurrentCheck.badLength(operation, length, at: b, steps: steps)
        }
    }

    /// Checks a `[L * D, B, P]` h and `[L * D, B, H]` c; a cell state is required (for LSTM) only
    /// if `cellRequired`.
    private func checkState(_ operation: String, _ name: String, _ state: RecurrentState, batch: Int,
                            cellRequired: Bool) throws {
        try backend.checkOperands(operation, [state.hidden])
        try RecurrentCheck.shape(operation, "\(name).hidden", state.hidden, [layerCount * directionCount, batch, stateSize])
        switch (state.cell, cell.hasCellState) {
        case let (c?, true):
            try backend.checkOperands(operation, [c])
            try RecurrentCheck.shape(operation, "\(name).cell", c, [layerCount * directionCount, batch, hiddenSize])
        case (nil, true) where cellRequired:
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) of an lstm needs a cell state")
        case (.some, false):
            throw RecurError.invalidArgument(operation: operation, detail: "\(name) has a cell state, \(cell) has none")
        default:
            break
        }
    }

    // MARK: Helpers (backend ops only)

    /// Slice `index` of a `[L * D, B, width]` state as a new `[B, width]` tensor; zeros when
    /// `state` is nil.
    private func stateSlice(_ state: Tensor?, index: Int, batch: Int, width: Int) throws -> Tensor {
        let slice = try backend.zeros([batch, width])
        if let state {
            try backend.copy(state, sourceOffset: index * batch * width, into: slice, destinationOffset: 0,
                             count: batch * width)
        }
        return slice
    }

    /// A new tensor x ⊙ mask.
    private func masked(_ x: Tensor, by mask: Tensor) throws -> Tensor {
        let result = try backend.zeros(x.shape)
        try backend.multiply(x, mask, into: result)
        return result
    }

    /// `[A, C, F]` → `[C, A, F]`: the batch-first ↔ time-major transpose, one row-block copy per a.
    private func swapLeadingAxes(_ x: Tensor) throws -> Tensor {
        let (a, c, f) = (x.shape[0], x.shape[1], x.shape[2])
        let result = try backend.uninitialized([c, a, f])
        for i in 0..<a {
            try backend.copyRows(c, width: f, from: x, offset: i * c * f, stride: f, into: result, offset: i * f,
                                 stride: a * f)
        }
        return result
    }
}
