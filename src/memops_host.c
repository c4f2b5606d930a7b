/* memops_host.c - the host memory space: malloc and memcpy. */
#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

static moe_status host_alloc(void **p, size_t bytes) {
  *p = malloc(bytes ? bytes : 1);
  return *p ? MOE_OK : MOE_ERR_OUT_OF_MEMORY;
}

static void host_release(void *p) {
  free(p);
}

static moe_status host_copy(void *dst, const void *src, size_t bytes) {
  if (bytes) memcpy(dst, src, bytes);
  return MOE_OK;
}

static moe_status host_fill(void *dst, int byte, size_t bytes) {
  if (bytes) memset(dst, byte, bytes);
  return MOE_OK;
}

static moe_status host_sync(void) {
  return MOE_OK;
}

const moe_memops moe_memops_host = {
    MOE_MEMORY_HOST, host_alloc, host_release, host_copy,
    host_copy,       host_fill,  host_sync,
};
