/*
 * epi_fast_sm90.cuh - the epilogues cuda-sm90's GEMM kernel calls, and the
 * bulk-copy form of their common tile (args.epi_bulk, MOE_SM90_EPI_BULK).
 *
 * The direct epilogue (epi_sm90.cuh) stores a thread's two values at a
 * time: each warp store writes 16 bytes into each of eight rows, so a
 * warpgroup's 64 x 256 results of 2-byte values take 256 stores of eight
 * rows, all issued before the warpgroup's next MMA. In the bulk form the
 * warpgroup writes its results into its staging tile in shared memory
 * (one bank-conflict-free 4-byte store a pair), and 64 of its threads then
 * each hand one row (256 bytes) to a bulk copy and go on: the rows drain
 * while the next tile's MMAs run. The rows a copy needs (GEMM2: Y's row of
 * each tile row, args.out_rows) and the routing weights are read when the
 * tile starts (epi2_rows_y, epi2_rows_w), not after the MMAs.
 *
 * The common tile only (all columns inside the output, rows 16-byte
 * aligned, Y of T; biases included); every other tile, and GEMM1's
 * interleaved layout, take the epilogue they took before. Values and
 * rounding are the direct epilogue's: outputs are identical.
 */
#ifndef MOE_CUDA_SM90_EPI_FAST_SM90_CUH
#define MOE_CUDA_SM90_EPI_FAST_SM90_CUH

#include "epi_sm90.cuh"

#ifdef SM90_DEVICE
#ifdef SM90_BULK_EPI
/* out + col0 and its row stride allow 16-byte bulk copies */
__device__ __forceinline__ bool bulk_ok(const void *out, long long ldo,
                                        int col0, int size) {
  return (((uintptr_t)out | (uintptr_t)(ldo * size) |
           (uintptr_t)(col0 * size)) &
          15) == 0;
}

/* GEMM2, the common tile: two passes of 128 columns through the staging
 * tile. Returns false (nothing written) where the tile is not common. */
template <class T>
__device__ __forceinline__ bool
epi_gemm2_bulk(const sm90_gemm_args &a, const sm90_tile &tl,
               const float (&d)[128], int c, unsigned char *stg,
               const sm90_rows2 &rr) {
  const sm90_problem &P = a.p[tl.pi];
  const int c0 = tl.nt * SM90_BN;
  if (!a.y_t || c0 + SM90_BN > P.N ||
      !bulk_ok(P.out, P.ldo, c0, (int)sizeof(T)))
    return false;
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride + c0 : nullptr;
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
  const int t = threadIdx.x & 127;
  T *const out = (T *)P.out;
#pragma unroll
  for (int p = 0; p < 2; p++) {
    stg_begin(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      if (rr.y[h] < 0) continue; /* past the expert's end: not stored */
      const int r = w * 16 + (l >> 2) + 8 * h;
      const float rw = rr.rw[h];
      if (b) {
#pragma unroll
        for (int g = 16 * p; g < 16 * p + 16; g++) {
          const int col = 8 * g + 2 * (l & 3);
          stg_put2<T>(stg, r, col - 128 * p, rw * (d[g * 4 + h * 2] + b[col]),
                      rw * (d[g * 4 + h * 2 + 1] + b[col + 1]));
        }
      } else {
#pragma unroll
        for (int g = 16 * p; g < 16 * p + 16; g++)
          stg_put2<T>(stg, r, 8 * (g - 16 * p) + 2 * (l & 3),
                      rw * d[g * 4 + h * 2], rw * d[g * 4 + h * 2 + 1]);
      }
    }
    stg_end(c);
    if (rr.yc >= 0) {
      bulk_store(out + (long long)rr.yc * P.ldo + c0 + p * (SM90_BN / 2),
                 sm90_smem_addr(stg_at(stg, t, 0)),
                 (uint32_t)(SM90_BN / 2 * sizeof(T)));
      bulk_commit();
    }
  }
  return true;
}

/* GEMM1, the common tile of the [gate; up] halves layout (128 outputs a
 * row) and of plain rows (256, two passes). Returns false where the tile
 * is not common or the layout is the interleaved one (that one is staged
 * and bulk-copied already: epi_gemm1_staged). */
template <class T, int ACT>
__device__ __forceinline__ bool
epi_gemm1_bulk(const sm90_gemm_args &a, const sm90_tile &tl,
               const float (&d)[128], int c, unsigned char *stg) {
  const sm90_problem &P = a.p[tl.pi];
  mma_act ac = a.act;
#ifndef SM90_ACT_RT
  ac.act = ACT;
#endif
  const bool halves = ac.gated && P.halves;
  if (ac.gated && !halves) return false;
  const int c0 = halves ? tl.nt * (SM90_BN / 2) : tl.nt * SM90_BN;
  if (c0 + (halves ? SM90_BN / 2 : SM90_BN) > (halves ? P.N >> 1 : P.N) ||
      !bulk_ok(P.out, P.ldo, c0, (int)sizeof(T)))
    return false;
  const int rbase = tl.row0 + c * 64;
  const int nrows = min(64, tl.row_end - rbase);
  if (nrows <= 0) return true; /* uniform over the warpgroup */
  const int w = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
  const int t = threadIdx.x & 127;
  T *const out = (T *)P.out;
  /* the bias of output column 0 of this tile (halves: gate; up at + I) */
  const float *b = P.bias ? P.bias + tl.e * P.bias_stride + c0 : nullptr;
  const int I = P.N >> 1;
#pragma unroll
  for (int p = 0; p < 2; p++) {
    if (halves && p == 1) break;
    stg_begin(c);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = w * 16 + (l >> 2) + 8 * h;
      if (r >= nrows) continue; /* past the expert's end: not stored */
      if (halves && b) {
        /* columns 0-127: gate, 128-255: up */
#pragma unroll
        for (int g = 0; g < 16; g++) {
          const int j = 8 * g + 2 * (l & 3);
          float v[2];
#pragma unroll
          for (int q = 0; q < 2; q++)
            v[q] = act_apply(ac, d[g * 4 + h * 2 + q] + b[j + q],
                             d[(g + 16) * 4 + h * 2 + q] + b[I + j + q]);
          stg_put2<T>(stg, r, j, v[0], v[1]);
        }
      } else if (halves) {
#pragma unroll
        for (int g = 0; g < 16; g++)
          stg_put2<T>(
              stg, r, 8 * g + 2 * (l & 3),
              act_apply(ac, d[g * 4 + h * 2], d[(g + 16) * 4 + h * 2]),
              act_apply(ac, d[g * 4 + h * 2 + 1], d[(g + 16) * 4 + h * 2 + 1]));
      } else if (b) {
#pragma unroll
        for (int g = 0; g < 16; g++) {
          const int gg = g + 16 * p, col = 8 * gg + 2 * (l & 3);
          stg_put2<T>(stg, r, col - 128 * p,
                      act_apply(ac, d[gg * 4 + h * 2] + b[col], 0.0f),
                      act_apply(ac, d[gg * 4 + h * 2 + 1] + b[col + 1], 0.0f));
        }
      } else {
#pragma unroll
        for (int g = 0; g < 16; g++) {
          const int gg = g + 16 * p;
          stg_put2<T>(stg, r, 8 * g + 2 * (l & 3),
                      act_apply(ac, d[gg * 4 + h * 2], 0.0f),
                      act_apply(ac, d[gg * 4 + h * 2 + 1], 0.0f));
        }
      }
    }
    stg_end(c);
    if (t < nrows) {
      bulk_store(out + (long long)(rbase + t) * P.ldo + c0 + p * (SM90_BN / 2),
                 sm90_smem_addr(stg_at(stg, t, 0)),
                 (uint32_t)(SM90_BN / 2 * sizeof(T)));
      bulk_commit();
    }
  }
  return true;
}
#endif /* SM90_BULK_EPI */

/* The epilogues the kernel calls. */
template <class T, int ACT>
__device__ __forceinline__ void
epi_gemm1(const sm90_gemm_args &a, const sm90_tile &tl, const float (&d)[128],
          int c, unsigned char *stg) {
#ifdef SM90_BULK_EPI
  if ((a.epi_bulk & 2) && epi_gemm1_bulk<T, ACT>(a, tl, d, c, stg)) return;
#endif
#if (defined(SM90_BULK_EPI) && SM90_BULK_EPI == 2) ||                          \
    (defined(SM90_STAGED_EPI) && SM90_STAGED_EPI == 2)
  /* staged for the interleaved layout only */
  if (a.act.gated && !a.p[tl.pi].halves) {
    epi_gemm1_staged<T, ACT>(a, tl, d, c, stg);
    return;
  }
  epi_gemm1_direct<T, ACT>(a, tl, d, c);
#elif defined(SM90_BULK_EPI) || defined(SM90_STAGED_EPI)
  epi_gemm1_staged<T, ACT>(a, tl, d, c, stg);
#else
  epi_gemm1_direct<T, ACT>(a, tl, d, c);
#endif
}

template <class T>
__device__ __forceinline__ void
epi_gemm2(const sm90_gemm_args &a, const sm90_tile &tl, const float (&d)[128],
          int c, unsigned char *stg, const sm90_rows2 &rr) {
#ifdef SM90_BULK_EPI
  if ((a.epi_bulk & 1) && epi_gemm2_bulk<T>(a, tl, d, c, stg, rr)) return;
#endif
#if (defined(SM90_BULK_EPI) && SM90_BULK_EPI != 2) ||                          \
    (defined(SM90_STAGED_EPI) && SM90_STAGED_EPI != 2)
  if (a.y_t) {
    epi_gemm2_staged<T>(a, tl, d, c, stg);
    return;
  }
#endif
  epi_gemm2_direct<T>(a, tl, d, rr);
}
#endif /* SM90_DEVICE */
#endif
