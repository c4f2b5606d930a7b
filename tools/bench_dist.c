/* bench_dist.c - `moe bench --gpus N --parallel tp|ep|ep-a2a`: the layer on
 * N GPUs of this machine (one thread per rank, communicators from
 * moe_dist_comms_create) against the same layer on one GPU. Per mode and
 * token count: the whole forward, the communication alone (expert compute
 * left out) and the compute alone (collectives left out), each the median
 * over repetitions of CUDA-graph replays; the slowest rank counts. Token
 * counts are the whole batch: TP and EP give every rank all of them, EP_A2A
 * splits them over the ranks (each rank's own tokens). Weights are random
 * (a tiled random block: timing does not depend on the values). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "common.h"
#include "dist/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <pthread.h>
#endif

#define MAX_T 16
#define MAX_GPUS 8
#define NB 4    /* forwards per graph, over rotating logits */
#define REPS 7  /* timed repetitions; the median counts */
#define PARTS 3 /* whole, communication only, compute only */

typedef struct dist_opts {
  const moe_preset *preset;
  int gpus;
  int modes[MOE_PARALLEL_MODE_COUNT], n_modes;
  int tokens[MAX_T], n_tokens;
  int launches; /* graph launches per repetition */
  const char *json, *commit;
} dist_opts;

static int dist_usage(void) {
  fprintf(
      stderr,
      "usage: moe bench --gpus N [--parallel tp,ep,ep-a2a] [--preset NAME]\n"
      "                 [--tokens 1,64,256] [--launches N] [--json FILE] "
      "[--commit SHA]\n");
  return 2;
}

static int parse_modes(const char *v, dist_opts *o) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", v);
  o->n_modes = 0;
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
    int m = -1;
    for (int i = 0; i < MOE_PARALLEL_MODE_COUNT; i++)
      if (!strcmp(t, moe_parallel_mode_name((moe_parallel_mode)i))) m = i;
    if (m < 0 || o->n_modes >= MOE_PARALLEL_MODE_COUNT) return 0;
    o->modes[o->n_modes++] = m;
  }
  return o->n_modes > 0;
}

static int dist_parse(int argc, char **argv, dist_opts *o) {
  memset(o, 0, sizeof *o);
  o->preset = moe_preset_find("deepseek-v3");
  o->n_tokens = cli_parse_ints("1,16,64,128,256", o->tokens, MAX_T);
  o->launches = 10;
  parse_modes("tp,ep,ep-a2a", o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return 0;
    if (!strcmp(a, "--gpus")) {
      o->gpus = atoi(v);
    } else if (!strcmp(a, "--parallel")) {
      if (!parse_modes(v, o)) return 0;
    } else if (!strcmp(a, "--preset")) {
      if (!(o->preset = moe_preset_find(v))) return 0;
    } else if (!strcmp(a, "--tokens")) {
      if ((o->n_tokens = cli_parse_ints(v, o->tokens, MAX_T)) <= 0) return 0;
    } else if (!strcmp(a, "--launches")) {
      o->launches = atoi(v);
    } else if (!strcmp(a, "--json")) {
      o->json = v;
    } else if (!strcmp(a, "--commit")) {
      o->commit = v;
    } else {
      return 0;
    }
    i++;
  }
  return o->gpus >= 1 && o->gpus <= MAX_GPUS && o->launches >= 1;
}

#ifdef MOE_HAVE_CUDA
/* ---- device buffers ---- */

/* n bf16/f16 elements of U(-a, a), tiled from one random block. */
static int dev_random(void **p, size_t n, moe_dtype dt, float a,
                      uint64_t seed) {
  const size_t es = moe_dtype_size(dt), blk = (size_t)1 << 22;
  *p = NULL;
  if (cudaMalloc(p, n > 0 ? n * es : 1) != cudaSuccess) return 0;
  size_t m = n < blk ? n : blk;
  void *h = malloc(m > 0 ? m * es : 1);
  if (!h) return 0;
  cli_fill_random(h, m, dt, -a, a, seed);
  int ok = 1;
  for (size_t o = 0; ok && o < n; o += m) {
    size_t c = n - o < m ? n - o : m;
    ok = cudaMemcpy((char *)*p + o * es, h, c * es, cudaMemcpyHostToDevice) ==
         cudaSuccess;
  }
  free(h);
  return ok;
}

/* Weights for a layer of (E_local experts, I, Is) in desc's dtype. The
 * router's correction bias comes from one seed on every rank: routing must
 * agree across ranks, and with the single-GPU layer. */
typedef struct dev_weights {
  void *p[5];
  moe_weights w;
} dev_weights;

static int weights_make(dev_weights *dw, const moe_layer_desc *d, int El, int I,
                        int Is, uint64_t seed) {
  memset(dw, 0, sizeof *dw);
  const size_t H = d->hidden, n1 = (size_t)(d->gated ? 2 : 1) * I;
  const size_t ns1 = (size_t)(d->gated ? 2 : 1) * Is;
  int ok = dev_random(&dw->p[0], (size_t)El * n1 * H, d->dtype,
                      1.0f / sqrtf((float)H), seed) &&
           dev_random(&dw->p[1], (size_t)El * H * I, d->dtype,
                      1.0f / sqrtf((float)I), seed + 1);
  if (ok && Is)
    ok = dev_random(&dw->p[2], ns1 * H, d->dtype, 1.0f / sqrtf((float)H),
                    seed + 2) &&
         dev_random(&dw->p[3], H * Is, d->dtype, 1.0f / sqrtf((float)Is),
                    seed + 3);
  if (ok && d->routing.scoring == MOE_SCORING_SIGMOID)
    ok = dev_random(&dw->p[4], d->num_experts, MOE_DTYPE_F32, 0.1f, 15);
  dw->w.memory = MOE_MEMORY_CUDA;
  dw->w.w13 = dw->p[0];
  dw->w.w2 = dw->p[1];
  dw->w.shared_w13 = dw->p[2];
  dw->w.shared_w2 = dw->p[3];
  dw->w.correction_bias = dw->p[4];
  return ok;
}

static void weights_free(dev_weights *dw) {
  for (int i = 0; i < 5; i++)
    cudaFree(dw->p[i]);
}

/* x [M][H] and NB logits [M][E] (different experts each), out [M][H]. */
typedef struct dev_batch {
  void *x, *out;
  float *logits[NB];
} dev_batch;

static int batch_make(dev_batch *b, const moe_layer_desc *d, int M,
                      uint64_t seed) {
  memset(b, 0, sizeof *b);
  const size_t m = M > 0 ? (size_t)M : 1;
  int ok = dev_random(&b->x, m * d->hidden, d->dtype, 1.0f, seed) &&
           cudaMalloc(&b->out, m * d->hidden * moe_dtype_size(d->dtype)) ==
               cudaSuccess;
  const size_t nl = m * d->num_experts;
  float *h = ok ? malloc(nl * sizeof(float)) : NULL;
  ok = ok && h;
  for (int i = 0; ok && i < NB; i++) {
    cli_fill_logits(h, nl, seed + 7 + (uint64_t)i);
    ok =
        cudaMalloc((void **)&b->logits[i], nl * sizeof(float)) == cudaSuccess &&
        cudaMemcpy(b->logits[i], h, nl * sizeof(float),
                   cudaMemcpyHostToDevice) == cudaSuccess;
  }
  free(h);
  return ok;
}

static void batch_free(dev_batch *b) {
  cudaFree(b->x);
  cudaFree(b->out);
  for (int i = 0; i < NB; i++)
    cudaFree(b->logits[i]);
}

/* ---- timing: NB forwards captured in a graph, replayed ---- */

typedef moe_status (*fwd_fn)(void *layer, const dev_batch *b, int i, int M,
                             int bound, unsigned parts, cudaStream_t s);

static moe_status fwd_single(void *layer, const dev_batch *b, int i, int M,
                             int bound, unsigned parts, cudaStream_t s) {
  (void)bound;
  (void)parts;
  return moe_forward(layer, b->x, b->logits[i], M, b->out, s);
}

static moe_status fwd_dist(void *layer, const dev_batch *b, int i, int M,
                           int bound, unsigned parts, cudaStream_t s) {
  return moe_dist_forward_parts(layer, b->x, b->logits[i], M, bound, b->out, s,
                                parts);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median microseconds per forward; -1 on failure (message in err). */
static double time_graph(fwd_fn f, void *layer, const dev_batch *b, int M,
                         int bound, unsigned parts, int launches,
                         cudaStream_t s, char *err, size_t n) {
  cudaGraph_t g = NULL;
  cudaGraphExec_t ge = NULL;
  cudaEvent_t e0 = NULL, e1 = NULL;
  double us = -1, t[REPS];
  moe_status st = MOE_OK;
  for (int i = 0; i < NB && st == MOE_OK; i++) /* warm-up, eager */
    st = f(layer, b, i, M, bound, parts, s);
  if (st != MOE_OK || cudaStreamSynchronize(s) != cudaSuccess) {
    snprintf(err, n, "warm-up forward failed");
    return -1;
  }
  if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) !=
      cudaSuccess)
    goto fail;
  for (int i = 0; i < NB && st == MOE_OK; i++)
    st = f(layer, b, i, M, bound, parts, s);
  if (cudaStreamEndCapture(s, &g) != cudaSuccess || st != MOE_OK ||
      cudaGraphInstantiate(&ge, g, 0) != cudaSuccess)
    goto fail;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  if (cudaGraphLaunch(ge, s) != cudaSuccess) goto fail;
  for (int r = 0; r < REPS; r++) {
    cudaEventRecord(e0, s);
    for (int l = 0; l < launches; l++)
      cudaGraphLaunch(ge, s);
    cudaEventRecord(e1, s);
    if (cudaEventSynchronize(e1) != cudaSuccess) goto fail;
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t[r] = 1e3 * ms / ((double)launches * NB);
  }
  qsort(t, REPS, sizeof t[0], cmp_d);
  us = t[REPS / 2];
  goto done;
fail:
  snprintf(err, n, "graph timing failed: %s",
           cudaGetErrorString(cudaGetLastError()));
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (ge) cudaGraphExecDestroy(ge);
  if (g) cudaGraphDestroy(g);
  return us;
}

/* ---- one rank of one mode, every token count ---- */

typedef struct rank_run {
  const dist_opts *o;
  const moe_layer_desc *d;
  moe_parallel_mode mode;
  int rank, world;
  void *comm;
  double us[MAX_T][PARTS];
  int ok;
  char err[512];
} rank_run;

static int rank_tokens(int M, int rank, int world) {
  return M / world + (rank < M % world ? 1 : 0);
}

static void *rank_main(void *arg) {
  rank_run *r = arg;
  const dist_opts *o = r->o;
  moe_layer_desc d = *r->d;
  moe_context *ctx = NULL;
  moe_dist_layer *L = NULL;
  cudaStream_t s = NULL;
  dev_weights dw;
  memset(&dw, 0, sizeof dw);
  const int a2a = r->mode == MOE_PARALLEL_EP_A2A;
  int maxM = 1;
  for (int t = 0; t < o->n_tokens; t++)
    maxM = o->tokens[t] > maxM ? o->tokens[t] : maxM;
  const int T = a2a ? rank_tokens(maxM, 0, r->world) : maxM;
  r->ok = 0;
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = "";
  co.cuda_device = r->rank;
  if (cudaSetDevice(r->rank) != cudaSuccess ||
      moe_context_create(&co, &ctx) != MOE_OK ||
      cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
    snprintf(r->err, sizeof r->err, "device %d: set-up failed", r->rank);
    goto done;
  }
  int El = d.num_experts, I = d.intermediate, Is = d.shared_intermediate;
  if (r->mode == MOE_PARALLEL_TP) {
    I /= r->world;
    Is /= r->world;
  } else {
    int first = 0;
    moe_dist_expert_range(d.num_experts, r->rank, r->world, &first, &El);
  }
  if (!weights_make(&dw, &d, El, I, Is, 11 + (uint64_t)r->rank)) {
    snprintf(r->err, sizeof r->err, "rank %d: no memory for weights", r->rank);
    goto done;
  }
  /* One chunk for the largest call. */
  d.max_tokens = a2a ? r->world * T : maxM;
  if (moe_dist_layer_create(ctx, &d, &dw.w, r->comm, r->rank, r->world, r->mode,
                            T, &L) != MOE_OK) {
    snprintf(r->err, sizeof r->err, "%s", moe_last_error(ctx));
    goto done;
  }
  static const unsigned parts[PARTS] = {
      MOE_DIST_PART_COMPUTE | MOE_DIST_PART_COMM, MOE_DIST_PART_COMM,
      MOE_DIST_PART_COMPUTE};
  for (int t = 0; t < o->n_tokens; t++) {
    const int M = o->tokens[t];
    const int m = a2a ? rank_tokens(M, r->rank, r->world) : M;
    const int bound = a2a ? rank_tokens(M, 0, r->world) : 0;
    dev_batch b;
    /* Replicated modes: the same tokens on every rank; EP_A2A: each rank
     * its own. */
    const uint64_t seed = 100 + (uint64_t)M * 8 + (a2a ? (uint64_t)r->rank : 0);
    if (!batch_make(&b, &d, m, seed)) {
      snprintf(r->err, sizeof r->err, "rank %d: no memory for M=%d", r->rank,
               M);
      batch_free(&b);
      goto done;
    }
    for (int p = 0; p < PARTS; p++) {
      r->us[t][p] = time_graph(fwd_dist, L, &b, m, bound, parts[p], o->launches,
                               s, r->err, sizeof r->err);
      if (r->us[t][p] < 0) {
        batch_free(&b);
        goto done;
      }
    }
    batch_free(&b);
  }
  r->ok = 1;
done:
  moe_dist_layer_destroy(L);
  weights_free(&dw);
  if (s) cudaStreamDestroy(s);
  moe_context_destroy(ctx);
  return NULL;
}

/* The same layer on GPU 0 alone. */
static int single_gpu(const dist_opts *o, const moe_layer_desc *d0,
                      double *us) {
  moe_layer_desc d = *d0;
  moe_context *ctx = NULL;
  moe_layer *L = NULL;
  cudaStream_t s = NULL;
  dev_weights dw;
  char err[512] = "";
  int ok = 0, maxM = 1;
  for (int t = 0; t < o->n_tokens; t++)
    maxM = o->tokens[t] > maxM ? o->tokens[t] : maxM;
  d.max_tokens = maxM;
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = "";
  if (cudaSetDevice(0) != cudaSuccess ||
      moe_context_create(&co, &ctx) != MOE_OK ||
      cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess)
    return 0;
  if (!weights_make(&dw, &d, d.num_experts, d.intermediate,
                    d.shared_intermediate, 11) ||
      moe_layer_create(ctx, &d, &dw.w, &L) != MOE_OK) {
    fprintf(stderr, "moe bench: one GPU: %s\n", moe_last_error(ctx));
    goto done;
  }
  for (int t = 0; t < o->n_tokens; t++) {
    dev_batch b;
    if (!batch_make(&b, &d, o->tokens[t], 100 + (uint64_t)o->tokens[t] * 8)) {
      batch_free(&b);
      goto done;
    }
    us[t] = time_graph(fwd_single, L, &b, o->tokens[t], 0, 0, o->launches, s,
                       err, sizeof err);
    batch_free(&b);
    if (us[t] < 0) {
      fprintf(stderr, "moe bench: one GPU: %s\n", err);
      goto done;
    }
  }
  ok = 1;
done:
  moe_layer_destroy(L);
  weights_free(&dw);
  if (s) cudaStreamDestroy(s);
  moe_context_destroy(ctx);
  return ok;
}

static void json_head(FILE *js, const dist_opts *o) {
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  char name[256] = "";
  struct cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    snprintf(name, sizeof name, "%s", prop.name);
  fprintf(js,
          "{\n  \"version\": \"%s\",\n  \"commit\": \"%s\",\n  \"date\": "
          "\"%s\",\n  \"device\": \"%d x %s\",\n  \"preset\": \"%s\",\n  "
          "\"timing\": \"median over %d repetitions of %d graph launches of "
          "%d forwards (rotating logits); slowest rank\",\n  \"tokens\": "
          "\"whole batch: tp and ep give every rank all tokens, ep-a2a "
          "splits them over the ranks\",\n  \"rows\": [\n",
          moe_version_string(), o->commit ? o->commit : "", date, o->gpus, name,
          o->preset->name, REPS, o->launches, NB);
}

int moe_bench_dist(int argc, char **argv) {
  dist_opts o;
  if (!dist_parse(argc, argv, &o)) return dist_usage();
  if (!moe_dist_available()) {
    fprintf(stderr, "moe bench --gpus: this build has no NCCL\n");
    return 1;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < o.gpus) {
    fprintf(stderr, "moe bench --gpus %d: %d GPU(s) here\n", o.gpus, ndev);
    return 1;
  }
  moe_layer_desc d;
  moe_preset_desc(o.preset, &d);
  d.self_check = 0;
  double single[MAX_T];
  fprintf(stderr, "%s on one GPU...\n", o.preset->name);
  if (!single_gpu(&o, &d, single)) return 1;
  void *comms[MAX_GPUS] = {0};
  moe_context *ctx = NULL;
  moe_context_options co;
  moe_context_options_init(&co);
  co.device_override = "";
  if (moe_context_create(&co, &ctx) != MOE_OK) return 1;
  if (moe_dist_comms_create(ctx, o.gpus, NULL, comms) != MOE_OK) {
    fprintf(stderr, "moe bench: %s\n", moe_last_error(ctx));
    moe_context_destroy(ctx);
    return 1;
  }
  FILE *js = o.json ? fopen(o.json, "w") : NULL;
  if (o.json && !js) fprintf(stderr, "moe bench: cannot write %s\n", o.json);
  if (js) json_head(js, &o);
  printf("%-14s %-7s %4s %6s %10s %10s %10s %6s %10s %6s\n", "preset", "mode",
         "gpus", "tokens", "us", "comm_us", "compute_us", "comm%", "1gpu_us",
         "ratio");
  int rc = 0, rows = 0;
  for (int mi = 0; mi < o.n_modes; mi++) {
    const moe_parallel_mode mode = (moe_parallel_mode)o.modes[mi];
    fprintf(stderr, "%s %s on %d GPUs...\n", o.preset->name,
            moe_parallel_mode_name(mode), o.gpus);
    rank_run r[MAX_GPUS];
    pthread_t th[MAX_GPUS];
    for (int k = 0; k < o.gpus; k++) {
      memset(&r[k], 0, sizeof r[k]);
      r[k].o = &o;
      r[k].d = &d;
      r[k].mode = mode;
      r[k].rank = k;
      r[k].world = o.gpus;
      r[k].comm = comms[k];
      pthread_create(&th[k], NULL, rank_main, &r[k]);
    }
    int ok = 1;
    for (int k = 0; k < o.gpus; k++) {
      pthread_join(th[k], NULL);
      if (!r[k].ok) {
        fprintf(stderr, "moe bench: %s rank %d: %s\n",
                moe_parallel_mode_name(mode), k, r[k].err);
        ok = 0;
      }
    }
    if (!ok) {
      rc = 1;
      continue;
    }
    for (int t = 0; t < o.n_tokens; t++) {
      double us[PARTS] = {0, 0, 0};
      for (int k = 0; k < o.gpus; k++)
        for (int p = 0; p < PARTS; p++)
          us[p] = r[k].us[t][p] > us[p] ? r[k].us[t][p] : us[p];
      const double share = us[1] / us[0], ratio = us[0] / single[t];
      printf("%-14s %-7s %4d %6d %10.1f %10.1f %10.1f %5.1f%% %10.1f %6.2f\n",
             o.preset->name, moe_parallel_mode_name(mode), o.gpus, o.tokens[t],
             us[0], us[1], us[2], 100 * share, single[t], ratio);
      if (js)
        fprintf(js,
                "%s    {\"preset\": \"%s\", \"mode\": \"%s\", \"gpus\": %d, "
                "\"tokens\": %d, \"tokens_per_rank\": %d, \"us\": %.2f, "
                "\"comm_only_us\": %.2f, \"compute_only_us\": %.2f, "
                "\"comm_share\": %.3f, \"one_gpu_us\": %.2f, "
                "\"ratio_vs_one_gpu\": %.3f}",
                rows++ ? ",\n" : "", o.preset->name,
                moe_parallel_mode_name(mode), o.gpus, o.tokens[t],
                mode == MOE_PARALLEL_EP_A2A
                    ? rank_tokens(o.tokens[t], 0, o.gpus)
                    : o.tokens[t],
                us[0], us[1], us[2], share, single[t], ratio);
    }
    fflush(stdout);
  }
  if (js) {
    fprintf(js, "\n  ]\n}\n");
    fclose(js);
  }
  moe_dist_comms_destroy(o.gpus, comms);
  moe_context_destroy(ctx);
  return rc;
}
#else
int moe_bench_dist(int argc, char **argv) {
  dist_opts o;
  if (!dist_parse(argc, argv, &o)) return dist_usage();
  fprintf(stderr, "moe bench --gpus: this build has no CUDA\n");
  return 1;
}
#endif
