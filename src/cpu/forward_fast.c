/*
 * forward_fast.c - cpu-avx2 / cpu-avx512: the layer as grouped GEMMs.
 *
 * One chunk (<= CPU_FAST_CHUNK tokens) goes through four steps:
 *  1. x is brought into the kernels' activation format (bf16 or fp32) unless
 *     it already is in it;
 *  2. the M*k (token, expert) pairs are grouped by local expert with a
 *     stable counting sort (the caller thread; O(M k + E));
 *  3. GEMM1 + activation: every thread takes the same slice of intermediate
 *     columns j of every touched expert (gate rows and up rows of those j),
 *     so at decode each thread streams a disjoint part of each expert's W13;
 *  4. GEMM2 + combine: every thread takes a slice of the H output rows, runs
 *     W2 of every touched expert (ascending) and then the shared expert over
 *     its rows, accumulating into y in that fixed order, and writes its
 *     slice of out. Each output element has one owner: no atomics, and the
 *     order of the sums does not depend on the thread count.
 * The tile kernels compute every (row, vector) dot product with the same
 * instruction sequence wherever it sits, so results are bit-identical for any
 * number of threads.
 *
 * Precision: fp32 accumulation. With the bf16 kernels of cpu-avx512 the
 * intermediate a is rounded to bf16 before GEMM2 (what GPU kernels do too);
 * cpu-ref keeps it fp32, and the difference is within the bf16 tolerance.
 */
#include "cpu_internal.h"

#include <string.h>

/* Bytes of activation vectors a thread keeps hot while it walks a block of
 * weight rows: about a quarter of a typical L2 slice. */
#define CPU_VEC_BUDGET (384 * 1024)

typedef struct fast_task {
  cpu_layer *L;
  const void *x;  /* caller's x for this chunk */
  const void *xv; /* x in the activation format */
  int M;
  int n_touched;
  void *out;
} fast_task;

static inline int align_down4(long long v) {
  return (int)(v & ~3ll);
}

/* [lo, hi) of n items for thread tid of nt, boundaries on multiples of 4. */
static void slice(int n, int tid, int nt, int *lo, int *hi) {
  *lo = tid == 0 ? 0 : align_down4((long long)n * tid / nt);
  *hi = tid == nt - 1 ? n : align_down4((long long)n * (tid + 1) / nt);
  if (*hi < *lo) *hi = *lo;
}

/* Vectors per block so that a block fits CPU_VEC_BUDGET; a multiple of 4. */
static int vec_block(size_t vec_bytes) {
  size_t b = CPU_VEC_BUDGET / (vec_bytes ? vec_bytes : 1);
  if (b < 4) b = 4;
  if (b > 256) b = 256;
  return (int)(b & ~(size_t)3);
}

static void store_vec(void *base, size_t i, int bf16, float v) {
  if (bf16)
    ((uint16_t *)base)[i] = moe_f32_to_bf16(v);
  else
    ((float *)base)[i] = v;
}

/* Where the GEMM1 input of pair p (or token p for the shared expert) is. */
typedef struct vec_src {
  const char *base;
  size_t stride;        /* bytes per token */
  const int32_t *index; /* pair -> token, or NULL (identity) */
} vec_src;

static inline const void *vec_at(const vec_src *v, int p) {
  size_t t = v->index ? (size_t)v->index[p] : (size_t)p;
  return v->base + t * v->stride;
}

/*
 * GEMM1 + activation for one expert: columns j in [j0, j1) of the
 * intermediate, vectors p in [p0, p1). a[p][j] (row stride I) receives
 * act(gate, up) in the activation format.
 */
static void gemm1_act(const cpu_layer *L, const void *w13, const float *b13,
                      int I, int j0, int j1, const vec_src *src, int p0, int p1,
                      void *a) {
  const moe_shape *s = &L->s;
  int H = s->H, dt = s->dtype, vb = L->kern->vec_bf16[dt];
  cpu_tile_fn tile = L->kern->tile[dt];
  size_t es = moe_dtype_size(s->dtype);
  int oai = s->gated && s->act == MOE_ACT_SWIGLU_OAI;
  /* Row of gate j and of up j, and the stride between consecutive j. */
  size_t ld = oai ? 2 * (size_t)H : (size_t)H;
  int pb = vec_block((size_t)H * (vb ? 2 : 4));
  float g[CPU_TILE_R * CPU_TILE_T], u[CPU_TILE_R * CPU_TILE_T];
  const void *xs[CPU_TILE_T];
  for (int q0 = p0; q0 < p1; q0 += pb) {
    int q1 = q0 + pb < p1 ? q0 + pb : p1;
    for (int j = j0; j < j1; j += CPU_TILE_R) {
      int R = j1 - j < CPU_TILE_R ? j1 - j : CPU_TILE_R;
      size_t grow = oai ? 2 * (size_t)j : (size_t)j;
      size_t urow = oai ? 2 * (size_t)j + 1 : (size_t)I + (size_t)j;
      const char *wg = (const char *)w13 + grow * H * es;
      const char *wu = (const char *)w13 + urow * H * es;
      for (int p = q0; p < q1; p += CPU_TILE_T) {
        int T = q1 - p < CPU_TILE_T ? q1 - p : CPU_TILE_T;
        for (int t = 0; t < T; t++)
          xs[t] = vec_at(src, p + t);
        /* The first vector tile streams this row block from memory:
         * have it fetch the next block meanwhile. */
        int pf = p == q0 && j + R < j1;
        tile(wg, ld, R, xs, T, H, g, pf ? wg + R * ld * es : NULL);
        if (s->gated)
          tile(wu, ld, R, xs, T, H, u, pf ? wu + R * ld * es : NULL);
        for (int r = 0; r < R; r++) {
          float bg = 0.0f, bu = 0.0f;
          if (b13) {
            bg = b13[grow + (oai ? 2 * (size_t)r : (size_t)r)];
            if (s->gated) bu = b13[urow + (oai ? 2 * (size_t)r : (size_t)r)];
          }
          for (int t = 0; t < T; t++) {
            float gv = g[r * CPU_TILE_T + t] + bg;
            float uv = s->gated ? u[r * CPU_TILE_T + t] + bu : 0.0f;
            store_vec(a, (size_t)(p + t) * I + j + r, vb,
                      moe_cpu_activation(s, gv, uv));
          }
        }
      }
    }
  }
}

/*
 * GEMM2 + combine for one expert: output rows [h0, h1), vectors p in
 * [p0, p1) of a (row stride K): y[tok(p)][h] += wt(p) * (W2[h] . a[p] + b2).
 * tok and wt NULL: token p, weight 1 (the shared expert).
 */
static void gemm2_acc(const cpu_layer *L, const void *w2, const float *b2,
                      int K, int h0, int h1, const void *a, int p0, int p1,
                      const int32_t *tok, const float *wt, float *y) {
  const moe_shape *s = &L->s;
  int H = s->H, dt = s->dtype, vb = L->kern->vec_bf16[dt];
  cpu_tile_fn tile = L->kern->tile[dt];
  size_t es = moe_dtype_size(s->dtype), vsz = vb ? 2 : 4;
  int pb = vec_block((size_t)K * vsz);
  float o[CPU_TILE_R * CPU_TILE_T];
  const void *as[CPU_TILE_T];
  for (int q0 = p0; q0 < p1; q0 += pb) {
    int q1 = q0 + pb < p1 ? q0 + pb : p1;
    for (int h = h0; h < h1; h += CPU_TILE_R) {
      int R = h1 - h < CPU_TILE_R ? h1 - h : CPU_TILE_R;
      const char *w = (const char *)w2 + (size_t)h * K * es;
      for (int p = q0; p < q1; p += CPU_TILE_T) {
        int T = q1 - p < CPU_TILE_T ? q1 - p : CPU_TILE_T;
        for (int t = 0; t < T; t++)
          as[t] = (const char *)a + (size_t)(p + t) * K * vsz;
        int pf = p == q0 && h + R < h1;
        tile(w, (size_t)K, R, as, T, K, o, pf ? w + (size_t)R * K * es : NULL);
        for (int t = 0; t < T; t++) {
          float *yr = y + (size_t)(tok ? tok[p + t] : p + t) * H + h;
          float wv = wt ? wt[p + t] : 1.0f;
          for (int r = 0; r < R; r++) {
            float v = o[r * CPU_TILE_T + t];
            if (b2) v += b2[h + r];
            yr[r] += wv * v;
          }
        }
      }
    }
  }
}

static inline void expert_range(const cpu_layer *L, int e, int *p0, int *p1) {
  /* After the counting sort cnt[e] holds the end of expert e's pairs. */
  *p0 = e ? L->cnt[e - 1] : 0;
  *p1 = L->cnt[e];
}

static void phase1(void *arg, int tid, int nt) {
  const fast_task *f = arg;
  const cpu_layer *L = f->L;
  const moe_shape *s = &L->s;
  size_t es = moe_dtype_size(s->dtype);
  size_t vsz = L->kern->vec_bf16[s->dtype] ? 2 : 4;
  vec_src src = {f->xv, (size_t)s->H * vsz, L->pair_tok};
  int j0, j1;
  slice(s->I, tid, nt, &j0, &j1);
  for (int i = 0; i < f->n_touched; i++) {
    int e = L->touched[i], p0, p1;
    expert_range(L, e, &p0, &p1);
    gemm1_act(L, (const char *)L->w.w13 + (size_t)e * s->N1 * s->H * es,
              L->w.w13_bias ? L->w.w13_bias + (size_t)e * s->N1 : NULL, s->I,
              j0, j1, &src, p0, p1, L->act);
  }
  if (s->Is > 0) {
    vec_src tsrc = {f->xv, (size_t)s->H * vsz, NULL};
    slice(s->Is, tid, nt, &j0, &j1);
    gemm1_act(L, L->w.shared_w13, NULL, s->Is, j0, j1, &tsrc, 0, f->M,
              L->act_shared);
  }
}

static void phase2(void *arg, int tid, int nt) {
  const fast_task *f = arg;
  const cpu_layer *L = f->L;
  const moe_shape *s = &L->s;
  size_t es = moe_dtype_size(s->dtype);
  int H = s->H, h0, h1;
  slice(H, tid, nt, &h0, &h1);
  if (h1 <= h0) return;
  for (int t = 0; t < f->M; t++)
    memset(L->y + (size_t)t * H + h0, 0, (size_t)(h1 - h0) * sizeof(float));
  for (int i = 0; i < f->n_touched; i++) {
    int e = L->touched[i], p0, p1;
    expert_range(L, e, &p0, &p1);
    gemm2_acc(L, (const char *)L->w.w2 + (size_t)e * H * s->I * es,
              L->w.w2_bias ? L->w.w2_bias + (size_t)e * H : NULL, s->I, h0, h1,
              L->act, p0, p1, L->pair_tok, L->pair_w, L->y);
  }
  if (s->Is > 0)
    gemm2_acc(L, L->w.shared_w2, NULL, s->Is, h0, h1, L->act_shared, 0, f->M,
              NULL, NULL, L->y);
  for (int t = 0; t < f->M; t++) {
    const float *yr = L->y + (size_t)t * H;
    size_t o = (size_t)t * H;
    switch (s->dtype) {
    case MOE_DTYPE_F32:
      memcpy((float *)f->out + o + h0, yr + h0,
             (size_t)(h1 - h0) * sizeof(float));
      break;
    case MOE_DTYPE_BF16:
      for (int h = h0; h < h1; h++)
        ((uint16_t *)f->out)[o + h] = moe_f32_to_bf16(yr[h]);
      break;
    case MOE_DTYPE_F16:
      for (int h = h0; h < h1; h++)
        ((uint16_t *)f->out)[o + h] = moe_f32_to_f16(yr[h]);
      break;
    }
  }
}

/* x -> activation format (fp32 or bf16), tokens split across threads. */
static void convert_x(void *arg, int tid, int nt) {
  const fast_task *f = arg;
  const moe_shape *s = &f->L->s;
  int vb = f->L->kern->vec_bf16[s->dtype];
  size_t n = (size_t)f->M * s->H;
  size_t i0 = n * tid / nt, i1 = n * (tid + 1) / nt;
  void *dst = f->L->xcvt;
  for (size_t i = i0; i < i1; i++)
    store_vec(dst, i, vb, moe_load_elem(f->x, i, s->dtype));
}

/* Stable counting sort of the chunk's pairs by local expert. */
static int group_pairs(cpu_layer *L, const int32_t *ids, const float *wts,
                       int M) {
  const moe_shape *s = &L->s;
  int El = s->E_local, k = s->k;
  int32_t *cnt = L->cnt;
  memset(cnt, 0, ((size_t)El + 1) * sizeof(int32_t));
  size_t np = (size_t)M * k;
  for (size_t p = 0; p < np; p++) {
    int e = cpu_local_expert(L, ids[p]);
    if (e >= 0) cnt[e + 1]++;
  }
  for (int e = 0; e < El; e++)
    cnt[e + 1] += cnt[e]; /* cnt[e] = start */
  for (size_t p = 0; p < np; p++) {
    int e = cpu_local_expert(L, ids[p]);
    if (e < 0) continue;
    int32_t q = cnt[e]++; /* leaves cnt[e] = end of e */
    L->pair_tok[q] = (int32_t)(p / (size_t)k);
    L->pair_w[q] = wts[p];
  }
  int n = 0;
  for (int e = 0; e < El; e++) {
    int p0 = e ? cnt[e - 1] : 0;
    if (cnt[e] > p0) L->touched[n++] = e;
  }
  return n;
}

void cpu_fast_forward_chunk(cpu_layer *L, const void *x, const int32_t *ids,
                            const float *wts, int M, void *out) {
  const moe_shape *s = &L->s;
  fast_task f = {L, x, x, M, 0, out};
  if (L->xcvt) {
    f.xv = L->xcvt;
    if ((size_t)M * s->H < 65536)
      convert_x(&f, 0, 1);
    else
      cpu_pool_run(L->pool, convert_x, &f);
  }
  f.n_touched = group_pairs(L, ids, wts, M);
  if (f.n_touched > 0 || s->Is > 0) cpu_pool_run(L->pool, phase1, &f);
  cpu_pool_run(L->pool, phase2, &f);
}
