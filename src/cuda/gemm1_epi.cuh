/*
 * gemm1_epi.cuh - GEMM1's epilogue (bias + activation, or split-K partials)
 * and the per-activation translation units' launchers.
 *
 * Gated weights are read so that every accumulator pair a thread holds is
 * (gate j, up j): interleaved checkpoints (SWIGLU_OAI) are that already; for
 * [gate; up] halves the B loader maps tile row n to weight row n/2 (even n)
 * or I + n/2 (odd n). The activation is then a per-thread epilogue.
 *
 * The 64- and 128-row tiles are compiled once per activation, each
 * activation in its own file (gemm1_<act>.cu: MMA_GEMM1_ACT_UNIT), so that
 * the build compiles them in parallel; gemm1.cu picks the launcher.
 */
#ifndef MOE_CUDA_GEMM1_EPI_CUH
#define MOE_CUDA_GEMM1_EPI_CUH

#include "gemm.cuh"

/* Weight row of tile column n (interleaved (gate, up) space), -1 if none. */
__device__ __forceinline__ int gemm1_wrow(const mma_act &a, int N, int n) {
  if (n >= N) return -1;
  if (!a.gated || a.interleaved) return n;
  return (n & 1) ? (N >> 1) + (n >> 1) : (n >> 1);
}

__device__ __forceinline__ float gemm1_bias(const mma_act &a, const float *b,
                                            int N, int j, int up) {
  if (!b) return 0.0f;
  if (a.interleaved) return b[2 * j + up];
  return b[up ? (N >> 1) + j : j];
}

/* The epilogue of the kernel compiled for activation ACT (a compile-time
 * constant: the unrolled epilogue holds that activation's code only, not a
 * switch per accumulator pair); ACT < 0 switches at run time (the 16-row
 * tile, whose epilogue is four pairs a thread). */
template <int ACT> struct Gemm1Epi {
  static __device__ __forceinline__ int wrow(const mma_act &a, int N, int n) {
    return gemm1_wrow(a, N, n);
  }
  /* One thread's pair (tiles that do not stage their epilogue). */
  template <class T>
  static __device__ __forceinline__ void
  store(const mma_gemm_args &args, const mma_problem &P, int e, int row,
        int col, float v0, float v1, int z) {
    if (args.split > 1) {
      float *p = P.part + z * P.part_zstride + row * P.ldp;
      if (col < P.N) p[col] = v0;
      if (col + 1 < P.N) p[col + 1] = v1;
      return;
    }
    const float *b = P.bias ? P.bias + e * P.bias_stride : nullptr;
    T *o = (T *)P.out + row * P.ldo;
    mma_act a = args.act;
#ifndef MMA_ACT_RT /* measurement: the run-time switch of every pair */
    if (ACT >= 0) a.act = ACT;
#endif
    if (a.gated) {
      const int j = col >> 1;
      if (j >= (P.N >> 1)) return;
      float g = v0 + gemm1_bias(a, b, P.N, j, 0);
      float u = v1 + gemm1_bias(a, b, P.N, j, 1);
      o[j] = from_f32<T>(act_apply(a, g, u));
    } else {
      if (col < P.N)
        o[col] = from_f32<T>(act_apply(a, v0 + (b ? b[col] : 0.0f), 0.0f));
      if (col + 1 < P.N)
        o[col + 1] =
            from_f32<T>(act_apply(a, v1 + (b ? b[col + 1] : 0.0f), 0.0f));
    }
  }
  /* The tile's rows [row0, row0 + rows), columns [n0, n0 + BN) of the
   * interleaved (gate, up) space, from stg (row stride LD). */
  template <class T, int BN, int LD, int THREADS>
  static __device__ __forceinline__ void
  store_tile(const mma_gemm_args &args, const mma_problem &P, int e, int row0,
             int rows, int n0, const float *stg, int z) {
    if (args.split > 1) { /* f32 partials, four columns a unit */
      constexpr int CH = BN / 4;
#pragma unroll 1
      for (int u = threadIdx.x; u < rows * CH; u += THREADS) {
        const int r = u / CH, c0 = (u % CH) * 4, col = n0 + c0;
        if (col >= P.N) continue;
        const float *s = stg + r * LD + c0;
        float *p = P.part + z * P.part_zstride + (row0 + r) * P.ldp + col;
        if (col + 4 <= P.N && ((uintptr_t)p & 15) == 0) {
          *(float4 *)p = *(const float4 *)s;
        } else {
          for (int q = 0; q < 4 && col + q < P.N; q++)
            p[q] = s[q];
        }
      }
      return;
    }
    const float *b = P.bias ? P.bias + e * P.bias_stride : nullptr;
    mma_act a = args.act;
#ifndef MMA_ACT_RT /* measurement: the run-time switch of every pair */
    if (ACT >= 0) a.act = ACT;
#endif
    if (a.gated) { /* eight outputs (sixteen accumulators) a unit */
      constexpr int CH = BN / 16;
      const int I = P.N >> 1;
#pragma unroll 1
      for (int u = threadIdx.x; u < rows * CH; u += THREADS) {
        const int r = u / CH, c = u % CH, jb = (n0 >> 1) + c * 8;
        if (jb >= I) continue;
        const float *s = stg + r * LD + c * 16;
        float v[8];
#pragma unroll
        for (int q = 0; q < 8; q++) {
          const int j = jb + q < I ? jb + q : I - 1; /* bias stays in row */
          v[q] = act_apply(a, s[2 * q] + gemm1_bias(a, b, P.N, j, 0),
                           s[2 * q + 1] + gemm1_bias(a, b, P.N, j, 1));
        }
        store8<T>((T *)P.out + (row0 + r) * P.ldo + jb, v,
                  I - jb < 8 ? I - jb : 8);
      }
    } else { /* eight outputs a unit */
      constexpr int CH = BN / 8;
#pragma unroll 1
      for (int u = threadIdx.x; u < rows * CH; u += THREADS) {
        const int r = u / CH, col = n0 + (u % CH) * 8;
        if (col >= P.N) continue;
        const float *s = stg + r * LD + (u % CH) * 8;
        float v[8];
#pragma unroll
        for (int q = 0; q < 8; q++) {
          const int cq = col + q < P.N ? col + q : P.N - 1;
          v[q] = act_apply(a, s[q] + (b ? b[cq] : 0.0f), 0.0f);
        }
        store8<T>((T *)P.out + (row0 + r) * P.ldo + col, v,
                  P.N - col < 8 ? P.N - col : 8);
      }
    }
  }
};

/* The activations with a gemm1_<NAME>.cu file: X(NAME, activation). The
 * launcher's switch, the set-up and the declarations below come from this
 * list, and gemm1.cu checks at compile time that it covers every
 * activation the instantiation table promises. */
#define MMA_GEMM1_ACTS(X)                                                      \
  X(silu, MOE_ACT_SILU)                                                        \
  X(gelu, MOE_ACT_GELU)                                                        \
  X(relu2, MOE_ACT_RELU2)                                                      \
  X(swiglu_oai, MOE_ACT_SWIGLU_OAI)

/* Launch and shared-memory set-up of the 64- and 128-row tiles for one
 * activation, both dtypes. */
#define MMA_GEMM1_ACT_DECL(NAME, ACT)                                          \
  extern "C" cudaError_t mma_gemm1_launch_##NAME(moe_dtype dt, mma_cfg cfg,    \
                                                 const mma_gemm_args *a,       \
                                                 dim3 grid, cudaStream_t s);   \
  extern "C" cudaError_t mma_gemm1_prepare_##NAME(moe_dtype dt);
MMA_GEMM1_ACTS(MMA_GEMM1_ACT_DECL)

template <class T, int ACT>
static cudaError_t gemm1_launch_act(mma_cfg cfg, const mma_gemm_args *a,
                                    dim3 grid, cudaStream_t s) {
  switch (cfg) {
  case MMA_CFG_64:
    return gemm_launch<T, Cfg64, Gemm1Epi<ACT>>(a, grid, s);
  case MMA_CFG_128:
    return gemm_launch<T, Cfg128, Gemm1Epi<ACT>>(a, grid, s);
  default:
    return cudaErrorInvalidValue;
  }
}

template <int ACT>
static cudaError_t gemm1_launch_dt(moe_dtype dt, mma_cfg cfg,
                                   const mma_gemm_args *a, dim3 grid,
                                   cudaStream_t s) {
#define MMA_G1A_CASE(T, DT)                                                    \
  case DT:                                                                     \
    return gemm1_launch_act<T, ACT>(cfg, a, grid, s);
  switch (dt) {
    MMA_DTYPES(MMA_G1A_CASE)
  default:
    return cudaErrorInvalidValue;
  }
#undef MMA_G1A_CASE
}

template <int ACT> static cudaError_t gemm1_prepare_dt(moe_dtype dt) {
  cudaError_t e;
#define MMA_G1P_CASE(T, DT)                                                    \
  case DT:                                                                     \
    e = gemm_smem<T, Cfg64, Gemm1Epi<ACT>>();                                  \
    return e != cudaSuccess ? e : gemm_smem<T, Cfg128, Gemm1Epi<ACT>>();
  switch (dt) {
    MMA_DTYPES(MMA_G1P_CASE)
  default:
    return cudaErrorInvalidValue;
  }
#undef MMA_G1P_CASE
}

/* The body of gemm1_<act>.cu. */
#define MMA_GEMM1_ACT_UNIT(NAME, ACT)                                          \
  extern "C" cudaError_t mma_gemm1_launch_##NAME(moe_dtype dt, mma_cfg cfg,    \
                                                 const mma_gemm_args *a,       \
                                                 dim3 grid, cudaStream_t s) {  \
    return gemm1_launch_dt<ACT>(dt, cfg, a, grid, s);                          \
  }                                                                            \
  extern "C" cudaError_t mma_gemm1_prepare_##NAME(moe_dtype dt) {              \
    return gemm1_prepare_dt<ACT>(dt);                                          \
  }

#endif
