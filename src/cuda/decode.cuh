/*
 * decode.cuh - the decode kernel's layout (the copy ring, its slots and
 * mbarriers), its small device helpers, and how a queue index becomes a
 * unit (decode.cu).
 */
#ifndef MOE_CUDA_DECODE_CUH
#define MOE_CUDA_DECODE_CUH

#include "common.cuh"

#define DEC_CWARPS 4 /* consumer warps; one more warp produces */
#define DEC_CTHREADS (DEC_CWARPS * 32)
#define DEC_THREADS (DEC_CTHREADS + 32)
#define DEC_STAGES 5
constexpr int DEC_KS = MMA_DEC_KS;
constexpr int DEC_CH = DEC_KS / 8; /* 16-byte chunks per row per stage */
constexpr int DEC_WR = MMA_DEC_WROWS, DEC_TR = MMA_DEC_ROWS;
constexpr int DEC_SW = DEC_WR * DEC_KS * 2;
constexpr int DEC_SA = DEC_TR * DEC_KS * 2;
constexpr int DEC_STAGE = DEC_SW + DEC_SA;
constexpr int DEC_RED = DEC_CWARPS * DEC_WR * DEC_TR * 4;
constexpr int DEC_BAR = DEC_STAGES * 16 + DEC_STAGES * 16; /* mbarriers, meta */
constexpr int DEC_SMEM = DEC_STAGES * DEC_STAGE + DEC_RED + DEC_BAR;
static_assert(DEC_KS == DEC_CWARPS * 64, "each warp owns 64 K of a stage");
static_assert(DEC_CH == 32, "a producer lane owns one chunk column");
static_assert(DEC_SMEM <= MMA_MAX_SMEM, "smem");
#define DEC_WARPS DEC_CWARPS

/* Byte offset of 16-byte chunk c of row r: chunks XOR-swizzled by row
 * within each 128-byte group, so ldmatrix reads are conflict-free. */
__device__ __forceinline__ uint32_t dec_swz(int r, int c) {
  return (uint32_t)(r * DEC_CH + ((c & ~7) | ((c ^ r) & 7))) * 16;
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

__device__ __forceinline__ int ld_acquire(const int32_t *p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n"
               : "=r"(v)
               : "l"(p)
               : "memory");
  return v;
}

/* ---- mbarriers (sm_80 forms) ---- */
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(bar), "r"(count)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile(
      "{\n .reg .b64 st;\n mbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(bar)
      : "memory");
}
/* Arrives once this thread's earlier cp.async copies have landed. */
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(bar)
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile("{\n .reg .pred p;\n"
                 " mbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n"
                 " selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
}
/* The consumer warps only (named barrier 1). */
__device__ __forceinline__ void dec_csync() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(DEC_CTHREADS) : "memory");
}

/* One tile: up to 8 rows of one expert (or of the shared expert). */
struct DecTile {
  int shared, e, r0, nrows;
};

__device__ __forceinline__ DecTile dec_tile(const mma_decode_args &a, int t) {
  DecTile d;
  if (t < a.sh_tiles) {
    d.shared = 1;
    d.e = 0;
    d.r0 = t * DEC_TR;
    d.nrows = min(DEC_TR, a.mc - d.r0);
  } else {
    const int i = t - a.sh_tiles;
    d.shared = 0;
    d.e = __ldg(a.tiles + 2 * i);
    d.r0 = __ldg(a.offsets + d.e) + __ldg(a.tiles + 2 * i + 1);
    d.nrows = min(DEC_TR, __ldg(a.offsets + d.e + 1) - d.r0);
  }
  return d;
}

/* Local slots of token t (pairs whose expert is on this device). */
__device__ __forceinline__ int dec_nloc(const mma_decode_args &a, int t) {
  int n = 0;
  for (int j = 0; j < a.k; j++)
    n += __ldg(a.pair_e + (long long)t * a.k + j) >= 0;
  return n;
}

/* Unit counts of one call (from the device tile count). */
struct DecCounts {
  int u1s, u1, per2s, u2s, total, nwb1s, nwb1, per2;
};

__device__ __forceinline__ DecCounts dec_counts(const mma_decode_args &a) {
  DecCounts c;
  const int sh = a.sh_tiles, nr = __ldg(a.n_tiles);
  const int ncb = (a.H + DEC_WR - 1) / DEC_WR;
  c.nwb1s = (a.N1s + DEC_WR - 1) / DEC_WR;
  c.nwb1 = (a.N1 + DEC_WR - 1) / DEC_WR;
  c.u1s = sh * c.nwb1s;
  c.u1 = c.u1s + nr * c.nwb1;
  c.per2s = ncb * a.z2s;
  c.per2 = ncb * a.z2;
  c.u2s = sh * c.per2s;
  c.total = c.u1 + c.u2s + nr * c.per2;
  return c;
}

/* What a unit computes (no copy pointers). */
struct DecUnit {
  int kind; /* 1 GEMM1, 2 GEMM2, -1 none (queue exhausted) */
  int t, blk, z, kb, ke;
  DecTile d;
};

/* Unit u without its tile's rows: arithmetic only. A routed tile's
 * expert and rows (d.e, d.r0, d.nrows) come from dec_tile. */
__device__ DecUnit dec_unit_head(const mma_decode_args &a, const DecCounts &c,
                                 int u) {
  DecUnit P;
  P.kind = -1;
  P.t = P.blk = P.z = P.kb = P.ke = 0;
  P.d.shared = P.d.e = P.d.r0 = P.d.nrows = 0;
  if (u < 0 || u >= c.total) return P;
  if (u < c.u1) {
    P.kind = 1;
    if (u < c.u1s) {
      P.t = u / c.nwb1s;
      P.blk = u % c.nwb1s;
    } else {
      P.t = a.sh_tiles + (u - c.u1s) / c.nwb1;
      P.blk = (u - c.u1s) % c.nwb1;
    }
  } else {
    int v = u - c.u1;
    P.kind = 2;
    if (v < c.u2s) {
      const int rem = v % c.per2s;
      P.t = v / c.per2s;
      P.blk = rem / a.z2s;
      P.z = rem % a.z2s;
    } else {
      v -= c.u2s;
      const int rem = v % c.per2;
      P.t = a.sh_tiles + v / c.per2;
      P.blk = rem / a.z2;
      P.z = rem % a.z2;
    }
  }
  P.d.shared = P.t < a.sh_tiles;
  if (P.d.shared) {
    P.d.r0 = P.t * DEC_TR;
    P.d.nrows = min(DEC_TR, a.mc - P.d.r0);
  }
  if (P.kind == 1) {
    P.kb = 0;
    P.ke = a.H;
  } else {
    const int K = P.d.shared ? a.Is : a.I, kc = P.d.shared ? a.kc2s : a.kc2;
    P.kb = P.z * kc;
    P.ke = min(K, P.kb + kc);
  }
  return P;
}

__device__ DecUnit dec_unit(const mma_decode_args &a, const DecCounts &c,
                            int u) {
  DecUnit P = dec_unit_head(a, c, u);
  if (P.kind > 0) P.d = dec_tile(a, P.t);
  return P;
}

__device__ __forceinline__ int dec_nk(int kb, int ke) {
  return ke > kb ? (ke - kb + DEC_KS - 1) / DEC_KS : 0;
}

#endif
