// The recurrent step's matrix product, C[R, N] (+)= A[R, K] · B[K, N], for the time loops of the
// CPU scans. One step multiplies a few batch rows by W_hh: from 32 x 32 x 128 (a few microseconds
// of arithmetic) to 64 x 256 x 1024. A BLAS call per step pays its packing, its beta pass and
// its thread hand-off every step (half of an LSTM training step at H = 32 went to OpenBLAS's copy
// and beta routines and to its idle threads); here B is packed once per scan, C is written once,
// and the caller runs the product on its own rows of the batch, one thread per part.
//
// Shape legend: R rows (batch rows of one part), K the reduced size, N output columns.

/// Columns of one register tile: two lane vectors (16 columns with AVX2, 32 with AVX-512).
let stepProductTileColumns = 2 * CPULanes.scalarCount

/// Rows of one register tile. Four rows by two vectors is eight accumulators, which with the two
/// B vectors and a broadcast fit the sixteen vector registers of AVX2.
let stepProductTileRows = 4

/// B[K, N] as a packed operand, one strip of W = `stepProductTileColumns` columns after another:
/// element (k, j) at values[(j / W) * stripStride + k * W + j % W], columns past N zero. A tile
/// reads its strip as one contiguous run of k x W floats. Row-major B with rows a few KiB apart
/// put the strip's rows into a few L1 sets, which held only half of a k = 256 strip: the step
/// product ran at 75 GFLOP/s per core at k = 256 against 115 at k = 128.
struct CPUPackedOperand {
    let values: UnsafeMutablePointer<Float>
    /// Floats from one strip to the next: K x W for the whole packed B.
    let stripStride: Int

    /// Floats a packed [K, N] operand takes.
    static func floatCount(rows k: Int, columns n: Int) -> Int {
        let tile = stepProductTileColumns
        return max(1, (n + tile - 1) / tile * k * tile)
    }

    /// Rows `count` ..< K of this operand, as an operand of its own.
    func droppingRows(_ count: Int) -> CPUPackedOperand {
        CPUPackedOperand(values: values + count * stepProductTileColumns, stripStride: stripStride)
    }
}

/// Floats of A a block of rows may hold (32 KiB, an L1 data cache), so a block's rows stay in
/// cache while every column strip of B passes over them.
private let stepProductBlockFloats = 8192

/// Rows of B (the reduction) one pass over a strip covers: 256 x W floats, 32 KiB with AVX-512.
/// Longer reductions (k = 4H in an LSTM's backward step) go in passes that add to C, so the
/// strip a tile reads stays in L1.
private let stepProductDepth = 256

/// C[rows, n] = A[rows, k] · B[k, n] (or += with `accumulate`), A and C row-major, B packed with at
/// least n columns and k rows.
///
/// Loop order: blocks of rows whose A fits L1 (a whole step's rows for k <= 256); in a block,
/// passes of up to 256 of the k rows; in a pass, for each W-column strip of B (contiguous, in L1),
/// every 4-row tile; each tile keeps its 4 x W results in registers over the pass, so C is
/// written once per pass and B's strip is read from L1 rows / 4 times.
func stepProduct(rows: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: CPUPackedOperand,
                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    stepProduct(rows: ConsecutiveRows(count: rows), n: n, k: k, a: a, lda: lda, b: b, c: c, ldc: ldc,
                accumulate: accumulate)
}

/// `stepProduct` on the rows of A and C that `rows` lists (row i of the product is row
/// rows.indices[i] of A and of C), the others neither read nor written: a scan step multiplies only
/// the sequences still running, and with G2P's words about 45% of a batch's (step, sequence) places
/// are padding. Each listed row gets exactly the sums it gets from the consecutive product.
func stepProduct(rows: UnsafePointer<Int32>, count: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                 b: CPUPackedOperand, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    stepProduct(rows: ListedRows(indices: rows, count: count), n: n, k: k, a: a, lda: lda, b: b, c: c, ldc: ldc,
                accumulate: accumulate)
}

/// Which rows of A and C a step product covers: the i-th row it computes is `index(i)`.
private protocol StepProductRows {
    var count: Int { get }
    func index(_ i: Int) -> Int
}

/// Rows 0 ..< count.
private struct ConsecutiveRows: StepProductRows {
    let count: Int
    @inline(__always) func index(_ i: Int) -> Int { i }
}

/// The rows a list names, in its order.
private struct ListedRows: StepProductRows {
    let indices: UnsafePointer<Int32>
    let count: Int
    @inline(__always) func index(_ i: Int) -> Int { Int(indices[i]) }
}

/// The step product over `rows`, specialised per kind of row list.
@inline(__always)
private func stepProduct<Rows: StepProductRows>(rows: Rows, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                                b: CPUPackedOperand, c: UnsafeMutablePointer<Float>, ldc: Int,
                                                accumulate: Bool) {
    let depth = min(k, stepProductDepth)
    let block = max(stepProductTileRows, stepProductBlockFloats / max(depth, 1) / stepProductTileRows * stepProductTileRows)
    var first = 0
    while first < rows.count {
        let count = min(block, rows.count - first)
        var reduced = 0
        repeat {
            let part = min(depth, k - reduced)
            stepProductBlock(rows: rows, first: first, count: count, n: n, k: part, a: a + reduced, lda: lda,
                             b: b.droppingRows(reduced), c: c, ldc: ldc, accumulate: accumulate || reduced > 0)
            reduced += part
        } while reduced < k
        first += count
    }
}

/// One block of rows of `stepProduct`: rows first ..< first + count of `rows`.
@inline(__always)
private func stepProductBlock<Rows: StepProductRows>(rows: Rows, first: Int, count: Int, n: Int, k: Int,
                                                     a: UnsafePointer<Float>, lda: Int, b: CPUPackedOperand,
                                                     c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    let width = CPULanes.scalarCount
    let end = first + count
    var column = 0
    while column < n {
        let columns = min(stepProductTileColumns, n - column)
        let strip = UnsafePointer(b.values + column / stepProductTileColumns * b.stripStride)
        var row = first
        while row + stepProductTileRows <= end {
            let (r0, r1, r2, r3) = (rows.index(row), rows.index(row + 1), rows.index(row + 2), rows.index(row + 3))
            let (a0, a1, a2, a3) = (a + r0 * lda, a + r1 * lda, a + r2 * lda, a + r3 * lda)
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
                p += stepProductTileColumns
            }
            storeTileRow(c00, c01, c + r0 * ldc + column, columns, accumulate)
            storeTileRow(c10, c11, c + r1 * ldc + column, columns, accumulate)
            storeTileRow(c20, c21, c + r2 * ldc + column, columns, accumulate)
            storeTileRow(c30, c31, c + r3 * ldc + column, columns, accumulate)
            row += stepProductTileRows
        }
        // The last count % 4 rows, one at a time.
        while row < end {
            let r0 = rows.index(row)
            let a0 = a + r0 * lda
            var (c00, c01) = (CPULanes(), CPULanes())
            var p = strip
            for kk in 0..<k {
                let x = CPULanes(repeating: a0[kk])
                c00 = c00.addingProduct(x, UnsafeRawPointer(p).loadUnaligned(as: CPULanes.self))
                c01 = c01.addingProduct(x, UnsafeRawPointer(p + width).loadUnaligned(as: CPULanes.self))
                p += stepProductTileColumns
            }
            storeTileRow(c00, c01, c + r0 * ldc + column, columns, accumulate)
            row += 1
        }
        column += stepProductTileColumns
    }
}

/// Stores the first `columns` (up to `stepProductTileColumns`) of a tile row at `target`, or adds them to it.
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

/// A packed operand with the tensor that holds it, as `RecurrentWeightPacks` keeps it.
final class CPUPackedWeights {
    let operand: CPUPackedOperand
    let tensor: Tensor

    init(operand: CPUPackedOperand, tensor: Tensor) {
        self.operand = operand
        self.tensor = tensor
    }
}

extension CPUBackend {
    /// What `make` packs from `weights`: made anew, or, when the scan carries `weightPacks` (its
    /// weights do not change until the caller's loop ends), made once and kept there under `kind`.
    func keptPack(_ weights: Tensor, kind: String, _ scan: RecurrentScan,
                  _ make: () throws -> (CPUPackedOperand, Tensor)) throws -> (CPUPackedOperand, Tensor) {
        guard let packs = scan.weightPacks else { return try make() }
        let kept = try packs.value(for: weights, kind: kind) { () throws -> CPUPackedWeights in
            let (operand, tensor) = try make()
            return CPUPackedWeights(operand: operand, tensor: tensor)
        }
        return (kept.operand, kept.tensor)
    }

    /// B[k, n] = source[n, k]ᵀ packed (column j of B is row j of `source`), in a tensor the
    /// caller keeps alive while it uses the operand.
    func packTransposed(_ source: UnsafePointer<Float>, rows n: Int, columns k: Int) throws
        -> (CPUPackedOperand, Tensor)
    {
        let width = stepProductTileColumns
        let tensor = try zeros([CPUPackedOperand.floatCount(rows: k, columns: n)])  // zero padding
        let operand = CPUPackedOperand(values: tensor.hostFloats, stripStride: k * width)
        for j in 0..<n {
            let column = operand.values + j / width * operand.stripStride + j % width
            for kk in 0..<k { column[kk * width] = source[j * k + kk] }
        }
        return (operand, tensor)
    }

    /// B[k, n] = source[k, n] packed, in a tensor the caller keeps alive.
    func pack(_ source: UnsafePointer<Float>, rows k: Int, columns n: Int) throws -> (CPUPackedOperand, Tensor) {
        let width = stepProductTileColumns
        let tensor = try zeros([CPUPackedOperand.floatCount(rows: k, columns: n)])  // zero padding
        let operand = CPUPackedOperand(values: tensor.hostFloats, stripStride: k * width)
        for kk in 0..<k {
            var j = 0
            while j < n {
                let count = min(width, n - j)
                (operand.values + j / width * operand.stripStride + kk * width).update(from: source + kk * n + j, count: count)
                j += width
            }
        }
        return (operand, tensor)
    }
}

// MARK: Weight gradients

/// Reduction rows of one block of `weightGradientProduct`: a block's strip of A (rows x 2 vectors)
/// and its rows of X stay in L1 while every column tile of X passes over them.
let weightGradientBlockRows = 256

/// The widest X `weightGradientProduct` takes; wider ones go to BLAS.
let weightGradientProductMaximumColumns = 64

/// C[m, n] += A[rows, m]ᵀ · X[rows, n] for C's rows `part` (of m in all): the weight gradient
/// dW += dGᵀ · x summed over all T * B rows, for narrow x (n up to a few vector widths).
///
/// It computes Cᵀ = Xᵀ · A, so nothing is transposed in memory: in each block of reduction rows,
/// for each strip of A's columns (C's rows; two lane vectors wide) and each group of four of X's
/// columns, a register tile of 4 x 2 vectors sums X[r, j] · A[r, strip] over the block's rows (two
/// vector loads of A's row r, four broadcasts of X's, eight multiply-adds), then adds itself to C
/// transposed, once per block. An earlier version copied each block of A transposed first; at
/// n = 32 that strided scalar copy cost more than the multiply-adds (41% of an LSTM training step
/// at H = 32). Columns of the part past its last whole vector go through a scalar loop.
func weightGradientProduct(part: Range<Int>, m: Int, n: Int, rows: Int, a: UnsafePointer<Float>, lda: Int,
                           x: UnsafePointer<Float>, ldx: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let width = CPULanes.scalarCount
    let vectorEnd = part.lowerBound + part.count / width * width  // end of the whole vectors
    var first = 0
    while first < rows {
        let count = min(weightGradientBlockRows, rows - first)
        let aBlock = a + first * lda
        let xBlock = x + first * ldx
        var column = part.lowerBound
        while column < vectorEnd {
            let pair = column + 2 * width <= vectorEnd
            var j = 0
            while j < n {
                let group = min(stepProductTileRows, n - j)
                if pair {
                    weightGradientTile(vectors: 2, group: group, count: count, a: aBlock + column, lda: lda,
                                       x: xBlock + j, ldx: ldx, c: c + column * ldc + j, ldc: ldc)
                } else {
                    weightGradientTile(vectors: 1, group: group, count: count, a: aBlock + column, lda: lda,
                                       x: xBlock + j, ldx: ldx, c: c + column * ldc + j, ldc: ldc)
                }
                j += group
            }
            column += pair ? 2 * width : width
        }
        // The part's last columns, fewer than a vector: scalar dot products.
        for g in vectorEnd..<part.upperBound {
            for j in 0..<n {
                var sum: Float = 0
                for r in 0..<count { sum += aBlock[r * lda + g] * xBlock[r * ldx + j] }
                c[g * ldc + j] += sum
            }
        }
        first += count
    }
}

/// One register tile of `weightGradientProduct`: `vectors` (1 or 2) lane vectors of A's columns
/// times `group` (1 to 4) of X's columns, summed over `count` rows and added to C transposed.
/// `vectors` and `group` are constants at every call after inlining, so the tile's loops unroll.
@inline(__always)
private func weightGradientTile(vectors: Int, group: Int, count: Int, a: UnsafePointer<Float>, lda: Int,
                                x: UnsafePointer<Float>, ldx: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let width = CPULanes.scalarCount
    // sums[j][v]: Σ_r X[r, j] · A[r, v-th vector]
    var (s00, s01, s10, s11) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
    var (s20, s21, s30, s31) = (CPULanes(), CPULanes(), CPULanes(), CPULanes())
    var pa = a
    var px = x
    if vectors == 2 && group == 4 {
        for _ in 0..<count {
            let a0 = UnsafeRawPointer(pa).loadUnaligned(as: CPULanes.self)
            let a1 = UnsafeRawPointer(pa + width).loadUnaligned(as: CPULanes.self)
            var b = CPULanes(repeating: px[0])
            s00 = s00.addingProduct(b, a0)
            s01 = s01.addingProduct(b, a1)
            b = CPULanes(repeating: px[1])
            s10 = s10.addingProduct(b, a0)
            s11 = s11.addingProduct(b, a1)
            b = CPULanes(repeating: px[2])
            s20 = s20.addingProduct(b, a0)
            s21 = s21.addingProduct(b, a1)
            b = CPULanes(repeating: px[3])
            s30 = s30.addingProduct(b, a0)
            s31 = s31.addingProduct(b, a1)
            pa += lda
            px += ldx
        }
    } else {
        // Narrower tiles (a part's odd vector, X's last columns): the same sums, fewer of them.
        for _ in 0..<count {
            let a0 = UnsafeRawPointer(pa).loadUnaligned(as: CPULanes.self)
            let a1 = vectors == 2 ? UnsafeRawPointer(pa + width).loadUnaligned(as: CPULanes.self) : CPULanes()
            var b = CPULanes(repeating: px[0])
            s00 = s00.addingProduct(b, a0)
            if vectors == 2 { s01 = s01.addingProduct(b, a1) }
            if group > 1 {
                b = CPULanes(repeating: px[1])
                s10 = s10.addingProduct(b, a0)
                if vectors == 2 { s11 = s11.addingProduct(b, a1) }
            }
            if group > 2 {
                b = CPULanes(repeating: px[2])
                s20 = s20.addingProduct(b, a0)
                if vectors == 2 { s21 = s21.addingProduct(b, a1) }
            }
            if group > 3 {
                b = CPULanes(repeating: px[3])
                s30 = s30.addingProduct(b, a0)
                if vectors == 2 { s31 = s31.addingProduct(b, a1) }
            }
            pa += lda
            px += ldx
        }
    }
    // C[column + l, j] += sums[j][l]: a transposed add, once per tile and block.
    @inline(__always)
    func addTransposed(_ low: CPULanes, _ high: CPULanes, _ j: Int) {
        for l in 0..<width {
            c[l * ldc + j] += low[l]
            if vectors == 2 { c[(width + l) * ldc + j] += high[l] }
        }
    }
    addTransposed(s00, s01, 0)
    if group > 1 { addTransposed(s10, s11, 1) }
    if group > 2 { addTransposed(s20, s21, 2) }
    if group > 3 { addTransposed(s30, s31, 3) }
}
