// What a recurrent cell is to the rest of Recur: a name, a gate count, a state, a list of
// parameters, and two pairs of steps (the plain float64 reference and the fast CPU code). Each
// cell's file defines its `RecurrentCell` value and both pairs; `RecurrentCell.allCases` is the one
// registry the CLI, checkpoints, fixtures and tests read.
//
// Shape legend: I input features, H hidden units, G = gateCount * H.

/// The cell a recurrent op runs. Weights and gate order follow PyTorch.
///
/// Each cell lives in its own file under `Cells/`, with its equations at the top:
/// `SimpleRNNCell.swift` (`rnnTanh`, `rnnRelu`), `LSTMCell.swift` (`lstm`), `GRUCell.swift` (`gru`,
/// reset applied after the recurrent matmul as in PyTorch/cuDNN) and `GRUResetBeforeCell.swift`
/// (`gruResetBefore`, Cho et al. 2014). Throughout, x = x_t, h = h_{t-1} and h̃ = h_{t-1} ⊙ m, with m
/// the recurrent dropout mask (or 1): recurrent dropout only touches what multiplies W_hh (Gal &
/// Ghahramani 2016, Keras `recurrent_dropout`).
///
/// A cell is known by one name (``name``), used alike by the CLI's `--cell`, checkpoints and
/// fixtures; ``init(named:)`` also reads the spellings older versions wrote.
public struct RecurrentCell: Sendable, Hashable, Codable, CustomStringConvertible {
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
    /// The plain float64 steps: the spec both backends are tested against.
    let reference: any RecurrentReferenceSteps.Type
    /// The fast CPU steps, run by the scan skeleton in `CPUBackend+Recurrent.swift`.
    let cpu: any CPURecurrentSteps.Type

    init(name: String, formerNames: [String], gateCount: Int, hasCellState: Bool = false,
         keepsStepStates: Bool = false, hasSeparateRecurrentGateGradients: Bool = false,
         extraParameters: [RecurrentParameter] = [], kerasGateBiases: [Float]? = nil,
         reference: any RecurrentReferenceSteps.Type, cpu: any CPURecurrentSteps.Type) {
        self.name = name
        self.formerNames = formerNames
        self.gateCount = gateCount
        self.hasCellState = hasCellState
        self.keepsStepStates = keepsStepStates
        self.hasSeparateRecurrentGateGradients = hasSeparateRecurrentGateGradients
        self.parameters = RecurrentParameter.standard + extraParameters
        self.kerasGateBiases = kerasGateBiases ?? Array(repeating: 0, count: gateCount)
        self.reference = reference
        self.cpu = cpu
    }

    /// Every cell Recur knows. A new cell is its file plus one entry here.
    public static let allCases: [RecurrentCell] = [.rnnTanh, .rnnRelu, .lstm, .gru, .gruResetBefore]

    /// The registered cell called `name` (case-insensitive; `-` reads as `_`), including the
    /// spellings older versions wrote (`rnnTanh`, `gruResetBefore`, `rnn`, `gru-reset-before`);
    /// nil for an unknown name.
    ///
    /// - Parameter name: a cell's name, as `--cell`, a checkpoint or a fixture spells it.
    public init?(named name: String) {
        let wanted = Self.normalized(name)
        guard let cell = Self.allCases.first(where: { cell in
            ([cell.name] + cell.formerNames).contains { Self.normalized($0) == wanted }
        }) else { return nil }
        self = cell
    }

    /// The names of every registered cell, for messages that list the choices.
    public static var names: [String] { allCases.map(\.name) }

    private static func normalized(_ name: String) -> String {
        String(name.lowercased().map { $0 == "-" ? "_" : $0 })
    }

    public var description: String { name }

    public static func == (lhs: RecurrentCell, rhs: RecurrentCell) -> Bool { lhs.name == rhs.name }

    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// Reads a cell by its name or a former spelling.
    ///
    /// - Parameter decoder: the decoder holding the name as a single string.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cell = RecurrentCell(named: text) else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: decoder.codingPath,
                debugDescription: "unknown cell '\(text)' (\(Self.names.joined(separator: ", ")))"))
        }
        self = cell
    }

    /// Writes the cell's one name.
    ///
    /// - Parameter encoder: the encoder receiving the name as a single string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }

    /// The shapes of one layer-direction's parameters, in ``parameters`` order.
    ///
    /// - Parameters:
    ///   - inputSize: I, the features the layer-direction reads.
    ///   - hiddenSize: H.
    public func parameterShapes(inputSize: Int, hiddenSize: Int) -> [Shape] {
        parameters.map { $0.shape(gateCount: gateCount, inputSize: inputSize, hiddenSize: hiddenSize) }
    }

    /// The number of float32 values in one layer-direction's parameters.
    ///
    /// - Parameters:
    ///   - inputSize: I, the features the layer-direction reads.
    ///   - hiddenSize: H.
    public func parameterCount(inputSize: Int, hiddenSize: Int) -> Int {
        parameterShapes(inputSize: inputSize, hiddenSize: hiddenSize).reduce(0) { $0 + $1.count }
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
    }

    /// How a parameter starts: PyTorch draws every one uniformly in ±1/√H; Keras uses Glorot for
    /// the input weights, an orthogonal block per gate for the recurrent weights and constants
    /// for the biases.
    public enum Role: Sendable, Hashable {
        /// W_ih-like: multiplies x.
        case inputWeights
        /// W_hh-like: multiplies h̃, one `[H, H]` block per gate.
        case recurrentWeights
        /// b_ih-like: Keras starts it at the cell's gate biases.
        case inputBias
        /// b_hh-like, or any other vector: Keras starts it at 0.
        case bias
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
    public func shape(gateCount: Int, inputSize: Int, hiddenSize: Int) -> Shape {
        shape(gates: gateCount * hiddenSize, inputSize: inputSize, hiddenSize: hiddenSize)
    }

    /// The concrete shape given G itself, for callers that compute it without overflow.
    ///
    /// - Parameters:
    ///   - gates: G = gateCount * H.
    ///   - inputSize: I.
    ///   - hiddenSize: H.
    public func shape(gates: Int, inputSize: Int, hiddenSize: Int) -> Shape {
        Shape(extents.map { extent in
            switch extent {
            case .gates: gates
            case .hidden: hiddenSize
            case .input: inputSize
            }
        })
    }

    /// The four tensors every cell has, read by every backend through `RecurrentWeights`.
    static let standard = [
        RecurrentParameter(name: "weight_ih", extents: [.gates, .input], role: .inputWeights),
        RecurrentParameter(name: "weight_hh", extents: [.gates, .hidden], role: .recurrentWeights),
        RecurrentParameter(name: "bias_ih", extents: [.gates], role: .inputBias),
        RecurrentParameter(name: "bias_hh", extents: [.gates], role: .bias),
    ]
}
