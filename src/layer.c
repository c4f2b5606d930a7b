/*
 * layer.c - the layer descriptor: defaults, validation, and the validated
 * shape every backend works from. Every rejection names the field.
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MOE_MAX_EXPERTS (1 << 20)
#define MOE_DEFAULT_MAX_TOKENS 4096
#define MOE_MAX_MAX_TOKENS (1 << 24)

void moe_layer_desc_init(moe_layer_desc *desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->activation = MOE_ACT_SILU;
  desc->gated = 1;
  desc->dtype = MOE_DTYPE_BF16;
  desc->routing.scoring = MOE_SCORING_SOFTMAX;
  desc->routing.renormalize = 0;
  desc->routing.routed_scaling_factor = 1.0f;
  desc->self_check = 1;
}

int moe_activation_valid(moe_activation act, int gated) {
  switch (act) {
  case MOE_ACT_SILU:
  case MOE_ACT_GELU:
    return gated == 0 || gated == 1;
  case MOE_ACT_RELU2:
    return gated == 0;
  case MOE_ACT_SWIGLU_OAI:
    return gated == 1;
  }
  return 0;
}

static int finite_nonneg(float v) {
  return isfinite(v) && v >= 0.0f;
}

static moe_status check_expert_map(moe_context *ctx, const moe_layer_desc *d,
                                   int *e_local) {
  if (!d->expert_map) {
    *e_local = d->num_experts;
    return MOE_OK;
  }
  int n = 0;
  for (int e = 0; e < d->num_experts; e++) {
    int32_t v = d->expert_map[e];
    if (v < -1 || v >= d->num_experts)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "expert_map[%d] = %d: must be -1 or a local index in "
                      "[0, %d)",
                      e, (int)v, d->num_experts);
    if (v >= 0) n++;
  }
  /* Local indices must be exactly 0 .. n-1, each once. */
  if (n == 0)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "expert_map maps no expert to this device");
  int *owner = malloc((size_t)n * sizeof *owner);
  if (!owner)
    return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "expert_map check: no memory");
  for (int i = 0; i < n; i++)
    owner[i] = -1;
  for (int e = 0; e < d->num_experts; e++) {
    int32_t v = d->expert_map[e];
    if (v < 0) continue;
    if (v >= n || owner[v] >= 0) {
      int prev = v < n ? owner[v] : -1;
      free(owner);
      if (v >= n)
        return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                        "expert_map[%d] = %d: local indices must be 0..%d "
                        "(%d experts are local)",
                        e, (int)v, n - 1, n);
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "expert_map[%d] and expert_map[%d] both map to local "
                      "expert %d",
                      prev, e, (int)v);
    }
    owner[v] = e;
  }
  free(owner);
  *e_local = n;
  return MOE_OK;
}

moe_status moe_shape_from_desc(moe_context *ctx, const moe_layer_desc *d,
                               moe_shape *s) {
  if (!d) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "desc is NULL");
  if (d->num_experts < 1 || d->num_experts > MOE_MAX_EXPERTS)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "num_experts = %d: must be in [1, %d]", d->num_experts,
                    MOE_MAX_EXPERTS);
  if (d->top_k < 1 || d->top_k > d->num_experts)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "top_k = %d: must be in [1, num_experts = %d]", d->top_k,
                    d->num_experts);
  if (d->hidden < 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "hidden = %d: must be positive", d->hidden);
  if (d->intermediate < 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "intermediate = %d: must be positive", d->intermediate);
  if (d->shared_intermediate < 0)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "shared_intermediate = %d: must be 0 (none) or positive",
                    d->shared_intermediate);
  if ((unsigned)d->activation >= MOE_ACT_COUNT)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "activation = %d: unknown value", (int)d->activation);
  if (d->gated != 0 && d->gated != 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "gated = %d: must be 0 or 1",
                    d->gated);
  if (!moe_activation_valid(d->activation, d->gated))
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "activation %s cannot be %s (relu2 is non-gated only, "
                    "swiglu-oai gated only)",
                    moe_activation_name(d->activation),
                    d->gated ? "gated" : "non-gated");
  if ((unsigned)d->dtype >= MOE_DTYPE_COUNT)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "dtype = %d: unknown value",
                    (int)d->dtype);
  if (!finite_nonneg(d->swiglu_alpha) || !finite_nonneg(d->swiglu_limit))
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "swiglu_alpha / swiglu_limit must be finite and >= 0");

  const moe_routing *r = &d->routing;
  if (r->scoring != MOE_SCORING_SOFTMAX && r->scoring != MOE_SCORING_SIGMOID)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "routing.scoring = %d: unknown value", (int)r->scoring);
  if (r->n_group < 0)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "routing.n_group = %d: must be >= 0", r->n_group);
  if (r->n_group > 1) {
    if (d->num_experts % r->n_group != 0)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "routing.n_group = %d does not divide num_experts = %d",
                      r->n_group, d->num_experts);
    if (r->topk_group < 1 || r->topk_group > r->n_group)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "routing.topk_group = %d: must be in [1, n_group = %d]",
                      r->topk_group, r->n_group);
    if ((long long)r->topk_group * (d->num_experts / r->n_group) < d->top_k)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "routing.topk_group = %d groups of %d experts hold fewer "
                      "than top_k = %d experts",
                      r->topk_group, d->num_experts / r->n_group, d->top_k);
  }
  if (r->renormalize != 0 && r->renormalize != 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "routing.renormalize = %d: must be 0 or 1", r->renormalize);
  if (!finite_nonneg(r->routed_scaling_factor))
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "routing.routed_scaling_factor = %g: must be finite and "
                    ">= 0 (0 means 1)",
                    (double)r->routed_scaling_factor);
  if (d->max_tokens < 0 || d->max_tokens > MOE_MAX_MAX_TOKENS)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "max_tokens = %d: must be in [0, %d] (0 means %d)",
                    d->max_tokens, MOE_MAX_MAX_TOKENS, MOE_DEFAULT_MAX_TOKENS);
  if (d->allow_fallback != 0 && d->allow_fallback != 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "allow_fallback = %d: must be 0 or 1", d->allow_fallback);
  if (d->self_check != 0 && d->self_check != 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "self_check = %d: must be 0 or 1", d->self_check);

  /* Per-expert matrices are indexed with 32-bit offsets in the kernels. */
  long long n1 = d->gated ? 2LL * d->intermediate : d->intermediate;
  long long ns1 =
      d->gated ? 2LL * d->shared_intermediate : d->shared_intermediate;
  if (n1 * d->hidden > INT32_MAX)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "hidden (%d) x N1 (%lld) = %lld elements per expert "
                    "overflows 32-bit indexing",
                    d->hidden, n1, n1 * d->hidden);
  if (ns1 * d->hidden > INT32_MAX)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "hidden (%d) x shared N1 (%lld) overflows 32-bit indexing",
                    d->hidden, ns1);

  int e_local = 0;
  moe_status st = check_expert_map(ctx, d, &e_local);
  if (st != MOE_OK) return st;

  memset(s, 0, sizeof *s);
  s->E = d->num_experts;
  s->E_local = e_local;
  s->k = d->top_k;
  s->H = d->hidden;
  s->I = d->intermediate;
  s->N1 = (int)n1;
  s->Is = d->shared_intermediate;
  s->N1s = (int)ns1;
  s->act = d->activation;
  s->gated = d->gated;
  s->swiglu_alpha = d->swiglu_alpha > 0 ? d->swiglu_alpha : 1.702f;
  s->swiglu_limit = d->swiglu_limit > 0 ? d->swiglu_limit : 7.0f;
  s->dtype = d->dtype;
  s->routing = *r;
  if (s->routing.n_group <= 1) {
    s->routing.n_group = 1;
    s->routing.topk_group = 1;
  }
  if (s->routing.routed_scaling_factor == 0.0f)
    s->routing.routed_scaling_factor = 1.0f;
  s->expert_map = d->expert_map;
  s->max_tokens = d->max_tokens ? d->max_tokens : MOE_DEFAULT_MAX_TOKENS;
  return MOE_OK;
}
