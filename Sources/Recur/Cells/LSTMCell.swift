#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch's nn.LSTM, gate order i, f, g, o:
//
//     i   = σ(W_ii x + b_ii + W_hi h̃ + b_hi)      [H]
//     f   = σ(W_if x + b_if + W_hf h̃ + b_hf)
//     g   = tanh(W_ig x + b_ig + W_hg h̃ + b_hg)
//     o   = σ(W_io x + b_io + W_ho h̃ + b_ho)
//     c_t = clip(f ⊙ c_{t-1} + i ⊙ g)             clip to ±cellClip (cuDNN's), or none
//     h_t = o ⊙ tanh(c_t)
//
// Backward, with dh = dL/dh_t and dc = dL/dc_t (from the next step) and tc = tanh(c_t):
// dc += dh o (1 - tc²), zeroed where the clip was active; do = dh tc; di = dc g; df = dc c_{t-1};
// dg = dc i; dc_{t-1} = dc f; then through σ' = σ(1 - σ) and tanh' = 1 - tanh².

extension RecurrentCell {
    /// The LSTM: state (h, c), four gates; Keras starts its forget-gate bias at 1.
    public static let lstm = RecurrentCell(
        name: "lstm", formerNames: [], gateCount: 4, hasCellState: true, kerasGateBiases: [0, 1, 0, 0],
        reference: LSTMSteps.self, cpu: LSTMSteps.self)
}

enum LSTMSteps {}

// MARK: Reference (float64)

extension LSTMSteps: RecurrentReferenceSteps {
    /// The gates after their nonlinearities, and c_t before the clip.
    private static func gates(_ step: RecurrentReferenceStep)
        -> (i: [Double], f: [Double], g: [Double], o: [Double], unclipped: [Double])
    {
        // H from c, which has H units with or without a projection of h (LSTMProjectionCell.swift).
        let (w, h) = (step.weights, step.state.cell.count)
        let a = zip(ReferenceMath.affine(w.input, step.input, w.inputBias, rows: 0..<(4 * h)),
                    ReferenceMath.affine(w.recurrent, step.state.hidden, w.recurrentBias, rows: 0..<(4 * h))).map(+)
        let i = (0..<h).map { ReferenceMath.sigmoid(a[$0]) }
        let f = (0..<h).map { ReferenceMath.sigmoid(a[h + $0]) }
        let g = (0..<h).map { tanh(a[2 * h + $0]) }
        let o = (0..<h).map { ReferenceMath.sigmoid(a[3 * h + $0]) }
        let unclipped = (0..<h).map { f[$0] * step.state.cell[$0] + i[$0] * g[$0] }
        return (i, f, g, o, unclipped)
    }

    private static func clip(_ value: Double, _ limit: Double?) -> Double {
        guard let limit else { return value }
        return min(max(value, -limit), limit)
    }

    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let (_, _, _, o, unclipped) = gates(step)
        let c = unclipped.map { clip($0, step.cellClip) }  // c_t = clip(f c_{t-1} + i g)
        return RecurrentReferenceState(hidden: (0..<c.count).map { o[$0] * tanh(c[$0]) }, cell: c)  // h_t = o tanh(c_t)
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h) = (step.weights, step.state.cell.count)
        let (i, f, g, o, unclipped) = gates(step)
        var da = [Double](repeating: 0, count: 4 * h)
        var dcBefore = [Double](repeating: 0, count: h)
        for j in 0..<h {
            let c = clip(unclipped[j], step.cellClip)
            let tc = tanh(c)
            // h_t = o tanh(c_t)
            var dc = gradient.cell[j] + gradient.hidden[j] * o[j] * (1 - tc * tc)
            let dout = gradient.hidden[j] * tc
            // c_t = clip(…): no gradient where the clip was active
            if let limit = step.cellClip, abs(unclipped[j]) >= limit { dc = 0 }
            // f c_{t-1} + i g
            da[j] = dc * g[j] * i[j] * (1 - i[j])  // i = σ(a_i)
            da[h + j] = dc * step.state.cell[j] * f[j] * (1 - f[j])  // f = σ(a_f)
            da[2 * h + j] = dc * i[j] * (1 - g[j] * g[j])  // g = tanh(a_g)
            da[3 * h + j] = dout * o[j] * (1 - o[j])  // o = σ(a_o)
            dcBefore[j] = dc * f[j]
        }
        // a = W_ih x + b_ih + W_hh h + b_hh
        var dx = [Double](repeating: 0, count: step.input.count)
        var dh = [Double](repeating: 0, count: step.state.hidden.count)
        ReferenceMath.affineBackward(w.input, step.input, da, rows: 0..<(4 * h),
                                     &weightGradients.input, &weightGradients.inputBias, &dx)
        ReferenceMath.affineBackward(w.recurrent, step.state.hidden, da, rows: 0..<(4 * h),
                                     &weightGradients.recurrent, &weightGradients.recurrentBias, &dh)
        return (dx, RecurrentReferenceState(hidden: dh, cell: dcBefore))
    }
}

// MARK: Fast CPU steps

extension LSTMSteps: CPURecurrentSteps {
    /// i, f, g, o = σ, σ, tanh, σ of (x W_ihᵀ + h̃ W_hhᵀ + b); c_t = clip(f c + i g); h_t = o tanh(c_t).
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        forwardStep(pass, row: b, time: time, valid: valid, into: pass.h + b * pass.scan.hidden)
    }

    /// `forwardStep` with o tanh(c_t) [H] written to `state`: h_t here, the unprojected u_t of
    /// `LSTMProjectionCell.swift`.
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool,
                            into state: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates  // [4H]: i, f, g, o
        let cell = pass.c! + b * hidden
        if valid {
            let product = pass.stepProducts + b * gates
            let bias = scan.biasSum
            @_transparent
            func chunk(_ j: Int, _ n: Int) {
                let i = CPUMath.sigmoid(pass.preactivation(gate, product, bias, j, n))
                let f = CPUMath.sigmoid(pass.preactivation(gate, product, bias, hidden + j, n))
                let g = CPUMath.tanh(pass.preactivation(gate, product, bias, 2 * hidden + j, n))
                let o = CPUMath.sigmoid(pass.preactivation(gate, product, bias, 3 * hidden + j, n))
                let unclipped = f * (cell + j).loadLanes(n) + i * g
                let cNew = unclipped.replacing(with: clip, where: unclipped .> clip)
                    .replacing(with: -clip, where: unclipped .< -clip)
                (gate + j).storeLanes(i, n)
                (gate + hidden + j).storeLanes(f, n)
                (gate + 2 * hidden + j).storeLanes(g, n)
                (gate + 3 * hidden + j).storeLanes(o, n)
                (cell + j).storeLanes(cNew, n)
                (state + j).storeLanes(o * CPUMath.tanh(cNew), n)
            }
            forEachLaneChunk(hidden, chunk)
        } else {
            gate.update(repeating: 0, count: gates)
        }
        (pass.workspace.cellStates! + row * hidden).update(from: cell, count: hidden)
    }

    /// Differentiates `forwardStep`: with dh the total dL/dh_t and tc = tanh(c_t),
    /// do = dh tc; dc_t += dh o (1 - tc²), zeroed where the clip was active;
    /// di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i, dc_{t-1} = dc_t f; then through σ' and tanh'.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        backwardStep(pass, row: b, time: time, previous: previous, outputGradient: total, clearsOutputGradient: true,
                     unprojected: nil)
    }

    /// `backwardStep` with dL/d(o tanh(c_t)) [H] read from `outputGradient` (set to 0 after when
    /// `clearsOutputGradient`), and o tanh(c_t) written to `unprojected` when given: what
    /// `LSTMProjectionCell.swift` needs for dW_hr. Constant arguments at every call, so the
    /// branches fold away after inlining.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             outputGradient total: UnsafeMutablePointer<Float>, clearsOutputGradient: Bool,
                             unprojected: UnsafeMutablePointer<Float>?) {
        let scan = pass.scan
        let (hidden, gates, clip) = (scan.hidden, scan.gates, scan.clip)
        let cellStates = pass.workspace.cellStates!
        let row = time * scan.batch + b
        let gate = pass.workspace.gates + row * gates
        let da = pass.dG + row * gates
        let cell = cellStates + row * hidden
        let cellBefore = previous.map { cellStates + ($0 * scan.batch + b) * hidden } ?? scan.c0! + b * hidden
        let dcRow = pass.dc! + b * hidden
        @_transparent
        func chunk(_ j: Int, _ n: Int) {
            let i = (gate + j).loadLanes(n)
            let f = (gate + hidden + j).loadLanes(n)
            let g = (gate + 2 * hidden + j).loadLanes(n)
            let o = (gate + 3 * hidden + j).loadLanes(n)
            let before = (cellBefore + j).loadLanes(n)
            let dhNow = (total + j).loadLanes(n)
            let tc = CPUMath.tanh((cell + j).loadLanes(n))
            // The clip's gradient: 1 strictly inside (-clip, clip), else 0.
            let inside = CPUMath.magnitude(f * before + i * g) .< clip
            let dcNow = ((dcRow + j).loadLanes(n) + dhNow * o * (1 - tc * tc)).replacing(with: 0, where: .!inside)
            (da + j).storeLanes(dcNow * g * i * (1 - i), n)
            (da + hidden + j).storeLanes(dcNow * before * f * (1 - f), n)
            (da + 2 * hidden + j).storeLanes(dcNow * i * (1 - g * g), n)
            (da + 3 * hidden + j).storeLanes(dhNow * tc * o * (1 - o), n)
            (dcRow + j).storeLanes(dcNow * f, n)
            if clearsOutputGradient { (total + j).storeLanes(CPULanes(), n) }
            if let unprojected { (unprojected + j).storeLanes(o * tc, n) }
        }
        forEachLaneChunk(hidden, chunk)
    }
}
