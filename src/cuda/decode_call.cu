/*
 * decode_call.cu - the host side of the decode kernel (decode.cu): the
 * layer's constant arguments, filled once at create, and each call's
 * arguments and grid.
 */
#include <string.h>

#include "common.cuh"

/* K splits of GEMM2: at least MMA_DEC_KC2 per split, at most
 * MMA_DEC_SPLIT_MAX splits (the Y planes), a multiple of the stage K, none
 * empty. */
static void dec_splits(int K, int *z, int *kc) {
  int zz = (K + MMA_DEC_KC2 - 1) / MMA_DEC_KC2;
  if (zz > MMA_DEC_SPLIT_MAX) zz = MMA_DEC_SPLIT_MAX;
  if (zz < 1) zz = 1;
  int c = (K + zz - 1) / zz;
  c = (c + MMA_DEC_KS - 1) / MMA_DEC_KS * MMA_DEC_KS;
  if (c < MMA_DEC_KS) c = MMA_DEC_KS;
  *z = (K + c - 1) / c; /* rounding c up may leave a split empty: drop it */
  *kc = c;
}

extern "C" void mma_decode_layer_init(mma_decode_args *a, const moe_shape *s,
                                      const moe_weights *w) {
  const int has_sh = s->Is > 0;
  memset(a, 0, sizeof *a);
  a->w13 = w->w13;
  a->w2 = w->w2;
  a->sw13 = has_sh ? w->shared_w13 : NULL;
  a->sw2 = has_sh ? w->shared_w2 : NULL;
  a->b13 = w->w13_bias;
  a->b2 = w->w2_bias;
  a->H = s->H;
  a->I = s->I;
  a->Is = s->Is;
  a->N1 = s->N1;
  a->N1s = s->N1s;
  a->act = mma_act_make(s);
  a->k = s->k;
  dec_splits(s->I, &a->z2, &a->kc2);
  dec_splits(has_sh ? s->Is : 1, &a->z2s, &a->kc2s);
}

extern "C" cudaError_t mma_decode_call(moe_dtype dt,
                                       const mma_decode_args *layer,
                                       const void *x, const float *wts, int mc,
                                       int E_local, long long max_ctas,
                                       void *out, cudaStream_t st) {
  mma_decode_args a = *layer;
  const int has_sh = a.sw13 != NULL, pairs = mc * a.k;
  a.x = x;
  a.wts = wts;
  a.mc = mc;
  a.out = out;
  a.sh_tiles = has_sh ? (mc + MMA_DEC_ROWS - 1) / MMA_DEC_ROWS : 0;
  /* Grid: the resident CTAs, or fewer when there are fewer units. */
  const int ne = E_local < pairs ? E_local : pairs;
  long long tb = ((long long)pairs + (MMA_DEC_ROWS - 1LL) * ne) / MMA_DEC_ROWS;
  if (tb > pairs) tb = pairs;
  const long long ncb = (a.H + MMA_DEC_WROWS - 1) / MMA_DEC_WROWS;
  const long long units =
      tb * ((a.N1 + MMA_DEC_WROWS - 1) / MMA_DEC_WROWS + ncb * a.z2) +
      a.sh_tiles * ((a.N1s + MMA_DEC_WROWS - 1) / MMA_DEC_WROWS + ncb * a.z2s);
  long long grid = max_ctas < units ? max_ctas : units;
  if (grid < 1) grid = 1;
  return mma_launch_decode(dt, &a, (int)grid, st);
}
