/*
 * gemv_bulk.cuh - gemv's weight stream by bulk copies (sm_90 and later;
 * included by gemv.cu): each warp's units run as one stream.
 *
 * The cp.async ring of gemv.cu streams unit by unit: each unit of a warp
 * fills its ring and drains it (at qwen3 and one token a warp's units are
 * four stages each, so about a third of the warp's time is a ring
 * filling). Here lane 0 of the warp issues, per slot, three bulk copies
 * (cp.async.bulk: row a's, row b's and the vector's segment of up to
 * GV_SEG 16-byte chunks each) that complete on the slot's mbarrier, and it
 * issues them for the warp's whole sequence of segments, across the units'
 * ends: GV_S - 1 slots stay in flight until the warp's last segment. The
 * lanes walk the same sequence (a walk is a small state machine, run once
 * by lane 0 ahead for the copies and once by every lane for the sums), so
 * nothing about the sequence is stored. A slot is refilled by the warp
 * that read it, after a __syncwarp: no empty barrier. MOE_MMA_GEMV_BULK=2
 * copies the vectors by cp.async instead (gb_issue).
 */
#ifndef GV_SEG
#define GV_SEG (GV_U * 32) /* 16-byte chunks per stream and slot */
#endif
#define GV_SLOT_BYTES (3 * GV_SEG * 16)
#if GV_S * GV_SLOT_BYTES > GV_S * GV_STAGE_BYTES
#error "GV_SEG: the bulk ring must fit in the cp.async ring's bytes"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define GV_BULK_DEVICE 1
#endif

/* One segment of a walk: up to GV_SEG chunks of two weight rows and the
 * vector, its weight, and whether it ends its unit. */
struct gb_seg {
  const char *pa, *pb, *pv;
  int n;
  float w;
  int end;
};

__device__ __forceinline__ void gb_bar_init(uint32_t bar) {
#ifdef GV_BULK_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar)
               : "memory");
#endif
}

/* The generic proxy's earlier writes to the ring (routing scratch) and the
 * barriers' initialisation, ordered before the bulk copies. */
__device__ __forceinline__ void gb_fence() {
#ifdef GV_BULK_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/* Every thread: its generic-proxy writes to shared memory, ordered before
 * later bulk copies into the same bytes (with a barrier after it). */
__device__ __forceinline__ void gb_proxy_fence() {
#ifdef GV_BULK_DEVICE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void gb_copy(uint32_t dst, const void *src,
                                        uint32_t bytes, uint32_t bar) {
#ifdef GV_BULK_DEVICE
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
               "bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
#endif
}

/* Segment s into slot st (barrier bar): lane 0 issues the bulk copies of
 * the two weight rows, and of the vector too unless VCA; with VCA every
 * lane copies its own vector chunks (c = lane + 32 i, the ones it reads)
 * by cp.async through L1, which the SM's warps share: the vectors (x, h)
 * are read by every warp of the grid, and bulk copies all go to L2. */
template <bool VCA>
__device__ __forceinline__ void gb_issue(const gb_seg &s, uint32_t st,
                                         uint32_t bar, int lane) {
#ifdef GV_BULK_DEVICE
  const uint32_t b = (uint32_t)s.n * 16u;
  if (lane == 0) {
    asm volatile(
        "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
        "r"((VCA ? 2u : 3u) * b)
        : "memory");
    gb_copy(st, s.pa, b, bar);
    gb_copy(st + GV_SEG * 16, s.pb, b, bar);
    if (!VCA) gb_copy(st + 2 * GV_SEG * 16, s.pv, b, bar);
  }
  if (VCA) {
#pragma unroll
    for (int i = 0; i < GV_SEG / 32; i++) {
      const int c = lane + 32 * i;
      if (c < s.n)
        gv_cp_async_ca(st + (2 * GV_SEG + c) * 16, s.pv + c * 16, 16);
    }
  }
#endif
}

__device__ __forceinline__ void gb_wait(uint32_t bar, uint32_t parity) {
#ifdef GV_BULK_DEVICE
  asm volatile("{\n .reg .pred p;\n"
               "W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
               " @!p bra W;\n}\n" ::"r"(bar),
               "r"(parity)
               : "memory");
#endif
}

/* The warp's walk, through GV_S slots of ring (barriers at bars): per
 * segment, sa += w <A, v>, sb += w <B, v> over its chunks; at a unit's
 * end, wk.finish(sa, sb, lane) and the sums restart from zero. wi and wu
 * are two copies of the same walk (issue and use); wi runs in lane 0, or
 * in every lane with VCA (each lane copies its vector chunks). With VCA
 * each slot's vector chunks are one cp.async group a lane, so that
 * wait_group GV_S - 1 finds the oldest slot's. */
template <class T, bool VCA, class Walk>
__device__ __forceinline__ void gb_stream(Walk &wi, Walk &wu, int lane,
                                          uint32_t ring, uint32_t bars) {
  gb_seg s;
  if (lane == 0) {
    for (int p = 0; p < GV_S; p++)
      gb_bar_init(bars + 8 * p);
    gb_fence();
  }
  __syncwarp();
  const bool issuer = VCA || lane == 0;
  for (int p = 0; p < GV_S; p++) {
    if (issuer && wi.next(s))
      gb_issue<VCA>(s, ring + p * GV_SLOT_BYTES, bars + 8 * p, lane);
    if (VCA) cp_async_commit();
  }
  float sa = 0.0f, sb = 0.0f;
  int slot = 0;
  uint32_t par = 0;
  while (wu.next(s)) {
    const uint32_t st = ring + slot * GV_SLOT_BYTES;
    if (VCA) cp_async_wait<GV_S - 1>();
    gb_wait(bars + 8 * slot, par);
#pragma unroll
    for (int i = 0; i < GV_SEG / 32; i++) {
      const int c = lane + 32 * i;
      if (c < s.n) {
        const uint4 v = gv_lds(st + (2 * GV_SEG + c) * 16);
        const uint4 a = gv_lds(st + c * 16);
        const uint4 b = gv_lds(st + (GV_SEG + c) * 16);
        sa = fmaf(s.w, gv_dot8<T>(a, v), sa);
        sb = fmaf(s.w, gv_dot8<T>(b, v), sb);
      }
    }
    __syncwarp();
    gb_seg n;
    if (issuer && wi.next(n)) gb_issue<VCA>(n, st, bars + 8 * slot, lane);
    if (VCA) cp_async_commit();
    if (s.end) {
      wu.finish(sa, sb, lane);
      sa = sb = 0.0f;
    }
    if (++slot == GV_S) {
      slot = 0;
      par ^= 1u;
    }
  }
}

/* Segment off.. of a run of tot chunks. */
__device__ __forceinline__ void gb_cut(gb_seg &s, const void *a, const void *b,
                                       const void *v, int off, int tot,
                                       float w) {
  s.pa = (const char *)a + (long long)off * 16;
  s.pb = (const char *)b + (long long)off * 16;
  s.pv = (const char *)v + (long long)off * 16;
  s.n = tot - off < GV_SEG ? tot - off : GV_SEG;
  s.w = w;
}

/* gemv1's units [u, u1) as a walk of bulk segments: one run of H / 8
 * chunks a unit. */
template <class T> struct gb_walk1 {
  const mma_gemv_args &a;
  const gv1_tables &tb;
  int Ur, upp, u, u1, off;
  gv1_unit<T> o;
  __device__ __forceinline__ bool next(gb_seg &s) {
    if (u >= u1) return false;
    const int tot = a.H / 8;
    if (off == 0) o = gv1_decode<T>(a, tb, Ur, upp, u);
    gb_cut(s, o.wa, o.wb, o.x, off, tot, 1.0f);
    off += s.n;
    s.end = off == tot;
    if (s.end) {
      off = 0;
      u++;
    }
    return true;
  }
  __device__ __forceinline__ void finish(float sa, float sb, int lane) {
    sa = gv_warp_sum(sa);
    sb = gv_warp_sum(sb);
    if (lane == 0) gv1_store<T>(a, o, sa, sb);
  }
};

/* gemv2's units [u, u1) (column pair, token) as a walk of bulk segments:
 * a unit is its token's local slots' runs (two W2 rows of I, the slot's h,
 * its routing weight), then the shared expert's run. A unit with no run
 * (no local slot, no shared expert) stores its zeros in the use walk. */
template <class T> struct gb_walk2 {
  const mma_gemv_args &a;
  const int32_t *s_e, *s_q, *s_nv;
  const float *s_w;
  long long u, u1;
  int use, j, off, nr, t, c; /* j: the unit's run, nr: its runs */
  __device__ __forceinline__ bool next(gb_seg &s) {
    for (;;) {
      if (off == 0 && j == 0) { /* a new unit */
        if (u >= u1) return false;
        const int cp = (int)(u / a.M);
        t = (int)(u - (long long)cp * a.M);
        c = 2 * cp;
        nr = s_nv[t] + (a.Is ? 1 : 0);
        if (nr == 0) {
          if (use) finish(0.0f, 0.0f, threadIdx.x & 31);
          u++;
          continue;
        }
      }
      const int nv = s_nv[t];
      int tot;
      if (j < nv) {
        const int q = s_q[t * a.k + j];
        const T *wr = (const T *)a.w2 + s_e[q] * (long long)a.H * a.I +
                      (long long)c * a.I;
        tot = a.I / 8;
        gb_cut(s, wr, wr + a.I, (const T *)a.h + q * a.ldh, off, tot, s_w[q]);
      } else {
        const T *W = (const T *)a.sw2 + (long long)c * a.Is;
        tot = a.Is / 8;
        gb_cut(s, W, W + a.Is, (const T *)a.h_sh + (long long)t * a.ldh_sh, off,
               tot, 1.0f);
      }
      off += s.n;
      s.end = 0;
      if (off == tot) {
        off = 0;
        if (++j == nr) {
          j = 0;
          u++;
          s.end = 1;
        }
      }
      return true;
    }
  }
  /* the unit (t, c) just walked */
  __device__ __forceinline__ void finish(float sa, float sb, int lane) {
    sa = gv_warp_sum(sa);
    sb = gv_warp_sum(sb);
    if (lane != 0) return;
    const int nv = s_nv[t];
    for (int i = 0; a.b2 && i < nv; i++) {
      const int q = s_q[t * a.k + i];
      const float *b = a.b2 + (long long)s_e[q] * a.H + c;
      sa = fmaf(s_w[q], b[0], sa);
      sb = fmaf(s_w[q], b[1], sb);
    }
    T *o = (T *)a.out + (long long)t * a.H + c;
    o[0] = from_f32<T>(sa);
    o[1] = from_f32<T>(sb);
  }
};
