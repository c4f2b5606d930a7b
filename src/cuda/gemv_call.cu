/*
 * gemv_call.cu - the host side of the gemv path (gemv.cu): which calls take
 * it, and the layer's constant arguments.
 */
#include <math.h>
#include <string.h>

#include "common.cuh"

/* gemv serves up to MMA_GEMV_TOKENS tokens while the expert weights it is
 * expected to read twice stay under MMA_GEMV_REPEAT_BYTES: about the 12 us
 * of launches and permutation it saves over the tile path at 4 TB/s
 * (bench/NOTES.md, "gemv"). */
#define MMA_GEMV_TOKENS 8
#define MMA_GEMV_REPEAT_BYTES (48.0 * (1 << 20))

/* Bytes of routed expert weights gemv reads more than once, expected for m
 * tokens routed uniformly: each pair streams its expert's rows, so pairs
 * beyond the distinct local experts are repeats (the tile path reads each
 * expert once). */
static double gemv_repeat_bytes(const moe_shape *s, int m) {
  const double p = (double)m * s->k, E = s->E;
  const double distinct = E * (1.0 - pow(1.0 - 1.0 / E, p));
  const double bytes =
      (double)(s->N1 + s->I) * s->H * (double)moe_dtype_size(s->dtype);
  return (p - distinct) * ((double)s->E_local / E) * bytes;
}

static int rows16(const void *p) {
  return ((uintptr_t)p & 15) == 0;
}

extern "C" int mma_gemv_tokens(const moe_shape *s, const moe_weights *w, int Mc,
                               int forced) {
  /* 16-byte rows everywhere (cp.async), or the tile path serves */
  if (s->H % 8 || s->I % 8 || s->Is % 8 || !rows16(w->w13) || !rows16(w->w2) ||
      (s->Is && (!rows16(w->shared_w13) || !rows16(w->shared_w2))))
    return 0;
  int m = forced;
  if (m < 0) {
    m = MMA_GEMV_TOKENS;
    while (m > 1 && gemv_repeat_bytes(s, m) > MMA_GEMV_REPEAT_BYTES)
      m--;
  }
  if (m > MMA_GEMV_MAX_M) m = MMA_GEMV_MAX_M;
  if (m > Mc) m = Mc;
  /* gemv1 sorts the pairs by expert in O(pairs^2): at most 256 pairs */
  while (m > 0 && ((long long)m * s->k > 256 || !mma_gemv_smem(m, s->k, s->E)))
    m--;
  return m;
}

extern "C" void mma_gemv_layer_init(mma_gemv_args *g, const moe_shape *s,
                                    const moe_weights *w, const int32_t *emap) {
  memset(g, 0, sizeof *g);
  g->emap = emap;
  g->w13 = w->w13;
  g->w2 = w->w2;
  g->sw13 = s->Is ? w->shared_w13 : NULL;
  g->sw2 = s->Is ? w->shared_w2 : NULL;
  g->b13 = w->w13_bias;
  g->b2 = w->w2_bias;
  g->k = s->k;
  g->E = s->E;
  g->E_local = s->E_local;
  g->H = s->H;
  g->I = s->I;
  g->Is = s->Is;
  g->N1 = s->N1;
  g->N1s = s->N1s;
  g->act = mma_act_make(s);
}
