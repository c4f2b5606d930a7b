/*
 * gemv.cu - the path for a handful of tokens (mma.h, "gemv"): two kernels
 * and no permutation, routing or combine launches.
 *
 * At one to a few tokens the layer is a weight stream: each pair's expert
 * rows are read once and meet one token vector (an expert two tokens chose
 * is read twice: gemv_call.cu limits the tokens by those repeats). Tensor
 * cores buy nothing there; what matters is bytes in flight. Each warp takes a
 * contiguous range of units of two weight rows and one vector, and streams
 * rows and vector through its own ring of GV_S shared-memory stages with
 * cp.async (GV_U 16-byte chunks of each per lane and stage): GV_S - 1
 * stages stay in flight while the warp computes, whatever the compiler does
 * with its registers (register loads were serialised against the compute
 * by ptxas, and a vector loaded at compute time cost an L2 round trip per
 * stage), and a lane only ever reads back what it copied itself, so no
 * barrier is needed. The grid is one wave of resident CTAs; contiguous
 * ranges balance the work to within one unit.
 *
 * gemv1 routes in every CTA (a warp per token: a few hundred logits from
 * L2, cheaper than a separate launch) so that its copies start at once.
 * Its GEMM can instead run on tensor cores (gemv_mma.cuh; opt-in, measured
 * slower on an H200: bench/NOTES.md, v6).
 * gemv2 reads the pair table gemv1's block 0 stored. Sums run in a fixed
 * order with no atomics: results are bit-identical run to run.
 */
#include "gemv_pairs.cuh"

#define GV_WARPS 4
#define GV_THREADS (GV_WARPS * 32)
/* The ring's shape (overridable at build time, for bench/sweep_builds.sh) */
#ifndef GV_U
#define GV_U 2 /* 16-byte chunks per row, lane and stage */
#endif
#ifndef GV_S
#define GV_S 4 /* stages per warp: GV_S - 1 in flight */
#endif
#ifndef GV_MINB
#define GV_MINB 4 /* resident CTAs per SM the registers must allow */
#endif
/* A stage: row a, row b and the vector, GV_U x 32 chunks each. */
#define GV_STAGE_BYTES (3 * GV_U * 32 * 16)
#define GV_RING_BYTES (GV_WARPS * GV_S * GV_STAGE_BYTES) /* 48 KB */
#define GV_SMEM_MAX MMA_MAX_SMEM /* ring + pair tables (sm_120: 99 KB) */

/* 16-byte async copy through L1 (the vector chunks: x or h, shared by a
 * CTA's warps); src_bytes 0 zero-fills without reading. */
__device__ __forceinline__ void gv_cp_async_ca(uint32_t dst, const void *src,
                                               int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
               "l"(src), "r"(src_bytes));
}

/* Stage g of a run: chunk idx = g * 32 GV_U + lane + 32 i of each row and
 * of the vector into slot st (row a at [i][lane], row b at [GV_U + i][lane],
 * the vector at [2 GV_U + i][lane]); chunks past tot are zero-filled
 * (nothing read). Weights bypass L1 (read once), vectors go through it. */
template <class Src>
__device__ __forceinline__ void gv_copy(const Src &src, int g, int tot,
                                        int lane, uint32_t st) {
#pragma unroll
  for (int i = 0; i < GV_U; i++) {
    const int idx = g * 32 * GV_U + lane + 32 * i;
    const bool ok = idx < tot;
    const uint4 *pa, *pb, *pv;
    float w;
    src.at(ok ? idx : 0, pa, pb, pv, w);
    cp_async16(st + (i * 32 + lane) * 16, pa, ok ? 16 : 0);
    cp_async16(st + ((GV_U + i) * 32 + lane) * 16, pb, ok ? 16 : 0);
    gv_cp_async_ca(st + ((2 * GV_U + i) * 32 + lane) * 16, pv, ok ? 16 : 0);
  }
}

/* Per-lane partial sums over a run of tot chunks: sa += w * <A, v>,
 * sb += w * <B, v>, where src.at(idx, ...) names chunk idx's two weight
 * chunks, its vector chunk and its weight. ring: this warp's GV_S stages.
 * Every stage is committed (empty ones too), so that wait_group counts
 * stages; at the end only empty stages are pending. */
template <class T, class Src>
__device__ __forceinline__ void gv_stream2(const Src &src, int tot, int lane,
                                           uint32_t ring, float &sa,
                                           float &sb) {
  const int ng = (tot + 32 * GV_U - 1) / (32 * GV_U);
#pragma unroll
  for (int p = 0; p < GV_S - 1; p++) {
    if (p < ng) gv_copy(src, p, tot, lane, ring + p * GV_STAGE_BYTES);
    cp_async_commit();
  }
  for (int g = 0; g < ng; g++) {
    const int n = g + GV_S - 1;
    if (n < ng) gv_copy(src, n, tot, lane, ring + (n % GV_S) * GV_STAGE_BYTES);
    cp_async_commit();
    cp_async_wait<GV_S - 1>();
    const uint32_t st = ring + (g % GV_S) * GV_STAGE_BYTES;
#pragma unroll
    for (int i = 0; i < GV_U; i++) {
      const int idx = g * 32 * GV_U + lane + 32 * i;
      const bool ok = idx < tot;
      const uint4 *pa, *pb, *pv;
      float w;
      src.at(ok ? idx : 0, pa, pb, pv, w);
      w = ok ? w : 0.0f;
      const uint4 v = gv_lds(st + ((2 * GV_U + i) * 32 + lane) * 16);
      const uint4 wa = gv_lds(st + (i * 32 + lane) * 16);
      const uint4 wb = gv_lds(st + ((GV_U + i) * 32 + lane) * 16);
      sa = fmaf(w, gv_dot8<T>(wa, v), sa);
      sb = fmaf(w, gv_dot8<T>(wb, v), sb);
    }
  }
}

/* Two rows of one matrix and one vector, weight 1. */
struct gv_rows_src {
  const uint4 *a, *b, *v;
  __device__ __forceinline__ void at(int idx, const uint4 *&pa,
                                     const uint4 *&pb, const uint4 *&pv,
                                     float &w) const {
    pa = a + idx;
    pb = b + idx;
    pv = v + idx;
    w = 1.0f;
  }
};

/* Columns c, c + 1 of W2 over a token's local slots, as one run of
 * nv x nch chunks (so that consecutive slots' loads overlap even when I is
 * short): chunk idx is chunk idx % nch of slot idx / nch. */
template <class T> struct gv_slots_src {
  const T *w2, *h;
  const int32_t *sq, *s_e;
  const float *s_w;
  long long ldh, HI, cI; /* H * I, c * I */
  int nch, I;
  __device__ __forceinline__ void at(int idx, const uint4 *&pa,
                                     const uint4 *&pb, const uint4 *&pv,
                                     float &w) const {
    const int j = idx / nch, ch = idx - j * nch;
    const int q = sq[j];
    const T *wr = w2 + s_e[q] * HI + cI + ch * 8;
    pa = (const uint4 *)wr;
    pb = (const uint4 *)(wr + I);
    pv = (const uint4 *)(h + q * ldh + ch * 8);
    w = s_w[q];
  }
};

/* This warp's range [*u0, *u1) of U units. */
__device__ __forceinline__ void gv_range(long long U, long long *u0,
                                         long long *u1) {
  const long long gw = (long long)blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
  const long long W = (long long)gridDim.x * GV_WARPS;
  *u0 = gw * U / W;
  *u1 = (gw + 1) * U / W;
}

#include "gemv_mma.cuh"

/* gemv1's pair tables in shared memory. */
struct gv1_tables {
  const int32_t *e, *sorted, *gb, *gn;
};

/* GEMM1 unit u: its two weight rows and vector, and where it writes. */
template <class T> struct gv1_unit {
  const T *wa, *wb, *x;
  const float *bias; /* the expert's b13, or NULL */
  T *dst;
  int rr, ra, rb;
};

/* Unit u < Ur: row rr of group [b, b + n) of sorted pairs (rows of an
 * expert go through all its pairs); u >= Ur: the shared expert, row by row
 * over the tokens. */
template <class T>
__device__ __forceinline__ gv1_unit<T> gv1_decode(const mma_gemv_args &a,
                                                  const gv1_tables &tb, int Ur,
                                                  int upp, int u) {
  gv1_unit<T> o;
  const T *W;
  int t, Irows;
  o.bias = nullptr;
  if (u < Ur) {
    const int s0 = u / upp, b = tb.gb[s0], n = tb.gn[s0];
    const int ug = u - b * upp;
    o.rr = ug / n;
    const int q = tb.sorted[b + ug - o.rr * n];
    const int e = tb.e[q];
    t = q / a.k;
    Irows = a.I;
    W = (const T *)a.w13 + (long long)e * a.N1 * a.H;
    if (a.b13) o.bias = a.b13 + (long long)e * a.N1;
    o.dst = (T *)a.h + (long long)q * a.ldh;
  } else {
    o.rr = (u - Ur) / a.M;
    t = u - Ur - o.rr * a.M;
    Irows = a.Is;
    W = (const T *)a.sw13;
    o.dst = (T *)a.h_sh + (long long)t * a.ldh_sh;
  }
  gv_rows1(a.act, Irows, o.rr, &o.ra, &o.rb);
  o.wa = W + (long long)o.ra * a.H;
  o.wb = W + (long long)o.rb * a.H;
  o.x = (const T *)a.x + (long long)t * a.H;
  return o;
}

/* Lane 0: unit o's bias, activation and store, from the warp's sums. */
template <class T>
__device__ __forceinline__ void
gv1_store(const mma_gemv_args &a, const gv1_unit<T> &o, float sa, float sb) {
  if (o.bias) {
    sa += o.bias[o.ra];
    sb += o.bias[o.rb];
  }
  if (a.act.gated) {
    o.dst[o.rr] = from_f32<T>(act_apply(a.act, sa, sb));
  } else {
    o.dst[2 * o.rr] = from_f32<T>(act_apply(a.act, sa, 0.0f));
    o.dst[2 * o.rr + 1] = from_f32<T>(act_apply(a.act, sb, 0.0f));
  }
}

/* Units [u0, u0 + nu), each one run of the ring. */
template <class T>
__device__ __forceinline__ void
gv1_run(const mma_gemv_args &a, const gv1_tables &tb, int Ur, int upp, int u0,
        int nu, int lane, uint32_t ring) {
  for (int u = u0; u < u0 + nu; u++) {
    const gv1_unit<T> o = gv1_decode<T>(a, tb, Ur, upp, u);
    float sa = 0.0f, sb = 0.0f;
    const gv_rows_src src = {(const uint4 *)o.wa, (const uint4 *)o.wb,
                             (const uint4 *)o.x};
    gv_stream2<T>(src, a.H / 8, lane, ring, sa, sb);
    sa = gv_warp_sum(sa);
    sb = gv_warp_sum(sb);
    if (lane == 0) gv1_store<T>(a, o, sa, sb);
  }
}

/* MMA: the GEMM on tensor cores (gemv_mma.cuh), else FFMA units. */
template <class T, bool MMA>
__global__ void __launch_bounds__(GV_THREADS, GV_MINB)
    gemv1_kernel(const mma_gemv_args a, const mma_route_args r) {
  extern __shared__ uint4 s_dyn4[];
  pdl_enter();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int P = a.M * a.k;
  /* The ring, then the pair table; the routing scratch aliases the ring. */
  const uint32_t ring = smem_u32(s_dyn4) + warp * GV_S * GV_STAGE_BYTES;
  int32_t *s_e = (int32_t *)((char *)s_dyn4 + GV_RING_BYTES);
  float *s_w = (float *)(s_e + P);
  gv_pairs_route(a, r, (float *)s_dyn4, GV_WARPS, s_e, s_w);
  /* Units go row by row through a group, so that a warp reads an expert's
   * row for all its pairs back to back and the repeats come from L2, not
   * DRAM. */
  int32_t *s_sorted = (int32_t *)(s_w + P), *s_gb = s_sorted + P;
  int32_t *s_gn = s_gb + P;
  const int V = gv_pairs_sort(s_e, P, s_sorted, s_gb, s_gn);

  if (MMA) {
    int32_t *sgb = s_gn + P, *sgn = sgb + P;
    const int nsg = gvm_subgroups(s_gb, s_gn, V, sgb, sgn);
    gvm_phase<T>(a, s_e, s_sorted, sgb, sgn, nsg, lane, ring);
    return;
  }
  const gv1_tables tb = {s_e, s_sorted, s_gb, s_gn};
  const int upp = a.act.gated ? a.I : a.I / 2;
  const int ups = a.act.gated ? a.Is : a.Is / 2;
  const int Ur = V * upp;
  long long u0, u1;
  gv_range(Ur + (long long)a.M * ups, &u0, &u1);
  gv1_run<T>(a, tb, Ur, upp, (int)u0, (int)(u1 - u0), lane, ring);
}

template <class T>
__global__ void __launch_bounds__(GV_THREADS, GV_MINB)
    gemv2_kernel(const mma_gemv_args a) {
  extern __shared__ uint4 s_dyn4[];
  pdl_enter();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int P = a.M * a.k, k = a.k;
  const uint32_t ring = smem_u32(s_dyn4) + warp * GV_S * GV_STAGE_BYTES;
  int32_t *s_e = (int32_t *)((char *)s_dyn4 + GV_RING_BYTES);
  float *s_w = (float *)(s_e + P);
  int32_t *s_q = (int32_t *)(s_w + P); /* [M][k] local slots' pairs */
  int32_t *s_nv = s_q + P;             /* [M] their count */
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
    /* column pair by column pair over the tokens: tokens on the same
     * expert read its rows back to back (repeats from L2) */
    const int cp = (int)(u / a.M), t = (int)(u - (long long)cp * a.M);
    const int c = 2 * cp;
    const int nv = s_nv[t];
    const int32_t *sq = s_q + t * k;
    float sa = 0.0f, sb = 0.0f;
    if (nv > 0) {
      const gv_slots_src<T> src = {
          (const T *)a.w2,  (const T *)a.h,   sq,  s_e, s_w, a.ldh,
          (long long)H * I, (long long)c * I, nch, I};
      gv_stream2<T>(src, nv * nch, lane, ring, sa, sb);
    }
    for (int j = lane; a.b2 && j < nv; j += 32) {
      const int q = sq[j];
      const float *b = a.b2 + (long long)s_e[q] * H + c;
      sa = fmaf(s_w[q], b[0], sa);
      sb = fmaf(s_w[q], b[1], sb);
    }
    if (a.Is) {
      const T *W = (const T *)a.sw2 + (long long)c * a.Is;
      const gv_rows_src src = {
          (const uint4 *)W, (const uint4 *)(W + a.Is),
          (const uint4 *)((const T *)a.h_sh + (long long)t * a.ldh_sh)};
      gv_stream2<T>(src, a.Is / 8, lane, ring, sa, sb);
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

/* Dynamic shared memory of both kernels for M tokens (the larger, gemv2's
 * tables), or 0 when they or the routing scratch do not fit. */
extern "C" size_t mma_gemv_smem(int M, int k, int E) {
  const int rw = M < GV_WARPS ? M : GV_WARPS;
  const size_t route = (size_t)rw * (2 * E + k) * sizeof(float);
  const size_t bytes = GV_RING_BYTES + ((size_t)7 * M * k + M) * 4;
  return route <= GV_RING_BYTES && bytes <= GV_SMEM_MAX ? bytes : 0;
}

/* The shared-memory opt-in of both kernels; the occupancy is that of the
 * ring and 4 KB of tables. */
extern "C" cudaError_t mma_gemv_prepare(moe_dtype dt, int *occ1, int *occ2) {
  cudaError_t e = cudaErrorInvalidValue;
  *occ1 = *occ2 = 0;
  const int sm = GV_RING_BYTES + 4096;
#define GV_PREP(T, DT)                                                         \
  case DT:                                                                     \
    e = cudaFuncSetAttribute(gemv1_kernel<T, false>,                           \
                             cudaFuncAttributeMaxDynamicSharedMemorySize,      \
                             GV_SMEM_MAX);                                     \
    if (e == cudaSuccess)                                                      \
      e = cudaFuncSetAttribute(gemv1_kernel<T, true>,                          \
                               cudaFuncAttributeMaxDynamicSharedMemorySize,    \
                               GV_SMEM_MAX);                                   \
    if (e == cudaSuccess)                                                      \
      e = cudaFuncSetAttribute(gemv2_kernel<T>,                                \
                               cudaFuncAttributeMaxDynamicSharedMemorySize,    \
                               GV_SMEM_MAX);                                   \
    if (e == cudaSuccess)                                                      \
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(                       \
          occ1, gemv1_kernel<T, false>, GV_THREADS, sm);                       \
    if (e == cudaSuccess)                                                      \
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(occ2, gemv2_kernel<T>, \
                                                        GV_THREADS, sm);       \
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
  /* units: FFMA two weight rows x a pair; MMA 8 weight rows x at most 8
   * pairs of an expert (at most one sub-group a pair) */
  const long long rb = a->act.gated ? a->I / 4 : a->I / 8;
  const long long rbs = a->act.gated ? a->Is / 4 : a->Is / 8;
  const unsigned g1 =
      a->mma1 ? gv_grid((long long)a->M * a->k * rb + rbs, ctas1)
              : gv_grid((long long)a->M * a->k * upp + (long long)a->M * ups,
                        ctas1);
  const unsigned g2 = gv_grid((long long)a->M * (a->H / 2), ctas2);
  const size_t sm1 = GV_RING_BYTES + (size_t)7 * a->M * a->k * 4;
  const size_t sm2 = mma_gemv_smem(a->M, a->k, a->E);
  if (!sm2) return cudaErrorInvalidValue;
  cudaError_t e = cudaErrorInvalidValue;
#define GV_CASE(T, DT)                                                         \
  case DT:                                                                     \
    e = a->mma1 ? launch_kernel(gemv1_kernel<T, true>, dim3(g1),               \
                                dim3(GV_THREADS), sm1, s, a->pdl, *a, *r)      \
                : launch_kernel(gemv1_kernel<T, false>, dim3(g1),              \
                                dim3(GV_THREADS), sm1, s, a->pdl, *a, *r);     \
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
