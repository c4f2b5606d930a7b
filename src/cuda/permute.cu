/*
 * permute.cu - the expert-sorted permutation as its own kernel (one block of
 * 1024 threads; see permute.cuh), used when routing is not fused with it:
 * caller-supplied ids, or M above MMA_FUSED_ROUTE_MAX_M.
 */
#include "permute.cuh"

__global__ void __launch_bounds__(1024)
    permute_kernel(const mma_permute_args p) {
  extern __shared__ int s_int[];
  permute_block(p, s_int, s_int + p.E_local + 1);
}

extern "C" cudaError_t mma_launch_permute(const mma_permute_args *p,
                                          cudaStream_t s) {
  permute_kernel<<<1, 1024, (size_t)2 * (p->E_local + 1) * sizeof(int), s>>>(
      *p);
  return cudaGetLastError();
}
