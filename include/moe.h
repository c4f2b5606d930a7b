/*
 * moe.h - fused Mixture-of-Experts layers for LLM inference engines.
 *
 * The only public header of the library. Everything is reached through two
 * opaque handles: a context (threads, device, last error message) and a layer
 * (one MoE layer: its shape, its weights, the backend chosen to run it).
 *
 * Conventions
 *  - Every function that can fail returns a moe_status. On failure the
 *    context keeps a detailed message (moe_last_error) naming the argument or
 *    the check that failed, and outputs are left byte-for-byte untouched.
 *  - Destroy functions accept NULL.
 *  - The library never ends the process, never prints, keeps no global
 *    mutable state, never synchronises a CUDA stream it is given, and
 *    allocates nothing per call (workspace is sized when a layer is created).
 *  - Tensors are raw pointers with contiguous rows. Expert weights are stacked
 *    row-major: W13[E_local][N1][H] and W2[E_local][H][I], N1 = 2*I for gated
 *    activations and I otherwise (the layout inference engines use).
 *  - Threads: a context and the layers made on it are used by one thread at
 *    a time (the context holds the last error message and the self-check
 *    memory; a layer owns one workspace and one CPU thread pool). Use one
 *    context per thread to run layers concurrently.
 *  - A layer lives in one memory space (moe_memory): its weights, hidden
 *    states, logits, ids, routing weights and outputs are all host pointers
 *    (CPU backends) or all CUDA device pointers (CUDA backends).
 */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 1
#define MOE_VERSION_PATCH 0
#define MOE_VERSION_NUMBER                                                     \
  (MOE_VERSION_MAJOR * 10000 + MOE_VERSION_MINOR * 100 + MOE_VERSION_PATCH)

/* Status codes. The integer values are pinned: they never change. */
typedef enum moe_status {
  MOE_OK = 0,
  MOE_ERR_INVALID_ARGUMENT = 1, /* a NULL, a size or an enum out of range */
  MOE_ERR_UNSUPPORTED = 2,      /* no backend (or not the one asked) serves */
  MOE_ERR_OUT_OF_MEMORY = 3,    /* host or device allocation failed */
  MOE_ERR_DEVICE = 4,           /* a CUDA runtime call failed */
  MOE_ERR_NO_KERNEL_IMAGE = 5,  /* the binary has no kernel for this GPU */
  MOE_ERR_SELF_CHECK = 6,       /* a backend disagreed with the reference */
  MOE_ERR_IO = 7,               /* a file could not be opened or read */
  MOE_ERR_FORMAT = 8,           /* a file's contents are malformed */
  MOE_ERR_INTERNAL = 9          /* a bug in the library; please report */
} moe_status;

/* Element types of weights, hidden states and outputs. */
typedef enum moe_dtype {
  MOE_DTYPE_F32 = 0,
  MOE_DTYPE_F16 = 1,
  MOE_DTYPE_BF16 = 2
} moe_dtype;
#define MOE_DTYPE_COUNT 3

/*
 * Activations. With gated = 1 the first GEMM yields a gate and an up half and
 * the activation is act(gate) * up; with gated = 0 it is act(h).
 *  SILU        x * sigmoid(x); gated rows: gate = rows [0, I), up = [I, 2I).
 *  GELU        exact (erf) GELU; gated rows as SILU.
 *  RELU2       relu(x)^2; non-gated only (Nemotron-H).
 *  SWIGLU_OAI  gated only, rows interleaved: row 2j = gate j, 2j+1 = up j;
 *              gate = min(gate, limit), up = clamp(up, -limit, limit),
 *              out = (up + 1) * gate * sigmoid(alpha * gate)   (gpt-oss).
 */
typedef enum moe_activation {
  MOE_ACT_SILU = 0,
  MOE_ACT_GELU = 1,
  MOE_ACT_RELU2 = 2,
  MOE_ACT_SWIGLU_OAI = 3
} moe_activation;
#define MOE_ACT_COUNT 4

/* How router logits become expert scores. */
typedef enum moe_scoring {
  MOE_SCORING_SOFTMAX = 0, /* softmax over all E, top-k of the softmax */
  MOE_SCORING_SIGMOID = 1  /* sigmoid, top-k of sigmoid + correction bias */
} moe_scoring;

/* Where a layer's tensors live. */
typedef enum moe_memory { MOE_MEMORY_HOST = 0, MOE_MEMORY_CUDA = 1 } moe_memory;

/*
 * Routing. For each token: scores s = softmax(logits) or sigmoid(logits);
 * selection scores c = s + correction_bias (bias only with SIGMOID, when
 * given). With n_group > 1, experts form n_group equal groups; a group's
 * score is the sum of its two best c when a correction bias is given and its
 * best c otherwise; only the topk_group best groups stay eligible. The top_k
 * experts by c are chosen (ties: lower index first), their weights are s
 * (never the bias), divided by their sum when renormalize is set, then
 * multiplied by routed_scaling_factor.
 * Non-finite logits (NaN, +Inf, -Inf) count as -Inf: such an expert is
 * chosen only when fewer than top_k are finite, and then with weight 0.
 */
typedef struct moe_routing {
  moe_scoring scoring;
  int n_group;                 /* 0 or 1: no grouping */
  int topk_group;              /* groups kept when n_group > 1 */
  int renormalize;             /* 1: chosen weights sum to 1 */
  float routed_scaling_factor; /* multiplies routed weights; 0 means 1 */
} moe_routing;

/* One MoE layer. Start from moe_layer_desc_init(), then set fields. */
typedef struct moe_layer_desc {
  int num_experts;  /* E: global expert count (router width) */
  int top_k;        /* experts per token, 1..E */
  int hidden;       /* H */
  int intermediate; /* I: one expert's intermediate size */
  moe_activation activation;
  int gated;          /* 1: act(gate) * up; 0: act(h) */
  float swiglu_alpha; /* SWIGLU_OAI only; 0 means 1.702 */
  float swiglu_limit; /* SWIGLU_OAI only; 0 means 7.0 */
  moe_dtype dtype;    /* of weights, hidden states and outputs */
  moe_routing routing;
  int shared_intermediate; /* 0: no shared expert; else its I */
  /* Expert parallelism: NULL (all experts local) or E entries, each the
   * expert's index in the local weight stack or -1 when it lives elsewhere.
   * Non-local experts contribute nothing. Copied at layer creation. */
  const int32_t *expert_map;
  int max_tokens; /* tokens per call the workspace is sized for; 0: 4096.
                     Larger calls are processed in chunks. */
  /* Backend choice: NULL or "" chooses automatically (MOE_BACKEND in the
   * environment is read when this is NULL). A named backend that cannot
   * serve is an error unless allow_fallback is set. */
  const char *backend;
  int allow_fallback;
  int self_check; /* 1 (default): run the plan on a tiny problem first */
} moe_layer_desc;

/* A layer's weights. All pointers live in `memory`; optional ones may be
 * NULL. The layer borrows them: keep them alive and unchanged while the layer
 * exists. E_local = number of experts mapped here (E without expert_map). */
typedef struct moe_weights {
  moe_memory memory;
  const void *w13;              /* [E_local][N1][H], dtype */
  const void *w2;               /* [E_local][H][I], dtype */
  const float *w13_bias;        /* optional [E_local][N1] (gpt-oss) */
  const float *w2_bias;         /* optional [E_local][H] */
  const float *correction_bias; /* optional [E], SIGMOID scoring only */
  const void *shared_w13;       /* [N1s][H] when shared_intermediate > 0 */
  const void *shared_w2;        /* [H][Is] */
} moe_weights;

typedef struct moe_context moe_context;
typedef struct moe_layer moe_layer;
typedef struct moe_plan moe_plan;

typedef struct moe_context_options {
  int num_threads; /* CPU threads; 0: all cores */
  int cuda_device; /* CUDA device ordinal; default 0 */
  /* What-if device for planning, e.g. "sm_121" or "cpu"; NULL reads the
   * MOE_DEVICE environment variable, "" means the real machine. */
  const char *device_override;
  int ref_double_accumulation; /* cpu-ref accumulates in double (tests) */
  int strict_inputs; /* host layers: non-finite logits and out-of-range
                        caller ids are MOE_ERR_INVALID_ARGUMENT */
} moe_context_options;

/* ---- version and build ---- */
const char *moe_version_string(void); /* "0.1.0" */
int moe_version_number(void);         /* MOE_VERSION_NUMBER of the library */
/* Backends and CUDA archs compiled in, one line each, e.g.
 * "backends: cpu-avx512 cpu-avx2 cpu-ref cuda-mma\ncuda-archs: 80 86 ..." */
const char *moe_build_info(void);
const char *moe_status_string(moe_status s); /* "MOE_ERR_UNSUPPORTED" ... */
const char *moe_dtype_name(moe_dtype d);     /* "bf16"; NULL if bad */
const char *moe_activation_name(moe_activation a); /* "relu2"; NULL if bad */

/* ---- context ---- */
void moe_context_options_init(moe_context_options *opts);
/* opts may be NULL (defaults). */
moe_status moe_context_create(const moe_context_options *opts,
                              moe_context **out);
void moe_context_destroy(moe_context *ctx);
/* The message of the last failed call on this context ("" if none). */
const char *moe_last_error(const moe_context *ctx);
/* Human-readable description of the machine (devices, CPU features). */
const char *moe_context_device_info(const moe_context *ctx);
/* The what-if devices device_override accepts besides "cpu": their count
 * and the i-th name ("sm_75" ... "sm_121"; NULL when i is out of range). */
int moe_known_device_count(void);
const char *moe_known_device_name(int i);

/* ---- layer ---- */
void moe_layer_desc_init(moe_layer_desc *desc);
/* Validates desc, plans a backend, self-checks it and prepares the weights
 * (on Hopper, a layer with 256 MB of expert weights or more also times
 * its two GEMM paths, 10-250 ms, once per shape and device).
 * Fails with MOE_ERR_INVALID_ARGUMENT on a bad descriptor, with
 * MOE_ERR_UNSUPPORTED when no backend can serve (the message holds the
 * plan's explanation). */
moe_status moe_layer_create(moe_context *ctx, const moe_layer_desc *desc,
                            const moe_weights *weights, moe_layer **out);
void moe_layer_destroy(moe_layer *layer);
/* Name of the backend that runs this layer, e.g. "cuda-mma". */
const char *moe_layer_backend(const moe_layer *layer);
/* The plan the layer was made with, self-check outcomes included; the
 * chosen row also says what its backend chose at creation (cuda-sm90: the
 * rows per expert from which its wgmma GEMMs serve, which a layer with
 * large experts measures on the device when it is created, once per
 * shape). */
const moe_plan *moe_layer_plan(const moe_layer *layer);

/* Routing only: logits [M][E] float32 -> topk_ids [M][k], topk_weights
 * [M][k]. Ids are global expert ids. */
moe_status moe_route(moe_layer *layer, const float *logits, int num_tokens,
                     int32_t *topk_ids, float *topk_weights, void *stream);

/* The whole layer: x [M][H] (dtype), logits [M][E] float32 -> out [M][H]
 * (dtype) = sum_j w[t,j] * expert_j(x[t]) + shared(x[t]). M = 0 succeeds and
 * writes nothing. stream: a cudaStream_t for CUDA layers, ignored on host.
 * A CUDA layer's calls share its workspace: calls on different streams must
 * be ordered by the caller (events), or use one layer per stream. */
moe_status moe_forward(moe_layer *layer, const void *x, const float *logits,
                       int num_tokens, void *out, void *stream);

/* As moe_forward with routing done by the caller: topk_ids [M][k] (global
 * ids; ids of experts not on this device contribute nothing) and
 * topk_weights [M][k], used as given (no renormalisation or scaling). */
moe_status moe_forward_routed(moe_layer *layer, const void *x,
                              const int32_t *topk_ids,
                              const float *topk_weights, int num_tokens,
                              void *out, void *stream);

/* ---- planning and its explanation ---- */
typedef enum moe_verdict {
  MOE_VERDICT_CHOSEN = 0,
  MOE_VERDICT_REJECTED = 1,     /* its support rows or a quirk exclude it */
  MOE_VERDICT_FAILED_CHECK = 2, /* self-check failed (error or mismatch) */
  MOE_VERDICT_NOT_TRIED = 3     /* a better backend was chosen first */
} moe_verdict;

typedef struct moe_plan_entry {
  const char *backend;
  moe_verdict verdict;
  const char *reason; /* why (never NULL) */
} moe_plan_entry;

/* Plans without weights: which backend would serve desc for tensors in
 * `memory` on the context's (possibly what-if) device. With desc->self_check
 * set, the choice is self-checked on a tiny problem as moe_layer_create
 * does (failures show as MOE_VERDICT_FAILED_CHECK rows and the next backend
 * is taken); a what-if GPU cannot run kernels, so its choice is reported
 * unchecked. Returns MOE_ERR_UNSUPPORTED when no backend (or not the one
 * requested) can serve; *out is set then too, so that its explanation can be
 * read, and must be destroyed. */
moe_status moe_plan_create(moe_context *ctx, const moe_layer_desc *desc,
                           moe_memory memory, moe_plan **out);
void moe_plan_destroy(moe_plan *plan);
/* Chosen backend name, or NULL when none can serve. */
const char *moe_plan_backend(const moe_plan *plan);
int moe_plan_num_entries(const moe_plan *plan);
moe_status moe_plan_entry_get(const moe_plan *plan, int i, moe_plan_entry *out);
/* 1 when an explicitly requested backend could not serve and another was
 * used because allow_fallback was set. */
int moe_plan_fell_back(const moe_plan *plan);
/* Writes the decision table as text; returns the length it needs (like
 * snprintf). */
size_t moe_plan_explain(const moe_plan *plan, char *buf, size_t size);

/* ---- multi-GPU (NCCL) ----
 *
 * One moe_dist_layer per rank (one GPU each). The caller owns the NCCL
 * communicator: it creates it (ncclCommInitRank with an ncclUniqueId it
 * distributes, one process per GPU, as inference engines do) and passes it
 * as a void * (an ncclComm_t); this header does not need nccl.h. The calling
 * thread's current CUDA device must be the communicator's device when a
 * rank's layer is created and run. Every rank calls moe_dist_forward for
 * every batch (it holds collectives). Built without NCCL, the functions
 * below check their arguments and then fail with MOE_ERR_UNSUPPORTED,
 * except the host helpers (expert ranges, weight slicing), which always
 * work. See docs/multi-gpu.md. */

typedef enum moe_parallel_mode {
  /* Tensor parallel: each rank holds I/world of every expert's intermediate
   * dimension (and of the shared expert's); partial outputs are summed with
   * ncclAllReduce. Every rank passes the same tokens. */
  MOE_PARALLEL_TP = 0,
  /* Expert parallel, tokens replicated: each rank holds a contiguous block
   * of experts (moe_dist_expert_range); every rank passes the same tokens,
   * partial outputs are summed with ncclAllReduce. */
  MOE_PARALLEL_EP_REPLICATED = 1,
  /* Expert parallel, dispatch/combine: each rank passes its own tokens;
   * each token row is sent once to every rank that owns one of its experts
   * (grouped ncclSend/ncclRecv into fixed-size buffers), computed there and
   * sent back; no host synchronisation. */
  MOE_PARALLEL_EP_A2A = 2
} moe_parallel_mode;
#define MOE_PARALLEL_MODE_COUNT 3

typedef struct moe_dist_layer moe_dist_layer;

/* 1 when this build has NCCL (the dist layer can run), 0 otherwise. */
int moe_dist_available(void);
/* "tp", "ep", "ep-a2a"; NULL for an unknown value. */
const char *moe_parallel_mode_name(moe_parallel_mode mode);

/* The experts rank owns in the EP modes: [*first, *first + *count), the
 * E experts split into world contiguous blocks whose sizes differ by at
 * most one (the lower ranks get the larger blocks). MOE_ERR_INVALID_ARGUMENT
 * when world < 1, rank not in [0, world) or num_experts < world. */
moe_status moe_dist_expert_range(int num_experts, int rank, int world,
                                 int *first, int *count);

/* The tensors of a layer the TP slicer knows. */
typedef enum moe_dist_tensor {
  MOE_DIST_W13 = 0,        /* [E][N1][H] dtype -> [E][N1/world][H] */
  MOE_DIST_W2 = 1,         /* [E][H][I] dtype -> [E][H][I/world] */
  MOE_DIST_W13_BIAS = 2,   /* [E][N1] float -> [E][N1/world] */
  MOE_DIST_SHARED_W13 = 3, /* [N1s][H] dtype -> [N1s/world][H] */
  MOE_DIST_SHARED_W2 = 4   /* [H][Is] dtype -> [H][Is/world] */
} moe_dist_tensor;

/* Host memory: copies rank's TP slice of the full tensor `which` of the
 * layer desc (full E, full I) from `full` to `part`. Gated layers slice the
 * gate and the up half alike (rows [r*I/w, (r+1)*I/w) of each); swiglu-oai
 * keeps its interleaved (gate, up) row pairs together; plain layers slice
 * the rows. MOE_ERR_INVALID_ARGUMENT on NULLs, a bad desc, rank/world out of
 * range, or an intermediate size (I, or Is for the shared tensors) that
 * world does not divide; part is untouched then. */
moe_status moe_dist_tp_slice(const moe_layer_desc *desc, moe_dist_tensor which,
                             int rank, int world, const void *full, void *part);

/*
 * Creates rank's part of the layer desc (global shape: all E experts, the
 * full I; expert_map must be NULL: the mode decides placement).
 * weights_for_this_rank, in CUDA memory:
 *  TP:   moe_dist_tp_slice of w13, w2, w13_bias, shared_w13, shared_w2;
 *        w2_bias full [E][H] (added on rank 0 only); correction_bias [E].
 *  EP_*: the experts of moe_dist_expert_range stacked [count][N1][H],
 *        [count][H][I], biases [count][...]; the shared expert whole
 *        (EP_REPLICATED runs it on rank 0 only, EP_A2A on every rank for
 *        its own tokens); correction_bias [E].
 * max_tokens_per_rank bounds num_tokens per call in EP_A2A and sizes its
 * transfer buffers (>= 1; the other modes accept any count).
 * Fails with MOE_ERR_INVALID_ARGUMENT (NULLs, rank/world out of range,
 * the communicator's rank, size or device disagreeing, a bad desc, I not
 * divisible by world in TP, fewer experts than ranks in EP),
 * MOE_ERR_UNSUPPORTED (no NCCL in this build, or no backend for the rank's
 * layer), MOE_ERR_OUT_OF_MEMORY, MOE_ERR_DEVICE (a CUDA or NCCL call).
 * Creation communicates nothing: ranks may create their layers at any time.
 * The layer borrows the communicator and the weights: keep them alive until
 * moe_dist_layer_destroy. Errors of the rank's own layers (planning,
 * self-check) come back with their status, the message naming the rank.
 */
moe_status moe_dist_layer_create(moe_context *ctx, const moe_layer_desc *desc,
                                 const moe_weights *weights_for_this_rank,
                                 void *nccl_comm, int rank, int world,
                                 moe_parallel_mode mode,
                                 int max_tokens_per_rank, moe_dist_layer **out);
void moe_dist_layer_destroy(moe_dist_layer *layer);

/*
 * One forward on this rank: x [M][H] (dtype), logits [M][E] float32 ->
 * out [M][H] (dtype), all CUDA device pointers; stream is this rank's
 * cudaStream_t. TP and EP_REPLICATED: every rank passes the same x, logits
 * and M, and every rank gets the whole output. EP_A2A: each rank passes its
 * own tokens (M <= max_tokens_per_rank) and gets their outputs; tokens_bound
 * is a bound on M of every rank in this call and must be the same on all
 * ranks (it sizes the transfers; 0 means max_tokens_per_rank); ignored by
 * the other modes. Stream-ordered, no allocation, no host synchronisation,
 * capturable in a CUDA graph. Fails with MOE_ERR_INVALID_ARGUMENT (NULLs,
 * x or out not 16-byte aligned, M < 0, M or tokens_bound past the bounds;
 * out untouched) or MOE_ERR_DEVICE (a launch or NCCL call failed; as with
 * any collective, the other ranks may then wait on this one).
 */
moe_status moe_dist_forward(moe_dist_layer *layer, const void *x,
                            const float *logits, int num_tokens,
                            int tokens_bound, void *out, void *stream);

/* Single-process helper (tests, the CLI): one communicator per GPU of
 * devices[0..world) (NULL: 0 .. world-1) with ncclCommInitAll; comms[i]
 * receives rank i's ncclComm_t. Run each rank from its own thread (with
 * its device current): collectives from one thread would wait on each
 * other. ctx (may be NULL) receives the message on failure:
 * MOE_ERR_INVALID_ARGUMENT, MOE_ERR_UNSUPPORTED (no NCCL), MOE_ERR_DEVICE. */
moe_status moe_dist_comms_create(moe_context *ctx, int world,
                                 const int *devices, void **comms);
void moe_dist_comms_destroy(int world, void **comms);

#ifdef __cplusplus
}
#endif
#endif /* MOE_H */
