/*
 * test_selfcheck.c - the profile run, for real: the test fault hook makes a
 * named backend fail at run time (error, missing kernel image, or wrong
 * results); the self-check must drop it, the next backend must serve, its
 * results must match the reference, and the plan must name the failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

#ifndef MOE_TEST_HOOKS
#error "this test needs the library built with MOE_TEST_HOOKS"
#endif

#define M 9

typedef struct problem {
  moe_layer_desc desc;
  moe_weights w;
  uint16_t *w13, *w2, *sw13, *sw2;
  float bias[64];
  uint16_t *x;
  float *logits;
} problem;

static void problem_make(problem *p, moe_activation act, int gated,
                         uint64_t stream) {
  tu_rng r = tu_rng_make(stream);
  memset(p, 0, sizeof *p);
  moe_layer_desc_init(&p->desc);
  moe_layer_desc *d = &p->desc;
  d->num_experts = 32;
  d->top_k = 4;
  d->hidden = 96;
  d->intermediate = 40;
  d->activation = act;
  d->gated = gated;
  d->routing.scoring = MOE_SCORING_SIGMOID;
  d->routing.n_group = 4;
  d->routing.topk_group = 2;
  d->routing.renormalize = 1;
  d->routing.routed_scaling_factor = 2.5f;
  d->shared_intermediate = 24;
  size_t n1 = (size_t)(gated ? 2 : 1) * d->intermediate;
  size_t ns1 = (size_t)(gated ? 2 : 1) * d->shared_intermediate;
  size_t c13 = (size_t)d->num_experts * n1 * d->hidden;
  size_t c2 = (size_t)d->num_experts * d->hidden * d->intermediate;
  p->w13 = malloc(c13 * 2);
  p->w2 = malloc(c2 * 2);
  p->sw13 = malloc(ns1 * d->hidden * 2);
  p->sw2 = malloc((size_t)d->hidden * d->shared_intermediate * 2);
  p->x = malloc((size_t)M * d->hidden * 2);
  p->logits = malloc((size_t)M * d->num_experts * 4);
  for (size_t i = 0; i < c13; i++)
    p->w13[i] = moe_f32_to_bf16(tu_uniform(&r, -0.2f, 0.2f));
  for (size_t i = 0; i < c2; i++)
    p->w2[i] = moe_f32_to_bf16(tu_uniform(&r, -0.3f, 0.3f));
  for (size_t i = 0; i < ns1 * d->hidden; i++)
    p->sw13[i] = moe_f32_to_bf16(tu_uniform(&r, -0.2f, 0.2f));
  for (size_t i = 0; i < (size_t)d->hidden * d->shared_intermediate; i++)
    p->sw2[i] = moe_f32_to_bf16(tu_uniform(&r, -0.3f, 0.3f));
  for (size_t i = 0; i < (size_t)M * d->hidden; i++)
    p->x[i] = moe_f32_to_bf16(tu_uniform(&r, -1, 1));
  for (size_t i = 0; i < (size_t)M * d->num_experts; i++)
    p->logits[i] = tu_uniform(&r, -3, 3);
  for (int e = 0; e < d->num_experts; e++)
    p->bias[e] = tu_uniform(&r, -0.3f, 0.3f);
  p->w.memory = MOE_MEMORY_HOST;
  p->w.w13 = p->w13;
  p->w.w2 = p->w2;
  p->w.shared_w13 = p->sw13;
  p->w.shared_w2 = p->sw2;
  p->w.correction_bias = p->bias;
}

static void problem_free(problem *p) {
  free(p->w13);
  free(p->w2);
  free(p->sw13);
  free(p->sw2);
  free(p->x);
  free(p->logits);
}

/* The output of `L` on p against cpu-ref in double precision. */
static double error_vs_reference(moe_layer *L, const problem *p) {
  moe_context_options o;
  moe_context_options_init(&o);
  o.ref_double_accumulation = 1;
  moe_context *rc = NULL;
  assert_int_equal(moe_context_create(&o, &rc), MOE_OK);
  moe_layer_desc rd = p->desc;
  rd.backend = "cpu-ref";
  moe_layer *R = NULL;
  assert_int_equal(moe_layer_create(rc, &rd, &p->w, &R), MOE_OK);
  size_t n = (size_t)M * p->desc.hidden;
  uint16_t *a = malloc(n * 2), *b = malloc(n * 2);
  tu_poison(a, n * 2);
  assert_int_equal(moe_forward(L, p->x, p->logits, M, a, NULL), MOE_OK);
  assert_int_equal(moe_forward(R, p->x, p->logits, M, b, NULL), MOE_OK);
  float *fa = malloc(n * 4), *fb = malloc(n * 4);
  for (size_t i = 0; i < n; i++) {
    fa[i] = moe_bf16_to_f32(a[i]);
    fb[i] = moe_bf16_to_f32(b[i]);
  }
  double e = tu_rel_error(fa, fb, n);
  free(a);
  free(b);
  free(fa);
  free(fb);
  moe_layer_destroy(R);
  moe_context_destroy(rc);
  return e;
}

/* The backend the planner prefers for p on this machine (first choice). */
static const char *first_choice(moe_context *ctx, const problem *p) {
  moe_plan *pl = NULL;
  assert_int_equal(moe_plan_create(ctx, &p->desc, MOE_MEMORY_HOST, &pl),
                   MOE_OK);
  static char name[32];
  snprintf(name, sizeof name, "%s", moe_plan_backend(pl));
  moe_plan_destroy(pl);
  return name;
}

static const moe_plan_entry *entry_of(const moe_plan *pl, const char *name,
                                      moe_plan_entry *e) {
  for (int i = 0; i < moe_plan_num_entries(pl); i++) {
    assert_int_equal(moe_plan_entry_get(pl, i, e), MOE_OK);
    if (!strcmp(e->backend, name)) return e;
  }
  return NULL;
}

static void check_fault(moe_fault kind, const char *needle) {
  problem p;
  problem_make(&p, MOE_ACT_SILU, 1, 10 + (uint64_t)kind);
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  const char *victim = first_choice(ctx, &p);
  if (!strcmp(victim, "cpu-ref")) {
    print_message("SKIP: no SIMD backend on this CPU to fail\n");
    moe_context_destroy(ctx);
    problem_free(&p);
    skip();
  }
  moe_test_set_fault(ctx, victim, kind);
  moe_layer *L = NULL;
  assert_int_equal(moe_layer_create(ctx, &p.desc, &p.w, &L), MOE_OK);
  assert_string_not_equal(moe_layer_backend(L), victim);
  moe_plan_entry e;
  assert_non_null(entry_of(moe_layer_plan(L), victim, &e));
  assert_int_equal(e.verdict, MOE_VERDICT_FAILED_CHECK);
  if (!strstr(e.reason, needle))
    fail_msg("reason '%s' lacks '%s'", e.reason, needle);
  char text[4096];
  moe_plan_explain(moe_layer_plan(L), text, sizeof text);
  assert_non_null(strstr(text, needle));
  /* The backend that serves agrees with the reference. */
  double err = error_vs_reference(L, &p);
  assert_true(err < 1e-2);
  moe_layer_destroy(L);
  moe_context_destroy(ctx);
  problem_free(&p);
}

static void test_fault_error(void **state) {
  (void)state;
  check_fault(MOE_FAULT_ERROR, "injected launch failure");
}

static void test_fault_no_kernel(void **state) {
  (void)state;
  check_fault(MOE_FAULT_NO_KERNEL, "no kernel image");
}

static void test_fault_wrong_results(void **state) {
  (void)state;
  check_fault(MOE_FAULT_WRONG, "mismatch");
}

static void test_failure_remembered_per_kind(void **state) {
  (void)state;
  problem silu, relu2;
  problem_make(&silu, MOE_ACT_SILU, 1, 21);
  problem_make(&relu2, MOE_ACT_RELU2, 0, 22);
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  const char *victim = first_choice(ctx, &silu);
  if (!strcmp(victim, "cpu-ref")) {
    moe_context_destroy(ctx);
    problem_free(&silu);
    problem_free(&relu2);
    skip();
  }
  char v[32];
  snprintf(v, sizeof v, "%s", victim);
  moe_test_set_fault(ctx, v, MOE_FAULT_ERROR);
  moe_layer *L = NULL;
  assert_int_equal(moe_layer_create(ctx, &silu.desc, &silu.w, &L), MOE_OK);
  moe_layer_destroy(L);
  moe_test_set_fault(ctx, NULL, MOE_FAULT_NONE);
  /* Same kind: still dropped (remembered), with the first reason. */
  assert_int_equal(moe_layer_create(ctx, &silu.desc, &silu.w, &L), MOE_OK);
  assert_string_not_equal(moe_layer_backend(L), v);
  moe_layer_destroy(L);
  /* Another kind: the backend serves it. */
  assert_int_equal(moe_layer_create(ctx, &relu2.desc, &relu2.w, &L), MOE_OK);
  assert_string_equal(moe_layer_backend(L), v);
  moe_layer_destroy(L);
  moe_context_destroy(ctx);
  problem_free(&silu);
  problem_free(&relu2);
}

static void test_explicit_request_of_failing_backend(void **state) {
  (void)state;
  problem p;
  problem_make(&p, MOE_ACT_GELU, 1, 31);
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  moe_test_set_fault(ctx, "cpu-avx2", MOE_FAULT_ERROR);
  p.desc.backend = "cpu-avx2";
  moe_layer *L = NULL;
  moe_status st = moe_layer_create(ctx, &p.desc, &p.w, &L);
  if (!moe_backend_find("cpu-avx2")) {
    assert_int_equal(st, MOE_ERR_UNSUPPORTED);
  } else {
    /* Without fallback: an error naming the self-check. */
    assert_int_equal(st, MOE_ERR_UNSUPPORTED);
    assert_non_null(strstr(moe_last_error(ctx), "self-check"));
    assert_null(L);
    /* With fallback: served by another backend, and the plan says so. */
    p.desc.allow_fallback = 1;
    assert_int_equal(moe_layer_create(ctx, &p.desc, &p.w, &L), MOE_OK);
    assert_string_not_equal(moe_layer_backend(L), "cpu-avx2");
    assert_true(moe_plan_fell_back(moe_layer_plan(L)));
    assert_true(error_vs_reference(L, &p) < 1e-2);
    moe_layer_destroy(L);
  }
  moe_context_destroy(ctx);
  problem_free(&p);
}

/* With the self-check off, nothing protects the caller from a backend that
 * computes wrong results: this is what the check buys. */
static void test_self_check_off_trusts_the_plan(void **state) {
  (void)state;
  problem p;
  problem_make(&p, MOE_ACT_SILU, 1, 41);
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  const char *victim = first_choice(ctx, &p);
  char v[32];
  snprintf(v, sizeof v, "%s", victim);
  moe_test_set_fault(ctx, v, MOE_FAULT_WRONG);
  p.desc.self_check = 0;
  moe_layer *L = NULL;
  assert_int_equal(moe_layer_create(ctx, &p.desc, &p.w, &L), MOE_OK);
  assert_string_equal(moe_layer_backend(L), v);
  assert_true(error_vs_reference(L, &p) > 0.5);
  moe_layer_destroy(L);
  moe_context_destroy(ctx);
  problem_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fault_error),
      cmocka_unit_test(test_fault_no_kernel),
      cmocka_unit_test(test_fault_wrong_results),
      cmocka_unit_test(test_failure_remembered_per_kind),
      cmocka_unit_test(test_explicit_request_of_failing_backend),
      cmocka_unit_test(test_self_check_off_trusts_the_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
