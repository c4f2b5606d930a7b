/* plan_cmd.c - `moe plan`: the planner's decision table for one layer on
 * this (or a what-if) device, and `--matrix`: the backend chosen for every
 * known device x activation x dtype. */
#include "cli.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr,
          "usage: moe plan [--preset NAME | --layer E,k,H,I,act] [--dtype "
          "bf16|f16|f32]\n"
          "                [--device sm_121|cpu] [--memory host|cuda] "
          "[--backend NAME [--fallback]]\n"
          "                [--no-self-check]\n"
          "       moe plan --matrix\n");
  return 2;
}

static const char *acts[] = {"silu",       "silu-plain", "gelu",
                             "gelu-plain", "relu2",      "swiglu-oai"};
#define N_ACTS 6

static int matrix(void) {
  int nd = moe_known_device_count();
  static const moe_dtype dts[] = {MOE_DTYPE_BF16, MOE_DTYPE_F16, MOE_DTYPE_F32};
  printf("Backend chosen per device, activation and dtype (tensors in the "
         "device's memory;\nlayer E=128 k=8 H=2048 I=768; `moe plan "
         "--matrix`).\n\n");
  for (int di = 0; di < 3; di++) {
    printf("**%s**\n\n| device |", moe_dtype_name(dts[di]));
    for (int a = 0; a < N_ACTS; a++)
      printf(" %s |", acts[a]);
    printf("\n|---|");
    for (int a = 0; a < N_ACTS; a++)
      printf("---|");
    printf("\n");
    for (int dv = -1; dv < nd; dv++) {
      const char *dev = dv < 0 ? "cpu" : moe_known_device_name(dv);
      moe_context_options co;
      moe_context_options_init(&co);
      co.device_override = dev;
      moe_context *ctx = NULL;
      if (moe_context_create(&co, &ctx) != MOE_OK) {
        fprintf(stderr, "moe plan: cannot plan for %s\n", dev);
        return 1;
      }
      printf("| %s |", dev);
      for (int a = 0; a < N_ACTS; a++) {
        moe_layer_desc d;
        moe_preset_desc(moe_preset_find("qwen3-30b-a3b"), &d);
        moe_parse_activation(acts[a], &d.activation, &d.gated);
        d.dtype = dts[di];
        d.backend = "";
        moe_plan *p = NULL;
        moe_memory mem = dv < 0 ? MOE_MEMORY_HOST : MOE_MEMORY_CUDA;
        moe_status st = moe_plan_create(ctx, &d, mem, &p);
        const char *b = p ? moe_plan_backend(p) : NULL;
        printf(" %s |", st == MOE_OK && b ? b : "none");
        moe_plan_destroy(p);
      }
      printf("\n");
      moe_context_destroy(ctx);
    }
    printf("\n");
  }
  return 0;
}

int moe_cmd_plan(int argc, char **argv) {
  const moe_preset *preset = moe_preset_find("nemotron3-nano");
  moe_preset custom;
  const char *device = NULL, *backend = NULL;
  moe_dtype dtype = MOE_DTYPE_BF16;
  int memory = -1, fallback = 0, self_check = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--matrix")) return matrix();
    if (!strcmp(a, "--fallback")) {
      fallback = 1;
      continue;
    }
    if (!strcmp(a, "--no-self-check")) {
      self_check = 0;
      continue;
    }
    if (!v) return usage();
    if (!strcmp(a, "--preset")) {
      if (!(preset = moe_preset_find(v))) {
        fprintf(stderr, "moe plan: unknown preset '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--layer")) {
      if (!moe_preset_parse_layer(v, &custom)) return usage();
      preset = &custom;
    } else if (!strcmp(a, "--dtype")) {
      if (!moe_parse_dtype(v, &dtype)) return usage();
    } else if (!strcmp(a, "--device")) {
      device = v;
    } else if (!strcmp(a, "--memory")) {
      memory = !strcmp(v, "cuda") ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST;
    } else if (!strcmp(a, "--backend")) {
      backend = v;
    } else {
      return usage();
    }
    i++;
  }
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = device;
  moe_context *ctx = NULL;
  moe_status st = moe_context_create(&co, &ctx);
  if (st != MOE_OK) {
    fprintf(stderr, "moe plan: bad device '%s' (try sm_90, sm_121, cpu)\n",
            device ? device : "");
    return 2;
  }
  if (memory < 0) memory = cli_has_gpu(ctx) ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST;
  moe_layer_desc d;
  moe_preset_desc(preset, &d);
  d.dtype = dtype;
  d.backend = backend ? backend : NULL;
  d.allow_fallback = fallback;
  d.self_check = self_check;
  moe_plan *p = NULL;
  st = moe_plan_create(ctx, &d, (moe_memory)memory, &p);
  if (p) {
    size_t n = moe_plan_explain(p, NULL, 0);
    char *text = malloc(n + 1);
    if (text) {
      moe_plan_explain(p, text, n + 1);
      printf("preset: %s, tensors in %s memory\n%s", preset->name,
             memory == MOE_MEMORY_CUDA ? "CUDA" : "host", text);
      free(text);
    }
  }
  if (st != MOE_OK) printf("error: %s\n", moe_last_error(ctx));
  moe_plan_destroy(p);
  moe_context_destroy(ctx);
  return st == MOE_OK ? 0 : 1;
}
