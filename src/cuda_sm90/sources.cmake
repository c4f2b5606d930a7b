# The Hopper backend cuda-sm90 (sm_90a only; the kernels compile to empty
# bodies for every other arch). Paths relative to the root. Included by
# CMakeLists.txt when MOE_SM90_BACKEND is ON.
set(MOE_CUDA_SM90_SOURCES
  src/cuda_sm90/gemm_sm90.cu
  src/cuda_sm90/backend_sm90.cu
)
