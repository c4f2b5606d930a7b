/* demo.c - `moe demo`, the main job: a real model's MoE layer (random
 * weights) on the best backend of this machine, checked against the
 * reference, with time and bandwidth. */
#include "cli.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_TOKENS 4
#define NB 8 /* batches rotated over while timing */

/* cpu-ref on the first tokens of the batch; returns the relative error of
 * `got` (host copy of the backend's output) against it. */
static double reference_error(moe_context *rctx, const cli_problem *p,
                              const cli_batch *b, const void *got) {
  moe_layer_desc d = p->desc;
  d.backend = "cpu-ref";
  d.self_check = 0;
  moe_weights w = cli_problem_weights(p, 1);
  moe_layer *L = NULL;
  if (moe_layer_create(rctx, &d, &w, &L) != MOE_OK) return -1;
  int m = b->M < CHECK_TOKENS ? b->M : CHECK_TOKENS;
  size_t n = (size_t)m * d.hidden;
  void *ref = malloc(n * moe_dtype_size(d.dtype));
  double err = -1;
  if (ref && moe_forward(L, b->hx, b->hlogits, m, ref, NULL) == MOE_OK)
    err = cli_rel_error(got, ref, n, d.dtype);
  free(ref);
  moe_layer_destroy(L);
  return err;
}

int moe_cmd_demo(int argc, char **argv) {
  const char *want = argc > 1 ? argv[1] : NULL;
  moe_context *ctx = NULL, *rctx = NULL;
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = ""; /* the real machine, whatever MOE_DEVICE says */
  if (moe_context_create(&co, &ctx) != MOE_OK) {
    fprintf(stderr, "moe demo: cannot create a context\n");
    return 1;
  }
  moe_context_options ro = co;
  ro.ref_double_accumulation = 1;
  moe_context_create(&ro, &rctx);
  int gpu = cli_has_gpu(ctx);
  moe_memory mem = gpu ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST;
  printf("moe %s\n%s\n", moe_version_string(), moe_context_device_info(ctx));

  /* The preset: nemotron3-nano unless the machine lacks the memory. */
  static const char *order[] = {"nemotron3-nano", "qwen3-30b-a3b"};
  const moe_preset *preset = NULL;
  size_t avail = cli_mem_available();
  moe_layer_desc d;
  for (int i = 0; i < 2 && !preset; i++) {
    const moe_preset *p = moe_preset_find(want ? want : order[i]);
    if (!p) break;
    moe_preset_desc(p, &d);
    size_t need = cli_expert_bytes(&d) * (size_t)d.num_experts;
    if (want || !avail || need * 2 < avail)
      preset = p;
    else
      printf("%s needs %zu MB; %zu MB available: trying a smaller one\n",
             p->name, need >> 20, avail >> 20);
  }
  if (!preset) {
    fprintf(stderr, "moe demo: no preset fits this machine ('%s')\n",
            want ? want : "");
    moe_context_destroy(ctx);
    moe_context_destroy(rctx);
    return 1;
  }
  moe_preset_desc(preset, &d);
  d.max_tokens = 256;
  double bw = gpu ? 4800.0 : cli_host_read_bandwidth(cli_host_threads());
  printf("preset %s: E=%d k=%d H=%d I=%d %s, %zu MB of bf16 weights\n",
         preset->name, d.num_experts, d.top_k, d.hidden, d.intermediate,
         moe_activation_name(d.activation),
         (cli_expert_bytes(&d) * (size_t)d.num_experts) >> 20);
  printf("%s read bandwidth: %.1f GB/s\n", gpu ? "datasheet" : "measured", bw);
  fprintf(stderr, "generating random weights...\n");
  cli_problem p;
  char err[256];
  if (!cli_problem_make(&p, &d, mem, 42, err, sizeof err)) {
    fprintf(stderr, "moe demo: %s\n", err);
    moe_context_destroy(ctx);
    moe_context_destroy(rctx);
    return 1;
  }
  moe_weights w = cli_problem_weights(&p, 0);
  moe_layer *L = NULL;
  if (moe_layer_create(ctx, &d, &w, &L) != MOE_OK) {
    fprintf(stderr, "moe demo: %s\n", moe_last_error(ctx));
    cli_problem_free(&p);
    moe_context_destroy(ctx);
    moe_context_destroy(rctx);
    return 1;
  }
  printf("backend: %s\n\n", moe_layer_backend(L));
  printf("%6s %10s %9s %9s %12s %s\n", "tokens", "us", "GB/s", "%bw", "rel.err",
         "check");
  static const int tokens[] = {1, 4, 16, 64, 256};
  int rc = 0;
  for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++) {
    int M = tokens[t];
    cli_batch bs[NB];
    if (!cli_batches_make(bs, NB, &p, M, 7 + (uint64_t)M, err, sizeof err)) {
      fprintf(stderr, "moe demo: %s\n", err);
      rc = 1;
      break;
    }
    double us = 0;
    moe_status st = cli_time_forward(L, &p, bs, NB, 0.3, &us);
    if (st != MOE_OK) {
      fprintf(stderr, "moe demo: %s\n", moe_last_error(ctx));
      cli_batches_free(bs, NB, &p);
      rc = 1;
      break;
    }
    cli_batch *b0 = &bs[0]; /* its output is from the last round */
    if (gpu)
      p.ops->download(b0->hout, b0->dout,
                      (size_t)M * d.hidden * moe_dtype_size(d.dtype));
    /* Bytes: the experts each batch's tokens touched + the shared one. */
    double touched = 0;
    for (int i = 0; i < NB; i++)
      touched += cli_touched_experts(rctx, &p, &bs[i]) / (double)NB;
    double bytes = touched * (double)cli_expert_bytes(&d) +
                   (double)(p.bytes[2] + p.bytes[3]);
    double gbs = bytes / (us * 1e-6) / 1e9;
    double e = reference_error(rctx, &p, b0, b0->hout);
    int ok = e >= 0 && e < 1e-2;
    if (!ok) rc = 1;
    printf("%6d %10.1f %9.1f %8.1f%% %12.2e %s\n", M, us, gbs, 100.0 * gbs / bw,
           e, ok ? "ok" : "MISMATCH");
    cli_batches_free(bs, NB, &p);
  }
  printf("\n(bytes: the experts the tokens were routed to plus the shared "
         "expert;\n the check compares the first %d tokens with "
         "cpu-ref in double precision)\n",
         CHECK_TOKENS);
  moe_layer_destroy(L);
  cli_problem_free(&p);
  moe_context_destroy(ctx);
  moe_context_destroy(rctx);
  return rc;
}
