/*
 * gemv.cu - the path for a handful of tokens (mma.h, "gemv"): two kernels
 * and no permutation, routing or combine launches.
 *
 * At one to a few tokens the layer is a weight stream: each touched expert's
 * rows are read once and meet one or two token vectors. Tensor cores buy
 * nothing there; what matters is bytes in flight. Each warp takes a
 * contiguous range of units of two weight rows and one vector; per group a
 * lane issues GV_U 16-byte loads of each row (ld.global.nc, no L1
 * allocation) before it uses any, so a warp keeps 2 x GV_U x 512 bytes of
 * weights in flight with no shared-memory staging. The grid is one wave of
 * resident CTAs; contiguous ranges balance the work to within one unit.
 *
 * gemv1 routes in every CTA (a warp per token: a few hundred logits from
 * L2, cheaper than a separate launch) so that its loads start at once.
 * gemv2 reads the pair table gemv1's block 0 stored. Sums run in a fixed
 * order with no atomics: results are bit-identical run to run.
 */
#include "route.cuh"

#define GV_WARPS 8
#define GV_THREADS (GV_WARPS * 32)
#define GV_U1 4 /* 16-byte chunks per row in flight per lane, gemv1 */
#define GV_U2 8 /* ... gemv2 (fewer, longer-lived warps at one token) */

/* 16-byte loads, zeros where !ok (predicated inside the asm, so that no
 * load is ever issued out of bounds). Weights are read once: keep them out
 * of L1 (L2 still serves a re-read by another pair of the same expert);
 * vectors (x, h) are shared by a CTA's warps: cached. A group's loads are
 * issued before its first use only when the kernel may hold them all in
 * registers (launch bounds of two CTAs per SM: with the default 64
 * registers ptxas put each load next to its use, two loads in flight). */
__device__ __forceinline__ uint4 gv_ld_stream(const void *p, bool ok) {
  uint4 v;
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n"
      " mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n"
      " @q ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"((int)ok));
  return v;
}
__device__ __forceinline__ uint4 gv_ld_vec(const void *p, bool ok) {
  uint4 v;
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n"
      " mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n"
      " @q ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "r"((int)ok));
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

/* Per-lane partial dot products of rows a and b (nch 16-byte chunks each)
 * with vector v, accumulated into sa, sb (scaled by wt). */
template <class T, int U>
__device__ __forceinline__ void gv_dot2(const void *a, const void *b,
                                        const void *v, int nch, int lane,
                                        float wt, float &sa, float &sb) {
  const uint4 *pa = (const uint4 *)a, *pb = (const uint4 *)b;
  const uint4 *pv = (const uint4 *)v;
  for (int c0 = lane; c0 < nch; c0 += 32 * U) {
    uint4 xa[U], xb[U], xv[U];
#pragma unroll
    for (int i = 0; i < U; i++) {
      const int c = c0 + 32 * i;
      const bool ok = c < nch;
      xa[i] = gv_ld_stream(pa + c, ok);
      xb[i] = gv_ld_stream(pb + c, ok);
      xv[i] = gv_ld_vec(pv + c, ok);
    }
#pragma unroll
    for (int i = 0; i < U; i++) {
      sa = fmaf(wt, gv_dot8<T>(xa[i], xv[i]), sa);
      sb = fmaf(wt, gv_dot8<T>(xb[i], xv[i]), sb);
    }
  }
}

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

/* This warp's range [*u0, *u1) of U units. */
__device__ __forceinline__ void gv_range(long long U, long long *u0,
                                         long long *u1) {
  const long long gw = (long long)blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
  const long long W = (long long)gridDim.x * GV_WARPS;
  *u0 = gw * U / W;
  *u1 = (gw + 1) * U / W;
}

template <class T>
__global__ void __launch_bounds__(GV_THREADS, 2)
    gemv1_kernel(const mma_gemv_args a, const mma_route_args r) {
  extern __shared__ float s_dyn[];
  pdl_enter();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int P = a.M * a.k;
  int32_t *s_e = (int32_t *)s_dyn;
  float *s_w = s_dyn + P;
  if (r.logits) {
    float *key = s_dyn + 2 * P + warp * (2 * r.E + r.k);
    for (int t = warp; t < a.M; t += GV_WARPS)
      route_token_warp_to(r, t, key, s_e + t * a.k, s_w + t * a.k);
  } else {
    for (int q = threadIdx.x; q < P; q += GV_THREADS) {
      s_e[q] = a.ids_in[q];
      s_w[q] = a.w_in[q];
    }
  }
  __syncthreads();
  for (int q = threadIdx.x; q < P; q += GV_THREADS) {
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

  const int H = a.H, nch = H / 8;
  const long long upp = a.act.gated ? a.I : a.I / 2;
  const long long ups = a.act.gated ? a.Is : a.Is / 2;
  const long long Ur = (long long)P * upp;
  long long u, u1;
  gv_range(Ur + (long long)a.M * ups, &u, &u1);
  for (; u < u1; u++) {
    const T *W;
    const float *bias = nullptr;
    T *dst;
    int t, rr, Irows;
    if (u < Ur) {
      const int q = (int)(u / upp), e = s_e[q];
      rr = (int)(u - (long long)q * upp);
      if (e < 0) continue; /* uniform across the warp */
      t = q / a.k;
      Irows = a.I;
      W = (const T *)a.w13 + (long long)e * a.N1 * H;
      if (a.b13) bias = a.b13 + (long long)e * a.N1;
      dst = (T *)a.h + (long long)q * a.ldh;
    } else {
      t = (int)((u - Ur) / ups);
      rr = (int)(u - Ur - (long long)t * ups);
      Irows = a.Is;
      W = (const T *)a.sw13;
      dst = (T *)a.h_sh + (long long)t * a.ldh_sh;
    }
    int ra, rb;
    gv_rows1(a.act, Irows, rr, &ra, &rb);
    float sa = 0.0f, sb = 0.0f;
    gv_dot2<T, GV_U1>(W + (long long)ra * H, W + (long long)rb * H,
                      (const T *)a.x + (long long)t * H, nch, lane, 1.0f, sa,
                      sb);
    sa = gv_warp_sum(sa);
    sb = gv_warp_sum(sb);
    if (lane == 0) {
      if (bias) {
        sa += bias[ra];
        sb += bias[rb];
      }
      if (a.act.gated) {
        dst[rr] = from_f32<T>(act_apply(a.act, sa, sb));
      } else {
        dst[2 * rr] = from_f32<T>(act_apply(a.act, sa, 0.0f));
        dst[2 * rr + 1] = from_f32<T>(act_apply(a.act, sb, 0.0f));
      }
    }
  }
}

template <class T>
__global__ void __launch_bounds__(GV_THREADS, 2)
    gemv2_kernel(const mma_gemv_args a) {
  extern __shared__ float s_dyn[];
  pdl_enter();
  const int lane = threadIdx.x & 31;
  const int P = a.M * a.k, k = a.k;
  int32_t *s_e = (int32_t *)s_dyn;
  float *s_w = s_dyn + P;
  int32_t *s_q = (int32_t *)(s_dyn + 2 * P); /* [M][k] local slots' pairs */
  int32_t *s_nv = s_q + P;                   /* [M] their count */
  for (int q = threadIdx.x; q < P; q += GV_THREADS) {
    s_e[q] = a.pe[q];
    s_w[q] = a.pw[q];
  }
  __syncthreads();
  for (int t = threadIdx.x; t < a.M; t += GV_THREADS) {
    int nv = 0;
    for (int j = 0; j < k; j++)
      if (s_e[t * k + j] >= 0) s_q[t * k + nv++] = t * k + j;
    s_nv[t] = nv;
  }
  __syncthreads();

  const int H = a.H, I = a.I, nch = I / 8, hp = H / 2;
  long long u, u1;
  gv_range((long long)a.M * hp, &u, &u1);
  for (; u < u1; u++) {
    const int t = (int)(u / hp), c = 2 * (int)(u - (long long)t * hp);
    const int nv = s_nv[t], tot = nv * nch;
    const int32_t *sq = s_q + t * k;
    float sa = 0.0f, sb = 0.0f;
    /* The token's local slots as one run of nv x nch chunks, so that the
     * loads of consecutive slots overlap even when I is short. */
    for (int i0 = lane; i0 < tot; i0 += 32 * GV_U2) {
      uint4 xa[GV_U2], xb[GV_U2], xv[GV_U2];
      float wt[GV_U2];
#pragma unroll
      for (int i = 0; i < GV_U2; i++) {
        const int idx = i0 + 32 * i;
        const bool ok = idx < tot;
        const int j = ok ? idx / nch : 0, ch = idx - j * nch;
        const int q = sq[j], e = s_e[q];
        const T *wr = (const T *)a.w2 + ((long long)e * H + c) * I + ch * 8;
        const T *hv = (const T *)a.h + (long long)q * a.ldh + ch * 8;
        xa[i] = gv_ld_stream(wr, ok);
        xb[i] = gv_ld_stream(wr + I, ok);
        xv[i] = gv_ld_vec(hv, ok);
        wt[i] = ok ? s_w[q] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < GV_U2; i++) {
        sa = fmaf(wt[i], gv_dot8<T>(xa[i], xv[i]), sa);
        sb = fmaf(wt[i], gv_dot8<T>(xb[i], xv[i]), sb);
      }
    }
    for (int j = lane; a.b2 && j < nv; j += 32) {
      const int q = sq[j];
      const float *b = a.b2 + (long long)s_e[q] * H + c;
      sa = fmaf(s_w[q], b[0], sa);
      sb = fmaf(s_w[q], b[1], sb);
    }
    if (a.Is) {
      const T *W = (const T *)a.sw2 + (long long)c * a.Is;
      gv_dot2<T, GV_U2 / 2>(W, W + a.Is,
                            (const T *)a.h_sh + (long long)t * a.ldh_sh,
                            a.Is / 8, lane, 1.0f, sa, sb);
    }
    sa = gv_warp_sum(sa);
    sb = gv_warp_sum(sb);
    if (lane == 0) {
      T *o = (T *)a.out + (long long)t * H + c;
      o[0] = from_f32<T>(sa);
      o[1] = from_f32<T>(sb);
    }
  }
}

#define GV_ENTRY(T, DT) {DT, MMA_ACTS_GATED, MMA_ACTS_PLAIN},
static const mma_inst gemv_table[] = {MMA_DTYPES(GV_ENTRY)};

extern "C" int mma_gemv_instances(const mma_inst **tab) {
  *tab = gemv_table;
  return (int)(sizeof gemv_table / sizeof gemv_table[0]);
}

extern "C" size_t mma_gemv_smem(int M, int k, int E, int route) {
  const int rw = M < GV_WARPS ? M : GV_WARPS;
  size_t f = (size_t)2 * M * k; /* pair table */
  if (route) f += (size_t)rw * (2 * E + k);
  const size_t f2 = (size_t)4 * M * k + M; /* gemv2: table + slot lists */
  return (f > f2 ? f : f2) * sizeof(float);
}

/* Both kernels take at most 48 KB of dynamic shared memory (no opt-in);
 * the occupancy is that of the largest use. */
extern "C" cudaError_t mma_gemv_prepare(moe_dtype dt, int *occ1, int *occ2) {
  cudaError_t e = cudaErrorInvalidValue;
  *occ1 = *occ2 = 0;
#define GV_PREP(T, DT)                                                         \
  case DT:                                                                     \
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(occ1, gemv1_kernel<T>,   \
                                                      GV_THREADS, 48 * 1024);  \
    if (e == cudaSuccess)                                                      \
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(                       \
          occ2, gemv2_kernel<T>, GV_THREADS, 48 * 1024);                       \
    break;
  switch (dt) {
    MMA_DTYPES(GV_PREP)
  default:
    break;
  }
  return e;
}

/* CTAs for U units: at most ctas, at least one unit per warp. */
static unsigned gv_grid(long long U, long long ctas) {
  long long g = (U + GV_WARPS - 1) / GV_WARPS;
  if (g > ctas) g = ctas;
  return g < 1 ? 1u : (unsigned)g;
}

extern "C" cudaError_t mma_launch_gemv(moe_dtype dt, const mma_gemv_args *a,
                                       const mma_route_args *r, long long ctas1,
                                       long long ctas2, cudaStream_t s) {
  if (a->M <= 0) return cudaSuccess;
  const long long upp = a->act.gated ? a->I : a->I / 2;
  const long long ups = a->act.gated ? a->Is : a->Is / 2;
  const unsigned g1 =
      gv_grid((long long)a->M * a->k * upp + (long long)a->M * ups, ctas1);
  const unsigned g2 = gv_grid((long long)a->M * (a->H / 2), ctas2);
  const size_t sm1 = mma_gemv_smem(a->M, a->k, a->E, r->logits != NULL);
  const size_t sm2 = ((size_t)4 * a->M * a->k + a->M) * sizeof(float);
  cudaError_t e = cudaErrorInvalidValue;
#define GV_CASE(T, DT)                                                         \
  case DT:                                                                     \
    e = launch_kernel(gemv1_kernel<T>, dim3(g1), dim3(GV_THREADS), sm1, s,     \
                      a->pdl, *a, *r);                                         \
    if (e == cudaSuccess)                                                      \
      e = launch_kernel(gemv2_kernel<T>, dim3(g2), dim3(GV_THREADS), sm2, s,   \
                        a->pdl, *a);                                           \
    break;
  switch (dt) {
    MMA_DTYPES(GV_CASE)
  default:
    break;
  }
  return e;
}
