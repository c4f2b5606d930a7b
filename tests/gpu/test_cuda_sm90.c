/*
 * test_cuda_sm90.c - the cuda-sm90 backend (Hopper) against the CPU
 * reference. The reference layer goes through the public API on "cpu-ref";
 * the sm90 layer is driven through the backend's vtable (create / forward /
 * route / destroy) on a shape validated by the front end. Every case runs
 * with the crossover at 0 (every call on the wgmma GEMMs) and, where the
 * default crossover sends the call to the embedded cuda-mma layer, again
 * with the default. Outputs are
 * poisoned first; bf16/f16 relative error must stay under 1e-2 and NaN
 * never passes; routing ids must agree exactly. Also: bit-identical
 * repeats, CUDA-graph capture and replay, caller ids with an expert map,
 * chunking past max_tokens, M up to 16384, shapes the backend refuses.
 * Skipped (exit 77) without an sm_90 GPU or without "90a" in the build.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda/cuda_backends.h"
#include "cuda_sm90/cuda_sm90.h"
#include "gpu_case.h"
#include "internal.h"
#include "moe.h"
#include "testutil.h"

static const moe_backend *const B = &moe_backend_cuda_sm90;
static int g_gpu = -1;
static int quick(void) {
  const char *e = getenv("MOE_GPU_TEST_QUICK");
  return e && *e == '1';
}

/* An sm_90 GPU and a build with the sm_90a image. */
static int have_sm90(void) {
  if (g_gpu < 0) {
    moe_device d;
    char msg[256];
    memset(&d, 0, sizeof d);
    g_gpu = 0;
    if (moe_cuda_query_device(0, &d, msg, sizeof msg) != MOE_OK)
      printf("SKIP: no CUDA device (%s)\n", msg);
    else if (d.sm != 90)
      printf("SKIP: sm_%d is not sm_90\n", d.sm);
    else if (!B->kernel_compiled(90, MOE_DTYPE_BF16, MOE_ACT_SILU, 1))
      printf("SKIP: this build has no sm_90a image (MOE_CUDA_ARCHS)\n");
    else
      g_gpu = 1;
  }
  return g_gpu;
}
#define NEED_GPU()                                                             \
  do {                                                                         \
    if (!have_sm90()) skip();                                                  \
  } while (0)

/* The sm90 layer: the front end's shape, the backend's own state. */
static moe_status gpu_create(moe_context *ctx, const moe_layer_desc *d,
                             const moe_weights *w, void **impl) {
  moe_shape s;
  moe_status st = moe_shape_from_desc(ctx, d, &s);
  if (st != MOE_OK) return st;
  moe_backend_env env = moe_context_env(ctx);
  char msg[512] = "";
  *impl = NULL;
  st = B->create(&env, &s, w, impl, msg, sizeof msg);
  if (st != MOE_OK) fprintf(stderr, "cuda-sm90 create: %s\n", msg);
  return st;
}

static moe_status gpu_forward(void *impl, const void *x, const float *logits,
                              const int32_t *ids, const float *w, int M,
                              void *out, void *stream) {
  moe_batch b;
  memset(&b, 0, sizeof b);
  b.x = x;
  b.logits = logits;
  b.ids = ids;
  b.weights = w;
  b.M = M;
  b.out = out;
  char msg[512] = "";
  moe_status st = B->forward(impl, &b, stream, msg, sizeof msg);
  if (st != MOE_OK) fprintf(stderr, "cuda-sm90 forward: %s\n", msg);
  return st;
}

static void run_case(const tcase *c) {
  tu_rng r = tu_rng_make((uint64_t)(uintptr_t)c->name ^ (uint64_t)c->M);
  host_layer h;
  gpu_make_host(c, &h, &r);
  size_t es = moe_dtype_size(c->dt);
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  o.num_threads = c->M > 2048 ? 8 : 1;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);

  /* Reference on the CPU. */
  moe_layer_desc d;
  gpu_desc_of(c, &h, &d, "cpu-ref");
  moe_weights hw = {MOE_MEMORY_HOST, h.w13, h.w2, h.b13, h.b2, h.cb,
                    h.sw13,          h.sw2};
  moe_layer *ref = NULL;
  moe_status st = moe_layer_create(ctx, &d, &hw, &ref);
  if (st != MOE_OK) fprintf(stderr, "cpu-ref: %s\n", moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  size_t Mx = c->M > 0 ? (size_t)c->M : 1, nout = Mx * c->H;
  void *ref_out = malloc(nout * es);
  int32_t *ids = malloc(Mx * c->k * sizeof(int32_t));
  float *wts = malloc(Mx * c->k * sizeof(float));
  if (c->emap) {
    assert_int_equal(moe_route(ref, h.logits, c->M, ids, wts, NULL), MOE_OK);
    assert_int_equal(
        moe_forward_routed(ref, h.x, ids, wts, c->M, ref_out, NULL), MOE_OK);
  } else {
    assert_int_equal(moe_forward(ref, h.x, h.logits, c->M, ref_out, NULL),
                     MOE_OK);
  }

  /* The same on the GPU, through the vtable. */
  void *dx = gpu_dev_copy(h.x, h.nx * es),
       *dw13 = gpu_dev_copy(h.w13, h.nw13 * es);
  void *dw2 = gpu_dev_copy(h.w2, h.nw2 * es);
  void *dsw13 = gpu_dev_copy(h.sw13, h.nsw13 * es);
  void *dsw2 = gpu_dev_copy(h.sw2, h.nsw2 * es);
  float *dlog = gpu_dev_copy(h.logits, Mx * c->E * sizeof(float));
  float *db13 = h.b13 ? gpu_dev_copy(h.b13, (size_t)h.El * h.N1 * 4) : NULL;
  float *db2 = h.b2 ? gpu_dev_copy(h.b2, (size_t)h.El * c->H * 4) : NULL;
  float *dcb = h.cb ? gpu_dev_copy(h.cb, (size_t)c->E * 4) : NULL;
  int32_t *dids = gpu_dev_copy(ids, Mx * c->k * 4);
  float *dwts = gpu_dev_copy(wts, Mx * c->k * 4);
  void *dout = NULL, *dout2 = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&dout, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.alloc(&dout2, nout * es), MOE_OK);
  gpu_desc_of(c, &h, &d, "cuda-sm90");
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, db13, db2, dcb, dsw13, dsw2};
  void *got = malloc(nout * es), *got2 = malloc(nout * es);
  float *fr = malloc(nout * sizeof(float)), *fg = malloc(nout * sizeof(float));
  /* Pass 0: the wgmma GEMMs at every M; pass 1: the default crossover,
   * when it sends this call to cuda-mma's kernels. */
  const int below = (double)c->M * c->k < SM90_CROSSOVER * c->E;
  for (int pass = 0; pass < (below && c->M > 0 ? 2 : 1); pass++) {
    if (pass == 0)
      setenv("MOE_SM90_CROSSOVER", "0", 1);
    else
      unsetenv("MOE_SM90_CROSSOVER");
    void *gl = NULL;
    assert_int_equal(gpu_create(ctx, &d, &dw, &gl), MOE_OK);
#define FWD(out, strm)                                                         \
  (c->emap ? gpu_forward(gl, dx, NULL, dids, dwts, c->M, out, strm)            \
           : gpu_forward(gl, dx, dlog, NULL, NULL, c->M, out, strm))
    assert_int_equal(moe_memops_cuda.fill(dout, 0xFF, nout * es), MOE_OK);
    assert_int_equal(FWD(dout, NULL), MOE_OK);
    assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
    assert_int_equal(moe_memops_cuda.download(got, dout, nout * es), MOE_OK);
    if (c->M == 0) {
      assert_true(tu_all_poison(got, nout * es));
    } else {
      gpu_to_f32(ref_out, nout, c->dt, fr);
      gpu_to_f32(got, nout, c->dt, fg);
      double err = tu_rel_error(fg, fr, nout);
      printf("  %-28s M=%-6d rel err %.2e%s\n", c->name, c->M, err,
             pass ? "  (cuda-mma path)" : "");
      assert_true(err < 1e-2);

      /* Run to run: bit-identical. */
      assert_int_equal(moe_memops_cuda.fill(dout2, 0xFF, nout * es), MOE_OK);
      assert_int_equal(FWD(dout2, NULL), MOE_OK);
      assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
      assert_int_equal(moe_memops_cuda.download(got2, dout2, nout * es),
                       MOE_OK);
      assert_memory_equal(got, got2, nout * es);

      /* Routing ids agree with the reference exactly. */
      if (!c->emap) {
        int32_t *gid = malloc(Mx * c->k * 4), *rid = malloc(Mx * c->k * 4);
        float *gw = malloc(Mx * c->k * 4), *rw = malloc(Mx * c->k * 4);
        char msg[256] = "";
        assert_int_equal(moe_route(ref, h.logits, c->M, rid, rw, NULL), MOE_OK);
        assert_int_equal(
            B->route(gl, dlog, c->M, dids, dwts, NULL, msg, sizeof msg),
            MOE_OK);
        assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
        assert_int_equal(moe_memops_cuda.download(gid, dids, Mx * c->k * 4),
                         MOE_OK);
        assert_int_equal(moe_memops_cuda.download(gw, dwts, Mx * c->k * 4),
                         MOE_OK);
        for (size_t i = 0; i < (size_t)c->M * c->k; i++) {
          assert_int_equal(gid[i], rid[i]);
          assert_true(fabsf(gw[i] - rw[i]) <= 1e-5f * (1.0f + fabsf(rw[i])));
        }
        free(gid);
        free(rid);
        free(gw);
        free(rw);
      }
    }
    B->destroy(gl);
  }
  unsetenv("MOE_SM90_CROSSOVER");
#undef FWD
  moe_layer_destroy(ref);
  moe_context_destroy(ctx);
  void *dp[] = {dx,  dw13, dw2,  dsw13, dsw2, dlog, db13,
                db2, dcb,  dids, dwts,  dout, dout2};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
    moe_memops_cuda.release(dp[i]);
  free(ref_out);
  free(ids);
  free(wts);
  free(got);
  free(got2);
  free(fr);
  free(fg);
  gpu_free_host(&h);
}

#define BF MOE_DTYPE_BF16
#define SM MOE_SCORING_SOFTMAX
#define SG MOE_SCORING_SIGMOID

/* Every activation x every routing mode, small shape. */
static void test_act_x_routing(void **state) {
  (void)state;
  NEED_GPU();
  struct {
    moe_activation a;
    int gated;
  } acts[] = {{MOE_ACT_SILU, 1}, {MOE_ACT_GELU, 1}, {MOE_ACT_SWIGLU_OAI, 1},
              {MOE_ACT_SILU, 0}, {MOE_ACT_GELU, 0}, {MOE_ACT_RELU2, 0}};
  struct {
    moe_scoring sc;
    int ng, tg, renorm, cb;
    float scale;
  } routes[] = {{SM, 0, 0, 0, 0, 0.0f},
                {SM, 0, 0, 1, 0, 0.0f},
                {SG, 0, 0, 1, 1, 2.5f},
                {SG, 4, 2, 1, 1, 2.5f}};
  for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
    for (size_t q = 0; q < sizeof routes / sizeof routes[0]; q++) {
      tcase c = {"act x routing",
                 16,
                 4,
                 128,
                 64,
                 0,
                 acts[a].a,
                 acts[a].gated,
                 routes[q].sc,
                 routes[q].ng,
                 routes[q].tg,
                 routes[q].renorm,
                 routes[q].scale,
                 routes[q].cb,
                 acts[a].a == MOE_ACT_SWIGLU_OAI,
                 BF,
                 33,
                 0,
                 0,
                 0};
      run_case(&c);
    }
}

/* The five presets of DESIGN.md, E/H/I scaled down (multiples of 8 kept),
 * the rest kept: name, E, k, H, I, shared I, activation, gated, scoring,
 * n_group, topk_group, renormalize, scale, correction bias, expert bias. */
#define PRESET(n, E, k, H, I, Is, act, g, sc, ng, tg, rn, scale, cb, eb)       \
  { n, E, k, H, I, Is, act, g, sc, ng, tg, rn, scale, cb, eb, BF, 0, 0, 0, 0 }
static const tcase presets[] = {
    PRESET("nemotron3-nano", 32, 6, 320, 232, 464, MOE_ACT_RELU2, 0, SG, 1, 1,
           1, 2.5f, 1, 0),
    PRESET("qwen3-30b-a3b", 32, 8, 256, 96, 0, MOE_ACT_SILU, 1, SM, 0, 0, 1,
           0.0f, 0, 0),
    PRESET("mixtral-8x7b", 8, 2, 512, 448, 0, MOE_ACT_SILU, 1, SM, 0, 0, 1,
           0.0f, 0, 0),
    PRESET("deepseek-v3", 64, 8, 448, 128, 128, MOE_ACT_SILU, 1, SG, 8, 4, 1,
           2.5f, 1, 0),
    PRESET("gpt-oss-120b", 32, 4, 360, 360, 0, MOE_ACT_SWIGLU_OAI, 1, SM, 0, 0,
           1, 0.0f, 0, 1),
};

static void test_presets(void **state) {
  (void)state;
  NEED_GPU();
  const int Ms[] = {1, 16, 300, 1024, 4096};
  const size_t nm = quick() ? 2 : sizeof Ms / sizeof Ms[0];
  for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++)
    for (size_t m = 0; m < nm; m++) {
      tcase c = presets[p];
      c.M = Ms[m];
      run_case(&c);
    }
}

static void test_edges(void **state) {
  (void)state;
  NEED_GPU();
  tcase base = {"edge", 16, 4, 128, 64, 0,    MOE_ACT_SILU,
                1,      SM, 0, 0,   1,  0.0f, 0,
                0,      BF, 1, 0,   0,  0};
  tcase c;
  const int Ms[] = {0, 1, 17, 255};
  for (size_t m = 0; m < 4; m++) {
    c = base;
    c.M = Ms[m];
    run_case(&c);
  }
  c = base, c.name = "expert with no tokens", c.M = 40, c.skew = 2;
  run_case(&c);
  c = base, c.name = "all tokens on one expert", c.M = 2000, c.skew = 1;
  run_case(&c);
  c = base, c.name = "all on one, k=1", c.M = 150, c.k = 1, c.skew = 1;
  run_case(&c);
  c = base, c.name = "H, I not tile multiples", c.H = 200, c.I = 72, c.M = 37;
  run_case(&c);
  c = base, c.name = "K < BK, shared expert", c.H = 40, c.I = 24, c.Is = 16;
  c.M = 29;
  run_case(&c);
  c = base, c.name = "E=257", c.E = 257, c.k = 8, c.M = 23;
  run_case(&c);
  c = base, c.name = "top_k=1", c.k = 1, c.M = 31;
  run_case(&c);
  c = base, c.name = "top_k=E", c.E = 12, c.k = 12, c.M = 19;
  run_case(&c);
  c = base, c.name = "f16", c.dt = MOE_DTYPE_F16, c.M = 45, c.Is = 96;
  run_case(&c);
  c = base, c.name = "expert map, caller ids", c.M = 50, c.emap = 1;
  run_case(&c);
  c = base, c.name = "expert bias, interleaved", c.act = MOE_ACT_SWIGLU_OAI;
  c.ebias = 1, c.I = 264, c.M = 700;
  run_case(&c);
  if (quick()) return;
  c = base, c.name = "chunks past max_tokens", c.M = 1000, c.max_tokens = 256;
  c.Is = 64;
  run_case(&c);
  c = base, c.name = "M=16384", c.E = 16, c.k = 4, c.H = 128, c.I = 64;
  c.M = 16384, c.max_tokens = 16384;
  run_case(&c);
  c = base, c.name = "M=16384 chunked", c.E = 8, c.k = 2, c.H = 64, c.I = 32;
  c.M = 16384, c.max_tokens = 4096, c.scoring = SG, c.cbias = 1;
  run_case(&c);
}

/* Shapes outside the support rows: refused at create with a message. */
static void test_refused(void **state) {
  (void)state;
  NEED_GPU();
  tcase c = {"odd H", 16, 4, 131, 45, 0, MOE_ACT_SILU, 1, SM, 0, 0, 1, 0.0f, 0,
             0,       BF, 8, 0,   0,  0};
  tu_rng r = tu_rng_make(5);
  host_layer h;
  gpu_make_host(&c, &h, &r);
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  void *dw13 = gpu_dev_copy(h.w13, h.nw13 * 2),
       *dw2 = gpu_dev_copy(h.w2, h.nw2 * 2);
  moe_layer_desc d;
  gpu_desc_of(&c, &h, &d, "cuda-sm90");
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, NULL, NULL, NULL, NULL, NULL};
  void *gl = NULL;
  assert_int_equal(gpu_create(ctx, &d, &dw, &gl), MOE_ERR_UNSUPPORTED);
  assert_null(gl);
  moe_memops_cuda.release(dw13);
  moe_memops_cuda.release(dw2);
  moe_context_destroy(ctx);
  gpu_free_host(&h);
}

/* Capture one forward in a CUDA graph; replay == direct run, bit for bit. */
static void test_graph(void **state) {
  (void)state;
  NEED_GPU();
  tcase cc = presets[3];
  cc.M = 700;
  tu_rng r = tu_rng_make(77);
  host_layer h;
  gpu_make_host(&cc, &h, &r);
  size_t es = 2, nout = (size_t)cc.M * cc.H;
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  void *dx = gpu_dev_copy(h.x, h.nx * es),
       *dw13 = gpu_dev_copy(h.w13, h.nw13 * es);
  void *dw2 = gpu_dev_copy(h.w2, h.nw2 * es);
  void *dsw13 = gpu_dev_copy(h.sw13, h.nsw13 * es);
  void *dsw2 = gpu_dev_copy(h.sw2, h.nsw2 * es);
  float *dlog = gpu_dev_copy(h.logits, (size_t)cc.M * cc.E * 4);
  float *dcb = gpu_dev_copy(h.cb, (size_t)cc.E * 4);
  void *d1 = NULL, *d2 = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&d1, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.alloc(&d2, nout * es), MOE_OK);
  moe_layer_desc d;
  gpu_desc_of(&cc, &h, &d, "cuda-sm90");
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, NULL, NULL, dcb, dsw13, dsw2};
  void *gl = NULL;
  assert_int_equal(gpu_create(ctx, &d, &dw, &gl), MOE_OK);
  cudaStream_t s;
  assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 0);
  assert_int_equal(gpu_forward(gl, dx, dlog, NULL, NULL, cc.M, d1, s), MOE_OK);
  assert_int_equal(cudaStreamSynchronize(s), 0);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  assert_int_equal(moe_memops_cuda.fill(d2, 0xFF, nout * es), MOE_OK);
  assert_int_equal(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), 0);
  assert_int_equal(gpu_forward(gl, dx, dlog, NULL, NULL, cc.M, d2, s), MOE_OK);
  assert_int_equal(cudaStreamEndCapture(s, &g), 0);
  assert_int_equal(cudaGraphInstantiate(&ge, g, 0), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cudaGraphLaunch(ge, s), 0);
  assert_int_equal(cudaStreamSynchronize(s), 0);
  void *a = malloc(nout * es), *b = malloc(nout * es);
  assert_int_equal(moe_memops_cuda.download(a, d1, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.download(b, d2, nout * es), MOE_OK);
  assert_memory_equal(a, b, nout * es);
  printf("  graph replay: %zu elements identical\n", nout);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  B->destroy(gl);
  moe_context_destroy(ctx);
  void *dp[] = {dx, dw13, dw2, dsw13, dsw2, dlog, dcb, d1, d2};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
    moe_memops_cuda.release(dp[i]);
  free(a);
  free(b);
  gpu_free_host(&h);
}

/* The rows promise kernels exactly where the build has them: sm_90 with
 * the 90a image, nothing on any other arch, f32 or gated relu2. */
static void test_rows_have_kernels(void **state) {
  (void)state;
  const int has90a = strstr(moe_build_info(), "90a") != NULL;
  for (int i = 0; i < B->n_rows; i++) {
    const moe_support_row *r = &B->rows[i];
    assert_int_equal(r->device.kind, MOE_PRED_EXACT);
    assert_int_equal(r->device.sm, 90);
    for (int a = 0; a < MOE_ACT_COUNT; a++)
      for (int t = 0; t < MOE_DTYPE_COUNT; t++) {
        if (!(r->activations & MOE_BIT(a)) || !(r->dtypes & MOE_BIT(t)))
          continue;
        int gated = (r->gating & MOE_GATING_GATED) != 0;
        assert_int_equal(
            B->kernel_compiled(90, (moe_dtype)t, (moe_activation)a, gated),
            has90a);
      }
  }
  const int others[] = {80, 86, 89, 100, 120, 121};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
    assert_false(
        B->kernel_compiled(others[i], MOE_DTYPE_BF16, MOE_ACT_SILU, 1));
  assert_false(B->kernel_compiled(90, MOE_DTYPE_F32, MOE_ACT_SILU, 1));
  assert_false(B->kernel_compiled(90, MOE_DTYPE_BF16, MOE_ACT_RELU2, 1));
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  tu_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rows_have_kernels),
      cmocka_unit_test(test_act_x_routing),
      cmocka_unit_test(test_presets),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_graph),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  return rc == 0 && !have_sm90() ? 77 : rc;
}
