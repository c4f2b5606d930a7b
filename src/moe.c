/*
 * moe.c - the front door: context, layers, the three entry points, status
 * strings, version and build introspection. Arguments are checked here,
 * before any backend runs, so a bad call leaves outputs untouched.
 */
#include "cpu/cpu.h"
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- status, version, build ---- */

const char *moe_status_string(moe_status s) {
  switch (s) {
  case MOE_OK:
    return "MOE_OK";
  case MOE_ERR_INVALID_ARGUMENT:
    return "MOE_ERR_INVALID_ARGUMENT";
  case MOE_ERR_UNSUPPORTED:
    return "MOE_ERR_UNSUPPORTED";
  case MOE_ERR_OUT_OF_MEMORY:
    return "MOE_ERR_OUT_OF_MEMORY";
  case MOE_ERR_DEVICE:
    return "MOE_ERR_DEVICE";
  case MOE_ERR_NO_KERNEL_IMAGE:
    return "MOE_ERR_NO_KERNEL_IMAGE";
  case MOE_ERR_SELF_CHECK:
    return "MOE_ERR_SELF_CHECK";
  case MOE_ERR_IO:
    return "MOE_ERR_IO";
  case MOE_ERR_FORMAT:
    return "MOE_ERR_FORMAT";
  case MOE_ERR_INTERNAL:
    return "MOE_ERR_INTERNAL";
  }
  return "MOE_ERR_UNKNOWN_STATUS";
}

const char *moe_version_string(void) {
  return STR(MOE_VERSION_MAJOR) "." STR(MOE_VERSION_MINOR) "." STR(
      MOE_VERSION_PATCH);
}

int moe_version_number(void) {
  return MOE_VERSION_NUMBER;
}

const char *moe_build_info(void) {
  /* Built once from constant data; the registry is immutable, so the text
   * is the same for every caller. */
  static const char *text = "backends: "
#ifdef MOE_HAVE_CUDA_SM90
                            "cuda-sm90 "
#endif
#ifdef MOE_HAVE_CUDA
                            "cuda-mma "
#endif
#ifdef MOE_HAVE_CPU_X86
                            "cpu-avx512 cpu-avx2 "
#endif
                            "cpu-ref\n"
#ifdef MOE_HAVE_CUDA
                            "cuda-archs: " MOE_CUDA_ARCH_LIST
                            " (sass) + compute_" MOE_PTX_ARCH " (ptx)\n"
#else
                            "cuda-archs: none (built without CUDA)\n"
#endif
#ifdef MOE_TEST_HOOKS
                            "test-hooks: on\n"
#endif
      ;
  return text;
}

const char *moe_dtype_name(moe_dtype d) {
  switch (d) {
  case MOE_DTYPE_F32:
    return "f32";
  case MOE_DTYPE_F16:
    return "f16";
  case MOE_DTYPE_BF16:
    return "bf16";
  }
  return NULL;
}

const char *moe_activation_name(moe_activation a) {
  switch (a) {
  case MOE_ACT_SILU:
    return "silu";
  case MOE_ACT_GELU:
    return "gelu";
  case MOE_ACT_RELU2:
    return "relu2";
  case MOE_ACT_SWIGLU_OAI:
    return "swiglu-oai";
  }
  return NULL;
}

/* ---- errors ---- */

moe_status moe_fail(moe_context *ctx, moe_status s, const char *fmt, ...) {
  if (ctx) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
  }
  return s;
}

void moe_clear_error(moe_context *ctx) {
  if (ctx) ctx->err[0] = '\0';
}

const char *moe_last_error(const moe_context *ctx) {
  return ctx ? ctx->err : "context is NULL";
}

/* ---- context ---- */

void moe_context_options_init(moe_context_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
}

moe_status moe_context_create(const moe_context_options *opts,
                              moe_context **out) {
  if (!out) return MOE_ERR_INVALID_ARGUMENT;
  moe_context_options o;
  moe_context_options_init(&o);
  if (opts) o = *opts;
  if (o.num_threads < 0 || o.num_threads > 1024 || o.cuda_device < 0)
    return MOE_ERR_INVALID_ARGUMENT;
  moe_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return MOE_ERR_OUT_OF_MEMORY;
  ctx->opts = o;
  const char *ov = o.device_override ? o.device_override : getenv("MOE_DEVICE");
  snprintf(ctx->device_override, sizeof ctx->device_override, "%s",
           ov ? ov : "");
  ctx->opts.device_override = ctx->device_override;
  moe_status st =
      moe_device_detect(ctx, ctx->device_override, o.cuda_device, &ctx->device);
  if (st != MOE_OK) {
    free(ctx);
    return st;
  }
  if (ctx->opts.num_threads == 0)
    ctx->opts.num_threads =
        ctx->device.cpu_cores > 0 ? ctx->device.cpu_cores : 1;
  moe_device_describe(&ctx->device, ctx->device_info, sizeof ctx->device_info);
  *out = ctx;
  return MOE_OK;
}

void moe_context_destroy(moe_context *ctx) {
  free(ctx);
}

const char *moe_context_device_info(const moe_context *ctx) {
  return ctx ? ctx->device_info : "";
}

moe_backend_env moe_context_env(const moe_context *ctx) {
  moe_backend_env env;
  env.num_threads = ctx->opts.num_threads;
  env.ref_double_accumulation = ctx->opts.ref_double_accumulation;
  env.device = &ctx->device;
  return env;
}

/* ---- the test fault hook ---- */

#ifdef MOE_TEST_HOOKS
void moe_test_set_fault(moe_context *ctx, const char *name, moe_fault kind) {
  if (!ctx) return;
  snprintf(ctx->fault_backend, sizeof ctx->fault_backend, "%s",
           name ? name : "");
  ctx->fault = kind;
}

static moe_status corrupt_output(const moe_backend *b, const moe_shape *s,
                                 const moe_batch *batch) {
  size_t bytes = (size_t)batch->M * s->H * moe_dtype_size(s->dtype);
  unsigned char *h = malloc(bytes ? bytes : 1);
  if (!h) return MOE_ERR_OUT_OF_MEMORY;
  moe_status st = b->memops->download(h, batch->out, bytes);
  /* Scale every element by 3: finite, plausible, and wrong. */
  for (size_t i = 0; st == MOE_OK && i < (size_t)batch->M * s->H; i++)
    moe_store_elem(h, i, s->dtype, 3.0f * moe_load_elem(h, i, s->dtype) + 1);
  if (st == MOE_OK) st = b->memops->upload(batch->out, h, bytes);
  free(h);
  return st;
}
#endif

moe_status moe_call_forward(moe_context *ctx, const moe_backend *b, void *impl,
                            const moe_shape *s, const moe_batch *batch,
                            void *stream, char *msg, size_t n) {
#ifdef MOE_TEST_HOOKS
  if (ctx->fault != MOE_FAULT_NONE &&
      strcmp(ctx->fault_backend, b->name) == 0) {
    if (ctx->fault == MOE_FAULT_ERROR) {
      snprintf(msg, n, "injected launch failure in %s (test hook)", b->name);
      return MOE_ERR_DEVICE;
    }
    if (ctx->fault == MOE_FAULT_NO_KERNEL) {
      snprintf(msg, n, "no kernel image for this device in %s (test hook)",
               b->name);
      return MOE_ERR_NO_KERNEL_IMAGE;
    }
    moe_status st = b->forward(impl, batch, stream, msg, n);
    if (st == MOE_OK && batch->M > 0) st = corrupt_output(b, s, batch);
    return st;
  }
#else
  (void)ctx;
  (void)s;
#endif
  return b->forward(impl, batch, stream, msg, n);
}

/* ---- layers ---- */

static moe_status check_weights(moe_context *ctx, const moe_shape *s,
                                const moe_weights *w) {
  if (!w) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "weights is NULL");
  if (w->memory != MOE_MEMORY_HOST && w->memory != MOE_MEMORY_CUDA)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "weights.memory = %d: unknown value", (int)w->memory);
  if (!w->w13)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "weights.w13 is NULL");
  if (!w->w2)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "weights.w2 is NULL");
  if (s->Is > 0 && (!w->shared_w13 || !w->shared_w2))
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "shared_intermediate = %d but weights.shared_w13 or "
                    "weights.shared_w2 is NULL",
                    s->Is);
  if (w->correction_bias && s->routing.scoring != MOE_SCORING_SIGMOID)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "weights.correction_bias is given but routing.scoring is "
                    "softmax (a correction bias applies to sigmoid scoring)");
  size_t align = w->memory == MOE_MEMORY_CUDA ? 16 : moe_dtype_size(s->dtype);
  const void *p[4] = {w->w13, w->w2, w->shared_w13, w->shared_w2};
  const char *names[4] = {"w13", "w2", "shared_w13", "shared_w2"};
  for (int i = 0; i < 4; i++)
    if (p[i] && (uintptr_t)p[i] % align != 0)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "weights.%s is not aligned to %zu bytes", names[i],
                      align);
  return MOE_OK;
}

moe_status moe_layer_create(moe_context *ctx, const moe_layer_desc *desc,
                            const moe_weights *weights, moe_layer **out) {
  if (!ctx) return MOE_ERR_INVALID_ARGUMENT;
  moe_clear_error(ctx);
  if (!out) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "out is NULL");
  moe_shape s;
  moe_status st = moe_shape_from_desc(ctx, desc, &s);
  if (st != MOE_OK) return st;
  if ((st = check_weights(ctx, &s, weights)) != MOE_OK) return st;
  s.has_expert_bias = weights->w13_bias || weights->w2_bias;
  s.has_correction_bias = weights->correction_bias != NULL;

  moe_layer *L = calloc(1, sizeof *L);
  if (!L) return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "layer: no memory");
  if (desc->expert_map) {
    L->expert_map = malloc((size_t)s.E * sizeof *L->expert_map);
    if (!L->expert_map) {
      free(L);
      return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "layer: no memory");
    }
    memcpy(L->expert_map, desc->expert_map, (size_t)s.E * sizeof(int32_t));
    s.expert_map = L->expert_map;
  }
  L->ctx = ctx;
  L->shape = s;
  L->weights = *weights;

  const char *req = desc->backend ? desc->backend : getenv("MOE_BACKEND");
  moe_backend_env env = moe_context_env(ctx);
  /* Plan with self-checks, create on the real weights, and re-plan past a
   * backend whose create fails too. */
  for (;;) {
    st = moe_plan_checked(ctx, &s, weights->memory, req, desc->allow_fallback,
                          desc->self_check, &L->plan);
    if (st != MOE_OK) break;
    const moe_backend *b = L->plan.rows[L->plan.chosen].backend;
    char msg[MOE_REASON_LEN] = "", why[MOE_REASON_LEN];
    moe_status cs = b->create(&env, &s, weights, &L->impl, msg, sizeof msg);
    if (cs == MOE_OK) {
      /* What the backend chose for this layer at creation, if it says. */
      if (msg[0]) {
        char *r = L->plan.rows[L->plan.chosen].reason;
        const size_t used = strlen(r);
        snprintf(r + used, MOE_REASON_LEN - used, "; %s", msg);
      }
      L->backend = b;
      *out = L;
      return MOE_OK;
    }
    snprintf(why, sizeof why, "create: %s: %s", moe_status_string(cs), msg);
    moe_failure_record(ctx, b, &s, why);
    if (req && *req && !desc->allow_fallback && b == moe_backend_find(req)) {
      st = moe_fail(ctx, cs, "backend '%s' %s", b->name, why);
      break;
    }
  }
  free(L->expert_map);
  free(L);
  return st;
}

void moe_layer_destroy(moe_layer *L) {
  if (!L) return;
  if (L->backend && L->impl) L->backend->destroy(L->impl);
  free(L->expert_map);
  free(L);
}

const char *moe_layer_backend(const moe_layer *L) {
  return L && L->backend ? L->backend->name : NULL;
}

const moe_plan *moe_layer_plan(const moe_layer *L) {
  return L ? &L->plan : NULL;
}

/* ---- the entry points ---- */

static moe_status check_ptr(moe_context *ctx, const moe_layer *L, const void *p,
                            const char *name, size_t elem) {
  if (!p) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "%s is NULL", name);
  size_t align = L->weights.memory == MOE_MEMORY_CUDA && elem == 2 ? 16 : elem;
  if (!strcmp(name, "x") || !strcmp(name, "out")) {
    if ((uintptr_t)p % align != 0)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "%s is not aligned to %zu bytes", name, align);
  } else if ((uintptr_t)p % elem != 0) {
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "%s is not aligned to %zu bytes", name, elem);
  }
  return MOE_OK;
}

static moe_status check_tokens(moe_context *ctx, const moe_shape *s, int M) {
  if (M < 0)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "num_tokens = %d: must be >= 0", M);
  long long widest = s->H > s->E ? s->H : s->E;
  if ((long long)M * widest > INT32_MAX)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "num_tokens = %d x %lld elements per row overflows "
                    "32-bit indexing; split the batch",
                    M, widest);
  return MOE_OK;
}

static moe_status check_logits_finite(moe_layer *L, const float *logits,
                                      int M) {
  if (!L->ctx->opts.strict_inputs || L->weights.memory != MOE_MEMORY_HOST)
    return MOE_OK;
  for (long long i = 0; i < (long long)M * L->shape.E; i++)
    if (!isfinite(logits[i]))
      return moe_fail(L->ctx, MOE_ERR_INVALID_ARGUMENT,
                      "logits[%lld][%lld] = %g is not finite (strict_inputs)",
                      i / L->shape.E, i % L->shape.E, (double)logits[i]);
  return MOE_OK;
}

moe_status moe_route(moe_layer *L, const float *logits, int M, int32_t *ids,
                     float *weights, void *stream) {
  if (!L) return MOE_ERR_INVALID_ARGUMENT;
  moe_context *ctx = L->ctx;
  moe_clear_error(ctx);
  moe_status st;
  if ((st = check_tokens(ctx, &L->shape, M)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, logits, "logits", 4)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, ids, "topk_ids", 4)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, weights, "topk_weights", 4)) != MOE_OK) return st;
  if (M == 0) return MOE_OK;
  if ((st = check_logits_finite(L, logits, M)) != MOE_OK) return st;
  char msg[MOE_REASON_LEN] = "";
  st = L->backend->route(L->impl, logits, M, ids, weights, stream, msg,
                         sizeof msg);
  if (st != MOE_OK)
    return moe_fail(ctx, st, "%s route: %s", L->backend->name, msg);
  return MOE_OK;
}

static moe_status run_forward(moe_layer *L, const moe_batch *b, void *stream) {
  char msg[MOE_REASON_LEN] = "";
  moe_status st = moe_call_forward(L->ctx, L->backend, L->impl, &L->shape, b,
                                   stream, msg, sizeof msg);
  if (st != MOE_OK)
    return moe_fail(L->ctx, st, "%s forward: %s", L->backend->name, msg);
  return MOE_OK;
}

moe_status moe_forward(moe_layer *L, const void *x, const float *logits, int M,
                       void *out, void *stream) {
  if (!L) return MOE_ERR_INVALID_ARGUMENT;
  moe_context *ctx = L->ctx;
  moe_clear_error(ctx);
  size_t es = moe_dtype_size(L->shape.dtype);
  moe_status st;
  if ((st = check_tokens(ctx, &L->shape, M)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, x, "x", es)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, logits, "logits", 4)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, out, "out", es)) != MOE_OK) return st;
  if (M == 0) return MOE_OK;
  if ((st = check_logits_finite(L, logits, M)) != MOE_OK) return st;
  moe_batch b = {x, logits, NULL, NULL, M, out};
  return run_forward(L, &b, stream);
}

moe_status moe_forward_routed(moe_layer *L, const void *x, const int32_t *ids,
                              const float *weights, int M, void *out,
                              void *stream) {
  if (!L) return MOE_ERR_INVALID_ARGUMENT;
  moe_context *ctx = L->ctx;
  moe_clear_error(ctx);
  size_t es = moe_dtype_size(L->shape.dtype);
  moe_status st;
  if ((st = check_tokens(ctx, &L->shape, M)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, x, "x", es)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, ids, "topk_ids", 4)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, weights, "topk_weights", 4)) != MOE_OK) return st;
  if ((st = check_ptr(ctx, L, out, "out", es)) != MOE_OK) return st;
  if (M == 0) return MOE_OK;
  /* Host ids are checked here; device ids cannot be read without a
   * synchronisation, so the CUDA kernels skip out-of-range ids instead. */
  if (L->weights.memory == MOE_MEMORY_HOST) {
    for (long long i = 0; i < (long long)M * L->shape.k; i++)
      if (ids[i] < 0 || ids[i] >= L->shape.E)
        return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                        "topk_ids[%lld][%lld] = %d is out of range [0, %d)",
                        i / L->shape.k, i % L->shape.k, (int)ids[i],
                        L->shape.E);
  }
  moe_batch b = {x, NULL, ids, weights, M, out};
  return run_forward(L, &b, stream);
}
