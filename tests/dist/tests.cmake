# Multi-GPU (src/dist). The host parts run everywhere; the 2-GPU runs need
# a build with NCCL and exit 77 (skipped) where fewer than 2 GPUs are seen.
moe_add_test(test_dist_host ${CMAKE_CURRENT_LIST_DIR}/test_dist_host.c
             LABELS cpu dist)
moe_add_test(test_dist_cpu_model ${CMAKE_CURRENT_LIST_DIR}/test_dist_cpu_model.c
             LABELS cpu dist)
if(MOE_HAVE_NCCL)
  moe_add_test(test_dist_gpu ${CMAKE_CURRENT_LIST_DIR}/test_dist_gpu.c
               LABELS gpu nosan dist)
  # A rank that fails leaves its peer waiting in a collective: bounded.
  set_tests_properties(test_dist_gpu PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
