/*
 * test_cpu_backends.c - the CPU backends as data and objects: support rows
 * and kernel_compiled agree, feature detection is sane, create rejects bad
 * shapes with a status and a message, and layers survive many calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cpu_fixture.h"

static const moe_backend *backends[3];
static int n_backends;

static int setup(void **state) {
  (void)state;
  backends[n_backends++] = &moe_backend_cpu_ref;
#ifdef MOE_HAVE_CPU_X86
  backends[n_backends++] = &moe_backend_cpu_avx2;
  backends[n_backends++] = &moe_backend_cpu_avx512;
#endif
  return 0;
}

/* Every (dtype, activation, gating) a row promises has its code. */
static void test_rows_have_kernels(void **state) {
  (void)state;
  for (int b = 0; b < n_backends; b++) {
    const moe_backend *be = backends[b];
    assert_non_null(be->rows);
    assert_true(be->n_rows > 0);
    assert_ptr_equal(be->memops, &moe_memops_host);
    for (int r = 0; r < be->n_rows; r++) {
      const moe_support_row *row = &be->rows[r];
      assert_int_equal(row->device.kind, MOE_PRED_CPU);
      assert_int_equal(row->max_experts, MOE_CPU_ROUTE_MAX_E);
      for (int d = 0; d < MOE_DTYPE_COUNT; d++)
        for (int a = 0; a < MOE_ACT_COUNT; a++)
          for (int g = 0; g < 2; g++) {
            if (!(row->dtypes & MOE_BIT(d)) || !(row->activations & MOE_BIT(a)))
              continue;
            if (!(row->gating & (g ? MOE_GATING_GATED : MOE_GATING_PLAIN)))
              continue;
            if (!be->kernel_compiled(0, (moe_dtype)d, (moe_activation)a, g))
              fail_msg("%s promises dtype %d act %d gated %d without code",
                       be->name, d, a, g);
          }
    }
    assert_false(be->kernel_compiled(90, MOE_DTYPE_BF16, MOE_ACT_SILU, 1));
  }
  /* Validity of the gating, as the rows state it. */
  for (int r = 0; r < moe_backend_cpu_ref.n_rows; r++) {
    const moe_support_row *row = &moe_backend_cpu_ref.rows[r];
    if (row->activations & MOE_BIT(MOE_ACT_RELU2))
      assert_int_equal(row->gating, MOE_GATING_PLAIN);
    if (row->activations & MOE_BIT(MOE_ACT_SWIGLU_OAI))
      assert_int_equal(row->gating, MOE_GATING_GATED);
  }
  assert_int_equal(moe_backend_cpu_ref.priority, 100);
#ifdef MOE_HAVE_CPU_X86
  assert_int_equal(moe_backend_cpu_avx2.priority, 60);
  assert_int_equal(moe_backend_cpu_avx512.priority, 50);
#endif
}

static void test_features(void **state) {
  (void)state;
  uint32_t f = moe_cpu_detect_features();
  printf("cpu features 0x%x, cores %d\n", f, moe_cpu_count_cores());
  assert_true(moe_cpu_count_cores() >= 1);
  /* AVX-512 CPUs have AVX2, FMA and F16C too. */
  if (f & MOE_CPU_AVX512F)
    assert_int_equal(f & (MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C),
                     MOE_CPU_AVX2 | MOE_CPU_FMA | MOE_CPU_F16C);
  if (f & MOE_CPU_AVX512BF16) assert_true(f & MOE_CPU_AVX512F);
}

static void expect_create_fails(const moe_shape *s, const moe_weights *w,
                                moe_status want) {
  moe_device dev = {0};
  moe_backend_env env = {2, 0, &dev};
  for (int b = 0; b < n_backends; b++) {
    void *impl = (void *)1;
    char msg[160] = "";
    moe_status st = backends[b]->create(&env, s, w, &impl, msg, sizeof msg);
    if (st == MOE_ERR_UNSUPPORTED && strstr(msg, "lacks")) continue;
    assert_int_equal(st, want);
    assert_null(impl);
    assert_true(strlen(msg) > 0);
  }
}

static void test_create_rejects(void **state) {
  (void)state;
  fx_spec sp = {
      .E = 8, .k = 2, .H = 16, .I = 8, .gated = 1, .dtype = MOE_DTYPE_BF16};
  fx f;
  fx_make(&f, &sp, tu_rng_make(1));
  moe_shape s = f.s;
  s.k = 9;
  expect_create_fails(&s, &f.w, MOE_ERR_INVALID_ARGUMENT);
  s = f.s;
  s.N1 = s.I;
  expect_create_fails(&s, &f.w, MOE_ERR_INVALID_ARGUMENT);
  s = f.s;
  s.E = MOE_CPU_ROUTE_MAX_E + 1;
  expect_create_fails(&s, &f.w, MOE_ERR_UNSUPPORTED);
  s = f.s;
  s.dtype = (moe_dtype)7;
  expect_create_fails(&s, &f.w, MOE_ERR_INVALID_ARGUMENT);
  s = f.s;
  expect_create_fails(&s, NULL, MOE_ERR_INVALID_ARGUMENT);
  moe_weights w = f.w;
  w.w2 = NULL;
  expect_create_fails(&f.s, &w, MOE_ERR_INVALID_ARGUMENT);
  w = f.w;
  w.memory = MOE_MEMORY_CUDA;
  expect_create_fails(&f.s, &w, MOE_ERR_UNSUPPORTED);
  s = f.s;
  s.Is = 4;
  s.N1s = 8; /* shared expert without weights */
  expect_create_fails(&s, &f.w, MOE_ERR_INVALID_ARGUMENT);
  int32_t map[8] = {0, 1, 2, 3, 4, 5, 6, 9};
  s = f.s;
  s.expert_map = map;
  expect_create_fails(&s, &f.w, MOE_ERR_INVALID_ARGUMENT);
  fx_free(&f);
}

/* Bad calls get a status, never a crash; M = 0 writes nothing. */
static void test_forward_rejects(void **state) {
  (void)state;
  fx_spec sp = {
      .E = 8, .k = 2, .H = 16, .I = 8, .gated = 1, .dtype = MOE_DTYPE_F32};
  fx f;
  fx_make(&f, &sp, tu_rng_make(2));
  moe_device dev = {0};
  moe_backend_env env = {2, 0, &dev};
  float x[16] = {1}, out[16];
  int32_t ids[2] = {0, 1};
  float w[2] = {0.5f, 0.5f};
  for (int b = 0; b < n_backends; b++) {
    void *impl;
    char msg[160];
    if (backends[b]->create(&env, &f.s, &f.w, &impl, msg, sizeof msg) != MOE_OK)
      continue;
    moe_batch bt = {x, NULL, NULL, NULL, 1, out};
    assert_int_equal(backends[b]->forward(impl, &bt, NULL, msg, sizeof msg),
                     MOE_ERR_INVALID_ARGUMENT);
    assert_int_equal(backends[b]->forward(impl, NULL, NULL, msg, sizeof msg),
                     MOE_ERR_INVALID_ARGUMENT);
    bt.ids = ids;
    bt.weights = w;
    bt.M = -1;
    assert_int_equal(backends[b]->forward(impl, &bt, NULL, msg, sizeof msg),
                     MOE_ERR_INVALID_ARGUMENT);
    bt.M = 0;
    bt.x = NULL; /* not even read */
    tu_poison(out, sizeof out);
    assert_int_equal(backends[b]->forward(impl, &bt, NULL, msg, sizeof msg),
                     MOE_OK);
    assert_true(tu_all_poison(out, sizeof out));
    /* Caller ids out of range contribute nothing. */
    int32_t bad[2] = {-5, 99};
    bt.x = x;
    bt.M = 1;
    bt.ids = bad;
    assert_int_equal(backends[b]->forward(impl, &bt, NULL, msg, sizeof msg),
                     MOE_OK);
    for (int i = 0; i < 16; i++)
      assert_true(out[i] == 0.0f);
    backends[b]->destroy(impl);
  }
  backends[0]->destroy(NULL);
  fx_free(&f);
}

/* Many calls and many layers: the pool neither leaks nor stalls. */
static void test_many_calls(void **state) {
  (void)state;
  fx_spec sp = {
      .E = 8, .k = 2, .H = 16, .I = 8, .gated = 1, .dtype = MOE_DTYPE_BF16};
  fx f;
  fx_make(&f, &sp, tu_rng_make(3));
  tu_rng r = tu_rng_make(4);
  void *x = fx_random_x(&f, 3, &r);
  float *logits = fx_random_logits(&f, 3, &r);
  uint16_t out[48];
  moe_device dev = {0};
  for (int nt = 1; nt <= 4; nt++) {
    moe_backend_env env = {nt, 0, &dev};
    for (int b = 0; b < n_backends; b++) {
      void *impl;
      char msg[160];
      if (backends[b]->create(&env, &f.s, &f.w, &impl, msg, sizeof msg) !=
          MOE_OK)
        continue;
      moe_batch bt = {x, logits, NULL, NULL, 3, out};
      for (int i = 0; i < 200; i++)
        assert_int_equal(backends[b]->forward(impl, &bt, NULL, msg, sizeof msg),
                         MOE_OK);
      backends[b]->destroy(impl);
    }
  }
  free(x);
  free(logits);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rows_have_kernels),
      cmocka_unit_test(test_features),
      cmocka_unit_test(test_create_rejects),
      cmocka_unit_test(test_forward_rejects),
      cmocka_unit_test(test_many_calls),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
