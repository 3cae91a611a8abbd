#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Small float64 helpers the cells' reference steps share.

enum ReferenceMath {
    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// y = W[rows] v + b[rows], W row-major with v.count columns.
    static func affine(_ w: [Double], _ v: [Double], _ b: [Double], rows: Range<Int>) -> [Double] {
        rows.map { row in
            var total = b[row]
            for k in v.indices { total += w[row * v.count + k] * v[k] }
            return total
        }
    }

    /// Differentiates y = W[rows] v + b[rows]: dW[rows] += dy vᵀ, db[rows] += dy, dv += W[rows]ᵀ dy.
    static func affineBackward(_ w: [Double], _ v: [Double], _ dy: [Double], rows: Range<Int>,
                               _ dw: inout [Double], _ db: inout [Double], _ dv: inout [Double]) {
        for (index, row) in rows.enumerated() {
            db[row] += dy[index]
            for k in v.indices {
                dw[row * v.count + k] += dy[index] * v[k]
                dv[k] += w[row * v.count + k] * dy[index]
            }
        }
    }
}
