/*
 * query.cu - what the CUDA device is: capability, multiprocessors, shared
 * memory opt-in, L2 and name, read from the runtime.
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
