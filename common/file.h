/* file.h - whole files into memory, with errors that name the file. */
#ifndef SDC_FILE_H
#define SDC_FILE_H

#include <stddef.h>

/* Reads a whole file into a NUL-terminated heap buffer (caller frees).
 * On error *out is NULL and the message names the path. */
int sdc_read_file(const char *path, char **out /* OUT */, size_t *n_bytes /* OUT, may be NULL */);

#endif
