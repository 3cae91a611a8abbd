import Testing
@testable import Recur

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// An independent check of the forward semantics: the library's float64 reference
// (`RecurrentReference`, each cell written directly from the PyTorch formulas in its file under
// `Cells/`), one sequence and one step at a time, with no padding logic at all: a padded sequence
// is simply run on its valid steps (reversed for the reverse direction). The layer runs in float32, so values
// agree to ~1e-6; the tolerance is 2e-5 + 1e-4 relative.

@Suite("Recurrent reference")
struct RecurrentReferenceTests {
    @Test("two bidirectional layers match the float64 formulas", arguments: RecurrentCell.withEqualWidths)
    func stackedBidirectional(cell: RecurrentCell) throws {
        try recurrentReferenceCheck(cell: cell, padding: .post, backend: CPUBackend(), seed: 21)
        try recurrentReferenceCheck(cell: cell, padding: .pre, backend: CPUBackend(), seed: 22)
    }

    @Test("LSTM with a cell clip matches the float64 formulas")
    func clippedLSTM() throws {
        try recurrentReferenceCheck(cell: .lstm, padding: .post, cellClip: 0.3, backend: CPUBackend(), seed: 23)
    }

    /// One GRU step by hand: the gate order (r, z, n) and where the reset gate applies.
    @Test("one GRU step, numbers worked by hand")
    func gruSingleStep() throws {
        let backend = CPUBackend()
        for cell in [RecurrentCell.gru, .gruResetBefore] {
            let layer = try RecurrentLayer(cell: cell, inputSize: 1, hiddenSize: 2, backend: backend)
            // Rows r0 r1 z0 z1 n0 n1.
            try recurrentSetValues(layer.parameter(named: "weight_ih_l0")!.value, [0.5, -0.5, 0.25, 0, 1, -1])
            try recurrentSetValues(layer.parameter(named: "weight_hh_l0")!.value,
                                   [0.1, 0.2, -0.3, 0.4, 0.5, 0, 0, 0.5, 1, 0.5, -0.5, 1])
            try recurrentSetValues(layer.parameter(named: "bias_ih_l0")!.value, [0, 0.1, 0, 0, 0.2, 0])
            try recurrentSetValues(layer.parameter(named: "bias_hh_l0")!.value, [0, 0, 0.3, 0, 0.1, -0.2])
            let x = 2.0
            let h = [0.6, -0.4]
            let r = [sigmoid(0.5 * x + 0.1 * h[0] + 0.2 * h[1]), sigmoid(-0.5 * x + 0.1 - 0.3 * h[0] + 0.4 * h[1])]
            let z = [sigmoid(0.25 * x + 0.5 * h[0] + 0.3), sigmoid(0.5 * h[1])]
            let n: [Double]
            if cell == .gru {
                n = [tanh(x + 0.2 + r[0] * (h[0] + 0.5 * h[1] + 0.1)),
                     tanh(-x + r[1] * (-0.5 * h[0] + h[1] - 0.2))]
            } else {
                let q = [r[0] * h[0], r[1] * h[1]]
                n = [tanh(x + 0.2 + q[0] + 0.5 * q[1] + 0.1), tanh(-x - 0.5 * q[0] + q[1] - 0.2)]
            }
            let expected = (0..<2).map { Float((1 - z[$0]) * n[$0] + z[$0] * h[$0]) }
            let result = try layer.forward(try backend.upload([Float(x)], shape: [1, 1, 1]),
                                           initialState: RecurrentState(hidden: try backend.upload(h.map(Float.init), shape: [1, 1, 2])),
                                           training: false)
            assertClose(try backend.download(result.output), expected, relativeTolerance: 1e-6, absoluteTolerance: 1e-6, "\(cell)")
        }
    }
}

private func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

/// Two bidirectional layers on a padded batch against the library's float64 reference per sequence.
func recurrentReferenceCheck(cell: RecurrentCell, padding: PaddingSide, cellClip: Float? = nil,
                             backend: any Backend, seed: UInt64,
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
    let c = RecurrentCase(cell: cell, steps: 5, batch: 3, inputSize: 3, hiddenSize: 4, layerCount: 2,
                          bidirectional: true, lengths: [5, 2, 4], padding: padding, cellClip: cellClip)
    var rng = SeededGenerator(seed: seed)
    let layer = try c.makeLayer(on: backend)
    try recurrentRandomizeParameters(layer, scale: 0.8, rng: &rng)
    let x = rng.values(c.inputShape.count)
    let h0 = rng.values(c.stateShape.count)
    let c0 = cell.hasCellState ? rng.values(c.cellShape.count) : nil
    let run = try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: padding,
                               initialHidden: h0, initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: false)

    var weights: [[RecurrentReferenceWeights]] = []  // [layer][direction]
    for k in 0..<c.layerCount {
        weights.append(try (0..<2).map { d in
            let suffix = "_l\(k)" + (d == 1 ? "_reverse" : "")
            func values(_ name: String) throws -> [Double] {
                try backend.download(layer.parameter(named: name + suffix)!.value).map(Double.init)
            }
            return RecurrentReferenceWeights(
                input: try values("weight_ih"), recurrent: try values("weight_hh"), inputBias: try values("bias_ih"),
                recurrentBias: try values("bias_hh"),
                extra: try c.cell.parameters.dropFirst(4).map { try values($0.name) })
        })
    }

    let (t, b, i, h) = (c.steps, c.batch, c.inputSize, c.hiddenSize)
    var expectedOutput = [Float](repeating: 0, count: t * b * 2 * h)  // [T, B, 2H]
    var expectedHidden = [Float](repeating: 0, count: c.stateShape.count)  // [L * 2, B, H]
    var expectedCell = [Float](repeating: 0, count: c.stateShape.count)
    for sequence in 0..<b {
        let length = c.lengths![sequence]
        let times = padding == .post ? Array(0..<length) : Array((t - length)..<t)
        var layerInput = times.map { time in (0..<i).map { Double(x[(time * b + sequence) * i + $0]) } }
        for k in 0..<c.layerCount {
            var layerOutput = [[Double]](repeating: [], count: length)
            for d in 0..<2 {
                let index = k * 2 + d
                let state = (0..<h).map { Double(h0[(index * b + sequence) * h + $0]) }
                let cellState = (0..<h).map { Double(c0?[(index * b + sequence) * h + $0] ?? 0) }
                let inputs = d == 0 ? layerInput : Array(layerInput.reversed())
                let result = RecurrentReference.forward(
                    cell: cell, inputs: inputs, weights: weights[k][d],
                    initialState: RecurrentReferenceState(hidden: state, cell: cell.hasCellState ? cellState : []),
                    cellClip: cellClip.map(Double.init))
                let outputs = d == 0 ? result.outputs : Array(result.outputs.reversed())
                for step in 0..<length { layerOutput[step] += outputs[step] }
                for j in 0..<h {
                    expectedHidden[(index * b + sequence) * h + j] = Float(result.finalState.hidden[j])
                    if cell.hasCellState {
                        expectedCell[(index * b + sequence) * h + j] = Float(result.finalState.cell[j])
                    }
                }
            }
            layerInput = layerOutput
        }
        for (step, time) in times.enumerated() {
            for j in 0..<(2 * h) {
                expectedOutput[(time * b + sequence) * 2 * h + j] = Float(layerInput[step][j])
            }
        }
    }
    let what = "\(c)"
    assertClose(run.output, expectedOutput, relativeTolerance: 1e-4, absoluteTolerance: 2e-5, "\(what): output",
                         sourceLocation: sourceLocation)
    assertClose(run.finalHidden, expectedHidden, relativeTolerance: 1e-4, absoluteTolerance: 2e-5, "\(what): h_n",
                         sourceLocation: sourceLocation)
    if let finalCell = run.finalCell {
        assertClose(finalCell, expectedCell, relativeTolerance: 1e-4, absoluteTolerance: 2e-5, "\(what): c_n",
                             sourceLocation: sourceLocation)
    }
}
