/*
 * dispatch.cu - routing and the expert-sorted permutation of one chunk, as
 * both GPU backends (cuda-mma, cuda-sm90) run them before their GEMMs:
 * route + permute fused in one block up to MMA_FUSED_ROUTE_MAX_M tokens,
 * two launches above, the permutation alone for caller-given ids; and what
 * both backends do at create: the layer checks, the SM count, the expert
 * map's device copy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

/* The integer in environment variable name when it is one in [lo, hi],
 * else def: the layer-creation knobs read here. */
static long long env_ll(const char *name, long long def, long long lo,
                        long long hi) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end = NULL;
  const long long x = strtoll(v, &end, 10);
  return end && *end == 0 && x >= lo && x <= hi ? x : def;
}

/* MOE_WS_PAD (bytes, default 0): a gap after every carved piece, read at
 * layer creation; a knob for measuring whether where a layer's buffers
 * sit changes its time (bench/NOTES.md cuda-sm90 v22: not under
 * interleaved timing). */
static size_t ws_pad(void) {
  return ((size_t)env_ll("MOE_WS_PAD", 0, 0, 1LL << 30) + 255) & ~(size_t)255;
}

extern "C" size_t mma_carve(size_t *off, size_t bytes) {
  size_t at = *off;
  *off += ((bytes + 255) & ~(size_t)255) + ws_pad();
  return at;
}

extern "C" void mma_dispatch_carve(mma_dispatch_bufs *b, char *base,
                                   size_t *off, long long P, long long El) {
  const size_t o[11] = {mma_carve(off, P * 4),            /* ids */
                        mma_carve(off, P * 4),            /* wts */
                        mma_carve(off, P * 4),            /* pair_e */
                        mma_carve(off, P * 4),            /* rank */
                        mma_carve(off, (El + 1) * 4),     /* offsets */
                        mma_carve(off, P * 4),            /* sorted_pair */
                        mma_carve(off, P * 4),            /* sorted_tok */
                        mma_carve(off, P * 4),            /* row_expert */
                        mma_carve(off, 2 * (P + El) * 4), /* tiles */
                        mma_carve(off, 4),                /* n_tiles */
                        mma_carve(off, El * 4)};          /* counts */
  if (!b) return;
  b->ids = (int32_t *)(base + o[0]);
  b->wts = (float *)(base + o[1]);
  b->pair_e = (int32_t *)(base + o[2]);
  b->rank = (int32_t *)(base + o[3]);
  b->offsets = (int32_t *)(base + o[4]);
  b->sorted_pair = (int32_t *)(base + o[5]);
  b->sorted_tok = (int32_t *)(base + o[6]);
  b->row_expert = (int32_t *)(base + o[7]);
  b->tiles = (int32_t *)(base + o[8]);
  b->n_tiles = (int32_t *)(base + o[9]);
  b->counts = (int32_t *)(base + o[10]);
  b->permute_one_block_max = (int)env_ll(
      "MOE_MMA_PERMUTE_ONE_BLOCK", MMA_PERMUTE_ONE_BLOCK_MAX, 0, 1LL << 30);
}

extern "C" mma_act mma_act_make(const moe_shape *s) {
  mma_act a;
  a.act = s->act;
  a.gated = s->gated;
  a.interleaved = s->act == MOE_ACT_SWIGLU_OAI;
  a.alpha = s->swiglu_alpha;
  a.limit = s->swiglu_limit;
  return a;
}

extern "C" mma_route_args mma_route_args_make(const moe_shape *s,
                                              const float *cbias,
                                              const float *logits, int M,
                                              int32_t *ids, float *w, int pdl) {
  mma_route_args r;
  memset(&r, 0, sizeof r);
  r.logits = logits;
  r.bias = s->routing.scoring == MOE_SCORING_SIGMOID ? cbias : NULL;
  r.M = M;
  r.E = s->E;
  r.k = s->k;
  r.scoring = s->routing.scoring;
  r.n_group = s->routing.n_group;
  r.topk_group = s->routing.topk_group;
  r.renormalize = s->routing.renormalize;
  r.scale = s->routing.routed_scaling_factor;
  if (r.scale == 0.0f) r.scale = 1.0f;
  r.ids = ids;
  r.weights = w;
  r.pdl = pdl;
  return r;
}

extern "C" cudaError_t
mma_launch_dispatch(const mma_dispatch_bufs *b, const moe_shape *s,
                    const float *cbias, const float *logits,
                    const int32_t *ids_in, int mc, int bm, int pdl,
                    cudaStream_t st, const char **what) {
  mma_permute_args pa;
  memset(&pa, 0, sizeof pa);
  pa.ids = logits ? b->ids : ids_in;
  pa.emap = b->emap;
  pa.pairs = mc * s->k;
  pa.k = s->k;
  pa.E = s->E;
  pa.E_local = s->E_local;
  pa.bm = bm;
  pa.pair_e = b->pair_e;
  pa.rank = b->rank;
  pa.offsets = b->offsets;
  pa.sorted_pair = b->sorted_pair;
  pa.sorted_tok = b->sorted_tok;
  pa.row_expert = b->row_expert;
  pa.tiles = b->tiles;
  pa.n_tiles = b->n_tiles;
  pa.counts = b->counts;
  pa.one_block_max = b->permute_one_block_max;
  pa.pdl = pdl;
  cudaError_t e;
  if (!logits) {
    *what = "permute launch";
    return mma_launch_permute(&pa, st);
  }
  const mma_route_args r =
      mma_route_args_make(s, cbias, logits, mc, b->ids, b->wts, pdl);
  if (mc <= MMA_FUSED_ROUTE_MAX_M) {
    *what = "route+permute launch";
    return mma_launch_route_permute(&r, &pa, st);
  }
  *what = "route launch";
  e = mma_launch_route(&r, st);
  if (e != cudaSuccess) return e;
  *what = "permute launch";
  return mma_launch_permute(&pa, st);
}

extern "C" moe_status mma_check_layer(const char *name, const moe_shape *s,
                                      const moe_weights *w, char *msg,
                                      size_t n) {
  if (w->memory != MOE_MEMORY_CUDA) {
    snprintf(msg, n, "%s: weights must be in CUDA device memory", name);
    return MOE_ERR_INVALID_ARGUMENT;
  }
  if (s->dtype != MOE_DTYPE_BF16 && s->dtype != MOE_DTYPE_F16) {
    snprintf(msg, n, "%s: dtype %s has no kernel (bf16, f16 only)", name,
             moe_dtype_name(s->dtype));
    return MOE_ERR_UNSUPPORTED;
  }
  if (!(MOE_BIT(s->act) & (s->gated ? MMA_ACTS_GATED : MMA_ACTS_PLAIN))) {
    snprintf(msg, n, "%s: %s %s has no kernel", name,
             s->gated ? "gated" : "plain", moe_activation_name(s->act));
    return MOE_ERR_UNSUPPORTED;
  }
  if (s->E > MMA_ROUTE_MAX_E || s->E_local > MMA_ROUTE_MAX_E ||
      s->routing.n_group > MMA_ROUTE_MAX_GROUPS) {
    snprintf(msg, n, "%s: E = %d, n_group = %d: at most %d and %d", name, s->E,
             s->routing.n_group, MMA_ROUTE_MAX_E, MMA_ROUTE_MAX_GROUPS);
    return MOE_ERR_UNSUPPORTED;
  }
  return MOE_OK;
}

extern "C" cudaError_t mma_device_sms(int *sms) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
  return e;
}

extern "C" cudaError_t mma_upload_expert_map(const moe_shape *s,
                                             int32_t **dev) {
  *dev = NULL;
  if (!s->expert_map) return cudaSuccess;
  const size_t bytes = (size_t)s->E * sizeof(int32_t);
  cudaError_t e = cudaMalloc((void **)dev, bytes);
  if (e != cudaSuccess) {
    *dev = NULL;
    return e;
  }
  return cudaMemcpy(*dev, s->expert_map, bytes, cudaMemcpyHostToDevice);
}

extern "C" moe_status mma_cuda_status(const char *name, cudaError_t e,
                                      const char *what, char *msg, size_t n) {
  (void)cudaGetLastError(); /* clear a non-sticky error */
  snprintf(msg, n, "%s: %s: %s (%s)", name, what, cudaGetErrorString(e),
           cudaGetErrorName(e));
  if (e == cudaErrorNoKernelImageForDevice ||
      e == cudaErrorInvalidDeviceFunction)
    return MOE_ERR_NO_KERNEL_IMAGE;
  if (e == cudaErrorMemoryAllocation) return MOE_ERR_OUT_OF_MEMORY;
  return MOE_ERR_DEVICE;
}
