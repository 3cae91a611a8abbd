// CBLAS from OpenBLAS (Debian's libopenblas-dev), including openblas_set_num_threads.
#ifndef RECUR_CBLAS_SHIM_H
#define RECUR_CBLAS_SHIM_H
#include <cblas.h>
#endif
