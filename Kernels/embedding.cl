// Embedding lookups: gather rows of a table by token id, and the gradient's scatter-add back.
// Built with common.cl prepended.
//
// Shape legend: table [V, D] (V vocabulary rows of width D), ids [N] int32 (any shape with N
// elements), rows [N, D]. One work-item per element of rows: index = n * D + d.
//
// The host checks ids against V before launching; the kernels check again, so a bad id can
// never read or write outside the table: gather writes 0 for it and scatter-add skips it.
//
// No tunables: the work-group size is chosen by the host.

// rows[n, d] = table[ids[n], d]   (0 if ids[n] is outside 0 ..< V)
__kernel void embedding_gather(__global const float* table, __global const int* ids, __global float* rows,
                               const int count, const int width, const int vocabulary) {
    const int index = get_global_id(0);
    if (index >= count * width) return;
    const int n = index / width;
    const int d = index - n * width;
    const int id = ids[n];
    rows[index] = (id >= 0 && id < vocabulary) ? table[(size_t)id * width + d] : 0.0f;
}

// tableGradient[ids[n], d] += gradient[n, d]   (accumulates; repeated ids add up atomically,
// in no fixed order; ids outside 0 ..< V are skipped)
__kernel void embedding_scatter_add(__global const float* gradient, __global const int* ids,
                                    __global float* tableGradient,
                                    const int count, const int width, const int vocabulary) {
    const int index = get_global_id(0);
    if (index >= count * width) return;
    const int n = index / width;
    const int d = index - n * width;
    const int id = ids[n];
    if (id < 0 || id >= vocabulary) return;
    recur_atomic_add_global(tableGradient + (size_t)id * width + d, gradient[index]);
}
