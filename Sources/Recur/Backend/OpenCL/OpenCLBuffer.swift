import COpenCL

/// Device memory for the OpenCL backend: one `cl_mem`, released when the last tensor using it
/// goes away. Reports to its backend's `MemoryCounter` like `HostBuffer` does.
///
/// OpenCL deletes a released buffer only after the queued commands that use it have finished,
/// so releasing in `deinit` needs no synchronisation.
final class OpenCLBuffer: DeviceBuffer, @unchecked Sendable {
    let memory: cl_mem
    let byteCount: Int
    /// For int32 data written from the host (token ids): the smallest and largest value, so
    /// that embedding ops can check ids against the vocabulary without reading the device.
    /// `nil` when unknown. No device op writes int32 data, so it cannot go stale.
    let int32Range: ClosedRange<Int32>?
    /// For int32 data uploaded from the host: the values themselves (the caller's array, shared,
    /// not copied), so that the embedding gradient can group positions by id on the host without
    /// reading the device. `nil` when unknown; it cannot go stale for the same reason.
    let int32Values: [Int32]?
    private let counter: MemoryCounter
    /// For a region of another buffer (`init(region:...)`): that buffer, kept alive by this one,
    /// and where the region starts in it, in bytes.
    let parent: OpenCLBuffer?
    let origin: Int
    /// Bytes this buffer reports to its counter: its size, or 0 for a region (the parent has them).
    private let countedBytes: Int

    /// A new uninitialised buffer of `byteCount` bytes, or with `contents` (`byteCount` bytes) a
    /// read-only one holding a copy of them, made with `CL_MEM_COPY_HOST_PTR`: the copy happens
    /// when the buffer is created, so unlike a blocking write it does not wait for the commands
    /// already on the queue. Allocation failures become `RecurError.outOfMemory`.
    init(context: OpenCLContext, byteCount: Int, counter: MemoryCounter, int32Range: ClosedRange<Int32>? = nil,
         int32Values: [Int32]? = nil, contents: UnsafeRawBufferPointer? = nil, operation: String) throws {
        precondition(contents.map { $0.count == byteCount } ?? true, "contents fill the buffer")
        let device = context.device
        guard byteCount <= device.maxAllocationBytes else {
            throw RecurError.outOfMemory(
                operation: operation, bytes: byteCount,
                detail: "\(device.name) allows at most \(device.maxAllocationBytes) bytes in one buffer")
        }
        var status: cl_int = CL_SUCCESS
        var memory: cl_mem?
        status = context.hooked(.allocation) {
            var created: cl_int = CL_SUCCESS
            if let contents, let base = contents.baseAddress, byteCount > 0 {
                memory = clCreateBuffer(context.context, cl_mem_flags(CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR), byteCount,
                                        UnsafeMutableRawPointer(mutating: base), &created)
            } else {
                memory = clCreateBuffer(context.context, cl_mem_flags(CL_MEM_READ_WRITE), max(byteCount, 4), nil, &created)
            }
            return created
        }
        guard let memory, status == CL_SUCCESS else {
            let error = OpenCLError(function: "clCreateBuffer", code: status, context: "allocating \(byteCount) bytes")
            if error.isOutOfMemory {
                throw RecurError.outOfMemory(operation: operation, bytes: byteCount, detail: error.description)
            }
            throw error
        }
        self.memory = memory
        self.byteCount = byteCount
        self.counter = counter
        self.int32Range = int32Range
        self.int32Values = int32Values
        parent = nil
        origin = 0
        countedBytes = byteCount
        counter.allocated(bytes: byteCount)
    }

    /// `byteCount` bytes of `parent` from `origin` as a buffer of their own (`clCreateSubBuffer`).
    /// `origin` must be a multiple of the device's `baseAddressAlignment`.
    init(region parent: OpenCLBuffer, origin: Int, byteCount: Int, context: OpenCLContext, operation: String) throws {
        precondition(parent.parent == nil && origin >= 0 && origin + byteCount <= parent.byteCount,
                     "a region lies inside a buffer that is not itself a region")
        var region = cl_buffer_region(origin: origin, size: max(byteCount, 4))
        var status: cl_int = CL_SUCCESS
        let memory = withUnsafeMutablePointer(to: &region) { region in
            clCreateSubBuffer(parent.memory, cl_mem_flags(CL_MEM_READ_WRITE),
                              cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION), region, &status)
        }
        guard let memory, status == CL_SUCCESS else {
            throw OpenCLError(function: "clCreateSubBuffer", code: context.observed(status),
                              context: "\(operation): \(byteCount) bytes at \(origin) of a \(parent.byteCount)-byte buffer")
        }
        self.memory = memory
        self.byteCount = byteCount
        self.parent = parent
        self.origin = origin
        counter = parent.counter
        int32Range = nil
        int32Values = nil
        countedBytes = 0
        counter.allocated(bytes: 0)
    }

    deinit {
        clReleaseMemObject(memory)
        counter.released(bytes: countedBytes)
    }

    /// The buffer that owns this one's memory (itself, or the parent of a region), and where this
    /// one starts in it, in bytes.
    var root: (memory: cl_mem, origin: Int) { (parent?.memory ?? memory, origin) }
}

extension Tensor {
    /// The `cl_mem` of an OpenCL tensor. Only the OpenCL backend calls this, after validation.
    var deviceMemory: cl_mem { (buffer as! OpenCLBuffer).memory }

    /// The OpenCL buffer of a tensor. Only the OpenCL backend calls this, after validation.
    var openCLBuffer: OpenCLBuffer { buffer as! OpenCLBuffer }
}
