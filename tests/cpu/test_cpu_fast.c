/*
 * test_cpu_fast.c - cpu-avx2 and cpu-avx512 against cpu-ref: random data,
 * poisoned outputs (every element must be written and finite), awkward
 * shapes, chunking, and bit-identical results for any thread count.
 * A backend this CPU cannot run is skipped with a visible line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cpu_fixture.h"

#define SPEC(E_, k_, H_, I_, act_, gated_, dt_)                                \
  .E = E_, .k = k_, .H = H_, .I = I_, .act = act_, .gated = gated_, .dtype = dt_

static const moe_backend *fast_backends[2];
static int n_fast;

static int setup(void **state) {
  (void)state;
  uint32_t have = moe_cpu_detect_features();
#ifdef MOE_HAVE_CPU_X86
  const moe_backend *all[2] = {&moe_backend_cpu_avx2, &moe_backend_cpu_avx512};
  for (int i = 0; i < 2; i++) {
    uint32_t need = all[i]->rows[0].device.cpu_features;
    if ((have & need) == need)
      fast_backends[n_fast++] = all[i];
    else
      printf("SKIP %s: this CPU lacks its instructions\n", all[i]->name);
  }
#else
  (void)have;
  printf("SKIP cpu-avx2, cpu-avx512: not an x86-64 build\n");
#endif
  return 0;
}

static double tol_for(moe_dtype dt) {
  /* bf16: the fast path may round the intermediate to bf16; f16 output
   * rounding; f32: accumulation order only. */
  return dt == MOE_DTYPE_BF16 ? 1e-2 : dt == MOE_DTYPE_F16 ? 2e-3 : 2e-5;
}

/* out is fully written and finite; returns the relative error vs ref. */
static double check_against(const fx *f, const void *out, const void *ref,
                            int M) {
  float *a = malloc(sizeof(float) * (M ? M : 1) * f->s.H);
  float *b = malloc(sizeof(float) * (M ? M : 1) * f->s.H);
  if (!fx_to_float(f, out, M, a)) fail_msg("an output element is not finite");
  assert_true(fx_to_float(f, ref, M, b));
  double e = tu_rel_error(a, b, (size_t)M * f->s.H);
  free(a);
  free(b);
  return e;
}

typedef struct fast_case {
  const char *name;
  fx_spec sp;
  int M;
  int logits;  /* route inside; else random ids */
  int one_hot; /* all tokens to one expert (with ids) */
} fast_case;

static void run_fast_case(const fast_case *c, uint64_t stream) {
  fx f;
  fx_make(&f, &c->sp, tu_rng_make(stream));
  tu_rng r = tu_rng_make(stream + 7);
  int M = c->M, k = f.s.k, H = f.s.H;
  void *x = fx_random_x(&f, M, &r);
  float *logits = fx_random_logits(&f, M, &r);
  int32_t *ids = malloc(sizeof(int32_t) * (M ? M : 1) * k);
  float *w = malloc(sizeof(float) * (M ? M : 1) * k);
  fx_random_ids(&f, M, &r, ids, w);
  if (c->one_hot)
    for (int i = 0; i < M * k; i++)
      ids[i] = (i % k == 0) ? f.s.E - 1 : ids[i];
  if (c->one_hot && k == 1)
    for (int i = 0; i < M; i++)
      ids[i] = f.s.E - 1;
  const float *lg = c->logits ? logits : NULL;
  size_t bytes = (size_t)(M ? M : 1) * H * moe_dtype_size(f.s.dtype);
  void *ref = malloc(bytes), *out = malloc(bytes), *out2 = malloc(bytes);
  tu_poison(ref, bytes);
  assert_int_equal(
      fx_run(&f, &moe_backend_cpu_ref, 2, 0, x, lg, ids, w, M, ref), MOE_OK);
  for (int b = 0; b < n_fast; b++) {
    tu_poison(out, bytes);
    assert_int_equal(fx_run(&f, fast_backends[b], 2, 0, x, lg, ids, w, M, out),
                     MOE_OK);
    if (M == 0) {
      assert_true(tu_all_poison(out, bytes));
      continue;
    }
    double e = check_against(&f, out, ref, M);
    printf("  %-10s %-28s M=%-3d rel error %.2e\n", fast_backends[b]->name,
           c->name, M, e);
    if (!(e < tol_for(f.s.dtype)))
      fail_msg("%s on %s: rel error %.3g >= %.3g", fast_backends[b]->name,
               c->name, e, tol_for(f.s.dtype));
    /* One thread, three threads: the same bits. */
    for (int nt = 1; nt <= 3; nt += 2) {
      tu_poison(out2, bytes);
      assert_int_equal(
          fx_run(&f, fast_backends[b], nt, 0, x, lg, ids, w, M, out2), MOE_OK);
      if (memcmp(out, out2, (size_t)M * H * moe_dtype_size(f.s.dtype)))
        fail_msg("%s on %s: %d thread(s) differ from 2", fast_backends[b]->name,
                 c->name, nt);
    }
  }
  free(ref);
  free(out);
  free(out2);
  free(x);
  free(logits);
  free(ids);
  free(w);
  fx_free(&f);
}

static const char *act_name(moe_activation a, int gated) {
  static const char *n[2][4] = {
      {"silu", "gelu", "relu2", "swiglu-oai"},
      {"silu gated", "gelu gated", "relu2 gated", "swiglu-oai gated"}};
  return n[gated != 0][a & 3];
}

static void test_dtypes_activations(void **state) {
  (void)state;
  static const fx_spec specs[] = {
      {SPEC(8, 2, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
      {SPEC(8, 2, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_F16)},
      {SPEC(8, 2, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
      {SPEC(8, 3, 100, 37, MOE_ACT_GELU, 1, MOE_DTYPE_BF16)},
      {SPEC(8, 3, 100, 37, MOE_ACT_GELU, 0, MOE_DTYPE_F32)},
      {SPEC(8, 3, 100, 37, MOE_ACT_SILU, 0, MOE_DTYPE_F16)},
      {SPEC(8, 2, 100, 37, MOE_ACT_RELU2, 0, MOE_DTYPE_BF16)},
      {SPEC(8, 2, 72, 45, MOE_ACT_SWIGLU_OAI, 1, MOE_DTYPE_BF16)},
      {SPEC(8, 2, 72, 45, MOE_ACT_SWIGLU_OAI, 1, MOE_DTYPE_F32)},
  };
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    fast_case c = {act_name(specs[i].act, specs[i].gated), specs[i], 7, 1, 0};
    if (specs[i].act == MOE_ACT_SWIGLU_OAI) {
      c.sp.b13 = c.sp.b2 = 1; /* gpt-oss carries biases */
      c.sp.wscale = 4.0f;     /* and reaches the clamp */
    }
    run_fast_case(&c, 700 + i);
  }
}

static void test_shapes(void **state) {
  (void)state;
  fast_case cases[] = {
      {"M=0", {SPEC(8, 2, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)}, 0, 1, 0},
      {"M=1", {SPEC(16, 4, 64, 48, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)}, 1, 1, 0},
      {"odd M, H=100 I=37",
       {SPEC(16, 4, 100, 37, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       13,
       1,
       0},
      {"experts without tokens",
       {SPEC(64, 2, 48, 24, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       3,
       0,
       0},
      {"all tokens on one expert",
       {SPEC(8, 1, 40, 24, MOE_ACT_GELU, 1, MOE_DTYPE_BF16)},
       33,
       0,
       1},
      {"one expert in every token",
       {SPEC(8, 3, 40, 24, MOE_ACT_SILU, 1, MOE_DTYPE_F16)},
       9,
       0,
       1},
      {"E=257",
       {SPEC(257, 8, 36, 20, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       11,
       1,
       0},
      {"top_k=1",
       {SPEC(16, 1, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       9,
       1,
       0},
      {"top_k=E",
       {SPEC(12, 12, 40, 20, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       5,
       1,
       0},
      {"tiny H, I",
       {SPEC(4, 2, 3, 1, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       5,
       1,
       0},
      {"shared + map + biases",
       {SPEC(12, 3, 70, 33, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       10,
       1,
       0},
      {"grouped sigmoid bias",
       {SPEC(32, 4, 48, 40, MOE_ACT_RELU2, 0, MOE_DTYPE_BF16)},
       8,
       1,
       0},
      {"chunks (max_tokens 4)",
       {SPEC(8, 2, 64, 32, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       11,
       1,
       0},
  };
  cases[10].sp.Is = 48;
  cases[10].sp.ep = 1;
  cases[10].sp.b13 = cases[10].sp.b2 = 1;
  cases[11].sp.scoring = MOE_SCORING_SIGMOID;
  cases[11].sp.cbias = 1;
  cases[11].sp.n_group = 4;
  cases[11].sp.topk_group = 2;
  cases[11].sp.renormalize = 1;
  cases[11].sp.scale = 2.5f;
  cases[11].sp.Is = 24;
  cases[12].sp.max_tokens = 4;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_fast_case(&cases[i], 800 + i);
}

/* Chunked and unchunked runs give the same bits (tokens are independent),
 * for the fast paths and the reference. */
static void test_chunking_identical(void **state) {
  (void)state;
  fx_spec sp = {SPEC(8, 2, 64, 40, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)};
  sp.Is = 16;
  fx a, b;
  sp.max_tokens = 3;
  fx_make(&a, &sp, tu_rng_make(900));
  sp.max_tokens = 64;
  fx_make(&b, &sp, tu_rng_make(900)); /* same stream: same weights */
  tu_rng r = tu_rng_make(901);
  int M = 10;
  void *x = fx_random_x(&a, M, &r);
  float *logits = fx_random_logits(&a, M, &r);
  size_t bytes = (size_t)M * sp.H * 2;
  void *o1 = malloc(bytes), *o2 = malloc(bytes);
  const moe_backend *all[3] = {&moe_backend_cpu_ref, NULL, NULL};
  for (int i = 0; i < n_fast; i++)
    all[1 + i] = fast_backends[i];
  for (int i = 0; i < 1 + n_fast; i++) {
    tu_poison(o1, bytes);
    tu_poison(o2, bytes);
    assert_int_equal(fx_run(&a, all[i], 2, 0, x, logits, NULL, NULL, M, o1),
                     MOE_OK);
    assert_int_equal(fx_run(&b, all[i], 2, 0, x, logits, NULL, NULL, M, o2),
                     MOE_OK);
    if (memcmp(o1, o2, bytes)) fail_msg("%s: chunking changed", all[i]->name);
  }
  free(o1);
  free(o2);
  free(x);
  free(logits);
  fx_free(&a);
  fx_free(&b);
}

/* The vtable's route gives what moe_cpu_route gives; M = 0 is a no-op. */
static void test_route_entry(void **state) {
  (void)state;
  fx_spec sp = {SPEC(64, 6, 8, 8, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)};
  sp.scoring = MOE_SCORING_SIGMOID;
  sp.cbias = 1;
  sp.renormalize = 1;
  sp.max_tokens = 5; /* chunks */
  fx f;
  fx_make(&f, &sp, tu_rng_make(950));
  tu_rng r = tu_rng_make(951);
  int M = 23;
  float *logits = fx_random_logits(&f, M, &r);
  int32_t ids[23 * 6], want_ids[23 * 6];
  float w[23 * 6], want_w[23 * 6];
  moe_cpu_route(&f.s, f.cbias, logits, M, want_ids, want_w);
  const moe_backend *all[3] = {&moe_backend_cpu_ref, NULL, NULL};
  for (int i = 0; i < n_fast; i++)
    all[1 + i] = fast_backends[i];
  moe_device dev = {0};
  moe_backend_env env = {2, 0, &dev};
  for (int i = 0; i < 1 + n_fast; i++) {
    void *impl;
    char msg[128];
    assert_int_equal(all[i]->create(&env, &f.s, &f.w, &impl, msg, sizeof msg),
                     MOE_OK);
    tu_poison(ids, sizeof ids);
    assert_int_equal(
        all[i]->route(impl, logits, 0, ids, w, NULL, msg, sizeof msg), MOE_OK);
    assert_true(tu_all_poison(ids, sizeof ids));
    assert_int_equal(
        all[i]->route(impl, logits, M, ids, w, NULL, msg, sizeof msg), MOE_OK);
    assert_memory_equal(ids, want_ids, sizeof ids);
    assert_memory_equal(w, want_w, sizeof w);
    all[i]->destroy(impl);
  }
  free(logits);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtypes_activations),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_chunking_identical),
      cmocka_unit_test(test_route_entry),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
