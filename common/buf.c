/* buf.c - a growable byte string. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void sdc_buf_put(sdc_buf *b, const void *data, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *grown = realloc(b->p, cap);
    if (!grown) {
      b->oom = 1;
      return;
    }
    b->p = grown, b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
  b->p[b->n] = 0;
}

void sdc_buf_puts(sdc_buf *b, const char *s) { sdc_buf_put(b, s, strlen(s)); }

void sdc_buf_free(sdc_buf *b) {
  free(b->p);
  *b = (sdc_buf){0};
}
