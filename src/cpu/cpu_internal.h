/*
 * cpu_internal.h - what the files of the CPU backends share: the layer
 * object, the thread pool, the inner-product tile kernels and the two forward
 * algorithms (reference and fast). Not part of the backend contract.
 */
#ifndef MOE_CPU_INTERNAL_H
#define MOE_CPU_INTERNAL_H

#include "cpu.h"
#include "threadpool.h"

#include <stddef.h>
#include <stdint.h>

/* Tile kernels compute up to CPU_TILE_R weight rows against up to
 * CPU_TILE_T activation vectors. */
#define CPU_TILE_R 4
#define CPU_TILE_T 4

/*
 * out[r * CPU_TILE_T + t] = dot(w + r * ldw, xs[t]) over K elements, for
 * r < nr, t < nt. w is in the kernel's weight dtype; xs[t] are bf16 or f32
 * vectors (cpu_kernels.vec_bf16). Every (r, t) result is computed with the
 * same instruction sequence whatever nr, nt and the tile position are, so the
 * fast path gives bit-identical results for any thread count.
 * pf, when not NULL, is the next block of rows (same ldw and shape): the
 * kernel prefetches it toward L2 as it streams w, so the memory system
 * always has the next weights in flight (prefetches change no result).
 */
typedef void (*cpu_tile_fn)(const void *w, size_t ldw, int nr,
                            const void *const *xs, int nt, int K, float *out,
                            const void *pf);

typedef struct cpu_kernels {
  cpu_tile_fn tile[MOE_DTYPE_COUNT]; /* by weight dtype */
  int vec_bf16[MOE_DTYPE_COUNT];     /* 1: activation vectors are bf16 */
  uint32_t needs;                    /* MOE_CPU_* the kernels execute */
  const char *isa;                   /* for messages: "avx2", "avx512" */
} cpu_kernels;

#if defined(__x86_64__) || defined(_M_X64)
extern const cpu_kernels cpu_kernels_avx2;
extern const cpu_kernels cpu_kernels_avx512;
#endif

/* Activation in double, for the reference with double accumulation. Same
 * rules as moe_cpu_activation. */
double moe_cpu_activation_d(const moe_shape *s, double gate, double up);

/* Fast path tokens per internal chunk: bounds the workspace (the activation
 * and accumulator buffers grow with it) while keeping enough tokens per
 * expert to amortise each pass over the weights. */
#define CPU_FAST_CHUNK 1024

typedef struct cpu_layer {
  moe_shape s;
  int32_t *map; /* copy of the expert map, or NULL */
  moe_weights w;
  const cpu_kernels *kern; /* NULL: reference */
  int ref_double;
  int nthreads;
  cpu_pool *pool;
  int chunk; /* tokens per internal chunk */
  /* Routing results of one chunk. */
  int32_t *ids;
  float *wts;
  /* Reference: per-thread scratch (h, a, y, x row), doubles. */
  double *ref_scratch;
  size_t ref_scratch_per_thread;
  /* Fast path workspace. */
  void *xcvt;        /* [chunk][H] activation-format copy of x, or NULL */
  int32_t *cnt;      /* [E_local + 1] counts, then offsets */
  int32_t *pair_tok; /* [chunk * k] token of each (token, expert) pair */
  float *pair_w;     /* [chunk * k] its routing weight */
  int32_t *touched;  /* [E_local] experts with tokens, ascending */
  void *act;         /* [chunk * k][I] intermediate, activation format */
  void *act_shared;  /* [chunk][Is] */
  float *y;          /* [chunk][H] fp32 accumulator */
} cpu_layer;

/* Forward of one chunk (M <= chunk) with ids/weights already known. */
void cpu_ref_forward_chunk(cpu_layer *L, const void *x, const int32_t *ids,
                           const float *wts, int M, void *out);
void cpu_fast_forward_chunk(cpu_layer *L, const void *x, const int32_t *ids,
                            const float *wts, int M, void *out);

/* Local weight index of a global expert id, or -1 (not here, or invalid). */
static inline int cpu_local_expert(const cpu_layer *L, int32_t id) {
  if (id < 0 || id >= L->s.E) return -1;
  int e = L->map ? L->map[id] : id;
  return (e >= 0 && e < L->s.E_local) ? e : -1;
}

/* Backend entry points shared by the three vtables (layer_cpu.c). */
moe_status cpu_layer_create(const moe_backend_env *env, const moe_shape *s,
                            const moe_weights *w, const cpu_kernels *kern,
                            void **impl, char *msg, size_t n);
void cpu_layer_destroy(void *impl);
moe_status cpu_layer_route(void *impl, const float *logits, int M, int32_t *ids,
                           float *weights, void *stream, char *msg, size_t n);
moe_status cpu_layer_forward(void *impl, const moe_batch *b, void *stream,
                             char *msg, size_t n);

#endif
