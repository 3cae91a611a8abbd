import COpenCL
import Synchronization

// Persistent scans: every time step of a recurrent scan in one kernel launch, with a grid-wide
// barrier between steps (Diamos et al., "Persistent RNNs", 2016), instead of one launch per step.
//
// A launch costs several microseconds on a GPU (about 4 µs on an H100 with NVIDIA's OpenCL), so
// a scan of small steps (small batch, few hidden units) is bound by launches; a grid barrier costs
// about a microsecond. The step kernels (Kernels/recurrent.cl, one skeleton for every cell) take a
// first scan step and a step count, and the same kernel serves both paths; see "Scans" in Kernels/common.cl.
//
// The barrier is only correct when every work-group of the grid runs at the same time, which
// OpenCL 1.2 does not promise. So a scan runs persistent only where all of these hold:
// - the policy allows it (`PersistentScanPolicy`, `.automatic` by default);
// - the device is a GPU and not PoCL, which runs a launch's groups on a fixed set of threads and
//   deadlocks on such barriers;
// - the grid has at most one work-group per compute unit;
// - a probe (`recur_grid_probe`, Kernels/persistent.cl) with the same grid and group size passed on
//   this backend: every barrier waited for every group, each group saw the others' writes, and no
//   wait timed out;
// - no persistent scan timed out on this backend before.
// Even then every wait is bounded: a group that spins too long sets an abort flag, every group
// leaves the kernel, and the host runs the scan again from its start one launch per step, so a
// wrong guess costs time, never a hang or a wrong result. The host reads the abort flag back once
// per scan, after its last step (not inside a step). A persistent launch the device refuses (its
// program variant does not build, or it asks for more registers than the device has) runs the
// same way one launch per step, and `.automatic` stops trying on that backend.
//
// With B <= 8, a persistent scan keeps the recurrent weights in registers for all its steps where
// they fit (`ResidentScanLayout`; "Resident weights" in Kernels/common.cl): the same step kernels,
// built once more for that H and B with another split of the work.
//
// The reset-before GRU's step is two phases (see gru_reset_before.cl): two launches per step, or one persistent
// launch with a grid barrier between the phases too; it has no resident split.

/// When the OpenCL backend may run a recurrent scan as one persistent kernel launch.
public enum PersistentScanPolicy: String, Sendable, CaseIterable {
    /// Where the device, the grid and the probe allow it (see `OpenCLBackend.persistentScanPolicy`).
    case automatic
    /// Never: one kernel launch per time step.
    case disabled
    /// On any device and grid, skipping the device checks and the probe; a wait that times out
    /// still falls back to one launch per step. For testing the persistent kernels where the probe
    /// would refuse them, e.g. on PoCL with a grid of one work-group, whose barrier never waits.
    case forced
}

/// What the persistent-scan machinery of one `OpenCLBackend` has done so far.
public struct PersistentScanStatistics: Sendable, Equatable {
    /// Scans (a bidirectional pair counts once) that ran every step in one launch.
    public var persistentScans = 0
    /// Persistent launches whose barrier timed out; each was run again one launch per step.
    public var timedOut = 0
    /// Persistent launches the device refused (a program variant that does not build, a launch
    /// over its resources); each was run again one launch per step.
    public var refused = 0
    /// Of `persistentScans`, those that kept the recurrent weights in registers.
    public var residentScans = 0
    /// Co-residency probes run, and how many of them passed.
    public var probes = 0
    public var probesPassed = 0
}

/// The probe results and counters behind the policy, guarded by the backend's lock.
struct PersistentScanState {
    var policy = PersistentScanPolicy.automatic
    var statistics = PersistentScanStatistics()
    /// Probe verdicts by grid size in work-groups.
    var probed: [Int: Bool] = [:]
    /// Whether a persistent scan timed out or was refused here: `.automatic` then stays with one
    /// launch per step.
    var hasFailed: Bool { statistics.timedOut + statistics.refused > 0 }
    /// When the step kernels keep their weights in registers (a test hook; see `ResidentWeightsUse`).
    var residentWeights = ResidentWeightsUse.withPersistentScans
}

/// When the step kernels run with resident weights (the split of `ResidentScanLayout`).
enum ResidentWeightsUse: Sendable {
    /// Never: the tiled split.
    case never
    /// In persistent scans where the layout fits (the default).
    case withPersistentScans
    /// Wherever the layout fits, one launch per step too (tests: the split on grids that cannot
    /// run persistent).
    case always
}

/// The resident-weights split of a step grid (see "Resident weights" in Kernels/common.cl): each
/// work-group owns `units` hidden units of one direction and keeps the slices of W_hh they need in
/// its work-items' registers. Exists only where the batch, the registers and local memory allow.
struct ResidentScanLayout: Equatable {
    /// B: the batch, at most `maximumBatch`.
    let batch: Int
    /// H.
    let hidden: Int
    /// Gates of the cell: W_hh is `[gates H, H]`.
    let gates: Int
    /// Work-items per group.
    let groupSize: Int
    /// Hidden units per group.
    let units: Int

    /// The batch rows a work-item keeps accumulators for.
    static let maximumBatch = 8
    /// Weights one work-item holds: 128 floats, half of the 255 registers a GPU thread can have.
    static let maximumLength = 128

    /// The split for a scan over `directions` directions of `hidden` units and `batch` sequences
    /// with `gates` gates: the fewest units per group that keep the grid within one group per
    /// compute unit, or nil where no split fits.
    init?(gates: Int, hidden: Int, batch: Int, directions: Int, device: OpenCLDevice) {
        self.init(gates: gates, hidden: hidden, batch: batch, directions: directions,
                  computeUnits: device.computeUnits, maxWorkGroupSize: device.maxWorkGroupSize,
                  localMemoryBytes: device.localMemoryBytes)
    }

    init?(gates: Int, hidden: Int, batch: Int, directions: Int, computeUnits: Int, maxWorkGroupSize: Int,
          localMemoryBytes: Int) {
        guard (1...Self.maximumBatch).contains(batch), hidden > 0, gates > 0 else { return nil }
        var groupSize = 1
        while groupSize * 2 <= min(256, maxWorkGroupSize) { groupSize *= 2 }
        var units = 1
        while directions * ((hidden + units - 1) / units) > max(computeUnits, 1), units < hidden {
            units *= 2
        }
        self.batch = batch
        self.hidden = hidden
        self.gates = gates
        self.groupSize = groupSize
        self.units = units
        guard gates * units <= groupSize, units * batch <= groupSize,
              forwardLength <= Self.maximumLength, backwardLength <= Self.maximumLength,
              localBytes <= localMemoryBytes
        else { return nil }
    }

    /// Work-items sharing one weight row in the forward product, and the row's part each holds.
    var forwardSlices: Int { groupSize / (gates * units) }
    var forwardLength: Int { (hidden + forwardSlices - 1) / forwardSlices }
    /// Work-items sharing one weight column in the backward product, and the column's part each holds.
    var backwardSlices: Int { groupSize / units }
    var backwardLength: Int { (gates * hidden + backwardSlices - 1) / backwardSlices }
    /// Groups per direction.
    var groupsPerDirection: Int { (hidden + units - 1) / units }

    /// Local memory of the larger kernel: the forward's staged operand (rows padded to whole
    /// slices) and partial sums, or the backward's partial sums; and the barrier's verdict.
    var localBytes: Int {
        let forward = batch * forwardSlices * forwardLength + gates * units * batch * forwardSlices
        let backward = units * batch * backwardSlices
        return max(forward, backward) * MemoryLayout<Float>.size + MemoryLayout<Int32>.size
    }

    /// The build options of this split's program variant.
    var buildOptions: String {
        "-DRECUR_RESIDENT=1 -DRECUR_RES_GROUP=\(groupSize) -DRECUR_RES_UNITS=\(units) -DRECUR_RES_BATCH=\(batch) "
            + "-DRECUR_RES_HIDDEN=\(hidden) -DRECUR_RES_GATES=\(gates)"
    }
}

/// The grid-barrier state a persistent launch uses: `[arrivals, generation, abort, unused]` ints.
/// Internal scratch, not counted in `memoryStatistics`.
final class GridSyncBuffer: @unchecked Sendable {
    let buffer: OpenCLBuffer
    /// Spins a group waits at one barrier before it gives up. A spin is one atomic read, well under
    /// a microsecond on a GPU, so this allows a step far longer than any real one takes, yet ends a
    /// deadlocked launch within about a second.
    static let spinLimit = 1 << 20

    init(context: OpenCLContext) throws {
        buffer = try OpenCLBuffer(context: context, byteCount: 4 * MemoryLayout<Int32>.size, counter: MemoryCounter(),
                                  operation: "GridSyncBuffer")
    }
}

extension OpenCLBackend {
    /// When recurrent scans may run as one persistent launch; `.automatic` unless changed. Safe to
    /// change at any time; scans already enqueued are not affected.
    public var persistentScanPolicy: PersistentScanPolicy {
        get { persistentScans.withLock { $0.policy } }
        set { persistentScans.withLock { $0.policy = newValue } }
    }

    /// Counts of persistent scans, timeouts and probes on this backend.
    public var persistentScanStatistics: PersistentScanStatistics {
        persistentScans.withLock { $0.statistics }
    }

    /// Whether PoCL provides this device: its groups are threads of a fixed pool.
    var isPoCL: Bool { device.isPoCL }

    /// Whether a scan of `cell` over `steps` steps whose step grid has `groups` work-groups of
    /// `localSize` runs as one persistent launch here (see the top of this file). Probes the device
    /// the first time a grid of that many groups is asked about.
    func runsPersistentScan(cell: RecurrentCell, steps: Int, groups: Int, localSize: [Int]) throws -> Bool {
        guard steps > 1 else { return false }
        let (policy, verdict, failed) = persistentScans.withLock { ($0.policy, $0.probed[groups], $0.hasFailed) }
        switch policy {
        case .disabled: return false
        case .forced: return true
        case .automatic:
            guard device.type == .gpu, !isPoCL, !failed, groups <= device.computeUnits else { return false }
            if let verdict { return verdict }
            // A probe the device refuses is a probe that failed; a lost device is an error.
            let passed: Bool
            do {
                passed = try probeGridBarrier(groups: groups, localSize: localSize)
            } catch is OpenCLError where !isDeviceLost {
                passed = false
            }
            persistentScans.withLock { state in
                state.probed[groups] = passed
                state.statistics.probes += 1
                if passed { state.statistics.probesPassed += 1 }
            }
            return passed
        }
    }

    /// Runs `recur_grid_probe` over `groups` work-groups of `localSize` and reports whether every
    /// barrier held and none timed out.
    func probeGridBarrier(groups: Int, localSize: [Int], rounds: Int = 64) throws -> Bool {
        let board = try zeros([2 * groups], dtype: .int32)
        let mismatches = try zeros([1], dtype: .int32)
        let globalSize = [groups * localSize[0]] + localSize.dropFirst()
        let program = try program(.persistent)
        let aborted = try withGridSync { sync in
            try program.launch("recur_grid_probe", globalSize: globalSize, localSize: localSize, arguments: [
                .memory(sync.buffer.memory), .int(GridSyncBuffer.spinLimit), .int(rounds), .tensor(board),
                .tensor(mismatches),
            ])
        }
        let mismatchCount = try downloadInt32(mismatches)
        return !aborted && mismatchCount == [0]
    }

    /// Runs `launch`, which enqueues one persistent launch using `sync`, with the barrier state
    /// zeroed before it (an enqueued fill: the one wait is the read-back after the launch), and
    /// returns whether a wait timed out (the abort flag). Blocks until the launch has finished.
    /// One persistent launch at a time per backend: the lock keeps the zeroing, the launch and the
    /// read-back of concurrent callers apart.
    func withGridSync(_ launch: (GridSyncBuffer) throws -> Void) throws -> Bool {
        try gridSync.withLock { sync in
            try enqueueZeroing(sync.buffer, operation: "zeroing the grid barrier")
            try launch(sync)
            let state = try readInt32(sync.buffer, count: 4)
            return state[2] != 0
        }
    }

    /// Records a persistent scan the device refused.
    func recordRefusedPersistentScan() {
        persistentScans.withLock { state in
            state.statistics.refused += 1
        }
    }

    /// Records the outcome of one persistent scan.
    func recordPersistentScan(timedOut: Bool, resident: Bool) {
        persistentScans.withLock { state in
            if timedOut {
                state.statistics.timedOut += 1
            } else {
                state.statistics.persistentScans += 1
                if resident { state.statistics.residentScans += 1 }
            }
        }
    }

    /// When the step kernels keep their weights in registers; a test hook.
    var residentWeights: ResidentWeightsUse {
        get { persistentScans.withLock { $0.residentWeights } }
        set { persistentScans.withLock { $0.residentWeights = newValue } }
    }
}

extension KernelFamily {
    static let persistent = KernelFamily(name: "persistent")
}
