/*
 * decode.cu - the decode path of cuda-mma: GEMM1 + activation, GEMM2 +
 * routing weight and the combine in one persistent kernel (mma.h, "decode").
 *
 * With few rows per expert the layer is a weight stream: every touched
 * expert's weights are read once and each weight meets at most 8 rows. The
 * weights therefore go into the MMA's M dimension (16 weight rows per unit,
 * A operand) and the tile's rows into N (8, B operand): nothing of the
 * weight tile is wasted, and a unit is 16 x K weights, so even one active
 * expert splits into hundreds of units that keep every SM streaming.
 *
 * A CTA is one producer warp and four consumer warps around a ring of
 * DEC_STAGES shared-memory slots (K = 256 per slot), with a "full" and an
 * "empty" mbarrier per slot. The producer takes units from a device queue
 * and copies their stages (cp.async; completion arrives on "full"); it is
 * the only warp that ever waits on other CTAs, so the copies run ahead of
 * the consumers' epilogues (fences, counters, combine). The consumers
 * compute each slot (each warp a quarter of its K), release it, and at a
 * unit's last stage reduce the four warps' partial tiles and write:
 *   GEMM1: act[row][j] = act(gate, up) for 8 j (gated) or 16 n (plain);
 *   GEMM2: Y[z][pair][n] = w[pair] * (partial over its K split + b2 at z 0).
 * Gated GEMM1 units hold rows (gate j..j+7, up j..j+7), so that the MMA's
 * accumulator rows g and g + 8 are one (gate, up) pair.
 *
 * Ordering: GEMM1 units tile by tile, then GEMM2 units. Before copying a
 * GEMM2 unit's rows the producer waits (acquire) until done1[tile] counts
 * all of the tile's GEMM1 units. Every unit a producer took earlier is
 * already copied, and a GEMM2 unit only waits on GEMM1 units, which have
 * lower indices and never wait: the queue cannot deadlock, however many
 * CTAs are resident.
 *
 * Combine: each GEMM2 unit, after its Y stores and a fence, counts one
 * contribution per row on cnt2[token][column block]; the contribution that
 * completes a block (local slots x splits + shared splits) sums the block's
 * Y planes in slot, then split order, and writes out. No float atomics, so
 * results are bit-identical run to run. Tokens with no contribution at all
 * are zeroed up front.
 */
#include "decode.cuh"

/* MMAs of one stage (ring slot st): each warp its 64 K of the stage. */
template <class T>
__device__ __forceinline__ void dec_stage_mma(uint32_t s0, int st,
                                              float (&acc)[4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t wb = s0 + st * DEC_STAGE, ab = wb + DEC_SW;
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    const int ch = warp * 8 + kk * 2;
    uint32_t af[4], bf[2];
    ldmatrix_x4(af, wb + dec_swz(lane & 15, ch + (lane >> 4)));
    ldmatrix_x2(bf, ab + dec_swz(lane & 7, ch + ((lane >> 3) & 1)));
    mma_16816<T>(acc, af, bf[0], bf[1]);
  }
}

/* The four warps' accumulators into red[warp][16][8] (summed later in a
 * fixed order). Ends with a barrier. */
__device__ __forceinline__ void dec_store_acc(float *red,
                                              const float (&acc)[4]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = 2 * (lane & 3);
  float *rw = red + warp * DEC_WR * DEC_TR;
  rw[g * DEC_TR + q] = acc[0];
  rw[g * DEC_TR + q + 1] = acc[1];
  rw[(g + 8) * DEC_TR + q] = acc[2];
  rw[(g + 8) * DEC_TR + q + 1] = acc[3];
  dec_csync();
}

__device__ __forceinline__ float dec_sum(const float *red, int r, int c) {
  float v = 0.0f;
#pragma unroll
  for (int w = 0; w < DEC_WARPS; w++)
    v += red[(w * DEC_WR + r) * DEC_TR + c];
  return v;
}

/* GEMM1 epilogue: bias, activation, act rows; then the tile's count. */
template <class T>
__device__ void dec_epi1(const mma_decode_args &a, const float *red,
                         const DecUnit &P) {
  const int tid = threadIdx.x;
  const DecTile &d = P.d;
  const int Ih = d.shared ? a.Is : a.I, N = d.shared ? a.N1s : a.N1;
  const float *b = d.shared || !a.b13 ? nullptr : a.b13 + (long long)d.e * N;
  T *out = (T *)(d.shared ? a.abuf_sh : a.abuf);
  const long long ld = d.shared ? a.ld_act_sh : a.ld_act;
  if (a.act.gated) {
    if (tid < 64) {
      const int c = tid >> 3, jj = tid & 7, j = P.blk * 8 + jj;
      if (c < d.nrows && j < Ih) {
        float gv = dec_sum(red, jj, c), uv = dec_sum(red, jj + 8, c);
        if (b) {
          gv += b[a.act.interleaved ? 2 * j : j];
          uv += b[a.act.interleaved ? 2 * j + 1 : Ih + j];
        }
        out[(d.r0 + c) * ld + j] = from_f32<T>(act_apply(a.act, gv, uv));
      }
    }
  } else {
    const int c = tid >> 4, r = tid & 15, n = P.blk * DEC_WR + r;
    if (c < d.nrows && n < N) {
      const float v = dec_sum(red, r, c) + (b ? b[n] : 0.0f);
      out[(d.r0 + c) * ld + n] = from_f32<T>(act_apply(a.act, v, 0.0f));
    }
  }
  __threadfence();
  dec_csync();
  if (tid == 0) atomicAdd(a.ctr + 2 + P.t, 1);
}

/* GEMM2 epilogue: Y (routing weight, bias in split 0), the contributions
 * and, where this unit completes a (token, column block), its combine. */
template <class T>
__device__ void dec_epi2(const mma_decode_args &a, const float *red,
                         const DecUnit &P, int *s_flag) {
  const int tid = threadIdx.x;
  const DecTile &d = P.d;
  const int cb = P.blk, z = P.z;
  {
    const int c = tid >> 4, r = tid & 15, n = cb * DEC_WR + r;
    if (c < d.nrows && n < a.H) {
      float v = dec_sum(red, r, c);
      if (d.shared) {
        a.Ysh[z * a.ysh_zstride + (long long)(d.r0 + c) * a.H + n] = v;
      } else {
        const int p = __ldg(a.sorted_pair + d.r0 + c);
        if (z == 0 && a.b2) v += a.b2[(long long)d.e * a.H + n];
        a.Y[z * a.y_zstride + (long long)p * a.H + n] = __ldg(a.wts + p) * v;
      }
    }
  }
  __threadfence();
  dec_csync();
  const int ncb = (a.H + DEC_WR - 1) / DEC_WR;
  int32_t *cnt2 = a.ctr + 2 + a.tile_cap;
  const int has_sh = a.sw13 != nullptr;
  if (tid < DEC_TR) {
    int fin = -1;
    if (tid < d.nrows) {
      const int tok =
          d.shared ? d.r0 + tid : __ldg(a.sorted_pair + d.r0 + tid) / a.k;
      const int want = dec_nloc(a, tok) * a.z2 + (has_sh ? a.z2s : 0);
      const int old = atomicAdd(cnt2 + (long long)tok * ncb + cb, 1);
      if (old == want - 1) fin = tok;
    }
    s_flag[1 + tid] = fin;
  }
  dec_csync();
  const int s = tid >> 4, c = tid & 15, n = cb * DEC_WR + c;
  const int tok = s_flag[1 + s];
  if (tok < 0) return;
  __threadfence();
  if (n < a.H) {
    float v = 0.0f;
    for (int j = 0; j < a.k; j++) {
      const long long p = (long long)tok * a.k + j;
      if (__ldg(a.pair_e + p) < 0) continue;
      for (int zz = 0; zz < a.z2; zz++)
        v += __ldcg(a.Y + zz * a.y_zstride + p * a.H + n);
    }
    if (has_sh)
      for (int zz = 0; zz < a.z2s; zz++)
        v += __ldcg(a.Ysh + zz * a.ysh_zstride + (long long)tok * a.H + n);
    ((T *)a.out)[(long long)tok * a.H + n] = from_f32<T>(v);
  }
  if (c == 0) cnt2[(long long)tok * ncb + cb] = 0;
}

/* Tokens with no local slot and no shared expert: their output is zero
 * (no unit writes them). Independent of every unit. */
template <class T> __device__ void dec_zero(const mma_decode_args &a) {
  for (int t = blockIdx.x; t < a.mc; t += gridDim.x) {
    if (dec_nloc(a, t) > 0) continue;
    for (int n = threadIdx.x; n < a.H; n += DEC_THREADS)
      ((T *)a.out)[(long long)t * a.H + n] = from_f32<T>(0.0f);
  }
}

/* ---- producer: copies every stage of every unit it takes ----
 * Taking a unit is a chain of dependent loads (the queue, the tile list,
 * the expert's offsets, the rows' tokens). The producer walks that chain
 * for its next unit one link per copied stage, so each load is in flight
 * while it waits for a free slot, and the ring does not run dry between
 * units. */
struct DecPrep {
  int step; /* next link: 0 queue, 1 tile list, 2 offsets, 3 tokens, 4 done */
  int ru, te, tr, o0, o1, tok;
  DecUnit N;
};

__device__ __forceinline__ void dec_prep(const mma_decode_args &a,
                                         const DecCounts &c, DecPrep &S) {
  const int lane = threadIdx.x & 31;
  switch (S.step) {
  case 0:
    if (lane == 0) S.ru = atomicAdd(a.ctr, 1);
    S.step = 1;
    break;
  case 1:
    S.N = dec_unit_head(a, c, __shfl_sync(0xffffffffu, S.ru, 0));
    S.step = 4;
    if (S.N.kind > 0 && !S.N.d.shared) {
      const int i = S.N.t - a.sh_tiles;
      S.te = __ldg(a.tiles + 2 * i);
      S.tr = __ldg(a.tiles + 2 * i + 1);
      S.step = 2;
    }
    break;
  case 2:
    S.o0 = __ldg(a.offsets + S.te);
    S.o1 = __ldg(a.offsets + S.te + 1);
    S.step = 3;
    break;
  case 3:
    S.N.d.e = S.te;
    S.N.d.r0 = S.o0 + S.tr;
    S.N.d.nrows = min(DEC_TR, S.o1 - S.N.d.r0);
    if (S.N.kind == 1 && lane < S.N.d.nrows)
      S.tok = __ldg(a.sorted_tok + S.N.d.r0 + lane);
    S.step = 4;
    break;
  default:
    break;
  }
}

/* The copy pointers of a prepared unit: 16 weight rows, 8 rows. */
template <class T>
__device__ __forceinline__ int
dec_copy_ptrs(const mma_decode_args &a, const DecPrep &S,
              const T *(&wp)[DEC_WR], const T *(&ap)[DEC_TR]) {
  const DecUnit &P = S.N;
#pragma unroll
  for (int i = 0; i < DEC_WR; i++)
    wp[i] = nullptr;
#pragma unroll
  for (int i = 0; i < DEC_TR; i++) {
    /* every lane takes part in the shuffle */
    const int tok = __shfl_sync(0xffffffffu, S.tok, i);
    ap[i] = nullptr;
    if (P.kind == 1 && i < P.d.nrows)
      ap[i] = (const T *)a.x + (long long)(P.d.shared ? P.d.r0 + i : tok) * a.H;
  }
  if (P.kind == 1) {
    const int Ih = P.d.shared ? a.Is : a.I, N = P.d.shared ? a.N1s : a.N1;
    const T *W = (const T *)(P.d.shared ? a.sw13 : a.w13) +
                 (long long)P.d.e * a.N1 * a.H;
#pragma unroll
    for (int i = 0; i < DEC_WR; i++) {
      int n;
      if (a.act.gated) {
        const int j = P.blk * 8 + (i & 7), up = i >> 3;
        n = j >= Ih ? -1 : a.act.interleaved ? 2 * j + up : up * Ih + j;
      } else {
        n = P.blk * DEC_WR + i;
        if (n >= N) n = -1;
      }
      if (n >= 0) wp[i] = W + (long long)n * a.H;
    }
  } else if (P.kind == 2) {
    const int K = P.d.shared ? a.Is : a.I;
    const T *W =
        (const T *)(P.d.shared ? a.sw2 : a.w2) + (long long)P.d.e * a.H * K;
#pragma unroll
    for (int i = 0; i < DEC_WR; i++) {
      const int n = P.blk * DEC_WR + i;
      if (n < a.H) wp[i] = W + (long long)n * K;
    }
    const T *act = (const T *)(P.d.shared ? a.abuf_sh : a.abuf);
    const long long ld = P.d.shared ? a.ld_act_sh : a.ld_act;
#pragma unroll
    for (int i = 0; i < DEC_TR; i++)
      if (i < P.d.nrows) ap[i] = act + (P.d.r0 + i) * ld;
  }
  return P.kind > 0 ? dec_nk(P.kb, P.ke) : 0;
}

template <class T>
__device__ void dec_produce(const mma_decode_args &a, const DecCounts &c,
                            uint32_t s0, uint32_t full, uint32_t empty,
                            int *meta) {
  const int lane = threadIdx.x & 31;
  DecPrep S;
  S.step = 0;
  S.ru = S.te = S.tr = S.o0 = S.o1 = S.tok = 0;
  int it = 0;
  for (;;) {
    while (S.step < 4)
      dec_prep(a, c, S);
    const T *wp[DEC_WR];
    const T *ap[DEC_TR];
    const int nk = dec_copy_ptrs<T>(a, S, wp, ap);
    const DecUnit P = S.N;
    const int u = __shfl_sync(0xffffffffu, S.ru, 0);
    S.step = 0; /* the next unit's chain starts with this unit's copies */
    if (P.kind == 2) {
      /* The tile's activations: every GEMM1 unit of it done. */
      if (lane == 0) {
        const int need = ((P.d.shared ? a.N1s : a.N1) + DEC_WR - 1) / DEC_WR;
        while (ld_acquire(a.ctr + 2 + P.t) < need)
          __nanosleep(100);
      }
      __syncwarp();
    }
    /* One stage per slot; a sentinel stage (unit -1) ends the consumers. */
    const int stages = P.kind > 0 ? nk : 1;
    for (int kt = 0; kt < stages; kt++, it++) {
      const int st = it % DEC_STAGES, use = it / DEC_STAGES;
      if (P.kind > 0) dec_prep(a, c, S);
      if (use > 0) mbar_wait(empty + 8 * st, (use - 1) & 1);
      if (lane == 0) {
        meta[2 * st] = P.kind > 0 ? u : -1;
        meta[2 * st + 1] = kt | (nk << 16);
      }
      if (P.kind > 0) {
        const uint32_t base = s0 + st * DEC_STAGE;
        const int k = P.kb + kt * DEC_KS + lane * 8;
        const bool in = k < P.ke;
#pragma unroll
        for (int i = 0; i < DEC_WR; i++) {
          const bool ok = wp[i] && in;
          cp_async16(base + dec_swz(i, lane),
                     ok ? (const void *)(wp[i] + k) : a.x, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < DEC_TR; i++) {
          const bool ok = ap[i] && in;
          cp_async16(base + DEC_SW + dec_swz(i, lane),
                     ok ? (const void *)(ap[i] + k) : a.x, ok ? 16 : 0);
        }
      }
      mbar_arrive_cp_async(full + 8 * st);
      if (lane == 0) mbar_arrive(full + 8 * st); /* releases meta */
    }
    if (P.kind <= 0) return;
  }
}

/* ---- consumers: compute the slots, then each unit's epilogue ---- */
template <class T>
__device__ void dec_consume(const mma_decode_args &a, const DecCounts &c,
                            uint32_t s0, uint32_t full, uint32_t empty,
                            const int *meta, float *red, int *s_flag) {
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int it = 0;; it++) {
    const int st = it % DEC_STAGES, use = it / DEC_STAGES;
    mbar_wait(full + 8 * st, use & 1);
    const int u = meta[2 * st], kn = meta[2 * st + 1];
    if (u < 0) return;
    dec_stage_mma<T>(s0, st, acc);
    mbar_arrive(empty + 8 * st);
    if ((kn & 0xffff) != (kn >> 16) - 1) continue;
    /* The unit's last stage: reduce, write, count. */
    dec_store_acc(red, acc);
    const DecUnit P = dec_unit(a, c, u);
    if (P.kind == 1)
      dec_epi1<T>(a, red, P);
    else
      dec_epi2<T>(a, red, P, s_flag);
    dec_csync(); /* red and s_flag reused by the next unit */
#pragma unroll
    for (int q = 0; q < 4; q++)
      acc[q] = 0.0f;
  }
}

/* One producer warp, DEC_CWARPS consumer warps (file comment). */
template <class T>
__global__ void __launch_bounds__(DEC_THREADS)
    decode_kernel(const mma_decode_args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int s_flag[1 + DEC_TR];
  const int tid = threadIdx.x;
  const uint32_t s0 = smem_u32(smem);
  float *red = (float *)(smem + DEC_STAGES * DEC_STAGE);
  unsigned char *bars = smem + DEC_STAGES * DEC_STAGE + DEC_RED;
  const uint32_t full = smem_u32(bars), empty = full + 8 * DEC_STAGES;
  int *meta = (int *)(bars + 16 * DEC_STAGES);
  pdl_enter();
  if (tid == 0)
    for (int s = 0; s < DEC_STAGES; s++) {
      mbar_init(full + 8 * s, 33); /* 32 copy arrivals + the meta release */
      mbar_init(empty + 8 * s, DEC_CTHREADS);
    }
  if (!a.sw13) dec_zero<T>(a);
  __syncthreads();
  const DecCounts cnt = dec_counts(a);
  if (tid >= DEC_CTHREADS)
    dec_produce<T>(a, cnt, s0, full, empty, meta);
  else
    dec_consume<T>(a, cnt, s0, full, empty, meta, red, s_flag);
  cp_async_wait<0>();
  __syncthreads();

  /* The last CTA out resets the queue and the per-tile counters (cnt2 is
   * reset by each block's finisher). */
  int32_t *queue = a.ctr, *retired = a.ctr + 1;
  int last = 0;
  if (tid == 0) {
    __threadfence();
    last = atomicAdd(retired, 1) == (int)gridDim.x - 1;
  }
  if (__syncthreads_or(last)) {
    const int tiles = a.sh_tiles + __ldg(a.n_tiles);
    for (int i = tid; i < tiles; i += DEC_THREADS)
      a.ctr[2 + i] = 0;
    if (tid == 0) {
      *queue = 0;
      *retired = 0;
    }
  }
}

#define DEC_ENTRY(T, DT) {DT, MMA_ACTS_GATED, MMA_ACTS_PLAIN},
static const mma_inst decode_table[] = {MMA_DTYPES(DEC_ENTRY)};

extern "C" int mma_decode_instances(const mma_inst **tab) {
  *tab = decode_table;
  return (int)(sizeof decode_table / sizeof decode_table[0]);
}

extern "C" long long mma_decode_ctr_count(int tile_cap, int mc_cap, int H) {
  return 2 + (long long)tile_cap +
         (long long)mc_cap * ((H + DEC_WR - 1) / DEC_WR);
}

extern "C" cudaError_t mma_decode_prepare(moe_dtype dt, int *ctas) {
  cudaError_t e = cudaErrorInvalidValue;
  *ctas = 0;
#define DEC_PREP(T, DT)                                                        \
  case DT:                                                                     \
    e = cudaFuncSetAttribute(decode_kernel<T>,                                 \
                             cudaFuncAttributeMaxDynamicSharedMemorySize,      \
                             DEC_SMEM);                                        \
    if (e == cudaSuccess)                                                      \
      e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(                       \
          ctas, decode_kernel<T>, DEC_THREADS, DEC_SMEM);                      \
    break;
  switch (dt) {
    MMA_DTYPES(DEC_PREP)
  default:
    break;
  }
  return e;
}

extern "C" cudaError_t mma_launch_decode(moe_dtype dt, const mma_decode_args *a,
                                         int grid, cudaStream_t s) {
#define DEC_CASE(T, DT)                                                        \
  case DT:                                                                     \
    return launch_kernel(decode_kernel<T>, dim3((unsigned)grid),               \
                         dim3(DEC_THREADS), (size_t)DEC_SMEM, s, 0, *a);
  switch (dt) {
    MMA_DTYPES(DEC_CASE)
  default:
    return cudaErrorInvalidValue;
  }
}
