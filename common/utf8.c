/* utf8.c - UTF-8 validation and decoding on utf8proc. */
#include "utf8.h"

#include <string.h>
#include <utf8proc.h>

long sdc_utf8_invalid_at(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if ((uint8_t)s[i] < 0x80) { /* ASCII: the common case, no call */
      i++;
      continue;
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) return (long)i;
    i += (size_t)k;
  }
  return -1;
}

int sdc_utf8_valid(const char *s) { return sdc_utf8_invalid_at(s, strlen(s)) < 0; }

size_t sdc_utf8_next(const char *s, size_t n, int32_t *cp) {
  utf8proc_int32_t c;
  utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
  if (k <= 0) {
    *cp = 0xfffd;
    return 1;
  }
  *cp = c;
  return (size_t)k;
}
