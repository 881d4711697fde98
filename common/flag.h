/* flag.h - command-line values parsed strictly: the whole string, in range, or a one-line error. */
#ifndef SDC_FLAG_H
#define SDC_FLAG_H

#include <stdint.h>

/* A decimal integer in [lo, hi] into *out. SDC_EINVAL with the message
 * "<flag> '<s>': expected an integer in [lo, hi]" otherwise (*out untouched). */
int sdc_flag_int(const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out /* OUT */);

/* Two decimal integers joined by sep ("1024x768" with 'x', "16,32" with ','), each in [lo, hi], into *a and
 * *b in the order written. SDC_EINVAL with "<flag> '<s>': expected <form>, each an integer in [lo, hi]"
 * otherwise (form names the parts, e.g. "WIDTHxHEIGHT"; *a and *b untouched). */
int sdc_flag_pair(const char *flag, const char *s, char sep, const char *form, int64_t lo, int64_t hi,
                  int64_t *a /* OUT */, int64_t *b /* OUT */);

#endif
