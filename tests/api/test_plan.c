/*
 * test_plan.c - selection as data: device predicates, the whole what-if
 * matrix, the promise/kernel consistency walk, quirks, explicit requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

static moe_device what_if(const char *name) {
  moe_device d;
  memset(&d, 0, sizeof d);
  assert_true(moe_device_from_table(name, &d));
  return d;
}

static void test_predicates_each_direction(void **state) {
  (void)state;
  moe_device d120 = what_if("sm_120"), d121 = what_if("sm_121");
  moe_device d90 = what_if("sm_90"), d100 = what_if("sm_100");
  assert_int_equal(d121.sm, 121);
  assert_int_equal(d121.sms, 48);
  assert_int_equal(d121.smem_optin, 99 * 1024);
  /* exact(120) admits 12.0 and rejects 12.1. */
  assert_true(moe_pred_exact(120, &d120));
  assert_false(moe_pred_exact(120, &d121));
  /* family(120) admits both. */
  assert_true(moe_pred_family(120, &d120));
  assert_true(moe_pred_family(120, &d121));
  assert_false(moe_pred_family(120, &d100));
  assert_false(moe_pred_family(100, &d120));
  /* at_least(90) admits 9.0 and newer, not older. */
  assert_true(moe_pred_at_least(90, &d90));
  assert_true(moe_pred_at_least(90, &d121));
  assert_false(moe_pred_at_least(100, &d90));
  /* No GPU: no GPU predicate admits. */
  moe_device cpu = what_if("cpu");
  assert_false(moe_pred_at_least(0, &cpu));
  assert_false(moe_pred_family(120, &cpu));
  char buf[64];
  moe_device_pred p = {MOE_PRED_FAMILY, 120, 0};
  moe_pred_format(p, buf, sizeof buf);
  assert_string_equal(buf, "family(120)");
  assert_false(moe_device_from_table("sm_999", &cpu));
}

/* The field failure, as data: a backend whose row claims family(120) for
 * relu2 but whose build only holds the sm_120 kernel. The planner must not
 * hand an sm_121 relu2 layer to it. */
static int fake_compiled(int sm, moe_dtype dt, moe_activation act, int gated) {
  (void)dt;
  (void)gated;
  return act != MOE_ACT_RELU2 || sm == 120;
}
static const moe_support_row fake_rows[] = {
    {{MOE_PRED_FAMILY, 120, 0},
     MOE_BIT(MOE_DTYPE_BF16),
     MOE_BIT(MOE_ACT_SILU) | MOE_BIT(MOE_ACT_RELU2),
     MOE_GATING_PLAIN | MOE_GATING_GATED,
     1,
     1,
     0,
     64 * 1024},
};

static moe_backend fake_backend(void) {
  const moe_backend *ref = moe_backend_find("cpu-ref");
  moe_backend b = *ref;
  b.name = "fake-sm12x";
  b.rows = fake_rows;
  b.n_rows = 1;
  b.kernel_compiled = fake_compiled;
  b.probe = NULL;
  static moe_memops cuda_like;
  cuda_like = *ref->memops;
  cuda_like.memory = MOE_MEMORY_CUDA;
  b.memops = &cuda_like;
  return b;
}

static moe_shape relu2_shape(moe_dtype dt) {
  moe_layer_desc d;
  moe_layer_desc_init(&d);
  d.num_experts = 128;
  d.top_k = 6;
  d.hidden = 2688;
  d.intermediate = 1856;
  d.activation = MOE_ACT_RELU2;
  d.gated = 0;
  d.dtype = dt;
  moe_shape s;
  assert_int_equal(moe_shape_from_desc(NULL, &d, &s), MOE_OK);
  return s;
}

static void test_family_claim_without_kernel_is_rejected(void **state) {
  (void)state;
  moe_backend b = fake_backend();
  moe_shape s = relu2_shape(MOE_DTYPE_BF16);
  char why[MOE_REASON_LEN];
  moe_device d120 = what_if("sm_120"), d121 = what_if("sm_121");
  assert_true(
      moe_backend_admits(&b, &s, MOE_MEMORY_CUDA, &d120, why, sizeof why));
  assert_false(
      moe_backend_admits(&b, &s, MOE_MEMORY_CUDA, &d121, why, sizeof why));
  assert_non_null(strstr(why, "no such kernel"));
  assert_non_null(strstr(why, "sm_121"));
  /* A dtype the rows do not list is rejected by the row, named. */
  moe_shape f16 = relu2_shape(MOE_DTYPE_F16);
  assert_false(
      moe_backend_admits(&b, &f16, MOE_MEMORY_CUDA, &d120, why, sizeof why));
  assert_non_null(strstr(why, "dtype f16"));
  /* Not a member of the family: the device check names the predicate. */
  moe_device d90 = what_if("sm_90");
  assert_false(
      moe_backend_admits(&b, &s, MOE_MEMORY_CUDA, &d90, why, sizeof why));
  assert_non_null(strstr(why, "family(120)"));
}

static const int gatings[] = {1, 0, 1, 0, 0, 1};
static const moe_activation act_ids[] = {MOE_ACT_SILU,  MOE_ACT_SILU,
                                         MOE_ACT_GELU,  MOE_ACT_GELU,
                                         MOE_ACT_RELU2, MOE_ACT_SWIGLU_OAI};

/* Every known device x activation x dtype plans without a crash, and every
 * chosen backend has a row that admits the layer and the kernel compiled. */
static void test_whole_matrix(void **state) {
  (void)state;
  int chosen_gpu = 0;
  for (int dv = -1; dv < moe_known_device_count(); dv++) {
    const char *name = dv < 0 ? "cpu" : moe_known_device_name(dv);
    moe_context_options o;
    moe_context_options_init(&o);
    o.device_override = name;
    moe_context *ctx = NULL;
    assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
    for (int a = 0; a < 6; a++)
      for (int dt = 0; dt < MOE_DTYPE_COUNT; dt++)
        for (int mem = 0; mem < 2; mem++) {
          moe_layer_desc d;
          moe_layer_desc_init(&d);
          d.num_experts = 128;
          d.top_k = 8;
          d.hidden = 2048;
          d.intermediate = 768;
          d.activation = act_ids[a];
          d.gated = gatings[a];
          d.dtype = (moe_dtype)dt;
          d.backend = "";
          moe_plan *p = NULL;
          moe_status st = moe_plan_create(ctx, &d, (moe_memory)mem, &p);
          assert_true(st == MOE_OK || st == MOE_ERR_UNSUPPORTED);
          assert_non_null(p);
          char text[4096];
          assert_true(moe_plan_explain(p, text, sizeof text) > 0);
          const char *chosen = moe_plan_backend(p);
          if (mem == MOE_MEMORY_HOST) /* the CPU always serves host layers */
            assert_non_null(chosen);
          if (chosen) {
            const moe_backend *b = moe_backend_find(chosen);
            moe_shape s;
            assert_int_equal(moe_shape_from_desc(ctx, &d, &s), MOE_OK);
            char why[MOE_REASON_LEN];
            assert_true(moe_backend_admits(b, &s, (moe_memory)mem, &ctx->device,
                                           why, sizeof why));
            int sm = b->memops->memory == MOE_MEMORY_CUDA ? ctx->device.sm : 0;
            assert_true(b->kernel_compiled(sm, s.dtype, s.act, s.gated));
            if (mem == MOE_MEMORY_CUDA) chosen_gpu++;
            /* sm_121 relu2 bf16: never a backend without that kernel. */
            if (mem == MOE_MEMORY_CUDA && ctx->device.sm == 121 &&
                act_ids[a] == MOE_ACT_RELU2 && dt == MOE_DTYPE_BF16)
              assert_true(
                  b->kernel_compiled(121, MOE_DTYPE_BF16, MOE_ACT_RELU2, 0));
          } else {
            assert_int_equal(st, MOE_ERR_UNSUPPORTED);
            for (int i = 0; i < moe_plan_num_entries(p); i++) {
              moe_plan_entry e;
              assert_int_equal(moe_plan_entry_get(p, i, &e), MOE_OK);
              assert_int_not_equal(e.verdict, MOE_VERDICT_CHOSEN);
              assert_true(strlen(e.reason) > 0);
            }
          }
          moe_plan_destroy(p);
        }
    moe_context_destroy(ctx);
  }
#ifdef MOE_HAVE_CUDA
  assert_true(chosen_gpu > 0); /* a CUDA build serves what-if GPUs */
#else
  assert_int_equal(chosen_gpu, 0);
#endif
}

/* Every support row of every backend: for every known device the row's
 * predicate admits, and every dtype, activation and gating it lists, this
 * build holds the kernel. A promise without an instantiation fails here. */
static void test_every_promise_has_a_kernel(void **state) {
  (void)state;
  int n, promises = 0;
  const moe_backend *const *reg = moe_backend_registry(&n);
  for (int i = 0; i < n; i++) {
    const moe_backend *b = reg[i];
    assert_true(b->n_rows > 0);
    for (int r = 0; r < b->n_rows; r++) {
      const moe_support_row *row = &b->rows[r];
      int gpu = row->device.kind != MOE_PRED_CPU;
      for (int dv = 0; dv < (gpu ? moe_known_device_count() : 1); dv++) {
        int sm = 0;
        if (gpu) {
          moe_device d = what_if(moe_known_device_name(dv));
          if (!moe_pred_admits(row->device, &d)) continue;
          sm = d.sm;
        }
        for (int dt = 0; dt < MOE_DTYPE_COUNT; dt++) {
          if (!(row->dtypes & MOE_BIT(dt))) continue;
          for (int a = 0; a < MOE_ACT_COUNT; a++) {
            if (!(row->activations & MOE_BIT(a))) continue;
            for (int g = 0; g < 2; g++) {
              if (!(row->gating & (g ? MOE_GATING_GATED : MOE_GATING_PLAIN)))
                continue;
              if (!moe_activation_valid((moe_activation)a, g)) continue;
              promises++;
              if (!b->kernel_compiled(sm, (moe_dtype)dt, (moe_activation)a, g))
                fail_msg("%s row %d promises %s %s%s on sm_%d without a "
                         "compiled kernel",
                         b->name, r, moe_dtype_name((moe_dtype)dt),
                         g ? "gated " : "", moe_activation_name(a), sm);
            }
          }
        }
      }
    }
  }
  assert_true(promises > 0);
}

/* cuda-sm90 is admitted on sm_90 alone; on every other what-if GPU,
 * sm_100 and sm_120 included, its row is rejected with the reason, and
 * cuda-mma serves. Only in builds that hold it. */
static void test_sm90_only_on_sm90(void **state) {
  (void)state;
  const moe_backend *b = moe_backend_find("cuda-sm90");
  if (!b) {
    printf("  (this build has no cuda-sm90)\n");
    return;
  }
  int seen90 = 0, others = 0;
  for (int dv = 0; dv < moe_known_device_count(); dv++) {
    const char *name = moe_known_device_name(dv);
    moe_context_options o;
    moe_context_options_init(&o);
    o.device_override = name;
    moe_context *ctx = NULL;
    assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
    moe_layer_desc d;
    moe_layer_desc_init(&d);
    d.num_experts = 128;
    d.top_k = 8;
    d.hidden = 2048;
    d.intermediate = 768;
    d.backend = "";
    moe_plan *p = NULL;
    moe_status st = moe_plan_create(ctx, &d, MOE_MEMORY_CUDA, &p);
    const int sm = ctx->device.sm;
    const char *chosen = moe_plan_backend(p);
    int found = 0;
    for (int i = 0; i < moe_plan_num_entries(p); i++) {
      moe_plan_entry e;
      assert_int_equal(moe_plan_entry_get(p, i, &e), MOE_OK);
      if (strcmp(e.backend, "cuda-sm90") != 0) continue;
      found = 1;
      if (sm == 90 && b->kernel_compiled(90, MOE_DTYPE_BF16, MOE_ACT_SILU, 1)) {
        assert_int_equal(e.verdict, MOE_VERDICT_CHOSEN);
        seen90 = 1;
      } else {
        assert_int_equal(e.verdict, MOE_VERDICT_REJECTED);
        if (sm != 90) {
          assert_non_null(strstr(e.reason, "is not exact(90)"));
          others++;
        }
      }
    }
    assert_true(found);
    const moe_backend *mma = moe_backend_find("cuda-mma");
    if (sm >= 80 && sm != 90 &&
        mma->kernel_compiled(sm, MOE_DTYPE_BF16, MOE_ACT_SILU, 1)) {
      assert_int_equal(st, MOE_OK);
      assert_string_equal(chosen, "cuda-mma");
    }
    moe_plan_destroy(p);
    moe_context_destroy(ctx);
  }
  assert_true(others >= 6); /* sm_80 ... sm_121 without sm_90 */
  (void)seen90;
}

static void test_quirk_matching(void **state) {
  (void)state;
  const moe_quirk table[] = {
      {"cpu-ref",
       {MOE_PRED_EXACT, 121, 0},
       MOE_BIT(MOE_DTYPE_BF16),
       MOE_BIT(MOE_ACT_RELU2),
       "test defect",
       "test",
       "never"},
  };
  const moe_backend *b = moe_backend_find("cpu-ref");
  moe_shape s = relu2_shape(MOE_DTYPE_BF16);
  moe_device d121 = what_if("sm_121"), d120 = what_if("sm_120");
  assert_ptr_equal(moe_quirk_find_in(table, 1, b, &d121, &s), &table[0]);
  assert_null(moe_quirk_find_in(table, 1, b, &d120, &s));
  moe_shape f16 = relu2_shape(MOE_DTYPE_F16);
  assert_null(moe_quirk_find_in(table, 1, b, &d121, &f16));
  /* The shipped table is well formed. */
  int n;
  const moe_quirk *q = moe_quirk_table(&n);
  for (int i = 0; i < n; i++) {
    assert_non_null(moe_backend_find(q[i].backend));
    assert_non_null(q[i].reason);
    assert_non_null(q[i].lift_when);
  }
}

static void test_explicit_request(void **state) {
  (void)state;
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);
  moe_layer_desc d;
  moe_layer_desc_init(&d);
  d.num_experts = 5000; /* past cpu-ref's routing limit */
  d.top_k = 2;
  d.hidden = 16;
  d.intermediate = 8;
  d.backend = "cpu-ref";
  moe_plan *p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p),
                   MOE_ERR_UNSUPPORTED);
  assert_non_null(strstr(moe_last_error(ctx), "num_experts 5000"));
  assert_null(moe_plan_backend(p));
  moe_plan_destroy(p);
  /* Unknown backend names are named too. */
  d.num_experts = 8;
  d.backend = "no-such-backend";
  p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p),
                   MOE_ERR_UNSUPPORTED);
  assert_non_null(strstr(moe_last_error(ctx), "no-such-backend"));
  moe_plan_destroy(p);
  /* A backend that can serve, asked for with allow_fallback: no fallback. */
  d.backend = "cpu-ref";
  d.allow_fallback = 1;
  p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p), MOE_OK);
  assert_string_equal(moe_plan_backend(p), "cpu-ref");
  assert_false(moe_plan_fell_back(p));
  moe_plan_destroy(p);
  /* A backend this build lacks, with fallback: served, and said so. */
  d.backend = "no-such-backend";
  p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p), MOE_OK);
  assert_non_null(moe_plan_backend(p));
  assert_true(moe_plan_fell_back(p));
  char text[4096];
  moe_plan_explain(p, text, sizeof text);
  assert_non_null(strstr(text, "fell back"));
  moe_plan_destroy(p);
  /* Device memory asked of a host backend, no fallback: the check named. */
  d.backend = "cpu-ref";
  d.allow_fallback = 0;
  p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_CUDA, &p),
                   MOE_ERR_UNSUPPORTED);
  assert_non_null(strstr(moe_last_error(ctx), "host memory"));
  moe_plan_destroy(p);
  moe_context_destroy(ctx);
}

/* MOE_DEVICE and MOE_BACKEND are read from the environment when the
 * options leave them unset. */
static void test_environment_overrides(void **state) {
  (void)state;
  setenv("MOE_DEVICE", "sm_121", 1);
  moe_context *ctx = NULL;
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  assert_int_equal(ctx->device.sm, 121);
  assert_true(ctx->device.overridden);
  assert_non_null(strstr(moe_context_device_info(ctx), "DGX Spark"));
  moe_context_destroy(ctx);
  setenv("MOE_DEVICE", "sm_7x", 1);
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_ERR_INVALID_ARGUMENT);
  unsetenv("MOE_DEVICE");

  setenv("MOE_BACKEND", "cpu-ref", 1);
  assert_int_equal(moe_context_create(NULL, &ctx), MOE_OK);
  moe_layer_desc d;
  moe_layer_desc_init(&d);
  d.num_experts = 4;
  d.top_k = 2;
  d.hidden = 8;
  d.intermediate = 4;
  moe_plan *p = NULL;
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p), MOE_OK);
  assert_string_equal(moe_plan_backend(p), "cpu-ref");
  moe_plan_destroy(p);
  d.backend = ""; /* "" means automatic, whatever the environment says */
  assert_int_equal(moe_plan_create(ctx, &d, MOE_MEMORY_HOST, &p), MOE_OK);
  assert_non_null(moe_plan_backend(p));
  moe_plan_destroy(p);
  unsetenv("MOE_BACKEND");
  moe_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_predicates_each_direction),
      cmocka_unit_test(test_family_claim_without_kernel_is_rejected),
      cmocka_unit_test(test_whole_matrix),
      cmocka_unit_test(test_every_promise_has_a_kernel),
      cmocka_unit_test(test_sm90_only_on_sm90),
      cmocka_unit_test(test_quirk_matching),
      cmocka_unit_test(test_explicit_request),
      cmocka_unit_test(test_environment_overrides),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
