/*
 * internal.h - the front end's own structures: context, layer, plan. Shared
 * by moe.c, layer.c, device.c, plan.c and selfcheck.c; backends never see
 * them (they get a moe_shape and a moe_backend_env).
 */
#ifndef MOE_INTERNAL_H
#define MOE_INTERNAL_H

#include "backend.h"

#include <stdarg.h>

#define MOE_ERR_LEN 2048
#define MOE_REASON_LEN 320
#define MOE_MAX_BACKENDS 16

/* Test-only fault hook kinds (compiled in with MOE_TEST_HOOKS). */
typedef enum moe_fault {
  MOE_FAULT_NONE = 0,
  MOE_FAULT_ERROR = 1,     /* forward returns MOE_ERR_DEVICE */
  MOE_FAULT_NO_KERNEL = 2, /* forward returns MOE_ERR_NO_KERNEL_IMAGE */
  MOE_FAULT_WRONG = 3      /* forward succeeds but corrupts its output */
} moe_fault;

/* A backend that failed its self-check for one kind of layer (dtype,
 * activation, gating): it is not chosen again for that kind in this
 * context, but still serves other kinds. */
typedef struct moe_failure {
  const moe_backend *backend;
  moe_dtype dtype;
  moe_activation act;
  int gated;
  char reason[MOE_REASON_LEN];
} moe_failure;
#define MOE_MAX_FAILURES 64

struct moe_context {
  moe_context_options opts;
  char device_override[32];
  moe_device device;
  char err[MOE_ERR_LEN];
  char device_info[1024];
  /* Self-check failures seen in this context (a ring). */
  moe_failure failed[MOE_MAX_FAILURES];
  int n_failed;
#ifdef MOE_TEST_HOOKS
  char fault_backend[32];
  moe_fault fault;
#endif
};

typedef struct moe_plan_row {
  const moe_backend *backend;
  moe_verdict verdict;
  char reason[MOE_REASON_LEN];
} moe_plan_row;

struct moe_plan {
  moe_plan_row rows[MOE_MAX_BACKENDS];
  int n_rows;
  int chosen; /* index into rows, -1 when none */
  int fell_back;
  char requested[32];
  char device_desc[320];
  char layer_desc[200];
};

struct moe_layer {
  moe_context *ctx;
  moe_shape shape;
  int32_t *expert_map; /* owned copy */
  moe_weights weights;
  const moe_backend *backend;
  void *impl;
  moe_plan plan;
};

/* Records a message in ctx (if non-NULL) and returns s. */
moe_status moe_fail(moe_context *ctx, moe_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void moe_clear_error(moe_context *ctx);

/* layer.c: checks desc, fills shape (defaults applied). The shape's
 * expert_map points into desc's array; E_local is computed. */
moe_status moe_shape_from_desc(moe_context *ctx, const moe_layer_desc *desc,
                               moe_shape *shape);
int moe_activation_valid(moe_activation act, int gated);

/* device.c */
moe_status moe_device_detect(moe_context *ctx, const char *override_name,
                             int cuda_ordinal, moe_device *dev);
/* Fills dev from the known-device table ("sm_121", "121", "cpu").
 * Returns 0 when the name is unknown. */
int moe_device_from_table(const char *name, moe_device *dev);
void moe_device_describe(const moe_device *dev, char *buf, size_t n);
void moe_cpu_features_string(uint32_t f, char *buf, size_t n);

/* plan.c */
/* Why `b` cannot serve `s` on `dev` (0 + reason) or 1 when it can. */
int moe_backend_admits(const moe_backend *b, const moe_shape *s,
                       moe_memory memory, const moe_device *dev, char *why,
                       size_t n);
/* The quirk that excludes (b, dev, s), or NULL. */
const moe_quirk *moe_quirk_find(const moe_backend *b, const moe_device *dev,
                                const moe_shape *s);
const moe_quirk *moe_quirk_table(int *count);
const moe_quirk *moe_quirk_find_in(const moe_quirk *table, int n,
                                   const moe_backend *b, const moe_device *dev,
                                   const moe_shape *s);
/* Plans `s` for `memory`. Marks backends failed earlier in ctx. Does not
 * run self-checks (moe_layer_create does, via plan_next). */
moe_status moe_plan_build(moe_context *ctx, const moe_shape *s,
                          moe_memory memory, const char *requested,
                          int allow_fallback, moe_plan *plan);
/* moe_plan_build, then the self-check of the choice (when self_check and
 * the device can run it); a failing backend is remembered in ctx and the
 * plan is built again without it. */
moe_status moe_plan_checked(moe_context *ctx, const moe_shape *s,
                            moe_memory memory, const char *requested,
                            int allow_fallback, int self_check, moe_plan *plan);
void moe_plan_describe_layer(const moe_shape *s, char *buf, size_t n);

/* Records / finds a self-check failure of b for layers of s's kind. */
void moe_failure_record(moe_context *ctx, const moe_backend *b,
                        const moe_shape *s, const char *reason);
const moe_failure *moe_failure_find(const moe_context *ctx,
                                    const moe_backend *b, const moe_shape *s);

/* selfcheck.c: runs backend b on a tiny problem of s's kind and compares
 * with cpu-ref. Returns MOE_OK or the failure with a reason in why. */
moe_status moe_self_check(moe_context *ctx, const moe_backend *b,
                          const moe_shape *s, char *why, size_t n);

/* moe.c: calls b->forward, applying the test fault hook. */
moe_status moe_call_forward(moe_context *ctx, const moe_backend *b, void *impl,
                            const moe_shape *s, const moe_batch *batch,
                            void *stream, char *msg, size_t n);
moe_backend_env moe_context_env(const moe_context *ctx);

#ifdef MOE_TEST_HOOKS
/* Test builds only: makes backend `name` fail at run time in this context
 * (kind MOE_FAULT_NONE clears). */
void moe_test_set_fault(moe_context *ctx, const char *name, moe_fault kind);
#endif

#endif
