import COpenCL
import Testing
@testable import Recur

// Persistent scans on OpenCL: every time step of a scan in one launch, with a grid-wide barrier
// between steps (see OpenCLBackend+PersistentScans.swift and "Scans" in Kernels/common.cl).
//
// PoCL cannot be trusted with a grid barrier over more groups than it has threads, so the
// automatic policy never uses one there; these tests force it:
// - on grids of one work-group, whose barrier never waits, the persistent launch runs the whole
//   scan, and its results equal the one-launch-per-step path bit for bit (same kernel, same
//   arithmetic) for every cell, padding, direction, dropout mask and clip; so do two-group grids
//   where PoCL runs both groups at once (else the wait times out and the scan runs again);
// - the resident-weights split (B <= 8) matches the CPU backend one launch per step on grids of
//   many groups, and its persistent launch equals its one-launch-per-step run bit for bit;
// - the resident split's sizes on an H100-like device, and where it does not fit;
// - on a grid far larger than PoCL's threads, the barrier times out, the launch is abandoned, and
//   the scan runs again one launch per step, with the same results, without hanging;
// - the probe refuses that grid and passes a one-group grid;
// - `.automatic` never runs a persistent scan or a probe on PoCL or on any CPU device.
// The one-launch-per-step path is itself compared with the CPU backend in OpenCLRecurrentTests.

@Suite("Persistent scans")
struct PersistentScanTests {
    /// Every cell has a persistent scan; the reset-before GRU's runs its two phases per step with
    /// a grid barrier between them.
    /// The row cells (layer-normalised) run every scan in one launch without a grid barrier.
    static let cells = RecurrentCell.withUnitStepKernels
    /// Cells with the resident-weights split (not the reset-before GRU's two-phase kernels).
    static let residentCells = RecurrentCell.withUnitStepKernels.filter { $0 != .gruResetBefore }

    /// Grids of one work-group: H <= 32 units, B <= 8 rows, one direction.
    static let oneGroupCases: [(String, @Sendable (RecurrentCell) -> RecurrentParityCase)] = [
        ("plain", { RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9) }),
        ("post padding, reversed, masked, clipped, strided, accumulated, two backward passes", {
            RecurrentParityCase(cell: $0, steps: 7, batch: 3, inputSize: 5, hiddenSize: 9, lengths: [7, 3, 5],
                                padding: .post, reverse: true, recurrentDropout: true, cellClip: 0.5,
                                stridedOutput: true, accumulateInputGradient: true, backwardPasses: 2,
                                recordHiddenStateGradients: true)
        }),
        ("pre padding, masked, clipped, final-state gradient only, H = 32, B = 8", {
            RecurrentParityCase(cell: $0, steps: 6, batch: 8, inputSize: 4, hiddenSize: 32,
                                lengths: [2, 6, 4, 1, 6, 5, 3, 6], padding: .pre, recurrentDropout: true,
                                cellClip: 0.5, outputGradient: false, recordHiddenStateGradients: true)
        }),
    ]

    struct Argument: Sendable, CustomTestStringConvertible {
        var name: String
        var parity: RecurrentParityCase
        var testDescription: String { "\(parity.cell) \(name)" }
    }

    static let oneGroupArguments: [Argument] = cells.flatMap { cell in
        oneGroupCases.map { Argument(name: $0.0, parity: $0.1(cell)) }
    }

    /// A backend of the test's own, so that policy changes and counters touch no other test.
    static func backend() throws -> OpenCLBackend? {
        guard let device = try TestBackends.openCLDevice() else { return nil }
        return try OpenCLBackend(device: device)
    }

    /// Runs `parity` one launch per step, then with persistent scans forced, on `backend`, expects
    /// every written tensor to be the same bit for bit and nonzero, and returns the statistics of
    /// the forced run.
    static func compareForcedWithStepwise(_ parity: RecurrentParityCase, seed: UInt64, on backend: OpenCLBackend,
                                          residentWeights: ResidentWeightsUse = .never) throws
        -> PersistentScanStatistics
    {
        // .always runs the resident split one launch per step where persistent scans are off.
        backend.residentWeights = residentWeights == .never ? .never : .always
        backend.persistentScanPolicy = .disabled
        let stepwise = try parity.run(on: backend, seed: seed)
        #expect(backend.persistentScanStatistics == PersistentScanStatistics())
        backend.persistentScanPolicy = .forced
        backend.residentWeights = residentWeights
        let persistent = try parity.run(on: backend, seed: seed)
        #expect(persistent.map(\.name) == stepwise.map(\.name))
        for (actual, expected) in zip(persistent, stepwise) {
            #expect(actual.values == expected.values, "\(parity): \(actual.name) differs")
            #expect(expected.values.contains { $0 != 0 }, "\(parity): \(expected.name) is all zero")
        }
        return backend.persistentScanStatistics
    }

    /// The scans a parity case runs: one forward and `backwardPasses` backward, each of which is
    /// one scan or one bidirectional pair.
    static func scanCount(_ parity: RecurrentParityCase) -> Int { 1 + parity.backwardPasses }

    @Test("a one-group persistent scan equals the one-launch-per-step scan, bit for bit", arguments: oneGroupArguments)
    func oneGroupMatchesSteps(_ argument: Argument) throws {
        guard let backend = try Self.backend() else { return }
        let statistics = try Self.compareForcedWithStepwise(argument.parity, seed: 31, on: backend)
        #expect(statistics.persistentScans == Self.scanCount(argument.parity))
        #expect(statistics.residentScans == 0)
        #expect(statistics.timedOut == 0)
    }

    /// One and two groups on PoCL's two compute units (H = 9 and 33 in one or two directions).
    static let residentArguments: [Argument] = residentCells.flatMap { cell in
        oneGroupCases.map { Argument(name: $0.0, parity: $0.1(cell)) } + [
            Argument(name: "bidirectional, masked, clipped", parity: RecurrentParityCase(
                cell: cell, steps: 6, batch: 5, inputSize: 4, hiddenSize: 9, lengths: [6, 2, 5, 1, 4],
                padding: .post, bidirectional: true, recurrentDropout: true, cellClip: 0.5,
                recordHiddenStateGradients: true)),
            Argument(name: "H = 33, B = 1", parity: RecurrentParityCase(
                cell: cell, steps: 5, batch: 1, inputSize: 6, hiddenSize: 33, reverse: true)),
        ]
    }

    @Test("a resident-weights persistent scan equals its one-launch-per-step run, bit for bit",
          arguments: residentArguments)
    func residentMatchesSteps(_ argument: Argument) throws {
        guard let backend = try Self.backend() else { return }
        let statistics = try Self.compareForcedWithStepwise(argument.parity, seed: 47, on: backend,
                                                            residentWeights: .withPersistentScans)
        #expect(statistics.timedOut + statistics.persistentScans == Self.scanCount(argument.parity))
        #expect(statistics.residentScans == statistics.persistentScans)
    }

    /// Every OpenCL parity configuration with B <= 8, one launch per step with the resident split:
    /// many groups (PoCL's small compute-unit count makes each group own many units), odd sizes,
    /// lengths, reversal, masks, clip, pairs.
    static let residentParityCases = OpenCLRecurrentTests.cases.filter {
        $0.parity.batch <= ResidentScanLayout.maximumBatch && residentCells.contains($0.parity.cell)
    }

    @Test("the resident-weights split matches the CPU backend", arguments: residentParityCases)
    func residentMatchesCPU(_ argument: OpenCLRecurrentTests.ParityArgument) throws {
        guard let backend = try Self.backend() else { return }
        backend.persistentScanPolicy = .disabled
        backend.residentWeights = .always
        let comparisons = try argument.parity.compare(backend, with: TestBackends.cpu, seed: argument.seed,
                                                      tolerance: OpenCLRecurrentTests.tolerance)
        #expect(!comparisons.isEmpty)
        for comparison in comparisons {
            #expect(comparison.passed, "\(argument.parity): \(comparison)")
        }
    }

    @Test("the resident split's sizes: registers, local memory and one group per compute unit")
    func residentLayout() throws {
        // An H100 as NVIDIA's OpenCL reports it: 132 compute units, groups of up to 1024, 48 KiB.
        func layout(gates: Int, hidden: Int, batch: Int, directions: Int = 1) -> ResidentScanLayout? {
            ResidentScanLayout(gates: gates, hidden: hidden, batch: batch, directions: directions,
                               computeUnits: 132, maxWorkGroupSize: 1024, localMemoryBytes: 48 * 1024)
        }
        let lstm = try #require(layout(gates: 4, hidden: 1024, batch: 8))
        #expect(lstm.units == 8 && lstm.groupSize == 256 && lstm.groupsPerDirection == 128)
        #expect(lstm.forwardSlices == 8 && lstm.forwardLength == 128)
        #expect(lstm.backwardSlices == 32 && lstm.backwardLength == 128)
        #expect(lstm.localBytes == (8 * 1024 + 32 * 8 * 8) * 4 + 4)
        let gru = try #require(layout(gates: 3, hidden: 1024, batch: 4))
        #expect(gru.forwardSlices == 10 && gru.forwardLength == 103 && gru.backwardLength == 96)
        let small = try #require(layout(gates: 4, hidden: 32, batch: 4))
        #expect(small.units == 1 && small.groupsPerDirection == 32 && small.forwardLength == 1)
        // Both directions of H = 1024 need 16 units per group: 256 weights per work-item.
        #expect(layout(gates: 4, hidden: 1024, batch: 4, directions: 2) == nil)
        #expect(layout(gates: 1, hidden: 1024, batch: 4, directions: 2) != nil)
        #expect(layout(gates: 4, hidden: 256, batch: 9) == nil)
        #expect(layout(gates: 4, hidden: 2048, batch: 1) == nil)
        // A 32 KiB device cannot stage eight rows of 1024.
        #expect(ResidentScanLayout(gates: 4, hidden: 1024, batch: 8, directions: 1, computeUnits: 132,
                                   maxWorkGroupSize: 1024, localMemoryBytes: 32 * 1024) == nil)
    }

    @Test("a persistent scan is one step-kernel launch, not one per step", arguments: cells)
    func oneLaunch(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        let parity = RecurrentParityCase(cell: cell, steps: 9, batch: 2, inputSize: 3, hiddenSize: 5)
        // One group (the tiled split of H = 5, B = 2): a launch whose barrier never waits, so the
        // count does not depend on how many threads PoCL has free.
        backend.residentWeights = .never
        func enqueues(_ policy: PersistentScanPolicy) throws -> Int {
            backend.persistentScanPolicy = policy
            _ = try parity.run(on: backend, seed: 5)  // compiles the programs
            backend.faultInjector.countCalls()
            _ = try parity.run(on: backend, seed: 5)
            let count = backend.faultInjector.calls(at: .enqueue)
            backend.faultInjector.reset()
            return count
        }
        let stepwise = try enqueues(.disabled)
        let persistent = try enqueues(.forced)
        // Forward: T launches (2T for the two phases of the reset-before GRU) become 1; backward:
        // T + 1 (the extra step into dL/dh0, one phase) become 1.
        let phases = cell == .gruResetBefore ? 2 : 1
        #expect(stepwise - persistent == (9 * phases - 1) + (9 * phases + 1 - 1))
        #expect(backend.persistentScanStatistics.timedOut == 0)
    }

    /// 9 x 3 tiles of 32 x 8, two directions: 54 groups, far more than PoCL's threads, so the
    /// first barrier cannot complete.
    @Test("a persistent scan whose barrier times out runs again step by step, with the same results",
          arguments: cells)
    func timeoutFallsBack(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        let parity = RecurrentParityCase(cell: cell, steps: 3, batch: 17, inputSize: 3, hiddenSize: 257,
                                         lengths: [Int32](repeating: 3, count: 16) + [2], padding: .post,
                                         bidirectional: true, recurrentDropout: true, cellClip: 0.5,
                                         recordHiddenStateGradients: true)
        let statistics = try Self.compareForcedWithStepwise(parity, seed: 9, on: backend)
        #expect(statistics.timedOut + statistics.persistentScans == Self.scanCount(parity))
        if backend.device.computeUnits * 8 < 54 {
            #expect(statistics.timedOut == Self.scanCount(parity))
        }
    }

    /// Two groups (H = 33 is two tiles of 32 units): PoCL may run both at once, and the barrier then
    /// really waits for the other group; or it runs them one after the other, and the wait times out.
    /// Either way the results must equal the step-by-step scan's.
    @Test("a two-group persistent scan completes or falls back, with the same results", arguments: cells)
    func twoGroups(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        let parity = RecurrentParityCase(cell: cell, steps: 8, batch: 3, inputSize: 4, hiddenSize: 33,
                                         lengths: [8, 5, 2], padding: .pre, recurrentDropout: true,
                                         cellClip: 0.5, recordHiddenStateGradients: true)
        let statistics = try Self.compareForcedWithStepwise(parity, seed: 13, on: backend)
        #expect(statistics.timedOut + statistics.persistentScans == Self.scanCount(parity))
    }

    /// The resident program variant fails to build once (as a device short of registers might
    /// refuse it): the forward scan runs one launch per step instead, and every result still matches
    /// the CPU backend.
    @Test("a persistent launch the device refuses runs again one launch per step", arguments: residentCells)
    func refusedLaunchFallsBack(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        let parity = RecurrentParityCase(cell: cell, steps: 5, batch: 3, inputSize: 4, hiddenSize: 6,
                                         lengths: [5, 2, 4], padding: .post, recurrentDropout: true, cellClip: 0.5)
        backend.persistentScanPolicy = .disabled
        _ = try parity.run(on: backend, seed: 21)  // builds every program but the resident variant
        backend.persistentScanPolicy = .forced
        backend.faultInjector.fail(.programBuild, onCall: 1, with: CL_BUILD_PROGRAM_FAILURE)
        let comparisons = try parity.compare(backend, with: TestBackends.cpu, seed: 21,
                                             tolerance: OpenCLRecurrentTests.tolerance)
        backend.faultInjector.reset()
        #expect(!comparisons.isEmpty)
        for comparison in comparisons {
            #expect(comparison.passed, "\(parity): \(comparison)")
        }
        #expect(backend.persistentScanStatistics.refused == 1)
    }

    @Test("the probe passes a one-group grid and refuses, without hanging, a grid PoCL cannot run at once")
    func probe() throws {
        guard let backend = try Self.backend() else { return }
        let localSize = [32, 8, 1]
        #expect(try backend.probeGridBarrier(groups: 1, localSize: localSize))
        if backend.device.computeUnits * 8 < 64 {
            #expect(try !backend.probeGridBarrier(groups: 64, localSize: localSize))
        }
        // The barrier state is reset before each launch: a refused probe does not spoil the next.
        #expect(try backend.probeGridBarrier(groups: 1, localSize: localSize))
    }

    @Test("the automatic policy never runs a persistent scan or a probe on a CPU device or PoCL", arguments: cells)
    func automaticStaysOffOnCPU(_ cell: RecurrentCell) throws {
        guard let backend = try Self.backend() else { return }
        #expect(backend.persistentScanPolicy == .automatic)
        let onCPU = backend.device.type != .gpu || backend.isPoCL
        let parity = RecurrentParityCase(cell: cell, steps: 4, batch: 2, inputSize: 3, hiddenSize: 5)
        _ = try parity.run(on: backend, seed: 3)
        if onCPU {
            #expect(backend.persistentScanStatistics == PersistentScanStatistics())
        }
    }
}
