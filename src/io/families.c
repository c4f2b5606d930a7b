/*
 * families.c - each family's checkpoint tensor names for one MoE layer,
 * mapped onto the stacked layout the backends take:
 *   W13[E][N1][H]: gated families [gate rows; up rows] (N1 = 2I),
 *                  gpt-oss interleaved (row 2j gate j, 2j+1 up j),
 *                  Nemotron-H up rows only (relu2, N1 = I);
 *   W2[E][H][I]:   down projections.
 *
 *   mixtral      model.layers.L.block_sparse_moe.gate.weight            [E,H]
 *                ...experts.N.w1.weight (gate) / w3 (up) [I,H], w2 [H,I]
 *   qwen3_moe    model.layers.L.mlp.gate.weight                         [E,H]
 *                ...mlp.experts.N.{gate,up}_proj.weight [I,H], down_proj [H,I]
 *   deepseek_v3  as qwen3_moe, plus mlp.gate.e_score_correction_bias [E]
 *                and mlp.shared_experts.{gate,up,down}_proj.weight;
 *                F8_E4M3 weights come with <name>_scale_inv block scales
 *   nemotron_h   backbone.layers.L.mixer.gate.weight,
 * gate.e_score_correction_bias, mixer.experts.N.{up,down}_proj.weight,
 *                mixer.shared_experts.{up,down}_proj.weight
 *   gpt_oss      model.layers.L.mlp.router.{weight [E,H], bias [E]},
 *                mlp.experts.gate_up_proj [E,H,2I] (+ _bias [E,2I]),
 *                mlp.experts.down_proj [E,I,H] (+ _bias [E,H]); or the
 *                MXFP4 form gate_up_proj_{blocks,scales} [E,2I,H/32,16],
 *                down_proj_{blocks,scales} [E,H,I/32,16] (already [out][in])
 */
#define _POSIX_C_SOURCE 200809L
#include "io/loader.h"

#include <stdio.h>
#include <string.h>

#define NAME_MAX_LEN 256
#define PREFIX_LEN 96

static moe_dst at(void *base, moe_dtype dt, size_t offset) {
  moe_dst d = {base, dt, offset};
  return d;
}

/* Gated experts with separate gate / up / down tensors per expert. */
static moe_status gated_experts(moe_loader *L, const char *prefix,
                                const char *gate, const char *up,
                                const char *down, const moe_layer_bufs *b) {
  const moe_layer_desc *d = &L->cfg->desc;
  int64_t E = d->num_experts, H = d->hidden, I = d->intermediate;
  char name[NAME_MAX_LEN];
  moe_status st = MOE_OK;
  for (int64_t e = 0; e < E && !st; e++) {
    size_t w13 = (size_t)(e * 2 * I * H), w2 = (size_t)(e * H * I);
    snprintf(name, sizeof name, "%sexperts.%lld.%s", prefix, (long long)e,
             gate);
    st = moe_ld_matrix(L, name, I, H, at(b->w13, L->dtype, w13));
    if (st) break;
    snprintf(name, sizeof name, "%sexperts.%lld.%s", prefix, (long long)e, up);
    st = moe_ld_matrix(L, name, I, H,
                       at(b->w13, L->dtype, w13 + (size_t)(I * H)));
    if (st) break;
    snprintf(name, sizeof name, "%sexperts.%lld.%s", prefix, (long long)e,
             down);
    st = moe_ld_matrix(L, name, H, I, at(b->w2, L->dtype, w2));
  }
  return st;
}

static moe_status router(moe_loader *L, const char *name,
                         const moe_layer_bufs *b) {
  const moe_layer_desc *d = &L->cfg->desc;
  return moe_ld_matrix(L, name, d->num_experts, d->hidden,
                       at(b->router, L->router_dtype, 0));
}

static moe_status map_mixtral(moe_loader *L, const moe_layer_bufs *b) {
  char p[PREFIX_LEN], n[NAME_MAX_LEN];
  snprintf(p, sizeof p, "model.layers.%d.block_sparse_moe.", L->layer);
  snprintf(n, sizeof n, "%sgate.weight", p);
  moe_status st = router(L, n, b);
  if (!st) st = gated_experts(L, p, "w1.weight", "w3.weight", "w2.weight", b);
  return st;
}

/* Qwen3-MoE and DeepSeek-V3 share the names under mlp. */
static moe_status map_qwen_deepseek(moe_loader *L, const moe_layer_bufs *b) {
  const moe_layer_desc *d = &L->cfg->desc;
  char p[PREFIX_LEN], n[NAME_MAX_LEN];
  snprintf(p, sizeof p, "model.layers.%d.mlp.", L->layer);
  snprintf(n, sizeof n, "%sgate.weight", p);
  moe_status st = router(L, n, b);
  if (!st && L->cfg->has_correction_bias) {
    snprintf(n, sizeof n, "%sgate.e_score_correction_bias", p);
    st = moe_ld_vector(L, n, d->num_experts, 0, b->correction_bias);
  }
  if (!st)
    st = gated_experts(L, p, "gate_proj.weight", "up_proj.weight",
                       "down_proj.weight", b);
  int64_t Is = d->shared_intermediate, H = d->hidden;
  if (!st && Is > 0) {
    snprintf(n, sizeof n, "%sshared_experts.gate_proj.weight", p);
    st = moe_ld_matrix(L, n, Is, H, at(b->shared_w13, L->dtype, 0));
    if (!st) {
      snprintf(n, sizeof n, "%sshared_experts.up_proj.weight", p);
      st = moe_ld_matrix(L, n, Is, H,
                         at(b->shared_w13, L->dtype, (size_t)(Is * H)));
    }
    if (!st) {
      snprintf(n, sizeof n, "%sshared_experts.down_proj.weight", p);
      st = moe_ld_matrix(L, n, H, Is, at(b->shared_w2, L->dtype, 0));
    }
  }
  return st;
}

static moe_status map_nemotron(moe_loader *L, const moe_layer_bufs *b) {
  const moe_layer_desc *d = &L->cfg->desc;
  int64_t E = d->num_experts, H = d->hidden, I = d->intermediate;
  int64_t Is = d->shared_intermediate;
  char p[PREFIX_LEN], n[NAME_MAX_LEN];
  snprintf(p, sizeof p, "backbone.layers.%d.mixer.", L->layer);
  snprintf(n, sizeof n, "%sgate.weight", p);
  moe_status st = router(L, n, b);
  if (!st) {
    snprintf(n, sizeof n, "%sgate.e_score_correction_bias", p);
    st = moe_ld_vector(L, n, E, 0, b->correction_bias);
  }
  for (int64_t e = 0; e < E && !st; e++) {
    snprintf(n, sizeof n, "%sexperts.%lld.up_proj.weight", p, (long long)e);
    st = moe_ld_matrix(L, n, I, H, at(b->w13, L->dtype, (size_t)(e * I * H)));
    if (st) break;
    snprintf(n, sizeof n, "%sexperts.%lld.down_proj.weight", p, (long long)e);
    st = moe_ld_matrix(L, n, H, I, at(b->w2, L->dtype, (size_t)(e * H * I)));
  }
  if (!st && Is > 0) {
    snprintf(n, sizeof n, "%sshared_experts.up_proj.weight", p);
    st = moe_ld_matrix(L, n, Is, H, at(b->shared_w13, L->dtype, 0));
    if (!st) {
      snprintf(n, sizeof n, "%sshared_experts.down_proj.weight", p);
      st = moe_ld_matrix(L, n, H, Is, at(b->shared_w2, L->dtype, 0));
    }
  }
  return st;
}

static moe_status map_gpt_oss(moe_loader *L, const moe_layer_bufs *b) {
  const moe_layer_desc *d = &L->cfg->desc;
  int64_t E = d->num_experts, H = d->hidden, I = d->intermediate;
  char p[PREFIX_LEN], n[NAME_MAX_LEN];
  snprintf(p, sizeof p, "model.layers.%d.mlp.", L->layer);
  snprintf(n, sizeof n, "%srouter.weight", p);
  moe_status st = router(L, n, b);
  if (!st) {
    snprintf(n, sizeof n, "%srouter.bias", p);
    st = moe_ld_vector(L, n, E, 0, b->router_bias);
  }
  if (st) return st;
  snprintf(n, sizeof n, "%sexperts.gate_up_proj", p);
  if (moe_ckpt_has(L->ckpt, n)) {
    /* [E][H][2I] -> [E][2I][H]; [E][I][H] -> [E][H][I] */
    st = moe_ld_stacked_transposed(L, n, E, H, 2 * I, at(b->w13, L->dtype, 0));
    if (!st) {
      snprintf(n, sizeof n, "%sexperts.down_proj", p);
      st = moe_ld_stacked_transposed(L, n, E, I, H, at(b->w2, L->dtype, 0));
    }
  } else {
    snprintf(n, sizeof n, "%sexperts.gate_up_proj", p);
    st = moe_ld_mxfp4(L, n, E, 2 * I, H, at(b->w13, L->dtype, 0));
    if (!st) {
      snprintf(n, sizeof n, "%sexperts.down_proj", p);
      st = moe_ld_mxfp4(L, n, E, H, I, at(b->w2, L->dtype, 0));
    }
  }
  if (!st) {
    snprintf(n, sizeof n, "%sexperts.gate_up_proj_bias", p);
    st = moe_ld_vector(L, n, E, 2 * I, b->w13_bias);
  }
  if (!st) {
    snprintf(n, sizeof n, "%sexperts.down_proj_bias", p);
    st = moe_ld_vector(L, n, E, H, b->w2_bias);
  }
  return st;
}

moe_status moe_family_map_layer(moe_loader *L, const moe_layer_bufs *b) {
  switch (L->cfg->family) {
  case MOE_FAMILY_MIXTRAL:
    return map_mixtral(L, b);
  case MOE_FAMILY_QWEN3_MOE:
  case MOE_FAMILY_DEEPSEEK_V3:
    return map_qwen_deepseek(L, b);
  case MOE_FAMILY_NEMOTRON_H:
    return map_nemotron(L, b);
  case MOE_FAMILY_GPT_OSS:
    return map_gpt_oss(L, b);
  default:
    break;
  }
  snprintf(L->err->message, sizeof L->err->message, "unknown model family");
  return MOE_ERR_INTERNAL;
}
