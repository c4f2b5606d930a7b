/*
 * dist_host.c - the host-side arithmetic of the multi-GPU layer, which
 * needs neither a GPU nor NCCL: expert placement for the EP modes, the TP
 * weight slicer, and the EP_A2A buffer sizes.
 */
#include "dist.h"

#include <stdint.h>
#include <string.h>

int moe_dist_available(void) {
#ifdef MOE_HAVE_NCCL
  return 1;
#else
  return 0;
#endif
}

const char *moe_parallel_mode_name(moe_parallel_mode m) {
  switch (m) {
  case MOE_PARALLEL_TP:
    return "tp";
  case MOE_PARALLEL_EP_REPLICATED:
    return "ep";
  case MOE_PARALLEL_EP_A2A:
    return "ep-a2a";
  }
  return NULL;
}

/* ---- expert placement ---- */

moe_status moe_dist_expert_range(int E, int rank, int world, int *first,
                                 int *count) {
  if (!first || !count || world < 1 || rank < 0 || rank >= world || E < world)
    return MOE_ERR_INVALID_ARGUMENT;
  const int q = E / world, rem = E % world;
  *first = rank * q + (rank < rem ? rank : rem);
  *count = q + (rank < rem ? 1 : 0);
  return MOE_OK;
}

int moe_dist_expert_owner(int E, int world, int e) {
  const int q = E / world, rem = E % world, big = rem * (q + 1);
  return e < big ? e / (q + 1) : rem + (e - big) / q;
}

moe_status moe_dist_expert_map(int E, int rank, int world, int32_t *map) {
  int first = 0, count = 0;
  if (!map) return MOE_ERR_INVALID_ARGUMENT;
  moe_status st = moe_dist_expert_range(E, rank, world, &first, &count);
  if (st != MOE_OK) return st;
  for (int e = 0; e < E; e++)
    map[e] = e >= first && e < first + count ? e - first : -1;
  return MOE_OK;
}

/* ---- what a rank builds ---- */

void moe_dist_rank_plan_make(const moe_layer_desc *desc, const moe_weights *w,
                             moe_parallel_mode mode, int rank, int world, int T,
                             int32_t *map, moe_dist_rank_plan *p) {
  memset(p, 0, sizeof *p);
  moe_layer_desc *d = &p->layer;
  *d = *desc;
  p->w = *w;
  if (mode == MOE_PARALLEL_TP) {
    d->intermediate = desc->intermediate / world;
    d->shared_intermediate = desc->shared_intermediate / world;
    /* Each expert's bias once: on rank 0. */
    if (rank != 0) p->w.w2_bias = NULL;
  } else {
    moe_dist_expert_map(desc->num_experts, rank, world, map);
    d->expert_map = map;
    /* EP_REPLICATED: the shared expert once, on rank 0; EP_A2A: in its own
     * layer, on the rank's own tokens. */
    if (mode == MOE_PARALLEL_EP_A2A || rank != 0) d->shared_intermediate = 0;
    /* EP_A2A: one chunk for world * T received rows, up to the default. */
    if (mode == MOE_PARALLEL_EP_A2A && !desc->max_tokens) {
      const long long rows = (long long)world * T;
      d->max_tokens = rows < 4096 ? (int)rows : 4096;
    }
  }
  if (d->shared_intermediate == 0) {
    p->w.shared_w13 = NULL;
    p->w.shared_w2 = NULL;
  }
  if (mode == MOE_PARALLEL_EP_A2A && desc->shared_intermediate > 0) {
    moe_layer_desc *sd = &p->shared;
    *sd = *desc;
    sd->num_experts = 1;
    sd->top_k = 1;
    sd->intermediate = desc->shared_intermediate;
    sd->shared_intermediate = 0;
    sd->expert_map = NULL;
    memset(&sd->routing, 0, sizeof sd->routing);
    sd->routing.routed_scaling_factor = 1.0f;
    sd->max_tokens = T < 4096 ? T : 4096;
    p->sw.memory = w->memory;
    p->sw.w13 = w->shared_w13;
    p->sw.w2 = w->shared_w2;
    p->has_shared_layer = 1;
  }
}

/* ---- TP slicing ---- */

/* Copies `rows` rows of `cols` elements: for each of `outer` matrices, the
 * columns [c0, c0 + cols) of a matrix of `full_cols` columns. */
static void copy_cols(const char *src, char *dst, size_t outer, size_t rows,
                      size_t full_cols, size_t c0, size_t cols, size_t es) {
  for (size_t o = 0; o < outer; o++)
    for (size_t r = 0; r < rows; r++)
      memcpy(dst + ((o * rows + r) * cols) * es,
             src + ((o * rows + r) * full_cols + c0) * es, cols * es);
}

/* Rows of one expert's W13 (or of the W13 bias, cols = 1): the rank's rows
 * [lo, lo + n) of each of the `halves` blocks of I rows each (gated: gate
 * then up; plain: one block); interleaved: the row pairs of the slice. */
static void copy_w13(const char *src, char *dst, size_t outer, int I, int part,
                     int rank, int gated, int interleaved, size_t cols,
                     size_t es) {
  const size_t N1 = gated ? 2 * (size_t)I : (size_t)I;
  const size_t n1p = gated ? 2 * (size_t)part : (size_t)part;
  const size_t row = cols * es;
  for (size_t o = 0; o < outer; o++) {
    const char *s = src + o * N1 * row;
    char *d = dst + o * n1p * row;
    if (interleaved) {
      memcpy(d, s + 2 * (size_t)rank * part * row, n1p * row);
    } else {
      memcpy(d, s + (size_t)rank * part * row, (size_t)part * row);
      if (gated)
        memcpy(d + (size_t)part * row,
               s + ((size_t)I + (size_t)rank * part) * row, (size_t)part * row);
    }
  }
}

moe_status moe_dist_tp_slice(const moe_layer_desc *desc, moe_dist_tensor which,
                             int rank, int world, const void *full,
                             void *part) {
  if (!desc || !full || !part || world < 1 || rank < 0 || rank >= world)
    return MOE_ERR_INVALID_ARGUMENT;
  moe_shape s;
  /* Validate with a map-free copy: placement does not matter here. */
  moe_layer_desc d = *desc;
  d.expert_map = NULL;
  if (moe_shape_from_desc(NULL, &d, &s) != MOE_OK)
    return MOE_ERR_INVALID_ARGUMENT;
  const int shared =
      which == MOE_DIST_SHARED_W13 || which == MOE_DIST_SHARED_W2;
  const int I = shared ? s.Is : s.I;
  if (I < 1 || I % world != 0) return MOE_ERR_INVALID_ARGUMENT;
  const int p = I / world;
  const size_t es = moe_dtype_size(s.dtype);
  const int il = s.act == MOE_ACT_SWIGLU_OAI;
  switch (which) {
  case MOE_DIST_W13:
    copy_w13(full, part, (size_t)s.E, I, p, rank, s.gated, il, (size_t)s.H, es);
    return MOE_OK;
  case MOE_DIST_W13_BIAS:
    copy_w13(full, part, (size_t)s.E, I, p, rank, s.gated, il, 1,
             sizeof(float));
    return MOE_OK;
  case MOE_DIST_SHARED_W13:
    copy_w13(full, part, 1, I, p, rank, s.gated, il, (size_t)s.H, es);
    return MOE_OK;
  case MOE_DIST_W2:
    copy_cols(full, part, (size_t)s.E, (size_t)s.H, (size_t)I, (size_t)rank * p,
              (size_t)p, es);
    return MOE_OK;
  case MOE_DIST_SHARED_W2:
    copy_cols(full, part, 1, (size_t)s.H, (size_t)I, (size_t)rank * p,
              (size_t)p, es);
    return MOE_OK;
  }
  return MOE_ERR_INVALID_ARGUMENT;
}

/* ---- EP_A2A buffer sizes ---- */

static int mul_ok(size_t a, size_t b, size_t *r) {
  if (a && b > SIZE_MAX / a) return 0;
  *r = a * b;
  return 1;
}

int moe_a2a_sizes_compute(int H, int k, size_t elem, int world, int T,
                          int has_shared, moe_a2a_sizes *sz) {
  if (!sz || H < 1 || k < 1 || elem < 1 || world < 1 || T < 1) return 0;
  memset(sz, 0, sizeof *sz);
  const long long rows = (long long)world * T;
  /* The kernels and the routed forward index rows * H and rows * k in
   * 32 bits. */
  if (rows > INT32_MAX || rows * H > INT32_MAX || rows * k > INT32_MAX)
    return 0;
  const size_t R = (size_t)rows, t = (size_t)T;
  size_t xb, kb, tk, tw;
  if (!mul_ok(R * (size_t)H, elem, &xb) || !mul_ok(R * (size_t)k, 4, &kb) ||
      !mul_ok(t * (size_t)k, 4, &tk) || !mul_ok(t * (size_t)world, 4, &tw))
    return 0;
  size_t *b = sz->bytes;
  b[MOE_A2A_RIDS] = tk;
  b[MOE_A2A_RW] = tk;
  b[MOE_A2A_POS] = tw;
  b[MOE_A2A_SRC] = tw;
  b[MOE_A2A_COUNT] = (size_t)world * 4;
  b[MOE_A2A_SEND_X] = xb;
  b[MOE_A2A_SEND_IDS] = kb;
  b[MOE_A2A_SEND_W] = kb;
  b[MOE_A2A_RECV_X] = xb;
  b[MOE_A2A_RECV_IDS] = kb;
  b[MOE_A2A_RECV_W] = kb;
  b[MOE_A2A_Y] = xb;
  b[MOE_A2A_BACK] = xb;
  b[MOE_A2A_SHARED] = has_shared ? t * (size_t)H * elem : 0;
  b[MOE_A2A_ONE_IDS] = has_shared ? t * 4 : 0;
  b[MOE_A2A_ONE_W] = has_shared ? t * 4 : 0;
  size_t off = 0;
  for (int i = 0; i < MOE_A2A_NBUF; i++) {
    sz->off[i] = off;
    size_t r = (b[i] + 255) & ~(size_t)255;
    if (r < b[i] || off > SIZE_MAX - r) return 0;
    off += r;
  }
  sz->total = off;
  sz->rows = rows;
  return 1;
}
