/* presets.h - the model presets of the public configs (DESIGN.md §6). */
#ifndef MOE_PRESETS_H
#define MOE_PRESETS_H

#include "moe.h"

typedef struct moe_preset {
  const char *name;
  int E, k, H, I;
  moe_activation act;
  int gated;
  moe_scoring scoring;
  int n_group, topk_group, renormalize;
  float scale;
  int correction_bias; /* the model ships a correction bias */
  int shared_I;        /* 0: no shared expert */
} moe_preset;

int moe_preset_count(void);
const moe_preset *moe_preset_get(int i);
const moe_preset *moe_preset_find(const char *name);
/* Fills desc from a preset (dtype bf16, defaults elsewhere). */
void moe_preset_desc(const moe_preset *p, moe_layer_desc *desc);
/* Parses "E,k,H,I,act" (act: silu, gelu, relu2, swiglu-oai; a "-plain"
 * suffix on silu/gelu means non-gated) into a preset-like record. */
int moe_preset_parse_layer(const char *spec, moe_preset *out);
/* Parses an activation name, with the same suffix rule. */
int moe_parse_activation(const char *s, moe_activation *act, int *gated);
int moe_parse_dtype(const char *s, moe_dtype *d);

#endif
