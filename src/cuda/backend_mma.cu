/*
 * backend_mma.cu - the cuda-mma backend: the portable tensor-core path for
 * every NVIDIA GPU from sm_80 on. Support rows, the instantiation check,
 * the workspace (allocated once, at create) and the per-call orchestration:
 *
 *   [route +] permute -> gemm1 (+ shared) [-> act_reduce] -> gemm2 (+ shared)
 *   -> combine
 *
 * or, for a handful of tokens, gemv1 (routing + GEMM1) -> gemv2 (GEMM2 +
 * combine) (gemv.cu); or, with few rows per expert and when asked for,
 * [route +] permute -> decode: one persistent kernel for both GEMMs and the
 * combine (decode.cu).
 *
 * Every launch is stream-ordered on the caller's stream, nothing is
 * allocated or synchronised per call, so a forward can be captured in a
 * CUDA graph. Launch shapes depend only on M and the layer shape (host
 * values); per-expert counts stay on the device.
 */
#include "common.cuh"
#include "cuda_backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- support rows: data the planner reads ---- */
#define MMA_DTYPE_BITS (MOE_BIT(MOE_DTYPE_BF16) | MOE_BIT(MOE_DTYPE_F16))
static const moe_support_row mma_rows[] = {
    /* device, dtypes, activations, gating, align H, align I, max E, smem */
    {{MOE_PRED_AT_LEAST, 80, 0},
     MMA_DTYPE_BITS,
     MMA_ACTS_GATED,
     MOE_GATING_GATED,
     1,
     1,
     MMA_ROUTE_MAX_E,
     MMA_MAX_SMEM},
    {{MOE_PRED_AT_LEAST, 80, 0},
     MMA_DTYPE_BITS,
     MMA_ACTS_PLAIN,
     MOE_GATING_PLAIN,
     1,
     1,
     MMA_ROUTE_MAX_E,
     MMA_MAX_SMEM},
};

/* ---- is there an image for sm, and an instantiation for the row? ---- */

static int table_has(const mma_inst *t, int n, moe_dtype dt, moe_activation a,
                     int gated) {
  for (int i = 0; i < n; i++)
    if (t[i].dtype == dt &&
        ((gated ? t[i].acts_gated : t[i].acts_plain) & MOE_BIT(a)))
      return 1;
  return 0;
}

static int mma_kernel_compiled(int sm, moe_dtype dt, moe_activation act,
                               int gated) {
  if (sm < 80 || !moe_cuda_image_for(sm)) return 0;
  const mma_inst *t1, *t2, *t3, *t4;
  int n1 = mma_gemm1_instances(&t1), n2 = mma_gemm2_instances(&t2);
  int n3 = mma_decode_instances(&t3), n4 = mma_gemv_instances(&t4);
  return table_has(t1, n1, dt, act, gated) &&
         table_has(t2, n2, dt, act, gated) &&
         table_has(t3, n3, dt, act, gated) && table_has(t4, n4, dt, act, gated);
}

/* ---- errors ---- */
static moe_status cuda_fail(cudaError_t e, const char *what, char *msg,
                            size_t n) {
  return mma_cuda_status("cuda-mma", e, what, msg, n);
}
#define CK(call, what)                                                         \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) return cuda_fail(e_, what, msg, n);                 \
  } while (0)

static moe_status mma_probe(const moe_device *dev, char *msg, size_t n) {
  (void)dev;
  CK(mma_gemm_probe(), "cudaFuncGetAttributes(grouped GEMM)");
  return MOE_OK;
}

/* ---- per-layer state ---- */
#define MMA_SPLIT_MAX 8
static_assert(MMA_DEC_SPLIT_MAX <= MMA_SPLIT_MAX, "decode Y planes fit Yx");
#define MMA_DECODE_ROWS 0.0f /* default of MOE_MMA_DECODE_ROWS: off */
/* Row tiles per band of the GEMMs' tile walk (tile_walk.h; H200: 264
 * resident 128 x 128 CTAs take 16 row tiles x ~16 N tiles, bench/NOTES.md);
 * MOE_MMA_BAND overrides it at layer creation (0: the launch order, row
 * tile fastest over the whole call). */
#define MMA_BAND 16
/* The tile of a call, by the mean rows per active expert: 16 rows up to
 * MMA_TILE16_ROWS, 64 up to MMA_TILE64_ROWS, 128 above (bench/NOTES.md);
 * MOE_MMA_TILE16_ROWS and MOE_MMA_TILE64_ROWS override them at creation. */
#define MMA_TILE16_ROWS 10
#define MMA_TILE64_ROWS 96
#define MMA_SPLIT_ROWS 128           /* GEMM1 split-K: rows of f32 partials */
#define MMA_SPLIT2_ROWS 1024         /* GEMM2 split-K: rows of Y planes */
#define MMA_SPLIT2_BYTES (128 << 20) /* ... and their size cap */

typedef struct mma_impl {
  moe_shape s;
  int sms;
  int pdl;  /* programmatic dependent launch between the forward's kernels */
  int band; /* tile walk band (MMA_BAND) */
  int t16, t64; /* mean rows per expert served by the 16- and 64-row tiles */
  const void *w13, *w2, *sw13, *sw2;
  const float *b13, *b2, *cbias;
  int32_t *emap;        /* device [E] or NULL */
  int Mc, P;            /* tokens and pairs per chunk */
  int SRp, SRt;         /* GEMM1 split-K row capacity (pairs, tokens) */
  int SR2p, SR2t;       /* GEMM2 split-K row capacity (pairs, tokens) */
  long long Ip, Isp;    /* act row strides (multiples of 8) */
  void *ws;             /* one allocation; the rest point into it */
  mma_dispatch_bufs rb; /* routing and permutation buffers */
  void *act, *act_sh;
  float *Y0, *Yx, *Ysh0, *Yshx, *P1, *P1s;
  /* decode path: used while the mean rows per active expert <= dec_rows */
  float dec_rows;
  int dec_ok, dec_ctas;
  mma_decode_args dec; /* the layer's part of the kernel's arguments */
  /* gemv path: calls of at most gv_m tokens (0: never) */
  int gv_m, gv_occ1, gv_occ2;
  mma_gemv_args gv; /* the layer's part of the kernels' arguments */
} mma_impl;

static void mma_destroy(void *p) {
  mma_impl *L = (mma_impl *)p;
  if (!L) return;
  if (L->ws) (void)cudaFree(L->ws);
  if (L->emap) (void)cudaFree(L->emap);
  free(L);
}

static int aligned16(const void *p, long long ld) {
  return ((uintptr_t)p & 15) == 0 && (ld & 7) == 0;
}

/* An environment knob: a number >= 0, or def. */
static double env_num(const char *name, double def) {
  const char *e = getenv(name);
  if (!e || !*e) return def;
  char *end = NULL;
  double v = strtod(e, &end);
  return end != e && v >= 0.0 ? v : def;
}

/* The gemv kernels' set-up, token limit (MOE_MMA_GEMV_TOKENS when set) and
 * the layer's part of their arguments. */
static cudaError_t gemv_init(mma_impl *L, const moe_shape *s,
                             const moe_weights *w) {
  cudaError_t e = mma_gemv_prepare(s->dtype, &L->gv_occ1, &L->gv_occ2);
  if (e != cudaSuccess) return e;
  const int forced = (int)env_num("MOE_MMA_GEMV_TOKENS", -1.0);
  L->gv_m = L->gv_occ1 > 0 && L->gv_occ2 > 0
                ? mma_gemv_tokens(s, w, L->Mc, forced)
                : 0;
  mma_gemv_args *g = &L->gv;
  mma_gemv_layer_init(g, s, w, L->emap);
  g->pe = L->rb.pair_e;
  g->pw = L->rb.wts;
  g->h = L->act;
  g->h_sh = L->act_sh;
  g->ldh = L->Ip;
  g->ldh_sh = L->Isp;
  g->pdl = L->pdl;
  g->mma1 = env_num("MOE_MMA_GEMV_MMA", 0.0) != 0.0;
  return cudaSuccess;
}

static moe_status mma_create(const moe_backend_env *env, const moe_shape *s,
                             const moe_weights *w, void **impl, char *msg,
                             size_t n) {
  *impl = NULL;
  moe_status cst = mma_check_layer("cuda-mma", s, w, msg, n);
  if (cst != MOE_OK) return cst;
  mma_impl *L = (mma_impl *)calloc(1, sizeof *L);
  if (!L) {
    snprintf(msg, n, "cuda-mma: out of host memory");
    return MOE_ERR_OUT_OF_MEMORY;
  }
  L->s = *s;
  L->s.expert_map = NULL;
  L->w13 = w->w13;
  L->w2 = w->w2;
  L->sw13 = s->Is ? w->shared_w13 : NULL;
  L->sw2 = s->Is ? w->shared_w2 : NULL;
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
      mma_destroy(L);                                                          \
      return st;                                                               \
    }                                                                          \
  } while (0)
  if (!L->sms) CKL(mma_device_sms(&L->sms), "cudaDeviceGetAttribute(SMs)");
  {
    /* PDL needs sm_90+ and kernels that hold griddepcontrol: only where
     * this build has SASS for the device (PTX of an older arch has none). */
    int dev = 0, maj = 0, mnr = 0;
    CKL(cudaGetDevice(&dev), "cudaGetDevice");
    CKL(cudaDeviceGetAttribute(&maj, cudaDevAttrComputeCapabilityMajor, dev),
        "cudaDeviceGetAttribute");
    CKL(cudaDeviceGetAttribute(&mnr, cudaDevAttrComputeCapabilityMinor, dev),
        "cudaDeviceGetAttribute");
    const int sm = maj * 10 + mnr;
    /* Off unless MOE_CUDA_PDL=1: measured on an H200 (bench/NOTES.md), the
     * early launch gained nothing here and cost ~3 us at M = 1. */
    const char *e = getenv("MOE_CUDA_PDL");
    L->pdl = sm >= 90 && moe_cuda_sass_for(sm) && e && e[0] == '1';
  }
  {
    const double b = env_num("MOE_MMA_BAND", MMA_BAND);
    L->band = b > 65536.0 ? 65536 : (int)b;
    const double t16 = env_num("MOE_MMA_TILE16_ROWS", MMA_TILE16_ROWS);
    const double t64 = env_num("MOE_MMA_TILE64_ROWS", MMA_TILE64_ROWS);
    L->t16 = t16 > 1e6 ? 1000000 : (int)t16;
    L->t64 = t64 > 1e6 ? 1000000 : (int)t64;
  }
  CKL(mma_gemm1_prepare(s->dtype), "cudaFuncSetAttribute(gemm1)");
  CKL(mma_gemm2_prepare(s->dtype), "cudaFuncSetAttribute(gemm2)");
  CKL(mma_route_prepare(), "cudaFuncSetAttribute(route)");
  CKL(mma_upload_expert_map(s, &L->emap), "expert_map upload");
  L->rb.emap = L->emap;

  const size_t es = moe_dtype_size(s->dtype);
  const long long Mc = s->max_tokens, P = Mc * s->k;
  L->Mc = (int)Mc;
  L->P = (int)P;
  L->SRp = P < MMA_SPLIT_ROWS ? (int)P : MMA_SPLIT_ROWS;
  L->SRt = Mc < MMA_SPLIT_ROWS ? (int)Mc : MMA_SPLIT_ROWS;
  long long sr2 = MMA_SPLIT2_BYTES / ((long long)MMA_SPLIT_MAX * s->H * 4);
  if (sr2 > MMA_SPLIT2_ROWS) sr2 = MMA_SPLIT2_ROWS;
  if (sr2 < L->SRp) sr2 = L->SRp;
  L->SR2p = (int)(P < sr2 ? P : sr2);
  L->SR2t = (int)(Mc < sr2 ? Mc : sr2);
  L->Ip = ((long long)s->I + 7) / 8 * 8;
  L->Isp = ((long long)s->Is + 7) / 8 * 8;
  const long long H = s->H, El = s->E_local;
  size_t off = 0, o[20];
  mma_dispatch_carve(NULL, NULL, &off, P, El);           /* first: rb */
  o[10] = mma_carve(&off, P * L->Ip * es);               /* act */
  o[11] = mma_carve(&off, s->Is ? Mc * L->Isp * es : 0); /* act_sh */
  o[12] = mma_carve(&off, P * H * 4);                    /* Y0 */
  o[13] = mma_carve(&off, (size_t)MMA_SPLIT_MAX * L->SR2p * H * 4); /* Yx */
  o[14] = mma_carve(&off, s->Is ? Mc * H * 4 : 0);                  /* Ysh0 */
  o[15] = mma_carve(&off, s->Is ? (size_t)MMA_SPLIT_MAX * L->SR2t * H * 4 : 0);
  o[16] = mma_carve(&off, (size_t)MMA_SPLIT_MAX * L->SRp * s->N1 * 4); /* P1 */
  o[17] = mma_carve(&off, s->Is ? (size_t)MMA_SPLIT_MAX * L->SRt * s->N1s * 4
                                : 0); /* P1s */
  /* Decode: Y planes in Yx / Yshx, so up to SR2p pairs and SR2t tokens. */
  const int tile_cap = (L->SR2t + MMA_DEC_ROWS - 1) / MMA_DEC_ROWS + L->SR2p;
  const long long nctr = mma_decode_ctr_count(tile_cap, L->SR2t, s->H);
  o[19] = mma_carve(&off, (size_t)nctr * 4);
  CKL(cudaMalloc(&L->ws, off), "cudaMalloc(workspace)");
  char *b = (char *)L->ws;
  size_t rb_off = 0;
  mma_dispatch_carve(&L->rb, b, &rb_off, P, El);
  L->act = b + o[10];
  L->act_sh = s->Is ? b + o[11] : NULL;
  L->Y0 = (float *)(b + o[12]);
  L->Yx = (float *)(b + o[13]);
  L->Ysh0 = s->Is ? (float *)(b + o[14]) : NULL;
  L->Yshx = s->Is ? (float *)(b + o[15]) : NULL;
  L->P1 = (float *)(b + o[16]);
  L->P1s = s->Is ? (float *)(b + o[17]) : NULL;
  mma_decode_layer_init(&L->dec, s, w);
  L->dec.tiles = L->rb.tiles;
  L->dec.n_tiles = L->rb.n_tiles;
  L->dec.offsets = L->rb.offsets;
  L->dec.sorted_tok = L->rb.sorted_tok;
  L->dec.sorted_pair = L->rb.sorted_pair;
  L->dec.pair_e = L->rb.pair_e;
  L->dec.abuf = L->act;
  L->dec.abuf_sh = L->act_sh;
  L->dec.ld_act = L->Ip;
  L->dec.ld_act_sh = L->Isp;
  L->dec.Y = L->Yx;
  L->dec.y_zstride = (long long)L->SR2p * s->H;
  L->dec.Ysh = L->Yshx;
  L->dec.ysh_zstride = (long long)L->SR2t * s->H;
  L->dec.ctr = (int32_t *)(b + o[19]);
  L->dec.tile_cap = tile_cap;
  {
    /* MOE_MMA_DECODE_ROWS: the largest mean rows per active expert served
     * by the decode kernel (0: never). Off by default: on an H200 it
     * streams slower than the tile path (bench/NOTES.md, "decode kernel"). */
    L->dec_rows = (float)env_num("MOE_MMA_DECODE_ROWS", MMA_DECODE_ROWS);
    /* 16-byte rows everywhere (cp.async) or the tile path serves. */
    L->dec_ok =
        s->H % 8 == 0 && s->I % 8 == 0 && s->Is % 8 == 0 &&
        aligned16(w->w13, 8) && aligned16(w->w2, 8) &&
        (!s->Is || (aligned16(w->shared_w13, 8) && aligned16(w->shared_w2, 8)));
    CKL(mma_decode_prepare(s->dtype, &L->dec_ctas), "decode kernel set-up");
    if (L->dec_ctas < 1 || L->dec_rows <= 0.0f) L->dec_ok = 0;
    if (L->dec_ok) {
      /* Zero the counters once; every call leaves them zero. This create
       * is the only place that waits for the device. */
      CKL(cudaMemset(L->dec.ctr, 0, (size_t)nctr * 4), "cudaMemset(counters)");
      CKL(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }
  }
  CKL(gemv_init(L, s, w), "gemv kernels set-up");
  *impl = L;
  return MOE_OK;
#undef CKL
}

static moe_status mma_route(void *impl, const float *logits, int M,
                            int32_t *ids, float *weights, void *stream,
                            char *msg, size_t n) {
  const mma_impl *L = (const mma_impl *)impl;
  if (M <= 0) return MOE_OK;
  mma_route_args r =
      mma_route_args_make(&L->s, L->cbias, logits, M, ids, weights, L->pdl);
  CK(mma_launch_route(&r, (cudaStream_t)stream), "route kernel launch");
  return MOE_OK;
}

/* Splits of K for weight-streaming launches with few CTAs (decode): with
 * the 16-row tile, as many as still fit in one wave (three CTAs per SM: a
 * second, part-filled wave costs a whole CTA time); with the larger tiles
 * about four waves of two CTAs per SM, so that their long K loops leave no
 * part-filled last wave. */
static int pick_split(const mma_impl *L, mma_cfg cfg, long long ctas, int K,
                      int rows_ok) {
  if (!rows_ok || ctas <= 0) return 1;
  /* 16-row tile: as many splits as keep one wave (three CTAs per SM);
   * larger tiles: about four waves of two CTAs per SM. */
  long long want = cfg == MMA_CFG_16 ? (3LL * L->sms) / ctas
                                     : (8LL * L->sms + ctas - 1) / ctas;
  long long kmax = K / (cfg == MMA_CFG_16 ? 256 : 512);
  if (want > kmax) want = kmax;
  if (want > MMA_SPLIT_MAX) want = MMA_SPLIT_MAX;
  return want < 1 ? 1 : (int)want;
}

static int kchunk_of(int K, int S) {
  int c = (K + S - 1) / S;
  return (c + MMA_BK - 1) / MMA_BK * MMA_BK;
}

/* One decode chunk: permutation into 8-row tiles, then the decode kernel
 * (both GEMMs and the combine). */
static moe_status run_decode(mma_impl *L, const void *x, const float *logits,
                             const int32_t *ids_in, const float *w_in, int mc,
                             void *out, cudaStream_t st, char *msg, size_t n) {
  const char *what = "";
  CK(mma_launch_dispatch(&L->rb, &L->s, L->cbias, logits, ids_in, mc,
                         MMA_DEC_ROWS, L->pdl, st, &what),
     what);
  CK(mma_decode_call(L->s.dtype, &L->dec, x, logits ? L->rb.wts : w_in, mc,
                     L->s.E_local, (long long)L->dec_ctas * L->sms, out, st),
     "decode launch");
  return MOE_OK;
}

/* A chunk of at most gv_m tokens: the two gemv kernels. */
static moe_status run_gemv(mma_impl *L, const void *x, const float *logits,
                           const int32_t *ids_in, const float *w_in, int mc,
                           void *out, cudaStream_t st, char *msg, size_t n) {
  mma_gemv_args g = L->gv;
  g.x = x;
  g.ids_in = ids_in;
  g.w_in = w_in;
  g.M = mc;
  g.out = out;
  mma_route_args r =
      mma_route_args_make(&L->s, L->cbias, logits, mc, NULL, NULL, L->pdl);
  CK(mma_launch_gemv(L->s.dtype, &g, &r, (long long)L->gv_occ1 * L->sms,
                     (long long)L->gv_occ2 * L->sms, st),
     "gemv launch");
  return MOE_OK;
}

/* One chunk of at most Mc tokens. */
static moe_status run_chunk(mma_impl *L, const void *x, const float *logits,
                            const int32_t *ids_in, const float *w_in, int mc,
                            void *out, cudaStream_t st, char *msg, size_t n) {
  const moe_shape *s = &L->s;
  const int k = s->k, pairs = mc * k, El = s->E_local, H = s->H;
  const int has_sh = s->Is > 0;

  /* gemv for a handful of tokens; the decode kernel, or tiles shaped by
   * the mean rows per active expert. */
  if (mc <= L->gv_m && aligned16(x, H) && aligned16(out, H))
    return run_gemv(L, x, logits, ids_in, w_in, mc, out, st, msg, n);
  const int ne = El < pairs ? El : pairs;
  if (L->dec_ok && ne > 0 && pairs <= L->dec_rows * ne && pairs <= L->SR2p &&
      mc <= L->SR2t)
    return run_decode(L, x, logits, ids_in, w_in, mc, out, st, msg, n);
  const int avg = ne > 0 ? pairs / ne : pairs;
  /* Tile rows from the mean rows per active expert (bench/NOTES.md: the
   * 16-row tile streams weights best while experts hold few rows; with
   * more, its L2 re-reads and low MMA density cost more than it saves). */
  const mma_cfg cfg = avg <= L->t16   ? MMA_CFG_16
                      : avg <= L->t64 ? MMA_CFG_64
                                      : MMA_CFG_128;
  const int BM = mma_cfg_bm(cfg), BN = mma_cfg_bn(cfg);

  /* ---- routing and permutation ---- */
  const char *what = "";
  CK(mma_launch_dispatch(&L->rb, s, L->cbias, logits, ids_in, mc, BM, L->pdl,
                         st, &what),
     what);
  const float *wts = logits ? L->rb.wts : w_in;

  /* ---- GEMM1 ---- */
  const long long mb = ((long long)pairs + (long long)ne * (BM - 1)) / BM;
  const int sh_tiles = has_sh ? (mc + BM - 1) / BM : 0;
  const int rows_ok = pairs <= L->SRp && mc <= L->SRt;
  mma_gemm_args g;
  memset(&g, 0, sizeof g);
  g.tiles = L->rb.tiles;
  g.n_tiles = L->rb.n_tiles;
  g.offsets = L->rb.offsets;
  g.shared_tiles = sh_tiles;
  g.pdl = L->pdl;
  g.band = L->band;
  g.act = mma_act_make(s);

  int n1max = s->N1 > s->N1s ? s->N1 : s->N1s;
  dim3 grid1((unsigned)(sh_tiles + mb), (unsigned)((n1max + BN - 1) / BN), 1);
  int S1 = pick_split(L, cfg, (long long)grid1.x * grid1.y, H, rows_ok);
  g.split = S1;
  grid1.z = S1;
  mma_problem *p = &g.p[0];
  p->A = x;
  p->lda = H;
  p->gather = L->rb.sorted_tok;
  p->W = L->w13;
  p->w_stride = (long long)s->N1 * H;
  p->N = s->N1;
  p->K = H;
  p->a_aligned = aligned16(x, H);
  p->w_aligned = aligned16(L->w13, H);
  p->bias = L->b13;
  p->bias_stride = s->N1;
  p->out = L->act;
  p->ldo = L->Ip;
  p->part = L->P1;
  p->part_zstride = (long long)L->SRp * s->N1;
  p->ldp = s->N1;
  p->kchunk = kchunk_of(H, S1);
  if (has_sh) {
    p = &g.p[1];
    p->A = x;
    p->lda = H;
    p->W = L->sw13;
    p->N = s->N1s;
    p->K = H;
    p->a_aligned = aligned16(x, H);
    p->w_aligned = aligned16(L->sw13, H);
    p->out = L->act_sh;
    p->ldo = L->Isp;
    p->part = L->P1s;
    p->part_zstride = (long long)L->SRt * s->N1s;
    p->ldp = s->N1s;
    p->rows = mc;
    p->kchunk = kchunk_of(H, S1);
  }
  if (grid1.x > 0) {
    CK(mma_launch_gemm1(s->dtype, cfg, &g, grid1, st), "gemm1 launch");
    if (S1 > 1)
      CK(mma_launch_act_reduce(s->dtype, &g, L->rb.row_expert, El, pairs, st),
         "act_reduce launch");
  }

  /* ---- GEMM2 ---- */
  dim3 grid2(grid1.x, (unsigned)((H + BN - 1) / BN), 1);
  const int kmin = has_sh && s->Is < s->I ? s->Is : s->I;
  const int rows2_ok = pairs <= L->SR2p && mc <= L->SR2t;
  int S2 = pick_split(L, cfg, (long long)grid2.x * grid2.y, kmin, rows2_ok);
  grid2.z = S2;
  mma_gemm_args g2 = g;
  g2.split = S2;
  memset(g2.p, 0, sizeof g2.p);
  p = &g2.p[0];
  p->A = L->act;
  p->lda = L->Ip;
  p->W = L->w2;
  p->w_stride = (long long)H * s->I;
  p->N = H;
  p->K = s->I;
  p->a_aligned = 1;
  p->w_aligned = aligned16(L->w2, s->I);
  p->bias = L->b2;
  p->bias_stride = H;
  p->out = S2 > 1 ? L->Yx : L->Y0;
  p->ldo = H;
  p->out_zstride = (long long)L->SR2p * H;
  p->out_rows = L->rb.sorted_pair;
  p->row_w = wts;
  p->kchunk = kchunk_of(s->I, S2);
  if (has_sh) {
    p = &g2.p[1];
    p->A = L->act_sh;
    p->lda = L->Isp;
    p->W = L->sw2;
    p->N = H;
    p->K = s->Is;
    p->a_aligned = 1;
    p->w_aligned = aligned16(L->sw2, s->Is);
    p->out = S2 > 1 ? L->Yshx : L->Ysh0;
    p->ldo = H;
    p->out_zstride = (long long)L->SR2t * H;
    p->rows = mc;
    p->kchunk = kchunk_of(s->Is, S2);
  }
  if (grid2.x > 0)
    CK(mma_launch_gemm2(s->dtype, cfg, &g2, grid2, st), "gemm2 launch");

  /* ---- combine ---- */
  mma_combine_args c;
  memset(&c, 0, sizeof c);
  c.Y = S2 > 1 ? L->Yx : L->Y0;
  c.y_zstride = (long long)L->SR2p * H;
  c.y_split = S2;
  c.Ysh = has_sh ? (S2 > 1 ? L->Yshx : L->Ysh0) : NULL;
  c.ysh_zstride = (long long)L->SR2t * H;
  c.ysh_split = S2;
  c.pair_e = L->rb.pair_e;
  c.M = mc;
  c.k = k;
  c.H = H;
  c.out = out;
  c.pdl = L->pdl;
  CK(mma_launch_combine(s->dtype, &c, st), "combine launch");
  return MOE_OK;
}

static moe_status mma_forward(void *impl, const moe_batch *b, void *stream,
                              char *msg, size_t n) {
  mma_impl *L = (mma_impl *)impl;
  const moe_shape *s = &L->s;
  const size_t es = moe_dtype_size(s->dtype);
  for (int m0 = 0; m0 < b->M; m0 += L->Mc) {
    const int mc = b->M - m0 < L->Mc ? b->M - m0 : L->Mc;
    const size_t xo = (size_t)m0 * s->H * es;
    moe_status st =
        run_chunk(L, (const char *)b->x + xo,
                  b->logits ? b->logits + (size_t)m0 * s->E : NULL,
                  b->ids ? b->ids + (size_t)m0 * s->k : NULL,
                  b->weights ? b->weights + (size_t)m0 * s->k : NULL, mc,
                  (char *)b->out + xo, (cudaStream_t)stream, msg, n);
    if (st != MOE_OK) return st;
  }
  return MOE_OK;
}

extern "C" const moe_backend moe_backend_cuda_mma = {
    "cuda-mma",
    20,
    &moe_memops_cuda,
    mma_rows,
    (int)(sizeof mma_rows / sizeof mma_rows[0]),
    mma_kernel_compiled,
    mma_probe,
    mma_create,
    mma_destroy,
    mma_route,
    mma_forward,
    /* one path at a time: the decode kernel is off unless asked for
     * (MOE_MMA_DECODE_ROWS), and tests/gpu checks both */
    0,
};
