/* cli.h - the sdc subcommands. */
#ifndef SDC_CLI_H
#define SDC_CLI_H

/* Each returns the process exit code: 0 success, 1 failure, 2 bad usage/input. */
int sdc_cmd_verify(int argc, char **argv);
int sdc_cmd_inspect(int argc, char **argv);
int sdc_cmd_generate(int argc, char **argv);
int sdc_cmd_model_init(int argc, char **argv);
int sdc_cmd_submit(int argc, char **argv);
int sdc_cmd_wait(int argc, char **argv);
int sdc_cmd_status(int argc, char **argv);
int sdc_cmd_cancel(int argc, char **argv);
int sdc_cmd_cluster(int argc, char **argv);
int sdc_cmd_bench_engine(int argc, char **argv);

#endif
