/*
 * fuzz_model_config.c - libFuzzer target: config.json text through the
 * family detection and the field readers; whatever is accepted must hold
 * sizes in range and a consistent layer map.
 */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moe_io_error err;
  moe_model_config *c = malloc(sizeof *c);
  if (!c) return 0;
  if (moe_model_config_parse((const char *)data, size, "fuzz/config.json", c,
                             &err) == MOE_OK) {
    const moe_layer_desc *d = &c->desc;
    if (c->num_layers < 1 || c->num_layers > MOE_CONFIG_MAX_LAYERS ||
        d->num_experts < 1 || d->top_k < 1 || d->top_k > d->num_experts ||
        d->hidden < 1 || d->intermediate < 1 || d->shared_intermediate < 0)
      abort();
    int moe = 0;
    for (int l = -1; l <= c->num_layers; l++)
      moe += moe_model_config_is_moe(c, l);
    (void)moe;
    (void)moe_family_name(c->family);
  }
  free(c);
  return 0;
}
