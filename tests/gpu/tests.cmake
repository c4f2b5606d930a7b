# GPU tests: the cuda-mma backend against the CPU reference. They skip with
# a visible "SKIP: no CUDA device" line where there is no GPU (CI).
if(MOE_HAVE_CUDA)
  moe_add_test(test_cuda_mma ${CMAKE_CURRENT_LIST_DIR}/test_cuda_mma.c
               LABELS gpu nosan)
  set_tests_properties(test_cuda_mma PROPERTIES SKIP_RETURN_CODE 77)
endif()
