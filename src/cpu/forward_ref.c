/*
 * forward_ref.c - cpu-ref: the layer computed as moe.h describes it, one
 * token at a time, in plain scalar C. It is the definition every other
 * backend is compared with, so it favours obviousness over speed:
 *   for each token t, for each chosen expert j (in routing order):
 *     h = W13[e] x_t (+ b13);  a = act(h);  y += w_j (W2[e] a + b2)
 *   y += shared(x_t) (weight 1);  out_t = round_to_dtype(y)
 * Accumulation is fp32, or fp64 throughout (h, a, y) when the context asks
 * for it. Tokens are split across the layer's threads; each token's result
 * does not depend on which thread computed it.
 */
#include "cpu_internal.h"

#include <string.h>

/* The same code for both accumulator types. */
#define DEFINE_REF(T, SFX, ACT)                                                \
  static T dot_##SFX(const void *w, moe_dtype dt, const T *x, int K) {         \
    T acc = 0;                                                                 \
    if (dt == MOE_DTYPE_F32) {                                                 \
      const float *p = w;                                                      \
      for (int i = 0; i < K; i++)                                              \
        acc += (T)p[i] * x[i];                                                 \
    } else if (dt == MOE_DTYPE_BF16) {                                         \
      const uint16_t *p = w;                                                   \
      for (int i = 0; i < K; i++)                                              \
        acc += (T)moe_bf16_to_f32(p[i]) * x[i];                                \
    } else {                                                                   \
      const uint16_t *p = w;                                                   \
      for (int i = 0; i < K; i++)                                              \
        acc += (T)moe_f16_to_f32(p[i]) * x[i];                                 \
    }                                                                          \
    return acc;                                                                \
  }                                                                            \
                                                                               \
  /* y += wt * expert(x); w13 [N1][H], w2 [H][I], biases may be NULL. */       \
  static void expert_##SFX(const moe_shape *s, const void *w13,                \
                           const void *w2, const float *b13, const float *b2,  \
                           int I, const T *x, T wt, T *h, T *a, T *y) {        \
    size_t es = moe_dtype_size(s->dtype);                                      \
    int H = s->H, N1 = s->gated ? 2 * I : I;                                   \
    for (int r = 0; r < N1; r++) {                                             \
      h[r] =                                                                   \
          dot_##SFX((const char *)w13 + (size_t)r * H * es, s->dtype, x, H);   \
      if (b13) h[r] += (T)b13[r];                                              \
    }                                                                          \
    for (int j = 0; j < I; j++) {                                              \
      T gate = h[j], up = 0;                                                   \
      if (s->gated && s->act == MOE_ACT_SWIGLU_OAI) {                          \
        gate = h[2 * j];                                                       \
        up = h[2 * j + 1];                                                     \
      } else if (s->gated) {                                                   \
        up = h[I + j];                                                         \
      }                                                                        \
      a[j] = ACT(s, gate, up);                                                 \
    }                                                                          \
    for (int r = 0; r < H; r++) {                                              \
      T o = dot_##SFX((const char *)w2 + (size_t)r * I * es, s->dtype, a, I);  \
      if (b2) o += (T)b2[r];                                                   \
      y[r] += wt * o;                                                          \
    }                                                                          \
  }                                                                            \
                                                                               \
  static void token_##SFX(const cpu_layer *L, const void *x,                   \
                          const int32_t *id, const float *wt, void *out,       \
                          T *scratch) {                                        \
    const moe_shape *s = &L->s;                                                \
    const moe_weights *w = &L->w;                                              \
    int H = s->H, I = s->I, N1 = s->N1;                                        \
    int n1 = N1 > s->N1s ? N1 : s->N1s;                                        \
    size_t es = moe_dtype_size(s->dtype);                                      \
    T *h = scratch, *a = h + n1, *y = a + n1, *xr = y + H;                     \
    for (int i = 0; i < H; i++)                                                \
      xr[i] = (T)moe_load_elem(x, (size_t)i, s->dtype);                        \
    for (int i = 0; i < H; i++)                                                \
      y[i] = 0;                                                                \
    for (int j = 0; j < s->k; j++) {                                           \
      int e = cpu_local_expert(L, id[j]);                                      \
      if (e < 0) continue;                                                     \
      expert_##SFX(s, (const char *)w->w13 + (size_t)e * N1 * H * es,          \
                   (const char *)w->w2 + (size_t)e * H * I * es,               \
                   w->w13_bias ? w->w13_bias + (size_t)e * N1 : NULL,          \
                   w->w2_bias ? w->w2_bias + (size_t)e * H : NULL, I, xr,      \
                   (T)wt[j], h, a, y);                                         \
    }                                                                          \
    if (s->Is > 0)                                                             \
      expert_##SFX(s, w->shared_w13, w->shared_w2, NULL, NULL, s->Is, xr,      \
                   (T)1, h, a, y);                                             \
    for (int i = 0; i < H; i++)                                                \
      moe_store_elem(out, (size_t)i, s->dtype, (float)y[i]);                   \
  }

DEFINE_REF(float, f, moe_cpu_activation)
DEFINE_REF(double, d, moe_cpu_activation_d)

typedef struct ref_task {
  const cpu_layer *L;
  const void *x;
  const int32_t *ids;
  const float *wts;
  int M;
  void *out;
} ref_task;

static void ref_worker(void *arg, int tid, int nt) {
  const ref_task *t = arg;
  const cpu_layer *L = t->L;
  const moe_shape *s = &L->s;
  size_t row = (size_t)s->H * moe_dtype_size(s->dtype);
  double *scratch = L->ref_scratch + (size_t)tid * L->ref_scratch_per_thread;
  for (int i = (int)((long long)t->M * tid / nt);
       i < (int)((long long)t->M * (tid + 1) / nt); i++) {
    const void *x = (const char *)t->x + (size_t)i * row;
    void *out = (char *)t->out + (size_t)i * row;
    const int32_t *id = t->ids + (size_t)i * s->k;
    const float *wt = t->wts + (size_t)i * s->k;
    if (L->ref_double)
      token_d(L, x, id, wt, out, scratch);
    else
      token_f(L, x, id, wt, out, (float *)scratch);
  }
}

void cpu_ref_forward_chunk(cpu_layer *L, const void *x, const int32_t *ids,
                           const float *wts, int M, void *out) {
  ref_task t = {L, x, ids, wts, M, out};
  cpu_pool_run(L->pool, ref_worker, &t);
}
