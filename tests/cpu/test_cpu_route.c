/*
 * test_cpu_route.c - the reference router (moe_cpu_route): hand-checked
 * cases, then random problems against the naive double-precision router.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "cpu_fixture.h"

static moe_shape route_shape(int E, int k, moe_scoring sc, int G, int keep,
                             int renorm, float scale) {
  moe_shape s;
  memset(&s, 0, sizeof s);
  s.E = s.E_local = E;
  s.k = k;
  s.H = s.I = 1;
  s.N1 = 2;
  s.gated = 1;
  s.routing.scoring = sc;
  s.routing.n_group = G;
  s.routing.topk_group = keep;
  s.routing.renormalize = renorm;
  s.routing.routed_scaling_factor = scale;
  s.max_tokens = 16;
  return s;
}

/*
 * Sigmoid + correction bias, 4 groups of 2, keep 2, top 3, renormalize,
 * scale 2.5. Logits are ln 9, ln 3, 0 ... so that s is 0.9, 0.75, 0.5 ...
 *   e  logit   s     bias   c = s + bias
 *   0  ln9     0.90  -0.50  0.40 \ group 0: top-2 sum 0.50
 *   1  -ln9    0.10   0.00  0.10 /
 *   2  0       0.50   0.10  0.60 \ group 1: 0.70
 *   3  0       0.50  -0.40  0.10 /
 *   4  ln3     0.75   0.00  0.75 \ group 2: 0.75
 *   5  -ln9    0.10  -0.10  0.00 /
 *   6  ln3     0.75  -0.35  0.40 \ group 3: 0.85
 *   7  -ln3    0.25   0.20  0.45 /
 * Kept groups: 3 (0.85) and 2 (0.75). (By the best c alone group 2 and
 * group 1 would be kept: the sum rule matters.) Among experts 4..7 by c:
 * 4 (0.75), 7 (0.45), 6 (0.40). Ungrouped, 2 (0.60) would have been second.
 * Weights are s, not c: 0.75, 0.25, 0.75; sum 1.75; renormalised 3/7, 1/7,
 * 3/7; times 2.5: 1.0714286, 0.3571429, 1.0714286.
 */
static void test_grouped_bias_by_hand(void **state) {
  (void)state;
  const float l9 = 2.19722458f, l3 = 1.09861229f;
  float logits[8] = {l9, -l9, 0.0f, 0.0f, l3, -l9, l3, -l3};
  float bias[8] = {-0.5f, 0.0f, 0.1f, -0.4f, 0.0f, -0.1f, -0.35f, 0.2f};
  moe_shape s = route_shape(8, 3, MOE_SCORING_SIGMOID, 4, 2, 1, 2.5f);
  int32_t ids[3];
  float w[3];
  moe_cpu_route(&s, bias, logits, 1, ids, w);
  assert_int_equal(ids[0], 4);
  assert_int_equal(ids[1], 7);
  assert_int_equal(ids[2], 6);
  assert_float_equal(w[0], 2.5 * 3.0 / 7.0, 1e-5);
  assert_float_equal(w[1], 2.5 * 1.0 / 7.0, 1e-5);
  assert_float_equal(w[2], 2.5 * 3.0 / 7.0, 1e-5);
  /* Without groups: 4, 2, 7; weights 0.75, 0.5, 0.25 (sum 1.5). */
  s.routing.n_group = 0;
  moe_cpu_route(&s, bias, logits, 1, ids, w);
  assert_int_equal(ids[0], 4);
  assert_int_equal(ids[1], 2);
  assert_int_equal(ids[2], 7);
  assert_float_equal(w[0], 2.5 * 0.75 / 1.5, 1e-5);
  assert_float_equal(w[1], 2.5 * 0.50 / 1.5, 1e-5);
  assert_float_equal(w[2], 2.5 * 0.25 / 1.5, 1e-5);
}

/*
 * Softmax, 3 groups of 2, keep 1, top 2, no renormalisation. Logits
 * 0, 2 | 1, 1.5 | 1.9, 1.8. Without a bias a group scores its best: group 0
 * (2.0) wins although group 2 has the larger top-2 sum. Chosen 1 then 0,
 * weights softmax: e^2 / S and 1 / S, S = 1 + e^2 + e + e^1.5 + e^1.9 +
 * e^1.8 = 28.324568.
 */
static void test_grouped_softmax_by_hand(void **state) {
  (void)state;
  float logits[6] = {0.0f, 2.0f, 1.0f, 1.5f, 1.9f, 1.8f};
  moe_shape s = route_shape(6, 2, MOE_SCORING_SOFTMAX, 3, 1, 0, 1.0f);
  int32_t ids[2];
  float w[2];
  moe_cpu_route(&s, NULL, logits, 1, ids, w);
  assert_int_equal(ids[0], 1);
  assert_int_equal(ids[1], 0);
  assert_float_equal(w[0], 7.3890561 / 28.324568, 1e-5);
  assert_float_equal(w[1], 1.0 / 28.324568, 1e-5);
}

/* Equal scores: the lower index wins, in order. */
static void test_ties_lower_index(void **state) {
  (void)state;
  float logits[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  moe_shape s = route_shape(5, 2, MOE_SCORING_SOFTMAX, 0, 0, 0, 1.0f);
  int32_t ids[2];
  float w[2];
  moe_cpu_route(&s, NULL, logits, 1, ids, w);
  assert_int_equal(ids[0], 0);
  assert_int_equal(ids[1], 1);
  assert_float_equal(w[0], 0.2, 1e-6);
  s.routing.renormalize = 1;
  moe_cpu_route(&s, NULL, logits, 1, ids, w);
  assert_float_equal(w[0], 0.5, 1e-6);
  assert_float_equal(w[1], 0.5, 1e-6);
}

/*
 * Non-finite logits count as -Inf. Row 0: NaN, 1, +Inf, -Inf, 0, NaN with
 * top 3: the finite 1 then 4 (softmax over the finite two: e/(e+1),
 * 1/(e+1)), then the lowest-index filler, 0, with weight 0. Row 1: all NaN:
 * fillers 0, 1, 2, weights 0 (also with renormalisation: the sum is 0).
 */
static void test_nonfinite_logits(void **state) {
  (void)state;
  float logits[12] = {NAN, 1.0f, INFINITY, -INFINITY, 0.0f, NAN,
                      NAN, NAN,  NAN,      NAN,       NAN,  NAN};
  for (int renorm = 0; renorm < 2; renorm++) {
    moe_shape s = route_shape(6, 3, MOE_SCORING_SOFTMAX, 0, 0, renorm, 1.0f);
    int32_t ids[6];
    float w[6];
    moe_cpu_route(&s, NULL, logits, 2, ids, w);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 4);
    assert_int_equal(ids[2], 0);
    assert_float_equal(w[0], 2.7182818 / 3.7182818, 1e-6);
    assert_float_equal(w[1], 1.0 / 3.7182818, 1e-6);
    assert_true(w[2] == 0.0f);
    for (int j = 0; j < 3; j++) {
      assert_int_equal(ids[3 + j], j);
      assert_true(w[3 + j] == 0.0f);
    }
  }
  /* Sigmoid with a bias that would favour the NaN expert: never chosen
   * while enough finite ones exist. */
  moe_shape s = route_shape(6, 2, MOE_SCORING_SIGMOID, 0, 0, 1, 1.0f);
  float bias[6] = {5.0f, 0.0f, 5.0f, 5.0f, 0.0f, 0.0f};
  int32_t ids[2];
  float w[2];
  moe_cpu_route(&s, bias, logits, 1, ids, w);
  assert_int_equal(ids[0], 1);
  assert_int_equal(ids[1], 4);
  assert_true(isfinite(w[0]) && isfinite(w[1]));
}

/* Outside what the router can serve: nothing chosen, no crash. */
static void test_unroutable(void **state) {
  (void)state;
  moe_shape s = route_shape(MOE_CPU_ROUTE_MAX_E + 1, 2, MOE_SCORING_SOFTMAX, 0,
                            0, 0, 1.0f);
  float *logits = calloc(MOE_CPU_ROUTE_MAX_E + 1, sizeof(float));
  int32_t ids[2] = {7, 7};
  float w[2] = {1, 1};
  moe_cpu_route(&s, NULL, logits, 1, ids, w);
  assert_int_equal(ids[0], -1);
  assert_true(w[0] == 0.0f);
  free(logits);
}

typedef struct route_case {
  const char *name;
  int E, k;
  moe_scoring sc;
  int G, keep, renorm, cbias;
  float scale;
} route_case;

/* Random problems against the naive router; ids must agree exactly, slot by
 * slot, unless the naive router saw a near-tie for that token (then only
 * that token is skipped). */
static void test_random_vs_naive(void **state) {
  (void)state;
  static const route_case cases[] = {
      {"softmax", 64, 6, MOE_SCORING_SOFTMAX, 0, 0, 0, 0, 1.0f},
      {"softmax renorm", 128, 8, MOE_SCORING_SOFTMAX, 0, 0, 1, 0, 1.0f},
      {"softmax k=1", 17, 1, MOE_SCORING_SOFTMAX, 0, 0, 1, 0, 1.0f},
      {"softmax k=E", 12, 12, MOE_SCORING_SOFTMAX, 0, 0, 0, 0, 1.0f},
      {"softmax E=257", 257, 9, MOE_SCORING_SOFTMAX, 0, 0, 1, 0, 1.0f},
      {"sigmoid", 64, 4, MOE_SCORING_SIGMOID, 0, 0, 0, 0, 1.0f},
      {"sigmoid bias scale", 128, 6, MOE_SCORING_SIGMOID, 0, 0, 1, 1, 2.5f},
      {"grouped bias", 256, 8, MOE_SCORING_SIGMOID, 8, 4, 1, 1, 2.5f},
      {"grouped no bias", 64, 6, MOE_SCORING_SIGMOID, 8, 3, 0, 0, 1.0f},
      {"grouped softmax", 60, 4, MOE_SCORING_SOFTMAX, 6, 2, 1, 0, 1.5f},
      {"grouped k=E of kept", 16, 8, MOE_SCORING_SIGMOID, 4, 2, 1, 1, 1.0f},
  };
  tu_rng r = tu_rng_make(11);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const route_case *rc = &cases[c];
    fx_spec sp = {0};
    sp.E = rc->E;
    sp.k = rc->k;
    sp.H = 1;
    sp.I = 1;
    sp.gated = 1;
    sp.scoring = rc->sc;
    sp.n_group = rc->G;
    sp.topk_group = rc->keep;
    sp.renormalize = rc->renorm;
    sp.cbias = rc->cbias;
    sp.scale = rc->scale;
    fx f;
    fx_make(&f, &sp, tu_rng_make(100 + c));
    int M = 37, checked = 0;
    int32_t *ids = malloc(sizeof(int32_t) * M * rc->k);
    int32_t *nids = malloc(sizeof(int32_t) * M * rc->k);
    float *w = malloc(sizeof(float) * M * rc->k);
    float *nw = malloc(sizeof(float) * M * rc->k);
    for (int rep = 0; rep < 4; rep++) {
      float *logits = fx_random_logits(&f, M, &r);
      /* A correction bias off the logits' grid makes ties unlikely, and
       * the margin check below catches the rest. */
      moe_cpu_route(&f.s, f.cbias, logits, M, ids, w);
      /* Token by token, so that a near-tie skips only its own token. */
      for (int t = 0; t < M; t++) {
        size_t o = (size_t)t * rc->k;
        double margin =
            naive_route(&f, logits + (size_t)t * rc->E, 1, nids + o, nw + o);
        if (margin < 1e-5) continue;
        checked++;
        for (int j = 0; j < rc->k; j++) {
          if (ids[o + j] != nids[o + j])
            fail_msg("%s: token %d slot %d: id %d, naive %d", rc->name, t, j,
                     ids[o + j], nids[o + j]);
          if (fabsf(w[o + j] - nw[o + j]) > 1e-5f * (1.0f + fabsf(nw[o + j])))
            fail_msg("%s: weight %g, naive %g", rc->name, w[o + j], nw[o + j]);
        }
      }
      free(logits);
    }
    assert_true(checked > 0);
    free(ids);
    free(nids);
    free(w);
    free(nw);
    fx_free(&f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grouped_bias_by_hand),
      cmocka_unit_test(test_grouped_softmax_by_hand),
      cmocka_unit_test(test_ties_lower_index),
      cmocka_unit_test(test_nonfinite_logits),
      cmocka_unit_test(test_unroutable),
      cmocka_unit_test(test_random_vs_naive),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
