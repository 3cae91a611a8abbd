// Elementwise kernels: data movement, arithmetic, and activations forward and backward.
// Built with common.cl prepended.
//
// Shape legend: every operand is a flat array of n float32 values (its tensor's shape does not
// matter here). Each work-item handles one element; the launch rounds the global size up to a
// whole number of work-groups, so every kernel returns early for i >= n.
//
// No tunables: these kernels are bound by memory bandwidth and the work-group size is chosen by
// the host.

// x[i] = value
__kernel void fill(__global float* x, const float value, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    x[i] = value;
}

// destination[destinationOffset + i] = source[sourceOffset + i] for i < n.
// The host never passes overlapping ranges of one buffer.
__kernel void copy_range(__global const float* source, const int sourceOffset,
                         __global float* destination, const int destinationOffset, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    destination[destinationOffset + i] = source[sourceOffset + i];
}

// One block of rows between two row layouts (a feature slice, one part of a concatenation):
// destination[destinationOffset + r * destinationStride + c] = source[sourceOffset + r * sourceStride + c]
// for work-item i = r * width + c, i < n = rows * width.
__kernel void copy_rows(__global const float* source, const int sourceOffset, const int sourceStride,
                        __global float* destination, const int destinationOffset, const int destinationStride,
                        const int width, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    const int r = i / width;
    const int c = i - r * width;
    destination[destinationOffset + r * destinationStride + c] = source[sourceOffset + r * sourceStride + c];
}

// out[i] = a[i] + b[i]
__kernel void add(__global const float* a, __global const float* b, __global float* out, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    out[i] = a[i] + b[i];
}

// out[i] = a[i] * b[i]
__kernel void multiply(__global const float* a, __global const float* b, __global float* out, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    out[i] = a[i] * b[i];
}

// y[i] += alpha * x[i]
__kernel void axpy(const float alpha, __global const float* x, __global float* y, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] += alpha * x[i];
}

// x[i] *= alpha
__kernel void scale(__global float* x, const float alpha, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    x[i] *= alpha;
}

// ---- Activations, forward: y = f(x). y may be x. Identity is copy_range. ----

// y[i] = 1 / (1 + e^-x[i])
__kernel void sigmoid_forward(__global const float* x, __global float* y, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = recur_sigmoid(x[i]);
}

// y[i] = tanh(x[i])
__kernel void tanh_forward(__global const float* x, __global float* y, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = tanh(x[i]);
}

// y[i] = max(x[i], 0)
__kernel void relu_forward(__global const float* x, __global float* y, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    y[i] = fmax(x[i], 0.0f);
}

// ---- Activations, backward: dx = dy * f'(x), with f' written in terms of the forward output y.
// dx may be dy (overwrites). Identity is copy_range. ----

// dx[i] = dy[i] * y[i] * (1 - y[i])            (differentiates sigmoid_forward)
__kernel void sigmoid_backward(__global const float* y, __global const float* dy, __global float* dx,
                               const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

// dx[i] = dy[i] * (1 - y[i]^2)                 (differentiates tanh_forward)
__kernel void tanh_backward(__global const float* y, __global const float* dy, __global float* dx,
                            const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

// dx[i] = y[i] > 0 ? dy[i] : 0                 (differentiates relu_forward)
__kernel void relu_backward(__global const float* y, __global const float* dy, __global float* dx,
                            const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
