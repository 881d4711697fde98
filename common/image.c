/* image.c - decoding the images a request brings. (Stub: issue 12 fills it in.) */
#include "image.h"

#include "error.h"

int sdc_image_probe(const void *data, size_t n, const char *label, sdc_image_format *format, int64_t *width,
                    int64_t *height) {
  (void)data, (void)n, (void)format, (void)width, (void)height;
  return sdc_seterr(SDC_EUNSUPPORTED, "%s: image inputs are not supported yet", label);
}

int sdc_image_decode(const void *data, size_t n, const char *label, int channels, uint8_t **pix, int64_t *width,
                     int64_t *height) {
  (void)data, (void)n, (void)channels, (void)pix, (void)width, (void)height;
  return sdc_seterr(SDC_EUNSUPPORTED, "%s: image inputs are not supported yet", label);
}
