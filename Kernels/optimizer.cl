// Parameter updates: one fused kernel per optimizer step, plus the clipping and constraint ops
// that rewrite gradients or weights in place. Built with common.cl prepended.
//
// Each step follows PyTorch's single-tensor implementation (torch/optim/*.py) and the CPU
// reference (CPUBackend+Training.swift) line by line; the formulas are on SGDUpdate, AdamUpdate
// and RMSPropUpdate in Backend/TrainingOps.swift. Scalars that depend on the step count (Adam's
// bias corrections) are computed on the host in float64 and passed in.
//
// Shape legend: p (parameter), g (gradient) and every state tensor are flat [N]; one work-item per
// element, guarded against the rounded-up global size. For the row-norm constraint x is
// [rows, rowLength], one work-item per row.
//
// No tunables: these kernels are bound by memory bandwidth and the work-group size is chosen by
// the host.

// SGD without momentum:
//   g' = g + weightDecay p
//   p  = p - learningRate g'
__kernel void sgd_step(__global float* p, __global const float* g, const int n,
                       const float learningRate, const float weightDecay) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float gradient = g[i] + weightDecay * p[i];
    p[i] -= learningRate * gradient;
}

// SGD with momentum (PyTorch's form; Nesterov as PyTorch defines it):
//   g'     = g + weightDecay p
//   buffer = g'                                          on the first step
//   buffer = momentum buffer + (1 - dampening) g'        after it
//   g'     = nesterov ? g' + momentum buffer : buffer
//   p      = p - learningRate g'
__kernel void sgd_momentum_step(__global float* p, __global const float* g, __global float* buffer, const int n,
                                const float learningRate, const float momentum, const float dampening,
                                const float weightDecay, const int nesterov, const int isFirstStep) {
    const int i = get_global_id(0);
    if (i >= n) return;
    float gradient = g[i] + weightDecay * p[i];
    const float velocity = isFirstStep ? gradient : momentum * buffer[i] + (1.0f - dampening) * gradient;
    buffer[i] = velocity;
    gradient = nesterov ? gradient + momentum * velocity : velocity;
    p[i] -= learningRate * gradient;
}

// Adam and AdamW (decayFactor = 1 - learningRate weightDecay for AdamW, else 1; l2 = weightDecay
// for Adam, else 0; stepSize = learningRate / (1 - beta1^t); correction = sqrt(1 - beta2^t)):
//   p  = p decayFactor
//   g' = g + l2 p
//   m  = beta1 m + (1 - beta1) g'
//   v  = beta2 v + (1 - beta2) g'^2
//   p  = p - stepSize m / (sqrt(v) / correction + epsilon)
inline void adam_element(__global float* p, __global const float* g, __global float* m, __global float* v,
                         const int i, const float decayFactor, const float l2, const float beta1,
                         const float beta2, const float stepSize, const float correction, const float epsilon) {
    const float parameter = p[i] * decayFactor;
    const float gradient = g[i] + l2 * parameter;
    const float first = beta1 * m[i] + (1.0f - beta1) * gradient;
    const float second = beta2 * v[i] + (1.0f - beta2) * gradient * gradient;
    m[i] = first;
    v[i] = second;
    const float denominator = sqrt(second) / correction + epsilon;
    p[i] = parameter - stepSize * (first / denominator);
}

__kernel void adam_step(__global float* p, __global const float* g, __global float* m, __global float* v,
                        const int n, const float decayFactor, const float l2, const float beta1,
                        const float beta2, const float stepSize, const float correction, const float epsilon) {
    const int i = get_global_id(0);
    if (i >= n) return;
    adam_element(p, g, m, v, i, decayFactor, l2, beta1, beta2, stepSize, correction, epsilon);
}

// The same update for up to eight parameters in one launch (one optimizer step over a model costs
// one launch instead of one per parameter). Slot s holds parameter s's p, g, m and v, the
// cumulative element count end_s, and its own stepSize_s and correction_s (a parameter's step
// count may differ from another's); decayFactor, l2, beta1, beta2 and epsilon are shared.
// Work-item i updates element i - end_{s-1} of the first slot s with i < end_s; an unused slot
// repeats the previous end, so no work-item reaches it.
#define ADAM_SLOT(s) __global float* p##s, __global const float* g##s, __global float* m##s, \
    __global float* v##s, const int end##s, const float stepSize##s, const float correction##s
#define ADAM_IN_SLOT(s, start) \
    if (i < end##s) { \
        adam_element(p##s, g##s, m##s, v##s, i - (start), decayFactor, l2, beta1, beta2, stepSize##s, \
                     correction##s, epsilon); \
        return; \
    }
__kernel void adam_steps(ADAM_SLOT(0), ADAM_SLOT(1), ADAM_SLOT(2), ADAM_SLOT(3), ADAM_SLOT(4), ADAM_SLOT(5),
                         ADAM_SLOT(6), ADAM_SLOT(7), const float decayFactor, const float l2, const float beta1,
                         const float beta2, const float epsilon) {
    const int i = get_global_id(0);
    ADAM_IN_SLOT(0, 0)
    ADAM_IN_SLOT(1, end0)
    ADAM_IN_SLOT(2, end1)
    ADAM_IN_SLOT(3, end2)
    ADAM_IN_SLOT(4, end3)
    ADAM_IN_SLOT(5, end4)
    ADAM_IN_SLOT(6, end5)
    ADAM_IN_SLOT(7, end6)
}
#undef ADAM_IN_SLOT
#undef ADAM_SLOT

// Adam and AdamW with an embedding's per-occurrence squares S (Keras on TensorFlow) in place of
// g^2; no L2 term (l2 = 0, refused by the host):
//   p  = p decayFactor
//   m  = beta1 m + (1 - beta1) g
//   v  = beta2 v + (1 - beta2) S
//   p  = p - stepSize m / (sqrt(v) / correction + epsilon)
__kernel void adam_squares_step(__global float* p, __global const float* g, __global const float* squares,
                                __global float* m, __global float* v, const int n, const float decayFactor,
                                const float beta1, const float beta2, const float stepSize,
                                const float correction, const float epsilon) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float parameter = p[i] * decayFactor;
    const float gradient = g[i];
    const float first = beta1 * m[i] + (1.0f - beta1) * gradient;
    const float second = beta2 * v[i] + (1.0f - beta2) * squares[i];
    m[i] = first;
    v[i] = second;
    const float denominator = sqrt(second) / correction + epsilon;
    p[i] = parameter - stepSize * (first / denominator);
}

// RMSProp without momentum:
//   g' = g + weightDecay p
//   s  = alpha s + (1 - alpha) g'^2
//   p  = p - learningRate g' / (sqrt(s) + epsilon)
__kernel void rmsprop_step(__global float* p, __global const float* g, __global float* s, const int n,
                           const float learningRate, const float alpha, const float epsilon,
                           const float weightDecay) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float gradient = g[i] + weightDecay * p[i];
    const float square = alpha * s[i] + (1.0f - alpha) * gradient * gradient;
    s[i] = square;
    const float average = sqrt(square) + epsilon;
    p[i] -= learningRate * (gradient / average);
}

// RMSProp with momentum:
//   g'     = g + weightDecay p
//   s      = alpha s + (1 - alpha) g'^2
//   buffer = momentum buffer + g' / (sqrt(s) + epsilon)
//   p      = p - learningRate buffer
__kernel void rmsprop_momentum_step(__global float* p, __global const float* g, __global float* s,
                                    __global float* buffer, const int n, const float learningRate,
                                    const float alpha, const float epsilon, const float weightDecay,
                                    const float momentum) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float gradient = g[i] + weightDecay * p[i];
    const float square = alpha * s[i] + (1.0f - alpha) * gradient * gradient;
    s[i] = square;
    const float average = sqrt(square) + epsilon;
    const float velocity = momentum * buffer[i] + gradient / average;
    buffer[i] = velocity;
    p[i] -= learningRate * velocity;
}

// RMSProp with an embedding's per-occurrence squares S in place of g'^2 (weight decay 0, refused
// by the host otherwise), without and with momentum:
//   s      = alpha s + (1 - alpha) S
//   p      = p - learningRate g / (sqrt(s) + epsilon)                     (no momentum)
//   buffer = momentum buffer + g / (sqrt(s) + epsilon);  p = p - learningRate buffer
__kernel void rmsprop_squares_step(__global float* p, __global const float* g, __global const float* squares,
                                   __global float* s, const int n, const float learningRate, const float alpha,
                                   const float epsilon) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float square = alpha * s[i] + (1.0f - alpha) * squares[i];
    s[i] = square;
    const float average = sqrt(square) + epsilon;
    p[i] -= learningRate * (g[i] / average);
}

__kernel void rmsprop_momentum_squares_step(__global float* p, __global const float* g,
                                            __global const float* squares, __global float* s,
                                            __global float* buffer, const int n, const float learningRate,
                                            const float alpha, const float epsilon, const float momentum) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float square = alpha * s[i] + (1.0f - alpha) * squares[i];
    s[i] = square;
    const float average = sqrt(square) + epsilon;
    const float velocity = momentum * buffer[i] + g[i] / average;
    buffer[i] = velocity;
    p[i] -= learningRate * velocity;
}

// x[i] = minimum if x[i] < minimum, maximum if x[i] > maximum, else x[i]. Comparisons rather than
// clamp(), whose result for NaN is undefined: NaN passes through, as in PyTorch.
__kernel void clamp_values(__global float* x, const int n, const float minimum, const float maximum) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const float value = x[i];
    if (value < minimum) {
        x[i] = minimum;
    } else if (value > maximum) {
        x[i] = maximum;
    }
}

// Keras's MaxNorm on row r of x [rows, rowLength]: with norm = ||x[r, :]||,
//   x[r, :] *= min(norm, maxNorm) / (norm + 1e-7)
__kernel void constrain_row_norms(__global float* x, const int rows, const int rowLength, const float maxNorm) {
    const int r = get_global_id(0);
    if (r >= rows) return;
    __global float* row = x + (size_t)r * rowLength;  // [rowLength]
    float sumOfSquares = 0.0f;
    for (int j = 0; j < rowLength; ++j) sumOfSquares += row[j] * row[j];
    const float norm = sqrt(sumOfSquares);
    const float scale = fmin(norm, maxNorm) / (norm + 1e-7f);
    for (int j = 0; j < rowLength; ++j) row[j] *= scale;
}
