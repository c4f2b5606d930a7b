/*
 * combine.cu - out[t] = sum over slots j (in slot order) of sum over splits z
 * (in split order) of Y[z][t*k + j], plus the shared expert's rows. Plain
 * loads and adds in a fixed order: no atomics, bit-identical run to run.
 * Slots whose expert is not local (pair_e = -1) contribute nothing.
 */
#include "common.cuh"

/* One thread per (token, group of 4 columns); grid.y spreads a token's
 * columns over blocks, so even one token keeps many loads in flight. */
template <class T, bool VEC>
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
    const float *y = c.Y + ((long long)t * c.k + j) * H + col;
    for (int z = 0; z < c.y_split; z++) {
      if (!ok) break;
      if (VEC) {
        float4 v = __ldg((const float4 *)(y + z * c.y_zstride));
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
      } else {
        acc.x += __ldg(y + z * c.y_zstride);
      }
    }
  }
  if (c.Ysh) {
    const float *y = c.Ysh + (long long)t * H + col;
    for (int z = 0; z < c.ysh_split; z++) {
      if (VEC) {
        float4 v = __ldg((const float4 *)(y + z * c.ysh_zstride));
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
      } else {
        acc.x += __ldg(y + z * c.ysh_zstride);
      }
    }
  }
  out[col] = from_f32<T>(acc.x);
  if (VEC) {
    out[col + 1] = from_f32<T>(acc.y);
    out[col + 2] = from_f32<T>(acc.z);
    out[col + 3] = from_f32<T>(acc.w);
  }
}

extern "C" cudaError_t
mma_launch_combine(moe_dtype dt, const mma_combine_args *c, cudaStream_t s) {
  if (c->M <= 0) return cudaSuccess;
  const bool vec = (c->H % 4) == 0;
  const int threads = 128;
  const int per = threads * (vec ? 4 : 1);
  const dim3 grid((unsigned)c->M, (unsigned)((c->H + per - 1) / per));
#define COMBINE_CASE(T, DT)                                                    \
  case DT:                                                                     \
    if (vec)                                                                   \
      return launch_kernel(combine_kernel<T, true>, grid, dim3(threads), 0, s, \
                           c->pdl, *c);                                        \
    else                                                                       \
      return launch_kernel(combine_kernel<T, false>, grid, dim3(threads), 0,   \
                           s, c->pdl, *c);
  switch (dt) {
    MMA_DTYPES(COMBINE_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}
