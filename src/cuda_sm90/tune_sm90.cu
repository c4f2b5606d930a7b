/*
 * tune_sm90.cu - the crossover between cuda-sm90's two paths, measured at
 * layer creation.
 *
 * Below some rows per expert (M * k / E) cuda-mma's mma.sync kernels
 * stream the weights faster than 128-row wgmma tiles; above it the wgmma
 * GEMMs win. Where depends on the shape: on the H200 the wgmma path wins
 * from ~40 rows at nemotron and qwen3 but only from 64 at gpt-oss
 * (bench/NOTES.md, cuda-sm90 v23), so one constant costs one model or
 * another 9-17 % there. A layer whose experts are large enough for it to
 * matter times both paths at candidate rows per expert, with random
 * inputs and random distinct experts per token (a binomial spread of rows
 * per expert, as real routing gives; the median of three rounds, each
 * both paths on its own draw), and keeps the smallest candidate
 * from which the wgmma path wins at every candidate after it. Layers of
 * one shape on one device share the result (a model's MoE layers are
 * measured once).
 */
#include "../cuda/common.cuh"
#include "tune_sm90.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Rows per expert tried, in order; the measurement stops after two
 * candidates in a row where the wgmma path wins. */
static const int tune_cands[] = {32, 40, 48, 56, 64, 72, 80, 96};
#define TUNE_NCANDS ((int)(sizeof tune_cands / sizeof tune_cands[0]))
#define TUNE_ROUNDS 3 /* interleaved rounds a candidate, median kept */
#define TUNE_CALLS 2  /* calls per timed span */

static long long tune_tokens(const moe_shape *s, int rows) {
  return ((long long)rows * s->E + s->k - 1) / s->k;
}

extern "C" int sm90_tune_rows(const moe_shape *s) {
  const long long es = (long long)moe_dtype_size(s->dtype);
  const long long wbytes = (long long)s->E_local *
                           ((long long)s->N1 * s->H + (long long)s->H * s->I) *
                           es;
  if (wbytes < SM90_TUNE_MIN_BYTES) return 0;
  int top = 0;
  for (int i = 0; i < TUNE_NCANDS; i++)
    if (tune_tokens(s, tune_cands[i]) <= s->max_tokens) top = tune_cands[i];
  return top;
}

/* ---- layers of one shape on one device share a result ---- */
typedef struct tune_entry {
  int dev, dtype, act, gated, E, El, k, H, I, Is, bias, top;
  double rows;
  char note[SM90_TUNE_NOTE];
} tune_entry;
#define TUNE_CACHE 32
static tune_entry tune_tab[TUNE_CACHE];
static int tune_n;
static pthread_mutex_t tune_mu = PTHREAD_MUTEX_INITIALIZER;

static tune_entry tune_key(const moe_shape *s, int dev) {
  tune_entry k;
  memset(&k, 0, sizeof k);
  k.dev = dev;
  k.dtype = (int)s->dtype;
  k.act = (int)s->act;
  k.gated = s->gated;
  k.E = s->E;
  k.El = s->E_local;
  k.k = s->k;
  k.H = s->H;
  k.I = s->I;
  k.Is = s->Is;
  k.bias = s->has_expert_bias;
  k.top = sm90_tune_rows(s);
  return k;
}

static int tune_same(const tune_entry *a, const tune_entry *b) {
  return a->dev == b->dev && a->dtype == b->dtype && a->act == b->act &&
         a->gated == b->gated && a->E == b->E && a->El == b->El &&
         a->k == b->k && a->H == b->H && a->I == b->I && a->Is == b->Is &&
         a->bias == b->bias && a->top == b->top;
}

static int tune_lookup(const tune_entry *k, double *rows, char *note,
                       size_t nn) {
  int hit = 0;
  pthread_mutex_lock(&tune_mu);
  for (int i = 0; i < tune_n && !hit; i++)
    if (tune_same(&tune_tab[i], k)) {
      *rows = tune_tab[i].rows;
      snprintf(note, nn, "%s", tune_tab[i].note);
      hit = 1;
    }
  pthread_mutex_unlock(&tune_mu);
  return hit;
}

static void tune_store(const tune_entry *k, double rows, const char *note) {
  pthread_mutex_lock(&tune_mu);
  int i;
  for (i = 0; i < tune_n; i++)
    if (tune_same(&tune_tab[i], k)) break;
  if (i == tune_n && tune_n < TUNE_CACHE) tune_n++;
  if (i < tune_n) {
    tune_tab[i] = *k;
    tune_tab[i].rows = rows;
    snprintf(tune_tab[i].note, sizeof tune_tab[i].note, "%s", note);
  }
  pthread_mutex_unlock(&tune_mu);
}

/* ---- inputs: uniform values in [-1, 1), a hash of the index ---- */
template <class T>
__global__ void tune_fill_kernel(T *p, long long n, uint32_t seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 0x9E3779B9u ^ seed;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    p[i] = from_f32<T>((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

static cudaError_t tune_fill(moe_dtype dt, void *p, long long n,
                             cudaStream_t st) {
  if (dt == MOE_DTYPE_BF16)
    tune_fill_kernel<<<1024, 256, 0, st>>>((__nv_bfloat16 *)p, n, 12345u);
  else
    tune_fill_kernel<<<1024, 256, 0, st>>>((__half *)p, n, 12345u);
  return cudaGetLastError();
}

/* k distinct experts per token, uniform over E (xorshift), weights 1/k.
 * Each round of a candidate has its own draw: with few experts (mixtral's
 * 8) cuda-mma's time turns on whether any expert passes a tile's rows. */
static void tune_routing(const moe_shape *s, long long M, int32_t *ids,
                         float *w, uint64_t seed) {
  uint64_t x = 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull);
  for (long long t = 0; t < M; t++)
    for (int j = 0; j < s->k; j++) {
      int e, dup;
      do {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        e = (int)((x >> 11) % (uint64_t)s->E);
        dup = 0;
        for (int q = 0; q < j; q++)
          dup |= ids[t * s->k + q] == e;
      } while (dup);
      ids[t * s->k + j] = e;
      w[t * s->k + j] = 1.0f / (float)s->k;
    }
}

typedef struct tune_ctx {
  sm90_run_fn run;
  void *layer;
  cudaStream_t st;
  cudaEvent_t ev[2];
  const int32_t *ids; /* TUNE_ROUNDS draws of stride pairs */
  const float *w;
  long long stride;
} tune_ctx;

/* One timed span: TUNE_CALLS calls of one path, microseconds a call. */
static moe_status tune_time(tune_ctx *c, int wgmma, const moe_batch *b,
                            float *us, char *msg, size_t n) {
  cudaError_t e;
  if ((e = cudaEventRecord(c->ev[0], c->st)) != cudaSuccess)
    return mma_cuda_status("cuda-sm90", e, "tuning: event", msg, n);
  for (int i = 0; i < TUNE_CALLS; i++) {
    moe_status st = c->run(c->layer, wgmma, b, c->st, msg, n);
    if (st != MOE_OK) return st;
  }
  float ms = 0.0f;
  if ((e = cudaEventRecord(c->ev[1], c->st)) != cudaSuccess ||
      (e = cudaEventSynchronize(c->ev[1])) != cudaSuccess ||
      (e = cudaEventElapsedTime(&ms, c->ev[0], c->ev[1])) != cudaSuccess)
    return mma_cuda_status("cuda-sm90", e, "tuning: timing", msg, n);
  *us = ms * 1000.0f / TUNE_CALLS;
  return MOE_OK;
}

static float median3(const float *v) {
  const float a = v[0], b = v[1], c = v[2];
  return fmaxf(fminf(a, b), fminf(fmaxf(a, b), c));
}
static_assert(TUNE_ROUNDS == 3, "median3");

/* The measurement proper, on allocated buffers. */
static moe_status tune_measure(const moe_shape *s, tune_ctx *c, moe_batch *b,
                               double *rows, char *note, size_t nn, char *msg,
                               size_t n) {
  size_t used = (size_t)snprintf(note, nn, "t(mma)/t(wgmma)");
  int streak = -1; /* first candidate of the current run of wgmma wins */
  int next = TUNE_NCANDS;
  for (int i = 0; i < TUNE_NCANDS; i++) {
    const long long M = tune_tokens(s, tune_cands[i]);
    if (M > s->max_tokens) {
      next = i;
      break;
    }
    b->M = (int)M;
    float t[2][TUNE_ROUNDS], w;
    moe_status st;
    b->ids = c->ids;
    b->weights = c->w;
    for (int p = 0; p < 2; p++) /* warm both paths at this size */
      if ((st = tune_time(c, p, b, &w, msg, n)) != MOE_OK) return st;
    for (int r = 0; r < TUNE_ROUNDS; r++)
      for (int q = 0; q < 2; q++) {
        b->ids = c->ids + r * c->stride;
        b->weights = c->w + r * c->stride;
        const int p = (r & 1) ? 1 - q : q;
        if ((st = tune_time(c, p, b, &t[p][r], msg, n)) != MOE_OK) return st;
      }
    float qr[TUNE_ROUNDS]; /* each round: both paths on one draw */
    for (int r = 0; r < TUNE_ROUNDS; r++)
      qr[r] = t[0][r] / t[1][r];
    const float q = median3(qr);
    if (used < nn)
      used += (size_t)snprintf(note + used, nn - used, "%s %.2f at %d",
                               i ? "," : "", q, tune_cands[i]);
    const int win = q > 1.0f;
    if (!win) {
      streak = -1;
      continue;
    }
    if (streak >= 0) break; /* two wins in a row */
    streak = i;
    next = i + 1;
  }
  if (streak >= 0)
    *rows = tune_cands[streak];
  else if (next < TUNE_NCANDS)
    *rows = tune_cands[next];
  else
    *rows = tune_cands[TUNE_NCANDS - 1] + 16;
  return MOE_OK;
}

extern "C" moe_status sm90_tune_crossover(const moe_shape *s, sm90_run_fn run,
                                          void *layer, double *rows, char *note,
                                          size_t nn, char *msg, size_t n) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess)
    return mma_cuda_status("cuda-sm90", e, "tuning: device", msg, n);
  const tune_entry key = tune_key(s, dev);
  if (key.top == 0) return MOE_OK;
  char buf[SM90_TUNE_NOTE];
  if (tune_lookup(&key, rows, buf, sizeof buf)) {
    snprintf(note, nn, "as measured for an earlier layer of this shape: %s",
             buf);
    return MOE_OK;
  }
  const long long M = tune_tokens(s, key.top);
  const size_t xb = (size_t)M * s->H * moe_dtype_size(s->dtype);
  const size_t np = (size_t)M * s->k * TUNE_ROUNDS; /* routing draws */
  int32_t *hids = (int32_t *)malloc(np * sizeof(int32_t));
  float *hw = (float *)malloc(np * sizeof(float));
  void *x = NULL, *out = NULL, *ids = NULL, *w = NULL;
  tune_ctx c;
  memset(&c, 0, sizeof c);
  c.run = run;
  c.layer = layer;
  moe_status st = MOE_OK;
#define TK(call, w_)                                                           \
  if (st == MOE_OK && (e = (call)) != cudaSuccess) {                           \
    st = mma_cuda_status("cuda-sm90", e, w_, msg, n);                          \
  }
  if (!hids || !hw) {
    snprintf(msg, n, "cuda-sm90: tuning: out of host memory");
    st = MOE_ERR_OUT_OF_MEMORY;
  }
  TK(cudaStreamCreateWithFlags(&c.st, cudaStreamNonBlocking), "tuning: stream");
  TK(cudaEventCreate(&c.ev[0]), "tuning: event");
  TK(cudaEventCreate(&c.ev[1]), "tuning: event");
  TK(cudaMalloc(&x, xb), "tuning: cudaMalloc(x)");
  TK(cudaMalloc(&out, xb), "tuning: cudaMalloc(out)");
  TK(cudaMalloc(&ids, np * sizeof(int32_t)), "tuning: cudaMalloc(ids)");
  TK(cudaMalloc(&w, np * sizeof(float)), "tuning: cudaMalloc(weights)");
  for (int r = 0; r < TUNE_ROUNDS && st == MOE_OK; r++)
    tune_routing(s, M, hids + r * M * s->k, hw + r * M * s->k, (uint64_t)r);
  TK(cudaMemcpyAsync(ids, hids, np * sizeof(int32_t), cudaMemcpyHostToDevice,
                     c.st),
     "tuning: upload");
  TK(cudaMemcpyAsync(w, hw, np * sizeof(float), cudaMemcpyHostToDevice, c.st),
     "tuning: upload");
  TK(tune_fill(s->dtype, x, M * s->H, c.st), "tuning: fill");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (st == MOE_OK) {
    moe_batch b;
    memset(&b, 0, sizeof b);
    b.x = x;
    c.ids = (const int32_t *)ids;
    c.w = (const float *)w;
    c.stride = M * s->k;
    b.out = out;
    double r = 0;
    st = tune_measure(s, &c, &b, &r, buf, sizeof buf, msg, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st == MOE_OK) {
      *rows = r;
      snprintf(note, nn, "measured at creation in %.0f ms: %s",
               (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
               buf);
      tune_store(&key, r, buf);
    }
  }
#undef TK
  if (st == MOE_ERR_OUT_OF_MEMORY) (void)cudaGetLastError(); /* not sticky */
  /* every call was on c.st; let it drain before the buffers go */
  if (c.st) (void)cudaStreamSynchronize(c.st);
  (void)cudaFree(x);
  (void)cudaFree(out);
  (void)cudaFree(ids);
  (void)cudaFree(w);
  if (c.ev[0]) (void)cudaEventDestroy(c.ev[0]);
  if (c.ev[1]) (void)cudaEventDestroy(c.ev[1]);
  if (c.st) (void)cudaStreamDestroy(c.st);
  free(hids);
  free(hw);
  return st;
}
