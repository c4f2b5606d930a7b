/*
 * run.c - `moe run`: one MoE layer of a real checkpoint through the library.
 *
 *   moe run --model DIR [--layer L] [--tokens N | --input FILE.safetensors]
 *           [--output FILE.safetensors] [--dtype bf16|f16|f32]
 *           [--backend NAME] [--seed S] [--threads N]
 *
 * Loads the layer (router included) with the io readers, computes the
 * router logits x @ R^T (+ router bias) in fp32 on the host, runs the tokens
 * through moe_forward on the planned backend with host weights, prints the
 * plan and the time, and writes "output" (and "input" when the tokens were
 * random) to the output file.
 */
#define _POSIX_C_SOURCE 200809L
#include "backend.h"
#include "cli.h"
#include "io/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Loads of at least this many bytes show a progress line on stderr. */
#define PROGRESS_MIN_BYTES (256ull << 20)

typedef struct run_args {
  const char *model, *input, *output, *backend;
  int layer, tokens, threads;
  moe_dtype dtype;
  unsigned long long seed;
} run_args;

static void usage(FILE *f) {
  fprintf(f,
          "usage: moe run --model DIR [--layer L] [--tokens N | --input "
          "FILE.safetensors]\n"
          "               [--output FILE.safetensors] [--dtype bf16|f16|f32] "
          "[--backend NAME]\n"
          "               [--seed S] [--threads N]\n"
          "  Runs MoE layer L (default: the first one) of the checkpoint in "
          "DIR on\n"
          "  N random tokens (default 4) or on the tensor \"input\" [M, H] of "
          "FILE,\n"
          "  and writes \"output\" (and the random \"input\") to the output "
          "file.\n");
}

static int parse_dtype(const char *s, moe_dtype *d) {
  for (int i = 0; i < MOE_DTYPE_COUNT; i++)
    if (moe_dtype_name((moe_dtype)i) &&
        strcmp(s, moe_dtype_name((moe_dtype)i)) == 0) {
      *d = (moe_dtype)i;
      return 1;
    }
  return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return 0;
  *out = (int)v;
  return 1;
}

/* 0 ok, 2 usage error. */
static int parse_args(int argc, char **argv, run_args *a) {
  memset(a, 0, sizeof *a);
  a->layer = -1;
  a->tokens = 4;
  a->dtype = MOE_DTYPE_BF16;
  a->seed = 1;
  int tokens_given = 0;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
      usage(stdout);
      return 1;
    }
    if (!v) {
      fprintf(stderr, "moe run: %s needs a value\n", k);
      return 2;
    }
    i++;
    if (!strcmp(k, "--model")) {
      a->model = v;
    } else if (!strcmp(k, "--input")) {
      a->input = v;
    } else if (!strcmp(k, "--output")) {
      a->output = v;
    } else if (!strcmp(k, "--backend")) {
      a->backend = v;
    } else if (!strcmp(k, "--seed")) {
      a->seed = strtoull(v, NULL, 0);
    } else if (!strcmp(k, "--layer")) {
      if (!parse_int(v, 0, MOE_CONFIG_MAX_LAYERS - 1, &a->layer)) {
        fprintf(stderr, "moe run: bad --layer '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(k, "--threads")) {
      if (!parse_int(v, 0, 4096, &a->threads)) {
        fprintf(stderr, "moe run: bad --threads '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(k, "--tokens")) {
      tokens_given = 1;
      if (!parse_int(v, 1, 1 << 20, &a->tokens)) {
        fprintf(stderr, "moe run: bad --tokens '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(k, "--dtype")) {
      if (!parse_dtype(v, &a->dtype)) {
        fprintf(stderr, "moe run: bad --dtype '%s' (bf16, f16, f32)\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "moe run: unknown option '%s'\n", k);
      return 2;
    }
  }
  if (!a->model) {
    fprintf(stderr, "moe run: --model DIR is required\n");
    return 2;
  }
  if (a->input && tokens_given) {
    fprintf(stderr, "moe run: give --tokens or --input, not both\n");
    return 2;
  }
  return 0;
}

typedef struct progress_state {
  int shown;
  int last_pct;
} progress_state;

static void on_progress(void *user, uint64_t done, uint64_t total,
                        const char *what) {
  progress_state *p = user;
  (void)what;
  if (total < PROGRESS_MIN_BYTES) return;
  /* A terminal gets one line redrawn per percent; a file or pipe a line
   * per 10%. */
  int tty = isatty(STDERR_FILENO);
  int pct = (int)(done * 100 / total);
  int step = tty ? pct : pct / 10 * 10;
  if (step == p->last_pct) return;
  p->last_pct = step;
  p->shown = tty;
  fprintf(stderr, "%sloading: %llu / %llu MB (%d%%)%s", tty ? "\r" : "",
          (unsigned long long)(done >> 20), (unsigned long long)(total >> 20),
          pct, tty ? "" : "\n");
  fflush(stderr);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static moe_st_dtype st_of(moe_dtype d) {
  return d == MOE_DTYPE_F32   ? MOE_ST_F32
         : d == MOE_DTYPE_F16 ? MOE_ST_F16
                              : MOE_ST_BF16;
}

/* Random tokens ~ N(0, 1) (Box-Muller over a xorshift), in dtype. */
static void random_tokens(void *x, size_t n, moe_dtype dt,
                          unsigned long long seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    double u[2];
    for (int j = 0; j < 2; j++) {
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      u[j] = ((double)((s * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) /
             9007199254740992.0;
    }
    double z = sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
    moe_store_elem(x, i, dt, (float)z);
  }
}

/* Reads tensor "input" (or the file's only tensor) [M][H] into dtype. */
static void *read_input(const char *path, int H, moe_dtype dt, int *M) {
  moe_io_error err;
  moe_st_file *f = NULL;
  if (moe_st_open(path, &f, &err) != MOE_OK) {
    fprintf(stderr, "moe run: %s\n", err.message);
    return NULL;
  }
  const moe_st_tensor *t = moe_st_find(f, "input");
  if (!t && moe_st_count(f) == 1) t = moe_st_tensor_at(f, 0);
  void *x = NULL;
  if (!t) {
    fprintf(stderr, "moe run: %s: no tensor \"input\"\n", path);
  } else if (t->ndim != 2 || t->shape[1] != H || t->shape[0] < 1 ||
             t->shape[0] > (1 << 20) || !moe_st_is_float(t->dtype)) {
    fprintf(stderr,
            "moe run: %s: tensor %s must be a float tensor [M, %d] with "
            "1 <= M <= %d\n",
            path, t->name, H, 1 << 20);
  } else if ((x = malloc((size_t)t->numel * moe_dtype_size(dt))) != NULL) {
    float *row = malloc((size_t)H * sizeof *row);
    for (int64_t m = 0; row && m < t->shape[0]; m++) {
      moe_st_decode(t, (uint64_t)(m * H), (size_t)H, row);
      for (int h = 0; h < H; h++)
        moe_store_elem(x, (size_t)(m * H + h), dt, row[h]);
    }
    if (!row) {
      free(x);
      x = NULL;
    }
    free(row);
    *M = (int)t->shape[0];
  }
  moe_st_close(f);
  return x;
}

/* logits[m][e] = sum_h x[m][h] R[e][h] (+ b[e]), accumulated in double. */
static void router_logits(const moe_layer_bundle *b, const void *x, int M,
                          float *logits) {
  int E = b->desc.num_experts, H = b->desc.hidden;
  float *xr = malloc((size_t)H * sizeof *xr);
  for (int m = 0; xr && m < M; m++) {
    for (int h = 0; h < H; h++)
      xr[h] = moe_load_elem(x, (size_t)m * H + h, b->desc.dtype);
    for (int e = 0; e < E; e++) {
      double acc = b->router_bias ? b->router_bias[e] : 0.0;
      for (int h = 0; h < H; h++)
        acc +=
            (double)xr[h] *
            moe_load_elem(b->router_weight, (size_t)e * H + h, b->router_dtype);
      logits[(size_t)m * E + e] = (float)acc;
    }
  }
  free(xr);
}

static void print_desc(const moe_layer_bundle *b) {
  const moe_layer_desc *d = &b->desc;
  printf("model: %s layer %d: E=%d top-k=%d H=%d I=%d %s%s, %s routing",
         moe_family_name(b->config.family), b->layer, d->num_experts, d->top_k,
         d->hidden, d->intermediate, moe_activation_name(d->activation),
         d->gated ? " gated" : "",
         d->routing.scoring == MOE_SCORING_SIGMOID ? "sigmoid" : "softmax");
  if (d->routing.n_group > 1)
    printf(" (%d groups, top %d)", d->routing.n_group, d->routing.topk_group);
  if (b->correction_bias) printf(", correction bias");
  if (d->routing.renormalize) printf(", renormalised");
  if (d->routing.routed_scaling_factor != 1.0f)
    printf(", scale %g", d->routing.routed_scaling_factor);
  if (d->shared_intermediate)
    printf(", shared expert I=%d", d->shared_intermediate);
  printf("\n");
}

int moe_cmd_run(int argc, char **argv) {
  run_args a;
  int pr = parse_args(argc, argv, &a);
  if (pr) return pr == 1 ? 0 : 2;
  int layer = a.layer;
  moe_io_error err;
  if (layer < 0) { /* the first MoE layer */
    moe_model_config cfg;
    if (moe_model_config_load(a.model, &cfg, &err) != MOE_OK) {
      fprintf(stderr, "moe run: %s\n", err.message);
      return 1;
    }
    for (int l = 0; l < cfg.num_layers && layer < 0; l++)
      if (cfg.is_moe[l]) layer = l;
  }
  moe_load_options lo;
  moe_load_options_init(&lo);
  progress_state ps = {0, -1};
  lo.progress = on_progress;
  lo.progress_user = &ps;
  moe_layer_bundle *b = NULL;
  double t0 = now_s();
  moe_status st =
      moe_checkpoint_load_layer(a.model, layer, a.dtype, &lo, &b, &err);
  if (ps.shown) fprintf(stderr, "\n");
  if (st != MOE_OK) {
    fprintf(stderr, "moe run: %s (%s)\n", err.message, moe_status_string(st));
    return 1;
  }
  double t_load = now_s() - t0;
  print_desc(b);
  printf("loaded %.1f MB of checkpoint tensors in %.3f s\n",
         (double)b->bytes_read / (1 << 20), t_load);

  int H = b->desc.hidden, E = b->desc.num_experts, M = a.tokens;
  size_t es = moe_dtype_size(a.dtype);
  void *x = a.input ? read_input(a.input, H, a.dtype, &M)
                    : malloc((size_t)M * H * es);
  int rc = 1;
  moe_context *ctx = NULL;
  moe_layer *L = NULL;
  float *logits = NULL;
  void *out = NULL;
  if (!x) goto done;
  if (!a.input) random_tokens(x, (size_t)M * H, a.dtype, a.seed);
  logits = malloc((size_t)M * E * sizeof *logits);
  out = malloc((size_t)M * H * es);
  if (!logits || !out) {
    fprintf(stderr, "moe run: out of memory\n");
    goto done;
  }
  router_logits(b, x, M, logits);

  moe_context_options co;
  moe_context_options_init(&co);
  co.num_threads = a.threads;
  if (moe_context_create(&co, &ctx) != MOE_OK) {
    fprintf(stderr, "moe run: cannot create a context\n");
    goto done;
  }
  moe_layer_desc d = b->desc;
  d.backend = a.backend;
  d.max_tokens = M;
  st = moe_layer_create(ctx, &d, &b->weights, &L);
  if (st != MOE_OK) {
    fprintf(stderr, "moe run: layer: %s: %s\n", moe_status_string(st),
            moe_last_error(ctx));
    goto done;
  }
  size_t need = moe_plan_explain(moe_layer_plan(L), NULL, 0);
  char *plan = malloc(need + 1);
  if (plan) {
    moe_plan_explain(moe_layer_plan(L), plan, need + 1);
    printf("%s%s", plan, need && plan[need - 1] == '\n' ? "" : "\n");
    free(plan);
  }
  t0 = now_s();
  st = moe_forward(L, x, logits, M, out, NULL);
  double t_fwd = now_s() - t0;
  if (st != MOE_OK) {
    fprintf(stderr, "moe run: forward: %s: %s\n", moe_status_string(st),
            moe_last_error(ctx));
    goto done;
  }
  printf("forward: %d tokens on %s in %.3f ms\n", M, moe_layer_backend(L),
         t_fwd * 1e3);
  if (a.output) {
    moe_st_out t[2];
    int n = 0;
    memset(t, 0, sizeof t);
    t[n].name = "output";
    t[n].dtype = st_of(a.dtype);
    t[n].ndim = 2;
    t[n].shape[0] = M;
    t[n].shape[1] = H;
    t[n++].data = out;
    if (!a.input) {
      t[n] = t[0];
      t[n].name = "input";
      t[n++].data = x;
    }
    if (moe_st_write(a.output, t, n, &err) != MOE_OK) {
      fprintf(stderr, "moe run: %s\n", err.message);
      goto done;
    }
    printf("wrote %s\n", a.output);
  }
  rc = 0;
done:
  moe_layer_destroy(L);
  moe_context_destroy(ctx);
  free(out);
  free(logits);
  free(x);
  moe_layer_bundle_free(b);
  return rc;
}
