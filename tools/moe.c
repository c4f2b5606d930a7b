/* moe.c - the `moe` command: info, demo, bench, check, plan, run. */
#include "moe.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *f) {
  fprintf(f,
          "moe %s - fused Mixture-of-Experts layers\n\n"
          "usage: moe <command> [options]\n\n"
          "  demo [PRESET]   a real model's MoE layer on the best backend, "
          "checked (default)\n"
          "  info            version, build, devices, CPU features\n"
          "  bench           time presets or a layer: --preset NAME "
          "--tokens 1,16,256 --json F\n"
          "  check           every backend against the reference: a table "
          "of errors\n"
          "  plan            the backend decision table: --preset, --device "
          "sm_121, --matrix\n"
          "  run             a layer of a real checkpoint: --model DIR "
          "--layer L\n\n"
          "presets: nemotron3-nano qwen3-30b-a3b mixtral-8x7b deepseek-v3 "
          "gpt-oss-120b\n"
          "environment: MOE_DEVICE=sm_121 (what-if device), MOE_BACKEND=name\n",
          moe_version_string());
  return f == stderr ? 2 : 0;
}

int moe_cmd_info(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("moe %s (API %d)\n%s", moe_version_string(), moe_version_number(),
         moe_build_info());
  moe_context *ctx = NULL;
  moe_status st = moe_context_create(NULL, &ctx);
  if (st != MOE_OK) {
    printf("context: %s\n", moe_status_string(st));
    return 1;
  }
  printf("%s\n", moe_context_device_info(ctx));
  moe_context_destroy(ctx);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return moe_cmd_demo(argc - 1, argv + 1);
  const char *cmd = argv[1];
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"demo", moe_cmd_demo},   {"info", moe_cmd_info},
              {"bench", moe_cmd_bench}, {"check", moe_cmd_check},
              {"plan", moe_cmd_plan},   {"run", moe_cmd_run}};
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help"))
    return usage(stdout);
  if (!strcmp(cmd, "--version")) {
    printf("moe %s\n", moe_version_string());
    return 0;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(cmd, cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "moe: unknown command '%s'\n\n", cmd);
  return usage(stderr);
}
