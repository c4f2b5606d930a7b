/*
 * backends.c - the three CPU backends as data: vtables and support rows.
 * They share one layer implementation (layer_cpu.c); cpu-ref runs the
 * scalar reference, the others the grouped fast path with their own tile
 * kernels.
 */
#include "cpu_internal.h"

#include <stdio.h>

#define ALL_DTYPES                                                             \
  (MOE_BIT(MOE_DTYPE_F32) | MOE_BIT(MOE_DTYPE_F16) | MOE_BIT(MOE_DTYPE_BF16))
#define BOTH (MOE_GATING_PLAIN | MOE_GATING_GATED)

/* Routing scratch is on the stack, so E is bounded. RELU2 is plain only and
 * SWIGLU_OAI gated only (the layouts those activations exist for). */
#define CPU_ROWS(FEATURES)                                                     \
  {                                                                            \
    {{MOE_PRED_CPU, 0, (FEATURES)},                                            \
     ALL_DTYPES,                                                               \
     MOE_BIT(MOE_ACT_SILU) | MOE_BIT(MOE_ACT_GELU),                            \
     BOTH,                                                                     \
     1,                                                                        \
     1,                                                                        \
     MOE_CPU_ROUTE_MAX_E,                                                      \
     0},                                                                       \
        {{MOE_PRED_CPU, 0, (FEATURES)},                                        \
         ALL_DTYPES,                                                           \
         MOE_BIT(MOE_ACT_RELU2),                                               \
         MOE_GATING_PLAIN,                                                     \
         1,                                                                    \
         1,                                                                    \
         MOE_CPU_ROUTE_MAX_E,                                                  \
         0},                                                                   \
    {                                                                          \
      {MOE_PRED_CPU, 0, (FEATURES)}, ALL_DTYPES, MOE_BIT(MOE_ACT_SWIGLU_OAI),  \
          MOE_GATING_GATED, 1, 1, MOE_CPU_ROUTE_MAX_E, 0                       \
    }                                                                          \
  }

/* The CPU code is generic over dtype, activation and gating: every
 * combination is compiled in. Nothing runs on a GPU (sm != 0). */
static int cpu_kernel_compiled(int sm, moe_dtype dtype, moe_activation act,
                               int gated) {
  return sm == 0 && (unsigned)dtype < MOE_DTYPE_COUNT &&
         (unsigned)act < MOE_ACT_COUNT && (gated == 0 || gated == 1);
}

static void cpu_destroy(void *impl) {
  cpu_layer_destroy(impl);
}

static moe_status probe_features(uint32_t need, const char *name, char *msg,
                                 size_t n) {
  if ((moe_cpu_detect_features() & need) == need) return MOE_OK;
  if (msg && n) snprintf(msg, n, "%s: this CPU lacks its instructions", name);
  return MOE_ERR_UNSUPPORTED;
}

/* ---- cpu-ref ---- */
static const moe_support_row ref_rows[] = CPU_ROWS(0);

static moe_status ref_create(const moe_backend_env *env, const moe_shape *s,
                             const moe_weights *w, void **impl, char *msg,
                             size_t n) {
  return cpu_layer_create(env, s, w, NULL, impl, msg, n);
}

const moe_backend moe_backend_cpu_ref = {
    "cpu-ref",
    100,
    &moe_memops_host,
    ref_rows,
    (int)(sizeof ref_rows / sizeof ref_rows[0]),
    cpu_kernel_compiled,
    NULL,
    ref_create,
    cpu_destroy,
    cpu_layer_route,
    cpu_layer_forward,
    0, /* one path at every size */
};

#ifdef MOE_HAVE_CPU_X86
/* ---- cpu-avx2 ---- */
#define AVX2_FEATURES (MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C)
static const moe_support_row avx2_rows[] = CPU_ROWS(AVX2_FEATURES);

static moe_status avx2_probe(const moe_device *dev, char *msg, size_t n) {
  return probe_features(AVX2_FEATURES, "cpu-avx2", msg, n);
}

static moe_status avx2_create(const moe_backend_env *env, const moe_shape *s,
                              const moe_weights *w, void **impl, char *msg,
                              size_t n) {
  return cpu_layer_create(env, s, w, &cpu_kernels_avx2, impl, msg, n);
}

const moe_backend moe_backend_cpu_avx2 = {
    "cpu-avx2",
    60,
    &moe_memops_host,
    avx2_rows,
    (int)(sizeof avx2_rows / sizeof avx2_rows[0]),
    cpu_kernel_compiled,
    avx2_probe,
    avx2_create,
    cpu_destroy,
    cpu_layer_route,
    cpu_layer_forward,
    0, /* one path at every size */
};

/* ---- cpu-avx512 ---- */
#define AVX512_FEATURES                                                        \
  (MOE_CPU_AVX512F | MOE_CPU_AVX512BW | MOE_CPU_AVX512VL | MOE_CPU_AVX512BF16)
static const moe_support_row avx512_rows[] = CPU_ROWS(AVX512_FEATURES);

static moe_status avx512_probe(const moe_device *dev, char *msg, size_t n) {
  return probe_features(AVX512_FEATURES, "cpu-avx512", msg, n);
}

static moe_status avx512_create(const moe_backend_env *env, const moe_shape *s,
                                const moe_weights *w, void **impl, char *msg,
                                size_t n) {
  return cpu_layer_create(env, s, w, &cpu_kernels_avx512, impl, msg, n);
}

const moe_backend moe_backend_cpu_avx512 = {
    "cpu-avx512",
    50,
    &moe_memops_host,
    avx512_rows,
    (int)(sizeof avx512_rows / sizeof avx512_rows[0]),
    cpu_kernel_compiled,
    avx512_probe,
    avx512_create,
    cpu_destroy,
    cpu_layer_route,
    cpu_layer_forward,
    0, /* one path at every size */
};
#endif
