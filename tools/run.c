/* run.c - `moe run`: one MoE layer of a real checkpoint through the library. */
#include "cli.h"

#include <stdio.h>

int moe_cmd_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "moe run: not available in this build yet\n");
  return 1;
}
