/*
 * tune_sm90.h - the crossover between cuda-sm90's two paths (cuda-mma's
 * kernels below it, the wgmma GEMMs from it), measured at layer creation
 * for the layer's own shape (tune_sm90.cu).
 */
#ifndef MOE_TUNE_SM90_H
#define MOE_TUNE_SM90_H

#include "../backend.h"

#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs one call of the layer on one path (wgmma 1: the wgmma GEMMs, 0:
 * cuda-mma's kernels) on stream st. */
typedef moe_status (*sm90_run_fn)(void *layer, int wgmma, const moe_batch *b,
                                  cudaStream_t st, char *msg, size_t n);

/* The rows per expert (M * k / E) the measurement reaches for shape s (its
 * largest candidate at most max_tokens allows), or 0 when the layer is not
 * measured: too small to matter (expert weights under SM90_TUNE_MIN_BYTES,
 * as the self-check's layers are) or too few tokens for the first
 * candidate. The embedded cuda-mma layer is sized for these rows while the
 * measurement runs. */
int sm90_tune_rows(const moe_shape *s);

/* Times both paths at candidate rows per expert, on a private stream
 * (synchronised; nothing of the caller's is touched), and sets *rows to
 * the smallest candidate from which the wgmma path is faster at every
 * candidate measured after it, and note to what was measured (or that an
 * earlier layer of the same shape on the same device was, whose result is
 * reused). Nothing is measured (MOE_OK, *rows and note untouched) when
 * sm90_tune_rows(s) is 0. A failure leaves *rows alone and returns the
 * error with a message; MOE_ERR_OUT_OF_MEMORY leaves the device usable. */
moe_status sm90_tune_crossover(const moe_shape *s, sm90_run_fn run, void *layer,
                               double *rows, char *note, size_t nn, char *msg,
                               size_t n);

#define SM90_TUNE_MIN_BYTES (256LL << 20)
#define SM90_TUNE_NOTE 160

#ifdef __cplusplus
}
#endif
#endif
