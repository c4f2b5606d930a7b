/*
 * mma.h - internals of the cuda-mma backend: the argument blocks of its
 * kernels and their extern "C" launchers. Each launcher enqueues one kernel
 * on a stream, checks the launch, and returns a cudaError_t (the backend
 * turns it into a moe_status and a message).
 *
 * Data flow of one forward call (M tokens, k slots, "pair" p = t * k + j):
 *   route        logits [M][E] -> ids, weights [M][k]
 *   permute      ids -> pair_e[p] (local expert or -1), per-expert offsets,
 *                sorted_pair / sorted_tok / row_expert [rows], tile list
 *   gemm1        act[r] = act(x[sorted_tok[r]] @ W13[e]^T + b13)   (fused)
 *                (split-K: fp32 partials, then act_reduce)
 *   gemm2        Y[z][sorted_pair[r]] = w[p] * (act[r] @ W2[e]^T + b2)
 *   combine      out[t] = sum_j sum_z Y[z][t*k+j] + sum_z Ysh[z][t]
 * The shared expert runs inside the same gemm launches as a second problem
 * whose rows are the tokens themselves.
 */
#ifndef MOE_CUDA_MMA_H
#define MOE_CUDA_MMA_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tile configurations of the grouped GEMM (rows x weight rows, BK = 64). */
typedef enum mma_cfg {
  MMA_CFG_16 = 0,  /* BM 16,  BN 64,  4 warps, 6 stages: decode */
  MMA_CFG_64 = 1,  /* BM 64,  BN 128, 4 warps, 4 stages */
  MMA_CFG_128 = 2, /* BM 128, BN 128, 8 warps, 3 stages: prefill */
  MMA_CFG_COUNT = 3
} mma_cfg;

int mma_cfg_bm(mma_cfg c);
int mma_cfg_bn(mma_cfg c);
int mma_cfg_smem(mma_cfg c);
#define MMA_BK 64
#define MMA_MAX_SMEM 98304 /* largest config; <= 99 KB (sm_120/121) */

typedef struct mma_act {
  int act;         /* moe_activation */
  int gated;       /* 1: (gate, up) pairs */
  int interleaved; /* gated weight rows: 1 gate/up alternate, 0 halves */
  float alpha, limit;
} mma_act;

/* One GEMM problem: C[rows][N] = A[rows][K] * W[e][N][K]^T. */
typedef struct mma_problem {
  const void *A; /* activations, row stride lda elements */
  long long lda;
  const int32_t *gather; /* row -> A row; NULL: identity */
  const void *W;         /* expert weights, w_stride elements per expert */
  long long w_stride;
  int N, K;                 /* GEMM1 gated: N = 2 * I */
  int a_aligned, w_aligned; /* rows start 16-byte aligned (cp.async) */
  const float *bias;        /* [e][N] or NULL */
  long long bias_stride;
  void *out; /* GEMM1: act T [rows][ldo]; GEMM2: Y f32 */
  long long ldo;
  long long out_zstride; /* GEMM2 split-K: distance between splits */
  float *part;           /* GEMM1 split-K: f32 [z][rows][ldp] */
  long long part_zstride, ldp;
  const int32_t *out_rows; /* GEMM2: row -> Y row (pair); NULL: identity */
  const float *row_w;      /* GEMM2: weight of a Y row; NULL: 1 */
  int rows;                /* identity problems: row count */
  int kchunk;              /* split-K: K per split (multiple of MMA_BK) */
} mma_problem;

typedef struct mma_gemm_args {
  mma_problem p[2];       /* 0: routed experts, 1: shared expert */
  const int32_t *tiles;   /* routed tiles: (expert, first row in expert) */
  const int32_t *n_tiles; /* device count of routed tiles */
  const int32_t *offsets; /* [E_local + 1] rows of each expert */
  int shared_tiles;       /* grid.x begins with this many shared tiles */
  int split;              /* grid.z */
  int band;               /* row tiles per band of the tile walk (tile_walk.h);
                             0: one band (grid.x fastest) */
  mma_act act;            /* GEMM1 only */
  int pdl;                /* launch with programmatic serialization */
} mma_gemm_args;

/* grid.x = shared_tiles + routed tile bound; grid.y = n tiles; z = split.
 * Within a split, the CTAs take (row tile, N tile) in the band order of
 * tile_walk.h over the linear index blockIdx.y * grid.x + blockIdx.x. */
cudaError_t mma_launch_gemm1(moe_dtype dt, mma_cfg cfg, const mma_gemm_args *a,
                             dim3 grid, cudaStream_t s);
cudaError_t mma_launch_gemm2(moe_dtype dt, mma_cfg cfg, const mma_gemm_args *a,
                             dim3 grid, cudaStream_t s);
/* Split-K GEMM1: sums the partials, adds the bias, applies the activation.
 * Routed rows: offsets[E_local] (device); shared rows: p[1].rows. */
cudaError_t mma_launch_act_reduce(moe_dtype dt, const mma_gemm_args *a,
                                  const int32_t *row_expert, int E_local,
                                  int max_rows, cudaStream_t s);
/* Set the shared-memory opt-in of every GEMM kernel of this dtype. */
cudaError_t mma_gemm1_prepare(moe_dtype dt);
cudaError_t mma_gemm2_prepare(moe_dtype dt);
/* cudaFuncGetAttributes on a representative kernel (image present?). */
cudaError_t mma_gemm_probe(void);

/* Instantiation table: filled by the macros that instantiate the kernels. */
typedef struct mma_inst {
  moe_dtype dtype;
  uint32_t acts_gated; /* MOE_BIT(act) handled with gated = 1 */
  uint32_t acts_plain; /* ... with gated = 0 */
} mma_inst;
int mma_gemm1_instances(const mma_inst **tab);
int mma_gemm2_instances(const mma_inst **tab);

/* ---- decode: GEMM1, GEMM2 and the combine in one persistent kernel ----
 * For few rows per expert. Work units, taken in order from a device queue:
 * zero units (tokens with no contribution; only without a shared expert),
 * GEMM1 units (8-row tile x 16 weight rows x all of H), GEMM2 units (tile x
 * 16 output columns x one K split of I). A GEMM2 unit waits until every
 * GEMM1 unit of its tile is done (done1[tile]); units only wait on units
 * taken earlier, so any number of resident CTAs makes progress. The last
 * contribution to a (token, 16 columns) block sums its Y planes in slot and
 * split order and writes out (no float atomics: bit-identical). The last
 * CTA to retire zeroes the counters for the next call. */
#define MMA_DEC_ROWS 8   /* rows of a decode tile (the MMA's N) */
#define MMA_DEC_WROWS 16 /* weight rows of a unit (the MMA's M) */
#define MMA_DEC_KS 256   /* K per pipeline stage */
#define MMA_DEC_KC2 1024 /* GEMM2 K per split, at least (<= 8 splits) */
typedef struct mma_decode_args {
  const void *x; /* [mc][H] */
  const void *w13, *w2, *sw13, *sw2;
  const float *b13, *b2; /* [E_local][N1], [E_local][H] or NULL */
  int H, I, Is, N1, N1s;
  mma_act act;
  const int32_t *tiles, *n_tiles, *offsets; /* permutation, 8-row tiles */
  const int32_t *sorted_tok, *sorted_pair, *pair_e;
  const float *wts; /* [pairs] routing weights */
  int mc, k, sh_tiles;
  int z2, kc2, z2s, kc2s; /* GEMM2 K splits (routed, shared) */
  void *abuf, *abuf_sh;   /* activations [rows][ld_act], [mc][ld_act_sh] */
  long long ld_act, ld_act_sh;
  float *Y, *Ysh; /* [z][pair][H], [z][token][H] */
  long long y_zstride, ysh_zstride;
  int32_t *ctr; /* [2 + tile_cap + mc_cap * ceil(H / 16)], zero between calls */
  int tile_cap;
  void *out; /* [mc][H] dtype */
} mma_decode_args;
#define MMA_DEC_SPLIT_MAX 8 /* GEMM2 K splits (Y planes) at most */
/* The layer's constant arguments (shape, weights, K splits); the caller
 * then sets the buffers (tiles .. ctr, tile_cap). */
void mma_decode_layer_init(mma_decode_args *a, const moe_shape *s,
                           const moe_weights *w);
/* One call: layer's arguments plus x, routing weights, mc tokens and out;
 * a grid of at most max_ctas CTAs. */
cudaError_t mma_decode_call(moe_dtype dt, const mma_decode_args *layer,
                            const void *x, const float *wts, int mc,
                            int E_local, long long max_ctas, void *out,
                            cudaStream_t st);
/* Counters (int32) the decode kernel needs for these capacities. */
long long mma_decode_ctr_count(int tile_cap, int mc_cap, int H);
/* Sets the shared-memory opt-in; *ctas = resident CTAs per SM. */
cudaError_t mma_decode_prepare(moe_dtype dt, int *ctas);
cudaError_t mma_launch_decode(moe_dtype dt, const mma_decode_args *a, int grid,
                              cudaStream_t s);
int mma_decode_instances(const mma_inst **tab);

/* ---- routing and permutation ---- */
typedef struct mma_route_args {
  const float *logits; /* [M][E] */
  const float *bias;   /* correction bias [E] or NULL */
  int M, E, k;
  int scoring; /* moe_scoring */
  int n_group, topk_group, renormalize;
  float scale;
  int32_t *ids;   /* [M][k] */
  float *weights; /* [M][k] */
  int pdl;
} mma_route_args;

typedef struct mma_permute_args {
  const int32_t *ids;  /* [pairs] global ids */
  const int32_t *emap; /* [E] global -> local or -1; NULL: identity */
  int pairs, k, E, E_local, bm;
  int32_t *pair_e;      /* [pairs] local expert or -1 */
  int32_t *rank;        /* [pairs] scratch */
  int32_t *offsets;     /* [E_local + 1] */
  int32_t *sorted_pair; /* [pairs] */
  int32_t *sorted_tok;  /* [pairs] */
  int32_t *row_expert;  /* [pairs] */
  int32_t *tiles;       /* [2 * (pairs + E_local)] */
  int32_t *n_tiles;     /* [1] */
  int32_t *counts;      /* [E_local] scratch of the multi-block path */
  int one_block_max;    /* pairs one block permutes; above: three kernels */
  int pdl;
} mma_permute_args;
/* The default of one_block_max (MOE_MMA_PERMUTE_ONE_BLOCK overrides it at
 * layer creation, for measurement): one block took 30 us for 8192 pairs
 * on an H200, the three kernels 14 us for 32768 (bench/NOTES.md, v13). */
#define MMA_PERMUTE_ONE_BLOCK_MAX 2048

#define MMA_ROUTE_MAX_E 4096
#define MMA_ROUTE_MAX_GROUPS 64
#define MMA_FUSED_ROUTE_MAX_M 64 /* route + permute in one block up to this */

cudaError_t mma_launch_route(const mma_route_args *r, cudaStream_t s);
cudaError_t mma_launch_permute(const mma_permute_args *p, cudaStream_t s);
/* Routing and permutation in one single-block kernel (small M). */
cudaError_t mma_launch_route_permute(const mma_route_args *r,
                                     const mma_permute_args *p, cudaStream_t s);
cudaError_t mma_route_prepare(void);

/* The routing and permutation buffers of a GPU layer (device memory). */
typedef struct mma_dispatch_bufs {
  int32_t *ids;        /* [pairs] routed ids (when the layer routes) */
  float *wts;          /* [pairs] routed weights */
  const int32_t *emap; /* [E] global -> local or -1; NULL: identity */
  int32_t *pair_e, *rank, *offsets, *sorted_pair, *sorted_tok;
  int32_t *row_expert, *tiles, *n_tiles, *counts;
  int permute_one_block_max; /* mma_permute_args.one_block_max */
} mma_dispatch_bufs;
/* A workspace carving: *off advances by bytes rounded up to 256 (and
 * MOE_WS_PAD's gap, when set); returns where that piece starts. */
size_t mma_carve(size_t *off, size_t bytes);
/* Carves the routing and permutation buffers of P pairs and El local
 * experts from *off on and, when b is not NULL, points them into base
 * and sets the permutation's one-block bound (emap untouched). Both
 * backends' workspaces begin with them. */
void mma_dispatch_carve(mma_dispatch_bufs *b, char *base, size_t *off,
                        long long P, long long El);
/* The activation of shape s as the kernels take it (swiglu-oai's gate and
 * up rows interleaved, the others in halves). */
mma_act mma_act_make(const moe_shape *s);
/* Routing arguments of shape s (correction bias used with sigmoid only). */
mma_route_args mma_route_args_make(const moe_shape *s, const float *cbias,
                                   const float *logits, int M, int32_t *ids,
                                   float *w, int pdl);
/* Routes mc tokens from logits into b->ids / b->wts (or takes ids_in when
 * logits is NULL) and permutes the pairs into tiles of bm rows. On failure
 * *what names the launch that failed. */
cudaError_t mma_launch_dispatch(const mma_dispatch_bufs *b, const moe_shape *s,
                                const float *cbias, const float *logits,
                                const int32_t *ids_in, int mc, int bm, int pdl,
                                cudaStream_t st, const char **what);
/* What both GPU backends require of a layer (device weights, bf16/f16, an
 * activation with a kernel, routing sizes); the message starts with name. */
moe_status mma_check_layer(const char *name, const moe_shape *s,
                           const moe_weights *w, char *msg, size_t n);
/* A failed CUDA call as a status with a message "name: what: error"
 * (a missing kernel image and out-of-memory keep their own statuses). */
moe_status mma_cuda_status(const char *name, cudaError_t e, const char *what,
                           char *msg, size_t n);
/* The current device's SM count. */
cudaError_t mma_device_sms(int *sms);
/* A device copy of s->expert_map in *dev (NULL without a map); on failure
 * *dev holds what the caller frees (or NULL). */
cudaError_t mma_upload_expert_map(const moe_shape *s, int32_t **dev);

/* ---- gemv: a handful of tokens (mma.h data flow without permutation) ----
 * gemv1: every CTA routes the call's tokens (one warp per token) or reads
 * the given ids, block 0 stores the pair table (pe, pw) for gemv2; the
 * local pairs sorted by expert, warps take contiguous ranges of (two weight
 * rows, pair) units, row by row through each expert's pairs:
 *   h[pair][r] = act(W13[e] rows . x[t] + b13)   (shared: h_sh[t][r])
 * gemv2: warps take (two output columns, token) units, column by column:
 *   out[t][c] = sum over local slots (in slot order) of w * (W2[e][c] . h
 *               + b2[e][c]) + Wsh2[c] . h_sh[t]
 * Weights stream through per-warp cp.async rings (gemv.cu). */
#define MMA_GEMV_MAX_M 8 /* tokens a call of the gemv path holds at most */
typedef struct mma_gemv_args {
  const void *x;         /* [M][H] */
  const int32_t *ids_in; /* [M][k] when r.logits is NULL */
  const float *w_in;     /* [M][k] when r.logits is NULL */
  const int32_t *emap;   /* [E] global -> local or -1; NULL: same */
  const void *w13, *w2, *sw13, *sw2;
  const float *b13, *b2; /* [E_local][N1], [E_local][H] or NULL */
  int M, k, E, E_local, H, I, Is, N1, N1s;
  mma_act act;
  int32_t *pe;           /* [M * k] local expert or -1 */
  float *pw;             /* [M * k] routing weight */
  void *h, *h_sh;        /* [M * k][ldh], [M][ldh_sh] dtype */
  long long ldh, ldh_sh; /* multiples of 8 */
  void *out;             /* [M][H] */
  int pdl;
  int mma1; /* gemv1's GEMM on tensor cores (gemv_mma.cuh), else FFMA */
} mma_gemv_args;
/* The layer's constant arguments (shape, weights, activation, map); the
 * caller then sets the buffers (pe .. ldh_sh) and pdl. */
void mma_gemv_layer_init(mma_gemv_args *g, const moe_shape *s,
                         const moe_weights *w, const int32_t *emap);
/* The most tokens a call of this layer (chunks of at most Mc) may have to
 * take the gemv path; 0: never. forced >= 0: that limit (a knob), else the
 * default rule (gemv_call.cu). */
int mma_gemv_tokens(const moe_shape *s, const moe_weights *w, int Mc,
                    int forced);
/* Sets the kernels' attributes; *occ1 / *occ2 = resident CTAs per SM. */
cudaError_t mma_gemv_prepare(moe_dtype dt, int *occ1, int *occ2);
/* Dynamic shared memory of the gemv kernels for M tokens; 0 when the
 * tables or the routing scratch do not fit. */
size_t mma_gemv_smem(int M, int k, int E);
/* Both kernels; r: routing of a->M tokens (r->logits NULL: a->ids_in). */
cudaError_t mma_launch_gemv(moe_dtype dt, const mma_gemv_args *a,
                            const mma_route_args *r, long long ctas1,
                            long long ctas2, cudaStream_t s);
int mma_gemv_instances(const mma_inst **tab);

/* ---- combine ---- */
typedef struct mma_combine_args {
  const void *Y; /* routed rows [pair][H] per split: f32, or dtype if y_t */
  long long y_zstride;
  int y_split;
  const void *Ysh; /* shared rows [t][H] per split, NULL if none */
  long long ysh_zstride;
  int ysh_split;
  const int32_t *pair_e; /* -1: slot contributes nothing */
  int M, k, H;
  void *out; /* [M][H] dtype */
  int y_t;   /* Y and Ysh hold the layer's dtype instead of f32 */
  int pdl;
} mma_combine_args;
cudaError_t mma_launch_combine(moe_dtype dt, const mma_combine_args *c,
                               cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
