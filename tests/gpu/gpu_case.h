/*
 * gpu_case.h - the cases the GPU backend tests share: a layer's shape and
 * routing, random host tensors for it, their device copies, and the
 * descriptor that goes with them.
 */
#ifndef MOE_TEST_GPU_CASE_H
#define MOE_TEST_GPU_CASE_H

#include "backend.h"
#include "moe.h"
#include "testutil.h"

typedef struct tcase {
  const char *name;
  int E, k, H, I, Is;
  moe_activation act;
  int gated;
  moe_scoring scoring;
  int n_group, topk_group, renorm;
  float scale;
  int cbias, ebias;
  moe_dtype dt;
  int M, max_tokens;
  int skew; /* 0 random, 1 all tokens on expert 0, 2 last expert empty */
  int emap; /* odd experts remote, ids given by the caller */
} tcase;

typedef struct host_layer {
  void *x, *w13, *w2, *sw13, *sw2;
  float *logits, *b13, *b2, *cb;
  int32_t map[4096];
  int El, N1, N1s;
  size_t nx, nw13, nw2, nsw13, nsw2;
} host_layer;

/* Uniform random values in [-a, a) stored as dt. */
void gpu_fill(tu_rng *r, void *p, size_t n, moe_dtype dt, float a);
/* Random host tensors for case c (fresh data from r). */
void gpu_make_host(const tcase *c, host_layer *h, tu_rng *r);
void gpu_free_host(host_layer *h);
/* A device copy of `bytes` host bytes (NULL for NULL); asserts success. */
void *gpu_dev_copy(const void *h, size_t bytes);
/* The descriptor of case c for `backend`, self-check off. */
void gpu_desc_of(const tcase *c, const host_layer *h, moe_layer_desc *d,
                 const char *backend);
void gpu_to_f32(const void *p, size_t n, moe_dtype dt, float *o);
/* Case c through the public API: the same layer on "cpu-ref" (host
 * weights) and on `backend` (device weights), fresh random inputs, outputs
 * poisoned first. Asserts: relative error < 1e-2 (no NaN), two runs
 * bit-identical, routing ids equal to the reference's, an untouched output
 * at M = 0. `tag` ends the printed line. */
void gpu_run_case(const tcase *c, const char *backend, const char *tag);
/* Every activation x five routing modes on a small shape, through run. */
void gpu_cases_act_x_routing(void (*run)(const tcase *c));
/* The five presets of DESIGN.md scaled down (H, I multiples of 8), M = 0. */
#define GPU_N_PRESETS 5
extern const tcase gpu_presets[GPU_N_PRESETS];

#endif
