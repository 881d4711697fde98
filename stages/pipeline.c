/* pipeline.c - StableDiffusionPipeline.__call__ in C: same draws, same order, same math. */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int sdc_pipeline_load(sdc_pipeline **out, const char *path, const char *config_dir) {
  *out = NULL;
  sdc_pipeline *p = calloc(1, sizeof *p);
  if (!p) return sdc_seterr(SDC_ENOMEM, "out of memory");
  sdc_arena_init(&p->arena, 0);
  int err = sdc_model_open(&p->model, path, config_dir);
  if (err) {
    free(p);
    return err;
  }
  char tokdir[1200];
  if (!sdc_model_tokenizer_dir(&p->model, tokdir, sizeof tokdir)[0])
    err = sdc_seterr(SDC_EUNSUPPORTED, "%s: no tokenizer: pass --config with a diffusers folder", path);
  if (!err) err = sdc_tokenizer_load(&p->tok, tokdir);
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_TEXT_ENCODER, &p->w[SDC_COMP_TEXT_ENCODER]);
  if (!err) err = sdc_clip_load(&p->clip, &p->w[SDC_COMP_TEXT_ENCODER], &p->model.clip);
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_UNET, &p->w[SDC_COMP_UNET]);
  if (!err) err = sdc_unet_load(&p->unet, &p->w[SDC_COMP_UNET], &p->model.unet, SDC_UNET_ALL);
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_VAE, &p->w[SDC_COMP_VAE]);
  if (!err) err = sdc_vae_load(&p->vae, &p->w[SDC_COMP_VAE], &p->model.vae, SDC_VAE_DECODER);
  if (err) {
    sdc_pipeline_free(p);
    return err;
  }
  *out = p;
  return SDC_OK;
}

void sdc_pipeline_free(sdc_pipeline *p) {
  if (!p) return;
  sdc_tokenizer_free(p->tok);
  sdc_clip_free(p->clip);
  sdc_unet_free(p->unet);
  sdc_vae_free(p->vae);
  for (int i = 0; i < SDC_COMP_COUNT; i++) sdc_weights_free(&p->w[i]);
  sdc_model_close(&p->model);
  sdc_arena_free(&p->arena);
  free(p);
}

int sdc_gen_params_check(const sdc_gen_params *g, int64_t max_pixels) {
  if (!g->prompt) return sdc_seterr(SDC_EINVAL, "prompt: missing");
  if (g->width < 8 || g->height < 8 || g->width % 8 || g->height % 8)
    return sdc_seterr(SDC_EINVAL, "size %lldx%lld: width and height must be positive multiples of 8", (long long)g->width,
                      (long long)g->height);
  if (max_pixels > 0 && g->width * g->height > max_pixels)
    return sdc_seterr(SDC_EINVAL, "size %lldx%lld: over the limit of %lld pixels", (long long)g->width,
                      (long long)g->height, (long long)max_pixels);
  if (g->steps < 1 || g->steps > 1000)
    return sdc_seterr(SDC_EINVAL, "steps %lld: expected 1 to 1000", (long long)g->steps);
  if (!(g->guidance_scale >= 0) || !isfinite(g->guidance_scale))
    return sdc_seterr(SDC_EINVAL, "guidance scale %g: expected a finite number >= 0", g->guidance_scale);
  if (g->num_images < 1 || g->num_images > 64)
    return sdc_seterr(SDC_EINVAL, "num images %lld: expected 1 to 64", (long long)g->num_images);
  if (g->scheduler >= SDC_SCHED_COUNT) return sdc_seterr(SDC_EINVAL, "scheduler %d: unknown", g->scheduler);
  return SDC_OK;
}

/* Encodes text into ctx (N copies of (77, D)). */
static int sdc__encode(sdc_pipeline *p, const char *text, int64_t N, float *ctx) {
  const int64_t L = sdc_tokenizer_max_length(p->tok), D = p->model.clip.hidden_size;
  int32_t *ids = malloc((size_t)L * sizeof *ids);
  if (!ids) return sdc_seterr(SDC_ENOMEM, "out of memory");
  int err = sdc_tokenizer_encode(p->tok, text, ids, L);
  if (!err) err = sdc_clip_encode(p->clip, &p->arena, ids, 1, L, ctx);
  for (int64_t i = 1; !err && i < N; i++) memcpy(ctx + i * L * D, ctx, (size_t)(L * D) * sizeof *ctx);
  free(ids);
  return err;
}

int sdc_denoise_init(sdc_denoise *d, const sdc_gen_params *g, const char *scheduler_json, int64_t C, int64_t vae_scale,
                     double scaling_factor, float *init_latents) {
  memset(d, 0, sizeof *d);
  int err = sdc_gen_params_check(g, 0);
  if (err) return err;
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

void sdc_pixels_to_images(const float *pix, int64_t N, int64_t Co, int64_t H, int64_t W, float *images) {
  const int64_t HW = H * W;
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < HW; i++)
      for (int64_t c = 0; c < 3; c++) {
        float v = pix[(n * Co + (c < Co ? c : Co - 1)) * HW + i] / 2.0f + 0.5f;
        images[(n * HW + i) * 3 + c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
      }
}

int sdc_pipeline_generate(sdc_pipeline *p, const sdc_gen_params *g, float *images, float *init_latents,
                          sdc_progress_fn progress, void *pctx) {
  const sdc_model *m = &p->model;
  sdc_denoise d;
  int err = sdc_denoise_init(&d, g, m->scheduler_json, m->unet.in_channels, sdc_vae_scale(&m->vae),
                             m->vae.scaling_factor, init_latents);
  if (err) return err;
  const int64_t N = d.N, B = sdc_denoise_batch(&d), L = sdc_tokenizer_max_length(p->tok), D = m->clip.hidden_size;
  sdc_arena_mark mk = sdc_arena_get_mark(&p->arena);
  float *ctx = sdc_arena_floats(&p->arena, B * L * D), *in = sdc_arena_floats(&p->arena, B * d.C * d.h * d.w),
        *pred = sdc_arena_floats(&p->arena, B * d.C * d.h * d.w), *t = sdc_arena_floats(&p->arena, B);
  if (!ctx || !in || !pred || !t) {
    err = sdc_seterr(SDC_ENOMEM, "out of memory for %lldx%lld", (long long)g->width, (long long)g->height);
    goto done;
  }
  /* [uncond; cond] as diffusers concatenates them */
  if (d.cfg && (err = sdc__encode(p, g->negative_prompt ? g->negative_prompt : "", N, ctx))) goto done;
  if ((err = sdc__encode(p, g->prompt, N, ctx + (d.cfg ? N * L * D : 0)))) goto done;
  const int64_t n_calls = sdc_denoise_calls_left(&d);
  for (int64_t call = 0; call < n_calls; call++) {
    sdc_denoise_model_input(&d, in, t);
    if ((err = sdc_unet_forward(p->unet, &p->arena, in, t, ctx, B, d.h, d.w, L, pred))) goto done;
    if ((err = sdc_denoise_step(&d, pred))) goto done;
    if (progress) progress(pctx, call + 1, n_calls);
  }
  sdc_denoise_vae_input(&d, in);
  sdc_arena_trim(&p->arena); /* the UNet's scratch blocks: the VAE's peak is another shape */
  const int64_t Co = m->vae.out_channels;
  float *pix = sdc_arena_floats(&p->arena, N * Co * g->height * g->width);
  if (!pix) {
    err = sdc_seterr(SDC_ENOMEM, "out of memory decoding %lldx%lld", (long long)g->width, (long long)g->height);
    goto done;
  }
  if ((err = sdc_vae_decode(p->vae, &p->arena, in, N, d.h, d.w, pix))) goto done;
  sdc_pixels_to_images(pix, N, Co, g->height, g->width, images);
done:
  sdc_arena_reset(&p->arena, mk);
  sdc_denoise_free(&d);
  return err;
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

void sdc_images_to_u8(const float *images, int64_t n, uint8_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)nearbyintf(images[i] * 255.0f);
}
