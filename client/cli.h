/* cli.h - the sdc subcommands. */
#ifndef SDC_CLI_H
#define SDC_CLI_H

#include <stdlib.h>

/* The Redis URL a client command uses without --redis: $SDC_REDIS when set and
 * not empty, else the local default. */
#define SDC_CLI_DEFAULT_REDIS "redis://127.0.0.1:6379"
static inline const char *sdc_cli_redis_default(void) {
  const char *env = getenv("SDC_REDIS");
  return env && env[0] ? env : SDC_CLI_DEFAULT_REDIS;
}

/* Each returns the process exit code: 0 success, 1 failure, 2 bad usage/input. */
int sdc_cmd_verify(int argc, char **argv);
int sdc_cmd_inspect(int argc, char **argv);
int sdc_cmd_generate(int argc, char **argv);
int sdc_cmd_model_init(int argc, char **argv);
int sdc_cmd_lora_init(int argc, char **argv); /* model-init --arch lora */
int sdc_cmd_submit(int argc, char **argv);
int sdc_cmd_wait(int argc, char **argv);
int sdc_cmd_status(int argc, char **argv);
int sdc_cmd_cancel(int argc, char **argv);
int sdc_cmd_cluster(int argc, char **argv);
int sdc_cmd_bench_engine(int argc, char **argv);
int sdc_cmd_bench(int argc, char **argv);
int sdc_cmd_keygen(int argc, char **argv);
/* sdc keygen's work: a key pair per name in dir (created 0700) and dir/authorized; prints "PUBLIC NAME"
 * lines unless quiet. 0, or 1 with a line on stderr naming the file. */
int sdc_keygen_write(const char *dir, const char *const *names, int n_names, int force, int quiet);

/* The least PSNR (8-bit, over all RGB bytes) that a bf16 image of a reference
 * pipeline may have against diffusers' fp32 one. */
#define SDC_BF16_PSNR_MIN_DB 35.0
/* Runs every pipeline case of ref_dir/goldens.json in bf16 precision (set for
 * the call, the previous precision restored after) and measures each image's
 * PSNR against the fp32 golden PNG bytes. *min_psnr_db gets the least (NAN if
 * none ran, INFINITY if all were identical), *n_cases how many produced an
 * image. Prints a line per case unless quiet; failures always (stderr when
 * quiet). Returns SDC_OK when every case reached SDC_BF16_PSNR_MIN_DB,
 * SDC_EMISMATCH when one fell below or failed, SDC_EUNSUPPORTED when this CPU
 * cannot run bf16, or the error reading ref_dir (message set). */
int sdc_verify_bf16_psnr(const char *ref_dir, double *min_psnr_db /* OUT */, int *n_cases /* OUT */, int quiet);

#endif
