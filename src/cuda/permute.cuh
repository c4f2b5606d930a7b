/*
 * permute.cuh - expert-sorted permutation by one block, on the device (no
 * host counts): per-expert row counts (shared-memory atomics), their prefix
 * sums, the sorted row tables and the GEMM tile list. Shared by the permute
 * kernel and the fused route + permute kernel.
 *
 * The order of a token's rows inside its expert follows the atomics and may
 * change from run to run; no value depends on it (every row is computed on
 * its own and written back to its (token, slot) row), so results are
 * bit-identical.
 */
#ifndef MOE_CUDA_PERMUTE_CUH
#define MOE_CUDA_PERMUTE_CUH

#include "common.cuh"

/* Exclusive block scan of (a, b); blockDim.x a multiple of 32, <= 1024. */
__device__ __forceinline__ void block_scan2(int &a, int &b, int &ta, int &tb) {
  __shared__ int s_a[32], s_b[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int nw = blockDim.x >> 5;
  int ia = a, ib = b;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    int va = __shfl_up_sync(0xffffffffu, ia, o);
    int vb = __shfl_up_sync(0xffffffffu, ib, o);
    if (lane >= o) {
      ia += va;
      ib += vb;
    }
  }
  if (lane == 31) {
    s_a[w] = ia;
    s_b[w] = ib;
  }
  __syncthreads();
  if (w == 0) {
    int va = lane < nw ? s_a[lane] : 0, vb = lane < nw ? s_b[lane] : 0;
    int xa = va, xb = vb;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      int ua = __shfl_up_sync(0xffffffffu, xa, o);
      int ub = __shfl_up_sync(0xffffffffu, xb, o);
      if (lane >= o) {
        xa += ua;
        xb += ub;
      }
    }
    if (lane < nw) {
      s_a[lane] = xa - va;
      s_b[lane] = xb - vb;
    }
    /* block totals (lanes past nw add 0), valid in warp 0 */
    ta = __shfl_sync(0xffffffffu, xa, 31);
    tb = __shfl_sync(0xffffffffu, xb, 31);
  }
  __syncthreads();
  a = s_a[w] + ia - a;
  b = s_b[w] + ib - b;
}

/* Local expert of pair q (-1: not here, or an id out of range). */
__device__ __forceinline__ int permute_local(const mma_permute_args &p, int q) {
  const int g = p.ids[q];
  int le = -1;
  if (g >= 0 && g < p.E) le = p.emap ? p.emap[g] : g;
  return (le >= p.E_local || le < 0) ? -1 : le;
}

/* s_off[e] holds expert e's row count on entry; on return s_off / s_toff
 * (and p.offsets) hold the row and tile offsets, E_local + 1 of each, and
 * the tile list is written. Whole block. */
static __device__ void permute_scan_block(const mma_permute_args &p, int *s_off,
                                          int *s_toff) {
  __shared__ int s_tot[2];
  const int tid = threadIdx.x, nt = blockDim.x, El = p.E_local;
  /* Each thread owns a run of experts; scan the runs' totals. */
  const int per = (El + nt - 1) / nt;
  const int e0 = min(El, tid * per), e1 = min(El, e0 + per);
  int rs = 0, ts = 0;
  for (int e = e0; e < e1; e++) {
    const int c = s_off[e];
    rs += c;
    ts += (c + p.bm - 1) / p.bm;
  }
  int ta = 0, tb = 0;
  block_scan2(rs, ts, ta, tb);
  if (tid == 0) {
    s_tot[0] = ta;
    s_tot[1] = tb;
  }
  for (int e = e0; e < e1; e++) {
    const int c = s_off[e];
    s_off[e] = rs;
    s_toff[e] = ts;
    p.offsets[e] = rs;
    rs += c;
    ts += (c + p.bm - 1) / p.bm;
  }
  __syncthreads();
  if (tid == 0) {
    s_off[El] = s_tot[0];
    s_toff[El] = s_tot[1];
    p.offsets[El] = s_tot[0];
    *p.n_tiles = s_tot[1];
  }
  __syncthreads();
  for (int e = tid; e < El; e += nt) {
    const int c = s_off[e + 1] - s_off[e];
    const int n = (c + p.bm - 1) / p.bm;
    for (int i = 0; i < n; i++) {
      p.tiles[2 * (s_toff[e] + i)] = e;
      p.tiles[2 * (s_toff[e] + i) + 1] = i * p.bm;
    }
  }
}

__device__ __forceinline__ void permute_place(const mma_permute_args &p, int q,
                                              const int *off) {
  const int le = p.pair_e[q];
  if (le < 0) return;
  const int r = off[le] + p.rank[q];
  p.sorted_pair[r] = q;
  p.sorted_tok[r] = q / p.k;
  p.row_expert[r] = le;
}

/* The whole permutation by one block. s_off, s_toff: shared memory,
 * E_local + 1 ints each. */
static __device__ void permute_block(const mma_permute_args &p, int *s_off,
                                     int *s_toff) {
  const int tid = threadIdx.x, nt = blockDim.x, El = p.E_local;
  for (int e = tid; e < El; e += nt)
    s_off[e] = 0;
  __syncthreads();
  for (int q = tid; q < p.pairs; q += nt) {
    const int le = permute_local(p, q);
    p.pair_e[q] = le;
    if (le >= 0) p.rank[q] = atomicAdd(&s_off[le], 1);
  }
  __syncthreads();
  permute_scan_block(p, s_off, s_toff);
  for (int q = tid; q < p.pairs; q += nt)
    permute_place(p, q, s_off);
}

#endif
