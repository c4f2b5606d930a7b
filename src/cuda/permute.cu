/*
 * permute.cu - the expert-sorted permutation as its own kernel (one block of
 * 1024 threads; see permute.cuh), used when routing is not fused with it:
 * caller-supplied ids, or M above MMA_FUSED_ROUTE_MAX_M.
 */
#include "permute.cuh"

__global__ void __launch_bounds__(1024)
    permute_kernel(const mma_permute_args p) {
  extern __shared__ int s_int[];
  pdl_enter();
  permute_block(p, s_int, s_int + p.E_local + 1);
}

/* Large M: the same three phases over the whole grid. The counts: each
 * block ranks its PERMUTE_COUNT_PAIRS pairs within the block by shared
 * atomics, takes one global atomic per (block, expert) for its base, and
 * writes the ranks made global (a global atomic per pair put 131072
 * atomics on 128 counters at qwen3's 16384 tokens: 27 us). */
#define PERMUTE_COUNT_PAIRS 2048
#define PERMUTE_COUNT_THREADS 256
__global__ void __launch_bounds__(PERMUTE_COUNT_THREADS)
    permute_count_kernel(const mma_permute_args p) {
  constexpr int PER = PERMUTE_COUNT_PAIRS / PERMUTE_COUNT_THREADS;
  extern __shared__ int s_cnt[];
  pdl_enter();
  const int q0 = blockIdx.x * PERMUTE_COUNT_PAIRS;
  for (int e = threadIdx.x; e < p.E_local; e += blockDim.x)
    s_cnt[e] = 0;
  __syncthreads();
  int le[PER], lr[PER];
#pragma unroll
  for (int i = 0; i < PER; i++) {
    const int q = q0 + i * PERMUTE_COUNT_THREADS + (int)threadIdx.x;
    le[i] = -1;
    lr[i] = 0;
    if (q < p.pairs) {
      le[i] = permute_local(p, q);
      p.pair_e[q] = le[i];
      if (le[i] >= 0) lr[i] = atomicAdd(&s_cnt[le[i]], 1);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < p.E_local; e += blockDim.x) {
    const int c = s_cnt[e];
    if (c) s_cnt[e] = atomicAdd(p.counts + e, c);
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < PER; i++)
    if (le[i] >= 0)
      p.rank[q0 + i * PERMUTE_COUNT_THREADS + threadIdx.x] =
          s_cnt[le[i]] + lr[i];
}

__global__ void __launch_bounds__(1024)
    permute_scan_kernel(const mma_permute_args p) {
  extern __shared__ int s_int[];
  pdl_enter();
  for (int e = threadIdx.x; e < p.E_local; e += blockDim.x)
    s_int[e] = p.counts[e];
  __syncthreads();
  permute_scan_block(p, s_int, s_int + p.E_local + 1);
}

__global__ void permute_place_kernel(const mma_permute_args p) {
  pdl_enter();
  for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < p.pairs;
       q += gridDim.x * blockDim.x)
    permute_place(p, q, p.offsets);
}

extern "C" cudaError_t mma_launch_permute(const mma_permute_args *p,
                                          cudaStream_t s) {
  const size_t smem = (size_t)2 * (p->E_local + 1) * sizeof(int);
  if (p->pairs <= p->one_block_max || !p->counts) {
    return launch_kernel(permute_kernel, dim3(1), dim3(1024), smem, s, p->pdl,
                         *p);
  }
  cudaError_t e =
      cudaMemsetAsync(p->counts, 0, (size_t)p->E_local * sizeof(int), s);
  if (e != cudaSuccess) return e;
  int blocks = (p->pairs + 255) / 256;
  if (blocks > 1024) blocks = 1024;
  /* after the memset: a plain dependency for the first kernel */
  const int cblocks =
      (p->pairs + PERMUTE_COUNT_PAIRS - 1) / PERMUTE_COUNT_PAIRS;
  e = launch_kernel(permute_count_kernel, dim3(cblocks),
                    dim3(PERMUTE_COUNT_THREADS),
                    (size_t)p->E_local * sizeof(int), s, 0, *p);
  if (e != cudaSuccess) return e;
  e = launch_kernel(permute_scan_kernel, dim3(1), dim3(1024), smem, s, p->pdl,
                    *p);
  if (e != cudaSuccess) return e;
  return launch_kernel(permute_place_kernel, dim3(blocks), dim3(256), 0, s,
                       p->pdl, *p);
}
