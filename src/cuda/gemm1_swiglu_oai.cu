/*
 * gemm1_swiglu_oai.cu - GEMM1's 64- and 128-row tiles for the clamped SwiGLU of
 * gpt-oss (gemm1_epi.cuh; one activation per file so that they compile in
 * parallel).
 */
#include "gemm1_epi.cuh"

MMA_GEMM1_ACT_UNIT(swiglu_oai, MOE_ACT_SWIGLU_OAI)
