/*
 * gemm2.cu - grouped GEMM2: Y[z][pair(r)] = w[pair] * (act[r] @ W2[e]^T + b2).
 *
 * Rows are written to their (token, slot) row of Y, so no two CTAs ever
 * write the same element and the combine can sum each token's slots in a
 * fixed order (deterministic, no atomics). With split-K each split writes
 * its own Y plane; the bias goes into split 0 only.
 */
#include "gemm.cuh"

struct Gemm2Epi {
  static __device__ __forceinline__ int wrow(const mma_act &, int N, int n) {
    return n < N ? n : -1;
  }
  /* One thread's pair (tiles that do not stage their epilogue). */
  template <class T>
  static __device__ __forceinline__ void
  store(const mma_gemm_args &args, const mma_problem &P, int e, int row,
        int col, float v0, float v1, int z) {
    const int y = P.out_rows ? __ldg(P.out_rows + row) : row;
    const float w = P.row_w ? __ldg(P.row_w + y) : 1.0f;
    const float *b = (P.bias && z == 0) ? P.bias + e * P.bias_stride : nullptr;
    float *o = (float *)P.out + z * P.out_zstride + y * P.ldo;
    if (col + 1 < P.N && (P.ldo & 1) == 0) {
      float2 v;
      v.x = w * (v0 + (b ? b[col] : 0.0f));
      v.y = w * (v1 + (b ? b[col + 1] : 0.0f));
      *(float2 *)(o + col) = v;
      return;
    }
    if (col < P.N) o[col] = w * (v0 + (b ? b[col] : 0.0f));
    if (col + 1 < P.N) o[col + 1] = w * (v1 + (b ? b[col + 1] : 0.0f));
  }
  /* The tile's rows [row0, row0 + rows), columns [n0, n0 + BN), from stg
   * (row stride LD), four columns a unit, to their Y rows. */
  template <class T, int BN, int LD, int THREADS>
  static __device__ __forceinline__ void
  store_tile(const mma_gemm_args &, const mma_problem &P, int e, int row0,
             int rows, int n0, const float *stg, int z) {
    constexpr int CH = BN / 4;
    const float *b = (P.bias && z == 0) ? P.bias + e * P.bias_stride : nullptr;
#pragma unroll 1
    for (int u = threadIdx.x; u < rows * CH; u += THREADS) {
      const int r = u / CH, c0 = (u % CH) * 4, col = n0 + c0;
      if (col >= P.N) continue;
      const int row = row0 + r;
      const int y = P.out_rows ? __ldg(P.out_rows + row) : row;
      const float w = P.row_w ? __ldg(P.row_w + y) : 1.0f;
      const float *s = stg + r * LD + c0;
      float *o = (float *)P.out + z * P.out_zstride + y * P.ldo + col;
      if (col + 4 <= P.N && ((uintptr_t)o & 15) == 0) {
        float4 v;
        v.x = w * (s[0] + (b ? b[col] : 0.0f));
        v.y = w * (s[1] + (b ? b[col + 1] : 0.0f));
        v.z = w * (s[2] + (b ? b[col + 2] : 0.0f));
        v.w = w * (s[3] + (b ? b[col + 3] : 0.0f));
        *(float4 *)o = v;
      } else {
        for (int q = 0; q < 4 && col + q < P.N; q++)
          o[q] = w * (s[q] + (b ? b[col + q] : 0.0f));
      }
    }
  }
};

#define GEMM2_ENTRY(T, DT) {DT, MMA_ACTS_GATED, MMA_ACTS_PLAIN},
static const mma_inst gemm2_table[] = {MMA_DTYPES(GEMM2_ENTRY)};

extern "C" int mma_gemm2_instances(const mma_inst **tab) {
  *tab = gemm2_table;
  return (int)(sizeof gemm2_table / sizeof gemm2_table[0]);
}

extern "C" cudaError_t mma_launch_gemm2(moe_dtype dt, mma_cfg cfg,
                                        const mma_gemm_args *a, dim3 grid,
                                        cudaStream_t s) {
#define GEMM2_CASE(T, DT)                                                      \
  case DT:                                                                     \
    return gemm_dispatch<T, Gemm2Epi>(cfg, a, grid, s);
  switch (dt) {
    MMA_DTYPES(GEMM2_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t mma_gemm2_prepare(moe_dtype dt) {
#define PREP2_CASE(T, DT)                                                      \
  case DT:                                                                     \
    return gemm_set_smem<T, Gemm2Epi>();
  switch (dt) {
    MMA_DTYPES(PREP2_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}
