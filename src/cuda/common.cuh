/*
 * common.cuh - device helpers shared by the cuda-mma kernels: element
 * conversion, the activation functions, and thin wrappers around the sm_80+
 * instructions the GEMMs use (cp.async, ldmatrix, mma.sync m16n8k16).
 */
#ifndef MOE_CUDA_COMMON_CUH
#define MOE_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "mma.h"

/* ---- element conversion ---- */
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}

template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_f32(float v) {
  return __float2half_rn(v);
}

/* The dtypes the GEMMs are instantiated for: every launcher's dispatch and
 * every instantiation table is generated from this one list. */
#define MMA_DTYPES(X)                                                          \
  X(__nv_bfloat16, MOE_DTYPE_BF16)                                             \
  X(__half, MOE_DTYPE_F16)

/* The activations act_apply handles, by gating (kept next to its switch). */
#define MMA_ACTS_GATED                                                         \
  (MOE_BIT(MOE_ACT_SILU) | MOE_BIT(MOE_ACT_GELU) | MOE_BIT(MOE_ACT_SWIGLU_OAI))
#define MMA_ACTS_PLAIN                                                         \
  (MOE_BIT(MOE_ACT_SILU) | MOE_BIT(MOE_ACT_GELU) | MOE_BIT(MOE_ACT_RELU2))

/* ---- activations (moe.h semantics). The switch is uniform across the
 * grid; the GEMM1 kernels set a.act to a compile-time constant so that
 * their unrolled epilogues hold one case (gemm1.cu), the small kernels
 * (act_reduce, gemv, decode) switch at run time ---- */
__device__ __forceinline__ float act_apply(const mma_act &a, float g, float u) {
  switch (a.act) {
  case MOE_ACT_SILU: {
    /* The approximate exp and reciprocal (MUFU: two instructions where
     * expf and an IEEE division take ~16; relative error ~1e-6 against
     * the bf16 output's 4e-3). g < -87: the divisor overflows to inf or
     * past 2^126, and the result is 0, the limit. */
    float s = __fdividef(g, 1.0f + __expf(-g));
    return a.gated ? s * u : s;
  }
  case MOE_ACT_GELU: {
    float s = 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
    return a.gated ? s * u : s;
  }
  case MOE_ACT_RELU2: {
    float r = fmaxf(g, 0.0f);
    return r * r;
  }
  case MOE_ACT_SWIGLU_OAI: {
    g = fminf(g, a.limit);
    u = fminf(fmaxf(u, -a.limit), a.limit);
    return __fdividef((u + 1.0f) * g, 1.0f + __expf(-a.alpha * g));
  }
  default:
    return 0.0f;
  }
}

/* ---- programmatic dependent launch (sm_90+) ----
 * Every kernel of a forward waits for its predecessor's completion before
 * touching memory (griddepcontrol.wait), then lets its own successor be
 * scheduled (launch_dependents), so that a successor's launch and CTA
 * set-up overlap the predecessor's tail. Without the launch attribute, or
 * below sm_90, both are no-ops. */
__device__ __forceinline__ void pdl_enter() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* Launches kern with the programmatic-serialization attribute when pdl. */
template <class... KP, class... A>
static inline cudaError_t launch_kernel(void (*kern)(KP...), dim3 grid,
                                        dim3 block, size_t smem, cudaStream_t s,
                                        int pdl, A... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at;
  cfg.numAttrs = pdl ? 1 : 0;
  cudaError_t e = cudaLaunchKernelEx(&cfg, kern, args...);
  return e != cudaSuccess ? e : cudaGetLastError();
}

/* ---- sm_80 instructions ---- */
__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte async copy; src_bytes < 16 zero-fills the rest (0: all zeros). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src,
                                           int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
               "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void st_shared_v4(uint32_t addr, uint4 v) {
  asm volatile("st.shared.v4.u32 [%0], {%1,%2,%3,%4};\n" ::"r"(addr), "r"(v.x),
               "r"(v.y), "r"(v.z), "r"(v.w));
}

/* D = A * B + D, m16n8k16, fp32 accumulate. */
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                                          uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void
mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                         uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4],
                                                  const uint32_t (&a)[4],
                                                  uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif
