/* log.h - one log line per event, one format for every process:
 *   <unix ms> <process> <instance>[ job <id>][ step <n>/<of>]: <message>
 * e.g. "1764600427123 coordinator host-42 job a1 step 3/20: re-issued to unet-mid w2". */
#ifndef SDC_LOG_H
#define SDC_LOG_H

#include <stdint.h>

/* Names the process ("coordinator", "worker") and this instance (its id);
 * both are copied. Call once at start-up, before other threads log. */
void sdc_log_init(const char *process, const char *instance);

/* Writes one line to stderr. job may be NULL; step < 0 leaves the step out
 * (n_steps <= 0 prints the step alone). Messages are cut at 1 KiB. */
void sdc_log(const char *job, int64_t step, int64_t n_steps, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
