// CLBlast's C API: tuned OpenCL GEMM. Linked by the Recur target (shared, or static for
// tools/build-static.sh), not here. Built against the same 1.2 OpenCL headers as COpenCL.
#ifndef RECUR_CCLBLAST_SHIM_H
#define RECUR_CCLBLAST_SHIM_H
#define CL_TARGET_OPENCL_VERSION 120
#include <clblast_c.h>
#endif
