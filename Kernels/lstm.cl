// LSTM (gates i, f, g, o, PyTorch order): one fused kernel per time step, forward and backward.
// Built with common.cl prepended (tiles, recur_gate_products, recur_unit_product, recur_is_valid).
//
// Shape legend: T time steps, B batch, H hidden units, G = 4H.
//   gates          [T, B, G]  forward: in x W_ih^T (the host's GEMM), out i, f, g, o
//   recurrentInput [T, B, H]  h~_{t-1} = h_{t-1} * m, the operand of W_hh at step t
//   cellStates     [T, B, H]  c_t after the clip
//   W_hh           [G, H]
//   b_ih, b_hh     [G]
//   h0, c0, h, c   [B, H]
//   dh, dc         [B, H]
//   mask m         [B, H]     read only when hasMask
//   lengths        int [B]    read only when hasLengths
//   output view    row (t, b) at outputOffset + (t * B + b) * outputStride, H floats
//   dG             [T, B, G]  backward: dL/d(gate pre-activations)
//   hiddenGradients [T, B, H] backward, optional: dL/dh_t, the total gradient reaching each state
//
// One work-item per (b, j, d), owning unit j of all four gates of direction d, in
// RECUR_TILE_H x RECUR_TILE_B x 1 groups, or in the resident split's groups (see common.cl). A
// kernel runs stepCount scan steps from firstStep (one per launch on an in-order queue, or all of
// a scan in one persistent launch: "Scans" in common.cl) of one scan, or of the two scans of a
// bidirectional layer together. For scan step s, `time` is its time index (from the direction's
// `reverse` flag), `nextTime` the time index of scan step s + 1, the step after it (forward) or
// the step processed before it (backward), `previousTime` that of scan step s - 1; -1 where there
// is none. h0 and c0 (hInitial, cInitial) are read at scan step 0.
//
// Every operand but the sizes, cellClip and the lengths comes once per direction, as name0 and
// name1, and each kernel first picks its direction's (RECUR_PICK, common.cl). The running state
// h, c is passed as hState, cState, the running gradients dh, dc as dhState, dcState and c0 as
// cInitial, so that the direction's digit never reads as a time index.
//
// A padded step (recur_is_valid false) carries (h, c) through, writes 0 to the output and a zero
// gate row, and passes both gradients through unchanged.

// Forward step t, for unit j of sequence b, with p_q = x_t W_iq^T [b, j] + b_iq[j] + b_hq[j]
// + sum_k h~[b, k] W_hq[j, k] for each gate q:
//   i = sigma(p_i), f = sigma(p_f), g = tanh(p_g), o = sigma(p_o)
//   c_t = clip(f * c_{t-1} + i * g), clip(u) = min(max(u, -cellClip), cellClip)
//   h_t = o * tanh(c_t)
//   gates[t, b, :] = i, f, g, o; cellStates[t, b, j] = c[b, j] = c_t
//   output[t, b, j] = h[b, j] = h_t; recurrentInput[nextTime, b, j] = h_t * m[b, j]
// hPrevious / cPrevious are h0 / c0 at the first step of the scan and h / c after it (only
// [b, j] of them is read). cellClip is +infinity for no clip.
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void lstm_fwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                   const int firstStep, const int stepCount, const float cellClip,
                   __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                   __global const float* inputBias0, __global const float* inputBias1,
                   __global const float* recurrentBias0, __global const float* recurrentBias1,
                   __global float* gates0, __global float* gates1,
                   __global float* recurrentInput0, __global float* recurrentInput1,
                   __global float* cellStates0, __global float* cellStates1,
                   __global const float* hInitial0, __global const float* hInitial1,
                   __global const float* cInitial0, __global const float* cInitial1,
                   __global float* hState0, __global float* hState1, __global float* cState0, __global float* cState1,
                   __global float* output0, const int outputOffset0, const int outputStride0,
                   __global float* output1, const int outputOffset1, const int outputStride1,
                   __global const float* mask0, const int hasMask0, __global const float* mask1, const int hasMask1,
                   __global const int* lengths, const int hasLengths, const int prePadding,
                   volatile __global int* gridSync, const int spinLimit) {
    RECUR_FWD_LOCALS(4);
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* inputBias = RECUR_PICK(inputBias);
    __global const float* recurrentBias = RECUR_PICK(recurrentBias);
    __global float* gates = RECUR_PICK(gates);
    __global float* recurrentInput = RECUR_PICK(recurrentInput);
    __global float* cellStates = RECUR_PICK(cellStates);
    __global const float* hInitial = RECUR_PICK(hInitial);
    __global const float* cInitial = RECUR_PICK(cInitial);
    __global float* h = RECUR_PICK(hState);
    __global float* c = RECUR_PICK(cState);
    RECUR_PICK_OUTPUT_VIEW;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_FWD_WEIGHTS(recurrentWeights, 4);
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep + k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        __global const float* hPrevious = s == 0 ? hInitial : h;
        __global const float* cPrevious = s == 0 ? cInitial : c;
        float products[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        RECUR_FWD_PRODUCTS(recurrentInput + time * batch * hidden, recurrentWeights, 4, products);
        if (j < hidden && b < batch) {
            const int unit = b * hidden + j;
            const int row = time * batch + b;
            __global float* gate = gates + row * 4 * hidden + j;
            const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
            float state = hPrevious[unit];
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
                gate[0] = 0.0f;
                gate[hidden] = 0.0f;
                gate[2 * hidden] = 0.0f;
                gate[3 * hidden] = 0.0f;
            }
            cellStates[row * hidden + j] = cell;
            c[unit] = cell;
            h[unit] = state;
            output[outputOffset + row * outputStride + j] = valid ? state : 0.0f;
            if (nextTime >= 0) {
                recurrentInput[nextTime * batch * hidden + unit] = hasMask ? state * mask[unit] : state;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}

// Backward step t (differentiates lstm_fwd_step), for unit j of sequence b:
//   dh~ = sum_k dG[nextTime, b, k] W_hh[k, j]            (differentiates h~ W_hh^T of step nextTime)
//   dh_t = dh[b, j] + dh~ * m[b, j] + dy[t, b, j]         (dy only at valid steps, when given)
//   hiddenGradients[t, b, j] = dh_t, or 0 when padded   (only when hasHiddenGradients)
//   valid, with tc = tanh(c_t) and c_{t-1} = cellStates[previousTime] (c0 at the first step):
//     do = dh_t tc                                         (h_t = o tanh(c_t))
//     dc_t = dc[b, j] + dh_t o (1 - tc^2), or 0 where |f c_{t-1} + i g| >= cellClip (the clip)
//     di = dc_t g, df = dc_t c_{t-1}, dg = dc_t i         (c_t = f c_{t-1} + i g)
//     dG[t, b, :] = di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)
//     dc[b, j] = dc_t f; dh[b, j] = 0 (h_{t-1} reaches h_t only through h~)
//   padded: dG[t, b, :] = 0; dh[b, j] = dh_t; dc[b, j] unchanged
// dh, dc start as dL/dh_n, dL/dc_n. After the first step of the scan the host launches this
// kernel once more with time = -1 and nextTime = that step: every item is then padded, and dh, dc
// end as dL/dh0, dL/dc0. Overwrites dG row t, dh and dc.
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void lstm_bwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                   const int firstStep, const int stepCount,
                   const float cellClip,
                   __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                   __global const float* gates0, __global const float* gates1,
                   __global const float* cellStates0, __global const float* cellStates1,
                   __global const float* cInitial0, __global const float* cInitial1,
                   __global float* gateGradients0, __global float* gateGradients1,
                   __global float* dhState0, __global float* dhState1,
                   __global float* dcState0, __global float* dcState1,
                   __global const float* outputGradient0, const int hasOutputGradient0,
                   const int outputGradientOffset0, const int outputGradientStride0,
                   __global const float* outputGradient1, const int hasOutputGradient1,
                   const int outputGradientOffset1, const int outputGradientStride1,
                   __global float* hiddenGradients0, const int hasHiddenGradients0,
                   __global float* hiddenGradients1, const int hasHiddenGradients1,
                   __global const float* mask0, const int hasMask0, __global const float* mask1, const int hasMask1,
                   __global const int* lengths, const int hasLengths, const int prePadding,
                   volatile __global int* gridSync, const int spinLimit) {
    RECUR_BWD_LOCALS;
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* gates = RECUR_PICK(gates);
    __global const float* cellStates = RECUR_PICK(cellStates);
    __global const float* c0 = RECUR_PICK(cInitial);
    __global float* gateGradients = RECUR_PICK(gateGradients);
    __global float* dh = RECUR_PICK(dhState);
    __global float* dc = RECUR_PICK(dcState);
    RECUR_PICK_UPSTREAM_GRADIENTS;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_BWD_WEIGHTS(recurrentWeights);
    const int g4 = 4 * hidden;
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep - k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        const int previousTime = recur_scan_time(s - 1, steps, reverse);
        float through = 0.0f;
        if (nextTime >= 0) {
            through = RECUR_BWD_PRODUCT(gateGradients + nextTime * batch * g4, g4, recurrentWeights);
        }
        if (j < hidden && b < batch) {
            const int unit = b * hidden + j;
            const int row = time * batch + b;
            const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
            float total = dh[unit] + (hasMask ? through * mask[unit] : through);
            if (valid && hasOutputGradient) {
                total += outputGradient[outputGradientOffset + row * outputGradientStride + j];
            }
            if (hasHiddenGradients && time >= 0) hiddenGradients[row * hidden + j] = valid ? total : 0.0f;
            if (valid) {
                __global const float* gate = gates + row * g4 + j;
                const float i = gate[0];
                const float f = gate[hidden];
                const float g = gate[2 * hidden];
                const float o = gate[3 * hidden];
                const float before = previousTime >= 0 ? cellStates[(previousTime * batch + b) * hidden + j] : c0[unit];
                const float tc = tanh(cellStates[row * hidden + j]);
                // The clip's gradient: 1 strictly inside (-cellClip, cellClip), else 0.
                const bool inside = fabs(f * before + i * g) < cellClip;
                const float dcNow = inside ? dc[unit] + total * o * (1.0f - tc * tc) : 0.0f;
                __global float* da = gateGradients + row * g4 + j;
                da[0] = dcNow * g * i * (1.0f - i);
                da[hidden] = dcNow * before * f * (1.0f - f);
                da[2 * hidden] = dcNow * i * (1.0f - g * g);
                da[3 * hidden] = total * tc * o * (1.0f - o);
                dc[unit] = dcNow * f;
                dh[unit] = 0.0f;
            } else {
                if (time >= 0) {
                    __global float* da = gateGradients + row * g4 + j;
                    da[0] = 0.0f;
                    da[hidden] = 0.0f;
                    da[2 * hidden] = 0.0f;
                    da[3 * hidden] = 0.0f;
                }
                dh[unit] = total;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}
