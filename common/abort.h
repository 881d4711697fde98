/* abort.h - cancel points of a long computation: another thread raises a flag, the computing thread
 * sees it between model blocks and unwinds with SDC_ECANCELLED (its arena is reset by the caller). */
#ifndef SDC_ABORT_H
#define SDC_ABORT_H

#include <stdatomic.h>

/* From now on this thread's sdc_abort_check() answers SDC_ECANCELLED once *flag is non-zero; NULL
 * (the default) watches nothing. The flag must outlive the watch. */
void sdc_abort_watch(const atomic_int *flag);
/* SDC_OK, or SDC_ECANCELLED with the message "cancelled before <part> block <block> layer <layer>" (a
 * negative block or layer is left out) when the watched flag is up. Called between layers (a resnet, a
 * transformer, a resample) only: the math of a layer never changes. */
int sdc_abort_check(const char *part, int block, int layer);

#endif
