/*
 * dot_avx2.c - tile kernels for cpu-avx2 (AVX2 + FMA + F16C).
 *
 * Activation vectors are fp32 for every weight dtype; weights are widened
 * to fp32 as they are loaded (bf16: zero-extend and shift by 16; f16:
 * vcvtph2ps) and multiplied with FMA. With 16 ymm registers a tile pass is
 * up to 4 rows x 2 vectors (8 accumulators); 4-vector tiles make two passes
 * over the rows, which are in L1 by then. The K tail (K % 8) goes through a
 * zero-padded copy, so no element past a row is read. Each (row, vector)
 * result is computed the same way in every tile shape (cpu_internal.h).
 *
 * Compiled with default flags: the functions carry their target.
 */
#include "cpu_internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

INL __m256 w8_f32(const void *p, size_t i) {
  return _mm256_loadu_ps((const float *)p + i);
}
INL __m256 w8_f16(const void *p, size_t i) {
  return _mm256_cvtph_ps(
      _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}
INL __m256 w8_bf16(const void *p, size_t i) {
  __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Sum of the 8 lanes in a fixed order. */
INL float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#define DEFINE_BODY(NAME, LOADW, ESZ)                                          \
  INL void NAME(const char *w, size_t ldw, const void *const *xs, int K,       \
                float *out, const char *pf, const int R, const int T) {        \
    __m256 acc[CPU_TILE_R][2];                                                 \
    const float *x[2];                                                         \
    for (int t = 0; t < T; t++)                                                \
      x[t] = (const float *)xs[t];                                             \
    for (int r = 0; r < R; r++)                                                \
      for (int t = 0; t < T; t++)                                              \
        acc[r][t] = _mm256_setzero_ps();                                       \
    int k = 0;                                                                 \
    for (; k + 8 <= K; k += 8) {                                               \
      if (pf && ((k * ESZ) & 63) == 0) /* once per 64-byte line */             \
        for (int r = 0; r < R; r++)                                            \
          _mm_prefetch(pf + (r * ldw + k) * ESZ, _MM_HINT_T1);                 \
      __m256 wv[CPU_TILE_R];                                                   \
      for (int r = 0; r < R; r++)                                              \
        wv[r] = LOADW(w + r * ldw * ESZ, k);                                   \
      for (int t = 0; t < T; t++) {                                            \
        __m256 xv = _mm256_loadu_ps(x[t] + k);                                 \
        for (int r = 0; r < R; r++)                                            \
          acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);                   \
      }                                                                        \
    }                                                                          \
    if (k < K) {                                                               \
      /* Zero-padded copies of the tail: the products there are 0. */          \
      int n = K - k;                                                           \
      _Alignas(32) char wt[CPU_TILE_R][8 * ESZ];                               \
      _Alignas(32) float xt[2][8];                                             \
      __m256 wv[CPU_TILE_R];                                                   \
      for (int r = 0; r < R; r++) {                                            \
        memset(wt[r], 0, sizeof wt[r]);                                        \
        memcpy(wt[r], w + (r * ldw + k) * ESZ, (size_t)n * ESZ);               \
        wv[r] = LOADW(wt[r], 0);                                               \
      }                                                                        \
      for (int t = 0; t < T; t++) {                                            \
        memset(xt[t], 0, sizeof xt[t]);                                        \
        memcpy(xt[t], x[t] + k, (size_t)n * sizeof(float));                    \
        __m256 xv = _mm256_load_ps(xt[t]);                                     \
        for (int r = 0; r < R; r++)                                            \
          acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);                   \
      }                                                                        \
    }                                                                          \
    for (int r = 0; r < R; r++)                                                \
      for (int t = 0; t < T; t++)                                              \
        out[r * CPU_TILE_T + t] = hsum8(acc[r][t]);                            \
  }

DEFINE_BODY(body_f32, w8_f32, 4)
DEFINE_BODY(body_f16, w8_f16, 2)
DEFINE_BODY(body_bf16, w8_bf16, 2)

/* Up to 4 rows x 2 vectors per pass, with constant bounds. */
#define PASS(BODY, xs2, o2, T2)                                                \
  switch (nr) {                                                                \
  case 1:                                                                      \
    BODY(wp, ldw, xs2, K, o2, pfp, 1, T2);                                     \
    break;                                                                     \
  case 2:                                                                      \
    BODY(wp, ldw, xs2, K, o2, pfp, 2, T2);                                     \
    break;                                                                     \
  case 3:                                                                      \
    BODY(wp, ldw, xs2, K, o2, pfp, 3, T2);                                     \
    break;                                                                     \
  default:                                                                     \
    BODY(wp, ldw, xs2, K, o2, pfp, 4, T2);                                     \
    break;                                                                     \
  }

#define DEFINE_TILE(NAME, BODY)                                                \
  static TGT void NAME(const void *w, size_t ldw, int nr,                      \
                       const void *const *xs, int nt, int K, float *out,       \
                       const void *pf) {                                       \
    const char *wp = (const char *)w;                                          \
    /* Only the first pass streams the rows from memory. */                    \
    const char *pfp = (const char *)pf;                                        \
    for (int t0 = 0; t0 < nt; t0 += 2) {                                       \
      if (nt - t0 >= 2) {                                                      \
        PASS(BODY, xs + t0, out + t0, 2)                                       \
      } else {                                                                 \
        PASS(BODY, xs + t0, out + t0, 1)                                       \
      }                                                                        \
      pfp = NULL;                                                              \
    }                                                                          \
  }

DEFINE_TILE(tile_f32, body_f32)
DEFINE_TILE(tile_f16, body_f16)
DEFINE_TILE(tile_bf16, body_bf16)

const cpu_kernels cpu_kernels_avx2 = {
    {tile_f32, tile_f16, tile_bf16},
    {0, 0, 0},
    MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C,
    "avx2",
};
#endif
