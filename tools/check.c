/* check.c - `moe check`: every backend of this build against the reference
 * on random problems of every kind; a table of relative errors. A backend
 * that does not support a problem reports "n/s", which is a result, not a
 * failure. */
#include "cli.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_M 7

typedef struct check_case {
  const char *act;
  moe_dtype dtype;
  int sigmoid; /* sigmoid + bias + groups + shared expert */
} check_case;

static const char *acts[] = {"silu",       "silu-plain", "gelu",
                             "gelu-plain", "relu2",      "swiglu-oai"};

/* Runs backend `name` on case c; returns the relative error, -1 when not
 * supported, -2 on failure. */
static double run_case(moe_context *ctx, moe_context *rctx, const char *name,
                       const check_case *c, moe_memory mem, uint64_t seed,
                       char *why, size_t n) {
  moe_layer_desc d;
  moe_layer_desc_init(&d);
  d.num_experts = 16;
  d.top_k = 4;
  d.hidden = 136;
  d.intermediate = 72;
  moe_parse_activation(c->act, &d.activation, &d.gated);
  d.dtype = c->dtype;
  d.routing.renormalize = 1;
  if (c->sigmoid) {
    d.routing.scoring = MOE_SCORING_SIGMOID;
    d.routing.n_group = 4;
    d.routing.topk_group = 2;
    d.routing.routed_scaling_factor = 2.5f;
    d.shared_intermediate = 40;
  }
  d.max_tokens = 16;
  d.self_check = 0;
  cli_problem p;
  if (!cli_problem_make(&p, &d, mem, seed, why, n)) return -2;
  cli_batch b;
  if (!cli_batch_make(&b, &p, CHECK_M, seed + 5, why, n)) {
    cli_problem_free(&p);
    return -2;
  }
  double result = -2;
  moe_layer_desc rd = d;
  rd.backend = "cpu-ref";
  moe_weights hw = cli_problem_weights(&p, 1);
  moe_layer *R = NULL, *L = NULL;
  size_t count = (size_t)CHECK_M * d.hidden;
  void *ref = malloc(count * moe_dtype_size(d.dtype));
  if (!ref || moe_layer_create(rctx, &rd, &hw, &R) != MOE_OK ||
      moe_forward(R, b.hx, b.hlogits, CHECK_M, ref, NULL) != MOE_OK) {
    snprintf(why, n, "reference failed: %s", moe_last_error(rctx));
    goto done;
  }
  const moe_backend *be = moe_backend_find(name);
  int host = be->memops->memory == MOE_MEMORY_HOST;
  d.backend = name;
  moe_weights w = cli_problem_weights(&p, host);
  moe_status st = moe_layer_create(ctx, &d, &w, &L);
  if (st == MOE_ERR_UNSUPPORTED) {
    result = -1;
    snprintf(why, n, "%s", moe_last_error(ctx));
    goto done;
  }
  if (st != MOE_OK) {
    snprintf(why, n, "%s", moe_last_error(ctx));
    goto done;
  }
  st = moe_forward(L, host ? b.hx : b.dx, host ? b.hlogits : (float *)b.dlogits,
                   CHECK_M, host ? b.hout : b.dout, NULL);
  if (st == MOE_OK) st = be->memops->sync();
  if (st == MOE_OK && !host)
    st = p.ops->download(b.hout, b.dout, count * moe_dtype_size(d.dtype));
  if (st != MOE_OK) {
    snprintf(why, n, "%s", moe_last_error(ctx));
    goto done;
  }
  result = cli_rel_error(b.hout, ref, count, d.dtype);
done:
  moe_layer_destroy(L);
  moe_layer_destroy(R);
  free(ref);
  cli_batch_free(&b, &p);
  cli_problem_free(&p);
  return result;
}

int moe_cmd_check(int argc, char **argv) {
  (void)argc;
  (void)argv;
  moe_context *ctx = NULL, *rctx = NULL;
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = "";
  if (moe_context_create(&co, &ctx) != MOE_OK) return 1;
  co.ref_double_accumulation = 1;
  if (moe_context_create(&co, &rctx) != MOE_OK) {
    moe_context_destroy(ctx);
    return 1;
  }
  int gpu = cli_has_gpu(ctx);
  int nb;
  const moe_backend *const *reg = moe_backend_registry(&nb);
  printf("relative error ||out - ref|| / ||ref|| against cpu-ref (double "
         "accumulation); n/s = not supported, - = no device\n"
         "layer E=16 k=4 H=136 I=72, %d tokens; 'sig' = sigmoid + bias, "
         "4 groups, shared expert\n\n",
         CHECK_M);
  printf("%-20s", "case");
  for (int i = 0; i < nb; i++)
    printf(" %11s", reg[i]->name);
  printf("\n");
  static const moe_dtype dts[] = {MOE_DTYPE_BF16, MOE_DTYPE_F16, MOE_DTYPE_F32};
  int failures = 0, seedn = 0;
  for (int di = 0; di < 3; di++)
    for (int a = 0; a < 6; a++)
      for (int sg = 0; sg < 2; sg++) {
        check_case c = {acts[a], dts[di], sg};
        char label[64];
        snprintf(label, sizeof label, "%s %s%s", c.act, moe_dtype_name(c.dtype),
                 sg ? " sig" : "");
        printf("%-20s", label);
        double tol = c.dtype == MOE_DTYPE_F32 ? 1e-4 : 1e-2;
        for (int i = 0; i < nb; i++) {
          int dev = reg[i]->memops->memory == MOE_MEMORY_CUDA;
          if (dev && !gpu) {
            printf(" %11s", "-");
            continue;
          }
          char why[512] = "";
          double e = run_case(ctx, rctx, reg[i]->name, &c,
                              dev ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST,
                              1000 + (uint64_t)seedn++, why, sizeof why);
          if (e == -1) {
            printf(" %11s", "n/s");
          } else if (e < 0 || !(e < tol)) {
            printf(" %10.2eX", e < 0 ? 0.0 : e);
            fprintf(stderr, "\n%s on %s: %s\n", reg[i]->name, label,
                    e < 0 ? why : "beyond tolerance");
            failures++;
          } else {
            printf(" %11.2e", e);
          }
        }
        printf("\n");
        fflush(stdout);
      }
  printf("\n%s: %d failure%s (tolerance 1e-2 for bf16/f16, 1e-4 for f32)\n",
         failures ? "FAILED" : "ok", failures, failures == 1 ? "" : "s");
  moe_context_destroy(ctx);
  moe_context_destroy(rctx);
  return failures ? 1 : 0;
}
