/* cli.h - the subcommands of the `moe` command-line tool. Each returns the
 * process exit code (0 success, 1 failure, 2 usage). */
#ifndef MOE_CLI_H
#define MOE_CLI_H

int moe_cmd_info(int argc, char **argv);
int moe_cmd_demo(int argc, char **argv);
int moe_cmd_bench(int argc, char **argv);
int moe_cmd_check(int argc, char **argv);
int moe_cmd_plan(int argc, char **argv);
int moe_cmd_run(int argc, char **argv); /* tools/run.c: real checkpoints */

#endif
