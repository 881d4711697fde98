/* flag.c - command-line values parsed strictly. */
#include "flag.h"

#include <errno.h>
#include <stdlib.h>

#include "error.h"

int sdc_flag_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return sdc_seterr(SDC_EINVAL, "%s '%s': expected an integer in [%lld, %lld]", flag, s, (long long)lo, (long long)hi);
  *out = v;
  return SDC_OK;
}
