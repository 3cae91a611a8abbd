// The whole-sequence recurrent ops: one layer, one direction, every time step in one call, so a
// backend can hoist the input projection of all steps into one GEMM and fuse each step's
// pointwise work into one pass (Appleyard et al. 2016).
//
// Shape legend: T time steps, B batch, I input features, H hidden units, G = gates * H
// (gates: 1 for the simple RNNs, 4 for LSTM, 3 for GRU), P the width of h: the projection size
// of a cell that projects its hidden state (`lstm_projection`), else H. Every `[*, H]` operand
// below that holds h, h̃ or their gradients is `[*, P]`; c and the gates keep H. Sequences are time-major: row (t, b) of
// a `[T, B, F]` tensor is row t * B + b of the matrix `[T * B, F]`.
// The cells themselves (`RecurrentCell`, their equations and steps) are in `Cells/`.

import Synchronization

/// The parameter tensors of one layer-direction, laid out as PyTorch's, in the order of the
/// cell's `RecurrentCell.parameters`: the four every cell has, which every backend reads, then
/// the cell's own (`extra`). Also used for their gradients, which have the same shapes.
public struct RecurrentWeights: Sendable {
    /// `weight_ih`: `[G, I]`, gate blocks stacked along rows in the cell's gate order.
    public var input: Tensor
    /// `weight_hh`: `[G, H]`.
    public var recurrent: Tensor
    /// `bias_ih`: `[G]`.
    public var inputBias: Tensor
    /// `bias_hh`: `[G]`.
    public var recurrentBias: Tensor
    /// The cell's parameters after the first four, in its `RecurrentCell.parameters` order.
    public var extra: [Tensor]

    /// The weights of one layer-direction.
    ///
    /// - Parameters:
    ///   - input: `weight_ih`, `[G, I]`.
    ///   - recurrent: `weight_hh`, `[G, H]`.
    ///   - inputBias: `bias_ih`, `[G]`.
    ///   - recurrentBias: `bias_hh`, `[G]`.
    ///   - extra: the cell's further parameters, in its order; none for the built-in cells.
    public init(input: Tensor, recurrent: Tensor, inputBias: Tensor, recurrentBias: Tensor, extra: [Tensor] = []) {
        self.input = input
        self.recurrent = recurrent
        self.inputBias = inputBias
        self.recurrentBias = recurrentBias
        self.extra = extra
    }

    /// The weights from every tensor in the cell's parameter order.
    ///
    /// - Parameter tensors: at least the four standard tensors, then the cell's own.
    public init(_ tensors: [Tensor]) {
        precondition(tensors.count >= 4, "RecurrentWeights needs weight_ih, weight_hh, bias_ih and bias_hh")
        self.init(input: tensors[0], recurrent: tensors[1], inputBias: tensors[2], recurrentBias: tensors[3],
                  extra: Array(tensors.dropFirst(4)))
    }

    /// Every tensor, in the cell's parameter order.
    public var all: [Tensor] { [input, recurrent, inputBias, recurrentBias] + extra }

    /// The name of tensor `index` of `all` in messages: the property that holds it.
    static func fieldName(_ index: Int) -> String {
        index < 4 ? ["input", "recurrent", "inputBias", "recurrentBias"][index] : "extra[\(index - 4)]"
    }
}

/// One scan of one layer in one direction: everything both the forward and the backward op read.
///
/// Padding: with `lengths`, a step outside a sequence's valid range leaves its state unchanged,
/// writes 0 to the output and receives no gradient, exactly like a PyTorch packed sequence, in
/// both directions. Padded input values must be finite (they pass through the input GEMM, whose
/// padded rows are then ignored).
public struct RecurrentScan: Sendable {
    public var cell: RecurrentCell
    /// x: `[T, B, I]`, dense, time-major.
    public var input: Tensor
    public var weights: RecurrentWeights
    /// h0: `[B, H]`.
    public var initialHidden: Tensor
    /// c0: `[B, H]`; required for `lstm`, must be nil otherwise.
    public var initialCell: Tensor?
    /// P, the width of h, for a cell that projects its hidden state (`lstm_projection`), where it
    /// is required (0 < P < H); must be nil for the other cells. `weight_hh` is then `[G, P]`.
    public var projectionSize: Int?
    /// Valid steps per sequence, int32 `[B]`, each in 1...T; nil means every step is valid.
    /// The CPU backend checks the values; a device backend may trust the layer, which checks
    /// them on the host before uploading.
    public var lengths: Tensor?
    /// Which end of the time axis holds the padding; read only when `lengths` is set.
    public var padding: PaddingSide
    /// Scan t = T-1 ... 0 (the backward direction of a bidirectional layer) instead of 0 ... T-1.
    public var reverse: Bool
    /// m: `[B, H]`, already scaled by 1 / (1 - p); the same mask at every step. nil means none.
    public var recurrentDropoutMask: Tensor?
    /// LSTM only: c_t is clipped to [-cellClip, cellClip] (cuDNN's clip); the gradient through a
    /// clipped element is 0. Must be nil for the other cells, positive and finite when set.
    public var cellClip: Float?
    /// Where a backend may keep what it derives from `weights` (the CPU backend's packed W_hh and
    /// W_ih) for the next scans, as long as the weights do not change: set by
    /// `RecurrentLayer.withUnchangingWeights`. nil: derived anew every call.
    public var weightPacks: RecurrentWeightPacks?

    public init(cell: RecurrentCell, input: Tensor, weights: RecurrentWeights, initialHidden: Tensor,
                initialCell: Tensor? = nil, lengths: Tensor? = nil, padding: PaddingSide = .post,
                reverse: Bool = false, recurrentDropoutMask: Tensor? = nil, cellClip: Float? = nil,
                projectionSize: Int? = nil) {
        self.cell = cell
        self.projectionSize = projectionSize
        self.input = input
        self.weights = weights
        self.initialHidden = initialHidden
        self.initialCell = initialCell
        self.lengths = lengths
        self.padding = padding
        self.reverse = reverse
        self.recurrentDropoutMask = recurrentDropoutMask
        self.cellClip = cellClip
    }
}

/// What a backend derives from the weights of recurrent scans, kept between the scans of a loop
/// that does not change the weights: a decoder stepped one token at a time (input feeding, greedy
/// and beam decoding), where every step is a scan of its own and the CPU backend would otherwise
/// pack W_hh and W_ih again for each (2.4 and 2.7 MB at G2P's decoder sizes).
public final class RecurrentWeightPacks: @unchecked Sendable {
    private struct Key: Hashable {
        let tensor: ObjectIdentifier
        let kind: String
    }

    /// Each value with the weights it was made from, kept alive so that their identity is not
    /// reused while the value is kept.
    private let entries = Mutex<[Key: (weights: Tensor, value: AnyObject)]>([:])

    public init() {}

    /// How many values are kept.
    var count: Int { entries.withLock { $0.count } }

    /// The value kept for `tensor` and `kind`, made by `make` the first time.
    func value<Value: AnyObject>(for tensor: Tensor, kind: String, make: () throws -> Value) throws -> Value {
        let key = Key(tensor: ObjectIdentifier(tensor), kind: kind)
        return try entries.withLock { entries in
            if let kept = entries[key]?.value as? Value { return kept }
            let value = try make()
            entries[key] = (tensor, value)
            return value
        }
    }
}

/// What the forward op keeps for the backward op, indexed by time t (not by scan step), so the
/// weight gradients can be taken as one GEMM over all steps. Written by `recurrentForward`, only
/// read by `recurrentBackward` (backward may run more than once on one forward).
///
/// At a padded step (b, t): the `gates` row is 0, `candidateRecurrent` is 0, `recurrentInput`
/// holds the carried state times the mask, and `cellStates` / `hiddenStates` hold the carried
/// state. Backward reads the state of step t's scan predecessor (t - 1, or t + 1 when reversed; h0
/// or c0 for the first scan step) as h_{t-1} / c_{t-1}, so the carried values are required: the
/// first valid step after pre-padding (or of a reversed post-padded scan) finds h0 / c0 there.
public struct RecurrentWorkspace: Sendable {
    /// `[T, B, G]`: the gates after their nonlinearities, in the cell's gate order
    /// (LSTM i, f, g, o; GRU r, z, n; simple RNN: h_t itself). The layer-normalised cells keep
    /// the products before their normalisation instead (see their files).
    public var gates: Tensor
    /// `[T, B, H]`: h̃_{t-1} = h_{t-1} ⊙ m, the operand of W_hh at step t (h0 ⊙ m at the first step
    /// of the scan).
    public var recurrentInput: Tensor
    /// `[T, B, H]`, LSTM only: c_t after the clip (the state the step leaves behind).
    public var cellStates: Tensor?
    /// `[T, B, H]`, for cells that keep step states (the GRUs): h_t (without dropout), the state
    /// the step leaves behind.
    public var hiddenStates: Tensor?
    /// `[T, B, H]`, for cells that keep step states: the recurrent part of the candidate n.
    /// `gru`: W_hn h̃_{t-1} + b_hn. `gruResetBefore`: r_t ⊙ h̃_{t-1} (the operand of W_hn).
    public var candidateRecurrent: Tensor?

    public init(gates: Tensor, recurrentInput: Tensor, cellStates: Tensor?, hiddenStates: Tensor?,
                candidateRecurrent: Tensor?) {
        self.gates = gates
        self.recurrentInput = recurrentInput
        self.cellStates = cellStates
        self.hiddenStates = hiddenStates
        self.candidateRecurrent = candidateRecurrent
    }

    /// Allocates the buffers `cell` needs for a `[T, B, *]` scan with H hidden units on `backend`.
    /// Their contents are unspecified until a forward op fills them: it writes every element.
    ///
    /// - Parameters:
    ///   - cell: the cell the scan runs.
    ///   - steps: T.
    ///   - batchSize: B.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h (and of `recurrentInput`) for a cell that projects
    ///     it; nil means H.
    ///   - backend: where the buffers live.
    public init(cell: RecurrentCell, steps: Int, batchSize: Int, hiddenSize: Int, projectionSize: Int? = nil,
                backend: any Backend) throws {
        let (t, b, h) = (steps, batchSize, hiddenSize)
        self.init(
            gates: try backend.uninitialized([t, b, cell.gateCount * h]),
            recurrentInput: try backend.uninitialized([t, b, projectionSize ?? h]),
            cellStates: cell.hasCellState ? try backend.uninitialized([t, b, h]) : nil,
            hiddenStates: cell.keepsStepStates ? try backend.uninitialized([t, b, h]) : nil,
            candidateRecurrent: cell.keepsStepStates ? try backend.uninitialized([t, b, h]) : nil)
    }

    /// The workspaces of a bidirectional pair, whose gate and h̃ buffers (the operands of the
    /// input projections and weight gradients) each share one allocation, so that a device can
    /// batch the two directions' GEMMs (see `Backend.tensorsInOneAllocation`). Their contents are
    /// unspecified until a forward op fills them.
    ///
    /// - Parameters:
    ///   - cell: the cell both scans run.
    ///   - steps: T.
    ///   - batchSize: B.
    ///   - hiddenSize: H.
    ///   - projectionSize: P, the width of h for a cell that projects it; nil means H.
    ///   - backend: where the buffers live.
    public static func pair(cell: RecurrentCell, steps: Int, batchSize: Int, hiddenSize: Int,
                            projectionSize: Int? = nil, backend: any Backend) throws -> [RecurrentWorkspace] {
        let (t, b, h) = (steps, batchSize, hiddenSize)
        let p = projectionSize ?? h
        let gates = try backend.tensorsInOneAllocation([[t, b, cell.gateCount * h], [t, b, cell.gateCount * h]],
                                                       zeroed: false)
        let recurrentInput = try backend.tensorsInOneAllocation([[t, b, p], [t, b, p]], zeroed: false)
        return try (0..<2).map { d in
            RecurrentWorkspace(
                gates: gates[d], recurrentInput: recurrentInput[d],
                cellStates: cell.hasCellState ? try backend.uninitialized([t, b, h]) : nil,
                hiddenStates: cell.keepsStepStates ? try backend.uninitialized([t, b, h]) : nil,
                candidateRecurrent: cell.keepsStepStates ? try backend.uninitialized([t, b, h]) : nil)
        }
    }
}

/// Forward request: run `scan`, write every step's h_t into `output` and the final state.
///
/// Overwrites `output` (valid steps: h_t; padded steps: 0), `finalHidden`, `finalCell` and every
/// buffer of `workspace`. Reads nothing else that it writes; `output` must not overlap the input.
public struct RecurrentForward: Sendable {
    public var scan: RecurrentScan
    /// The `[T * B, H]` matrix of outputs inside a larger tensor: h_t of sequence b goes to
    /// elements `offset + (t * B + b) * leadingDimension + j`, j < H. A bidirectional layer
    /// passes its `[T, B, 2H]` output with offset 0 or H and leading dimension 2H. Not transposed.
    public var output: MatrixOperand
    /// h_n: `[B, H]`, the state after the last valid step of the scan (for the reverse direction:
    /// after the first valid time step), or h0 where nothing was valid.
    public var finalHidden: Tensor
    /// c_n: `[B, H]`, LSTM only.
    public var finalCell: Tensor?
    public var workspace: RecurrentWorkspace

    public init(scan: RecurrentScan, output: MatrixOperand, finalHidden: Tensor, finalCell: Tensor? = nil,
                workspace: RecurrentWorkspace) {
        self.scan = scan
        self.output = output
        self.finalHidden = finalHidden
        self.finalCell = finalCell
        self.workspace = workspace
    }
}

/// Backward request for a `RecurrentForward` that ran with the same `scan` and `workspace`.
///
/// Overwrites `inputGradient` (or adds to it when `accumulateInputGradient`),
/// `initialHiddenGradient` and `initialCellGradient`. ACCUMULATES (+=) into the four tensors of
/// `weightGradients`, so gradients of several calls (directions, batches) add up until zeroed.
public struct RecurrentBackward: Sendable {
    public var scan: RecurrentScan
    public var workspace: RecurrentWorkspace
    /// dL/d output, the same `[T * B, H]` view as the forward's output; values at padded steps are
    /// ignored. nil means zero (only the final state feeds the loss).
    public var outputGradient: MatrixOperand?
    /// dL/dh_n: `[B, H]`; nil means zero.
    public var finalHiddenGradient: Tensor?
    /// dL/dc_n: `[B, H]`, LSTM only; nil means zero.
    public var finalCellGradient: Tensor?
    /// dL/dx: `[T, B, I]`. Rows of padded steps get 0 (or are left unchanged when accumulating).
    public var inputGradient: Tensor
    /// Add dL/dx into `inputGradient` instead of overwriting it: the two directions of a
    /// bidirectional layer read the same input.
    public var accumulateInputGradient: Bool
    /// dL/dh0: `[B, H]`, overwritten.
    public var initialHiddenGradient: Tensor
    /// dL/dc0: `[B, H]`, overwritten; required for `lstm`, nil otherwise.
    public var initialCellGradient: Tensor?
    /// dL/dW_ih, dL/dW_hh, dL/db_ih, dL/db_hh, shaped like `scan.weights`; accumulated (+=).
    public var weightGradients: RecurrentWeights
    /// Optional `[T, B, H]`, indexed by time t: receives dL/dh_t, the total gradient reaching each
    /// step's hidden state (from the output gradient at t plus what flows back from the next scan
    /// step, through W_hh and, for GRU, the z blend; for LSTM not counting what reaches c_t), the
    /// quantity whose decay or growth with distance shows vanishing or exploding gradients. Padded
    /// steps get 0. Overwritten; nil records nothing and costs nothing.
    public var hiddenStateGradients: Tensor?

    public init(scan: RecurrentScan, workspace: RecurrentWorkspace, outputGradient: MatrixOperand?,
                finalHiddenGradient: Tensor? = nil, finalCellGradient: Tensor? = nil, inputGradient: Tensor,
                accumulateInputGradient: Bool = false, initialHiddenGradient: Tensor,
                initialCellGradient: Tensor? = nil, weightGradients: RecurrentWeights,
                hiddenStateGradients: Tensor? = nil) {
        self.scan = scan
        self.workspace = workspace
        self.outputGradient = outputGradient
        self.finalHiddenGradient = finalHiddenGradient
        self.finalCellGradient = finalCellGradient
        self.inputGradient = inputGradient
        self.accumulateInputGradient = accumulateInputGradient
        self.initialHiddenGradient = initialHiddenGradient
        self.initialCellGradient = initialCellGradient
        self.weightGradients = weightGradients
        self.hiddenStateGradients = hiddenStateGradients
    }
}

/// Both directions of one bidirectional layer, run as one op (`Backend.recurrentForward(_:)` with
/// a pair): the same result as `recurrentForward(forward)` followed by `recurrentForward(reverse)`,
/// but a device may run the two scans side by side, time t of the forward scan together with time
/// T-1-t of the reverse one, in one launch per step.
///
/// The two must form one layer: the same cell, T, B, I and H, `forward.scan.reverse` false and
/// `reverse.scan.reverse` true, the same lengths tensor (or none) and padding side, and the same
/// cell clip. No tensor that one direction writes may be one the other reads or writes, except
/// their output: both may write one tensor through views that do not overlap (the halves of a
/// `[T, B, 2H]` output, offsets 0 and H with leading dimension 2H). Each request keeps its own
/// weights, initial state, dropout mask and workspace.
public struct BidirectionalRecurrentForward: Sendable {
    /// The scan t = 0 ... T-1.
    public var forward: RecurrentForward
    /// The scan t = T-1 ... 0.
    public var reverse: RecurrentForward

    public init(forward: RecurrentForward, reverse: RecurrentForward) {
        self.forward = forward
        self.reverse = reverse
    }
}

/// The backward op of a `BidirectionalRecurrentForward`: the same result as
/// `recurrentBackward(forward)` followed by `recurrentBackward(reverse)`, the two scans run side by
/// side on a device that can.
///
/// The pairing rules are the forward's. The one tensor both directions may write is
/// `inputGradient`, as a bidirectional layer's directions read the same input: the forward
/// request's gradient is written first, so the reverse one sets `accumulateInputGradient` to add
/// to it.
public struct BidirectionalRecurrentBackward: Sendable {
    /// The backward of the scan t = 0 ... T-1.
    public var forward: RecurrentBackward
    /// The backward of the scan t = T-1 ... 0.
    public var reverse: RecurrentBackward

    public init(forward: RecurrentBackward, reverse: RecurrentBackward) {
        self.forward = forward
        self.reverse = reverse
    }
}

extension Backend {
    /// Runs the two directions one after the other, for backends without a paired scan (the CPU
    /// backend, whose scans are already as wide as the batch allows). Validates the pair first, so
    /// every backend refuses the same requests.
    public func recurrentForward(_ pair: BidirectionalRecurrentForward) throws {
        _ = try checkBidirectionalRecurrentForward(pair)
        try recurrentForward(pair.forward)
        try recurrentForward(pair.reverse)
    }

    /// Runs the two directions' backward ops one after the other; see `recurrentForward(_:)` of a
    /// pair.
    public func recurrentBackward(_ pair: BidirectionalRecurrentBackward) throws {
        _ = try checkBidirectionalRecurrentBackward(pair)
        try recurrentBackward(pair.forward)
        try recurrentBackward(pair.reverse)
    }
}

/// The sizes of a validated scan.
struct RecurrentDimensions {
    /// T, B, I, H.
    var steps: Int
    var batch: Int
    var input: Int
    var hidden: Int
    /// G = gates * H.
    var gates: Int
    /// P, the width of h: the projection size, or H for a cell that does not project h.
    var state: Int
}

// MARK: Validation shared by every backend

extension Backend {
    /// Validates a forward request (shapes, element types, ownership, view bounds); the values of
    /// `lengths` are not read here.
    func checkRecurrentForward(_ request: RecurrentForward) throws -> RecurrentDimensions {
        let operation = "recurrentForward"
        let size = try checkRecurrentScan(operation, request.scan)
        try checkRecurrentWorkspace(operation, request.scan.cell, request.workspace, size)
        try checkSequenceView(operation, "output", request.output, size)
        try checkHidden(operation, "finalHidden", request.finalHidden, size)
        try checkCellOperand(operation, "finalCell", request.finalCell, request.scan.cell, size)
        return size
    }

    /// Validates a backward request; see `checkRecurrentForward`.
    func checkRecurrentBackward(_ request: RecurrentBackward) throws -> RecurrentDimensions {
        let operation = "recurrentBackward"
        let scan = request.scan
        let size = try checkRecurrentScan(operation, scan)
        try checkRecurrentWorkspace(operation, scan.cell, request.workspace, size)
        if let view = request.outputGradient {
            try checkSequenceView(operation, "outputGradient", view, size)
        }
        if let gradient = request.finalHiddenGradient {
            try checkHidden(operation, "finalHiddenGradient", gradient, size)
        }
        if let gradient = request.finalCellGradient {
            guard scan.cell.hasCellState else {
                throw RecurrentCheck.unexpected(operation, "finalCellGradient", scan.cell)
            }
            try checkState(operation, "finalCellGradient", gradient, size)
        }
        try checkOperands(operation, [request.inputGradient])
        try RecurrentCheck.shape(operation, "inputGradient", request.inputGradient,
                                 [size.steps, size.batch, size.input])
        try checkHidden(operation, "initialHiddenGradient", request.initialHiddenGradient, size)
        try checkCellOperand(operation, "initialCellGradient", request.initialCellGradient, scan.cell, size)
        try checkRecurrentWeights(operation, "weightGradients", request.weightGradients, scan.cell, size)
        if let recorded = request.hiddenStateGradients {
            try checkOperands(operation, [recorded])
            try RecurrentCheck.shape(operation, "hiddenStateGradients", recorded,
                                     [size.steps, size.batch, size.state])
        }
        return size
    }

    /// Validates a bidirectional forward request: each direction as `checkRecurrentForward`, then
    /// the pairing rules of `BidirectionalRecurrentForward`.
    func checkBidirectionalRecurrentForward(_ pair: BidirectionalRecurrentForward) throws -> RecurrentDimensions {
        let operation = "recurrentForward (bidirectional)"
        let size = try checkRecurrentForward(pair.forward)
        let reverseSize = try checkRecurrentForward(pair.reverse)
        try checkRecurrentPair(operation, pair.forward.scan, size, pair.reverse.scan, reverseSize)
        try checkPairSharesNothingWritten(operation, forward: RecurrentPairOperand.of(pair.forward),
                                          reverse: RecurrentPairOperand.of(pair.reverse))
        return size
    }

    /// Validates a bidirectional backward request; see `checkBidirectionalRecurrentForward`.
    func checkBidirectionalRecurrentBackward(_ pair: BidirectionalRecurrentBackward) throws -> RecurrentDimensions {
        let operation = "recurrentBackward (bidirectional)"
        let size = try checkRecurrentBackward(pair.forward)
        let reverseSize = try checkRecurrentBackward(pair.reverse)
        try checkRecurrentPair(operation, pair.forward.scan, size, pair.reverse.scan, reverseSize)
        try checkPairSharesNothingWritten(operation, forward: RecurrentPairOperand.of(pair.forward),
                                          reverse: RecurrentPairOperand.of(pair.reverse))
        return size
    }

    /// Checks the values of a lengths tensor already read to the host: each in 1...T.
    func checkRecurrentLengths(_ operation: String, _ lengths: some Sequence<Int32>, steps: Int) throws {
        for (b, length) in lengths.enumerated() where length < 1 || Int(length) > steps {
            throw RecurrentCheck.badLength(operation, Int(length), at: b, steps: steps)
        }
    }

    private func checkRecurrentScan(_ operation: String, _ scan: RecurrentScan) throws -> RecurrentDimensions {
        let x = scan.input
        try checkOperands(operation, [x])
        guard x.shape.rank == 3 else {
            throw RecurError.shapeMismatch(operation: operation, detail: "input must be [T, B, I], got \(x.shape)")
        }
        let recurrent = scan.weights.recurrent
        let gateCount = scan.cell.gateCount
        let size: RecurrentDimensions
        if scan.cell.projectsHiddenState {
            // weight_hh is [G, P]: H comes from its rows, P from the request.
            guard let projection = scan.projectionSize else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "the \(scan.cell) cell needs projectionSize (0 < P < H)")
            }
            guard recurrent.shape.rank == 2, recurrent.shape[0] % gateCount == 0,
                  recurrent.shape[1] == projection else {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "weight_hh must be [\(gateCount) * H, P = \(projection)] for \(scan.cell), got \(recurrent.shape)")
            }
            let hidden = recurrent.shape[0] / gateCount
            guard projection > 0, projection < hidden else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "projectionSize must lie in 1 ..< H = \(hidden), got \(projection)")
            }
            size = RecurrentDimensions(steps: x.shape[0], batch: x.shape[1], input: x.shape[2], hidden: hidden,
                                       gates: recurrent.shape[0], state: projection)
        } else {
            if let projection = scan.projectionSize {
                throw RecurError.invalidArgument(
                    operation: operation,
                    detail: "projectionSize \(projection) needs a cell that projects h (lstm_projection), not \(scan.cell)")
            }
            guard recurrent.shape.rank == 2, recurrent.shape[0] == gateCount * recurrent.shape[1] else {
                throw RecurError.shapeMismatch(
                    operation: operation,
                    detail: "weight_hh must be [\(gateCount) * H, H] for \(scan.cell), got \(recurrent.shape)")
            }
            let hidden = recurrent.shape[1]
            size = RecurrentDimensions(steps: x.shape[0], batch: x.shape[1], input: x.shape[2], hidden: hidden,
                                       gates: gateCount * hidden, state: hidden)
        }
        try checkRecurrentWeights(operation, "weights", scan.weights, scan.cell, size)
        try checkHidden(operation, "initialHidden", scan.initialHidden, size)
        try checkCellOperand(operation, "initialCell", scan.initialCell, scan.cell, size)
        if let lengths = scan.lengths {
            try checkOperands(operation, [lengths], dtype: .int32)
            try RecurrentCheck.shape(operation, "lengths", lengths, [size.batch])
        }
        if let mask = scan.recurrentDropoutMask {
            try checkHidden(operation, "recurrentDropoutMask", mask, size)
        }
        if let clip = scan.cellClip {
            guard scan.cell.hasCellState else { throw RecurrentCheck.unexpected(operation, "cellClip", scan.cell) }
            guard clip > 0, clip.isFinite else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "cellClip must be positive and finite, got \(clip)")
            }
        }
        return size
    }

    /// The two scans of a pair form one layer: one forward and one reverse scan of the same cell
    /// and sizes, with the same lengths, padding and cell clip.
    private func checkRecurrentPair(_ operation: String, _ forward: RecurrentScan, _ forwardSize: RecurrentDimensions,
                                    _ reverse: RecurrentScan, _ reverseSize: RecurrentDimensions) throws {
        func refuse(_ detail: String) -> RecurError {
            RecurError.invalidArgument(operation: operation, detail: detail)
        }
        guard !forward.reverse, reverse.reverse else {
            throw refuse("needs one forward scan and one reverse scan, got forward.scan.reverse = \(forward.reverse) "
                + "and reverse.scan.reverse = \(reverse.reverse)")
        }
        guard forward.cell == reverse.cell else {
            throw refuse("the directions run different cells, \(forward.cell) and \(reverse.cell)")
        }
        let sizes = { (size: RecurrentDimensions) in [size.steps, size.batch, size.input, size.hidden, size.state] }
        guard sizes(forwardSize) == sizes(reverseSize) else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "the directions' [T, B, I, H, P] differ: \(sizes(forwardSize)) and \(sizes(reverseSize))")
        }
        switch (forward.lengths, reverse.lengths) {
        case (nil, nil):
            break
        case let (forwardLengths?, reverseLengths?) where forwardLengths.buffer === reverseLengths.buffer:
            guard forward.padding == reverse.padding else {
                throw refuse("the directions pad differently, \(forward.padding) and \(reverse.padding)")
            }
        default:
            throw refuse("the directions must share one lengths tensor, or both have none")
        }
        guard forward.cellClip == reverse.cellClip else {
            throw refuse("the directions clip differently, \(forward.cellClip.map { "\($0)" } ?? "nil") and "
                + "\(reverse.cellClip.map { "\($0)" } ?? "nil")")
        }
    }

    /// Throws if a tensor one direction writes is one the other touches, so that running the two
    /// side by side gives what running them one after the other gives. Allowed: one output tensor
    /// written through views that do not overlap, and one input gradient (written by GEMMs in
    /// request order).
    private func checkPairSharesNothingWritten(_ operation: String, forward: [RecurrentPairOperand],
                                               reverse: [RecurrentPairOperand]) throws {
        for (writer, writerName, other, otherName) in [(forward, "forward", reverse, "reverse"),
                                                      (reverse, "reverse", forward, "forward")] {
            for written in writer where written.writes {
                for operand in other where operand.tensor.buffer === written.tensor.buffer {
                    if written.name == "inputGradient" && operand.name == "inputGradient" { continue }
                    if let a = written.view, let b = operand.view, a.isDisjoint(from: b) { continue }
                    throw RecurError.invalidArgument(
                        operation: operation,
                        detail: "the \(writerName) direction writes \(written.name), which is also the "
                            + "\(otherName) direction's \(operand.name); the directions must not share a tensor one "
                            + "of them writes")
                }
            }
        }
    }

    /// The tensors the cell's parameter list names, with its shapes.
    private func checkRecurrentWeights(_ operation: String, _ name: String, _ weights: RecurrentWeights,
                                       _ cell: RecurrentCell, _ size: RecurrentDimensions) throws {
        let shapes = cell.parameterShapes(inputSize: size.input, hiddenSize: size.hidden, projectionSize: size.state)
        guard weights.all.count == shapes.count else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(name) holds \(weights.all.count) tensors, \(cell) has \(shapes.count) parameters")
        }
        try checkOperands(operation, weights.all)
        for (index, (tensor, shape)) in zip(weights.all, shapes).enumerated() {
            try RecurrentCheck.shape(operation, "\(name).\(RecurrentWeights.fieldName(index))", tensor, shape)
        }
    }

    private func checkRecurrentWorkspace(_ operation: String, _ cell: RecurrentCell, _ workspace: RecurrentWorkspace,
                                         _ size: RecurrentDimensions) throws {
        let sequence: Shape = [size.steps, size.batch, size.hidden]
        try checkOperands(operation, [workspace.gates, workspace.recurrentInput])
        try RecurrentCheck.shape(operation, "workspace.gates", workspace.gates, [size.steps, size.batch, size.gates])
        try RecurrentCheck.shape(operation, "workspace.recurrentInput", workspace.recurrentInput,
                                 [size.steps, size.batch, size.state])
        let optional: [(String, Tensor?, Bool)] = [
            ("workspace.cellStates", workspace.cellStates, cell.hasCellState),
            ("workspace.hiddenStates", workspace.hiddenStates, cell.keepsStepStates),
            ("workspace.candidateRecurrent", workspace.candidateRecurrent, cell.keepsStepStates),
        ]
        for (name, tensor, needed) in optional {
            switch (tensor, needed) {
            case let (tensor?, true):
                try checkOperands(operation, [tensor])
                try RecurrentCheck.shape(operation, name, tensor, sequence)
            case (nil, true):
                throw RecurError.invalidArgument(operation: operation, detail: "\(cell) needs \(name)")
            case (.some, false):
                throw RecurrentCheck.unexpected(operation, name, cell)
            case (nil, false):
                break
            }
        }
    }

    /// A `[T * B, P]` sequence view: not transposed, rows at least P wide, inside its tensor.
    private func checkSequenceView(_ operation: String, _ name: String, _ view: MatrixOperand,
                                   _ size: RecurrentDimensions) throws {
        try checkOperands(operation, [view.tensor])
        guard !view.transposed, view.leadingDimension >= size.state, view.offset >= 0 else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(name) must be an untransposed view with leading dimension >= \(size.state), the width of h, "
                    + "got offset \(view.offset), leading dimension \(view.leadingDimension), transposed \(view.transposed)")
        }
        let extent = (size.steps * size.batch - 1) * view.leadingDimension + size.state
        try checkRange("\(operation) (\(name))", view.tensor, offset: view.offset, count: extent)
    }

    private func checkState(_ operation: String, _ name: String, _ tensor: Tensor, _ size: RecurrentDimensions) throws {
        try checkOperands(operation, [tensor])
        try RecurrentCheck.shape(operation, name, tensor, [size.batch, size.hidden])
    }

    /// A `[B, P]` operand that holds h, h̃ or their gradient.
    private func checkHidden(_ operation: String, _ name: String, _ tensor: Tensor, _ size: RecurrentDimensions) throws {
        try checkOperands(operation, [tensor])
        try RecurrentCheck.shape(operation, name, tensor, [size.batch, size.state])
    }

    /// A `[B, H]` cell-state operand: required for LSTM, absent otherwise.
    private func checkCellOperand(_ operation: String, _ name: String, _ tensor: Tensor?, _ cell: RecurrentCell,
                                  _ size: RecurrentDimensions) throws {
        switch (tensor, cell.hasCellState) {
        case let (tensor?, true): try checkState(operation, name, tensor, size)
        case (nil, true): throw RecurError.invalidArgument(operation: operation, detail: "\(cell) needs \(name)")
        case (.some, false): throw RecurrentCheck.unexpected(operation, name, cell)
        case (nil, false): break
        }
    }
}

/// A tensor one direction of a bidirectional pair touches, for the aliasing check.
struct RecurrentPairOperand {
    /// The request's name for it (`finalHidden`, `workspace.gates`, …).
    var name: String
    var tensor: Tensor
    /// Whether the op writes it.
    var writes: Bool
    /// For a `[T * B, H]` sequence view: the elements it covers, so two views of one tensor can be
    /// told apart. nil: the whole tensor.
    var view: SequenceView?

    /// Rows of `columns` elements, `leadingDimension` apart, from `offset`.
    struct SequenceView {
        var offset: Int
        var leadingDimension: Int
        var rows: Int
        var columns: Int

        /// True when no element lies in both: their spans do not meet, or they have the same
        /// leading dimension and each row's columns of one lie beside the other's.
        func isDisjoint(from other: SequenceView) -> Bool {
            let end = offset + (rows - 1) * leadingDimension + columns
            let otherEnd = other.offset + (other.rows - 1) * other.leadingDimension + other.columns
            if end <= other.offset || otherEnd <= offset { return true }
            guard leadingDimension == other.leadingDimension else { return false }
            let (first, second) = (offset % leadingDimension, other.offset % leadingDimension)
            guard first + columns <= leadingDimension, second + other.columns <= leadingDimension else { return false }
            return first + columns <= second || second + other.columns <= first
        }
    }

    static func read(_ name: String, _ tensor: Tensor?) -> [RecurrentPairOperand] {
        tensor.map { [RecurrentPairOperand(name: name, tensor: $0, writes: false)] } ?? []
    }

    static func written(_ name: String, _ tensor: Tensor?) -> [RecurrentPairOperand] {
        tensor.map { [RecurrentPairOperand(name: name, tensor: $0, writes: true)] } ?? []
    }

    static func of(_ scan: RecurrentScan) -> [RecurrentPairOperand] {
        read("scan.input", scan.input) + of(scan.weights, prefix: "scan.weights", writes: false)
            + read("scan.initialHidden", scan.initialHidden) + read("scan.initialCell", scan.initialCell)
            + read("scan.lengths", scan.lengths) + read("scan.recurrentDropoutMask", scan.recurrentDropoutMask)
    }

    static func of(_ weights: RecurrentWeights, prefix: String, writes: Bool) -> [RecurrentPairOperand] {
        weights.all.enumerated().map { index, tensor in
            RecurrentPairOperand(name: "\(prefix).\(RecurrentWeights.fieldName(index))", tensor: tensor, writes: writes)
        }
    }

    static func of(_ workspace: RecurrentWorkspace, writes: Bool) -> [RecurrentPairOperand] {
        let tensors: [(String, Tensor?)] = [
            ("gates", workspace.gates), ("recurrentInput", workspace.recurrentInput),
            ("cellStates", workspace.cellStates), ("hiddenStates", workspace.hiddenStates),
            ("candidateRecurrent", workspace.candidateRecurrent),
        ]
        return tensors.flatMap { name, tensor in
            writes ? written("workspace.\(name)", tensor) : read("workspace.\(name)", tensor)
        }
    }

    /// Everything a forward request touches (validated, so its sizes are known).
    static func of(_ request: RecurrentForward) -> [RecurrentPairOperand] {
        let x = request.scan.input
        let output = RecurrentPairOperand(
            name: "output", tensor: request.output.tensor, writes: true,
            view: SequenceView(offset: request.output.offset, leadingDimension: request.output.leadingDimension,
                               rows: x.shape[0] * x.shape[1], columns: request.scan.weights.recurrent.shape[1]))
        return of(request.scan) + [output] + written("finalHidden", request.finalHidden)
            + written("finalCell", request.finalCell) + of(request.workspace, writes: true)
    }

    /// Everything a backward request touches.
    static func of(_ request: RecurrentBackward) -> [RecurrentPairOperand] {
        of(request.scan) + of(request.workspace, writes: false)
            + read("outputGradient", request.outputGradient?.tensor)
            + read("finalHiddenGradient", request.finalHiddenGradient)
            + read("finalCellGradient", request.finalCellGradient)
            + written("inputGradient", request.inputGradient)
            + written("initialHiddenGradient", request.initialHiddenGradient)
            + written("initialCellGradient", request.initialCellGradient)
            + of(request.weightGradients, prefix: "weightGradients", writes: true)
            + written("hiddenStateGradients", request.hiddenStateGradients)
    }
}

/// Error builders for the recurrent checks.
enum RecurrentCheck {
    static func shape(_ operation: String, _ name: String, _ tensor: Tensor, _ expected: Shape) throws {
        guard tensor.shape == expected else {
            throw RecurError.shapeMismatch(operation: operation, detail: "\(name) must be \(expected), got \(tensor.shape)")
        }
    }

    static func unexpected(_ operation: String, _ name: String, _ cell: RecurrentCell) -> RecurError {
        RecurError.invalidArgument(operation: operation, detail: "\(name) must be nil for \(cell)")
    }

    static func badLength(_ operation: String, _ length: Int, at index: Int, steps: Int) -> RecurError {
        RecurError.invalidArgument(
            operation: operation, detail: "length \(length) of sequence \(index) outside 1...\(steps)")
    }
}
