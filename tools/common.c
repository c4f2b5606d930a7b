/* common.c - shared pieces of the CLI. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include "cpu/cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

void cli_fill_random(void *p, size_t count, moe_dtype dt, float lo, float hi,
                     uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  float span = hi - lo;
  for (size_t i = 0; i < count; i++) {
    float u = (float)(rng_next(&s) >> 40) * (1.0f / 16777216.0f);
    moe_store_elem(p, i, dt, lo + span * u);
  }
}

void cli_fill_logits(float *p, size_t count, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < count; i += 2) {
    /* Box-Muller: two standard normals from two uniforms in (0, 1]. */
    double u1 =
        ((double)(rng_next(&s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next(&s) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    p[i] = (float)(r * cos(a));
    if (i + 1 < count) p[i + 1] = (float)(r * sin(a));
  }
}

size_t cli_expert_bytes(const moe_layer_desc *d) {
  size_t n1 = (size_t)(d->gated ? 2 : 1) * d->intermediate;
  return (n1 + (size_t)d->intermediate) * d->hidden * moe_dtype_size(d->dtype);
}

const moe_memops *cli_cuda_memops(moe_context *ctx) {
  (void)ctx;
  const moe_backend *b = moe_backend_find("cuda-mma");
  return b ? b->memops : NULL;
}

int cli_problem_make(cli_problem *p, const moe_layer_desc *d, moe_memory memory,
                     uint64_t seed, char *err, size_t n) {
  memset(p, 0, sizeof *p);
  p->desc = *d;
  p->memory = memory;
  p->ops = memory == MOE_MEMORY_CUDA ? cli_cuda_memops(NULL) : &moe_memops_host;
  if (!p->ops) {
    snprintf(err, n, "this build has no CUDA memory space");
    return 0;
  }
  size_t es = moe_dtype_size(d->dtype);
  size_t n1 = (size_t)(d->gated ? 2 : 1) * d->intermediate;
  size_t ns1 = (size_t)(d->gated ? 2 : 1) * d->shared_intermediate;
  size_t cnt[5] = {
      (size_t)d->num_experts * n1 * d->hidden,
      (size_t)d->num_experts * d->hidden * d->intermediate, ns1 * d->hidden,
      (size_t)d->hidden * d->shared_intermediate,
      d->routing.scoring == MOE_SCORING_SIGMOID ? (size_t)d->num_experts : 0};
  float fan[5] = {(float)d->hidden, (float)d->intermediate, (float)d->hidden,
                  (float)(d->shared_intermediate ? d->shared_intermediate : 1),
                  1};
  for (int i = 0; i < 5; i++) {
    moe_dtype dt = i == 4 ? MOE_DTYPE_F32 : d->dtype;
    p->bytes[i] = cnt[i] * (i == 4 ? 4 : es);
    if (!cnt[i]) continue;
    p->h[i] = malloc(p->bytes[i]);
    if (!p->h[i]) {
      snprintf(err, n, "out of host memory (%zu MB)", p->bytes[i] >> 20);
      cli_problem_free(p);
      return 0;
    }
    float a = i == 4 ? 0.1f : 2.0f / sqrtf(fan[i]);
    cli_fill_random(p->h[i], cnt[i], dt, -a, a, seed + 17 * (uint64_t)i);
    if (memory == MOE_MEMORY_CUDA) {
      if (p->ops->alloc(&p->d[i], p->bytes[i]) != MOE_OK ||
          p->ops->upload(p->d[i], p->h[i], p->bytes[i]) != MOE_OK) {
        snprintf(err, n, "could not place %zu MB in GPU memory",
                 p->bytes[i] >> 20);
        cli_problem_free(p);
        return 0;
      }
    }
  }
  return 1;
}

void cli_problem_free(cli_problem *p) {
  for (int i = 0; i < 5; i++) {
    free(p->h[i]);
    if (p->d[i]) p->ops->release(p->d[i]);
    p->h[i] = p->d[i] = NULL;
  }
}

moe_weights cli_problem_weights(const cli_problem *p, int host) {
  moe_weights w;
  memset(&w, 0, sizeof w);
  void *const *t = host ? p->h : p->d;
  if (p->memory == MOE_MEMORY_HOST) t = p->h;
  w.memory = host ? MOE_MEMORY_HOST : p->memory;
  w.w13 = t[0];
  w.w2 = t[1];
  w.shared_w13 = t[2];
  w.shared_w2 = t[3];
  w.correction_bias = (const float *)t[4];
  return w;
}

int cli_batch_make(cli_batch *b, const cli_problem *p, int M, uint64_t seed,
                   char *err, size_t n) {
  memset(b, 0, sizeof *b);
  b->M = M;
  const moe_layer_desc *d = &p->desc;
  size_t xb = (size_t)M * d->hidden * moe_dtype_size(d->dtype);
  size_t lb = (size_t)M * d->num_experts * sizeof(float);
  b->hx = malloc(xb ? xb : 1);
  b->hout = malloc(xb ? xb : 1);
  b->hlogits = malloc(lb ? lb : 1);
  if (!b->hx || !b->hout || !b->hlogits) {
    snprintf(err, n, "out of host memory");
    cli_batch_free(b, p);
    return 0;
  }
  cli_fill_random(b->hx, (size_t)M * d->hidden, d->dtype, -1, 1, seed);
  cli_fill_logits(b->hlogits, (size_t)M * d->num_experts, seed + 1);
  memset(b->hout, 0xFF, xb);
  if (p->memory == MOE_MEMORY_CUDA) {
    if (p->ops->alloc(&b->dx, xb) != MOE_OK ||
        p->ops->alloc(&b->dout, xb) != MOE_OK ||
        p->ops->alloc(&b->dlogits, lb) != MOE_OK ||
        p->ops->upload(b->dx, b->hx, xb) != MOE_OK ||
        p->ops->upload(b->dlogits, b->hlogits, lb) != MOE_OK ||
        p->ops->fill(b->dout, 0xFF, xb) != MOE_OK) {
      snprintf(err, n, "could not place the batch in GPU memory");
      cli_batch_free(b, p);
      return 0;
    }
  }
  return 1;
}

void cli_batch_free(cli_batch *b, const cli_problem *p) {
  free(b->hx);
  free(b->hout);
  free(b->hlogits);
  if (b->dx) p->ops->release(b->dx);
  if (b->dout) p->ops->release(b->dout);
  if (b->dlogits) p->ops->release(b->dlogits);
  memset(b, 0, sizeof *b);
}

typedef struct bw_arg {
  const uint64_t *p;
  size_t n;
  uint64_t sum;
} bw_arg;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 32-byte loads, four independent accumulators: what a streaming kernel
 * can read, not what a scalar loop can. */
__attribute__((target("avx2"))) static uint64_t bw_sum_avx2(const uint64_t *p,
                                                            size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
    a3 =
        _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, a0);
  return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
}

__attribute__((target("avx512f"))) static uint64_t
bw_sum_avx512(const uint64_t *p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 24));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  return (uint64_t)_mm512_reduce_add_epi64(a0);
}
#endif

static void *bw_worker(void *v) {
  bw_arg *a = v;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) {
    a->sum = bw_sum_avx512(a->p, a->n);
    return NULL;
  }
  if (__builtin_cpu_supports("avx2")) {
    a->sum = bw_sum_avx2(a->p, a->n);
    return NULL;
  }
#endif
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i + 4 <= a->n; i += 4) {
    s0 += a->p[i];
    s1 += a->p[i + 1];
    s2 += a->p[i + 2];
    s3 += a->p[i + 3];
  }
  a->sum = s0 ^ s1 ^ s2 ^ s3;
  return NULL;
}

double cli_host_read_bandwidth(int threads) {
  const size_t bytes = (size_t)1 << 30; /* 1 GiB: far past any cache */
  if (threads < 1) threads = 1;
  if (threads > 64) threads = 64;
  uint64_t *buf = malloc(bytes);
  if (!buf) return 0;
  size_t n = bytes / sizeof *buf;
  for (size_t i = 0; i < n; i++)
    buf[i] = i * 2654435761u;
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    pthread_t th[64];
    bw_arg args[64];
    size_t per = n / (size_t)threads;
    double t0 = cli_now();
    for (int t = 0; t < threads; t++) {
      args[t].p = buf + (size_t)t * per;
      args[t].n = per;
      pthread_create(&th[t], NULL, bw_worker, &args[t]);
    }
    uint64_t x = 0;
    for (int t = 0; t < threads; t++) {
      pthread_join(th[t], NULL);
      x ^= args[t].sum;
    }
    double dt = cli_now() - t0;
    if (x == 42) fprintf(stderr, " "); /* keep the sums alive */
    double gbs = (double)(per * (size_t)threads * sizeof *buf) / dt / 1e9;
    if (gbs > best) best = gbs;
  }
  free(buf);
  return best;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double cli_median(double *v, int n) {
  if (n <= 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

size_t cli_mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

double cli_rel_error(const void *a, const void *b, size_t n, moe_dtype dt) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double x = moe_load_elem(a, i, dt), y = moe_load_elem(b, i, dt);
    if (isnan(x) || isnan(y)) return INFINITY;
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

int cli_parse_ints(const char *s, int *v, int max) {
  int n = 0;
  while (s && *s && n < max) {
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s) return -1;
    v[n++] = (int)x;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return n;
}

/* Experts touched by the batch: routes on the host with cpu-ref. */
int cli_touched_experts(moe_context *ctx, const cli_problem *p,
                        const cli_batch *b) {
  moe_layer_desc d = p->desc;
  d.backend = "cpu-ref";
  d.self_check = 0;
  moe_weights w = cli_problem_weights(p, 1);
  moe_layer *L = NULL;
  if (moe_layer_create(ctx, &d, &w, &L) != MOE_OK) return d.num_experts;
  size_t nk = (size_t)b->M * d.top_k;
  int32_t *ids = malloc(nk * sizeof *ids);
  float *wt = malloc(nk * sizeof *wt);
  char *seen = calloc((size_t)d.num_experts, 1);
  int count = d.num_experts;
  if (ids && wt && seen &&
      moe_route(L, b->hlogits, b->M, ids, wt, NULL) == MOE_OK) {
    count = 0;
    for (size_t i = 0; i < nk; i++)
      if (!seen[ids[i]]) seen[ids[i]] = 1, count++;
  }
  free(ids);
  free(wt);
  free(seen);
  moe_layer_destroy(L);
  return count;
}

int cli_has_gpu(const moe_context *ctx) {
  return strstr(moe_context_device_info(ctx), "gpu: sm_") != NULL;
}

int cli_batches_make(cli_batch *b, int nb, const cli_problem *p, int M,
                     uint64_t seed, char *err, size_t n) {
  for (int i = 0; i < nb; i++)
    if (!cli_batch_make(&b[i], p, M, seed + 101 * (uint64_t)i, err, n)) {
      while (i-- > 0)
        cli_batch_free(&b[i], p);
      return 0;
    }
  return 1;
}

void cli_batches_free(cli_batch *b, int nb, const cli_problem *p) {
  for (int i = 0; i < nb; i++)
    cli_batch_free(&b[i], p);
}

/* Evicts the caches on the host by writing a buffer larger than any L3, so
 * that every timed call reads its weights from memory. */
static void flush_caches(unsigned char *buf, size_t n) {
  for (size_t i = 0; i < n; i += 64)
    buf[i]++;
}

moe_status cli_time_forward(moe_layer *L, const cli_problem *p, cli_batch *b,
                            int nb, double min_seconds, double *median_us) {
  int dev = p->memory == MOE_MEMORY_CUDA;
  const size_t flush_bytes = (size_t)512 << 20;
  unsigned char *flush = dev ? NULL : calloc(flush_bytes, 1);
  double times[256];
  int n = 0;
  moe_status st = MOE_OK;
  st = moe_forward(L, dev ? b[0].dx : b[0].hx, /* warm-up */
                   dev ? (const float *)b[0].dlogits : b[0].hlogits, b[0].M,
                   dev ? b[0].dout : b[0].hout, NULL);
  if (st == MOE_OK) st = p->ops->sync();
  /* Timed calls add up to min_seconds; the cache evictions between them
   * are bounded too, so small layers do not spend minutes evicting. */
  double spent = 0, wall0 = cli_now();
  while (st == MOE_OK && n < 256 &&
         (n < 3 ||
          (spent < min_seconds && cli_now() - wall0 < 4 * min_seconds + 1))) {
    cli_batch *c = &b[n % nb];
    if (flush) flush_caches(flush, flush_bytes);
    double t0 = cli_now();
    st = moe_forward(L, dev ? c->dx : c->hx,
                     dev ? (const float *)c->dlogits : c->hlogits, c->M,
                     dev ? c->dout : c->hout, NULL);
    if (st == MOE_OK) st = p->ops->sync();
    times[n++] = cli_now() - t0;
    spent += times[n - 1];
  }
  free(flush);
  *median_us = cli_median(times, n) * 1e6;
  return st;
}

int cli_host_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
