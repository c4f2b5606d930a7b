/*
 * test_api.c - the public contract: pinned status values, version, and bad
 * input. Every bad call returns its status with a message naming the
 * argument, and leaves the output buffer byte-for-byte untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "moe.h"
#include "testutil.h"

#define E 12
#define K 3
#define H 40
#define I 24
#define M 5

typedef struct fixture {
  moe_context *ctx;
  moe_layer_desc desc;
  moe_weights w;
  uint16_t *w13, *w2;
  uint16_t x[M * H];
  float logits[M * E];
  int32_t ids[M * K];
  float tw[M * K];
  uint16_t out[M * H];
} fixture;

static void fill_bf16(tu_rng *r, uint16_t *p, size_t n, float a) {
  for (size_t i = 0; i < n; i++)
    p[i] = moe_f32_to_bf16(tu_uniform(r, -a, a));
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tu_rng r = tu_rng_make(1);
  assert_int_equal(moe_context_create(NULL, &f->ctx), MOE_OK);
  moe_layer_desc_init(&f->desc);
  f->desc.num_experts = E;
  f->desc.top_k = K;
  f->desc.hidden = H;
  f->desc.intermediate = I;
  f->desc.routing.renormalize = 1;
  f->w13 = malloc((size_t)E * 2 * I * H * 2);
  f->w2 = malloc((size_t)E * H * I * 2);
  fill_bf16(&r, f->w13, (size_t)E * 2 * I * H, 0.3f);
  fill_bf16(&r, f->w2, (size_t)E * H * I, 0.3f);
  fill_bf16(&r, f->x, M * H, 1.0f);
  for (int i = 0; i < M * E; i++)
    f->logits[i] = tu_uniform(&r, -3, 3);
  for (int i = 0; i < M * K; i++) {
    f->ids[i] = (i * 5 + 1) % E;
    f->tw[i] = tu_uniform(&r, 0.1f, 1.0f);
  }
  memset(&f->w, 0, sizeof f->w);
  f->w.memory = MOE_MEMORY_HOST;
  f->w.w13 = f->w13;
  f->w.w2 = f->w2;
  tu_poison(f->out, sizeof f->out);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  moe_context_destroy(f->ctx);
  free(f->w13);
  free(f->w2);
  free(f);
  return 0;
}

static void test_pinned_status_values(void **state) {
  (void)state;
  assert_int_equal(MOE_OK, 0);
  assert_int_equal(MOE_ERR_INVALID_ARGUMENT, 1);
  assert_int_equal(MOE_ERR_UNSUPPORTED, 2);
  assert_int_equal(MOE_ERR_OUT_OF_MEMORY, 3);
  assert_int_equal(MOE_ERR_DEVICE, 4);
  assert_int_equal(MOE_ERR_NO_KERNEL_IMAGE, 5);
  assert_int_equal(MOE_ERR_SELF_CHECK, 6);
  assert_int_equal(MOE_ERR_IO, 7);
  assert_int_equal(MOE_ERR_FORMAT, 8);
  assert_int_equal(MOE_ERR_INTERNAL, 9);
  assert_string_equal(moe_status_string(MOE_ERR_UNSUPPORTED),
                      "MOE_ERR_UNSUPPORTED");
  assert_string_equal(moe_status_string((moe_status)77),
                      "MOE_ERR_UNKNOWN_STATUS");
  char v[32];
  snprintf(v, sizeof v, "%d.%d.%d", MOE_VERSION_MAJOR, MOE_VERSION_MINOR,
           MOE_VERSION_PATCH);
  assert_string_equal(moe_version_string(), v);
  assert_int_equal(moe_version_number(), MOE_VERSION_NUMBER);
  assert_non_null(strstr(moe_build_info(), "cpu-ref"));
  assert_string_equal(moe_activation_name(MOE_ACT_RELU2), "relu2");
  assert_null(moe_activation_name((moe_activation)9));
  assert_null(moe_dtype_name((moe_dtype)9));
}

static void test_destroy_accepts_null(void **state) {
  (void)state;
  moe_context_destroy(NULL);
  moe_layer_destroy(NULL);
  moe_plan_destroy(NULL);
  assert_int_equal(moe_context_create(NULL, NULL), MOE_ERR_INVALID_ARGUMENT);
}

/* Creates a layer from a mutated descriptor and expects `want` with a
 * message holding `needle`. */
static void expect_desc_error(fixture *f, const moe_layer_desc *d,
                              moe_status want, const char *needle) {
  moe_layer *L = (moe_layer *)(uintptr_t)0x1; /* must stay untouched */
  moe_status st = moe_layer_create(f->ctx, d, &f->w, &L);
  if (st != want || !strstr(moe_last_error(f->ctx), needle))
    fail_msg("want %s with '%s', got %s: '%s'", moe_status_string(want), needle,
             moe_status_string(st), moe_last_error(f->ctx));
  assert_ptr_equal(L, (moe_layer *)(uintptr_t)0x1);
}

static void test_bad_descriptors(void **state) {
  fixture *f = *state;
  moe_layer_desc d;
#define BAD(field_stmt, needle)                                                \
  do {                                                                         \
    d = f->desc;                                                               \
    field_stmt;                                                                \
    expect_desc_error(f, &d, MOE_ERR_INVALID_ARGUMENT, needle);                \
  } while (0)
  BAD(d.num_experts = 0, "num_experts");
  BAD(d.num_experts = -3, "num_experts");
  BAD(d.top_k = 0, "top_k");
  BAD(d.top_k = E + 1, "top_k");
  BAD(d.hidden = 0, "hidden");
  BAD(d.hidden = -1, "hidden");
  BAD(d.intermediate = 0, "intermediate");
  BAD(d.shared_intermediate = -5, "shared_intermediate");
  BAD(d.activation = (moe_activation)17, "activation");
  BAD(d.activation = (moe_activation)-1, "activation");
  BAD(d.gated = 2, "gated");
  BAD((d.activation = MOE_ACT_RELU2, d.gated = 1), "relu2");
  BAD((d.activation = MOE_ACT_SWIGLU_OAI, d.gated = 0), "swiglu-oai");
  BAD(d.dtype = (moe_dtype)5, "dtype");
  BAD(d.routing.scoring = (moe_scoring)3, "routing.scoring");
  BAD(d.routing.n_group = -1, "n_group");
  BAD((d.routing.n_group = 5, d.routing.topk_group = 1), "does not divide");
  BAD((d.routing.n_group = 4, d.routing.topk_group = 0), "topk_group");
  BAD((d.routing.n_group = 4, d.routing.topk_group = 5), "topk_group");
  BAD((d.routing.n_group = 6, d.routing.topk_group = 1), "fewer than top_k");
  BAD(d.routing.routed_scaling_factor = -1.0f, "routed_scaling_factor");
  BAD(d.routing.routed_scaling_factor = NAN, "routed_scaling_factor");
  BAD(d.routing.renormalize = 7, "renormalize");
  BAD(d.max_tokens = -1, "max_tokens");
  BAD(d.swiglu_limit = -2.0f, "swiglu");
  /* Sizes whose products overflow 32 bits. */
  BAD((d.hidden = 1 << 20, d.intermediate = 1 << 12), "overflows");
  BAD((d.shared_intermediate = 1 << 30), "overflows");
  int32_t map[E];
  for (int e = 0; e < E; e++)
    map[e] = e;
  map[3] = 99;
  BAD(d.expert_map = map, "expert_map[3]");
  map[3] = 4; /* duplicate of expert 4's local index */
  BAD(d.expert_map = map, "both map");
  for (int e = 0; e < E; e++)
    map[e] = -1;
  BAD(d.expert_map = map, "no expert");
  expect_desc_error(f, NULL, MOE_ERR_INVALID_ARGUMENT, "desc is NULL");
#undef BAD
}

static void test_bad_weights(void **state) {
  fixture *f = *state;
  moe_layer *L = NULL;
  moe_weights w = f->w;
  w.w13 = NULL;
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "w13"));
  w = f->w;
  w.w2 = NULL;
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "w2"));
  moe_layer_desc d = f->desc;
  d.shared_intermediate = 8;
  assert_int_equal(moe_layer_create(f->ctx, &d, &f->w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "shared_w13"));
  w = f->w;
  w.memory = (moe_memory)9;
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "memory"));
  w = f->w;
  w.w13 = (const char *)f->w13 + 1; /* misaligned */
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "aligned"));
  float bias[E] = {0};
  w = f->w;
  w.correction_bias = bias; /* softmax scoring takes no correction bias */
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &w, &L),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(f->ctx), "correction_bias"));
  assert_null(L);
}

/* Runs a bad forward and checks status, message and untouched output. */
#define EXPECT_UNTOUCHED(call, needle)                                         \
  do {                                                                         \
    tu_poison(f->out, sizeof f->out);                                          \
    moe_status st_ = (call);                                                   \
    assert_int_equal(st_, MOE_ERR_INVALID_ARGUMENT);                           \
    if (!strstr(moe_last_error(f->ctx), needle))                               \
      fail_msg("message '%s' lacks '%s'", moe_last_error(f->ctx), needle);     \
    assert_true(tu_all_poison(f->out, sizeof f->out));                         \
  } while (0)

static void test_bad_calls_leave_output_untouched(void **state) {
  fixture *f = *state;
  moe_layer *L = NULL;
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &f->w, &L), MOE_OK);
  EXPECT_UNTOUCHED(moe_forward(L, NULL, f->logits, M, f->out, NULL), "x is");
  EXPECT_UNTOUCHED(moe_forward(L, f->x, NULL, M, f->out, NULL), "logits");
  EXPECT_UNTOUCHED(moe_forward(L, f->x, f->logits, -1, f->out, NULL),
                   "num_tokens");
  EXPECT_UNTOUCHED(
      moe_forward(L, (const char *)f->x + 1, f->logits, M, f->out, NULL),
      "aligned");
  EXPECT_UNTOUCHED(moe_forward(L, f->x, f->logits, (1 << 30), f->out, NULL),
                   "overflows");
  EXPECT_UNTOUCHED(moe_forward_routed(L, f->x, NULL, f->tw, M, f->out, NULL),
                   "topk_ids");
  EXPECT_UNTOUCHED(moe_forward_routed(L, f->x, f->ids, NULL, M, f->out, NULL),
                   "topk_weights");
  f->ids[7] = E; /* out of range */
  EXPECT_UNTOUCHED(moe_forward_routed(L, f->x, f->ids, f->tw, M, f->out, NULL),
                   "topk_ids[2][1]");
  f->ids[7] = -1;
  EXPECT_UNTOUCHED(moe_forward_routed(L, f->x, f->ids, f->tw, M, f->out, NULL),
                   "out of range");
  f->ids[7] = 0;
  /* NULL layer: no context to hold a message, only the status. */
  assert_int_equal(moe_forward(NULL, f->x, f->logits, M, f->out, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_true(tu_all_poison(f->out, sizeof f->out));
  /* M = 0 succeeds and writes nothing. */
  assert_int_equal(moe_forward(L, f->x, f->logits, 0, f->out, NULL), MOE_OK);
  assert_int_equal(moe_forward_routed(L, f->x, f->ids, f->tw, 0, f->out, NULL),
                   MOE_OK);
  assert_true(tu_all_poison(f->out, sizeof f->out));
  /* A good call writes every element, finite. */
  assert_int_equal(moe_forward(L, f->x, f->logits, M, f->out, NULL), MOE_OK);
  for (int i = 0; i < M * H; i++)
    assert_true(isfinite(moe_bf16_to_f32(f->out[i])));
  moe_layer_destroy(L);
}

static void test_nonfinite_logits(void **state) {
  fixture *f = *state;
  moe_layer *L = NULL;
  assert_int_equal(moe_layer_create(f->ctx, &f->desc, &f->w, &L), MOE_OK);
  /* Token 0: NaN on the largest logit, +Inf and -Inf elsewhere: treated as
   * -Inf, never chosen while finite ones exist. */
  int best = 0;
  for (int e = 1; e < E; e++)
    if (f->logits[e] > f->logits[best]) best = e;
  f->logits[best] = NAN;
  f->logits[(best + 1) % E] = INFINITY;
  f->logits[(best + 2) % E] = -INFINITY;
  int32_t ids[M * K];
  float w[M * K];
  assert_int_equal(moe_route(L, f->logits, M, ids, w, NULL), MOE_OK);
  for (int j = 0; j < K; j++) {
    assert_int_not_equal(ids[j], best);
    assert_int_not_equal(ids[j], (best + 1) % E);
    assert_int_not_equal(ids[j], (best + 2) % E);
    assert_true(isfinite(w[j]) && w[j] > 0);
  }
  assert_int_equal(moe_forward(L, f->x, f->logits, M, f->out, NULL), MOE_OK);
  for (int i = 0; i < M * H; i++)
    assert_true(isfinite(moe_bf16_to_f32(f->out[i])));
  moe_layer_destroy(L);

  /* strict_inputs: the same logits are an error and nothing is written. */
  moe_context_options o;
  moe_context_options_init(&o);
  o.strict_inputs = 1;
  moe_context *strict = NULL;
  assert_int_equal(moe_context_create(&o, &strict), MOE_OK);
  assert_int_equal(moe_layer_create(strict, &f->desc, &f->w, &L), MOE_OK);
  tu_poison(f->out, sizeof f->out);
  assert_int_equal(moe_forward(L, f->x, f->logits, M, f->out, NULL),
                   MOE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(moe_last_error(strict), "not finite"));
  assert_true(tu_all_poison(f->out, sizeof f->out));
  moe_layer_destroy(L);
  moe_context_destroy(strict);
}

static void test_bad_context_options(void **state) {
  (void)state;
  moe_context_options o;
  moe_context_options_init(&o);
  moe_context *c = (moe_context *)(uintptr_t)0x1;
  o.num_threads = -2;
  assert_int_equal(moe_context_create(&o, &c), MOE_ERR_INVALID_ARGUMENT);
  o.num_threads = 0;
  o.device_override = "sm_999";
  assert_int_equal(moe_context_create(&o, &c), MOE_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(c, (moe_context *)(uintptr_t)0x1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pinned_status_values),
      cmocka_unit_test(test_destroy_accepts_null),
      cmocka_unit_test(test_bad_context_options),
      cmocka_unit_test_setup_teardown(test_bad_descriptors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_weights, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_calls_leave_output_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_nonfinite_logits, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
