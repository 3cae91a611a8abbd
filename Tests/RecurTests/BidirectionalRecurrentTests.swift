import Testing
@testable import Recur

// The bidirectional pair ops (`recurrentForward` / `recurrentBackward` of a
// `BidirectionalRecurrentForward` / `BidirectionalRecurrentBackward`), which a bidirectional
// `RecurrentLayer` calls once per layer and OpenCL runs as one launch per time step for both
// directions:
// - whole layers on OpenCL against the CPU backend: every cell, one and two layers, pre and post
//   padding, recurrent dropout (and dropout between layers), the LSTM's cell clip, initial and
//   final state gradients, and the gradient-flow record of dL/dh_t;
// - pairs that are not one layer's two directions are refused before anything runs, on every
//   backend, and on OpenCL before any kernel is enqueued;
// - on OpenCL a pair costs one launch per step (two for the reset-before GRU), not one per step
//   and direction.
//
// The op-level comparisons of every written tensor of a pair are in OpenCLRecurrentTests.
// Tolerance: as there, norm-wise relative error max |device - cpu| / max |cpu| <= 1e-5.

@Suite("Bidirectional recurrent pairs")
struct BidirectionalRecurrentTests {
    static let tolerance = OpenCLRecurrentTests.tolerance

    struct LayerArgument: Sendable, CustomTestStringConvertible {
        var layer: RecurrentCase
        var testDescription: String { layer.description }
    }

    /// Every cell, one and two layers, both padding sides; every sequence length differs and one
    /// is 1. Odd sizes, none a multiple of a kernel tile.
    static let layerCases: [LayerArgument] = RecurrentCell.withOpenCLKernels.flatMap { cell in
        [1, 2].flatMap { layers in
            PaddingSide.allCases.map { padding in
                LayerArgument(layer: RecurrentCase(
                    cell: cell, steps: 6, batch: 4, inputSize: 5, hiddenSize: 9, layerCount: layers,
                    bidirectional: true, lengths: padding == .pre ? [6, 2, 5, 1] : [3, 6, 1, 4], padding: padding,
                    dropout: layers > 1 ? 0.25 : 0, recurrentDropout: 0.3, cellClip: cell.hasCellState ? 0.6 : nil))
            }
        }
    }

    @Test("a bidirectional layer on OpenCL matches the CPU backend: outputs, states, every gradient",
          arguments: layerCases)
    func layerMatchesCPU(_ argument: LayerArgument) throws {
        guard let openCL = try TestBackends.openCL() else { return }
        let c = argument.layer
        let device = try c.trainingRun(on: openCL, seed: 91)
        let reference = try c.trainingRun(on: TestBackends.cpu, seed: 91)

        var compared: [(name: String, actual: [Float], expected: [Float])] = [
            ("output", device.run.output, reference.run.output),
            ("h_n", device.run.finalHidden, reference.run.finalHidden),
            ("dL/dx", device.run.inputGradient, reference.run.inputGradient),
            ("dL/dh0", device.run.initialHiddenGradient, reference.run.initialHiddenGradient),
        ]
        if c.cell.hasCellState {
            compared += [
                ("c_n", device.run.finalCell ?? [], reference.run.finalCell ?? []),
                ("dL/dc0", device.run.initialCellGradient ?? [], reference.run.initialCellGradient ?? []),
            ]
        }
        #expect(device.run.parameterGradients.keys.sorted() == reference.run.parameterGradients.keys.sorted())
        #expect(reference.run.parameterGradients.count == 2 * c.cell.parameters.count * c.layerCount)
        for (name, expected) in reference.run.parameterGradients.sorted(by: { $0.key < $1.key }) {
            compared.append(("dL/d\(name)", device.run.parameterGradients[name] ?? [], expected))
        }
        // ‖dL/dh_t‖ of every step of every layer-direction, from the backward ops'
        // hiddenStateGradients.
        #expect(device.flow.map(\.name) == reference.flow.map(\.name))
        #expect(reference.flow.count == 2 * c.layerCount)
        for (actual, expected) in zip(device.flow, reference.flow) {
            compared.append(("gradient flow \(actual.name)", actual.norms, expected.norms))
        }
        for (name, actual, expected) in compared {
            let comparison = Comparison(name, actual: actual, expected: expected, tolerance: Self.tolerance)
            #expect(comparison.passed, "\(c): \(comparison)")
            #expect(expected.contains { $0 != 0 }, "\(c): \(name) is all zero")
        }
    }

    // MARK: Refused pairs

    /// Every way a pair can fail to be one layer's two directions, each breaking one rule of a
    /// valid pair, with whether the error is a shape mismatch (else an invalid argument).
    static func invalidPairs(on backend: any Backend) throws
        -> [(name: String, isShape: Bool, run: () throws -> Void)]
    {
        let gru = try PairRequests(cell: .gru, on: backend)
        let lstm = try PairRequests(cell: .lstm, on: backend, cellClip: 0.5)
        // Requests of another size, each valid on its own.
        let longer = try PairRequests(cell: .gru, on: backend, steps: 6, lengths: nil)
        let wider = try PairRequests(cell: .gru, on: backend, batch: 4, lengths: nil)
        let moreInputs = try PairRequests(cell: .gru, on: backend, inputSize: 5)
        let moreUnits = try PairRequests(cell: .gru, on: backend, hiddenSize: 7)
        let otherLengths = try PairRequests(cell: .gru, on: backend)  // the same values, another tensor
        let scratch = try backend.zeros([5, 3, 6])  // [T, B, H]

        var forwards: [(String, Bool, BidirectionalRecurrentForward)] = []
        func forward(_ name: String, isShape: Bool = false, _ change: (inout BidirectionalRecurrentForward) -> Void) {
            var pair = gru.forward
            change(&pair)
            forwards.append((name, isShape, pair))
        }
        forward("two forward scans") { $0.reverse.scan.reverse = false }
        forward("two reverse scans") { $0.forward.scan.reverse = true }
        forward("directions swapped") { ($0.forward, $0.reverse) = ($0.reverse, $0.forward) }
        forward("different cells") { $0.reverse.scan.cell = .gruResetBefore }
        forward("different T", isShape: true) { $0.reverse = longer.forward.reverse }
        forward("different B", isShape: true) { $0.forward.scan.lengths = nil; $0.reverse = wider.forward.reverse }
        forward("different I", isShape: true) { $0.reverse = moreInputs.forward.reverse }
        forward("different H", isShape: true) { $0.reverse = moreUnits.forward.reverse }
        forward("lengths in one direction only") { $0.reverse.scan.lengths = nil }
        forward("two lengths tensors") { $0.reverse.scan.lengths = otherLengths.forward.reverse.scan.lengths }
        forward("different padding") { $0.reverse.scan.padding = .pre }
        forward("one final state") { $0.reverse.finalHidden = $0.forward.finalHidden }
        forward("one workspace") { $0.reverse.workspace = $0.forward.workspace }
        forward("overlapping outputs") { $0.reverse.output = $0.forward.output }
        forward("outputs overlapping by one column") { $0.reverse.output.offset -= 1 }
        forward("reverse starts from the forward's final state") {
            $0.reverse.scan.initialHidden = $0.forward.finalHidden
        }
        forward("reverse masks with the forward's final state") {
            $0.reverse.scan.recurrentDropoutMask = $0.forward.finalHidden
        }
        var clipped = lstm.forward
        clipped.reverse.scan.cellClip = 0.25
        forwards.append(("different cell clips", false, clipped))
        var unclipped = lstm.forward
        unclipped.forward.scan.cellClip = nil
        forwards.append(("a cell clip in one direction only", false, unclipped))
        var cellShared = lstm.forward
        cellShared.reverse.finalCell = cellShared.forward.finalCell
        forwards.append(("one final cell state", false, cellShared))

        var backwards: [(String, Bool, BidirectionalRecurrentBackward)] = []
        func backward(_ name: String, _ change: (inout BidirectionalRecurrentBackward) -> Void) {
            var pair = gru.backward
            change(&pair)
            backwards.append((name, false, pair))
        }
        backward("backward: two forward scans") { $0.reverse.scan.reverse = false }
        backward("backward: different cells") { $0.forward.scan.cell = .gruResetBefore }
        backward("backward: two lengths tensors") {
            $0.reverse.scan.lengths = otherLengths.backward.reverse.scan.lengths
        }
        backward("backward: one dL/dh0") { $0.reverse.initialHiddenGradient = $0.forward.initialHiddenGradient }
        backward("backward: one set of weight gradients") { $0.reverse.weightGradients = $0.forward.weightGradients }
        backward("backward: one dL/dh_t record") { $0.reverse.hiddenStateGradients = $0.forward.hiddenStateGradients }
        backward("backward: dL/dh_t recorded into the other's output gradient") {
            $0.forward.hiddenStateGradients = scratch
            $0.reverse.outputGradient = MatrixOperand(scratch, leadingDimension: 6)
        }
        backward("backward: dL/dx written into the other's input") {
            $0.forward.inputGradient = $0.reverse.scan.input
        }
        var lstmBackward = lstm.backward
        lstmBackward.reverse.initialCellGradient = lstmBackward.forward.initialCellGradient
        backwards.append(("backward: one dL/dc0", false, lstmBackward))

        return forwards.map { name, isShape, pair in (name, isShape, { try backend.recurrentForward(pair) }) }
            + backwards.map { name, isShape, pair in (name, isShape, { try backend.recurrentBackward(pair) }) }
    }

    private static func expectRefused(_ backend: any Backend) throws {
        for (name, isShape, run) in try invalidPairs(on: backend) {
            expectRecurError("\(backend.kind) \(name)", matches: { error in
                let kindMatches = switch error {
                case .shapeMismatch: isShape
                case .invalidArgument: !isShape
                default: false
                }
                return kindMatches && "\(error)".contains("bidirectional")
            }, run)
        }
    }

    @Test("the CPU backend refuses pairs that are not one layer's two directions")
    func cpuRefusesInvalidPairs() throws {
        try Self.expectRefused(CPUBackend())
        // The valid pairs the refused ones were made from do run.
        let backend = CPUBackend()
        for cell in [RecurrentCell.gru, .lstm] {
            let pair = try PairRequests(cell: cell, on: backend, cellClip: cell == .lstm ? 0.5 : nil)
            try backend.recurrentForward(pair.forward)
            try backend.recurrentBackward(pair.backward)
        }
    }

    @Test("OpenCL refuses pairs that are not one layer's two directions before enqueueing any kernel")
    func openCLRefusesInvalidPairsBeforeEnqueueing() throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device)
        backend.faultInjector.countCalls()
        try Self.expectRefused(backend)
        #expect(backend.faultInjector.calls(at: .enqueue) == 0,
                "\(backend.faultInjector.calls(at: .enqueue)) kernels were enqueued for refused pairs")
    }

    // MARK: Launch count

    /// Counts every kernel launch and GEMM (the fault injector's enqueue point) of a pair and of
    /// its two directions run one by one. Per direction the forward adds the input GEMM and the
    /// copy of the first step's h̃; the backward adds the copies of dL/dh_n (and dL/dc_n) into the
    /// running gradient, the GEMMs after the loop (dW_ih, dW_hh (two for the reset-before GRU),
    /// db_ih, db_hh, dx); the row of ones the bias GEMMs share is the backend's, filled once, by
    /// the first backward.
    @Test("a pair costs one launch per time step, not one per step and direction",
          arguments: RecurrentCell.withUnitStepKernels)
    func oneLaunchPerStep(_ cell: RecurrentCell) throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device)
        let steps = 9
        let pair = try PairRequests(cell: cell, on: backend, steps: steps, lengths: [9, 4, 1])
        func enqueues(_ body: () throws -> Void) throws -> Int {
            backend.faultInjector.countCalls()
            try body()
            let count = backend.faultInjector.calls(at: .enqueue)
            backend.faultInjector.reset()
            return count
        }
        // Compile the programs first (not an enqueue, but kept out of the counted calls anyway).
        try backend.recurrentForward(pair.forward)
        try backend.recurrentBackward(pair.backward)
        try backend.synchronize()

        let kernelsPerStep = cell == .gruResetBefore ? 2 : 1
        let forwardPair = try enqueues { try backend.recurrentForward(pair.forward) }
        let forwardOneByOne = try enqueues {
            try backend.recurrentForward(pair.forward.forward)
            try backend.recurrentForward(pair.forward.reverse)
        }
        #expect(forwardPair == kernelsPerStep * steps + 2 * 2, "\(cell): \(forwardPair) forward enqueues")
        #expect(forwardOneByOne - forwardPair == kernelsPerStep * steps)

        // T + 1 launches of the step kernel (the last only takes dL/dh0 through W_hh), and for the
        // reset-before GRU T of its second kernel.
        let backwardStepLaunches = steps + 1 + (cell == .gruResetBefore ? steps : 0)
        let stateCopies = cell.hasCellState ? 2 : 1
        let gemms = cell == .gruResetBefore ? 6 : 5
        let backwardPair = try enqueues { try backend.recurrentBackward(pair.backward) }
        let backwardOneByOne = try enqueues {
            try backend.recurrentBackward(pair.backward.forward)
            try backend.recurrentBackward(pair.backward.reverse)
        }
        #expect(backwardPair == backwardStepLaunches + 2 * (stateCopies + gemms),
                "\(cell): \(backwardPair) backward enqueues")
        #expect(backwardOneByOne - backwardPair == backwardStepLaunches)
        try backend.synchronize()
    }
}

/// A valid bidirectional pair of forward and backward requests with seeded values (T = 5, B = 3,
/// I = 4, H = 6 unless told), laid out as a bidirectional layer lays them out: one input, one
/// lengths tensor, one `[T, B, 2H]` output and its gradient (offsets 0 and H), one dL/dx that the
/// reverse direction adds to; everything else per direction. Tests break one rule at a time.
private struct PairRequests {
    var forward: BidirectionalRecurrentForward
    var backward: BidirectionalRecurrentBackward

    init(cell: RecurrentCell, on backend: any Backend, steps: Int = 5, batch: Int = 3, inputSize: Int = 4,
         hiddenSize: Int = 6, lengths: [Int32]? = [5, 2, 4], cellClip: Float? = nil) throws {
        var random = SeededGenerator(seed: 17)
        func tensor(_ shape: Shape) throws -> Tensor { try backend.upload(random.floats(shape.count), shape: shape) }
        let (t, b, i, h, g) = (steps, batch, inputSize, hiddenSize, cell.gateCount * hiddenSize)
        let input = try tensor([t, b, i])
        let lengthTensor = try lengths.map { try backend.upload($0, shape: [b]) }
        let output = try backend.zeros([t, b, 2 * h])
        let outputGradient = try tensor([t, b, 2 * h])
        let inputGradient = try backend.zeros([t, b, i])
        var forwards: [RecurrentForward] = []
        var backwards: [RecurrentBackward] = []
        for direction in 0..<2 {
            let scan = RecurrentScan(
                cell: cell, input: input,
                weights: RecurrentWeights(input: try tensor([g, i]), recurrent: try tensor([g, h]),
                                          inputBias: try tensor([g]), recurrentBias: try tensor([g])),
                initialHidden: try tensor([b, h]), initialCell: cell.hasCellState ? try tensor([b, h]) : nil,
                lengths: lengthTensor, padding: .post, reverse: direction == 1, cellClip: cellClip)
            let workspace = try RecurrentWorkspace(cell: cell, steps: t, batchSize: b, hiddenSize: h, backend: backend)
            forwards.append(RecurrentForward(
                scan: scan, output: MatrixOperand(output, offset: direction * h, leadingDimension: 2 * h),
                finalHidden: try backend.zeros([b, h]),
                finalCell: cell.hasCellState ? try backend.zeros([b, h]) : nil, workspace: workspace))
            backwards.append(RecurrentBackward(
                scan: scan, workspace: workspace,
                outputGradient: MatrixOperand(outputGradient, offset: direction * h, leadingDimension: 2 * h),
                finalHiddenGradient: try tensor([b, h]),
                finalCellGradient: cell.hasCellState ? try tensor([b, h]) : nil,
                inputGradient: inputGradient, accumulateInputGradient: direction == 1,
                initialHiddenGradient: try backend.zeros([b, h]),
                initialCellGradient: cell.hasCellState ? try backend.zeros([b, h]) : nil,
                weightGradients: RecurrentWeights(
                    input: try backend.zeros([g, i]), recurrent: try backend.zeros([g, h]),
                    inputBias: try backend.zeros([g]), recurrentBias: try backend.zeros([g])),
                hiddenStateGradients: try backend.zeros([t, b, h])))
        }
        forward = BidirectionalRecurrentForward(forward: forwards[0], reverse: forwards[1])
        backward = BidirectionalRecurrentBackward(forward: backwards[0], reverse: backwards[1])
    }
}
