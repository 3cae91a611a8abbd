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

// *address += value, atomically, for float data in global memory. OpenCL 1.2 has no float atomic
// add, so this retries a 32-bit compare-and-swap on the value's bit pattern until no other
// work-item changed it in between. The order of concurrent additions is not fixed.
void recur_atomic_add_global(volatile __global float* address, float value) {
    volatile __global uint* bits = (volatile __global uint*)address;
    uint expected = *bits;
    for (;;) {
        const uint desired = as_uint(as_float(expected) + value);
        const uint observed = atomic_cmpxchg(bits, expected, desired);
        if (observed == expected) {
            break;
        }
        expected = observed;
    }
}

#endif
