/*
 * route.c - the reference router: logits -> (ids, weights) per token.
 *
 * The rules are moe.h's; this file is their definition for every backend:
 *  1. s = softmax over all E logits, or sigmoid. A non-finite logit (NaN,
 *     +Inf, -Inf) counts as -Inf: probability 0 in the softmax, sigmoid 0.
 *     A row with no finite logit has all s = 0.
 *  2. c = s + correction_bias (SIGMOID with a bias only). An expert whose
 *     logit or c is non-finite is not selectable.
 *  3. n_group > 1: E / n_group equal groups; a group scores the sum of its
 *     two best c when a bias is given, its best c otherwise; the topk_group
 *     best groups (ties: lower group index) stay selectable.
 *  4. The top_k selectable experts by c, ties to the lower index, in
 *     decreasing order of c. When fewer than top_k are selectable, the
 *     remaining slots take the lowest-index unselected experts, weight 0.
 *  5. Weight = s of the chosen expert (never c); with renormalize divided by
 *     the sum of the chosen weights (left alone when that sum is 0); then
 *     multiplied by routed_scaling_factor.
 * No allocation: scratch lives on the stack, bounded by MOE_CPU_ROUTE_MAX_E.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

typedef struct route_scratch {
  float s[MOE_CPU_ROUTE_MAX_E];
  float c[MOE_CPU_ROUTE_MAX_E];          /* selection key, -INFINITY: none */
  unsigned char ok[MOE_CPU_ROUTE_MAX_E]; /* selectable */
  float gscore[MOE_CPU_ROUTE_MAX_E];
  unsigned char gkeep[MOE_CPU_ROUTE_MAX_E];
} route_scratch;

static void scores(const moe_shape *sh, const float *bias, const float *l,
                   route_scratch *r) {
  int E = sh->E;
  if (sh->routing.scoring == MOE_SCORING_SOFTMAX) {
    float mx = -INFINITY;
    for (int e = 0; e < E; e++)
      if (isfinite(l[e]) && l[e] > mx) mx = l[e];
    float sum = 0.0f;
    for (int e = 0; e < E; e++) {
      r->s[e] = isfinite(l[e]) ? expf(l[e] - mx) : 0.0f;
      sum += r->s[e];
    }
    /* sum >= 1 whenever a finite logit exists (the max contributes 1). */
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int e = 0; e < E; e++)
      r->s[e] *= inv;
  } else {
    for (int e = 0; e < E; e++)
      r->s[e] = isfinite(l[e]) ? 1.0f / (1.0f + expf(-l[e])) : 0.0f;
  }
  int use_bias = sh->routing.scoring == MOE_SCORING_SIGMOID && bias;
  for (int e = 0; e < E; e++) {
    float c = use_bias ? r->s[e] + bias[e] : r->s[e];
    r->ok[e] = isfinite(l[e]) && isfinite(c);
    r->c[e] = r->ok[e] ? c : -INFINITY;
  }
}

/* Keeps the topk_group best groups; marks experts of the others. */
static void restrict_groups(const moe_shape *sh, int use_bias,
                            route_scratch *r) {
  int E = sh->E, G = sh->routing.n_group, keep = sh->routing.topk_group;
  if (G <= 1 || G > E || E % G != 0 || keep <= 0 || keep >= G) return;
  int gs = E / G;
  for (int g = 0; g < G; g++) {
    /* Best and second best selectable c of the group. */
    float b1 = -INFINITY, b2 = -INFINITY;
    for (int e = g * gs; e < (g + 1) * gs; e++) {
      if (!r->ok[e]) continue;
      if (r->c[e] > b1) {
        b2 = b1;
        b1 = r->c[e];
      } else if (r->c[e] > b2) {
        b2 = r->c[e];
      }
    }
    /* A group of one expert has no second best: its score is the best. */
    float sc = b1;
    if (use_bias && gs >= 2) sc = b1 + b2;
    r->gscore[g] = sc;
    r->gkeep[g] = 0;
  }
  for (int kept = 0; kept < keep; kept++) {
    int best = -1;
    for (int g = 0; g < G; g++) {
      if (r->gkeep[g]) continue;
      /* Strict > keeps the lower index on ties; -Inf groups still rank. */
      if (best < 0 || r->gscore[g] > r->gscore[best]) best = g;
    }
    r->gkeep[best] = 1;
  }
  for (int e = 0; e < E; e++)
    if (!r->gkeep[e / gs]) {
      r->ok[e] = 0;
      r->c[e] = -INFINITY;
    }
}

/* Top-k by (c desc, index asc) among selectable experts; insertion into a
 * sorted list of k, O(E k) in the worst case and O(E) for typical k. */
static void select_topk(const moe_shape *sh, route_scratch *r, int32_t *ids,
                        float *w) {
  int E = sh->E, k = sh->k, n = 0;
  for (int e = 0; e < E; e++) {
    if (!r->ok[e]) continue;
    if (n == k && !(r->c[e] > r->c[ids[k - 1]])) continue;
    int pos = n < k ? n : k - 1;
    /* Scanning in index order: an equal c never moves ahead. */
    while (pos > 0 && r->c[e] > r->c[ids[pos - 1]]) {
      ids[pos] = ids[pos - 1];
      pos--;
    }
    ids[pos] = e;
    if (n < k) n++;
  }
  for (int j = 0; j < n; j++)
    w[j] = r->s[ids[j]];
  /* Fill: lowest-index experts not chosen yet, weight 0. */
  for (int e = 0; n < k && e < E; e++) {
    if (r->ok[e]) continue; /* every selectable one is already chosen */
    ids[n] = e;
    w[n] = 0.0f;
    n++;
  }
}

void moe_cpu_route(const moe_shape *sh, const float *bias, const float *logits,
                   int M, int32_t *ids, float *weights) {
  if (!sh || !logits || !ids || !weights || M <= 0) return;
  int E = sh->E, k = sh->k;
  if (k <= 0) return;
  if (E <= 0 || E > MOE_CPU_ROUTE_MAX_E || k > E) {
    /* Not routable here: nothing is chosen (-1 contributes nothing). */
    for (size_t i = 0; i < (size_t)M * (size_t)k; i++) {
      ids[i] = -1;
      weights[i] = 0.0f;
    }
    return;
  }
  route_scratch r;
  int use_bias = sh->routing.scoring == MOE_SCORING_SIGMOID && bias;
  float scale = sh->routing.routed_scaling_factor;
  if (scale == 0.0f) scale = 1.0f; /* moe.h: 0 means 1 */
  for (int t = 0; t < M; t++) {
    const float *l = logits + (size_t)t * E;
    int32_t *id = ids + (size_t)t * k;
    float *w = weights + (size_t)t * k;
    scores(sh, use_bias ? bias : NULL, l, &r);
    restrict_groups(sh, use_bias, &r);
    select_topk(sh, &r, id, w);
    if (sh->routing.renormalize) {
      float sum = 0.0f;
      for (int j = 0; j < k; j++)
        sum += w[j];
      if (sum > 0.0f)
        for (int j = 0; j < k; j++)
          w[j] /= sum;
    }
    for (int j = 0; j < k; j++)
      w[j] *= scale;
  }
}
