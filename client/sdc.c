/* sdc.c - the sdc command: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Debian's OpenBLAS 0.3.21 does not recognise newer x86 cores and silently
 * falls back to a generic kernel several times slower. The core type is read
 * when the library loads, so the only place to fix it is before exec: pick
 * the best kernel family the CPU supports and re-exec once. A user's own
 * OPENBLAS_CORETYPE always wins. */
static void sdc__ensure_openblas_core(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv("SDC_NO_REEXEC")) return;
  const char *core = NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    core = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    core = "Haswell";
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("SDC_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with whatever OpenBLAS picked */
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc <command> [options]\n"
          "commands:\n"
          "  verify --ref DIR   check every stage against diffusers' golden vectors\n"
          "run 'sdc <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    sdc__usage(stderr);
    return 2;
  }
  sdc__ensure_openblas_core(argv);
  const char *cmd = argv[1];
  if (strcmp(cmd, "verify") == 0) return sdc_cmd_verify(argc - 1, argv + 1);
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    sdc__usage(stdout);
    return 0;
  }
  fprintf(stderr, "sdc: unknown command '%s'\n", cmd);
  sdc__usage(stderr);
  return 2;
}
