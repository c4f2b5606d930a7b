# The Hopper backend cuda-sm90 (sm_90a only; the kernels compile to empty
# bodies for every other arch). Paths relative to the root. Included by
# CMakeLists.txt when the Hopper backend is built (MOE_SM90_BACKEND).
set(MOE_CUDA_SM90_SOURCES
  src/cuda_sm90/gemm_sm90.cu
  src/cuda_sm90/backend_sm90.cu
  src/cuda_sm90/tune_sm90.cu
)
