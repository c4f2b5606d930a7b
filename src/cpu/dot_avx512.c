/*
 * dot_avx512.c - tile kernels for cpu-avx512 (AVX-512F/BW/VL + AVX512_BF16).
 *
 *  bf16 weights: activation vectors are bf16 too and each 32-element step
 *    is one vdpbf16ps per (row, vector): pairs of bf16 products summed into
 *    fp32 lanes. The weights are read as they are stored (no conversion).
 *  f16 weights:  vcvtph2ps widening loads, fp32 vectors, FMA.
 *  f32 weights:  FMA.
 * A tile is up to 4 rows x 4 vectors: 16 accumulators + 8 loaded registers
 * fit the 32 zmm registers. The K tail uses masked loads (zero-filled), so
 * no element past a row is read. Each (row, vector) result is computed the
 * same way in every tile shape (see cpu_internal.h).
 *
 * The file is compiled with default flags; the functions carry their target
 * so the library still loads on CPUs without AVX-512 (the backend is never
 * chosen there).
 */
#include "cpu_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define TGT                                                                    \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* The body is instantiated for every (R, T) with constant bounds, so the
 * accumulator arrays live in registers. */
INL void tile_bf16_body(const uint16_t *w, size_t ldw, const void *const *xs,
                        int K, float *out, const char *pf, const int R,
                        const int T) {
  __m512 acc[CPU_TILE_R][CPU_TILE_T];
  const uint16_t *x[CPU_TILE_T];
  for (int t = 0; t < T; t++)
    x[t] = (const uint16_t *)xs[t];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++)
      acc[r][t] = _mm512_setzero_ps();
  int k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i wv[CPU_TILE_R], xv[CPU_TILE_T];
    if (pf)
      for (int r = 0; r < R; r++)
        _mm_prefetch(pf + (r * ldw + k) * 2, _MM_HINT_T1);
    for (int r = 0; r < R; r++)
      wv[r] = _mm512_loadu_si512((const void *)(w + r * ldw + k));
    for (int t = 0; t < T; t++)
      xv[t] = _mm512_loadu_si512((const void *)(x[t] + k));
    for (int r = 0; r < R; r++)
      for (int t = 0; t < T; t++)
        acc[r][t] =
            _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv[t]);
  }
  if (k < K) {
    __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
    __m512i wv[CPU_TILE_R], xv[CPU_TILE_T];
    for (int r = 0; r < R; r++)
      wv[r] = _mm512_maskz_loadu_epi16(m, w + r * ldw + k);
    for (int t = 0; t < T; t++)
      xv[t] = _mm512_maskz_loadu_epi16(m, x[t] + k);
    for (int r = 0; r < R; r++)
      for (int t = 0; t < T; t++)
        acc[r][t] =
            _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv[t]);
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < T; t++)
      out[r * CPU_TILE_T + t] = _mm512_reduce_add_ps(acc[r][t]);
}

/* fp32 vectors; the weight loader widens 16 elements to fp32. */
INL __m512 load16_f32(const void *p, size_t i) {
  return _mm512_loadu_ps((const float *)p + i);
}
INL __m512 load16_f32_tail(const void *p, size_t i, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}
INL __m512 load16_f16(const void *p, size_t i) {
  return _mm512_cvtph_ps(
      _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
}
INL __m512 load16_f16_tail(const void *p, size_t i, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
}

#define DEFINE_FMA_BODY(NAME, LOADW, LOADW_TAIL, ESZ)                          \
  INL void NAME(const void *w, size_t ldw, const void *const *xs, int K,       \
                float *out, const char *pf, const int R, const int T) {        \
    __m512 acc[CPU_TILE_R][CPU_TILE_T];                                        \
    for (int r = 0; r < R; r++)                                                \
      for (int t = 0; t < T; t++)                                              \
        acc[r][t] = _mm512_setzero_ps();                                       \
    int k = 0;                                                                 \
    for (; k + 16 <= K; k += 16) {                                             \
      __m512 wv[CPU_TILE_R], xv[CPU_TILE_T];                                   \
      if (pf && ((k * ESZ) & 63) == 0) /* once per 64-byte line */             \
        for (int r = 0; r < R; r++)                                            \
          _mm_prefetch(pf + (r * ldw + k) * ESZ, _MM_HINT_T1);                 \
      for (int r = 0; r < R; r++)                                              \
        wv[r] = LOADW(w, r * ldw + k);                                         \
      for (int t = 0; t < T; t++)                                              \
        xv[t] = load16_f32(xs[t], k);                                          \
      for (int r = 0; r < R; r++)                                              \
        for (int t = 0; t < T; t++)                                            \
          acc[r][t] = _mm512_fmadd_ps(wv[r], xv[t], acc[r][t]);                \
    }                                                                          \
    if (k < K) {                                                               \
      __mmask16 m = (__mmask16)((1u << (K - k)) - 1);                          \
      __m512 wv[CPU_TILE_R], xv[CPU_TILE_T];                                   \
      for (int r = 0; r < R; r++)                                              \
        wv[r] = LOADW_TAIL(w, r * ldw + k, m);                                 \
      for (int t = 0; t < T; t++)                                              \
        xv[t] = load16_f32_tail(xs[t], k, m);                                  \
      for (int r = 0; r < R; r++)                                              \
        for (int t = 0; t < T; t++)                                            \
          acc[r][t] = _mm512_fmadd_ps(wv[r], xv[t], acc[r][t]);                \
    }                                                                          \
    for (int r = 0; r < R; r++)                                                \
      for (int t = 0; t < T; t++)                                              \
        out[r * CPU_TILE_T + t] = _mm512_reduce_add_ps(acc[r][t]);             \
  }

DEFINE_FMA_BODY(tile_f32_body, load16_f32, load16_f32_tail, 4)
DEFINE_FMA_BODY(tile_f16_body, load16_f16, load16_f16_tail, 2)

/* Dispatch on (nr, nt) to the 16 constant-shape instances. */
#define DISPATCH(BODY, W)                                                      \
  switch ((nr - 1) * CPU_TILE_T + (nt - 1)) {                                  \
  case 0:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 1, 1);                          \
    break;                                                                     \
  case 1:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 1, 2);                          \
    break;                                                                     \
  case 2:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 1, 3);                          \
    break;                                                                     \
  case 3:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 1, 4);                          \
    break;                                                                     \
  case 4:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 2, 1);                          \
    break;                                                                     \
  case 5:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 2, 2);                          \
    break;                                                                     \
  case 6:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 2, 3);                          \
    break;                                                                     \
  case 7:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 2, 4);                          \
    break;                                                                     \
  case 8:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 3, 1);                          \
    break;                                                                     \
  case 9:                                                                      \
    BODY(W, ldw, xs, K, out, (const char *)pf, 3, 2);                          \
    break;                                                                     \
  case 10:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 3, 3);                          \
    break;                                                                     \
  case 11:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 3, 4);                          \
    break;                                                                     \
  case 12:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 4, 1);                          \
    break;                                                                     \
  case 13:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 4, 2);                          \
    break;                                                                     \
  case 14:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 4, 3);                          \
    break;                                                                     \
  case 15:                                                                     \
    BODY(W, ldw, xs, K, out, (const char *)pf, 4, 4);                          \
    break;                                                                     \
  default:                                                                     \
    break;                                                                     \
  }

static TGT void tile_bf16(const void *w, size_t ldw, int nr,
                          const void *const *xs, int nt, int K, float *out,
                          const void *pf) {
  const uint16_t *wp = (const uint16_t *)w;
  DISPATCH(tile_bf16_body, wp)
}

static TGT void tile_f16(const void *w, size_t ldw, int nr,
                         const void *const *xs, int nt, int K, float *out,
                         const void *pf) {
  DISPATCH(tile_f16_body, w)
}

static TGT void tile_f32(const void *w, size_t ldw, int nr,
                         const void *const *xs, int nt, int K, float *out,
                         const void *pf) {
  DISPATCH(tile_f32_body, w)
}

const cpu_kernels cpu_kernels_avx512 = {
    {tile_f32, tile_f16, tile_bf16},
    {0, 0, 1},
    MOE_CPU_AVX512F | MOE_CPU_AVX512BW | MOE_CPU_AVX512VL | MOE_CPU_AVX512BF16,
    "avx512",
};
#endif
