#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The gated recurrent unit with the reset gate applied after the recurrent matmul (PyTorch's
// nn.GRU, cuDNN, Keras `reset_after=True`), gate order r, z, n:
//
//     r   = σ(W_ir x + b_ir + W_hr h̃ + b_hr)      [H]
//     z   = σ(W_iz x + b_iz + W_hz h̃ + b_hz)
//     hn  = W_hn h̃ + b_hn                         (kept per step: `candidateRecurrent`)
//     n   = tanh(W_in x + b_in + r ⊙ hn)
//     h_t = (1 - z) ⊙ n + z ⊙ h                   h = h_{t-1} without dropout (kept: `hiddenStates`)
//
// Backward, with dh = dL/dh_t: dn = dh (1 - z); dz = dh (h - n); dh_{t-1} = dh z + (through h̃);
// da_n = dn (1 - n²); dr = da_n hn. W_ih sees (da_r, da_z, da_n); W_hh, b_hh and h̃ see
// (da_r, da_z, r da_n), hence the second gate-gradient buffer.

extension RecurrentCell {
    /// The GRU as PyTorch runs it: reset after the recurrent matmul.
    public static let gru = RecurrentCell(
        name: "gru", formerNames: [], gateCount: 3, keepsStepStates: true, hasSeparateRecurrentGateGradients: true,
        reference: GRUSteps.self, cpu: GRUSteps.self)
}

enum GRUSteps {}

// MARK: Reference (float64)

extension GRUSteps: RecurrentReferenceSteps {
    private static func gates(_ step: RecurrentReferenceStep)
        -> (r: [Double], z: [Double], n: [Double], hn: [Double])
    {
        let (w, h) = (step.weights, step.hiddenSize)
        let gx = ReferenceMath.affine(w.input, step.input, w.inputBias, rows: 0..<(3 * h))
        let gh = ReferenceMath.affine(w.recurrent, step.state.hidden, w.recurrentBias, rows: 0..<(3 * h))
        let r = (0..<h).map { ReferenceMath.sigmoid(gx[$0] + gh[$0]) }
        let z = (0..<h).map { ReferenceMath.sigmoid(gx[h + $0] + gh[h + $0]) }
        let hn = Array(gh[(2 * h)...])
        let n = (0..<h).map { tanh(gx[2 * h + $0] + r[$0] * hn[$0]) }
        return (r, z, n, hn)
    }

    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let (_, z, n, _) = gates(step)
        let h = step.state.hidden
        return RecurrentReferenceState(hidden: (0..<h.count).map { (1 - z[$0]) * n[$0] + z[$0] * h[$0] })
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h) = (step.weights, step.hiddenSize)
        let (r, z, n, hn) = gates(step)
        var daInput = [Double](repeating: 0, count: 3 * h)  // as W_ih sees them
        var daRecurrent = [Double](repeating: 0, count: 3 * h)  // as W_hh sees them
        var dh = [Double](repeating: 0, count: h)
        for j in 0..<h {
            let dhNow = gradient.hidden[j]
            // h_t = (1 - z) n + z h
            let dn = dhNow * (1 - z[j])
            let dz = dhNow * (step.state.hidden[j] - n[j])
            dh[j] = dhNow * z[j]
            // n = tanh(a_n + r hn)
            let dan = dn * (1 - n[j] * n[j])
            let dr = dan * hn[j]
            daInput[j] = dr * r[j] * (1 - r[j])  // r = σ(a_r)
            daInput[h + j] = dz * z[j] * (1 - z[j])  // z = σ(a_z)
            daInput[2 * h + j] = dan
            daRecurrent[j] = daInput[j]
            daRecurrent[h + j] = daInput[h + j]
            daRecurrent[2 * h + j] = dan * r[j]  // hn = W_hn h + b_hn, scaled by r
        }
        var dx = [Double](repeating: 0, count: step.input.count)
        ReferenceMath.affineBackward(w.input, step.input, daInput, rows: 0..<(3 * h),
                                     &weightGradients.input, &weightGradients.inputBias, &dx)
        ReferenceMath.affineBackward(w.recurrent, step.state.hidden, daRecurrent, rows: 0..<(3 * h),
                                     &weightGradients.recurrent, &weightGradients.recurrentBias, &dh)
        return (dx, RecurrentReferenceState(hidden: dh))
    }
}

// MARK: Fast CPU steps

extension GRUSteps: CPURecurrentSteps {
    /// r, z = σ(x W_ihᵀ + h̃ W_hhᵀ + b); hn = h̃ W_hnᵀ + b_hn; n = tanh(x W_inᵀ + b_in + r hn);
    /// h_t = (1 - z) n + z h.
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates  // [3H]: r, z, n
        let candidate = pass.workspace.candidateRecurrent! + row * hidden  // [H]: W_hn h̃ + b_hn
        let state = pass.h + b * hidden
        if valid {
            let product = pass.stepProducts + b * gates
            let bias = scan.biasSum
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let r = CPUMath.sigmoid(pass.preactivation(gate, product, bias, j, n))
                let z = CPUMath.sigmoid(pass.preactivation(gate, product, bias, hidden + j, n))
                let hn = (product + 2 * hidden + j).loadLanes(n) + (scan.bHH + 2 * hidden + j).loadLanes(n)
                let input = (gate + 2 * hidden + j).loadLanes(n) + (scan.bIH + 2 * hidden + j).loadLanes(n)
                let candidateState = CPUMath.tanh(input + r * hn)
                let previous = (state + j).loadLanes(n)
                (gate + j).storeLanes(r, n)
                (gate + hidden + j).storeLanes(z, n)
                (gate + 2 * hidden + j).storeLanes(candidateState, n)
                (candidate + j).storeLanes(hn, n)
                (state + j).storeLanes(candidateState + z * (previous - candidateState), n)
            }
            forEachLaneChunk(hidden, chunk)
        } else {
            gate.update(repeating: 0, count: gates)
            candidate.update(repeating: 0, count: hidden)
        }
        (pass.workspace.hiddenStates! + row * hidden).update(from: state, count: hidden)
    }

    /// Differentiates `forwardStep`: dn = dh (1 - z), dz = dh (h - n), dh_{t-1} += dh z;
    /// da_n = dn (1 - n²); dr = da_n hn; the recurrent side sees r ⊙ da_n for the n block.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates
        let (da, daRecurrent) = (pass.dG + row * gates, pass.dGh + row * gates)
        let candidate = pass.workspace.candidateRecurrent! + row * hidden
        let before = pass.hiddenBefore(row: b, previous: previous)
        @_transparent
        func chunk(_ j: Int, _ n: Int) {
            let r = (gate + j).loadLanes(n)
            let z = (gate + hidden + j).loadLanes(n)
            let candidateState = (gate + 2 * hidden + j).loadLanes(n)
            let dhNow = (total + j).loadLanes(n)
            let dn = dhNow * (1 - z) * (1 - candidateState * candidateState)
            let dz = dhNow * ((before + j).loadLanes(n) - candidateState) * z * (1 - z)
            let dr = dn * (candidate + j).loadLanes(n) * r * (1 - r)
            (da + j).storeLanes(dr, n)
            (da + hidden + j).storeLanes(dz, n)
            (da + 2 * hidden + j).storeLanes(dn, n)
            (daRecurrent + j).storeLanes(dr, n)
            (daRecurrent + hidden + j).storeLanes(dz, n)
            (daRecurrent + 2 * hidden + j).storeLanes(dn * r, n)
            (total + j).storeLanes(dhNow * z, n)
        }
        forEachLaneChunk(hidden, chunk)
    }
}
