// Flush-to-zero and denormals-are-zero for the calling thread, saved and restored around CPU work.
// Gradients that vanish over hundreds of time steps pass through the subnormal range, where x86
// arithmetic takes microcode assists that run 10-100x slower; values that small (< 1.2e-38) are
// noise next to any gradient a model learns from.
#ifndef RECUR_CFLOATCONTROL_SHIM_H
#define RECUR_CFLOATCONTROL_SHIM_H
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
// MXCSR bits: FTZ (15) flushes subnormal results, DAZ (6) reads subnormal inputs as zero.
static inline unsigned int recur_flush_subnormals_begin(void) {
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u);
    return saved;
}
static inline void recur_flush_subnormals_end(unsigned int saved) { _mm_setcsr(saved); }
#else
// Other architectures keep their default mode (AArch64 handles subnormals at full speed).
static inline unsigned int recur_flush_subnormals_begin(void) { return 0; }
static inline void recur_flush_subnormals_end(unsigned int saved) { (void)saved; }
#endif
#endif
