import CBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The reference backend: plain Swift loops for elementwise work, OpenBLAS (CBLAS) for GEMM.
/// Every OpenCL kernel is tested against it.
public final class CPUBackend: Backend {
    public let kind = BackendKind.cpu
    public let deviceName = "cpu"
    let counter = MemoryCounter()
    /// Released buffers kept for reuse (see `HostBlockCache`).
    let blockCache = HostBlockCache()

    /// Multiply-adds of a recurrent scan's step products (T B G H) from which the scan splits its
    /// batch across the cores; see `forEachBatchPart`.
    let scanSplitMinimumWork: Int
    /// The most parts a scan splits its batch into: the processors online.
    let scanPartLimit: Int

    /// Test hook: `uninitialized` fills its tensors with NaN, so that a value an op reads before
    /// writing it poisons the result.
    let poisonsUninitialized: Bool

    /// A backend on the host. `DeviceSpecification.cpu.makeBackend()` gives one shared instance.
    public init() {
        scanSplitMinimumWork = defaultScanSplitMinimumWork
        scanPartLimit = Self.coreCount
        poisonsUninitialized = false
        Self.useOneBLASThread()
    }

    /// A backend whose `uninitialized` tensors hold NaN (a test hook).
    init(poisoningUninitialized: Bool) {
        scanSplitMinimumWork = defaultScanSplitMinimumWork
        scanPartLimit = Self.coreCount
        poisonsUninitialized = poisoningUninitialized
        Self.useOneBLASThread()
    }

    /// A backend that splits every scan with at least `scanSplitMinimumWork` multiply-adds into
    /// up to `scanPartLimit` parts (tests compare split scans with unsplit ones on any machine).
    init(scanSplitMinimumWork: Int, scanPartLimit: Int) {
        self.scanSplitMinimumWork = scanSplitMinimumWork
        self.scanPartLimit = scanPartLimit
        poisonsUninitialized = false
        Self.useOneBLASThread()
    }

    public var memoryStatistics: MemoryStatistics { counter.current }
    public func resetPeakMemory() { counter.resetPeak() }

    /// Processors online: the most parts a recurrent scan splits its batch into.
    static let coreCount = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    /// Runs OpenBLAS on the calling thread only: the backend splits its GEMMs over the cores
    /// itself (`splitSGEMM`), on the same threads as the recurrent scans. OpenBLAS's own threads
    /// keep spinning in sched_yield for a while after each call, and on two cores they took a
    /// quarter of the time from the scan that followed a weight-gradient GEMM (LSTM, H = 256).
    /// The setting is OpenBLAS's, for the whole process.
    static func useOneBLASThread() {
        _ = oneBLASThread
    }

    private static let oneBLASThread: Void = openblas_set_num_threads(1)

    // MARK: Buffers

    public func zeros(_ shape: Shape, dtype: DType) throws -> Tensor {
        let byteCount = try allocationByteCount("zeros", shape, dtype: dtype)
        let buffer = try HostBuffer(byteCount: byteCount, counter: counter, cache: blockCache, operation: "zeros")
        return Tensor(shape: shape, dtype: dtype, buffer: buffer, backend: self)
    }

    /// Skips the zeroing: a reused block keeps what it held, a new one is untouched (its pages are
    /// then first written by the op that fills it, not by a memset before it).
    public func uninitialized(_ shape: Shape, dtype: DType) throws -> Tensor {
        let byteCount = try allocationByteCount("uninitialized", shape, dtype: dtype)
        let buffer = try HostBuffer(byteCount: byteCount, counter: counter, cache: blockCache, zeroed: false,
                                    operation: "uninitialized")
        if poisonsUninitialized {
            buffer.pointer.initializeMemory(as: Float.self, repeating: .nan, count: byteCount / MemoryLayout<Float>.size)
        }
        return Tensor(shape: shape, dtype: dtype, buffer: buffer, backend: self)
    }


    public func upload(_ values: [Float], shape: Shape) throws -> Tensor {
        try checkUploadCount("upload", values.count, shape)
        let tensor = try zeros(shape, dtype: .float32)
        values.withUnsafeBufferPointer { tensor.hostFloats.update(from: $0.baseAddress!, count: values.count) }
        return tensor
    }

    public func upload(_ values: [Int32], shape: Shape) throws -> Tensor {
        try checkUploadCount("upload", values.count, shape)
        let tensor = try zeros(shape, dtype: .int32)
        values.withUnsafeBufferPointer { tensor.hostInt32s.update(from: $0.baseAddress!, count: values.count) }
        return tensor
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        try checkOperands("download", [tensor])
        return Array(UnsafeBufferPointer(start: tensor.hostFloats, count: tensor.count))
    }

    public func downloadInt32(_ tensor: Tensor) throws -> [Int32] {
        try checkOperands("downloadInt32", [tensor], dtype: .int32)
        return Array(UnsafeBufferPointer(start: tensor.hostInt32s, count: tensor.count))
    }

    public func synchronize() throws {}

    // MARK: Data movement

    public func fill(_ tensor: Tensor, with value: Float) throws {
        try checkOperands("fill", [tensor])
        tensor.hostFloats.update(repeating: value, count: tensor.count)
    }

    public func zero(_ tensors: [Tensor]) throws {
        try checkOperands("zero", tensors)
        for tensor in tensors { tensor.hostFloats.update(repeating: 0, count: tensor.count) }
    }

    public func copy(_ source: Tensor, sourceOffset: Int, into destination: Tensor, destinationOffset: Int,
                     count: Int) throws {
        try checkOperands("copy", [source, destination])
        try checkRange("copy (source)", source, offset: sourceOffset, count: count)
        try checkRange("copy (destination)", destination, offset: destinationOffset, count: count)
        (destination.hostFloats + destinationOffset).update(from: source.hostFloats + sourceOffset, count: count)
    }

    public func copyRows(_ rows: Int, width: Int, from source: Tensor, offset sourceOffset: Int,
                         stride sourceStride: Int, into destination: Tensor, offset destinationOffset: Int,
                         stride destinationStride: Int) throws {
        try checkRowCopy(rows, width: width, source: source, sourceOffset: sourceOffset, sourceStride: sourceStride,
                         destination: destination, destinationOffset: destinationOffset,
                         destinationStride: destinationStride)
        for row in 0..<rows {
            (destination.hostFloats + destinationOffset + row * destinationStride)
                .update(from: source.hostFloats + sourceOffset + row * sourceStride, count: width)
        }
    }

    // MARK: Linear algebra

    public func gemm(m: Int, n: Int, k: Int, alpha: Float, a: MatrixOperand, b: MatrixOperand,
                     beta: Float, c: MatrixOperand) throws {
        try checkGEMM(m: m, n: n, k: k, a: a, b: b, c: c)
        splitSGEMM(transposeA: a.transposed, transposeB: b.transposed, m: m, n: n, k: k, alpha: alpha,
                   a.tensor.hostFloats + a.offset, a.leadingDimension,
                   b.tensor.hostFloats + b.offset, b.leadingDimension,
                   beta: beta, c.tensor.hostFloats + c.offset, c.leadingDimension,
                   minimumWork: scanSplitMinimumWork, partLimit: scanPartLimit)
    }

    // MARK: Elementwise

    public func add(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try checkElementwise("add", [a, b, out])
        let (x, y, z) = (a.hostFloats, b.hostFloats, out.hostFloats)
        for i in 0..<out.count { z[i] = x[i] + y[i] }
    }

    public func multiply(_ a: Tensor, _ b: Tensor, into out: Tensor) throws {
        try checkElementwise("multiply", [a, b, out])
        let (x, y, z) = (a.hostFloats, b.hostFloats, out.hostFloats)
        for i in 0..<out.count { z[i] = x[i] * y[i] }
    }

    public func axpy(alpha: Float, _ x: Tensor, _ y: Tensor) throws {
        try checkElementwise("axpy", [x, y])
        let (source, target) = (x.hostFloats, y.hostFloats)
        for i in 0..<y.count { target[i] += alpha * source[i] }
    }

    public func scale(_ x: Tensor, by alpha: Float) throws {
        try checkOperands("scale", [x])
        let values = x.hostFloats
        for i in 0..<x.count { values[i] *= alpha }
    }

    public func activate(_ f: Activation, _ x: Tensor, into y: Tensor) throws {
        try checkElementwise("activate", [x, y])
        let (input, output) = (x.hostFloats, y.hostFloats)
        switch f {
        case .identity: for i in 0..<x.count { output[i] = input[i] }
        // Lane-wide σ and tanh (`CPUMath+Lanes`): libm's tanhf, through expm1f, was 5% of a G2P
        // training epoch in the attention's combine layer alone.
        case .sigmoid:
            @inline(__always) func chunk(_ j: Int, _ n: Int) {
                (output + j).storeLanes(CPUMath.sigmoid((input + j).loadLanes(n)), n)
            }
            forEachLaneChunk(x.count, chunk)
        case .tanh:
            @inline(__always) func chunk(_ j: Int, _ n: Int) {
                (output + j).storeLanes(CPUMath.tanh((input + j).loadLanes(n)), n)
            }
            forEachLaneChunk(x.count, chunk)
        case .relu: for i in 0..<x.count { output[i] = max(input[i], 0) }
        }
    }

    public func activationBackward(_ f: Activation, output y: Tensor, outputGradient dy: Tensor,
                                   into dx: Tensor) throws {
        try checkElementwise("activationBackward", [y, dy, dx])
        let (output, upstream, result) = (y.hostFloats, dy.hostFloats, dx.hostFloats)
        switch f {
        case .identity: for i in 0..<y.count { result[i] = upstream[i] }
        case .sigmoid: for i in 0..<y.count { result[i] = upstream[i] * output[i] * (1 - output[i]) }
        case .tanh: for i in 0..<y.count { result[i] = upstream[i] * (1 - output[i] * output[i]) }
        case .relu: for i in 0..<y.count { result[i] = output[i] > 0 ? upstream[i] : 0 }
        }
    }

    // MARK: Reductions

    public func sum(_ x: Tensor, alongAxis axis: Int, into out: Tensor) throws {
        let (outer, length, inner) = try checkSum(x, axis: axis, out: out)
        let (input, output) = (x.hostFloats, out.hostFloats)
        output.update(repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for l in 0..<length {
                let row = input + (o * length + l) * inner
                let target = output + o * inner
                for i in 0..<inner { target[i] += row[i] }
            }
        }
    }

    public func sumsOfSquares(_ tensors: [Tensor], into out: Tensor, at index: Int) throws {
        try checkSumsOfSquares(tensors, into: out, at: index)
        for (offset, tensor) in tensors.enumerated() { try sumOfSquares(tensor, into: out, at: index + offset) }
    }

    public func scale(_ tensors: [Tensor], by factors: [Float]) throws {
        try checkScales(tensors, factors)
        for (tensor, factor) in zip(tensors, factors) { try scale(tensor, by: factor) }
    }

    public func sumOfSquares(_ x: Tensor, into out: Tensor, at index: Int) throws {
        try checkOperands("sumOfSquares", [x, out])
        try checkRange("sumOfSquares", out, offset: index, count: 1)
        let values = x.hostFloats
        var total = 0.0
        for i in 0..<x.count { total += Double(values[i]) * Double(values[i]) }
        out.hostFloats[index] = Float(total)
    }

    // MARK: Embedding

    public func gather(rowsOf table: Tensor, ids: Tensor, into out: Tensor) throws {
        let (vocabulary, width, count) = try checkEmbedding("gather", table: table, ids: ids, rows: out)
        try checkIDs("gather", ids, vocabulary: vocabulary)
        let (source, indices, target) = (table.hostFloats, ids.hostInt32s, out.hostFloats)
        for n in 0..<count {
            (target + n * width).update(from: source + Int(indices[n]) * width, count: width)
        }
    }

    public func scatterAdd(_ gradient: Tensor, ids: Tensor, into tableGradient: Tensor) throws {
        let (vocabulary, width, count) = try checkEmbedding(
            "scatterAdd", table: tableGradient, ids: ids, rows: gradient)
        try checkIDs("scatterAdd", ids, vocabulary: vocabulary)
        let (source, indices, target) = (gradient.hostFloats, ids.hostInt32s, tableGradient.hostFloats)
        for n in 0..<count {
            let row = target + Int(indices[n]) * width
            let update = source + n * width
            for d in 0..<width { row[d] += update[d] }
        }
    }

    // MARK: Checks

    private func checkElementwise(_ operation: String, _ tensors: [Tensor]) throws {
        try checkOperands(operation, tensors)
        try checkSameCount(operation, tensors)
    }

    private func checkIDs(_ operation: String, _ ids: Tensor, vocabulary: Int) throws {
        let indices = ids.hostInt32s
        for n in 0..<ids.count where indices[n] < 0 || Int(indices[n]) >= vocabulary {
            throw RecurError.invalidArgument(
                operation: operation, detail: "id \(indices[n]) at position \(n) outside 0..<\(vocabulary)")
        }
    }
}

/// Scalar math shared by the CPU paths.
enum CPUMath {
    /// σ(x) = 1 / (1 + e^-x), written to stay finite for large |x|.
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        if x >= 0 {
            return 1 / (1 + expf(-x))
        }
        let e = expf(x)
        return e / (1 + e)
    }
}
