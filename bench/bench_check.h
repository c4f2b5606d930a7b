/* bench_check.h - the error check of the standalone GPU programs in bench/
 * (mma_peak.cu, read_probe.cu): a failed CUDA call prints its expression
 * and the error, and the enclosing function returns 1. */
#ifndef MOE_BENCH_CHECK_H
#define MOE_BENCH_CHECK_H

#include <cstdio>
#include <cuda_runtime.h>

#define CHECK(x)                                                               \
  do {                                                                         \
    cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                   \
      fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                 \
      return 1;                                                                \
    }                                                                          \
  } while (0)

#endif
