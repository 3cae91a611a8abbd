// What a recurrent cell is to the backends and everything above them: a name, a gate count, a
// state, a list of parameters, and two pairs of steps (the plain float64 reference and the fast
// CPU code). Each cell's file under `Cells/` defines its `RecurrentCell` value and both pairs;
// `RecurrentCell.allCases` (`Cells/RecurrentCell+Registry.swift`) is the one registry the CLI,
// checkpoints, fixtures and tests read.
//
// Shape legend: I input features, H hidden units, G = gateCount * H, P the width of h (H unless
// the cell projects its hidden state).

/// The cell a recurrent op runs. Weights and gate order follow PyTorch.
///
/// Each cell lives in its own file under `Cells/`, with its equations at the top:
/// `SimpleRNNCell.swift` (`rnnTanh`, `rnnRelu`), `LSTMCell.swift` (`lstm`), `GRUCell.swift` (`gru`,
/// reset applied after the recurrent matmul as in PyTorch/cuDNN) and `GRUResetBeforeCell.swift`
/// (`gruResetBefore`, Cho et al. 2014), `LayerNormLSTMCell.swift` and `LayerNormGRUCell.swift`
/// (`layer_norm_lstm`, `layer_norm_gru`, Ba et al. 2016), `LSTMProjectionCell.swift`
/// (`lstm_projection`, PyTorch's `proj_size`, Sak et al. 2014). Throughout, x = x_t, h = h_{t-1} and h̃ = h_{t-1} ⊙ m, with m
/// the recurrent dropout mask (or 1): recurrent dropout only touches what multiplies W_hh (Gal &
/// Ghahramani 2016, Keras `recurrent_dropout`).
///
/// A cell is known by one name (``name``), used alike by the CLI's `--cell`, checkpoints and
/// fixtures; ``init(named:)`` also reads the spellings older versions wrote.
public struct RecurrentCell: Sendable, Hashable, CustomStringConvertible {
    /// The one spelling written everywhere: `rnn_tanh`, `rnn_relu`, `lstm`, `gru`, `gru_reset_before`.
    public let name: String
    /// Older spellings that are still read (checkpoints, scripts), never written.
    let formerNames: [String]
    /// Gate blocks stacked in the weight rows: G = gateCount * H.
    public let gateCount: Int
    /// Whether the cell carries a cell state c next to h.
    public let hasCellState: Bool
    /// Whether the forward op keeps h_t and the recurrent part of the candidate per step
    /// (`RecurrentWorkspace.hiddenStates` and `.candidateRecurrent`), which the GRUs' backward reads.
    public let keepsStepStates: Bool
    /// Whether W_hh, b_hh and h̃ see gate gradients other than W_ih's (the reset-after GRU scales
    /// its n block by r), so the backward op keeps a second `[T * B, G]` buffer.
    public let hasSeparateRecurrentGateGradients: Bool
    /// The parameter tensors of one layer-direction, in PyTorch's state-dict order. The first four
    /// are always `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    public let parameters: [RecurrentParameter]
    /// Keras-style initial value of each gate block of `bias_ih` (`bias_hh` starts at 0).
    let kerasGateBiases: [Float]
    /// The cell whose hidden state this one projects to P < H features (the LSTM for
    /// `lstm_projection`), or nil: h then has H features like c. A projecting cell runs only with
    /// a projection size (`RecurrentScan.projectionSize`), and `--cell lstm --projection P` names it.
    let projectedCellName: String?
    /// The plain float64 steps: the spec both backends are tested against.
    let reference: any RecurrentReferenceSteps.Type
    /// The fast CPU steps, run by the scan skeleton in `CPUBackend+Recurrent.swift`.
    let cpu: any CPURecurrentSteps.Type

    init(name: String, formerNames: [String], gateCount: Int, hasCellState: Bool = false,
         keepsStepStates: Bool = false, hasSeparateRecurrentGateGradients: Bool = false,
         extraParameters: [RecurrentParameter] = [], kerasGateBiases: [Float]? = nil,
         projecting projectedCellName: String? = nil,
         reference: any RecurrentReferenceSteps.Type, cpu: any CPURecurrentSteps.Type) {
        self.name = name
        self.formerNames = formerNames
        self.gateCount = gateCount
        self.hasCellState = hasCellState
        self.keepsStepStates = keepsStepStates
        self.hasSeparateRecurrentGateGradients = hasSeparateRecurrentGateGradients
        self.parameters = RecurrentParameter.standard + extraParameters
        self.kerasGateBiases = kerasGateBiases ?? Array(repeating: 0, count: gateCount)
        self.projectedCellName = projectedCellName
        self.reference = reference
        self.cpu = cpu
    }

    public var description: String { name }

    /// Whether h has its own width P < H (a projection of the cell's H units), so the op request,
    /// the layer and the model specification carry a projection size.
    public var projectsHiddenState: Bool { projectedCellName != nil }

    public static func == (lhs: RecurrentCell, rhs: RecurrentCell) -> Bool { lhs.name == rhs.name }

    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// The shapes of one layer-direction's parameters, in ``parameters`` order.
    ///
    /// - Parameters:
    ///   - inputSize: I, the features the layer-direction reads.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    public func parameterShapes(inputSize: Int, hiddenSize: Int, projectionSize: Int? = nil) -> [Shape] {
        parameters.map {
            $0.shape(gateCount: gateCount, inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize)
        }
    }

    /// The number of float32 values in one layer-direction's parameters.
    ///
    /// - Parameters:
    ///   - inputSize: I, the features the layer-direction reads.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    public func parameterCount(inputSize: Int, hiddenSize: Int, projectionSize: Int? = nil) -> Int {
        parameterShapes(inputSize: inputSize, hiddenSize: hiddenSize, projectionSize: projectionSize)
            .reduce(0) { $0 + $1.count }
    }
}

/// One parameter tensor of a layer-direction: its PyTorch state-dict stem (the layer suffix
/// `_l0`, `_l0_reverse` is appended) and how its shape and initial values follow from the sizes.
public struct RecurrentParameter: Sendable, Hashable {
    /// The rows and columns of a parameter, in units of the layer's sizes.
    public enum Extent: Sendable, Hashable {
        /// G = gateCount * H.
        case gates
        /// H.
        case hidden
        /// I.
        case input
        /// The width of h: P for a cell that projects its hidden state, else H.
        case hiddenState
    }

    /// How a parameter starts: PyTorch draws every one uniformly in ±1/√H; Keras uses Glorot for
    /// the input weights, an orthogonal block per gate for the recurrent weights and constants
    /// for the biases.
    public enum Role: Sendable, Hashable {
        /// W_ih-like: multiplies x.
        case inputWeights
        /// W_hh-like: multiplies h̃, one `[H, P]` block per gate.
        case recurrentWeights
        /// b_ih-like: Keras starts it at the cell's gate biases.
        case inputBias
        /// b_hh-like, or any other vector: Keras starts it at 0.
        case bias
        /// W_hr-like: maps the H units to the P features of h. Keras has no projection; its
        /// initialisation draws it Glorot-uniform over `[P, H]`.
        case projectionWeights
        /// A normalisation's gain: starts at 1 under every initialisation.
        case normalizationGain
        /// A normalisation's shift: starts at 0 under every initialisation.
        case normalizationBias
    }

    /// The state-dict stem, e.g. `weight_ih`.
    public var name: String
    /// The extents of each axis, outermost first.
    public var extents: [Extent]
    /// How it is initialised.
    public var role: Role

    /// A parameter description.
    ///
    /// - Parameters:
    ///   - name: the state-dict stem, e.g. `weight_ih`.
    ///   - extents: the extents of each axis, outermost first.
    ///   - role: how it is initialised.
    public init(name: String, extents: [Extent], role: Role) {
        self.name = name
        self.extents = extents
        self.role = role
    }

    /// The concrete shape for a cell with `gateCount` gates and the given sizes.
    ///
    /// - Parameters:
    ///   - gateCount: the cell's gate count.
    ///   - inputSize: I.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    public func shape(gateCount: Int, inputSize: Int, hiddenSize: Int, projectionSize: Int? = nil) -> Shape {
        shape(gates: gateCount * hiddenSize, inputSize: inputSize, hiddenSize: hiddenSize,
              projectionSize: projectionSize)
    }

    /// The concrete shape given G itself, for callers that compute it without overflow.
    ///
    /// - Parameters:
    ///   - gates: G = gateCount * H.
    ///   - inputSize: I.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    public func shape(gates: Int, inputSize: Int, hiddenSize: Int, projectionSize: Int? = nil) -> Shape {
        Shape(extents.map { extent in
            switch extent {
            case .gates: gates
            case .hidden: hiddenSize
            case .input: inputSize
            case .hiddenState: projectionSize ?? hiddenSize
            }
        })
    }

    /// The four tensors every cell has, read by every backend through `RecurrentWeights`.
    static let standard = [
        RecurrentParameter(name: "weight_ih", extents: [.gates, .input], role: .inputWeights),
        RecurrentParameter(name: "weight_hh", extents: [.gates, .hiddenState], role: .recurrentWeights),
        RecurrentParameter(name: "bias_ih", extents: [.gates], role: .inputBias),
        RecurrentParameter(name: "bias_hh", extents: [.gates], role: .bias),
    ]
}

// MARK: The float64 reference steps' vocabulary

/// One layer-direction's parameters in float64, laid out as the backends' (PyTorch's).
public struct RecurrentReferenceWeights: Sendable {
    /// `weight_ih`: [G, I].
    public var input: [Double]
    /// `weight_hh`: [G, P] (P = H unless the cell projects h).
    public var recurrent: [Double]
    /// `bias_ih`: [G].
    public var inputBias: [Double]
    /// `bias_hh`: [G].
    public var recurrentBias: [Double]
    /// The cell's parameters after the first four, in its order.
    public var extra: [[Double]]

    /// The weights.
    ///
    /// - Parameters:
    ///   - input: `weight_ih`, [G, I].
    ///   - recurrent: `weight_hh`, [G, H].
    ///   - inputBias: `bias_ih`, [G].
    ///   - recurrentBias: `bias_hh`, [G].
    ///   - extra: the cell's further parameters, in its order.
    public init(input: [Double], recurrent: [Double], inputBias: [Double], recurrentBias: [Double],
                extra: [[Double]] = []) {
        self.input = input
        self.recurrent = recurrent
        self.inputBias = inputBias
        self.recurrentBias = recurrentBias
        self.extra = extra
    }

    /// Every tensor, in the cell's parameter order.
    public var all: [[Double]] { [input, recurrent, inputBias, recurrentBias] + extra }

    /// The same shapes, all zero: where gradients accumulate.
    func zeroed() -> RecurrentReferenceWeights {
        let zero = { (values: [Double]) in [Double](repeating: 0, count: values.count) }
        return RecurrentReferenceWeights(input: zero(input), recurrent: zero(recurrent), inputBias: zero(inputBias),
                                         recurrentBias: zero(recurrentBias), extra: extra.map(zero))
    }
}

/// The state between two steps (or its gradient).
public struct RecurrentReferenceState: Sendable {
    /// h: [P] (P = H unless the cell projects h).
    public var hidden: [Double]
    /// c: [H] for a cell with a cell state, else empty.
    public var cell: [Double]

    /// A state.
    ///
    /// - Parameters:
    ///   - hidden: h, [H].
    ///   - cell: c, [H], or empty for a cell without one.
    public init(hidden: [Double], cell: [Double] = []) {
        self.hidden = hidden
        self.cell = cell
    }
}

/// What one step reads: x_t, the state before it, the weights, and the LSTM's clip.
struct RecurrentReferenceStep {
    var input: [Double]
    var state: RecurrentReferenceState
    var weights: RecurrentReferenceWeights
    var cellClip: Double?

    var hiddenSize: Int { state.hidden.count }
}

/// The float64 forward and backward step of one cell, written from its equations.
protocol RecurrentReferenceSteps: Sendable {
    /// The state after the step.
    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState

    /// Differentiates `forward(step)`: from dL/d(the state after the step), returns dL/dx and
    /// dL/d(the state before it), and ACCUMULATES the parameter gradients into `weightGradients`.
    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
}
