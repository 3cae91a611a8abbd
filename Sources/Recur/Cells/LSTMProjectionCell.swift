// The LSTM with a projection (Sak, Senior & Beaufays 2014), PyTorch's nn.LSTM with proj_size = P:
// the LSTM's gates and cell state with H units, and a hidden state of P < H features, so W_hh
// multiplies P values instead of H. Gate order i, f, g, o as in `LSTMCell.swift`:
//
//     i, f, g, o, c_t   as the LSTM, with h̃ [P] and W_hh [4H, P]      (weight_hh)
//     u   = o ⊙ tanh(c_t)                                             [H]
//     h_t = W_hr u                                                    [P], W_hr [P, H] (weight_hr)
//
// The output and h carry P features per direction (2P bidirectional), c carries H; a stacked
// layer reads P (or 2P) features.
//
// Backward, with dh = dL/dh_t [P]: du = W_hrᵀ dh and dW_hr += dh uᵀ (no bias); then the LSTM's
// backward step with du in the place of its dL/dh_t.
//
// P is a size of the op (`RecurrentScan.projectionSize`), not of the cell: `--cell lstm
// --projection P` selects this cell (`RecurrentCell.projected(to:hiddenSize:operation:)`).
// On the CPU, a step is the LSTM's pointwise step into u for all of a part's rows, then one
// product h[rows] = u[rows] W_hrᵀ; backward, one product du[rows] = dh[rows] W_hr, then the
// LSTM's backward steps; dW_hr is one product over all T * B rows after the scan, from the
// recorded dL/dh_t and each step's u, so it is the same however the batch is split over threads.
// On OpenCL the cell is a row scan (Kernels/lstm_projection.cl): one work-group per sequence row
// fuses a step's recurrent product, gate math and W_hr product; dW_hr is the same GEMM after it.

extension RecurrentCell {
    /// The LSTM with a projection of h to P < H features (PyTorch's `proj_size`): state (h [P],
    /// c [H]), four gates, `weight_hh` [4H, P] and `weight_hr` [P, H]; Keras starts its
    /// forget-gate bias at 1.
    public static let lstmProjection = RecurrentCell(
        name: "lstm_projection", formerNames: [], gateCount: 4, hasCellState: true,
        extraParameters: [RecurrentParameter(name: "weight_hr", extents: [.hiddenState, .hidden],
                                             role: .projectionWeights)],
        kerasGateBiases: [0, 1, 0, 0], projecting: "lstm",
        reference: LSTMProjectionSteps.self, cpu: LSTMProjectionSteps.self)
}

/// The steps of the LSTM with a projection. The reference state's `hidden` has P values and its
/// `cell` H; `RecurrentReferenceWeights.extra` holds `weight_hr` [P, H].
enum LSTMProjectionSteps {
    /// The state-dict stems of one layer-direction's parameters, in PyTorch's order.
    static let parameterNames = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]

    /// u = o ⊙ tanh(c_t) [H] and c_t [H]: the plain LSTM's step, whose h_t is u.
    private static func unprojected(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        LSTMSteps.forward(step)
    }
}

// MARK: Reference (float64)

extension LSTMProjectionSteps: RecurrentReferenceSteps {
    static func forward(_ step: RecurrentReferenceStep) -> RecurrentReferenceState {
        let lstm = unprojected(step)
        let p = step.state.hidden.count
        let noBias = [Double](repeating: 0, count: p)
        // h_t = W_hr u
        let hidden = ReferenceMath.affine(step.weights.extra[0], lstm.hidden, noBias, rows: 0..<p)
        return RecurrentReferenceState(hidden: hidden, cell: lstm.cell)
    }

    static func backward(_ step: RecurrentReferenceStep, _ gradient: RecurrentReferenceState,
                         _ weightGradients: inout RecurrentReferenceWeights)
        -> (input: [Double], state: RecurrentReferenceState)
    {
        let u = unprojected(step).hidden
        let p = step.state.hidden.count
        // h_t = W_hr u: du = W_hrᵀ dh, dW_hr += dh uᵀ; the bias gradient has nowhere to go.
        var du = [Double](repeating: 0, count: u.count)
        var unusedBiasGradient = [Double](repeating: 0, count: p)
        ReferenceMath.affineBackward(step.weights.extra[0], u, gradient.hidden, rows: 0..<p,
                                     &weightGradients.extra[0], &unusedBiasGradient, &du)
        // u is the LSTM's h_t: its backward takes du as dL/dh_t.
        return LSTMSteps.backward(step, RecurrentReferenceState(hidden: du, cell: gradient.cell), &weightGradients)
    }
}

// MARK: Fast CPU steps

extension LSTMProjectionSteps: CPURecurrentSteps {
    static var projectsHiddenState: Bool { true }

    /// The LSTM's step, with u_t = o tanh(c_t) into the projection's u [B, H].
    @inline(__always)
    static func forwardStep(_ pass: CPURecurrentForward, row b: Int, time: Int, valid: Bool) {
        LSTMSteps.forwardStep(pass, row: b, time: time, valid: valid,
                              into: pass.projection!.unprojected + b * pass.scan.hidden)
    }

    /// h_t = W_hr u_t for the valid rows: W_hr u[rows, P] = u[rows, H] · W_hrᵀ, then copied to h
    /// (a padded row carries its h).
    static func forwardProjection(_ pass: CPURecurrentForward, time: Int, rows: Range<Int>) {
        let (scan, projection) = (pass.scan, pass.projection!)
        let (h, p, first) = (scan.hidden, scan.state, rows.lowerBound)
        stepProduct(rows: rows.count, n: p, k: h, a: projection.unprojected + first * h, lda: h,
                    b: projection.weights, c: projection.buffer + first * p, ldc: p, accumulate: false)
        for b in rows where scan.isValid(b, atTime: time) {
            (pass.h + b * p).update(from: projection.buffer + b * p, count: p)
        }
    }

    /// Differentiates h_t = W_hr u_t: du[rows, H] = dh[rows, P] · W_hr, from the recorded dL/dh_t
    /// (0 at padded rows, whose steps are skipped).
    static func backwardProjection(_ pass: CPURecurrentBackward, time: Int, rows: Range<Int>) {
        let (scan, projection) = (pass.scan, pass.projection!)
        let (h, p, first) = (scan.hidden, scan.state, rows.lowerBound)
        stepProduct(rows: rows.count, n: h, k: p, a: pass.hiddenStateGradients! + (time * scan.batch + first) * p,
                    lda: p, b: projection.weights, c: projection.unprojected + first * h, ldc: h, accumulate: false)
    }

    /// The LSTM's backward step with du in the place of dL/dh_t; keeps u_t for dW_hr. The whole
    /// of dL/dh_t went through u, so nothing of it is left for h_{t-1} outside h̃.
    @inline(__always)
    static func backwardStep(_ pass: CPURecurrentBackward, row b: Int, time: Int, previous: Int?,
                             total: UnsafeMutablePointer<Float>) {
        let (scan, projection) = (pass.scan, pass.projection!)
        let row = time * scan.batch + b
        LSTMSteps.backwardStep(pass, row: b, time: time, previous: previous,
                               outputGradient: projection.unprojected + b * scan.hidden, clearsOutputGradient: false,
                               unprojected: projection.buffer + row * scan.hidden)
        total.update(repeating: 0, count: scan.state)
    }

    /// dW_hh[G, P] += dGhᵀ · h̃ as every cell, and dW_hr[P, H] += dhᵀ · u over all T * B rows.
    static func accumulateRecurrentWeightGradient(_ pass: CPURecurrentBackward) {
        let scan = pass.scan
        let (rows, g, h, p) = (scan.steps * scan.batch, scan.gates, scan.hidden, scan.state)
        pass.accumulateWeightGradient(m: g, n: p, rows: rows, pass.dGh, g, pass.workspace.recurrentInput, pass.dWhh)
        pass.accumulateWeightGradient(m: p, n: h, rows: rows, pass.hiddenStateGradients!, p,
                                      pass.projection!.buffer, pass.dExtra[0])
    }
}
