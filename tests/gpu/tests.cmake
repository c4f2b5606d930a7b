# cuda-sm90's tile order, on the host (no GPU, no CUDA needed).
moe_add_test(test_tile_walk ${CMAKE_CURRENT_LIST_DIR}/test_tile_walk.c)
# GPU tests: the cuda-mma backend against the CPU reference. They skip with
# a visible "SKIP: no CUDA device" line where there is no GPU (CI).
if(MOE_HAVE_CUDA)
  moe_add_test(test_cuda_mma ${CMAKE_CURRENT_LIST_DIR}/test_cuda_mma.c
               ${CMAKE_CURRENT_LIST_DIR}/gpu_case.c
               LABELS gpu nosan)
  set_tests_properties(test_cuda_mma PROPERTIES SKIP_RETURN_CODE 77)
endif()
# The Hopper backend (built when the archs hold 90a): skips without an
# sm_90 GPU or without "90a" in MOE_CUDA_ARCHS.
if(MOE_HAVE_CUDA_SM90)
  moe_add_test(test_cuda_sm90 ${CMAKE_CURRENT_LIST_DIR}/test_cuda_sm90.c
               ${CMAKE_CURRENT_LIST_DIR}/gpu_case.c
               LABELS gpu nosan)
  target_compile_definitions(test_cuda_sm90 PRIVATE MOE_HAVE_CUDA_SM90=1)
  set_tests_properties(test_cuda_sm90 PROPERTIES SKIP_RETURN_CODE 77)
  # The GEMM kernels' sm_90a SASS (no GPU needed): HGMMA, TMA, register
  # hand-over, no spills, and the wgmmas pipelined (bench/check_hgmma.sh;
  # skips where cuobjdump / nvdisasm are missing: scripts/setup.sh installs
  # them from PyPI).
  add_test(NAME sm90_sass COMMAND bash ${CMAKE_SOURCE_DIR}/bench/check_hgmma.sh)
  set_tests_properties(sm90_sass PROPERTIES
    ENVIRONMENT "HGMMA_OBJ_DIR=${CMAKE_BINARY_DIR}"
    SKIP_RETURN_CODE 2 LABELS "nosan" TIMEOUT 300)
endif()
