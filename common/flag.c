/* flag.c - command-line values parsed strictly. */
#include "flag.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

int sdc_flag_pair(const char *flag, const char *s, char sep, const char *form, int64_t lo, int64_t hi, int64_t *a,
                  int64_t *b) {
  const char *mid = strchr(s, sep);
  char first[32];
  int64_t x = 0, y = 0;
  /* each part strictly, as sdc_flag_int reads one: no sign games, no spaces, nothing after */
  int ok = mid && mid > s && (size_t)(mid - s) < sizeof first && mid[1] && !strchr(mid + 1, sep);
  if (ok) {
    memcpy(first, s, (size_t)(mid - s));
    first[mid - s] = 0;
    ok = sdc_flag_int(flag, first, lo, hi, &x) == SDC_OK && sdc_flag_int(flag, mid + 1, lo, hi, &y) == SDC_OK;
  }
  if (!ok)
    return sdc_seterr(SDC_EINVAL, "%s '%s': expected %s, each an integer in [%lld, %lld]", flag, s, form, (long long)lo,
                      (long long)hi);
  *a = x, *b = y;
  return SDC_OK;
}
