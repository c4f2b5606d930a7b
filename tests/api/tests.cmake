# The public front end: arguments, planning, self-check, the README example.
moe_add_test(test_api ${CMAKE_CURRENT_LIST_DIR}/test_api.c LABELS cpu api)
moe_add_test(test_plan ${CMAKE_CURRENT_LIST_DIR}/test_plan.c LABELS cpu api)
moe_add_test(test_selfcheck ${CMAKE_CURRENT_LIST_DIR}/test_selfcheck.c LABELS cpu api)

# The README's C example, extracted from README.md at configure time, must
# compile against the installed header alone and run.
file(READ ${CMAKE_SOURCE_DIR}/README.md MOE_README)
string(REGEX MATCH "<!-- example:begin -->\n```c\n(.*)```\n<!-- example:end -->"
       _m "${MOE_README}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "README.md has no example block between the markers")
endif()
file(WRITE ${CMAKE_BINARY_DIR}/readme_example.c "${CMAKE_MATCH_1}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/README.md)
add_executable(readme_example ${CMAKE_BINARY_DIR}/readme_example.c)
target_link_libraries(readme_example PRIVATE moe_static)
add_test(NAME readme_example COMMAND readme_example)
set_tests_properties(readme_example PROPERTIES LABELS "cpu;api")
