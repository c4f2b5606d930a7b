/*
 * test_dist_host.c - the host parts of the multi-GPU layer, runnable on any
 * machine: expert placement, TP weight slicing (checked by recombining the
 * slices and by summing the ranks' partial expert outputs), the EP_A2A
 * buffer arithmetic, and the argument checks of moe_dist_layer_create and
 * moe_dist_forward (which run before NCCL or a GPU is touched).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "dist/dist.h"
#include "moe.h"
#include "testutil.h"

/* ---- expert placement ---- */

static void test_expert_range(void **state) {
  (void)state;
  const int cases[][2] = {{256, 2}, {128, 2}, {7, 3}, {8, 8}, {257, 4}, {5, 1}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int E = cases[c][0], W = cases[c][1];
    int next = 0, lo = E, hi = 0;
    int32_t *map = malloc((size_t)E * sizeof *map);
    int *seen = calloc((size_t)E, sizeof *seen);
    for (int r = 0; r < W; r++) {
      int first = -1, count = -1;
      assert_int_equal(moe_dist_expert_range(E, r, W, &first, &count), MOE_OK);
      assert_int_equal(first, next); /* contiguous, in rank order */
      assert_true(count >= 1);
      lo = count < lo ? count : lo;
      hi = count > hi ? count : hi;
      next = first + count;
      assert_int_equal(moe_dist_expert_map(E, r, W, map), MOE_OK);
      for (int e = 0; e < E; e++) {
        const int mine = e >= first && e < first + count;
        assert_int_equal(map[e], mine ? e - first : -1);
        assert_int_equal(moe_dist_expert_owner(E, W, e) == r, mine);
        if (mine) seen[e]++;
      }
    }
    assert_int_equal(next, E);
    assert_true(hi - lo <= 1); /* balanced */
    for (int e = 0; e < E; e++)
      assert_int_equal(seen[e], 1);
    free(map);
    free(seen);
  }
  int f = 0, n = 0;
  assert_int_equal(moe_dist_expert_range(8, 0, 0, &f, &n),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_expert_range(8, -1, 2, &f, &n),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_expert_range(8, 2, 2, &f, &n),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_expert_range(3, 0, 4, &f, &n),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_expert_range(8, 0, 2, NULL, &n),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_expert_map(8, 0, 2, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_string_equal(moe_parallel_mode_name(MOE_PARALLEL_TP), "tp");
  assert_string_equal(moe_parallel_mode_name(MOE_PARALLEL_EP_REPLICATED), "ep");
  assert_string_equal(moe_parallel_mode_name(MOE_PARALLEL_EP_A2A), "ep-a2a");
  assert_null(moe_parallel_mode_name((moe_parallel_mode)7));
}

/* ---- TP slicing ---- */

typedef struct layer_case {
  moe_activation act;
  int gated, E, H, I, Is;
} layer_case;

static void desc_of(const layer_case *c, moe_dtype dt, moe_layer_desc *d) {
  moe_layer_desc_init(d);
  d->num_experts = c->E;
  d->top_k = 1;
  d->hidden = c->H;
  d->intermediate = c->I;
  d->shared_intermediate = c->Is;
  d->activation = c->act;
  d->gated = c->gated;
  d->dtype = dt;
}

/* Global W13 row of rank r's local row j (the layout moe.h describes). */
static int w13_row(const layer_case *c, int r, int W, int j) {
  const int I = c->I, p = I / W;
  if (c->act == MOE_ACT_SWIGLU_OAI) return 2 * r * p + j;
  if (!c->gated) return r * p + j;
  return j < p ? r * p + j : I + r * p + (j - p);
}

/* Slices every tensor of a bf16 layer with random bit patterns and puts
 * the slices back where the layout says they came from: exact. */
static void check_recombine(const layer_case *c, int W) {
  tu_rng rng = tu_rng_make(1000 + (uint64_t)c->act * 10 + (uint64_t)W);
  moe_layer_desc d;
  desc_of(c, MOE_DTYPE_BF16, &d);
  const size_t N1 = c->gated ? 2 * (size_t)c->I : (size_t)c->I;
  const size_t n13 = (size_t)c->E * N1 * c->H, n2 = (size_t)c->E * c->H * c->I;
  uint16_t *w13 = malloc(n13 * 2), *w2 = malloc(n2 * 2);
  uint16_t *b13 = NULL, *r13 = malloc(n13 * 2), *r2 = malloc(n2 * 2);
  float *bias = malloc((size_t)c->E * N1 * 4),
        *rb = malloc((size_t)c->E * N1 * 4);
  for (size_t i = 0; i < n13; i++)
    w13[i] = (uint16_t)tu_next(&rng);
  for (size_t i = 0; i < n2; i++)
    w2[i] = (uint16_t)tu_next(&rng);
  for (size_t i = 0; i < (size_t)c->E * N1; i++)
    bias[i] = tu_uniform(&rng, -1, 1);
  (void)b13;
  const int p = c->I / W;
  const size_t pN1 = c->gated ? 2 * (size_t)p : (size_t)p;
  uint16_t *s13 = malloc((size_t)c->E * pN1 * c->H * 2);
  uint16_t *s2 = malloc((size_t)c->E * c->H * p * 2);
  float *sb = malloc((size_t)c->E * pN1 * 4);
  memset(r13, 0, n13 * 2);
  memset(r2, 0, n2 * 2);
  memset(rb, 0, (size_t)c->E * N1 * 4);
  for (int r = 0; r < W; r++) {
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13, r, W, w13, s13),
                     MOE_OK);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, r, W, w2, s2), MOE_OK);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13_BIAS, r, W, bias, sb),
                     MOE_OK);
    for (int e = 0; e < c->E; e++)
      for (size_t j = 0; j < pN1; j++) {
        const size_t g = (size_t)e * N1 + (size_t)w13_row(c, r, W, (int)j);
        memcpy(r13 + g * c->H, s13 + ((size_t)e * pN1 + j) * c->H,
               (size_t)c->H * 2);
        rb[g] = sb[(size_t)e * pN1 + j];
      }
    for (int e = 0; e < c->E; e++)
      for (int h = 0; h < c->H; h++)
        memcpy(r2 + ((size_t)e * c->H + h) * c->I + (size_t)r * p,
               s2 + ((size_t)e * c->H + h) * p, (size_t)p * 2);
  }
  assert_memory_equal(r13, w13, n13 * 2);
  assert_memory_equal(r2, w2, n2 * 2);
  assert_memory_equal(rb, bias, (size_t)c->E * N1 * 4);
  free(w13);
  free(w2);
  free(r13);
  free(r2);
  free(bias);
  free(rb);
  free(s13);
  free(s2);
  free(sb);
}

/* One expert of an f32 layer, the moe.h semantics, in double. */
static void expert_f64(const layer_case *c, int I, const float *w13,
                       const float *b13, const float *w2, const float *x,
                       double *y) {
  const int H = c->H, N1 = c->gated ? 2 * I : I;
  double *h = malloc((size_t)N1 * sizeof *h),
         *a = malloc((size_t)I * sizeof *a);
  for (int n = 0; n < N1; n++) {
    double s = b13 ? b13[n] : 0;
    for (int i = 0; i < H; i++)
      s += (double)w13[(size_t)n * H + i] * x[i];
    h[n] = s;
  }
  for (int j = 0; j < I; j++) {
    double g, u = 0;
    if (c->act == MOE_ACT_SWIGLU_OAI) {
      g = fmin(h[2 * j], 7.0);
      u = fmax(fmin(h[2 * j + 1], 7.0), -7.0);
      a[j] = (u + 1) * g / (1 + exp(-1.702 * g));
      continue;
    }
    g = h[j];
    if (c->gated) u = h[I + j];
    double v = c->act == MOE_ACT_RELU2 ? (g > 0 ? g * g : 0)
                                       : g / (1 + exp(-g)); /* silu */
    a[j] = c->gated ? v * u : v;
  }
  for (int o = 0; o < H; o++) {
    double s = 0;
    for (int j = 0; j < I; j++)
      s += (double)w2[(size_t)o * I + j] * a[j];
    y[o] = s;
  }
  free(h);
  free(a);
}

/* The sum over ranks of each rank's expert on its slices equals the whole
 * expert (f32 weights, one expert, shared tensors too). */
static void check_partial_sums(const layer_case *c, int W) {
  tu_rng rng = tu_rng_make(2000 + (uint64_t)c->act * 10 + (uint64_t)W);
  moe_layer_desc d;
  desc_of(c, MOE_DTYPE_F32, &d);
  d.num_experts = 1;
  const int H = c->H, I = c->I, p = I / W;
  const int N1 = c->gated ? 2 * I : I, pN1 = c->gated ? 2 * p : p;
  float *w13 = malloc((size_t)N1 * H * 4), *w2 = malloc((size_t)H * I * 4);
  float *b13 = malloc((size_t)N1 * 4), *x = malloc((size_t)H * 4);
  for (int i = 0; i < N1 * H; i++)
    w13[i] = tu_uniform(&rng, -0.3f, 0.3f);
  for (int i = 0; i < H * I; i++)
    w2[i] = tu_uniform(&rng, -0.3f, 0.3f);
  for (int i = 0; i < N1; i++)
    b13[i] = tu_uniform(&rng, -0.5f, 0.5f);
  for (int i = 0; i < H; i++)
    x[i] = tu_uniform(&rng, -1, 1);
  double *full = malloc((size_t)H * 8), *sum = calloc((size_t)H, 8);
  double *part = malloc((size_t)H * 8);
  expert_f64(c, I, w13, b13, w2, x, full);
  float *s13 = malloc((size_t)pN1 * H * 4), *s2 = malloc((size_t)H * p * 4);
  float *sb = malloc((size_t)pN1 * 4);
  for (int r = 0; r < W; r++) {
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13, r, W, w13, s13),
                     MOE_OK);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, r, W, w2, s2), MOE_OK);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13_BIAS, r, W, b13, sb),
                     MOE_OK);
    expert_f64(c, p, s13, sb, s2, x, part);
    for (int o = 0; o < H; o++)
      sum[o] += part[o];
  }
  for (int o = 0; o < H; o++)
    assert_true(fabs(sum[o] - full[o]) <= 1e-9 * (1 + fabs(full[o])));
  /* The shared tensors slice the same way (a one-expert stack). */
  if (c->Is) {
    d.num_experts = 1;
    d.intermediate = c->Is;
    d.shared_intermediate = c->I;
    float *a13 = malloc((size_t)N1 * H * 4), *a2 = malloc((size_t)H * I * 4);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_SHARED_W13, 0, W, w13, a13),
                     MOE_OK);
    d.intermediate = c->I;
    d.shared_intermediate = c->I;
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13, 0, W, w13, s13),
                     MOE_OK);
    assert_memory_equal(a13, s13, (size_t)pN1 * H * 4);
    assert_int_equal(
        moe_dist_tp_slice(&d, MOE_DIST_SHARED_W2, W - 1, W, w2, a2), MOE_OK);
    assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, W - 1, W, w2, s2),
                     MOE_OK);
    assert_memory_equal(a2, s2, (size_t)H * p * 4);
    free(a13);
    free(a2);
  }
  free(w13);
  free(w2);
  free(b13);
  free(x);
  free(full);
  free(sum);
  free(part);
  free(s13);
  free(s2);
  free(sb);
}

static const layer_case g_layers[] = {
    {MOE_ACT_SILU, 1, 4, 24, 16, 0},       /* gated: gate and up halves */
    {MOE_ACT_SWIGLU_OAI, 1, 3, 16, 12, 0}, /* interleaved pairs */
    {MOE_ACT_RELU2, 0, 5, 20, 8, 0},       /* plain */
    {MOE_ACT_SILU, 1, 2, 16, 8, 8},        /* shared tensors */
};

static void test_tp_slice(void **state) {
  (void)state;
  const int worlds[] = {1, 2, 4};
  for (size_t i = 0; i < sizeof g_layers / sizeof g_layers[0]; i++)
    for (size_t w = 0; w < 3; w++) {
      if (g_layers[i].I % worlds[w]) continue;
      check_recombine(&g_layers[i], worlds[w]);
      check_partial_sums(&g_layers[i], worlds[w]);
    }
}

static void test_tp_slice_bad(void **state) {
  (void)state;
  layer_case c = {MOE_ACT_SILU, 1, 2, 8, 6, 3};
  moe_layer_desc d;
  desc_of(&c, MOE_DTYPE_BF16, &d);
  uint16_t full[2 * 12 * 8], part[2 * 12 * 8];
  memset(full, 1, sizeof full);
  memset(part, 0xAB, sizeof part);
  /* I = 6 not divisible by 4; Is = 3 not by 2. */
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W13, 0, 4, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_SHARED_W13, 0, 2, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, 2, 2, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, 0, 0, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(&d, (moe_dist_tensor)9, 0, 2, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(NULL, MOE_DIST_W2, 0, 2, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, 0, 2, NULL, part),
                   MOE_ERR_INVALID_ARGUMENT);
  d.top_k = 5; /* a bad descriptor */
  assert_int_equal(moe_dist_tp_slice(&d, MOE_DIST_W2, 0, 2, full, part),
                   MOE_ERR_INVALID_ARGUMENT);
  for (size_t i = 0; i < sizeof part / 2; i++)
    assert_int_equal(part[i], 0xABAB); /* untouched */
}

/* ---- EP_A2A capacity ---- */

static void test_a2a_sizes(void **state) {
  (void)state;
  moe_a2a_sizes sz;
  /* deepseek-v3 decode: H 7168, k 8, bf16, 2 ranks, 256 tokens a rank. */
  assert_true(moe_a2a_sizes_compute(7168, 8, 2, 2, 256, 1, &sz));
  assert_int_equal(sz.rows, 512);
  assert_int_equal(sz.bytes[MOE_A2A_SEND_X], (size_t)2 * 256 * 7168 * 2);
  assert_int_equal(sz.bytes[MOE_A2A_RECV_X], sz.bytes[MOE_A2A_SEND_X]);
  assert_int_equal(sz.bytes[MOE_A2A_Y], sz.bytes[MOE_A2A_SEND_X]);
  assert_int_equal(sz.bytes[MOE_A2A_BACK], sz.bytes[MOE_A2A_SEND_X]);
  assert_int_equal(sz.bytes[MOE_A2A_RECV_IDS], (size_t)2 * 256 * 8 * 4);
  assert_int_equal(sz.bytes[MOE_A2A_POS], (size_t)256 * 2 * 4);
  assert_int_equal(sz.bytes[MOE_A2A_SHARED], (size_t)256 * 7168 * 2);
  assert_int_equal(sz.bytes[MOE_A2A_ONE_W], (size_t)256 * 4);
  /* Offsets aligned, in order, non-overlapping; total covers all. */
  size_t end = 0;
  for (int i = 0; i < MOE_A2A_NBUF; i++) {
    assert_int_equal(sz.off[i] % 256, 0);
    assert_true(sz.off[i] >= end);
    end = sz.off[i] + sz.bytes[i];
  }
  assert_true(sz.total >= end);
  /* No shared expert: its buffers are absent. */
  assert_true(moe_a2a_sizes_compute(2048, 8, 2, 2, 64, 0, &sz));
  assert_int_equal(sz.bytes[MOE_A2A_SHARED], 0);
  assert_int_equal(sz.bytes[MOE_A2A_ONE_IDS], 0);
  /* The worst case by construction: a rank's T tokens all go to one peer
   * and fill exactly T rows of its block. */
  assert_int_equal(sz.bytes[MOE_A2A_SEND_X] / 2 / 2048 / 2, 64);
  /* Overflow of 32-bit row indexing, bad arguments. */
  assert_false(moe_a2a_sizes_compute(7168, 8, 2, 8, 1 << 24, 1, &sz));
  assert_false(moe_a2a_sizes_compute(7168, 8, 2, 2, 0, 1, &sz));
  assert_false(moe_a2a_sizes_compute(0, 8, 2, 2, 16, 1, &sz));
  assert_false(moe_a2a_sizes_compute(16, 0, 2, 2, 16, 1, &sz));
  assert_false(moe_a2a_sizes_compute(16, 8, 2, 0, 16, 1, &sz));
  assert_false(moe_a2a_sizes_compute(16, 8, 2, 2, 16, 1, NULL));
}

/* ---- create / forward argument checks ---- */

static void good_desc(moe_layer_desc *d) {
  moe_layer_desc_init(d);
  d->num_experts = 8;
  d->top_k = 2;
  d->hidden = 64;
  d->intermediate = 32;
  d->shared_intermediate = 16;
  d->self_check = 0;
}

static void test_create_bad_args(void **state) {
  (void)state;
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "cpu";
  o.num_threads = 1;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  moe_layer_desc d;
  good_desc(&d);
  static _Alignas(16) char fake_w[64];
  int fake_comm = 0;
  moe_weights w;
  memset(&w, 0, sizeof w);
  w.memory = MOE_MEMORY_CUDA;
  w.w13 = fake_w;
  w.w2 = fake_w;
  w.shared_w13 = fake_w;
  w.shared_w2 = fake_w;
  moe_dist_layer *sentinel = (moe_dist_layer *)(uintptr_t)0x1234;
  moe_dist_layer *out = sentinel;
  void *comm = &fake_comm;
  const moe_parallel_mode TP = MOE_PARALLEL_TP, EP = MOE_PARALLEL_EP_REPLICATED,
                          A2A = MOE_PARALLEL_EP_A2A;
#define BAD(call, needle)                                                      \
  do {                                                                         \
    assert_int_equal((call), MOE_ERR_INVALID_ARGUMENT);                        \
    assert_non_null(strstr(moe_last_error(ctx), needle));                      \
    assert_ptr_equal(out, sentinel);                                           \
  } while (0)
  assert_int_equal(
      moe_dist_layer_create(NULL, &d, &w, comm, 0, 2, TP, 16, &out),
      MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_layer_create(ctx, &d, &w, comm, 0, 2, TP, 16, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  BAD(moe_dist_layer_create(ctx, NULL, &w, comm, 0, 2, TP, 16, &out), "desc");
  BAD(moe_dist_layer_create(ctx, &d, &w, NULL, 0, 2, TP, 16, &out),
      "nccl_comm");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 2, 2, TP, 16, &out), "rank");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, -1, 2, EP, 16, &out), "rank");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 0, EP, 16, &out), "world");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, -3, A2A, 16, &out), "world");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 2, (moe_parallel_mode)3, 16,
                            &out),
      "mode");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 2, A2A, 0, &out),
      "max_tokens_per_rank");
  BAD(moe_dist_layer_create(ctx, &d, NULL, comm, 0, 2, TP, 16, &out),
      "weights");
  moe_weights hw = w;
  hw.memory = MOE_MEMORY_HOST;
  BAD(moe_dist_layer_create(ctx, &d, &hw, comm, 0, 2, TP, 16, &out),
      "MOE_MEMORY_CUDA");
  int32_t map[8] = {0, 1, 2, 3, -1, -1, -1, -1};
  moe_layer_desc dm = d;
  dm.expert_map = map;
  BAD(moe_dist_layer_create(ctx, &dm, &w, comm, 0, 2, EP, 16, &out),
      "expert_map");
  moe_layer_desc db = d;
  db.top_k = 9;
  BAD(moe_dist_layer_create(ctx, &db, &w, comm, 0, 2, EP, 16, &out), "top_k");
  /* TP: I and Is must divide by world. */
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 3, TP, 16, &out),
      "intermediate");
  db = d;
  db.shared_intermediate = 18;
  BAD(moe_dist_layer_create(ctx, &db, &w, comm, 0, 4, TP, 16, &out),
      "shared_intermediate");
  /* EP: at least one expert per rank. */
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 9, EP, 16, &out),
      "fewer than world");
  BAD(moe_dist_layer_create(ctx, &d, &w, comm, 0, 9, A2A, 16, &out),
      "fewer than world");
  /* EP_A2A: buffers whose rows overflow 32-bit indexing. */
  db = d;
  db.hidden = 1 << 16;
  BAD(moe_dist_layer_create(ctx, &db, &w, comm, 0, 8, A2A, 1 << 13, &out),
      "overflow");
  /* Valid arguments: without NCCL, unsupported (with it, the fake
   * communicator would be queried, so that case is left to the GPU test). */
  if (!moe_dist_available()) {
    for (int m = 0; m < MOE_PARALLEL_MODE_COUNT; m++) {
      assert_int_equal(moe_dist_layer_create(ctx, &d, &w, comm, 1, 2,
                                             (moe_parallel_mode)m, 16, &out),
                       MOE_ERR_UNSUPPORTED);
      assert_non_null(strstr(moe_last_error(ctx), "NCCL"));
      assert_ptr_equal(out, sentinel);
    }
    void *comms[2] = {NULL, NULL};
    assert_int_equal(moe_dist_comms_create(ctx, 2, NULL, comms),
                     MOE_ERR_UNSUPPORTED);
    assert_null(comms[0]);
  }
#undef BAD
  void *comms[2] = {NULL, NULL};
  assert_int_equal(moe_dist_comms_create(ctx, 0, NULL, comms),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_int_equal(moe_dist_comms_create(ctx, 2, NULL, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  moe_dist_comms_destroy(2, comms); /* NULL entries: nothing */
  moe_dist_comms_destroy(0, NULL);
  moe_dist_layer_destroy(NULL);
  char buf[64];
  assert_int_equal(moe_dist_forward(NULL, buf, (float *)buf, 1, 0, buf, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  moe_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expert_range),    cmocka_unit_test(test_tp_slice),
      cmocka_unit_test(test_tp_slice_bad),    cmocka_unit_test(test_a2a_sizes),
      cmocka_unit_test(test_create_bad_args),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
