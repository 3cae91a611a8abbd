// Helpers shared by every kernel family. The backend prepends this file to each family's source
// before building it, so a family file may use everything defined here.
//
// OpenCL C 1.2; no extensions.

#ifndef RECUR_COMMON_CL
#define RECUR_COMMON_CL

// sigma(x) = 1 / (1 + e^-x). For x < 0 it is evaluated as e^x / (1 + e^x), so exp never
// overflows and the result stays accurate near 0 (the CPU backend's CPUMath.sigmoid does the same).
float recur_sigmoid(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + exp(-x));
    }
    const float e = exp(x);
    return e / (1.0f + e);
}

// ---- Recurrent steps (recurrent.cl, instantiated for each cell file) ----
//
// Shape legend: T time steps, B batch, H hidden units, G = gates * H, K the length of a
// reduction. A step kernel runs over a [H, B, D] grid: dimension 0 is the hidden unit j, dimension
// 1 the sequence b, dimension 2 the direction d (D = 2 or 1), in work-groups of
// RECUR_TILE_H x RECUR_TILE_B x 1 work-items. The grid is rounded up to whole groups; work-items
// outside [H, B] take part in the tile loads and barriers, then write nothing.
//
// The direction dimension lets one launch run a time step of both directions of a bidirectional
// layer: the forward scan at time t and the reverse scan at time T-1-t, which do not depend on
// each other. The scan then costs T launches instead of 2T, and each launch has twice the
// work-items, which a small batch needs to fill a GPU. Every operand that differs between the
// directions comes twice, `name0` for d = 0 and `name1` for d = 1, and the kernel works on
// RECUR_PICK(name); the directions write disjoint buffers (the host checks it), so the two halves
// of the grid never touch each other's data. A single scan launches the same kernels with D = 1,
// its operands passed in both slots.
//
// The recurrent matmul of a step is fused into its kernel: the group stages a RECUR_TILE_K-wide
// slice of its RECUR_TILE_B rows of the left operand and of the weight rows of its RECUR_TILE_H
// units in local memory, so each weight is read from global memory once per group instead of
// once per sequence.

#ifndef RECUR_TILE_H
#define RECUR_TILE_H 32  // work-items per group along the hidden units (dimension 0)
#endif
#ifndef RECUR_TILE_B
#define RECUR_TILE_B 8  // work-items per group along the batch (dimension 1)
#endif
#ifndef RECUR_TILE_K
#define RECUR_TILE_K 16  // reduction elements staged in local memory per pass
#endif

// The value of per-direction operand `name` for this work-item's direction: name0 or name1.
// Uniform within a group, so it costs no divergence.
#define RECUR_PICK(name) (get_group_id(2) == 0 ? name##0 : name##1)

// Zeroes `count` gate blocks of one unit's gate row (a padded step's): gate[g H] for g < count.
void recur_zero_gates(__global float* gate, const int count, const int hidden) {
    for (int g = 0; g < count; ++g) gate[g * hidden] = 0.0f;
}

// ---- Scans: one launch per step, or every step in one persistent launch ----
//
// The step kernels of recurrent.cl run scan steps firstStep,
// firstStep + 1, ... (forward) or firstStep, firstStep - 1, ... (backward), stepCount of them, and
// work out each step's time index from the scan step s and the direction's `reverse` flag. The host
// either launches them once per step (stepCount = 1: the in-order queue orders the steps), or, on a
// device where every work-group of the grid is resident at once, launches them once for the whole
// scan (Diamos et al., "Persistent RNNs", 2016): the groups then wait for each other at a grid-wide
// barrier between steps, and a step costs a barrier (about a microsecond on a GPU) instead of a
// kernel launch (several). A group keeps its units and rows for the whole scan, so each work-item
// still reads and writes only its own element of the running state.
//
// The barrier needs every group of the grid running at the same time. Nothing in OpenCL 1.2
// promises that, so the host uses it only after a probe on the device (recur_grid_probe in
// persistent.cl) and with a grid of at most one group per compute unit, and the wait is bounded:
// a group that spins spinLimit times without seeing the others sets the abort flag, every group
// then leaves the kernel, and the host runs the scan again one launch per step. PoCL runs the
// groups of a launch on a fixed set of threads and would deadlock on a grid larger than that.

// The time index of scan step s of a scan over `steps` steps, or -1 outside the scan.
int recur_scan_time(const int s, const int steps, const int reverse) {
    if (s < 0 || s >= steps) return -1;
    return reverse ? steps - 1 - s : s;
}

// gridSync[0]: groups arrived at the current barrier; gridSync[1]: barriers completed (the
// generation); gridSync[2]: the abort flag. The host zeroes all three before a persistent launch.
//
// Returns true once every group of the grid has arrived, with every group's global memory writes
// made before the barrier visible to all; false if the wait timed out here or in another group (the
// caller then returns from the kernel). Every work-item of every group must call it. The last
// group to arrive resets the count and then advances the generation, which releases the others;
// a waiting group compares the generation with the one it read before arriving, so it cannot miss
// a release.
bool recur_grid_barrier(volatile __global int* gridSync, const int spinLimit, __local int* verdict) {
    const int groups = (int)(get_num_groups(0) * get_num_groups(1) * get_num_groups(2));
    mem_fence(CLK_GLOBAL_MEM_FENCE);
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    // A grid of one group: the work-group barrier above already orders its global memory.
    if (groups == 1) return true;
    if (get_local_id(0) == 0 && get_local_id(1) == 0 && get_local_id(2) == 0) {
        int passed = atomic_add(&gridSync[2], 0) == 0;
        if (passed) {
            const int generation = atomic_add(&gridSync[1], 0);
            mem_fence(CLK_GLOBAL_MEM_FENCE);
            if (atomic_inc(&gridSync[0]) == groups - 1) {
                atomic_xchg(&gridSync[0], 0);
                mem_fence(CLK_GLOBAL_MEM_FENCE);
                atomic_inc(&gridSync[1]);
            } else {
                int spins = 0;
                while (atomic_add(&gridSync[1], 0) == generation) {
                    if (atomic_add(&gridSync[2], 0) != 0) {
                        passed = 0;
                        break;
                    }
                    if (++spins >= spinLimit) {
                        atomic_xchg(&gridSync[2], 1);
                        passed = 0;
                        break;
                    }
                }
            }
            mem_fence(CLK_GLOBAL_MEM_FENCE);
        }
        *verdict = passed;
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    return *verdict != 0;
}

#define RECUR_GROUP_SIZE (RECUR_TILE_H * RECUR_TILE_B)
// Floats of local memory per gate for the weight tile of recur_gate_products; the extra column
// keeps the work-items of one row of the group on different local memory banks.
#define RECUR_GATE_TILE (RECUR_TILE_H * (RECUR_TILE_K + 1))
// Floats of local memory for the weight tile of recur_unit_product.
#define RECUR_UNIT_TILE (RECUR_TILE_K * RECUR_TILE_H)
// Floats of local memory for the left-operand tile of both.
#define RECUR_ROW_TILE (RECUR_TILE_B * RECUR_TILE_K)

// Whether time step t of sequence b is inside its valid range: 0 <= t < T and, with lengths,
// t < length (post padding) or t >= T - length (pre padding). A length is clamped to [0, T]
// first, so no value can lead a kernel outside its buffers.
bool recur_is_valid(__global const int* lengths, const int hasLengths, const int prePadding,
                    const int steps, const int b, const int t) {
    if (t < 0 || t >= steps) return false;
    if (!hasLengths) return true;
    const int length = clamp(lengths[b], 0, steps);
    return prePadding ? t >= steps - length : t < length;
}

// products[g] += sum over k < K of a[b, k] * w[(g * H + j) * K + k], for g < gates: the step's
// a W^T for the rows g * H + j of `gates` stacked blocks of H rows of K (a: rows lda apart).
// For the forward recurrent matmul h~ W_hh^T, whose weight rows are contiguous in k.
// Every work-item of the group must call it; aTile holds RECUR_ROW_TILE floats and wTile
// gates * RECUR_GATE_TILE.
void recur_gate_products(__global const float* a, const int lda, __global const float* w,
                         const int gates, const int hidden, const int reduction, const int batch,
                         __local float* aTile, __local float* wTile, float* products) {
    const int lj = get_local_id(0);
    const int lb = get_local_id(1);
    const int lid = lb * RECUR_TILE_H + lj;
    const int j0 = get_group_id(0) * RECUR_TILE_H;
    const int b0 = get_group_id(1) * RECUR_TILE_B;
    for (int k0 = 0; k0 < reduction; k0 += RECUR_TILE_K) {
        for (int e = lid; e < RECUR_ROW_TILE; e += RECUR_GROUP_SIZE) {
            const int tb = e / RECUR_TILE_K;
            const int tk = e - tb * RECUR_TILE_K;
            const int row = b0 + tb;
            const int k = k0 + tk;
            aTile[e] = (row < batch && k < reduction) ? a[row * lda + k] : 0.0f;
        }
        // Consecutive work-items read consecutive k of one weight row.
        for (int e = lid; e < gates * RECUR_TILE_H * RECUR_TILE_K; e += RECUR_GROUP_SIZE) {
            const int rowIndex = e / RECUR_TILE_K;
            const int tk = e - rowIndex * RECUR_TILE_K;
            const int g = rowIndex / RECUR_TILE_H;
            const int tj = rowIndex - g * RECUR_TILE_H;
            const int unit = j0 + tj;
            const int k = k0 + tk;
            wTile[g * RECUR_GATE_TILE + tj * (RECUR_TILE_K + 1) + tk] =
                (unit < hidden && k < reduction) ? w[(g * hidden + unit) * reduction + k] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int tk = 0; tk < RECUR_TILE_K; ++tk) {
            const float value = aTile[lb * RECUR_TILE_K + tk];
            for (int g = 0; g < gates; ++g) {
                products[g] += value * wTile[g * RECUR_GATE_TILE + lj * (RECUR_TILE_K + 1) + tk];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// Returns sum over k < K of a[b, k] * w[k * H + j] (a: rows lda apart; w: K rows of H): one
// element of a W for the step's unit j, the backward recurrent matmul dG W_hh, whose weight
// columns are contiguous in j. Every work-item of the group must call it; aTile holds
// RECUR_ROW_TILE floats and wTile RECUR_UNIT_TILE.
float recur_unit_product(__global const float* a, const int lda, __global const float* w,
                         const int hidden, const int reduction, const int batch,
                         __local float* aTile, __local float* wTile) {
    const int lj = get_local_id(0);
    const int lb = get_local_id(1);
    const int lid = lb * RECUR_TILE_H + lj;
    const int j0 = get_group_id(0) * RECUR_TILE_H;
    const int b0 = get_group_id(1) * RECUR_TILE_B;
    float total = 0.0f;
    for (int k0 = 0; k0 < reduction; k0 += RECUR_TILE_K) {
        for (int e = lid; e < RECUR_ROW_TILE; e += RECUR_GROUP_SIZE) {
            const int tb = e / RECUR_TILE_K;
            const int tk = e - tb * RECUR_TILE_K;
            const int row = b0 + tb;
            const int k = k0 + tk;
            aTile[e] = (row < batch && k < reduction) ? a[row * lda + k] : 0.0f;
        }
        // Consecutive work-items read consecutive units j of one weight row.
        for (int e = lid; e < RECUR_UNIT_TILE; e += RECUR_GROUP_SIZE) {
            const int tk = e / RECUR_TILE_H;
            const int tj = e - tk * RECUR_TILE_H;
            const int unit = j0 + tj;
            const int k = k0 + tk;
            wTile[e] = (unit < hidden && k < reduction) ? w[k * hidden + unit] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int tk = 0; tk < RECUR_TILE_K; ++tk) {
            total += aTile[lb * RECUR_TILE_K + tk] * wTile[tk * RECUR_TILE_H + lj];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return total;
}

// ---- Resident weights (persistent scans with a small batch) ----
//
// With B <= 8 the tiled step kernels above leave most of a GPU idle: a group streams its weight
// tile through local memory RECUR_TILE_K columns at a time, one barrier-separated pass after
// another, for only B rows of work. The program built with RECUR_RESIDENT (sizes below as build
// options, chosen by the host for one H and B) runs the same step kernels with another split, after
// Diamos et al.: each group owns RECUR_RES_UNITS hidden units, and each of its RECUR_RES_GROUP
// work-items keeps a fixed slice of the recurrent weights those units need in registers for the
// whole persistent scan, so a step reads no weights at all. A step then stages the B rows of its
// left operand, has every work-item dot its slice with every row, sums the slices in local memory,
// and leaves the cell math to U x B work-items, one per (unit, sequence).
//
//   forward, a W^T for rows g H + j of W [G, H]:  work-item (r, sl), r = g U + u < G U rows,
//     sl < S = GROUP / (G U) slices, holds W[g H + j0 + u, sl + S i] for i < L = ceil(H / S)
//   backward, a W for columns j of W [K, H]:      work-item (u, sl), sl < S = GROUP / U slices,
//     holds W[sl + S i, j0 + u] for i < L = ceil(K / S)
// Consecutive work-items take consecutive slices, so they read consecutive k of the operand.
// Weights outside the matrix are held as 0. The sizes are compile-time constants so that the
// slice is a register array; the host keeps L within a register budget, and the kernels work
// (slower) one launch per step too.

#ifdef RECUR_RESIDENT
#define RECUR_RES_FWD_ROWS (RECUR_RES_GATES * RECUR_RES_UNITS)
#define RECUR_RES_FWD_SLICES (RECUR_RES_GROUP / RECUR_RES_FWD_ROWS)
#define RECUR_RES_FWD_LENGTH ((RECUR_RES_HIDDEN + RECUR_RES_FWD_SLICES - 1) / RECUR_RES_FWD_SLICES)
// H rounded up to whole slices: the row stride of the staged operand, whose padding holds 0.
#define RECUR_RES_PADDED_HIDDEN (RECUR_RES_FWD_SLICES * RECUR_RES_FWD_LENGTH)
#define RECUR_RES_BWD_SLICES (RECUR_RES_GROUP / RECUR_RES_UNITS)
#define RECUR_RES_BWD_LENGTH \
    ((RECUR_RES_GATES * RECUR_RES_HIDDEN + RECUR_RES_BWD_SLICES - 1) / RECUR_RES_BWD_SLICES)

// This work-item's (unit j, sequence b) of the cell math, or j = H (none) beyond the first U B.
void recur_resident_unit(int* j, int* b) {
    const int t = get_local_id(0);
    const int u = t / RECUR_RES_BATCH;
    *j = u < RECUR_RES_UNITS ? get_group_id(0) * RECUR_RES_UNITS + u : RECUR_RES_HIDDEN;
    *b = t - u * RECUR_RES_BATCH;
}

// Loads the forward slice: resident[i] = W[g H + j0 + u, sl + S i] (see above), W [gates H, H].
void recur_resident_load_rows(__global const float* w, float* resident) {
    const int t = get_local_id(0);
    const int r = t / RECUR_RES_FWD_SLICES;
    const int sl = t - r * RECUR_RES_FWD_SLICES;
    const int g = r / RECUR_RES_UNITS;
    const int unit = get_group_id(0) * RECUR_RES_UNITS + (r - g * RECUR_RES_UNITS);
    const bool row = r < RECUR_RES_FWD_ROWS && unit < RECUR_RES_HIDDEN;
    #pragma unroll
    for (int i = 0; i < RECUR_RES_FWD_LENGTH; ++i) {
        const int k = sl + RECUR_RES_FWD_SLICES * i;
        resident[i] = row && k < RECUR_RES_HIDDEN ? w[(g * RECUR_RES_HIDDEN + unit) * RECUR_RES_HIDDEN + k] : 0.0f;
    }
}

// products[g] = sum over k < H of a[b, k] * W[g H + j, k] for this work-item's (j, b) from
// recur_resident_unit (a: B rows of H, contiguous). Every work-item of the group must call it.
// operand holds B x RECUR_RES_PADDED_HIDDEN floats, partial RECUR_RES_FWD_ROWS x B x S.
void recur_resident_gate_products(__global const float* a, const float* resident, __local float* operand,
                                  __local float* partial, float* products) {
    const int t = get_local_id(0);
    for (int e = t; e < RECUR_RES_BATCH * RECUR_RES_PADDED_HIDDEN; e += RECUR_RES_GROUP) {
        const int b = e / RECUR_RES_PADDED_HIDDEN;
        const int k = e - b * RECUR_RES_PADDED_HIDDEN;
        operand[e] = k < RECUR_RES_HIDDEN ? a[b * RECUR_RES_HIDDEN + k] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int r = t / RECUR_RES_FWD_SLICES;
    const int sl = t - r * RECUR_RES_FWD_SLICES;
    if (r < RECUR_RES_FWD_ROWS) {
        float sums[RECUR_RES_BATCH];
        #pragma unroll
        for (int b = 0; b < RECUR_RES_BATCH; ++b) sums[b] = 0.0f;
        #pragma unroll
        for (int i = 0; i < RECUR_RES_FWD_LENGTH; ++i) {
            const float w = resident[i];
            #pragma unroll
            for (int b = 0; b < RECUR_RES_BATCH; ++b) {
                sums[b] += w * operand[b * RECUR_RES_PADDED_HIDDEN + sl + RECUR_RES_FWD_SLICES * i];
            }
        }
        #pragma unroll
        for (int b = 0; b < RECUR_RES_BATCH; ++b) {
            partial[(r * RECUR_RES_BATCH + b) * RECUR_RES_FWD_SLICES + sl] = sums[b];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int u = t / RECUR_RES_BATCH;
    if (u < RECUR_RES_UNITS) {
        const int b = t - u * RECUR_RES_BATCH;
        for (int g = 0; g < RECUR_RES_GATES; ++g) {
            float sum = 0.0f;
            for (int q = 0; q < RECUR_RES_FWD_SLICES; ++q) {
                sum += partial[((g * RECUR_RES_UNITS + u) * RECUR_RES_BATCH + b) * RECUR_RES_FWD_SLICES + q];
            }
            products[g] = sum;
        }
    }
}

// Loads the backward slice: resident[i] = W[sl + S i, j0 + u] (see above), W [gates H, H].
void recur_resident_load_columns(__global const float* w, float* resident) {
    const int t = get_local_id(0);
    const int u = t / RECUR_RES_BWD_SLICES;
    const int sl = t - u * RECUR_RES_BWD_SLICES;
    const int unit = get_group_id(0) * RECUR_RES_UNITS + u;
    const bool column = u < RECUR_RES_UNITS && unit < RECUR_RES_HIDDEN;
    #pragma unroll
    for (int i = 0; i < RECUR_RES_BWD_LENGTH; ++i) {
        const int k = sl + RECUR_RES_BWD_SLICES * i;
        resident[i] = column && k < RECUR_RES_GATES * RECUR_RES_HIDDEN ? w[k * RECUR_RES_HIDDEN + unit] : 0.0f;
    }
}

// Returns sum over k < gates H of a[b, k] * W[k, j] for this work-item's (j, b) from
// recur_resident_unit (a: B rows of gates H, contiguous), read straight from global memory: the
// rows are too long to stage, and consecutive work-items read consecutive k. Every work-item of
// the group must call it; partial holds U x B x S floats.
float recur_resident_unit_product(__global const float* a, const float* resident, __local float* partial) {
    const int t = get_local_id(0);
    const int u = t / RECUR_RES_BWD_SLICES;
    const int sl = t - u * RECUR_RES_BWD_SLICES;
    const int width = RECUR_RES_GATES * RECUR_RES_HIDDEN;
    if (u < RECUR_RES_UNITS) {
        float sums[RECUR_RES_BATCH];
        #pragma unroll
        for (int b = 0; b < RECUR_RES_BATCH; ++b) sums[b] = 0.0f;
        #pragma unroll
        for (int i = 0; i < RECUR_RES_BWD_LENGTH; ++i) {
            const int k = sl + RECUR_RES_BWD_SLICES * i;
            if (k < width) {
                const float w = resident[i];
                #pragma unroll
                for (int b = 0; b < RECUR_RES_BATCH; ++b) sums[b] += w * a[b * width + k];
            }
        }
        #pragma unroll
        for (int b = 0; b < RECUR_RES_BATCH; ++b) {
            partial[(u * RECUR_RES_BATCH + b) * RECUR_RES_BWD_SLICES + sl] = sums[b];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float total = 0.0f;
    const int v = t / RECUR_RES_BATCH;
    if (v < RECUR_RES_UNITS) {
        const int b = t - v * RECUR_RES_BATCH;
        for (int q = 0; q < RECUR_RES_BWD_SLICES; ++q) {
            total += partial[(v * RECUR_RES_BATCH + b) * RECUR_RES_BWD_SLICES + q];
        }
    }
    return total;
}
#endif

// ---- What the step kernels of recurrent.cl write in place of a split: the same kernel source
// serves the tiled and the resident programs. ----
#ifdef RECUR_RESIDENT
#define RECUR_STEP_GROUP_SIZE reqd_work_group_size(RECUR_RES_GROUP, 1, 1)
// The local memory of a forward or a backward step kernel.
#define RECUR_FWD_LOCALS(gates)                                                          \
    __local float operand[RECUR_RES_BATCH * RECUR_RES_PADDED_HIDDEN];                   \
    __local float partial[RECUR_RES_FWD_ROWS * RECUR_RES_BATCH * RECUR_RES_FWD_SLICES]
#define RECUR_BWD_LOCALS __local float partial[RECUR_RES_UNITS * RECUR_RES_BATCH * RECUR_RES_BWD_SLICES]
// This work-item's unit j and sequence b.
#define RECUR_STEP_UNIT(j, b)                                                            \
    int j, b;                                                                            \
    recur_resident_unit(&j, &b)
// Loads the weights a scan keeps, once per launch.
#define RECUR_FWD_WEIGHTS(w, gates)                                                      \
    float resident[RECUR_RES_FWD_LENGTH];                                                \
    recur_resident_load_rows(w, resident)
#define RECUR_BWD_WEIGHTS(w)                                                             \
    float resident[RECUR_RES_BWD_LENGTH];                                                \
    recur_resident_load_columns(w, resident)
// products[g] += a W^T for the gates' rows of this unit; a: B rows of H.
#define RECUR_FWD_PRODUCTS(a, w, gates, products) \
    recur_resident_gate_products(a, resident, operand, partial, products)
// a W for this unit's column; a: B rows of gates H (the resident split always reduces over all
// of them, so `lda` and `reduction` are gates H here).
#define RECUR_BWD_PRODUCT(a, lda, reduction, w) recur_resident_unit_product(a, resident, partial)
#else
#define RECUR_STEP_GROUP_SIZE reqd_work_group_size(RECUR_TILE_H, RECUR_TILE_B, 1)
#define RECUR_FWD_LOCALS(gates)                                                          \
    __local float aTile[RECUR_ROW_TILE];                                                 \
    __local float wTile[(gates) * RECUR_GATE_TILE]
#define RECUR_BWD_LOCALS                                                                 \
    __local float aTile[RECUR_ROW_TILE];                                                 \
    __local float wTile[RECUR_UNIT_TILE]
#define RECUR_STEP_UNIT(j, b)                                                            \
    const int j = get_global_id(0);                                                      \
    const int b = get_global_id(1)
#define RECUR_FWD_WEIGHTS(w, gates)
#define RECUR_BWD_WEIGHTS(w)
#define RECUR_FWD_PRODUCTS(a, w, gates, products) \
    recur_gate_products(a, hidden, w, gates, hidden, hidden, batch, aTile, wTile, products)
#define RECUR_BWD_PRODUCT(a, lda, reduction, w) \
    recur_unit_product(a, lda, w, hidden, reduction, batch, aTile, wTile)
#endif

#endif
