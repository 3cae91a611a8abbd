// Argument checks shared by every backend, run before any memory is touched so that a bad
// request is a thrown `RecurError`, never an out-of-bounds access on a device.

extension Backend {
    /// Throws unless every tensor belongs to this backend and has the given element type.
    func checkOperands(_ operation: String, _ tensors: [Tensor], dtype: DType = .float32) throws {
        for tensor in tensors {
            guard tensor.backend === self else {
                throw RecurError.wrongDevice(
                    operation: operation,
                    detail: "\(tensor) belongs to \(tensor.backend.deviceName), not to \(deviceName)")
            }
            guard tensor.dtype == dtype else {
                throw RecurError.invalidArgument(
                    operation: operation, detail: "expected \(dtype) operand, got \(tensor)")
            }
        }
    }

    /// The bytes a new tensor of `shape` and `dtype` needs. Throws for a dimension below 1 and
    /// for a size beyond what an `Int` counts, before anything is allocated.
    func allocationByteCount(_ operation: String, _ shape: Shape, dtype: DType) throws -> Int {
        guard shape.isValid else {
            throw RecurError.invalidArgument(operation: operation, detail: "shape \(shape) has a dimension < 1")
        }
        guard let count = shape.checkedCount, case let (bytes, false) = count.multipliedReportingOverflow(by: dtype.byteSize)
        else {
            throw RecurError.invalidArgument(
                operation: operation, detail: "shape \(shape) of \(dtype) holds more bytes than memory can address")
        }
        return bytes
    }

    /// Throws unless `count` values fill `shape` exactly.
    func checkUploadCount(_ operation: String, _ count: Int, _ shape: Shape) throws {
        guard count == shape.checkedCount else {
            throw RecurError.shapeMismatch(operation: operation, detail: "\(count) values for shape \(shape)")
        }
    }

    /// Throws unless all tensors have the same number of elements.
    func checkSameCount(_ operation: String, _ tensors: [Tensor]) throws {
        guard let first = tensors.first else { return }
        for tensor in tensors.dropFirst() where tensor.count != first.count {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "operands have \(tensors.map { $0.shape.description }.joined(separator: " vs ")) elements differ")
        }
    }

    /// Throws unless `offset ..< offset + count` lies inside `tensor`.
    func checkRange(_ operation: String, _ tensor: Tensor, offset: Int, count: Int) throws {
        guard offset >= 0, count >= 0, offset + count <= tensor.count else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "range \(offset)..<\(offset + count) outside \(tensor) of \(tensor.count) elements")
        }
    }

    /// Validates a strided block copy (``Backend/copyRows(_:width:from:offset:stride:into:offset:stride:)``):
    /// sizes not negative, strides at least the width, both blocks inside their tensors and apart.
    func checkRowCopy(_ rows: Int, width: Int, source: Tensor, sourceOffset: Int, sourceStride: Int,
                      destination: Tensor, destinationOffset: Int, destinationStride: Int) throws {
        let operation = "copyRows"
        try checkOperands(operation, [source, destination])
        guard rows >= 0, width >= 0, sourceStride >= width, destinationStride >= width else {
            throw RecurError.invalidArgument(
                operation: operation,
                detail: "\(rows) rows of \(width) values need strides of at least the width, got \(sourceStride) "
                    + "and \(destinationStride)")
        }
        guard rows > 0, width > 0 else { return }
        // The span from the first value of the first row to the last value of the last row.
        let sourceSpan = (rows - 1) * sourceStride + width
        let destinationSpan = (rows - 1) * destinationStride + width
        try checkRange("\(operation) (source)", source, offset: sourceOffset, count: sourceSpan)
        try checkRange("\(operation) (destination)", destination, offset: destinationOffset, count: destinationSpan)
        if source.buffer === destination.buffer, sourceOffset < destinationOffset + destinationSpan,
           destinationOffset < sourceOffset + sourceSpan {
            throw RecurError.invalidArgument(
                operation: operation, detail: "the source and destination blocks overlap in one tensor's memory")
        }
    }

    /// Validates a GEMM call: positive sizes, operands owned here, every view inside its tensor.
    func checkGEMM(m: Int, n: Int, k: Int, a: MatrixOperand, b: MatrixOperand, c: MatrixOperand) throws {
        let operation = "gemm"
        guard m > 0, n > 0, k > 0 else {
            throw RecurError.invalidArgument(operation: operation, detail: "m, n, k = \(m), \(n), \(k) must be positive")
        }
        guard !c.transposed else {
            throw RecurError.invalidArgument(operation: operation, detail: "the output C cannot be transposed")
        }
        try checkOperands(operation, [a.tensor, b.tensor, c.tensor])
        // Stored (row-major) extent of each operand: op(A) is [m, k], op(B) is [k, n], C is [m, n].
        let views: [(String, MatrixOperand, Int, Int)] = [
            ("A", a, a.transposed ? k : m, a.transposed ? m : k),
            ("B", b, b.transposed ? n : k, b.transposed ? k : n),
            ("C", c, m, n),
        ]
        for (name, view, rows, columns) in views {
            guard view.leadingDimension >= columns else {
                throw RecurError.invalidArgument(
                    operation: operation,
                    detail: "\(name): leading dimension \(view.leadingDimension) < \(columns) columns")
            }
            let extent = (rows - 1) * view.leadingDimension + columns
            try checkRange("gemm (\(name))", view.tensor, offset: view.offset, count: extent)
        }
    }

    /// Validates a reduction along `axis` and returns the tensor seen as `[outer, axis, inner]`.
    func checkSum(_ x: Tensor, axis: Int, out: Tensor) throws -> (outer: Int, length: Int, inner: Int) {
        try checkOperands("sum", [x, out])
        guard axis >= 0, axis < x.shape.rank else {
            throw RecurError.invalidArgument(operation: "sum", detail: "axis \(axis) outside \(x.shape)")
        }
        var reduced = x.shape.dimensions
        reduced.remove(at: axis)
        guard out.count == reduced.reduce(1, *) else {
            throw RecurError.shapeMismatch(
                operation: "sum", detail: "summing \(x.shape) along \(axis) gives \(reduced) elements, out is \(out.shape)")
        }
        let outer = x.shape.dimensions[..<axis].reduce(1, *)
        let inner = x.shape.dimensions[(axis + 1)...].reduce(1, *)
        return (outer, x.shape[axis], inner)
    }

    /// Validates an embedding gather or scatter and returns (rows V, width D, ids N).
    func checkEmbedding(_ operation: String, table: Tensor, ids: Tensor, rows: Tensor) throws
        -> (vocabulary: Int, width: Int, count: Int)
    {
        try checkOperands(operation, [table, rows])
        try checkOperands(operation, [ids], dtype: .int32)
        guard table.shape.rank == 2 else {
            throw RecurError.shapeMismatch(operation: operation, detail: "table must be [V, D], got \(table.shape)")
        }
        let (vocabulary, width) = (table.shape[0], table.shape[1])
        guard rows.count == ids.count * width else {
            throw RecurError.shapeMismatch(
                operation: operation,
                detail: "\(ids.count) ids of width \(width) need \(ids.count * width) elements, got \(rows.shape)")
        }
        return (vocabulary, width, ids.count)
    }

    /// Validates `sumsOfSquares`: every operand on this backend, room for one sum per tensor.
    func checkSumsOfSquares(_ tensors: [Tensor], into out: Tensor, at index: Int) throws {
        try checkOperands("sumsOfSquares", tensors + [out])
        try checkRange("sumsOfSquares", out, offset: index, count: tensors.count)
    }

    /// Validates a grouped `scale`: one factor per tensor, every tensor on this backend and named once.
    func checkScales(_ tensors: [Tensor], _ factors: [Float]) throws {
        try checkOperands("scale", tensors)
        guard tensors.count == factors.count else {
            throw RecurError.invalidArgument(
                operation: "scale", detail: "\(tensors.count) tensors but \(factors.count) factors")
        }
        guard Set(tensors.map(ObjectIdentifier.init)).count == tensors.count else {
            throw RecurError.invalidArgument(operation: "scale", detail: "a tensor is listed twice")
        }
    }
}
