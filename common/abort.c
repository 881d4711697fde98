/* abort.c - the per-thread cancel flag the models check between blocks. */
#include "abort.h"

#include "error.h"

static _Thread_local const atomic_int *sdc__abort_flag;

void sdc_abort_watch(const atomic_int *flag) { sdc__abort_flag = flag; }

int sdc_abort_check(const char *part, int block, int layer) {
  if (!sdc__abort_flag || !atomic_load_explicit(sdc__abort_flag, memory_order_relaxed)) return SDC_OK;
  if (block < 0) return sdc_seterr(SDC_ECANCELLED, "cancelled before %s", part);
  if (layer < 0) return sdc_seterr(SDC_ECANCELLED, "cancelled before %s block %d", part, block);
  return sdc_seterr(SDC_ECANCELLED, "cancelled before %s block %d layer %d", part, block, layer);
}
