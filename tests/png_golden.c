/* png_golden.c - PNGs sdc generate wrote against a golden png_uint8. */
#include "png_golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pngio.h"
#include "test_util.h"

void sdc_test_png_golden(const char *out, int64_t n_img, const uint8_t *want, int64_t per, double *frac,
                         int64_t *worst) {
  int64_t within1 = 0;
  *worst = 0;
  for (int64_t i = 0; i < n_img; i++) {
    char file[2400];
    if (n_img == 1) snprintf(file, sizeof file, "%s", out);
    else snprintf(file, sizeof file, "%.*s-%lld.png", (int)(strlen(out) - 4), out, (long long)i);
    uint8_t *rgb = NULL;
    int64_t w, h;
    int rc = sdc_png_read(file, &rgb, &w, &h, NULL);
    CHECK(rc == 0 && w * h * 3 == per, "%s: %s", file, rc ? sdc_errmsg(rc) : "size differs from the golden");
    for (int64_t k = 0; rgb && w * h * 3 == per && k < per; k++) {
      int64_t d = llabs((long long)rgb[k] - (long long)want[i * per + k]);
      within1 += d <= 1;
      if (d > *worst) *worst = d;
    }
    free(rgb);
  }
  *frac = (double)within1 / (double)(per * n_img);
}
