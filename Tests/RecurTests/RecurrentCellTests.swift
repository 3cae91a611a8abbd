import Foundation
import Testing
@testable import Recur

// The cell registry, and the library's float64 reference (`RecurrentReference`) against the fast
// CPU backend for every registered cell: one layer-direction per run, forward and backward, on a
// padded batch, scanned both ways. The backend runs in float32; the tolerance is 2e-5 + 2e-4
// relative.

@Suite("Recurrent cells")
struct RecurrentCellTests {
    @Test("every registered cell round-trips its one name, by name and through JSON")
    func namesRoundTrip() throws {
        #expect(Set(RecurrentCell.names).count == RecurrentCell.allCases.count, "names are unique")
        for cell in RecurrentCell.allCases {
            #expect(RecurrentCell(named: cell.name) == cell)
            let encoded = try JSONEncoder().encode(cell)
            #expect(String(decoding: encoded, as: UTF8.self) == "\"\(cell.name)\"")
            #expect(try JSONDecoder().decode(RecurrentCell.self, from: encoded) == cell)
            #expect("\(cell)" == cell.name)
        }
        #expect(RecurrentCell.names == ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before", "layer_norm_lstm",
                                        "layer_norm_gru", "lstm_projection"])
    }

    @Test("older spellings are still read: checkpoints' camelCase and the CLI's")
    func formerNames() throws {
        let spellings: [(String, RecurrentCell)] = [
            ("rnnTanh", .rnnTanh), ("rnn", .rnnTanh), ("rnn-tanh", .rnnTanh), ("SimpleRNN", .rnnTanh),
            ("rnnRelu", .rnnRelu), ("rnn-relu", .rnnRelu), ("LSTM", .lstm), ("GRU", .gru),
            ("gruResetBefore", .gruResetBefore), ("gru-reset-before", .gruResetBefore),
        ]
        for (spelling, cell) in spellings {
            #expect(RecurrentCell(named: spelling) == cell, "\(spelling)")
            #expect(try JSONDecoder().decode(RecurrentCell.self, from: Data("\"\(spelling)\"".utf8)) == cell)
        }
        #expect(RecurrentCell(named: "lstn") == nil)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(RecurrentCell.self, from: Data("\"lstn\"".utf8)) }
    }

    @Test("the parameter list starts with PyTorch's four tensors and gives their shapes")
    func parameters() {
        for cell in RecurrentCell.allCases {
            #expect(Array(cell.parameters.prefix(4).map(\.name)) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"])
            let g = cell.gateCount * 7
            #expect(Array(cell.parameterShapes(inputSize: 3, hiddenSize: 7).prefix(4)) == [[g, 3], [g, 7], [g], [g]])
            let extra = cell.parameterShapes(inputSize: 3, hiddenSize: 7).dropFirst(4).reduce(0) { $0 + $1.count }
            #expect(cell.parameterCount(inputSize: 3, hiddenSize: 7) == g * 3 + g * 7 + 2 * g + extra)
        }
    }

    @Test("weights carry a cell's own tensors after the four, and an op refuses a count the cell does not have")
    func extraWeights() throws {
        let backend = CPUBackend()
        let tensors = try (0..<6).map { try backend.upload([Float(1 + $0)], shape: [1]) }
        let weights = RecurrentWeights(tensors)
        #expect(weights.extra.count == 2)
        #expect(zip(weights.all, tensors).allSatisfy { $0.buffer === $1.buffer })

        let (t, b, i, h) = (2, 1, 3, 2)
        var rng = SeededGenerator(seed: 7)
        let cell = RecurrentCell.gru
        let shapes = cell.parameterShapes(inputSize: i, hiddenSize: h)
        var parameters = try shapes.map { try backend.upload(rng.values($0.count), shape: $0) }
        parameters.append(try backend.upload(rng.values(h), shape: [h]))  // one tensor the GRU does not have
        let scan = RecurrentScan(cell: cell, input: try backend.upload(rng.values(t * b * i), shape: [t, b, i]),
                                 weights: RecurrentWeights(parameters),
                                 initialHidden: try backend.upload(rng.values(b * h), shape: [b, h]))
        let forward = RecurrentForward(
            scan: scan, output: MatrixOperand(try backend.zeros([t, b, h]), leadingDimension: h),
            finalHidden: try backend.zeros([b, h]),
            workspace: try RecurrentWorkspace(cell: cell, steps: t, batchSize: b, hiddenSize: h, backend: backend))
        #expect(throws: RecurError.self) { try backend.recurrentForward(forward) }
    }

    @Test("the CPU backend matches the float64 reference, forward and backward",
          arguments: RecurrentCell.allCases)
    func cpuMatchesReference(cell: RecurrentCell) throws {
        var seed: UInt64 = 40
        for padding in PaddingSide.allCases {
            for reverse in [false, true] {
                seed += 1
                try referenceCheck(cell: cell, padding: padding, reverse: reverse, cellClip: nil, seed: seed)
            }
        }
        if cell.hasCellState {
            try referenceCheck(cell: cell, padding: .post, reverse: true, cellClip: 0.5, seed: 49)
        }
    }

    /// The batch split over threads (13 rows in 3 parts): each part's rows of every step's u and
    /// dL/dh_t must reach the one dW_hr product after the scan.
    @Test("the projecting LSTM's split CPU scan matches the float64 reference",
          arguments: RecurrentCell.allCases.filter(\.projectsHiddenState))
    func splitProjectionMatchesReference(cell: RecurrentCell) throws {
        let split = CPUBackend(scanSplitMinimumWork: 0, scanPartLimit: 3)
        try referenceCheck(cell: cell, padding: .pre, reverse: false, cellClip: nil, seed: 50, backend: split, batch: 13)
        try referenceCheck(cell: cell, padding: .post, reverse: true, cellClip: nil, seed: 51, backend: split, batch: 13)
    }

    @Test("a projection is only for the LSTM, below H, and the projecting cell needs one")
    func projectionChoices() throws {
        #expect(try RecurrentCell.lstm.projected(to: 3, hiddenSize: 8, operation: "test") == .lstmProjection)
        #expect(try RecurrentCell.lstm.projected(to: nil, hiddenSize: 8, operation: "test") == .lstm)
        #expect(try RecurrentCell.lstm.projected(to: 0, hiddenSize: 8, operation: "test") == .lstm)
        #expect(try RecurrentCell.lstmProjection.projected(to: 3, hiddenSize: 8, operation: "test") == .lstmProjection)
        for (cell, size) in [(RecurrentCell.gru, 3), (.lstm, 8), (.lstm, 9), (.lstm, -1), (.lstmProjection, 0)] {
            #expect(throws: RecurError.self, "\(cell) P \(size)") {
                try cell.projected(to: size, hiddenSize: 8, operation: "test")
            }
        }
        #expect(throws: RecurError.self) {
            try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 4, projectionSize: 2, backend: CPUBackend())
        }
        let layer = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 4, layerCount: 2, bidirectional: true,
                                       projectionSize: 2, backend: CPUBackend())
        #expect(layer.cell == .lstmProjection)
        #expect(layer.parameter(named: "weight_hr_l1_reverse")?.value.shape == [2, 4])
        #expect(layer.parameter(named: "weight_ih_l1")?.value.shape == [16, 4])
        #expect(layer.parameter(named: "weight_hh_l0")?.value.shape == [16, 2])
        #expect(layer.outputFeatures(input: 3) == 4)
    }
}

/// One scan on the CPU backend against `RecurrentReference` run per sequence on its valid steps.
/// A cell that projects h runs with P = 4 < H = 6, so h, the output and their gradients are P wide.
/// With `backend`, the scan runs there (a split one, say) instead of on a default CPU backend.
private func referenceCheck(cell: RecurrentCell, padding: PaddingSide, reverse: Bool, cellClip: Float?,
                            seed: UInt64, backend: CPUBackend = CPUBackend(), batch: Int = 3,
                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    let (t, b, i, h) = (5, batch, 4, 6)
    let projectionSize = cell.projectsHiddenState ? 4 : nil
    let p = projectionSize ?? h
    let g = cell.gateCount * h
    let lengths = (0..<b).map { [5, 2, 4][$0 % 3] }
    var rng = SeededGenerator(seed: seed)
    let shapes = cell.parameterShapes(inputSize: i, hiddenSize: h, projectionSize: projectionSize)
    let weightValues = shapes.map { rng.values($0.count, -0.6, 0.6) }
    let x = rng.values(t * b * i)
    let h0 = rng.values(b * p)
    let c0 = cell.hasCellState ? rng.values(b * h) : nil
    let dy = rng.values(t * b * p)
    let dhn = rng.values(b * p)
    let dcn = cell.hasCellState ? rng.values(b * h) : nil

    let weights = RecurrentWeights(try zip(weightValues, shapes).map { try backend.upload($0, shape: $1) })
    let scan = RecurrentScan(
        cell: cell, input: try backend.upload(x, shape: [t, b, i]), weights: weights,
        initialHidden: try backend.upload(h0, shape: [b, p]),
        initialCell: try c0.map { try backend.upload($0, shape: [b, h]) },
        lengths: try backend.upload(lengths.map(Int32.init), shape: [b]), padding: padding, reverse: reverse,
        cellClip: cellClip, projectionSize: projectionSize)
    let workspace = try RecurrentWorkspace(cell: cell, steps: t, batchSize: b, hiddenSize: h,
                                           projectionSize: projectionSize, backend: backend)
    let output = try backend.zeros([t, b, p])
    let forward = RecurrentForward(
        scan: scan, output: MatrixOperand(output, leadingDimension: p), finalHidden: try backend.zeros([b, p]),
        finalCell: cell.hasCellState ? try backend.zeros([b, h]) : nil, workspace: workspace)
    try backend.recurrentForward(forward)
    let gradients = RecurrentWeights(try shapes.map { try backend.zeros($0) })
    let backward = RecurrentBackward(
        scan: scan, workspace: workspace,
        outputGradient: MatrixOperand(try backend.upload(dy, shape: [t, b, p]), leadingDimension: p),
        finalHiddenGradient: try backend.upload(dhn, shape: [b, p]),
        finalCellGradient: try dcn.map { try backend.upload($0, shape: [b, h]) },
        inputGradient: try backend.zeros([t, b, i]), initialHiddenGradient: try backend.zeros([b, p]),
        initialCellGradient: cell.hasCellState ? try backend.zeros([b, h]) : nil, weightGradients: gradients)
    try backend.recurrentBackward(backward)

    let reference = weightValues.map { $0.map(Double.init) }
    let referenceWeights = RecurrentReferenceWeights(
        input: reference[0], recurrent: reference[1], inputBias: reference[2], recurrentBias: reference[3],
        extra: Array(reference.dropFirst(4)))
    var expectedOutput = [Float](repeating: 0, count: t * b * p)
    var expectedHidden = [Float](repeating: 0, count: b * p)
    var expectedCell = [Float](repeating: 0, count: b * h)
    var expectedInputGradient = [Float](repeating: 0, count: t * b * i)
    var expectedHiddenGradient = [Float](repeating: 0, count: b * p)
    var expectedCellGradient = [Float](repeating: 0, count: b * h)
    var expectedWeightGradients = shapes.map { [Double](repeating: 0, count: $0.count) }
    for sequence in 0..<b {
        let valid = padding == .post ? Array(0..<lengths[sequence]) : Array((t - lengths[sequence])..<t)
        let times = reverse ? Array(valid.reversed()) : valid  // scan order
        let row = { (values: [Float], time: Int, width: Int) in
            (0..<width).map { Double(values[(time * b + sequence) * width + $0]) }
        }
        let state = { (values: [Float]?, width: Int) in (0..<width).map { Double(values?[sequence * width + $0] ?? 0) } }
        let inputs = times.map { row(x, $0, i) }
        let initial = RecurrentReferenceState(hidden: state(h0, p), cell: cell.hasCellState ? state(c0, h) : [])
        let clip = cellClip.map(Double.init)
        let run = RecurrentReference.forward(cell: cell, inputs: inputs, weights: referenceWeights,
                                             initialState: initial, cellClip: clip)
        let gradient = RecurrentReference.backward(
            cell: cell, inputs: inputs, weights: referenceWeights, initialState: initial, cellClip: clip,
            outputGradients: times.map { row(dy, $0, p) },
            finalStateGradient: RecurrentReferenceState(hidden: state(dhn, p), cell: cell.hasCellState ? state(dcn, h) : []))
        for (step, time) in times.enumerated() {
            for j in 0..<p { expectedOutput[(time * b + sequence) * p + j] = Float(run.outputs[step][j]) }
            for k in 0..<i {
                expectedInputGradient[(time * b + sequence) * i + k] = Float(gradient.inputGradients[step][k])
            }
        }
        for j in 0..<p {
            expectedHidden[sequence * p + j] = Float(run.finalState.hidden[j])
            expectedHiddenGradient[sequence * p + j] = Float(gradient.initialStateGradient.hidden[j])
        }
        for j in 0..<h {
            if cell.hasCellState {
                expectedCell[sequence * h + j] = Float(run.finalState.cell[j])
                expectedCellGradient[sequence * h + j] = Float(gradient.initialStateGradient.cell[j])
            }
        }
        for (p, values) in gradient.weightGradients.all.enumerated() {
            for k in values.indices { expectedWeightGradients[p][k] += values[k] }
        }
    }

    let what = "\(cell) \(padding)\(reverse ? " reverse" : "")\(cellClip.map { " clip \($0)" } ?? "")"
    func check(_ actual: Tensor, _ expected: [Float], _ name: String) throws {
        assertClose(try backend.download(actual), expected, relativeTolerance: 2e-4, absoluteTolerance: 2e-5,
                    "\(what): \(name)", sourceLocation: sourceLocation)
    }
    try check(output, expectedOutput, "output")
    try check(forward.finalHidden, expectedHidden, "h_n")
    if let finalCell = forward.finalCell { try check(finalCell, expectedCell, "c_n") }
    try check(backward.inputGradient, expectedInputGradient, "dx")
    try check(backward.initialHiddenGradient, expectedHiddenGradient, "dh0")
    if let dc0 = backward.initialCellGradient { try check(dc0, expectedCellGradient, "dc0") }
    for (p, parameter) in cell.parameters.enumerated() {
        try check(gradients.all[p], expectedWeightGradients[p].map(Float.init), "d\(parameter.name)")
    }
    #expect(g == shapes[0][0])
}
