/* bench.c - `moe bench`: time the whole layer (logits -> output) per backend
 * and token count, against the floor of bytes over measured bandwidth. */
#include "cli.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_T 16
#define MAX_B 8
#define NB 8 /* batches rotated over while timing */

typedef struct bench_opts {
  const moe_preset *preset;
  moe_preset custom;
  int tokens[MAX_T], n_tokens;
  char backends[MAX_B][32];
  int n_backends;
  moe_dtype dtype;
  int threads;
  double min_seconds;
  const char *json;
  moe_memory memory;
  int memory_set;
  const char *commit;
  double bandwidth; /* GB/s given by the caller; 0: measure */
} bench_opts;

static int usage(void) {
  fprintf(stderr,
          "usage: moe bench [--preset NAME | --layer E,k,H,I,act] "
          "[--tokens 1,16,256]\n"
          "                 [--backend a,b] [--dtype bf16|f16|f32] "
          "[--threads N]\n"
          "                 [--seconds S] [--memory host|cuda] [--json FILE]\n"
          "                 [--bandwidth GB/s (the ceiling; default: "
          "measured)]\n");
  return 2;
}

static int parse(int argc, char **argv, bench_opts *o) {
  memset(o, 0, sizeof *o);
  o->preset = moe_preset_find("qwen3-30b-a3b");
  o->n_tokens = cli_parse_ints("1,16,256", o->tokens, MAX_T);
  o->dtype = MOE_DTYPE_BF16;
  o->min_seconds = 0.5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--preset") && v) {
      if (!(o->preset = moe_preset_find(v))) {
        fprintf(stderr, "moe bench: unknown preset '%s'\n", v);
        return 0;
      }
      i++;
    } else if (!strcmp(a, "--layer") && v) {
      if (!moe_preset_parse_layer(v, &o->custom)) {
        fprintf(stderr, "moe bench: bad --layer '%s' (want E,k,H,I,act)\n", v);
        return 0;
      }
      o->preset = &o->custom;
      i++;
    } else if (!strcmp(a, "--tokens") && v) {
      o->n_tokens = cli_parse_ints(v, o->tokens, MAX_T);
      if (o->n_tokens <= 0) return 0;
      i++;
    } else if (!strcmp(a, "--backend") && v) {
      char buf[256];
      snprintf(buf, sizeof buf, "%s", v);
      for (char *t = strtok(buf, ","); t && o->n_backends < MAX_B;
           t = strtok(NULL, ","))
        snprintf(o->backends[o->n_backends++], 32, "%s", t);
      i++;
    } else if (!strcmp(a, "--dtype") && v) {
      if (!moe_parse_dtype(v, &o->dtype)) return 0;
      i++;
    } else if (!strcmp(a, "--threads") && v) {
      o->threads = atoi(v);
      i++;
    } else if (!strcmp(a, "--seconds") && v) {
      o->min_seconds = atof(v);
      i++;
    } else if (!strcmp(a, "--bandwidth") && v) {
      o->bandwidth = atof(v);
      i++;
    } else if (!strcmp(a, "--commit") && v) {
      o->commit = v;
      i++;
    } else if (!strcmp(a, "--json") && v) {
      o->json = v;
      i++;
    } else if (!strcmp(a, "--memory") && v) {
      o->memory = !strcmp(v, "cuda") ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST;
      o->memory_set = 1;
      i++;
    } else {
      return 0;
    }
  }
  return 1;
}

int moe_bench_dist(int argc, char **argv); /* tools/bench_dist.c */

int moe_cmd_bench(int argc, char **argv) {
  /* Multi-GPU runs (--gpus N) are tools/bench_dist.c's. */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--gpus")) return moe_bench_dist(argc, argv);
  bench_opts o;
  if (!parse(argc, argv, &o)) return usage();
  moe_context_options co;
  moe_context_options_init(&co);
  co.num_threads = o.threads;
  co.device_override = "";
  moe_context *ctx = NULL;
  if (moe_context_create(&co, &ctx) != MOE_OK) {
    fprintf(stderr, "moe bench: cannot create a context\n");
    return 1;
  }
  int gpu = cli_has_gpu(ctx);
  if (!o.memory_set) o.memory = gpu ? MOE_MEMORY_CUDA : MOE_MEMORY_HOST;
  if (o.n_backends == 0) {
    snprintf(o.backends[0], 32, "auto");
    o.n_backends = 1;
  }
  moe_layer_desc d;
  moe_preset_desc(o.preset, &d);
  d.dtype = o.dtype;
  double bw = 0;
  int threads = co.num_threads ? co.num_threads : cli_host_threads();
  if (o.bandwidth > 0) {
    bw = o.bandwidth;
  } else if (o.memory == MOE_MEMORY_HOST) {
    fprintf(stderr, "measuring this machine's read bandwidth...\n");
    bw = cli_host_read_bandwidth(threads);
  } else {
    bw = 4800; /* the datasheet figure of the H200 class; see bench/ */
  }
  fprintf(stderr, "building %s (%zu MB of random weights)...\n", o.preset->name,
          (cli_expert_bytes(&d) * (size_t)d.num_experts) >> 20);
  cli_problem p;
  char err[256];
  if (!cli_problem_make(&p, &d, o.memory, 1234, err, sizeof err)) {
    fprintf(stderr, "moe bench: %s\n", err);
    moe_context_destroy(ctx);
    return 1;
  }
  FILE *js = NULL;
  if (o.json && !(js = fopen(o.json, "w"))) {
    fprintf(stderr, "moe bench: cannot write %s\n", o.json);
    cli_problem_free(&p);
    moe_context_destroy(ctx);
    return 1;
  }
  if (js) {
    char dev[512];
    snprintf(dev, sizeof dev, "%s", moe_context_device_info(ctx));
    for (char *c = dev; *c; c++)
      if (*c == '\n')
        *c = ';';
      else if (*c == '"')
        *c = '\'';
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(js,
            "{\n  \"version\": \"%s\",\n  \"commit\": \"%s\",\n  \"date\": "
            "\"%s\",\n  \"device\": \"%s\",\n  \"machine\": "
            "{\"read_bandwidth_gbs\": %.2f, \"threads\": %d, \"memory\": "
            "\"%s\"},\n  \"floor\": \"bytes (experts routed to + shared expert "
            "+ activations) / read bandwidth%s\",\n  \"rows\": [\n",
            moe_version_string(), o.commit ? o.commit : "", date, dev, bw,
            threads, o.memory == MOE_MEMORY_CUDA ? "cuda" : "host",
            o.memory == MOE_MEMORY_CUDA ? "; max with flops / 989 TFLOP/s"
                                        : "");
  }
  printf("%-16s %-11s %6s %10s %10s %8s %8s\n", "preset", "backend", "tokens",
         "us", "floor_us", "%floor", "GB/s");
  int rows = 0, total = o.n_backends * o.n_tokens, step = 0, rc = 0;
  for (int bi = 0; bi < o.n_backends; bi++) {
    moe_layer_desc ld = d;
    ld.backend = strcmp(o.backends[bi], "auto") ? o.backends[bi] : NULL;
    moe_weights w = cli_problem_weights(&p, 0);
    moe_layer *L = NULL;
    int maxM = 0;
    for (int t = 0; t < o.n_tokens; t++)
      if (o.tokens[t] > maxM) maxM = o.tokens[t];
    ld.max_tokens = maxM;
    if (moe_layer_create(ctx, &ld, &w, &L) != MOE_OK) {
      fprintf(stderr, "moe bench: %s: %s\n", o.backends[bi],
              moe_last_error(ctx));
      rc = 1;
      step += o.n_tokens;
      continue;
    }
    for (int t = 0; t < o.n_tokens; t++) {
      int M = o.tokens[t];
      step++;
      fprintf(stderr, "\r[%d/%d] %s %s M=%d ...        ", step, total,
              o.preset->name, moe_layer_backend(L), M);
      cli_batch bs[NB];
      if (!cli_batches_make(bs, NB, &p, M, 99 + (uint64_t)M, err, sizeof err)) {
        fprintf(stderr, "\nmoe bench: %s\n", err);
        rc = 1;
        continue;
      }
      double us = 0;
      moe_status st = cli_time_forward(L, &p, bs, NB, o.min_seconds, &us);
      if (st != MOE_OK) {
        fprintf(stderr, "\nmoe bench: forward failed: %s\n",
                moe_last_error(ctx));
        cli_batches_free(bs, NB, &p);
        rc = 1;
        continue;
      }
      double touched = 0;
      for (int i = 0; i < NB; i++)
        touched += cli_touched_experts(ctx, &p, &bs[i]) / (double)NB;
      double bytes = (double)touched * (double)cli_expert_bytes(&d) +
                     (double)(p.bytes[2] + p.bytes[3]) +
                     2.0 * M * d.hidden * moe_dtype_size(d.dtype) +
                     4.0 * M * d.num_experts;
      double n1 = d.gated ? 2.0 * d.intermediate : d.intermediate;
      double ns1 =
          d.gated ? 2.0 * d.shared_intermediate : d.shared_intermediate;
      double flops = 2.0 * M * d.top_k * (n1 + d.intermediate) * d.hidden +
                     2.0 * M * (ns1 + d.shared_intermediate) * d.hidden;
      double floor_us = bytes / (bw * 1e9) * 1e6;
      if (o.memory == MOE_MEMORY_CUDA && flops / 989e12 * 1e6 > floor_us)
        floor_us = flops / 989e12 * 1e6;
      double pct = 100.0 * floor_us / us;
      double gbs = bytes / (us * 1e-6) / 1e9;
      fprintf(stderr, "\r%60s\r", "");
      printf("%-16s %-11s %6d %10.1f %10.1f %7.1f%% %8.1f\n", o.preset->name,
             moe_layer_backend(L), M, us, floor_us, pct, gbs);
      fflush(stdout);
      if (js)
        fprintf(js,
                "%s    {\"preset\": \"%s\", \"tokens\": %d, \"backend\": "
                "\"%s\", \"us\": %.2f, \"floor_us\": %.2f, \"pct_floor\": "
                "%.1f, \"gbs\": %.2f, \"touched_experts\": %.1f, \"gflop\": "
                "%.3f}",
                rows ? ",\n" : "", o.preset->name, M, moe_layer_backend(L), us,
                floor_us, pct, gbs, touched, flops / 1e9);
      rows++;
      cli_batches_free(bs, NB, &p);
    }
    moe_layer_destroy(L);
  }
  if (js) {
    fprintf(js, "\n  ]\n}\n");
    fclose(js);
  }
  cli_problem_free(&p);
  moe_context_destroy(ctx);
  return rc;
}
