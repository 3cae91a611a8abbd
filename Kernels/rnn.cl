// Simple RNN (tanh or ReLU): one fused kernel per time step, forward and backward.
// Built with common.cl prepended (tiles, recur_gate_products, recur_unit_product, recur_is_valid).
//
// Shape legend: T time steps, B batch, H hidden units, G = H (one gate).
//   gates          [T, B, H]  forward: in x W_ih^T (the host's GEMM), out h_t
//   recurrentInput [T, B, H]  h~_{t-1} = h_{t-1} * m, the operand of W_hh at step t
//   W_hh           [H, H]
//   b_ih, b_hh     [H]
//   h0, h, dh      [B, H]
//   mask m         [B, H]     read only when hasMask
//   lengths        int [B]    read only when hasLengths
//   output view    row (t, b) at outputOffset + (t * B + b) * outputStride, H floats
//   dG             [T, B, H]  backward: dL/d(pre-activation)
//   hiddenGradients [T, B, H] backward, optional: dL/dh_t, the total gradient reaching each state
//
// One work-item per (b, j, d), for unit j of direction d, in RECUR_TILE_H x RECUR_TILE_B x 1
// groups, or in the resident split's groups (see common.cl). A kernel runs stepCount scan steps
// from firstStep (one per launch on an in-order queue, or all of a scan in one persistent launch:
// "Scans" in common.cl) of one scan, or of the two scans of a bidirectional layer together. For
// scan step s, `time` is its time index (from the direction's `reverse` flag), `nextTime` the time
// index of scan step s + 1, the step after it (forward) or the step processed before it
// (backward); -1 where there is none. h0 (hInitial) is read at scan step 0.
//
// Every operand but the sizes, the relu flag and the lengths comes once per direction, as name0
// and name1, and each kernel first picks its direction's (RECUR_PICK, common.cl). The running
// state h is passed as hState and the running gradient dh as dhState, so that the direction's
// digit never reads as a time index.
//
// A padded step (recur_is_valid false) carries the state through, writes 0 to the output and a
// zero gate row, and passes the gradient through unchanged.

// Forward step t, for unit j of sequence b:
//   a = x_t W_ih^T [b, j] + b_ih[j] + b_hh[j] + sum_k h~[b, k] W_hh[j, k]
//   h_t = act(a), act = tanh, or max(a, 0) when relu
//   gates[t, b, j] = output[t, b, j] = h[b, j] = h_t
//   recurrentInput[nextTime, b, j] = h_t * m[b, j]
// hPrevious is h0 at the first step of the scan and h after it (only [b, j] of it is read).
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void rnn_fwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                  const int firstStep, const int stepCount, const int relu,
                  __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                  __global const float* inputBias0, __global const float* inputBias1,
                  __global const float* recurrentBias0, __global const float* recurrentBias1,
                  __global float* gates0, __global float* gates1,
                  __global float* recurrentInput0, __global float* recurrentInput1,
                  __global const float* hInitial0, __global const float* hInitial1,
                  __global float* hState0, __global float* hState1,
                  __global float* output0, const int outputOffset0, const int outputStride0,
                  __global float* output1, const int outputOffset1, const int outputStride1,
                  __global const float* mask0, const int hasMask0, __global const float* mask1, const int hasMask1,
                  __global const int* lengths, const int hasLengths, const int prePadding,
                  volatile __global int* gridSync, const int spinLimit) {
    RECUR_FWD_LOCALS(1);
    __local int gridVerdict;
    const int reverse = RECUR_PICK(reverse);
    __global const float* recurrentWeights = RECUR_PICK(recurrentWeights);
    __global const float* inputBias = RECUR_PICK(inputBias);
    __global const float* recurrentBias = RECUR_PICK(recurrentBias);
    __global float* gates = RECUR_PICK(gates);
    __global float* recurrentInput = RECUR_PICK(recurrentInput);
    __global const float* hInitial = RECUR_PICK(hInitial);
    __global float* h = RECUR_PICK(hState);
    RECUR_PICK_OUTPUT_VIEW;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_FWD_WEIGHTS(recurrentWeights, 1);
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep + k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        __global const float* hPrevious = s == 0 ? hInitial : h;
        float product[1] = {0.0f};
        RECUR_FWD_PRODUCTS(recurrentInput + time * batch * hidden, recurrentWeights, 1, product);
        if (j < hidden && b < batch) {
            const int unit = b * hidden + j;
            const int row = time * batch + b;
            const bool valid = recur_is_valid(lengths, hasLengths, prePadding, steps, b, time);
            float state = hPrevious[unit];
            if (valid) {
                const float a = gates[row * hidden + j] + inputBias[j] + recurrentBias[j] + product[0];
                state = relu ? (a < 0.0f ? 0.0f : a) : tanh(a);
                gates[row * hidden + j] = state;
            } else {
                gates[row * hidden + j] = 0.0f;
            }
            h[unit] = state;
            output[outputOffset + row * outputStride + j] = valid ? state : 0.0f;
            if (nextTime >= 0) {
                recurrentInput[nextTime * batch * hidden + unit] = hasMask ? state * mask[unit] : state;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}

// Backward step t (differentiates rnn_fwd_step), for unit j of sequence b:
//   dh~ = sum_k dG[nextTime, b, k] W_hh[k, j]            (differentiates h~ W_hh^T of step nextTime)
//   dh_t = dh[b, j] + dh~ * m[b, j] + dy[t, b, j]         (dy only at valid steps, when given)
//   hiddenGradients[t, b, j] = dh_t, or 0 when padded   (only when hasHiddenGradients)
//   valid:  dG[t, b, j] = dh_t * act'(h_t), from h_t kept in gates; dh[b, j] = 0 (h_{t-1} reaches
//           h_t only through h~)
//   padded: dG[t, b, j] = 0; dh[b, j] = dh_t (h_t = h_{t-1})
// dh starts as dL/dh_n. After the first step of the scan the host launches this kernel once more
// with time = -1 and nextTime = that step: every item is then padded, and dh ends as dL/dh0.
// Overwrites dG row t and dh.
__kernel __attribute__((RECUR_STEP_GROUP_SIZE))
void rnn_bwd_step(const int batch, const int hidden, const int steps, const int reverse0, const int reverse1,
                  const int firstStep, const int stepCount, const int relu,
                  __global const float* recurrentWeights0, __global const float* recurrentWeights1,
                  __global const float* gates0, __global const float* gates1,
                  __global float* gateGradients0, __global float* gateGradients1,
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
    __global float* gateGradients = RECUR_PICK(gateGradients);
    __global float* dh = RECUR_PICK(dhState);
    RECUR_PICK_UPSTREAM_GRADIENTS;
    RECUR_PICK_DROPOUT_MASK;
    RECUR_STEP_UNIT(j, b);
    RECUR_BWD_WEIGHTS(recurrentWeights);
    for (int k = 0; k < stepCount; ++k) {
        const int s = firstStep - k;
        const int time = recur_scan_time(s, steps, reverse);
        const int nextTime = recur_scan_time(s + 1, steps, reverse);
        float through = 0.0f;
        if (nextTime >= 0) {
            through = RECUR_BWD_PRODUCT(gateGradients + nextTime * batch * hidden, hidden, recurrentWeights);
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
                const float y = gates[row * hidden + j];
                const float derivative = relu ? (y > 0.0f ? 1.0f : 0.0f) : 1.0f - y * y;
                gateGradients[row * hidden + j] = total * derivative;
                dh[unit] = 0.0f;
            } else {
                if (time >= 0) gateGradients[row * hidden + j] = 0.0f;
                dh[unit] = total;
            }
        }
        if (k + 1 < stepCount && !recur_grid_barrier(gridSync, spinLimit, &gridVerdict)) return;
    }
}
