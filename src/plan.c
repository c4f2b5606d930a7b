/*
 * plan.c - backend selection as data. Each backend's support rows say which
 * devices, dtypes, activations and shapes it has kernels for; the quirks
 * table lists known defects. A plan takes backends by priority, keeps the
 * first whose rows admit the layer and that no quirk excludes, and records
 * the reason for every rejection.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Known defects: (backend, device, dtypes, activations) excluded, with the
 * reason, a reference and the condition under which the row is lifted.
 * Empty today: no backend of this build has a known defect. An entry looks
 * like
 *   {"cuda-mma", {MOE_PRED_EXACT, 121, 0}, MOE_BIT(MOE_DTYPE_BF16),
 *    MOE_BIT(MOE_ACT_RELU2), "wrong results on GB10", "bench/NOTES.md",
 *    "lift when the relu2 epilogue passes tests/gpu on sm_121"},
 */
static const moe_quirk quirks[] = {
    {NULL, {MOE_PRED_CPU, 0, 0}, 0, 0, NULL, NULL, NULL} /* sentinel */
};

const moe_quirk *moe_quirk_table(int *count) {
  *count = (int)(sizeof quirks / sizeof quirks[0]) - 1;
  return quirks;
}

static int quirk_matches(const moe_quirk *q, const moe_backend *b,
                         const moe_device *dev, const moe_shape *s) {
  return q->backend && strcmp(q->backend, b->name) == 0 &&
         moe_pred_admits(q->device, dev) && (q->dtypes & MOE_BIT(s->dtype)) &&
         (q->activations & MOE_BIT(s->act));
}

const moe_quirk *moe_quirk_find_in(const moe_quirk *t, int n,
                                   const moe_backend *b, const moe_device *dev,
                                   const moe_shape *s) {
  for (int i = 0; i < n; i++)
    if (quirk_matches(&t[i], b, dev, s)) return &t[i];
  return NULL;
}

const moe_quirk *moe_quirk_find(const moe_backend *b, const moe_device *dev,
                                const moe_shape *s) {
  int n;
  const moe_quirk *t = moe_quirk_table(&n);
  return moe_quirk_find_in(t, n, b, dev, s);
}

static const char *memory_name(moe_memory m) {
  return m == MOE_MEMORY_CUDA ? "CUDA" : "host";
}

static void device_name(const moe_device *dev, int gpu, char *buf, size_t n) {
  if (gpu && dev->is_cuda)
    snprintf(buf, n, "sm_%d", dev->sm);
  else if (gpu)
    snprintf(buf, n, "no GPU");
  else
    snprintf(buf, n, "this CPU");
}

/* How far a row gets through its checks (higher = closer to admitting), and
 * the first failing check in why. Returns 100 when it admits. */
static int row_check(const moe_backend *b, const moe_support_row *r,
                     const moe_shape *s, const moe_device *dev, char *why,
                     size_t n) {
  char pred[64], where[32];
  int gpu = r->device.kind != MOE_PRED_CPU;
  moe_pred_format(r->device, pred, sizeof pred);
  device_name(dev, gpu, where, sizeof where);
  if (!moe_pred_admits(r->device, dev)) {
    snprintf(why, n, "device %s is not %s", where, pred);
    return 0;
  }
  if (!(r->dtypes & MOE_BIT(s->dtype))) {
    snprintf(why, n, "dtype %s not supported by %s on %s (row %s)",
             moe_dtype_name(s->dtype), b->name, where, pred);
    return 1;
  }
  if (!(r->activations & MOE_BIT(s->act))) {
    snprintf(why, n, "activation %s not supported by %s on %s (row %s)",
             moe_activation_name(s->act), b->name, where, pred);
    return 2;
  }
  if (!(r->gating & (s->gated ? MOE_GATING_GATED : MOE_GATING_PLAIN))) {
    snprintf(why, n, "%s %s not supported by %s on %s",
             s->gated ? "gated" : "non-gated", moe_activation_name(s->act),
             b->name, where);
    return 3;
  }
  int ah = r->align_h > 0 ? r->align_h : 1,
      ai = r->align_i > 0 ? r->align_i : 1;
  if (s->H % ah != 0) {
    snprintf(why, n, "hidden %d is not a multiple of %d (%s)", s->H, ah,
             b->name);
    return 4;
  }
  if (s->I % ai != 0 || (s->Is && s->Is % ai != 0)) {
    snprintf(why, n, "intermediate %d (shared %d) is not a multiple of %d (%s)",
             s->I, s->Is, ai, b->name);
    return 5;
  }
  if (r->max_experts > 0 && s->E > r->max_experts) {
    snprintf(why, n, "num_experts %d exceeds %s's limit of %d", s->E, b->name,
             r->max_experts);
    return 6;
  }
  if (gpu && r->smem_bytes > dev->smem_optin) {
    snprintf(why, n,
             "needs %d KB shared memory per block; %s allows %d KB (%s)",
             r->smem_bytes / 1024, where, dev->smem_optin / 1024, b->name);
    return 7;
  }
  snprintf(why, n, "row %s admits %s %s%s", pred, moe_dtype_name(s->dtype),
           s->gated ? "gated " : "", moe_activation_name(s->act));
  return 100;
}

int moe_backend_admits(const moe_backend *b, const moe_shape *s,
                       moe_memory memory, const moe_device *dev, char *why,
                       size_t n) {
  if (b->memops->memory != memory) {
    snprintf(why, n, "runs on %s memory; the layer's tensors are in %s memory",
             memory_name(b->memops->memory), memory_name(memory));
    return 0;
  }
  int best = -1, admitted = -1;
  char tmp[MOE_REASON_LEN];
  for (int i = 0; i < b->n_rows; i++) {
    int got = row_check(b, &b->rows[i], s, dev, tmp, sizeof tmp);
    if (got > best) {
      best = got;
      snprintf(why, n, "%s", tmp);
    }
    if (got == 100) {
      admitted = i;
      break;
    }
  }
  if (b->n_rows == 0) snprintf(why, n, "declares no support rows");
  if (admitted < 0) return 0;

  const moe_support_row *r = &b->rows[admitted];
  int sm = r->device.kind == MOE_PRED_CPU ? 0 : dev->sm;
  if (!b->kernel_compiled(sm, s->dtype, s->act, s->gated)) {
    snprintf(why, n,
             "row promises %s %s on %s but this build holds no such kernel "
             "for sm_%d",
             moe_dtype_name(s->dtype), moe_activation_name(s->act), b->name,
             sm);
    return 0;
  }
  const moe_quirk *q = moe_quirk_find(b, dev, s);
  if (q) {
    snprintf(why, n, "known defect: %s (%s; lifted when %s)", q->reason,
             q->reference, q->lift_when);
    return 0;
  }
  if (r->device.kind != MOE_PRED_CPU && dev->runnable && b->probe) {
    char pm[256] = "";
    if (b->probe(dev, pm, sizeof pm) != MOE_OK) {
      snprintf(why, n, "probe failed on sm_%d: %s", dev->sm, pm);
      return 0;
    }
  }
  return 1;
}

void moe_plan_describe_layer(const moe_shape *s, char *buf, size_t n) {
  const moe_routing *r = &s->routing;
  char grp[48] = "";
  if (r->n_group > 1)
    snprintf(grp, sizeof grp, " groups %d/%d", r->topk_group, r->n_group);
  snprintf(buf, n, "E=%d k=%d H=%d I=%d %s%s %s, %s%s%s%s scale %g%s", s->E,
           s->k, s->H, s->I, s->gated ? "gated " : "",
           moe_activation_name(s->act), moe_dtype_name(s->dtype),
           r->scoring == MOE_SCORING_SIGMOID ? "sigmoid" : "softmax",
           s->has_correction_bias ? "+bias" : "", grp,
           r->renormalize ? " renorm" : "", (double)r->routed_scaling_factor,
           s->Is ? ", shared expert" : "");
}

void moe_failure_record(moe_context *ctx, const moe_backend *b,
                        const moe_shape *s, const char *reason) {
  moe_failure *f = &ctx->failed[ctx->n_failed % MOE_MAX_FAILURES];
  f->backend = b;
  f->dtype = s->dtype;
  f->act = s->act;
  f->gated = s->gated;
  snprintf(f->reason, sizeof f->reason, "%s", reason);
  ctx->n_failed++;
}

const moe_failure *moe_failure_find(const moe_context *ctx,
                                    const moe_backend *b, const moe_shape *s) {
  int n = ctx->n_failed < MOE_MAX_FAILURES ? ctx->n_failed : MOE_MAX_FAILURES;
  for (int i = 0; i < n; i++) {
    const moe_failure *f = &ctx->failed[i];
    if (f->backend == b && f->dtype == s->dtype && f->act == s->act &&
        f->gated == s->gated)
      return f;
  }
  return NULL;
}

moe_status moe_plan_build(moe_context *ctx, const moe_shape *s,
                          moe_memory memory, const char *requested,
                          int allow_fallback, moe_plan *plan) {
  memset(plan, 0, sizeof *plan);
  plan->chosen = -1;
  moe_plan_describe_layer(s, plan->layer_desc, sizeof plan->layer_desc);
  {
    char d[1024];
    moe_device_describe(&ctx->device, d, sizeof d);
    char *nl = strchr(d, '\n');
    if (nl) *nl = '\0';
    snprintf(plan->device_desc, sizeof plan->device_desc, "%.150s; %.150s", d,
             nl ? nl + 1 : "");
  }
  const moe_backend *want = NULL;
  if (requested && *requested) {
    want = moe_backend_find(requested);
    snprintf(plan->requested, sizeof plan->requested, "%s", requested);
    if (!want && !allow_fallback) {
      int nb;
      const moe_backend *const *all = moe_backend_registry(&nb);
      char names[256] = "";
      size_t used = 0;
      for (int i = 0; i < nb && used < sizeof names; i++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s",
                         i ? ", " : "", all[i]->name);
        if (w > 0) used += (size_t)w;
      }
      return moe_fail(ctx, MOE_ERR_UNSUPPORTED,
                      "backend '%s' requested but not in this build (it has "
                      "%s)",
                      requested, names);
    }
  }

  int n;
  const moe_backend *const *reg = moe_backend_registry(&n);
  /* The requested backend is tried first, then the rest by priority. */
  const moe_backend *order[MOE_MAX_BACKENDS];
  int m = 0;
  if (want) order[m++] = want;
  for (int i = 0; i < n && m < MOE_MAX_BACKENDS; i++)
    if (reg[i] != want) order[m++] = reg[i];

  for (int i = 0; i < m; i++) {
    moe_plan_row *row = &plan->rows[plan->n_rows++];
    row->backend = order[i];
    if (plan->chosen >= 0) {
      row->verdict = MOE_VERDICT_NOT_TRIED;
      snprintf(row->reason, sizeof row->reason, "%s was chosen first",
               plan->rows[plan->chosen].backend->name);
      continue;
    }
    if (want && order[i] != want && !allow_fallback) {
      row->verdict = MOE_VERDICT_NOT_TRIED;
      snprintf(row->reason, sizeof row->reason,
               "backend '%s' was requested (no fallback)", want->name);
      continue;
    }
    const moe_failure *f = moe_failure_find(ctx, order[i], s);
    if (f) {
      row->verdict = MOE_VERDICT_FAILED_CHECK;
      snprintf(row->reason, sizeof row->reason, "%s", f->reason);
    } else if (moe_backend_admits(order[i], s, memory, &ctx->device,
                                  row->reason, sizeof row->reason)) {
      row->verdict = MOE_VERDICT_CHOSEN;
      plan->chosen = plan->n_rows - 1;
      plan->fell_back = plan->requested[0] && order[i] != want;
      continue;
    } else {
      row->verdict = MOE_VERDICT_REJECTED;
    }
  }
  if (plan->chosen < 0) {
    if (want && !allow_fallback)
      return moe_fail(ctx, MOE_ERR_UNSUPPORTED,
                      "backend '%s' cannot serve %s: %s", want->name,
                      plan->layer_desc, plan->rows[0].reason);
    char text[MOE_ERR_LEN];
    moe_plan_explain(plan, text, sizeof text);
    return moe_fail(ctx, MOE_ERR_UNSUPPORTED, "no backend can serve: %s", text);
  }
  return MOE_OK;
}

moe_status moe_plan_checked(moe_context *ctx, const moe_shape *s,
                            moe_memory memory, const char *requested,
                            int allow_fallback, int self_check,
                            moe_plan *plan) {
  for (;;) {
    moe_status st =
        moe_plan_build(ctx, s, memory, requested, allow_fallback, plan);
    if (st != MOE_OK) return st;
    moe_plan_row *row = &plan->rows[plan->chosen];
    const moe_backend *b = row->backend;
    char why[MOE_REASON_LEN];
    if (!self_check) {
      snprintf(why, sizeof why, "self-check off");
    } else if (b == moe_backend_find("cpu-ref")) {
      snprintf(why, sizeof why, "the reference (no self-check)");
    } else if (b->memops->memory != MOE_MEMORY_HOST && !ctx->device.runnable) {
      snprintf(why, sizeof why, "not self-checked: %s is a what-if device",
               ctx->device.is_cuda ? "this GPU" : "the device");
    } else if (moe_self_check(ctx, b, s, why, sizeof why) != MOE_OK) {
      /* Remember the failure for this kind of layer and plan again. */
      moe_failure_record(ctx, b, s, why);
      if (requested && *requested && !allow_fallback &&
          b == moe_backend_find(requested))
        return moe_fail(ctx, MOE_ERR_UNSUPPORTED,
                        "backend '%s' failed its self-check: %s", b->name, why);
      continue;
    }
    size_t used = strlen(row->reason);
    snprintf(row->reason + used, sizeof row->reason - used, "; %s", why);
    return MOE_OK;
  }
}

/* ---- the public plan object ---- */

static const char *verdict_name(moe_verdict v) {
  switch (v) {
  case MOE_VERDICT_CHOSEN:
    return "chosen";
  case MOE_VERDICT_REJECTED:
    return "rejected";
  case MOE_VERDICT_FAILED_CHECK:
    return "failed";
  case MOE_VERDICT_NOT_TRIED:
    return "not tried";
  }
  return "?";
}

const char *moe_plan_backend(const moe_plan *plan) {
  if (!plan || plan->chosen < 0) return NULL;
  return plan->rows[plan->chosen].backend->name;
}

int moe_plan_num_entries(const moe_plan *plan) {
  return plan ? plan->n_rows : 0;
}

moe_status moe_plan_entry_get(const moe_plan *plan, int i,
                              moe_plan_entry *out) {
  if (!plan || !out || i < 0 || i >= plan->n_rows)
    return MOE_ERR_INVALID_ARGUMENT;
  out->backend = plan->rows[i].backend->name;
  out->verdict = plan->rows[i].verdict;
  out->reason = plan->rows[i].reason;
  return MOE_OK;
}

int moe_plan_fell_back(const moe_plan *plan) {
  return plan ? plan->fell_back : 0;
}

size_t moe_plan_explain(const moe_plan *plan, char *buf, size_t size) {
  if (!plan) return 0;
  size_t used = 0;
  char scratch[1];
#define EMIT(...)                                                              \
  do {                                                                         \
    char *dst_ = buf ? buf + (used < size ? used : size) : scratch;            \
    int w_ =                                                                   \
        snprintf(dst_, buf && used < size ? size - used : 0, __VA_ARGS__);     \
    if (w_ > 0) used += (size_t)w_;                                            \
  } while (0)
  EMIT("layer:  %s\n", plan->layer_desc);
  EMIT("device: %s\n", plan->device_desc);
  if (plan->requested[0])
    EMIT("requested: %s%s\n", plan->requested,
         !plan->fell_back ? ""
         : moe_backend_find(plan->requested)
             ? " (could not serve, see its row; fell back)"
             : " (not in this build; fell back)");
  EMIT("%-12s %-10s %s\n", "backend", "verdict", "reason");
  for (int i = 0; i < plan->n_rows; i++)
    EMIT("%-12s %-10s %s\n", plan->rows[i].backend->name,
         verdict_name(plan->rows[i].verdict), plan->rows[i].reason);
#undef EMIT
  if (buf && size) buf[used < size ? used : size - 1] = '\0';
  return used;
}

moe_status moe_plan_create(moe_context *ctx, const moe_layer_desc *desc,
                           moe_memory memory, moe_plan **out) {
  if (!ctx) return MOE_ERR_INVALID_ARGUMENT;
  moe_clear_error(ctx);
  if (!out) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "out is NULL");
  if (memory != MOE_MEMORY_HOST && memory != MOE_MEMORY_CUDA)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "memory = %d: unknown value",
                    (int)memory);
  moe_shape s;
  moe_status st = moe_shape_from_desc(ctx, desc, &s);
  if (st != MOE_OK) return st;
  s.has_correction_bias = desc->routing.scoring == MOE_SCORING_SIGMOID;
  moe_plan *p = calloc(1, sizeof *p);
  if (!p) return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "plan: no memory");
  const char *req = desc->backend ? desc->backend : getenv("MOE_BACKEND");
  st = moe_plan_checked(ctx, &s, memory, req, desc->allow_fallback,
                        desc->self_check, p);
  /* A plan that found no backend is still returned: it explains why. */
  if (st != MOE_OK && st != MOE_ERR_UNSUPPORTED) {
    free(p);
    return st;
  }
  *out = p;
  return st;
}

void moe_plan_destroy(moe_plan *plan) {
  free(plan);
}
