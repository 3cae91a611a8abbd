// Row-wide helpers of the row scans (recurrent_rows.cl), for cells whose step needs values over
// all H units of a sequence row: statistics (the layer-normalised cells' mean and variance of
// each gate block), or a product of a whole row (a projection). Built after common.cl and the
// generated operand macros, before the cell's file, so that its step functions may call them.
//
// Shape legend: H hidden units, K the length of a reduction.
//
// In a row scan one work-group of RECUR_ROW_GROUP work-items owns one sequence row b of one
// direction for the whole scan. Work-item l owns units j = l, l + RECUR_ROW_GROUP, ... < H
// (RECUR_ROW_UNITS); it alone reads and writes element j of every per-unit row, so a step needs
// a barrier only where a work-item reads another's elements: the row products below, which stage
// the whole operand row through local memory, and the sums, which combine every work-item's part
// in local memory. Every work-item of the group must call each helper (they hold barriers).

#ifndef RECUR_ROW_GROUP
#define RECUR_ROW_GROUP 64  // work-items per row group; a power of two (the sums halve it)
#endif
// Values one recur_row_sums call combines at most: the scratch holds RECUR_ROW_SUMS columns.
#define RECUR_ROW_SUMS 8
// Floats of local memory of a row scan's scratch for sums, and of its operand tile.
#define RECUR_ROW_SCRATCH (RECUR_ROW_SUMS * RECUR_ROW_GROUP)
#define RECUR_ROW_STAGE RECUR_ROW_GROUP

// LN's ε, added to the variance (PyTorch's nn.LayerNorm default; `layerNormEpsilon` on the host).
#define RECUR_LAYER_NORM_EPSILON 1e-5f

// The loop over this work-item's units j of a row of H.
#define RECUR_ROW_UNITS(j, hidden) for (int j = (int)get_local_id(0); j < (hidden); j += RECUR_ROW_GROUP)

// values[c] = the sum over the group's work-items of their values[c], for c < count
// (count <= RECUR_ROW_SUMS), in every work-item. A tree in local memory: the order of the
// additions is fixed, so a sum does not depend on timing.
void recur_row_sums(float* values, const int count, __local float* scratch) {
    const int l = get_local_id(0);
    for (int c = 0; c < count; ++c) scratch[c * RECUR_ROW_GROUP + l] = values[c];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int width = RECUR_ROW_GROUP / 2; width > 0; width /= 2) {
        if (l < width) {
            for (int c = 0; c < count; ++c) {
                scratch[c * RECUR_ROW_GROUP + l] += scratch[c * RECUR_ROW_GROUP + l + width];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int c = 0; c < count; ++c) values[c] = scratch[c * RECUR_ROW_GROUP];
    // The scratch is free again only once every work-item has read the totals.
    barrier(CLK_LOCAL_MEM_FENCE);
}

// LN's statistics of `count` consecutive blocks of H values at v (count <= RECUR_ROW_SUMS):
// mean[q] and scale[q] = 1 / sqrt(var + ε) of block q, var the population variance, in two
// passes (the mean first) as the CPU backend's layerNormStatistics.
void recur_row_statistics(__global const float* v, const int count, const int hidden, __local float* scratch,
                          float* mean, float* scale) {
    for (int q = 0; q < count; ++q) mean[q] = 0.0f;
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < count; ++q) mean[q] += v[q * hidden + j];
    }
    recur_row_sums(mean, count, scratch);
    for (int q = 0; q < count; ++q) {
        mean[q] /= (float)hidden;
        scale[q] = 0.0f;
    }
    RECUR_ROW_UNITS(j, hidden) {
        for (int q = 0; q < count; ++q) {
            const float d = v[q * hidden + j] - mean[q];
            scale[q] += d * d;
        }
    }
    recur_row_sums(scale, count, scratch);
    for (int q = 0; q < count; ++q) scale[q] = 1.0f / sqrt(scale[q] / (float)hidden + RECUR_LAYER_NORM_EPSILON);
}

// Stages a[k0 ..< k0 + width] in tile, width = min(RECUR_ROW_STAGE, K - k0), and returns width:
// one pass of a row product. The first barrier waits until every work-item has finished with the
// tile's previous contents, the second until the new ones are in.
int recur_row_stage(__global const float* a, const int k0, const int reduction, __local float* tile) {
    const int l = get_local_id(0);
    const int width = min(RECUR_ROW_STAGE, reduction - k0);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (l < width) tile[l] = a[k0 + l];
    barrier(CLK_LOCAL_MEM_FENCE);
    return width;
}

// destination[g H + j] = (destination[g H + j] if accumulate, else 0) + sum over k < K of
// a[k] w[(g H + j) K + k], for g < blocks and this work-item's units j: a row's a W^T for
// `blocks` stacked blocks of H weight rows of K (the forward recurrent product h~ W_hh^T, whose
// weight rows are contiguous in k). The row a is staged through local memory RECUR_ROW_STAGE
// elements at a time; a may have been written by other work-items of the group before a barrier.
void recur_row_products(__global const float* a, __global const float* w, const int blocks, const int hidden,
                        const int reduction, const bool accumulate, __global float* destination,
                        __local float* tile) {
    for (int k0 = 0; k0 < reduction; k0 += RECUR_ROW_STAGE) {
        const int width = recur_row_stage(a, k0, reduction, tile);
        RECUR_ROW_UNITS(j, hidden) {
            for (int g = 0; g < blocks; ++g) {
                __global const float* weights = w + (g * hidden + j) * reduction + k0;
                float sum = 0.0f;
                for (int k = 0; k < width; ++k) sum += tile[k] * weights[k];
                __global float* target = destination + g * hidden + j;
                *target = (accumulate || k0 > 0 ? *target : 0.0f) + sum;
            }
        }
    }
}

// destination[j] += m[j] * sum over k < K of a[k] w[k H + j] for this work-item's units j, with
// m = factor, or 1 without (hasFactor 0): a row's a W for the columns j of W [K, H] (the backward
// recurrent product dG W_hh, whose weight columns are contiguous in j), added one staged tile of a
// at a time.
void recur_row_unit_products(__global const float* a, __global const float* w, const int hidden, const int reduction,
                             __global const float* factor, const int hasFactor, __global float* destination,
                             __local float* tile) {
    for (int k0 = 0; k0 < reduction; k0 += RECUR_ROW_STAGE) {
        const int width = recur_row_stage(a, k0, reduction, tile);
        RECUR_ROW_UNITS(j, hidden) {
            float sum = 0.0f;
            for (int k = 0; k < width; ++k) sum += tile[k] * w[(k0 + k) * hidden + j];
            destination[j] += hasFactor ? factor[j] * sum : sum;
        }
    }
}
