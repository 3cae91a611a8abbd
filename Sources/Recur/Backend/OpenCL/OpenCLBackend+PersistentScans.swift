import COpenCL
import Synchronization

// Persistent scans: every time step of a recurrent scan in one kernel launch, with a grid-wide
// barrier between steps (Diamos et al., "Persistent RNNs", 2016), instead of one launch per step.
//
// A launch costs several microseconds on a GPU (about 4 µs on an H100 with NVIDIA's OpenCL), so
// a scan of small steps (small batch, few hidden units) is bound by launches; a grid barrier costs
// about a microsecond. The step kernels (Kernels/rnn.cl, lstm.cl, gru.cl) take a first scan step and
// a step count, and the same kernel serves both paths; see "Scans" in Kernels/common.cl.
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
// per scan, after its last step (not inside a step).
//
// The reset-before GRU needs two kernels per step (see gru.cl) and always runs one launch per step.

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
    /// Set when a persistent scan timed out: `.automatic` then stays with one launch per step.
    var timedOut = false
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
    var isPoCL: Bool {
        device.platformName.lowercased().contains("portable computing language")
            || device.platform.vendor.lowercased().contains("pocl")
    }

    /// Whether a scan of `cell` over `steps` steps whose step grid has `groups` work-groups of
    /// `localSize` runs as one persistent launch here (see the top of this file). Probes the device
    /// the first time a grid of that many groups is asked about.
    func runsPersistentScan(cell: RecurrentCell, steps: Int, groups: Int, localSize: [Int]) throws -> Bool {
        guard cell != .gruResetBefore, steps > 1 else { return false }
        let (policy, verdict, timedOut) = persistentScans.withLock { ($0.policy, $0.probed[groups], $0.timedOut) }
        switch policy {
        case .disabled: return false
        case .forced: return true
        case .automatic:
            guard device.type == .gpu, !isPoCL, !timedOut, groups <= device.computeUnits else { return false }
            if let verdict { return verdict }
            let passed = try probeGridBarrier(groups: groups, localSize: localSize)
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
    /// zeroed before it, and returns whether a wait timed out (the abort flag). Blocks until the
    /// launch has finished. One persistent launch at a time per backend: the lock keeps the zeroing,
    /// the launch and the read-back of concurrent callers apart.
    func withGridSync(_ launch: (GridSyncBuffer) throws -> Void) throws -> Bool {
        try gridSync.withLock { sync in
            try writeInt32([0, 0, 0, 0], into: sync.buffer)
            try launch(sync)
            let state = try readInt32(sync.buffer, count: 4)
            return state[2] != 0
        }
    }

    /// Records the outcome of one persistent scan.
    func recordPersistentScan(timedOut: Bool) {
        persistentScans.withLock { state in
            if timedOut {
                state.statistics.timedOut += 1
                state.timedOut = true
            } else {
                state.statistics.persistentScans += 1
            }
        }
    }
}

extension KernelFamily {
    static let persistent = KernelFamily(name: "persistent")
}
