// Fused losses: each kernel computes its elements' loss terms and the gradient of the mean loss
// in one pass over the data; a final kernel adds the terms into one slot of the loss tensor.
// Built with common.cl prepended. The CPU reference is CPUBackend+Training.swift.
//
// Shape legend: x, y, gradient [N] for the elementwise losses; logits and gradient [N, C] and
// targets [N] (int32 class ids) for softmax cross-entropy.
//
// Every sum runs in a fixed order for a given device and size (no atomics), so results are
// deterministic run to run.

#ifndef REDUCE_GROUP_SIZE
#define REDUCE_GROUP_SIZE 256  // work-items per group in the tree reductions; a power of two
#endif

// Sums partial[0 ..< REDUCE_GROUP_SIZE] into partial[0] by halving. Every work-item of the
// group must call it.
void loss_sum_group(__local float* partial) {
    const int lid = get_local_id(0);
    for (int stride = REDUCE_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

// Like loss_sum_group, with max in place of +.
void loss_max_group(__local float* partial) {
    const int lid = get_local_id(0);
    for (int stride = REDUCE_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) {
            partial[lid] = fmax(partial[lid], partial[lid + stride]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

// ---- Elementwise losses, stage 1: a grid-stride loop (element i = g * G + j + m * groups * G
// for work-item j of group g, m = 0, 1, ...) writes each gradient element and
// partials[g] = inverseCount * (sum of the group's loss terms). ----

// Sigmoid binary cross-entropy on logits, mean over N = 1 / inverseCount elements:
//   term[i]     = max(x, 0) - x y + log(1 + e^-|x|)      (= -y log s - (1 - y) log(1 - s), s = sigma(x))
//   gradient[i] = (sigma(x) - y) / N
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void sigmoid_cross_entropy_partial(__global const float* x, __global const float* y, __global float* gradient,
                                   const int n, const float inverseCount, __global float* partials) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int lid = get_local_id(0);
    const size_t stride = (size_t)get_num_groups(0) * REDUCE_GROUP_SIZE;
    float total = 0.0f;
    for (size_t i = (size_t)get_group_id(0) * REDUCE_GROUP_SIZE + lid; i < (size_t)n; i += stride) {
        const float logit = x[i];
        const float target = y[i];
        total += fmax(logit, 0.0f) - logit * target + log1p(exp(-fabs(logit)));
        gradient[i] = (recur_sigmoid(logit) - target) * inverseCount;
    }
    partial[lid] = total;
    loss_sum_group(partial);
    if (lid == 0) {
        partials[get_group_id(0)] = partial[0] * inverseCount;
    }
}

// Sigmoid binary cross-entropy weighted per element, w[i] >= 0, over W = totals[0] = sum_i w[i]
// (written by loss_sum_final before this kernel runs):
//   term[i]     = w[i] (max(x, 0) - x y + log(1 + e^-|x|))
//   gradient[i] = w[i] (sigma(x) - y) / W
// and partials[g] = (sum of the group's terms) / W; W = 0 gives zeros.
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void weighted_sigmoid_cross_entropy_partial(__global const float* x, __global const float* y,
                                            __global const float* w, __global float* gradient, const int n,
                                            __global const float* totals, __global float* partials) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int lid = get_local_id(0);
    const size_t stride = (size_t)get_num_groups(0) * REDUCE_GROUP_SIZE;
    const float weightTotal = totals[0];
    const float inverseTotal = weightTotal > 0.0f ? 1.0f / weightTotal : 0.0f;
    float total = 0.0f;
    for (size_t i = (size_t)get_group_id(0) * REDUCE_GROUP_SIZE + lid; i < (size_t)n; i += stride) {
        const float logit = x[i];
        const float target = y[i];
        const float weight = w[i];
        total += weight * (fmax(logit, 0.0f) - logit * target + log1p(exp(-fabs(logit))));
        gradient[i] = (recur_sigmoid(logit) - target) * (weight * inverseTotal);
    }
    partial[lid] = total;
    loss_sum_group(partial);
    if (lid == 0) {
        partials[get_group_id(0)] = partial[0] * inverseTotal;
    }
}

// Mean squared error over N = 1 / inverseCount elements, d = p - y:
//   term[i]     = d^2
//   gradient[i] = 2 d / N
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void mean_squared_error_partial(__global const float* p, __global const float* y, __global float* gradient,
                                const int n, const float inverseCount, __global float* partials) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int lid = get_local_id(0);
    const size_t stride = (size_t)get_num_groups(0) * REDUCE_GROUP_SIZE;
    const float twiceInverseCount = 2.0f * inverseCount;
    float total = 0.0f;
    for (size_t i = (size_t)get_group_id(0) * REDUCE_GROUP_SIZE + lid; i < (size_t)n; i += stride) {
        const float difference = p[i] - y[i];
        total += difference * difference;
        gradient[i] = difference * twiceInverseCount;
    }
    partial[lid] = total;
    loss_sum_group(partial);
    if (lid == 0) {
        partials[get_group_id(0)] = partial[0] * inverseCount;
    }
}

// ---- Softmax cross-entropy: count the kept rows, then one pass over the rows, then the final
// sum. scratch [1 + N]: scratch[0] = M, the number of targets that are not ignored (exact in
// float32: the host allows at most 2^24 rows) or, with weights, their total weight;
// scratch[1 + n] = row n's share of the loss. w_n = weights[n] when hasWeights, else 1. ----

// One group: scratch[0] = M = sum of w_n over the n with targets[n] != ignoreIndex (every n
// without one).
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void softmax_cross_entropy_count(__global const int* targets, const int rows, const int ignoreIndex,
                                 const int hasIgnoreIndex, __global const float* weights, const int hasWeights,
                                 __global float* scratch) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int lid = get_local_id(0);
    float kept = 0.0f;
    for (int n = lid; n < rows; n += REDUCE_GROUP_SIZE) {
        kept += (hasIgnoreIndex && targets[n] == ignoreIndex) ? 0.0f : (hasWeights ? weights[n] : 1.0f);
    }
    partial[lid] = kept;
    loss_sum_group(partial);
    if (lid == 0) {
        scratch[0] = partial[0];
    }
}

// One row n, y = targets[n], m = max_c x[n, c], S = sum_c e^(x[n, c] - m) (every exponent <= 0):
//   scratch[1 + n]  = w_n (log S + m - x[n, y]) / M
//   gradient[n, c]  = w_n (e^(x[n, c] - m) / S - [c == y]) / M
// and 0 for both when y is ignored (or M = 0, which only happens when every row is ignored).
//
// Variant for few classes: one work-item per row, the row's classes in order.
__kernel void softmax_cross_entropy_rows_per_item(__global const float* logits, __global const int* targets,
                                                  __global float* gradient, const int rows, const int classes,
                                                  const int ignoreIndex, const int hasIgnoreIndex,
                                                  __global const float* weights, const int hasWeights,
                                                  __global float* scratch) {
    const int n = get_global_id(0);
    if (n >= rows) return;
    const __global float* x = logits + (size_t)n * classes;  // [C]
    __global float* dx = gradient + (size_t)n * classes;  // [C]
    const int target = targets[n];
    const float kept = scratch[0];
    if ((hasIgnoreIndex && target == ignoreIndex) || kept == 0.0f) {
        for (int c = 0; c < classes; ++c) dx[c] = 0.0f;
        scratch[1 + n] = 0.0f;
        return;
    }
    const float inverseKept = (hasWeights ? weights[n] : 1.0f) * (1.0f / kept);
    float largest = x[0];
    for (int c = 1; c < classes; ++c) largest = fmax(largest, x[c]);
    float sum = 0.0f;
    for (int c = 0; c < classes; ++c) sum += exp(x[c] - largest);
    scratch[1 + n] = (hasWeights ? weights[n] : 1.0f) * (log(sum) + largest - x[target]) * (1.0f / kept);
    const float inverseSum = 1.0f / sum;
    for (int c = 0; c < classes; ++c) {
        const float probability = exp(x[c] - largest) * inverseSum;
        dx[c] = (probability - (c == target ? 1.0f : 0.0f)) * inverseKept;
    }
}

// The same per row, for many classes (a vocabulary): one group per row, work-item j taking
// classes c = j, j + G, j + 2G, ... (G = REDUCE_GROUP_SIZE), with the max and the sum reduced as
// trees in local memory. The launch has exactly one group per row. Every work-item runs every
// barrier (no early return, which some compilers mishandle around barriers): an ignored row is
// reduced too, and writes zeros.
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void softmax_cross_entropy_rows_per_group(__global const float* logits, __global const int* targets,
                                          __global float* gradient, const int rows, const int classes,
                                          const int ignoreIndex, const int hasIgnoreIndex,
                                          __global const float* weights, const int hasWeights,
                                          __global float* scratch) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int n = get_group_id(0);
    const int lid = get_local_id(0);
    const __global float* x = logits + (size_t)n * classes;  // [C]
    __global float* dx = gradient + (size_t)n * classes;  // [C]
    const int target = targets[n];
    const float kept = scratch[0];
    const bool counted = !(hasIgnoreIndex && target == ignoreIndex) && kept > 0.0f;
    const float weight = hasWeights ? weights[n] : 1.0f;
    const float inverseKept = counted ? weight * (1.0f / kept) : 0.0f;

    float largest = -INFINITY;
    for (int c = lid; c < classes; c += REDUCE_GROUP_SIZE) largest = fmax(largest, x[c]);
    partial[lid] = largest;
    loss_max_group(partial);
    largest = partial[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read partial[0] before it is reused

    float sum = 0.0f;
    for (int c = lid; c < classes; c += REDUCE_GROUP_SIZE) sum += exp(x[c] - largest);
    partial[lid] = sum;
    loss_sum_group(partial);
    sum = partial[0];

    if (lid == 0) {
        scratch[1 + n] = counted ? weight * (log(sum) + largest - x[target]) * (1.0f / kept) : 0.0f;
    }
    const float inverseSum = 1.0f / sum;
    for (int c = lid; c < classes; c += REDUCE_GROUP_SIZE) {
        const float probability = exp(x[c] - largest) * inverseSum;
        dx[c] = counted ? (probability - (c == target ? 1.0f : 0.0f)) * inverseKept : 0.0f;
    }
}

// ---- Stage 2 of every loss, one group: out[index] = sum over k < count of terms[offset + k]. ----
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void loss_sum_final(__global const float* terms, const int offset, const int count,
                    __global float* out, const int index) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int lid = get_local_id(0);
    float total = 0.0f;
    for (int k = lid; k < count; k += REDUCE_GROUP_SIZE) {
        total += terms[offset + k];
    }
    partial[lid] = total;
    loss_sum_group(partial);
    if (lid == 0) {
        out[index] = partial[0];
    }
}
