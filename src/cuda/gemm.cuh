/*
 * gemm.cuh - the grouped GEMM main loop shared by gemm1.cu and gemm2.cu.
 *
 * One CTA computes a BM x BN tile of C = A * W[e]^T for one expert e:
 * BM rows of the expert's (expert-sorted) rows, BN weight rows. A and W are
 * both K-contiguous, so both operands are fed to mma.sync m16n8k16 straight
 * from ldmatrix (A row-major, W as the "col" B operand). Tiles of BK = 64
 * elements (128 bytes a row) move through a STAGES-deep cp.async ring; 16-byte
 * chunks are XOR-swizzled by row so that ldmatrix reads are conflict-free.
 *
 * Rows past the expert's end and K past the split's end are zero-filled by
 * the copy itself (src-size 0); rows or weights that are not 16-byte aligned
 * (K % 8 != 0) take a scalar copy into the same swizzled slot, so any H and I
 * work. The A rows of GEMM1 are gathered (x[sorted_tok[r]]), which fuses the
 * token permutation into the load. The epilogue is a policy class (Epi)
 * that reads the finished tile back from shared memory (tiles of 64 rows
 * and more; the 16-row tile stores each thread's pairs): GEMM1 applies
 * bias + activation, GEMM2 bias + routing weight.
 *
 * Grid: x = shared-expert tiles, then routed tiles (CTAs past the device
 * tile count exit); y = weight-row tiles; z = K splits. The (x, y) pairs
 * are taken in bands of args.band row tiles, N tile outermost
 * (tile_walk.h): the CTAs in flight then read a few row tiles of A and a
 * few weight tiles, instead of every row tile of the call against one
 * weight tile (which streamed A from DRAM once per N tile).
 */
#ifndef MOE_CUDA_GEMM_CUH
#define MOE_CUDA_GEMM_CUH

#include "common.cuh"
#include "tile_walk.h"

/* Tiles of at least MMA_STAGED_MIN_BM rows stage their epilogue through
 * shared memory; smaller ones store each thread's pairs (measured,
 * bench/NOTES.md v8: staging is 2-14 % faster for the 64- and 128-row
 * tiles from 1024 tokens, 1-3.5 % slower for the 16-row tile).
 * -DMMA_DIRECT_EPI: no tile stages (measurement). */
#ifdef MMA_DIRECT_EPI
#define MMA_STAGED_MIN_BM (1 << 30)
#elif !defined(MMA_STAGED_MIN_BM)
#define MMA_STAGED_MIN_BM 64
#endif

template <int BM_, int BN_, int WM_, int WN_, int STAGES_> struct MmaCfg {
  static constexpr int BM = BM_, BN = BN_, BK = MMA_BK;
  static constexpr int WM = WM_, WN = WN_, STAGES = STAGES_;
  static constexpr int THREADS = WM * WN * 32;
  static constexpr int WTM = BM / WM, WTN = BN / WN;
  static constexpr int MI = WTM / 16, NI = WTN / 8;
  static constexpr int A_IT = BM * 8 / THREADS, B_IT = BN * 8 / THREADS;
  static constexpr int SMEM = STAGES * (BM + BN) * BK * 2;
  static constexpr bool STAGED_EPI = BM >= MMA_STAGED_MIN_BM;
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile");
  static_assert(A_IT * THREADS == BM * 8 && B_IT * THREADS == BN * 8, "load");
  static_assert(SMEM <= MMA_MAX_SMEM, "smem");
};
using Cfg16 = MmaCfg<16, 64, 1, 4, 6>;
using Cfg64 = MmaCfg<64, 128, 2, 2, 4>;
/* The 128 x 128 tile: four warps of 64 x 64 (bench/NOTES.md v7: 4-21 %
 * faster at 4096-16384 tokens than eight warps of 64 x 32, whose ldmatrix
 * traffic per MMA is a third higher). MMA128_WN=4 builds the eight. */
#ifndef MMA128_WN
#define MMA128_WN 2
#endif
using Cfg128 = MmaCfg<128, 128, 2, MMA128_WN, 3>;

/* Copies one 16-byte chunk (8 elements from k) of a row into shared memory:
 * async when aligned and whole, else element by element (zero past kend). */
template <class T>
__device__ __forceinline__ void load_chunk(uint32_t dst, const T *row, int k,
                                           int kend, bool ok, bool aligned,
                                           const void *any) {
  if (ok && k < kend) {
    if (aligned && k + 8 <= kend) {
      cp_async16(dst, row + k, 16);
    } else {
      const unsigned short *p = (const unsigned short *)(row + k);
      unsigned short v[8];
#pragma unroll
      for (int q = 0; q < 8; q++)
        v[q] = (k + q < kend) ? p[q] : 0;
      uint4 u;
      u.x = v[0] | ((uint32_t)v[1] << 16);
      u.y = v[2] | ((uint32_t)v[3] << 16);
      u.z = v[4] | ((uint32_t)v[5] << 16);
      u.w = v[6] | ((uint32_t)v[7] << 16);
      st_shared_v4(dst, u);
    }
  } else {
    cp_async16(dst, any, 0);
  }
}

template <class T, class C, class Epi>
__global__ void __launch_bounds__(C::THREADS)
    grouped_gemm_kernel(const mma_gemm_args args) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int BM = C::BM, BN = C::BN, BK = C::BK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / C::WN, wn = warp % C::WN;
  pdl_enter();

  /* Which tile: the launch order (x fastest) mapped to the band walk, so
   * that the CTAs in flight share a few row tiles and a few weight tiles.
   * grid.x * grid.y fits an int: 2^31 CTAs would need a chunk of at least
   * 2^31 / (N / 64) 16-row tiles, an act buffer far past any memory. */
  int bx, by;
  {
    const int mt = (int)gridDim.x;
    const int R = args.band > 0 && args.band < mt ? args.band : mt;
    moe_band_walk((int)(blockIdx.y * gridDim.x + blockIdx.x), mt,
                  (int)gridDim.y, R, &bx, &by);
  }
  /* Which problem, expert and rows this CTA owns. */
  int pi, e, row0, row_end;
  if (bx < args.shared_tiles) {
    pi = 1;
    e = 0;
    row0 = bx * BM;
    row_end = args.p[1].rows;
  } else {
    bx -= args.shared_tiles;
    if (bx >= __ldg(args.n_tiles)) return;
    pi = 0;
    e = __ldg(args.tiles + 2 * bx);
    row0 = __ldg(args.offsets + e) + __ldg(args.tiles + 2 * bx + 1);
    row_end = __ldg(args.offsets + e + 1);
  }
  const mma_problem P = pi ? args.p[1] : args.p[0];
  const int n0 = by * BN;
  if (n0 >= P.N) return;
  const int kb = blockIdx.z * P.kchunk;
  const int ke = min(P.K, kb + P.kchunk);
  const int nk = ke > kb ? (ke - kb + BK - 1) / BK : 0;

  const uint32_t sA = smem_u32(smem);
  const uint32_t sB = sA + C::STAGES * BM * BK * 2;
  const T *A = (const T *)P.A;
  const T *W = (const T *)P.W + (long long)e * P.w_stride;

  /* Each thread copies the same chunk column c of fixed rows every stage. */
  const int c = tid & 7;
  const T *a_row[C::A_IT];
  bool a_ok[C::A_IT];
  uint32_t a_dst[C::A_IT];
#pragma unroll
  for (int i = 0; i < C::A_IT; i++) {
    int r = (tid >> 3) + i * (C::THREADS / 8);
    int row = row0 + r;
    a_ok[i] = row < row_end;
    long long src = 0;
    if (a_ok[i]) src = P.gather ? __ldg(P.gather + row) : row;
    a_row[i] = A + src * P.lda;
    a_dst[i] = (uint32_t)(r * BK + ((c ^ (r & 7)) << 3)) * 2;
  }
  const T *b_row[C::B_IT];
  bool b_ok[C::B_IT];
  uint32_t b_dst[C::B_IT];
#pragma unroll
  for (int i = 0; i < C::B_IT; i++) {
    int r = (tid >> 3) + i * (C::THREADS / 8);
    int g = Epi::wrow(args.act, P.N, n0 + r);
    b_ok[i] = g >= 0;
    b_row[i] = W + (long long)(g >= 0 ? g : 0) * P.K;
    b_dst[i] = (uint32_t)(r * BK + ((c ^ (r & 7)) << 3)) * 2;
  }

  /* Whole K steps of 16-byte aligned rows (every step but a ragged last
   * one) take one unconditional copy per chunk: a row past the end copies
   * zero bytes from a valid address it never reads. The per-element path
   * below serves the rest; keeping its branches out of the common step
   * keeps the loop issue-light (bench/NOTES.md, v7). */
#ifndef MMA_SLOW_COPY /* measurement: every step on the per-element path */
  const int fast = P.a_aligned && P.w_aligned;
#else
  const int fast = 0;
#endif
  /* The fast path's weight chunks: a thread's chunk rows are r0 + i D
   * (D = THREADS / 8) and map to weight rows g0 + i S (S = D, or D / 2
   * with gated [gate; up] halves), so one pointer, one stride and a count
   * of valid chunks give every chunk's address in one multiply-add, where
   * a pointer per chunk was rebuilt each step (bench/NOTES.md, v9); a chunk
   * past the count copies zero bytes from the first chunk's address (or
   * the expert's first row when none is valid). A keeps a pointer per
   * chunk: its rows may be gathered, and the same form measured no
   * cheaper there in SASS. */
  constexpr int D = C::THREADS / 8;
  static_assert(D % 2 == 0, "a thread's rows keep their gate / up parity");
  const int r0 = tid >> 3;
  const int b_nv = min(max((P.N - n0 - r0 + D - 1) / D, 0), C::B_IT);
  uint32_t b_S = 0;
  const unsigned char *b_p0;
  {
    const int g0 = Epi::wrow(args.act, P.N, n0 + r0);
    if (b_nv >= 2)
      b_S = (uint32_t)(Epi::wrow(args.act, P.N, n0 + r0 + D) - g0) *
            (uint32_t)P.K * (uint32_t)sizeof(T);
    b_p0 = (const unsigned char *)(W + (long long)(g0 >= 0 ? g0 : 0) * P.K +
                                   kb + c * 8);
  }
  int a_sz[C::A_IT], b_sz[C::B_IT];
#pragma unroll
  for (int i = 0; i < C::A_IT; i++)
    a_sz[i] = a_ok[i] ? 16 : 0;
#pragma unroll
  for (int i = 0; i < C::B_IT; i++)
    b_sz[i] = b_ok[i] ? 16 : 0;

  auto load_stage = [&](int stage, int kt) {
    const int k = kb + kt * BK + c * 8;
    const uint32_t a_base = sA + stage * BM * BK * 2;
    const uint32_t b_base = sB + stage * BN * BK * 2;
    if (fast && kb + (kt + 1) * BK <= ke) {
#ifdef MMA_COPY64 /* measurement: v8's pointer per chunk */
#pragma unroll
      for (int i = 0; i < C::A_IT; i++)
        cp_async16(a_base + a_dst[i], a_row[i] + k, a_sz[i]);
#pragma unroll
      for (int i = 0; i < C::B_IT; i++)
        cp_async16(b_base + b_dst[i], b_row[i] + k, b_sz[i]);
#else
      const int kbytes = kt * BK * (int)sizeof(T);
#pragma unroll
      for (int i = 0; i < C::A_IT; i++)
        cp_async16(a_base + a_dst[i], a_row[i] + k, a_sz[i]);
#pragma unroll
      for (int i = 0; i < C::B_IT; i++)
        cp_async16(b_base + b_dst[i],
                   b_p0 + kbytes + (size_t)(i < b_nv ? i : 0) * b_S,
                   i < b_nv ? 16 : 0);
#endif
      return;
    }
#pragma unroll
    for (int i = 0; i < C::A_IT; i++)
      load_chunk<T>(a_base + a_dst[i], a_row[i], k, ke, a_ok[i],
                    P.a_aligned != 0, P.A);
#pragma unroll
    for (int i = 0; i < C::B_IT; i++)
      load_chunk<T>(b_base + b_dst[i], b_row[i], k, ke, b_ok[i],
                    P.w_aligned != 0, P.W);
  };

  float acc[C::MI][C::NI][4];
#pragma unroll
  for (int mi = 0; mi < C::MI; mi++)
#pragma unroll
    for (int ni = 0; ni < C::NI; ni++)
#pragma unroll
      for (int q = 0; q < 4; q++)
        acc[mi][ni][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < C::STAGES - 1; s++) {
    if (s < nk) load_stage(s, s);
    cp_async_commit();
  }

  /* Ring slots as counters (kt % STAGES is a multiply-high for 3). */
  int st = 0, pst = C::STAGES - 1;
  for (int kt = 0; kt < nk; kt++) {
    cp_async_wait<C::STAGES - 2>();
    __syncthreads();
    /* The stage refilled here was consumed in iteration kt - 1, which every
     * warp has finished (barrier above). */
    const int pf = kt + C::STAGES - 1;
    if (pf < nk) load_stage(pst, pf);
    cp_async_commit();
    pst = pst + 1 == C::STAGES ? 0 : pst + 1;

    const uint32_t a_base = sA + st * BM * BK * 2;
    const uint32_t b_base = sB + st * BN * BK * 2;
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t af[C::MI][4];
#pragma unroll
      for (int mi = 0; mi < C::MI; mi++) {
        int r = wm * C::WTM + mi * 16 + (lane & 15);
        int ch = kk * 2 + (lane >> 4);
        ldmatrix_x4(af[mi], a_base + (r * BK + ((ch ^ (r & 7)) << 3)) * 2);
      }
#pragma unroll
      for (int nj = 0; nj < C::NI / 2; nj++) {
        uint32_t bf[4];
        int r = wn * C::WTN + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        int ch = kk * 2 + ((lane >> 3) & 1);
        ldmatrix_x4(bf, b_base + (r * BK + ((ch ^ (r & 7)) << 3)) * 2);
#pragma unroll
        for (int mi = 0; mi < C::MI; mi++) {
          mma_16816<T>(acc[mi][2 * nj], af[mi], bf[0], bf[1]);
          mma_16816<T>(acc[mi][2 * nj + 1], af[mi], bf[2], bf[3]);
        }
      }
    }
    st = st + 1 == C::STAGES ? 0 : st + 1;
  }
  cp_async_wait<0>();

  /* Accumulator (mi, ni, h): row lane/4 (+8), columns 2*(lane%4) and +1.
   * Small tiles (C::STAGED_EPI false) store each thread's pairs. */
  if (!C::STAGED_EPI) {
#pragma unroll
    for (int mi = 0; mi < C::MI; mi++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int row = row0 + wm * C::WTM + mi * 16 + (lane >> 2) + h * 8;
        if (row >= row_end) continue;
#pragma unroll
        for (int ni = 0; ni < C::NI; ni++) {
          const int col = n0 + wn * C::WTN + ni * 8 + 2 * (lane & 3);
          Epi::template store<T>(args, P, e, row, col, acc[mi][ni][2 * h],
                                 acc[mi][ni][2 * h + 1], (int)blockIdx.z);
        }
      }
    return;
  }
  /* The epilogue through shared memory: the accumulators go to an f32 tile
   * over the ring, which every warp has finished reading (row stride
   * BN + 8: the eight rows of a warp's float2 stores fall in two bank
   * wavefronts, the least 256 bytes take); then Epi::store_tile runs a
   * rolled loop over (row, 16-byte chunk) units, so that its code stays
   * small and its global stores are whole chunks. */
  constexpr int LD = BN + 8;
  static_assert(BM * LD * 4 <= C::SMEM, "the staging tile fits the ring");
  float *stg = (float *)smem;
  __syncthreads();
#pragma unroll
  for (int mi = 0; mi < C::MI; mi++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = wm * C::WTM + mi * 16 + (lane >> 2) + h * 8;
#pragma unroll
      for (int ni = 0; ni < C::NI; ni++) {
        const int cl = wn * C::WTN + ni * 8 + 2 * (lane & 3);
        *(float2 *)(stg + r * LD + cl) =
            make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
      }
    }
  __syncthreads();
  const int rows = min(BM, row_end - row0);
  Epi::template store_tile<T, BN, LD, C::THREADS>(args, P, e, row0, rows, n0,
                                                  stg, (int)blockIdx.z);
}

/* Stores n <= 8 values to o: one 16-byte store when whole and aligned. */
template <class T>
__device__ __forceinline__ void store8(T *o, const float (&v)[8], int n) {
  if (n == 8 && ((uintptr_t)o & 15) == 0) {
    uint4 w;
    T *t = (T *)&w;
#pragma unroll
    for (int q = 0; q < 8; q++)
      t[q] = from_f32<T>(v[q]);
    *(uint4 *)o = w;
    return;
  }
  for (int q = 0; q < n; q++)
    o[q] = from_f32<T>(v[q]);
}

template <class T, class C, class Epi>
static cudaError_t gemm_launch(const mma_gemm_args *a, dim3 grid,
                               cudaStream_t s) {
  return launch_kernel(grouped_gemm_kernel<T, C, Epi>, grid, dim3(C::THREADS),
                       (size_t)C::SMEM, s, a->pdl, *a);
}

template <class T, class C, class Epi> static cudaError_t gemm_smem() {
  return cudaFuncSetAttribute(grouped_gemm_kernel<T, C, Epi>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              C::SMEM);
}

template <class T, class Epi>
static cudaError_t gemm_dispatch(mma_cfg cfg, const mma_gemm_args *a, dim3 grid,
                                 cudaStream_t s) {
  switch (cfg) {
  case MMA_CFG_16:
    return gemm_launch<T, Cfg16, Epi>(a, grid, s);
  case MMA_CFG_64:
    return gemm_launch<T, Cfg64, Epi>(a, grid, s);
  case MMA_CFG_128:
    return gemm_launch<T, Cfg128, Epi>(a, grid, s);
  default:
    return cudaErrorInvalidValue;
  }
}

template <class T, class Epi> static cudaError_t gemm_set_smem() {
  cudaError_t e = gemm_smem<T, Cfg16, Epi>();
  if (e != cudaSuccess) return e;
  e = gemm_smem<T, Cfg64, Epi>();
  return e != cudaSuccess ? e : gemm_smem<T, Cfg128, Epi>();
}

#endif
