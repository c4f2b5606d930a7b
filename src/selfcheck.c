/*
 * selfcheck.c - the profile run. Before a layer is handed to a backend, the
 * backend runs a tiny problem of the same kind (activation, gating, dtype,
 * routing, shared expert, expert map, biases) and its output is compared
 * with cpu-ref's. An error (no kernel image, unsupported activation, launch
 * failure) or a disagreement marks the backend failed, and the planner moves
 * on to the next one instead of crashing later in the caller's first call.
 * A backend whose path depends on the rows per expert (self_check_rows)
 * gets a second, larger call on the same layer, so both paths are checked.
 */
#include "cpu/cpu.h"
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SC_M 5
#define SC_MAX_M 512 /* the larger call's cap */
#define SC_MAX_E 64

typedef struct sc_rng {
  uint64_t s;
} sc_rng;

static float sc_uniform(sc_rng *r, float lo, float hi) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  uint64_t v = r->s * 0x2545F4914F6CDD1Dull;
  return lo + (hi - lo) * (float)((double)(v >> 11) / 9007199254740992.0);
}

/* The tiny problem's shape: same kind as s, small sizes. */
static void tiny_shape(const moe_shape *s, moe_shape *t, int32_t *map) {
  *t = *s;
  int E;
  if (s->routing.n_group > 1) {
    int g = s->routing.n_group, tg = s->routing.topk_group;
    int per = (s->k + tg - 1) / tg;
    if (per < 2) per = 2;
    E = g * per;
  } else {
    E = s->k + 6 > 16 ? s->k + 6 : 16;
  }
  if (E > s->E) E = s->E;
  t->E = E;
  t->H = 256;
  t->I = 128;
  t->N1 = s->gated ? 2 * t->I : t->I;
  t->Is = s->Is ? 128 : 0;
  t->N1s = s->Is ? (s->gated ? 2 * t->Is : t->Is) : 0;
  t->max_tokens = SC_M;
  t->E_local = E;
  t->expert_map = NULL;
  if (s->expert_map) { /* every other expert lives elsewhere */
    int n = 0;
    for (int e = 0; e < E; e++)
      map[e] = (e % 2 == 0) ? n++ : -1;
    t->expert_map = map;
    t->E_local = n;
  }
}

typedef struct sc_bufs {
  void *x, *w13, *w2, *sw13, *sw2, *out;
  float *logits, *b13, *b2, *cbias;
} sc_bufs;

static const size_t sc_sizes_count = 10;

/* Buffers for t->max_tokens tokens. */
static void sc_sizes(const moe_shape *t, size_t sz[10]) {
  size_t es = moe_dtype_size(t->dtype);
  const size_t M = (size_t)t->max_tokens;
  sz[0] = M * t->H * es;                          /* x */
  sz[1] = (size_t)t->E_local * t->N1 * t->H * es; /* w13 */
  sz[2] = (size_t)t->E_local * t->H * t->I * es;  /* w2 */
  sz[3] = t->Is ? (size_t)t->N1s * t->H * es : 0; /* shared w13 */
  sz[4] = t->Is ? (size_t)t->H * t->Is * es : 0;  /* shared w2 */
  sz[5] = M * t->H * es;                          /* out */
  sz[6] = M * t->E * sizeof(float);               /* logits */
  sz[7] = t->has_expert_bias ? (size_t)t->E_local * t->N1 * sizeof(float) : 0;
  sz[8] = t->has_expert_bias ? (size_t)t->E_local * t->H * sizeof(float) : 0;
  sz[9] = t->has_correction_bias ? (size_t)t->E * sizeof(float) : 0;
}

static void **sc_slot(sc_bufs *b, size_t i) {
  void **slots[10] = {&b->x,
                      &b->w13,
                      &b->w2,
                      &b->sw13,
                      &b->sw2,
                      &b->out,
                      (void **)&b->logits,
                      (void **)&b->b13,
                      (void **)&b->b2,
                      (void **)&b->cbias};
  return slots[i];
}

static void sc_free(const moe_memops *m, sc_bufs *b) {
  for (size_t i = 0; i < sc_sizes_count; i++)
    if (*sc_slot(b, i)) m->release(*sc_slot(b, i));
  memset(b, 0, sizeof *b);
}

static moe_status sc_alloc(const moe_memops *m, const size_t *sz, sc_bufs *b) {
  memset(b, 0, sizeof *b);
  for (size_t i = 0; i < sc_sizes_count; i++) {
    if (!sz[i]) continue;
    if (m->alloc(sc_slot(b, i), sz[i]) != MOE_OK) {
      sc_free(m, b);
      return MOE_ERR_OUT_OF_MEMORY;
    }
  }
  return MOE_OK;
}

static void sc_fill(const moe_shape *t, const size_t *sz, sc_bufs *h) {
  sc_rng r = {0x9E3779B97F4A7C15ull};
  float wscale = 1.0f / sqrtf((float)t->H);
  for (size_t i = 0; i < sz[0] / moe_dtype_size(t->dtype); i++)
    moe_store_elem(h->x, i, t->dtype, sc_uniform(&r, -1, 1));
  for (int w = 1; w <= 4; w++) {
    float sc = (w == 2 || w == 4) ? 1.0f / sqrtf((float)t->I) : wscale;
    size_t n = sz[w] / moe_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++)
      moe_store_elem(*sc_slot(h, (size_t)w), i, t->dtype,
                     sc_uniform(&r, -2 * sc, 2 * sc));
  }
  for (size_t i = 0; i < sz[6] / sizeof(float); i++)
    h->logits[i] = sc_uniform(&r, -3, 3);
  for (size_t i = 0; i < sz[7] / sizeof(float); i++)
    h->b13[i] = sc_uniform(&r, -0.2f, 0.2f);
  for (size_t i = 0; i < sz[8] / sizeof(float); i++)
    h->b2[i] = sc_uniform(&r, -0.2f, 0.2f);
  for (size_t i = 0; i < sz[9] / sizeof(float); i++)
    h->cbias[i] = sc_uniform(&r, -0.5f, 0.5f);
  memset(h->out, 0xFF, sz[5]);
}

static moe_weights sc_weights(moe_memory mem, const sc_bufs *b) {
  moe_weights w;
  memset(&w, 0, sizeof w);
  w.memory = mem;
  w.w13 = b->w13;
  w.w2 = b->w2;
  w.shared_w13 = b->sw13;
  w.shared_w2 = b->sw2;
  w.w13_bias = b->b13;
  w.w2_bias = b->b2;
  w.correction_bias = b->cbias;
  return w;
}

/* Runs backend b on the first M tokens of the problem in bufs; out stays
 * in b's memory. */
static moe_status sc_run(moe_context *ctx, const moe_backend *b,
                         const moe_shape *t, const sc_bufs *bufs, int M,
                         int hooked, char *why, size_t n) {
  moe_backend_env env = moe_context_env(ctx);
  moe_weights w = sc_weights(b->memops->memory, bufs);
  void *impl = NULL;
  char msg[256] = "";
  moe_status st = b->create(&env, t, &w, &impl, msg, sizeof msg);
  if (st != MOE_OK) {
    snprintf(why, n, "create: %s: %s", moe_status_string(st), msg);
    return st;
  }
  moe_batch batch = {bufs->x, bufs->logits, NULL, NULL, M, bufs->out};
  st = hooked ? moe_call_forward(ctx, b, impl, t, &batch, NULL, msg, sizeof msg)
              : b->forward(impl, &batch, NULL, msg, sizeof msg);
  if (st == MOE_OK) st = b->memops->sync();
  if (st != MOE_OK)
    snprintf(why, n, "forward: %s: %s", moe_status_string(st),
             msg[0] ? msg : "(no message)");
  b->destroy(impl);
  return st;
}

moe_status moe_self_check(moe_context *ctx, const moe_backend *b,
                          const moe_shape *s, char *why, size_t n) {
  int32_t map[SC_MAX_E];
  moe_shape t;
  tiny_shape(s, &t, map);
  /* The calls: one token (backends keep a decode path for it), SC_M
   * tokens, then, when the backend asks, enough tokens for
   * self_check_rows rows per expert; each against the reference, with the
   * output poisoned before it. */
  int Ms[3] = {1, SC_M, 0}, nM = 2;
  if (b->self_check_rows > 0) {
    long long m = ((long long)b->self_check_rows * t.E + t.k - 1) / t.k;
    if (m > SC_MAX_M) m = SC_MAX_M;
    if (m > SC_M) {
      Ms[2] = (int)m;
      nM = 3;
      t.max_tokens = (int)m;
    }
  }
  size_t sz[10];
  sc_sizes(&t, sz);

  sc_bufs host, dev;
  if (sc_alloc(&moe_memops_host, sz, &host) != MOE_OK) {
    snprintf(why, n, "self-check: no host memory");
    return MOE_ERR_OUT_OF_MEMORY;
  }
  sc_fill(&t, sz, &host);

  /* The reference output. */
  void *ref = malloc(sz[5]);
  if (!ref) {
    sc_free(&moe_memops_host, &host);
    snprintf(why, n, "self-check: no host memory");
    return MOE_ERR_OUT_OF_MEMORY;
  }
  moe_status st =
      sc_run(ctx, &moe_backend_cpu_ref, &t, &host, t.max_tokens, 0, why, n);
  if (st != MOE_OK) {
    free(ref);
    sc_free(&moe_memops_host, &host);
    return MOE_ERR_INTERNAL;
  }
  memcpy(ref, host.out, sz[5]);
  memset(host.out, 0xFF, sz[5]);

  /* The candidate, in its own memory space. */
  const moe_memops *m = b->memops;
  const sc_bufs *use = &host;
  int own = m->memory != MOE_MEMORY_HOST;
  if (own) {
    st = sc_alloc(m, sz, &dev);
    for (size_t i = 0; st == MOE_OK && i < sc_sizes_count; i++)
      if (sz[i]) st = m->upload(*sc_slot(&dev, i), *sc_slot(&host, i), sz[i]);
    if (st != MOE_OK) {
      snprintf(why, n, "self-check: could not stage the problem in %s memory",
               b->name);
      if (dev.x || dev.w13) sc_free(m, &dev);
      free(ref);
      sc_free(&moe_memops_host, &host);
      return st;
    }
    use = &dev;
  }
  for (int c = 0; c < nM && st == MOE_OK; c++) {
    const int M = Ms[c];
    memset(host.out, 0xFF, sz[5]);
    if (own) st = m->upload(dev.out, host.out, sz[5]);
    if (st == MOE_OK) st = sc_run(ctx, b, &t, use, M, 1, why, n);
    if (st == MOE_OK && own) st = m->download(host.out, dev.out, sz[5]);
    if (st != MOE_OK) break;
    double num = 0, den = 0;
    int bad = 0;
    size_t cnt = (size_t)M * t.H;
    for (size_t i = 0; i < cnt; i++) {
      float a = moe_load_elem(host.out, i, t.dtype);
      float r = moe_load_elem(ref, i, t.dtype);
      if (!isfinite(a)) bad = 1;
      num += ((double)a - r) * ((double)a - r);
      den += (double)r * r;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    double tol = t.dtype == MOE_DTYPE_F32 ? 1e-3 : 2e-2;
    if (bad || !(rel <= tol)) {
      snprintf(why, n,
               "self-check mismatch at %d tokens: relative error %.3g vs "
               "cpu-ref (tolerance %.0e)%s",
               M, rel, tol, bad ? ", non-finite output" : "");
      st = MOE_ERR_SELF_CHECK;
    } else if (nM == 2) {
      snprintf(why, n,
               "self-check passed at %d and %d tokens (relative error %.2g)",
               Ms[0], Ms[1], rel);
    } else {
      snprintf(why, n,
               "self-check passed at %d, %d and %d tokens (relative error "
               "%.2g)",
               Ms[0], Ms[1], Ms[2], rel);
    }
  }
  if (own) sc_free(m, &dev);
  free(ref);
  sc_free(&moe_memops_host, &host);
  return st;
}
