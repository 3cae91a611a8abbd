// Reductions: sums along one axis and the sum of squares of a whole tensor.
// Built with common.cl prepended.
//
// Shape legend: a tensor summed along one axis is viewed as x [outer, length, inner], where
// length is the summed axis, outer the product of the axes before it and inner the product of
// those after it; the result is out [outer, inner]. x [n] for the sum of squares.
//
// Every sum runs in a fixed order for a given device and size (no atomics), so results are
// deterministic run to run.

#ifndef REDUCE_GROUP_SIZE
#define REDUCE_GROUP_SIZE 256  // work-items per group in the tree reductions; a power of two
#endif

// Sums partial[0 ..< REDUCE_GROUP_SIZE] into partial[0] by halving: partial[i] += partial[i + s]
// for s = size/2, size/4, ..., 1. Every work-item of the group must call it.
void reduce_group(__local float* partial) {
    const int lid = get_local_id(0);
    for (int stride = REDUCE_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

// out[o, i] = sum over l of x[o, l, i], one work-item per output element, l in order.
// Neighbouring work-items read neighbouring i, so reads coalesce when inner is large.
__kernel void sum_axis_per_item(__global const float* x, __global float* out,
                                const int outer, const int length, const int inner) {
    const int index = get_global_id(0);
    if (index >= outer * inner) return;
    const int o = index / inner;
    const int i = index - o * inner;
    const __global float* column = x + (size_t)o * length * inner + i;
    float total = 0.0f;
    for (int l = 0; l < length; ++l) {
        total += column[(size_t)l * inner];
    }
    out[index] = total;
}

// out[o, i] = sum over l of x[o, l, i], one work-group per output element: work-item j adds
// l = j, j + G, j + 2G, ... (G = REDUCE_GROUP_SIZE), then the group adds its G partial sums as a tree.
// For few outputs with long rows, where one work-item per output would leave the device idle.
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void sum_axis_per_group(__global const float* x, __global float* out,
                        const int outer, const int length, const int inner) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int index = get_group_id(0);
    const int lid = get_local_id(0);
    const int o = index / inner;
    const int i = index - o * inner;
    const __global float* column = x + (size_t)o * length * inner + i;
    float total = 0.0f;
    for (int l = lid; l < length; l += REDUCE_GROUP_SIZE) {
        total += column[(size_t)l * inner];
    }
    partial[lid] = total;
    reduce_group(partial);
    if (lid == 0 && index < outer * inner) {
        out[index] = partial[0];
    }
}

// The sum of squares of up to eight tensors x_0 .. x_7 in two launches (a model's gradients, for
// clipping by the global norm; one tensor for `sumOfSquares`). Tensor s has n_s elements and the
// groups groupEnd_{s-1} ..< groupEnd_s of stage 1 (cumulative counts; groupEnd_{-1} = 0; an unused
// slot repeats the previous end). A tensor's groups and the order its partials are added depend
// only on its own size, so its sum is the same whichever tensors share the launch.

// Stage 1: group g of tensor s (its first group is groupEnd_{s-1}) writes partials[g] = sum of
// x_s[k]^2 over k = (g - first) * G + j + m * (count * G), count = groupEnd_s - first.
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void sums_of_squares_partial(__global const float* x0, __global const float* x1, __global const float* x2,
                             __global const float* x3, __global const float* x4, __global const float* x5,
                             __global const float* x6, __global const float* x7,
                             const int n0, const int n1, const int n2, const int n3,
                             const int n4, const int n5, const int n6, const int n7,
                             const int groupEnd0, const int groupEnd1, const int groupEnd2, const int groupEnd3,
                             const int groupEnd4, const int groupEnd5, const int groupEnd6, const int groupEnd7,
                             __global float* partials) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int g = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float* x = x7;
    int n = n7, first = groupEnd6, end = groupEnd7;
    if (g < groupEnd0) { x = x0; n = n0; first = 0; end = groupEnd0; }
    else if (g < groupEnd1) { x = x1; n = n1; first = groupEnd0; end = groupEnd1; }
    else if (g < groupEnd2) { x = x2; n = n2; first = groupEnd1; end = groupEnd2; }
    else if (g < groupEnd3) { x = x3; n = n3; first = groupEnd2; end = groupEnd3; }
    else if (g < groupEnd4) { x = x4; n = n4; first = groupEnd3; end = groupEnd4; }
    else if (g < groupEnd5) { x = x5; n = n5; first = groupEnd4; end = groupEnd5; }
    else if (g < groupEnd6) { x = x6; n = n6; first = groupEnd5; end = groupEnd6; }
    const size_t stride = (size_t)(end - first) * REDUCE_GROUP_SIZE;
    float total = 0.0f;
    for (size_t k = (size_t)(g - first) * REDUCE_GROUP_SIZE + lid; k < (size_t)n; k += stride) {
        const float value = x[k];
        total += value * value;
    }
    partial[lid] = total;
    reduce_group(partial);
    if (lid == 0) {
        partials[g] = partial[0];
    }
}

// Stage 2, one work-group per tensor s: out[index + s] = sum of partials[groupEnd_{s-1} ..< groupEnd_s].
__kernel __attribute__((reqd_work_group_size(REDUCE_GROUP_SIZE, 1, 1)))
void sums_of_squares_final(__global const float* partials,
                           const int groupEnd0, const int groupEnd1, const int groupEnd2, const int groupEnd3,
                           const int groupEnd4, const int groupEnd5, const int groupEnd6, const int groupEnd7,
                           __global float* out, const int index) {
    __local float partial[REDUCE_GROUP_SIZE];
    const int s = get_group_id(0);
    const int lid = get_local_id(0);
    const int ends[8] = {groupEnd0, groupEnd1, groupEnd2, groupEnd3, groupEnd4, groupEnd5, groupEnd6, groupEnd7};
    const int first = s == 0 ? 0 : ends[s - 1];
    const int count = ends[s] - first;
    float total = 0.0f;
    for (int g = lid; g < count; g += REDUCE_GROUP_SIZE) {
        total += partials[first + g];
    }
    partial[lid] = total;
    reduce_group(partial);
    if (lid == 0) {
        out[index + s] = partial[0];
    }
}
