/*
 * io.h - checkpoint readers and writers: safetensors files (single and
 * sharded), Hugging Face config.json of the MoE families we know, and the
 * loader that turns one MoE layer of a checkpoint into the stacked W13/W2
 * layout the backends take. Internal: used by the CLI and the tests, not
 * installed.
 *
 * Every function that can fail returns a moe_status and fills a moe_io_error
 * with a message naming the file and, where there is one, the tensor or the
 * config field:
 *   MOE_ERR_IO                a file could not be opened, mapped or written
 *   MOE_ERR_FORMAT            a file's contents are malformed or do not fit
 *   MOE_ERR_INVALID_ARGUMENT  a bad request (NULL, layer out of range ...)
 *   MOE_ERR_UNSUPPORTED       well-formed but a feature we do not load
 *   MOE_ERR_OUT_OF_MEMORY     an allocation failed
 * Nothing is printed; on failure nothing is left allocated.
 */
#ifndef MOE_IO_H
#define MOE_IO_H

#include "moe.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moe_io_error {
  char message[1024];
} moe_io_error;

/* ---- safetensors ---- */

/* Header limit: the format's own reference reader uses 100 MB. */
#define MOE_ST_MAX_HEADER (100u * 1000u * 1000u)
#define MOE_ST_MAX_DIMS 8

typedef enum moe_st_dtype {
  MOE_ST_BOOL = 0,
  MOE_ST_U8,
  MOE_ST_I8,
  MOE_ST_U16,
  MOE_ST_I16,
  MOE_ST_F16,
  MOE_ST_BF16,
  MOE_ST_U32,
  MOE_ST_I32,
  MOE_ST_F32,
  MOE_ST_U64,
  MOE_ST_I64,
  MOE_ST_F64,
  MOE_ST_F8_E4M3,
  MOE_ST_F8_E5M2,
  MOE_ST_E8M0, /* "F8_E8M0": power-of-two scales (MX formats) */
  MOE_ST_C64,  /* complex64 */
  MOE_ST_DTYPE_COUNT
} moe_st_dtype;

const char *moe_st_dtype_name(moe_st_dtype d); /* "BF16"; NULL if bad */
size_t moe_st_dtype_size(moe_st_dtype d);      /* bytes; 0 if bad */
/* Parses "BF16" etc.; returns -1 for an unknown string. */
int moe_st_dtype_parse(const char *s);

typedef struct moe_st_tensor {
  const char *name;
  moe_st_dtype dtype;
  int ndim;
  int64_t shape[MOE_ST_MAX_DIMS];
  uint64_t numel;
  uint64_t nbytes;
  const void *data; /* inside the mapping; not necessarily aligned */
} moe_st_tensor;

typedef struct moe_st_file moe_st_file;

/* Maps and validates a whole file. */
moe_status moe_st_open(const char *path, moe_st_file **out, moe_io_error *err);
/* Validates a file image already in memory (borrowed, must outlive the
 * handle); `label` names it in messages. Used by the fuzzer. */
moe_status moe_st_open_memory(const void *buf, size_t len, const char *label,
                              moe_st_file **out, moe_io_error *err);
void moe_st_close(moe_st_file *f);
const char *moe_st_path(const moe_st_file *f);
int moe_st_count(const moe_st_file *f);
const moe_st_tensor *moe_st_tensor_at(const moe_st_file *f, int i);
const moe_st_tensor *moe_st_find(const moe_st_file *f, const char *name);
/* The "__metadata__" value of `key`, or NULL. */
const char *moe_st_metadata(const moe_st_file *f, const char *key);

/* Writer: tensors are laid out in the order given. */
typedef struct moe_st_out {
  const char *name;
  moe_st_dtype dtype;
  int ndim;
  int64_t shape[MOE_ST_MAX_DIMS];
  const void *data;
} moe_st_out;

/* Writes `path` (through a temporary file renamed into place). */
moe_status moe_st_write(const char *path, const moe_st_out *tensors, int n,
                        moe_io_error *err);

/* ---- a checkpoint directory (one file or shards with an index) ---- */

typedef struct moe_ckpt moe_ckpt;

/* Opens model.safetensors.index.json when present (shards are opened on
 * first use), else model.safetensors, else the only *.safetensors file. */
moe_status moe_ckpt_open(const char *dir, moe_ckpt **out, moe_io_error *err);
void moe_ckpt_close(moe_ckpt *c);
/* Finds a tensor. Missing: MOE_ERR_FORMAT naming the tensor and the
 * checkpoint. *file receives the path of the file holding it. */
moe_status moe_ckpt_get(moe_ckpt *c, const char *name, const moe_st_tensor **t,
                        const char **file, moe_io_error *err);
/* 1 when the checkpoint lists `name` (no file is opened). */
int moe_ckpt_has(const moe_ckpt *c, const char *name);
const char *moe_ckpt_dir(const moe_ckpt *c);

/* ---- model config ---- */

typedef enum moe_family {
  MOE_FAMILY_MIXTRAL = 0,
  MOE_FAMILY_QWEN3_MOE,
  MOE_FAMILY_DEEPSEEK_V3,
  MOE_FAMILY_NEMOTRON_H,
  MOE_FAMILY_GPT_OSS,
  MOE_FAMILY_COUNT
} moe_family;

const char *moe_family_name(moe_family f); /* "mixtral" ... */

#define MOE_CONFIG_MAX_LAYERS 4096

typedef struct moe_model_config {
  moe_family family;
  char model_type[64];
  int num_layers;
  /* The MoE layer as the library takes it (backend fields left default;
   * dtype set by the loader). */
  moe_layer_desc desc;
  int has_correction_bias; /* router has e_score_correction_bias */
  int has_router_bias;     /* router is a Linear with bias (gpt-oss) */
  int has_expert_bias;     /* w13_bias / w2_bias (gpt-oss) */
  int fp8_block[2];        /* weight_block_size of fp8 checkpoints */
  unsigned char is_moe[MOE_CONFIG_MAX_LAYERS]; /* per layer: 1 MoE */
} moe_model_config;

/* Parses config.json text; `label` names it in messages. */
moe_status moe_model_config_parse(const char *json, size_t len,
                                  const char *label, moe_model_config *cfg,
                                  moe_io_error *err);
/* Reads DIR/config.json. */
moe_status moe_model_config_load(const char *dir, moe_model_config *cfg,
                                 moe_io_error *err);
/* 1 when layer is a MoE layer, 0 otherwise (also when out of range). */
int moe_model_config_is_moe(const moe_model_config *cfg, int layer);

/* ---- one MoE layer of a checkpoint ---- */

/* Progress of a load: bytes of checkpoint tensors read so far of a total.
 * Called only when given; the library never prints. */
typedef void (*moe_progress_fn)(void *user, uint64_t done, uint64_t total,
                                const char *what);

typedef struct moe_load_options {
  moe_dtype router_dtype; /* F32 (default) or BF16 */
  moe_progress_fn progress;
  void *progress_user;
} moe_load_options;

void moe_load_options_init(moe_load_options *o);

/* Everything one MoE layer needs, owned; freed by moe_layer_bundle_free. */
typedef struct moe_layer_bundle {
  moe_model_config config;
  int layer;
  moe_layer_desc desc; /* dtype set; backend fields default */
  moe_weights weights; /* MOE_MEMORY_HOST, pointing into this bundle */
  void *router_weight; /* [E][H] router_dtype */
  moe_dtype router_dtype;
  float *router_bias;  /* [E] or NULL: logits = x R^T + b */
  uint64_t bytes_read; /* checkpoint bytes the load touched */
  /* storage (the weights' pointers point here) */
  void *w13, *w2, *shared_w13, *shared_w2;
  float *w13_bias, *w2_bias, *correction_bias;
} moe_layer_bundle;

/* Loads MoE layer `layer` of the checkpoint in `dir` with weights in
 * `dtype`. FP8 (F8_E4M3 + weight_scale_inv block scales) and MXFP4 experts
 * are dequantised. opts may be NULL. A non-MoE layer or one out of range is
 * MOE_ERR_INVALID_ARGUMENT. */
moe_status moe_checkpoint_load_layer(const char *dir, int layer,
                                     moe_dtype dtype,
                                     const moe_load_options *opts,
                                     moe_layer_bundle **out, moe_io_error *err);
void moe_layer_bundle_free(moe_layer_bundle *b);

/* ---- element decoding (dequant.c) ---- */

/* Decodes n elements of a float-like tensor starting at element `first`
 * into fp32. Supported: F32 F16 BF16 F64 F8_E4M3 F8_E5M2. */
int moe_st_is_float(moe_st_dtype d);
void moe_st_decode(const moe_st_tensor *t, uint64_t first, size_t n,
                   float *dst);
float moe_fp8_e4m3_to_f32(uint8_t v);
float moe_fp8_e5m2_to_f32(uint8_t v);
float moe_fp4_e2m1_to_f32(uint8_t nibble);

#ifdef __cplusplus
}
#endif
#endif /* MOE_IO_H */
