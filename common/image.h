/* image.h - decoding the images a request brings (PNG or JPEG bytes) into 8-bit pixels, with limits. */
#ifndef SDC_IMAGE_H
#define SDC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SDC_IMAGE_PNG = 1, SDC_IMAGE_JPEG = 2 } sdc_image_format;

/* Reads the format and size of encoded image bytes without decoding the
 * pixels (what the coordinator checks at claim time). label names the input
 * in errors ("init_image", "mask"). SDC_EINVAL for anything that is not a
 * PNG or JPEG of 1..SDC_MAX_INPUT_IMAGE_SIDE pixels a side, or over
 * SDC_MAX_INPUT_IMAGE_BYTES. */
int sdc_image_probe(const void *data, size_t n, const char *label, sdc_image_format *format /* OUT */,
                    int64_t *width /* OUT */, int64_t *height /* OUT */);

/* Decodes PNG or JPEG bytes to 8-bit pixels with `channels` per pixel: 3 gives
 * RGB (grey expanded, alpha dropped, 16-bit reduced), 1 gives luminance as
 * PIL's convert("L") (L = (R*299 + G*587 + B*114) / 1000 on RGB input).
 * *pix is heap (H*W*channels bytes), the caller frees it. A truncated or
 * corrupt file is SDC_EINVAL naming label and the decoder's reason. */
int sdc_image_decode(const void *data, size_t n, const char *label, int channels, uint8_t **pix /* OUT */,
                     int64_t *width /* OUT */, int64_t *height /* OUT */);

#endif
