import Testing
@testable import Recur

// The OpenCL recurrent ops against the CPU reference: every cell, forward and backward, on seeded
// random inputs at odd sizes (none a multiple of a tile), with and without lengths (pre and post
// padding), reversed, with a recurrent dropout mask, a cell clip, a strided output view, an
// accumulated input gradient and the record of every step's dL/dh_t, for one scan and for the
// bidirectional pair ops (both directions in one launch per step). Every tensor the ops write is
// compared: output, final state, workspace, and every gradient.
//
// Tolerance: norm-wise relative error max |device - cpu| / max |cpu| <= 1e-5 (see `Comparison`).
// Both sides compute in float32 with different summation orders and `exp`/`tanh`
// implementations; over a few steps the error is a small multiple of the unit roundoff (6e-8)
// times the depth of the computation, measured around 1e-7 to 5e-7 here.

@Suite("OpenCL recurrent ops")
struct OpenCLRecurrentTests {
    static let tolerance = 1e-5

    /// The configurations every cell runs; sizes are odd, T = 1 and B = 1 included, and the
    /// widest crosses the group tiles of the step kernels in both grid dimensions and the staged
    /// reduction depth (B = 9 > 8 rows, H = 33 > 32 units and > 2 x 16).
    static let configurations = scanConfigurations + bidirectionalConfigurations

    /// One scan.
    static let scanConfigurations: [(String, @Sendable (RecurrentCell) -> RecurrentParityCase)] = [
        ("plain", { RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9) }),
        ("single step", { RecurrentParityCase(cell: $0, steps: 1, batch: 1, inputSize: 3, hiddenSize: 5) }),
        ("wide, reversed, masked", {
            RecurrentParityCase(cell: $0, steps: 5, batch: 9, inputSize: 7, hiddenSize: 33, reverse: true,
                                recurrentDropout: true, cellClip: 0.6, recordHiddenStateGradients: true)
        }),
        ("post padding, reversed, masked, clipped, strided, accumulated, two backward passes", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, lengths: [7, 3, 5],
                                padding: .post, reverse: true, recurrentDropout: true, cellClip: 0.5,
                                stridedOutput: true, accumulateInputGradient: true, backwardPasses: 2,
                                recordHiddenStateGradients: true)
        }),
        ("pre padding, masked, clipped, final-state gradient only", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, lengths: [2, 7, 4],
                                padding: .pre, recurrentDropout: true, cellClip: 0.5, outputGradient: false,
                                recordHiddenStateGradients: true)
        }),
        ("pre padding, reversed, strided, output gradient only", {
            RecurrentParityCase(cell: $0, steps: 6, batch: 4, inputSize: 5, hiddenSize: 9, lengths: [6, 1, 3, 6],
                                padding: .pre, reverse: true, stridedOutput: true, finalStateGradient: false,
                                recordHiddenStateGradients: true)
        }),
        ("post padding, H = 33", {
            RecurrentParityCase(cell: $0, steps: 4, batch: 2, inputSize: 3, hiddenSize: 33, lengths: [1, 4],
                                padding: .post, recurrentDropout: true)
        }),
    ]

    /// The pair ops: the same kinds of request, both directions at once.
    static let bidirectionalConfigurations: [(String, @Sendable (RecurrentCell) -> RecurrentParityCase)] = [
        ("bidirectional", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, bidirectional: true)
        }),
        ("bidirectional, single step", {
            RecurrentParityCase(cell: $0, steps: 1, batch: 1, inputSize: 3, hiddenSize: 5, bidirectional: true)
        }),
        ("bidirectional, wide, masked, clipped", {
            RecurrentParityCase(cell: $0, steps: 5, batch: 9, inputSize: 7, hiddenSize: 33, bidirectional: true,
                                recurrentDropout: true, cellClip: 0.6, recordHiddenStateGradients: true)
        }),
        ("bidirectional, post padding, masked, clipped, accumulated, two backward passes", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, lengths: [7, 3, 5],
                                padding: .post, bidirectional: true, recurrentDropout: true, cellClip: 0.5,
                                accumulateInputGradient: true, backwardPasses: 2, recordHiddenStateGradients: true)
        }),
        ("bidirectional, pre padding, masked, clipped, final-state gradient only", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, lengths: [2, 7, 4],
                                padding: .pre, bidirectional: true, recurrentDropout: true, cellClip: 0.5,
                                outputGradient: false, recordHiddenStateGradients: true)
        }),
        ("bidirectional, shared allocations (batched GEMMs), post padding, masked, clipped, two backward passes", {
            RecurrentParityCase(cell: $0, steps: 6, batch: 5, inputSize: 7, hiddenSize: 11, lengths: [6, 3, 1, 5, 2],
                                padding: .post, bidirectional: true, sharedAllocations: true, recurrentDropout: true,
                                cellClip: 0.5, backwardPasses: 2, recordHiddenStateGradients: true)
        }),
        ("bidirectional, pre padding, output gradient only", {
            RecurrentParityCase(cell: $0, steps: 6, batch: 4, inputSize: 5, hiddenSize: 9, lengths: [6, 1, 3, 6],
                                padding: .pre, bidirectional: true, finalStateGradient: false,
                                recordHiddenStateGradients: true)
        }),
    ]

    static let cases: [ParityArgument] = RecurrentCell.withOpenCLKernels.flatMap { cell in
        configurations.enumerated().map { index, configuration in
            ParityArgument(name: configuration.0, parity: configuration.1(cell), seed: UInt64(100 + index))
        }
    }

    struct ParityArgument: Sendable, CustomTestStringConvertible {
        var name: String
        var parity: RecurrentParityCase
        var seed: UInt64
        var testDescription: String { "\(parity.cell) \(name)" }
    }

    @Test("forward and backward match the CPU backend", arguments: cases)
    func matchesCPU(_ argument: ParityArgument) throws {
        guard let backend = try TestBackends.openCL() else { return }
        let cpu = TestBackends.cpu
        let device = try argument.parity.run(on: backend, seed: argument.seed)
        let reference = try argument.parity.run(on: cpu, seed: argument.seed)
        #expect(device.map(\.name) == reference.map(\.name))
        for (actual, expected) in zip(device, reference) {
            let comparison = Comparison(actual.name, actual: actual.values, expected: expected.values,
                                        tolerance: Self.tolerance)
            #expect(comparison.passed, "\(argument.parity): \(comparison)")
            // A tensor of zeros would compare equal however wrong the kernel: the inputs are drawn
            // so that every written tensor has nonzero values.
            #expect(expected.values.contains { $0 != 0 }, "\(argument.parity): \(expected.name) is all zero")
        }
    }

    /// The pair kernels run each direction's arithmetic exactly as a single scan does (same
    /// kernel, same tiles, same GEMMs), so pairing must not change a single bit.
    @Test("a bidirectional pair equals its two scans run one by one, bit for bit", arguments: RecurrentCell.withOpenCLKernels)
    func pairEqualsDirectionsOneByOne(_ cell: RecurrentCell) throws {
        guard let backend = try TestBackends.openCL() else { return }
        var parity = RecurrentParityCase(
            cell: cell, steps: 6, batch: 9, inputSize: 5, hiddenSize: 33, lengths: [6, 1, 3, 6, 2, 5, 4, 6, 1],
            padding: .post, bidirectional: true, recurrentDropout: true, cellClip: 0.5,
            recordHiddenStateGradients: true)
        let paired = try parity.run(on: backend, seed: 77)
        parity.separateDirections = true
        let separate = try parity.run(on: backend, seed: 77)
        #expect(paired.map(\.name) == separate.map(\.name))
        for (actual, expected) in zip(paired, separate) {
            #expect(actual.values == expected.values, "\(parity): \(actual.name) differs")
        }
    }

    @Test("lengths outside 1...T are rejected before any kernel runs")
    func badLengthsThrow() throws {
        guard let backend = try TestBackends.openCL() else { return }
        for lengths: [Int32] in [[0, 3], [3, 4]] {
            let scan = try Self.scan(cell: .gru, steps: 3, batch: 2, lengths: lengths, on: backend)
            let workspace = try RecurrentWorkspace(cell: .gru, steps: 3, batchSize: 2, hiddenSize: 4, backend: backend)
            let output = try backend.zeros([3, 2, 4])
            let finalHidden = try backend.zeros([2, 4])
            expectRecurError("lengths \(lengths)", matches: { error in
                if case .invalidArgument = error { return true }
                return false
            }) {
                try backend.recurrentForward(RecurrentForward(
                    scan: scan, output: MatrixOperand(output, leadingDimension: 4),
                    finalHidden: finalHidden, workspace: workspace))
            }
            // Nothing ran: the output is still zero.
            #expect(try backend.download(output).allSatisfy { $0 == 0 })
        }
    }

    @Test("the step kernels' tiles shrink to the device's work-group and local memory limits")
    func tiling() {
        let large = RecurrentTiling(maxWorkGroupSize: 1024, localMemoryBytes: 48 * 1024)
        #expect((large.units, large.rows, large.depth) == (32, 8, 16))
        let smallGroups = RecurrentTiling(maxWorkGroupSize: 64, localMemoryBytes: 48 * 1024)
        #expect(smallGroups.units * smallGroups.rows <= 64)
        #expect(smallGroups.units == 32)
        let smallMemory = RecurrentTiling(maxWorkGroupSize: 256, localMemoryBytes: 8 * 1024)
        #expect(2 * smallMemory.largestLocalBytes <= 8 * 1024)
        #expect(smallMemory.depth < 16)
    }

    @Test("a row cell's scan is one step-kernel launch whatever T, a pair included",
          arguments: RecurrentCell.withOpenCLKernels.filter { !RecurrentCell.withUnitStepKernels.contains($0) })
    func rowScanIsOneLaunch(_ cell: RecurrentCell) throws {
        guard let device = try TestBackends.openCLDevice() else { return }
        let backend = try OpenCLBackend(device: device)
        func enqueues(steps: Int, bidirectional: Bool) throws -> Int {
            let parity = RecurrentParityCase(cell: cell, steps: steps, batch: 3, inputSize: 4, hiddenSize: 6,
                                             lengths: [Int32(steps), 2, 1], padding: .post,
                                             bidirectional: bidirectional)
            _ = try parity.run(on: backend, seed: 4)  // compiles the programs
            backend.faultInjector.countCalls()
            defer { backend.faultInjector.reset() }
            _ = try parity.run(on: backend, seed: 4)
            return backend.faultInjector.calls(at: .enqueue)
        }
        for bidirectional in [false, true] {
            let (short, long) = (try enqueues(steps: 2, bidirectional: bidirectional),
                                 try enqueues(steps: 9, bidirectional: bidirectional))
            #expect(short == long, "\(cell), bidirectional: \(bidirectional): \(short) and \(long) enqueues")
        }
    }

    @Test("the row kernels' group: H rounded up to a power of two in 32...256, within the device's limit")
    func rowScanGroup() {
        #expect(RowScanGroup(hidden: 5, maxWorkGroupSize: 1024).size == 32)
        #expect(RowScanGroup(hidden: 33, maxWorkGroupSize: 1024).size == 64)
        #expect(RowScanGroup(hidden: 128, maxWorkGroupSize: 1024).size == 128)
        #expect(RowScanGroup(hidden: 1000, maxWorkGroupSize: 1024).size == 256)
        #expect(RowScanGroup(hidden: 1000, maxWorkGroupSize: 200).size == 128)
        #expect(RowScanGroup(hidden: 9, maxWorkGroupSize: 1).size == 1)
    }

    /// A GRU scan of seeded values with H = 4 and I = 2.
    private static func scan(cell: RecurrentCell, steps: Int, batch: Int, lengths: [Int32],
                             on backend: any Backend) throws -> RecurrentScan {
        var random = SeededGenerator(seed: 9)
        let (g, h, i) = (cell.gateCount * 4, 4, 2)
        return RecurrentScan(
            cell: cell, input: try backend.upload(random.floats(steps * batch * i), shape: [steps, batch, i]),
            weights: RecurrentWeights(
                input: try backend.upload(random.floats(g * i), shape: [g, i]),
                recurrent: try backend.upload(random.floats(g * h), shape: [g, h]),
                inputBias: try backend.upload(random.floats(g), shape: [g]),
                recurrentBias: try backend.upload(random.floats(g), shape: [g])),
            initialHidden: try backend.upload(random.floats(batch * h), shape: [batch, h]),
            lengths: try backend.upload(lengths, shape: [batch]))
    }
}
