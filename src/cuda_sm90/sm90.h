/*
 * sm90.h - internals of the cuda-sm90 backend: the tile shape, the argument
 * blocks of its kernels and their extern "C" launchers (gemm_sm90.cu). The
 * routing, permutation and combine kernels are cuda-mma's (../cuda/mma.h).
 *
 * Data flow of one forward call (pairs p = t * k + j, rows in expert order):
 *   route, permute     (cuda-mma) ids, weights, offsets, sorted rows, tiles
 *   gather             Xp[r] = x[sorted_tok[r]];  Xs[t] = x[t] (shared)
 *   gemm1 (sm90)       act[r] = act(Xp[r] @ W13[e]^T + b13[e])
 *   gemm2 (sm90)       Y[sorted_pair[r]] = w[p] * (act[r] @ W2[e]^T + b2[e])
 *   combine            (cuda-mma) out[t] = sum_j Y[t*k+j] + Ysh[t]
 * Every GEMM operand is read by TMA through a tensor map encoded once, at
 * create, over a workspace buffer or the weights (fixed addresses), so a
 * forward is capturable in a CUDA graph.
 */
#ifndef MOE_CUDA_SM90_SM90_H
#define MOE_CUDA_SM90_SM90_H

#include "../cuda/mma.h"
#include "tma.cuh"

/* Tile: BM rows x BN weight rows x BK, STAGES-deep ring. Two consumer
 * warpgroups take 64 rows each (wgmma m64n256k16); one producer warp. The
 * weight tile is two TMA boxes of BN / 2 rows (gated [gate; up] weights:
 * one box from each half). */
#define SM90_BM 128
#define SM90_BN 256
/* SM90_BK is set in tma.cuh. Three stages of 48 KB: measured faster than
 * four on the H200 (deepseek 4096 tokens 10-13 %, 16384 3-5 %, gpt-oss
 * 1-4 %, the rest level; bench/NOTES.md cuda-sm90 v9). -DSM90_STAGES=N
 * for measurement; with -DSM90_BK=32, 8 stages of 24 KB (measured 1-25 %
 * slower). */
#ifndef SM90_STAGES
#define SM90_STAGES (SM90_BK == 64 ? 3 : 8)
#endif
#define SM90_THREADS 384
#define SM90_A_BYTES (SM90_BM * SM90_BK * 2)
#define SM90_B_BYTES (SM90_BN * SM90_BK * 2)
#define SM90_STAGE_BYTES (SM90_A_BYTES + SM90_B_BYTES)
/* The epilogue's way out (epi_sm90.cuh; bench/NOTES.md cuda-sm90 v6, v8):
 *   default              SM90_BULK_EPI 2: GEMM1's interleaved [gate, up]
 *                        layout (one 2-byte value a column pair) through
 *                        the staging tile and bulk copies, every other
 *                        output by per-thread stores;
 *   -DSM90_BULK_EPI      (= 1) every 16-bit output through bulk copies;
 *   -DSM90_DIRECT_EPI    per-thread stores everywhere;
 *   -DSM90_STAGED_EPI    staging with synchronous copies (=2: GEMM1's
 *                        interleaved layout only).
 * Each consumer warpgroup's staging tile, 64 rows x 256 bytes: with bulk
 * copies rows 272 bytes apart in groups of eight (2160 bytes a group), so
 * that a row is contiguous for its copy and a fragment store hits 32
 * banks: 17280 bytes; with synchronous copies rows 256 bytes apart,
 * chunks XOR-swizzled: 16384. */
#if !defined(SM90_BULK_EPI) && !defined(SM90_STAGED_EPI) &&                    \
    !defined(SM90_DIRECT_EPI)
#define SM90_BULK_EPI 2
#endif
#if defined(SM90_BULK_EPI) && defined(SM90_STAGED_EPI)
#error "SM90_BULK_EPI and SM90_STAGED_EPI exclude each other"
#endif
#define SM90_STG_ROW 272
#define SM90_STG_GROUP (7 * SM90_STG_ROW + 256)
#if defined(SM90_BULK_EPI)
#define SM90_STG_BYTES (8 * SM90_STG_GROUP)
#elif defined(SM90_STAGED_EPI)
#define SM90_STG_BYTES (64 * 256)
#else
#define SM90_STG_BYTES 0
#endif
/* ring + staging + barriers + slack to align the ring to 1024 bytes:
 * 183096 bytes by default (3 stages, bulk-copy staging), 232264 with 4
 * stages, within the 232448 a block may opt in to on sm_90 */
/* + the dynamic walk's SM90_TID slots of tile indices (gemm_sm90.cu) */
#define SM90_TID 2
#define SM90_SMEM                                                              \
  (SM90_STAGES * SM90_STAGE_BYTES + 2 * SM90_STG_BYTES + 2 * SM90_STAGES * 8 + \
   SM90_TID * 4 + 1024)

#ifdef __cplusplus
extern "C" {
#endif

/* One GEMM problem: C[rows][N] = A[rows][K] * W[e][N][K]^T; its operands
 * are the tensor maps a[i], w[i] of the argument block. */
typedef struct sm90_problem {
  int N, K;
  int n_tiles; /* tiles along N (0: no such problem) */
  int halves;  /* GEMM1 gated with [gate; up] halves: box 2 reads row I + j */
  int rows;    /* identity problems (shared expert): row count */
  const float *bias; /* [e][N] or NULL */
  long long bias_stride;
  void *out; /* GEMM1: act T [rows][ldo]; GEMM2: Y f32 or T [rows][ldo] */
  long long ldo;
  const int32_t *out_rows; /* GEMM2: row -> Y row (pair); NULL: identity */
  const float *row_w;      /* GEMM2: weight of a Y row; NULL: 1 */
} sm90_problem;

typedef struct sm90_gemm_args {
  CUtensorMap a[2];       /* A rows [rows][K], box 128 x 64 */
  CUtensorMap a64[2];     /* the same, box 64 x 64 (half_rows) */
  CUtensorMap w[2];       /* W rows [experts * N][K], box 128 x 64 */
  sm90_problem p[2];      /* 0: routed experts, 1: shared expert */
  const int32_t *tiles;   /* routed row tiles: (expert, first row) */
  const int32_t *n_tiles; /* device count of routed row tiles */
  const int32_t *offsets; /* [E_local + 1] first row of each expert */
  int shared_tiles;       /* row tiles of problem 1 */
  int band;               /* row tiles per band of the walk (>= 1) */
  int y_t;                /* GEMM2: Y rows of T instead of f32 */
  int idle_skip;          /* a warpgroup with no rows in a tile skips its
                             MMAs and epilogue */
  int half_rows;          /* a tile with at most 64 rows loads 64 of A */
  int half_tail;          /* a tile with at most 128 columns inside N
                             (its N tile the last, not [gate; up] halves)
                             loads one W box */
  int epi_bulk;           /* bit 0: GEMM2's rows of T leave by bulk copies
                             from the staging tile, bit 1: GEMM1's (the
                             common tile; epi_fast_sm90.cuh) */
  int *claim;             /* dynamic walk: [0] next tile to claim, [1] CTAs
                             done (both 0 between launches; the last CTA
                             out resets them); NULL: static walk */
  mma_act act;            /* GEMM1 only */
} sm90_gemm_args;

/* Persistent launch: grid CTAs (<= SMs) walk every (row tile, N tile). */
cudaError_t sm90_launch_gemm1(moe_dtype dt, const sm90_gemm_args *a, int grid,
                              cudaStream_t s);
cudaError_t sm90_launch_gemm2(moe_dtype dt, const sm90_gemm_args *a, int grid,
                              cudaStream_t s);
/* Raises the kernels' shared-memory limit (once, at create). */
cudaError_t sm90_gemm_prepare(moe_dtype dt);
/* cudaFuncGetAttributes on the bf16 GEMM (is its image here?). */
cudaError_t sm90_gemm_probe(void);
/* Instantiation table (dtypes x activations), filled by the same macro
 * that instantiates the kernels. */
int sm90_gemm_instances(const mma_inst **tab);

/* The token gather (and the shared expert's copy of x). */
typedef struct sm90_gather_args {
  const void *x; /* [M][H] */
  int H, vec;    /* vec: x 16-byte aligned (H % 8 == 0 always) */
  const int32_t *sorted_tok;
  const int32_t *n_rows; /* device: routed rows (offsets + E_local) */
  int max_rows;          /* host bound of routed rows (pairs) */
  void *xp;              /* [max_rows][H] */
  int shared_rows;       /* tokens copied to xs (0: none) */
  void *xs;              /* [shared_rows][H] */
} sm90_gather_args;
cudaError_t sm90_launch_gather(const sm90_gather_args *g, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
