/* utf8.h - UTF-8 validation and decoding on utf8proc: one definition of "valid" for jobs, frames, flags and the tokenizer. */
#ifndef SDC_UTF8_H
#define SDC_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Byte offset of the first invalid sequence in s[0..n) -- overlong forms,
 * surrogates, code points past U+10FFFF, a sequence cut short -- or -1 when
 * all of it is valid (RFC 3629). A NUL byte is valid here. */
long sdc_utf8_invalid_at(const char *s, size_t n);

/* 1 when the NUL-terminated s is valid UTF-8, else 0. */
int sdc_utf8_valid(const char *s);

/* Decodes the code point at s[0..n) (valid UTF-8, n > 0) into *cp and returns
 * its byte count; an invalid sequence gives U+FFFD and 1. */
size_t sdc_utf8_next(const char *s, size_t n, int32_t *cp /* OUT */);

#endif
