/*
 * dist.h - the multi-GPU layer's own structures and the pieces shared by
 * its files: host helpers (dist_host.c), the front end (dist_layer.c), the
 * NCCL side (dist_nccl.c, only with MOE_HAVE_NCCL) and the dispatch /
 * combine kernels of EP_A2A (a2a.cu).
 */
#ifndef MOE_DIST_H
#define MOE_DIST_H

#include "../internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- EP_A2A buffers: the capacity arithmetic ----
 * Every rank sends each of its tokens at most once to each rank (the row
 * travels with all its k (id, weight) pairs; the receiver's expert map
 * drops the pairs of experts it does not hold). A rank passes at most
 * T = max_tokens_per_rank tokens, so T rows per peer is the worst case:
 * every buffer below is sized for it and overflow cannot happen. One call
 * with tokens_bound = B <= T uses the first B rows of each peer's block
 * (blocks laid out with stride B, so that the received rows are contiguous
 * for one forward over world * B rows). */
enum {
  MOE_A2A_RIDS = 0, /* [T][k] int32: this rank's routing ids */
  MOE_A2A_RW,       /* [T][k] float: ... and weights */
  MOE_A2A_POS,      /* [T][world] int32: row of token t in block d, or -1 */
  MOE_A2A_SRC,      /* [world][T] int32: token of row i of block d */
  MOE_A2A_COUNT,    /* [world] int32: rows used in block d */
  MOE_A2A_SEND_X,   /* [world][T][H] dtype (own block unused) */
  MOE_A2A_SEND_IDS, /* [world][T][k] int32 */
  MOE_A2A_SEND_W,   /* [world][T][k] float */
  MOE_A2A_RECV_X,   /* [world][T][H] dtype (own block packed in place) */
  MOE_A2A_RECV_IDS, /* [world][T][k] int32; -1 marks an unused row */
  MOE_A2A_RECV_W,   /* [world][T][k] float */
  MOE_A2A_Y,        /* [world][T][H] dtype: results of received rows */
  MOE_A2A_BACK,     /* [world][T][H] dtype: own tokens' results, by peer */
  MOE_A2A_SHARED,   /* [T][H] dtype: shared expert of own tokens (or 0) */
  MOE_A2A_ONE_IDS,  /* [T] int32 = 0: the shared layer's routing */
  MOE_A2A_ONE_W,    /* [T] float = 1 */
  MOE_A2A_NBUF
};

typedef struct moe_a2a_sizes {
  size_t off[MOE_A2A_NBUF];   /* byte offsets, 256-byte aligned */
  size_t bytes[MOE_A2A_NBUF]; /* bytes of each buffer (0: absent) */
  size_t total;
  long long rows; /* world * T: rows of one full forward */
} moe_a2a_sizes;

/* Fills sz for (H, k, element size, world, T, shared expert or not).
 * Returns 0 when an argument is < 1 or a size overflows (size_t, or 32-bit
 * element indexing of world * T rows of H or of k). */
int moe_a2a_sizes_compute(int H, int k, size_t elem, int world, int T,
                          int has_shared, moe_a2a_sizes *sz);

/* The owner of expert e when E experts are split as moe_dist_expert_range
 * does (host; a2a.cu has the device twin). */
int moe_dist_expert_owner(int E, int world, int e);
/* Fills map[E] with rank's local indices (-1 elsewhere). */
moe_status moe_dist_expert_map(int E, int rank, int world, int32_t *map);

/* What rank builds from the global desc and its weights: the layer it
 * runs and, in EP_A2A with a shared expert, the one-expert layer (id 0,
 * weight 1) that runs the shared expert on the rank's own tokens. Pure
 * host arithmetic on an already validated desc; map (E entries) receives
 * the expert map of the EP modes and layer.expert_map points to it. */
typedef struct moe_dist_rank_plan {
  moe_layer_desc layer;
  moe_weights w;
  int has_shared_layer;
  moe_layer_desc shared;
  moe_weights sw;
} moe_dist_rank_plan;
void moe_dist_rank_plan_make(const moe_layer_desc *desc, const moe_weights *w,
                             moe_parallel_mode mode, int rank, int world, int T,
                             int32_t *map, moe_dist_rank_plan *p);

/* Internal forward with parts selectable (the benchmark times the
 * communication alone by leaving out the compute, and vice versa). */
enum { MOE_DIST_PART_COMPUTE = 1u, MOE_DIST_PART_COMM = 2u };
moe_status moe_dist_forward_parts(moe_dist_layer *L, const void *x,
                                  const float *logits, int M, int bound,
                                  void *out, void *stream, unsigned parts);

struct moe_dist_layer {
  moe_context *ctx;
  moe_parallel_mode mode;
  int rank, world, T;
  int E, k, H;
  moe_dtype dtype;
  int first, count;        /* local experts (EP modes) */
  void *comm;              /* ncclComm_t, borrowed */
  moe_layer *layer;        /* this rank's routed (TP, EP: + shared) layer */
  moe_layer *shared_layer; /* EP_A2A: the shared expert (E = 1, k = 1) */
  int32_t *emap;           /* host [E] (EP modes) */
  moe_a2a_sizes sz;
  void *ws;                /* EP_A2A: one device allocation */
  void *buf[MOE_A2A_NBUF]; /* into ws (NULL: absent) */
};

#ifdef MOE_HAVE_NCCL
/* dist_nccl.c: the communicator's checks, the EP_A2A workspace, the
 * collectives. Each returns a status and a message in msg. */
moe_status moe_dist_nccl_check(void *comm, int rank, int world, char *msg,
                               size_t n);
moe_status moe_dist_nccl_alloc(moe_dist_layer *L, char *msg, size_t n);
void moe_dist_nccl_free(moe_dist_layer *L);
moe_status moe_dist_nccl_allreduce(moe_dist_layer *L, void *out, size_t count,
                                   void *stream, char *msg, size_t n);
/* Sends block d of (x, ids, w) in `from` to rank d and receives rank d's
 * block into `to`, for every d != rank; rows of B per block. */
moe_status moe_dist_nccl_dispatch(moe_dist_layer *L, int B, void *stream,
                                  char *msg, size_t n);
moe_status moe_dist_nccl_return(moe_dist_layer *L, int B, void *stream,
                                char *msg, size_t n);
moe_status moe_dist_nccl_comms_create(int world, const int *devices,
                                      void **comms, char *msg, size_t n);
void moe_dist_nccl_comms_destroy(int world, void **comms);

/* a2a.cu: dispatch bookkeeping and packing, then the ordered combine. */
typedef struct moe_a2a_args {
  const void *x;      /* [M][H] */
  const int32_t *ids; /* [M][k] */
  const float *w;     /* [M][k] */
  int M, B, k, H, E, world, rank;
  size_t elem; /* bytes of one x element (2: bf16/f16, 4: f32) */
  int32_t *pos, *src, *count;
  void *send_x, *recv_x;
  int32_t *send_ids, *recv_ids;
  float *send_w, *recv_w;
  const void *y, *back, *shared; /* combine inputs (shared may be NULL) */
  void *out;
} moe_a2a_args;
int moe_a2a_launch_pack(moe_dtype dt, const moe_a2a_args *a, void *stream);
int moe_a2a_launch_combine(moe_dtype dt, const moe_a2a_args *a, void *stream);
/* The error string of a launcher's nonzero cudaError_t. */
const char *moe_a2a_error_string(int e);
#endif

#ifdef __cplusplus
}
#endif
#endif
