/* buf.h - a growable byte string: rendered text, received bodies, encoded files. */
#ifndef SDC_BUF_H
#define SDC_BUF_H

#include <stddef.h>

/* Zero-initialise ({0}) to start empty. p is NUL-terminated after every put
 * (NULL while nothing was put); the caller frees it (sdc_buf_free). Out of
 * memory sets oom and makes every later put a no-op, so a writer checks once
 * at the end. */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sdc_buf;

void sdc_buf_put(sdc_buf *b, const void *data, size_t n);
void sdc_buf_puts(sdc_buf *b, const char *s);
void sdc_buf_free(sdc_buf *b);

#endif
