/* denoise.c - one request's denoising loop without the models: parameters, latents, guidance, scheduler steps. */
#include "denoise.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sdc_limits.h"

int sdc_gen_params_check(const sdc_gen_params *g, int64_t max_pixels) {
  if (!g->prompt) return sdc_seterr(SDC_EINVAL, "prompt: missing");
  if (g->width < 8 || g->height < 8 || g->width % 8 || g->height % 8)
    return sdc_seterr(SDC_EINVAL, "size %lldx%lld: width and height must be positive multiples of 8", (long long)g->width,
                      (long long)g->height);
  if (max_pixels > 0 && g->width * g->height > max_pixels)
    return sdc_seterr(SDC_EINVAL, "size %lldx%lld: over the limit of %lld pixels", (long long)g->width,
                      (long long)g->height, (long long)max_pixels);
  if (g->steps < 1 || g->steps > SDC_MAX_STEPS)
    return sdc_seterr(SDC_EINVAL, "steps %lld: expected 1 to %d", (long long)g->steps, SDC_MAX_STEPS);
  if (!(g->guidance_scale >= 0) || !isfinite(g->guidance_scale))
    return sdc_seterr(SDC_EINVAL, "guidance scale %g: expected a finite number >= 0", g->guidance_scale);
  if (g->num_images < 1 || g->num_images > SDC_MAX_IMAGES)
    return sdc_seterr(SDC_EINVAL, "num images %lld: expected 1 to %d", (long long)g->num_images, SDC_MAX_IMAGES);
  if (g->scheduler >= SDC_SCHED_COUNT) return sdc_seterr(SDC_EINVAL, "scheduler %d: unknown", g->scheduler);
  return SDC_OK;
}

int sdc_denoise_needs_init(const sdc_gen_params *g, int64_t unet_in_channels) {
  (void)unet_in_channels;
  return g->kind != SDC_GEN_TXT2IMG;
}

int sdc_denoise_init(sdc_denoise *d, const sdc_gen_params *g, const char *scheduler_json, int64_t C, int64_t C_in,
                     int64_t vae_scale, double scaling_factor, const sdc_image_cond *cond, float *init_latents) {
  memset(d, 0, sizeof *d);
  int err = sdc_gen_params_check(g, 0);
  if (err) return err;
  if (g->kind != SDC_GEN_TXT2IMG || cond || C_in != C)
    return sdc_seterr(SDC_EUNSUPPORTED, "img2img and inpainting: not supported yet");
  d->C_in = C_in;
  d->N = g->num_images, d->C = C, d->h = g->height / vae_scale, d->w = g->width / vae_scale;
  d->n_lat = d->N * C * d->h * d->w;
  d->cfg = g->guidance_scale > 1.0; /* diffusers: guidance only above 1 */
  d->guidance_scale = g->guidance_scale;
  d->scaling_factor = scaling_factor;
  sdc_sched_config sc;
  if ((err = sdc_sched_config_parse(&sc, scheduler_json, g->scheduler, "scheduler_config.json"))) return err;
  if ((err = sdc_scheduler_create(&d->sched, &sc, g->steps))) return err;
  d->lat = malloc((size_t)d->n_lat * sizeof *d->lat);
  d->noise = malloc((size_t)d->n_lat * sizeof *d->noise);
  if (!d->lat || !d->noise) {
    sdc_denoise_free(d);
    return sdc_seterr(SDC_ENOMEM, "out of memory for %lld latents", (long long)d->n_lat);
  }
  sdc_rng_seed(&d->rng, g->seed);
  sdc_rng_randn(&d->rng, d->lat, d->n_lat);
  if (init_latents) memcpy(init_latents, d->lat, (size_t)d->n_lat * sizeof *d->lat);
  const float sigma0 = (float)sdc_scheduler_init_noise_sigma(d->sched);
  for (int64_t i = 0; i < d->n_lat; i++) d->lat[i] *= sigma0;
  return SDC_OK;
}

void sdc_denoise_free(sdc_denoise *d) {
  sdc_scheduler_free(d->sched);
  free(d->lat);
  free(d->noise);
  memset(d, 0, sizeof *d);
}

int64_t sdc_denoise_calls_left(const sdc_denoise *d) {
  return sdc_scheduler_n_calls(d->sched) - sdc_scheduler_call_index(d->sched);
}

void sdc_denoise_model_input(const sdc_denoise *d, float *in, float *timesteps) {
  sdc_scheduler_scale_input(d->sched, d->lat, in, d->n_lat);
  if (d->cfg) memcpy(in + d->n_lat, in, (size_t)d->n_lat * sizeof *in);
  const float t = (float)sdc_scheduler_timestep(d->sched, sdc_scheduler_call_index(d->sched));
  for (int64_t b = 0; b < sdc_denoise_batch(d); b++) timesteps[b] = t;
}

int sdc_denoise_step(sdc_denoise *d, float *pred) {
  if (d->cfg) {
    const float gs = (float)d->guidance_scale;
    for (int64_t i = 0; i < d->n_lat; i++) pred[i] = pred[i] + gs * (pred[d->n_lat + i] - pred[i]);
  }
  const float *z = NULL;
  if (sdc_scheduler_needs_noise(d->sched)) {
    sdc_rng_randn(&d->rng, d->noise, d->n_lat);
    z = d->noise;
  }
  return sdc_scheduler_step(d->sched, pred, d->lat, d->n_lat, z);
}

void sdc_denoise_vae_input(const sdc_denoise *d, float *out) {
  const float inv = (float)(1.0 / d->scaling_factor);
  for (int64_t i = 0; i < d->n_lat; i++) out[i] = d->lat[i] * inv;
}

void sdc_gen_params_text(const sdc_gen_params *g, int64_t index, const char *origin, char *out, size_t n) {
  snprintf(out, n,
           "%s\nNegative prompt: %s\nSteps: %lld, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %lldx%lld, "
           "Batch: %lld of %lld, %s, Generator: sdcluster",
           g->prompt, g->negative_prompt ? g->negative_prompt : "", (long long)g->steps,
           g->scheduler >= 0 ? sdc_sched_name((sdc_sched_kind)g->scheduler) : "model default", g->guidance_scale,
           (unsigned long long)g->seed, (long long)g->width, (long long)g->height, (long long)index + 1,
           (long long)g->num_images, origin);
}
