/*
 * query.cu - what the CUDA device is: capability, multiprocessors, shared
 * memory opt-in, L2 and name, read from the runtime; and which devices this
 * build has kernel images for.
 */
#include "cuda_backends.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" moe_status moe_cuda_query_device(int ordinal, moe_device *dev,
                                            char *msg, size_t n) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(msg, n, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e),
             cudaGetErrorName(e));
    return MOE_ERR_DEVICE;
  }
  if (ordinal < 0 || ordinal >= count) {
    snprintf(msg, n, "CUDA device %d requested; %d present", ordinal, count);
    return MOE_ERR_DEVICE;
  }
  cudaDeviceProp p;
  e = cudaGetDeviceProperties(&p, ordinal);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(msg, n, "cudaGetDeviceProperties(%d): %s", ordinal,
             cudaGetErrorString(e));
    return MOE_ERR_DEVICE;
  }
  dev->is_cuda = 1;
  dev->overridden = 0;
  dev->runnable = 1;
  dev->ordinal = ordinal;
  dev->sm = p.major * 10 + p.minor;
  dev->sms = p.multiProcessorCount;
  dev->smem_optin = (int)p.sharedMemPerBlockOptin;
  dev->l2_bytes = p.l2CacheSize;
  snprintf(dev->name, sizeof dev->name, "%s", p.name);
  if (n) msg[0] = '\0';
  return MOE_OK;
}

/* ---- is there an image for sm in this build? ---- */

/* arch token "90a" / "100f" / "86": usable on sm as SASS? */
static int sass_usable(const char *tok, int len, int sm) {
  int num = 0, i = 0;
  while (i < len && tok[i] >= '0' && tok[i] <= '9')
    num = num * 10 + tok[i++] - '0';
  if (i == len || tok[i] == 'a') return num == sm;
  if (tok[i] == 'f') return num / 10 == sm / 10 && sm >= num;
  return 0;
}

/* The next arch token of MOE_CUDA_ARCH_LIST at or after p ("90a", "100f",
 * "86"; separated by spaces or ';'), its length in *len; NULL at the end. */
static const char *arch_token(const char *p, int *len) {
  while (*p == ' ' || *p == ';')
    p++;
  const char *q = p;
  while (*q && *q != ' ' && *q != ';')
    q++;
  *len = (int)(q - p);
  return q > p ? p : NULL;
}

/* SASS for exactly this sm (or its family) in the build? */
extern "C" int moe_cuda_sass_for(int sm) {
  int len = 0;
  for (const char *p = arch_token(MOE_CUDA_ARCH_LIST, &len); p;
       p = arch_token(p + len, &len))
    if (sass_usable(p, len, sm)) return 1;
  return 0;
}

/* Is tok ("90a") one of the build's arch tokens, to the letter? */
extern "C" int moe_cuda_arch_listed(const char *tok) {
  const int n = (int)strlen(tok);
  int len = 0;
  for (const char *p = arch_token(MOE_CUDA_ARCH_LIST, &len); p;
       p = arch_token(p + len, &len))
    if (len == n && strncmp(p, tok, (size_t)n) == 0) return 1;
  return 0;
}

/* SASS, or PTX the driver can compile, for sm in the build? */
extern "C" int moe_cuda_image_for(int sm) {
  if (moe_cuda_sass_for(sm)) return 1;
  /* PTX of the oldest arch: JIT-compiled by the driver on anything newer
   * (arch-specific PTX, "90a", only on that exact arch). */
  const char *x = MOE_PTX_ARCH;
  int num = 0, i = 0;
  while (x[i] >= '0' && x[i] <= '9')
    num = num * 10 + x[i++] - '0';
  if (num == 0) return 0;
  if (x[i] == 'a') return sm == num;
  if (x[i] == 'f') return num / 10 == sm / 10 && sm >= num;
  return sm >= num;
}
