/*
 * layer_load.c - loads one MoE layer of a checkpoint: config, tensor checks,
 * allocation, conversion to the requested dtype (dequantising FP8 block
 * scaled and MXFP4 weights), in two passes over the family's tensor map
 * (see loader.h). Any failure frees everything.
 */
#define _POSIX_C_SOURCE 200809L
#include "backend.h"
#include "io/loader.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static moe_status fail(moe_io_error *err, moe_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

static void shape_str(const moe_st_tensor *t, char *buf, size_t n) {
  size_t at = 0;
  at += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->ndim && at < n; i++)
    at += (size_t)snprintf(buf + at, n - at, i ? ", %lld" : "%lld",
                           (long long)t->shape[i]);
  if (at < n) snprintf(buf + at, n - at, "]");
}

/* Looks `name` up and checks its dims against want[0..nd). */
static moe_status get_checked(moe_loader *L, const char *name, int nd,
                              const int64_t *want, int need_float,
                              const moe_st_tensor **out, const char **file) {
  moe_status st = moe_ckpt_get(L->ckpt, name, out, file, L->err);
  if (st) return st;
  const moe_st_tensor *t = *out;
  int ok = t->ndim == nd;
  for (int i = 0; ok && i < nd; i++)
    ok = t->shape[i] == want[i];
  if (!ok) {
    char got[128], exp[128];
    size_t at = (size_t)snprintf(exp, sizeof exp, "[");
    for (int i = 0; i < nd && at < sizeof exp; i++)
      at += (size_t)snprintf(exp + at, sizeof exp - at, i ? ", %lld" : "%lld",
                             (long long)want[i]);
    if (at < sizeof exp) snprintf(exp + at, sizeof exp - at, "]");
    shape_str(t, got, sizeof got);
    return fail(L->err, MOE_ERR_FORMAT,
                "%s: tensor %s: shape %s, expected %s (%s layer %d)", *file,
                name, got, exp, moe_family_name(L->cfg->family), L->layer);
  }
  if (need_float == 1 && !moe_st_is_float(t->dtype))
    return fail(L->err, MOE_ERR_FORMAT,
                "%s: tensor %s: dtype %s is not a float type", *file, name,
                moe_st_dtype_name(t->dtype));
  if (need_float == 2 && t->dtype != MOE_ST_U8 && t->dtype != MOE_ST_E8M0)
    return fail(L->err, MOE_ERR_FORMAT, "%s: tensor %s: dtype %s, expected U8",
                *file, name, moe_st_dtype_name(t->dtype));
  return MOE_OK;
}

/* 1 when a checkpoint element type is the library's dtype bit for bit. */
static int st_same_type(moe_st_dtype s, moe_dtype d) {
  return (s == MOE_ST_F32 && d == MOE_DTYPE_F32) ||
         (s == MOE_ST_BF16 && d == MOE_DTYPE_BF16) ||
         (s == MOE_ST_F16 && d == MOE_DTYPE_F16);
}

static int row_scratch(moe_loader *L, size_t n) {
  if (n <= L->row_cap) return 1;
  float *p = realloc(L->row, n * sizeof *p);
  if (!p) return 0;
  L->row = p;
  L->row_cap = n;
  return 1;
}

static void tick(moe_loader *L, uint64_t bytes, const char *what) {
  if (!L->copy) {
    L->total += bytes;
    return;
  }
  L->done += bytes;
  if (L->progress) L->progress(L->progress_user, L->done, L->total, what);
}

moe_status moe_ld_matrix(moe_loader *L, const char *name, int64_t rows,
                         int64_t cols, moe_dst dst) {
  const moe_st_tensor *t, *s = NULL;
  const char *file, *sfile = NULL;
  int64_t want[2] = {rows, cols};
  moe_status st = get_checked(L, name, 2, want, 1, &t, &file);
  if (st) return st;
  int64_t bm = L->cfg->fp8_block[0], bn = L->cfg->fp8_block[1];
  if (t->dtype == MOE_ST_F8_E4M3 || t->dtype == MOE_ST_F8_E5M2) {
    char sname[300];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    if (!moe_ckpt_has(L->ckpt, sname))
      return fail(L->err, MOE_ERR_FORMAT,
                  "%s: tensor %s: %s weights without block scales %s", file,
                  name, moe_st_dtype_name(t->dtype), sname);
    int64_t sw[2] = {(rows + bm - 1) / bm, (cols + bn - 1) / bn};
    st = get_checked(L, sname, 2, sw, 1, &s, &sfile);
    if (st) return st;
  }
  tick(L, t->nbytes + (s ? s->nbytes : 0), name);
  if (!L->copy) return MOE_OK;
  if (!row_scratch(L, (size_t)cols + (s ? (size_t)s->shape[1] : 0)))
    return fail(L->err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  if (!s && st_same_type(t->dtype, dst.dtype)) { /* plain copy */
    memcpy((char *)dst.base + dst.offset * moe_dtype_size(dst.dtype), t->data,
           (size_t)t->nbytes);
    return MOE_OK;
  }
  float *row = L->row, *srow = L->row + cols;
  for (int64_t r = 0; r < rows; r++) {
    moe_st_decode(t, (uint64_t)(r * cols), (size_t)cols, row);
    if (s) {
      moe_st_decode(s, (uint64_t)((r / bm) * s->shape[1]), (size_t)s->shape[1],
                    srow);
      for (int64_t c = 0; c < cols; c++)
        row[c] *= srow[c / bn];
    }
    size_t o = dst.offset + (size_t)(r * cols);
    for (int64_t c = 0; c < cols; c++)
      moe_store_elem(dst.base, o + (size_t)c, dst.dtype, row[c]);
  }
  return MOE_OK;
}

moe_status moe_ld_stacked_transposed(moe_loader *L, const char *name, int64_t E,
                                     int64_t rows, int64_t cols, moe_dst dst) {
  const moe_st_tensor *t;
  const char *file;
  int64_t want[3] = {E, rows, cols};
  moe_status st = get_checked(L, name, 3, want, 1, &t, &file);
  if (st) return st;
  if (t->dtype == MOE_ST_F8_E4M3 || t->dtype == MOE_ST_F8_E5M2)
    return fail(L->err, MOE_ERR_UNSUPPORTED,
                "%s: tensor %s: 8-bit stacked experts are not supported", file,
                name);
  tick(L, t->nbytes, name);
  if (!L->copy) return MOE_OK;
  if (!row_scratch(L, (size_t)cols))
    return fail(L->err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  for (int64_t e = 0; e < E; e++)
    for (int64_t r = 0; r < rows; r++) {
      moe_st_decode(t, (uint64_t)((e * rows + r) * cols), (size_t)cols, L->row);
      size_t o = dst.offset + (size_t)(e * cols * rows + r);
      for (int64_t c = 0; c < cols; c++)
        moe_store_elem(dst.base, o + (size_t)(c * rows), dst.dtype, L->row[c]);
    }
  return MOE_OK;
}

moe_status moe_ld_mxfp4(moe_loader *L, const char *prefix, int64_t E,
                        int64_t rows, int64_t cols, moe_dst dst) {
  char bname[300], sname[300];
  snprintf(bname, sizeof bname, "%s_blocks", prefix);
  snprintf(sname, sizeof sname, "%s_scales", prefix);
  if (!moe_ckpt_has(L->ckpt, bname))
    return fail(L->err, MOE_ERR_FORMAT,
                "%s: tensor %s: missing from the checkpoint (nor %s)",
                moe_ckpt_dir(L->ckpt), prefix, bname);
  if (cols % 32)
    return fail(L->err, MOE_ERR_FORMAT,
                "%s: tensor %s: MXFP4 needs a multiple of 32 columns, not "
                "%lld",
                moe_ckpt_dir(L->ckpt), bname, (long long)cols);
  const moe_st_tensor *b, *s;
  const char *file;
  int64_t nb = cols / 32;
  int64_t bw[4] = {E, rows, nb, 16}, sw[3] = {E, rows, nb};
  moe_status st = get_checked(L, bname, 4, bw, 2, &b, &file);
  if (!st) st = get_checked(L, sname, 3, sw, 2, &s, &file);
  if (st) return st;
  tick(L, b->nbytes + s->nbytes, prefix);
  if (!L->copy) return MOE_OK;
  const uint8_t *bp = b->data, *sp = s->data;
  for (int64_t r = 0; r < E * rows; r++) {
    size_t o = dst.offset + (size_t)(r * cols);
    for (int64_t k = 0; k < nb; k++) {
      float scale = ldexpf(1.0f, (int)sp[r * nb + k] - 127);
      const uint8_t *blk = bp + (r * nb + k) * 16;
      for (int j = 0; j < 16; j++) {
        size_t c = (size_t)(k * 32 + 2 * j);
        moe_store_elem(dst.base, o + c, dst.dtype,
                       moe_fp4_e2m1_to_f32(blk[j] & 15) * scale);
        moe_store_elem(dst.base, o + c + 1, dst.dtype,
                       moe_fp4_e2m1_to_f32(blk[j] >> 4) * scale);
      }
    }
  }
  return MOE_OK;
}

moe_status moe_ld_vector(moe_loader *L, const char *name, int64_t n0,
                         int64_t n1, float *dst) {
  const moe_st_tensor *t;
  const char *file;
  int64_t want[2] = {n0, n1};
  moe_status st = get_checked(L, name, n1 ? 2 : 1, want, 1, &t, &file);
  if (st) return st;
  tick(L, t->nbytes, name);
  if (L->copy) moe_st_decode(t, 0, (size_t)t->numel, dst);
  return MOE_OK;
}

void moe_load_options_init(moe_load_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->router_dtype = MOE_DTYPE_F32;
}

void moe_layer_bundle_free(moe_layer_bundle *b) {
  if (!b) return;
  free(b->w13);
  free(b->w2);
  free(b->shared_w13);
  free(b->shared_w2);
  free(b->w13_bias);
  free(b->w2_bias);
  free(b->correction_bias);
  free(b->router_weight);
  free(b->router_bias);
  free(b);
}

/* Allocates every buffer the layer needs; 0 on failure. */
static int alloc_bufs(moe_layer_bundle *b) {
  const moe_model_config *c = &b->config;
  const moe_layer_desc *d = &c->desc;
  size_t es = moe_dtype_size(b->desc.dtype);
  size_t E = (size_t)d->num_experts, H = (size_t)d->hidden;
  size_t I = (size_t)d->intermediate, Is = (size_t)d->shared_intermediate;
  size_t N1 = d->gated ? 2 * I : I, N1s = d->gated ? 2 * Is : Is;
  b->w13 = malloc(E * N1 * H * es);
  b->w2 = malloc(E * H * I * es);
  b->router_weight = malloc(E * H * moe_dtype_size(b->router_dtype));
  int ok = b->w13 && b->w2 && b->router_weight;
  if (Is) {
    b->shared_w13 = malloc(N1s * H * es);
    b->shared_w2 = malloc(H * Is * es);
    ok = ok && b->shared_w13 && b->shared_w2;
  }
  if (c->has_correction_bias) {
    b->correction_bias = malloc(E * sizeof(float));
    ok = ok && b->correction_bias;
  }
  if (c->has_router_bias) {
    b->router_bias = malloc(E * sizeof(float));
    ok = ok && b->router_bias;
  }
  if (c->has_expert_bias) {
    b->w13_bias = malloc(E * N1 * sizeof(float));
    b->w2_bias = malloc(E * H * sizeof(float));
    ok = ok && b->w13_bias && b->w2_bias;
  }
  return ok;
}

static void fill_desc(moe_layer_bundle *b, moe_dtype dtype) {
  const moe_layer_desc *m = &b->config.desc;
  moe_layer_desc *d = &b->desc;
  moe_layer_desc_init(d);
  d->num_experts = m->num_experts;
  d->top_k = m->top_k;
  d->hidden = m->hidden;
  d->intermediate = m->intermediate;
  d->activation = m->activation;
  d->gated = m->gated;
  d->swiglu_alpha = m->swiglu_alpha;
  d->swiglu_limit = m->swiglu_limit;
  d->routing = m->routing;
  d->shared_intermediate = m->shared_intermediate;
  d->dtype = dtype;
}

moe_status moe_checkpoint_load_layer(const char *dir, int layer,
                                     moe_dtype dtype,
                                     const moe_load_options *opts,
                                     moe_layer_bundle **out,
                                     moe_io_error *err) {
  if (!dir || !out)
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "moe_checkpoint_load_layer: NULL argument");
  *out = NULL;
  moe_load_options o;
  moe_load_options_init(&o);
  if (opts) o = *opts;
  if (moe_dtype_size(dtype) == 0 || (unsigned)dtype >= MOE_DTYPE_COUNT)
    return fail(err, MOE_ERR_INVALID_ARGUMENT, "unknown weight dtype %d",
                (int)dtype);
  if (o.router_dtype != MOE_DTYPE_F32 && o.router_dtype != MOE_DTYPE_BF16)
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "router dtype must be f32 or bf16");
  moe_layer_bundle *b = calloc(1, sizeof *b);
  if (!b) return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  moe_status st = moe_model_config_load(dir, &b->config, err);
  if (st) {
    free(b);
    return st;
  }
  const moe_model_config *c = &b->config;
  if (layer < 0 || layer >= c->num_layers) {
    int n = c->num_layers;
    free(b);
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "%s/config.json: layer %d out of range (%d layers)", dir, layer,
                n);
  }
  if (!c->is_moe[layer]) {
    int first = -1;
    for (int l = 0; l < c->num_layers && first < 0; l++)
      if (c->is_moe[l]) first = l;
    moe_family fam = c->family;
    free(b);
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "%s/config.json: layer %d is not a MoE layer (%s; first MoE "
                "layer: %d)",
                dir, layer, moe_family_name(fam), first);
  }
  b->layer = layer;
  b->router_dtype = o.router_dtype;
  fill_desc(b, dtype);
  moe_loader L;
  memset(&L, 0, sizeof L);
  L.cfg = c;
  L.layer = layer;
  L.dtype = dtype;
  L.router_dtype = o.router_dtype;
  L.progress = o.progress;
  L.progress_user = o.progress_user;
  L.err = err;
  st = moe_ckpt_open(dir, &L.ckpt, err);
  moe_layer_bufs bufs;
  memset(&bufs, 0, sizeof bufs);
  if (!st) st = moe_family_map_layer(&L, &bufs); /* check pass */
  if (!st && !alloc_bufs(b))
    st = fail(err, MOE_ERR_OUT_OF_MEMORY,
              "%s: out of memory allocating layer %d", dir, layer);
  if (!st) {
    bufs.w13 = b->w13;
    bufs.w2 = b->w2;
    bufs.shared_w13 = b->shared_w13;
    bufs.shared_w2 = b->shared_w2;
    bufs.router = b->router_weight;
    bufs.w13_bias = b->w13_bias;
    bufs.w2_bias = b->w2_bias;
    bufs.correction_bias = b->correction_bias;
    bufs.router_bias = b->router_bias;
    L.copy = 1;
    st = moe_family_map_layer(&L, &bufs);
  }
  b->bytes_read = L.done;
  free(L.row);
  moe_ckpt_close(L.ckpt);
  if (st) {
    moe_layer_bundle_free(b);
    return st;
  }
  moe_weights *w = &b->weights;
  memset(w, 0, sizeof *w);
  w->memory = MOE_MEMORY_HOST;
  w->w13 = b->w13;
  w->w2 = b->w2;
  w->w13_bias = b->w13_bias;
  w->w2_bias = b->w2_bias;
  w->correction_bias = b->correction_bias;
  w->shared_w13 = b->shared_w13;
  w->shared_w2 = b->shared_w2;
  *out = b;
  return MOE_OK;
}
