// Attention: the score of every query against every valid key, the mask, the softmax and the
// context, fused into one kernel; the backward op in two (three for the additive score's vector).
// Built with common.cl prepended. The equations are in Backend/AttentionOps.swift, the CPU backend's
// loops in CPUBackend+Attention.swift, the float64 specification in AttentionReference.swift.
//
// Shape legend: Ty target steps, Tx source steps, B batch, D query and key features, Dv value
// features, G = ATTENTION_GROUP_SIZE work-items per group. Sequences are time-major: feature f of
// row (t, b) of a [T, B, F] tensor is element (t * B + b) * F + f. The attention weights A and the
// score gradients dS are [B, Ty, Tx]. The valid source steps of sequence b are
// r = first ..< first + n (attention_range); every other source step has weight 0, its key and
// value are never read, and its gradients are 0.
//
// Every sum runs in a fixed order (no atomics), so results are the same run to run.

#ifndef ATTENTION_GROUP_SIZE
#define ATTENTION_GROUP_SIZE 64  // work-items per group; a power of two
#endif
#ifndef ATTENTION_TEAM_SIZE
#define ATTENTION_TEAM_SIZE 8  // work-items sharing one score's sum over the features; a power of two <= the group
#endif
#define ATTENTION_TEAMS (ATTENTION_GROUP_SIZE / ATTENTION_TEAM_SIZE)

// The valid source steps of sequence b: returns n and sets *first. The host checks the lengths;
// the clamp only keeps a bad one from indexing outside the tensors.
int attention_range(__global const int* lengths, const int hasLengths, const int prePadding, const int b,
                    const int sourceSteps, int* first) {
    const int n = hasLengths ? clamp(lengths[b], 0, sourceSteps) : sourceSteps;
    *first = prePadding ? sourceSteps - n : 0;
    return n;
}

// The sum (or with takeMax, the largest) of every work-item's `value`, returned to all of them.
// Every work-item of the group must call it. The first barrier lets the readers of an earlier
// result finish first.
float attention_group_reduce(__local float* partial, const float value, const int takeMax) {
    const int lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    partial[lid] = value;
    for (int stride = ATTENTION_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < stride) {
            const float other = partial[lid + stride];
            partial[lid] = takeMax ? fmax(partial[lid], other) : partial[lid] + other;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    return partial[0];
}

// out[j] = x . y_j (dot), or v . tanh(x + y_j) (additive), over F features, for every valid
// source step j (out[j] = 0 for the others), y_j = rows + j * rowStride. The group splits into
// ATTENTION_TEAMS teams of ATTENTION_TEAM_SIZE work-items: team t takes j = first + t, first + t +
// ATTENTION_TEAMS, ..., its work-items sum every ATTENTION_TEAM_SIZE-th feature (neighbours read
// neighbouring features of one row), and the team adds their sums by halving in local memory.
// Every work-item of the group must call it; on return every out[j] is visible to all of them.
void attention_team_scores(__local float* partial, __global const float* x, __global const float* rows,
                           const size_t rowStride, const int features, __global const float* vector,
                           const int additive, const int first, const int n, const int sourceSteps,
                           __global float* out) {
    const int lid = get_local_id(0);
    const int team = lid / ATTENTION_TEAM_SIZE;
    const int lane = lid % ATTENTION_TEAM_SIZE;
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j < first || j >= first + n) {
            out[j] = 0.0f;
        }
    }
    for (int base = 0; base < n; base += ATTENTION_TEAMS) {
        const int j = first + base + team;
        float sum = 0.0f;
        if (base + team < n) {
            __global const float* y = rows + (size_t)j * rowStride;
            if (additive) {
                for (int f = lane; f < features; f += ATTENTION_TEAM_SIZE) sum += vector[f] * tanh(x[f] + y[f]);
            } else {
                for (int f = lane; f < features; f += ATTENTION_TEAM_SIZE) sum += x[f] * y[f];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        partial[lid] = sum;
        for (int stride = ATTENTION_TEAM_SIZE / 2; stride > 0; stride >>= 1) {
            barrier(CLK_LOCAL_MEM_FENCE);
            if (lane < stride) {
                partial[lid] += partial[lid + stride];
            }
        }
        if (lane == 0 && base + team < n) {
            out[j] = partial[lid];
        }
    }
    barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
}

// Forward. One group per row (i, b) of the queries, group id i * B + b; after the scores, the
// work-item j-loops take j = lid, lid + G, ..., so each work-item rereads only the a[j] it wrote:
//   a[j] = s_j = score(q[i, b], k[j, b])                      j in r, 0 elsewhere (attention_team_scores)
//   m = max_j s_j                                             (group reduction)
//   a[j] = e_j = exp(s_j - m),   S = sum_j e_j                (group reduction; every exponent <= 0)
//   a[j] = e_j / S
//   c[i, b, f] = sum_{j in r} a[j] V[j, b, f]                 work-item per f, after a global barrier
// Writes A[b, i, :] and C[i, b, :].
__kernel __attribute__((reqd_work_group_size(ATTENTION_GROUP_SIZE, 1, 1)))
void attention_forward(__global const float* queries, __global const float* keys, __global const float* values,
                       __global const float* scoreVector, const int additive, __global const int* lengths,
                       const int hasLengths, const int prePadding, const int targetSteps, const int sourceSteps,
                       const int batch, const int features, const int valueFeatures, __global float* context,
                       __global float* weights) {
    __local float partial[ATTENTION_GROUP_SIZE];
    const int lid = get_local_id(0);
    const int row = get_group_id(0);
    const int i = row / batch;
    const int b = row % batch;
    int first;
    const int n = attention_range(lengths, hasLengths, prePadding, b, sourceSteps, &first);
    __global const float* query = queries + (size_t)row * features;
    __global float* a = weights + ((size_t)b * targetSteps + i) * sourceSteps;

    attention_team_scores(partial, query, keys + (size_t)b * features, (size_t)batch * features, features,
                          scoreVector, additive, first, n, sourceSteps, a);
    float largest = -INFINITY;
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j >= first && j < first + n) {
            largest = fmax(largest, a[j]);
        }
    }
    largest = attention_group_reduce(partial, largest, 1);

    float total = 0.0f;
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j >= first && j < first + n) {
            const float e = exp(a[j] - largest);
            a[j] = e;
            total += e;
        }
    }
    total = attention_group_reduce(partial, total, 0);
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j >= first && j < first + n) {
            a[j] = a[j] / total;
        }
    }

    // Every work-item reads every a[j] from here on.
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int f = lid; f < valueFeatures; f += ATTENTION_GROUP_SIZE) {
        float c = 0.0f;
        for (int j = first; j < first + n; ++j) {
            c += a[j] * values[((size_t)j * batch + b) * valueFeatures + f];
        }
        context[(size_t)row * valueFeatures + f] = c;
    }
}

// Backward, stage 1: the score gradients and dQ. One group per row (i, b), as the forward:
//   ds[j] = dA_j = dC[i, b] . V[j, b]                         j in r, 0 elsewhere (attention_team_scores)
//   t = sum_j a[j] dA_j                                       (group reduction)
//   ds[j] = a[j] (dA_j - t)
//   dot:       dQ[i, b, f] = sum_{j in r} ds[j] K[j, b, f]
//   additive:  dQ[i, b, f] = v[f] sum_{j in r} ds[j] (1 - u^2),  u = tanh(q[i, b, f] + k[j, b, f])
// Writes dS[b, i, :] (scratch for stage 2) and overwrites dQ[i, b, :].
__kernel __attribute__((reqd_work_group_size(ATTENTION_GROUP_SIZE, 1, 1)))
void attention_backward_queries(__global const float* queries, __global const float* keys,
                                __global const float* values, __global const float* scoreVector, const int additive,
                                __global const int* lengths, const int hasLengths, const int prePadding,
                                const int targetSteps, const int sourceSteps, const int batch, const int features,
                                const int valueFeatures, __global const float* weights,
                                __global const float* contextGradient, __global float* scoreGradients,
                                __global float* queriesGradient) {
    __local float partial[ATTENTION_GROUP_SIZE];
    const int lid = get_local_id(0);
    const int row = get_group_id(0);
    const int i = row / batch;
    const int b = row % batch;
    int first;
    const int n = attention_range(lengths, hasLengths, prePadding, b, sourceSteps, &first);
    __global const float* a = weights + ((size_t)b * targetSteps + i) * sourceSteps;
    __global float* ds = scoreGradients + ((size_t)b * targetSteps + i) * sourceSteps;
    __global const float* dc = contextGradient + (size_t)row * valueFeatures;

    attention_team_scores(partial, dc, values + (size_t)b * valueFeatures, (size_t)batch * valueFeatures,
                          valueFeatures, scoreVector, 0, first, n, sourceSteps, ds);
    float weighted = 0.0f;
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j >= first && j < first + n) {
            weighted += a[j] * ds[j];
        }
    }
    weighted = attention_group_reduce(partial, weighted, 0);
    for (int j = lid; j < sourceSteps; j += ATTENTION_GROUP_SIZE) {
        if (j >= first && j < first + n) {
            ds[j] = a[j] * (ds[j] - weighted);
        }
    }

    // Every work-item reads every ds[j] from here on.
    barrier(CLK_GLOBAL_MEM_FENCE);
    __global const float* query = queries + (size_t)row * features;
    for (int f = lid; f < features; f += ATTENTION_GROUP_SIZE) {
        float g = 0.0f;
        if (additive) {
            const float q = query[f];
            for (int j = first; j < first + n; ++j) {
                const float u = tanh(q + keys[((size_t)j * batch + b) * features + f]);
                g += ds[j] * (1.0f - u * u);
            }
            g *= scoreVector[f];
        } else {
            for (int j = first; j < first + n; ++j) {
                g += ds[j] * keys[((size_t)j * batch + b) * features + f];
            }
        }
        queriesGradient[(size_t)row * features + f] = g;
    }
}

// Backward, stage 2: dK, dV and the additive score's per-source share of dv. One group per source
// row (j, b), group id j * B + b; work-item per feature f; 0 when j is a padded step:
//   dV[j, b, f] = sum_i a[b, i, j] dC[i, b, f]
//   dot:       dK[j, b, f] = sum_i dS[b, i, j] Q[i, b, f]
//   additive:  dK[j, b, f] = v[f] sum_i dS[b, i, j] (1 - u^2),   shares[j, b, f] = sum_i dS[b, i, j] u,
//              u = tanh(q[i, b, f] + k[j, b, f])
// Overwrites dK[j, b, :] and dV[j, b, :]; writes shares[j, b, :] (additive only).
__kernel __attribute__((reqd_work_group_size(ATTENTION_GROUP_SIZE, 1, 1)))
void attention_backward_sources(__global const float* queries, __global const float* keys,
                                __global const float* scoreVector, const int additive, __global const int* lengths,
                                const int hasLengths, const int prePadding, const int targetSteps,
                                const int sourceSteps, const int batch, const int features, const int valueFeatures,
                                __global const float* weights, __global const float* contextGradient,
                                __global const float* scoreGradients, __global float* keysGradient,
                                __global float* valuesGradient, __global float* shares) {
    const int lid = get_local_id(0);
    const int row = get_group_id(0);
    const int j = row / batch;
    const int b = row % batch;
    int first;
    const int n = attention_range(lengths, hasLengths, prePadding, b, sourceSteps, &first);
    const int valid = j >= first && j < first + n;
    __global const float* a = weights + (size_t)b * targetSteps * sourceSteps + j;  // a[i * Tx] = A[b, i, j]
    __global const float* ds = scoreGradients + (size_t)b * targetSteps * sourceSteps + j;

    for (int f = lid; f < valueFeatures; f += ATTENTION_GROUP_SIZE) {
        float g = 0.0f;
        if (valid) {
            for (int i = 0; i < targetSteps; ++i) {
                g += a[(size_t)i * sourceSteps] * contextGradient[((size_t)i * batch + b) * valueFeatures + f];
            }
        }
        valuesGradient[(size_t)row * valueFeatures + f] = g;
    }
    for (int f = lid; f < features; f += ATTENTION_GROUP_SIZE) {
        float g = 0.0f;
        float share = 0.0f;
        if (valid && additive) {
            const float k = keys[(size_t)row * features + f];
            for (int i = 0; i < targetSteps; ++i) {
                const float u = tanh(queries[((size_t)i * batch + b) * features + f] + k);
                const float scoreGradient = ds[(size_t)i * sourceSteps];
                g += scoreGradient * (1.0f - u * u);
                share += scoreGradient * u;
            }
            g *= scoreVector[f];
        } else if (valid) {
            for (int i = 0; i < targetSteps; ++i) {
                g += ds[(size_t)i * sourceSteps] * queries[((size_t)i * batch + b) * features + f];
            }
        }
        keysGradient[(size_t)row * features + f] = g;
        if (additive) {
            shares[(size_t)row * features + f] = share;
        }
    }
}

// Backward, stage 3 (additive only): dv[f] += sum over the Tx * B source rows of shares[row, f],
// in row order. One work-item per feature f.
__kernel void attention_score_vector_gradient(__global const float* shares, const int rows, const int features,
                                              __global float* scoreVectorGradient) {
    const int f = get_global_id(0);
    if (f >= features) {
        return;
    }
    float total = 0.0f;
    for (int row = 0; row < rows; ++row) {
        total += shares[(size_t)row * features + f];
    }
    scoreVectorGradient[f] += total;
}
