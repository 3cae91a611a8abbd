#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The layer-normalised GRU: the analogue of `layer_norm_lstm` (Ba, Kiros & Hinton 2016, with the
// same LN and ε, `layerNormEpsilon`) for the GRU with the reset gate after the recurrent matmul
// (PyTorch's nn.GRU, cell `gru`). The r and z blocks normalise their summed pre-activation, as the
// LSTM's gates do; the candidate normalises its input and recurrent parts apart, since r scales
// only the latter. Gate order r, z, n; blocks k of H units:
//
//     a_k = W_ik x + W_hk h̃                        k = r, z: summed, no bias before the normalisation
//     r   = σ(γ_r ⊙ LN(a_r) + b_ir + b_hr)
//     z   = σ(γ_z ⊙ LN(a_z) + b_iz + b_hz)
//     n   = tanh(γ_n ⊙ LN(W_in x) + b_in + r ⊙ (γ_hn ⊙ LN(W_hn h̃) + b_hn))
//     h_t = (1 - z) ⊙ n + z ⊙ h                    h = h_{t-1} without dropout (kept: `hiddenStates`)
//
// Parameters after PyTorch's four: `layer_norm_gate_gain` [3H] = (γ_r, γ_z, γ_n) and
// `layer_norm_candidate_gain` [H] = γ_hn, both starting at 1; the PyTorch-style biases are the
// normalisations' shifts.
//
// Backward, with LN' as in `LayerNormLSTMCell.swift` and dh = dL/dh_t: dn = dh (1 - z);
// dz = dh (h - n); dh_{t-1} = dh z + (through h̃); dpre_n = dn (1 - n²): db_in += dpre_n,
// dγ_n += dpre_n LN(W_in x), da_in = LN'(dpre_n γ_n); with hn = γ_hn LN(W_hn h̃) + b_hn:
// dr = dpre_n hn, db_hn += r dpre_n, dγ_hn += r dpre_n LN(W_hn h̃), da_hn = LN'(r dpre_n γ_hn).
// W_ih sees (da_r, da_z, da_in); W_hh and h̃ see (da_r, da_z, da_hn).
//
// The workspace keeps a_r, a_z and W_in x in the `gates` row, W_hn h̃ in `candidateRecurrent` and
// h_t in `hiddenStates`; the backward step recomputes the rest, as the LSTM's does. On OpenCL:
// Kernels/layer_norm_gru.cl in the row skeleton, as the LSTM's.

extension RecurrentCell {
    /// The layer-normalised GRU, reset after the recurrent matmul.
    public static let layerNormGRU = RecurrentCell(
        name: "layer_norm_gru", formerNames: [], gateCount: 3, keepsStepStates: true,
        hasSeparateRecurrentGateGradients: true,
        extraParameters: [
            RecurrentParameter(name: "layer_norm_gate_gain", extents: [.gates], role: .normalizationGain),
            RecurrentParameter(name: "layer_norm_candidate_gain", extents: [.hidden], role: .normalizationGain),
        ],
        reference: LayerNormGRUSteps.self, cpu: LayerNormGRUSteps.self)
}

enum LayerNormGRUSteps {}

// MARK: Reference (float64)

extension LayerNormGRUSteps: RecurrentReferenceSteps {
    /// What one forward step computes, kept for its backward.
    private struct Values {
        /// LN of a_r, a_z, W_in x and W_hn h̃, and their s.
        var normalized: [[Double]], scales: [Double]
        var r: [Double], z: [Double], n: [Double]
        /// γ_hn LN(W_hn h̃) + b_hn.
        var candidateRecurrent: [Double]
    }

    private static func values(_ step: RecurrentReferenceStep) -> Values {
        let (w, h) = (step.weights, step.hiddenSize)
        let (gain, candidateGain) = (w.extra[0], w.extra[1])
        let none = [Double](repeating: 0, count: 3 * h)
        let gx = ReferenceMath.affine(w.input, step.input, none, rows: 0..<(3 * h))
        let gh = ReferenceMath.affine(w.recurrent, step.state.hidden, none, rows: 0..<(3 * h))
        let a = zip(gx, gh).map(+)
        let parts = [ReferenceMath.layerNorm(a[0..<h]), ReferenceMath.layerNorm(a[h..<(2 * h)]),
                     ReferenceMath.layerNorm(gx[(2 * h)...]), ReferenceMath.layerNorm(gh[(2 * h)...])]
        let shifted = { (block: Int, j: Int) in
            let k = block * h + j
            return gain[k] * parts[block].normalized[j] + w.inputBias[k] + (block < 2 ? w.recurrentBias[k] : 0)
        }
        let r = (0..<h).map { ReferenceMath.sigmoid(shifted(0, $0)) }
        let z = (0..<h).map { ReferenceMath.sigmoid(shifted(1, $0)) }
        let hn = (0..<h).map { candidateGain[$0] * parts[3].normalized[$0] + w.recurrentBias[2 * h + $0] }
        let n = (0..<h).map { tanh(shifted(2, $0) + r[$0] * hn[$0]) }
        return Values(normalized: parts.map(\.normalized), scales: parts.map(\.scale), r: r, z: z, n: n,
                      candidateRecurrent: hn)
    }

    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let v = values(step)
        let h = step.state.hidden
        return RecurrentReferenceState(hidden: (0..<h.count).map { (1 - v.z[$0]) * v.n[$0] + v.z[$0] * h[$0] })
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h, state) = (step.weights, step.hiddenSize, step.state.hidden)
        let v = values(step)
        // Gradients at the normalisations' outputs (before the gains): r, z, input n, recurrent n.
        var dShifted = [[Double]](repeating: [Double](repeating: 0, count: h), count: 4)
        var dh = [Double](repeating: 0, count: h)
        for j in 0..<h {
            let dhNow = gradient.hidden[j]
            // h_t = (1 - z) n + z h
            let dPreN = dhNow * (1 - v.z[j]) * (1 - v.n[j] * v.n[j])  // n = tanh(…)
            dShifted[1][j] = dhNow * (state[j] - v.n[j]) * v.z[j] * (1 - v.z[j])  // z = σ(…)
            dShifted[0][j] = dPreN * v.candidateRecurrent[j] * v.r[j] * (1 - v.r[j])  // r = σ(…)
            dShifted[2][j] = dPreN
            dShifted[3][j] = dPreN * v.r[j]
            dh[j] = dhNow * v.z[j]
        }
        var daInput = [Double](), daRecurrent = [Double]()
        for block in 0..<4 {
            let gain = block < 3 ? Array(w.extra[0][(block * h)..<((block + 1) * h)]) : w.extra[1]
            var dNormalized = [Double](repeating: 0, count: h)
            for j in 0..<h {
                let d = dShifted[block][j]
                let k = min(block, 2) * h + j
                if block != 3 { weightGradients.inputBias[k] += d }
                if block != 2 { weightGradients.recurrentBias[k] += d }
                if block < 3 {
                    weightGradients.extra[0][k] += d * v.normalized[block][j]
                } else {
                    weightGradients.extra[1][j] += d * v.normalized[block][j]
                }
                dNormalized[j] = d * gain[j]
            }
            let da = ReferenceMath.layerNormBackward(dNormalized, normalized: v.normalized[block],
                                                     scale: v.scales[block])
            switch block {
            case 0, 1: daInput += da; daRecurrent += da
            case 2: daInput += da
            default: daRecurrent += da
            }
        }
        var dx = [Double](repeating: 0, count: step.input.count)
        var unusedBias = [Double](repeating: 0, count: 3 * h)
        ReferenceMath.affineBackward(w.input, step.input, daInput, rows: 0..<(3 * h),
                                     &weightGradients.input, &unusedBias, &dx)
        ReferenceMath.affineBackward(w.recurrent, state, daRecurrent, rows: 0..<(3 * h),
                                     &weightGradients.recurrent, &unusedBias, &dh)
        return (dx, RecurrentReferenceState(hidden: dh))
    }
}

// MARK: Fast CPU steps

extension LayerNormGRUSteps: CPURecurrentSteps {
    static var accumulatesParameterGradientsInSteps: Bool { true }

    /// Keeps a_r, a_z, W_in x (gates row) and W_hn h̃ (`candidateRecurrent`), then the GRU update.
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let a = pass.workspace.gates + row * gates
        let candidate = pass.workspace.candidateRecurrent! + row * hidden
        let state = pass.h + b * hidden
        if valid {
            let product = pass.stepProducts + b * gates
            let (gain, candidateGain) = (scan.extra[0], scan.extra[1])
            let (inputBias, recurrentBias) = (scan.bIH, scan.bHH)
            for k in 0..<(2 * hidden) { a[k] += product[k] }
            candidate.update(from: product + 2 * hidden, count: hidden)
            let (rMean, rScale) = layerNormStatistics(a, hidden)
            let (zMean, zScale) = layerNormStatistics(a + hidden, hidden)
            let (xMean, xScale) = layerNormStatistics(a + 2 * hidden, hidden)
            let (hMean, hScale) = layerNormStatistics(candidate, hidden)
            for j in 0..<hidden {
                let (kz, kn) = (hidden + j, 2 * hidden + j)
                let r = sigmoid(gain[j] * ((a[j] - rMean) * rScale) + inputBias[j] + recurrentBias[j])
                let z = sigmoid(gain[kz] * ((a[kz] - zMean) * zScale) + inputBias[kz] + recurrentBias[kz])
                let hn = candidateGain[j] * ((candidate[j] - hMean) * hScale) + recurrentBias[kn]
                let n = tanh(gain[kn] * ((a[kn] - xMean) * xScale) + inputBias[kn] + r * hn)
                state[j] = n + z * (state[j] - n)
            }
        } else {
            a.update(repeating: 0, count: gates)
            candidate.update(repeating: 0, count: hidden)
        }
        (pass.workspace.hiddenStates! + row * hidden).update(from: state, count: hidden)
    }

    /// Differentiates `forwardStep` from what it kept; writes (da_r, da_z, da_in) to dG and
    /// (da_r, da_z, da_hn) to dGh, and adds the step's bias, gain gradients.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let a = pass.workspace.gates + row * gates
        let candidate = pass.workspace.candidateRecurrent! + row * hidden
        let (da, dah) = (pass.dG + row * gates, pass.dGh + row * gates)
        let before = pass.hiddenBefore(row: b, previous: previous)
        let (gain, candidateGain) = (scan.extra[0], scan.extra[1])
        let (inputBias, recurrentBias) = (scan.bIH, scan.bHH)
        let (dGain, dCandidateGain) = (pass.dExtra[0], pass.dExtra[1])
        // The normalisations' inputs, block by block: a_r, a_z, W_in x, W_hn h̃ (no arrays: this
        // runs per row inside the time loop).
        @inline(__always)
        func input(_ block: Int) -> UnsafeMutablePointer<Float> { block == 3 ? candidate : a + block * hidden }
        let statistics = (layerNormStatistics(input(0), hidden), layerNormStatistics(input(1), hidden),
                          layerNormStatistics(input(2), hidden), layerNormStatistics(input(3), hidden))
        @inline(__always)
        func scale(_ block: Int) -> Float {
            switch block {
            case 0: statistics.0.scale
            case 1: statistics.1.scale
            case 2: statistics.2.scale
            default: statistics.3.scale
            }
        }
        @inline(__always)
        func normalized(_ block: Int, _ j: Int) -> Float {
            let mean = switch block {
            case 0: statistics.0.mean
            case 1: statistics.1.mean
            case 2: statistics.2.mean
            default: statistics.3.mean
            }
            return (input(block)[j] - mean) * scale(block)
        }
        // dL/d(the normalisations' shifted outputs) into da (r, z, input n) and dah's n block.
        for j in 0..<hidden {
            let (kz, kn) = (hidden + j, 2 * hidden + j)
            let r = sigmoid(gain[j] * normalized(0, j) + inputBias[j] + recurrentBias[j])
            let z = sigmoid(gain[kz] * normalized(1, j) + inputBias[kz] + recurrentBias[kz])
            let hn = candidateGain[j] * normalized(3, j) + recurrentBias[kn]
            let n = tanh(gain[kn] * normalized(2, j) + inputBias[kn] + r * hn)
            let dPreN = total[j] * (1 - z) * (1 - n * n)
            da[j] = dPreN * hn * r * (1 - r)
            da[kz] = total[j] * (before[j] - n) * z * (1 - z)
            da[kn] = dPreN
            dah[kn] = dPreN * r
            total[j] *= z
        }
        // Per normalisation: bias and gain gradients, then da = LN'(d γ) in place.
        for block in 0..<4 {
            let target = block == 3 ? dah + 2 * hidden : da + block * hidden
            let blockGain = block == 3 ? candidateGain : gain + block * hidden
            let dBlockGain = block == 3 ? dCandidateGain : dGain + block * hidden
            var (meanGradient, meanProduct): (Float, Float) = (0, 0)
            for j in 0..<hidden {
                let k = min(block, 2) * hidden + j
                if block != 3 { pass.dbih[k] += target[j] }
                if block != 2 { pass.dbhh[k] += target[j] }
                dBlockGain[j] += target[j] * normalized(block, j)
                target[j] *= blockGain[j]
                meanGradient += target[j]
                meanProduct += target[j] * normalized(block, j)
            }
            (meanGradient, meanProduct) = (meanGradient / Float(hidden), meanProduct / Float(hidden))
            for j in 0..<hidden {
                target[j] = scale(block) * (target[j] - meanGradient - normalized(block, j) * meanProduct)
            }
        }
        dah.update(from: da, count: 2 * hidden)
    }
}
