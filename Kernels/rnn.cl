// Simple RNN cell (tanh or ReLU): the step math of the recurrent.cl kernels rnn_fwd_step and
// rnn_bwd_step. Built after common.cl and the generated operand macros, before recurrent.cl.
//
// Shape legend: T time steps, B batch, H hidden units, G = H (one gate).
//   gates          [T, B, H]  forward: in x W_ih^T (the host's GEMM), out h_t
//   b_ih, b_hh     [H]        inputBias, recurrentBias
//   gateGradients  [T, B, H]  backward: dL/d(pre-activation)
// relu: 1 for max(a, 0), 0 for tanh.

#define CELL_NAME rnn
#define CELL_GATES 1
#define CELL_PRODUCTS 1

// Forward step t, for unit j of sequence b (row = t B + b), with state = h_{t-1}:
//   a = x_t W_ih^T [b, j] + b_ih[j] + b_hh[j] + sum_k h~[b, k] W_hh[j, k]     (products[0] the sum)
//   h_t = act(a), act = tanh, or max(a, 0) when relu
//   gates[t, b, j] = h_t (0 when padded; h_t = h_{t-1} then)
float rnn_forward_step(const bool valid, float state, const float* products, const int relu,
                       __global const float* inputBias, __global const float* recurrentBias,
                       __global float* gates, const int hidden, const int row, const int j) {
    if (valid) {
        const float a = gates[row * hidden + j] + inputBias[j] + recurrentBias[j] + products[0];
        state = relu ? (a < 0.0f ? 0.0f : a) : tanh(a);
        gates[row * hidden + j] = state;
    } else {
        gates[row * hidden + j] = 0.0f;
    }
    return state;
}

// Backward step t at a valid step (differentiates rnn_forward_step), from total = dL/dh_t:
//   dG[t, b, j] = dh_t * act'(a), from h_t kept in gates: 1 - h_t^2 (tanh), [h_t > 0] (relu)
// Returns 0: h_{t-1} reaches h_t only through h~, whose gradient the skeleton takes back through
// W_hh at the next backward step.
float rnn_backward_step(const float total, const int relu, __global const float* gates,
                        __global float* gateGradients, const int hidden, const int row, const int j) {
    const float y = gates[row * hidden + j];
    const float derivative = relu ? (y > 0.0f ? 1.0f : 0.0f) : 1.0f - y * y;
    gateGradients[row * hidden + j] = total * derivative;
    return 0.0f;
}

#define CELL_FORWARD_STEP \
    rnn_forward_step(valid, state, products, relu, inputBias, recurrentBias, gates, hidden, row, j)
#define CELL_BACKWARD_STEP rnn_backward_step(total, relu, gates, gateGradients, hidden, row, j)
#define CELL_BACKWARD_PADDED recur_zero_gates(gateGradients + row * hidden + j, 1, hidden)
