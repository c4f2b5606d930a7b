/*
 * cuda_sm90.h - the Hopper backend cuda-sm90, as seen by the C front end
 * (and by its test). Built only with -DMOE_SM90_BACKEND=ON (which defines
 * MOE_HAVE_CUDA_SM90). Not yet in the registry: it joins src/registry.c
 * once tests/gpu/test_cuda_sm90.c has passed on an sm_90 GPU.
 */
#ifndef MOE_CUDA_SM90_H
#define MOE_CUDA_SM90_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const moe_backend moe_backend_cuda_sm90;

#ifdef __cplusplus
}
#endif
#endif
