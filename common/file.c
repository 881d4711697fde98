/* file.c - whole files into memory, with errors that name the file. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int sdc_read_file(const char *path, char **out, size_t *n_bytes) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - len - 1, fp);
    if (len < cap - 1) break;
    char *nb = realloc(buf, cap * 2);
    if (!nb) { free(buf); buf = NULL; break; }
    buf = nb, cap *= 2;
  }
  int bad = ferror(fp);
  fclose(fp);
  if (!buf) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  if (bad) {
    free(buf);
    return sdc_seterr(SDC_EIO, "%s: read error", path);
  }
  buf[len] = 0;
  *out = buf;
  if (n_bytes) *n_bytes = len;
  return SDC_OK;
}
