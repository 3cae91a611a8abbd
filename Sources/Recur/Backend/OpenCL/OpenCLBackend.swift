import CCLBlast
import COpenCL
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A family of kernels: one `Kernels/<name>.cl` file (or several, in order), built as one
/// program with `common.cl` prepended. Other files add families with
/// `extension KernelFamily { static let ... }`.
struct KernelFamily: Hashable, Sendable {
    /// Names the program in errors and cache file names.
    let name: String
    /// The files of the program after `common.cl`, without `.cl`: keys into `EmbeddedKernels.sources`.
    let files: [String]
    /// Source placed between `common.cl` and the files (generated definitions the files use).
    let prelude: String

    /// The family of `Kernels/<name>.cl` alone.
    init(name: String) {
        self.init(name: name, files: [name], prelude: "")
    }

    init(name: String, files: [String], prelude: String) {
        self.name = name
        self.files = files
        self.prelude = prelude
    }

    static let elementwise = KernelFamily(name: "elementwise")
    static let reduce = KernelFamily(name: "reduce")
    static let embedding = KernelFamily(name: "embedding")
}

/// The OpenCL backend: CLBlast for GEMM, Recur's own kernels (`Kernels/*.cl`) for the rest.
/// Every op matches `CPUBackend` within float32 rounding.
///
/// One backend owns one context and one in-order queue on its device; ops are enqueued and run
/// in order, `synchronize()` waits for them, and downloads wait implicitly. Programs are compiled
/// on first use, once per backend, and their binaries are kept on disk (see
/// `ProgramBinaryCache`), so use `OpenCLBackend.shared(for:)` to share one backend per device.
/// The backend may be used from several threads.
public final class OpenCLBackend: Backend {
    public let kind = BackendKind.opencl
    /// The device this backend runs on.
    public let device: OpenCLDevice
    public var deviceName: String { device.name }
    public var memoryStatistics: MemoryStatistics { counter.current }
    public func resetPeakMemory() { counter.resetPeak() }
    /// Test hook that makes chosen OpenCL calls of this backend fail (see `OpenCLFaultInjector`).
    /// Use a backend of your own for it, not the shared one other code is using.
    public var faultInjector: OpenCLFaultInjector { context.faults }
    /// Whether the device has reported itself gone (`CL_DEVICE_NOT_AVAILABLE`), really or by
    /// injection. A lost backend stays lost: every later op fails; make a new backend.
    public var isDeviceLost: Bool { context.isDeviceLost }

    let context: OpenCLContext
    let counter = MemoryCounter()
    private let binaryCache: ProgramBinaryCache?
    /// Built programs by family and the options they add to `buildOptions`.
    private let programs = Mutex<[ProgramKey: OpenCLProgram]>([:])

    private struct ProgramKey: Hashable {
        let family: KernelFamily
        let options: String
    }
    /// Options every family is built with: the OpenCL C version all devices accept, and the
    /// tunables chosen for this device.
    let buildOptions: String

    /// Work-items per group in the reductions (`REDUCE_GROUP_SIZE`): a power of two, at most 256.
    let reduceGroupSize: Int
    /// Partial sums of stage 1 of `sumsOfSquares` (`groupSlots` tensors' worth). Internal scratch,
    /// not counted in `memoryStatistics`; the lock keeps both stages of one call adjacent on the
    /// queue.
    let sumOfSquaresPartials: Mutex<OpenCLBuffer>  // [groupSlots * maximumPartials]
    /// Stage-1 groups of one tensor's sum of squares, at most.
    let maximumPartials: Int
    /// The persistent scans' policy, probe verdicts and counters (OpenCLBackend+PersistentScans).
    let persistentScans = Mutex(PersistentScanState())
    /// The grid-barrier state of persistent launches; the lock runs them one at a time.
    let gridSync: Mutex<GridSyncBuffer>
    /// The ones `onesVector(count:)` hands out, grown as needed. Internal scratch, not counted in
    /// `memoryStatistics`.
    private let cachedOnes = Mutex<Tensor?>(nil)

    /// GEMM parameters `recur tune` saved for this device and driver that were installed in
    /// CLBlast when the backend was made (see `GEMMParameterStore`).
    public let tunedGEMMParameters: [GEMMKernelParameters]
    /// Why saved GEMM parameters for this device were ignored, if they were.
    public let tunedGEMMWarnings: [String]

    /// Opens a context and a queue on `device`. Compiles nothing yet.
    ///
    /// With `loadingTunedGEMMParameters` (the default), GEMM parameters saved for this device
    /// and driver in `GEMMParameterStore.standard` are installed in CLBlast; an unusable file is
    /// ignored, with the reason in `tunedGEMMWarnings` and on standard error.
    public init(device: OpenCLDevice, loadingTunedGEMMParameters: Bool = true) throws {
        self.device = device
        context = try OpenCLContext(device: device)
        binaryCache = ProgramBinaryCache.standard.map { standard in
            // PoCL caches compiled kernels by itself (POCL_CACHE_DIR, else ~/.cache/pocl).
            ProgramBinaryCache(directory: standard.directory, keepsBinaries: !device.isPoCL)
        }
        let saved = loadingTunedGEMMParameters
            ? GEMMParameterStore.standard?.applySaved(to: device) : nil
        tunedGEMMParameters = saved?.installed ?? []
        tunedGEMMWarnings = saved?.warnings ?? []
        for warning in tunedGEMMWarnings {
            var line = Array("warning: \(warning)\n".utf8)
            #if canImport(Glibc)
            _ = Glibc.write(2, &line, line.count)
            #elseif canImport(Darwin)
            _ = Darwin.write(2, &line, line.count)
            #endif
        }
        var groupSize = 1
        while groupSize * 2 <= min(256, device.maxWorkGroupSize) { groupSize *= 2 }
        reduceGroupSize = groupSize
        buildOptions = "-cl-std=CL1.2 -DREDUCE_GROUP_SIZE=\(groupSize) \(RecurrentTiling(device: device).buildOptions)"
        // Enough groups to give every compute unit a few; a fixed count per device keeps the
        // summation order, and so the result, the same from run to run.
        maximumPartials = min(1024, max(1, device.computeUnits) * 8)
        sumOfSquaresPartials = Mutex(try OpenCLBuffer(
            context: context, byteCount: Self.groupSlots * maximumPartials * MemoryLayout<Float>.size,
            counter: MemoryCounter(), operation: "OpenCLBackend.init"))
        gridSync = Mutex(try GridSyncBuffer(context: context))
    }

    /// A vector of at least `count` ones for sums of rows by GEMM (the bias gradients of a
    /// recurrent backward), filled once and kept: no fill and no launch per call. Callers only read it.
    func onesVector(count: Int) throws -> Tensor {
        try cachedOnes.withLock { cached in
            if let ones = cached, ones.count >= count { return ones }
            // Room to grow: batches of one model differ in length.
            let length = max(count, 2 * (cached?.count ?? 0))
            let buffer = try OpenCLBuffer(context: context, byteCount: length * MemoryLayout<Float>.size,
                                          counter: MemoryCounter(), operation: "onesVector")
            let ones = Tensor(shape: [length], dtype: .float32, buffer: buffer, backend: self)
            try fill(ones, with: 1)
            cached = ones
            return ones
        }
    }

    private static let sharedBackends = Mutex<[OpenCLDevice: OpenCLBackend]>([:])

    /// The process-wide backend for `device`, made on first request, so that every caller shares
    /// one context and its compiled programs.
    public static func shared(for device: OpenCLDevice) throws -> OpenCLBackend {
        try sharedBackends.withLock { backends in
            if let backend = backends[device] { return backend }
            let backend = try OpenCLBackend(device: device)
            backends[device] = backend
            return backend
        }
    }

    /// Runs `body`, which enqueues ops on this backend, and returns their time on the device in
    /// nanoseconds, read from profiling events: from when all earlier work had finished to when
    /// the last op `body` enqueued finished. Blocks until then.
    ///
    /// ```swift
    /// let nanoseconds = try backend.measureDeviceNanoseconds {
    ///     try backend.matmul(a, b, into: c)
    /// }
    /// ```
    /// Kernels compile on first use: run the op once before timing it.
    public func measureDeviceNanoseconds(_ body: () throws -> Void) throws -> UInt64 {
        try context.measureDeviceNanoseconds(body)
    }

    // MARK: Programs

    /// The built program of `family`, compiled on first request; `options` (e.g. `-DNAME=value`)
    /// are added to `buildOptions` and make a variant of its own.
    func program(_ family: KernelFamily, options: String = "") throws -> OpenCLProgram {
        let key = ProgramKey(family: family, options: options)
        return try programs.withLock { programs in
            if let program = programs[key] { return program }
            // #line keeps compiler messages pointing at the right file and line.
            var source = ""
            for file in ["common"] + family.files {
                guard let body = EmbeddedKernels.sources[file] else {
                    throw RecurError.invalidArgument(
                        operation: "program", detail: "no kernel file Kernels/\(file).cl in this build")
                }
                source += "#line 1 \"\(file).cl\"\n\(body)\n"
                if file == "common", !family.prelude.isEmpty {
                    source += "#line 1 \"\(family.name) operands (generated)\"\n\(family.prelude)"
                }
            }
            let program = try buildProgram(source: source, name: family.name,
                                           options: options.isEmpty ? buildOptions : "\(buildOptions) \(options)")
            programs[key] = program
            return program
        }
    }

    /// Builds any OpenCL C `source` for this backend's device, through the on-disk binary cache.
    /// Throws `OpenCLError` with the compiler's log when it does not compile.
    func buildProgram(source: String, name: String, options: String) throws -> OpenCLProgram {
        try context.buildProgram(source: source, name: name, options: options, cache: binaryCache)
    }

    /// Enqueues `kernel` of `family` over `count` work-items in one dimension.
    func launch(_ family: KernelFamily, _ kernel: String, count: Int, arguments: [KernelArgument]) throws {
        try program(family).launch(kernel, globalSize: [count], arguments: arguments)
    }

    // MARK: Buffers

    public func zeros(_ shape: Shape, dtype: DType) throws -> Tensor {
        let operation = "zeros"
        let buffer = try makeBuffer(shape, dtype: dtype, operation: operation, int32Range: dtype == .int32 ? 0...0 : nil)
        try enqueueZeroing(buffer, operation: operation)
        return Tensor(shape: shape, dtype: dtype, buffer: buffer, backend: self)
    }

    /// One zeroed buffer (zeroed either way: a fill is cheap here), cut into regions
    /// (`clCreateSubBuffer`) that start at the device's base address alignment; each tensor keeps
    /// the buffer alive. `gemmBatched` finds the shared buffer through the regions.
    public func tensorsInOneAllocation(_ shapes: [Shape], zeroed: Bool) throws -> [Tensor] {
        let operation = "tensorsInOneAllocation"
        let alignment = device.baseAddressAlignment
        var origins: [Int] = []
        var end = 0
        for shape in shapes {
            let byteCount = try allocationByteCount(operation, shape, dtype: .float32)
            let origin = (end + alignment - 1) / alignment * alignment
            origins.append(origin)
            end = origin + byteCount
        }
        let whole = try zeros([end / MemoryLayout<Float>.size], dtype: .float32)
        let parent = whole.openCLBuffer
        return try zip(shapes, origins).map { shape, origin in
            let region = try OpenCLBuffer(region: parent, origin: origin, byteCount: shape.count * MemoryLayout<Float>.size,
                                          context: context, operation: operation)
            return Tensor(shape: shape, dtype: .float32, buffer: region, backend: self)
        }
    }

    public func upload(_ values: [Float], shape: Shape) throws -> Tensor {
        try checkUploadCount("upload", values.count, shape)
        let buffer = try makeBuffer(shape, dtype: .float32, operation: "upload")
        try write(values, into: buffer)
        return Tensor(shape: shape, dtype: .float32, buffer: buffer, backend: self)
    }

    public func upload(_ values: [Int32], shape: Shape) throws -> Tensor {
        try checkUploadCount("upload", values.count, shape)
        let range = values.min().flatMap { low in values.max().map { low...$0 } }
        let buffer = try makeBuffer(shape, dtype: .int32, operation: "upload", int32Range: range, int32Values: values)
        try write(values, into: buffer)
        return Tensor(shape: shape, dtype: .int32, buffer: buffer, backend: self)
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        try checkOperands("download", [tensor])
        return try read(tensor, as: Float.self)
    }

    public func downloadInt32(_ tensor: Tensor) throws -> [Int32] {
        try checkOperands("downloadInt32", [tensor], dtype: .int32)
        return try read(tensor, as: Int32.self)
    }

    public func synchronize() throws {
        try context.finish()
    }

    // MARK: Data movement

    public func fill(_ tensor: Tensor, with value: Float) throws {
        try checkOperands("fill", [tensor])
        try checkIndexable("fill", [tensor])
        try launch(.elementwise, "fill", count: tensor.count,
                   arguments: [.tensor(tensor), .float(value), .int(tensor.count)])
    }

    public func copy(_ source: Tensor, sourceOffset: Int, into destination: Tensor, destinationOffset: Int,
                     count: Int) throws {
        try checkOperands("copy", [source, destination])
        try checkRange("copy (source)", source, offset: sourceOffset, count: count)
        try checkRange("copy (destination)", destination, offset: destinationOffset, count: count)
        try checkIndexable("copy", [source, destination])
        guard count > 0 else { return }
        let overlapping = source.buffer === destination.buffer
            && sourceOffset < destinationOffset + count && destinationOffset < sourceOffset + count
        if overlapping {
            // Parallel work-items would read elements others already overwrote: go through a copy.
            guard sourceOffset != destinationOffset else { return }
            let staging = try zeros([count])
            try copyRange(source, sourceOffset, staging, 0, count)
            try copyRange(staging, 0, destination, destinationOffset, count)
        } else {
            try copyRange(source, sourceOffset, destination, destinationOffset, count)
        }
    }

    private func copyRange(_ source: Tensor, _ sourceOffset: Int, _ destination: Tensor, _ destinationOffset: Int,
                           _ count: Int) throws {
        try launch(.elementwise, "copy_range", count: count, arguments: [
            .tensor(source), .int(sourceOffset), .tensor(destination), .int(destinationOffset), .int(count),
        ])
    }

    public func copyRows(_ rows: Int, width: Int, from source: Tensor, offset sourceOffset: Int,
                         stride sourceStride: Int, into destination: Tensor, offset destinationOffset: Int,
                         stride destinationStride: Int) throws {
        try checkRowCopy(rows, width: width, source: source, sourceOffset: sourceOffset, sourceStride: sourceStride,
                         destination: destination, destinationOffset: destinationOffset,
                         destinationStride: destinationStride)
        try checkIndexable("copyRows", [source, destination])
        guard rows > 0, width > 0 else { return }
        try launch(.elementwise, "copy_rows", count: rows * width, arguments: [
            .tensor(source), .int(sourceOffset), .int(sourceStride), .tensor(destination), .int(destinationOffset),
            .int(destinationStride), .int(width), .int(rows * width),
        ])
    }

    // MARK: Linear algebra

    public func gemm(m: Int, n: Int, k: Int, alpha: Float, a: MatrixOperand, b: MatrixOperand,
                     beta: Float, c: MatrixOperand) throws {
        try checkGEMM(m: m, n: n, k: k, a: a, b: b, c: c)
        var queue: cl_command_queue? = context.queue
        if let code = context.faults.failure(at: .enqueue) {
            throw OpenCLError(function: "CLBlastSgemm", code: context.observed(code),
                              context: "computing a \(m)x\(k) by \(k)x\(n) GEMM")
        }
        let status = context.launchingKernels {
            CLBlastSgemm(
                CLBlastLayoutRowMajor,
                a.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                b.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                m, n, k, alpha,
                a.tensor.deviceMemory, a.offset, a.leadingDimension,
                b.tensor.deviceMemory, b.offset, b.leadingDimension,
                beta, c.tensor.deviceMemory, c.offset, c.leadingDimension,
                &queue, nil)
        }
        try check(status, "CLBlastSgemm", "computing a \(m)x\(k) by \(k)x\(n) GEMM")
        context.commands.record(.gemmCall)
    }

    /// C_i = alpha op(A_i) op(B_i) + beta C_i for each i, the same sizes, transposes and leading
    /// dimensions for all: one `CLBlastSgemmBatched` where every A_i lies in one buffer (the same
    /// tensor, or regions of one `tensorsInOneAllocation`), every B_i in one and every C_i in one;
    /// else one GEMM after the other. No C_i may overlap another.
    func gemmBatched(m: Int, n: Int, k: Int, alpha: Float, _ operands: [(a: MatrixOperand, b: MatrixOperand, c: MatrixOperand)],
                     beta: Float) throws {
        guard let first = operands.first else { return }
        for operand in operands {
            try checkGEMM(m: m, n: n, k: k, a: operand.a, b: operand.b, c: operand.c)
        }
        let sameLayout = operands.allSatisfy {
            $0.a.transposed == first.a.transposed && $0.b.transposed == first.b.transposed
                && $0.a.leadingDimension == first.a.leadingDimension && $0.b.leadingDimension == first.b.leadingDimension
                && $0.c.leadingDimension == first.c.leadingDimension
        }
        let a = operands.map { Self.root(of: $0.a) }
        let b = operands.map { Self.root(of: $0.b) }
        let c = operands.map { Self.root(of: $0.c) }
        let shared = [a, b, c].allSatisfy { list in list.allSatisfy { $0.memory == list[0].memory } }
        guard operands.count > 1, sameLayout, shared else {
            for operand in operands {
                try gemm(m: m, n: n, k: k, alpha: alpha, a: operand.a, b: operand.b, beta: beta, c: operand.c)
            }
            return
        }
        var queue: cl_command_queue? = context.queue
        if let code = context.faults.failure(at: .enqueue) {
            throw OpenCLError(function: "CLBlastSgemmBatched", code: context.observed(code),
                              context: "computing \(operands.count) batched \(m)x\(k) by \(k)x\(n) GEMMs")
        }
        let alphas = [Float](repeating: alpha, count: operands.count)
        let betas = [Float](repeating: beta, count: operands.count)
        let status = context.launchingKernels {
            CLBlastSgemmBatched(
                CLBlastLayoutRowMajor,
                first.a.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                first.b.transposed ? CLBlastTransposeYes : CLBlastTransposeNo,
                m, n, k, alphas,
                a[0].memory, a.map(\.offset), first.a.leadingDimension,
                b[0].memory, b.map(\.offset), first.b.leadingDimension,
                betas, c[0].memory, c.map(\.offset), first.c.leadingDimension,
                operands.count, &queue, nil)
        }
        try check(status, "CLBlastSgemmBatched", "computing \(operands.count) batched \(m)x\(k) by \(k)x\(n) GEMMs")
        context.commands.record(.gemmCall)
    }

    /// The buffer that owns `operand`'s memory and the operand's element offset within it.
    private static func root(of operand: MatrixOperand) -> (memory: cl_mem, offset: Int) {
        let root = operand.tensor.openCLBuffer.root
        return (root.memory, root.origin / MemoryLayout<Float>.size + operand.offset)
    }

    // MARK: Elementwise

    public func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try checkElementwise("add", [a, b, out])
        try launch(.elementwise, "add", count: out.count,
                   arguments: [.tensor(a), .tensor(b), .tensor(out), .int(out.count)])
    }

    public func multiply(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try checkElementwise("multiply", [a, b, out])
        try launch(.elementwise, "multiply", count: out.count,
                   arguments: [.tensor(a), .tensor(b), .tensor(out), .int(out.count)])
    }

    public func axpy(alpha: Float, _ x: Tensor, _ y: Tensor) throws {
        try checkElementwise("axpy", [x, y])
        try launch(.elementwise, "axpy", count: y.count,
                   arguments: [.float(alpha), .tensor(x), .tensor(y), .int(y.count)])
    }

    public func scale(_ x: Tensor, by alpha: Float) throws {
        try checkOperands("scale", [x])
        try checkIndexable("scale", [x])
        try launch(.elementwise, "scale", count: x.count, arguments: [.tensor(x), .float(alpha), .int(x.count)])
    }

    public func activate(_ f: Activation, _ x: Tensor, into y: Tensor) throws {
        try checkElementwise("activate", [x, y])
        let kernel: String
        switch f {
        case .identity:
            if x.buffer !== y.buffer { try copyRange(x, 0, y, 0, x.count) }
            return
        case .sigmoid: kernel = "sigmoid_forward"
        case .tanh: kernel = "tanh_forward"
        case .relu: kernel = "relu_forward"
        }
        try launch(.elementwise, kernel, count: x.count, arguments: [.tensor(x), .tensor(y), .int(x.count)])
    }

    public func activationBackward(_ f: Activation, output y: Tensor, outputGradient dy: Tensor,
                                   into dx: Tensor) throws {
        try checkElementwise("activationBackward", [y, dy, dx])
        let kernel: String
        switch f {
        case .identity:
            if dy.buffer !== dx.buffer { try copyRange(dy, 0, dx, 0, dy.count) }
            return
        case .sigmoid: kernel = "sigmoid_backward"
        case .tanh: kernel = "tanh_backward"
        case .relu: kernel = "relu_backward"
        }
        try launch(.elementwise, kernel, count: y.count,
                   arguments: [.tensor(y), .tensor(dy), .tensor(dx), .int(y.count)])
    }

    // MARK: Reductions

    public func sum(_ x: Tensor, alongAxis axis: Int, into out: Tensor) throws {
        let (outer, length, inner) = try checkSum(x, axis: axis, out: out)
        try checkIndexable("sum", [x, out])
        let outputs = outer * inner
        let arguments: [KernelArgument] = [.tensor(x), .tensor(out), .int(outer), .int(length), .int(inner)]
        // One work-item per output leaves most of the device idle when outputs are few; then a
        // whole group shares each output's row, if the row is long enough to split.
        let fewOutputsWithLongRows = outputs < 4096 && length >= 64
        if fewOutputsWithLongRows {
            try program(.reduce).launch(
                "sum_axis_per_group", globalSize: [outputs * reduceGroupSize], localSize: [reduceGroupSize],
                arguments: arguments)
        } else {
            try launch(.reduce, "sum_axis_per_item", count: outputs, arguments: arguments)
        }
    }

    /// The one-tensor case of `sumsOfSquares` (two launches, in the same order).
    public func sumOfSquares(_ x: Tensor, into out: Tensor, at index: Int) throws {
        try checkOperands("sumOfSquares", [x, out])
        try checkRange("sumOfSquares", out, offset: index, count: 1)
        try sumsOfSquares([x], into: out, at: index)
    }

    // MARK: Embedding

    public func gather(rowsOf table: Tensor, ids: Tensor, into out: Tensor) throws {
        let (vocabulary, width, count) = try checkEmbedding("gather", table: table, ids: ids, rows: out)
        try checkIndexable("gather", [table, ids, out])
        try checkIDs("gather", ids, vocabulary: vocabulary)
        try launch(.embedding, "embedding_gather", count: count * width, arguments: [
            .tensor(table), .tensor(ids), .tensor(out), .int(count), .int(width), .int(vocabulary),
        ])
    }

    /// Deterministic: each (table row, column) is summed by one work-item, over the positions of
    /// its id in increasing order, so the result is the same every run and equals the CPU
    /// backend's to the bit (it adds in the same order). The positions are grouped by id on the
    /// host (`EmbeddingPositions`), from the ids the backend kept when they were uploaded (read
    /// back only for ids a device op made), and sent in one buffer; a device sort would take many
    /// launches for the same list. That buffer is scratch, not counted in `memoryStatistics`.
    public func scatterAdd(_ gradient: Tensor, ids: Tensor, into tableGradient: Tensor) throws {
        let operation = "scatterAdd"
        let (vocabulary, width, count) = try checkEmbedding(
            operation, table: tableGradient, ids: ids, rows: gradient)
        try checkIndexable(operation, [tableGradient, ids, gradient])
        let values = try ids.openCLBuffer.int32Values ?? read(ids, as: Int32.self)
        let positions = try EmbeddingPositions(ids: values, vocabulary: vocabulary, operation: operation)
        guard count > 0 else { return }
        let packed = try positions.packed.withUnsafeBytes { bytes in
            try OpenCLBuffer(context: context, byteCount: bytes.count, counter: MemoryCounter(), contents: bytes,
                             operation: operation)
        }
        // The packed buffer is released when this returns; OpenCL keeps it until the kernel is done.
        try withExtendedLifetime(packed) {
            try launch(.embedding, "embedding_scatter_add", count: positions.rowCount * width, arguments: [
                .tensor(gradient), .memory(packed.memory), .tensor(tableGradient),
                .int(positions.rowCount), .int(width), .int(vocabulary),
            ])
        }
    }

    // MARK: Host transfers

    private func makeBuffer(_ shape: Shape, dtype: DType, operation: String, int32Range: ClosedRange<Int32>? = nil,
                            int32Values: [Int32]? = nil) throws -> OpenCLBuffer {
        let byteCount = try allocationByteCount(operation, shape, dtype: dtype)
        return try OpenCLBuffer(context: context, byteCount: byteCount, counter: counter,
                                int32Range: int32Range, int32Values: int32Values, operation: operation)
    }

    /// Copies `values` into `buffer`, waiting until the copy is done (the array may go away).
    private func write<Element>(_ values: [Element], into buffer: OpenCLBuffer) throws {
        let byteCount = values.count * MemoryLayout<Element>.stride
        let status = context.hooked(.transfer) {
            values.withUnsafeBytes { bytes in
                clEnqueueWriteBuffer(context.queue, buffer.memory, cl_bool(CL_TRUE), 0, byteCount, bytes.baseAddress,
                                     0, nil, nil)
            }
        }
        try checkAllocation(status, "clEnqueueWriteBuffer", operation: "upload", bytes: byteCount)
        context.commands.record(.hostSynchronization)
    }

    /// Zeroes a buffer in queue order, without waiting (a blocking write would drain the queue
    /// first): a new tensor of `zeros`, or scratch. A first touch can report the device out of
    /// memory (drivers allocate lazily).
    func enqueueZeroing(_ buffer: OpenCLBuffer, operation: String) throws {
        var zero: UInt32 = 0
        let status = context.hooked(.transfer) {
            clEnqueueFillBuffer(context.queue, buffer.memory, &zero, MemoryLayout<UInt32>.size, 0, buffer.byteCount,
                                0, nil, nil)
        }
        try checkAllocation(status, "clEnqueueFillBuffer", operation: operation, bytes: buffer.byteCount)
        context.commands.record(.fill)
    }

    /// Reads the first `count` ints of an internal buffer, after every op enqueued before has
    /// finished.
    func readInt32(_ buffer: OpenCLBuffer, count: Int) throws -> [Int32] {
        var status: cl_int = CL_SUCCESS
        let values = [Int32](unsafeUninitializedCapacity: count) { elements, initialized in
            status = context.hooked(.transfer) {
                clEnqueueReadBuffer(context.queue, buffer.memory, cl_bool(CL_TRUE), 0, count * MemoryLayout<Int32>.size,
                                    elements.baseAddress, 0, nil, nil)
            }
            initialized = status == CL_SUCCESS ? count : 0
        }
        try check(status, "clEnqueueReadBuffer", "reading \(count) ints of backend scratch")
        context.commands.record(.hostSynchronization)
        return values
    }

    /// Reads the whole tensor back, after every op enqueued before has finished.
    private func read<Element>(_ tensor: Tensor, as _: Element.Type) throws -> [Element] {
        let byteCount = tensor.count * MemoryLayout<Element>.stride
        var status: cl_int = CL_SUCCESS
        let values = [Element](unsafeUninitializedCapacity: tensor.count) { elements, initialized in
            status = context.hooked(.transfer) {
                clEnqueueReadBuffer(context.queue, tensor.deviceMemory, cl_bool(CL_TRUE), 0, byteCount,
                                    elements.baseAddress, 0, nil, nil)
            }
            initialized = status == CL_SUCCESS ? tensor.count : 0
        }
        try check(status, "clEnqueueReadBuffer", "downloading \(tensor)")
        context.commands.record(.hostSynchronization)
        return values
    }

    /// Like `check`, but reports the out-of-memory codes a first touch of a new buffer can
    /// return (drivers allocate lazily) as `RecurError.outOfMemory`.
    private func checkAllocation(_ status: cl_int, _ function: String, operation: String, bytes: Int) throws {
        guard status != CL_SUCCESS else { return }
        let error = OpenCLError(function: function, code: status, context: "\(operation) of \(bytes) bytes")
        if error.isOutOfMemory {
            throw RecurError.outOfMemory(operation: operation, bytes: bytes, detail: error.description)
        }
        throw error
    }

    // MARK: Checks

    private func checkElementwise(_ operation: String, _ tensors: [Tensor]) throws {
        try checkOperands(operation, tensors)
        try checkSameCount(operation, tensors)
        try checkIndexable(operation, tensors)
    }

    /// Kernels index with 32-bit ints: throws for tensors with more elements than that reaches.
    func checkIndexable(_ operation: String, _ tensors: [Tensor]) throws {
        for tensor in tensors where tensor.count > Int(Int32.max) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "\(tensor) has more than \(Int32.max) elements, the kernels' index limit")
        }
    }

    /// Throws like the CPU backend for an id outside `0 ..< vocabulary`. Uses the id range
    /// recorded at upload, reading the ids back only when it is unknown or out of range (to name
    /// the offending position).
    private func checkIDs(_ operation: String, _ ids: Tensor, vocabulary: Int) throws {
        let withinVocabulary = { (range: ClosedRange<Int32>) in range.lowerBound >= 0 && Int(range.upperBound) < vocabulary }
        if let range = ids.openCLBuffer.int32Range, withinVocabulary(range) { return }
        let values = try read(ids, as: Int32.self)
        if let position = values.firstIndex(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw RecurError.invalidArgument(
                operation: operation, detail: "id \(values[position]) at position \(position) outside 0..<\(vocabulary)")
        }
    }
}
