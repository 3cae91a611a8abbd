import Testing
@testable import Recur

// The CPU scans' register-tiled products against float64 triple loops, on shapes that leave every
// remainder: rows not a multiple of the 4-row tile, columns not a multiple of the 16- or 32-column
// strip (two lane vectors: AVX2 or AVX-512), an operand that starts at a later row of the packed B,
// more rows than one cache block, accumulation, and
// weight-gradient parts that split C's rows unevenly. Sums of up to 3000 float32 products of
// values in [-1, 1] round to ~1e-5 absolute; the tolerance is 1e-4 absolute + 1e-5 relative.

@Suite("Recurrent CPU step products")
struct RecurrentStepProductTests {
    @Test("C (+)= A · B on a packed B matches float64",
          arguments: [(1, 5, 3, 0), (7, 37, 19, 0), (13, 48, 256, 7), (70, 24, 256, 0), (300, 20, 32, 16)])
    func stepProductMatches(rows: Int, n: Int, k: Int, skippedRows: Int) throws {
        let backend = CPUBackend()
        var rng = SeededGenerator(seed: UInt64(rows * 1000 + n))
        let packedRows = skippedRows + k  // B's rows skippedRows ..< packedRows are used, as the GRU's dq uses W_hn's
        let a = rng.values(rows * k)  // [rows, k]
        let weights = rng.values(n * packedRows)  // [n, packedRows]: B = weightsᵀ, as W_hhᵀ is packed
        let initial = rng.values(rows * n)
        let (whole, storage) = try backend.packTransposed(weights, rows: n, columns: packedRows)
        let packed = whole.droppingRows(skippedRows)
        for accumulate in [false, true] {
            var c = initial
            withExtendedLifetime(storage) {
                a.withUnsafeBufferPointer { a in
                    c.withUnsafeMutableBufferPointer { c in
                        stepProduct(rows: rows, n: n, k: k, a: a.baseAddress!, lda: k, b: packed,
                                    c: c.baseAddress!, ldc: n, accumulate: accumulate)
                    }
                }
            }
            var expected = [Float](repeating: 0, count: rows * n)
            for r in 0..<rows {
                for j in 0..<n {
                    var sum = accumulate ? Double(initial[r * n + j]) : 0
                    for kk in 0..<k { sum += Double(a[r * k + kk]) * Double(weights[j * packedRows + skippedRows + kk]) }
                    expected[r * n + j] = Float(sum)
                }
            }
            assertClose(c, expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-4,
                        "stepProduct rows \(rows) n \(n) k \(k) skipped rows \(skippedRows) accumulate \(accumulate)")
        }
    }

    @Test("pack and packTransposed lay out the same B")
    func packingsAgree() throws {
        let backend = CPUBackend()
        var rng = SeededGenerator(seed: 31)
        let (k, n) = (19, 45)
        let b = rng.values(k * n)  // [k, n]
        var transposed = [Float](repeating: 0, count: n * k)  // [n, k]
        for kk in 0..<k { for j in 0..<n { transposed[j * k + kk] = b[kk * n + j] } }
        let (direct, first) = try backend.pack(b, rows: k, columns: n)
        let (viaTranspose, second) = try backend.packTransposed(transposed, rows: n, columns: k)
        let count = CPUPackedOperand.floatCount(rows: k, columns: n)
        withExtendedLifetime([first, second]) {
            #expect(Array(UnsafeBufferPointer(start: direct.values, count: count))
                    == Array(UnsafeBufferPointer(start: viaTranspose.values, count: count)))
        }
    }

    @Test("C += Aᵀ · X over all rows matches float64, in parts",
          arguments: [(15, 16, 37), (20, 3, 3000), (3, 64, 5), (130, 37, 300), (96, 32, 513), (128, 1, 260)])
    func weightGradientMatches(m: Int, n: Int, rows: Int) throws {
        var rng = SeededGenerator(seed: UInt64(m * 1000 + rows))
        let lda = m + 3  // A's rows padded, as dG's blocks sit inside wider rows
        let a = rng.values(rows * lda)  // [rows, lda], columns 0 ..< m used
        let x = rng.values(rows * n)  // [rows, n]
        let initial = rng.values(m * n)
        var c = initial
        // Parts of C's rows as the scan splits them: whole lane vectors, the last part the rest.
        let width = CPULanes.scalarCount
        let cut = min(m, (m / 3) / width * width)
        for part in [0..<cut, cut..<m] where !part.isEmpty {
            a.withUnsafeBufferPointer { a in
                x.withUnsafeBufferPointer { x in
                    c.withUnsafeMutableBufferPointer { c in
                        weightGradientProduct(part: part, m: m, n: n, rows: rows, a: a.baseAddress!, lda: lda,
                                              x: x.baseAddress!, ldx: n, c: c.baseAddress!, ldc: n)
                    }
                }
            }
        }
        var expected = [Float](repeating: 0, count: m * n)
        for g in 0..<m {
            for j in 0..<n {
                var sum = Double(initial[g * n + j])
                for r in 0..<rows { sum += Double(a[r * lda + g]) * Double(x[r * n + j]) }
                expected[g * n + j] = Float(sum)
            }
        }
        assertClose(c, expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-4,
                    "weightGradientProduct m \(m) n \(n) rows \(rows)")
    }
}
