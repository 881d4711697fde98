/* denoise.c - one request's denoising loop without the models: parameters, latents, guidance, scheduler steps. */
#include "denoise.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sdc_limits.h"
#include "utf8.h"

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
  if (g->kind != SDC_GEN_TXT2IMG && g->kind != SDC_GEN_IMG2IMG && g->kind != SDC_GEN_INPAINT)
    return sdc_seterr(SDC_EINVAL, "kind %d: expected txt2img, img2img or inpaint", (int)g->kind);
  if (g->kind != SDC_GEN_TXT2IMG) {
    if (!(g->strength > 0 && g->strength <= 1)) /* NaN fails too */
      return sdc_seterr(SDC_EINVAL, "strength %g: expected a number in (0, 1]", g->strength);
    if ((int64_t)((double)g->steps * g->strength) < 1)
      return sdc_seterr(SDC_EINVAL, "strength %g with %lld steps: int(steps * strength) is 0, no step would run",
                        g->strength, (long long)g->steps);
  }
  return SDC_OK;
}

/* A micro-conditioning pair: both in lo..SDC_MAX_MICRO_COND. */
static int sdc__check_pair(const char *field, const int64_t v[2], int64_t lo) {
  if (v[0] < lo || v[1] < lo || v[0] > SDC_MAX_MICRO_COND || v[1] > SDC_MAX_MICRO_COND)
    return sdc_seterr(SDC_EINVAL, "%s [%lld, %lld]: expected two integers in %lld..%d", field, (long long)v[0],
                      (long long)v[1], (long long)lo, SDC_MAX_MICRO_COND);
  return SDC_OK;
}

int sdc_gen_params_check_model(const sdc_gen_params *g, const sdc_model_caps *caps) {
  const int micro = g->original_size[0] || g->original_size[1] || g->target_size[0] || g->target_size[1] || g->has_crop;
  if (!caps->dual_text && (g->prompt_2 || g->negative_prompt_2))
    return sdc_seterr(SDC_EINVAL, "%s: only for SDXL models (two text encoders); this model has one",
                      g->prompt_2 ? "prompt_2" : "negative_prompt_2");
  if (!caps->text_time && micro)
    return sdc_seterr(SDC_EINVAL, "%s: only for SDXL models (text_time conditioning); this model has none",
                      g->original_size[0] || g->original_size[1] ? "original_size"
                      : g->has_crop                               ? "crops_coords_top_left"
                                                                  : "target_size");
  if (!caps->image_input && g->kind != SDC_GEN_TXT2IMG)
    return sdc_seterr(SDC_EINVAL, "%s: img2img and inpainting are not supported for this model (SDXL runs "
                      "text-to-image)", g->kind == SDC_GEN_INPAINT ? "mask" : "init_image");
  int err = SDC_OK;
  if (g->original_size[0] || g->original_size[1]) err = sdc__check_pair("original_size", g->original_size, 1);
  if (!err && (g->target_size[0] || g->target_size[1])) err = sdc__check_pair("target_size", g->target_size, 1);
  if (!err && g->has_crop) err = sdc__check_pair("crops_coords_top_left", g->crops_coords_top_left, 0);
  if (!err && g->prompt_2 && !sdc_utf8_valid(g->prompt_2)) err = sdc_seterr(SDC_EINVAL, "prompt_2: not valid UTF-8");
  if (!err && g->negative_prompt_2 && !sdc_utf8_valid(g->negative_prompt_2))
    err = sdc_seterr(SDC_EINVAL, "negative_prompt_2: not valid UTF-8");
  return err;
}

void sdc_gen_time_ids(const sdc_gen_params *g, int64_t rows, float *out) {
  const int64_t *o = g->original_size, *t = g->target_size;
  for (int64_t r = 0; r < rows; r++, out += 6) {
    out[0] = (float)(o[0] ? o[0] : g->height), out[1] = (float)(o[0] ? o[1] : g->width);
    out[2] = g->has_crop ? (float)g->crops_coords_top_left[0] : 0.0f;
    out[3] = g->has_crop ? (float)g->crops_coords_top_left[1] : 0.0f;
    out[4] = (float)(t[0] ? t[0] : g->height), out[5] = (float)(t[0] ? t[1] : g->width);
  }
}

void sdc_text_plan_make(const sdc_gen_params *g, const sdc_model_caps *caps, sdc_text_plan *p) {
  memset(p, 0, sizeof *p);
  const int cfg = g->guidance_scale > 1.0; /* as sdc_denoise_init */
  const char *prompt_2 = g->prompt_2 ? g->prompt_2 : g->prompt;
  /* diffusers: zero_out_negative_prompt = negative_prompt is None and force_zeros_for_empty_prompt */
  if (cfg && !(caps->force_zeros && !g->negative_prompt)) {
    const char *neg = g->negative_prompt ? g->negative_prompt : "";
    p->text[p->n_texts] = neg;
    p->text_2[p->n_texts++] = g->negative_prompt_2 ? g->negative_prompt_2 : neg;
  }
  p->zero_uncond = cfg && p->n_texts == 0;
  p->text[p->n_texts] = g->prompt;
  p->text_2[p->n_texts++] = prompt_2;
}

void sdc_text_layout(const sdc_text_plan *plan, int64_t N, int64_t L, int64_t D, int64_t P, const float *ctx_texts,
                     const float *pooled_texts, float *ctx, float *pooled) {
  /* row groups: [uncond; cond] under guidance (zeros or text 0 for uncond), else [cond] */
  const int groups = plan->zero_uncond ? 2 : plan->n_texts;
  for (int g = 0; g < groups; g++) {
    const int src = plan->zero_uncond ? g - 1 : g; /* -1: zeros */
    for (int64_t i = 0; i < N; i++) {
      float *c = ctx + (g * N + i) * L * D, *p = pooled ? pooled + (g * N + i) * P : NULL;
      if (src < 0) {
        memset(c, 0, (size_t)(L * D) * sizeof *c);
        if (p) memset(p, 0, (size_t)P * sizeof *p);
      } else {
        memcpy(c, ctx_texts + src * L * D, (size_t)(L * D) * sizeof *c);
        if (p && pooled_texts) memcpy(p, pooled_texts + src * P, (size_t)P * sizeof *p);
      }
    }
  }
}

int sdc_denoise_needs_init(const sdc_gen_params *g, int64_t unet_in_channels) {
  if (g->kind == SDC_GEN_IMG2IMG) return 1;
  if (g->kind != SDC_GEN_INPAINT) return 0;
  /* a 9-channel UNet sees the masked image; the init's own latents only seed a partial schedule */
  return unet_in_channels < 9 || g->strength < 1.0;
}

int64_t sdc_denoise_begin_call(const sdc_gen_params *g, int64_t sched_order) {
  if (g->kind == SDC_GEN_TXT2IMG) return 0;
  int64_t init_steps = (int64_t)((double)g->steps * g->strength); /* Python's int(): toward zero */
  if (init_steps > g->steps) init_steps = g->steps;
  return (g->steps - init_steps) * sched_order;
}

/* VAE posterior sample times the scaling factor: mean + exp(logvar / 2) * randn
 * (one draw of (1,C,h,w)), repeated into all N images as diffusers does. */
static void sdc__posterior(sdc_denoise *d, const float *moments, float *out) {
  const int64_t one = d->C * d->h * d->w;
  const float sf = (float)d->scaling_factor;
  sdc_rng_randn(&d->rng, out, one);
  for (int64_t i = 0; i < one; i++) out[i] = (moments[i] + expf(0.5f * moments[one + i]) * out[i]) * sf;
  for (int64_t b = 1; b < d->N; b++) memcpy(out + b * one, out, (size_t)one * sizeof *out);
}

/* Checks that cond carries what g->kind needs, at latent size. */
static int sdc__cond_check(const sdc_gen_params *g, const sdc_image_cond *cond, int need_init, int64_t C, int64_t h,
                           int64_t w) {
  if (g->kind == SDC_GEN_TXT2IMG) {
    if (cond) return sdc_seterr(SDC_EINVAL, "init_image: given to a text-to-image request");
    return SDC_OK;
  }
  if (!cond) return sdc_seterr(SDC_EINVAL, "init_image: missing for %s", g->kind == SDC_GEN_INPAINT ? "inpainting" : "img2img");
  if (cond->C != C || cond->h != h || cond->w != w)
    return sdc_seterr(SDC_EINVAL, "init_image: latents %lldx%lldx%lld, the request needs %lldx%lldx%lld",
                      (long long)cond->C, (long long)cond->h, (long long)cond->w, (long long)C, (long long)h,
                      (long long)w);
  if (need_init && !cond->init_moments) return sdc_seterr(SDC_EINVAL, "init_image: its latents are missing");
  if (g->kind == SDC_GEN_INPAINT && (!cond->mask || !cond->masked_moments))
    return sdc_seterr(SDC_EINVAL, "mask: missing for inpainting");
  return SDC_OK;
}

int sdc_denoise_init(sdc_denoise *d, const sdc_gen_params *g, const char *scheduler_json, int64_t C, int64_t C_in,
                     int64_t vae_scale, double scaling_factor, const sdc_image_cond *cond, float *init_latents) {
  memset(d, 0, sizeof *d);
  int err = sdc_gen_params_check(g, 0);
  if (err) return err;
  const int inpaint9 = C_in == 2 * C + 1;
  if (C_in != C && !(inpaint9 && g->kind == SDC_GEN_INPAINT))
    return sdc_seterr(SDC_EINVAL, "unet: %lld input channels, a %s request needs %lld%s", (long long)C_in,
                      g->kind == SDC_GEN_INPAINT ? "inpainting" : g->kind == SDC_GEN_IMG2IMG ? "img2img" : "text-to-image",
                      (long long)C, g->kind == SDC_GEN_INPAINT ? "" : " (an inpainting model takes a mask)");
  const int need_init = sdc_denoise_needs_init(g, C_in);
  const int64_t h = g->height / vae_scale, w = g->width / vae_scale;
  if ((err = sdc__cond_check(g, cond, need_init, C, h, w))) return err;
  d->kind = g->kind;
  d->C_in = C_in;
  d->N = g->num_images, d->C = C, d->h = h, d->w = w;
  d->n_lat = d->N * C * d->h * d->w;
  d->cfg = g->guidance_scale > 1.0; /* diffusers: guidance only above 1 */
  d->guidance_scale = g->guidance_scale;
  d->scaling_factor = scaling_factor;
  d->blend = g->kind == SDC_GEN_INPAINT && !inpaint9;
  sdc_sched_config sc;
  if ((err = sdc_sched_config_parse(&sc, scheduler_json, g->scheduler, "scheduler_config.json"))) return err;
  if ((err = sdc_scheduler_create(&d->sched, &sc, g->steps))) return err;
  if ((err = sdc_scheduler_set_begin(d->sched, sdc_denoise_begin_call(g, sdc_scheduler_order(d->sched))))) {
    sdc_denoise_free(d);
    return err;
  }
  const int64_t hw = d->h * d->w, one = C * hw;
  d->lat = malloc((size_t)d->n_lat * sizeof *d->lat);
  d->noise = malloc((size_t)d->n_lat * sizeof *d->noise);
  int oom = !d->lat || !d->noise;
  if (need_init) oom |= !(d->image_lat = malloc((size_t)d->n_lat * sizeof *d->image_lat));
  if (d->blend) oom |= !(d->init_noise = malloc((size_t)d->n_lat * sizeof *d->init_noise));
  if (g->kind == SDC_GEN_INPAINT) {
    oom |= !(d->mask = malloc((size_t)hw * sizeof *d->mask));
    oom |= !(d->masked_lat = malloc((size_t)one * sizeof *d->masked_lat));
  }
  if (oom) {
    sdc_denoise_free(d);
    return sdc_seterr(SDC_ENOMEM, "out of memory for %lld latents", (long long)d->n_lat);
  }
  /* diffusers' draws, in its order: the init posterior, the noise, the masked posterior */
  sdc_rng_seed(&d->rng, g->seed);
  if (need_init) sdc__posterior(d, cond->init_moments, d->image_lat);
  sdc_rng_randn(&d->rng, d->lat, d->n_lat);
  if (init_latents) memcpy(init_latents, d->lat, (size_t)d->n_lat * sizeof *d->lat);
  if (d->blend) memcpy(d->init_noise, d->lat, (size_t)d->n_lat * sizeof *d->lat);
  const int64_t begin = sdc_scheduler_begin(d->sched);
  if (g->kind == SDC_GEN_IMG2IMG || (g->kind == SDC_GEN_INPAINT && g->strength < 1.0)) {
    /* image + noise at the first kept timestep (img2img even at strength 1) */
    sdc_scheduler_add_noise(d->sched, d->image_lat, d->lat, d->lat, d->n_lat, begin);
  } else {
    const float sigma0 = (float)sdc_scheduler_init_noise_sigma(d->sched);
    for (int64_t i = 0; i < d->n_lat; i++) d->lat[i] *= sigma0;
  }
  if (g->kind == SDC_GEN_INPAINT) {
    float *tmp = d->noise; /* one image's worth of scratch until the first step */
    sdc_rng_randn(&d->rng, tmp, one);
    const float sf = (float)scaling_factor;
    const float *mm = cond->masked_moments;
    for (int64_t i = 0; i < one; i++) d->masked_lat[i] = (mm[i] + expf(0.5f * mm[one + i]) * tmp[i]) * sf;
    memcpy(d->mask, cond->mask, (size_t)hw * sizeof *d->mask);
  }
  return SDC_OK;
}

void sdc_denoise_free(sdc_denoise *d) {
  sdc_scheduler_free(d->sched);
  free(d->lat);
  free(d->noise);
  free(d->image_lat), free(d->init_noise), free(d->mask), free(d->masked_lat);
  memset(d, 0, sizeof *d);
}

int64_t sdc_denoise_calls_left(const sdc_denoise *d) {
  return sdc_scheduler_n_calls(d->sched) - sdc_scheduler_call_index(d->sched);
}

void sdc_denoise_model_input(const sdc_denoise *d, float *in, float *timesteps) {
  if (d->C_in == d->C) {
    sdc_scheduler_scale_input(d->sched, d->lat, in, d->n_lat);
    if (d->cfg) memcpy(in + d->n_lat, in, (size_t)d->n_lat * sizeof *in);
  } else { /* inpainting UNet: scaled latents | mask | masked-image latents, per image */
    const int64_t hw = d->h * d->w, one = d->C * hw;
    for (int64_t b = 0; b < sdc_denoise_batch(d); b++) {
      float *dst = in + b * d->C_in * hw;
      sdc_scheduler_scale_input(d->sched, d->lat + (b % d->N) * one, dst, one);
      memcpy(dst + one, d->mask, (size_t)hw * sizeof *dst);
      memcpy(dst + one + hw, d->masked_lat, (size_t)one * sizeof *dst);
    }
  }
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
  int err = sdc_scheduler_step(d->sched, pred, d->lat, d->n_lat, z);
  if (err || !d->blend) return err;
  /* put the known region back: the init latents noised to the next call's
   * level with the initial noise, or clean after the last call */
  const int64_t next = sdc_scheduler_call_index(d->sched), hw = d->h * d->w;
  const float *known = d->image_lat;
  if (next < sdc_scheduler_n_calls(d->sched)) {
    sdc_scheduler_add_noise(d->sched, d->image_lat, d->init_noise, d->noise, d->n_lat, next);
    known = d->noise;
  }
  for (int64_t i = 0; i < d->n_lat; i++)
    if (d->mask[i % hw] < 0.5f) d->lat[i] = known[i];
  return SDC_OK;
}

void sdc_denoise_vae_input(const sdc_denoise *d, float *out) {
  const float inv = (float)(1.0 / d->scaling_factor);
  for (int64_t i = 0; i < d->n_lat; i++) out[i] = d->lat[i] * inv;
}

void sdc_gen_params_text(const sdc_gen_params *g, int64_t index, const char *origin, char *out, size_t n) {
  char strength[48] = "", xl[192] = ""; /* A1111 writes strength for img2img and inpainting */
  if (g->kind != SDC_GEN_TXT2IMG) snprintf(strength, sizeof strength, "Denoising strength: %g, ", g->strength);
  /* SDXL's micro-conditioning, when given, sizes as WxH like A1111's "Size" */
  size_t k = 0;
  if (g->original_size[0] && k < sizeof xl)
    k += (size_t)snprintf(xl + k, sizeof xl - k, "Original size: %lldx%lld, ", (long long)g->original_size[1],
                          (long long)g->original_size[0]);
  if (g->has_crop && k < sizeof xl)
    k += (size_t)snprintf(xl + k, sizeof xl - k, "Crop top: %lld, Crop left: %lld, ",
                          (long long)g->crops_coords_top_left[0], (long long)g->crops_coords_top_left[1]);
  if (g->target_size[0] && k < sizeof xl)
    snprintf(xl + k, sizeof xl - k, "Target size: %lldx%lld, ", (long long)g->target_size[1], (long long)g->target_size[0]);
  char p2[2 * SDC_MAX_PROMPT_BYTES + 64] = "";
  if (g->prompt_2 || g->negative_prompt_2)
    snprintf(p2, sizeof p2, "%s%s%s%s%s%s", g->prompt_2 ? "Prompt 2: " : "", g->prompt_2 ? g->prompt_2 : "",
             g->prompt_2 ? "\n" : "", g->negative_prompt_2 ? "Negative prompt 2: " : "",
             g->negative_prompt_2 ? g->negative_prompt_2 : "", g->negative_prompt_2 ? "\n" : "");
  snprintf(out, n,
           "%s\nNegative prompt: %s\n%sSteps: %lld, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %lldx%lld, "
           "%s%sBatch: %lld of %lld, %s, Generator: sdcluster",
           g->prompt, g->negative_prompt ? g->negative_prompt : "", p2, (long long)g->steps,
           g->scheduler >= 0 ? sdc_sched_name((sdc_sched_kind)g->scheduler) : "model default", g->guidance_scale,
           (unsigned long long)g->seed, (long long)g->width, (long long)g->height, xl, strength, (long long)index + 1,
           (long long)g->num_images, origin);
}
