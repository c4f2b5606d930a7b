/*
 * safetensors.c - maps a .safetensors file and validates its header.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}), then the data. Offsets are relative to
 * the data and must tile it exactly: sorted by begin, the first at 0, each
 * beginning where the previous ended, the last ending at the end of the
 * file, every extent equal to numel x element size. Everything is checked
 * before a tensor is handed out, so later code can trust shapes and sizes.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct moe_st_file {
  char *path;
  void *map; /* NULL when the image is borrowed */
  size_t map_len;
  const uint8_t *base;
  size_t len;
  moe_st_tensor *tensors; /* sorted by name for lookup */
  int count;
  json_t *metadata; /* "__metadata__" object or NULL */
};

static const struct {
  const char *name;
  size_t size;
} st_dtypes[MOE_ST_DTYPE_COUNT] = {
    [MOE_ST_BOOL] = {"BOOL", 1},       [MOE_ST_U8] = {"U8", 1},
    [MOE_ST_I8] = {"I8", 1},           [MOE_ST_U16] = {"U16", 2},
    [MOE_ST_I16] = {"I16", 2},         [MOE_ST_F16] = {"F16", 2},
    [MOE_ST_BF16] = {"BF16", 2},       [MOE_ST_U32] = {"U32", 4},
    [MOE_ST_I32] = {"I32", 4},         [MOE_ST_F32] = {"F32", 4},
    [MOE_ST_U64] = {"U64", 8},         [MOE_ST_I64] = {"I64", 8},
    [MOE_ST_F64] = {"F64", 8},         [MOE_ST_F8_E4M3] = {"F8_E4M3", 1},
    [MOE_ST_F8_E5M2] = {"F8_E5M2", 1}, [MOE_ST_E8M0] = {"F8_E8M0", 1},
    [MOE_ST_C64] = {"C64", 8},
};

const char *moe_st_dtype_name(moe_st_dtype d) {
  if ((int)d < 0 || d >= MOE_ST_DTYPE_COUNT) return NULL;
  return st_dtypes[d].name;
}

size_t moe_st_dtype_size(moe_st_dtype d) {
  if ((int)d < 0 || d >= MOE_ST_DTYPE_COUNT) return 0;
  return st_dtypes[d].size;
}

int moe_st_dtype_parse(const char *s) {
  for (int i = 0; i < MOE_ST_DTYPE_COUNT; i++)
    if (strcmp(s, st_dtypes[i].name) == 0) return i;
  return -1;
}

static moe_status fail(moe_io_error *err, moe_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

static void file_free(moe_st_file *f) {
  if (!f) return;
  if (f->tensors)
    for (int i = 0; i < f->count; i++)
      free((char *)f->tensors[i].name);
  free(f->tensors);
  json_decref(f->metadata);
  if (f->map) munmap(f->map, f->map_len);
  free(f->path);
  free(f);
}

void moe_st_close(moe_st_file *f) {
  file_free(f);
}

typedef struct extent {
  uint64_t begin, end;
  int index;
} extent;

static int cmp_extent(const void *a, const void *b) {
  const extent *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->index - y->index;
}

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const moe_st_tensor *)a)->name,
                ((const moe_st_tensor *)b)->name);
}

/* Reads one tensor entry; offsets go to *begin, *end. */
static moe_status parse_entry(const char *label, const char *name, json_t *v,
                              moe_st_tensor *t, uint64_t *begin, uint64_t *end,
                              moe_io_error *err) {
  if (!json_is_object(v))
    return fail(err, MOE_ERR_FORMAT, "%s: tensor %s: entry is not an object",
                label, name);
  json_t *jd = json_object_get(v, "dtype");
  json_t *js = json_object_get(v, "shape");
  json_t *jo = json_object_get(v, "data_offsets");
  if (!json_is_string(jd))
    return fail(err, MOE_ERR_FORMAT, "%s: tensor %s: missing string 'dtype'",
                label, name);
  int dt = moe_st_dtype_parse(json_string_value(jd));
  if (dt < 0)
    return fail(err, MOE_ERR_FORMAT, "%s: tensor %s: unknown dtype '%.32s'",
                label, name, json_string_value(jd));
  t->dtype = (moe_st_dtype)dt;
  if (!json_is_array(js))
    return fail(err, MOE_ERR_FORMAT, "%s: tensor %s: missing array 'shape'",
                label, name);
  size_t nd = json_array_size(js);
  if (nd > MOE_ST_MAX_DIMS)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: %zu dimensions (at most %d)", label, name, nd,
                MOE_ST_MAX_DIMS);
  t->ndim = (int)nd;
  uint64_t numel = 1;
  int overflow = 0;
  for (size_t i = 0; i < nd; i++) {
    json_t *d = json_array_get(js, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return fail(err, MOE_ERR_FORMAT,
                  "%s: tensor %s: shape[%zu] is not a non-negative integer",
                  label, name, i);
    uint64_t n = (uint64_t)json_integer_value(d);
    t->shape[i] = (int64_t)n;
    if (n && numel > UINT64_MAX / n) overflow = 1;
    numel *= n;
  }
  size_t es = moe_st_dtype_size(t->dtype);
  if (overflow || (numel && numel > UINT64_MAX / es))
    return fail(err, MOE_ERR_FORMAT, "%s: tensor %s: shape overflows", label,
                name);
  t->numel = numel;
  t->nbytes = numel * es;
  if (!json_is_array(jo) || json_array_size(jo) != 2 ||
      !json_is_integer(json_array_get(jo, 0)) ||
      !json_is_integer(json_array_get(jo, 1)) ||
      json_integer_value(json_array_get(jo, 0)) < 0 ||
      json_integer_value(json_array_get(jo, 1)) < 0)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: 'data_offsets' is not [begin, end]", label,
                name);
  *begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
  *end = (uint64_t)json_integer_value(json_array_get(jo, 1));
  if (*end < *begin)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: data_offsets end %llu before begin %llu", label,
                name, (unsigned long long)*end, (unsigned long long)*begin);
  if (*end - *begin != t->nbytes)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: %llu bytes stored but shape x %s needs %llu",
                label, name, (unsigned long long)(*end - *begin),
                st_dtypes[t->dtype].name, (unsigned long long)t->nbytes);
  return MOE_OK;
}

static moe_status parse_metadata(const char *label, json_t *v, moe_st_file *f,
                                 moe_io_error *err) {
  if (!json_is_object(v))
    return fail(err, MOE_ERR_FORMAT, "%s: __metadata__ is not an object",
                label);
  const char *k;
  json_t *x;
  json_object_foreach(v, k, x) {
    if (!json_is_string(x))
      return fail(err, MOE_ERR_FORMAT,
                  "%s: __metadata__ value of '%.64s' is not a string", label,
                  k);
  }
  f->metadata = json_incref(v);
  return MOE_OK;
}

/* Parses and checks the header of the image in f->base / f->len. */
static moe_status parse(moe_st_file *f, moe_io_error *err) {
  const char *label = f->path;
  if (f->len < 8)
    return fail(err, MOE_ERR_FORMAT,
                "%s: truncated: %zu bytes, no 8-byte header length", label,
                f->len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | f->base[i];
  if (n > MOE_ST_MAX_HEADER)
    return fail(err, MOE_ERR_FORMAT,
                "%s: header length %llu exceeds the limit of %u bytes", label,
                (unsigned long long)n, MOE_ST_MAX_HEADER);
  if (n > f->len - 8)
    return fail(err, MOE_ERR_FORMAT,
                "%s: header length %llu runs past the end of the file "
                "(%zu bytes)",
                label, (unsigned long long)n, f->len);
  if (n < 2 || f->base[8] != '{')
    return fail(err, MOE_ERR_FORMAT, "%s: header does not start with '{'",
                label);
  json_error_t je;
  json_t *root = json_loadb((const char *)f->base + 8, (size_t)n,
                            JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return fail(err, MOE_ERR_FORMAT,
                "%s: header is not valid JSON: %s (line %d, column %d)", label,
                je.text, je.line, je.column);
  moe_status st = MOE_OK;
  extent *ext = NULL;
  if (!json_is_object(root)) {
    st = fail(err, MOE_ERR_FORMAT, "%s: header is not a JSON object", label);
    goto out;
  }
  size_t total = json_object_size(root);
  f->tensors = calloc(total ? total : 1, sizeof *f->tensors);
  ext = calloc(total ? total : 1, sizeof *ext);
  if (!f->tensors || !ext) {
    st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) {
      st = parse_metadata(label, v, f, err);
      if (st) goto out;
      continue;
    }
    moe_st_tensor *t = &f->tensors[f->count];
    uint64_t b = 0, e = 0;
    st = parse_entry(label, key, v, t, &b, &e, err);
    if (st) goto out;
    t->name = strdup(key);
    if (!t->name) {
      st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
      goto out;
    }
    ext[f->count].begin = b;
    ext[f->count].end = e;
    ext[f->count].index = f->count;
    f->count++;
  }
  uint64_t data_len = (uint64_t)f->len - 8 - n;
  qsort(ext, (size_t)f->count, sizeof *ext, cmp_extent);
  uint64_t at = 0;
  for (int i = 0; i < f->count; i++) {
    const char *name = f->tensors[ext[i].index].name;
    if (ext[i].begin > data_len || ext[i].end > data_len) {
      st = fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: data_offsets [%llu, %llu] past the end of "
                "the data (%llu bytes; file truncated?)",
                label, name, (unsigned long long)ext[i].begin,
                (unsigned long long)ext[i].end, (unsigned long long)data_len);
      goto out;
    }
    if (ext[i].begin != at) {
      st = fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: data_offsets begin %llu, expected %llu "
                "(%s)",
                label, name, (unsigned long long)ext[i].begin,
                (unsigned long long)at,
                ext[i].begin < at ? "overlaps the previous tensor"
                                  : "gap after the previous tensor");
      goto out;
    }
    at = ext[i].end;
    f->tensors[ext[i].index].data = f->base + 8 + n + ext[i].begin;
  }
  if (at != data_len) {
    st = fail(err, MOE_ERR_FORMAT,
              "%s: tensors cover %llu bytes of data but the file holds %llu "
              "(trailing bytes)",
              label, (unsigned long long)at, (unsigned long long)data_len);
    goto out;
  }
  /* Sorted by name for lookup; JSON_REJECT_DUPLICATES already refused
   * repeated names, this check keeps the invariant local. */
  qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_tensor);
  for (int i = 1; i < f->count; i++)
    if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
      st = fail(err, MOE_ERR_FORMAT, "%s: tensor %s: duplicate name", label,
                f->tensors[i].name);
      goto out;
    }
out:
  free(ext);
  json_decref(root);
  return st;
}

moe_status moe_st_open_memory(const void *buf, size_t len, const char *label,
                              moe_st_file **out, moe_io_error *err) {
  if (!out || (!buf && len))
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "moe_st_open_memory: NULL argument");
  *out = NULL;
  moe_st_file *f = calloc(1, sizeof *f);
  if (!f) return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  f->path = strdup(label ? label : "<memory>");
  if (!f->path) {
    free(f);
    return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  f->base = buf;
  f->len = len;
  moe_status st = parse(f, err);
  if (st) {
    file_free(f);
    return st;
  }
  *out = f;
  return MOE_OK;
}

moe_status moe_st_open(const char *path, moe_st_file **out, moe_io_error *err) {
  if (!path || !out)
    return fail(err, MOE_ERR_INVALID_ARGUMENT, "moe_st_open: NULL argument");
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return fail(err, MOE_ERR_IO, "%s: not a regular file", path);
  }
  size_t len = (size_t)sb.st_size;
  void *map = NULL;
  if (len) {
    map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      return fail(err, MOE_ERR_IO, "%s: cannot map %zu bytes: %s", path, len,
                  strerror(e));
    }
  }
  close(fd);
  moe_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    if (map) munmap(map, len);
    return fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  f->map = map;
  f->map_len = len;
  f->base = map;
  f->len = len;
  moe_status st = parse(f, err);
  if (st) {
    file_free(f);
    return st;
  }
  *out = f;
  return MOE_OK;
}

const char *moe_st_path(const moe_st_file *f) {
  return f ? f->path : NULL;
}

int moe_st_count(const moe_st_file *f) {
  return f ? f->count : 0;
}

const moe_st_tensor *moe_st_tensor_at(const moe_st_file *f, int i) {
  if (!f || i < 0 || i >= f->count) return NULL;
  return &f->tensors[i];
}

const moe_st_tensor *moe_st_find(const moe_st_file *f, const char *name) {
  if (!f || !name) return NULL;
  moe_st_tensor key;
  key.name = name;
  return bsearch(&key, f->tensors, (size_t)f->count, sizeof *f->tensors,
                 cmp_tensor);
}

const char *moe_st_metadata(const moe_st_file *f, const char *key) {
  if (!f || !f->metadata || !key) return NULL;
  return json_string_value(json_object_get(f->metadata, key));
}
