// Layer-normalised GRU, reset after the recurrent matmul (gates r, z, n; LayerNormGRUCell.swift
// holds the equations, the float64 reference and the CPU steps): the step math of the
// row-skeleton kernels layer_norm_gru_fwd_step and layer_norm_gru_bwd_step (recurrent_rows.cl).
// Built after common.cl, the generated operand macros and rows.cl, before recurrent_rows.cl.
//
// Shape legend: T time steps, B batch, H hidden units, G = 3H.
//   gates              [T, B, G]  forward: in x W_ih^T (the host's GEMM), out a_r, a_z, W_in x
//                                 (a_k = W_ik x + W_hk h~ for k = r, z)
//   candidateRecurrent [T, B, H]  W_hn h~ (before its normalisation)
//   hiddenStates       [T, B, H]  h_t (without dropout)
//   b_ih, b_hh         [G]        inputBias, recurrentBias: the normalisations' shifts
//   gateGain           [G]        gamma_r, gamma_z, gamma_n
//   candidateGain      [H]        gamma_hn
//   gateGradients      [T, B, G]  backward: da_r, da_z, da_in, seen by W_ih and x
//   recurrentGateGradients [T, B, G]  da_r, da_z, da_hn, seen by W_hh and h~
//   parameterGradients [B, 8H]  backward, summed over the steps of row b: columns [0, 3H)
//                      dL/db_ih, [3H, 4H) dL/db_hn, [4H, 7H) dL/dgateGain, [7H, 8H)
//                      dL/dcandidateGain (dL/db_hr, dL/db_hz are columns [0, 2H) too)
// LN as in layer_norm_lstm.cl.

#define CELL_NAME layer_norm_gru
#define CELL_GATES 3
// The gradient through W_hh is dGh's.
#define CELL_BACKWARD_GRADIENTS recurrentGateGradients
// Columns of a row of parameterGradients, in units of H: for normalisation q (r, z, input n,
// recurrent n) its shift's gradient at column q H, its gain's at (4 + q) H.
#define LAYER_NORM_GRU_PARAMETER_COLUMNS 8

// r, z, hn and n of unit j from the normalisations' statistics (mean, scale: a_r, a_z, W_in x,
// then W_hn h~): the gates, in the forward and again in the backward.
void layer_norm_gru_gates(__global const float* a, __global const float* candidate, const int j, const int hidden,
                          const float* mean, const float* scale, __global const float* inputBias,
                          __global const float* recurrentBias, __global const float* gateGain,
                          __global const float* candidateGain, float* r, float* z, float* hn, float* n) {
    const int kz = hidden + j;
    const int kn = 2 * hidden + j;
    *r = recur_sigmoid(gateGain[j] * ((a[j] - mean[0]) * scale[0]) + inputBias[j] + recurrentBias[j]);
    *z = recur_sigmoid(gateGain[kz] * ((a[kz] - mean[1]) * scale[1]) + inputBias[kz] + recurrentBias[kz]);
    *hn = candidateGain[j] * ((candidate[j] - mean[3]) * scale[3]) + recurrentBias[kn];
    *n = tanh(gateGain[kn] * ((a[kn] - mean[2]) * scale[2]) + inputBias[kn] + *r * *hn);
}

// Forward step t of row b (row = t B + b), from operand = h~ row of t and previous = h_{t-1} row:
//   a_r, a_z = gates[t, b, r|z] + h~ W_h(r|z)^T            kept in gates[t, b, r|z]
//   hh = h~ W_hn^T                                         kept in candidateRecurrent[t, b, :]
//   r = sigma(gamma_r LN(a_r) + b_ir + b_hr), z likewise
//   hn = gamma_hn LN(hh) + b_hn
//   n = tanh(gamma_n LN(W_in x) + b_in + r hn)
//   h_t = (1 - z) n + z h_{t-1}, evaluated as n + z (h_{t-1} - n)
//   hiddenStates[t, b, :] = hState[b, :] = h_t
void layer_norm_gru_forward(const int b, const int row, const int hidden, __global const float* operand,
                            __global const float* recurrentWeights, __global const float* inputBias,
                            __global const float* recurrentBias, __global const float* gateGain,
                            __global const float* candidateGain, __global float* gates,
                            __global float* candidateRecurrent, __global float* hiddenStates,
                            __global const float* previous, __global float* hState, __local float* tile,
                            __local float* scratch) {
    __global float* a = gates + row * 3 * hidden;
    __global float* candidate = candidateRecurrent + row * hidden;
    recur_row_products(operand, recurrentWeights, 2, hidden, hidden, true, a, tile);
    recur_row_products(operand, recurrentWeights + 2 * hidden * hidden, 1, hidden, hidden, false, candidate, tile);
    // The normalisations' means and scales: a_r, a_z, W_in x, then W_hn h~.
    float mean[4], scale[4];
    recur_row_statistics(a, 3, hidden, scratch, mean, scale);
    recur_row_statistics(candidate, 1, hidden, scratch, mean + 3, scale + 3);
    RECUR_ROW_UNITS(j, hidden) {
        float r, z, hn, n;
        layer_norm_gru_gates(a, candidate, j, hidden, mean, scale, inputBias, recurrentBias, gateGain, candidateGain,
                             &r, &z, &hn, &n);
        const float state = n + z * (previous[j] - n);
        hiddenStates[row * hidden + j] = state;
        hState[b * hidden + j] = state;
    }
}

// A padded step: h_t = h_{t-1}; gates[t, b, :] and candidateRecurrent[t, b, :] = 0.
void layer_norm_gru_forward_padded(const int b, const int row, const int hidden, __global float* gates,
                                   __global float* candidateRecurrent, __global float* hiddenStates,
                                   __global const float* previous, __global float* hState) {
    RECUR_ROW_UNITS(j, hidden) {
        recur_zero_gates(gates + row * 3 * hidden + j, 3, hidden);
        candidateRecurrent[row * hidden + j] = 0.0f;
        const float state = previous[j];
        hiddenStates[row * hidden + j] = state;
        hState[b * hidden + j] = state;
    }
}

// Backward step t of row b at a valid step (differentiates layer_norm_gru_forward), from
// dhState[b, :] = dh_t and before = h_{t-1} row, recomputing the statistics and gates from what
// the forward kept; LN' as in layer_norm_lstm.cl:
//   dpre_n = dh_t (1 - z) (1 - n^2)
//   d_r = dpre_n hn r (1 - r), d_z = dh_t (h_{t-1} - n) z (1 - z), d_in = dpre_n, d_hn = dpre_n r
//   per normalisation q with input v_q and gain gamma_q: db_q += d_q; dgamma_q += d_q LN(v_q);
//   da_q = LN'(d_q gamma_q)  (b_ir, b_hr both get d_r; b_iz, b_hz d_z; b_in d_in; b_hn d_hn)
//   dG[t, b, :] = da_r, da_z, da_in;  dGh[t, b, :] = da_r, da_z, da_hn
//   dhState[b, :] = dh_t z, the direct path z h_{t-1}
void layer_norm_gru_backward(const int b, const int row, const int hidden, __global const float* gates,
                             __global const float* candidateRecurrent, __global const float* before,
                             __global const float* inputBias, __global const float* recurrentBias,
                             __global const float* gateGain, __global const float* candidateGain,
                             __global float* gateGradients, __global float* recurrentGateGradients,
                             __global float* dhState, __global float* parameterGradients, __local float* scratch) {
    __global const float* a = gates + row * 3 * hidden;
    __global const float* candidate = candidateRecurrent + row * hidden;
    __global float* da = gateGradients + row * 3 * hidden;
    __global float* dah = recurrentGateGradients + row * 3 * hidden;
    __global float* dh = dhState + b * hidden;
    __global float* sums = parameterGradients + b * LAYER_NORM_GRU_PARAMETER_COLUMNS * hidden;
    // The normalisations' means and scales: a_r, a_z, W_in x, then W_hn h~.
    float mean[4], scale[4];
    recur_row_statistics(a, 3, hidden, scratch, mean, scale);
    recur_row_statistics(candidate, 1, hidden, scratch, mean + 3, scale + 3);
    const float count = (float)hidden;

    RECUR_ROW_UNITS(j, hidden) {
        const int kz = hidden + j;
        const int kn = 2 * hidden + j;
        float r, z, hn, n;
        layer_norm_gru_gates(a, candidate, j, hidden, mean, scale, inputBias, recurrentBias, gateGain, candidateGain,
                             &r, &z, &hn, &n);
        const float total = dh[j];
        const float dPreN = total * (1.0f - z) * (1.0f - n * n);
        da[j] = dPreN * hn * r * (1.0f - r);
        da[kz] = total * (before[j] - n) * z * (1.0f - z);
        da[kn] = dPreN;
        dah[kn] = dPreN * r;
        dh[j] = total * z;
    }
    float moments[8] = {0.0f};
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < 4; ++q) {
            __global float* target = q == 3 ? dah + 2 * hidden + j : da + q * hidden + j;
            const float gain = q == 3 ? candidateGain[j] : gateGain[q * hidden + j];
            const float input = q == 3 ? candidate[j] : a[q * hidden + j];
            const float normalized = (input - mean[q]) * scale[q];
            sums[q * hidden + j] += *target;
            sums[(4 + q) * hidden + j] += *target * normalized;
            *target *= gain;
            moments[2 * q] += *target;
            moments[2 * q + 1] += *target * normalized;
        }
    }
    recur_row_sums(moments, 8, scratch);
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < 4; ++q) {
            __global float* target = q == 3 ? dah + 2 * hidden + j : da + q * hidden + j;
            const float input = q == 3 ? candidate[j] : a[q * hidden + j];
            const float normalized = (input - mean[q]) * scale[q];
            *target = scale[q] * (*target - moments[2 * q] / count - normalized * (moments[2 * q + 1] / count));
        }
        dah[j] = da[j];
        dah[hidden + j] = da[hidden + j];
    }
}

// A padded step's gradient rows: dG and dGh both 0.
void layer_norm_gru_backward_padded(const int row, const int hidden, __global float* gateGradients,
                                    __global float* recurrentGateGradients) {
    RECUR_ROW_UNITS(j, hidden) {
        recur_zero_gates(gateGradients + row * 3 * hidden + j, 3, hidden);
        recur_zero_gates(recurrentGateGradients + row * 3 * hidden + j, 3, hidden);
    }
}

#define CELL_ROW_FORWARD                                                                         \
    layer_norm_gru_forward(b, row, hidden, operand, recurrentWeights, inputBias, recurrentBias, gateGain, \
                           candidateGain, gates, candidateRecurrent, hiddenStates, previous, hState, tile, scratch)
#define CELL_ROW_FORWARD_PADDED                                                                  \
    layer_norm_gru_forward_padded(b, row, hidden, gates, candidateRecurrent, hiddenStates, previous, hState)
#define CELL_ROW_BACKWARD                                                                        \
    layer_norm_gru_backward(b, row, hidden, gates, candidateRecurrent,                           \
                            previousTime >= 0 ? hiddenStates + (previousTime * batch + b) * hidden \
                                              : hInitial + b * hidden,                           \
                            inputBias, recurrentBias, gateGain, candidateGain, gateGradients,    \
                            recurrentGateGradients, dhState, parameterGradients, scratch)
#define CELL_ROW_BACKWARD_PADDED layer_norm_gru_backward_padded(row, hidden, gateGradients, recurrentGateGradients)
