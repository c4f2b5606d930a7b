/*
 * gemm1_silu.cu - GEMM1's 64- and 128-row tiles for SiLU (gated: SwiGLU)
 * (gemm1_epi.cuh; one activation per file so that they compile in
 * parallel).
 */
#include "gemm1_epi.cuh"

MMA_GEMM1_ACT_UNIT(silu, MOE_ACT_SILU)
