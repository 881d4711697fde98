/* sdc.c - the sdc command: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.h"

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc <command> [options]\n"
          "commands:\n"
          "  generate --model PATH --prompt TEXT  make an image (see sdc generate --help)\n"
          "  model-init --arch sd15|sd21|tiny --out DIR  write a random-weight model folder\n"
          "  inspect --model PATH  load a model (diffusers folder or .safetensors) and describe it\n"
          "  verify --ref DIR      check every stage against diffusers' golden vectors\n"
          "  submit --prompt TEXT [--redis URL]  queue a job on a cluster; prints its id\n"
          "  wait ID [--output FILE.png]  wait for a job, with progress, and write its image(s)\n"
          "  status ID             print a job's state hash\n"
          "  cancel ID             ask the cluster to cancel a job\n"
          "  cluster --model PATH  run a coordinator and workers (and redis) on this machine\n"
          "  bench-engine --model DIR  time each stage against the machine's measured peak\n"
          "  bench --redis URL     N jobs at concurrency C on a running cluster: throughput, latency, stages\n"
          "  keygen --out DIR      CURVE keys and the authorized file for a cluster (docs/security.md)\n"
          "run 'sdc <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    sdc__usage(stderr);
    return 2;
  }
  sdc_runtime_init(argv);
  const char *cmd = argv[1];
  if (strcmp(cmd, "verify") == 0) return sdc_cmd_verify(argc - 1, argv + 1);
  if (strcmp(cmd, "inspect") == 0) return sdc_cmd_inspect(argc - 1, argv + 1);
  if (strcmp(cmd, "generate") == 0) return sdc_cmd_generate(argc - 1, argv + 1);
  if (strcmp(cmd, "model-init") == 0) return sdc_cmd_model_init(argc - 1, argv + 1);
  if (strcmp(cmd, "submit") == 0) return sdc_cmd_submit(argc - 1, argv + 1);
  if (strcmp(cmd, "wait") == 0) return sdc_cmd_wait(argc - 1, argv + 1);
  if (strcmp(cmd, "status") == 0) return sdc_cmd_status(argc - 1, argv + 1);
  if (strcmp(cmd, "cancel") == 0) return sdc_cmd_cancel(argc - 1, argv + 1);
  if (strcmp(cmd, "cluster") == 0) return sdc_cmd_cluster(argc - 1, argv + 1);
  if (strcmp(cmd, "bench-engine") == 0) return sdc_cmd_bench_engine(argc - 1, argv + 1);
  if (strcmp(cmd, "bench") == 0) return sdc_cmd_bench(argc - 1, argv + 1);
  if (strcmp(cmd, "keygen") == 0) return sdc_cmd_keygen(argc - 1, argv + 1);
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    sdc__usage(stdout);
    return 0;
  }
  fprintf(stderr, "sdc: unknown command '%s'\n", cmd);
  sdc__usage(stderr);
  return 2;
}
