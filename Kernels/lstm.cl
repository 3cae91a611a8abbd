// LSTM cell (gates i, f, g, o, PyTorch order): the step math of the recurrent.cl kernels
// lstm_fwd_step and lstm_bwd_step. Built after common.cl and the generated operand macros, before
// recurrent.cl.
//
// Shape legend: T time steps, B batch, H hidden units, G = 4H.
//   gates          [T, B, G]  forward: in x W_ih^T (the host's GEMM), out i, f, g, o
//   b_ih, b_hh     [G]        inputBias, recurrentBias
//   cellStates     [T, B, H]  c_t after the clip
//   cInitial, cState, dcState [B, H]  c0, the running c, the running dL/dc
//   gateGradients  [T, B, G]  backward: dL/d(gate pre-activations)
// cellClip is +infinity for no clip.

#define CELL_NAME lstm
#define CELL_GATES 4
#define CELL_PRODUCTS 4

// Forward step t, for unit j of sequence b (row = t B + b), with state = h_{t-1},
// cPrevious[unit] = c_{t-1}, and p_q = x_t W_iq^T [b, j] + b_iq[j] + b_hq[j] + products[q] for
// each gate q (products[q] = sum_k h~[b, k] W_hq[j, k]):
//   i = sigma(p_i), f = sigma(p_f), g = tanh(p_g), o = sigma(p_o)
//   c_t = clip(f * c_{t-1} + i * g), clip(u) = min(max(u, -cellClip), cellClip)
//   h_t = o * tanh(c_t)
//   gates[t, b, :] = i, f, g, o (0 when padded); cellStates[t, b, j] = cState[b, j] = c_t
float lstm_forward_step(const bool valid, float state, const float* products, const float cellClip,
                        __global const float* inputBias, __global const float* recurrentBias,
                        __global float* gates, __global float* cellStates, __global const float* cPrevious,
                        __global float* cState, const int hidden, const int row, const int unit, const int j) {
    __global float* gate = gates + row * 4 * hidden + j;
    float cell = cPrevious[unit];
    if (valid) {
        const float i = recur_sigmoid(gate[0] + inputBias[j] + recurrentBias[j] + products[0]);
        const float f = recur_sigmoid(gate[hidden] + inputBias[hidden + j] + recurrentBias[hidden + j]
                                      + products[1]);
        const float g = tanh(gate[2 * hidden] + inputBias[2 * hidden + j] + recurrentBias[2 * hidden + j]
                             + products[2]);
        const float o = recur_sigmoid(gate[3 * hidden] + inputBias[3 * hidden + j]
                                      + recurrentBias[3 * hidden + j] + products[3]);
        const float unclipped = f * cell + i * g;
        cell = unclipped > cellClip ? cellClip : (unclipped < -cellClip ? -cellClip : unclipped);
        state = o * tanh(cell);
        gate[0] = i;
        gate[hidden] = f;
        gate[2 * hidden] = g;
        gate[3 * hidden] = o;
    } else {
        recur_zero_gates(gate, 4, hidden);
    }
    cellStates[row * hidden + j] = cell;
    cState[unit] = cell;
    return state;
}

// Backward step t at a valid step (differentiates lstm_forward_step), from total = dh_t, with
// tc = tanh(c_t) and before = c_{t-1} (cellStates[previousTime], c0 at the first step):
//   do = dh_t tc                                         (h_t = o tanh(c_t))
//   dc_t = dcState[b, j] + dh_t o (1 - tc^2), or 0 where |f c_{t-1} + i g| >= cellClip (the clip)
//   di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i         (c_t = f c_{t-1} + i g)
//   dG[t, b, :] = di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)
//   dcState[b, j] = dc_t f
// Returns 0: h_{t-1} reaches h_t only through h~. At a padded step dcState stays as it is.
float lstm_backward_step(const float total, const float cellClip, __global const float* gates,
                         __global const float* cellStates, const float before, __global float* gateGradients,
                         __global float* dcState, const int hidden, const int row, const int unit, const int j) {
    const int g4 = 4 * hidden;
    __global const float* gate = gates + row * g4 + j;
    const float i = gate[0];
    const float f = gate[hidden];
    const float g = gate[2 * hidden];
    const float o = gate[3 * hidden];
    const float tc = tanh(cellStates[row * hidden + j]);
    // The clip's gradient: 1 strictly inside (-cellClip, cellClip), else 0.
    const bool inside = fabs(f * before + i * g) < cellClip;
    const float dcNow = inside ? dcState[unit] + total * o * (1.0f - tc * tc) : 0.0f;
    __global float* da = gateGradients + row * g4 + j;
    da[0] = dcNow * g * i * (1.0f - i);
    da[hidden] = dcNow * before * f * (1.0f - f);
    da[2 * hidden] = dcNow * i * (1.0f - g * g);
    da[3 * hidden] = total * tc * o * (1.0f - o);
    dcState[unit] = dcNow * f;
    return 0.0f;
}

#define CELL_FORWARD_STEP                                                                        \
    lstm_forward_step(valid, state, products, cellClip, inputBias, recurrentBias, gates, cellStates, \
                      s == 0 ? cInitial : cState, cState, hidden, row, unit, j)
#define CELL_BACKWARD_STEP                                                                       \
    lstm_backward_step(total, cellClip, gates, cellStates,                                       \
                       previousTime >= 0 ? cellStates[(previousTime * batch + b) * hidden + j] : cInitial[unit], \
                       gateGradients, dcState, hidden, row, unit, j)
#define CELL_BACKWARD_PADDED recur_zero_gates(gateGradients + row * 4 * hidden + j, 4, hidden)
