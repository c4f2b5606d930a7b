/*
 * loader.h - the primitives the per-family tensor maps (families.c) use to
 * read one layer (layer_load.c). A family map is run twice: first in check
 * mode (every tensor is looked up and its dtype and shape checked, nothing
 * is written, bytes are counted), then, once all buffers are allocated, in
 * copy mode. So a checkpoint that does not fit fails before anything large
 * is allocated, and a failure never leaves a partial layer.
 */
#ifndef MOE_IO_LOADER_H
#define MOE_IO_LOADER_H

#include "io/io.h"

typedef struct moe_loader {
  moe_ckpt *ckpt;
  const moe_model_config *cfg;
  int layer;
  int copy;        /* 0: check mode, 1: copy mode */
  moe_dtype dtype; /* of expert weights */
  moe_dtype router_dtype;
  uint64_t total, done; /* checkpoint bytes */
  moe_progress_fn progress;
  void *progress_user;
  moe_io_error *err;
  float *row; /* scratch: one decoded source row */
  size_t row_cap;
} moe_loader;

/* Destinations, written in copy mode only. */
typedef struct moe_dst {
  void *base;      /* buffer */
  moe_dtype dtype; /* element type of base */
  size_t offset;   /* first element written */
} moe_dst;

/* Tensor `name` of logical shape [rows][cols] (F32/F16/BF16/F64, or
 * F8_E4M3/F8_E5M2 with a block-scale tensor `name`_scale_inv) into dst
 * elements offset + r*cols + c. */
moe_status moe_ld_matrix(moe_loader *L, const char *name, int64_t rows,
                         int64_t cols, moe_dst dst);
/* Tensor `name` of shape [E][rows][cols] stored transposed per expert:
 * dst element offset + (e*cols + c)*rows + r = src[e][r][c]. */
moe_status moe_ld_stacked_transposed(moe_loader *L, const char *name, int64_t E,
                                     int64_t rows, int64_t cols, moe_dst dst);
/* MXFP4: `prefix`_blocks U8 [E][rows][cols/32][16] and `prefix`_scales U8
 * [E][rows][cols/32] (E8M0, bias 127) into dst [E][rows][cols]. */
moe_status moe_ld_mxfp4(moe_loader *L, const char *prefix, int64_t E,
                        int64_t rows, int64_t cols, moe_dst dst);
/* A float vector or matrix [n0] (n1 == 0) or [n0][n1] into fp32. */
moe_status moe_ld_vector(moe_loader *L, const char *name, int64_t n0,
                         int64_t n1, float *dst);

/* The family's tensor map for one layer (families.c). */
typedef struct moe_layer_bufs {
  void *w13, *w2, *shared_w13, *shared_w2, *router;
  float *w13_bias, *w2_bias, *correction_bias, *router_bias;
} moe_layer_bufs;

moe_status moe_family_map_layer(moe_loader *L, const moe_layer_bufs *b);

#endif
