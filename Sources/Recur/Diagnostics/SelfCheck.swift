// `recur verify`'s built-in check: every op of a backend on seeded random data, at sizes that
// are not multiples of any tile or vector width; the base and recurrent ops against the CPU
// backend, the training ops against the float64 `TrainingReference` (TrainingOpCheck.swift).

/// Runs every backend op on a device and on the CPU backend with the same random inputs; the
/// losses and optimizer steps (``trainingOps()``) are held to the float64 ``TrainingReference``.
public struct SelfCheck {
    public let backend: any Backend
    public let reference: CPUBackend
    var random: SeededRandom

    /// Float32 ops that do the same arithmetic in the same order (copies, adds, scales).
    public static let exactTolerance = 1e-6
    /// Ops whose result depends on summation order or a device's `exp` (GEMM, reductions,
    /// transcendental functions): a few float32 roundings per term.
    public static let roundingTolerance = 1e-5

    public init(backend: any Backend, seed: UInt64 = 0x5EED) {
        self.backend = backend
        reference = CPUBackend()
        random = SeededRandom(seed: seed)
    }

    /// Every base op: data movement, GEMM in all transpose modes with views, elementwise,
    /// activations and their derivatives, reductions, embedding gather and scatter-add.
    public mutating func baseOps() throws -> [Comparison] {
        var results: [Comparison] = []
        for count in [1, 7, 257] {
            results += try elementwise(count: count)
        }
        for (m, n, k) in [(1, 1, 1), (7, 33, 5), (33, 7, 257), (64, 96, 48)] {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    results.append(try gemm(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB))
                }
            }
        }
        for axis in 0..<3 {
            results.append(try sum(shape: [7, 33, 5], axis: axis))
        }
        results.append(try sumOfSquares(count: 1031))
        results += try embedding(vocabulary: 33, width: 7, count: 57)
        return results
    }

    /// Every cell's whole-sequence forward and backward op at small odd sizes, with lengths and a
    /// recurrent dropout mask, for one scan and for a bidirectional pair (both directions in one
    /// op, their buffers in shared allocations as a layer keeps them, so that a device batches
    /// their GEMMs): one comparison per written tensor (output, final state, workspace, every
    /// gradient).
    /// The reference runs the same request on the CPU.
    public mutating func recurrentOps() throws -> [Comparison] {
        var results: [Comparison] = []
        // The cells this backend runs: the CPU every one, OpenCL those with kernels.
        let cells = RecurrentCell.allCases.filter { backend.kind == .cpu || OpenCLCellKernels.exist(for: $0) }
        // Each cell gets one padding side and direction, varied along the registry.
        for (index, cell) in cells.enumerated() {
            let check = RecurrentParityCase(
                cell: cell, steps: 5, batch: 3, inputSize: 4, hiddenSize: 7, lengths: [5, 2, 4],
                padding: index % 3 == 2 ? .pre : .post, reverse: index % 3 == 1,
                recurrentDropout: true, cellClip: 0.8, stridedOutput: true)
            results += try check.compare(backend, with: reference, seed: random.next(),
                                         tolerance: SelfCheck.roundingTolerance)
        }
        for (index, cell) in cells.enumerated() {
            let pair = RecurrentParityCase(
                cell: cell, steps: 5, batch: 3, inputSize: 4, hiddenSize: 7, lengths: [3, 5, 1],
                padding: index.isMultiple(of: 2) ? .post : .pre, bidirectional: true,
                sharedAllocations: true, recurrentDropout: true, cellClip: 0.8, recordHiddenStateGradients: true)
            results += try pair.compare(backend, with: reference, seed: random.next(),
                                        tolerance: SelfCheck.roundingTolerance)
        }
        return results
    }

    // MARK: Inputs

    /// The same random values uploaded to the device and to the reference.
    private mutating func pair(_ shape: Shape, bound: Double = 1) throws -> (device: Tensor, reference: Tensor) {
        let values = (0..<shape.count).map { _ in random.uniform(bound: bound) }
        return (try backend.upload(values, shape: shape), try reference.upload(values, shape: shape))
    }

    private func compare(_ name: String, _ device: Tensor, _ expected: Tensor, tolerance: Double) throws -> Comparison {
        Comparison(name, actual: try backend.download(device), expected: try reference.download(expected),
                   tolerance: tolerance)
    }

    // MARK: Checks

    private mutating func elementwise(count: Int) throws -> [Comparison] {
        let shape: Shape = [count]
        let (a, aRef) = try pair(shape)
        let (b, bRef) = try pair(shape)
        var results: [Comparison] = []
        func check(_ name: String, tolerance: Double = SelfCheck.exactTolerance,
                   _ body: (any Backend, Tensor, Tensor, Tensor) throws -> Void) throws {
            let (out, outRef) = (try backend.zeros(shape), try reference.zeros(shape))
            try body(backend, a, b, out)
            try body(reference, aRef, bRef, outRef)
            results.append(try compare("\(name) n=\(count)", out, outRef, tolerance: tolerance))
        }
        try check("fill") { backend, _, _, out in try backend.fill(out, with: 0.375) }
        try check("copy") { backend, a, _, out in
            try backend.copy(a, sourceOffset: count / 3, into: out, destinationOffset: count / 5,
                             count: count - count / 3 - count / 5)
        }
        try check("add") { backend, a, b, out in try backend.add(a, b, into: out) }
        try check("multiply") { backend, a, b, out in try backend.multiply(a, b, into: out) }
        try check("axpy") { backend, a, b, out in
            try backend.copy(b, sourceOffset: 0, into: out, destinationOffset: 0, count: count)
            try backend.axpy(alpha: -1.75, a, out)
        }
        try check("scale") { backend, a, _, out in
            try backend.copy(a, sourceOffset: 0, into: out, destinationOffset: 0, count: count)
            try backend.scale(out, by: 3.25)
        }
        for f in Activation.allCases {
            try check("\(f.rawValue)", tolerance: SelfCheck.roundingTolerance) { backend, a, _, out in
                try backend.activate(f, a, into: out)
            }
            try check("\(f.rawValue) backward", tolerance: SelfCheck.roundingTolerance) { backend, a, b, out in
                try backend.activate(f, a, into: out)
                try backend.activationBackward(f, output: out, outputGradient: b, into: out)
            }
        }
        return results
    }

    /// op(A)[m, k] op(B)[k, n] with every operand a view into a larger buffer: an offset and a
    /// leading dimension wider than the matrix.
    private mutating func gemm(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) throws -> Comparison {
        let (aRows, aColumns) = transposeA ? (k, m) : (m, k)
        let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
        let (lda, ldb, ldc) = (aColumns + 3, bColumns + 1, n + 2)
        let (offsetA, offsetB, offsetC) = (5, 2, 3)
        let (a, aRef) = try pair([offsetA + aRows * lda])
        let (b, bRef) = try pair([offsetB + bRows * ldb])
        let (c, cRef) = try pair([offsetC + m * ldc])
        for (target, tensors) in [(backend, (a, b, c)), (reference as any Backend, (aRef, bRef, cRef))] {
            try target.gemm(
                m: m, n: n, k: k, alpha: 0.75,
                a: MatrixOperand(tensors.0, offset: offsetA, leadingDimension: lda, transposed: transposeA),
                b: MatrixOperand(tensors.1, offset: offsetB, leadingDimension: ldb, transposed: transposeB),
                beta: -0.5, c: MatrixOperand(tensors.2, offset: offsetC, leadingDimension: ldc))
        }
        let mode = (transposeA ? "T" : "N") + (transposeB ? "T" : "N")
        return try compare("gemm \(mode) m=\(m) n=\(n) k=\(k)", c, cRef, tolerance: SelfCheck.roundingTolerance)
    }

    private mutating func sum(shape: Shape, axis: Int) throws -> Comparison {
        let (x, xRef) = try pair(shape)
        var reduced = shape.dimensions
        reduced.remove(at: axis)
        let (out, outRef) = (try backend.zeros(Shape(reduced)), try reference.zeros(Shape(reduced)))
        try backend.sum(x, alongAxis: axis, into: out)
        try reference.sum(xRef, alongAxis: axis, into: outRef)
        return try compare("sum \(shape) axis \(axis)", out, outRef, tolerance: SelfCheck.roundingTolerance)
    }

    private mutating func sumOfSquares(count: Int) throws -> Comparison {
        let (x, xRef) = try pair([count])
        let (out, outRef) = (try backend.zeros([3]), try reference.zeros([3]))
        try backend.sumOfSquares(x, into: out, at: 1)
        try reference.sumOfSquares(xRef, into: outRef, at: 1)
        return try compare("sumOfSquares n=\(count)", out, outRef, tolerance: SelfCheck.roundingTolerance)
    }

    /// Ids drawn with repeats, so scatter-add must accumulate several rows into one.
    private mutating func embedding(vocabulary: Int, width: Int, count: Int) throws -> [Comparison] {
        let ids = (0..<count).map { _ in Int32(random.next() % UInt64(vocabulary / 3)) }
        let (table, tableRef) = try pair([vocabulary, width])
        let (gradient, gradientRef) = try pair([count, width])
        let (idsDevice, idsRef) = (try backend.upload(ids, shape: [count]), try reference.upload(ids, shape: [count]))
        let (rows, rowsRef) = (try backend.zeros([count, width]), try reference.zeros([count, width]))
        try backend.gather(rowsOf: table, ids: idsDevice, into: rows)
        try reference.gather(rowsOf: tableRef, ids: idsRef, into: rowsRef)
        try backend.scatterAdd(gradient, ids: idsDevice, into: table)
        try reference.scatterAdd(gradientRef, ids: idsRef, into: tableRef)
        return [
            try compare("gather V=\(vocabulary) D=\(width) N=\(count)", rows, rowsRef, tolerance: SelfCheck.exactTolerance),
            try compare("scatterAdd V=\(vocabulary) D=\(width) N=\(count)", table, tableRef,
                        tolerance: SelfCheck.roundingTolerance),
        ]
    }
}
