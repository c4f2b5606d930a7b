# io: safetensors / config readers (C, under ASan too) and `moe run` on small
# checkpoints of every family compared with a numpy reference (Python).
moe_add_test(test_io_errors ${CMAKE_CURRENT_LIST_DIR}/test_io_errors.c
             LABELS io)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME io_moe_run
           COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider
                   ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(io_moe_run PROPERTIES
    ENVIRONMENT "MOE_BIN=$<TARGET_FILE:moe_cli>"
    LABELS "io;nosan" TIMEOUT 600)
endif()
