/* log.c - one log line per event, one format for every process. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#include "clock.h"

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char sdc__process[32] = "sdc", sdc__instance[128] = "";

void sdc_log_init(const char *process, const char *instance) {
  snprintf(sdc__process, sizeof sdc__process, "%s", process ? process : "sdc");
  snprintf(sdc__instance, sizeof sdc__instance, "%s", instance ? instance : "");
}

void sdc_log(const char *job, int64_t step, int64_t n_steps, const char *fmt, ...) {
  char msg[1024], where[256] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int n = 0;
  if (job) n = snprintf(where, sizeof where, " job %s", job);
  if (step >= 0 && n >= 0 && (size_t)n < sizeof where) {
    if (n_steps > 0)
      snprintf(where + n, sizeof where - (size_t)n, " step %lld/%lld", (long long)step, (long long)n_steps);
    else
      snprintf(where + n, sizeof where - (size_t)n, " step %lld", (long long)step);
  }
  /* one fprintf: a line is written whole even when threads log at once */
  fprintf(stderr, "%llu %s%s%s%s: %s\n", (unsigned long long)sdc_clock_unix_ms(), sdc__process,
          sdc__instance[0] ? " " : "", sdc__instance, where, msg);
}
