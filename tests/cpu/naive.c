/*
 * naive.c - the MoE layer written directly from moe.h, in double precision,
 * with sorting instead of the library's insertion top-k. Slow and obvious on
 * purpose: it checks cpu-ref, which checks everything else.
 */
#include "cpu_fixture.h"

typedef struct keyed {
  double key;
  int idx;
  int ok;
} keyed;

/* Selectable first, then key descending, then index ascending. */
static int cmp_keyed(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->ok != y->ok) return y->ok - x->ok;
  if (x->ok && x->key != y->key) return x->key > y->key ? -1 : 1;
  return x->idx - y->idx;
}

static void note_margin(double a, double b, double *m) {
  double d = a - b;
  if (d > 0 && d < *m) *m = d;
}

double naive_route(const fx *f, const float *logits, int M, int32_t *ids,
                   float *w) {
  const moe_shape *s = &f->s;
  int E = s->E, k = s->k;
  double margin = 1e30;
  double *p = malloc(sizeof(double) * E);
  keyed *kk = malloc(sizeof(keyed) * E), *gk = malloc(sizeof(keyed) * E);
  int use_bias = s->routing.scoring == MOE_SCORING_SIGMOID && f->cbias;
  for (int t = 0; t < M; t++) {
    const float *l = logits + (size_t)t * E;
    if (s->routing.scoring == MOE_SCORING_SOFTMAX) {
      double mx = -INFINITY, sum = 0;
      for (int e = 0; e < E; e++)
        if (isfinite(l[e]) && l[e] > mx) mx = l[e];
      for (int e = 0; e < E; e++) {
        p[e] = isfinite(l[e]) ? exp((double)l[e] - mx) : 0.0;
        sum += p[e];
      }
      for (int e = 0; e < E; e++)
        p[e] = sum > 0 ? p[e] / sum : 0.0;
    } else {
      for (int e = 0; e < E; e++)
        p[e] = isfinite(l[e]) ? 1.0 / (1.0 + exp(-(double)l[e])) : 0.0;
    }
    for (int e = 0; e < E; e++) {
      kk[e].idx = e;
      kk[e].ok = isfinite(l[e]);
      kk[e].key = p[e] + (use_bias ? f->cbias[e] : 0.0);
    }
    int G = s->routing.n_group, keep = s->routing.topk_group;
    if (G > 1 && E % G == 0 && keep > 0 && keep < G) {
      int gs = E / G;
      for (int g = 0; g < G; g++) {
        /* Sort the group's members and read off its score. */
        keyed *tmp = malloc(sizeof(keyed) * gs);
        memcpy(tmp, kk + g * gs, sizeof(keyed) * gs);
        qsort(tmp, gs, sizeof(keyed), cmp_keyed);
        double sc;
        if (use_bias && gs >= 2)
          sc = (tmp[0].ok && tmp[1].ok) ? tmp[0].key + tmp[1].key : -INFINITY;
        else
          sc = tmp[0].ok ? tmp[0].key : -INFINITY;
        free(tmp);
        gk[g].key = sc;
        gk[g].idx = g;
        gk[g].ok = 1;
      }
      /* -INFINITY keys compare equal: index order decides, as specified. */
      qsort(gk, G, sizeof(keyed), cmp_keyed);
      note_margin(gk[keep - 1].key, gk[keep].key, &margin);
      for (int q = keep; q < G; q++)
        for (int e = gk[q].idx * gs; e < (gk[q].idx + 1) * gs; e++)
          kk[e].ok = 0;
    }
    qsort(kk, E, sizeof(keyed), cmp_keyed);
    /* Ids are compared slot by slot, so the order among the chosen matters
     * as much as the cut after the k-th: every adjacent pair up to k+1. */
    for (int j = 0; j + 1 < E && j < k; j++)
      if (kk[j].ok && kk[j + 1].ok)
        note_margin(kk[j].key, kk[j + 1].key, &margin);
    /* Weights are the scores s of the chosen (0 for fillers). */
    double sum = 0;
    for (int j = 0; j < k; j++)
      sum += kk[j].ok ? p[kk[j].idx] : 0.0;
    for (int j = 0; j < k; j++) {
      double v = kk[j].ok ? p[kk[j].idx] : 0.0;
      if (s->routing.renormalize && sum > 0) v /= sum;
      ids[(size_t)t * k + j] = kk[j].idx;
      w[(size_t)t * k + j] = (float)(v * s->routing.routed_scaling_factor);
    }
  }
  free(p);
  free(kk);
  free(gk);
  return margin;
}

double naive_activation(const moe_shape *s, double g, double u) {
  double lim = s->swiglu_limit, al = s->swiglu_alpha;
  switch (s->act) {
  case MOE_ACT_SILU: {
    double a = g * (1.0 / (1.0 + exp(-g)));
    return s->gated ? a * u : a;
  }
  case MOE_ACT_GELU: {
    double a = g * 0.5 * (1.0 + erf(g / sqrt(2.0)));
    return s->gated ? a * u : a;
  }
  case MOE_ACT_RELU2: {
    double a = g > 0 ? g * g : 0.0;
    return s->gated ? a * u : a;
  }
  case MOE_ACT_SWIGLU_OAI: {
    if (g > lim) g = lim;
    if (u > lim) u = lim;
    if (u < -lim) u = -lim;
    return (u + 1.0) * g / (1.0 + exp(-al * g));
  }
  }
  return NAN;
}

/* y += wt * (W2 act(W13 x + b13) + b2) for one expert. */
static void naive_expert(const fx *f, const void *w13, const void *w2,
                         const float *b13, const float *b2, int I,
                         const double *x, double wt, double *y) {
  const moe_shape *s = &f->s;
  int H = s->H, N1 = s->gated ? 2 * I : I;
  double *h = malloc(sizeof(double) * N1), *a = malloc(sizeof(double) * I);
  for (int n = 0; n < N1; n++) {
    double acc = b13 ? b13[n] : 0.0;
    for (int c = 0; c < H; c++)
      acc += (double)moe_load_elem(w13, (size_t)n * H + c, s->dtype) * x[c];
    h[n] = acc;
  }
  for (int j = 0; j < I; j++) {
    if (!s->gated)
      a[j] = naive_activation(s, h[j], 0);
    else if (s->act == MOE_ACT_SWIGLU_OAI)
      a[j] = naive_activation(s, h[2 * j], h[2 * j + 1]);
    else
      a[j] = naive_activation(s, h[j], h[I + j]);
  }
  for (int r = 0; r < H; r++) {
    double acc = b2 ? b2[r] : 0.0;
    for (int j = 0; j < I; j++)
      acc += (double)moe_load_elem(w2, (size_t)r * I + j, s->dtype) * a[j];
    y[r] += wt * acc;
  }
  free(h);
  free(a);
}

void naive_forward(const fx *f, const void *x, const int32_t *ids,
                   const float *w, int M, double *out) {
  const moe_shape *s = &f->s;
  int H = s->H, I = s->I, N1 = s->N1;
  size_t es = moe_dtype_size(s->dtype);
  double *xr = malloc(sizeof(double) * H);
  for (int t = 0; t < M; t++) {
    double *y = out + (size_t)t * H;
    for (int c = 0; c < H; c++) {
      xr[c] = moe_load_elem(x, (size_t)t * H + c, s->dtype);
      y[c] = 0;
    }
    for (int j = 0; j < s->k; j++) {
      int id = ids[(size_t)t * s->k + j];
      if (id < 0 || id >= s->E) continue;
      int e = f->map ? f->map[id] : id;
      if (e < 0) continue; /* lives on another device */
      naive_expert(f, (const char *)f->w13 + (size_t)e * N1 * H * es,
                   (const char *)f->w2 + (size_t)e * H * I * es,
                   f->b13 ? f->b13 + (size_t)e * N1 : NULL,
                   f->b2 ? f->b2 + (size_t)e * H : NULL, I, xr,
                   w[(size_t)t * s->k + j], y);
    }
    if (s->Is) naive_expert(f, f->sw13, f->sw2, NULL, NULL, s->Is, xr, 1.0, y);
  }
  free(xr);
}
