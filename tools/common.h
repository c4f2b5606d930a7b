/* common.h - what the CLI's subcommands share: random problems in host or
 * CUDA memory, timing, the machine's measured read bandwidth. */
#ifndef MOE_CLI_COMMON_H
#define MOE_CLI_COMMON_H

#include "backend.h"
#include "presets.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cli_problem {
  moe_layer_desc desc;
  moe_memory memory;
  const moe_memops *ops; /* of `memory` */
  /* Host copies (always) and, for CUDA memory, device copies. */
  void *h[5]; /* w13, w2, shared_w13, shared_w2, correction_bias */
  void *d[5];
  size_t bytes[5];
} cli_problem;

/* Random weights for desc (values ~ U(-2,2)/sqrt(fan_in)). Returns 0 and a
 * message on failure. */
int cli_problem_make(cli_problem *p, const moe_layer_desc *desc,
                     moe_memory memory, uint64_t seed, char *err, size_t n);
void cli_problem_free(cli_problem *p);
moe_weights cli_problem_weights(const cli_problem *p, int host);
/* Bytes of one expert's weights. */
size_t cli_expert_bytes(const moe_layer_desc *d);

/* Tensors for one call (host copies; device copies when CUDA). */
typedef struct cli_batch {
  int M;
  void *hx, *hout;
  float *hlogits;
  void *dx, *dout, *dlogits;
} cli_batch;
int cli_batch_make(cli_batch *b, const cli_problem *p, int M, uint64_t seed,
                   char *err, size_t n);
void cli_batch_free(cli_batch *b, const cli_problem *p);

/* nb batches of M tokens with different random logits: timing rotates over
 * them so that repeated calls touch different experts and the caches do not
 * flatter small batches. */
int cli_batches_make(cli_batch *b, int nb, const cli_problem *p, int M,
                     uint64_t seed, char *err, size_t n);
void cli_batches_free(cli_batch *b, int nb, const cli_problem *p);
/* Median wall time of moe_forward (synchronised) over the rotating batches:
 * at least 3 calls and min_seconds of timed calls. Host caches are evicted
 * before each call (weights come from memory, as in a real decode step). */
moe_status cli_time_forward(moe_layer *L, const cli_problem *p, cli_batch *b,
                            int nb, double min_seconds, double *median_us);
void cli_fill_random(void *p, size_t count, moe_dtype dt, float lo, float hi,
                     uint64_t seed);
/* Router logits: standard normal. Uniform logits wide enough to saturate a
 * sigmoid leave the correction bias to decide, and crowd every token onto
 * the same few experts; normal ones spread as a trained router does. */
void cli_fill_logits(float *p, size_t count, uint64_t seed);
int cli_host_threads(void); /* online cores */
double cli_now(void);       /* seconds, monotonic */
/* Measured read bandwidth of this host in GB/s (multithreaded sum over a
 * buffer far larger than the caches). */
double cli_host_read_bandwidth(int threads);
/* Median of n doubles (sorts in place). */
double cli_median(double *v, int n);
/* Host memory available, bytes (0 unknown). */
size_t cli_mem_available(void);
/* Relative error of two dtype arrays. */
double cli_rel_error(const void *a, const void *b, size_t n, moe_dtype dt);
/* The CUDA memops when this build has them and a GPU is present. */
const moe_memops *cli_cuda_memops(moe_context *ctx);
/* Experts the batch's tokens are routed to (routes with cpu-ref). */
int cli_touched_experts(moe_context *ctx, const cli_problem *p,
                        const cli_batch *b);
/* 1 when the context's device is a GPU. */
int cli_has_gpu(const moe_context *ctx);
/* Parses "1,16,256" into v (at most max); returns the count. */
int cli_parse_ints(const char *s, int *v, int max);

#endif
