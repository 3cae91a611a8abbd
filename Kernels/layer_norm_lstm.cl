// Layer-normalised LSTM (Ba, Kiros & Hinton 2016; gates i, f, g, o; LayerNormLSTMCell.swift holds
// the equations, the float64 reference and the CPU steps): the step math of the row-skeleton
// kernels layer_norm_lstm_fwd_step and layer_norm_lstm_bwd_step (recurrent_rows.cl). Built after
// common.cl, the generated operand macros and rows.cl, before recurrent_rows.cl.
//
// Shape legend: T time steps, B batch, H hidden units, G = 4H.
//   gates          [T, B, G]  forward: in x W_ih^T (the host's GEMM), out a = x W_ih^T + h~ W_hh^T
//   b_ih, b_hh     [G]        inputBias, recurrentBias: LN's shift of the gates
//   gateGain       [G]        gamma of the gates' normalisation
//   cellGain, cellBias [H]    gamma_c, beta_c of c_t's normalisation
//   cellStates     [T, B, H]  c_t after the clip
//   cInitial, cState, dcState [B, H]  c0, the running c, the running dL/dc
//   gateGradients  [T, B, G]  backward: dL/da, seen by W_ih, W_hh, x and h~
//   parameterGradients [B, 10H]  backward, summed over the steps of row b: columns
//                      [0, 4H) dL/db (b_ih and b_hh alike), [4H, 8H) dL/dgateGain,
//                      [8H, 9H) dL/dcellGain, [9H, 10H) dL/dcellBias
// cellClip is +infinity for no clip. LN(v) = (v - mean(v)) s, s = 1 / sqrt(var(v) + eps) over
// the H units of one block of one row (rows.cl's recur_row_statistics).

#define CELL_NAME layer_norm_lstm
#define CELL_GATES 4
// Columns of a row of parameterGradients, in units of H.
#define LAYER_NORM_LSTM_BIAS 0
#define LAYER_NORM_LSTM_GATE_GAIN 4
#define LAYER_NORM_LSTM_CELL_GAIN 8
#define LAYER_NORM_LSTM_CELL_BIAS 9
#define LAYER_NORM_LSTM_PARAMETER_COLUMNS 10

// gate = i, f, g, o of unit j: sigma, sigma, tanh, sigma of z_q = gamma_q LN(a_q) + (b_ih,q +
// b_hh,q), from the blocks' statistics; in the forward, and again in the backward.
void layer_norm_lstm_gates(__global const float* a, const int j, const int hidden, const float* mean,
                           const float* scale, __global const float* gateGain, __global const float* inputBias,
                           __global const float* recurrentBias, float* gate) {
    for (int q = 0; q < 4; ++q) {
        const int k = q * hidden + j;
        const float z = gateGain[k] * ((a[k] - mean[q]) * scale[q]) + (inputBias[k] + recurrentBias[k]);
        gate[q] = q == 2 ? tanh(z) : recur_sigmoid(z);
    }
}

// Forward step t of row b (row = t B + b), from operand = h~ row of t and cPrevious = c_{t-1} row:
//   a = gates[t, b, :] + h~ W_hh^T                      kept in gates[t, b, :]
//   z_q = gamma_q LN(a_q) + (b_ih,q + b_hh,q)            per gate block q of H units
//   i, f, g, o = sigma(z_i), sigma(z_f), tanh(z_g), sigma(z_o)
//   c_t = clip(f c_{t-1} + i g)                          cellStates[t, b, :] = cState[b, :] = c_t
//   h_t = o tanh(gamma_c LN(c_t) + beta_c)               hState[b, :] = h_t
void layer_norm_lstm_forward(const int b, const int row, const int hidden, const float cellClip,
                             __global const float* operand, __global const float* recurrentWeights,
                             __global const float* inputBias, __global const float* recurrentBias,
                             __global const float* gateGain, __global const float* cellGain,
                             __global const float* cellBias, __global float* gates, __global float* cellStates,
                             __global const float* cPrevious, __global float* cState, __global float* hState,
                             __local float* tile, __local float* scratch) {
    __global float* a = gates + row * 4 * hidden;
    __global float* cell = cellStates + row * hidden;
    recur_row_products(operand, recurrentWeights, 4, hidden, hidden, true, a, tile);
    float mean[4], scale[4];
    recur_row_statistics(a, 4, hidden, scratch, mean, scale);
    RECUR_ROW_UNITS(j, hidden) {
        float gate[4];
        layer_norm_lstm_gates(a, j, hidden, mean, scale, gateGain, inputBias, recurrentBias, gate);
        const float i = gate[0], f = gate[1], g = gate[2];
        const float unclipped = f * cPrevious[j] + i * g;
        const float c = unclipped > cellClip ? cellClip : (unclipped < -cellClip ? -cellClip : unclipped);
        cell[j] = c;
        cState[b * hidden + j] = c;
        // o, until c_t's statistics are known.
        hState[b * hidden + j] = gate[3];
    }
    float cellMean, cellScale;
    recur_row_statistics(cell, 1, hidden, scratch, &cellMean, &cellScale);
    RECUR_ROW_UNITS(j, hidden) {
        hState[b * hidden + j] *= tanh(cellGain[j] * ((cell[j] - cellMean) * cellScale) + cellBias[j]);
    }
}

// A padded step: the state carries through (h_t = h_{t-1}, c_t = c_{t-1}); gates[t, b, :] = 0.
void layer_norm_lstm_forward_padded(const int b, const int row, const int hidden, __global float* gates,
                                    __global float* cellStates, __global const float* cPrevious,
                                    __global float* cState, __global const float* previous, __global float* hState) {
    RECUR_ROW_UNITS(j, hidden) {
        recur_zero_gates(gates + row * 4 * hidden + j, 4, hidden);
        const float c = cPrevious[j];
        cellStates[row * hidden + j] = c;
        cState[b * hidden + j] = c;
        hState[b * hidden + j] = previous[j];
    }
}

// Backward step t of row b at a valid step (differentiates layer_norm_lstm_forward), from
// dhState[b, :] = dh_t and before = c_{t-1} row, recomputing LN's statistics and the gates from
// the kept a and c_t; c^ = LN(c_t), tc = tanh(gamma_c c^ + beta_c), LN'(d) = s (d - mean(d) -
// v^ mean(d v^)) for the normalised v^ = LN(v):
//   dp = dh_t o (1 - tc^2);  dgamma_c += dp c^;  dbeta_c += dp       (h_t = o tanh(p))
//   dc_t = dcState[b, :] + LN'(dp gamma_c), or 0 where |f c_{t-1} + i g| >= cellClip (the clip)
//   dz = dc_t g i (1 - i), dc_t c_{t-1} f (1 - f), dc_t i (1 - g^2), dh_t tc o (1 - o)
//   dcState[b, :] = dc_t f;  dhState[b, :] = 0 (h_{t-1} reaches h_t only through h~)
//   per block q: db_q += dz_q;  dgamma_q += dz_q LN(a_q);  dG[t, b, q] = LN'(dz_q gamma_q)
// The i block of dG holds dp gamma_c until dz overwrites it.
void layer_norm_lstm_backward(const int b, const int row, const int hidden, const float cellClip,
                              __global const float* gates, __global const float* cellStates,
                              __global const float* before, __global const float* inputBias,
                              __global const float* recurrentBias, __global const float* gateGain,
                              __global const float* cellGain, __global const float* cellBias,
                              __global float* gateGradients, __global float* dcState, __global float* dhState,
                              __global float* parameterGradients, __local float* scratch) {
    __global const float* a = gates + row * 4 * hidden;
    __global const float* cell = cellStates + row * hidden;
    __global float* da = gateGradients + row * 4 * hidden;
    __global float* dc = dcState + b * hidden;
    __global float* dh = dhState + b * hidden;
    __global float* sums = parameterGradients + b * LAYER_NORM_LSTM_PARAMETER_COLUMNS * hidden;
    __global float* dBias = sums + LAYER_NORM_LSTM_BIAS * hidden;
    __global float* dGateGain = sums + LAYER_NORM_LSTM_GATE_GAIN * hidden;
    __global float* dCellGain = sums + LAYER_NORM_LSTM_CELL_GAIN * hidden;
    __global float* dCellBias = sums + LAYER_NORM_LSTM_CELL_BIAS * hidden;
    float mean[4], scale[4];
    recur_row_statistics(a, 4, hidden, scratch, mean, scale);
    float cellMean, cellScale;
    recur_row_statistics(cell, 1, hidden, scratch, &cellMean, &cellScale);
    const float count = (float)hidden;

    float moments[8] = {0.0f};
    RECUR_ROW_UNITS(j, hidden) {
        const int k = 3 * hidden + j;
        const float o = recur_sigmoid(gateGain[k] * ((a[k] - mean[3]) * scale[3]) + (inputBias[k] + recurrentBias[k]));
        const float normalizedCell = (cell[j] - cellMean) * cellScale;
        const float tc = tanh(cellGain[j] * normalizedCell + cellBias[j]);
        const float dPreTanh = dh[j] * o * (1.0f - tc * tc);
        dCellGain[j] += dPreTanh * normalizedCell;
        dCellBias[j] += dPreTanh;
        da[j] = dPreTanh * cellGain[j];
        moments[0] += da[j];
        moments[1] += da[j] * normalizedCell;
    }
    recur_row_sums(moments, 2, scratch);
    const float cellMeanGradient = moments[0] / count;
    const float cellMeanProduct = moments[1] / count;
    RECUR_ROW_UNITS(j, hidden) {
        float gate[4];
        layer_norm_lstm_gates(a, j, hidden, mean, scale, gateGain, inputBias, recurrentBias, gate);
        const float i = gate[0], f = gate[1], g = gate[2], o = gate[3];
        const float normalizedCell = (cell[j] - cellMean) * cellScale;
        const float tc = tanh(cellGain[j] * normalizedCell + cellBias[j]);
        const float through = cellScale * (da[j] - cellMeanGradient - normalizedCell * cellMeanProduct);
        // The clip's gradient: 1 strictly inside (-cellClip, cellClip), else 0.
        const bool inside = fabs(f * before[j] + i * g) < cellClip;
        const float dcNow = inside ? dc[j] + through : 0.0f;
        const float total = dh[j];
        da[j] = dcNow * g * i * (1.0f - i);
        da[hidden + j] = dcNow * before[j] * f * (1.0f - f);
        da[2 * hidden + j] = dcNow * i * (1.0f - g * g);
        da[3 * hidden + j] = total * tc * o * (1.0f - o);
        dc[j] = dcNow * f;
        dh[j] = 0.0f;
    }
    for (int c = 0; c < 8; ++c) moments[c] = 0.0f;
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < 4; ++q) {
            const int k = q * hidden + j;
            const float normalized = (a[k] - mean[q]) * scale[q];
            dBias[k] += da[k];
            dGateGain[k] += da[k] * normalized;
            da[k] *= gateGain[k];
            moments[2 * q] += da[k];
            moments[2 * q + 1] += da[k] * normalized;
        }
    }
    recur_row_sums(moments, 8, scratch);
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < 4; ++q) {
            const int k = q * hidden + j;
            const float normalized = (a[k] - mean[q]) * scale[q];
            da[k] = scale[q] * (da[k] - moments[2 * q] / count - normalized * (moments[2 * q + 1] / count));
        }
    }
}

#define CELL_ROW_FORWARD                                                                         \
    layer_norm_lstm_forward(b, row, hidden, cellClip, operand, recurrentWeights, inputBias, recurrentBias, \
                            gateGain, cellGain, cellBias, gates, cellStates,                     \
                            (s == 0 ? cInitial : cState) + b * hidden, cState, hState, tile, scratch)
#define CELL_ROW_FORWARD_PADDED                                                                  \
    layer_norm_lstm_forward_padded(b, row, hidden, gates, cellStates, (s == 0 ? cInitial : cState) + b * hidden, \
                                   cState, previous, hState)
#define CELL_ROW_BACKWARD                                                                        \
    layer_norm_lstm_backward(b, row, hidden, cellClip, gates, cellStates,                        \
                             previousTime >= 0 ? cellStates + (previousTime * batch + b) * hidden \
                                               : cInitial + b * hidden,                          \
                             inputBias, recurrentBias, gateGain, cellGain, cellBias, gateGradients, dcState, \
                             dhState, parameterGradients, scratch)
#define CELL_ROW_BACKWARD_PADDED                                                                 \
    RECUR_ROW_UNITS(j, hidden) recur_zero_gates(gateGradients + row * 4 * hidden + j, 4, hidden)
