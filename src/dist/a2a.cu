/*
 * a2a.cu - the device side of EP_A2A dispatch and combine.
 *
 *  scan:    for each destination rank d (one block each), in token order:
 *           pos[t][d] = the row of token t in d's block (or -1 when none of
 *           its k experts lives on d), src[d][row] = t, count[d] = rows.
 *  pack:    block d, row i < count[d]: the token's x row and its k (id,
 *           weight) pairs; rows past count[d] get ids -1 (the receiver's
 *           forward skips them). The own block is packed straight into the
 *           receive buffers.
 *  combine: out[t] = shared[t] + sum over d in rank order of the result
 *           row pos[t][d] from d; plain adds in a fixed order: no atomics,
 *           bit-identical run to run.
 * Counts stay on the device; launch shapes depend on host values only.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "dist.h"

__device__ __forceinline__ float ld_f32(const __nv_bfloat16 *p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ float ld_f32(const __half *p) {
  return __half2float(*p);
}
__device__ __forceinline__ float ld_f32(const float *p) {
  return *p;
}
__device__ __forceinline__ void st_f32(__nv_bfloat16 *p, float v) {
  *p = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void st_f32(__half *p, float v) {
  *p = __float2half_rn(v);
}
__device__ __forceinline__ void st_f32(float *p, float v) {
  *p = v;
}

/* Owner of expert e: E split into world contiguous blocks, the first
 * E % world of them one larger (moe_dist_expert_range). */
__device__ __forceinline__ int owner_of(int E, int world, int e) {
  const int q = E / world, rem = E % world, big = rem * (q + 1);
  return e < big ? e / (q + 1) : rem + (e - big) / q;
}

#define SCAN_THREADS 256

__global__ void a2a_scan_kernel(const moe_a2a_args a) {
  __shared__ int warp_n[SCAN_THREADS / 32];
  const int d = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int base = 0;
  for (int t0 = 0; t0 < a.M; t0 += SCAN_THREADS) {
    const int t = t0 + threadIdx.x;
    int f = 0;
    if (t < a.M)
      for (int j = 0; j < a.k; j++) {
        const int e = a.ids[(long long)t * a.k + j];
        if (e >= 0 && e < a.E && owner_of(a.E, a.world, e) == d) f = 1;
      }
    const unsigned v = __ballot_sync(0xffffffffu, f);
    if (lane == 0) warp_n[warp] = __popc(v);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < SCAN_THREADS / 32; w++) {
      if (w < warp) before += warp_n[w];
      total += warp_n[w];
    }
    const int p = base + before + __popc(v & ((1u << lane) - 1u));
    if (t < a.M) {
      a.pos[(long long)t * a.world + d] = f ? p : -1;
      if (f) a.src[(long long)d * a.B + p] = t;
    }
    base += total;
    __syncthreads(); /* warp_n is rewritten next round */
  }
  if (threadIdx.x == 0) a.count[d] = base;
}

template <bool VEC> __global__ void a2a_pack_kernel(const moe_a2a_args a) {
  const int i = blockIdx.x, d = blockIdx.y;
  const bool self = d == a.rank;
  const long long r = (long long)d * a.B + i;
  const size_t row_bytes = (size_t)a.H * a.elem;
  char *dx = (char *)(self ? a.recv_x : a.send_x) + r * row_bytes;
  int32_t *di = (self ? a.recv_ids : a.send_ids) + r * a.k;
  float *dw = (self ? a.recv_w : a.send_w) + r * a.k;
  if (i < a.count[d]) {
    const int t = a.src[r];
    const char *sx = (const char *)a.x + (long long)t * row_bytes;
    if (VEC) {
      const int n = (int)(row_bytes / 16);
      for (int c = threadIdx.x; c < n; c += blockDim.x)
        ((uint4 *)dx)[c] = __ldg((const uint4 *)sx + c);
    } else {
      const int n = (int)(row_bytes / 2);
      for (int c = threadIdx.x; c < n; c += blockDim.x)
        ((uint16_t *)dx)[c] = ((const uint16_t *)sx)[c];
    }
    for (int j = threadIdx.x; j < a.k; j += blockDim.x) {
      di[j] = a.ids[(long long)t * a.k + j];
      dw[j] = a.w[(long long)t * a.k + j];
    }
  } else {
    for (int j = threadIdx.x; j < a.k; j += blockDim.x) {
      di[j] = -1;
      dw[j] = 0.0f;
    }
  }
}

template <class T> __global__ void a2a_combine_kernel(const moe_a2a_args a) {
  const int t = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= a.H) return;
  const long long H = a.H;
  float acc = a.shared ? ld_f32((const T *)a.shared + t * H + c) : 0.0f;
  for (int d = 0; d < a.world; d++) {
    const int p = a.pos[(long long)t * a.world + d];
    if (p < 0) continue;
    const T *src = (const T *)(d == a.rank ? a.y : a.back);
    acc += ld_f32(src + ((long long)d * a.B + p) * H + c);
  }
  st_f32((T *)a.out + t * H + c, acc);
}

extern "C" int moe_a2a_launch_pack(moe_dtype dt, const moe_a2a_args *a,
                                   void *stream) {
  cudaStream_t s = (cudaStream_t)stream;
  (void)dt;
  a2a_scan_kernel<<<a->world, SCAN_THREADS, 0, s>>>(*a);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return (int)e;
  const size_t row_bytes = (size_t)a->H * a->elem;
  const bool vec = row_bytes % 16 == 0 && ((uintptr_t)a->x & 15) == 0;
  const dim3 grid((unsigned)a->B, (unsigned)a->world);
  if (vec)
    a2a_pack_kernel<true><<<grid, 128, 0, s>>>(*a);
  else
    a2a_pack_kernel<false><<<grid, 128, 0, s>>>(*a);
  return (int)cudaGetLastError();
}

extern "C" int moe_a2a_launch_combine(moe_dtype dt, const moe_a2a_args *a,
                                      void *stream) {
  if (a->M <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  const int threads = 128;
  const dim3 grid((unsigned)a->M, (unsigned)((a->H + threads - 1) / threads));
  switch (dt) {
  case MOE_DTYPE_BF16:
    a2a_combine_kernel<__nv_bfloat16><<<grid, threads, 0, s>>>(*a);
    break;
  case MOE_DTYPE_F16:
    a2a_combine_kernel<__half><<<grid, threads, 0, s>>>(*a);
    break;
  case MOE_DTYPE_F32:
    a2a_combine_kernel<float><<<grid, threads, 0, s>>>(*a);
    break;
  default:
    return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

extern "C" const char *moe_a2a_error_string(int e) {
  return cudaGetErrorString((cudaError_t)e);
}
