/*
 * combine.cu - out[t] = sum over slots j (in slot order) of sum over splits z
 * (in split order) of Y[z][t*k + j], plus the shared expert's rows. Plain
 * loads and adds in a fixed order: no atomics, bit-identical run to run.
 * Slots whose expert is not local (pair_e = -1) contribute nothing. Y is
 * f32, or the layer's dtype (y_t) where the GEMM rounded its rows.
 */
#include "common.cuh"

/* Four consecutive elements of Y (16-byte aligned for f32, 8 for 16-bit
 * types) as floats; one element when VEC is off. */
template <bool VEC> __device__ __forceinline__ float4 y_load(const float *p) {
  if (VEC) return __ldg((const float4 *)p);
  return make_float4(__ldg(p), 0.f, 0.f, 0.f);
}
template <bool VEC, class Y>
__device__ __forceinline__ float4 y_load(const Y *p) {
  if (VEC) {
    const uint2 u = __ldg((const uint2 *)p);
    Y v[4];
    memcpy(v, &u, sizeof u);
    return make_float4(to_f32(v[0]), to_f32(v[1]), to_f32(v[2]), to_f32(v[3]));
  }
  return make_float4(to_f32(p[0]), 0.f, 0.f, 0.f);
}

/* One thread per (token, group of 4 columns); grid.y spreads a token's
 * columns over blocks, so even one token keeps many loads in flight. Y is
 * float or T. */
template <class T, class Y, bool VEC>
__global__ void combine_kernel(const mma_combine_args c) {
  pdl_enter();
  const int t = blockIdx.x;
  const int H = c.H;
  const int step = VEC ? 4 : 1;
  const int col = (blockIdx.y * blockDim.x + threadIdx.x) * step;
  if (col >= H) return;
  const int32_t *pe = c.pair_e + (long long)t * c.k;
  T *out = (T *)c.out + (long long)t * H;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
  for (int j = 0; j < c.k; j++) {
    const bool ok = __ldg(pe + j) >= 0;
    const Y *y = (const Y *)c.Y + ((long long)t * c.k + j) * H + col;
    for (int z = 0; z < c.y_split; z++) {
      if (!ok) break;
      const float4 v = y_load<VEC>(y + z * c.y_zstride);
      acc.x += v.x;
      acc.y += v.y;
      acc.z += v.z;
      acc.w += v.w;
    }
  }
  if (c.Ysh) {
    const Y *y = (const Y *)c.Ysh + (long long)t * H + col;
    for (int z = 0; z < c.ysh_split; z++) {
      const float4 v = y_load<VEC>(y + z * c.ysh_zstride);
      acc.x += v.x;
      acc.y += v.y;
      acc.z += v.z;
      acc.w += v.w;
    }
  }
  out[col] = from_f32<T>(acc.x);
  if (VEC) {
    out[col + 1] = from_f32<T>(acc.y);
    out[col + 2] = from_f32<T>(acc.z);
    out[col + 3] = from_f32<T>(acc.w);
  }
}

/* Y's 16 bytes at p as floats: eight 16-bit values or four f32. */
__device__ __forceinline__ void y_load16(float *v, const float *p) {
  const float4 u = __ldg((const float4 *)p);
  v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}
template <class Y>
__device__ __forceinline__ void y_load16(float *v, const Y *p) {
  const uint4 u = __ldg((const uint4 *)p);
  Y e[8];
  memcpy(e, &u, sizeof u);
#pragma unroll
  for (int q = 0; q < 8; q++)
    v[q] = to_f32(e[q]);
}

/* The common case, one split of Y (and of Ysh): 16 bytes of Y a thread and
 * slot, the loads of four slots issued before they are added. The sums run
 * in the general kernel's order (slot by slot, then the shared rows), so
 * both give the same bits. ovec: out 16-byte aligned, one store of the
 * thread's columns. */
template <class T, class Y>
__global__ void combine_wide_kernel(const mma_combine_args c, int ovec) {
  constexpr int W = 16 / (int)sizeof(Y);
  pdl_enter();
  const int t = blockIdx.x;
  const int H = c.H;
  const int col = (blockIdx.y * blockDim.x + threadIdx.x) * W;
  if (col >= H) return;
  const int32_t *pe = c.pair_e + (long long)t * c.k;
  const Y *y = (const Y *)c.Y + (long long)t * c.k * H + col;
  float acc[W];
#pragma unroll
  for (int q = 0; q < W; q++)
    acc[q] = 0.0f;
  int j = 0;
  for (; j + 4 <= c.k; j += 4) {
    float v[4][W];
    bool ok[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      ok[u] = __ldg(pe + j + u) >= 0;
      if (ok[u]) y_load16(v[u], y + (long long)(j + u) * H);
    }
#pragma unroll
    for (int u = 0; u < 4; u++)
      if (ok[u]) {
#pragma unroll
        for (int q = 0; q < W; q++)
          acc[q] += v[u][q];
      }
  }
  for (; j < c.k; j++) {
    if (__ldg(pe + j) < 0) continue;
    float v[W];
    y_load16(v, y + (long long)j * H);
#pragma unroll
    for (int q = 0; q < W; q++)
      acc[q] += v[q];
  }
  if (c.Ysh) {
    float v[W];
    y_load16(v, (const Y *)c.Ysh + (long long)t * H + col);
#pragma unroll
    for (int q = 0; q < W; q++)
      acc[q] += v[q];
  }
  T *out = (T *)c.out + (long long)t * H + col;
  T o[W];
#pragma unroll
  for (int q = 0; q < W; q++)
    o[q] = from_f32<T>(acc[q]);
  if (ovec && W == 8) {
    uint4 u;
    memcpy(&u, o, sizeof u);
    *(uint4 *)out = u;
  } else if (ovec) {
    uint2 u;
    memcpy(&u, o, sizeof u);
    *(uint2 *)out = u;
  } else {
#pragma unroll
    for (int q = 0; q < W; q++)
      out[q] = o[q];
  }
}

template <class T, class Y>
static cudaError_t combine_launch(const mma_combine_args *c, cudaStream_t s) {
  const int threads = 128;
  const int W = 16 / (int)sizeof(Y);
  if (c->H % W == 0 && c->y_split == 1 && (!c->Ysh || c->ysh_split == 1) &&
      ((uintptr_t)c->Y & 15) == 0 && ((uintptr_t)c->Ysh & 15) == 0) {
    /* 16-bit out: W columns are 16 bytes (W = 8) or 8 bytes (W = 4) */
    const int ovec = ((uintptr_t)c->out & (W * sizeof(T) - 1)) == 0;
    const dim3 grid((unsigned)c->M,
                    (unsigned)((c->H + threads * W - 1) / (threads * W)));
    return launch_kernel(combine_wide_kernel<T, Y>, grid, dim3(threads), 0, s,
                         c->pdl, *c, ovec);
  }
  const bool vec = (c->H % 4) == 0;
  const int per = threads * (vec ? 4 : 1);
  const dim3 grid((unsigned)c->M, (unsigned)((c->H + per - 1) / per));
  if (vec)
    return launch_kernel(combine_kernel<T, Y, true>, grid, dim3(threads), 0, s,
                         c->pdl, *c);
  return launch_kernel(combine_kernel<T, Y, false>, grid, dim3(threads), 0, s,
                       c->pdl, *c);
}

extern "C" cudaError_t
mma_launch_combine(moe_dtype dt, const mma_combine_args *c, cudaStream_t s) {
  if (c->M <= 0) return cudaSuccess;
#define COMBINE_CASE(T, DT)                                                    \
  case DT:                                                                     \
    return c->y_t ? combine_launch<T, T>(c, s) : combine_launch<T, float>(c, s);
  switch (dt) {
    MMA_DTYPES(COMBINE_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}
