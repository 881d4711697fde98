/* pngio.h - writing 8-bit RGB PNGs (libpng) with text metadata. */
#ifndef SDC_PNGIO_H
#define SDC_PNGIO_H

#include <stddef.h>
#include <stdint.h>

/* Writes rgb (H*W*3 bytes, row-major) to path with tEXt chunks key[i]=value[i].
 * The file appears complete or not at all: it is written beside the target
 * and renamed. Errors name the path. */
int sdc_png_write(const char *path, const uint8_t *rgb, int64_t width, int64_t height, int n_text,
                  const char *const *keys, const char *const *values);

/* Encodes rgb into PNG bytes in memory (*out: heap, caller frees). */
int sdc_png_encode(const uint8_t *rgb, int64_t width, int64_t height, int n_text, const char *const *keys,
                   const char *const *values, uint8_t **out /* OUT */, size_t *n /* OUT */);

/* Reads an 8-bit RGB or RGBA PNG into a heap buffer of H*W*3 bytes (alpha
 * dropped); with its "parameters" tEXt value when present (heap, may be NULL). */
int sdc_png_read(const char *path, uint8_t **rgb /* OUT */, int64_t *width /* OUT */, int64_t *height /* OUT */,
                 char **parameters /* OUT, may be NULL */);

#endif
