#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The gated recurrent unit of Cho et al. 2014 (Keras `reset_after=False`): the reset gate scales
// h̃ before W_hn, so each step needs a second recurrent product. Gate order r, z, n:
//
//     r   = σ(W_ir x + b_ir + W_hr h̃ + b_hr)      [H]
//     z   = σ(W_iz x + b_iz + W_hz h̃ + b_hz)
//     q   = r ⊙ h̃                                 (kept per step: `candidateRecurrent`)
//     n   = tanh(W_in x + b_in + W_hn q + b_hn)
//     h_t = (1 - z) ⊙ n + z ⊙ h                   h = h_{t-1} without dropout (kept: `hiddenStates`)
//
// Backward, with dh = dL/dh_t: dn = dh (1 - z); dz = dh (h - n); dh_{t-1} = dh z + (through h̃);
// da_n = dn (1 - n²); dq = W_hnᵀ da_n; dr = dq ⊙ h̃; dh̃ = dq ⊙ r + W_h(r,z)ᵀ da_(r,z).

extension RecurrentCell {
    /// The GRU with the reset gate before W_hn. Also read as `gruResetBefore`.
    public static let gruResetBefore = RecurrentCell(
        name: "gru_reset_before", formerNames: ["gruResetBefore"], gateCount: 3, keepsStepStates: true,
        reference: GRUResetBeforeSteps.self, cpu: GRUResetBeforeSteps.self)
}

enum GRUResetBeforeSteps {}

// MARK: Reference (float64)

extension GRUResetBeforeSteps: RecurrentReferenceSteps {
    private static func gates(_ step: RecurrentReferenceStep)
        -> (r: [Double], z: [Double], q: [Double], n: [Double])
    {
        let (w, h, state) = (step.weights, step.hiddenSize, step.state.hidden)
        let gx = ReferenceMath.affine(w.input, step.input, w.inputBias, rows: 0..<(3 * h))
        let gh = ReferenceMath.affine(w.recurrent, state, w.recurrentBias, rows: 0..<(2 * h))  // r, z blocks
        let r = (0..<h).map { ReferenceMath.sigmoid(gx[$0] + gh[$0]) }
        let z = (0..<h).map { ReferenceMath.sigmoid(gx[h + $0] + gh[h + $0]) }
        let q = (0..<h).map { r[$0] * state[$0] }
        let hn = ReferenceMath.affine(w.recurrent, q, w.recurrentBias, rows: (2 * h)..<(3 * h))  // W_hn q + b_hn
        let n = (0..<h).map { tanh(gx[2 * h + $0] + hn[$0]) }
        return (r, z, q, n)
    }

    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let (_, z, _, n) = gates(step)
        let h = step.state.hidden
        return RecurrentReferenceState(hidden: (0..<h.count).map { (1 - z[$0]) * n[$0] + z[$0] * h[$0] })
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h, state) = (step.weights, step.hiddenSize, step.state.hidden)
        let (r, z, q, n) = gates(step)
        var da = [Double](repeating: 0, count: 3 * h)
        var dh = [Double](repeating: 0, count: h)
        for j in 0..<h {
            let dhNow = gradient.hidden[j]
            // h_t = (1 - z) n + z h
            da[h + j] = dhNow * (state[j] - n[j]) * z[j] * (1 - z[j])  // z = σ(a_z)
            da[2 * h + j] = dhNow * (1 - z[j]) * (1 - n[j] * n[j])  // n = tanh(a_n)
            dh[j] = dhNow * z[j]
        }
        // n = tanh(W_in x + b_in + W_hn q + b_hn)
        var dq = [Double](repeating: 0, count: h)
        ReferenceMath.affineBackward(w.recurrent, q, Array(da[(2 * h)...]), rows: (2 * h)..<(3 * h),
                                     &weightGradients.recurrent, &weightGradients.recurrentBias, &dq)
        // q = r h
        for j in 0..<h {
            da[j] = dq[j] * state[j] * r[j] * (1 - r[j])  // r = σ(a_r)
            dh[j] += dq[j] * r[j]
        }
        // r, z = σ(W_i(r,z) x + b_i(r,z) + W_h(r,z) h + b_h(r,z))
        ReferenceMath.affineBackward(w.recurrent, state, Array(da[0..<(2 * h)]), rows: 0..<(2 * h),
                                     &weightGradients.recurrent, &weightGradients.recurrentBias, &dh)
        var dx = [Double](repeating: 0, count: step.input.count)
        ReferenceMath.affineBackward(w.input, step.input, da, rows: 0..<(3 * h),
                                     &weightGradients.input, &weightGradients.inputBias, &dx)
        return (dx, RecurrentReferenceState(hidden: dh))
    }
}

// MARK: Fast CPU steps

extension GRUResetBeforeSteps: CPURecurrentSteps {
    static var multipliesCandidateBlockSeparately: Bool { true }

    /// The r and z blocks' product, the reset gates, then the n block's product of r ⊙ h̃.
    @inline(__always)
    static func forwardProducts(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>) {
        let scan = pass.scan
        let (b, h, g) = (scan.batch, scan.hidden, scan.gates)
        let (first, count) = (rows.lowerBound, rows.count)
        let products = pass.stepProducts + first * g  // [rows, G]
        // r and z blocks only: stepProducts[rows, 0 ..< 2H] = h̃ · W_h(r,z)ᵀ
        stepProduct(rows: count, n: 2 * h, k: h, a: pass.workspace.recurrentInput + (time * b + first) * h, lda: h,
                    b: pass.recurrentWeights, c: products, ldc: g, accumulate: false)
        for row in rows { resetGates(pass, row: row, time: time) }
        // n block: stepProducts[rows, 2H ..< 3H] = (r ⊙ h̃)[rows, H] · W_hnᵀ
        let resetHidden = pass.workspace.candidateRecurrent! + (time * b + first) * h
        stepProduct(rows: count, n: h, k: h, a: resetHidden, lda: h, b: pass.candidateWeights,
                    c: products + 2 * h, ldc: g, accumulate: false)
    }

    /// First half of a step: r, z, and r ⊙ h̃ (the operand of W_hn).
    @inline(__always)
    private static func resetGates(_ pass: CPURecurrentForward, row b: Int, time: Int) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates  // [3H]: r, z, n
        let resetHidden = pass.workspace.candidateRecurrent! + row * hidden  // [H]: r ⊙ h̃
        guard scan.isValid(b, atTime: time) else {
            resetHidden.update(repeating: 0, count: hidden)
            return
        }
        let product = pass.stepProducts + b * gates
        let recurrentInput = pass.workspace.recurrentInput + row * hidden
        let bias = scan.biasSum
        @_transparent
        func chunk(_ j: Int, _ n: Int) {
            let r = CPUMath.sigmoid(pass.preactivation(gate, product, bias, j, n))
            (gate + j).storeLanes(r, n)
            (gate + hidden + j).storeLanes(CPUMath.sigmoid(pass.preactivation(gate, product, bias, hidden + j, n)), n)
            (resetHidden + j).storeLanes(r * (recurrentInput + j).loadLanes(n), n)
        }
        forEachLaneChunk(hidden, chunk)
    }

    /// Second half: n = tanh(x W_inᵀ + b_in + (r ⊙ h̃) W_hnᵀ + b_hn); h_t = (1 - z) n + z h.
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates
        let state = pass.h + b * hidden
        if valid {
            let product = pass.stepProducts + b * gates
            let bias = scan.biasSum
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let z = (gate + hidden + j).loadLanes(n)
                let candidateState = CPUMath.tanh(pass.preactivation(gate, product, bias, 2 * hidden + j, n))
                let previous = (state + j).loadLanes(n)
                (gate + 2 * hidden + j).storeLanes(candidateState, n)
                (state + j).storeLanes(candidateState + z * (previous - candidateState), n)
            }
            forEachLaneChunk(hidden, chunk)
        } else {
            gate.update(repeating: 0, count: gates)
        }
        (pass.workspace.hiddenStates! + row * hidden).update(from: state, count: hidden)
    }

    /// Differentiates `forwardStep` (the second half): da_n and da_z into dG, dh_{t-1} = dh z.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates
        let da = pass.dG + row * gates
        let before = pass.hiddenBefore(row: b, previous: previous)
        for j in 0..<hidden {
            let (z, n) = (gate[hidden + j], gate[2 * hidden + j])
            da[hidden + j] = total[j] * (before[j] - n) * z * (1 - z)
            da[2 * hidden + j] = total[j] * (1 - z) * (1 - n * n)
            total[j] *= z
        }
    }

    /// Differentiates `forwardProducts`, last product first: dq = da_n · W_hn, then the reset
    /// gates, then dh̃ += da_(r,z) · W_h(r,z).
    @inline(__always)
    static func backwardProducts(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>) {
        let scan = pass.scan
        let (b, h, g) = (scan.batch, scan.hidden, scan.gates)
        let (first, count) = (rows.lowerBound, rows.count)
        let stepRows = (time * b + first) * g  // row (time, first) of dG
        // dq[rows, H] = dG[rows, 2H ..< 3H] · W_hn   (differentiates the n block's W_hn (r ⊙ h̃))
        stepProduct(rows: count, n: h, k: h, a: pass.dG + stepRows + 2 * h, lda: g,
                    b: pass.recurrentWeights.droppingRows(2 * h), c: pass.dq + first * h, ldc: h, accumulate: false)
        for row in rows { resetGatesBackward(pass, row: row, time: time) }
        // dh̃ (holding dq ⊙ r) += dG[rows, 0 ..< 2H] · W_h(r,z)
        stepProduct(rows: count, n: h, k: 2 * h, a: pass.dG + stepRows, lda: g, b: pass.recurrentWeights,
                    c: pass.dhTilde + first * h, ldc: h, accumulate: true)
    }

    /// Differentiates `resetGates`: with dq = dL/d(r ⊙ h̃), da_r = dq h̃ r (1 - r) into dG, and
    /// dh̃ starts as dq r (the r and z blocks are added by GEMM).
    @inline(__always)
    private static func resetGatesBackward(_ pass: CPURecurrentBackward, row b: Int, time: Int) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let through = pass.dhTilde + b * hidden
        guard scan.isValid(b, atTime: time) else {
            through.update(repeating: 0, count: hidden)
            return
        }
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates
        let recurrentInput = pass.workspace.recurrentInput + row * hidden
        let (da, q) = (pass.dG + row * gates, pass.dq + b * hidden)
        for j in 0..<hidden {
            let r = gate[j]
            da[j] = q[j] * recurrentInput[j] * r * (1 - r)
            through[j] = q[j] * r
        }
    }

    /// r, z rows: dW_h(r,z)[2H, H] += dG[:, 0 ..< 2H]ᵀ · h̃; n rows: dW_hn += dG[:, 2H ..< 3H]ᵀ · (r ⊙ h̃).
    static func accumulateRecurrentWeightGradient(_ pass: CPURecurrentBackward) {
        let (g, h) = (pass.scan.gates, pass.scan.hidden)
        let rows = pass.scan.steps * pass.scan.batch
        pass.accumulateWeightGradient(m: 2 * h, n: h, rows: rows, pass.dG, g, pass.workspace.recurrentInput, pass.dWhh)
        pass.accumulateWeightGradient(m: h, n: h, rows: rows, pass.dG + 2 * h, g,
                                      pass.workspace.candidateRecurrent!, pass.dWhh + 2 * h * h)
    }
}
