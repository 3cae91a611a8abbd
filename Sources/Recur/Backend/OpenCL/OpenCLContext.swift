import COpenCL
import Synchronization

/// An OpenCL context on one device with its single in-order command queue. Profiling is on, so
/// any enqueued work can be timed on the device's own clock.
///
/// Enqueueing onto one queue from several threads is allowed by OpenCL (1.1 and later); what is
/// not thread-safe (setting kernel arguments) is guarded by `OpenCLProgram`.
final class OpenCLContext: @unchecked Sendable {
    let device: OpenCLDevice
    let context: cl_context
    let queue: cl_command_queue
    /// Test hook: failures to inject into this context's calls (off by default).
    let faults = OpenCLFaultInjector()
    /// Commands enqueued and host waits so far (`OpenCLBackend.commandCounts`).
    let commands = OpenCLCommandCounter()
    /// Set once a call reports `CL_DEVICE_NOT_AVAILABLE`: a device that went away stays away.
    private let lost = Atomic<Bool>(false)

    init(device: OpenCLDevice) throws {
        self.device = device
        var status: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        guard let context = clCreateContext(nil, 1, &deviceID, nil, nil, &status), status == CL_SUCCESS else {
            throw OpenCLError(function: "clCreateContext", code: status, context: "opening \(device.name)")
        }
        let properties = cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE)
        guard let queue = clCreateCommandQueue(context, device.id, properties, &status), status == CL_SUCCESS else {
            clReleaseContext(context)
            throw OpenCLError(function: "clCreateCommandQueue", code: status, context: "opening \(device.name)")
        }
        self.context = context
        self.queue = queue
    }

    deinit {
        // Buffers and programs retain the context themselves, so releasing it here is safe even
        // while tensors outlive the backend.
        clFinish(queue)
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    // MARK: Kernel launches on PoCL

    /// Runs `enqueue`, which enqueues kernels (one of Recur's, or a CLBlast routine's), and on
    /// PoCL waits for them before returning, holding a process-wide lock throughout, so that no
    /// two kernel commands of the process are ever pending at once there.
    ///
    /// Why: PoCL 3.1's CPU drivers keep the loaded kernel binaries in one process-wide list. A
    /// command takes a reference to an entry matched by kernel, work-group size *and* grid width,
    /// but gives back its reference to the first entry matched by kernel and work-group size alone
    /// (`pocl_release_dlhandle_cache`). With kernel commands of several contexts (several backends,
    /// as the tests make) in flight at once over grids of different widths, a command can give back
    /// another's reference, and a later one aborts the process: `Assertion 'found->ref_count > 0'
    /// failed`. A C program launching one kernel source from six threads with contexts of their own
    /// aborted in 5 of 30 runs; with each launch waited for under one lock, in none of 30. PoCL
    /// runs one command at a time over all cores anyway, so the cost is only the host work the
    /// wait no longer overlaps (about 10% on the OpenCL test suites).
    func launchingKernels<Result>(_ enqueue: () -> Result) -> Result {
        guard serializesKernels else { return enqueue() }
        return Self.pocLKernelCommands.withLock { _ in
            let result = enqueue()
            // A failure to finish also fails the next call on this queue, which reports it.
            _ = clFinish(queue)
            return result
        }
    }

    /// Whether kernel launches go one at a time through `launchingKernels` (PoCL).
    private var serializesKernels: Bool { device.isPoCL }
    private static let pocLKernelCommands = Mutex<Void>(())

    /// Waits until everything enqueued so far has finished.
    func finish() throws {
        try check(hooked(.transfer) { clFinish(queue) }, "clFinish", "waiting for \(device.name)")
        commands.record(.hostSynchronization)
    }

    /// Whether a call has reported the device gone (`CL_DEVICE_NOT_AVAILABLE`), or the fault
    /// injector simulates that.
    var isDeviceLost: Bool { lost.load(ordering: .acquiring) || faults.isDeviceLost }

    /// The status of `call`, or the fault injected at `point` in its place; records a lost device.
    func hooked(_ point: OpenCLFaultInjector.Point, _ call: () -> cl_int) -> cl_int {
        observed(faults.failure(at: point) ?? call())
    }

    /// `status`, after recording a lost device when it reports one.
    func observed(_ status: cl_int) -> cl_int {
        if status == CL_DEVICE_NOT_AVAILABLE { lost.store(true, ordering: .releasing) }
        return status
    }

    // MARK: Timing

    /// Runs `body`, which enqueues work, and returns the device time in nanoseconds from the
    /// moment all earlier work had finished to the moment the work `body` enqueued finished.
    ///
    /// Two markers bracket the work on the in-order queue and their profiling timestamps are
    /// compared, so host overhead between enqueues is excluded but gaps on the device are not.
    /// Work other threads enqueue meanwhile on the same queue is counted too.
    func measureDeviceNanoseconds(_ body: () throws -> Void) throws -> UInt64 {
        let start = try enqueueMarker()
        defer { clReleaseEvent(start) }
        try body()
        let end = try enqueueMarker()
        defer { clReleaseEvent(end) }
        var events: [cl_event?] = [start, end]
        try check(clWaitForEvents(2, &events), "clWaitForEvents", "timing enqueued work")
        let startTime = try profilingTime(start, CL_PROFILING_COMMAND_END)
        let endTime = try profilingTime(end, CL_PROFILING_COMMAND_END)
        return endTime >= startTime ? endTime - startTime : 0
    }

    private func enqueueMarker() throws -> cl_event {
        var event: cl_event?
        try check(clEnqueueMarkerWithWaitList(queue, 0, nil, &event), "clEnqueueMarkerWithWaitList", "timing work")
        guard let event else {
            throw OpenCLError(function: "clEnqueueMarkerWithWaitList", code: CL_INVALID_EVENT, context: "timing work")
        }
        return event
    }

    private func profilingTime(_ event: cl_event, _ parameter: Int32) throws -> UInt64 {
        var time: cl_ulong = 0
        try check(clGetEventProfilingInfo(event, cl_profiling_info(parameter), MemoryLayout<cl_ulong>.size, &time, nil),
                  "clGetEventProfilingInfo", "reading a profiling timestamp")
        return time
    }
}
