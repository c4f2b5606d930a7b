/*
 * test_dist_cpu_model.c - the three parallel modes played on the CPU with
 * cpu-ref layers, two ranks in one thread, no NCCL: each rank's layer is
 * what moe_dist_rank_plan_make builds (the same function the GPU path
 * uses); the all-reduce is a sum, the dispatch/combine is the EP_A2A data
 * flow (a token row once per rank that owns one of its experts, with all
 * its k ids; the receiver's expert map drops the others; the shared expert
 * as a one-expert layer; results summed in rank order). Every mode must
 * equal the single layer: f32 to 1e-4, bf16 to 1e-2. The logits are those
 * of the GPU test: every third token goes only to rank 1's experts and
 * expert 0 receives no token (checked here on the routing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "dist/dist.h"
#include "moe.h"
#include "testutil.h"

#define W 2
#define MT 37
#define SPLIT 20 /* EP_A2A: rank 0 owns tokens [0, 20), rank 1 the rest */

typedef struct pcase {
  const char *name;
  int E, k, H, I, Is;
  moe_activation act;
  int gated;
  moe_scoring scoring;
  int n_group, topk_group, renorm;
  float scale;
  int cbias, ebias;
} pcase;

static const pcase g_cases[] = {
    {"nemotron3-nano", 16, 6, 48, 32, 64, MOE_ACT_RELU2, 0, MOE_SCORING_SIGMOID,
     1, 1, 1, 2.5f, 1, 0},
    {"qwen3-30b-a3b", 16, 8, 48, 32, 0, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX, 0,
     0, 1, 1.0f, 0, 0},
    {"mixtral-8x7b", 8, 2, 48, 64, 0, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX, 0,
     0, 1, 1.0f, 0, 0},
    {"deepseek-v3", 32, 8, 48, 32, 32, MOE_ACT_SILU, 1, MOE_SCORING_SIGMOID, 8,
     4, 1, 2.5f, 1, 0},
    {"gpt-oss-120b", 16, 4, 48, 32, 0, MOE_ACT_SWIGLU_OAI, 1,
     MOE_SCORING_SOFTMAX, 0, 0, 1, 1.0f, 0, 1},
};

typedef struct full {
  const pcase *c;
  moe_dtype dt;
  size_t es;
  int N1, N1s;
  void *x, *w13, *w2, *sw13, *sw2;
  float *logits, *b13, *b2, *cb;
} full;

static moe_context *g_ctx;

static void desc_of(const pcase *c, moe_dtype dt, moe_layer_desc *d) {
  moe_layer_desc_init(d);
  d->num_experts = c->E;
  d->top_k = c->k;
  d->hidden = c->H;
  d->intermediate = c->I;
  d->shared_intermediate = c->Is;
  d->activation = c->act;
  d->gated = c->gated;
  d->dtype = dt;
  d->routing.scoring = c->scoring;
  d->routing.n_group = c->n_group;
  d->routing.topk_group = c->topk_group;
  d->routing.renormalize = c->renorm;
  d->routing.routed_scaling_factor = c->scale;
  d->backend = "cpu-ref";
  d->self_check = 0;
}

static void *rnd(tu_rng *r, size_t n, moe_dtype dt, float a) {
  void *p = malloc((n ? n : 1) * moe_dtype_size(dt));
  for (size_t i = 0; i < n; i++)
    moe_store_elem(p, i, dt, tu_uniform(r, -a, a));
  return p;
}

static void make_full(const pcase *c, moe_dtype dt, full *f) {
  memset(f, 0, sizeof *f);
  tu_rng r = tu_rng_make(77 + (uint64_t)c->E * 3 + (uint64_t)dt);
  f->c = c;
  f->dt = dt;
  f->es = moe_dtype_size(dt);
  f->N1 = c->gated ? 2 * c->I : c->I;
  f->N1s = c->gated ? 2 * c->Is : c->Is;
  const size_t H = c->H, E = c->E;
  f->x = rnd(&r, MT * H, dt, 1.0f);
  f->w13 = rnd(&r, E * f->N1 * H, dt, 2.0f / sqrtf((float)H));
  f->w2 = rnd(&r, E * H * c->I, dt, 2.0f / sqrtf((float)c->I));
  if (c->Is) {
    f->sw13 = rnd(&r, (size_t)f->N1s * H, dt, 2.0f / sqrtf((float)H));
    f->sw2 = rnd(&r, H * c->Is, dt, 2.0f / sqrtf((float)c->Is));
  }
  f->logits = rnd(&r, MT * E, MOE_DTYPE_F32, 3.0f);
  for (size_t t = 0; t < MT; t++)
    for (size_t e = 0; e < E; e++) {
      if (t % 3 == 0) f->logits[t * E + e] += e >= E / 2 ? 20.0f : -20.0f;
      if (e == 0) f->logits[t * E + e] = -30.0f;
    }
  if (c->cbias) {
    f->cb = rnd(&r, E, MOE_DTYPE_F32, 0.2f);
    f->cb[0] = -1.0f;
  }
  if (c->ebias) {
    f->b13 = rnd(&r, E * f->N1, MOE_DTYPE_F32, 0.3f);
    f->b2 = rnd(&r, E * H, MOE_DTYPE_F32, 0.3f);
  }
}

static void free_full(full *f) {
  void *p[] = {f->x,      f->w13, f->w2, f->sw13, f->sw2,
               f->logits, f->b13, f->b2, f->cb};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
}

/* Rank r's weights, host memory, as moe_dist_layer_create wants them. */
typedef struct rank_w {
  moe_weights w;
  void *own[5];
} rank_w;

static void rank_weights(const full *f, moe_parallel_mode mode, int r,
                         rank_w *rw) {
  const pcase *c = f->c;
  const size_t H = c->H, E = c->E, es = f->es;
  moe_layer_desc d;
  desc_of(c, f->dt, &d);
  memset(rw, 0, sizeof *rw);
  moe_weights *w = &rw->w;
  w->memory = MOE_MEMORY_HOST;
  w->correction_bias = f->cb;
  if (mode == MOE_PARALLEL_TP) {
    const size_t p = (size_t)c->I / W, ps = (size_t)c->Is / W;
    const size_t pn1 = c->gated ? 2 * p : p, pn1s = c->gated ? 2 * ps : ps;
    rw->own[0] = malloc(E * pn1 * H * es);
    rw->own[1] = malloc(E * H * p * es);
    assert_int_equal(
        moe_dist_tp_slice(&d, MOE_DIST_W13, r, W, f->w13, rw->own[0]), MOE_OK);
    assert_int_equal(
        moe_dist_tp_slice(&d, MOE_DIST_W2, r, W, f->w2, rw->own[1]), MOE_OK);
    if (f->b13) {
      rw->own[2] = malloc(E * pn1 * 4);
      assert_int_equal(
          moe_dist_tp_slice(&d, MOE_DIST_W13_BIAS, r, W, f->b13, rw->own[2]),
          MOE_OK);
    }
    if (c->Is) {
      rw->own[3] = malloc(pn1s * H * es);
      rw->own[4] = malloc(H * ps * es);
      assert_int_equal(
          moe_dist_tp_slice(&d, MOE_DIST_SHARED_W13, r, W, f->sw13, rw->own[3]),
          MOE_OK);
      assert_int_equal(
          moe_dist_tp_slice(&d, MOE_DIST_SHARED_W2, r, W, f->sw2, rw->own[4]),
          MOE_OK);
    }
    w->w13 = rw->own[0];
    w->w2 = rw->own[1];
    w->w13_bias = rw->own[2];
    w->w2_bias = f->b2; /* whole; the plan keeps it on rank 0 only */
    w->shared_w13 = rw->own[3];
    w->shared_w2 = rw->own[4];
  } else {
    int first = 0, n = 0;
    assert_int_equal(moe_dist_expert_range(c->E, r, W, &first, &n), MOE_OK);
    const size_t fs = (size_t)first;
    w->w13 = (const char *)f->w13 + fs * f->N1 * H * es;
    w->w2 = (const char *)f->w2 + fs * H * c->I * es;
    w->w13_bias = f->b13 ? f->b13 + fs * f->N1 : NULL;
    w->w2_bias = f->b2 ? f->b2 + fs * H : NULL;
    w->shared_w13 = f->sw13;
    w->shared_w2 = f->sw2;
  }
}

typedef struct rank_layers {
  rank_w rw;
  int32_t map[64];
  moe_layer *L, *S;
} rank_layers;

static void rank_make(const full *f, moe_parallel_mode mode, int r,
                      rank_layers *rl) {
  memset(rl, 0, sizeof *rl);
  rank_weights(f, mode, r, &rl->rw);
  moe_layer_desc d;
  desc_of(f->c, f->dt, &d);
  moe_dist_rank_plan p;
  moe_dist_rank_plan_make(&d, &rl->rw.w, mode, r, W, 32, rl->map, &p);
  moe_status st = moe_layer_create(g_ctx, &p.layer, &p.w, &rl->L);
  if (st != MOE_OK) fprintf(stderr, "%s\n", moe_last_error(g_ctx));
  assert_int_equal(st, MOE_OK);
  assert_int_equal(p.has_shared_layer,
                   mode == MOE_PARALLEL_EP_A2A && f->c->Is > 0);
  if (p.has_shared_layer)
    assert_int_equal(moe_layer_create(g_ctx, &p.shared, &p.sw, &rl->S), MOE_OK);
}

static void rank_free(rank_layers *rl) {
  moe_layer_destroy(rl->L);
  moe_layer_destroy(rl->S);
  for (int i = 0; i < 5; i++)
    free(rl->rw.own[i]);
}

static double compare(const full *f, const float *got, const void *ref,
                      size_t n) {
  float *b = malloc(n * 4);
  for (size_t i = 0; i < n; i++)
    b[i] = moe_load_elem(ref, i, f->dt);
  double e = tu_rel_error(got, b, n);
  free(b);
  return e;
}

/* TP and EP_REPLICATED: every rank all tokens, outputs summed. */
static double run_replicated(const full *f, moe_parallel_mode mode,
                             const void *ref) {
  const size_t n = (size_t)MT * f->c->H;
  float *sum = calloc(n, 4);
  void *part = malloc(n * f->es);
  for (int r = 0; r < W; r++) {
    rank_layers rl;
    rank_make(f, mode, r, &rl);
    assert_int_equal(moe_forward(rl.L, f->x, f->logits, MT, part, NULL),
                     MOE_OK);
    for (size_t i = 0; i < n; i++)
      sum[i] += moe_load_elem(part, i, f->dt);
    rank_free(&rl);
  }
  double e = compare(f, sum, ref, n);
  free(sum);
  free(part);
  return e;
}

/* EP_A2A: own tokens, dispatch, experts, return, combine. */
static double run_a2a(const full *f, const void *ref) {
  const pcase *c = f->c;
  const int H = c->H, k = c->k, m0[W] = {0, SPLIT}, m[W] = {SPLIT, MT - SPLIT};
  rank_layers rl[W];
  int32_t ids[MT * 8];
  float wt[MT * 8];
  for (int r = 0; r < W; r++) {
    rank_make(f, MOE_PARALLEL_EP_A2A, r, &rl[r]);
    /* Each rank routes its own tokens. */
    assert_int_equal(moe_route(rl[r].L, f->logits + (size_t)m0[r] * c->E, m[r],
                               ids + m0[r] * k, wt + m0[r] * k, NULL),
                     MOE_OK);
  }
  for (int t = 0; t < MT; t++)
    for (int j = 0; j < k; j++) {
      assert_int_not_equal(ids[t * k + j], 0); /* expert 0: no token */
      if (t % 3 == 0)                          /* only rank 1's experts */
        assert_int_equal(moe_dist_expert_owner(c->E, W, ids[t * k + j]), 1);
    }
  /* Row of token t in destination d's received rows (or -1). */
  int pos[MT][W], n_recv[W] = {0, 0};
  for (int d = 0; d < W; d++)
    for (int t = 0; t < MT; t++) { /* sources in rank order, tokens in order */
      int hit = 0;
      for (int j = 0; j < k; j++)
        hit |= moe_dist_expert_owner(c->E, W, ids[t * k + j]) == d;
      pos[t][d] = hit ? n_recv[d]++ : -1;
    }
  float *out = calloc((size_t)MT * H, 4);
  for (int d = 0; d < W; d++) {
    const int nr = n_recv[d];
    void *rx = malloc((size_t)(nr ? nr : 1) * H * f->es);
    void *ry = malloc((size_t)(nr ? nr : 1) * H * f->es);
    int32_t *ri = malloc((size_t)(nr ? nr : 1) * k * 4);
    float *rw = malloc((size_t)(nr ? nr : 1) * k * 4);
    for (int t = 0; t < MT; t++) {
      const int p = pos[t][d];
      if (p < 0) continue;
      memcpy((char *)rx + (size_t)p * H * f->es,
             (const char *)f->x + (size_t)t * H * f->es, (size_t)H * f->es);
      memcpy(ri + p * k, ids + t * k, (size_t)k * 4);
      memcpy(rw + p * k, wt + t * k, (size_t)k * 4);
    }
    if (nr)
      assert_int_equal(moe_forward_routed(rl[d].L, rx, ri, rw, nr, ry, NULL),
                       MOE_OK);
    for (int t = 0; t < MT; t++)
      if (pos[t][d] >= 0)
        for (int h = 0; h < H; h++)
          out[(size_t)t * H + h] +=
              moe_load_elem(ry, (size_t)pos[t][d] * H + h, f->dt);
    free(rx);
    free(ry);
    free(ri);
    free(rw);
  }
  if (c->Is) { /* each rank's shared expert on its own tokens */
    int32_t zero[MT] = {0};
    float one[MT];
    void *sh = malloc((size_t)MT * H * f->es);
    for (int t = 0; t < MT; t++)
      one[t] = 1.0f;
    for (int r = 0; r < W; r++)
      assert_int_equal(
          moe_forward_routed(
              rl[r].S, (const char *)f->x + (size_t)m0[r] * H * f->es, zero,
              one, m[r], (char *)sh + (size_t)m0[r] * H * f->es, NULL),
          MOE_OK);
    for (size_t i = 0; i < (size_t)MT * H; i++)
      out[i] += moe_load_elem(sh, i, f->dt);
    free(sh);
  }
  for (int r = 0; r < W; r++)
    rank_free(&rl[r]);
  double e = compare(f, out, ref, (size_t)MT * H);
  free(out);
  return e;
}

static void test_modes(void **state) {
  (void)state;
  const moe_dtype dts[2] = {MOE_DTYPE_F32, MOE_DTYPE_BF16};
  for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++)
    for (int di = 0; di < 2; di++) {
      full f;
      make_full(&g_cases[i], dts[di], &f);
      moe_layer_desc d;
      desc_of(f.c, f.dt, &d);
      moe_weights w = {MOE_MEMORY_HOST, f.w13, f.w2, f.b13, f.b2, f.cb,
                       f.sw13,          f.sw2};
      moe_layer *L = NULL;
      assert_int_equal(moe_layer_create(g_ctx, &d, &w, &L), MOE_OK);
      void *ref = malloc((size_t)MT * f.c->H * f.es);
      assert_int_equal(moe_forward(L, f.x, f.logits, MT, ref, NULL), MOE_OK);
      const double tol = f.dt == MOE_DTYPE_F32 ? 1e-4 : 1e-2;
      const double e[3] = {run_replicated(&f, MOE_PARALLEL_TP, ref),
                           run_replicated(&f, MOE_PARALLEL_EP_REPLICATED, ref),
                           run_a2a(&f, ref)};
      printf("  %-15s %-4s tp %.1e  ep %.1e  ep-a2a %.1e\n", f.c->name,
             moe_dtype_name(f.dt), e[0], e[1], e[2]);
      for (int m = 0; m < 3; m++)
        assert_true(e[m] < tol);
      moe_layer_destroy(L);
      free(ref);
      free_full(&f);
    }
}

/* The plan itself: which parts go where. */
static void test_rank_plan(void **state) {
  (void)state;
  moe_layer_desc d;
  desc_of(&g_cases[3], MOE_DTYPE_BF16, &d); /* deepseek-like, shared */
  static _Alignas(16) char buf[64];
  float b2[1];
  moe_weights w = {MOE_MEMORY_CUDA, buf, buf, NULL, b2, NULL, buf, buf};
  int32_t map[64];
  moe_dist_rank_plan p;
  moe_dist_rank_plan_make(&d, &w, MOE_PARALLEL_TP, 1, W, 16, map, &p);
  assert_int_equal(p.layer.intermediate, 16);
  assert_int_equal(p.layer.shared_intermediate, 16);
  assert_null(p.w.w2_bias); /* rank 1: no bias */
  assert_null(p.layer.expert_map);
  assert_false(p.has_shared_layer);
  moe_dist_rank_plan_make(&d, &w, MOE_PARALLEL_TP, 0, W, 16, map, &p);
  assert_ptr_equal(p.w.w2_bias, b2);
  moe_dist_rank_plan_make(&d, &w, MOE_PARALLEL_EP_REPLICATED, 0, W, 16, map,
                          &p);
  assert_int_equal(p.layer.shared_intermediate, 32); /* rank 0 keeps it */
  assert_ptr_equal(p.layer.expert_map, map);
  assert_int_equal(map[0], 0);
  assert_int_equal(map[16], -1);
  moe_dist_rank_plan_make(&d, &w, MOE_PARALLEL_EP_REPLICATED, 1, W, 16, map,
                          &p);
  assert_int_equal(p.layer.shared_intermediate, 0);
  assert_null(p.w.shared_w13);
  assert_int_equal(map[16], 0);
  moe_dist_rank_plan_make(&d, &w, MOE_PARALLEL_EP_A2A, 1, W, 16, map, &p);
  assert_int_equal(p.layer.shared_intermediate, 0);
  assert_int_equal(p.layer.max_tokens, W * 16);
  assert_true(p.has_shared_layer);
  assert_int_equal(p.shared.num_experts, 1);
  assert_int_equal(p.shared.top_k, 1);
  assert_int_equal(p.shared.intermediate, 32);
  assert_ptr_equal(p.sw.w13, buf);
  assert_int_equal(p.sw.memory, MOE_MEMORY_CUDA);
}

int main(void) {
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "cpu";
  o.num_threads = 1;
  if (moe_context_create(&o, &g_ctx) != MOE_OK) return 1;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_rank_plan),
                                     cmocka_unit_test(test_modes)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  moe_context_destroy(g_ctx);
  return rc;
}
