# The CLI end to end: each subcommand that needs no large memory runs and
# succeeds (`moe check` fails on any backend beyond tolerance).
add_test(NAME cli_info COMMAND moe_cli info)
add_test(NAME cli_check COMMAND moe_cli check)
add_test(NAME cli_plan COMMAND moe_cli plan --preset deepseek-v3 --device sm_121)
add_test(NAME cli_plan_matrix COMMAND moe_cli plan --matrix)
add_test(NAME cli_bench
         COMMAND moe_cli bench --layer 16,2,64,32,relu2 --tokens 1,3
                 --seconds 0.05 --bandwidth 20
                 --json ${CMAKE_BINARY_DIR}/cli_bench.json)
add_test(NAME cli_usage_error COMMAND moe_cli no-such-command)
set_tests_properties(cli_usage_error PROPERTIES WILL_FAIL TRUE)
set_tests_properties(cli_plan PROPERTIES PASS_REGULAR_EXPRESSION "cuda-mma +chosen|no backend can serve")
set_tests_properties(cli_info cli_check cli_plan cli_plan_matrix cli_bench
                     cli_usage_error PROPERTIES LABELS "cpu;cli")
