// GRU (gates r, z, n, PyTorch order), forward and backward, in both formulations:
//   reset after the matmul (`gru_*`, PyTorch/cuDNN, Keras reset_after=True): one fused kernel
//     per time step;
//   reset before it (`gru_reset_before_*`, Cho et al. 2014, Keras reset_after=False): one
//     kernel in two phases per time step, because W_hn multiplies r * h~, and r of every unit
//     must be known before any unit's n product can start: two launches per step, or, in a
//     persistent scan, a grid-wide barrier between the phases.
// Built with common.cl prepended (tiles, recur_gate_products, recur_unit_product, recur_is_valid).
//
// Shape legend: T time steps, B batch, H hidden units, G = 3H.
//   gates              [T, B, G]  forward: in x W_ih^T (the host's GEMM), out r, z, n
//   recurrentInput     [T, B, H]  h~_{t-1} = h_{t-1} * m, the operand of W_hh at step t
//   hiddenStates       [T, B, H]  h_t (without dropout)
//   candidateRecurrent [T, B, H]  reset after: W_hn h~ + b_hn; reset before: r * h~
//   W_hh               [G, H]
//   b_ih, b_hh         [G]
//   h0, h, dh          [B, H]
//   mask m             [B, H]     read only when hasMask
//   lengths            int [B]    read only when hasLengths
//   output view        row (t, b) at outputOffset + (t * B + b) * outputStride, H floats
//   dG                 [T, B, G]  backward: dL/d(gate pre-activations) as seen by W_ih, b_ih, x
//   hiddenGradients    [T, B, H]  backward, optional: dL/dh_t, the total gradient reaching each state
//   dGh                [T, B, G]  reset after: the same as seen by W_hh, b_hh, h~ (n block scaled
//                                 by r)
//   dhTildeReset       [B, H]     reset before: dq * r, the part of dh~ through r * h~
//
// One work-item per (b, j, d), owning unit j of every gate of direction d, in
// RECUR_TILE_H x RECUR_TILE_B x 1 groups, or (reset after) in the resident split's groups (see
// common.cl). The reset-after kernels run stepCount scan steps from firstStep (one per launch on
// an in-order queue, or all of a scan in one persistent launch: "Scans" in common.cl); for scan
// step s, `time` is its time index (from the direction's `reverse` flag). The reset-before kernels
// do the same, one or both of their phases per launch (see below). `nextTime` is the time index
// of the step after it in the scan (forward) or of the step processed before it (backward),
// `previousTime` that of the step before it in the scan; -1 where there is none. One launch covers
// one scan, or the two scans of a bidirectional layer together; the reset-before GRU's two phase
// launches of a step each run both directions, so the scan pair costs 2T launches instead of 4T.
//
// Every operand but the sizes and the lengths comes once per direction, as name0 and name1, and
// each kernel first picks its direction's (RECUR_PICK, common.cl). The running state h is passed
// as hState, the running gradient dh as dhState and h0 as hInitial, so that the direction's
// digit never reads as a time index.
//
// A padded step (recur_is_valid false) carries h through, writes 0 to the output and zero gate
// and candidate rows, and passes the gradient through unchanged.

// Forward step t, reset after, for unit j of sequence b, with s_q = x_t W_iq^T [b, j] + b_iq[j]:
//   r = sigma(s_r + b_hr[j] + sum_k h~[b, k] W_hr[j, k]), z likewise
//   hn = sum_k h~[b, k] W_hn[j, k] + b_hn[j]
//   n = tanh(s_n + r * hn)
//   h_t = (1 - z) n + z h_{t-1}, evaluated as n + z (h_{t-1} - n)
//   gates[t, b, :] = r, z, n; candidateRecurrent[t, b, j] = hn; hiddenStates[t, b, j] = h[b, j] = h_t
//   output[t, b, j] = h_t; recurrentInput[nextTime, b, j] = h_t * m[b, j]
// hPrevious is h0 at the first step of the scan and h after it (only [b, j] of it is read).
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void gru_fwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                  const int firstStep, const int stepCount,
                  __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                  __global const float* inputBias0, __global const float* inputBias1,
                  __global const float* recurrentBias0, __global const float* recurrentBias1,
                  __global float* gates0, __global float* gates1,
                  __global float* recurrentInput0, __global float* recurrentInput1,
                  __global float* hiddenStates0, __global float* hiddenStates1,
                  __global float* candidateRecurrent0, __global float* candidateRecurrent1,
                  __global const float* hInitial0, __global const float* hInitial1,
                  __global float* hState0, __global float* hState1,
                  __global float* output0, const int outputOffset0, const int outputStride0,
                  __global float* output1, const int outputOffset1, const int outputStride1,
                  __global const float* mask0, const int hasMask0, __global const float* mask1, const int hasMask1,
                  __global const int* lengths, const int hasLengths, const int prePadding,
                  volatile __global int* gridSync, const int spinLimit) {
    RECUR_FWD_LOCALS(3);
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* inputBias = RECUR_PICK(inputBias);
    __global const float* recurrentBias = RECUR_PICK(recurrentBias);
    __global float* gates = RECUR_PICK(gates);
    __global float* recurrentInput = RECUR_PICK(recurrentInput);
    __global float* hiddenStates = RECUR_PICK(hiddenStates);
    __global float* candidateRecurrent = RECUR_PICK(candidateRecurrent);
    __global const float* hInitial = RECUR_PICK(hInitial);
    __global float* h = RECUR_PICK(hState);
    RECUR_PICK_OUTPUT_VIEW;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_FWD_WEIGHTS(recurrentWeights, 3);
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep + k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        __global const float* hPrevious = s == 0 ? hInitial : h;
        float products[3] = {0.0f, 0.0f, 0.0f};
        RECUR_FWD_PRODUCTS(recurrentInput + time * batch * hidden, recurrentWeights, 3, products);
        if (j < hidden && b < batch) {
            const int unit = b * hidden + j;
            const int row = time * batch + b;
            __global float* gate = gates + row * 3 * hidden + j;
            const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
            float state = hPrevious[unit];
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
                gate[0] = 0.0f;
                gate[hidden] = 0.0f;
                gate[2 * hidden] = 0.0f;
                candidateRecurrent[row * hidden + j] = 0.0f;
            }
            hiddenStates[row * hidden + j] = state;
            h[unit] = state;
            output[outputOffset + row * outputStride + j] = valid ? state : 0.0f;
            if (nextTime >= 0) {
                recurrentInput[nextTime * batch * hidden + unit] = hasMask ? state * mask[unit] : state;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}

// Backward step t, reset after (differentiates gru_fwd_step), for unit j of sequence b:
//   dh~ = sum_k dGh[nextTime, b, k] W_hh[k, j]           (differentiates h~ W_hh^T of step nextTime)
//   dh_t = dh[b, j] + dh~ * m[b, j] + dy[t, b, j]         (dy only at valid steps, when given)
//   hiddenGradients[t, b, j] = dh_t, or 0 when padded   (only when hasHiddenGradients)
//   valid, with h_{t-1} = hiddenStates[previousTime] (h0 at the first step):
//     dn = dh_t (1 - z) (1 - n^2)                           (pre-activation of n)
//     dz = dh_t (h_{t-1} - n) z (1 - z)
//     dr = dn hn r (1 - r)
//     dG[t, b, :] = dr, dz, dn; dGh[t, b, :] = dr, dz, dn r (d(W_hn h~) = dn r)
//     dh[b, j] = dh_t z                                    (the direct path z h_{t-1})
//   padded: dG, dGh rows 0; dh[b, j] = dh_t
// dh starts as dL/dh_n. After the first step of the scan the host launches this kernel once more
// with time = -1 and nextTime = that step: every item is then padded, and dh ends as dL/dh0.
// Overwrites dG and dGh row t and dh.
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void gru_bwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                  const int firstStep, const int stepCount,
                  __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                  __global const float* gates0, __global const float* gates1,
                  __global const float* hiddenStates0, __global const float* hiddenStates1,
                  __global const float* candidateRecurrent0, __global const float* candidateRecurrent1,
                  __global const float* hInitial0, __global const float* hInitial1,
                  __global float* gateGradients0, __global float* gateGradients1,
                  __global float* recurrentGateGradients0, __global float* recurrentGateGradients1,
                  __global float* dhState0, __global float* dhState1,
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
    __global const float* hiddenStates = RECUR_PICK(hiddenStates);
    __global const float* candidateRecurrent = RECUR_PICK(candidateRecurrent);
    __global const float* h0 = RECUR_PICK(hInitial);
    __global float* gateGradients = RECUR_PICK(gateGradients);
    __global float* recurrentGateGradients = RECUR_PICK(recurrentGateGradients);
    __global float* dh = RECUR_PICK(dhState);
    RECUR_PICK_UPSTREAM_GRADIENTS;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_BWD_WEIGHTS(recurrentWeights);
    const int g3 = 3 * hidden;
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep - k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        const int previousTime = recur_scan_time(s - 1, steps, reverse);
        float through = 0.0f;
        if (nextTime >= 0) {
            through = RECUR_BWD_PRODUCT(recurrentGateGradients + nextTime * batch * g3, g3, recurrentWeights);
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
                __global const float* gate = gates + row * g3 + j;
                const float r = gate[0];
                const float z = gate[hidden];
                const float n = gate[2 * hidden];
                const float before = previousTime >= 0 ? hiddenStates[(previousTime * batch + b) * hidden + j]
                                                       : h0[unit];
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
                dh[unit] = total * z;
            } else {
                if (time >= 0) {
                    __global float* da = gateGradients + row * g3 + j;
                    __global float* daRecurrent = recurrentGateGradients + row * g3 + j;
                    da[0] = 0.0f;
                    da[hidden] = 0.0f;
                    da[2 * hidden] = 0.0f;
                    daRecurrent[0] = 0.0f;
                    daRecurrent[hidden] = 0.0f;
                    daRecurrent[2 * hidden] = 0.0f;
                }
                dh[unit] = total;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}

// The reset-before GRU's step is two phases, because W_hn multiplies r * h~ and r of every unit
// must be known before any unit's n product starts: the gates phase (1), then the state phase (2)
// of the forward; the state-gradient phase (1), then the gate-gradient phase (2) of the backward.
// `phases` says which a launch runs: 1 or 2 alone (one launch each per step, the queue orders
// them), or 3, both, with a grid barrier between them (a persistent scan, "Scans" in common.cl).

// Forward step t, reset before, for unit j of sequence b.
// Gates phase:
//   r = sigma(x_t W_ir^T [b, j] + b_ir[j] + b_hr[j] + sum_k h~[b, k] W_hr[j, k]), z likewise
//   gates[t, b, 0 .. 2H) = r, z; candidateRecurrent[t, b, j] = q = r * h~[b, j] (0 when padded)
// State phase:
//   n = tanh(x_t W_in^T [b, j] + b_in[j] + sum_k q[b, k] W_hn[j, k] + b_hn[j]), q = r * h~
//   h_t = (1 - z) n + z h_{t-1}, evaluated as n + z (h_{t-1} - n)
//   gates[t, b, 2H + j] = n; hiddenStates[t, b, j] = h[b, j] = h_t; output[t, b, j] = h_t
//   recurrentInput[nextTime, b, j] = h_t * m[b, j]
// hPrevious is h0 at the first step of the scan and h after it (only [b, j] of it is read).
__kernel __attribute__((reqd_work_group_size(RECUR_TILE_H, RECUR_TILE_B, 1)))
void gru_reset_before_fwd_step(const int batch, const int hidden, const int steps, const int reverse0,
                               const int reverse1, const int firstStep, const int stepCount, const int phases,
                               __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                               __global const float* inputBias0, __global const float* inputBias1,
                               __global const float* recurrentBias0, __global const float* recurrentBias1,
                               __global float* gates0, __global float* gates1,
                               __global float* recurrentInput0, __global float* recurrentInput1,
                               __global float* hiddenStates0, __global float* hiddenStates1,
                               __global float* candidateRecurrent0, __global float* candidateRecurrent1,
                               __global const float* hInitial0, __global const float* hInitial1,
                               __global float* hState0, __global float* hState1,
                               __global float* output0, const int outputOffset0, const int outputStride0,
                               __global float* output1, const int outputOffset1, const int outputStride1,
                               __global const float* mask0, const int hasMask0,
                               __global const float* mask1, const int hasMask1,
                               __global const int* lengths, const int hasLengths, const int prePadding,
                               volatile __global int* gridSync, const int spinLimit) {
    __local float aTile[RECUR_ROW_TILE];
    __local float wTile[2 * RECUR_GATE_TILE];  // the gates phase's two gates; the state phase uses one
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* inputBias = RECUR_PICK(inputBias);
    __global const float* recurrentBias = RECUR_PICK(recurrentBias);
    __global float* gates = RECUR_PICK(gates);
    __global float* recurrentInput = RECUR_PICK(recurrentInput);
    __global float* hiddenStates = RECUR_PICK(hiddenStates);
    __global float* candidateRecurrent = RECUR_PICK(candidateRecurrent);
    __global const float* hInitial = RECUR_PICK(hInitial);
    __global float* h = RECUR_PICK(hState);
    RECUR_PICK_OUTPUT_VIEW;
    RECUR_PICK_DROPOUT_MASK;
    const int j = get_global_id(0);
    const int b = get_global_id(1);
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep + k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        const int row = time * batch + b;
        const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
        if (phases & 1) {
            __global const float* operand = recurrentInput + time * batch * hidden;
            float products[2] = {0.0f, 0.0f};
            recur_gate_products(operand, hidden, recurrentWeights, 2, hidden, hidden, batch, aTile, wTile, products);
            if (j < hidden && b < batch) {
                if (valid) {
                    __global float* gate = gates + row * 3 * hidden + j;
                    const float r = recur_sigmoid(gate[0] + inputBias[j] + recurrentBias[j] + products[0]);
                    const float z = recur_sigmoid(gate[hidden] + inputBias[hidden + j] + recurrentBias[hidden + j]
                                                  + products[1]);
                    gate[0] = r;
                    gate[hidden] = z;
                    candidateRecurrent[row * hidden + j] = r * operand[b * hidden + j];
                } else {
                    candidateRecurrent[row * hidden + j] = 0.0f;
                }
            }
            if (phases == 3 && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
        }
        if (phases & 2) {
            float product[1] = {0.0f};
            recur_gate_products(candidateRecurrent + time * batch * hidden, hidden,
                                recurrentWeights + 2 * hidden * hidden, 1, hidden, hidden, batch, aTile, wTile,
                                product);
            if (j < hidden && b < batch) {
                const int unit = b * hidden + j;
                __global float* gate = gates + row * 3 * hidden + j;
                float state = (s == 0 ? hInitial : h)[unit];
                if (valid) {
                    const float z = gate[hidden];
                    const float n = tanh(gate[2 * hidden] + inputBias[2 * hidden + j] + recurrentBias[2 * hidden + j]
                                         + product[0]);
                    state = n + z * (state - n);
                    gate[2 * hidden] = n;
                } else {
                    gate[0] = 0.0f;
                    gate[hidden] = 0.0f;
                    gate[2 * hidden] = 0.0f;
                }
                hiddenStates[row * hidden + j] = state;
                h[unit] = state;
                output[outputOffset + row * outputStride + j] = valid ? state : 0.0f;
                if (nextTime >= 0) {
                    recurrentInput[nextTime * batch * hidden + unit] = hasMask ? state * mask[unit] : state;
                }
            }
            if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
        }
    }
}

// Backward step t, reset before (differentiates gru_reset_before_fwd_step), for unit j of
// sequence b.
// State-gradient phase (differentiates the state phase):
//   dh~ = dhTildeReset[b, j] + sum_{k < 2H} dG[nextTime, b, k] W_hh[k, j]
//                           (differentiates (r * h~) W_hn^T and h~ W_h(r,z)^T of step nextTime)
//   dh_t = dh[b, j] + dh~ * m[b, j] + dy[t, b, j]         (dy only at valid steps, when given)
//   hiddenGradients[t, b, j] = dh_t, or 0 when padded   (only when hasHiddenGradients)
//   valid, with h_{t-1} = hiddenStates[previousTime] (h0 at the first step):
//     dG[t, b, H + j] = dh_t (h_{t-1} - n) z (1 - z); dG[t, b, 2H + j] = dh_t (1 - z) (1 - n^2)
//     dh[b, j] = dh_t z
//   padded: dG row 0; dh[b, j] = dh_t
// Gate-gradient phase (differentiates the gates phase; not at time -1):
//   dq = sum_k dG[t, b, 2H + k] W_hn[k, j]                (differentiates q W_hn^T, q = r * h~)
//   valid:  dG[t, b, j] = dq h~[b, j] r (1 - r); dhTildeReset[b, j] = dq r
//   padded: dhTildeReset[b, j] = 0
// dh starts as dL/dh_n; after the first step of the scan comes one more step with time = -1 and
// nextTime = that step (its state-gradient phase only), and dh ends as dL/dh0.
__kernel __attribute__((reqd_work_group_size(RECUR_TILE_H, RECUR_TILE_B, 1)))
void gru_reset_before_bwd_step(const int batch, const int hidden, const int steps, const int reverse0,
                               const int reverse1, const int firstStep, const int stepCount, const int phases,
                               __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                               __global const float* gates0, __global const float* gates1,
                               __global const float* recurrentInput0, __global const float* recurrentInput1,
                               __global const float* hiddenStates0, __global const float* hiddenStates1,
                               __global const float* hInitial0, __global const float* hInitial1,
                               __global float* gateGradients0, __global float* gateGradients1,
                               __global float* dhTildeReset0, __global float* dhTildeReset1,
                               __global float* dhState0, __global float* dhState1,
                               __global const float* outputGradient0, const int hasOutputGradient0,
                               const int outputGradientOffset0, const int outputGradientStride0,
                               __global const float* outputGradient1, const int hasOutputGradient1,
                               const int outputGradientOffset1, const int outputGradientStride1,
                               __global float* hiddenGradients0, const int hasHiddenGradients0,
                               __global float* hiddenGradients1, const int hasHiddenGradients1,
                               __global const float* mask0, const int hasMask0,
                               __global const float* mask1, const int hasMask1,
                               __global const int* lengths, const int hasLengths, const int prePadding,
                               volatile __global int* gridSync, const int spinLimit) {
    __local float aTile[RECUR_ROW_TILE];
    __local float wTile[RECUR_UNIT_TILE];
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* gates = RECUR_PICK(gates);
    __global const float* recurrentInput = RECUR_PICK(recurrentInput);
    __global const float* hiddenStates = RECUR_PICK(hiddenStates);
    __global const float* h0 = RECUR_PICK(hInitial);
    __global float* gateGradients = RECUR_PICK(gateGradients);
    __global float* dhTildeReset = RECUR_PICK(dhTildeReset);
    __global float* dh = RECUR_PICK(dhState);
    RECUR_PICK_UPSTREAM_GRADIENTS;
    RECUR_PICK_DROPOUT_MASK;
    const int j = get_global_id(0);
    const int b = get_global_id(1);
    const int g3 = 3 * hidden;
    const int unit = b * hidden + j;
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep - k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        const int previousTime = recur_scan_time(s - 1, steps, reverse);
        const int row = time * batch + b;
        const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
        if (phases & 1) {
            float through = 0.0f;
            if (nextTime >= 0) {
                through = recur_unit_product(gateGradients + nextTime * batch * g3, g3, recurrentWeights, hidden,
                                             2 * hidden, batch, aTile, wTile);
            }
            if (j < hidden && b < batch) {
                if (nextTime >= 0) through += dhTildeReset[unit];
                float total = dh[unit] + (hasMask ? through * mask[unit] : through);
                if (valid && hasOutputGradient) {
                    total += outputGradient[outputGradientOffset + row * outputGradientStride + j];
                }
                if (hasHiddenGradients && time >= 0) hiddenGradients[row * hidden + j] = valid ? total : 0.0f;
                if (valid) {
                    __global const float* gate = gates + row * g3 + j;
                    const float z = gate[hidden];
                    const float n = gate[2 * hidden];
                    const float before = previousTime >= 0 ? hiddenStates[(previousTime * batch + b) * hidden + j]
                                                           : h0[unit];
                    __global float* da = gateGradients + row * g3 + j;
                    da[hidden] = total * (before - n) * z * (1.0f - z);
                    da[2 * hidden] = total * (1.0f - z) * (1.0f - n * n);
                    dh[unit] = total * z;
                } else {
                    if (time >= 0) {
                        __global float* da = gateGradients + row * g3 + j;
                        da[0] = 0.0f;
                        da[hidden] = 0.0f;
                        da[2 * hidden] = 0.0f;
                    }
                    dh[unit] = total;
                }
            }
            if (phases == 3 && time >= 0 && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
        }
        if ((phases & 2) && time >= 0) {
            const float dq = recur_unit_product(gateGradients + time * batch * g3 + 2 * hidden, g3,
                                                recurrentWeights + 2 * hidden * hidden, hidden, hidden, batch, aTile,
                                                wTile);
            if (j < hidden && b < batch) {
                if (valid) {
                    const float r = gates[row * g3 + j];
                    gateGradients[row * g3 + j] = dq * recurrentInput[row * hidden + j] * r * (1.0f - r);
                    dhTildeReset[unit] = dq * r;
                } else {
                    dhTildeReset[unit] = 0.0f;
                }
            }
            if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
        }
    }
}
