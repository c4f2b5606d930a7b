/*
 * backend.h - the contract between the front end (moe.c, plan.c) and the
 * backends. Not installed; never included by users.
 *
 * A backend is a vtable plus a table of support rows. The planner reads the
 * rows (data, not code) to decide whether the backend can serve a layer on a
 * device; the backend's functions are called only after that.
 */
#ifndef MOE_BACKEND_H
#define MOE_BACKEND_H

#include "moe.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the machine ---- */

/* CPU features, a bit each. */
enum {
  MOE_CPU_AVX2 = 1u << 0,
  MOE_CPU_FMA = 1u << 1,
  MOE_CPU_F16C = 1u << 2,
  MOE_CPU_AVX512F = 1u << 3,
  MOE_CPU_AVX512BW = 1u << 4,
  MOE_CPU_AVX512VL = 1u << 5,
  MOE_CPU_AVX512BF16 = 1u << 6
};

typedef struct moe_device {
  /* GPU (is_cuda = 1): a real device or a what-if one (overridden = 1). */
  int is_cuda;
  int overridden;    /* figures come from the known-device table */
  int runnable;      /* 1 when kernels can actually be launched */
  int ordinal;       /* CUDA device ordinal */
  int sm;            /* major * 10 + minor: 90, 120, 121 ... */
  int sms;           /* multiprocessors */
  int smem_optin;    /* shared memory per block after opt-in, bytes */
  int l2_bytes;      /* L2 cache, bytes */
  double mem_bw_gbs; /* datasheet memory bandwidth, GB/s (0 unknown) */
  char name[192];
  /* CPU (always filled). */
  uint32_t cpu_features;
  int cpu_cores;
  char cpu_name[96];
} moe_device;

/* Device predicates, named as what they are. */
typedef enum moe_pred_kind {
  MOE_PRED_CPU = 0,     /* the host CPU with all of `cpu_features` */
  MOE_PRED_EXACT = 1,   /* exact(sm): this capability only */
  MOE_PRED_FAMILY = 2,  /* family(sm): same major capability */
  MOE_PRED_AT_LEAST = 3 /* at_least(sm): this capability or newer */
} moe_pred_kind;

typedef struct moe_device_pred {
  moe_pred_kind kind;
  int sm;                /* for GPU kinds */
  uint32_t cpu_features; /* for MOE_PRED_CPU */
} moe_device_pred;

int moe_pred_exact(int sm, const moe_device *dev);
int moe_pred_family(int sm, const moe_device *dev);
int moe_pred_at_least(int sm, const moe_device *dev);
int moe_pred_admits(moe_device_pred pred, const moe_device *dev);
/* "exact(121)", "family(120)", "at_least(80)", "cpu(avx2+fma)" */
void moe_pred_format(moe_device_pred pred, char *buf, size_t n);

/* ---- support rows: what a backend has kernels for ---- */
enum { MOE_GATING_PLAIN = 1u << 0, MOE_GATING_GATED = 1u << 1 };
#define MOE_BIT(x) (1u << (unsigned)(x))

typedef struct moe_support_row {
  moe_device_pred device;
  uint32_t dtypes;      /* MOE_BIT(moe_dtype) */
  uint32_t activations; /* MOE_BIT(moe_activation) */
  uint32_t gating;      /* MOE_GATING_* */
  int align_h;          /* H % align_h == 0 (1: any) */
  int align_i;          /* I % align_i == 0 (1: any) */
  int max_experts;      /* 0: no limit */
  int smem_bytes;       /* shared memory per block its kernels need */
} moe_support_row;

/* A known defect: (backend, device, dtype, activation) excluded. */
typedef struct moe_quirk {
  const char *backend;
  moe_device_pred device;
  uint32_t dtypes;
  uint32_t activations;
  const char *reason;
  const char *reference;
  const char *lift_when;
} moe_quirk;

/* ---- a validated layer shape ---- */
typedef struct moe_shape {
  int E;       /* global experts */
  int E_local; /* experts whose weights are here */
  int k;
  int H, I, N1; /* N1 = 2I gated, I plain */
  int Is, N1s;  /* shared expert (0 when none) */
  moe_activation act;
  int gated;
  float swiglu_alpha, swiglu_limit; /* defaults filled in */
  moe_dtype dtype;
  moe_routing routing;       /* scaling factor filled in (never 0) */
  const int32_t *expert_map; /* NULL or E entries (owned by the layer) */
  int max_tokens;            /* > 0 */
  /* Which optional tensors the layer's weights carry (the self-check builds
   * its tiny problem with the same ones). */
  int has_expert_bias;     /* w13_bias and/or w2_bias */
  int has_correction_bias; /* routing correction bias */
} moe_shape;

/* What a backend gets from the context. */
typedef struct moe_backend_env {
  int num_threads; /* > 0 */
  int ref_double_accumulation;
  const moe_device *device;
} moe_backend_env;

/* Memory operations of one memory space (host: malloc/memcpy). */
typedef struct moe_memops {
  moe_memory memory;
  moe_status (*alloc)(void **p, size_t bytes);
  void (*release)(void *p);
  moe_status (*upload)(void *dst, const void *host_src, size_t bytes);
  moe_status (*download)(void *host_dst, const void *src, size_t bytes);
  moe_status (*fill)(void *dst, int byte, size_t bytes);
  moe_status (*sync)(void); /* waits for the memory space's own work */
} moe_memops;

/* One call's tensors. Exactly one of logits / (ids, weights) is set. */
typedef struct moe_batch {
  const void *x;        /* [M][H] dtype */
  const float *logits;  /* [M][E] or NULL */
  const int32_t *ids;   /* [M][k] or NULL */
  const float *weights; /* [M][k] or NULL */
  int M;
  void *out; /* [M][H] dtype */
} moe_batch;

typedef struct moe_backend {
  const char *name;
  int priority; /* lower is tried first */
  const moe_memops *memops;
  const moe_support_row *rows;
  int n_rows;
  /* 1 when this build holds the kernel a row promises for (sm, dtype,
   * activation, gated); sm = 0 on the CPU. Used by the consistency test and
   * by the planner. */
  int (*kernel_compiled)(int sm, moe_dtype dtype, moe_activation act,
                         int gated);
  /* Optional: can the real device run this backend at all (kernel image
   * present, driver new enough)? Called only when dev->runnable. */
  moe_status (*probe)(const moe_device *dev, char *msg, size_t n);
  /* Builds the backend's state for one layer: packs weights, allocates the
   * workspace for shape->max_tokens. */
  moe_status (*create)(const moe_backend_env *env, const moe_shape *shape,
                       const moe_weights *w, void **impl, char *msg, size_t n);
  void (*destroy)(void *impl);
  moe_status (*route)(void *impl, const float *logits, int M, int32_t *ids,
                      float *weights, void *stream, char *msg, size_t n);
  moe_status (*forward)(void *impl, const moe_batch *b, void *stream, char *msg,
                        size_t n);
  /* 0, or, for a backend whose kernels change with the rows per expert
   * (M * k / E), the rows per expert that the self-check's second call
   * reaches, so that both of its paths are checked. */
  int self_check_rows;
} moe_backend;

/* Every backend compiled into this build, in priority order. */
const moe_backend *const *moe_backend_registry(int *count);
const moe_backend *moe_backend_find(const char *name);

/* ---- element conversion shared by host code ---- */
float moe_bf16_to_f32(uint16_t h);
uint16_t moe_f32_to_bf16(float f); /* round to nearest even, NaN kept */
float moe_f16_to_f32(uint16_t h);
uint16_t moe_f32_to_f16(float f); /* round to nearest even */
size_t moe_dtype_size(moe_dtype d);
float moe_load_elem(const void *p, size_t i, moe_dtype d);
void moe_store_elem(void *p, size_t i, moe_dtype d, float v);

#ifdef __cplusplus
}
#endif
#endif /* MOE_BACKEND_H */
