/*
 * fuzz_st_header.c - libFuzzer target: a whole .safetensors image through
 * the header parser and validator. Whatever it accepts must be safe to read:
 * every tensor is decoded end to end (ASan checks the extents).
 */
#include "io/io.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  moe_io_error err;
  moe_st_file *f = NULL;
  if (moe_st_open_memory(data, size, "fuzz.safetensors", &f, &err) != MOE_OK)
    return 0;
  float buf[64];
  for (int i = 0; i < moe_st_count(f); i++) {
    const moe_st_tensor *t = moe_st_tensor_at(f, i);
    if (moe_st_find(f, t->name) != t) abort();
    if (moe_st_is_float(t->dtype)) {
      for (uint64_t at = 0; at < t->numel; at += 64) {
        size_t n = t->numel - at < 64 ? (size_t)(t->numel - at) : 64;
        moe_st_decode(t, at, n, buf);
      }
    } else if (t->nbytes) {
      volatile uint8_t s = 0;
      const uint8_t *p = t->data;
      for (uint64_t b = 0; b < t->nbytes; b++)
        s ^= p[b];
      (void)s;
    }
  }
  (void)moe_st_metadata(f, "format");
  moe_st_close(f);
  return 0;
}
