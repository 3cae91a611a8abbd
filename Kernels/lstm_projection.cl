// LSTM with a projection (PyTorch's nn.LSTM with proj_size = P; gates i, f, g, o;
// LSTMProjectionCell.swift holds the equations, the float64 reference and the CPU steps): the
// step math of the row-skeleton kernels lstm_projection_fwd_step and lstm_projection_bwd_step
// (recurrent_rows.cl). Its h_t = W_hr u mixes all H units of the row, so the cell runs as a row
// scan. Built after common.cl, the generated operand macros and rows.cl, before recurrent_rows.cl.
//
// Shape legend: T time steps, B batch, H hidden units (gates, c), P = state (h, h~), G = 4H.
//   gates          [T, B, G]  forward: in x W_ih^T (the host's GEMM), out i, f, g, o
//   W_hh           [G, P]     recurrentWeights
//   b_ih, b_hh     [G]        inputBias, recurrentBias
//   W_hr           [P, H]     projectionWeights
//   cellStates     [T, B, H]  c_t after the clip
//   cInitial, cState, dcState [B, H]  c0, the running c, the running dL/dc
//   unprojected    [B, H]     forward: u = o tanh(c_t) of the current step; backward: du
//   unprojectedStates [T, B, H]  backward: every step's u (0 at padded steps), read by the
//                      host's dW_hr GEMM after the scan with the recorded dL/dh_t
//   gateGradients  [T, B, G]  backward: dL/d(gate pre-activations)
// cellClip is +infinity for no clip.

#define CELL_NAME lstm_projection
#define CELL_GATES 4
// h, h~, the output, the mask and dL/dh have P features per row (recurrent_rows.cl).
#define CELL_STATE_WIDTH state

// Forward step t of row b (row = t B + b), from operand = h~ row of t and cPrevious = c_{t-1} row:
//   p = gates[t, b, :] + h~ W_hh^T + b_ih + b_hh
//   i, f, g, o = sigma(p_i), sigma(p_f), tanh(p_g), sigma(p_o)  kept in gates[t, b, :]
//   c_t = clip(f c_{t-1} + i g)                       cellStates[t, b, :] = cState[b, :] = c_t
//   u = o tanh(c_t)                                   unprojected[b, :]
//   h_t = W_hr u                                      hState[b, :] (P features)
void lstm_projection_forward(const int b, const int row, const int hidden, const int state, const float cellClip,
                             __global const float* operand, __global const float* recurrentWeights,
                             __global const float* inputBias, __global const float* recurrentBias,
                             __global const float* projectionWeights, __global float* gates,
                             __global float* cellStates, __global const float* cPrevious, __global float* cState,
                             __global float* unprojected, __global float* hState, __local float* tile) {
    __global float* gate = gates + row * 4 * hidden;
    __global float* u = unprojected + b * hidden;
    recur_row_products(operand, recurrentWeights, 4, hidden, state, true, gate, tile);
    RECUR_ROW_UNITS(j, hidden) {
        float activation[4];
        for (int q = 0; q < 4; ++q) {
            const int k = q * hidden + j;
            const float p = gate[k] + inputBias[k] + recurrentBias[k];
            activation[q] = q == 2 ? tanh(p) : recur_sigmoid(p);
            gate[k] = activation[q];
        }
        const float i = activation[0], f = activation[1], g = activation[2], o = activation[3];
        const float unclipped = f * cPrevious[j] + i * g;
        const float c = unclipped > cellClip ? cellClip : (unclipped < -cellClip ? -cellClip : unclipped);
        cellStates[row * hidden + j] = c;
        cState[b * hidden + j] = c;
        u[j] = o * tanh(c);
    }
    // The projection reads the u row every work-item wrote.
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    recur_row_products(u, projectionWeights, 1, state, hidden, false, hState + b * state, tile);
}

// A padded step: the state carries through (h_t = h_{t-1}, c_t = c_{t-1}); gates[t, b, :] = 0.
void lstm_projection_forward_padded(const int b, const int row, const int hidden, const int state,
                                    __global float* gates, __global float* cellStates,
                                    __global const float* cPrevious, __global float* cState,
                                    __global const float* previous, __global float* hState) {
    RECUR_ROW_UNITS(j, hidden) {
        recur_zero_gates(gates + row * 4 * hidden + j, 4, hidden);
        const float c = cPrevious[j];
        cellStates[row * hidden + j] = c;
        cState[b * hidden + j] = c;
    }
    RECUR_ROW_UNITS(j, state) hState[b * state + j] = previous[j];
}

// Backward step t of row b at a valid step (differentiates lstm_projection_forward), from
// dhState[b, :] = dh_t [P] and before = c_{t-1} row, with tc = tanh(c_t):
//   du = W_hr^T dh_t                                     unprojected[b, :]
//   u = o tc                                             unprojectedStates[t, b, :] (for dW_hr)
//   then the LSTM's backward step (lstm.cl) with du in the place of dh_t:
//   dc_t = dcState[b, :] + du o (1 - tc^2), or 0 where |f c_{t-1} + i g| >= cellClip (the clip)
//   dG[t, b, :] = dc_t g i (1 - i), dc_t c_{t-1} f (1 - f), dc_t i (1 - g^2), du tc o (1 - o)
//   dcState[b, :] = dc_t f;  dhState[b, :] = 0 (h_{t-1} reaches h_t only through h~)
void lstm_projection_backward(const int b, const int row, const int hidden, const int state, const float cellClip,
                              __global const float* gates, __global const float* cellStates,
                              __global const float* before, __global const float* projectionWeights,
                              __global float* gateGradients, __global float* dcState, __global float* dhState,
                              __global float* unprojected, __global float* unprojectedStates,
                              __local float* tile) {
    __global const float* gate = gates + row * 4 * hidden;
    __global float* da = gateGradients + row * 4 * hidden;
    __global float* dh = dhState + b * state;
    __global float* du = unprojected + b * hidden;
    RECUR_ROW_UNITS(j, hidden) du[j] = 0.0f;
    // The product reads the dh_t row every work-item completed.
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
    recur_row_unit_products(dh, projectionWeights, hidden, state, dh, 0, du, tile);
    RECUR_ROW_UNITS(j, hidden) {
        const float i = gate[j];
        const float f = gate[hidden + j];
        const float g = gate[2 * hidden + j];
        const float o = gate[3 * hidden + j];
        const float tc = tanh(cellStates[row * hidden + j]);
        unprojectedStates[row * hidden + j] = o * tc;
        const float total = du[j];
        // The clip's gradient: 1 strictly inside (-cellClip, cellClip), else 0.
        const bool inside = fabs(f * before[j] + i * g) < cellClip;
        const float dcNow = inside ? dcState[b * hidden + j] + total * o * (1.0f - tc * tc) : 0.0f;
        da[j] = dcNow * g * i * (1.0f - i);
        da[hidden + j] = dcNow * before[j] * f * (1.0f - f);
        da[2 * hidden + j] = dcNow * i * (1.0f - g * g);
        da[3 * hidden + j] = total * tc * o * (1.0f - o);
        dcState[b * hidden + j] = dcNow * f;
    }
    // Every work-item staged only its own elements of dh, and the product's last staging is done.
    RECUR_ROW_UNITS(j, state) dh[j] = 0.0f;
}

#define CELL_ROW_FORWARD                                                                         \
    lstm_projection_forward(b, row, hidden, state, cellClip, operand, recurrentWeights, inputBias, \
                            recurrentBias, projectionWeights, gates, cellStates,                 \
                            (s == 0 ? cInitial : cState) + b * hidden, cState, unprojected, hState, tile)
#define CELL_ROW_FORWARD_PADDED                                                                  \
    lstm_projection_forward_padded(b, row, hidden, state, gates, cellStates,                     \
                                   (s == 0 ? cInitial : cState) + b * hidden, cState, previous, hState)
#define CELL_ROW_BACKWARD                                                                        \
    lstm_projection_backward(b, row, hidden, state, cellClip, gates, cellStates,                 \
                             previousTime >= 0 ? cellStates + (previousTime * batch + b) * hidden \
                                               : cInitial + b * hidden,                          \
                             projectionWeights, gateGradients, dcState, dhState, unprojected,    \
                             unprojectedStates, tile)
#define CELL_ROW_BACKWARD_PADDED                                                                 \
    RECUR_ROW_UNITS(j, hidden) recur_zero_gates(gateGradients + row * 4 * hidden + j, 4, hidden)
