/*
 * dist_layer.c - the multi-GPU layer's front end: argument checks (all of
 * them before anything is touched, and all of them without NCCL), the
 * rank's ordinary layers, and the per-call orchestration of the three
 * modes:
 *
 *   TP, EP_REPLICATED   forward (rank's part) -> ncclAllReduce(sum) on out
 *   EP_A2A              route own tokens -> scan + pack -> grouped
 *                       send/recv -> forward_routed on world * B rows
 *                       (+ shared expert on own tokens) -> grouped
 *                       send/recv back -> ordered combine
 */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOE_DIST_MAX_TOKENS (1 << 24)

#ifdef MOE_HAVE_NCCL
/* Re-raises the message a sub-call left in ctx with the rank in front. */
static moe_status sub_fail(moe_context *ctx, moe_status st, int rank,
                           const char *what) {
  char m[MOE_ERR_LEN];
  snprintf(m, sizeof m, "%s", ctx->err);
  return moe_fail(ctx, st, "rank %d: %s: %s", rank, what, m);
}
#endif

static moe_status check_create(moe_context *ctx, const moe_layer_desc *desc,
                               const moe_weights *w, void *comm, int rank,
                               int world, moe_parallel_mode mode, int T,
                               moe_shape *s) {
  if (!desc) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "desc is NULL");
  if ((unsigned)mode >= MOE_PARALLEL_MODE_COUNT)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "mode = %d: unknown value",
                    (int)mode);
  if (world < 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "world = %d: must be >= 1",
                    world);
  if (rank < 0 || rank >= world)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "rank = %d: must be in [0, world = %d)", rank, world);
  if (!comm)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "nccl_comm is NULL (the caller creates the communicator)");
  if (T < 1 || T > MOE_DIST_MAX_TOKENS)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "max_tokens_per_rank = %d: must be in [1, %d]", T,
                    MOE_DIST_MAX_TOKENS);
  if (!w) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "weights is NULL");
  if (w->memory != MOE_MEMORY_CUDA)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "weights.memory must be MOE_MEMORY_CUDA (the dist layer "
                    "runs on GPUs)");
  if (desc->expert_map)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "desc.expert_map must be NULL: the parallel mode places "
                    "the experts (moe_dist_expert_range)");
  moe_status st = moe_shape_from_desc(ctx, desc, s);
  if (st != MOE_OK) return st;
  if (mode == MOE_PARALLEL_TP) {
    if (s->I % world != 0)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "tp: intermediate = %d is not divisible by world = %d",
                      s->I, world);
    if (s->Is % world != 0)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "tp: shared_intermediate = %d is not divisible by "
                      "world = %d",
                      s->Is, world);
  } else if (s->E < world) {
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "%s: num_experts = %d is fewer than world = %d ranks",
                    moe_parallel_mode_name(mode), s->E, world);
  }
  if (mode == MOE_PARALLEL_EP_A2A) {
    moe_a2a_sizes sz;
    if (!moe_a2a_sizes_compute(s->H, s->k, moe_dtype_size(s->dtype), world, T,
                               s->Is > 0, &sz))
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "ep-a2a: world (%d) x max_tokens_per_rank (%d) rows of "
                      "hidden = %d overflow 32-bit indexing",
                      world, T, s->H);
  }
  return MOE_OK;
}

void moe_dist_layer_destroy(moe_dist_layer *L) {
  if (!L) return;
  moe_layer_destroy(L->layer);
  moe_layer_destroy(L->shared_layer);
#ifdef MOE_HAVE_NCCL
  moe_dist_nccl_free(L);
#endif
  free(L->emap);
  free(L);
}

#ifdef MOE_HAVE_NCCL
/* The rank's ordinary layers (moe_dist_rank_plan_make says which). */
static moe_status build_layers(moe_dist_layer *L, const moe_layer_desc *desc,
                               const moe_weights *w, const moe_shape *s) {
  moe_context *ctx = L->ctx;
  moe_dist_rank_plan p;
  if (L->mode != MOE_PARALLEL_TP) {
    L->emap = malloc((size_t)s->E * sizeof *L->emap);
    if (!L->emap)
      return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "dist layer: no memory");
  }
  moe_dist_rank_plan_make(desc, w, L->mode, L->rank, L->world, L->T, L->emap,
                          &p);
  moe_status st = moe_layer_create(ctx, &p.layer, &p.w, &L->layer);
  if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "layer");
  if (p.has_shared_layer) {
    st = moe_layer_create(ctx, &p.shared, &p.sw, &L->shared_layer);
    if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "shared layer");
  }
  return MOE_OK;
}
#endif

moe_status moe_dist_layer_create(moe_context *ctx, const moe_layer_desc *desc,
                                 const moe_weights *w, void *comm, int rank,
                                 int world, moe_parallel_mode mode, int T,
                                 moe_dist_layer **out) {
  if (!ctx) return MOE_ERR_INVALID_ARGUMENT;
  moe_clear_error(ctx);
  if (!out) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "out is NULL");
  moe_shape s;
  moe_status st = check_create(ctx, desc, w, comm, rank, world, mode, T, &s);
  if (st != MOE_OK) return st;
#ifndef MOE_HAVE_NCCL
  return moe_fail(ctx, MOE_ERR_UNSUPPORTED,
                  "multi-GPU layers need NCCL: this build has none "
                  "(configure with MOE_NCCL=AUTO or ON where nccl.h and "
                  "libnccl are found)");
#else
  char msg[MOE_REASON_LEN] = "";
  if ((st = moe_dist_nccl_check(comm, rank, world, msg, sizeof msg)) != MOE_OK)
    return moe_fail(ctx, st, "rank %d: %s", rank, msg);
  moe_dist_layer *L = calloc(1, sizeof *L);
  if (!L) return moe_fail(ctx, MOE_ERR_OUT_OF_MEMORY, "dist layer: no memory");
  L->ctx = ctx;
  L->mode = mode;
  L->rank = rank;
  L->world = world;
  L->T = T;
  L->E = s.E;
  L->k = s.k;
  L->H = s.H;
  L->dtype = s.dtype;
  L->comm = comm;
  if (mode != MOE_PARALLEL_TP)
    moe_dist_expert_range(s.E, rank, world, &L->first, &L->count);
  st = build_layers(L, desc, w, &s);
  if (st == MOE_OK && mode == MOE_PARALLEL_EP_A2A) {
    moe_a2a_sizes_compute(s.H, s.k, moe_dtype_size(s.dtype), world, T, s.Is > 0,
                          &L->sz);
    if ((st = moe_dist_nccl_alloc(L, msg, sizeof msg)) != MOE_OK)
      moe_fail(ctx, st, "rank %d: %s", rank, msg);
  }
  if (st != MOE_OK) {
    moe_dist_layer_destroy(L);
    return st;
  }
  *out = L;
  return MOE_OK;
#endif
}

/* ---- forward ---- */

#ifdef MOE_HAVE_NCCL
static moe_status forward_a2a(moe_dist_layer *L, const void *x,
                              const float *logits, int M, int B, void *out,
                              void *stream, unsigned parts) {
  moe_context *ctx = L->ctx;
  char msg[MOE_REASON_LEN] = "";
  moe_status st;
  void **b = L->buf;
  if ((parts & MOE_DIST_PART_COMPUTE) && M > 0) {
    st = moe_route(L->layer, logits, M, b[MOE_A2A_RIDS], b[MOE_A2A_RW], stream);
    if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "route");
  }
  moe_a2a_args a;
  memset(&a, 0, sizeof a);
  a.x = x;
  a.ids = b[MOE_A2A_RIDS];
  a.w = b[MOE_A2A_RW];
  a.M = M;
  a.B = B;
  a.k = L->k;
  a.H = L->H;
  a.E = L->E;
  a.world = L->world;
  a.rank = L->rank;
  a.elem = moe_dtype_size(L->dtype);
  a.pos = b[MOE_A2A_POS];
  a.src = b[MOE_A2A_SRC];
  a.count = b[MOE_A2A_COUNT];
  a.send_x = b[MOE_A2A_SEND_X];
  a.recv_x = b[MOE_A2A_RECV_X];
  a.send_ids = b[MOE_A2A_SEND_IDS];
  a.recv_ids = b[MOE_A2A_RECV_IDS];
  a.send_w = b[MOE_A2A_SEND_W];
  a.recv_w = b[MOE_A2A_RECV_W];
  a.y = b[MOE_A2A_Y];
  a.back = b[MOE_A2A_BACK];
  a.shared = L->shared_layer ? b[MOE_A2A_SHARED] : NULL;
  a.out = out;
  int e = moe_a2a_launch_pack(L->dtype, &a, stream);
  if (e)
    return moe_fail(ctx, MOE_ERR_DEVICE, "rank %d: ep-a2a pack launch: %s",
                    L->rank, moe_a2a_error_string(e));
  if (parts & MOE_DIST_PART_COMM) {
    st = moe_dist_nccl_dispatch(L, B, stream, msg, sizeof msg);
    if (st != MOE_OK)
      return moe_fail(ctx, st, "rank %d: dispatch: %s", L->rank, msg);
  }
  if (parts & MOE_DIST_PART_COMPUTE) {
    st = moe_forward_routed(L->layer, b[MOE_A2A_RECV_X], b[MOE_A2A_RECV_IDS],
                            b[MOE_A2A_RECV_W], L->world * B, b[MOE_A2A_Y],
                            stream);
    if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "experts");
    if (L->shared_layer && M > 0) {
      st = moe_forward_routed(L->shared_layer, x, b[MOE_A2A_ONE_IDS],
                              b[MOE_A2A_ONE_W], M, b[MOE_A2A_SHARED], stream);
      if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "shared expert");
    }
  }
  if (parts & MOE_DIST_PART_COMM) {
    st = moe_dist_nccl_return(L, B, stream, msg, sizeof msg);
    if (st != MOE_OK)
      return moe_fail(ctx, st, "rank %d: return: %s", L->rank, msg);
  }
  e = moe_a2a_launch_combine(L->dtype, &a, stream);
  if (e)
    return moe_fail(ctx, MOE_ERR_DEVICE, "rank %d: ep-a2a combine launch: %s",
                    L->rank, moe_a2a_error_string(e));
  return MOE_OK;
}
#endif

moe_status moe_dist_forward_parts(moe_dist_layer *L, const void *x,
                                  const float *logits, int M, int bound,
                                  void *out, void *stream, unsigned parts) {
  if (!L) return MOE_ERR_INVALID_ARGUMENT;
  moe_context *ctx = L->ctx;
  moe_clear_error(ctx);
  if (!x) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "x is NULL");
  if (!logits) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "logits is NULL");
  if (!out) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "out is NULL");
  if (M < 0)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "num_tokens = %d: must be >= 0", M);
  if ((uintptr_t)x % 16 || (uintptr_t)out % 16 || (uintptr_t)logits % 4)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                    "x and out must be 16-byte aligned, logits 4-byte aligned");
  if (L->mode == MOE_PARALLEL_EP_A2A) {
    if (bound < 0 || bound > L->T)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "tokens_bound = %d: must be in [0, max_tokens_per_rank "
                      "= %d] (0 means max_tokens_per_rank)",
                      bound, L->T);
    const int B = bound ? bound : L->T;
    if (M > B)
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "num_tokens = %d exceeds tokens_bound = %d (ep-a2a "
                      "buffers hold that many tokens per rank)",
                      M, B);
#ifdef MOE_HAVE_NCCL
    return forward_a2a(L, x, logits, M, B, out, stream, parts);
#endif
  }
  if (M == 0) return MOE_OK; /* every rank passes the same M: no collective */
#ifdef MOE_HAVE_NCCL
  moe_status st;
  if (parts & MOE_DIST_PART_COMPUTE) {
    st = moe_forward(L->layer, x, logits, M, out, stream);
    if (st != MOE_OK) return sub_fail(ctx, st, L->rank, "forward");
  }
  if (parts & MOE_DIST_PART_COMM) {
    char msg[MOE_REASON_LEN] = "";
    st = moe_dist_nccl_allreduce(L, out, (size_t)M * L->H, stream, msg,
                                 sizeof msg);
    if (st != MOE_OK)
      return moe_fail(ctx, st, "rank %d: all-reduce: %s", L->rank, msg);
  }
  return MOE_OK;
#else
  (void)stream;
  (void)parts;
  return moe_fail(ctx, MOE_ERR_UNSUPPORTED, "built without NCCL");
#endif
}

moe_status moe_dist_forward(moe_dist_layer *L, const void *x,
                            const float *logits, int M, int bound, void *out,
                            void *stream) {
  return moe_dist_forward_parts(L, x, logits, M, bound, out, stream,
                                MOE_DIST_PART_COMPUTE | MOE_DIST_PART_COMM);
}

/* ---- single-process communicators ---- */

moe_status moe_dist_comms_create(moe_context *ctx, int world,
                                 const int *devices, void **comms) {
  moe_clear_error(ctx);
  if (!comms) return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "comms is NULL");
  if (world < 1)
    return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT, "world = %d: must be >= 1",
                    world);
#ifdef MOE_HAVE_NCCL
  char msg[MOE_REASON_LEN] = "";
  moe_status st =
      moe_dist_nccl_comms_create(world, devices, comms, msg, sizeof msg);
  if (st != MOE_OK) return moe_fail(ctx, st, "%s", msg);
  return MOE_OK;
#else
  (void)devices;
  return moe_fail(ctx, MOE_ERR_UNSUPPORTED, "this build has no NCCL");
#endif
}

void moe_dist_comms_destroy(int world, void **comms) {
  if (!comms || world < 1) return;
#ifdef MOE_HAVE_NCCL
  moe_dist_nccl_comms_destroy(world, comms);
#endif
}
