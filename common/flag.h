/* flag.h - command-line values parsed strictly: the whole string, in range, or a one-line error. */
#ifndef SDC_FLAG_H
#define SDC_FLAG_H

#include <stdint.h>

/* A decimal integer in [lo, hi] into *out. SDC_EINVAL with the message
 * "<flag> '<s>': expected an integer in [lo, hi]" otherwise (*out untouched). */
int sdc_flag_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out /* OUT */);

#endif
