/*
 * gemm1.cu - grouped GEMM1: act[r] = act(x[tok(r)] @ W13[e]^T + b13[e]).
 *
 * Gated weights are read so that every accumulator pair a thread holds is
 * (gate j, up j): interleaved checkpoints (SWIGLU_OAI) are that already; for
 * [gate; up] halves the B loader maps tile row n to weight row n/2 (even n)
 * or I + n/2 (odd n). The activation is then a per-thread epilogue.
 * With split-K the CTAs write f32 partials and act_reduce finishes.
 */
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
 * switch per accumulator pair). */
template <int ACT> struct Gemm1Epi {
  static __device__ __forceinline__ int wrow(const mma_act &a, int N, int n) {
    return gemm1_wrow(a, N, n);
  }
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
    a.act = ACT;
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
};

/* Split-K finish: one thread per output element of both problems. */
template <class T>
__global__ void act_reduce_kernel(const mma_gemm_args args,
                                  const int32_t *row_expert, int E_local,
                                  int max_rows) {
  pdl_enter();
  const int pi = blockIdx.y;
  const mma_problem &P = pi ? args.p[1] : args.p[0];
  if (!P.out) return;
  const int rows = pi ? P.rows : __ldg(args.offsets + E_local);
  const mma_act &a = args.act;
  const int nout = a.gated ? P.N >> 1 : P.N;
  const long long total = (long long)min(rows, max_rows) * nout;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
       idx < total; idx += (long long)gridDim.x * blockDim.x) {
    const int r = (int)(idx / nout), j = (int)(idx % nout);
    const int e = pi ? 0 : __ldg(row_expert + r);
    const float *b = P.bias ? P.bias + e * P.bias_stride : nullptr;
    const float *p = P.part + r * P.ldp;
    float v;
    if (a.gated) {
      float g = 0.0f, u = 0.0f;
      for (int z = 0; z < args.split; z++) {
        g += p[z * P.part_zstride + 2 * j];
        u += p[z * P.part_zstride + 2 * j + 1];
      }
      v = act_apply(a, g + gemm1_bias(a, b, P.N, j, 0),
                    u + gemm1_bias(a, b, P.N, j, 1));
    } else {
      float g = 0.0f;
      for (int z = 0; z < args.split; z++)
        g += p[z * P.part_zstride + j];
      v = act_apply(a, g + (b ? b[j] : 0.0f), 0.0f);
    }
    ((T *)P.out)[r * P.ldo + j] = from_f32<T>(v);
  }
}

/* ---- instantiation: the dtype list makes both the kernels and the table */
#define GEMM1_ENTRY(T, DT) {DT, MMA_ACTS_GATED, MMA_ACTS_PLAIN},
static const mma_inst gemm1_table[] = {MMA_DTYPES(GEMM1_ENTRY)};

/* GEMM1's kernel for the layer's activation (every bit of MMA_ACTS_GATED
 * and MMA_ACTS_PLAIN has its case). */
template <class T>
static cudaError_t gemm1_dispatch(mma_cfg cfg, const mma_gemm_args *a,
                                  dim3 grid, cudaStream_t s) {
  switch (a->act.act) {
  case MOE_ACT_SILU:
    return gemm_dispatch<T, Gemm1Epi<MOE_ACT_SILU>>(cfg, a, grid, s);
  case MOE_ACT_GELU:
    return gemm_dispatch<T, Gemm1Epi<MOE_ACT_GELU>>(cfg, a, grid, s);
  case MOE_ACT_RELU2:
    return gemm_dispatch<T, Gemm1Epi<MOE_ACT_RELU2>>(cfg, a, grid, s);
  case MOE_ACT_SWIGLU_OAI:
    return gemm_dispatch<T, Gemm1Epi<MOE_ACT_SWIGLU_OAI>>(cfg, a, grid, s);
  default:
    return cudaErrorInvalidValue;
  }
}

template <class T> static cudaError_t gemm1_set_smem() {
  cudaError_t e;
  if ((e = gemm_set_smem<T, Gemm1Epi<MOE_ACT_SILU>>()) != cudaSuccess) return e;
  if ((e = gemm_set_smem<T, Gemm1Epi<MOE_ACT_GELU>>()) != cudaSuccess) return e;
  if ((e = gemm_set_smem<T, Gemm1Epi<MOE_ACT_RELU2>>()) != cudaSuccess)
    return e;
  return gemm_set_smem<T, Gemm1Epi<MOE_ACT_SWIGLU_OAI>>();
}

extern "C" int mma_gemm1_instances(const mma_inst **tab) {
  *tab = gemm1_table;
  return (int)(sizeof gemm1_table / sizeof gemm1_table[0]);
}

extern "C" cudaError_t mma_launch_gemm1(moe_dtype dt, mma_cfg cfg,
                                        const mma_gemm_args *a, dim3 grid,
                                        cudaStream_t s) {
#define GEMM1_CASE(T, DT)                                                      \
  case DT:                                                                     \
    return gemm1_dispatch<T>(cfg, a, grid, s);
  switch (dt) {
    MMA_DTYPES(GEMM1_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t mma_launch_act_reduce(moe_dtype dt,
                                             const mma_gemm_args *a,
                                             const int32_t *row_expert,
                                             int E_local, int max_rows,
                                             cudaStream_t s) {
  int n = a->p[0].N > a->p[1].N ? a->p[0].N : a->p[1].N;
  long long total = (long long)max_rows * n;
  int blocks = (int)((total + 255) / 256);
  if (blocks < 1) blocks = 1;
  if (blocks > 4096) blocks = 4096;
  dim3 grid(blocks, 2);
#define ACTRED_CASE(T, DT)                                                     \
  case DT:                                                                     \
    return launch_kernel(act_reduce_kernel<T>, grid, dim3(256), 0, s, a->pdl,  \
                         *a, row_expert, E_local, max_rows);
  switch (dt) {
    MMA_DTYPES(ACTRED_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t mma_gemm1_prepare(moe_dtype dt) {
  cudaError_t e;
#define PREP_CASE(T, DT)                                                       \
  case DT:                                                                     \
    e = gemm1_set_smem<T>();                                                   \
    break;
  switch (dt) {
    MMA_DTYPES(PREP_CASE)
  default:
    return cudaErrorInvalidValue;
  }
  return e;
}

extern "C" cudaError_t mma_gemm_probe(void) {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(
      &attr, grouped_gemm_kernel<__nv_bfloat16, Cfg16, Gemm1Epi<MOE_ACT_SILU>>);
}

extern "C" int mma_cfg_bm(mma_cfg c) {
  return c == MMA_CFG_16 ? Cfg16::BM : c == MMA_CFG_64 ? Cfg64::BM : Cfg128::BM;
}
extern "C" int mma_cfg_bn(mma_cfg c) {
  return c == MMA_CFG_16 ? Cfg16::BN : c == MMA_CFG_64 ? Cfg64::BN : Cfg128::BN;
}
extern "C" int mma_cfg_smem(mma_cfg c) {
  return c == MMA_CFG_16   ? Cfg16::SMEM
         : c == MMA_CFG_64 ? Cfg64::SMEM
                           : Cfg128::SMEM;
}
