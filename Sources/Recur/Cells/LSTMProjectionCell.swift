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
// Only the float64 reference exists so far: the scan skeletons, `RecurrentLayer` and the
// parameter description (`RecurrentParameter.Extent`) still give h the same width as c, so the
// cell is not in the registry and no backend runs it.

/// The reference steps of the LSTM with a projection. The state's `hidden` has P values and its
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
