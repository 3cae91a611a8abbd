// Parameter initialisation and dropout masks for `RecurrentLayer`, computed on the host from a
// seeded generator and uploaded once, so a seed gives the same values on every backend.
//
// Shape legend: I input features (of the layer), H hidden units, G = gates * H.

/// How `RecurrentLayer` initialises its parameters.
public enum RecurrentInitialization: String, Sendable, CaseIterable, Codable {
    /// PyTorch's default: every weight and bias ~ U(-1/√H, 1/√H).
    case pytorch
    /// Keras's defaults: W_ih Glorot-uniform over the whole kernel, U(±√(6 / (I + G))); each gate's
    /// `[H, H]` block of W_hh orthogonal; biases 0, except that an LSTM's forget-gate block of
    /// `bias_ih` is 1 (`unit_forget_bias`; PyTorch's layout has two biases, and the 1 goes in one).
    ///
    /// Keras makes its whole `[H, G]` recurrent kernel orthogonal, which leaves each gate's block
    /// with singular values below 1. Orthogonal blocks give every gate's recurrent map singular
    /// values exactly 1, the property orthogonal initialisation is chosen for (Saxe et al. 2014).
    case keras
}

enum RecurrentInitializer {
    /// Every parameter of one layer-direction as host arrays, in the cell's parameter order and
    /// PyTorch's layout, each drawn by its role (`RecurrentParameter.Role`).
    static func weights(_ initialization: RecurrentInitialization, cell: RecurrentCell, inputSize: Int,
                        hiddenSize: Int, projectionSize: Int? = nil, using random: inout SeededRandom) -> [[Float]] {
        let (i, h, p) = (inputSize, hiddenSize, projectionSize ?? hiddenSize)
        let g = cell.gateCount * h
        return cell.parameters.map { parameter in
            let count = parameter.shape(gateCount: cell.gateCount, inputSize: i, hiddenSize: h,
                                        projectionSize: projectionSize).count
            switch (initialization, parameter.role) {
            case (_, .normalizationGain):
                return [Float](repeating: 1, count: count)
            case (_, .normalizationBias):
                return [Float](repeating: 0, count: count)
            case (.pytorch, _):
                let bound = 1 / Double(h).squareRoot()
                return (0..<count).map { _ in random.uniform(bound: bound) }
            case (.keras, _):
                switch parameter.role {
                case .inputWeights:
                    let limit = (6 / Double(i + g)).squareRoot()
                    return (0..<count).map { _ in random.uniform(bound: limit) }
                case .recurrentWeights:
                    // Gate blocks [H, P] stacked along rows: the first P of an orthogonal block's
                    // orthonormal columns (all of them without a projection).
                    var recurrent: [Float] = []
                    recurrent.reserveCapacity(count)
                    for _ in 0..<cell.gateCount {
                        let block = orthogonal(size: h, using: &random)
                        for row in 0..<h {
                            recurrent += block[(row * h)..<(row * h + p)].map(Float.init)
                        }
                    }
                    return recurrent
                case .projectionWeights:
                    let limit = (6 / Double(p + h)).squareRoot()
                    return (0..<count).map { _ in random.uniform(bound: limit) }
                case .inputBias:
                    return cell.kerasGateBiases.flatMap { Array(repeating: $0, count: h) }
                case .bias, .normalizationGain, .normalizationBias:
                    return [Float](repeating: 0, count: count)
                }
            }
        }
    }

    /// A random `[n, n]` orthogonal matrix, row-major: modified Gram–Schmidt on the columns of a
    /// Gaussian matrix. That is the Q of its QR factorisation with a positive diagonal in R, which
    /// is Haar-distributed (Mezzadri 2007), as Keras's `Orthogonal` gets by fixing R's signs.
    static func orthogonal(size n: Int, using random: inout SeededRandom) -> [Double] {
        var columns: [[Double]] = []  // orthonormal columns found so far, each [n]
        while columns.count < n {
            var v = (0..<n).map { _ in random.gaussian() }
            for q in columns {
                var dot = 0.0
                for r in 0..<n { dot += q[r] * v[r] }
                for r in 0..<n { v[r] -= dot * q[r] }
            }
            var norm = 0.0
            for r in 0..<n { norm += v[r] * v[r] }
            norm = norm.squareRoot()
            // Dependent draws happen with probability 0; draw again rather than divide by ~0.
            guard norm > 1e-6 else { continue }
            columns.append(v.map { $0 / norm })
        }
        var matrix = [Double](repeating: 0, count: n * n)
        for r in 0..<n {
            for c in 0..<n { matrix[r * n + c] = columns[c][r] }
        }
        return matrix
    }

    /// An inverted-dropout mask of `count` values: 0 with probability p, else 1 / (1 - p), so the
    /// expected value of a masked activation is unchanged and inference needs no rescaling.
    static func dropoutMask(count: Int, probability p: Float, using random: inout SeededRandom) -> [Float] {
        let keep = 1 / (1 - p)
        return (0..<count).map { _ in random.unit() < Double(p) ? 0 : keep }
    }
}
