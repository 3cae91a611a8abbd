// The OpenCL C API at version 1.2: every call Recur makes exists in PoCL 3.x and in NVIDIA's
// OpenCL 3.0 driver, and 1.2 keeps clCreateCommandQueue free of deprecation warnings.
#ifndef RECUR_COPENCL_SHIM_H
#define RECUR_COPENCL_SHIM_H
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#endif
