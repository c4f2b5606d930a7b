# CPU backend tests: the router, cpu-ref against a naive double-precision
# layer, the SIMD backends against cpu-ref, and the backends as data.
set(_cpu ${CMAKE_CURRENT_LIST_DIR})
moe_add_test(test_cpu_route ${_cpu}/test_cpu_route.c ${_cpu}/fixture.c
             ${_cpu}/naive.c LABELS cpu)
moe_add_test(test_cpu_ref ${_cpu}/test_cpu_ref.c ${_cpu}/fixture.c
             ${_cpu}/naive.c LABELS cpu)
moe_add_test(test_cpu_fast ${_cpu}/test_cpu_fast.c ${_cpu}/fixture.c
             ${_cpu}/naive.c LABELS cpu)
moe_add_test(test_cpu_backends ${_cpu}/test_cpu_backends.c ${_cpu}/fixture.c
             ${_cpu}/naive.c LABELS cpu)
