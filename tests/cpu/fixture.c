/* fixture.c - random problems and backend runs for the CPU tests. */
#include "cpu_fixture.h"

static void *alloc_fill(size_t n, moe_dtype dt, float lo, float hi, tu_rng *r) {
  void *p = malloc(n * moe_dtype_size(dt) + 64);
  for (size_t i = 0; i < n; i++) {
    float v = tu_uniform(r, lo, hi);
    if (v == 0.0f) v = 1e-3f; /* never zeros */
    moe_store_elem(p, i, dt, v);
  }
  return p;
}

void fx_make(fx *f, const fx_spec *sp, tu_rng r) {
  memset(f, 0, sizeof *f);
  f->sp = *sp;
  moe_shape *s = &f->s;
  s->E = sp->E;
  s->k = sp->k;
  s->H = sp->H;
  s->I = sp->I;
  s->N1 = sp->gated ? 2 * sp->I : sp->I;
  s->Is = sp->Is;
  s->N1s = sp->Is ? (sp->gated ? 2 * sp->Is : sp->Is) : 0;
  s->act = sp->act;
  s->gated = sp->gated;
  s->swiglu_alpha = 1.702f;
  s->swiglu_limit = 7.0f;
  s->dtype = sp->dtype;
  s->routing.scoring = sp->scoring;
  s->routing.n_group = sp->n_group;
  s->routing.topk_group = sp->topk_group;
  s->routing.renormalize = sp->renormalize;
  s->routing.routed_scaling_factor = sp->scale != 0.0f ? sp->scale : 1.0f;
  s->max_tokens = sp->max_tokens ? sp->max_tokens : 4096;
  s->E_local = s->E;
  if (sp->ep) {
    f->map = malloc((size_t)s->E * sizeof(int32_t));
    int n = 0;
    for (int e = 0; e < s->E; e++)
      f->map[e] = (e % 3 == 1) ? -1 : n++;
    s->E_local = n;
    s->expert_map = f->map;
  }
  int El = s->E_local;
  float ws = sp->wscale != 0.0f ? sp->wscale : 1.0f;
  float a1 = ws * 1.7f / sqrtf((float)s->H),
        a2 = ws * 1.7f / sqrtf((float)s->I);
  f->w13 = alloc_fill((size_t)El * s->N1 * s->H, s->dtype, -a1, a1, &r);
  f->w2 = alloc_fill((size_t)El * s->H * s->I, s->dtype, -a2, a2, &r);
  if (sp->b13)
    f->b13 = alloc_fill((size_t)El * s->N1, MOE_DTYPE_F32, -.5f, .5f, &r);
  if (sp->b2)
    f->b2 = alloc_fill((size_t)El * s->H, MOE_DTYPE_F32, -.5f, .5f, &r);
  if (sp->cbias)
    f->cbias = alloc_fill((size_t)s->E, MOE_DTYPE_F32, -.3f, .3f, &r);
  if (s->Is) {
    float as = ws * 1.7f / sqrtf((float)s->Is);
    f->sw13 = alloc_fill((size_t)s->N1s * s->H, s->dtype, -a1, a1, &r);
    f->sw2 = alloc_fill((size_t)s->H * s->Is, s->dtype, -as, as, &r);
  }
  f->w.memory = MOE_MEMORY_HOST;
  f->w.w13 = f->w13;
  f->w.w2 = f->w2;
  f->w.w13_bias = f->b13;
  f->w.w2_bias = f->b2;
  f->w.correction_bias = f->cbias;
  f->w.shared_w13 = f->sw13;
  f->w.shared_w2 = f->sw2;
}

void fx_free(fx *f) {
  free(f->w13);
  free(f->w2);
  free(f->sw13);
  free(f->sw2);
  free(f->b13);
  free(f->b2);
  free(f->cbias);
  free(f->map);
}

void *fx_random_x(const fx *f, int M, tu_rng *r) {
  return alloc_fill((size_t)(M ? M : 1) * f->s.H, f->s.dtype, -1.f, 1.f, r);
}

/* Logits on a 0.01 grid, so that float and double agree on every order
 * (softmax/sigmoid are monotonic and the steps are far above rounding). */
float *fx_random_logits(const fx *f, int M, tu_rng *r) {
  size_t n = (size_t)(M ? M : 1) * f->s.E;
  float *l = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++)
    l[i] = (float)(tu_int(r, 801) - 400) * 0.01f;
  return l;
}

void fx_random_ids(const fx *f, int M, tu_rng *r, int32_t *ids, float *w) {
  int E = f->s.E, k = f->s.k;
  for (int t = 0; t < M; t++) {
    /* Distinct ids per token, as a router would give. */
    for (int j = 0; j < k; j++) {
      int e, dup;
      do {
        e = tu_int(r, E);
        dup = 0;
        for (int q = 0; q < j; q++)
          dup |= ids[(size_t)t * k + q] == e;
      } while (dup);
      ids[(size_t)t * k + j] = e;
      w[(size_t)t * k + j] = tu_uniform(r, 0.05f, 1.0f);
    }
  }
}

moe_status fx_run(const fx *f, const moe_backend *b, int threads,
                  int ref_double, const void *x, const float *logits,
                  const int32_t *ids, const float *wts, int M, void *out) {
  moe_device dev;
  memset(&dev, 0, sizeof dev);
  dev.cpu_features = moe_cpu_detect_features();
  dev.cpu_cores = moe_cpu_count_cores();
  moe_backend_env env = {threads, ref_double, &dev};
  void *impl = NULL;
  char msg[256] = "";
  moe_status st = b->create(&env, &f->s, &f->w, &impl, msg, sizeof msg);
  if (st != MOE_OK) {
    fprintf(stderr, "%s create: %s\n", b->name, msg);
    return st;
  }
  moe_batch bt = {x, logits, logits ? NULL : ids, logits ? NULL : wts, M, out};
  st = b->forward(impl, &bt, NULL, msg, sizeof msg);
  if (st != MOE_OK) fprintf(stderr, "%s forward: %s\n", b->name, msg);
  b->destroy(impl);
  return st;
}

int fx_to_float(const fx *f, const void *out, int M, float *dst) {
  int ok = 1;
  for (size_t i = 0; i < (size_t)M * f->s.H; i++) {
    dst[i] = moe_load_elem(out, i, f->s.dtype);
    if (!isfinite(dst[i])) {
      ok = 0;
      dst[i] = 0.0f;
    }
  }
  return ok;
}
