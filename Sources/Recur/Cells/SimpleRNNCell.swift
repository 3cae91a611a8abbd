#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The simple RNN (Elman), PyTorch's nn.RNN with nonlinearity "tanh" or "relu". One gate block:
//
//     a   = W_ih x + b_ih + W_hh h̃ + b_hh          [H]
//     h_t = act(a)                                act = tanh (`rnn_tanh`) or max(·, 0) (`rnn_relu`)
//
// Backward: da = dh_t ⊙ act'(a), with act' read from h_t (1 - h_t² for tanh, [h_t > 0] for ReLU);
// h_{t-1} reaches h_t only through h̃, so its gradient is W_hhᵀ da (taken by the scan's GEMM).

extension RecurrentCell {
    /// h_t = tanh(W_ih x + b_ih + W_hh h̃ + b_hh). Also read as `rnnTanh`, `rnn`, `simplernn`.
    public static let rnnTanh = RecurrentCell(
        name: "rnn_tanh", formerNames: ["rnnTanh", "rnn", "simplernn"], gateCount: 1,
        reference: TanhRNNSteps.self, cpu: TanhRNNSteps.self)

    /// h_t = max(W_ih x + b_ih + W_hh h̃ + b_hh, 0). Also read as `rnnRelu`.
    public static let rnnRelu = RecurrentCell(
        name: "rnn_relu", formerNames: ["rnnRelu"], gateCount: 1,
        reference: ReLURNNSteps.self, cpu: ReLURNNSteps.self)
}

/// The two simple RNNs differ only in their activation, a constant the compiler folds.
protocol SimpleRNNSteps: RecurrentReferenceSteps, CPURecurrentSteps {
    static var isReLU: Bool { get }
}

// Computed, not stored: a stored static is a lazily initialised global, checked at every read.
enum TanhRNNSteps: SimpleRNNSteps {
    static var isReLU: Bool { false }
}

enum ReLURNNSteps: SimpleRNNSteps {
    static var isReLU: Bool { true }
}

// MARK: Reference (float64)

extension SimpleRNNSteps {
    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let (w, h) = (step.weights, step.hiddenSize)
        let a = zip(ReferenceMath.affine(w.input, step.input, w.inputBias, rows: 0..<h),
                    ReferenceMath.affine(w.recurrent, step.state.hidden, w.recurrentBias, rows: 0..<h)).map(+)
        return RecurrentReferenceState(hidden: a.map { isReLU ? max($0, 0) : tanh($0) })  // h_t = act(a)
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let (w, h) = (step.weights, step.hiddenSize)
        let y = forward(step).hidden
        // h_t = act(a)  →  da = dh_t act'(a)
        let da = (0..<h).map { j in gradient.hidden[j] * (isReLU ? (y[j] > 0 ? 1 : 0) : 1 - y[j] * y[j]) }
        // a = W_ih x + b_ih + W_hh h + b_hh
        var dx = [Double](repeating: 0, count: step.input.count)
        var dh = [Double](repeating: 0, count: h)
        ReferenceMath.affineBackward(w.input, step.input, da, rows: 0..<h,
                                     &weightGradients.input, &weightGradients.inputBias, &dx)
        ReferenceMath.affineBackward(w.recurrent, step.state.hidden, da, rows: 0..<h,
                                     &weightGradients.recurrent, &weightGradients.recurrentBias, &dh)
        return (dx, RecurrentReferenceState(hidden: dh))
    }
}

// MARK: Fast CPU steps

extension SimpleRNNSteps {
    /// h_t = act(x W_ihᵀ + b_ih + h̃ W_hhᵀ + b_hh); gates holds h_t.
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        let scan = pass.scan
        let (hidden, gates) = (scan.hidden, scan.gates)
        let gate = pass.workspace.gates + (time * scan.batch + b) * gates  // [G], G = H
        guard valid else {
            gate.update(repeating: 0, count: gates)
            return
        }
        let product = pass.stepProducts + b * gates
        let state = pass.h + b * hidden
        @_transparent
        func chunk(_ j: Int, _ n: Int) {
            let a = pass.preactivation(gate, product, scan.biasSum, j, n)
            let y = isReLU ? a.replacing(with: 0, where: a .< 0) : CPUMath.tanh(a)
            (gate + j).storeLanes(y, n)
            (state + j).storeLanes(y, n)
        }
        forEachLaneChunk(hidden, chunk)
    }

    /// Differentiates `forwardStep`'s h_t = act(a): da = dh ⊙ act'(a), read from h_t (kept in gates).
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let scan = pass.scan
        let row = time * scan.batch + b
        let (y, da) = (pass.workspace.gates + row * scan.gates, pass.dG + row * scan.gates)
        @_transparent
        func chunk(_ j: Int, _ n: Int) {
            let value = (y + j).loadLanes(n)
            let slope = isReLU ? CPULanes(repeating: 0).replacing(with: 1, where: value .> 0) : 1 - value * value
            (da + j).storeLanes((total + j).loadLanes(n) * slope, n)
            (total + j).storeLanes(CPULanes(), n)  // h_{t-1} reaches h_t only through h̃
        }
        forEachLaneChunk(scan.hidden, chunk)
    }
}
