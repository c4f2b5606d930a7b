/*
 * layer_cpu.c - the layer object shared by the three CPU backends: checks
 * the shape, sizes and allocates every buffer once, owns the thread pool,
 * and splits calls into chunks. The per-chunk work is forward_ref.c
 * (cpu-ref) or forward_fast.c (cpu-avx2, cpu-avx512).
 */
#include "cpu_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Threads beyond this are never useful for one layer and bound the
 * per-thread scratch. */
#define CPU_MAX_THREADS 512

static moe_status fail(moe_status st, char *msg, size_t n, const char *fmt,
                       ...) {
  if (msg && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
  }
  return st;
}

/* a * b * c in size_t; 0 on overflow (no buffer here is legitimately 0). */
static size_t mul3(size_t a, size_t b, size_t c) {
  if (a && b > SIZE_MAX / a) return 0;
  size_t ab = a * b;
  if (ab && c > SIZE_MAX / ab) return 0;
  return ab * c;
}

static int alloc_buf(void **p, size_t bytes) {
  *p = bytes ? calloc(1, bytes) : NULL;
  return bytes == 0 || *p != NULL;
}

static moe_status check_shape(const moe_shape *s, const moe_weights *w,
                              char *msg, size_t n) {
  if (s->E <= 0 || s->E > MOE_CPU_ROUTE_MAX_E)
    return fail(MOE_ERR_UNSUPPORTED, msg, n,
                "cpu: num_experts %d outside 1..%d", s->E, MOE_CPU_ROUTE_MAX_E);
  if (s->k <= 0 || s->k > s->E)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: top_k %d outside 1..%d",
                s->k, s->E);
  if (s->E_local < 0 || s->E_local > s->E)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: E_local %d",
                s->E_local);
  if (s->H <= 0 || s->I <= 0)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: H %d, I %d", s->H,
                s->I);
  if ((unsigned)s->dtype >= MOE_DTYPE_COUNT ||
      (unsigned)s->act >= MOE_ACT_COUNT)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: dtype %d or activation %d unknown", (int)s->dtype,
                (int)s->act);
  if (s->N1 != (s->gated ? 2 * s->I : s->I))
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: N1 %d does not match I %d (gated %d)", s->N1, s->I,
                s->gated);
  if (s->Is < 0 || (s->Is > 0 && s->N1s != (s->gated ? 2 * s->Is : s->Is)))
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: shared expert Is %d, N1s %d", s->Is, s->N1s);
  if (!w)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: weights are NULL");
  if (w->memory != MOE_MEMORY_HOST)
    return fail(MOE_ERR_UNSUPPORTED, msg, n,
                "cpu: weights must be host memory");
  if (s->E_local > 0 && (!w->w13 || !w->w2))
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: w13 or w2 is NULL");
  if (s->Is > 0 && (!w->shared_w13 || !w->shared_w2))
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: shared expert weights are NULL");
  if (s->expert_map)
    for (int e = 0; e < s->E; e++)
      if (s->expert_map[e] < -1 || s->expert_map[e] >= s->E_local)
        return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                    "cpu: expert_map[%d] = %d outside -1..%d", e,
                    (int)s->expert_map[e], s->E_local - 1);
  return MOE_OK;
}

static moe_status alloc_ref(cpu_layer *L, char *msg, size_t n) {
  const moe_shape *s = &L->s;
  size_t n1 = (size_t)(s->N1 > s->N1s ? s->N1 : s->N1s);
  /* h [N1], a [max(I, Is)] (<= N1), y [H], x row [H]. */
  L->ref_scratch_per_thread = n1 * 2 + (size_t)s->H * 2;
  size_t bytes =
      mul3(L->ref_scratch_per_thread, (size_t)L->nthreads, sizeof(double));
  if (!bytes || !alloc_buf((void **)&L->ref_scratch, bytes))
    return fail(MOE_ERR_OUT_OF_MEMORY, msg, n,
                "cpu-ref: cannot allocate %zu bytes of scratch", bytes);
  return MOE_OK;
}

static moe_status alloc_fast(cpu_layer *L, char *msg, size_t n) {
  const moe_shape *s = &L->s;
  size_t C = (size_t)L->chunk, k = (size_t)s->k;
  int vb = L->kern->vec_bf16[s->dtype];
  size_t vsz = vb ? 2 : 4;
  /* x is used in place when it already has the activation format. */
  int x_in_place = vb ? s->dtype == MOE_DTYPE_BF16 : s->dtype == MOE_DTYPE_F32;
  size_t b_x = x_in_place ? 0 : mul3(C, (size_t)s->H, vsz);
  size_t b_act = mul3(C * k, (size_t)s->I, vsz);
  size_t b_sh = s->Is > 0 ? mul3(C, (size_t)s->Is, vsz) : 0;
  size_t b_y = mul3(C, (size_t)s->H, sizeof(float));
  if ((!x_in_place && !b_x) || !b_act || (s->Is > 0 && !b_sh) || !b_y)
    return fail(MOE_ERR_OUT_OF_MEMORY, msg, n, "cpu: workspace overflows");
  int ok =
      alloc_buf(&L->xcvt, b_x) &&
      alloc_buf((void **)&L->cnt, ((size_t)s->E_local + 2) * sizeof(int32_t)) &&
      alloc_buf((void **)&L->pair_tok, C * k * sizeof(int32_t)) &&
      alloc_buf((void **)&L->pair_w, C * k * sizeof(float)) &&
      alloc_buf((void **)&L->touched,
                ((size_t)s->E_local + 1) * sizeof(int32_t)) &&
      alloc_buf(&L->act, b_act) && alloc_buf(&L->act_shared, b_sh) &&
      alloc_buf((void **)&L->y, b_y);
  if (!ok)
    return fail(MOE_ERR_OUT_OF_MEMORY, msg, n,
                "cpu: cannot allocate the workspace (%zu tokens per chunk)", C);
  return MOE_OK;
}

void cpu_layer_destroy(void *impl) {
  cpu_layer *L = impl;
  if (!L) return;
  cpu_pool_destroy(L->pool);
  free(L->map);
  free(L->ids);
  free(L->wts);
  free(L->ref_scratch);
  free(L->xcvt);
  free(L->cnt);
  free(L->pair_tok);
  free(L->pair_w);
  free(L->touched);
  free(L->act);
  free(L->act_shared);
  free(L->y);
  free(L);
}

moe_status cpu_layer_create(const moe_backend_env *env, const moe_shape *s,
                            const moe_weights *w, const cpu_kernels *kern,
                            void **impl, char *msg, size_t n) {
  if (!impl) return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: impl is NULL");
  *impl = NULL;
  if (!env || !s)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: env or shape NULL");
  moe_status st = check_shape(s, w, msg, n);
  if (st != MOE_OK) return st;
  if (kern) {
    /* The planner may have judged a what-if device: never run
     * instructions this CPU lacks. */
    uint32_t have = moe_cpu_detect_features();
    if ((have & kern->needs) != kern->needs)
      return fail(MOE_ERR_UNSUPPORTED, msg, n,
                  "cpu-%s: this CPU lacks the instructions it needs",
                  kern->isa);
  }
  cpu_layer *L = calloc(1, sizeof *L);
  if (!L) return fail(MOE_ERR_OUT_OF_MEMORY, msg, n, "cpu: out of memory");
  L->s = *s;
  L->w = *w;
  L->kern = kern;
  L->ref_double = env->ref_double_accumulation;
  L->nthreads = env->num_threads > 0 ? env->num_threads : 1;
  if (L->nthreads > CPU_MAX_THREADS) L->nthreads = CPU_MAX_THREADS;
  if (L->s.max_tokens <= 0) L->s.max_tokens = 4096;
  L->chunk = L->s.max_tokens;
  if (kern && L->chunk > CPU_FAST_CHUNK) L->chunk = CPU_FAST_CHUNK;
  if (L->s.routing.routed_scaling_factor == 0.0f)
    L->s.routing.routed_scaling_factor = 1.0f;
  if (s->expert_map) {
    L->map = malloc((size_t)s->E * sizeof(int32_t));
    if (!L->map) {
      cpu_layer_destroy(L);
      return fail(MOE_ERR_OUT_OF_MEMORY, msg, n, "cpu: out of memory");
    }
    memcpy(L->map, s->expert_map, (size_t)s->E * sizeof(int32_t));
    L->s.expert_map = L->map;
  }
  size_t pairs = (size_t)L->chunk * (size_t)s->k;
  L->ids = malloc(pairs * sizeof(int32_t));
  L->wts = malloc(pairs * sizeof(float));
  if (!L->ids || !L->wts) {
    cpu_layer_destroy(L);
    return fail(MOE_ERR_OUT_OF_MEMORY, msg, n, "cpu: out of memory");
  }
  st = kern ? alloc_fast(L, msg, n) : alloc_ref(L, msg, n);
  if (st != MOE_OK) {
    cpu_layer_destroy(L);
    return st;
  }
  L->pool = cpu_pool_create(L->nthreads);
  if (!L->pool) {
    cpu_layer_destroy(L);
    return fail(MOE_ERR_OUT_OF_MEMORY, msg, n, "cpu: cannot start %d threads",
                L->nthreads);
  }
  *impl = L;
  return MOE_OK;
}

/* Routing of one chunk, tokens split across the pool. */
typedef struct route_task {
  const cpu_layer *L;
  const float *logits;
  int M;
  int32_t *ids;
  float *wts;
} route_task;

static void route_worker(void *arg, int tid, int nt) {
  route_task *t = arg;
  int t0 = (int)((long long)t->M * tid / nt);
  int t1 = (int)((long long)t->M * (tid + 1) / nt);
  if (t1 <= t0) return;
  const moe_shape *s = &t->L->s;
  moe_cpu_route(s, t->L->w.correction_bias, t->logits + (size_t)t0 * s->E,
                t1 - t0, t->ids + (size_t)t0 * s->k,
                t->wts + (size_t)t0 * s->k);
}

static void route_chunk(cpu_layer *L, const float *logits, int M, int32_t *ids,
                        float *wts) {
  route_task t = {L, logits, M, ids, wts};
  /* A few tokens are not worth waking threads for. */
  if (M * L->s.E < 4096)
    route_worker(&t, 0, 1);
  else
    cpu_pool_run(L->pool, route_worker, &t);
}

moe_status cpu_layer_route(void *impl, const float *logits, int M, int32_t *ids,
                           float *weights, void *stream, char *msg, size_t n) {
  cpu_layer *L = impl;
  if (!L) return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: no layer");
  if (M < 0) return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: M = %d", M);
  if (M == 0) return MOE_OK;
  if (!logits || !ids || !weights)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: route needs logits, ids and weights");
  for (int c0 = 0; c0 < M; c0 += L->chunk) {
    int m = M - c0 < L->chunk ? M - c0 : L->chunk;
    route_chunk(L, logits + (size_t)c0 * L->s.E, m, ids + (size_t)c0 * L->s.k,
                weights + (size_t)c0 * L->s.k);
  }
  return MOE_OK;
}

moe_status cpu_layer_forward(void *impl, const moe_batch *b, void *stream,
                             char *msg, size_t n) {
  cpu_layer *L = impl;
  if (!L || !b)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: no layer or batch");
  if (b->M < 0)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: M = %d", b->M);
  if (b->M == 0) return MOE_OK;
  if (!b->x || !b->out)
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n, "cpu: x or out is NULL");
  if (!b->logits && (!b->ids || !b->weights))
    return fail(MOE_ERR_INVALID_ARGUMENT, msg, n,
                "cpu: neither logits nor ids and weights given");
  const moe_shape *s = &L->s;
  size_t row = (size_t)s->H * moe_dtype_size(s->dtype);
  for (int c0 = 0; c0 < b->M; c0 += L->chunk) {
    int m = b->M - c0 < L->chunk ? b->M - c0 : L->chunk;
    const int32_t *ids;
    const float *wts;
    if (b->logits) {
      route_chunk(L, b->logits + (size_t)c0 * s->E, m, L->ids, L->wts);
      ids = L->ids;
      wts = L->wts;
    } else {
      ids = b->ids + (size_t)c0 * s->k;
      wts = b->weights + (size_t)c0 * s->k;
    }
    const char *x = (const char *)b->x + (size_t)c0 * row;
    char *out = (char *)b->out + (size_t)c0 * row;
    if (L->kern)
      cpu_fast_forward_chunk(L, x, ids, wts, m, out);
    else
      cpu_ref_forward_chunk(L, x, ids, wts, m, out);
  }
  return MOE_OK;
}
