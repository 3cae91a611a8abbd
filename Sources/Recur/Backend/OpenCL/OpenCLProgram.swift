import COpenCL
import Synchronization

/// One argument of a kernel launch, in the kernel's parameter order.
enum KernelArgument {
    /// The tensor's `cl_mem` (a `__global` pointer parameter).
    case tensor(Tensor)
    /// A raw `cl_mem`, for buffers that are not tensors (scratch space).
    case memory(cl_mem)
    /// An `int` parameter; the launch throws if the value does not fit in 32 bits.
    case int(Int)
    /// A `float` parameter.
    case float(Float)
    /// A `__local float*` parameter with room for this many floats.
    case localFloats(Int)
}

/// A built OpenCL program and the kernels made from it.
///
/// `clSetKernelArg` followed by `clEnqueueNDRangeKernel` must not interleave with another
/// thread's on the same `cl_kernel`, so each launch holds this program's lock for both.
final class OpenCLProgram: @unchecked Sendable {
    let name: String
    let program: cl_program
    private let context: OpenCLContext
    private let kernels = Mutex<[String: CachedKernel]>([:])

    private struct CachedKernel: @unchecked Sendable {
        let kernel: cl_kernel
        /// `CL_KERNEL_WORK_GROUP_SIZE`: the most work-items a group of this kernel may have here.
        let maxWorkGroupSize: Int
    }

    /// Takes ownership of a built `program`.
    init(name: String, program: cl_program, context: OpenCLContext) {
        self.name = name
        self.program = program
        self.context = context
    }

    deinit {
        kernels.withLock { kernels in
            for cached in kernels.values { clReleaseKernel(cached.kernel) }
        }
        clReleaseProgram(program)
    }

    /// Enqueues `kernelName` over `globalSize` work-items (one to three dimensions).
    ///
    /// Each global dimension is rounded up to a multiple of the local one, so kernels must guard
    /// their index against the real size. Without `localSize` a one-dimensional launch uses
    /// groups of up to 256, a two-dimensional one 16 x 16, shrunk to what the kernel allows.
    func launch(_ kernelName: String, globalSize: [Int], localSize: [Int]? = nil,
                arguments: [KernelArgument]) throws {
        precondition((1...3).contains(globalSize.count), "a launch has one to three dimensions")
        precondition(localSize.map { $0.count == globalSize.count } ?? true, "local and global ranks differ")
        guard globalSize.allSatisfy({ $0 > 0 }) else { return }
        try kernels.withLock { kernels in
            let cached = try kernel(named: kernelName, in: &kernels)
            for (index, argument) in arguments.enumerated() {
                try setArgument(argument, at: index, of: cached.kernel, kernelName: kernelName)
            }
            let local = localSize ?? Self.defaultLocalSize(dimensions: globalSize.count, limit: cached.maxWorkGroupSize)
            let global = zip(globalSize, local).map { size, group in (size + group - 1) / group * group }
            let status = context.hooked(.enqueue) {
                context.launchingKernels {
                    clEnqueueNDRangeKernel(context.queue, cached.kernel, cl_uint(global.count), nil, global, local,
                                           0, nil, nil)
                }
            }
            try check(status, "clEnqueueNDRangeKernel",
                      "launching \(kernelName) over \(globalSize) in groups of \(local)")
            context.commands.record(.kernelLaunch)
        }
    }

    /// The most work-items one group of `kernelName` may have on this device.
    func maxWorkGroupSize(of kernelName: String) throws -> Int {
        try kernels.withLock { kernels in try kernel(named: kernelName, in: &kernels).maxWorkGroupSize }
    }

    private func kernel(named kernelName: String, in kernels: inout [String: CachedKernel]) throws -> CachedKernel {
        if let cached = kernels[kernelName] { return cached }
        var status: cl_int = CL_SUCCESS
        guard let kernel = clCreateKernel(program, kernelName, &status), status == CL_SUCCESS else {
            throw OpenCLError(function: "clCreateKernel", code: status, context: "making kernel \(kernelName) of \(name)")
        }
        var limit = 0
        let infoStatus = clGetKernelWorkGroupInfo(
            kernel, context.device.id, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
            MemoryLayout<Int>.size, &limit, nil)
        guard infoStatus == CL_SUCCESS else {
            clReleaseKernel(kernel)
            throw OpenCLError(function: "clGetKernelWorkGroupInfo", code: infoStatus,
                              context: "reading the work-group limit of \(kernelName)")
        }
        let cached = CachedKernel(kernel: kernel, maxWorkGroupSize: max(limit, 1))
        kernels[kernelName] = cached
        return cached
    }

    private func setArgument(_ argument: KernelArgument, at index: Int, of kernel: cl_kernel,
                             kernelName: String) throws {
        let position = cl_uint(index)
        let status: cl_int
        switch argument {
        case .tensor(let tensor):
            var memory: cl_mem? = tensor.deviceMemory
            status = clSetKernelArg(kernel, position, MemoryLayout<cl_mem>.size, &memory)
        case .memory(let memory):
            var memory: cl_mem? = memory
            status = clSetKernelArg(kernel, position, MemoryLayout<cl_mem>.size, &memory)
        case .int(let value):
            guard var value32 = Int32(exactly: value) else {
                throw RecurError.invalidArgument(
                    operation: kernelName, detail: "argument \(index) = \(value) does not fit the kernel's 32-bit int")
            }
            status = clSetKernelArg(kernel, position, MemoryLayout<Int32>.size, &value32)
        case .float(var value):
            status = clSetKernelArg(kernel, position, MemoryLayout<Float>.size, &value)
        case .localFloats(let count):
            status = clSetKernelArg(kernel, position, max(count, 1) * MemoryLayout<Float>.size, nil)
        }
        try check(status, "clSetKernelArg", "setting argument \(index) of \(kernelName)")
    }

    private static func defaultLocalSize(dimensions: Int, limit: Int) -> [Int] {
        var local = switch dimensions {
        case 1: [256]
        case 2: [16, 16]
        default: [8, 8, 4]
        }
        while local.reduce(1, *) > limit, let largest = local.indices.max(by: { local[$0] < local[$1] }),
              local[largest] > 1 {
            local[largest] /= 2
        }
        return local
    }
}

// MARK: Building

extension OpenCLContext {
    /// Builds `source` for this context's device, from the binary cache when it holds this exact
    /// source, device, driver and options, else from source (then stores the binary there).
    ///
    /// - Parameters:
    ///   - name: names the program in errors and cache file names.
    ///   - options: compiler options, e.g. `-cl-std=CL1.2 -DREDUCE_GROUP_SIZE=256`.
    /// - Throws: `OpenCLError` from `clBuildProgram` with the compiler's log when the source
    ///   does not compile.
    func buildProgram(source: String, name: String, options: String, cache: ProgramBinaryCache?) throws
        -> OpenCLProgram
    {
        if let code = faults.failure(at: .programBuild) {
            throw OpenCLError(function: "clBuildProgram", code: observed(code),
                              context: "building program \(name) for \(device.name) with options '\(options)'",
                              buildLog: "(no compiler output: the failure was injected by OpenCLFaultInjector)")
        }
        let key = ProgramBinaryCache.key(device: device, options: options, source: source)
        let entry = cache?.load(name: name, key: key)
        if let binary = entry, binary != ProgramBinaryCache.compiledMarker,
           let program = try? programFromBinary(binary, options: options) {
            return OpenCLProgram(name: name, program: program, context: self)
        }
        if entry == nil { KernelCompilationNotice.willCompile(for: device) }
        let program = try programFromSource(source, name: name, options: options)
        if let cache, entry == nil {
            if !cache.keepsBinaries {
                cache.store(ProgramBinaryCache.compiledMarker, name: name, key: key)
            } else if let binary = binary(of: program) {
                cache.store(binary, name: name, key: key)
            }
        }
        return OpenCLProgram(name: name, program: program, context: self)
    }

    private func programFromSource(_ source: String, name: String, options: String) throws -> cl_program {
        var status: cl_int = CL_SUCCESS
        let created: cl_program? = source.withCString { text in
            var sources: [UnsafePointer<CChar>?] = [text]
            var lengths = [source.utf8.count]
            return clCreateProgramWithSource(context, 1, &sources, &lengths, &status)
        }
        guard let program = created, status == CL_SUCCESS else {
            throw OpenCLError(function: "clCreateProgramWithSource", code: status, context: "loading program \(name)")
        }
        var deviceID: cl_device_id? = device.id
        let buildStatus = clBuildProgram(program, 1, &deviceID, options, nil, nil)
        guard buildStatus == CL_SUCCESS else {
            let log = buildLog(of: program)
            clReleaseProgram(program)
            throw OpenCLError(function: "clBuildProgram", code: buildStatus,
                              context: "building program \(name) for \(device.name) with options '\(options)'",
                              buildLog: log)
        }
        return program
    }

    private func programFromBinary(_ binary: [UInt8], options: String) throws -> cl_program {
        var status: cl_int = CL_SUCCESS
        var binaryStatus: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        var length = binary.count
        let created: cl_program? = binary.withUnsafeBufferPointer { bytes in
            var pointers: [UnsafePointer<UInt8>?] = [bytes.baseAddress]
            return clCreateProgramWithBinary(context, 1, &deviceID, &length, &pointers, &binaryStatus, &status)
        }
        guard let program = created, status == CL_SUCCESS, binaryStatus == CL_SUCCESS else {
            if let created { clReleaseProgram(created) }
            throw OpenCLError(function: "clCreateProgramWithBinary", code: status == CL_SUCCESS ? binaryStatus : status)
        }
        let buildStatus = clBuildProgram(program, 1, &deviceID, options, nil, nil)
        guard buildStatus == CL_SUCCESS else {
            clReleaseProgram(program)
            throw OpenCLError(function: "clBuildProgram", code: buildStatus, context: "loading a cached binary")
        }
        return program
    }

    /// The compiler's log for the last build of `program` on this device.
    private func buildLog(of program: cl_program) -> String {
        let info = cl_program_build_info(CL_PROGRAM_BUILD_LOG)
        var size = 0
        guard clGetProgramBuildInfo(program, device.id, info, 0, nil, &size) == CL_SUCCESS, size > 0 else {
            return "(no build log)"
        }
        var bytes = [CChar](repeating: 0, count: size)
        guard clGetProgramBuildInfo(program, device.id, info, size, &bytes, nil) == CL_SUCCESS else {
            return "(no build log)"
        }
        return decodeCString(bytes)
    }

    /// The device binary of a built program, or `nil` if the driver does not provide one.
    private func binary(of program: cl_program) -> [UInt8]? {
        var size = 0
        guard clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil)
            == CL_SUCCESS, size > 0
        else { return nil }
        var binary = [UInt8](repeating: 0, count: size)
        let status = binary.withUnsafeMutableBufferPointer { bytes in
            var pointers: [UnsafeMutablePointer<UInt8>?] = [bytes.baseAddress]
            return pointers.withUnsafeMutableBytes { pointerBytes in
                clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES), pointerBytes.count,
                                 pointerBytes.baseAddress, nil)
            }
        }
        return status == CL_SUCCESS ? binary : nil
    }
}

// MARK: First compilation

/// Tells a program (the CLI) when kernels are about to be compiled for a device because no cache
/// holds them, once per device and process, so that a first run's wait of seconds to minutes
/// comes with a word instead of silence.
public enum KernelCompilationNotice {
    public typealias Handler = @Sendable (OpenCLDevice) -> Void
    private static let state = Mutex<(handler: Handler?, notified: Set<OpenCLDevice>)>((nil, []))

    /// Installs `handler` (nil removes it); it runs on the thread that compiles.
    public static func setHandler(_ handler: Handler?) {
        state.withLock { $0.handler = handler }
    }

    static func willCompile(for device: OpenCLDevice) {
        let handler: Handler? = state.withLock { state in
            guard let handler = state.handler, state.notified.insert(device).inserted else { return nil }
            return handler
        }
        handler?(device)
    }
}
