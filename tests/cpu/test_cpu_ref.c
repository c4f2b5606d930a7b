/*
 * test_cpu_ref.c - cpu-ref against the naive double-precision layer
 * (naive.c): every activation, routing mode, biases, shared expert, expert
 * map, non-finite logits, both accumulation modes, all dtypes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cpu_fixture.h"

typedef struct ref_case {
  const char *name;
  fx_spec sp;
  int M;
  int use_logits; /* route inside (else naive-routed ids given) */
} ref_case;

#define SPEC(E_, k_, H_, I_, act_, gated_, dt_)                                \
  .E = E_, .k = k_, .H = H_, .I = I_, .act = act_, .gated = gated_, .dtype = dt_

static double compare(const fx *f, const void *out, const double *want, int M) {
  float *got = malloc(sizeof(float) * M * f->s.H);
  float *ref = malloc(sizeof(float) * M * f->s.H);
  int finite = fx_to_float(f, out, M, got);
  assert_true(finite);
  /* The reference rounds once to the dtype at the end: so does this. */
  for (size_t i = 0; i < (size_t)M * f->s.H; i++) {
    float one[1];
    moe_store_elem(one, 0, f->s.dtype, (float)want[i]);
    ref[i] = moe_load_elem(one, 0, f->s.dtype);
  }
  double e = tu_rel_error(got, ref, (size_t)M * f->s.H);
  free(got);
  free(ref);
  return e;
}

/* Is every 16-bit output element the reference rounded to the dtype, or
 * its neighbour (one step of the format, same sign)? fp32 accumulation
 * may land a value on the other side of a rounding boundary; any real
 * error is larger. */
static int within_one_step(const fx *f, const void *out, const double *want,
                           int M) {
  if (f->s.dtype == MOE_DTYPE_F32) return 0;
  const uint16_t *got = (const uint16_t *)out;
  for (size_t i = 0; i < (size_t)M * f->s.H; i++) {
    uint16_t ref;
    moe_store_elem(&ref, 0, f->s.dtype, (float)want[i]);
    if (got[i] == ref) continue;
    if ((got[i] ^ ref) & 0x8000) return 0; /* signs differ */
    const int d = (int)(got[i] & 0x7fff) - (int)(ref & 0x7fff);
    if (d != 1 && d != -1) return 0;
  }
  return 1;
}

static void run_case(const ref_case *c, uint64_t stream) {
  fx f;
  fx_make(&f, &c->sp, tu_rng_make(stream));
  tu_rng r = tu_rng_make(stream + 1000);
  int M = c->M, k = f.s.k, H = f.s.H;
  void *x = fx_random_x(&f, M, &r);
  float *logits = NULL;
  int32_t *ids = malloc(sizeof(int32_t) * M * k);
  float *w = malloc(sizeof(float) * M * k);
  /* Logits whose routing is unambiguous (no near-ties). */
  for (int tries = 0;; tries++) {
    free(logits);
    logits = fx_random_logits(&f, M, &r);
    if (naive_route(&f, logits, M, ids, w) >= 1e-4 || tries > 20) break;
  }
  double *want = malloc(sizeof(double) * M * H);
  naive_forward(&f, x, ids, w, M, want);
  size_t bytes = (size_t)M * H * moe_dtype_size(f.s.dtype);
  void *out = malloc(bytes);
  for (int dbl = 1; dbl >= 0; dbl--) {
    tu_poison(out, bytes);
    moe_status st = fx_run(&f, &moe_backend_cpu_ref, 2, dbl, x,
                           c->use_logits ? logits : NULL, ids, w, M, out);
    assert_int_equal(st, MOE_OK);
    double e = compare(&f, out, want, M);
    printf("  %-22s %s accumulation: rel error %.2e\n", c->name,
           dbl ? "double" : "float ", e);
    /* Double accumulation: only the final rounding differs (a few values on
     * a rounding boundary). fp32: the accumulation error of H + I terms. */
    double tol = dbl ? 1e-5 : (f.s.dtype == MOE_DTYPE_F32 ? 1e-5 : 1e-3);
    if (f.s.dtype != MOE_DTYPE_F32 && dbl) tol = 2e-3;
    /* A 16-bit output of few elements: one value rounded to the other
     * neighbour weighs up to 2^-7 of the largest one (seen: 1.35e-3 over
     * 5 x 40 values); accepted when no value is more than one step off. */
    if (!(e <= tol) && !dbl && within_one_step(&f, out, want, M)) tol = 1e-2;
    if (!(e <= tol))
      fail_msg("%s (%s accumulation): rel error %.3g > %.3g", c->name,
               dbl ? "double" : "float", e, tol);
  }
  free(out);
  free(want);
  free(x);
  free(logits);
  free(ids);
  free(w);
  fx_free(&f);
}

static void test_activations(void **state) {
  (void)state;
  ref_case cases[] = {
      {"silu gated",
       {SPEC(8, 2, 40, 24, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       5,
       1},
      {"silu plain",
       {SPEC(8, 2, 40, 24, MOE_ACT_SILU, 0, MOE_DTYPE_F32)},
       5,
       1},
      {"gelu gated",
       {SPEC(8, 3, 33, 20, MOE_ACT_GELU, 1, MOE_DTYPE_F32)},
       4,
       1},
      {"gelu plain",
       {SPEC(8, 3, 33, 20, MOE_ACT_GELU, 0, MOE_DTYPE_BF16)},
       4,
       1},
      {"relu2", {SPEC(8, 2, 48, 17, MOE_ACT_RELU2, 0, MOE_DTYPE_F16)}, 3, 1},
      {"swiglu-oai",
       {SPEC(8, 2, 36, 21, MOE_ACT_SWIGLU_OAI, 1, MOE_DTYPE_BF16)},
       3,
       1},
  };
  /* gpt-oss style: biases on both GEMMs, and large enough values that the
   * swiglu limit clamps. */
  cases[5].sp.b13 = cases[5].sp.b2 = 1;
  cases[5].sp.wscale = 6.0f;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i], 200 + i);
}

static void test_routing_modes(void **state) {
  (void)state;
  ref_case cases[] = {
      {"softmax", {SPEC(16, 4, 32, 16, MOE_ACT_SILU, 1, MOE_DTYPE_F32)}, 6, 1},
      {"softmax renorm",
       {SPEC(16, 4, 32, 16, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)},
       6,
       1},
      {"sigmoid", {SPEC(16, 3, 32, 16, MOE_ACT_RELU2, 0, MOE_DTYPE_F32)}, 6, 1},
      {"sigmoid bias scale",
       {SPEC(16, 3, 32, 16, MOE_ACT_RELU2, 0, MOE_DTYPE_BF16)},
       6,
       1},
      {"grouped bias",
       {SPEC(32, 4, 24, 12, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       7,
       1},
      {"grouped no bias",
       {SPEC(32, 4, 24, 12, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       7,
       1},
  };
  cases[1].sp.renormalize = 1;
  cases[2].sp.scoring = MOE_SCORING_SIGMOID;
  cases[3].sp.scoring = MOE_SCORING_SIGMOID;
  cases[3].sp.cbias = 1;
  cases[3].sp.renormalize = 1;
  cases[3].sp.scale = 2.5f;
  cases[4].sp.scoring = MOE_SCORING_SIGMOID;
  cases[4].sp.cbias = 1;
  cases[4].sp.n_group = 8;
  cases[4].sp.topk_group = 3;
  cases[4].sp.renormalize = 1;
  cases[4].sp.scale = 2.5f;
  cases[5].sp.scoring = MOE_SCORING_SIGMOID;
  cases[5].sp.n_group = 4;
  cases[5].sp.topk_group = 2;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i], 300 + i);
}

/* Shared expert, expert biases, expert map; ids given by the caller. */
static void test_shared_bias_map(void **state) {
  (void)state;
  ref_case cases[] = {
      {"shared", {SPEC(8, 2, 40, 24, MOE_ACT_SILU, 1, MOE_DTYPE_BF16)}, 5, 0},
      {"shared relu2",
       {SPEC(8, 2, 40, 24, MOE_ACT_RELU2, 0, MOE_DTYPE_F32)},
       5,
       1},
      {"biases", {SPEC(8, 2, 40, 24, MOE_ACT_GELU, 1, MOE_DTYPE_F32)}, 5, 0},
      {"expert map",
       {SPEC(12, 4, 40, 24, MOE_ACT_SILU, 1, MOE_DTYPE_F32)},
       6,
       1},
      {"expert map ids",
       {SPEC(12, 4, 40, 24, MOE_ACT_SILU, 1, MOE_DTYPE_F16)},
       6,
       0},
  };
  cases[0].sp.Is = 32;
  cases[1].sp.Is = 20;
  cases[1].sp.scoring = MOE_SCORING_SIGMOID;
  cases[2].sp.b13 = cases[2].sp.b2 = 1;
  cases[3].sp.ep = 1;
  cases[4].sp.ep = 1;
  cases[4].sp.Is = 8;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i], 400 + i);
}

/* Non-local experts contribute nothing: a token routed only to experts
 * that live elsewhere gets exactly zero (no shared expert). */
static void test_nonlocal_is_zero(void **state) {
  (void)state;
  fx_spec sp = {SPEC(6, 2, 16, 8, MOE_ACT_SILU, 1, MOE_DTYPE_F32)};
  sp.ep = 1; /* experts 1 and 4 are elsewhere */
  fx f;
  fx_make(&f, &sp, tu_rng_make(500));
  tu_rng r = tu_rng_make(501);
  void *x = fx_random_x(&f, 2, &r);
  int32_t ids[4] = {1, 4, 4, 0};
  float w[4] = {0.7f, 0.3f, 0.5f, 0.5f};
  float out[32];
  tu_poison(out, sizeof out);
  assert_int_equal(
      fx_run(&f, &moe_backend_cpu_ref, 1, 0, x, NULL, ids, w, 2, out), MOE_OK);
  for (int i = 0; i < 16; i++)
    assert_true(out[i] == 0.0f);
  int nonzero = 0;
  for (int i = 16; i < 32; i++)
    nonzero += out[i] != 0.0f;
  assert_true(nonzero > 0);
  free(x);
  fx_free(&f);
}

/* NaN / Inf logits: such experts get weight 0, the output stays finite. */
static void test_nonfinite_logits_forward(void **state) {
  (void)state;
  fx_spec sp = {SPEC(8, 3, 24, 16, MOE_ACT_SILU, 1, MOE_DTYPE_F32)};
  sp.renormalize = 1;
  fx f;
  fx_make(&f, &sp, tu_rng_make(600));
  tu_rng r = tu_rng_make(601);
  int M = 3;
  void *x = fx_random_x(&f, M, &r);
  float *logits = fx_random_logits(&f, M, &r);
  logits[0] = NAN;
  logits[3] = INFINITY;
  logits[5] = -INFINITY;
  for (int e = 0; e < 8; e++)
    logits[8 + e] = NAN; /* token 1: all NaN */
  for (int e = 0; e < 7; e++)
    logits[16 + e] = NAN; /* token 2: one finite */
  int32_t ids[9];
  float w[9];
  naive_route(&f, logits, M, ids, w);
  double want[3 * 24];
  naive_forward(&f, x, ids, w, M, want);
  float out[3 * 24];
  tu_poison(out, sizeof out);
  assert_int_equal(
      fx_run(&f, &moe_backend_cpu_ref, 2, 1, x, logits, NULL, NULL, M, out),
      MOE_OK);
  for (int i = 0; i < M * 24; i++) {
    assert_true(isfinite(out[i]));
    assert_float_equal(out[i], want[i], 1e-5 * (1 + fabs(want[i])));
  }
  for (int i = 24; i < 48; i++)
    assert_true(out[i] == 0.0f); /* weight 0 */
  free(x);
  free(logits);
  fx_free(&f);
}

/* The activation definitions at hand-computed points. */
static void test_activation_values(void **state) {
  (void)state;
  moe_shape s;
  memset(&s, 0, sizeof s);
  s.swiglu_alpha = 1.702f;
  s.swiglu_limit = 7.0f;
  s.gated = 1;
  s.act = MOE_ACT_SILU; /* silu(1) = 1 / (1 + e^-1) = 0.7310586 */
  assert_float_equal(moe_cpu_activation(&s, 1.0f, 2.0f), 1.4621172, 1e-6);
  s.act = MOE_ACT_GELU; /* gelu(1) = 0.5 (1 + erf(0.7071)) = 0.8413447 */
  assert_float_equal(moe_cpu_activation(&s, 1.0f, 1.0f), 0.8413447, 1e-6);
  s.gated = 0;
  s.act = MOE_ACT_RELU2;
  assert_float_equal(moe_cpu_activation(&s, -3.0f, 9.0f), 0.0, 0);
  assert_float_equal(moe_cpu_activation(&s, 3.0f, 9.0f), 9.0, 0);
  assert_true(isnan(moe_cpu_activation(&s, NAN, 0.0f)));
  s.gated = 1;
  s.act = MOE_ACT_SWIGLU_OAI;
  /* gate 9 -> 7, up -9 -> -7: (-7 + 1) * 7 * sigmoid(11.914) */
  assert_float_equal(moe_cpu_activation(&s, 9.0f, -9.0f),
                     -42.0 / (1.0 + exp(-1.702 * 7.0)), 1e-4);
  /* gate -2 stays (only an upper limit), up 0.5 */
  assert_float_equal(moe_cpu_activation(&s, -2.0f, 0.5f),
                     1.5 * -2.0 / (1.0 + exp(1.702 * 2.0)), 1e-6);
  assert_true(isnan(moe_cpu_activation(&s, NAN, 0.5f)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation_values),
      cmocka_unit_test(test_activations),
      cmocka_unit_test(test_routing_modes),
      cmocka_unit_test(test_shared_bias_map),
      cmocka_unit_test(test_nonlocal_is_zero),
      cmocka_unit_test(test_nonfinite_logits_forward),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
