/*
 * memops.cu - the CUDA memory space: cudaMalloc, cudaFree, cudaMemcpy,
 * cudaMemset and cudaDeviceSynchronize, each checked.
 */
#include "cuda_backends.h"

#include <cuda_runtime.h>

static moe_status cuda_status(cudaError_t e) {
  if (e == cudaSuccess) return MOE_OK;
  if (e == cudaErrorMemoryAllocation) return MOE_ERR_OUT_OF_MEMORY;
  if (e == cudaErrorNoKernelImageForDevice ||
      e == cudaErrorInvalidDeviceFunction)
    return MOE_ERR_NO_KERNEL_IMAGE;
  return MOE_ERR_DEVICE;
}

static moe_status cuda_alloc(void **p, size_t bytes) {
  *p = NULL;
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    (void)cudaGetLastError(); /* not sticky: clear it */
    *p = NULL;
  }
  return cuda_status(e);
}

static void cuda_release(void *p) {
  if (p) (void)cudaFree(p);
}

static moe_status cuda_upload(void *dst, const void *src, size_t bytes) {
  if (!bytes) return MOE_OK;
  return cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static moe_status cuda_download(void *dst, const void *src, size_t bytes) {
  if (!bytes) return MOE_OK;
  return cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static moe_status cuda_fill(void *dst, int byte, size_t bytes) {
  if (!bytes) return MOE_OK;
  return cuda_status(cudaMemset(dst, byte, bytes));
}

static moe_status cuda_sync(void) {
  return cuda_status(cudaDeviceSynchronize());
}

extern "C" const moe_memops moe_memops_cuda = {
    MOE_MEMORY_CUDA, cuda_alloc, cuda_release, cuda_upload,
    cuda_download,   cuda_fill,  cuda_sync,
};
