import CBLAS

/// C = alpha op(A) op(B) + beta C on row-major host pointers (operands already validated), through
/// OpenBLAS running on the calling thread (see `CPUBackend.useOneBLASThread`), split over up to
/// `partLimit` cores once m n k reaches `minimumWork`: the larger of C's two dimensions is cut
/// into one block per core at multiples of 16, and each block is an OpenBLAS call of its own
/// writing only its own part of C.
func splitSGEMM(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, minimumWork: Int, partLimit: Int) {
    let granularity = 16
    let alongRows = m >= n
    let blocks = (alongRows ? m : n) / granularity
    let parts = m * n * k >= minimumWork ? min(partLimit, blocks) : 1
    guard parts > 1 else {
        sgemmOnThisThread(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    let total = alongRows ? m : n
    let bounds = (0...parts).map { part in part == parts ? total : blocks * part / parts * granularity }
    let operands = GEMMOperands(a: a, b: b, c: c)
    CPUWorkerPool.shared.run(parts: parts) { part in
        let (first, count) = (bounds[part], bounds[part + 1] - bounds[part])
        if alongRows {
            // Rows first ..< first + count of op(A) and of C.
            let aPart = transposeA ? operands.a + first : operands.a + first * lda
            sgemmOnThisThread(transposeA, transposeB, count, n, k, alpha, aPart, lda, operands.b, ldb,
                              beta, operands.c + first * ldc, ldc)
        } else {
            // Columns first ..< first + count of op(B) and of C.
            let bPart = transposeB ? operands.b + first * ldb : operands.b + first
            sgemmOnThisThread(transposeA, transposeB, m, count, k, alpha, operands.a, lda, bPart, ldb,
                              beta, operands.c + first, ldc)
        }
    }
}

/// The operands of a split GEMM, handed to the threads that write disjoint parts of C.
private struct GEMMOperands: @unchecked Sendable {
    let a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>
}

@inline(__always)
private func sgemmOnThisThread(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                               _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                               _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}
