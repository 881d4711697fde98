/* clock.h - the two clocks: wall time for what crosses processes, monotonic time for durations. */
#ifndef SDC_CLOCK_H
#define SDC_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): timestamps in Redis,
 * deadlines sent to other processes, log lines. */
uint64_t sdc_clock_unix_ms(void);
/* Monotonic milliseconds (CLOCK_MONOTONIC): timeouts within one process. */
int64_t sdc_clock_mono_ms(void);
/* Monotonic nanoseconds: per-op timers that sum many short intervals. */
uint64_t sdc_clock_mono_ns(void);
/* Monotonic seconds as a double: benchmarks and durations. */
double sdc_clock_mono_s(void);
/* Sleeps ms milliseconds, resuming after signals. */
void sdc_clock_sleep_ms(int64_t ms);

#endif
