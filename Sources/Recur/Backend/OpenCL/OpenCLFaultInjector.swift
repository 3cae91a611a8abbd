import COpenCL
import Synchronization

/// Makes chosen OpenCL calls of one backend fail the way a driver would, so that tests (and
/// training loops that must survive such failures) can check that each one stops the operation
/// with a clear error, leaks no buffer, and leaves the backend usable or visibly lost.
///
/// ```swift
/// let backend = try OpenCLBackend(device: device)   // its own, not the shared one
/// backend.faultInjector.fail(.enqueue, onCall: 3, with: CL_OUT_OF_RESOURCES)
/// try model.forward(...)   // the third kernel launch throws OpenCLError "CL_OUT_OF_RESOURCES"
/// ```
///
/// Off until `fail(_:onCall:with:)`, `countCalls()` or `loseDevice(code:)` arms it; while off,
/// each hooked call costs one relaxed atomic load. Faults replace the real call (it is not made),
/// so nothing is half-created. Calls are counted per point from when the injector was armed.
public final class OpenCLFaultInjector: Sendable {
    /// Where a fault can be injected.
    public enum Point: String, Sendable, CaseIterable {
        /// `clCreateBuffer`: every tensor and scratch allocation.
        case allocation
        /// `clBuildProgram`: compiling (or loading from the binary cache) a kernel family.
        case programBuild
        /// `clEnqueueNDRangeKernel` and CLBlast's GEMM: every kernel launch.
        case enqueue
        /// Host-device copies, fills and waits: `clEnqueueWriteBuffer`, `clEnqueueReadBuffer`,
        /// `clEnqueueFillBuffer`, `clFinish`.
        case transfer
    }

    private struct Plan {
        var call: Int
        var code: Int32
    }

    private struct State {
        var plans: [Point: Plan] = [:]
        var calls: [Point: Int] = [:]
        var lostDeviceCode: Int32?
        var injectedCount = 0
    }

    private let armed = Atomic<Bool>(false)
    private let state = Mutex(State())

    init() {}

    /// Makes the `call`-th call at `point` from now (1 is the next) fail once with `code`, an
    /// OpenCL status such as `CL_MEM_OBJECT_ALLOCATION_FAILURE`. Restarts the count at `point`.
    public func fail(_ point: Point, onCall call: Int = 1, with code: Int32) {
        precondition(call >= 1, "calls are counted from 1")
        precondition(code != CL_SUCCESS, "a fault needs an error status")
        state.withLock {
            $0.plans[point] = Plan(call: call, code: code)
            $0.calls[point] = 0
        }
        armed.store(true, ordering: .releasing)
    }

    /// Starts counting the calls at every point without failing any (see `calls(at:)`), to
    /// learn how many calls an operation makes before injecting a fault into each.
    public func countCalls() {
        state.withLock { $0.calls = [:] }
        armed.store(true, ordering: .releasing)
    }

    /// Simulates a lost device (a driver reset, an unplugged GPU): every later call at every
    /// point fails with `code`, as a real driver keeps failing once its device is gone.
    public func loseDevice(code: Int32 = CL_DEVICE_NOT_AVAILABLE) {
        state.withLock { $0.lostDeviceCode = code }
        armed.store(true, ordering: .releasing)
    }

    /// Disarms the injector: no plans, no lost device, counts cleared.
    public func reset() {
        armed.store(false, ordering: .releasing)
        state.withLock { $0 = State() }
    }

    /// The calls at `point` since the injector was armed (or its plan for `point` was set).
    public func calls(at point: Point) -> Int {
        state.withLock { $0.calls[point] ?? 0 }
    }

    /// How many faults have been injected since the last `reset()`.
    public var injectedCount: Int {
        state.withLock { $0.injectedCount }
    }

    /// Whether `loseDevice(code:)` is in effect.
    public var isDeviceLost: Bool {
        armed.load(ordering: .acquiring) && state.withLock { $0.lostDeviceCode != nil }
    }

    /// The status a hooked call at `point` must return instead of being made, or nil to make it.
    func failure(at point: Point) -> Int32? {
        guard armed.load(ordering: .acquiring) else { return nil }
        return state.withLock { state in
            let call = (state.calls[point] ?? 0) + 1
            state.calls[point] = call
            if let code = state.lostDeviceCode {
                state.injectedCount += 1
                return code
            }
            guard let plan = state.plans[point], plan.call == call else { return nil }
            state.plans[point] = nil
            state.injectedCount += 1
            return plan.code
        }
    }
}
