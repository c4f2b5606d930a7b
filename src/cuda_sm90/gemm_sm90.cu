/*
 * gemm_sm90.cu - the persistent, warp-specialised grouped GEMM of cuda-sm90
 * (sm_90a: TMA, mbarriers, wgmma) and the token gather; its two fused
 * epilogues are in epi_sm90.cuh.
 *
 * One CTA per SM (SM90_THREADS = 3 warpgroups) walks the tile list: first
 * every (routed row tile, N tile) pair, then the shared expert's. With
 * args.claim (the default) the producer claims the next tile from a global
 * counter while it loads the current one and hands each index to the
 * consumers through a two-slot ring in shared memory, so a CTA that drew
 * short tiles takes more; without it, CTA b takes t = b, b + gridDim.x, ...
 * The last CTA out resets the counter for the next launch. Row tiles are in
 * expert order and taken in bands of args.band row tiles, N tile outermost
 * (tile_walk.h).
 *
 *   warpgroup 0   producer: one thread issues, per K step, one TMA box of
 *                 A (128 rows) and two of W (128 rows each) into the next
 *                 ring stage, after the consumers have released it (empty
 *                 barrier), announcing the bytes on the stage's full
 *                 barrier. A tile of at most 64 rows (an expert's last)
 *                 takes a 64-row A box (args.half_rows), and a last N tile
 *                 with at most 128 columns inside N one W box
 *                 (args.half_tail: the MMAs read what the stage's other
 *                 half held, past N, and the epilogue drops it). Its
 *                 registers are given up (setmaxnreg.dec).
 *   warpgroups 1,2 consumers: rows 0-63 / 64-127 of the tile. Each waits on
 *                 the full barrier, issues 4 wgmma m64n256k16 (BK = 64),
 *                 waits for the previous K step's group (one stays in
 *                 flight), releases that step's stage (one arrival per
 *                 warp) and, after the last K step, runs the epilogue
 *                 (epi_sm90.cuh) while the producer already fills
 *                 the ring for its next tile. With args.idle_skip (the
 *                 default), a warpgroup whose 64 rows are all past the
 *                 tile's end only hands the stages back. GEMM1's kernel
 *                 is compiled per activation.
 *
 * Stage index and phase run on across tiles: producer and consumers walk
 * the same tiles with the same K steps, so they stay in step.
 *
 * Rows past an expert's end (the next expert's rows, or past the buffer:
 * zeros) and weight rows past N are computed and dropped by the epilogue;
 * K past the end is zero-filled by TMA on both operands.
 */
#include "../cuda/common.cuh"
#include "../cuda/tile_walk.h"
#include "epi_fast_sm90.cuh"
#include "sm90.h"

/* Tile t of the walk (t < total). */
__device__ __forceinline__ sm90_tile sm90_tile_of(const sm90_gemm_args &a,
                                                  int t, int routed_m) {
  sm90_tile o;
  const int nt0 = a.p[0].n_tiles;
  int m;
  if (t < routed_m * nt0) {
    moe_band_walk(t, routed_m, nt0, a.band, &m, &o.nt);
    o.pi = 0;
    o.e = __ldg(a.tiles + 2 * m);
    o.row0 = __ldg(a.offsets + o.e) + __ldg(a.tiles + 2 * m + 1);
    o.row_end = __ldg(a.offsets + o.e + 1);
  } else {
    t -= routed_m * nt0;
    moe_band_walk(t, a.shared_tiles, a.p[1].n_tiles, a.band, &m, &o.nt);
    o.pi = 1;
    o.e = 0;
    o.row0 = m * SM90_BM;
    o.row_end = a.p[1].rows;
  }
  return o;
}

/* Does tile tl have at most 128 columns inside N (and one W box)? */
__device__ __forceinline__ bool sm90_half_tile(const sm90_gemm_args &a,
                                               const sm90_tile &tl) {
  const sm90_problem &P = a.p[tl.pi];
  return a.half_tail && !(a.act.gated && P.halves) &&
         P.N - tl.nt * SM90_BN <= SM90_BN / 2;
}

/* Timing probes, wrong results (bench/NOTES.md): SM90_PROBE 1 loads
 * nothing (the producer only arrives: the MMA loop and its barriers
 * alone), 2 skips the wgmmas (the load pipeline alone). */
#ifndef SM90_PROBE
#define SM90_PROBE 0
#endif

/* The dynamic walk's hand-over of tile indices: named barriers (the
 * epilogue uses 1 and 2), one pair per slot and consumer warpgroup, each
 * met by the producer warp and that warpgroup. */
#define SM90_BAR_TFULL 3                   /* + 2 slot + warpgroup */
#define SM90_BAR_TEMPTY (3 + 2 * SM90_TID) /* + 2 slot + warpgroup */
#define SM90_WALK_THREADS 160              /* 32 + 128 */
__device__ __forceinline__ void sm90_walk_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void sm90_walk_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* EPI 1: GEMM1 (bias + activation ACT), 2: GEMM2 (bias + routing weight;
 * ACT unused, 0). */
template <class T, int EPI, int ACT>
__global__ void __launch_bounds__(SM90_THREADS, 1)
    sm90_gemm_kernel(const __grid_constant__ sm90_gemm_args args) {
#ifdef SM90_DEVICE
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t base = (sm90_smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t sA = base;
  const uint32_t sB = base + SM90_STAGES * SM90_A_BYTES;
  /* ring, the consumers' staging tiles (SM90_STG_BYTES each), barriers */
  const uint32_t stg0 = base + SM90_STAGES * SM90_STAGE_BYTES;
  const uint32_t full = stg0 + 2 * SM90_STG_BYTES;
  const uint32_t empty = full + 8 * SM90_STAGES;
  /* the dynamic walk: tile indices from the producer to the consumers */
  volatile int *tslot = (volatile int *)(smem_raw + (empty + 8 * SM90_STAGES -
                                                     sm90_smem_addr(smem_raw)));
  const int wg = threadIdx.x >> 7;
  int *const claim = args.claim;

  if (threadIdx.x == 0) {
    for (int s = 0; s < SM90_STAGES; s++) {
      mbar_init(full + 8 * s, 1);
      mbar_init(empty + 8 * s, 8); /* one arrival per consumer warp */
    }
    mbar_init_fence();
  }
  __syncthreads();

  const int routed_m = __ldg(args.n_tiles);
  const int total =
      routed_m * args.p[0].n_tiles + args.shared_tiles * args.p[1].n_tiles;

  if (wg == 0) {
    setmaxnreg_dec<40>();
    /* warp 0 stays (its lane 0 issues; the whole warp meets the
     * consumers at the walk's named barriers), warps 1-3 leave */
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    if (lane == 0)
      for (int i = 0; i < 2; i++) {
        if (args.p[i].n_tiles == 0) continue; /* no map encoded */
        tma_prefetch_map(&args.a[i]);
        tma_prefetch_map(&args.w[i]);
      }
    int s = 0;
    uint32_t ph = 0;
    int n = 0; /* tile indices handed over so far */
    int t = (int)blockIdx.x;
    if (claim) t = __shfl_sync(~0u, lane == 0 ? atomicAdd(claim, 1) : 0, 0);
    for (;;) {
      int tn = 0;
      if (claim) {
        /* claim the next tile now (its latency hides under this tile's
         * loads) and hand this one to both consumer warpgroups */
        if (lane == 0 && t < total) tn = atomicAdd(claim, 1);
        const int j = n % SM90_TID;
        if (n >= SM90_TID) { /* the slot's previous index has been read */
          sm90_walk_sync(SM90_BAR_TEMPTY + 2 * j, SM90_WALK_THREADS);
          sm90_walk_sync(SM90_BAR_TEMPTY + 2 * j + 1, SM90_WALK_THREADS);
        }
        if (lane == 0) tslot[j] = t;
        __syncwarp();
        sm90_walk_arrive(SM90_BAR_TFULL + 2 * j, SM90_WALK_THREADS);
        sm90_walk_arrive(SM90_BAR_TFULL + 2 * j + 1, SM90_WALK_THREADS);
        n++;
      }
      if (t >= total) break;
      if (lane == 0) {
        const sm90_tile tl = sm90_tile_of(args, t, routed_m);
        const sm90_problem &P = args.p[tl.pi];
        const int nk = (P.K + SM90_BK - 1) / SM90_BK;
        const int w0 = tl.e * P.N; /* the expert's first weight row */
        int r0, r1;
        if (args.act.gated && P.halves) {
          r0 = w0 + tl.nt * (SM90_BN / 2);
          r1 = r0 + (P.N >> 1);
        } else {
          r0 = w0 + tl.nt * SM90_BN;
          r1 = r0 + SM90_BN / 2;
        }
        const CUtensorMap *am = &args.a[tl.pi], *wm = &args.w[tl.pi];
        const bool half = sm90_half_tile(args, tl);
        /* a tile of at most 64 rows: 64 rows of A (the second warpgroup's
         * rows are all past the tile's end; without the idle skip its
         * MMAs read what the stage held and the epilogue drops them) */
        const bool a64 = args.half_rows && tl.row_end - tl.row0 <= 64;
        if (a64) am = &args.a64[tl.pi];
        const uint32_t bytes = SM90_STAGE_BYTES -
                               (half ? SM90_B_BYTES / 2 : 0) -
                               (a64 ? SM90_A_BYTES / 2 : 0);
        for (int kt = 0; kt < nk; kt++) {
          mbar_wait(empty + 8 * s, ph ^ 1);
          const uint32_t fb = full + 8 * s;
#if SM90_PROBE == 1
          mbar_arrive(fb);
#else
          mbar_arrive_expect_tx(fb, bytes);
          const int k = kt * SM90_BK;
          tma_load_2d(sA + s * SM90_A_BYTES, am, k, tl.row0, fb);
          tma_load_2d(sB + s * SM90_B_BYTES, wm, k, r0, fb);
          if (!half)
            tma_load_2d(sB + s * SM90_B_BYTES + SM90_B_BYTES / 2, wm, k, r1,
                        fb);
#endif
          if (++s == SM90_STAGES) {
            s = 0;
            ph ^= 1;
          }
        }
      }
      __syncwarp();
      t = claim ? __shfl_sync(~0u, tn, 0) : t + (int)gridDim.x;
    }
    if (claim) {
      /* the consumers' reads of the last indices, then: every claim of
       * this CTA has returned; the last CTA out resets the counters for
       * the next launch on the stream */
      for (int i = n > SM90_TID ? n - SM90_TID : 0; i < n; i++) {
        sm90_walk_sync(SM90_BAR_TEMPTY + 2 * (i % SM90_TID), SM90_WALK_THREADS);
        sm90_walk_sync(SM90_BAR_TEMPTY + 2 * (i % SM90_TID) + 1,
                       SM90_WALK_THREADS);
      }
      if (lane == 0 && atomicAdd(claim + 1, 1) == (int)gridDim.x - 1) {
        atomicExch(claim, 0);
        atomicExch(claim + 1, 0);
      }
    }
  } else {
    setmaxnreg_inc<232>();
    const int c = wg - 1;
    const int lane = threadIdx.x & 31;
    unsigned char *stg =
        smem_raw + (stg0 - sm90_smem_addr(smem_raw)) + c * SM90_STG_BYTES;
    float d[128];
#pragma unroll
    for (int i = 0; i < 128; i++)
      d[i] = 0.0f;
    int s = 0;
    uint32_t ph = 0;
    int j = 0;
    for (int t = blockIdx.x;; t += gridDim.x) {
      if (claim) {
        sm90_walk_sync(SM90_BAR_TFULL + 2 * j + c, SM90_WALK_THREADS);
        t = tslot[j];
        sm90_walk_arrive(SM90_BAR_TEMPTY + 2 * j + c, SM90_WALK_THREADS);
        if (++j == SM90_TID) j = 0;
      }
      if (t >= total) break;
      const sm90_tile tl = sm90_tile_of(args, t, routed_m);
      const int nk = (args.p[tl.pi].K + SM90_BK - 1) / SM90_BK;
      if (args.idle_skip && tl.row0 + c * 64 >= tl.row_end) {
        /* None of this warpgroup's 64 rows is in the tile (an expert's
         * last tile): no MMAs, no epilogue; each stage is handed back as
         * soon as it is full, which keeps the two warpgroups in step. */
        for (int kt = 0; kt < nk; kt++) {
          mbar_wait(full + 8 * s, ph);
          if (lane == 0) mbar_arrive(empty + 8 * s);
          if (++s == SM90_STAGES) {
            s = 0;
            ph ^= 1;
          }
        }
        continue;
      }
      /* GEMM2: this thread's Y rows (and below, their routing weights),
       * loaded under the MMAs */
      sm90_rows2 rr = {{-1, -1}, {1.0f, 1.0f}, -1};
      if (EPI == 2) epi2_rows_y(args, tl, c, rr);
      int prev = -1; /* the stage whose wgmma group may still be running */
      for (int kt = 0; kt < nk; kt++) {
        mbar_wait(full + 8 * s, ph);
        const uint64_t da =
            wgmma_desc(sA + s * SM90_A_BYTES + c * 64 * SM90_BK * 2);
        const uint64_t db = wgmma_desc(sB + s * SM90_B_BYTES);
        wgmma_fence_acc(d);
        wgmma_fence();
#if SM90_PROBE != 2
        /* one wgmma shape in the loop: a branch between two shapes makes
         * ptxas wait for each wgmma before the next (measured 6-15 %
         * slower; bench/NOTES.md cuda-sm90 v24) */
#pragma unroll
        for (int kk = 0; kk < SM90_BK / 16; kk++)
          wgmma_m64n256k16<T>(d, da + 2 * kk, db + 2 * kk, (kt | kk) != 0);
#endif
        wgmma_commit();
        if (EPI == 2 && kt == 0) epi2_rows_w(args, tl, rr);
        /* Keep this K step's group in flight; the one before it is done
         * now, so its stage goes back to the producer. */
        wgmma_wait<1>();
        if (prev >= 0 && lane == 0) mbar_arrive(empty + 8 * prev);
        prev = s;
        if (++s == SM90_STAGES) {
          s = 0;
          ph ^= 1;
        }
      }
      wgmma_wait<0>();
      wgmma_fence_acc(d);
      if (prev >= 0 && lane == 0) mbar_arrive(empty + 8 * prev);
      if (EPI == 1)
        epi_gemm1<T, ACT>(args, tl, d, c, stg);
      else
        epi_gemm2<T>(args, tl, d, c, stg, rr);
    }
#ifdef SM90_BULK_EPI
    /* the bulk copies out of the staging tile finish before the CTA (and
     * its shared memory) goes */
    bulk_wait_all();
#endif
  }
#endif
}

/* ---- the gather: xp[r] = x[sorted_tok[r]] for the call's routed rows
 * (and xs = x for the shared expert). One warp a row: each lane issues all
 * its 16-byte loads of a 256-chunk span before it stores them (4 KB a
 * warp in flight; 64 warps a SM), warps striding over the rows. The
 * rows in use are read on the device (offsets[E_local]); the grid is sized
 * from the host bound. ---- */
#define SM90_GATHER_WARPS 8
#define SM90_GATHER_BLOCKS 4096
#define SM90_GATHER_UNROLL 8
__global__ void __launch_bounds__(SM90_GATHER_WARPS * 32)
    sm90_gather_kernel(const sm90_gather_args g) {
  const int lane = threadIdx.x & 31;
  long long n = __ldg(g.n_rows);
  n = n < g.max_rows ? n : g.max_rows;
  const long long total = n + g.shared_rows;
  const long long stride = (long long)gridDim.x * SM90_GATHER_WARPS;
  for (long long v =
           (long long)blockIdx.x * SM90_GATHER_WARPS + (threadIdx.x >> 5);
       v < total; v += stride) {
    const unsigned short *src;
    unsigned short *dst;
    if (v < n) {
      src = (const unsigned short *)g.x +
            (long long)__ldg(g.sorted_tok + v) * g.H;
      dst = (unsigned short *)g.xp + v * g.H;
    } else {
      src = (const unsigned short *)g.x + (v - n) * g.H;
      dst = (unsigned short *)g.xs + (v - n) * g.H;
    }
    if (!g.vec) {
      for (int i = lane; i < g.H; i += 32)
        dst[i] = src[i];
      continue;
    }
    const uint4 *s4 = (const uint4 *)src;
    uint4 *d4 = (uint4 *)dst;
    const int nc = g.H >> 3;
    for (int c0 = 0; c0 < nc; c0 += SM90_GATHER_UNROLL * 32) {
      uint4 u[SM90_GATHER_UNROLL];
#pragma unroll
      for (int q = 0; q < SM90_GATHER_UNROLL; q++) {
        const int c = c0 + q * 32 + lane;
        u[q] = c < nc ? __ldg(s4 + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int q = 0; q < SM90_GATHER_UNROLL; q++) {
        const int c = c0 + q * 32 + lane;
        if (c < nc) d4[c] = u[q];
      }
    }
  }
}

extern "C" cudaError_t sm90_launch_gather(const sm90_gather_args *g,
                                          cudaStream_t s) {
  const long long rows = (long long)g->max_rows + g->shared_rows;
  if (rows <= 0) return cudaSuccess;
  long long blocks = (rows + SM90_GATHER_WARPS - 1) / SM90_GATHER_WARPS;
  if (blocks > SM90_GATHER_BLOCKS) blocks = SM90_GATHER_BLOCKS;
  sm90_gather_kernel<<<(unsigned)blocks, SM90_GATHER_WARPS * 32, 0, s>>>(*g);
  return cudaGetLastError();
}

/* ---- instantiation: the dtype list makes both the kernels and the table */
#define SM90_ENTRY(T, DT) {DT, MMA_ACTS_GATED, MMA_ACTS_PLAIN},
static const mma_inst sm90_table[] = {MMA_DTYPES(SM90_ENTRY)};

extern "C" int sm90_gemm_instances(const mma_inst **tab) {
  *tab = sm90_table;
  return (int)(sizeof sm90_table / sizeof sm90_table[0]);
}

template <class T, int EPI, int ACT>
static cudaError_t sm90_launch(const sm90_gemm_args *a, int grid,
                               cudaStream_t s) {
  if (grid <= 0) return cudaSuccess;
  sm90_gemm_kernel<T, EPI, ACT><<<grid, SM90_THREADS, SM90_SMEM, s>>>(*a);
  return cudaGetLastError();
}

/* GEMM1's kernel for the activation of the layer. */
template <class T>
static cudaError_t sm90_launch1(const sm90_gemm_args *a, int grid,
                                cudaStream_t s) {
  switch (a->act.act) {
  case MOE_ACT_SILU:
    return sm90_launch<T, 1, MOE_ACT_SILU>(a, grid, s);
  case MOE_ACT_GELU:
    return sm90_launch<T, 1, MOE_ACT_GELU>(a, grid, s);
  case MOE_ACT_RELU2:
    return sm90_launch<T, 1, MOE_ACT_RELU2>(a, grid, s);
  case MOE_ACT_SWIGLU_OAI:
    return sm90_launch<T, 1, MOE_ACT_SWIGLU_OAI>(a, grid, s);
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t sm90_launch_gemm1(moe_dtype dt, const sm90_gemm_args *a,
                                         int grid, cudaStream_t s) {
#define SM90_G1_CASE(T, DT)                                                    \
  case DT:                                                                     \
    return sm90_launch1<T>(a, grid, s);
  switch (dt) {
    MMA_DTYPES(SM90_G1_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t sm90_launch_gemm2(moe_dtype dt, const sm90_gemm_args *a,
                                         int grid, cudaStream_t s) {
#define SM90_G2_CASE(T, DT)                                                    \
  case DT:                                                                     \
    return sm90_launch<T, 2, 0>(a, grid, s);
  switch (dt) {
    MMA_DTYPES(SM90_G2_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

/* Raises one kernel's shared-memory limit. */
template <class T, int EPI, int ACT> static cudaError_t sm90_prep1(void) {
  return cudaFuncSetAttribute(sm90_gemm_kernel<T, EPI, ACT>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              SM90_SMEM);
}

template <class T> static cudaError_t sm90_prep(void) {
  cudaError_t e;
  if ((e = sm90_prep1<T, 1, MOE_ACT_SILU>()) != cudaSuccess) return e;
  if ((e = sm90_prep1<T, 1, MOE_ACT_GELU>()) != cudaSuccess) return e;
  if ((e = sm90_prep1<T, 1, MOE_ACT_RELU2>()) != cudaSuccess) return e;
  if ((e = sm90_prep1<T, 1, MOE_ACT_SWIGLU_OAI>()) != cudaSuccess) return e;
  return sm90_prep1<T, 2, 0>();
}

extern "C" cudaError_t sm90_gemm_prepare(moe_dtype dt) {
#define SM90_PREP_CASE(T, DT)                                                  \
  case DT:                                                                     \
    return sm90_prep<T>();
  switch (dt) {
    MMA_DTYPES(SM90_PREP_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t sm90_gemm_probe(void) {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(
      &attr, sm90_gemm_kernel<__nv_bfloat16, 1, MOE_ACT_SILU>);
}
