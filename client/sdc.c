/* sdc.c - the sdc command: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.h"
#include "isa.h"
#include "ops.h"
#include "sdc_version.h"

extern char *openblas_get_corename(void);

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
} sdc__command;

static const sdc__command sdc__commands[] = {
    {"verify", sdc_cmd_verify},   {"inspect", sdc_cmd_inspect}, {"generate", sdc_cmd_generate},
    {"model-init", sdc_cmd_model_init}, {"submit", sdc_cmd_submit}, {"wait", sdc_cmd_wait},
    {"status", sdc_cmd_status},   {"cancel", sdc_cmd_cancel},   {"cluster", sdc_cmd_cluster},
    {"bench-engine", sdc_cmd_bench_engine}, {"bench", sdc_cmd_bench}, {"keygen", sdc_cmd_keygen},
};

static const sdc__command *sdc__find(const char *name) {
  for (size_t i = 0; i < sizeof sdc__commands / sizeof *sdc__commands; i++)
    if (strcmp(name, sdc__commands[i].name) == 0) return &sdc__commands[i];
  return NULL;
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc <command> [options]\n"
          "commands:\n"
          "  generate --model PATH --prompt TEXT  make an image (see sdc generate --help)\n"
          "  model-init --arch sd15|sd21|tiny --out DIR  write a random-weight model folder\n"
          "  inspect --model PATH  load a model (diffusers folder or .safetensors) and say what it is\n"
          "  verify --ref DIR      check every stage against diffusers' golden vectors\n"
          "  submit --prompt TEXT [--redis URL]  queue a job on a cluster; prints its id\n"
          "  wait ID [--output FILE.png]  wait for a job, with progress, and write its image(s)\n"
          "  status ID [--json]    print a job's state hash\n"
          "  cancel ID             ask the cluster to cancel a job\n"
          "  cluster --model PATH  run a coordinator and workers (and redis) on this machine\n"
          "  bench-engine --model DIR  time each stage against the machine's measured peak\n"
          "  bench --redis URL     N jobs at concurrency C on a running cluster: throughput, latency, stages\n"
          "  keygen --out DIR      CURVE keys and the authorized file for a cluster (docs/security.md)\n"
          "  help COMMAND          a command's options (= sdc COMMAND --help)\n"
          "  --version             the version and the git revision it was built from\n"
          "Client commands take their Redis URL from --redis, else $SDC_REDIS, else redis://127.0.0.1:6379.\n"
          "run 'sdc <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    sdc__usage(stderr);
    return 2;
  }
  sdc_runtime_init(argv);
  const char *cmd = argv[1];
  const sdc__command *c = sdc__find(cmd);
  if (c) return c->run(argc - 1, argv + 1);
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("sdc %s%s%s\n", SDC_VERSION, SDC_GIT_DESCRIBE[0] ? " " : "", SDC_GIT_DESCRIBE);
    /* what this machine's kernels run: the first thing a performance report needs */
    printf("kernels: ISA level %s (this CPU: %s%s), fp32 GEMMs on %s, bf16 %s, OpenBLAS core %s\n",
           sdc_isa_name(sdc_isa_level()), sdc_isa_name(sdc_isa_host()),
           sdc_isa_level() < sdc_isa_host() ? "; capped by SDC_ISA" : "", sdc_gemm_name(sdc_fp32_gemm()),
           sdc_isa_bf16() ? "available" : "not available", openblas_get_corename());
    return 0;
  }
  if (strcmp(cmd, "help") == 0 && argc == 3) { /* sdc help COMMAND = sdc COMMAND --help */
    if (!(c = sdc__find(argv[2]))) {
      fprintf(stderr, "sdc help: unknown command '%s'\n", argv[2]);
      sdc__usage(stderr);
      return 2;
    }
    char *help_argv[] = {argv[2], "--help", NULL};
    return c->run(2, help_argv);
  }
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    sdc__usage(stdout);
    return 0;
  }
  fprintf(stderr, "sdc: unknown command '%s'\n", cmd);
  sdc__usage(stderr);
  return 2;
}
