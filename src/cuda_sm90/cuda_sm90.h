/*
 * cuda_sm90.h - the Hopper backend cuda-sm90, as seen by the C front end
 * (and by its test). Built when the CUDA archs include 90a
 * (MOE_SM90_BACKEND, which defines MOE_HAVE_CUDA_SM90), and registered
 * ahead of cuda-mma.
 */
#ifndef MOE_CUDA_SM90_H
#define MOE_CUDA_SM90_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const moe_backend moe_backend_cuda_sm90;

/* Rows per expert (M * k / E) below which a call goes to cuda-mma's
 * kernels: measured on the H200 (bench/NOTES.md, "crossover").
 * MOE_SM90_CROSSOVER in the environment overrides it at layer creation. */
#define SM90_CROSSOVER 56.0
/* Row tiles per band of the GEMMs' tile walk (gemm_sm90.cu);
 * MOE_SM90_BAND overrides it at layer creation (1: row tile major). */
#define SM90_BAND 16

#ifdef __cplusplus
}
#endif
#endif
