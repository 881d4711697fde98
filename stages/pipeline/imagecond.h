/* imagecond.h - an img2img / inpainting request's images, decoded, checked and VAE-encoded (sdc_image_cond). */
#ifndef SDC_IMAGECOND_H
#define SDC_IMAGECOND_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "denoise.h"
#include "vae.h"

/* Decodes the init image and the mask (PNG or JPEG bytes; mask NULL for
 * img2img), checks them against the request's width x height (docs/jobs.md:
 * same size, no resampling), preprocesses them as diffusers' VaeImageProcessor
 * (pixels to [-1,1]; the mask to grey, binarised at 0.5, masked image =
 * init * (mask < 0.5), mask brought to latent size by nearest neighbour) and
 * runs the VAE encoder (v needs SDC_VAE_ENCODER): init_moments only when
 * need_init (sdc_denoise_needs_init). Errors name "init_image" or "mask" and
 * the problem. out owns heap arrays: sdc_image_cond_free(). */
int sdc_image_cond_encode(const sdc_vae *v, sdc_arena *a, const void *init, size_t n_init, const void *mask,
                          size_t n_mask, int64_t width, int64_t height, int need_init, sdc_image_cond *out /* OUT */);
void sdc_image_cond_free(sdc_image_cond *c);

#endif
