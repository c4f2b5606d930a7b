/*
 * route.cu - routing kernels: one warp per token (route.cuh), and for small
 * M one single-block kernel that routes and then permutes (permute.cuh), so
 * that decode pays one launch for both.
 */
#include "permute.cuh"
#include "route.cuh"

/* Floats of per-warp scratch (route.cuh) and warps per block so that the
 * scratch stays within 48 KB. */
static __host__ __device__ __forceinline__ int route_scratch(int E, int k) {
  return 2 * E + k;
}
static int route_warps(int E, int k) {
  int w = 12288 / route_scratch(E, k);
  return w < 1 ? 1 : w > 8 ? 8 : w;
}

__global__ void route_kernel(const mma_route_args r) {
  extern __shared__ float s_key[];
  pdl_enter();
  const int w = threadIdx.x >> 5;
  const int t = blockIdx.x * (blockDim.x >> 5) + w;
  if (t >= r.M) return;
  route_token_warp(r, t, s_key + (long long)w * route_scratch(r.E, r.k));
}

__global__ void route_permute_kernel(const mma_route_args r,
                                     const mma_permute_args p, int rw) {
  extern __shared__ float s_dyn[];
  pdl_enter();
  const int w = threadIdx.x >> 5;
  if (w < rw)
    for (int t = w; t < r.M; t += rw)
      route_token_warp(r, t, s_dyn + (long long)w * route_scratch(r.E, r.k));
  __syncthreads(); /* ids in global memory, visible to the whole block */
  int *s_off = (int *)(s_dyn + (long long)rw * route_scratch(r.E, r.k));
  permute_block(p, s_off, s_off + p.E_local + 1);
}

extern "C" cudaError_t mma_launch_route(const mma_route_args *r,
                                        cudaStream_t s) {
  if (r->M <= 0) return cudaSuccess;
  const int rw = route_warps(r->E, r->k);
  const int blocks = (r->M + rw - 1) / rw;
  return launch_kernel(route_kernel, dim3(blocks), dim3(rw * 32),
                       (size_t)rw * route_scratch(r->E, r->k) * sizeof(float),
                       s, r->pdl, *r);
}

extern "C" cudaError_t mma_launch_route_permute(const mma_route_args *r,
                                                const mma_permute_args *p,
                                                cudaStream_t s) {
  const int rw = route_warps(r->E, r->k);
  const size_t smem = (size_t)rw * route_scratch(r->E, r->k) * sizeof(float) +
                      (size_t)2 * (p->E_local + 1) * sizeof(int);
  return launch_kernel(route_permute_kernel, dim3(1), dim3(1024), smem, s,
                       r->pdl, *r, *p, rw);
}

extern "C" cudaError_t mma_route_prepare(void) {
  return cudaFuncSetAttribute(route_permute_kernel,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              96 * 1024);
}
