/*
 * combine.cu - out[t] = sum over slots j (in slot order) of sum over splits z
 * (in split order) of Y[z][t*k + j], plus the shared expert's rows. Plain
 * loads and adds in a fixed order: no atomics, bit-identical run to run.
 * Slots whose expert is not local (pair_e = -1) contribute nothing.
 */
#include "common.cuh"

template <class T, bool VEC>
__global__ void combine_kernel(const mma_combine_args c) {
  const int t = blockIdx.x;
  const int H = c.H;
  const int32_t *pe = c.pair_e + (long long)t * c.k;
  T *out = (T *)c.out + (long long)t * H;
  const int step = VEC ? 4 : 1;
  for (int col = threadIdx.x * step; col < H; col += blockDim.x * step) {
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int j = 0; j < c.k; j++) {
      if (__ldg(pe + j) < 0) continue;
      const float *y = c.Y + ((long long)t * c.k + j) * H + col;
      for (int z = 0; z < c.y_split; z++) {
        if (VEC) {
          float4 v = *(const float4 *)(y + z * c.y_zstride);
          acc.x += v.x;
          acc.y += v.y;
          acc.z += v.z;
          acc.w += v.w;
        } else {
          acc.x += y[z * c.y_zstride];
        }
      }
    }
    if (c.Ysh) {
      const float *y = c.Ysh + (long long)t * H + col;
      for (int z = 0; z < c.ysh_split; z++) {
        if (VEC) {
          float4 v = *(const float4 *)(y + z * c.ysh_zstride);
          acc.x += v.x;
          acc.y += v.y;
          acc.z += v.z;
          acc.w += v.w;
        } else {
          acc.x += y[z * c.ysh_zstride];
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
}

extern "C" cudaError_t
mma_launch_combine(moe_dtype dt, const mma_combine_args *c, cudaStream_t s) {
  if (c->M <= 0) return cudaSuccess;
  const bool vec = (c->H % 4) == 0;
  const int threads = 256;
#define COMBINE_CASE(T, DT)                                                    \
  case DT:                                                                     \
    if (vec)                                                                   \
      combine_kernel<T, true><<<c->M, threads, 0, s>>>(*c);                    \
    else                                                                       \
      combine_kernel<T, false><<<c->M, threads, 0, s>>>(*c);                   \
    return cudaGetLastError();
  switch (dt) {
    MMA_DTYPES(COMBINE_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}
