// Embedding lookups: gather rows of a table by token id, and the gradient's scatter-add back.
// Built with common.cl prepended.
//
// Shape legend: table [V, D] (V vocabulary rows of width D), ids [N] int32 (any shape with N
// elements), rows [N, D]. The gather runs one work-item per element of rows: index = n * D + d.
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

// tableGradient[v, d] += sum over n with ids[n] == v of gradient[n, d], added in increasing n
//
// Each element of the table gradient has one owner, a work-item that adds its id's rows one after
// another in a fixed order: the CPU backend's order (n increasing, onto the value already there),
// so the result is the same every run and equals the CPU's bit for bit. No atomics.
//
// The host groups the positions by id (EmbeddingPositions in the backend) and sends them as one
// int array `grouped` in three parts:
//   rows      [R]      the distinct ids, increasing
//   starts    [R + 1]  id rows[r] owns the entries starts[r] ..< starts[r + 1] of positions
//   positions [N]      0 ..< N grouped by id, increasing within a group
// One work-item per (r, d): index = r * D + d, so neighbouring work-items read neighbouring
// columns of the same gradient row. A frequent id (padding) makes its work-items loop longer than
// the others, at most N times: a few thousand for the batches trained on (T * B up to tens of
// thousands).
__kernel void embedding_scatter_add(__global const float* gradient, __global const int* grouped,
                                    __global float* tableGradient,
                                    const int rowCount, const int width, const int vocabulary) {
    const int index = get_global_id(0);
    if (index >= rowCount * width) return;
    const int r = index / width;
    const int d = index - r * width;
    const int id = grouped[r];
    if (id < 0 || id >= vocabulary) return;
    __global const int* starts = grouped + rowCount;
    __global const int* positions = starts + rowCount + 1;
    __global float* target = tableGradient + (size_t)id * width + d;
    float sum = *target;
    const int end = starts[r + 1];
    for (int k = starts[r]; k < end; ++k) {
        sum += gradient[(size_t)positions[k] * width + d];
    }
    *target = sum;
}
