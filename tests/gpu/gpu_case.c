/* gpu_case.c - see gpu_case.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda/cuda_backends.h"
#include "gpu_case.h"

void gpu_fill(tu_rng *r, void *p, size_t n, moe_dtype dt, float a) {
  for (size_t i = 0; i < n; i++)
    moe_store_elem(p, i, dt, tu_uniform(r, -a, a));
}

void gpu_make_host(const tcase *c, host_layer *h, tu_rng *r) {
  memset(h, 0, sizeof *h);
  size_t es = moe_dtype_size(c->dt);
  h->El = c->E;
  if (c->emap) {
    h->El = 0;
    for (int e = 0; e < c->E; e++)
      h->map[e] = (e % 2 == 0) ? h->El++ : -1;
  }
  h->N1 = c->gated ? 2 * c->I : c->I;
  h->N1s = c->gated ? 2 * c->Is : c->Is;
  int Mx = c->M > 0 ? c->M : 1;
  h->nx = (size_t)Mx * c->H;
  h->nw13 = (size_t)h->El * h->N1 * c->H;
  h->nw2 = (size_t)h->El * c->H * c->I;
  h->nsw13 = (size_t)h->N1s * c->H;
  h->nsw2 = (size_t)c->H * c->Is;
  h->x = malloc(h->nx * es);
  h->w13 = malloc(h->nw13 * es);
  h->w2 = malloc(h->nw2 * es);
  gpu_fill(r, h->x, h->nx, c->dt, 1.0f);
  gpu_fill(r, h->w13, h->nw13, c->dt, 2.0f / sqrtf((float)c->H));
  gpu_fill(r, h->w2, h->nw2, c->dt, 2.0f / sqrtf((float)c->I));
  if (c->Is) {
    h->sw13 = malloc(h->nsw13 * es);
    h->sw2 = malloc(h->nsw2 * es);
    gpu_fill(r, h->sw13, h->nsw13, c->dt, 2.0f / sqrtf((float)c->H));
    gpu_fill(r, h->sw2, h->nsw2, c->dt, 2.0f / sqrtf((float)c->Is));
  }
  h->logits = malloc((size_t)Mx * c->E * sizeof(float));
  for (size_t i = 0; i < (size_t)Mx * c->E; i++)
    h->logits[i] = tu_uniform(r, -3, 3);
  for (int t = 0; t < Mx; t++) {
    if (c->skew == 1) h->logits[(size_t)t * c->E] = 20.0f;
    if (c->skew == 2) h->logits[(size_t)t * c->E + c->E - 1] = -30.0f;
  }
  if (c->ebias) {
    h->b13 = malloc((size_t)h->El * h->N1 * sizeof(float));
    h->b2 = malloc((size_t)h->El * c->H * sizeof(float));
    for (size_t i = 0; i < (size_t)h->El * h->N1; i++)
      h->b13[i] = tu_uniform(r, -0.3f, 0.3f);
    for (size_t i = 0; i < (size_t)h->El * c->H; i++)
      h->b2[i] = tu_uniform(r, -0.3f, 0.3f);
  }
  if (c->cbias) {
    h->cb = malloc((size_t)c->E * sizeof(float));
    for (int i = 0; i < c->E; i++)
      h->cb[i] = tu_uniform(r, -0.5f, 0.5f);
  }
}

void gpu_free_host(host_layer *h) {
  free(h->x);
  free(h->w13);
  free(h->w2);
  free(h->sw13);
  free(h->sw2);
  free(h->logits);
  free(h->b13);
  free(h->b2);
  free(h->cb);
}

void *gpu_dev_copy(const void *h, size_t bytes) {
  if (!h) return NULL;
  void *d = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&d, bytes), MOE_OK);
  assert_int_equal(moe_memops_cuda.upload(d, h, bytes), MOE_OK);
  return d;
}

void gpu_desc_of(const tcase *c, const host_layer *h, moe_layer_desc *d,
                 const char *backend) {
  moe_layer_desc_init(d);
  d->num_experts = c->E;
  d->top_k = c->k;
  d->hidden = c->H;
  d->intermediate = c->I;
  d->activation = c->act;
  d->gated = c->gated;
  d->dtype = c->dt;
  d->routing.scoring = c->scoring;
  d->routing.n_group = c->n_group;
  d->routing.topk_group = c->topk_group;
  d->routing.renormalize = c->renorm;
  d->routing.routed_scaling_factor = c->scale;
  d->shared_intermediate = c->Is;
  d->expert_map = c->emap ? h->map : NULL;
  d->max_tokens = c->max_tokens;
  d->backend = backend;
  d->allow_fallback = 0;
  d->self_check = 0;
}

void gpu_to_f32(const void *p, size_t n, moe_dtype dt, float *o) {
  for (size_t i = 0; i < n; i++)
    o[i] = moe_load_elem(p, i, dt);
}
