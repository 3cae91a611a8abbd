// GRU cell with the reset gate after the matmul (gates r, z, n, PyTorch order; PyTorch/cuDNN,
// Keras reset_after=True): the step math of the recurrent.cl kernels gru_fwd_step and
// gru_bwd_step. Built after common.cl and the generated operand macros, before recurrent.cl. The
// reset-before GRU is gru_reset_before.cl.
//
// Shape legend: T time steps, B batch, H hidden units, G = 3H.
//   gates              [T, B, G]  forward: in x W_ih^T (the host's GEMM), out r, z, n
//   b_ih, b_hh         [G]        inputBias, recurrentBias
//   hiddenStates       [T, B, H]  h_t (without dropout)
//   candidateRecurrent [T, B, H]  hn = W_hn h~ + b_hn
//   gateGradients      [T, B, G]  backward: dL/d(gate pre-activations) as seen by W_ih, b_ih, x
//   recurrentGateGradients [T, B, G]  dGh: the same as seen by W_hh, b_hh, h~ (n block scaled by r)

#define CELL_NAME gru
#define CELL_GATES 3
#define CELL_PRODUCTS 3
// The gradient through W_hh is dGh's.
#define CELL_BACKWARD_GRADIENTS recurrentGateGradients

// Forward step t, for unit j of sequence b (row = t B + b), with state = h_{t-1} and
// s_q = x_t W_iq^T [b, j] + b_iq[j], products[q] = sum_k h~[b, k] W_hq[j, k]:
//   r = sigma(s_r + b_hr[j] + products[r]), z likewise
//   hn = products[n] + b_hn[j]
//   n = tanh(s_n + r * hn)
//   h_t = (1 - z) n + z h_{t-1}, evaluated as n + z (h_{t-1} - n)
//   gates[t, b, :] = r, z, n; candidateRecurrent[t, b, j] = hn (all 0 when padded)
//   hiddenStates[t, b, j] = h_t
float gru_forward_step(const bool valid, float state, const float* products,
                       __global const float* inputBias, __global const float* recurrentBias,
                       __global float* gates, __global float* hiddenStates, __global float* candidateRecurrent,
                       const int hidden, const int row, const int j) {
    __global float* gate = gates + row * 3 * hidden + j;
    if (valid) {
        const float r = recur_sigmoid(gate[0] + inputBias[j] + recurrentBias[j] + products[0]);
        const float z = recur_sigmoid(gate[hidden] + inputBias[hidden + j] + recurrentBias[hidden + j]
                                      + products[1]);
        const float hn = products[2] + recurrentBias[2 * hidden + j];
        const float n = tanh(gate[2 * hidden] + inputBias[2 * hidden + j] + r * hn);
        state = n + z * (state - n);
        gate[0] = r;
        gate[hidden] = z;
        gate[2 * hidden] = n;
        candidateRecurrent[row * hidden + j] = hn;
    } else {
        recur_zero_gates(gate, 3, hidden);
        candidateRecurrent[row * hidden + j] = 0.0f;
    }
    hiddenStates[row * hidden + j] = state;
    return state;
}

// Backward step t at a valid step (differentiates gru_forward_step), from total = dh_t, with
// before = h_{t-1} (hiddenStates[previousTime], h0 at the first step):
//   dn = dh_t (1 - z) (1 - n^2)                           (pre-activation of n)
//   dz = dh_t (h_{t-1} - n) z (1 - z)
//   dr = dn hn r (1 - r)
//   dG[t, b, :] = dr, dz, dn; dGh[t, b, :] = dr, dz, dn r (d(W_hn h~) = dn r)
// Returns dh_t z, the direct path z h_{t-1}.
float gru_backward_step(const float total, __global const float* gates, const float before,
                        __global const float* candidateRecurrent, __global float* gateGradients,
                        __global float* recurrentGateGradients, const int hidden, const int row, const int j) {
    const int g3 = 3 * hidden;
    __global const float* gate = gates + row * g3 + j;
    const float r = gate[0];
    const float z = gate[hidden];
    const float n = gate[2 * hidden];
    const float dn = total * (1.0f - z) * (1.0f - n * n);
    const float dz = total * (before - n) * z * (1.0f - z);
    const float dr = dn * candidateRecurrent[row * hidden + j] * r * (1.0f - r);
    __global float* da = gateGradients + row * g3 + j;
    __global float* daRecurrent = recurrentGateGradients + row * g3 + j;
    da[0] = dr;
    da[hidden] = dz;
    da[2 * hidden] = dn;
    daRecurrent[0] = dr;
    daRecurrent[hidden] = dz;
    daRecurrent[2 * hidden] = dn * r;
    return total * z;
}

// A padded step's gradient rows: dG and dGh both 0.
void gru_backward_padded(__global float* gateGradients, __global float* recurrentGateGradients, const int hidden,
                         const int row, const int j) {
    recur_zero_gates(gateGradients + row * 3 * hidden + j, 3, hidden);
    recur_zero_gates(recurrentGateGradients + row * 3 * hidden + j, 3, hidden);
}

#define CELL_FORWARD_STEP                                                                        \
    gru_forward_step(valid, state, products, inputBias, recurrentBias, gates, hiddenStates,     \
                     candidateRecurrent, hidden, row, j)
#define CELL_BACKWARD_STEP                                                                       \
    gru_backward_step(total, gates,                                                              \
                      previousTime >= 0 ? hiddenStates[(previousTime * batch + b) * hidden + j] : hInitial[unit], \
                      candidateRecurrent, gateGradients, recurrentGateGradients, hidden, row, j)
#define CELL_BACKWARD_PADDED gru_backward_padded(gateGradients, recurrentGateGradients, hidden, row, j)
