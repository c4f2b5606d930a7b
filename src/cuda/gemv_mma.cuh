/*
 * gemv_mma.cuh - gemv1's GEMM on tensor cores (included by gemv.cu after
 * its ring definitions, GV_*).
 *
 * The FFMA units spend two instructions per bf16 weight and lane (unpack,
 * FMA) and left gemv1 bound by instruction issue (bench/NOTES.md, v6).
 * Here a unit is 8 weight rows of one expert times the tokens that chose
 * it (at most 8: a group of sorted pairs is cut into sub-groups of 8), and
 * mma.sync m16n8k16 takes 128 weights per instruction: the tokens are A's
 * rows 0-7 (rows 8-15 are zero registers), the weight rows are B's 8
 * columns. An expert chosen by several of the call's tokens is read once.
 *
 * Rows are placed in shared memory so that a lane's two accumulators are
 * the two values its output needs: lane (g, c) = (lane / 4, lane % 4) holds
 * D[token g][rows 2c, 2c + 1], so shared-memory row 2c is gate j and row
 * 2c + 1 up j (j = 4 rb + c) for gated layers, or rows 8 rb + 2c, + 1 for
 * plain ones. A stage is 64 k: 8 weight rows and 8 token rows of 128 bytes,
 * 16-byte chunks XOR-swizzled by row (conflict-free 4-byte fragment loads).
 * Each unit is one run of the warp's ring (GVM_S stages, GVM_S - 1 in
 * flight) in the same 12 KB per warp as the FFMA ring.
 */
#ifndef MOE_CUDA_GEMV_MMA_CUH
#define MOE_CUDA_GEMV_MMA_CUH

#define GVM_BK 64      /* k per stage */
#define GVM_STAGE 2048 /* weights 1 KB, then tokens 1 KB */
#define GVM_S (GV_S * GV_STAGE_BYTES / GVM_STAGE)

__device__ __forceinline__ uint32_t gvm_lds32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}

/* Byte offset of 16-byte chunk j of row r in a stage's 8 x 128-byte half. */
__device__ __forceinline__ uint32_t gvm_at(int r, int j) {
  return (uint32_t)(r * 128 + ((j ^ r) << 4));
}

/* Sub-groups: each group (an expert's run of sorted pairs) cut into runs of
 * at most 8 pairs; sgb[i] = the first sorted index, sgn[i] = the count.
 * Returns their number (to every thread) after a block barrier. */
__device__ __forceinline__ int gvm_subgroups(const int32_t *gb,
                                             const int32_t *gn, int V,
                                             int32_t *sgb, int32_t *sgn) {
  for (int i = threadIdx.x; i < V; i += GV_THREADS) {
    if ((i - gb[i]) & 7) continue;
    int r = 0;
    for (int j = 0; j < i; j++)
      r += ((j - gb[j]) & 7) == 0;
    const int left = gb[i] + gn[i] - i;
    sgb[r] = i;
    sgn[r] = left < 8 ? left : 8;
  }
  int n = 0;
  for (int j = 0; j < V; j++)
    n += ((j - gb[j]) & 7) == 0;
  __syncthreads();
  return n;
}

/* Stage g of a unit into st: this lane's chunk j = lane % 8 of weight rows
 * r0, r0 + 4 (w0, w1) and of token rows r0, r0 + 4 (x0, x1; NULL: no such
 * token); past H zero-filled. */
template <class T>
__device__ __forceinline__ void gvm_copy(const T *w0, const T *w1, const T *x0,
                                         const T *x1, int H, int g, int lane,
                                         uint32_t st) {
  const int r0 = lane >> 3, j = lane & 7, k = g * GVM_BK + 8 * j;
  const bool ok = k < H;
  const int kk = ok ? k : 0, n = ok ? 16 : 0;
  cp_async16(st + gvm_at(r0, j), w0 + kk, n);
  cp_async16(st + gvm_at(r0 + 4, j), w1 + kk, n);
  if (x0) gv_cp_async_ca(st + 1024 + gvm_at(r0, j), x0 + kk, n);
  if (x1) gv_cp_async_ca(st + 1024 + gvm_at(r0 + 4, j), x1 + kk, n);
}

/* d (+)= tokens x weight rows over K = H for one unit of nt tokens. */
template <class T>
__device__ __forceinline__ void gvm_unit(const T *w0, const T *w1, const T *x0,
                                         const T *x1, int nt, int H, int lane,
                                         uint32_t ring, float (&d)[4]) {
  const int ng = (H + GVM_BK - 1) / GVM_BK;
  const int g8 = lane >> 2, c = lane & 3;
  const int xr = g8 < nt ? g8 : nt - 1; /* rows past nt: a copy, dropped */
#pragma unroll
  for (int p = 0; p < GVM_S - 1; p++) {
    if (p < ng) gvm_copy(w0, w1, x0, x1, H, p, lane, ring + p * GVM_STAGE);
    cp_async_commit();
  }
  for (int g = 0; g < ng; g++) {
    const int n = g + GVM_S - 1;
    if (n < ng)
      gvm_copy(w0, w1, x0, x1, H, n, lane, ring + (n % GVM_S) * GVM_STAGE);
    cp_async_commit();
    cp_async_wait<GVM_S - 1>();
    __syncwarp(); /* lanes read the chunks other lanes copied */
    const uint32_t st = ring + (g % GVM_S) * GVM_STAGE;
#pragma unroll
    for (int s = 0; s < GVM_BK / 16; s++) {
      uint32_t a[4];
      a[0] = gvm_lds32(st + 1024 + gvm_at(xr, 2 * s) + 4 * c);
      a[2] = gvm_lds32(st + 1024 + gvm_at(xr, 2 * s + 1) + 4 * c);
      a[1] = a[3] = 0u;
      const uint32_t b0 = gvm_lds32(st + gvm_at(g8, 2 * s) + 4 * c);
      const uint32_t b1 = gvm_lds32(st + gvm_at(g8, 2 * s + 1) + 4 * c);
      mma_16816<T>(d, a, b0, b1);
    }
    __syncwarp(); /* every lane is done with the stage the next copy fills */
  }
}

/* Lane (g, c)'s outputs of a unit: gated, h[j] = act(gate j, up j) for
 * j = 4 rb + c; plain, h[j], h[j + 1] for j = 8 rb + 2 c. */
template <class T>
__device__ __forceinline__ void
gvm_store(const mma_gemv_args &a, T *dst, const float *bias, bool gated,
          bool halves, int Irows, int rb, int c, const float (&d)[4]) {
  if (gated) {
    const int j = 4 * rb + c;
    const int bg = halves ? j : 2 * j, bu = halves ? Irows + j : 2 * j + 1;
    const float gt = d[0] + (bias ? bias[bg] : 0.0f);
    const float up = d[1] + (bias ? bias[bu] : 0.0f);
    dst[j] = from_f32<T>(act_apply(a.act, gt, up));
  } else {
    const int j = 8 * rb + 2 * c;
    const float v0 = d[0] + (bias ? bias[j] : 0.0f);
    const float v1 = d[1] + (bias ? bias[j + 1] : 0.0f);
    dst[j] = from_f32<T>(act_apply(a.act, v0, 0.0f));
    dst[j + 1] = from_f32<T>(act_apply(a.act, v1, 0.0f));
  }
}

/* gemv1's GEMM over this warp's range of units: (sub-group, block of 8
 * weight rows), then the shared expert's blocks over all the call's
 * tokens. */
template <class T>
__device__ __forceinline__ void
gvm_phase(const mma_gemv_args &a, const int32_t *s_e, const int32_t *sorted,
          const int32_t *sgb, const int32_t *sgn, int nsg, int lane,
          uint32_t ring) {
  const bool gated = a.act.gated, halves = a.act.gated && !a.act.interleaved;
  const int H = a.H;
  const int RB = gated ? a.I / 4 : a.I / 8;
  const int RBs = gated ? a.Is / 4 : a.Is / 8;
  const long long Ur = (long long)nsg * RB;
  long long u, u1;
  gv_range(Ur + RBs, &u, &u1);
  const int r0 = lane >> 3, r1 = r0 + 4, g8 = lane >> 2, c = lane & 3;
  for (; u < u1; u++) {
    const T *W;
    const float *bias = nullptr;
    int rb, nt, b = 0, Irows;
    if (u < Ur) {
      const int sg = (int)(u / RB);
      rb = (int)(u - (long long)sg * RB);
      b = sgb[sg];
      nt = sgn[sg];
      const int e = s_e[sorted[b]];
      W = (const T *)a.w13 + (long long)e * a.N1 * H;
      if (a.b13) bias = a.b13 + (long long)e * a.N1;
      Irows = a.I;
    } else {
      rb = (int)(u - Ur);
      nt = a.M;
      W = (const T *)a.sw13;
      Irows = a.Is;
    }
    /* the weight rows of shared-memory rows r0 and r1 (r1 odd iff r0 is) */
    const int wr0 =
        halves ? ((r0 & 1) ? Irows : 0) + 4 * rb + (r0 >> 1) : 8 * rb + r0;
    const int wr1 =
        halves ? ((r1 & 1) ? Irows : 0) + 4 * rb + (r1 >> 1) : 8 * rb + r1;
    /* tokens of x rows r0, r1 */
    const T *x0 = nullptr, *x1 = nullptr;
    if (r0 < nt) {
      const int t = u < Ur ? sorted[b + r0] / a.k : r0;
      x0 = (const T *)a.x + (long long)t * H;
    }
    if (r1 < nt) {
      const int t = u < Ur ? sorted[b + r1] / a.k : r1;
      x1 = (const T *)a.x + (long long)t * H;
    }
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    gvm_unit<T>(W + (long long)wr0 * H, W + (long long)wr1 * H, x0, x1, nt, H,
                lane, ring, d);
    if (g8 < nt) {
      T *dst = u < Ur ? (T *)a.h + (long long)sorted[b + g8] * a.ldh
                      : (T *)a.h_sh + (long long)g8 * a.ldh_sh;
      gvm_store<T>(a, dst, bias, gated, halves, Irows, rb, c, d);
    }
  }
}

#endif
