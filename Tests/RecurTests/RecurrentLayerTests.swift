import Testing
@testable import Recur

// Properties of `RecurrentLayer`: padding never leaks, a padded batch equals its sequences run
// alone, the output modes agree with each other, dropout behaves, and bad requests throw before
// anything runs.

@Suite("Recurrent layer")
struct RecurrentLayerTests {
    // MARK: Padding

    @Test("values in the padded region change nothing", arguments: RecurrentCell.allCases)
    func paddingDoesNotLeak(cell: RecurrentCell) throws {
        for padding in PaddingSide.allCases {
            let c = RecurrentCase(cell: cell, steps: 5, batch: 3, layerCount: 2, bidirectional: true,
                                  lengths: [2, 5, 3], padding: padding, dropout: 0.3, recurrentDropout: 0.3)
            try recurrentCheckPaddingIgnored(c, backend: CPUBackend(), seed: 31)
        }
    }

    @Test("a padded batch equals each sequence run alone", arguments: RecurrentCell.allCases)
    func paddedBatchEqualsSequencesAlone(cell: RecurrentCell) throws {
        for padding in PaddingSide.allCases {
            let c = RecurrentCase(cell: cell, steps: 5, batch: 3, layerCount: 2, bidirectional: true,
                                  lengths: [3, 5, 1], padding: padding)
            try recurrentCheckSequencesAlone(c, backend: CPUBackend(), seed: 32)
        }
    }

    /// The CPU scans split a large batch across the cores, each part scanning its own rows: the
    /// result must be the unsplit scan's, bit for bit (rows never mix, and a row's arithmetic is
    /// the same in any part). 13 rows in 3 parts: 4, 4 and 5 rows, the last with a one-row tail.
    @Test("a CPU scan split across cores equals the unsplit scan exactly", arguments: RecurrentCell.allCases)
    func splitScanEqualsUnsplit(cell: RecurrentCell) throws {
        let c = RecurrentCase(cell: cell, steps: 6, batch: 13, inputSize: 16, hiddenSize: 20, layerCount: 2,
                              bidirectional: true, lengths: [6, 1, 4, 6, 2, 5, 3, 6, 6, 1, 2, 4, 5], padding: .pre,
                              dropout: 0.2, recurrentDropout: 0.3)
        var rng = SeededGenerator(seed: 61)
        let x = rng.values(c.inputShape.count)
        let h0 = rng.values(c.stateShape.count)
        let c0 = cell.hasCellState ? rng.values(c.cellShape.count) : nil
        let upstream = rng.values(c.outputShape.count)
        func run(_ backend: CPUBackend) throws -> RecurrentRun {
            let layer = try c.makeLayer(on: backend, seed: 7)
            return try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding,
                                    initialHidden: h0, initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: true,
                                    dropoutSeed: 8, outputGradient: upstream)
        }
        let whole = try run(CPUBackend(scanSplitMinimumWork: .max, scanPartLimit: 1))
        let split = try run(CPUBackend(scanSplitMinimumWork: 0, scanPartLimit: 3))
        #expect(split.output == whole.output, "\(c): output")
        #expect(split.finalHidden == whole.finalHidden, "\(c): h_n")
        #expect(split.finalCell == whole.finalCell, "\(c): c_n")
        #expect(split.inputGradient == whole.inputGradient, "\(c): dL/dx")
        #expect(split.initialHiddenGradient == whole.initialHiddenGradient, "\(c): dL/dh0")
        #expect(split.initialCellGradient == whole.initialCellGradient, "\(c): dL/dc0")
        #expect(split.parameterGradients == whole.parameterGradients, "\(c): parameter gradients")
    }

    // MARK: Output modes

    @Test("many-to-one is h_n of the last layer: forward at the last valid step, reverse at the first",
          arguments: RecurrentCell.allCases)
    func manyToOne(cell: RecurrentCell) throws {
        let backend = CPUBackend()
        var c = RecurrentCase(cell: cell, steps: 4, batch: 3, layerCount: 2, bidirectional: true,
                              lengths: [4, 1, 2], padding: .post)
        let sequences = try c.makeLayer(on: backend, seed: 5)
        c.returnSequences = false
        let lastOnly = try c.makeLayer(on: backend, seed: 5)
        var rng = SeededGenerator(seed: 41)
        let x = rng.values(c.inputShape.count)
        func run(_ layer: RecurrentLayer) throws -> RecurrentRun {
            try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding,
                             initialHidden: nil, initialCell: nil, stateShape: c.stateShape, cellShape: c.cellShape, training: false)
        }
        let (full, last) = (try run(sequences), try run(lastOnly))
        let (b, h) = (c.batch, c.projectionSize ?? c.hiddenSize)
        var expected: [Float] = []  // [B, 2H]
        var fromSequence: [Float] = []
        for sequence in 0..<b {
            for d in 0..<2 {
                let index = (c.layerCount - 1) * 2 + d
                expected += full.finalHidden[((index * b) + sequence) * h ..< ((index * b) + sequence + 1) * h]
                let time = d == 0 ? c.lengths![sequence] - 1 : 0
                let row = (time * b + sequence) * 2 * h + d * h
                fromSequence += full.output[row ..< row + h]
            }
        }
        #expect(last.output == expected)
        #expect(last.output == fromSequence)
        #expect(last.finalHidden == full.finalHidden)
    }

    @Test("batch-first is the time-major layer with transposed input and output")
    func batchFirst() throws {
        let backend = CPUBackend()
        var c = RecurrentCase(cell: .lstm, steps: 4, batch: 2, bidirectional: true, lengths: [4, 3], padding: .pre)
        let timeMajor = try c.makeLayer(on: backend, seed: 8)
        c.batchFirst = true
        let batchFirst = try c.makeLayer(on: backend, seed: 8)
        let (t, b, i, w) = (c.steps, c.batch, c.inputSize, 2 * (c.projectionSize ?? c.hiddenSize))
        var rng = SeededGenerator(seed: 42)
        let x = rng.values(t * b * i)  // [T, B, I]
        let dy = rng.values(t * b * w)  // [T, B, 2H]
        func transpose(_ v: [Float], _ a: Int, _ b: Int, _ f: Int) -> [Float] {
            var out = v
            for p in 0..<a { for q in 0..<b { for k in 0..<f { out[(q * a + p) * f + k] = v[(p * b + q) * f + k] } } }
            return out
        }
        func run(_ layer: RecurrentLayer, _ input: [Float], _ shape: Shape, _ gradient: [Float]) throws -> RecurrentRun {
            try recurrentRun(layer, input: input, inputShape: shape, lengths: c.lengths, padding: c.padding,
                             initialHidden: nil, initialCell: nil, stateShape: c.stateShape, cellShape: c.cellShape, training: false,
                             outputGradient: gradient)
        }
        let reference = try run(timeMajor, x, [t, b, i], dy)
        let transposed = try run(batchFirst, transpose(x, t, b, i), [b, t, i], transpose(dy, t, b, w))
        #expect(transposed.output == transpose(reference.output, t, b, w))
        #expect(transposed.inputGradient == transpose(reference.inputGradient, t, b, i))
        #expect(transposed.finalHidden == reference.finalHidden)
        #expect(transposed.parameterGradients == reference.parameterGradients)
    }

    @Test("backward accumulates parameter gradients until zeroGradients")
    func gradientsAccumulate() throws {
        let backend = CPUBackend()
        let layer = try RecurrentLayer(cell: .gru, inputSize: 2, hiddenSize: 3, bidirectional: true, backend: backend)
        var rng = SeededGenerator(seed: 43)
        let output = try layer.forward(try backend.upload(rng.values(8), shape: [4, 1, 2]), training: true)
        let gradient = try backend.upload(rng.values(output.output.count), shape: output.output.shape)
        _ = try layer.backward(outputGradient: gradient)
        let once = try layer.parameters.map { try backend.download($0.gradient) }
        _ = try layer.backward(outputGradient: gradient)
        let twice = try layer.parameters.map { try backend.download($0.gradient) }
        for (parameter, (a, b)) in zip(layer.parameters, zip(once, twice)) {
            // Within rounding: the GEMM adds into the old gradient inside its own sum.
            assertClose(b, a.map { 2 * $0 }, relativeTolerance: 1e-6, absoluteTolerance: 1e-7, parameter.name)
        }
        #expect(once.joined().contains { $0 != 0 })
        try layer.zeroGradients()
        for parameter in layer.parameters {
            #expect(try backend.download(parameter.gradient).allSatisfy { $0 == 0 })
        }
    }

    @Test("the cell clip bounds every cell state")
    func cellClip() throws {
        let backend = CPUBackend()
        let layer = try RecurrentLayer(cell: .lstm, inputSize: 2, hiddenSize: 4, cellClip: 0.25, backend: backend)
        var rng = SeededGenerator(seed: 44)
        try recurrentRandomizeParameters(layer, scale: 2, rng: &rng)
        let result = try layer.forward(try backend.upload(rng.values(2 * 6 * 2, -3, 3), shape: [6, 2, 2]),
                                       training: false)
        let cells = try backend.download(result.finalState.cell!)
        #expect(cells.allSatisfy { abs($0) <= 0.25 })
        #expect(cells.contains { abs($0) == 0.25 })
    }

    // MARK: Dropout

    @Test("dropout masks: fraction dropped ≈ p, kept values scaled by 1 / (1 - p)")
    func dropoutMaskStatistics() {
        var random = SeededRandom(seed: 3)
        for p: Float in [0.1, 0.5, 0.8] {
            let count = 200_000
            let mask = RecurrentInitializer.dropoutMask(count: count, probability: p, using: &random)
            let dropped = Double(mask.count(where: { $0 == 0 })) / Double(count)
            // 5 standard deviations of a binomial proportion.
            let tolerance = 5 * (Double(p) * Double(1 - p) / Double(count)).squareRoot()
            #expect(abs(dropped - Double(p)) < tolerance, "p = \(p): dropped \(dropped)")
            #expect(mask.allSatisfy { $0 == 0 || $0 == 1 / (1 - p) })
        }
        #expect(RecurrentInitializer.dropoutMask(count: 100, probability: 0, using: &random).allSatisfy { $0 == 1 })
    }

    @Test("dropout only in training: inference equals the layer without dropout", arguments: RecurrentCell.allCases)
    func noDropoutAtInference(cell: RecurrentCell) throws {
        let backend = CPUBackend()
        var c = RecurrentCase(cell: cell, steps: 4, batch: 2, layerCount: 2, bidirectional: true)
        let plain = try c.makeLayer(on: backend, seed: 9)
        (c.dropout, c.inputDropout, c.recurrentDropout) = (0.5, 0.3, 0.4)
        let dropping = try c.makeLayer(on: backend, seed: 9)
        var rng = SeededGenerator(seed: 45)
        let x = rng.values(c.inputShape.count)
        func run(_ layer: RecurrentLayer, training: Bool) throws -> [Float] {
            try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: nil, padding: .post,
                             initialHidden: nil, initialCell: nil, stateShape: c.stateShape, cellShape: c.cellShape, training: training).output
        }
        let reference = try run(plain, training: true)
        #expect(try run(dropping, training: false) == reference)
        #expect(try run(plain, training: false) == reference)
        #expect(try run(dropping, training: true) != reference)
    }

    @Test("each dropout kind changes the training output on its own, reproducibly per seed")
    func eachDropoutApplies() throws {
        let backend = CPUBackend()
        let base = RecurrentCase(cell: .lstm, steps: 4, batch: 2, layerCount: 2)
        var rng = SeededGenerator(seed: 46)
        let x = rng.values(base.inputShape.count)
        func output(_ c: RecurrentCase, dropoutSeed: UInt64) throws -> [Float] {
            try recurrentRun(try c.makeLayer(on: backend, seed: 2), input: x, inputShape: c.inputShape, lengths: nil,
                             padding: .post, initialHidden: nil, initialCell: nil, stateShape: c.stateShape, cellShape: c.cellShape,
                             training: true, dropoutSeed: dropoutSeed).output
        }
        let reference = try output(base, dropoutSeed: 1)
        for change in [\RecurrentCase.dropout, \.inputDropout, \.recurrentDropout] {
            var c = base
            c[keyPath: change] = 0.5
            let first = try output(c, dropoutSeed: 1)
            #expect(first != reference)
            #expect(try output(c, dropoutSeed: 1) == first)
            #expect(try output(c, dropoutSeed: 2) != first)
        }
    }

    // MARK: Bad requests

    @Test("bad requests throw before anything is allocated or run")
    func badRequests() throws {
        let backend = CPUBackend()
        let other = CPUBackend()
        let lstm = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 2, layerCount: 2, backend: backend)
        let gru = try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 2, backend: backend)
        var rng = SeededGenerator(seed: 47)
        let x = try backend.upload(rng.values(4 * 2 * 3), shape: [4, 2, 3])  // [T, B, I]
        let wide = try backend.upload(rng.values(4 * 2 * 4), shape: [4, 2, 4])
        let flat = try backend.upload(rng.values(8 * 3), shape: [8, 3])
        let elsewhere = try other.upload(rng.values(4 * 2 * 3), shape: [4, 2, 3])
        let state = try backend.zeros([2, 2, 2])  // [L * D, B, H] for the LSTM
        let wrongState = try backend.zeros([1, 2, 2])
        let stateElsewhere = try other.zeros([2, 2, 2])
        let gruState = try backend.zeros([1, 2, 2])

        // Nothing the layer allocates may appear: no buffer, no new peak.
        func expectError(_ kind: RecurrentErrorKind, _ what: String, _ body: () throws -> Void,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            backend.counter.resetPeak()
            let before = backend.memoryStatistics
            do {
                try body()
                Issue.record("\(what): no error", sourceLocation: sourceLocation)
            } catch let error as RecurError {
                #expect(kind.matches(error), "\(what): \(error)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(what): \(error)", sourceLocation: sourceLocation)
            }
            #expect(backend.memoryStatistics == before, "\(what) allocated", sourceLocation: sourceLocation)
        }

        expectError(.argument, "backward before forward") { _ = try gru.backward(outputGradient: nil) }
        expectError(.shape, "feature size") { _ = try lstm.forward(wide, training: true) }
        expectError(.shape, "rank") { _ = try lstm.forward(flat, training: true) }
        expectError(.device, "input on another backend") { _ = try lstm.forward(elsewhere, training: true) }
        expectError(.argument, "lengths count") { _ = try lstm.forward(x, lengths: [4], training: true) }
        expectError(.argument, "length 0") { _ = try lstm.forward(x, lengths: [0, 4], training: true) }
        expectError(.argument, "length > T") { _ = try lstm.forward(x, lengths: [4, 5], training: true) }
        expectError(.shape, "state shape") {
            _ = try lstm.forward(x, initialState: RecurrentState(hidden: wrongState, cell: state), training: true)
        }
        expectError(.shape, "cell state shape") {
            _ = try lstm.forward(x, initialState: RecurrentState(hidden: state, cell: wrongState), training: true)
        }
        expectError(.argument, "lstm state without cell") {
            _ = try lstm.forward(x, initialState: RecurrentState(hidden: state), training: true)
        }
        expectError(.argument, "gru state with cell") {
            _ = try gru.forward(x, initialState: RecurrentState(hidden: gruState, cell: gruState), training: true)
        }
        expectError(.device, "state on another backend") {
            _ = try lstm.forward(x, initialState: RecurrentState(hidden: stateElsewhere, cell: state), training: true)
        }

        let output = try gru.forward(x, training: true).output  // [T, B, H]
        let wrongGradient = try backend.zeros([4, 2, 3])
        expectError(.shape, "output gradient shape") { _ = try gru.backward(outputGradient: wrongGradient) }
        expectError(.shape, "final state gradient shape") {
            _ = try gru.backward(outputGradient: output, finalStateGradient: RecurrentState(hidden: state))
        }
        expectError(.device, "output gradient on another backend") {
            _ = try gru.backward(outputGradient: try other.zeros(output.shape))
        }

        for (name, make) in [
            ("hiddenSize 0", { try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 0, backend: backend) }),
            ("dropout 1", { try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 2, dropout: 1, backend: backend) }),
            ("negative recurrent dropout", {
                try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 2, recurrentDropout: -0.1, backend: backend)
            }),
            ("clip on a gru", { try RecurrentLayer(cell: .gru, inputSize: 3, hiddenSize: 2, cellClip: 1, backend: backend) }),
            ("zero clip", { try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 2, cellClip: 0, backend: backend) }),
        ] as [(String, () throws -> RecurrentLayer)] {
            expectError(.argument, name) { _ = try make() }
        }
    }

    @Test("the backend ops validate their requests")
    func badOpRequests() throws {
        let backend = CPUBackend()
        let (t, b, i, h) = (3, 2, 2, 2)
        let g = 4 * h
        var rng = SeededGenerator(seed: 48)
        func tensor(_ shape: Shape) throws -> Tensor { try backend.upload(rng.values(shape.count), shape: shape) }
        let weights = RecurrentWeights(input: try tensor([g, i]), recurrent: try tensor([g, h]),
                                       inputBias: try tensor([g]), recurrentBias: try tensor([g]))
        let scan = RecurrentScan(cell: .lstm, input: try tensor([t, b, i]), weights: weights,
                                 initialHidden: try tensor([b, h]), initialCell: try tensor([b, h]))
        let workspace = try RecurrentWorkspace(cell: .lstm, steps: t, batchSize: b, hiddenSize: h, backend: backend)
        let output = try backend.zeros([t, b, h])
        func forward(_ scan: RecurrentScan, workspace custom: RecurrentWorkspace? = nil,
                     output view: MatrixOperand? = nil) throws {
            try backend.recurrentForward(RecurrentForward(
                scan: scan, output: view ?? MatrixOperand(output, leadingDimension: h),
                finalHidden: try backend.zeros([b, h]), finalCell: try backend.zeros([b, h]),
                workspace: custom ?? workspace))
        }
        try forward(scan)

        var missingCell = scan
        missingCell.initialCell = nil
        #expect(throws: RecurError.self) { try forward(missingCell) }
        var badLengths = scan
        badLengths.lengths = try backend.upload([Int32(2), 4], shape: [2])
        #expect(throws: RecurError.self) { try forward(badLengths) }
        var wrongCell = scan  // LSTM weights are [4H, ·], a GRU needs [3H, ·]
        wrongCell.cell = .gru
        #expect(throws: RecurError.self) { try forward(wrongCell) }
        var badClip = scan
        badClip.cellClip = -1
        #expect(throws: RecurError.self) { try forward(badClip) }
        var shortWorkspace = workspace
        shortWorkspace.gates = try backend.zeros([t, b, 3 * h])
        #expect(throws: RecurError.self) { try forward(scan, workspace: shortWorkspace) }
        var strayWorkspace = workspace
        strayWorkspace.hiddenStates = try backend.zeros([t, b, h])
        #expect(throws: RecurError.self) { try forward(scan, workspace: strayWorkspace) }
        // A view that runs past the end of its tensor.
        let overrun = MatrixOperand(output, offset: 1, leadingDimension: h)
        #expect(throws: RecurError.self) { try forward(scan, output: overrun) }
        let transposed = MatrixOperand(output, leadingDimension: h, transposed: true)
        #expect(throws: RecurError.self) { try forward(scan, output: transposed) }
    }

    // MARK: Parameters and initialisation

    @Test("parameters carry PyTorch's names and shapes, in PyTorch's order")
    func parameterNames() throws {
        let layer = try RecurrentLayer(cell: .lstm, inputSize: 3, hiddenSize: 2, layerCount: 2, bidirectional: true,
                                       backend: CPUBackend())
        var expected: [(String, Shape)] = []
        for k in 0..<2 {
            for suffix in ["", "_reverse"] {
                let inputSize = k == 0 ? 3 : 4
                expected += [("weight_ih_l\(k)\(suffix)", [8, inputSize]), ("weight_hh_l\(k)\(suffix)", [8, 2]),
                             ("bias_ih_l\(k)\(suffix)", [8]), ("bias_hh_l\(k)\(suffix)", [8])]
            }
        }
        let parameters = layer.parameters
        #expect(parameters.map(\.name) == expected.map(\.0))
        #expect(parameters.map(\.value.shape) == expected.map(\.1))
        #expect(parameters.map(\.gradient.shape) == expected.map(\.1))
        #expect(layer.parameter(named: "weight_hh_l1_reverse")?.value.shape == [8, 2])
        #expect(layer.parameter(named: "weight_hh_l2") == nil)
    }

    @Test("PyTorch initialisation: uniform in ±1/√H, seeded", arguments: RecurrentCell.withEqualWidths)
    func pytorchInitialization(cell: RecurrentCell) throws {
        let backend = CPUBackend()
        func values(seed: UInt64) throws -> [[Float]] {
            let layer = try RecurrentLayer(cell: cell, inputSize: 5, hiddenSize: 16, layerCount: 2, seed: seed,
                                           backend: backend)
            return try layer.parameters.map { try backend.download($0.value) }
        }
        let first = try values(seed: 1)
        let bound: Float = 0.25  // 1 / √16
        // A normalisation's gain starts at 1 and its shift at 0 under every initialisation.
        let roles = (0..<2).flatMap { _ in cell.parameters.map(\.role) }  // layers l0, l1 in order
        let drawn = zip(roles, first).filter { role, tensor in
            switch role {
            case .normalizationGain: #expect(tensor.allSatisfy { $0 == 1 }); return false
            case .normalizationBias: #expect(tensor.allSatisfy { $0 == 0 }); return false
            default: return true
            }
        }.map(\.1)
        for tensor in drawn {
            #expect(tensor.allSatisfy { abs($0) <= bound })
            #expect(tensor.contains { abs($0) > 0.8 * bound })  // spread over the range
        }
        #expect(try values(seed: 1) == first)
        #expect(try values(seed: 2) != first)
    }

    @Test("Keras initialisation: Glorot W_ih, orthogonal gate blocks of W_hh, forget bias 1",
          arguments: RecurrentCell.withEqualWidths)
    func kerasInitialization(cell: RecurrentCell) throws {
        let backend = CPUBackend()
        let (i, h) = (5, 8)
        let g = cell.gateCount * h
        let layer = try RecurrentLayer(cell: cell, inputSize: i, hiddenSize: h, bidirectional: true,
                                       initialization: .keras, seed: 4, backend: backend)
        for suffix in ["_l0", "_l0_reverse"] {
            let input = try backend.download(layer.parameter(named: "weight_ih" + suffix)!.value)
            let limit = (6 / Float(i + g)).squareRoot()
            #expect(input.allSatisfy { abs($0) <= limit })
            #expect(input.contains { abs($0) > 0.8 * limit })

            let recurrent = try backend.download(layer.parameter(named: "weight_hh" + suffix)!.value)  // [G, H]
            for gate in 0..<cell.gateCount {
                // Block [H, H]: BᵀB = I (and BBᵀ = I for a square block).
                for p in 0..<h {
                    for q in 0..<h {
                        var dot: Float = 0
                        for r in 0..<h { dot += recurrent[(gate * h + r) * h + p] * recurrent[(gate * h + r) * h + q] }
                        #expect(abs(dot - (p == q ? 1 : 0)) < 1e-5, "gate \(gate) (\(p), \(q)): \(dot)")
                    }
                }
            }

            let inputBias = try backend.download(layer.parameter(named: "bias_ih" + suffix)!.value)
            let expectedBias = (0..<g).map { Float(cell.kerasGateBiases[$0 / h]) }
            #expect(inputBias == expectedBias)
            #expect(try backend.download(layer.parameter(named: "bias_hh" + suffix)!.value).allSatisfy { $0 == 0 })
        }
    }

    @Test("orthogonal matrices from Gram–Schmidt: QᵀQ = QQᵀ = I in float64")
    func orthogonal() {
        var random = SeededRandom(seed: 12)
        for n in [1, 2, 7, 32] {
            let q = RecurrentInitializer.orthogonal(size: n, using: &random)
            var worst = 0.0
            for a in 0..<n {
                for b in 0..<n {
                    var columns = 0.0
                    var rows = 0.0
                    for k in 0..<n {
                        columns += q[k * n + a] * q[k * n + b]
                        rows += q[a * n + k] * q[b * n + k]
                    }
                    let identity = a == b ? 1.0 : 0.0
                    worst = max(worst, abs(columns - identity), abs(rows - identity))
                }
            }
            #expect(worst < 1e-12, "n = \(n): \(worst)")
        }
    }
}

/// The class of `RecurrError` a bad request must raise.
enum RecurrentErrorKind {
    case shape, argument, device

    func matches(_ error: RecurError) -> Bool {
        switch (self, error) {
        case (.shape, .shapeMismatch), (.argument, .invalidArgument), (.device, .wrongDevice): true
        default: false
        }
    }
}

/// Runs `c` twice, with different values in the padded steps of the input and of the output
/// gradient; outputs, final states and every gradient must be the same.
func recurrentCheckPaddingIgnored(_ c: RecurrentCase, backend: any Backend, seed: UInt64,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
    precondition(!c.batchFirst && c.returnSequences && c.lengths != nil)
    var rng = SeededGenerator(seed: seed)
    let layer = try c.makeLayer(on: backend)
    let x = rng.values(c.inputShape.count)
    let h0 = rng.values(c.stateShape.count)
    let c0 = c.cell.hasCellState ? rng.values(c.cellShape.count) : nil
    let dy = rng.values(c.outputShape.count)
    let dh = rng.values(c.stateShape.count)
    let dc = c.cell.hasCellState ? rng.values(c.cellShape.count) : nil
    let (t, b) = (c.steps, c.batch)
    func isPadded(_ time: Int, _ sequence: Int) -> Bool {
        let length = c.lengths![sequence]
        return c.padding == .post ? time >= length : time < t - length
    }
    /// `values` [T, B, F] with every padded row replaced by fresh random values.
    func scramble(_ values: [Float], width: Int) -> [Float] {
        var result = values
        for time in 0..<t {
            for sequence in 0..<b where isPadded(time, sequence) {
                for k in 0..<width { result[(time * b + sequence) * width + k] = rng.uniform(-5, 5) }
            }
        }
        return result
    }
    func run(_ x: [Float], _ dy: [Float]) throws -> RecurrentRun {
        try recurrentRun(layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding,
                         initialHidden: h0, initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: true,
                         dropoutSeed: 5, outputGradient: dy, finalHiddenGradient: dh, finalCellGradient: dc)
    }
    let width = c.directions * (c.projectionSize ?? c.hiddenSize)
    let clean = try run(x, dy)
    let dirty = try run(scramble(x, width: c.inputSize), scramble(dy, width: width))
    let what = "\(c)"
    let (relative, absolute): (Float, Float) = (0, 1e-6)
    assertClose(dirty.output, clean.output, relativeTolerance: relative, absoluteTolerance: absolute, "\(what): output",
                         sourceLocation: sourceLocation)
    assertClose(dirty.finalHidden, clean.finalHidden, relativeTolerance: relative, absoluteTolerance: absolute,
                         "\(what): h_n", sourceLocation: sourceLocation)
    assertClose(dirty.finalCell ?? [], clean.finalCell ?? [], relativeTolerance: relative, absoluteTolerance: absolute,
                         "\(what): c_n", sourceLocation: sourceLocation)
    assertClose(dirty.inputGradient, clean.inputGradient, relativeTolerance: relative, absoluteTolerance: absolute,
                         "\(what): dx", sourceLocation: sourceLocation)
    assertClose(dirty.initialHiddenGradient, clean.initialHiddenGradient, relativeTolerance: relative,
                         absoluteTolerance: absolute, "\(what): dh0", sourceLocation: sourceLocation)
    assertClose(dirty.initialCellGradient ?? [], clean.initialCellGradient ?? [], relativeTolerance: relative,
                         absoluteTolerance: absolute, "\(what): dc0", sourceLocation: sourceLocation)
    for (name, gradient) in clean.parameterGradients {
        assertClose(dirty.parameterGradients[name]!, gradient, relativeTolerance: relative, absoluteTolerance: absolute,
                             "\(what): d\(name)", sourceLocation: sourceLocation)
    }
    // Padded steps output 0 and get no input gradient.
    for time in 0..<t {
        for sequence in 0..<b where isPadded(time, sequence) {
            let row = time * b + sequence
            #expect(clean.output[(row * width)..<((row + 1) * width)].allSatisfy { $0 == 0 }, sourceLocation: sourceLocation)
            #expect(clean.inputGradient[(row * c.inputSize)..<((row + 1) * c.inputSize)].allSatisfy { $0 == 0 },
                    sourceLocation: sourceLocation)
        }
    }
}

/// Runs a padded batch, then each sequence alone on its valid steps (B = 1, no lengths): outputs,
/// final states, input and state gradients must match, and the parameter gradients must be the
/// sum over the sequences.
func recurrentCheckSequencesAlone(_ c: RecurrentCase, backend: any Backend, seed: UInt64,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
    precondition(!c.batchFirst && c.returnSequences && c.lengths != nil)
    var rng = SeededGenerator(seed: seed)
    let layer = try c.makeLayer(on: backend)
    try recurrentRandomizeParameters(layer, scale: 0.7, rng: &rng)
    let x = rng.values(c.inputShape.count)  // [T, B, I]
    let h0 = rng.values(c.stateShape.count)  // [L * D, B, H]
    let c0 = c.cell.hasCellState ? rng.values(c.cellShape.count) : nil
    let dy = rng.values(c.outputShape.count)  // [T, B, D * H]
    let dh = rng.values(c.stateShape.count)
    let dc = c.cell.hasCellState ? rng.values(c.cellShape.count) : nil
    let batched = try recurrentRun(
        layer, input: x, inputShape: c.inputShape, lengths: c.lengths, padding: c.padding, initialHidden: h0,
        initialCell: c0, stateShape: c.stateShape, cellShape: c.cellShape, training: false, outputGradient: dy, finalHiddenGradient: dh,
        finalCellGradient: dc)

    let (t, b, i, h, states) = (c.steps, c.batch, c.inputSize, c.projectionSize ?? c.hiddenSize, c.layerCount * c.directions)
    let cellWidth = c.hiddenSize
    let width = c.directions * h
    /// Rows `rows` of a [rows.count-major, B, F] layout for one sequence.
    func rows(_ values: [Float], _ indices: [Int], _ sequence: Int, _ f: Int) -> [Float] {
        indices.flatMap { values[(($0 * b) + sequence) * f ..< (($0 * b) + sequence + 1) * f] }
    }
    var summed: [String: [Float]] = [:]
    let (relative, absolute): (Float, Float) = (1e-4, 1e-5)
    for sequence in 0..<b {
        let length = c.lengths![sequence]
        let times = c.padding == .post ? Array(0..<length) : Array((t - length)..<t)
        let stateIndices = Array(0..<states)
        let alone = try recurrentRun(
            layer, input: rows(x, times, sequence, i), inputShape: [length, 1, i], lengths: nil, padding: .post,
            initialHidden: rows(h0, stateIndices, sequence, h), initialCell: c0.map { rows($0, stateIndices, sequence, cellWidth) },
            stateShape: [states, 1, h], cellShape: [states, 1, cellWidth], training: false, outputGradient: rows(dy, times, sequence, width),
            finalHiddenGradient: rows(dh, stateIndices, sequence, h),
            finalCellGradient: dc.map { rows($0, stateIndices, sequence, cellWidth) })
        let what = "\(c), sequence \(sequence)"
        assertClose(rows(batched.output, times, sequence, width), alone.output, relativeTolerance: relative,
                             absoluteTolerance: absolute, "\(what): output", sourceLocation: sourceLocation)
        assertClose(rows(batched.finalHidden, stateIndices, sequence, h), alone.finalHidden,
                             relativeTolerance: relative, absoluteTolerance: absolute, "\(what): h_n", sourceLocation: sourceLocation)
        if let finalCell = batched.finalCell, let aloneCell = alone.finalCell {
            assertClose(rows(finalCell, stateIndices, sequence, cellWidth), aloneCell, relativeTolerance: relative,
                                 absoluteTolerance: absolute, "\(what): c_n", sourceLocation: sourceLocation)
        }
        assertClose(rows(batched.inputGradient, times, sequence, i), alone.inputGradient, relativeTolerance: relative,
                             absoluteTolerance: absolute, "\(what): dx", sourceLocation: sourceLocation)
        assertClose(rows(batched.initialHiddenGradient, stateIndices, sequence, h), alone.initialHiddenGradient,
                             relativeTolerance: relative, absoluteTolerance: absolute, "\(what): dh0", sourceLocation: sourceLocation)
        if let dc0 = batched.initialCellGradient, let aloneDc0 = alone.initialCellGradient {
            assertClose(rows(dc0, stateIndices, sequence, cellWidth), aloneDc0, relativeTolerance: relative,
                                 absoluteTolerance: absolute, "\(what): dc0", sourceLocation: sourceLocation)
        }
        for (name, gradient) in alone.parameterGradients {
            summed[name] = zip(summed[name] ?? Array(repeating: 0, count: gradient.count), gradient).map(+)
        }
    }
    for (name, gradient) in batched.parameterGradients {
        assertClose(summed[name]!, gradient, relativeTolerance: relative, absoluteTolerance: absolute,
                             "\(c): d\(name) summed over sequences", sourceLocation: sourceLocation)
    }
}
