/* imagecond.c - an img2img / inpainting request's images to VAE posteriors, preprocessed as diffusers does. */
#include "imagecond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "image.h"

/* Encodes x (1,Ci,H,W) into moments (2,C,h,w): mean then logvar. */
static int sdc__encode(const sdc_vae *v, sdc_arena *a, const float *x, int64_t H, int64_t W, int64_t one,
                       float **moments) {
  *moments = malloc((size_t)(2 * one) * sizeof **moments);
  if (!*moments) return sdc_seterr(SDC_ENOMEM, "out of memory for the VAE posterior");
  sdc_arena_mark mk = sdc_arena_get_mark(a);
  int err = sdc_vae_encode(v, a, x, 1, H, W, *moments, *moments + one);
  sdc_arena_reset(a, mk);
  return err;
}

int sdc_image_cond_encode(const sdc_vae *v, sdc_arena *a, const void *init, size_t n_init, const void *mask,
                          size_t n_mask, int64_t width, int64_t height, int need_init, sdc_image_cond *out) {
  memset(out, 0, sizeof *out);
  if (!(v->parts & SDC_VAE_ENCODER)) return sdc_seterr(SDC_EINVAL, "init_image: the VAE encoder is not loaded");
  uint8_t *rgb = NULL, *grey = NULL;
  float *x = NULL;
  int64_t iw = 0, ih = 0, mw = 0, mh = 0;
  int err = sdc_image_decode(init, n_init, "init_image", 3, &rgb, &iw, &ih);
  /* no resampling (docs/engine.md): the caller resizes, so the pixels are the user's */
  if (!err && (iw != width || ih != height))
    err = sdc_seterr(SDC_EINVAL, "init_image is %lldx%lld but the request is %lldx%lld: resize it first", (long long)iw,
                     (long long)ih, (long long)width, (long long)height);
  if (!err && mask) err = sdc_image_decode(mask, n_mask, "mask", 1, &grey, &mw, &mh);
  if (!err && mask && (mw != iw || mh != ih))
    err = sdc_seterr(SDC_EINVAL, "mask is %lldx%lld but init_image is %lldx%lld: resize it first", (long long)mw,
                     (long long)mh, (long long)iw, (long long)ih);
  const int64_t s = sdc_vae_scale(&v->cfg), C = v->cfg.latent_channels, HW = width * height;
  if (!err && (width % s || height % s))
    err = sdc_seterr(SDC_EINVAL, "init_image: %lldx%lld is not a multiple of %lld", (long long)width,
                     (long long)height, (long long)s);
  if (err) goto done;
  out->C = C, out->h = height / s, out->w = width / s;
  const int64_t hw = out->h * out->w, one = C * hw;
  x = malloc((size_t)(3 * HW) * sizeof *x);
  if (!x) {
    err = sdc_seterr(SDC_ENOMEM, "init_image: out of memory for %lldx%lld", (long long)width, (long long)height);
    goto done;
  }
  /* VaeImageProcessor: HWC uint8 -> CHW float, /255 in float32, then 2x - 1 */
  for (int64_t i = 0; i < HW; i++)
    for (int c = 0; c < 3; c++) x[c * HW + i] = 2.0f * ((float)rgb[3 * i + c] / 255.0f) - 1.0f;
  if (need_init && (err = sdc__encode(v, a, x, height, width, one, &out->init_moments))) goto done;
  if (mask) {
    /* mask processor: grey /255, binarised at 0.5 (1 = repaint); masked
     * image = init * (mask < 0.5), so repainted pixels become 0 (mid grey) */
    for (int64_t i = 0; i < HW; i++) {
      const float m = (float)grey[i] / 255.0f < 0.5f ? 0.0f : 1.0f;
      grey[i] = (uint8_t)m;
      if (m >= 0.5f)
        for (int c = 0; c < 3; c++) x[c * HW + i] = 0.0f;
    }
    if ((err = sdc__encode(v, a, x, height, width, one, &out->masked_moments))) goto done;
    out->mask = malloc((size_t)hw * sizeof *out->mask);
    if (!out->mask) {
      err = sdc_seterr(SDC_ENOMEM, "mask: out of memory");
      goto done;
    }
    /* torch's interpolate(mode="nearest"): src = min(floor(dst * (float)in/out), in - 1) */
    const float sy = (float)height / (float)out->h, sx = (float)width / (float)out->w;
    for (int64_t y = 0; y < out->h; y++) {
      int64_t yy = (int64_t)floorf((float)y * sy);
      if (yy > height - 1) yy = height - 1;
      for (int64_t xo = 0; xo < out->w; xo++) {
        int64_t xx = (int64_t)floorf((float)xo * sx);
        if (xx > width - 1) xx = width - 1;
        out->mask[y * out->w + xo] = grey[yy * width + xx];
      }
    }
  }
done:
  free(rgb), free(grey), free(x);
  if (err) sdc_image_cond_free(out);
  return err;
}

void sdc_image_cond_free(sdc_image_cond *c) {
  free(c->init_moments), free(c->masked_moments), free(c->mask);
  memset(c, 0, sizeof *c);
}
