/*
 * cuda_backends.h - the CUDA backends and the CUDA memory space, as seen by
 * the C front end. Implemented in the .cu files of src/cuda, behind extern "C".
 */
#ifndef MOE_CUDA_BACKENDS_H
#define MOE_CUDA_BACKENDS_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const moe_backend moe_backend_cuda_mma;
extern const moe_memops moe_memops_cuda;

/* Fills the GPU fields of dev for device `ordinal` (is_cuda, runnable, sm,
 * sms, smem_optin, l2_bytes, name). Returns MOE_ERR_DEVICE with a message
 * when there is no usable GPU (no driver, no device). */
moe_status moe_cuda_query_device(int ordinal, moe_device *dev, char *msg,
                                 size_t n);

/* SASS for exactly sm (or its family) in this build? */
int moe_cuda_sass_for(int sm);
/* SASS, or PTX the driver can compile, for sm in this build? */
int moe_cuda_image_for(int sm);
/* Is tok (e.g. "90a") one of this build's arch tokens, to the letter? */
int moe_cuda_arch_listed(const char *tok);

#ifdef __cplusplus
}
#endif
#endif
