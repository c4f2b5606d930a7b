/*
 * checkpoint.c - a checkpoint directory: one model.safetensors, or shards
 * listed by model.safetensors.index.json ({"weight_map": {tensor: file}}).
 * Shards are mapped on first use, so loading one layer of a large sharded
 * model touches only the files that hold it. Shard names must be plain file
 * names inside the directory (no '/' and no "..").
 */
#define _POSIX_C_SOURCE 200809L
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct shard {
  char *file; /* name inside the directory */
  char *path; /* dir/file */
  moe_st_file *st;
} shard;

typedef struct entry {
  char *name;
  int shard;
} entry;

struct moe_ckpt {
  char *dir;
  shard *shards;
  int n_shards;
  entry *entries; /* sorted by name */
  int n_entries;
};

static moe_status fail(moe_io_error *err, moe_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

static char *join(const char *dir, const char *file) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, file);
  return p;
}

void moe_ckpt_close(moe_ckpt *c) {
  if (!c) return;
  for (int i = 0; i < c->n_shards; i++) {
    moe_st_close(c->shards[i].st);
    free(c->shards[i].file);
    free(c->shards[i].path);
  }
  free(c->shards);
  for (int i = 0; i < c->n_entries; i++)
    free(c->entries[i].name);
  free(c->entries);
  free(c->dir);
  free(c);
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static int add_shard(moe_ckpt *c, const char *file) {
  for (int i = 0; i < c->n_shards; i++)
    if (strcmp(c->shards[i].file, file) == 0) return i;
  shard *s = realloc(c->shards, (size_t)(c->n_shards + 1) * sizeof *s);
  if (!s) return -1;
  c->shards = s;
  shard *n = &s[c->n_shards];
  memset(n, 0, sizeof *n);
  n->file = strdup(file);
  n->path = join(c->dir, file);
  if (!n->file || !n->path) {
    free(n->file);
    free(n->path);
    return -1;
  }
  return c->n_shards++;
}

static int plain_name(const char *f) {
  return f[0] && !strchr(f, '/') && strcmp(f, ".") && strcmp(f, "..");
}

static moe_status read_index(moe_ckpt *c, const char *path, moe_io_error *err) {
  json_error_t je;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return fail(err, je.line < 0 ? MOE_ERR_IO : MOE_ERR_FORMAT,
                "%s: %s (line %d)", path, je.text, je.line);
  moe_status st = MOE_OK;
  json_t *map = json_object_get(root, "weight_map");
  if (!json_is_object(map)) {
    st = fail(err, MOE_ERR_FORMAT, "%s: missing object 'weight_map'", path);
    goto out;
  }
  size_t n = json_object_size(map);
  c->entries = calloc(n ? n : 1, sizeof *c->entries);
  if (!c->entries) {
    st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach(map, key, v) {
    if (!json_is_string(v) || !plain_name(json_string_value(v))) {
      st = fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: weight_map value '%.200s' is not a file name "
                "in the directory",
                path, key, json_is_string(v) ? json_string_value(v) : "?");
      goto out;
    }
    int s = add_shard(c, json_string_value(v));
    char *name = strdup(key);
    if (s < 0 || !name) {
      free(name);
      st = fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
      goto out;
    }
    c->entries[c->n_entries].name = name;
    c->entries[c->n_entries].shard = s;
    c->n_entries++;
  }
  qsort(c->entries, (size_t)c->n_entries, sizeof *c->entries, cmp_entry);
out:
  json_decref(root);
  return st;
}

/* Lists every tensor of an opened single file as entries of shard 0. */
static moe_status list_single(moe_ckpt *c, moe_io_error *err) {
  moe_st_file *f = c->shards[0].st;
  int n = moe_st_count(f);
  c->entries = calloc(n ? (size_t)n : 1, sizeof *c->entries);
  if (!c->entries) return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < n; i++) {
    c->entries[i].name = strdup(moe_st_tensor_at(f, i)->name);
    if (!c->entries[i].name)
      return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
    c->n_entries++;
  }
  qsort(c->entries, (size_t)c->n_entries, sizeof *c->entries, cmp_entry);
  return MOE_OK;
}

/* The only *.safetensors file of the directory, when there is exactly one. */
static moe_status find_single(const char *dir, char **file, moe_io_error *err) {
  DIR *d = opendir(dir);
  if (!d)
    return fail(err, MOE_ERR_IO, "%s: cannot open directory: %s", dir,
                strerror(errno));
  int found = 0;
  struct dirent *e;
  *file = NULL;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0) {
      found++;
      if (found == 1) *file = strdup(e->d_name);
    }
  }
  closedir(d);
  if (found == 1 && *file) return MOE_OK;
  free(*file);
  *file = NULL;
  if (found > 1)
    return fail(err, MOE_ERR_FORMAT,
                "%s: %d .safetensors files but no "
                "model.safetensors.index.json",
                dir, found);
  return fail(err, MOE_ERR_IO,
              "%s: no model.safetensors.index.json and no .safetensors file",
              dir);
}

moe_status moe_ckpt_open(const char *dir, moe_ckpt **out, moe_io_error *err) {
  if (!dir || !out)
    return fail(err, MOE_ERR_INVALID_ARGUMENT, "moe_ckpt_open: NULL argument");
  *out = NULL;
  moe_ckpt *c = calloc(1, sizeof *c);
  if (!c || !(c->dir = strdup(dir))) {
    free(c);
    return fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  moe_status st;
  char *index = join(dir, "model.safetensors.index.json");
  struct stat sb;
  if (!index) {
    st = fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
  } else if (stat(index, &sb) == 0) {
    st = read_index(c, index, err);
  } else {
    char *file = NULL;
    char *single = join(dir, "model.safetensors");
    if (single && stat(single, &sb) == 0) file = strdup("model.safetensors");
    free(single);
    st = file ? MOE_OK : find_single(dir, &file, err);
    if (!st) {
      if (add_shard(c, file) < 0)
        st = fail(err, MOE_ERR_OUT_OF_MEMORY, "out of memory");
      else
        st = moe_st_open(c->shards[0].path, &c->shards[0].st, err);
    }
    free(file);
    if (!st) st = list_single(c, err);
  }
  free(index);
  if (st) {
    moe_ckpt_close(c);
    return st;
  }
  *out = c;
  return MOE_OK;
}

static const entry *lookup(const moe_ckpt *c, const char *name) {
  entry key;
  key.name = (char *)name;
  return bsearch(&key, c->entries, (size_t)c->n_entries, sizeof *c->entries,
                 cmp_entry);
}

int moe_ckpt_has(const moe_ckpt *c, const char *name) {
  return c && name && lookup(c, name) != NULL;
}

const char *moe_ckpt_dir(const moe_ckpt *c) {
  return c ? c->dir : NULL;
}

moe_status moe_ckpt_get(moe_ckpt *c, const char *name, const moe_st_tensor **t,
                        const char **file, moe_io_error *err) {
  if (!c || !name || !t)
    return fail(err, MOE_ERR_INVALID_ARGUMENT, "moe_ckpt_get: NULL argument");
  *t = NULL;
  const entry *e = lookup(c, name);
  if (!e)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: missing from the "
                "checkpoint",
                c->dir, name);
  shard *s = &c->shards[e->shard];
  if (!s->st) {
    moe_status st = moe_st_open(s->path, &s->st, err);
    if (st) return st;
  }
  if (file) *file = s->path;
  *t = moe_st_find(s->st, name);
  if (!*t)
    return fail(err, MOE_ERR_FORMAT,
                "%s: tensor %s: listed in the index but missing from the file",
                s->path, name);
  return MOE_OK;
}
