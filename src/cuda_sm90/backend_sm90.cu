/*
 * backend_sm90.cu - the cuda-sm90 backend: prefill on Hopper (sm_90a) with
 * the TMA + wgmma grouped GEMM of gemm_sm90.cu. Routing, permutation and
 * combine are cuda-mma's kernels (../cuda/mma.h); per call:
 *
 *   [route +] permute -> gather -> gemm1 (sm90) -> gemm2 (sm90) -> combine
 *
 * Everything is stream-ordered on the caller's stream; the workspace and
 * every tensor map are made at create (fixed addresses), nothing is
 * allocated or synchronised per call, so a forward can be captured in a
 * CUDA graph.
 *
 * Few rows per expert (decode) go to an embedded cuda-mma layer instead:
 * below SM90_CROSSOVER rows per expert (M * k / E), its split-K mma.sync
 * GEMMs stream the weights faster than 128-row wgmma tiles that are mostly
 * empty. The choice is per call, from host values only (M), so a captured
 * graph holds one path or the other. The crossover is measured (bench/
 * NOTES.md); MOE_SM90_CROSSOVER overrides it for measurement.
 *
 * Support: exactly sm_90 (the arch-specific "90a" image; plain sm_90 has no
 * wgmma), bf16 and f16, every activation of cuda-mma; H, I (and the shared
 * expert's I) multiples of 8, so that every TMA row stride is a multiple
 * of 16 bytes.
 */
#include "../cuda/common.cuh"
#include "../cuda/cuda_backends.h"
#include "cuda_sm90.h"
#include "sm90.h"
#include "tune_sm90.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SM90_DTYPE_BITS (MOE_BIT(MOE_DTYPE_BF16) | MOE_BIT(MOE_DTYPE_F16))
static const moe_support_row sm90_rows[] = {
    /* device, dtypes, activations, gating, align H, align I, max E, smem */
    {{MOE_PRED_EXACT, 90, 0},
     SM90_DTYPE_BITS,
     MMA_ACTS_GATED,
     MOE_GATING_GATED,
     8,
     8,
     MMA_ROUTE_MAX_E,
     SM90_SMEM},
    {{MOE_PRED_EXACT, 90, 0},
     SM90_DTYPE_BITS,
     MMA_ACTS_PLAIN,
     MOE_GATING_PLAIN,
     8,
     8,
     MMA_ROUTE_MAX_E,
     SM90_SMEM},
};

/* Is "90a" one of the build's SASS archs? (plain "90" or PTX would not
 * hold wgmma: the kernels compile to empty bodies there). */
static int has_90a(void) {
  return moe_cuda_arch_listed("90a");
}

static int sm90_kernel_compiled(int sm, moe_dtype dt, moe_activation act,
                                int gated) {
  if (sm != 90 || !has_90a()) return 0;
  const mma_inst *t;
  const int n = sm90_gemm_instances(&t);
  for (int i = 0; i < n; i++)
    if (t[i].dtype == dt &&
        ((gated ? t[i].acts_gated : t[i].acts_plain) & MOE_BIT(act)))
      return 1;
  return 0;
}

/* ---- errors ---- */
static moe_status cuda_fail(cudaError_t e, const char *what, char *msg,
                            size_t n) {
  return mma_cuda_status("cuda-sm90", e, what, msg, n);
}
#define CK(call, what)                                                         \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) return cuda_fail(e_, what, msg, n);                 \
  } while (0)

static moe_status sm90_probe(const moe_device *dev, char *msg, size_t n) {
  if (dev->sm != 90) {
    snprintf(msg, n, "cuda-sm90: sm_%d is not sm_90", dev->sm);
    return MOE_ERR_UNSUPPORTED;
  }
  CK(sm90_gemm_probe(), "cudaFuncGetAttributes(sm90 grouped GEMM)");
  if (!sm90_get_encode_fn()) {
    snprintf(msg, n, "cuda-sm90: the driver has no cuTensorMapEncodeTiled");
    return MOE_ERR_DEVICE;
  }
  return MOE_OK;
}

/* ---- per-layer state ---- */
typedef struct sm90_impl {
  moe_shape s;      /* expert_map cleared (uploaded to emap) */
  moe_shape s_full; /* as given, for the embedded cuda-mma layer */
  void *mma;        /* cuda-mma layer for calls below the crossover, or NULL */
  double crossover; /* rows per expert below which mma serves */
  int sms;
  const float *b13, *b2, *cbias;
  int32_t *emap;        /* device [E] or NULL */
  int *claim;           /* device [4]: the GEMMs' tile counters, or NULL */
  int Mc, P;            /* tokens and pairs per chunk */
  void *ws;             /* one allocation; the rest point into it */
  mma_dispatch_bufs rb; /* routing and permutation buffers */
  void *xp, *xs, *act, *act_sh;
  void *Y, *Ysh;         /* f32, or the dtype when g2.y_t */
  sm90_gemm_args g1, g2; /* tensor maps and fixed fields */
} sm90_impl;

/* An integer knob from the environment: def when unset or not a number
 * in [lo, hi]. */
static int env_int(const char *name, int def, int lo, int hi) {
  const char *v = getenv(name);
  if (!v || !*v) return def;
  char *end = NULL;
  const long x = strtol(v, &end, 10);
  return end && *end == 0 && x >= lo && x <= hi ? (int)x : def;
}

static void sm90_destroy(void *p) {
  sm90_impl *L = (sm90_impl *)p;
  if (!L) return;
  if (L->mma) moe_backend_cuda_mma.destroy(L->mma);
  if (L->ws) (void)cudaFree(L->ws);
  if (L->emap) (void)cudaFree(L->emap);
  if (L->claim) (void)cudaFree(L->claim);
  free(L);
}

static int n_tiles_of(int N, int halves) {
  return halves ? (N / 2 + SM90_BN / 2 - 1) / (SM90_BN / 2)
                : (N + SM90_BN - 1) / SM90_BN;
}

/* The fixed part of both GEMMs' argument blocks: tensor maps over the
 * workspace and the weights, shapes, epilogue pointers. */
static int make_args(sm90_impl *L, const moe_weights *w, sm90_encode_fn enc) {
  const moe_shape *s = &L->s;
  const int bf = s->dtype == MOE_DTYPE_BF16, has_sh = s->Is > 0;
  const long long El = s->E_local, H = s->H, I = s->I;
  const int halves = s->gated && s->act != MOE_ACT_SWIGLU_OAI;
  sm90_gemm_args *g = &L->g1;
  memset(g, 0, sizeof *g);
  int bad = 0;
  bad |= sm90_encode_2d(enc, &g->a[0], bf, L->xp, L->P, H, H, SM90_BM);
  bad |= sm90_encode_2d(enc, &g->a64[0], bf, L->xp, L->P, H, H, SM90_BM / 2);
  bad |=
      sm90_encode_2d(enc, &g->w[0], bf, w->w13, El * s->N1, H, H, SM90_BN / 2);
  g->p[0].N = s->N1;
  g->p[0].K = s->H;
  g->p[0].n_tiles = n_tiles_of(s->N1, halves);
  g->p[0].halves = halves;
  g->p[0].bias = L->b13;
  g->p[0].bias_stride = s->N1;
  g->p[0].out = L->act;
  g->p[0].ldo = I;
  if (has_sh) {
    bad |= sm90_encode_2d(enc, &g->a[1], bf, L->xs, L->Mc, H, H, SM90_BM);
    bad |= sm90_encode_2d(enc, &g->a64[1], bf, L->xs, L->Mc, H, H, SM90_BM / 2);
    bad |= sm90_encode_2d(enc, &g->w[1], bf, w->shared_w13, s->N1s, H, H,
                          SM90_BN / 2);
    g->p[1].N = s->N1s;
    g->p[1].K = s->H;
    g->p[1].n_tiles = n_tiles_of(s->N1s, halves);
    g->p[1].halves = halves;
    g->p[1].out = L->act_sh;
    g->p[1].ldo = s->Is;
  }
  g->tiles = L->rb.tiles;
  g->n_tiles = L->rb.n_tiles;
  g->offsets = L->rb.offsets;
  g->act = mma_act_make(s);

  g = &L->g2;
  memset(g, 0, sizeof *g);
  bad |= sm90_encode_2d(enc, &g->a[0], bf, L->act, L->P, I, I, SM90_BM);
  bad |= sm90_encode_2d(enc, &g->a64[0], bf, L->act, L->P, I, I, SM90_BM / 2);
  bad |= sm90_encode_2d(enc, &g->w[0], bf, w->w2, El * H, I, I, SM90_BN / 2);
  g->p[0].N = s->H;
  g->p[0].K = s->I;
  g->p[0].n_tiles = n_tiles_of(s->H, 0);
  g->p[0].bias = L->b2;
  g->p[0].bias_stride = s->H;
  g->p[0].out = L->Y;
  g->p[0].ldo = H;
  g->p[0].out_rows = L->rb.sorted_pair;
  if (has_sh) {
    bad |= sm90_encode_2d(enc, &g->a[1], bf, L->act_sh, L->Mc, s->Is, s->Is,
                          SM90_BM);
    bad |= sm90_encode_2d(enc, &g->a64[1], bf, L->act_sh, L->Mc, s->Is, s->Is,
                          SM90_BM / 2);
    bad |= sm90_encode_2d(enc, &g->w[1], bf, w->shared_w2, H, s->Is, s->Is,
                          SM90_BN / 2);
    g->p[1].N = s->H;
    g->p[1].K = s->Is;
    g->p[1].n_tiles = n_tiles_of(s->H, 0);
    g->p[1].out = L->Ysh;
    g->p[1].ldo = H;
  }
  g->tiles = L->rb.tiles;
  g->n_tiles = L->rb.n_tiles;
  g->offsets = L->rb.offsets;
  return bad ? -1 : 0;
}

static moe_status run_chunk(sm90_impl *L, const void *x, const float *logits,
                            const int32_t *ids_in, const float *w_in, int mc,
                            void *out, cudaStream_t st, char *msg, size_t n);

/* One call on one path, for the crossover's measurement (tune_sm90.h). */
static moe_status run_path(void *layer, int wgmma, const moe_batch *b,
                           cudaStream_t st, char *msg, size_t n) {
  sm90_impl *L = (sm90_impl *)layer;
  if (!wgmma) return moe_backend_cuda_mma.forward(L->mma, b, st, msg, n);
  return run_chunk(L, b->x, b->logits, b->ids, b->weights, b->M, b->out, st,
                   msg, n);
}

/* The embedded cuda-mma layer, sized for calls below `rows` rows per
 * expert (none when rows is 0). */
static moe_status make_mma(sm90_impl *L, const moe_backend_env *env,
                           const moe_weights *w, double rows, char *msg,
                           size_t n) {
  const moe_shape *s = &L->s;
  if (L->mma) moe_backend_cuda_mma.destroy(L->mma);
  L->mma = NULL;
  const double tokens = ceil(rows * s->E / s->k); /* M below this */
  if (tokens <= 0) return MOE_OK;
  moe_shape ms = L->s_full;
  ms.max_tokens = tokens < s->max_tokens ? (int)tokens : s->max_tokens;
  return moe_backend_cuda_mma.create(env, &ms, w, &L->mma, msg, n);
}

static moe_status sm90_create(const moe_backend_env *env, const moe_shape *s,
                              const moe_weights *w, void **impl, char *msg,
                              size_t n) {
  *impl = NULL;
  moe_status cst = mma_check_layer("cuda-sm90", s, w, msg, n);
  if (cst != MOE_OK) return cst;
  if (s->H % 8 || s->I % 8 || s->Is % 8) {
    snprintf(msg, n,
             "cuda-sm90: H = %d, I = %d, shared I = %d: multiples of "
             "8 only (TMA row strides)",
             s->H, s->I, s->Is);
    return MOE_ERR_UNSUPPORTED;
  }
  if (((uintptr_t)w->w13 & 15) || ((uintptr_t)w->w2 & 15) ||
      (s->Is &&
       (((uintptr_t)w->shared_w13 & 15) || ((uintptr_t)w->shared_w2 & 15)))) {
    snprintf(msg, n, "cuda-sm90: weights must be 16-byte aligned (TMA)");
    return MOE_ERR_UNSUPPORTED;
  }
  const sm90_encode_fn enc = sm90_get_encode_fn();
  if (!enc) {
    snprintf(msg, n, "cuda-sm90: the driver has no cuTensorMapEncodeTiled");
    return MOE_ERR_DEVICE;
  }
  sm90_impl *L = (sm90_impl *)calloc(1, sizeof *L);
  if (!L) {
    snprintf(msg, n, "cuda-sm90: out of host memory");
    return MOE_ERR_OUT_OF_MEMORY;
  }
  L->s = *s;
  L->s.expert_map = NULL;
  L->b13 = w->w13_bias;
  L->b2 = w->w2_bias;
  L->cbias =
      s->routing.scoring == MOE_SCORING_SIGMOID ? w->correction_bias : NULL;
  L->sms = env && env->device && env->device->sms > 0 ? env->device->sms : 0;
  moe_status st = MOE_OK;
#define CKL(call, what)                                                        \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      st = cuda_fail(e_, what, msg, n);                                        \
      sm90_destroy(L);                                                         \
      return st;                                                               \
    }                                                                          \
  } while (0)
  if (!L->sms) CKL(mma_device_sms(&L->sms), "cudaDeviceGetAttribute(SMs)");
  CKL(sm90_gemm_prepare(s->dtype), "cudaFuncSetAttribute(sm90 gemm)");
  CKL(mma_route_prepare(), "cudaFuncSetAttribute(route)");
  CKL(mma_upload_expert_map(s, &L->emap), "expert_map upload");
  L->rb.emap = L->emap;

  const size_t es = moe_dtype_size(s->dtype);
  const long long Mc = s->max_tokens, P = Mc * s->k;
  L->Mc = (int)Mc;
  L->P = (int)P;
  const long long H = s->H, El = s->E_local;
  size_t off = 0, o[18];
  mma_dispatch_carve(NULL, NULL, &off, P, El);          /* first: rb */
  o[11] = mma_carve(&off, P * H * es);                  /* xp */
  o[12] = mma_carve(&off, s->Is ? Mc * H * es : 0);     /* xs */
  o[13] = mma_carve(&off, P * s->I * es);               /* act */
  o[14] = mma_carve(&off, s->Is ? Mc * s->Is * es : 0); /* act_sh */
  o[15] = mma_carve(&off, P * H * 4);                   /* Y */
  o[16] = mma_carve(&off, s->Is ? Mc * H * 4 : 0);      /* Ysh */
  CKL(cudaMalloc(&L->ws, off), "cudaMalloc(workspace)");
  char *b = (char *)L->ws;
  size_t rb_off = 0;
  mma_dispatch_carve(&L->rb, b, &rb_off, P, El);
  L->xp = b + o[11];
  L->xs = s->Is ? b + o[12] : NULL;
  L->act = b + o[13];
  L->act_sh = s->Is ? b + o[14] : NULL;
  L->Y = b + o[15];
  L->Ysh = s->Is ? b + o[16] : NULL;
  if (make_args(L, w, enc) != 0) {
    snprintf(msg, n, "cuda-sm90: cuTensorMapEncodeTiled failed");
    sm90_destroy(L);
    return MOE_ERR_DEVICE;
  }
  /* The walk's band (row tiles) and Y's type: knobs for measuring. */
  L->g1.band = L->g2.band = env_int("MOE_SM90_BAND", SM90_BAND, 1, 1 << 16);
  L->g2.y_t = !env_int("MOE_SM90_Y32", 0, 0, 1);
  /* The epilogues' common tile by bulk copies (epi_fast_sm90.cuh): bit 0
   * GEMM2, bit 1 GEMM1. */
  L->g1.epi_bulk = L->g2.epi_bulk = env_int("MOE_SM90_EPI_BULK", 3, 0, 3);
  /* A last N tile with at most 128 columns inside N: half the W loads
   * (MOE_SM90_HALF_TAIL=0: both boxes). */
  L->g1.half_tail = L->g2.half_tail = env_int("MOE_SM90_HALF_TAIL", 1, 0, 1);
  /* A row tile with at most 64 rows (an expert's last) loads 64 rows of A
   * (MOE_SM90_HALF_ROWS=0: 128). */
  L->g1.half_rows = L->g2.half_rows = env_int("MOE_SM90_HALF_ROWS", 1, 0, 1);
  /* The GEMMs' walk: CTAs claim tiles from a counter (MOE_SM90_DYN=0:
   * each CTA strides over the list). A warpgroup with no rows in a tile
   * skips its MMAs where H <= 3072 (MOE_SM90_IDLE_SKIP=0 / 1 decides):
   * measured 1-3 % faster there (qwen3, gpt-oss, nemotron) and up to 6 %
   * slower at H = 4096 and 7168 (bench/NOTES.md cuda-sm90 v22). */
  L->g1.idle_skip = L->g2.idle_skip =
      env_int("MOE_SM90_IDLE_SKIP", s->H <= 3072, 0, 1);
  if (env_int("MOE_SM90_DYN", 1, 0, 1)) {
    CKL(cudaMalloc((void **)&L->claim, 4 * sizeof(int)), "cudaMalloc(claim)");
    CKL(cudaMemset(L->claim, 0, 4 * sizeof(int)), "cudaMemset(claim)");
    L->g1.claim = L->claim;
    L->g2.claim = L->claim + 2;
  }
  /* The decode path: a cuda-mma layer sized for the calls it serves, below
   * the crossover: MOE_SM90_CROSSOVER if set, else measured for this
   * shape where its experts are large enough for it to matter
   * (tune_sm90.cu; MOE_SM90_TUNE=0 keeps SM90_CROSSOVER), else
   * SM90_CROSSOVER. */
  L->s_full = *s;
  L->crossover = SM90_CROSSOVER;
  int fixed = 0;
  const char *ov = getenv("MOE_SM90_CROSSOVER");
  if (ov && *ov) {
    char *end = NULL;
    const double v = strtod(ov, &end);
    if (end && *end == 0 && v >= 0) {
      L->crossover = v;
      fixed = 1;
    }
  }
  const int top =
      fixed || !env_int("MOE_SM90_TUNE", 1, 0, 1) ? 0 : sm90_tune_rows(s);
  char note[SM90_TUNE_NOTE + 64] = "";
  const double sized = top > L->crossover ? top : L->crossover;
  if ((st = make_mma(L, env, w, sized, msg, n)) != MOE_OK) {
    sm90_destroy(L);
    return st;
  }
  if (top > 0) {
    double r = L->crossover;
    st = sm90_tune_crossover(s, run_path, L, &r, note, sizeof note, msg, n);
    if (st == MOE_ERR_OUT_OF_MEMORY) { /* keep the default */
      snprintf(note, sizeof note, "not measured: %s", msg);
    } else if (st != MOE_OK) {
      sm90_destroy(L);
      return st;
    } else {
      L->crossover = r;
    }
    /* the cuda-mma layer, sized for the measurement, to its final size */
    if (L->crossover != sized &&
        (st = make_mma(L, env, w, L->crossover, msg, n)) != MOE_OK) {
      sm90_destroy(L);
      return st;
    }
  }
  if (L->mma)
    snprintf(msg, n, "wgmma GEMMs from %g rows per expert%s%s%s", L->crossover,
             note[0] ? " (" : "", note, note[0] ? ")" : "");
  else
    snprintf(msg, n, "wgmma GEMMs at every size");
  *impl = L;
  return MOE_OK;
#undef CKL
}

static moe_status sm90_route(void *impl, const float *logits, int M,
                             int32_t *ids, float *weights, void *stream,
                             char *msg, size_t n) {
  const sm90_impl *L = (const sm90_impl *)impl;
  if (M <= 0) return MOE_OK;
  mma_route_args r =
      mma_route_args_make(&L->s, L->cbias, logits, M, ids, weights, 0);
  CK(mma_launch_route(&r, (cudaStream_t)stream), "route kernel launch");
  return MOE_OK;
}

static int persistent_grid(const sm90_impl *L, long long tiles) {
  return (int)(tiles < L->sms ? tiles : L->sms);
}

/* One chunk of at most Mc tokens. */
static moe_status run_chunk(sm90_impl *L, const void *x, const float *logits,
                            const int32_t *ids_in, const float *w_in, int mc,
                            void *out, cudaStream_t st, char *msg, size_t n) {
  const moe_shape *s = &L->s;
  const int k = s->k, pairs = mc * k, El = s->E_local, H = s->H;
  const int has_sh = s->Is > 0;
  const int ne = El < pairs ? El : pairs;

  /* ---- routing and permutation (cuda-mma's kernels), tiles of BM ---- */
  const char *what = "";
  CK(mma_launch_dispatch(&L->rb, s, L->cbias, logits, ids_in, mc, SM90_BM, 0,
                         st, &what),
     what);
  const float *wts = logits ? L->rb.wts : w_in;

  /* ---- the token gather (and the shared expert's copy of x) ---- */
  sm90_gather_args ga;
  memset(&ga, 0, sizeof ga);
  ga.x = x;
  ga.H = H;
  ga.vec = ((uintptr_t)x & 15) == 0;
  ga.sorted_tok = L->rb.sorted_tok;
  ga.n_rows = L->rb.offsets + El;
  ga.max_rows = pairs;
  ga.xp = L->xp;
  ga.shared_rows = has_sh ? mc : 0;
  ga.xs = L->xs;
  CK(sm90_launch_gather(&ga, st), "gather launch");

  /* ---- the GEMMs: persistent grids over a host bound of the tiles ---- */
  const long long mb =
      ((long long)pairs + (long long)ne * (SM90_BM - 1)) / SM90_BM;
  const int sh_tiles = has_sh ? (mc + SM90_BM - 1) / SM90_BM : 0;
  sm90_gemm_args *g = &L->g1;
  g->shared_tiles = sh_tiles;
  g->p[1].rows = mc;
  long long t1 = mb * g->p[0].n_tiles + (long long)sh_tiles * g->p[1].n_tiles;
  CK(sm90_launch_gemm1(s->dtype, g, persistent_grid(L, t1), st),
     "gemm1 launch");

  g = &L->g2;
  g->shared_tiles = sh_tiles;
  g->p[1].rows = mc;
  g->p[0].row_w = wts;
  long long t2 = mb * g->p[0].n_tiles + (long long)sh_tiles * g->p[1].n_tiles;
  CK(sm90_launch_gemm2(s->dtype, g, persistent_grid(L, t2), st),
     "gemm2 launch");

  /* ---- combine (cuda-mma's kernel) ---- */
  mma_combine_args c;
  memset(&c, 0, sizeof c);
  c.Y = L->Y;
  c.y_t = L->g2.y_t;
  c.y_zstride = (long long)L->P * H;
  c.y_split = 1;
  c.Ysh = has_sh ? L->Ysh : NULL;
  c.ysh_zstride = (long long)L->Mc * H;
  c.ysh_split = 1;
  c.pair_e = L->rb.pair_e;
  c.M = mc;
  c.k = k;
  c.H = H;
  c.out = out;
  CK(mma_launch_combine(s->dtype, &c, st), "combine launch");
  return MOE_OK;
}

static moe_status sm90_forward(void *impl, const moe_batch *b, void *stream,
                               char *msg, size_t n) {
  sm90_impl *L = (sm90_impl *)impl;
  const moe_shape *s = &L->s;
  const size_t es = moe_dtype_size(s->dtype);
  /* Chunks of at most Mc tokens, each on the path its own size picks (the
   * tail of a long call can fall below the crossover). */
  for (int m0 = 0; m0 < b->M; m0 += L->Mc) {
    const int mc = b->M - m0 < L->Mc ? b->M - m0 : L->Mc;
    const size_t xo = (size_t)m0 * s->H * es;
    moe_batch c;
    c.x = (const char *)b->x + xo;
    c.logits = b->logits ? b->logits + (size_t)m0 * s->E : NULL;
    c.ids = b->ids ? b->ids + (size_t)m0 * s->k : NULL;
    c.weights = b->weights ? b->weights + (size_t)m0 * s->k : NULL;
    c.M = mc;
    c.out = (char *)b->out + xo;
    moe_status st;
    if (L->mma && (double)mc * s->k < L->crossover * s->E)
      st = moe_backend_cuda_mma.forward(L->mma, &c, stream, msg, n);
    else
      st = run_chunk(L, c.x, c.logits, c.ids, c.weights, mc, c.out,
                     (cudaStream_t)stream, msg, n);
    if (st != MOE_OK) return st;
  }
  return MOE_OK;
}

/* Tried before cuda-mma (20): on sm_90 it serves every shape cuda-mma
 * serves, with cuda-mma's own kernels below the crossover. */
extern "C" const moe_backend moe_backend_cuda_sm90 = {
    "cuda-sm90",
    10,
    &moe_memops_cuda,
    sm90_rows,
    (int)(sizeof sm90_rows / sizeof sm90_rows[0]),
    sm90_kernel_compiled,
    sm90_probe,
    sm90_create,
    sm90_destroy,
    sm90_route,
    sm90_forward,
    (int)(2 * SM90_CROSSOVER), /* the self-check covers both paths */
};
