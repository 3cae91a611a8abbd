#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The layer-normalised LSTM of Ba, Kiros & Hinton 2016 ("Layer Normalization", §3.1 and the
// appendix on RNNs). As in TensorFlow 1's `LayerNormBasicLSTMCell`, each gate block of the summed
// pre-activation is normalised on its own, and the gate biases act as the normalisation's shift;
// as in the paper (and unlike that class), the state carried to the next step is the cell state
// before its normalisation. Gate order i, f, g, o as PyTorch's nn.LSTM; per gate block k:
//
//     a   = W_ih x + W_hh h̃                        [4H], no bias before the normalisation
//     z_k = γ_k ⊙ LN(a_k) + b_ih,k + b_hh,k         a_k: the H units of block k
//     i, f, g, o = σ(z_i), σ(z_f), tanh(z_g), σ(z_o)
//     c_t = clip(f ⊙ c_{t-1} + i ⊙ g)               clip to ±cellClip, or none
//     h_t = o ⊙ tanh(γ_c ⊙ LN(c_t) + β_c)
//
// with LN(v) = (v - mean(v)) / sqrt(var(v) + ε) over the H units (var the biased, population
// variance) and ε = `layerNormEpsilon` (1e-5, as PyTorch's nn.LayerNorm). The two PyTorch-style
// biases are LN's shift of the gates; they are redundant with each other, as in nn.LSTM.
//
// Parameters after PyTorch's four (suffix `_l0`, `_l0_reverse`, … as those):
// `layer_norm_gate_gain` [4H] = γ (starts at 1), `layer_norm_cell_gain` [H] = γ_c (starts at 1),
// `layer_norm_cell_bias` [H] = β_c (starts at 0).
//
// Backward, with LN's v̂ = LN(v) and s = 1 / sqrt(var(v) + ε): dv = s (dv̂ - mean(dv̂) - v̂ mean(dv̂ v̂)).
// dh = dL/dh_t, tc = tanh(γ_c ĉ + β_c): do = dh tc; dc̃ = dh o (1 - tc²); dγ_c += dc̃ ĉ; dβ_c += dc̃;
// dc_t += LN'(dc̃ γ_c), zeroed where the clip was active; then as the LSTM (dz_i = dc g i (1 - i), …);
// db_ih, db_hh += dz; dγ += dz â; da = LN'(dz γ) per block.
//
// The workspace's `gates` row keeps a (not the activations) and `cellStates` keeps c_t; the backward
// step recomputes the statistics and activations from them, which costs O(G) per row against the
// O(G H) of the step's products. The gains' and biases' gradients are summed inside the backward
// steps (`accumulatesParameterGradientsInSteps`), so its scan runs on one core.
//
// On OpenCL the same steps are Kernels/layer_norm_lstm.cl, built into the row skeleton
// (Kernels/recurrent_rows.cl): one work-group per sequence row, which sums the statistics in local
// memory and keeps the same workspace.

/// LN's ε, added to the variance: PyTorch's nn.LayerNorm default.
let layerNormEpsilon = 1e-5

extension RecurrentCell {
    /// The layer-normalised LSTM: state (h, c), four gates, a gain per gate unit and a gain and
    /// shift for the cell state; Keras starts its forget-gate bias at 1.
    public static let layerNormLSTM = RecurrentCell(
        name: "layer_norm_lstm", formerNames: [], gateCount: 4, hasCellState: true,
        extraParameters: [
            RecurrentParameter(name: "layer_norm_gate_gain", extents: [.gates], role: .normalizationGain),
            RecurrentParameter(name: "layer_norm_cell_gain", extents: [.hidden], role: .normalizationGain),
            RecurrentParameter(name: "layer_norm_cell_bias", extents: [.hidden], role: .normalizationBias),
        ],
        kerasGateBiases: [0, 1, 0, 0], reference: LayerNormLSTMSteps.self, cpu: LayerNormLSTMSteps.self)
}

enum LayerNormLSTMSteps {}

// MARK: Layer normalisation in float64

extension ReferenceMath {
    /// LN(v) = (v - mean(v)) s with s = 1 / sqrt(var(v) + ε), and s.
    static func layerNorm(_ v: ArraySlice<Double>) -> (normalized: [Double], scale: Double) {
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
        let scale = 1 / (variance + layerNormEpsilon).squareRoot()
        return (v.map { ($0 - mean) * scale }, scale)
    }

    /// Differentiates LN: dv = s (dv̂ - mean(dv̂) - v̂ mean(dv̂ v̂)).
    static func layerNormBackward(_ gradient: [Double], normalized: [Double], scale: Double) -> [Double] {
        let n = Double(gradient.count)
        let meanGradient = gradient.reduce(0, +) / n
        let meanProduct = zip(gradient, normalized).reduce(0) { $0 + $1.0 * $1.1 } / n
        return zip(gradient, normalized).map { scale * ($0 - meanGradient - $1 * meanProduct) }
    }
}

// MARK: Reference (float64)

extension LayerNormLSTMSteps: RecurrentReferenceSteps {
    /// What one forward step computes, kept for its backward.
    private struct Values {
        /// LN(a_k) of each gate block, and its s.
        var normalized: [[Double]], scales: [Double]
        var i: [Double], f: [Double], g: [Double], o: [Double]
        /// c_t before the clip, LN(c_t) and its s, and tanh(γ_c LN(c_t) + β_c).
        var unclipped: [Double], cellNormalized: [Double], cellScale: Double, cellTanh: [Double]
    }

    private static func values(_ step: RecurrentReferenceStep) -> Values {
        let (w, h) = (step.weights, step.hiddenSize)
        let (gain, cellGain, cellBias) = (w.extra[0], w.extra[1], w.extra[2])
        let none = [Double](repeating: 0, count: 4 * h)
        let a = zip(ReferenceMath.affine(w.input, step.input, none, rows: 0..<(4 * h)),
                    ReferenceMath.affine(w.recurrent, step.state.hidden, none, rows: 0..<(4 * h))).map(+)
        let blocks = (0..<4).map { ReferenceMath.layerNorm(a[($0 * h)..<(($0 + 1) * h)]) }
        // z_k = γ_k LN(a_k) + b_ih,k + b_hh,k
        let z = { (block: Int, j: Int) in
            let k = block * h + j
            return gain[k] * blocks[block].normalized[j] + w.inputBias[k] + w.recurrentBias[k]
        }
        let i = (0..<h).map { ReferenceMath.sigmoid(z(0, $0)) }
        let f = (0..<h).map { ReferenceMath.sigmoid(z(1, $0)) }
        let g = (0..<h).map { tanh(z(2, $0)) }
        let o = (0..<h).map { ReferenceMath.sigmoid(z(3, $0)) }
        let unclipped = (0..<h).map { f[$0] * step.state.cell[$0] + i[$0] * g[$0] }
        let c = unclipped.map { clip($0, step.cellClip) }
        let (cellNormalized, cellScale) = ReferenceMath.layerNorm(c[...])
        let cellTanh = (0..<h).map { tanh(cellGain[$0] * cellNormalized[$0] + cellBias[$0]) }
        return Values(normalized: blocks.map(\.normalized), scales: blocks.map(\.scale), i: i, f: f, g: g, o: o,
                      unclipped: unclipped, cellNormalized: cellNormalized, cellScale: cellScale, cellTanh: cellTanh)
    }

    private static func clip(_ value: Double, _ limit: Double?) -> Double {
        guard let limit else { return value }
        return min(max(value, -limit), limit)
    }

    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let v = values(step)
        return RecurrentReferenceState(hidden: (0..<v.o.count).map { v.o[$0] * v.cellTanh[$0] },  // h_t
                                       cell: v.unclipped.map { clip($0, step.cellClip) })  // c_t
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h) = (step.weights, step.hiddenSize)
        let v = values(step)
        // h_t = o tanh(γ_c ĉ + β_c)
        var dNormalizedCell = [Double](repeating: 0, count: h)
        var dout = [Double](repeating: 0, count: h)
        for j in 0..<h {
            let tc = v.cellTanh[j]
            let dPreTanh = gradient.hidden[j] * v.o[j] * (1 - tc * tc)
            dout[j] = gradient.hidden[j] * tc
            weightGradients.extra[1][j] += dPreTanh * v.cellNormalized[j]
            weightGradients.extra[2][j] += dPreTanh
            dNormalizedCell[j] = dPreTanh * w.extra[1][j]
        }
        // ĉ = LN(c_t)
        let dcThrough = ReferenceMath.layerNormBackward(dNormalizedCell, normalized: v.cellNormalized,
                                                        scale: v.cellScale)
        var dz = [Double](repeating: 0, count: 4 * h)
        var dcBefore = [Double](repeating: 0, count: h)
        for j in 0..<h {
            var dc = gradient.cell[j] + dcThrough[j]
            // c_t = clip(…): no gradient where the clip was active
            if let limit = step.cellClip, abs(v.unclipped[j]) >= limit { dc = 0 }
            let (i, f, g, o) = (v.i[j], v.f[j], v.g[j], v.o[j])
            dz[j] = dc * g * i * (1 - i)  // i = σ(z_i)
            dz[h + j] = dc * step.state.cell[j] * f * (1 - f)  // f = σ(z_f)
            dz[2 * h + j] = dc * i * (1 - g * g)  // g = tanh(z_g)
            dz[3 * h + j] = dout[j] * o * (1 - o)  // o = σ(z_o)
            dcBefore[j] = dc * f
        }
        // z_k = γ_k â_k + b_ih,k + b_hh,k, â_k = LN(a_k)
        var da = [Double]()
        for block in 0..<4 {
            var dNormalized = [Double](repeating: 0, count: h)
            for j in 0..<h {
                let k = block * h + j
                weightGradients.inputBias[k] += dz[k]
                weightGradients.recurrentBias[k] += dz[k]
                weightGradients.extra[0][k] += dz[k] * v.normalized[block][j]
                dNormalized[j] = dz[k] * w.extra[0][k]
            }
            da += ReferenceMath.layerNormBackward(dNormalized, normalized: v.normalized[block],
                                                  scale: v.scales[block])
        }
        // a = W_ih x + W_hh h (no bias: the bias gradients were taken at z)
        var dx = [Double](repeating: 0, count: step.input.count)
        var dh = [Double](repeating: 0, count: h)
        var unusedBias = [Double](repeating: 0, count: 4 * h)
        ReferenceMath.affineBackward(w.input, step.input, da, rows: 0..<(4 * h),
                                     &weightGradients.input, &unusedBias, &dx)
        ReferenceMath.affineBackward(w.recurrent, step.state.hidden, da, rows: 0..<(4 * h),
                                     &weightGradients.recurrent, &unusedBias, &dh)
        return (dx, RecurrentReferenceState(hidden: dh, cell: dcBefore))
    }
}

// MARK: Fast CPU steps

/// σ on one float (the layer-normalised cells' steps work a unit at a time: each needs its row's
/// statistics).
@inline(__always)
func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

/// The mean of `count` floats and s = 1 / sqrt(var + ε), two passes.
@inline(__always)
func layerNormStatistics(_ v: UnsafeMutablePointer<Float>, _ count: Int) -> (mean: Float, scale: Float) {
    var sum: Float = 0
    for j in 0..<count { sum += v[j] }
    let mean = sum / Float(count)
    var squares: Float = 0
    for j in 0..<count { squares += (v[j] - mean) * (v[j] - mean) }
    return (mean, 1 / (squares / Float(count) + Float(layerNormEpsilon)).squareRoot())
}

/// The mean and s of each of the four gate blocks of one row, held without allocating.
private struct GateStatistics {
    let blocks: ((mean: Float, scale: Float), (mean: Float, scale: Float), (mean: Float, scale: Float),
                 (mean: Float, scale: Float))

    @inline(__always)
    init(_ a: UnsafeMutablePointer<Float>, _ hidden: Int) {
        blocks = (layerNormStatistics(a, hidden), layerNormStatistics(a + hidden, hidden),
                  layerNormStatistics(a + 2 * hidden, hidden), layerNormStatistics(a + 3 * hidden, hidden))
    }

    @inline(__always)
    subscript(block: Int) -> (mean: Float, scale: Float) {
        switch block {
        case 0: blocks.0
        case 1: blocks.1
        case 2: blocks.2
        default: blocks.3
        }
    }
}

extension LayerNormLSTMSteps: CPURecurrentSteps {
    static var accumulatesParameterGradientsInSteps: Bool { true }

    /// a = x W_ihᵀ + h̃ W_hhᵀ (kept in the gates row), each block normalised, then the LSTM update
    /// and h_t = o tanh(γ_c LN(c_t) + β_c).
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        let scan = pass.scan
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let row = time * scan.batch + b
        let a = pass.workspace.gates + row * gates
        let cell = pass.c! + b * hidden
        if valid {
            let (product, bias, state) = (pass.stepProducts + b * gates, scan.biasSum, pass.h + b * hidden)
            let (gain, cellGain, cellBias) = (scan.extra[0], scan.extra[1], scan.extra[2])
            for k in 0..<gates { a[k] += product[k] }
            let blocks = GateStatistics(a, hidden)
            @inline(__always)
            func z(_ block: Int, _ j: Int) -> Float {
                let k = block * hidden + j
                let (mean, scale) = blocks[block]
                return gain[k] * ((a[k] - mean) * scale) + bias[k]
            }
            for j in 0..<hidden {
                let (i, f, g) = (sigmoid(z(0, j)), sigmoid(z(1, j)), tanh(z(2, j)))
                cell[j] = min(max(f * cell[j] + i * g, -clip), clip)
                state[j] = sigmoid(z(3, j))  // o, until c_t's statistics are known
            }
            let (mean, scale) = layerNormStatistics(cell, hidden)
            for j in 0..<hidden {
                state[j] *= tanh(cellGain[j] * ((cell[j] - mean) * scale) + cellBias[j])
            }
        } else {
            a.update(repeating: 0, count: gates)
        }
        (pass.workspace.cellStates! + row * hidden).update(from: cell, count: hidden)
    }

    /// Differentiates `forwardStep` from the kept a and c_t; also adds the step's part of db_ih,
    /// db_hh and the gains' and shift's gradients.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let cellStates = pass.workspace.cellStates!
        let row = time * scan.batch + b
        let a = pass.workspace.gates + row * gates
        let da = pass.dG + row * gates
        let cell = cellStates + row * hidden
        let cellBefore = previous.map { cellStates + ($0 * scan.batch + b) * hidden } ?? scan.c0! + b * hidden
        let dcRow = pass.dc! + b * hidden
        let (gain, cellGain, cellBias, bias) = (scan.extra[0], scan.extra[1], scan.extra[2], scan.biasSum)
        let (dGain, dCellGain, dCellBias) = (pass.dExtra[0], pass.dExtra[1], pass.dExtra[2])
        let blocks = GateStatistics(a, hidden)
        @inline(__always)
        func normalized(_ block: Int, _ j: Int) -> Float {
            let (mean, scale) = blocks[block]
            return (a[block * hidden + j] - mean) * scale
        }
        @inline(__always)
        func z(_ block: Int, _ j: Int) -> Float {
            let k = block * hidden + j
            return gain[k] * normalized(block, j) + bias[k]
        }
        let (cellMean, cellScale) = layerNormStatistics(cell, hidden)
        // dĉ = dh o (1 - tc²) γ_c into the i block of dG (scratch until dz overwrites it).
        var (meanGradient, meanProduct): (Float, Float) = (0, 0)
        for j in 0..<hidden {
            let normalizedCell = (cell[j] - cellMean) * cellScale
            let tc = tanh(cellGain[j] * normalizedCell + cellBias[j])
            let dPreTanh = total[j] * sigmoid(z(3, j)) * (1 - tc * tc)
            dCellGain[j] += dPreTanh * normalizedCell
            dCellBias[j] += dPreTanh
            da[j] = dPreTanh * cellGain[j]
            meanGradient += da[j]
            meanProduct += da[j] * normalizedCell
        }
        (meanGradient, meanProduct) = (meanGradient / Float(hidden), meanProduct / Float(hidden))
        for j in 0..<hidden {
            let (i, f, g, o) = (sigmoid(z(0, j)), sigmoid(z(1, j)), tanh(z(2, j)),
                                sigmoid(z(3, j)))
            let normalizedCell = (cell[j] - cellMean) * cellScale
            let tc = tanh(cellGain[j] * normalizedCell + cellBias[j])
            let through = cellScale * (da[j] - meanGradient - normalizedCell * meanProduct)
            // The clip's gradient: 1 strictly inside (-clip, clip), else 0.
            let inside = abs(f * cellBefore[j] + i * g) < clip
            let dc = inside ? dcRow[j] + through : 0
            da[j] = dc * g * i * (1 - i)
            da[hidden + j] = dc * cellBefore[j] * f * (1 - f)
            da[2 * hidden + j] = dc * i * (1 - g * g)
            da[3 * hidden + j] = total[j] * tc * o * (1 - o)
            dcRow[j] = dc * f
            total[j] = 0
        }
        // da now holds dz; per block: db += dz, dγ += dz â, then da = LN'(dz γ) in place.
        for block in 0..<4 {
            let first = block * hidden
            var (meanGradient, meanProduct): (Float, Float) = (0, 0)
            for j in 0..<hidden {
                let k = first + j
                pass.dbih[k] += da[k]
                pass.dbhh[k] += da[k]
                dGain[k] += da[k] * normalized(block, j)
                da[k] *= gain[k]
                meanGradient += da[k]
                meanProduct += da[k] * normalized(block, j)
            }
            (meanGradient, meanProduct) = (meanGradient / Float(hidden), meanProduct / Float(hidden))
            let scale = blocks[block].scale
            for j in 0..<hidden {
                let k = first + j
                da[k] = scale * (da[k] - meanGradient - normalized(block, j) * meanProduct)
            }
        }
    }
}
