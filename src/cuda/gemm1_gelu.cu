/*
 * gemm1_gelu.cu - GEMM1's 64- and 128-row tiles for GELU (gated: GeGLU)
 * (gemm1_epi.cuh; one activation per file so that they compile in
 * parallel).
 */
#include "gemm1_epi.cuh"

MMA_GEMM1_ACT_UNIT(gelu, MOE_ACT_GELU)
