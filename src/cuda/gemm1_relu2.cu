/*
 * gemm1_relu2.cu - GEMM1's 64- and 128-row tiles for ReLU squared
 * (gemm1_epi.cuh; one activation per file so that they compile in
 * parallel).
 */
#include "gemm1_epi.cuh"

MMA_GEMM1_ACT_UNIT(relu2, MOE_ACT_RELU2)
