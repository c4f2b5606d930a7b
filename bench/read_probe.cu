// read_probe.cu - what one short kernel can read from DRAM on this GPU, at
// the sizes of the decode calls' weight streams (bench/NOTES.md): the
// one-token targets are set by how fast 25-100 MB come in, and a read
// ceiling measured on gigabytes says little about a 15 us kernel.
//   size    a graph of kernels, each reading S bytes with 16-byte loads
//           (U a thread in flight, C CTAs of 512 threads a SM), rotated
//           over buffers 1 GB apart in total so that L2 holds none;
//           the best (C, U) and its time a kernel, median of 7 replays
//   pair    two such kernels back to back (gemv1's and gemv2's bytes of
//           a preset at one token): the time of the pair
//   empty   a graph of empty kernels: the cost of one launch in a graph
// Build (from the repository root):
//   nvcc -O3 -arch=sm_90a bench/read_probe.cu -o read_probe
#include <algorithm>
#include <cstdio>
#include <cuda_runtime.h>
#include <vector>

#include "bench_check.h"

#define THREADS 512

/* Reads n 16-byte words: a CTA takes contiguous blocks of THREADS * U
 * words in turn, each thread U loads in flight; the XOR of what was read
 * is stored only when it equals a key the data never gives, so that no
 * load can be dropped. */
template <int U>
__global__ void __launch_bounds__(THREADS)
    read_kernel(const uint4 *p, size_t n, unsigned key, unsigned *sink) {
  unsigned acc = 0;
  const size_t step = (size_t)gridDim.x * THREADS * U;
  for (size_t b = (size_t)blockIdx.x * THREADS * U; b < n; b += step) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      size_t i = b + (size_t)u * THREADS + threadIdx.x;
      v[u] = i < n ? __ldcs(p + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; u++)
      acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == key) sink[blockIdx.x] = acc;
}

/* The gemv pattern: the n words split into one contiguous range a warp,
 * each warp streaming its own range with U loads a lane in flight; DOT:
 * each 16-byte word also meets a vector in shared memory (8 bf16 FMAs, as
 * gemv1 at one token), the sums reduced a warp. */
template <int U, int DOT>
__global__ void __launch_bounds__(THREADS)
    warp_kernel(const uint4 *p, size_t n, unsigned key, unsigned *sink) {
  __shared__ uint4 xs[1024];
  const int lane = threadIdx.x & 31;
  if (DOT) {
    for (int i = threadIdx.x; i < 1024; i += THREADS)
      xs[i] = make_uint4(0x3f803f80u ^ i, 0x3f803f80u, 0x3f803f80u, i);
    __syncthreads();
  }
  const size_t W = (size_t)gridDim.x * (THREADS / 32);
  const size_t w = (size_t)blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5);
  const size_t b0 = (w * n / W) & ~(size_t)31,
               b1 = ((w + 1) * n / W) & ~(size_t)31;
  unsigned acc = 0;
  float f = 0.0f;
  for (size_t b = b0 + lane; b < b1; b += 32 * U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      size_t i = b + (size_t)u * 32;
      v[u] = i < b1 ? __ldcs(p + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (DOT) {
        const uint4 x = xs[(b + u * 32) & 1023];
        const unsigned *pw = &v[u].x, *px = &x.x;
#pragma unroll
        for (int q = 0; q < 4; q++) {
          f = fmaf(__uint_as_float(pw[q] << 16), __uint_as_float(px[q] << 16),
                   f);
          f = fmaf(__uint_as_float(pw[q] & 0xffff0000u),
                   __uint_as_float(px[q] & 0xffff0000u), f);
        }
      } else {
        acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
      }
    }
  }
  if (DOT)
    for (int o = 16; o > 0; o >>= 1)
      f += __shfl_xor_sync(0xffffffffu, f, o);
  if (acc == key || f == (float)key) sink[blockIdx.x] = acc;
}

__global__ void empty_kernel(unsigned *sink, unsigned key) {
  if (threadIdx.x == key) sink[0] = key;
}

typedef void (*read_fn)(const uint4 *, size_t, unsigned, unsigned *);

/* layout 0: CTA blocks (read_kernel); 1: warp ranges; 2: warp ranges
 * with the dot products. */
static read_fn pick(int u, int layout = 0) {
  if (layout == 1)
    return u == 4   ? warp_kernel<4, 0>
           : u == 8 ? warp_kernel<8, 0>
                    : warp_kernel<16, 0>;
  if (layout == 2)
    return u == 4   ? warp_kernel<4, 1>
           : u == 8 ? warp_kernel<8, 1>
                    : warp_kernel<16, 1>;
  return u == 4 ? read_kernel<4> : u == 8 ? read_kernel<8> : read_kernel<16>;
}

static int time_read(const char *pool, unsigned *sink, int ctas, int u,
                     int layout, size_t bytes, float *t);

static const size_t POOL = (size_t)1 << 30;
static const int KERNELS = 24; /* kernels a graph */

/* Median time of one kernel (or pair) over 7 replays of a graph of
 * KERNELS launches; launch(i, stream) enqueues the i-th. */
template <typename F> static int time_graph(F launch, int count, float *us) {
  cudaStream_t s;
  CHECK(cudaStreamCreate(&s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < count; i++)
    launch(i, s);
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaGraphLaunch(ge, s)); /* warm */
  std::vector<float> t;
  for (int r = 0; r < 7; r++) {
    CHECK(cudaEventRecord(a, s));
    CHECK(cudaGraphLaunch(ge, s));
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1000.f / count);
  }
  CHECK(cudaGetLastError());
  std::sort(t.begin(), t.end());
  *us = t[3];
  CHECK(cudaGraphExecDestroy(ge));
  CHECK(cudaGraphDestroy(g));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  CHECK(cudaStreamDestroy(s));
  return 0;
}

/* The i-th buffer of size bytes, rotating through the pool. */
static const uint4 *buf(const char *pool, size_t bytes, int i) {
  size_t per = POOL / bytes;
  return (const uint4 *)(pool + (size_t)(i % per) * bytes);
}

struct best_t {
  float us;
  int c, u;
};

static int best_read(const char *pool, unsigned *sink, int sms, size_t bytes,
                     best_t *best) {
  const int cs[] = {1, 2, 4}, us[] = {4, 8, 16};
  best->us = 1e30f;
  for (int c : cs)
    for (int u : us) {
      read_fn f = pick(u);
      float t;
      if (time_graph(
              [&](int i, cudaStream_t s) {
                f<<<sms * c, THREADS, 0, s>>>(buf(pool, bytes, i), bytes / 16,
                                              0xdeadbeefu, sink);
              },
              KERNELS, &t))
        return 1;
      if (t < best->us) *best = {t, c, u};
    }
  return 0;
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  char *pool;
  unsigned *sink;
  CHECK(cudaMalloc(&pool, POOL));
  CHECK(cudaMalloc(&sink, 4096 * sizeof(unsigned)));
  /* Random-looking words, so that the key is never met. */
  CHECK(cudaMemset(pool, 0x5a, POOL));
  printf("%s, %d SMs\n", prop.name, sms);
  float e;
  if (time_graph(
          [&](int, cudaStream_t s) {
            empty_kernel<<<sms, 128, 0, s>>>(sink, 1u << 30);
          },
          KERNELS, &e))
    return 1;
  printf("empty kernel in a graph: %.2f us\n", e);
  printf("%10s %10s %8s %4s %4s\n", "MB", "us", "TB/s", "C", "U");
  const double mbs[] = {6.3, 12.6, 25.2, 50.3, 75.5, 100, 200, 400};
  for (double mb : mbs) {
    size_t bytes = (size_t)(mb * 1e6) & ~(size_t)4095;
    best_t b;
    if (best_read(pool, sink, sms, bytes, &b)) return 1;
    printf("%10.1f %10.2f %8.2f %4d %4d\n", mb, b.us, bytes / b.us / 1e6, b.c,
           b.u);
  }
  /* gemv1 then gemv2 bytes at one token: W13 and W2 of the chosen
   * experts (qwen3 8 x 2048 x 768, gpt-oss 4 x 2880 x 2880, nemotron
   * 6 + 2 x 2688 x 1856 relu2 (no gate; the shared expert is two), deepseek
   * 9 x 7168 x 2048). */
  struct {
    const char *name;
    double mb1, mb2;
  } pairs[] = {{"qwen3", 50.3, 25.2},
               {"gpt-oss", 132.7, 66.4},
               {"nemotron", 79.9, 79.9},
               {"deepseek", 528.5, 264.2}};
  printf("%10s %10s %10s %8s\n", "pair", "MB", "us", "TB/s");
  for (auto &p : pairs) {
    size_t b1 = (size_t)(p.mb1 * 1e6) & ~(size_t)4095;
    size_t b2 = (size_t)(p.mb2 * 1e6) & ~(size_t)4095;
    best_t k1, k2;
    if (best_read(pool, sink, sms, b1, &k1) ||
        best_read(pool, sink, sms, b2, &k2))
      return 1;
    read_fn f1 = pick(k1.u), f2 = pick(k2.u);
    float t;
    if (time_graph(
            [&](int i, cudaStream_t s) {
              f1<<<sms * k1.c, THREADS, 0, s>>>(buf(pool, b1 + b2, i), b1 / 16,
                                                0xdeadbeefu, sink);
              f2<<<sms * k2.c, THREADS, 0, s>>>(
                  (const uint4 *)((const char *)buf(pool, b1 + b2, i) + b1),
                  b2 / 16, 0xdeadbeefu, sink);
            },
            KERNELS / 2, &t))
      return 1;
    printf("%10s %10.1f %10.2f %8.2f\n", p.name, p.mb1 + p.mb2, t,
           (b1 + b2) / t / 1e6);
  }
  /* Every configuration at two sizes, in the three layouts. */
  const double cmbs[] = {50.3, 132.7};
  const char *lname[] = {"blocks", "warps", "warps+dot"};
  printf("%8s %10s %3s %3s %9s %9s\n", "MB", "layout", "C", "U", "us", "TB/s");
  for (double mb : cmbs)
    for (int layout = 0; layout < 3; layout++)
      for (int c : {1, 2, 4})
        for (int u : {4, 8, 16}) {
          size_t bytes = (size_t)(mb * 1e6) & ~(size_t)4095;
          float t;
          if (time_read(pool, sink, sms * c, u, layout, bytes, &t)) return 1;
          printf("%8.1f %10s %3d %3d %9.2f %9.2f\n", mb, lname[layout], c, u, t,
                 bytes / t / 1e6);
        }
  CHECK(cudaFree(pool));
  CHECK(cudaFree(sink));
  return 0;
}

static int time_read(const char *pool, unsigned *sink, int ctas, int u,
                     int layout, size_t bytes, float *t) {
  read_fn f = pick(u, layout);
  return time_graph(
      [&](int i, cudaStream_t s) {
        f<<<ctas, THREADS, 0, s>>>(buf(pool, bytes, i), bytes / 16, 0xdeadbeefu,
                                   sink);
      },
      KERNELS, t);
}
