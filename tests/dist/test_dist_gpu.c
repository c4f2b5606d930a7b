/*
 * test_dist_gpu.c - the multi-GPU layer on 2 GPUs against one GPU: for every
 * preset's shape at small scale and every mode (TP, EP replicated, EP
 * dispatch/combine), the ranks' outputs equal the single-GPU cuda-mma
 * output (bf16, relative error < 1e-2). The logits send every third token
 * only to the experts of rank 1 and no token to expert 0. EP_A2A also runs
 * with a rank that has no tokens, with tokens_bound below the capacity,
 * twice (bit-identical) and as a replayed CUDA graph (identical).
 * Communicators come from the single-process helper (ncclCommInitAll); each
 * rank runs in its own thread, with its device current. Exits 77 (skipped)
 * with fewer than 2 GPUs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <cuda_runtime_api.h>
#include <pthread.h>

#include "backend.h"
#include "moe.h"
#include "testutil.h"

#define WORLD 2
#define BF MOE_DTYPE_BF16

typedef struct gcase {
  const char *name;
  int E, k, H, I, Is;
  moe_activation act;
  int gated;
  moe_scoring scoring;
  int n_group, topk_group, renorm;
  float scale;
  int cbias, ebias;
  moe_dtype dt;
} gcase;

/* The presets of DESIGN.md section 6, small: same routing, activation,
 * shared expert and biases, smaller E, H, I. */
static const gcase g_cases[] = {
    {"nemotron3-nano", 16, 6, 256, 128, 256, MOE_ACT_RELU2, 0,
     MOE_SCORING_SIGMOID, 1, 1, 1, 2.5f, 1, 0, BF},
    {"qwen3-30b-a3b", 16, 8, 256, 128, 0, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX,
     0, 0, 1, 1.0f, 0, 0, BF},
    {"mixtral-8x7b", 8, 2, 256, 256, 0, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX, 0,
     0, 1, 1.0f, 0, 0, BF},
    {"deepseek-v3", 32, 8, 256, 128, 128, MOE_ACT_SILU, 1, MOE_SCORING_SIGMOID,
     8, 4, 1, 2.5f, 1, 0, BF},
    {"gpt-oss-120b", 16, 4, 256, 128, 0, MOE_ACT_SWIGLU_OAI, 1,
     MOE_SCORING_SOFTMAX, 0, 0, 1, 1.0f, 0, 1, BF},
    /* f16, H not a multiple of 8 (the element-wise pack path), E odd. */
    {"f16 odd shape", 15, 3, 196, 96, 64, MOE_ACT_GELU, 1, MOE_SCORING_SOFTMAX,
     0, 0, 1, 1.0f, 0, 0, MOE_DTYPE_F16},
};

#define MT 37 /* tokens in all */

typedef struct host_full {
  const gcase *c;
  int N1, N1s;
  uint16_t *x, *w13, *w2, *sw13, *sw2;
  float *logits, *b13, *b2, *cb;
  uint16_t *ref; /* single-GPU output [MT][H] */
} host_full;

/* bf16 or f16 values of U(-a, a). */
static void fill_bf16(tu_rng *r, uint16_t *p, size_t n, float a, moe_dtype dt) {
  for (size_t i = 0; i < n; i++)
    moe_store_elem(p, i, dt, tu_uniform(r, -a, a));
}

static void desc_of(const gcase *c, moe_layer_desc *d) {
  moe_layer_desc_init(d);
  d->num_experts = c->E;
  d->top_k = c->k;
  d->hidden = c->H;
  d->intermediate = c->I;
  d->shared_intermediate = c->Is;
  d->activation = c->act;
  d->gated = c->gated;
  d->dtype = c->dt;
  d->routing.scoring = c->scoring;
  d->routing.n_group = c->n_group;
  d->routing.topk_group = c->topk_group;
  d->routing.renormalize = c->renorm;
  d->routing.routed_scaling_factor = c->scale;
  d->backend = "cuda-mma";
  d->self_check = 0;
}

static void make_full(const gcase *c, host_full *h) {
  memset(h, 0, sizeof *h);
  tu_rng r = tu_rng_make((uint64_t)(uintptr_t)c->name);
  h->c = c;
  h->N1 = c->gated ? 2 * c->I : c->I;
  h->N1s = c->gated ? 2 * c->Is : c->Is;
  const size_t H = c->H, E = c->E;
  h->x = malloc(MT * H * 2);
  h->w13 = malloc(E * h->N1 * H * 2);
  h->w2 = malloc(E * H * c->I * 2);
  fill_bf16(&r, h->x, MT * H, 1.0f, c->dt);
  fill_bf16(&r, h->w13, E * h->N1 * H, 2.0f / sqrtf((float)H), c->dt);
  fill_bf16(&r, h->w2, E * H * c->I, 2.0f / sqrtf((float)c->I), c->dt);
  if (c->Is) {
    h->sw13 = malloc((size_t)h->N1s * H * 2);
    h->sw2 = malloc(H * c->Is * 2);
    fill_bf16(&r, h->sw13, (size_t)h->N1s * H, 2.0f / sqrtf((float)H), c->dt);
    fill_bf16(&r, h->sw2, H * c->Is, 2.0f / sqrtf((float)c->Is), c->dt);
  }
  h->logits = malloc(MT * E * 4);
  int first1 = 0, n1 = 0;
  assert_int_equal(moe_dist_expert_range(c->E, 1, WORLD, &first1, &n1), MOE_OK);
  for (size_t t = 0; t < MT; t++)
    for (size_t e = 0; e < E; e++) {
      float v = tu_uniform(&r, -3, 3);
      /* Every third token: only rank 1's experts. */
      if (t % 3 == 0) v += (int)e >= first1 ? 20.0f : -20.0f;
      if (e == 0) v = -30.0f; /* expert 0 gets no token */
      h->logits[t * E + e] = v;
    }
  if (c->cbias) {
    h->cb = malloc(E * 4);
    for (size_t e = 0; e < E; e++)
      h->cb[e] = tu_uniform(&r, -0.2f, 0.2f);
    h->cb[0] = -1.0f;
  }
  if (c->ebias) {
    h->b13 = malloc(E * h->N1 * 4);
    h->b2 = malloc(E * H * 4);
    for (size_t i = 0; i < E * h->N1; i++)
      h->b13[i] = tu_uniform(&r, -0.3f, 0.3f);
    for (size_t i = 0; i < E * H; i++)
      h->b2[i] = tu_uniform(&r, -0.3f, 0.3f);
  }
}

static void free_full(host_full *h) {
  void *p[] = {h->x,      h->w13, h->w2, h->sw13, h->sw2,
               h->logits, h->b13, h->b2, h->cb,   h->ref};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    free(p[i]);
}

/* Device copy (NULL for NULL); records the first failure. */
static void *up(const void *src, size_t bytes, int *ok) {
  if (!src || !*ok) return NULL;
  void *d = NULL;
  if (cudaMalloc(&d, bytes ? bytes : 1) != cudaSuccess ||
      cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
    *ok = 0;
    return NULL;
  }
  return d;
}

/* The single-GPU output on device 0. */
static void make_ref(host_full *h) {
  const gcase *c = h->c;
  const size_t H = c->H, E = c->E;
  int ok = 1;
  assert_int_equal(cudaSetDevice(0), cudaSuccess);
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  void *d[10] = {up(h->w13, E * h->N1 * H * 2, &ok),
                 up(h->w2, E * H * c->I * 2, &ok),
                 up(h->b13, E * h->N1 * 4, &ok),
                 up(h->b2, E * H * 4, &ok),
                 up(h->cb, E * 4, &ok),
                 up(h->sw13, (size_t)h->N1s * H * 2, &ok),
                 up(h->sw2, H * c->Is * 2, &ok),
                 up(h->x, MT * H * 2, &ok),
                 up(h->logits, MT * E * 4, &ok),
                 NULL};
  assert_true(ok);
  assert_int_equal(cudaMalloc(&d[9], MT * H * 2), cudaSuccess);
  moe_layer_desc ld;
  desc_of(c, &ld);
  moe_weights w = {MOE_MEMORY_CUDA, d[0], d[1], d[2], d[3], d[4], d[5], d[6]};
  moe_layer *L = NULL;
  moe_status st = moe_layer_create(ctx, &ld, &w, &L);
  if (st != MOE_OK) fprintf(stderr, "reference: %s\n", moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  assert_int_equal(moe_forward(L, d[7], d[8], MT, d[9], NULL), MOE_OK);
  h->ref = malloc(MT * H * 2);
  assert_int_equal(cudaMemcpy(h->ref, d[9], MT * H * 2, cudaMemcpyDeviceToHost),
                   cudaSuccess);
  moe_layer_destroy(L);
  moe_context_destroy(ctx);
  for (int i = 0; i < 10; i++)
    cudaFree(d[i]);
}

typedef struct rank_job {
  const host_full *h;
  moe_parallel_mode mode;
  int rank;
  void *comm;
  int m0, m;     /* this rank's tokens: [m0, m0 + m) */
  int T, bound;  /* EP_A2A capacity and per-call bound */
  uint16_t *out; /* host [m][H] */
  int identical; /* a second run and a graph replay matched bit for bit */
  moe_status st;
  char err[600];
} rank_job;

#define JOB_FAIL(...)                                                          \
  do {                                                                         \
    snprintf(j->err, sizeof j->err, __VA_ARGS__);                              \
    if (j->st == MOE_OK) j->st = MOE_ERR_INTERNAL;                             \
    goto done;                                                                 \
  } while (0)

/* The rank's weights, as moe_dist_layer_create wants them, on its device. */
static int rank_weights(const rank_job *j, moe_weights *w, void **dev) {
  const host_full *h = j->h;
  const gcase *c = h->c;
  const size_t H = c->H, E = c->E;
  moe_layer_desc d;
  desc_of(c, &d);
  int ok = 1;
  memset(w, 0, sizeof *w);
  w->memory = MOE_MEMORY_CUDA;
  if (j->mode == MOE_PARALLEL_TP) {
    const size_t p = (size_t)c->I / WORLD, ps = (size_t)c->Is / WORLD;
    const size_t pn1 = c->gated ? 2 * p : p, pn1s = c->gated ? 2 * ps : ps;
    void *s13 = malloc(E * pn1 * H * 2), *s2 = malloc(E * H * p * 2);
    void *sb = h->b13 ? malloc(E * pn1 * 4) : NULL;
    void *ss13 = c->Is ? malloc(pn1s * H * 2) : NULL;
    void *ss2 = c->Is ? malloc(H * ps * 2) : NULL;
    ok &= moe_dist_tp_slice(&d, MOE_DIST_W13, j->rank, WORLD, h->w13, s13) ==
          MOE_OK;
    ok &=
        moe_dist_tp_slice(&d, MOE_DIST_W2, j->rank, WORLD, h->w2, s2) == MOE_OK;
    if (sb)
      ok &= moe_dist_tp_slice(&d, MOE_DIST_W13_BIAS, j->rank, WORLD, h->b13,
                              sb) == MOE_OK;
    if (c->Is) {
      ok &= moe_dist_tp_slice(&d, MOE_DIST_SHARED_W13, j->rank, WORLD, h->sw13,
                              ss13) == MOE_OK;
      ok &= moe_dist_tp_slice(&d, MOE_DIST_SHARED_W2, j->rank, WORLD, h->sw2,
                              ss2) == MOE_OK;
    }
    dev[0] = up(s13, E * pn1 * H * 2, &ok);
    dev[1] = up(s2, E * H * p * 2, &ok);
    dev[2] = up(sb, E * pn1 * 4, &ok);
    dev[3] = up(h->b2, E * H * 4, &ok);
    dev[5] = up(ss13, pn1s * H * 2, &ok);
    dev[6] = up(ss2, H * ps * 2, &ok);
    free(s13);
    free(s2);
    free(sb);
    free(ss13);
    free(ss2);
  } else {
    int first = 0, n = 0;
    ok &= moe_dist_expert_range(c->E, j->rank, WORLD, &first, &n) == MOE_OK;
    const size_t f = (size_t)first;
    dev[0] = up(h->w13 + f * h->N1 * H, (size_t)n * h->N1 * H * 2, &ok);
    dev[1] = up(h->w2 + f * H * c->I, (size_t)n * H * c->I * 2, &ok);
    dev[2] = h->b13 ? up(h->b13 + f * h->N1, (size_t)n * h->N1 * 4, &ok) : NULL;
    dev[3] = h->b2 ? up(h->b2 + f * H, (size_t)n * H * 4, &ok) : NULL;
    dev[5] = up(h->sw13, (size_t)h->N1s * H * 2, &ok);
    dev[6] = up(h->sw2, H * c->Is * 2, &ok);
  }
  dev[4] = up(h->cb, E * 4, &ok);
  w->w13 = dev[0];
  w->w2 = dev[1];
  w->w13_bias = dev[2];
  w->w2_bias = dev[3];
  w->correction_bias = dev[4];
  w->shared_w13 = dev[5];
  w->shared_w2 = dev[6];
  return ok;
}

static void *rank_main(void *arg) {
  rank_job *j = arg;
  const gcase *c = j->h->c;
  const size_t H = c->H, E = c->E, m = (size_t)j->m;
  void *dev[7] = {0}, *dx = NULL, *dlog = NULL, *dout = NULL;
  moe_context *ctx = NULL;
  moe_dist_layer *L = NULL;
  cudaStream_t s = NULL;
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  uint16_t *again = NULL;
  j->st = MOE_ERR_INTERNAL;
  if (cudaSetDevice(j->rank) != cudaSuccess) JOB_FAIL("cudaSetDevice");
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  o.cuda_device = j->rank;
  if (moe_context_create(&o, &ctx) != MOE_OK) JOB_FAIL("context");
  moe_weights w;
  if (!rank_weights(j, &w, dev)) JOB_FAIL("weights upload");
  int ok = 1;
  dx = up(j->h->x + (size_t)j->m0 * H, (m ? m : 1) * H * 2, &ok);
  dlog = up(j->h->logits + (size_t)j->m0 * E, (m ? m : 1) * E * 4, &ok);
  if (!ok || cudaMalloc(&dout, (m ? m : 1) * H * 2) != cudaSuccess ||
      cudaMemset(dout, 0xFF, (m ? m : 1) * H * 2) != cudaSuccess ||
      cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess)
    JOB_FAIL("inputs");
  moe_layer_desc d;
  desc_of(c, &d);
  /* The communicator's own rank must be the one given. */
  moe_dist_layer *bad = NULL;
  if (moe_dist_layer_create(ctx, &d, &w, j->comm, (j->rank + 1) % WORLD, WORLD,
                            j->mode, j->T, &bad) != MOE_ERR_INVALID_ARGUMENT ||
      bad != NULL)
    JOB_FAIL("a communicator of another rank was accepted");
  j->st = moe_dist_layer_create(ctx, &d, &w, j->comm, j->rank, WORLD, j->mode,
                                j->T, &L);
  if (j->st != MOE_OK) JOB_FAIL("create: %s", moe_last_error(ctx));
  /* Bad calls fail before any collective, on every rank alike. */
  if (moe_dist_forward(L, dx, dlog, -1, j->bound, dout, s) !=
          MOE_ERR_INVALID_ARGUMENT ||
      moe_dist_forward(L, NULL, dlog, j->m, j->bound, dout, s) !=
          MOE_ERR_INVALID_ARGUMENT)
    JOB_FAIL("a bad forward was accepted");
  if (j->mode == MOE_PARALLEL_EP_A2A &&
      (moe_dist_forward(L, dx, dlog, j->T + 1, 0, dout, s) !=
           MOE_ERR_INVALID_ARGUMENT ||
       moe_dist_forward(L, dx, dlog, j->m, j->T + 1, dout, s) !=
           MOE_ERR_INVALID_ARGUMENT))
    JOB_FAIL("ep-a2a accepted more tokens than its capacity");
  j->st = moe_dist_forward(L, dx, dlog, j->m, j->bound, dout, s);
  if (j->st != MOE_OK) JOB_FAIL("forward: %s", moe_last_error(ctx));
  j->out = malloc((m ? m : 1) * H * 2);
  if (cudaStreamSynchronize(s) != cudaSuccess ||
      cudaMemcpy(j->out, dout, m * H * 2, cudaMemcpyDeviceToHost) !=
          cudaSuccess)
    JOB_FAIL("forward: %s", cudaGetErrorString(cudaGetLastError()));
  j->identical = 1;
  if (j->mode == MOE_PARALLEL_EP_A2A) {
    /* Again, eagerly, then captured in a graph and replayed. */
    again = malloc((m ? m : 1) * H * 2);
    for (int pass = 0; pass < 2; pass++) {
      cudaMemsetAsync(dout, 0xFF, (m ? m : 1) * H * 2, s);
      if (pass == 0) {
        j->st = moe_dist_forward(L, dx, dlog, j->m, j->bound, dout, s);
      } else {
        if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) !=
            cudaSuccess)
          JOB_FAIL("begin capture");
        j->st = moe_dist_forward(L, dx, dlog, j->m, j->bound, dout, s);
        if (cudaStreamEndCapture(s, &g) != cudaSuccess ||
            cudaGraphInstantiate(&ge, g, 0) != cudaSuccess ||
            cudaGraphLaunch(ge, s) != cudaSuccess)
          JOB_FAIL("graph: %s", cudaGetErrorString(cudaGetLastError()));
      }
      if (j->st != MOE_OK) JOB_FAIL("forward again: %s", moe_last_error(ctx));
      if (cudaStreamSynchronize(s) != cudaSuccess ||
          cudaMemcpy(again, dout, m * H * 2, cudaMemcpyDeviceToHost) !=
              cudaSuccess)
        JOB_FAIL("again: %s", cudaGetErrorString(cudaGetLastError()));
      if (memcmp(again, j->out, m * H * 2) != 0) j->identical = 0;
    }
  }
  j->st = MOE_OK;
done:
  if (ge) cudaGraphExecDestroy(ge);
  if (g) cudaGraphDestroy(g);
  moe_dist_layer_destroy(L);
  moe_context_destroy(ctx);
  if (s) cudaStreamDestroy(s);
  for (int i = 0; i < 7; i++)
    cudaFree(dev[i]);
  cudaFree(dx);
  cudaFree(dlog);
  cudaFree(dout);
  free(again);
  return NULL;
}

static void *g_comms[WORLD];

/* Runs both ranks; checks each rank's rows against the reference. */
static void run_mode(const host_full *h, moe_parallel_mode mode, const int *m0,
                     const int *m, int T, int bound, const char *what) {
  rank_job j[WORLD];
  pthread_t th[WORLD];
  for (int r = 0; r < WORLD; r++) {
    memset(&j[r], 0, sizeof j[r]);
    j[r].h = h;
    j[r].mode = mode;
    j[r].rank = r;
    j[r].comm = g_comms[r];
    j[r].m0 = m0[r];
    j[r].m = m[r];
    j[r].T = T;
    j[r].bound = bound;
    assert_int_equal(pthread_create(&th[r], NULL, rank_main, &j[r]), 0);
  }
  for (int r = 0; r < WORLD; r++)
    pthread_join(th[r], NULL);
  const size_t H = h->c->H;
  for (int r = 0; r < WORLD; r++) {
    if (j[r].st != MOE_OK)
      fprintf(stderr, "%s %s rank %d: %s\n", h->c->name,
              moe_parallel_mode_name(mode), r, j[r].err);
    assert_int_equal(j[r].st, MOE_OK);
    const size_t n = (size_t)j[r].m * H;
    float *a = malloc((n ? n : 1) * 4), *b = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++) {
      a[i] = moe_load_elem(j[r].out, i, h->c->dt);
      b[i] = moe_load_elem(h->ref, (size_t)j[r].m0 * H + i, h->c->dt);
    }
    double err = n ? tu_rel_error(a, b, n) : 0;
    printf("  %-15s %-7s %-18s rank %d tokens %2d rel err %.2e%s\n", h->c->name,
           moe_parallel_mode_name(mode), what, r, j[r].m, err,
           j[r].identical ? "" : "  (runs differ)");
    assert_true(err < 1e-2);
    assert_true(j[r].identical);
    free(a);
    free(b);
    free(j[r].out);
  }
}

static void test_presets(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) {
    host_full h;
    make_full(&g_cases[i], &h);
    make_ref(&h);
    const int all0[WORLD] = {0, 0}, allm[WORLD] = {MT, MT};
    run_mode(&h, MOE_PARALLEL_TP, all0, allm, 1, 0, "replicated tokens");
    run_mode(&h, MOE_PARALLEL_EP_REPLICATED, all0, allm, 1, 0,
             "replicated tokens");
    /* Own tokens: 20 and 17; bound 24 below the capacity 64. */
    const int s0[WORLD] = {0, 20}, sm[WORLD] = {20, MT - 20};
    run_mode(&h, MOE_PARALLEL_EP_A2A, s0, sm, 64, 24, "own tokens");
    /* Rank 0 has none; bound 0 (the capacity). */
    const int e0[WORLD] = {0, 0}, em[WORLD] = {0, MT};
    run_mode(&h, MOE_PARALLEL_EP_A2A, e0, em, MT, 0, "rank 0 empty");
    free_full(&h);
  }
}

int main(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  if (n < WORLD || !moe_dist_available()) {
    printf("SKIP: %d CUDA device(s), NCCL %s; this test needs %d GPUs\n", n,
           moe_dist_available() ? "built" : "not built", WORLD);
    return 77;
  }
  /* The H200 machines here need NVLink multicast off; an explicit setting
   * in the environment wins. */
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "cpu";
  if (moe_context_create(&o, &ctx) != MOE_OK) return 1;
  moe_status st = moe_dist_comms_create(ctx, WORLD, NULL, g_comms);
  if (st != MOE_OK) {
    fprintf(stderr, "communicators: %s\n", moe_last_error(ctx));
    moe_context_destroy(ctx);
    return 1;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_presets)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  moe_dist_comms_destroy(WORLD, g_comms);
  moe_context_destroy(ctx);
  return rc;
}
