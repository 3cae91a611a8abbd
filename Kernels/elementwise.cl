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

// x_s[j] = 0 for up to eight tensors x_0 .. x_7 in one launch (a model's gradients before a step).
// The ends are cumulative element counts: work-item i zeroes element i - end_{s-1} of the first
// tensor s with i < end_s. A slot the host leaves unused repeats the previous end, so no
// work-item reaches it (its buffer argument is any valid one).
__kernel void zero_tensors(__global float* x0, __global float* x1, __global float* x2, __global float* x3,
                           __global float* x4, __global float* x5, __global float* x6, __global float* x7,
                           const int end0, const int end1, const int end2, const int end3,
                           const int end4, const int end5, const int end6, const int end7) {
    const int i = get_global_id(0);
    if (i < end0) { x0[i] = 0.0f; return; }
    if (i < end1) { x1[i - end0] = 0.0f; return; }
    if (i < end2) { x2[i - end1] = 0.0f; return; }
    if (i < end3) { x3[i - end2] = 0.0f; return; }
    if (i < end4) { x4[i - end3] = 0.0f; return; }
    if (i < end5) { x5[i - end4] = 0.0f; return; }
    if (i < end6) { x6[i - end5] = 0.0f; return; }
    if (i < end7) { x7[i - end6] = 0.0f; }
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

// x_s[j] *= alpha_s for up to eight tensors in one launch (clipping a model's gradients: g *= f,
// per-occurrence squares *= f^2). Ends as in zero_tensors.
__kernel void scale_tensors(__global float* x0, __global float* x1, __global float* x2, __global float* x3,
                            __global float* x4, __global float* x5, __global float* x6, __global float* x7,
                            const float alpha0, const float alpha1, const float alpha2, const float alpha3,
                            const float alpha4, const float alpha5, const float alpha6, const float alpha7,
                            const int end0, const int end1, const int end2, const int end3,
                            const int end4, const int end5, const int end6, const int end7) {
    const int i = get_global_id(0);
    if (i < end0) { x0[i] *= alpha0; return; }
    if (i < end1) { x1[i - end0] *= alpha1; return; }
    if (i < end2) { x2[i - end1] *= alpha2; return; }
    if (i < end3) { x3[i - end2] *= alpha3; return; }
    if (i < end4) { x4[i - end3] *= alpha4; return; }
    if (i < end5) { x5[i - end4] *= alpha5; return; }
    if (i < end6) { x6[i - end5] *= alpha6; return; }
    if (i < end7) { x7[i - end6] *= alpha7; }
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
