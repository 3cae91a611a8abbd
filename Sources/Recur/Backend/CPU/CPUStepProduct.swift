// The recurrent step's matrix product, C[R, N] (+)= A[R, K] · B[K, N], for the time loops of the
// CPU scans. One step multiplies a few batch rows by W_hh: from 32 x 32 x 128 (a few microseconds
// of arithmetic) to 64 x 256 x 1024. A BLAS call per step pays its packing, its beta pass and
// its thread hand-off every step (half of an LSTM training step at H = 32 went to OpenBLAS's copy
// and beta routines and to its idle threads); here B is packed once per scan, C is written once,
// and the caller runs the product on its own rows of the batch, one thread per part.
//
// Shape legend: R rows (batch rows of one part), K the reduced size, N output columns.

/// Columns of one register tile: two eight-lane vectors.
let stepProductTileColumns = 2 * CPULanes.scalarCount

/// Rows of one register tile. Four rows by two vectors is eight accumulators, which with the two
/// B vectors and a broadcast fit the sixteen vector registers of AVX2.
let stepProductTileRows = 4

/// `rows` of B[K, N] as a packed operand: row k at packed + k * leadingDimension, and at least
/// `stepProductTileColumns` readable zero columns past the last one, so a tile that starts
/// inside N may always load two whole vectors (the columns past N are computed but not stored).
struct CPUPackedOperand {
    let values: UnsafeMutablePointer<Float>
    let leadingDimension: Int

    /// The padded row length for N columns.
    static func leadingDimension(columns: Int) -> Int {
        let tile = stepProductTileColumns
        return (columns + tile - 1) / tile * tile + tile
    }
}

/// Floats of A a block of rows may hold (32 KiB, an L1 data cache), so a block's rows stay in
/// cache while every column strip of B passes over them.
private let stepProductBlockFloats = 8192

/// C[rows, n] = A[rows, k] · B[k, n] (or += with `accumulate`), all row-major, B packed with
/// `b.leadingDimension >= columnOffset + roundUp(n, 16)`; `columnOffset` selects B's columns
/// columnOffset ..< columnOffset + n.
///
/// Loop order: blocks of rows whose A fits L1 (a whole step's rows for k <= 256); in a block, for
/// each 16-column strip of B (k x 16 floats, in L1 for k <= 256), every 4-row tile; each tile keeps
/// its 4 x 16 results in registers over the whole k loop, so C is written once and B's strip is
/// read from L1 rows / 4 times.
func stepProduct(rows: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                 b: CPUPackedOperand, columnOffset: Int = 0,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let block = max(stepProductTileRows, stepProductBlockFloats / max(k, 1) / stepProductTileRows * stepProductTileRows)
    var first = 0
    while first < rows {
        let count = min(block, rows - first)
        stepProductBlock(rows: count, n: n, k: k, a: a + first * lda, lda: lda, b: b, columnOffset: columnOffset,
                         c: c + first * ldc, ldc: ldc, accumulate: accumulate)
        first += count
    }
}

/// One block of rows of `stepProduct`.
@inline(__always)
private func stepProductBlock(rows: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                              b: CPUPackedOperand, columnOffset: Int,
                              c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let width = CPULanes.scalarCount
    var column = 0
    while column < n {
        let columns = min(stepProductTileColumns, n - column)
        let strip = UnsafePointer(b.values + columnOffset + column)
        var row = 0
        while row + stepProductTileRows <= rows {
            let a0 = a + row * lda
            let (a1, a2, a3) = (a0 + lda, a0 + 2 * lda, a0 + 3 * lda)
            var (c00, c01, c10, c11) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
            var (c20, c21, c30, c31) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
            var p = strip
            for kk in 0..<k {
                let b0 = UnsafeRawPointer(p).loadUnaligned(as: CPULanes.self)
                let b1 = UnsafeRawPointer(p + width).loadUnaligned(as: CPULanes.self)
                var x = CPULanes(repeating: a0[kk])
                c00 = c00.addingProduct(x, b0)
                c01 = c01.addingProduct(x, b1)
                x = CPULanes(repeating: a1[kk])
                c10 = c10.addingProduct(x, b0)
                c11 = c11.addingProduct(x, b1)
                x = CPULanes(repeating: a2[kk])
                c20 = c20.addingProduct(x, b0)
                c21 = c21.addingProduct(x, b1)
                x = CPULanes(repeating: a3[kk])
                c30 = c30.addingProduct(x, b0)
                c31 = c31.addingProduct(x, b1)
                p += b.leadingDimension
            }
            let target = c + row * ldc + column
            storeTileRow(c00, c01, target, columns, accumulate)
            storeTileRow(c10, c11, target + ldc, columns, accumulate)
            storeTileRow(c20, c21, target + 2 * ldc, columns, accumulate)
            storeTileRow(c30, c31, target + 3 * ldc, columns, accumulate)
            row += stepProductTileRows
        }
        // The last rows % 4 rows, one at a time.
        while row < rows {
            let a0 = a + row * lda
            var (c00, c01) = (CPULanes(), CPULanes())
            var p = strip
            for kk in 0..<k {
                let x = CPULanes(repeating: a0[kk])
                c00 = c00.addingProduct(x, UnsafeRawPointer(p).loadUnaligned(as: CPULanes.self))
                c01 = c01.addingProduct(x, UnsafeRawPointer(p + width).loadUnaligned(as: CPULanes.self))
                p += b.leadingDimension
            }
            storeTileRow(c00, c01, c + row * ldc + column, columns, accumulate)
            row += 1
        }
        column += stepProductTileColumns
    }
}

/// Stores the first `columns` (up to 16) of a tile row at `target`, or adds them to it.
@inline(__always)
private func storeTileRow(_ low: CPULanes, _ high: CPULanes, _ target: UnsafeMutablePointer<Float>,
                          _ columns: Int, _ accumulate: Bool) {
    let width = CPULanes.scalarCount
    if columns == stepProductTileColumns {
        if accumulate {
            target.storeLanes(target.loadLanes(width) + low, width)
            (target + width).storeLanes((target + width).loadLanes(width) + high, width)
        } else {
            target.storeLanes(low, width)
            (target + width).storeLanes(high, width)
        }
        return
    }
    let lowCount = min(columns, width)
    target.storeLanes(accumulate ? target.loadLanes(lowCount) + low : low, lowCount)
    if columns > width {
        let highCount = columns - width
        (target + width).storeLanes(accumulate ? (target + width).loadLanes(highCount) + high : high, highCount)
    }
}

extension CPUBackend {
    /// B[k, n] = source[n, k]ᵀ packed (column j of B is row j of `source`), in a tensor the
    /// caller keeps alive while it uses the operand.
    func packTransposed(_ source: UnsafePointer<Float>, rows n: Int, columns k: Int) throws
        -> (CPUPackedOperand, Tensor)
    {
        let ld = CPUPackedOperand.leadingDimension(columns: n)
        let tensor = try zeros([k, ld])  // [K, N padded], zero padding
        let packed = tensor.hostFloats
        for j in 0..<n {
            for kk in 0..<k { packed[kk * ld + j] = source[j * k + kk] }
        }
        return (CPUPackedOperand(values: packed, leadingDimension: ld), tensor)
    }

    /// B[k, n] = source[k, n] with padded rows, in a tensor the caller keeps alive.
    func pack(_ source: UnsafePointer<Float>, rows k: Int, columns n: Int) throws -> (CPUPackedOperand, Tensor) {
        let ld = CPUPackedOperand.leadingDimension(columns: n)
        let tensor = try zeros([k, ld])  // [K, N padded], zero padding
        let packed = tensor.hostFloats
        for kk in 0..<k { (packed + kk * ld).update(from: source + kk * n, count: n) }
        return (CPUPackedOperand(values: packed, leadingDimension: ld), tensor)
    }
}

// MARK: Weight gradients

/// Floats of A one block of reduction rows holds, transposed (128 KiB, in L2), while every
/// column strip of X passes over it.
let weightGradientBlockFloats = 32768

/// Floats of the scratch `weightGradientProduct` packs A's blocks into, for up to `gates` rows of C.
func weightGradientScratchFloats(gates: Int) -> Int {
    weightGradientBlockFloats + 16 * gates
}

/// C[m, n] += A[rows, m]ᵀ · X[rows, n] for C's rows `part` (of m in all): the weight gradient
/// dW += dGᵀ · x summed over all T * B rows. `n` must be a multiple of 16 (whole tiles of X's rows
/// are loaded); callers use BLAS otherwise. `scratch` holds `weightGradientScratchFloats(gates: m)`
/// floats; each part writes only its own rows of it.
///
/// Loop order: blocks of reduction rows; each block's columns of A for this part are first copied
/// transposed into `scratch` (read in place, consecutive reduction rows of one column of A lie
/// lda floats apart, 4 KiB at G = 1024, and every row of a tile landed in the same L1 set); then
/// for each 16-column strip of X, every tile of 4 rows of C sums the block in registers and adds
/// it to C once.
func weightGradientProduct(part: Range<Int>, m: Int, n: Int, rows: Int, a: UnsafePointer<Float>, lda: Int,
                           x: UnsafePointer<Float>, ldx: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                           scratch: UnsafeMutablePointer<Float>) {
    precondition(n % stepProductTileColumns == 0, "weightGradientProduct needs whole 16-column tiles")
    let width = CPULanes.scalarCount
    let block = max(16, weightGradientBlockFloats / max(m, 1))  // reduction rows per block
    var first = 0
    while first < rows {
        let count = min(block, rows - first)
        // scratch[j, r] = A[first + r, j] for this part's rows j of C: [m, block]
        for r in 0..<count {
            let source = a + (first + r) * lda
            for j in part { scratch[j * block + r] = source[j] }
        }
        let xBlock = x + first * ldx
        var column = 0
        while column < n {
            var row = part.lowerBound
            while row < part.upperBound {
                let tileRows = min(stepProductTileRows, part.upperBound - row)
                let target = c + row * ldc + column
                guard tileRows == stepProductTileRows else {
                    // The last rows of the part, one at a time.
                    for j in row..<part.upperBound {
                        var (low, high) = (CPULanes(), CPULanes())
                        var px = xBlock + column
                        let pa = scratch + j * block
                        for r in 0..<count {
                            let s = CPULanes(repeating: pa[r])
                            low = low.addingProduct(s, UnsafeRawPointer(px).loadUnaligned(as: CPULanes.self))
                            high = high.addingProduct(s, UnsafeRawPointer(px + width).loadUnaligned(as: CPULanes.self))
                            px += ldx
                        }
                        storeTileRow(low, high, c + j * ldc + column, stepProductTileColumns, true)
                    }
                    break
                }
                var (c00, c01, c10, c11) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
                var (c20, c21, c30, c31) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
                let a0 = scratch + row * block
                let (a1, a2, a3) = (a0 + block, a0 + 2 * block, a0 + 3 * block)
                var px = xBlock + column
                for r in 0..<count {
                    let x0 = UnsafeRawPointer(px).loadUnaligned(as: CPULanes.self)
                    let x1 = UnsafeRawPointer(px + width).loadUnaligned(as: CPULanes.self)
                    var s = CPULanes(repeating: a0[r])
                    c00 = c00.addingProduct(s, x0)
                    c01 = c01.addingProduct(s, x1)
                    s = CPULanes(repeating: a1[r])
                    c10 = c10.addingProduct(s, x0)
                    c11 = c11.addingProduct(s, x1)
                    s = CPULanes(repeating: a2[r])
                    c20 = c20.addingProduct(s, x0)
                    c21 = c21.addingProduct(s, x1)
                    s = CPULanes(repeating: a3[r])
                    c30 = c30.addingProduct(s, x0)
                    c31 = c31.addingProduct(s, x1)
                    px += ldx
                }
                storeTileRow(c00, c01, target, stepProductTileColumns, true)
                storeTileRow(c10, c11, target + ldc, stepProductTileColumns, true)
                storeTileRow(c20, c21, target + 2 * ldc, stepProductTileColumns, true)
                storeTileRow(c30, c31, target + 3 * ldc, stepProductTileColumns, true)
                row += stepProductTileRows
            }
            column += stepProductTileColumns
        }
        first += count
    }
}
