# The CUDA backend cuda-mma (sm_80 and newer). Paths relative to the root.
# One stage per file; the GEMMs are the only heavy translation units.
set(MOE_CUDA_SOURCES
  src/cuda/memops.cu
  src/cuda/query.cu
  src/cuda/route.cu
  src/cuda/permute.cu
  src/cuda/dispatch.cu
  src/cuda/gemm1.cu
  src/cuda/gemm1_silu.cu
  src/cuda/gemm1_gelu.cu
  src/cuda/gemm1_relu2.cu
  src/cuda/gemm1_swiglu_oai.cu
  src/cuda/gemm2.cu
  src/cuda/combine.cu
  src/cuda/decode.cu
  src/cuda/decode_call.cu
  src/cuda/gemv.cu
  src/cuda/gemv_call.cu
  src/cuda/backend_mma.cu
)
