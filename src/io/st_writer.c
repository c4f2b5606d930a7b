/*
 * st_writer.c - writes a .safetensors file: the JSON header (padded with
 * spaces to a multiple of 8 so the data starts aligned), then the tensors in
 * the order given. Written to PATH.tmp and renamed, so a reader never sees a
 * half-written file.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/io.h"

#include <errno.h>
#include <jansson.h>
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

/* Byte size of one output tensor; 0 with *bad set on a bad shape. */
static uint64_t out_bytes(const moe_st_out *t, int *bad) {
  size_t es = moe_st_dtype_size(t->dtype);
  *bad = es == 0 || t->ndim < 0 || t->ndim > MOE_ST_MAX_DIMS || !t->name;
  if (*bad) return 0;
  uint64_t n = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] < 0 ||
        (t->shape[d] && n > UINT64_MAX / (uint64_t)t->shape[d])) {
      *bad = 1;
      return 0;
    }
    n *= (uint64_t)t->shape[d];
  }
  if (n && n > UINT64_MAX / es) *bad = 1;
  return n * es;
}

static char *build_header(const moe_st_out *ts, int n, moe_io_error *err,
                          const char *path, moe_status *st) {
  json_t *root = json_object();
  if (!root) {
    *st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    return NULL;
  }
  uint64_t at = 0;
  for (int i = 0; i < n; i++) {
    int bad;
    uint64_t bytes = out_bytes(&ts[i], &bad);
    if (bad || (bytes && !ts[i].data)) {
      *st = fail(err, MOE_ERR_INVALID_ARGUMENT,
                 "%s: tensor %s: bad dtype, shape or data", path,
                 ts[i].name ? ts[i].name : "(null)");
      json_decref(root);
      return NULL;
    }
    if (json_object_get(root, ts[i].name)) {
      *st = fail(err, MOE_ERR_INVALID_ARGUMENT, "%s: tensor %s: duplicate name",
                 path, ts[i].name);
      json_decref(root);
      return NULL;
    }
    json_t *shape = json_array();
    for (int d = 0; d < ts[i].ndim; d++)
      json_array_append_new(shape, json_integer(ts[i].shape[d]));
    json_t *offs = json_pack("[II]", (json_int_t)at, (json_int_t)(at + bytes));
    json_t *e =
        json_pack("{s:s,s:o,s:o}", "dtype", moe_st_dtype_name(ts[i].dtype),
                  "shape", shape, "data_offsets", offs);
    if (!e || json_object_set_new(root, ts[i].name, e) != 0) {
      *st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
      json_decref(root);
      return NULL;
    }
    at += bytes;
  }
  char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!text) *st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  return text;
}

moe_status moe_st_write(const char *path, const moe_st_out *tensors, int n,
                        moe_io_error *err) {
  if (!path || n < 0 || (n && !tensors))
    return fail(err, MOE_ERR_INVALID_ARGUMENT, "moe_st_write: bad argument");
  moe_status st = MOE_OK;
  char *text = build_header(tensors, n, err, path, &st);
  if (!text) return st;
  size_t hlen = strlen(text);
  size_t padded = (hlen + 7) / 8 * 8;
  size_t tlen = strlen(path) + 5;
  char *tmp = malloc(tlen);
  if (!tmp) {
    free(text);
    return fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  snprintf(tmp, tlen, "%s.tmp", path);
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    st = fail(err, MOE_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    free(tmp);
    free(text);
    return st;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)(padded >> (8 * i));
  int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(text, 1, hlen, fp) == hlen;
  for (size_t i = hlen; ok && i < padded; i++)
    ok = fputc(' ', fp) != EOF;
  for (int i = 0; ok && i < n; i++) {
    int bad;
    size_t bytes = (size_t)out_bytes(&tensors[i], &bad);
    if (bytes) ok = fwrite(tensors[i].data, 1, bytes, fp) == bytes;
  }
  if (fclose(fp) != 0) ok = 0;
  free(text);
  if (!ok) {
    st = fail(err, MOE_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    remove(tmp);
    free(tmp);
    return st;
  }
  if (rename(tmp, path) != 0) {
    st = fail(err, MOE_ERR_IO, "%s: cannot rename into place: %s", path,
              strerror(errno));
    remove(tmp);
  }
  free(tmp);
  return st;
}
