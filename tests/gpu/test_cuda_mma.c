/*
 * test_cuda_mma.c - the cuda-mma backend against the CPU reference, through
 * the public API: the same layer is created twice, with host weights on
 * "cpu-ref" and with device weights on "cuda-mma", and both run on the same
 * fresh random inputs. Outputs are poisoned first; bf16/f16 relative error
 * must stay under 1e-2 and NaN never passes. Routing ids must agree exactly.
 * Also: two runs bit-identical, CUDA-graph capture and replay identical,
 * caller-routed forward with an expert map, chunking past max_tokens.
 * Without a GPU every test is skipped with a visible line.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda/cuda_backends.h"
#include "gpu_case.h"
#include "moe.h"
#include "testutil.h"

static int g_gpu = -1;
/* MOE_GPU_TEST_QUICK=1: fewer and smaller cases (for the sanitizers). */
static int quick(void) {
  const char *e = getenv("MOE_GPU_TEST_QUICK");
  return e && *e == '1';
}

static int have_gpu(void) {
  if (g_gpu < 0) {
    moe_device d;
    char msg[256];
    memset(&d, 0, sizeof d);
    g_gpu = moe_cuda_query_device(0, &d, msg, sizeof msg) == MOE_OK;
    if (!g_gpu) printf("SKIP: no CUDA device (%s)\n", msg);
  }
  return g_gpu;
}
#define NEED_GPU()                                                             \
  do {                                                                         \
    if (!have_gpu()) skip();                                                   \
  } while (0)

/* The path a case takes follows MOE_MMA_GEMV_TOKENS and
 * MOE_MMA_DECODE_ROWS (read at create); the tag names it on each line. */
static const char *g_tag = "";
static void run_case(const tcase *c) {
  gpu_run_case(c, "cuda-mma", g_tag);
}
static void path_begin(const char *gemv_tokens, const char *dec_rows,
                       const char *tag) {
  setenv("MOE_MMA_GEMV_TOKENS", gemv_tokens, 1);
  setenv("MOE_MMA_DECODE_ROWS", dec_rows, 1);
  g_tag = tag;
}
static void path_end(void) {
  unsetenv("MOE_MMA_GEMV_TOKENS");
  unsetenv("MOE_MMA_DECODE_ROWS");
  g_tag = "";
}
/* A case at 5 tokens (the gemv path's range). */
static void run_case_m5(const tcase *c) {
  tcase d = *c;
  d.M = 5;
  run_case(&d);
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

/* Every preset at each of the n token counts Ms. */
static void presets_at(const int *Ms, size_t n) {
  for (size_t p = 0; p < GPU_N_PRESETS; p++)
    for (size_t m = 0; m < n; m++) {
      tcase c = gpu_presets[p];
      c.M = Ms[m];
      run_case(&c);
    }
}

static void test_presets(void **state) {
  (void)state;
  NEED_GPU();
  const int Ms[] = {1, 4, 16, 64, 300};
  presets_at(Ms, quick() ? 2 : sizeof Ms / sizeof Ms[0]);
}

static void edge_cases(void) {
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
  c = base, c.name = "all tokens on one expert", c.M = 200, c.skew = 1;
  run_case(&c);
  c = base, c.name = "all on one, k=1", c.M = 150, c.k = 1, c.skew = 1;
  run_case(&c);
  c = base, c.name = "H, I not tile multiples", c.H = 200, c.I = 72, c.M = 37;
  run_case(&c);
  c = base, c.name = "H, I odd (unaligned rows)", c.H = 131, c.I = 45;
  c.M = 29, c.Is = 27;
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
  c = base, c.name = "BM 64 tiles, split-K", c.E = 8, c.k = 2, c.H = 256;
  c.I = 1024, c.M = 200;
  run_case(&c);
  c = base, c.name = "BM 128 tiles, split-K", c.E = 4, c.k = 1, c.H = 128;
  c.I = 1024, c.Is = 1024, c.M = 600, c.ebias = 1;
  run_case(&c);
  if (quick()) return;
  c = base, c.name = "chunks past max_tokens", c.M = 1000, c.max_tokens = 256;
  c.Is = 64;
  run_case(&c);
  c = base, c.name = "many row and N tiles", c.E = 8, c.k = 2, c.H = 384;
  c.I = 320, c.Is = 192, c.M = 3000, c.max_tokens = 3000;
  run_case(&c);
  c = base, c.name = "M=16384", c.E = 8, c.k = 2, c.H = 64, c.I = 32;
  c.M = 16384, c.max_tokens = 16384;
  run_case(&c);
  c = base, c.name = "M=16384 chunked", c.E = 8, c.k = 2, c.H = 64, c.I = 32;
  c.M = 16384, c.max_tokens = 4096, c.scoring = SG, c.cbias = 1;
  run_case(&c);
}

static void test_edges(void **state) {
  (void)state;
  NEED_GPU();
  edge_cases();
  /* the permutation's three-kernel path at every size it meets here */
  setenv("MOE_MMA_PERMUTE_ONE_BLOCK", "0", 1);
  g_tag = "[permute: three kernels]";
  edge_cases();
  g_tag = "";
  unsetenv("MOE_MMA_PERMUTE_ONE_BLOCK");
}

/* The gemv path's own edges: every token on one expert, experts with no
 * token, tokens with no local expert, k = E, E = 257, biases and a shared
 * expert, f16, odd H and I (gemv declines: the tile path serves). */
static void gemv_edge_cases(void) {
  /* H = 264: rows of 33 16-byte chunks, a partial last ring stage */
  tcase base = {"gemv edge", 16, 4, 264, 64, 0,    MOE_ACT_SILU,
                1,           SM, 0, 0,   1,  0.0f, 0,
                0,           BF, 1, 0,   0,  0};
  tcase c = base;
  run_case(&c);
  c = base, c.name = "gemv: all tokens on one expert", c.M = 8, c.skew = 1;
  run_case(&c);
  c = base, c.name = "gemv: last expert empty", c.M = 6, c.skew = 2;
  run_case(&c);
  c = base, c.name = "gemv: E=257", c.E = 257, c.k = 8, c.M = 8;
  run_case(&c);
  c = base, c.name = "gemv: top_k=E", c.E = 12, c.k = 12, c.M = 3;
  run_case(&c);
  c = base, c.name = "gemv: k=1", c.k = 1, c.M = 7;
  run_case(&c);
  c = base, c.name = "gemv: biases, shared expert", c.M = 4, c.ebias = 1;
  c.Is = 64;
  run_case(&c);
  c = base, c.name = "gemv: f16", c.dt = MOE_DTYPE_F16, c.M = 5, c.Is = 96;
  run_case(&c);
  c = base, c.name = "gemv: expert map, caller ids", c.M = 6, c.emap = 1;
  run_case(&c);
  c = base, c.name = "gemv: H, I odd (tile path)", c.H = 131, c.I = 45;
  c.M = 3, c.Is = 27;
  run_case(&c);
}

/* gemv at 1 to 8 tokens on every preset, its edges, every activation x
 * routing mode. */
static void gemv_cases(const char *tag) {
  path_begin("8", "0", tag);
  const int Mg[] = {1, 2, 3, 5, 8};
  presets_at(Mg, quick() ? 2 : 5);
  gemv_edge_cases();
  gpu_cases_act_x_routing(run_case_m5);
  path_end();
}

/* The tile path where gemv would serve by default (M = 1, 4); the decode
 * kernel at every M it can hold (many rows per expert: an expert spans
 * several 8-row tiles; tokens with no local expert); the gemv cases, with
 * gemv1's GEMM as FFMA units (the default) and on tensor cores. */
static void test_paths_forced(void **state) {
  (void)state;
  NEED_GPU();
  path_begin("0", "0", "[tile path]");
  const int Mt[] = {1, 4};
  presets_at(Mt, 2);
  path_end();
  path_begin("0", "100000", "[decode forced]");
  const int Md[] = {16, 64, 300};
  presets_at(Md, quick() ? 1 : 3);
  edge_cases();
  gpu_cases_act_x_routing(run_case);
  path_end();
  /* The GEMMs' tile walk in bands of 3 row tiles (a part-filled last
   * band) and as one band (the launch order). */
  const char *bands[] = {"3", "0"};
  for (int b = 0; b < 2; b++) {
    setenv("MOE_MMA_BAND", bands[b], 1);
    g_tag = b ? "[band 0]" : "[band 3]";
    tcase c = {"many row and N tiles",
               8,
               2,
               384,
               320,
               192,
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
               3000,
               3000,
               0,
               0};
    run_case(&c);
    c.name = "many tiles, 64-row tile", c.M = 300, c.k = 2;
    run_case(&c);
    unsetenv("MOE_MMA_BAND");
    g_tag = "";
  }
  gemv_cases("[gemv]");
  setenv("MOE_MMA_GEMV_MMA", "1", 1);
  gemv_cases("[gemv, mma]");
  unsetenv("MOE_MMA_GEMV_MMA");
}

/* Capture one forward of M tokens in a CUDA graph; replay == direct run,
 * bit for bit. */
static void graph_case(int M) {
  const tcase *c = &gpu_presets[3];
  tu_rng r = tu_rng_make(77);
  host_layer h;
  tcase cc = *c;
  cc.M = M;
  gpu_make_host(&cc, &h, &r);
  size_t es = 2, nout = (size_t)cc.M * cc.H;
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  o.num_threads = 1;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  void *dx = gpu_dev_copy(h.x, h.nx * es),
       *dw13 = gpu_dev_copy(h.w13, h.nw13 * es);
  void *dw2 = gpu_dev_copy(h.w2, h.nw2 * es),
       *dsw13 = gpu_dev_copy(h.sw13, h.nsw13 * es);
  void *dsw2 = gpu_dev_copy(h.sw2, h.nsw2 * es);
  float *dlog = gpu_dev_copy(h.logits, (size_t)cc.M * cc.E * 4);
  float *dcb = gpu_dev_copy(h.cb, (size_t)cc.E * 4);
  void *d1 = NULL, *d2 = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&d1, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.alloc(&d2, nout * es), MOE_OK);
  moe_layer_desc d;
  gpu_desc_of(&cc, &h, &d, "cuda-mma");
  d.self_check = 1;
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, NULL, NULL, dcb, dsw13, dsw2};
  moe_layer *gl = NULL;
  moe_status st = moe_layer_create(ctx, &d, &dw, &gl);
  if (st != MOE_OK) fprintf(stderr, "%s\n", moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  cudaStream_t s;
  assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), 0);
  assert_int_equal(moe_forward(gl, dx, dlog, cc.M, d1, s), MOE_OK);
  assert_int_equal(cudaStreamSynchronize(s), 0);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  assert_int_equal(moe_memops_cuda.fill(d2, 0xFF, nout * es), MOE_OK);
  assert_int_equal(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), 0);
  assert_int_equal(moe_forward(gl, dx, dlog, cc.M, d2, s), MOE_OK);
  assert_int_equal(cudaStreamEndCapture(s, &g), 0);
  assert_int_equal(cudaGraphInstantiate(&ge, g, 0), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(cudaGraphLaunch(ge, s), 0);
  assert_int_equal(cudaStreamSynchronize(s), 0);
  void *a = malloc(nout * es), *b = malloc(nout * es);
  assert_int_equal(moe_memops_cuda.download(a, d1, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.download(b, d2, nout * es), MOE_OK);
  assert_memory_equal(a, b, nout * es);
  printf("  graph replay, M = %d: %zu elements identical\n", M, nout);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  moe_layer_destroy(gl);
  moe_context_destroy(ctx);
  void *dp[] = {dx, dw13, dw2, dsw13, dsw2, dlog, dcb, d1, d2};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
    moe_memops_cuda.release(dp[i]);
  free(a);
  free(b);
  gpu_free_host(&h);
}

/* The gemv path (5 tokens) and the tile path (40). */
static void test_graph(void **state) {
  (void)state;
  NEED_GPU();
  graph_case(5);
  graph_case(40);
}

/* The build's promises: for every arch this build names in
 * moe_build_info(), each support row's (dtype, activation, gating) has its
 * kernels; nothing is promised below sm_80, for f32 or for gated relu2. */
static void test_rows_have_kernels(void **state) {
  (void)state;
  const moe_backend *b = &moe_backend_cuda_mma;
  const char *info = strstr(moe_build_info(), "cuda-archs:");
  assert_non_null(info);
  info += strlen("cuda-archs:");
  int n_arch = 0;
  while (*info && *info != '\n') {
    char *end;
    long sm = strtol(info, &end, 10);
    if (end == info) {
      info++;
      continue;
    }
    info = end;
    n_arch++;
    for (int i = 0; i < b->n_rows; i++)
      for (int a = 0; a < MOE_ACT_COUNT; a++)
        for (int t = 0; t < MOE_DTYPE_COUNT; t++) {
          const moe_support_row *r = &b->rows[i];
          if (!(r->activations & MOE_BIT(a)) || !(r->dtypes & MOE_BIT(t)))
            continue;
          int gated = (r->gating & MOE_GATING_GATED) != 0;
          if (!b->kernel_compiled((int)sm, (moe_dtype)t, (moe_activation)a,
                                  gated))
            fprintf(stderr, "sm_%ld: no kernel for row %d act %d dtype %d\n",
                    sm, i, a, t);
          assert_true(b->kernel_compiled((int)sm, (moe_dtype)t,
                                         (moe_activation)a, gated));
        }
  }
  assert_true(n_arch > 0);
  assert_false(b->kernel_compiled(75, MOE_DTYPE_BF16, MOE_ACT_SILU, 1));
  assert_false(b->kernel_compiled(90, MOE_DTYPE_F32, MOE_ACT_SILU, 1));
  assert_false(b->kernel_compiled(90, MOE_DTYPE_BF16, MOE_ACT_RELU2, 1));
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  tu_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rows_have_kernels),
      cmocka_unit_test(test_act_x_routing),
      cmocka_unit_test(test_presets),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_paths_forced),
      cmocka_unit_test(test_graph),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* Without a GPU, tell ctest the test was skipped (SKIP_RETURN_CODE), so
   * the skip shows in its summary and not only in the log. */
  return rc == 0 && !have_gpu() ? 77 : rc;
}
