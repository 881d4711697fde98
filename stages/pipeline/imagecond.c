/* imagecond.c - an img2img / inpainting request's images to VAE posteriors. (Stub: issue 12 fills it in.) */
#include "imagecond.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int sdc_image_cond_encode(const sdc_vae *v, sdc_arena *a, const void *init, size_t n_init, const void *mask,
                          size_t n_mask, int64_t width, int64_t height, int need_init, sdc_image_cond *out) {
  (void)v, (void)a, (void)init, (void)n_init, (void)mask, (void)n_mask, (void)width, (void)height, (void)need_init;
  memset(out, 0, sizeof *out);
  return sdc_seterr(SDC_EUNSUPPORTED, "init_image: img2img and inpainting are not supported yet");
}

void sdc_image_cond_free(sdc_image_cond *c) {
  free(c->init_moments), free(c->masked_moments), free(c->mask);
  memset(c, 0, sizeof *c);
}
