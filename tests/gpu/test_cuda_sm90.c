/*
 * test_cuda_sm90.c - the cuda-sm90 backend (Hopper) against the CPU
 * reference, through the public API (gpu_run_case, shared with
 * test_cuda_mma); the graph and refusal tests drive the backend's vtable.
 * Every case runs with the crossover at 0 (every call on the wgmma GEMMs)
 * and, where the default crossover sends the call to the embedded cuda-mma
 * layer, again with the default. Outputs are
 * poisoned first; bf16/f16 relative error must stay under 1e-2 and NaN
 * never passes; routing ids must agree exactly. Also: bit-identical
 * repeats, CUDA-graph capture and replay, caller ids with an expert map,
 * chunking past max_tokens, M up to 16384, shapes the backend refuses,
 * and the crossover measured at creation.
 * Skipped (exit 77) without an sm_90 GPU or without "90a" in the build.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
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

/* Every case on the wgmma path (crossover 0), then, where the default
 * crossover hands a chunk of the call (max_tokens each; 0: 4096) to
 * cuda-mma's kernels, once more that way. */
static void run_case(const tcase *c) {
  setenv("MOE_SM90_CROSSOVER", "0", 1);
  gpu_run_case(c, "cuda-sm90", "");
  unsetenv("MOE_SM90_CROSSOVER");
  const int mt = c->max_tokens > 0 ? c->max_tokens : 4096;
  const int last = c->M % mt ? c->M % mt : mt; /* the smallest chunk */
  if (c->M > 0 &&
      (double)(c->M < mt ? c->M : last) * c->k < SM90_CROSSOVER * c->E)
    gpu_run_case(c, "cuda-sm90", "  (cuda-mma path)");
}

#define BF MOE_DTYPE_BF16
#define SM MOE_SCORING_SOFTMAX
#define SG MOE_SCORING_SIGMOID

/* Every activation x every routing mode, small shape. */
static void test_act_x_routing(void **state) {
  (void)state;
  NEED_GPU();
  gpu_cases_act_x_routing(run_case);
}

static void test_presets(void **state) {
  (void)state;
  NEED_GPU();
  const int Ms[] = {1, 16, 300, 1024, 4096};
  const size_t nm = quick() ? 2 : sizeof Ms / sizeof Ms[0];
  for (size_t p = 0; p < GPU_N_PRESETS; p++)
    for (size_t m = 0; m < nm; m++) {
      tcase c = gpu_presets[p];
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
  /* GEMM2 writing f32 Y: the direct epilogue, not the staged one */
  setenv("MOE_SM90_Y32", "1", 1);
  c = base, c.name = "f32 Y", c.H = 200, c.I = 72, c.M = 300;
  run_case(&c);
  unsetenv("MOE_SM90_Y32");
  /* The defaults take the bulk epilogues, the half-width last N tile
   * and 64-row A boxes wherever they apply; the shapes below cover their
   * edges (tails of both GEMMs, which go direct; an expert of 2000 rows;
   * f16), and the presets run once more with all three off. */
  c = base, c.name = "tails of both GEMMs", c.H = 520, c.I = 320, c.M = 77;
  run_case(&c);
  c.name = "tails, plain relu2", c.act = MOE_ACT_RELU2, c.gated = 0;
  run_case(&c);
  c = base, c.name = "one expert of 2000 rows", c.H = 256, c.M = 2000;
  c.skew = 1;
  run_case(&c);
  c = base, c.name = "f16, full tiles", c.dt = MOE_DTYPE_F16, c.H = 512;
  c.I = 256, c.M = 90, c.Is = 96;
  run_case(&c);
  setenv("MOE_SM90_EPI_BULK", "0", 1);
  setenv("MOE_SM90_HALF_TAIL", "0", 1);
  setenv("MOE_SM90_HALF_ROWS", "0", 1);
  for (size_t p = 0; p < GPU_N_PRESETS; p++) {
    c = gpu_presets[p], c.M = quick() ? 120 : 301;
    run_case(&c);
  }
  unsetenv("MOE_SM90_EPI_BULK");
  unsetenv("MOE_SM90_HALF_TAIL");
  unsetenv("MOE_SM90_HALF_ROWS");
  if (quick()) return;
  /* The idle skip off, as the layers with H > 3072 run (every test shape
   * here has H <= 3072, so the default skips), and the static walk (each
   * CTA striding over the tiles; a knob). */
  setenv("MOE_SM90_IDLE_SKIP", "0", 1);
  for (size_t p = 0; p < GPU_N_PRESETS; p++) {
    c = gpu_presets[p], c.M = 300;
    run_case(&c);
  }
  setenv("MOE_SM90_DYN", "0", 1);
  c = base, c.name = "static walk, no skip", c.H = 40, c.I = 24, c.Is = 16;
  c.M = 29;
  run_case(&c);
  unsetenv("MOE_SM90_IDLE_SKIP");
  c = base, c.name = "static walk", c.M = 255;
  run_case(&c);
  unsetenv("MOE_SM90_DYN");
  c = base, c.name = "chunks past max_tokens", c.M = 1000, c.max_tokens = 256;
  c.Is = 64;
  run_case(&c);
  c = base, c.name = "tail chunk below crossover", c.M = 1000;
  c.max_tokens = 330; /* chunks 330, 330, 330, 10 */
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
  tcase cc = gpu_presets[3];
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

/* A forward of M tokens into a poisoned out; the result downloaded. */
static void tuned_run(moe_layer *l, const void *dx, const float *dlog, int M,
                      void *dout, void *host, size_t bytes) {
  assert_int_equal(moe_memops_cuda.fill(dout, 0xFF, bytes), MOE_OK);
  assert_int_equal(moe_forward(l, dx, dlog, M, dout, NULL), MOE_OK);
  assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
  assert_int_equal(moe_memops_cuda.download(host, dout, bytes), MOE_OK);
}

/* The crossover of the layer's plan text ("wgmma GEMMs from X rows"). */
static double tuned_rows(moe_layer *l, char *text, size_t n) {
  moe_plan_explain(moe_layer_plan(l), text, n);
  const char *p = strstr(text, "wgmma GEMMs from ");
  assert_non_null(p);
  return strtod(p + strlen("wgmma GEMMs from "), NULL);
}

/* A layer with large enough experts measures its crossover at creation:
 * the plan says where the wgmma path starts and that it was measured; a
 * second layer of the shape reuses the result; at a call on each side of
 * it the output equals, bit for bit, a layer's given that crossover
 * explicitly, and, for the first 16 tokens, the CPU reference's. */
static void test_tuned_crossover(void **state) {
  (void)state;
  NEED_GPU();
  /* racecheck runs its GEMMs for minutes; they are checked above */
  const char *sk = getenv("MOE_GPU_TEST_SKIP_TUNE");
  if (sk && *sk == '1') {
    printf("SKIP: test_tuned_crossover (MOE_GPU_TEST_SKIP_TUNE=1)\n");
    skip();
  }
  tcase c = {"tuned crossover",
             32,
             4,
             2048,
             1024,
             0,
             MOE_ACT_SILU,
             1,
             SM,
             0,
             0,
             1,
             0.0f,
             0,
             0,
             BF,
             1024,
             1024,
             0,
             0};
  tu_rng r = tu_rng_make(91);
  host_layer h;
  gpu_make_host(&c, &h, &r);
  const size_t es = 2, nout = (size_t)c.M * c.H, bytes = nout * es;
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  o.num_threads = 8;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  void *dx = gpu_dev_copy(h.x, h.nx * es),
       *dw13 = gpu_dev_copy(h.w13, h.nw13 * es);
  void *dw2 = gpu_dev_copy(h.w2, h.nw2 * es);
  float *dlog = gpu_dev_copy(h.logits, (size_t)c.M * c.E * 4);
  void *dout = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&dout, bytes), MOE_OK);
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, NULL, NULL, NULL, NULL, NULL};
  moe_layer_desc d;
  gpu_desc_of(&c, &h, &d, "cuda-sm90");
  unsetenv("MOE_SM90_CROSSOVER");
  unsetenv("MOE_SM90_TUNE");
  moe_layer *lt = NULL, *l2 = NULL, *lx = NULL;
  assert_int_equal(moe_layer_create(ctx, &d, &dw, &lt), MOE_OK);
  char text[4096], text2[4096];
  const double x = tuned_rows(lt, text, sizeof text);
  printf("%s", text);
  assert_non_null(strstr(text, "measured at creation"));
  assert_true(x >= 32 && x <= 112);
  assert_int_equal(moe_layer_create(ctx, &d, &dw, &l2), MOE_OK);
  assert_true(tuned_rows(l2, text2, sizeof text2) == x);
  assert_non_null(strstr(text2, "earlier layer of this shape"));
  char v[32];
  snprintf(v, sizeof v, "%g", x);
  setenv("MOE_SM90_CROSSOVER", v, 1);
  assert_int_equal(moe_layer_create(ctx, &d, &dw, &lx), MOE_OK);
  unsetenv("MOE_SM90_CROSSOVER");
  assert_true(tuned_rows(lx, text2, sizeof text2) == x);

  /* The reference for the first 16 tokens. */
  const int R = 16;
  gpu_desc_of(&c, &h, &d, "cpu-ref");
  moe_weights hw = {MOE_MEMORY_HOST, h.w13, h.w2, NULL, NULL, NULL, NULL, NULL};
  moe_layer *ref = NULL;
  assert_int_equal(moe_layer_create(ctx, &d, &hw, &ref), MOE_OK);
  void *rout = malloc((size_t)R * c.H * es);
  assert_int_equal(moe_forward(ref, h.x, h.logits, R, rout, NULL), MOE_OK);
  float *fr = malloc((size_t)R * c.H * 4), *fg = malloc((size_t)R * c.H * 4);
  gpu_to_f32(rout, (size_t)R * c.H, BF, fr);

  void *a = malloc(bytes), *b = malloc(bytes);
  const double rows[2] = {x - 8, x}; /* cuda-mma's kernels, then wgmma's */
  for (int i = 0; i < 2; i++) {
    const int M = (int)ceil(rows[i] * c.E / c.k);
    if (M < R || M > c.M) continue;
    tuned_run(lt, dx, dlog, M, dout, a, (size_t)M * c.H * es);
    tuned_run(lx, dx, dlog, M, dout, b, (size_t)M * c.H * es);
    assert_memory_equal(a, b, (size_t)M * c.H * es);
    gpu_to_f32(a, (size_t)R * c.H, BF, fg);
    const double err = tu_rel_error(fg, fr, (size_t)R * c.H);
    printf("  tuned crossover %g: M=%d (%s) rel err %.2e, = explicit\n", x, M,
           i ? "wgmma" : "cuda-mma", err);
    assert_true(err < 1e-2);
  }
  free(a);
  free(b);
  free(rout);
  free(fr);
  free(fg);
  moe_layer_destroy(ref);
  moe_layer_destroy(lt);
  moe_layer_destroy(l2);
  moe_layer_destroy(lx);
  moe_context_destroy(ctx);
  void *dp[] = {dx, dw13, dw2, dlog, dout};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
    moe_memops_cuda.release(dp[i]);
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
      cmocka_unit_test(test_tuned_crossover),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  return rc == 0 && !have_sm90() ? 77 : rc;
}
