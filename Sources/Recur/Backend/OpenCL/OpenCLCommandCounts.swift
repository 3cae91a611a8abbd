import Synchronization

/// What one `OpenCLBackend` has asked of its device: commands enqueued, by kind, and the times
/// the host waited for the queue. On a GPU a kernel launch costs a few microseconds of host and
/// driver time whatever its size, and a wait drains the queue, so for a small recurrent model
/// these counts, not the arithmetic, set the time of a training step (`recur bench` reports them
/// per step).
///
/// Counted where the backend makes the call, after it succeeded:
/// - `kernelLaunches`: `clEnqueueNDRangeKernel` of Recur's own kernels (a persistent scan is one);
/// - `gemmCalls`: CLBlast routines (`CLBlastSgemm`, `CLBlastSgemmBatched`), each one or more
///   kernels of CLBlast's own;
/// - `fills`: `clEnqueueFillBuffer`, which zeroes a new tensor;
/// - `hostSynchronizations`: calls that return only once the queue has run everything before
///   them: `clFinish` (`synchronize()`), blocking reads (`download`, scratch reads) and blocking
///   writes (`upload`).
///
/// Not counted: the wait after every kernel command on PoCL (`OpenCLContext.launchingKernels`, a
/// workaround for a PoCL defect, absent on other drivers), the markers `Benchmark` times with, and
/// the one-time probes and program builds.
public struct OpenCLCommandCounts: Sendable, Equatable, CustomStringConvertible {
    public var kernelLaunches = 0
    public var gemmCalls = 0
    public var fills = 0
    public var hostSynchronizations = 0

    public init(kernelLaunches: Int = 0, gemmCalls: Int = 0, fills: Int = 0, hostSynchronizations: Int = 0) {
        self.kernelLaunches = kernelLaunches
        self.gemmCalls = gemmCalls
        self.fills = fills
        self.hostSynchronizations = hostSynchronizations
    }

    /// Commands put on the queue: launches, GEMM routines and fills.
    public var enqueuedCommands: Int { kernelLaunches + gemmCalls + fills }

    /// The counts between an earlier reading and this one.
    public static func - (later: Self, earlier: Self) -> Self {
        Self(kernelLaunches: later.kernelLaunches - earlier.kernelLaunches,
             gemmCalls: later.gemmCalls - earlier.gemmCalls, fills: later.fills - earlier.fills,
             hostSynchronizations: later.hostSynchronizations - earlier.hostSynchronizations)
    }

    public var description: String {
        "\(kernelLaunches) kernel launches, \(gemmCalls) GEMM calls, \(fills) fills, "
            + "\(hostSynchronizations) host synchronisations"
    }
}

/// The running counts of one context: relaxed atomic adds, so counting costs nothing measurable
/// beside the OpenCL call it follows, from any thread.
final class OpenCLCommandCounter: Sendable {
    enum Kind { case kernelLaunch, gemmCall, fill, hostSynchronization }

    private let launches = Atomic<Int>(0)
    private let gemms = Atomic<Int>(0)
    private let fills = Atomic<Int>(0)
    private let waits = Atomic<Int>(0)

    func record(_ kind: Kind) {
        switch kind {
        case .kernelLaunch: launches.add(1, ordering: .relaxed)
        case .gemmCall: gemms.add(1, ordering: .relaxed)
        case .fill: fills.add(1, ordering: .relaxed)
        case .hostSynchronization: waits.add(1, ordering: .relaxed)
        }
    }

    var counts: OpenCLCommandCounts {
        OpenCLCommandCounts(kernelLaunches: launches.load(ordering: .relaxed), gemmCalls: gemms.load(ordering: .relaxed),
                            fills: fills.load(ordering: .relaxed), hostSynchronizations: waits.load(ordering: .relaxed))
    }
}

extension OpenCLBackend {
    /// Commands this backend has enqueued and host waits it has made since it was opened; read it
    /// before and after some work and subtract.
    public var commandCounts: OpenCLCommandCounts { context.commands.counts }
}
