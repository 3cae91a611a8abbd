// GRU cell with the reset gate before the matmul (gates r, z, n; Cho et al. 2014, Keras
// reset_after=False): the step math of the recurrent.cl kernels gru_reset_before_fwd_step and
// gru_reset_before_bwd_step. Built after common.cl and the generated operand macros, before
// recurrent.cl.
//
// A step is two phases ("Two phases" in recurrent.cl), because W_hn multiplies r * h~ and r of
// every unit must be known before any unit's n product can start: two launches per step, or, in
// a persistent scan, a grid-wide barrier between the phases. Both phase launches of a step run
// both directions of a bidirectional pair, so the pair costs 2T launches instead of 4T.
//
// Shape legend: T time steps, B batch, H hidden units, G = 3H.
//   gates              [T, B, G]  forward: in x W_ih^T (the host's GEMM), out r, z, n
//   b_ih, b_hh         [G]        inputBias, recurrentBias
//   hiddenStates       [T, B, H]  h_t (without dropout)
//   candidateRecurrent [T, B, H]  q = r * h~, the operand of W_hn
//   gateGradients      [T, B, G]  backward: dL/d(gate pre-activations)
//   dhTildeReset       [B, H]     dq * r, the part of dh~ through r * h~, between the phases

#ifdef RECUR_RESIDENT
#error "the reset-before GRU has no resident split"
#endif

#define CELL_NAME gru_reset_before
#define CELL_GATES 3
#define CELL_PHASES 2
// The gates phase multiplies W_hr, W_hz by h~; the state phase W_hn by q = r * h~.
#define CELL_GATES_PRODUCTS 2
#define CELL_PRODUCTS 1
#define CELL_LOCAL_GATES 2
#define CELL_PRODUCT_OPERAND candidateRecurrent
#define CELL_PRODUCT_WEIGHTS (recurrentWeights + 2 * hidden * hidden)
// The state-gradient phase takes dG of r and z back through W_h(r,z); dG of n goes back through
// W_hn in the gate-gradient phase, and reaches h~ through dhTildeReset.
#define CELL_BACKWARD_REDUCTION (2 * hidden)
#define CELL_BACKWARD_THROUGH dhTildeReset[unit]
#define CELL_GATES_GRADIENTS (gateGradients + 2 * hidden)
#define CELL_GATES_REDUCTION hidden
#define CELL_GATES_WEIGHTS (recurrentWeights + 2 * hidden * hidden)

// Forward gates phase of step t, for unit j of sequence b (row = t B + b), with
// gateProducts[q] = sum_k h~[b, k] W_hq[j, k]:
//   r = sigma(x_t W_ir^T [b, j] + b_ir[j] + b_hr[j] + gateProducts[0]), z likewise
//   gates[t, b, 0 .. 2H) = r, z; candidateRecurrent[t, b, j] = q = r * h~[b, j] (0 when padded)
void gru_reset_before_forward_gates(const bool valid, const float* gateProducts,
                                    __global const float* inputBias, __global const float* recurrentBias,
                                    __global float* gates, __global const float* recurrentInput,
                                    __global float* candidateRecurrent, const int hidden, const int row,
                                    const int j) {
    if (valid) {
        __global float* gate = gates + row * 3 * hidden + j;
        const float r = recur_sigmoid(gate[0] + inputBias[j] + recurrentBias[j] + gateProducts[0]);
        const float z = recur_sigmoid(gate[hidden] + inputBias[hidden + j] + recurrentBias[hidden + j]
                                      + gateProducts[1]);
        gate[0] = r;
        gate[hidden] = z;
        candidateRecurrent[row * hidden + j] = r * recurrentInput[row * hidden + j];
    } else {
        candidateRecurrent[row * hidden + j] = 0.0f;
    }
}

// Forward state phase of step t, with state = h_{t-1} and products[0] = sum_k q[b, k] W_hn[j, k]:
//   n = tanh(x_t W_in^T [b, j] + b_in[j] + b_hn[j] + products[0])
//   h_t = (1 - z) n + z h_{t-1}, evaluated as n + z (h_{t-1} - n)
//   gates[t, b, 2H + j] = n (the whole row 0 when padded); hiddenStates[t, b, j] = h_t
float gru_reset_before_forward_step(const bool valid, float state, const float* products,
                                    __global const float* inputBias, __global const float* recurrentBias,
                                    __global float* gates, __global float* hiddenStates, const int hidden,
                                    const int row, const int j) {
    __global float* gate = gates + row * 3 * hidden + j;
    if (valid) {
        const float z = gate[hidden];
        const float n = tanh(gate[2 * hidden] + inputBias[2 * hidden + j] + recurrentBias[2 * hidden + j]
                             + products[0]);
        state = n + z * (state - n);
        gate[2 * hidden] = n;
    } else {
        recur_zero_gates(gate, 3, hidden);
    }
    hiddenStates[row * hidden + j] = state;
    return state;
}

// Backward state-gradient phase of step t at a valid step (differentiates the state phase), from
// total = dh_t (whose dh~ part includes dhTildeReset, the gradient through q of step nextTime),
// with before = h_{t-1} (hiddenStates[previousTime], h0 at the first step):
//   dG[t, b, H + j] = dh_t (h_{t-1} - n) z (1 - z); dG[t, b, 2H + j] = dh_t (1 - z) (1 - n^2)
// Returns dh_t z, the direct path z h_{t-1}. A padded step's dG row is 0.
float gru_reset_before_backward_step(const float total, __global const float* gates, const float before,
                                     __global float* gateGradients, const int hidden, const int row, const int j) {
    const int g3 = 3 * hidden;
    __global const float* gate = gates + row * g3 + j;
    const float z = gate[hidden];
    const float n = gate[2 * hidden];
    __global float* da = gateGradients + row * g3 + j;
    da[hidden] = total * (before - n) * z * (1.0f - z);
    da[2 * hidden] = total * (1.0f - z) * (1.0f - n * n);
    return total * z;
}

// Backward gate-gradient phase of step t (differentiates the gates phase), with
// dq = sum_k dG[t, b, 2H + k] W_hn[k, j] (differentiates q W_hn^T, q = r * h~):
//   valid:  dG[t, b, j] = dq h~[b, j] r (1 - r); dhTildeReset[b, j] = dq r
//   padded: dhTildeReset[b, j] = 0
void gru_reset_before_backward_gates(const bool valid, const float dq, __global const float* gates,
                                     __global const float* recurrentInput, __global float* gateGradients,
                                     __global float* dhTildeReset, const int hidden, const int row, const int unit,
                                     const int j) {
    if (valid) {
        const float r = gates[row * 3 * hidden + j];
        gateGradients[row * 3 * hidden + j] = dq * recurrentInput[row * hidden + j] * r * (1.0f - r);
        dhTildeReset[unit] = dq * r;
    } else {
        dhTildeReset[unit] = 0.0f;
    }
}

#define CELL_FORWARD_GATES                                                                       \
    gru_reset_before_forward_gates(valid, gateProducts, inputBias, recurrentBias, gates, recurrentInput, \
                                   candidateRecurrent, hidden, row, j)
#define CELL_FORWARD_STEP                                                                        \
    gru_reset_before_forward_step(valid, state, products, inputBias, recurrentBias, gates, hiddenStates, \
                                  hidden, row, j)
#define CELL_BACKWARD_STEP                                                                       \
    gru_reset_before_backward_step(                                                              \
        total, gates, previousTime >= 0 ? hiddenStates[(previousTime * batch + b) * hidden + j] : hInitial[unit], \
        gateGradients, hidden, row, j)
#define CELL_BACKWARD_PADDED recur_zero_gates(gateGradients + row * 3 * hidden + j, 3, hidden)
#define CELL_BACKWARD_GATES                                                                      \
    gru_reset_before_backward_gates(valid, gatesProduct, gates, recurrentInput, gateGradients, dhTildeReset, \
                                    hidden, row, unit, j)
