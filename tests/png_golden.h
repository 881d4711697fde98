/* png_golden.h - PNGs sdc generate wrote against a golden png_uint8, within the PNG tolerance. */
#ifndef SDC_TEST_PNG_GOLDEN_H
#define SDC_TEST_PNG_GOLDEN_H

#include <stdint.h>

/* Reads the n_img PNGs of output path `out` (out itself for one image, "<out
 * without .png>-<i>.png" for several, as sdc generate names them) and compares
 * them with want (n_img images of `per` bytes each). Sets *frac to the share of
 * bytes within 1 and *worst to the largest difference; a PNG that cannot be
 * read or has another size is a CHECK failure. */
void sdc_test_png_golden(const char *out, int64_t n_img, const uint8_t *want, int64_t per, double *frac /* OUT */,
                         int64_t *worst /* OUT */);

#endif
