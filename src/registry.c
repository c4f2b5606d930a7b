/* registry.c - every backend compiled into this build, by priority. */
#include "backend.h"
#include "cpu/cpu.h"
#ifdef MOE_HAVE_CUDA
#include "cuda/cuda_backends.h"
#endif
#ifdef MOE_HAVE_CUDA_SM90
#include "cuda_sm90/cuda_sm90.h"
#endif

#include <string.h>

static const moe_backend *const registry[] = {
#ifdef MOE_HAVE_CUDA_SM90
    &moe_backend_cuda_sm90,
#endif
#ifdef MOE_HAVE_CUDA
    &moe_backend_cuda_mma,
#endif
#ifdef MOE_HAVE_CPU_X86
    &moe_backend_cpu_avx512, &moe_backend_cpu_avx2,
#endif
    &moe_backend_cpu_ref,
};

const moe_backend *const *moe_backend_registry(int *count) {
  *count = (int)(sizeof registry / sizeof registry[0]);
  return registry;
}

const moe_backend *moe_backend_find(const char *name) {
  int n;
  const moe_backend *const *r = moe_backend_registry(&n);
  for (int i = 0; i < n; i++)
    if (name && strcmp(r[i]->name, name) == 0) return r[i];
  return NULL;
}
