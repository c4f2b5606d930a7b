/*
 * epi_sm90.cuh - the epilogues of cuda-sm90's GEMMs (gemm_sm90.cu): GEMM1's
 * bias + activation and GEMM2's bias + routing weight, from a consumer
 * warpgroup's 64 x 256 accumulators (wgmma m64n256 layout: thread (warp w,
 * lane l) holds rows 16 w + l / 4 (+ 8) and columns 8 g + 2 (l % 4) (+ 1)
 * of its 64 rows, g = 0..31) to global memory.
 *
 * Three ways out (sm90.h says which a build uses):
 *   direct            each thread stores its own pairs (a warp store: a
 *                     16-byte piece of eight rows). What tiles outside the
 *                     common one take (bias-free or not: N tails, odd
 *                     strides, f32 Y); the common tile of both GEMMs goes
 *                     by bulk copies (epi_fast_sm90.cuh, cuda-sm90 v24).
 *   staged            (-DSM90_STAGED_EPI) each warpgroup writes its results
 *                     as T into its own staging tile in shared memory (64
 *                     rows x 128 values), then copies the tile out in
 *                     16-byte chunks, a warp storing whole rows; outputs
 *                     wider than 128 values (plain GEMM1, GEMM2) go in two
 *                     passes; f32 Y (MOE_SM90_Y32) stays direct. Measured
 *                     against direct (bench/NOTES.md, cuda-sm90 v6): 4-6 %
 *                     faster for gpt-oss at 4096-16384 tokens, 1-5 % slower
 *                     for the other presets.
 *   bulk              staged, but each row of the staging tile leaves by
 *                     one asynchronous bulk copy (cp.async.bulk, shared ->
 *                     global) issued by one thread, so that the consumers
 *                     go on to the next tile's MMAs while the rows drain; a
 *                     thread waits for its copies to have read the tile
 *                     only before the tile is written again. Unaligned rows
 *                     or a width not a multiple of eight values take the
 *                     staged copy loop. The default for GEMM1's interleaved
 *                     layout (one 2-byte value a column pair: gpt-oss 2-4 %
 *                     faster at 4096-16384 tokens); -DSM90_BULK_EPI=1 for
 *                     every 16-bit output (gpt-oss 6-9 %, the other presets
 *                     1-2 % slower; bench/NOTES.md cuda-sm90 v8).
 * Both compute the same values in the same order: outputs are identical.
 */
#ifndef MOE_CUDA_SM90_EPI_SM90_CUH
#define MOE_CUDA_SM90_EPI_SM90_CUH

#include "../cuda/common.cuh"
#include "sm90.h"

struct sm90_tile {
  int pi, e, row0, row_end, nt;
};

#ifdef SM90_DEVICE
/* Two adjacent elements of T in one 4-byte store (p 4-byte aligned). */
__device__ __forceinline__ void store2(__nv_bfloat16 *p, float a, float b) {
  *(__nv_bfloat162 *)p = __floats2bfloat162_rn(a, b);
}
__device__ __forceinline__ void store2(__half *p, float a, float b) {
  *(__half2 *)p = __floats2half2_rn(a, b);
}

/* GEMM1 epilogue: bias + activation ACT (a compile-time constant, so the
 * unrolled epilogue holds one activation's code, not a switch per
 * element), act rows of T; a thread's two adjacent columns go out in one
 * store. */
template <class T, int ACT>
__device__ __forceinline__ void epi_gemm1_direct(const sm90_gemm_args &a,
                                                 const sm90_tile &tl,
                                                 const float (&d)[128], int c) {
  const sm90_problem &P = a.p[tl.pi];
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride : nullptr;
  mma_act ac = a.act;
#ifndef SM90_ACT_RT /* measurement: the old per-element switch */
  ac.act = ACT;
#endif
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int row = tl.row0 + c * 64 + w * 16 + (l >> 2) + 8 * h;
    if (row >= tl.row_end) continue;
    T *o = (T *)P.out + row * P.ldo;
    const int even = (P.ldo & 1) == 0; /* rows 4-byte aligned */
    if (ac.gated && P.halves) {
      /* columns 0-127: gate j0 + c, columns 128-255: up j0 + c */
      const int I = P.N >> 1, j0 = tl.nt * (SM90_BN / 2);
      if (!b && even && j0 + SM90_BN / 2 <= I) {
        /* the common tile: no bias, every j inside I, no tests */
        T *oj = o + j0 + 2 * (l & 3);
#pragma unroll
        for (int g = 0; g < 16; g++)
          store2(
              oj + 8 * g,
              act_apply(ac, d[g * 4 + h * 2], d[(g + 16) * 4 + h * 2]),
              act_apply(ac, d[g * 4 + h * 2 + 1], d[(g + 16) * 4 + h * 2 + 1]));
        continue;
      }
#pragma unroll
      for (int g = 0; g < 16; g++) {
        const int j = j0 + 8 * g + 2 * (l & 3);
        if (j >= I) continue;
        float v[2];
#pragma unroll
        for (int q = 0; q < 2; q++) {
          const int jq = j + q < I ? j + q : j;
          float gt = d[g * 4 + h * 2 + q] + (b ? b[jq] : 0.0f);
          float up = d[(g + 16) * 4 + h * 2 + q] + (b ? b[I + jq] : 0.0f);
          v[q] = act_apply(ac, gt, up);
        }
        if (j + 1 < I && even) {
          store2(o + j, v[0], v[1]);
        } else {
          o[j] = from_f32<T>(v[0]);
          if (j + 1 < I) o[j + 1] = from_f32<T>(v[1]);
        }
      }
    } else if (ac.gated) {
      /* interleaved rows: columns (2j, 2j + 1) are (gate j, up j) */
#pragma unroll
      for (int g = 0; g < 32; g++) {
        const int col = tl.nt * SM90_BN + 8 * g + 2 * (l & 3);
        if (col >= P.N) continue;
        const int j = col >> 1;
        float gt = d[g * 4 + h * 2] + (b ? b[2 * j] : 0.0f);
        float up = d[g * 4 + h * 2 + 1] + (b ? b[2 * j + 1] : 0.0f);
        o[j] = from_f32<T>(act_apply(ac, gt, up));
      }
    } else if (!b && even && tl.nt * SM90_BN + SM90_BN <= P.N) {
      /* plain rows, the common tile: no bias, every column inside N */
      T *oc = o + tl.nt * SM90_BN + 2 * (l & 3);
#pragma unroll
      for (int g = 0; g < 32; g++)
        store2(oc + 8 * g, act_apply(ac, d[g * 4 + h * 2], 0.0f),
               act_apply(ac, d[g * 4 + h * 2 + 1], 0.0f));
    } else {
#pragma unroll
      for (int g = 0; g < 32; g++) {
        const int col = tl.nt * SM90_BN + 8 * g + 2 * (l & 3);
        if (col >= P.N) continue;
        const float v0 =
            act_apply(ac, d[g * 4 + h * 2] + (b ? b[col] : 0.0f), 0.0f);
        if (col + 1 < P.N) {
          const float v1 = act_apply(
              ac, d[g * 4 + h * 2 + 1] + (b ? b[col + 1] : 0.0f), 0.0f);
          if (even) {
            store2(o + col, v0, v1);
          } else {
            o[col] = from_f32<T>(v0);
            o[col + 1] = from_f32<T>(v1);
          }
        } else {
          o[col] = from_f32<T>(v0);
        }
      }
    }
  }
}

/* A thread's two rows of a GEMM2 tile: each one's Y row (-1: past the
 * tile's end) and routing weight, read while the tile's MMAs run instead
 * of after them: the rows when the tile starts (epi2_rows_y), the weights,
 * which depend on them, once the first K step's MMAs are issued
 * (epi2_rows_w). */
struct sm90_rows2 {
  int y[2];
  float rw[2];
  int yc; /* args.epi_bulk & 1: the Y row this thread copies (thread t < 64
             of the warpgroup: row t of its 64), -1 none */
};

__device__ __forceinline__ void epi2_rows_y(const sm90_gemm_args &a,
                                            const sm90_tile &tl, int c,
                                            sm90_rows2 &r) {
  const sm90_problem &P = a.p[tl.pi];
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int row = tl.row0 + c * 64 + w * 16 + (l >> 2) + 8 * h;
    r.y[h] = row >= tl.row_end ? -1
             : P.out_rows      ? __ldg(P.out_rows + row)
                               : row;
  }
  const int t = threadIdx.x & 127, row = tl.row0 + c * 64 + t;
  r.yc = -1;
  if ((a.epi_bulk & 1) && t < 64 && row < tl.row_end)
    r.yc = P.out_rows ? __ldg(P.out_rows + row) : row;
}

__device__ __forceinline__ void
epi2_rows_w(const sm90_gemm_args &a, const sm90_tile &tl, sm90_rows2 &r) {
  const sm90_problem &P = a.p[tl.pi];
#pragma unroll
  for (int h = 0; h < 2; h++)
    r.rw[h] = P.row_w && r.y[h] >= 0 ? __ldg(P.row_w + r.y[h]) : 1.0f;
}

/* GEMM2 epilogue: bias, routing weight, the row's pair of Y (f32, or T
 * when args.y_t); rr from epi2_rows_y and epi2_rows_w. */
template <class T>
__device__ __forceinline__ void
epi_gemm2_direct(const sm90_gemm_args &a, const sm90_tile &tl,
                 const float (&d)[128], const sm90_rows2 &rr) {
  const sm90_problem &P = a.p[tl.pi];
  const int l = threadIdx.x & 31;
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride : nullptr;
  const int even = (P.ldo & 1) == 0;
  const int c0 = tl.nt * SM90_BN + 2 * (l & 3);
  if (a.y_t && even && !b && tl.nt * SM90_BN + SM90_BN <= P.N) {
    /* the common tile (rows of T, no bias, all 256 columns inside N): no
     * per-column tests, two values a store */
#pragma unroll
    for (int h = 0; h < 2; h++) {
      if (rr.y[h] < 0) continue;
      T *o = (T *)P.out + (long long)rr.y[h] * P.ldo + c0;
      const float rw = rr.rw[h];
#pragma unroll
      for (int g = 0; g < 32; g++)
        store2(o + 8 * g, rw * d[g * 4 + h * 2], rw * d[g * 4 + h * 2 + 1]);
    }
    return;
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int y = rr.y[h];
    if (y < 0) continue;
    const float rw = rr.rw[h];
    const long long o0 = (long long)y * P.ldo;
#pragma unroll
    for (int g = 0; g < 32; g++) {
      const int col = c0 + 8 * g;
      if (col >= P.N) continue;
      const float v0 = rw * (d[g * 4 + h * 2] + (b ? b[col] : 0.0f));
      const bool two = col + 1 < P.N;
      const float v1 =
          two ? rw * (d[g * 4 + h * 2 + 1] + (b ? b[col + 1] : 0.0f)) : 0.0f;
      if (a.y_t) {
        T *o = (T *)P.out + o0 + col;
        if (two && even) {
          store2(o, v0, v1);
        } else {
          o[0] = from_f32<T>(v0);
          if (two) o[1] = from_f32<T>(v1);
        }
      } else {
        float *o = (float *)P.out + o0 + col;
        if (two && even) {
          *(float2 *)o = make_float2(v0, v1);
        } else {
          o[0] = v0;
          if (two) o[1] = v1;
        }
      }
    }
  }
}

/* ---- staged ---- */

/* Byte `byte` of row r of a staging tile: 256 bytes a row, 16-byte chunks
 * XOR-swizzled by row (chunk ^ r % 8), so that a fragment store (eight
 * rows, four lanes each) and a quarter warp's chunk loads (eight chunks of
 * one row) each touch 32 distinct banks. */
__device__ __forceinline__ unsigned char *stg_at(unsigned char *stg, int r,
                                                 int byte) {
#ifdef SM90_BULK_EPI
  /* rows contiguous (one bulk copy each), 272 bytes apart within a group
   * of eight: a fragment store's eight rows start on distinct banks */
  return stg + (r >> 3) * SM90_STG_GROUP + (r & 7) * SM90_STG_ROW + byte;
#else
  return stg + r * 256 + (((byte >> 4) ^ (r & 7)) << 4) + (byte & 15);
#endif
}

/* Barrier of one consumer warpgroup c (ids 1, 2; 0 is __syncthreads). */
__device__ __forceinline__ void wg_sync(int c) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(c + 1) : "memory");
}

/* Before a warpgroup writes its staging tile: the previous copy out of it
 * has read it (bulk: each thread waits for its own copies; then the
 * barrier makes that true of all of them). */
__device__ __forceinline__ void stg_begin(int c) {
#ifdef SM90_BULK_EPI
  bulk_wait_read();
#endif
  wg_sync(c);
}

/* After it: the writes are visible to the copy out (bulk: to the async
 * proxy that reads them). */
__device__ __forceinline__ void stg_end(int c) {
#ifdef SM90_BULK_EPI
  fence_proxy_async();
#endif
  wg_sync(c);
}

/* Columns col, col + 1 (col even) of staging row r. */
template <class T>
__device__ __forceinline__ void stg_put2(unsigned char *stg, int r, int col,
                                         float a, float b) {
  store2((T *)stg_at(stg, r, col * 2), a, b);
}

/* Copies staging rows [0, nrows) x values [0, ncols) (ncols <= 128) to
 * out[y(row0 + r)][col0 + ...], y = out_rows[.] or the identity: one
 * 16-byte store a chunk when aligned, element stores otherwise. A rolled
 * loop: its code stays small. */
template <class T>
__device__ __forceinline__ void stg_copy_out(const unsigned char *stg, T *out,
                                             long long ldo,
                                             const int32_t *out_rows, int row0,
                                             int nrows, int col0, int ncols) {
  static_assert(sizeof(T) == 2, "staging holds 2-byte values");
  const int t = threadIdx.x & 127;
  const bool vec = (((uintptr_t)out | (uintptr_t)(ldo * sizeof(T)) |
                     (uintptr_t)(col0 * sizeof(T))) &
                    15) == 0;
#ifdef SM90_BULK_EPI
  if (ncols <= 0) return;      /* a second pass past N */
  if (vec && ncols % 8 == 0) { /* uniform over the warpgroup */
    if (t < nrows) {
      const long long y = out_rows ? __ldg(out_rows + row0 + t) : row0 + t;
      bulk_store(out + y * ldo + col0,
                 sm90_smem_addr(stg_at((unsigned char *)stg, t, 0)),
                 (uint32_t)ncols * (uint32_t)sizeof(T));
      bulk_commit();
    }
    return;
  }
#endif
#pragma unroll 2
  for (int u = t; u < nrows * 16; u += 128) {
    const int r = u >> 4, ch = u & 15;
    const int n = min(8, ncols - ch * 8);
    if (n <= 0) continue;
    const uint4 v = *(const uint4 *)stg_at((unsigned char *)stg, r, ch * 16);
    const long long y = out_rows ? __ldg(out_rows + row0 + r) : row0 + r;
    T *o = out + y * ldo + col0 + ch * 8;
    if (n == 8 && vec) {
      *(uint4 *)o = v;
    } else {
      const uint32_t wv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int q = 0; q < 8; q++) /* unrolled: wv stays in registers */
        if (q < n) {
          const unsigned short h =
              (unsigned short)(wv[q >> 1] >> (16 * (q & 1)));
          ((unsigned short *)o)[q] = h;
        }
    }
  }
}

/* GEMM1: bias + activation ACT through the staging tile. */
template <class T, int ACT>
__device__ __forceinline__ void
epi_gemm1_staged(const sm90_gemm_args &a, const sm90_tile &tl,
                 const float (&d)[128], int c, unsigned char *stg) {
  const sm90_problem &P = a.p[tl.pi];
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride : nullptr;
  const int rbase = tl.row0 + c * 64;
  const int nrows = min(64, tl.row_end - rbase);
  if (nrows <= 0) return; /* uniform over the warpgroup */
  T *out = (T *)P.out;
  mma_act ac = a.act;
#ifndef SM90_ACT_RT
  ac.act = ACT;
#endif
  if (ac.gated && P.halves) {
    /* columns 0-127: gate j0 + c, columns 128-255: up j0 + c */
    const int I = P.N >> 1, j0 = tl.nt * (SM90_BN / 2);
    stg_begin(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = w * 16 + (l >> 2) + 8 * h;
      if (r >= nrows) continue; /* past the expert's end: not stored */
#pragma unroll
      for (int g = 0; g < 16; g++) {
        const int jc = 8 * g + 2 * (l & 3), j = j0 + jc;
        if (j >= I) continue;
        float v[2];
#pragma unroll
        for (int q = 0; q < 2; q++) {
          const int jq = j + q < I ? j + q : j;
          float gt = d[g * 4 + h * 2 + q] + (b ? b[jq] : 0.0f);
          float up = d[(g + 16) * 4 + h * 2 + q] + (b ? b[I + jq] : 0.0f);
          v[q] = act_apply(ac, gt, up);
        }
        stg_put2<T>(stg, r, jc, v[0], v[1]);
      }
    }
    stg_end(c);
    stg_copy_out<T>(stg, out, P.ldo, nullptr, rbase, nrows, j0,
                    min(SM90_BN / 2, I - j0));
  } else if (ac.gated) {
    /* interleaved rows: columns (2j, 2j + 1) are (gate j, up j) */
    const int J = P.N >> 1, j0 = tl.nt * (SM90_BN / 2);
    stg_begin(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = w * 16 + (l >> 2) + 8 * h;
      if (r >= nrows) continue; /* past the expert's end: not stored */
#pragma unroll
      for (int g = 0; g < 32; g++) {
        const int col = tl.nt * SM90_BN + 8 * g + 2 * (l & 3);
        if (col >= P.N) continue;
        const int j = col >> 1;
        float gt = d[g * 4 + h * 2] + (b ? b[2 * j] : 0.0f);
        float up = d[g * 4 + h * 2 + 1] + (b ? b[2 * j + 1] : 0.0f);
        *(T *)stg_at(stg, r, (j - j0) * 2) = from_f32<T>(act_apply(ac, gt, up));
      }
    }
    stg_end(c);
    stg_copy_out<T>(stg, out, P.ldo, nullptr, rbase, nrows, j0,
                    min(SM90_BN / 2, J - j0));
  } else {
#pragma unroll
    for (int p = 0; p < 2; p++) {
      const int c0 = tl.nt * SM90_BN + p * (SM90_BN / 2);
      stg_begin(c);
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = w * 16 + (l >> 2) + 8 * h;
        if (r >= nrows) continue; /* past the expert's end: not stored */
#pragma unroll
        for (int g = 16 * p; g < 16 * p + 16; g++) {
          const int cc = 8 * (g - 16 * p) + 2 * (l & 3), col = c0 + cc;
          if (col >= P.N) continue;
          const float v0 =
              act_apply(ac, d[g * 4 + h * 2] + (b ? b[col] : 0.0f), 0.0f);
          const float v1 =
              col + 1 < P.N
                  ? act_apply(ac,
                              d[g * 4 + h * 2 + 1] + (b ? b[col + 1] : 0.0f),
                              0.0f)
                  : 0.0f;
          stg_put2<T>(stg, r, cc, v0, v1);
        }
      }
      stg_end(c);
      stg_copy_out<T>(stg, out, P.ldo, nullptr, rbase, nrows, c0,
                      min(SM90_BN / 2, P.N - c0));
    }
  }
}

/* GEMM2 with Y of T: bias, routing weight, through the staging tile in two
 * passes of 128 columns. */
template <class T>
__device__ __forceinline__ void
epi_gemm2_staged(const sm90_gemm_args &a, const sm90_tile &tl,
                 const float (&d)[128], int c, unsigned char *stg) {
  const sm90_problem &P = a.p[tl.pi];
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride : nullptr;
  const int rbase = tl.row0 + c * 64;
  const int nrows = min(64, tl.row_end - rbase);
  if (nrows <= 0) return; /* uniform over the warpgroup */
  float rw[2];
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int row = rbase + w * 16 + (l >> 2) + 8 * h;
    rw[h] = 0.0f; /* rows past the end: skipped below */
    if (row < tl.row_end) {
      const int y = P.out_rows ? __ldg(P.out_rows + row) : row;
      rw[h] = P.row_w ? __ldg(P.row_w + y) : 1.0f;
    }
  }
#pragma unroll
  for (int p = 0; p < 2; p++) {
    const int c0 = tl.nt * SM90_BN + p * (SM90_BN / 2);
    stg_begin(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = w * 16 + (l >> 2) + 8 * h;
      if (r >= nrows) continue; /* past the expert's end: not stored */
#pragma unroll
      for (int g = 16 * p; g < 16 * p + 16; g++) {
        const int cc = 8 * (g - 16 * p) + 2 * (l & 3), col = c0 + cc;
        if (col >= P.N) continue;
        const float v0 = rw[h] * (d[g * 4 + h * 2] + (b ? b[col] : 0.0f));
        const float v1 =
            col + 1 < P.N
                ? rw[h] * (d[g * 4 + h * 2 + 1] + (b ? b[col + 1] : 0.0f))
                : 0.0f;
        stg_put2<T>(stg, r, cc, v0, v1);
      }
    }
    stg_end(c);
    stg_copy_out<T>(stg, (T *)P.out, P.ldo, P.out_rows, rbase, nrows, c0,
                    min(SM90_BN / 2, P.N - c0));
  }
}

#endif /* SM90_DEVICE */
#endif
