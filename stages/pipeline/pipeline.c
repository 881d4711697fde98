/* pipeline.c - StableDiffusionPipeline.__call__ in C: same draws, same order, same math. */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "imagecond.h"

int sdc_pipeline_load(sdc_pipeline **out, const char *path, const char *config_dir, const sdc_load_opts *opts,
                      const sdc_lora_ref *loras, int n_loras) {
  *out = NULL;
  sdc_pipeline *p = calloc(1, sizeof *p);
  if (!p) return sdc_seterr(SDC_ENOMEM, "out of memory");
  sdc_arena_init(&p->arena, 0);
  int err = sdc_model_open(&p->model, path, config_dir);
  if (err) {
    free(p);
    return err;
  }
  err = sdc_text_tokenizers_load(&p->model, &p->tok, &p->tok2);
  if (!err && n_loras > 0 && p->model.has_text_encoder_2)
    err = sdc_seterr(SDC_EUNSUPPORTED, "--lora: LoRAs are not supported for SDXL models yet");
  if (!err && n_loras > 0) err = sdc_lora_set_open(&p->loras, loras, n_loras);
  /* both views and their LoRA checks before any weight is read: a bad adapter fails fast */
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_TEXT_ENCODER, &p->w[SDC_COMP_TEXT_ENCODER]);
  if (!err && p->loras) err = sdc_weights_set_lora(&p->w[SDC_COMP_TEXT_ENCODER], p->loras, SDC_COMP_TEXT_ENCODER);
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_UNET, &p->w[SDC_COMP_UNET]);
  if (!err && p->loras) err = sdc_weights_set_lora(&p->w[SDC_COMP_UNET], p->loras, SDC_COMP_UNET);
  if (!err) err = sdc_clip_load(&p->clip, &p->w[SDC_COMP_TEXT_ENCODER], &p->model.clip, opts);
  if (!err && p->model.has_text_encoder_2) {
    err = sdc_model_weights(&p->model, SDC_COMP_TEXT_ENCODER_2, &p->w[SDC_COMP_TEXT_ENCODER_2]);
    if (!err) err = sdc_clip_load(&p->clip2, &p->w[SDC_COMP_TEXT_ENCODER_2], &p->model.clip2, opts);
  }
  if (!err) err = sdc_unet_load(&p->unet, &p->w[SDC_COMP_UNET], &p->model.unet, SDC_UNET_ALL, opts);
  if (!err) err = sdc_model_weights(&p->model, SDC_COMP_VAE, &p->w[SDC_COMP_VAE]);
  if (!err) err = sdc_vae_load(&p->vae, &p->w[SDC_COMP_VAE], &p->model.vae, SDC_VAE_DECODER | SDC_VAE_ENCODER, opts);
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
  sdc_tokenizer_free(p->tok2);
  sdc_clip_free(p->clip);
  sdc_clip_free(p->clip2);
  sdc_unet_free(p->unet);
  sdc_vae_free(p->vae);
  for (int i = 0; i < SDC_COMP_COUNT; i++) sdc_weights_free(&p->w[i]);
  sdc_lora_set_free(p->loras);
  sdc_model_close(&p->model);
  sdc_arena_free(&p->arena);
  free(p);
}

sdc_text_models sdc_pipeline_text_models(const sdc_pipeline *p) {
  return (sdc_text_models){.tok = p->tok, .tok2 = p->tok2, .clip = p->clip, .clip2 = p->clip2};
}

/* The request's conditioning (B rows of context, pooled text_embeds and time ids) as the plan lays it out. */
static int sdc__condition(sdc_pipeline *p, const sdc_gen_params *g, int64_t N, float *ctx, float *pooled,
                          float *time_ids) {
  const sdc_text_models tm = sdc_pipeline_text_models(p);
  const sdc_model_caps caps = sdc_text_caps(&p->model);
  const int64_t L = sdc_tokenizer_max_length(p->tok), D = sdc_text_context_dim(&tm), P = sdc_text_pooled_dim(&tm);
  sdc_text_plan plan;
  sdc_text_plan_make(g, &caps, &plan);
  sdc_arena_mark mk = sdc_arena_get_mark(&p->arena);
  float *ct = sdc_arena_floats(&p->arena, 2 * L * D), *pt = P ? sdc_arena_floats(&p->arena, 2 * P) : NULL;
  int err = ct && (!P || pt) ? SDC_OK : sdc_seterr(SDC_ENOMEM, "out of memory");
  for (int i = 0; !err && i < plan.n_texts; i++)
    err = sdc_text_encode(&tm, &p->arena, plan.text[i], plan.text_2[i], ct + i * L * D, pt ? pt + i * P : NULL, NULL);
  if (!err) sdc_text_layout(&plan, N, L, D, P, ct, pt, ctx, pooled);
  const int64_t B = (plan.zero_uncond ? 2 : plan.n_texts) * N;
  if (!err && time_ids) sdc_gen_time_ids(g, B, time_ids);
  sdc_arena_reset(&p->arena, mk);
  return err;
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

int sdc_pipeline_generate(sdc_pipeline *p, const sdc_gen_params *g, const sdc_pipeline_images *imgs, float *images,
                          float *init_latents, sdc_progress_fn progress, void *pctx) {
  const sdc_model *m = &p->model;
  sdc_image_cond cond = {0};
  int err = sdc_gen_params_check(g, 0);
  const sdc_model_caps caps = sdc_text_caps(m);
  if (!err) err = sdc_gen_params_check_model(g, &caps);
  if (err) return err;
  if (g->kind != SDC_GEN_TXT2IMG) {
    if (!imgs || !imgs->init) return sdc_seterr(SDC_EINVAL, "init_image: missing for img2img or inpainting");
    if (g->kind == SDC_GEN_INPAINT && !imgs->mask) return sdc_seterr(SDC_EINVAL, "mask: missing for inpainting");
    if (g->kind == SDC_GEN_IMG2IMG && imgs->mask) return sdc_seterr(SDC_EINVAL, "mask: given to an img2img request");
    /* the same call the cluster's VAE worker makes */
    err = sdc_image_cond_encode(p->vae, &p->arena, imgs->init, imgs->n_init, imgs->mask, imgs->n_mask, g->width,
                                g->height, sdc_denoise_needs_init(g, m->unet.in_channels), &cond);
    if (err) return err;
  } else if (imgs && (imgs->init || imgs->mask)) {
    return sdc_seterr(SDC_EINVAL, "init_image: given to a text-to-image request");
  }
  sdc_denoise d;
  err = sdc_denoise_init(&d, g, m->scheduler_json, m->vae.latent_channels, m->unet.in_channels,
                         sdc_vae_scale(&m->vae), m->vae.scaling_factor, g->kind == SDC_GEN_TXT2IMG ? NULL : &cond,
                         init_latents);
  sdc_image_cond_free(&cond); /* denoise keeps its own copies */
  if (err) return err;
  const sdc_text_models tm = sdc_pipeline_text_models(p);
  const int64_t N = d.N, B = sdc_denoise_batch(&d), L = sdc_tokenizer_max_length(p->tok), D = sdc_text_context_dim(&tm),
                P = m->unet.add_text_time ? sdc_text_pooled_dim(&tm) : 0;
  sdc_arena_mark mk = sdc_arena_get_mark(&p->arena);
  float *ctx = sdc_arena_floats(&p->arena, B * L * D), *in = sdc_arena_floats(&p->arena, B * d.C_in * d.h * d.w),
        *pred = sdc_arena_floats(&p->arena, B * d.C * d.h * d.w), *t = sdc_arena_floats(&p->arena, B),
        *pooled = P ? sdc_arena_floats(&p->arena, B * P) : NULL,
        *time_ids = P ? sdc_arena_floats(&p->arena, B * SDC_TIME_IDS) : NULL;
  if (!ctx || !in || !pred || !t || (P && (!pooled || !time_ids))) {
    err = sdc_seterr(SDC_ENOMEM, "out of memory for %lldx%lld", (long long)g->width, (long long)g->height);
    goto done;
  }
  /* [uncond; cond] as diffusers concatenates them */
  if ((err = sdc__condition(p, g, N, ctx, pooled, time_ids))) goto done;
  const sdc_unet_added added = {pooled, time_ids, P, SDC_TIME_IDS};
  const int64_t n_calls = sdc_denoise_calls_left(&d);
  for (int64_t call = 0; call < n_calls; call++) {
    sdc_denoise_model_input(&d, in, t);
    if ((err = sdc_unet_forward(p->unet, &p->arena, in, t, ctx, P ? &added : NULL, B, d.h, d.w, L, pred))) goto done;
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

void sdc_images_to_u8(const float *images, int64_t n, uint8_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)nearbyintf(images[i] * 255.0f);
}
