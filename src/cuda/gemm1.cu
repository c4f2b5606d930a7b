/*
 * gemm1.cu - grouped GEMM1: act[r] = act(x[tok(r)] @ W13[e]^T + b13[e]).
 * The launcher (the 16-row tile here, with the activation switched at run
 * time; the 64- and 128-row tiles in gemm1_<act>.cu, one kernel per
 * activation), the split-K finish (act_reduce: the CTAs wrote f32
 * partials), the shared-memory set-up and the instantiation table.
 */
#include "gemm1_epi.cuh"

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

/* Every activation the table promises has its per-activation kernels. */
#define MMA_G1_BIT(NAME, ACT) | MOE_BIT(ACT)
static_assert(((MMA_ACTS_GATED | MMA_ACTS_PLAIN) &
               ~(0u MMA_GEMM1_ACTS(MMA_G1_BIT))) == 0,
              "an activation of MMA_ACTS_* without a gemm1_<act>.cu kernel");

/* GEMM1's kernel for the layer's activation. */
static cudaError_t gemm1_launch_big(moe_dtype dt, mma_cfg cfg,
                                    const mma_gemm_args *a, dim3 grid,
                                    cudaStream_t s) {
#define MMA_G1_LAUNCH(NAME, ACT)                                               \
  case ACT:                                                                    \
    return mma_gemm1_launch_##NAME(dt, cfg, a, grid, s);
  switch (a->act.act) {
    MMA_GEMM1_ACTS(MMA_G1_LAUNCH)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" int mma_gemm1_instances(const mma_inst **tab) {
  *tab = gemm1_table;
  return (int)(sizeof gemm1_table / sizeof gemm1_table[0]);
}

extern "C" cudaError_t mma_launch_gemm1(moe_dtype dt, mma_cfg cfg,
                                        const mma_gemm_args *a, dim3 grid,
                                        cudaStream_t s) {
  if (cfg != MMA_CFG_16) return gemm1_launch_big(dt, cfg, a, grid, s);
#define GEMM1_CASE(T, DT)                                                      \
  case DT:                                                                     \
    return gemm_launch<T, Cfg16, Gemm1Epi<-1>>(a, grid, s);
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
    e = gemm_smem<T, Cfg16, Gemm1Epi<-1>>();                                   \
    break;
  switch (dt) {
    MMA_DTYPES(PREP_CASE)
  default:
    return cudaErrorInvalidValue;
  }
#define MMA_G1_PREP(NAME, ACT)                                                 \
  if (e == cudaSuccess) e = mma_gemm1_prepare_##NAME(dt);
  MMA_GEMM1_ACTS(MMA_G1_PREP)
  return e;
}

extern "C" cudaError_t mma_gemm_probe(void) {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(
      &attr, grouped_gemm_kernel<__nv_bfloat16, Cfg16, Gemm1Epi<-1>>);
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
