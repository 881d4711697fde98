/* pipeline.c - StableDiffusionPipeline.__call__ in C: same draws, same order, same math. */
#include "pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"

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

int sdc_pipeline_generate(sdc_pipeline *p, const sdc_gen_params *g, float *images, float *init_latents,
                          sdc_progress_fn progress, void *pctx) {
  int err = sdc_gen_params_check(g, 0);
  if (err) return err;
  const sdc_model *m = &p->model;
  const int64_t N = g->num_images, s = sdc_vae_scale(&m->vae), h = g->height / s, w = g->width / s;
  const int64_t C = m->unet.in_channels, n_lat = N * C * h * w, L = sdc_tokenizer_max_length(p->tok),
                D = m->clip.hidden_size;
  /* diffusers: guidance only when the scale exceeds 1 */
  const int cfg = g->guidance_scale > 1.0;
  const int64_t B = cfg ? 2 * N : N;
  sdc_sched_config sc;
  sdc_scheduler *sched = NULL;
  if ((err = sdc_sched_config_parse(&sc, m->scheduler_json, g->scheduler, "scheduler_config.json"))) return err;
  if ((err = sdc_scheduler_create(&sched, &sc, g->steps))) return err;
  sdc_arena_mark mk = sdc_arena_get_mark(&p->arena);
  float *ctx = sdc_arena_floats(&p->arena, B * L * D), *lat = sdc_arena_floats(&p->arena, n_lat),
        *in = sdc_arena_floats(&p->arena, B * C * h * w), *pred = sdc_arena_floats(&p->arena, B * C * h * w),
        *noise = sdc_arena_floats(&p->arena, n_lat), *t = sdc_arena_floats(&p->arena, B);
  if (!ctx || !lat || !in || !pred || !noise || !t) {
    err = sdc_seterr(SDC_ENOMEM, "out of memory for %lldx%lld", (long long)g->width, (long long)g->height);
    goto done;
  }
  /* [uncond; cond] as diffusers concatenates them */
  if (cfg && (err = sdc__encode(p, g->negative_prompt ? g->negative_prompt : "", N, ctx))) goto done;
  if ((err = sdc__encode(p, g->prompt, N, ctx + (cfg ? N * L * D : 0)))) goto done;
  sdc_rng rng;
  sdc_rng_seed(&rng, g->seed);
  sdc_rng_randn(&rng, lat, n_lat);
  if (init_latents) memcpy(init_latents, lat, (size_t)n_lat * sizeof *lat);
  const float sigma0 = (float)sdc_scheduler_init_noise_sigma(sched);
  for (int64_t i = 0; i < n_lat; i++) lat[i] *= sigma0;
  const int64_t n_calls = sdc_scheduler_n_calls(sched);
  for (int64_t call = 0; call < n_calls; call++) {
    sdc_scheduler_scale_input(sched, lat, in, n_lat);
    if (cfg) memcpy(in + n_lat, in, (size_t)n_lat * sizeof *in);
    for (int64_t b = 0; b < B; b++) t[b] = (float)sdc_scheduler_timestep(sched, call);
    if ((err = sdc_unet_forward(p->unet, &p->arena, in, t, ctx, B, h, w, L, pred))) goto done;
    if (cfg) {
      const float gs = (float)g->guidance_scale;
      for (int64_t i = 0; i < n_lat; i++) pred[i] = pred[i] + gs * (pred[n_lat + i] - pred[i]);
    }
    const float *z = NULL;
    if (sdc_scheduler_needs_noise(sched)) {
      sdc_rng_randn(&rng, noise, n_lat);
      z = noise;
    }
    if ((err = sdc_scheduler_step(sched, pred, lat, n_lat, z))) goto done;
    if (progress) progress(pctx, call + 1, n_calls);
  }
  /* decode latents / scaling_factor, then (x / 2 + 0.5) clamped, NHWC */
  const float inv = (float)(1.0 / m->vae.scaling_factor);
  for (int64_t i = 0; i < n_lat; i++) lat[i] *= inv;
  const int64_t HW = g->height * g->width, Co = m->vae.out_channels;
  float *pix = sdc_arena_floats(&p->arena, N * Co * HW);
  if (!pix) {
    err = sdc_seterr(SDC_ENOMEM, "out of memory decoding %lldx%lld", (long long)g->width, (long long)g->height);
    goto done;
  }
  if ((err = sdc_vae_decode(p->vae, &p->arena, lat, N, h, w, pix))) goto done;
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < HW; i++)
      for (int64_t c = 0; c < 3; c++) {
        float v = pix[(n * Co + (c < Co ? c : Co - 1)) * HW + i] / 2.0f + 0.5f;
        images[(n * HW + i) * 3 + c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
      }
done:
  sdc_arena_reset(&p->arena, mk);
  sdc_scheduler_free(sched);
  return err;
}

void sdc_images_to_u8(const float *images, int64_t n, uint8_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)nearbyintf(images[i] * 255.0f);
}
