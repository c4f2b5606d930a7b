/* presets.c - model presets: shapes and routing of public model configs. */
#include "presets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const moe_preset presets[] = {
    /* name, E, k, H, I, act, gated, scoring, n_group, topk_group, renorm,
     * scale, correction bias, shared I */
    {"nemotron3-nano", 128, 6, 2688, 1856, MOE_ACT_RELU2, 0,
     MOE_SCORING_SIGMOID, 1, 1, 1, 2.5f, 1, 3712},
    {"qwen3-30b-a3b", 128, 8, 2048, 768, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX,
     1, 1, 1, 1.0f, 0, 0},
    {"mixtral-8x7b", 8, 2, 4096, 14336, MOE_ACT_SILU, 1, MOE_SCORING_SOFTMAX, 1,
     1, 1, 1.0f, 0, 0},
    {"deepseek-v3", 256, 8, 7168, 2048, MOE_ACT_SILU, 1, MOE_SCORING_SIGMOID, 8,
     4, 1, 2.5f, 1, 2048},
    {"gpt-oss-120b", 128, 4, 2880, 2880, MOE_ACT_SWIGLU_OAI, 1,
     MOE_SCORING_SOFTMAX, 1, 1, 1, 1.0f, 0, 0},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

int moe_preset_count(void) {
  return N_PRESETS;
}

const moe_preset *moe_preset_get(int i) {
  return i >= 0 && i < N_PRESETS ? &presets[i] : NULL;
}

const moe_preset *moe_preset_find(const char *name) {
  for (int i = 0; i < N_PRESETS; i++)
    if (name && strcmp(presets[i].name, name) == 0) return &presets[i];
  return NULL;
}

void moe_preset_desc(const moe_preset *p, moe_layer_desc *d) {
  moe_layer_desc_init(d);
  d->num_experts = p->E;
  d->top_k = p->k;
  d->hidden = p->H;
  d->intermediate = p->I;
  d->activation = p->act;
  d->gated = p->gated;
  d->dtype = MOE_DTYPE_BF16;
  d->routing.scoring = p->scoring;
  d->routing.n_group = p->n_group;
  d->routing.topk_group = p->topk_group;
  d->routing.renormalize = p->renormalize;
  d->routing.routed_scaling_factor = p->scale;
  d->shared_intermediate = p->shared_I;
}

int moe_parse_activation(const char *s, moe_activation *act, int *gated) {
  static const struct {
    const char *name;
    moe_activation act;
    int gated;
  } t[] = {{"silu", MOE_ACT_SILU, 1},
           {"silu-plain", MOE_ACT_SILU, 0},
           {"gelu", MOE_ACT_GELU, 1},
           {"gelu-plain", MOE_ACT_GELU, 0},
           {"relu2", MOE_ACT_RELU2, 0},
           {"swiglu-oai", MOE_ACT_SWIGLU_OAI, 1},
           {"swiglu_oai", MOE_ACT_SWIGLU_OAI, 1}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (s && strcmp(s, t[i].name) == 0) {
      *act = t[i].act;
      *gated = t[i].gated;
      return 1;
    }
  return 0;
}

int moe_parse_dtype(const char *s, moe_dtype *d) {
  if (!s) return 0;
  if (!strcmp(s, "bf16"))
    *d = MOE_DTYPE_BF16;
  else if (!strcmp(s, "f16") || !strcmp(s, "fp16"))
    *d = MOE_DTYPE_F16;
  else if (!strcmp(s, "f32") || !strcmp(s, "fp32"))
    *d = MOE_DTYPE_F32;
  else
    return 0;
  return 1;
}

int moe_preset_parse_layer(const char *spec, moe_preset *out) {
  char act[32] = "";
  memset(out, 0, sizeof *out);
  if (sscanf(spec, "%d,%d,%d,%d,%31s", &out->E, &out->k, &out->H, &out->I,
             act) != 5)
    return 0;
  if (!moe_parse_activation(act, &out->act, &out->gated)) return 0;
  out->name = "custom";
  out->scoring = MOE_SCORING_SOFTMAX;
  out->n_group = 1;
  out->topk_group = 1;
  out->renormalize = 1;
  out->scale = 1.0f;
  return out->E > 0 && out->k > 0 && out->H > 0 && out->I > 0;
}
