/*
 * cpu_fixture.h - building random MoE problems for the CPU backend tests,
 * running a backend through its vtable, and an independent naive
 * implementation of the layer in double precision (naive.c).
 */
#ifndef MOE_TEST_CPU_FIXTURE_H
#define MOE_TEST_CPU_FIXTURE_H

#include "cpu/cpu.h"
#include "testutil.h"

typedef struct fx_spec {
  int E, k, H, I, Is;
  moe_activation act;
  int gated;
  moe_dtype dtype;
  moe_scoring scoring;
  int n_group, topk_group, renormalize;
  float scale;    /* routed_scaling_factor (0: 1) */
  int b13, b2;    /* expert biases */
  int cbias;      /* correction bias (sigmoid) */
  int ep;         /* expert map: every third expert lives elsewhere */
  int max_tokens; /* 0: 4096 */
  float wscale;   /* weight magnitude multiplier (0: 1) */
} fx_spec;

typedef struct fx {
  fx_spec sp;
  moe_shape s;
  moe_weights w;
  void *w13, *w2, *sw13, *sw2;
  float *b13, *b2, *cbias;
  int32_t *map;
} fx;

/* Random weights (never zero) for spec, drawn from a generator of the
 * calling test (so that MOE_TEST_SEED replays everything). */
void fx_make(fx *f, const fx_spec *sp, tu_rng r);
void fx_free(fx *f);

/* Random x [M][H] in the dtype, logits [M][E]. Caller frees. */
void *fx_random_x(const fx *f, int M, tu_rng *r);
float *fx_random_logits(const fx *f, int M, tu_rng *r);
/* Random ids (global, may be non-local) and weights [M][k]. */
void fx_random_ids(const fx *f, int M, tu_rng *r, int32_t *ids, float *w);

/* Creates the backend on f, runs forward (logits or ids/weights), destroys.
 * Returns the status; out [M][H] in the dtype. */
moe_status fx_run(const fx *f, const moe_backend *b, int threads,
                  int ref_double, const void *x, const float *logits,
                  const int32_t *ids, const float *wts, int M, void *out);

/* out (dtype) -> float; 0 when an element is not finite. */
int fx_to_float(const fx *f, const void *out, int M, float *dst);

/* ---- naive.c: double precision, written from moe.h alone ---- */
/* Returns the smallest decision margin over the tokens (how far the routing
 * was from a tie); 1e30 when no decision was close. */
double naive_route(const fx *f, const float *logits, int M, int32_t *ids,
                   float *w);
/* out [M][H] in double. */
void naive_forward(const fx *f, const void *x, const int32_t *ids,
                   const float *w, int M, double *out);
double naive_activation(const moe_shape *s, double gate, double up);

#endif
