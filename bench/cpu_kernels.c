/*
 * cpu_kernels.c - timing of the CPU backends, outside the public API.
 *
 *   cpu_kernels bw                 read bandwidth of the machine (GB/s)
 *   cpu_kernels qwen [M...]        qwen3-30b-a3b layer: cpu-avx512, cpu-avx2
 *                                  (and cpu-ref for M >= 64) per M
 * Reads MOE_BENCH_THREADS (default: all cores), MOE_BENCH_BACKEND (one
 * backend only), MOE_BENCH_FLUSH=1 (evict caches before each call).
 * Build (from the repository root):
 *   gcc -std=c11 -O3 -Iinclude -Isrc bench/cpu_kernels.c src/cpu/[a-z]*.c \
 *       src/convert.c src/memops_host.c -lpthread -lm -o cpu_kernels
 */
#define _GNU_SOURCE
#include "cpu/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- read bandwidth: every thread sums its slice of a large buffer ---- */
typedef struct bw_arg {
  const uint64_t *p;
  size_t n;
  uint64_t sink;
} bw_arg;

static void *bw_read(void *v) {
  bw_arg *a = v;
  /* Eight independent sums keep enough loads in flight; the compiler
   * vectorises this loop. */
  uint64_t s[8] = {0};
  for (size_t i = 0; i + 8 <= a->n; i += 8)
    for (int j = 0; j < 8; j++)
      s[j] ^= a->p[i + j];
  a->sink = s[0] ^ s[1] ^ s[2] ^ s[3] ^ s[4] ^ s[5] ^ s[6] ^ s[7];
  return NULL;
}

static double read_bandwidth(int nt) {
  size_t bytes = (size_t)2 << 30, n = bytes / 8;
  uint64_t *buf = malloc(bytes);
  if (!buf) return 0;
  for (size_t i = 0; i < n; i++)
    buf[i] = i * 0x9E3779B97F4A7C15ull;
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    pthread_t th[64];
    bw_arg a[64];
    double t0 = now();
    for (int i = 0; i < nt; i++) {
      a[i].p = buf + n / nt * i;
      a[i].n = n / nt;
      pthread_create(&th[i], NULL, bw_read, &a[i]);
    }
    for (int i = 0; i < nt; i++)
      pthread_join(th[i], NULL);
    double gbs = bytes / (now() - t0) / 1e9;
    if (gbs > best) best = gbs;
  }
  free(buf);
  return best;
}

/* ---- a qwen3-30b-a3b layer ---- */
static uint64_t rng = 88172645463325252ull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void fill_bf16(uint16_t *p, size_t n, float scale) {
  for (size_t i = 0; i < n; i++)
    p[i] = moe_f32_to_bf16(frand() * scale);
}

int main(int argc, char **argv) {
  int nt = moe_cpu_count_cores();
  const char *e = getenv("MOE_BENCH_THREADS");
  if (e && atoi(e) > 0) nt = atoi(e);
  if (argc < 2) {
    fprintf(stderr, "usage: %s bw | qwen [M...]\n", argv[0]);
    return 2;
  }
  if (!strcmp(argv[1], "bw")) {
    printf("threads %d read bandwidth %.1f GB/s\n", nt, read_bandwidth(nt));
    return 0;
  }
  moe_shape s = {0};
  s.E = s.E_local = 128;
  s.k = 8;
  s.H = 2048;
  s.I = 768;
  s.N1 = 2 * s.I;
  s.act = MOE_ACT_SILU;
  s.gated = 1;
  s.dtype = MOE_DTYPE_BF16;
  s.routing.scoring = MOE_SCORING_SOFTMAX;
  s.routing.renormalize = 1;
  s.routing.routed_scaling_factor = 1.0f;
  s.max_tokens = 4096;
  size_t n13 = (size_t)s.E * s.N1 * s.H, n2 = (size_t)s.E * s.H * s.I;
  uint16_t *w13 = malloc(n13 * 2), *w2 = malloc(n2 * 2);
  fill_bf16(w13, n13, 0.03f);
  fill_bf16(w2, n2, 0.03f);
  moe_weights w = {0};
  w.w13 = w13;
  w.w2 = w2;
  double expert_bytes = ((double)s.N1 * s.H + (double)s.H * s.I) * 2;
  moe_device dev = {0};
  moe_backend_env env = {nt, 0, &dev};
  const moe_backend *bk[] = {&moe_backend_cpu_avx512, &moe_backend_cpu_avx2,
                             &moe_backend_cpu_ref};
  int Ms[16] = {1, 4, 256}, nM = 3;
  if (argc > 2) {
    nM = 0;
    for (int i = 2; i < argc && nM < 16; i++)
      Ms[nM++] = atoi(argv[i]);
  }
  int maxM = 0;
  for (int i = 0; i < nM; i++)
    maxM = Ms[i] > maxM ? Ms[i] : maxM;
  /* Several logits sets so consecutive calls touch different experts. */
  enum { SETS = 8 };
  float *logits = malloc((size_t)SETS * maxM * s.E * sizeof(float));
  for (size_t i = 0; i < (size_t)SETS * maxM * s.E; i++)
    logits[i] = frand();
  uint16_t *x = malloc((size_t)maxM * s.H * 2);
  uint16_t *out = malloc((size_t)maxM * s.H * 2);
  fill_bf16(x, (size_t)maxM * s.H, 1.0f);
  int32_t *ids = malloc((size_t)maxM * s.k * 4);
  float *wts = malloc((size_t)maxM * s.k * 4);
  /* MOE_BENCH_FLUSH=1: write 512 MiB between calls so that no weight is
   * served from the (large) last-level cache. */
  unsigned char *flush = NULL;
  size_t flush_n = (size_t)512 << 20;
  if (getenv("MOE_BENCH_FLUSH") && atoi(getenv("MOE_BENCH_FLUSH")))
    flush = calloc(flush_n, 1);
  printf("qwen3-30b-a3b bf16, %d threads%s\n", nt,
         flush ? ", cache flushed before each call" : "");
  for (int mi = 0; mi < nM; mi++) {
    int M = Ms[mi];
    for (int b = 0; b < 3; b++) {
      if (b == 2 && M < 64) continue; /* the reference is slow */
      const char *only = getenv("MOE_BENCH_BACKEND");
      if (only && *only && strcmp(only, bk[b]->name)) continue;
      char msg[256] = "";
      void *impl = NULL;
      if (bk[b]->create(&env, &s, &w, &impl, msg, sizeof msg) != MOE_OK) {
        printf("%-11s M=%-5d unavailable: %s\n", bk[b]->name, M, msg);
        continue;
      }
      int iters = M <= 16 ? 40 : (b == 2 ? 1 : 5);
      double best = 1e30, total = 0, bytes_sum = 0;
      for (int it = 0; it < iters + 1; it++) {
        const float *lg = logits + (size_t)(it % SETS) * maxM * s.E;
        moe_batch bt = {x, lg, NULL, NULL, M, out};
        /* Unique experts touched: the bytes this call must read. */
        moe_cpu_route(&s, NULL, lg, M, ids, wts);
        unsigned char used[128] = {0};
        int nu = 0;
        for (int i = 0; i < M * s.k; i++)
          if (!used[ids[i]]) used[ids[i]] = 1, nu++;
        if (flush) /* evict the last-level cache: weights come from DRAM */
          for (size_t i = 0; i < flush_n; i++)
            flush[i]++;
        double t0 = now();
        bk[b]->forward(impl, &bt, NULL, msg, sizeof msg);
        double dt = now() - t0;
        if (it == 0) continue; /* warm-up */
        total += dt;
        bytes_sum += nu * expert_bytes;
        if (dt < best) best = dt;
      }
      double mean = total / iters;
      printf("%-11s M=%-5d mean %9.3f ms  best %9.3f ms  %6.1f GB/s "
             "%7.1f GFLOP/s\n",
             bk[b]->name, M, mean * 1e3, best * 1e3, bytes_sum / total / 1e9,
             2.0 * M * s.k * expert_bytes / 2 / mean / 1e9);
      bk[b]->destroy(impl);
    }
  }
  return 0;
}
