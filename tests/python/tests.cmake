# The Python binding's tests: pytest over tests/python against the libmoe.so
# built here. Not run under the sanitizers (an ASan library cannot be loaded
# into a plain python3), hence the nosan label.
add_test(NAME python_binding
         COMMAND python3 -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR})
set_tests_properties(python_binding PROPERTIES
  ENVIRONMENT "MOE_LIBRARY=$<TARGET_FILE:moe>"
  LABELS "python;nosan"
  TIMEOUT 300)
