/*
 * gemv_pairs.cuh - the pieces of the gemv path (gemv.cu) that any kernel
 * streaming a few tokens' experts needs: 16-byte dot products, and a
 * call's (token, expert) pairs routed or read from the caller, mapped to
 * local experts, and sorted by expert into groups (the run of pairs on one
 * expert), so that an expert's rows are read once for all its pairs.
 *
 * The pair functions are called by all threads of the CTA (any multiple of
 * 32) and end with a __syncthreads().
 */
#ifndef MOE_CUDA_GEMV_PAIRS_CUH
#define MOE_CUDA_GEMV_PAIRS_CUH

#include "route.cuh"

/* ---- vector arithmetic ---- */

__device__ __forceinline__ uint4 gv_lds(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr));
  return v;
}

/* <a, b> over 8 elements, fp32. */
template <class T> __device__ __forceinline__ float gv_dot8(uint4 a, uint4 b);
template <>
__device__ __forceinline__ float gv_dot8<__nv_bfloat16>(uint4 a, uint4 b) {
  const uint32_t *pa = &a.x, *pb = &b.x;
  float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    s0 = fmaf(__uint_as_float(pa[i] << 16), __uint_as_float(pb[i] << 16), s0);
    s1 = fmaf(__uint_as_float(pa[i] & 0xffff0000u),
              __uint_as_float(pb[i] & 0xffff0000u), s1);
  }
  return s0 + s1;
}
template <> __device__ __forceinline__ float gv_dot8<__half>(uint4 a, uint4 b) {
  const __half2 *pa = (const __half2 *)&a, *pb = (const __half2 *)&b;
  float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 fa = __half22float2(pa[i]), fb = __half22float2(pb[i]);
    s0 = fmaf(fa.x, fb.x, s0);
    s1 = fmaf(fa.y, fb.y, s1);
  }
  return s0 + s1;
}

__device__ __forceinline__ float gv_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* ---- pairs ---- */

/* The two weight rows of GEMM1 unit r: (gate, up) of intermediate row r,
 * or plain rows 2r and 2r + 1. */
__device__ __forceinline__ void gv_rows1(const mma_act &act, int I, int r,
                                         int *ra, int *rb) {
  if (!act.gated) {
    *ra = 2 * r;
    *rb = 2 * r + 1;
  } else if (act.interleaved) {
    *ra = 2 * r;
    *rb = 2 * r + 1;
  } else {
    *ra = r;
    *rb = I + r;
  }
}

/* s_e[P], s_w[P] (P = a.M * a.k): each pair's local expert (-1: none
 * here) and routing weight, routed from r.logits (one warp a token; key:
 * each routing warp's 2E + k floats of scratch, warps beyond `rwarps` do
 * not route) or read from a.ids_in / a.w_in. Block 0 stores them to a.pe
 * and a.pw for the second kernel. */
__device__ __forceinline__ void gv_pairs_route(const mma_gemv_args &a,
                                               const mma_route_args &r,
                                               float *scratch, int rwarps,
                                               int32_t *s_e, float *s_w) {
  const int P = a.M * a.k, nt = blockDim.x, warp = threadIdx.x >> 5;
  if (r.logits) {
    if (warp < rwarps) {
      float *key = scratch + warp * (2 * r.E + r.k);
      for (int t = warp; t < a.M; t += rwarps)
        route_token_warp_to(r, t, key, s_e + t * a.k, s_w + t * a.k);
    }
  } else {
    for (int q = threadIdx.x; q < P; q += nt) {
      s_e[q] = a.ids_in[q];
      s_w[q] = a.w_in[q];
    }
  }
  __syncthreads();
  for (int q = threadIdx.x; q < P; q += nt) {
    const int g = s_e[q];
    int le = -1;
    if (g >= 0 && g < a.E) le = a.emap ? a.emap[g] : g;
    if (le >= a.E_local) le = -1;
    s_e[q] = le;
    if (blockIdx.x == 0) {
      a.pe[q] = le;
      a.pw[q] = s_w[q];
    }
  }
  __syncthreads();
}

/* The local pairs sorted by expert (stable): s_sorted[V], and for each
 * sorted position its group's first position s_gb and size s_gn. Returns
 * V, the number of local pairs. */
__device__ __forceinline__ int gv_pairs_sort(const int32_t *s_e, int P,
                                             int32_t *s_sorted, int32_t *s_gb,
                                             int32_t *s_gn) {
  const int nt = blockDim.x;
  int V = 0;
  for (int q = 0; q < P; q++)
    V += s_e[q] >= 0;
  for (int q = threadIdx.x; q < P; q += nt) {
    const int e = s_e[q];
    if (e < 0) continue;
    int rank = 0;
    for (int o = 0; o < P; o++) {
      const int eo = s_e[o];
      rank += eo >= 0 && (eo < e || (eo == e && o < q));
    }
    s_sorted[rank] = q;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < V; i += nt) {
    const int e = s_e[s_sorted[i]];
    int b = i, f = i;
    while (b > 0 && s_e[s_sorted[b - 1]] == e)
      b--;
    while (f + 1 < V && s_e[s_sorted[f + 1]] == e)
      f++;
    s_gb[i] = b;
    s_gn[i] = f + 1 - b;
  }
  __syncthreads();
  return V;
}

#endif
