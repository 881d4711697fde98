/* denoise.h - one request's denoising loop without the models: what the in-process pipeline and the coordinator share. */
#ifndef SDC_DENOISE_H
#define SDC_DENOISE_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "scheduler.h"

/* What a request starts from: noise only, an init image, or an init image and a mask. */
typedef enum { SDC_GEN_TXT2IMG = 0, SDC_GEN_IMG2IMG, SDC_GEN_INPAINT } sdc_gen_kind;

typedef struct {
  const char *prompt;
  const char *negative_prompt; /* NULL: "" */
  int64_t width, height;       /* pixels, multiples of 8 */
  int64_t steps;
  double guidance_scale;       /* <= 1: no classifier-free guidance */
  uint64_t seed;
  int scheduler;               /* sdc_sched_kind, or -1 for the model's own */
  int64_t num_images;
  sdc_gen_kind kind;           /* 0 (text-to-image) unless an init image is given */
  double strength;             /* img2img / inpainting: the share of the schedule run, in (0, 1] as diffusers'
                                * `strength`; ignored for text-to-image */
  /* SDXL only (a model with a second text encoder and text_time conditioning); refused elsewhere */
  const char *prompt_2;          /* the second text encoder's prompt; NULL: prompt */
  const char *negative_prompt_2; /* NULL: negative_prompt */
  int64_t original_size[2];      /* (height, width); 0: (height, width) of the request */
  int64_t target_size[2];        /* (height, width); 0: (height, width) of the request */
  int has_crop;                  /* crops_coords_top_left given (its default is (0, 0)) */
  int64_t crops_coords_top_left[2]; /* (top, left) */
} sdc_gen_params;

/* What a model takes beyond SD 1.x's conditioning (sdc_gen_params_check_model). */
typedef struct {
  int dual_text;   /* a second text encoder: prompt_2, negative_prompt_2 */
  int text_time;   /* text_time conditioning: original_size, crops_coords_top_left, target_size */
  int force_zeros; /* no negative prompt under guidance: zero conditioning (force_zeros_for_empty_prompt) */
  int image_input; /* img2img and inpainting run on it */
} sdc_model_caps;

/* The request against what the model takes: SDXL's fields on a model without them, or an image input on a
 * model the engine runs text-to-image only, are SDC_EINVAL naming the field. */
int sdc_gen_params_check_model(const sdc_gen_params *g, const sdc_model_caps *caps);

/* The time ids of a text_time request (SDC_TIME_IDS = 6): original size, crop top-left, target size, each
 * (height, width) or (top, left), defaults filled in as diffusers' StableDiffusionXLPipeline; the same 6 in
 * each of `rows` rows of out (the UNet's batch: uncond and cond rows alike). */
void sdc_gen_time_ids(const sdc_gen_params *g, int64_t rows, float *out);

/* Which texts a request encodes and where they go (what the in-process pipeline and the cluster's
 * coordinator share): rows [uncond; cond] under guidance, each encoded text a (prompt, prompt_2) pair.
 * With guidance, no negative prompt and force_zeros, the uncond conditioning (context and pooled) is zeros
 * and only the prompt is encoded. */
typedef struct {
  int n_texts;           /* 1 or 2 */
  const char *text[2];   /* to the first text encoder; [negative, prompt] or [prompt] */
  const char *text_2[2]; /* to the second (when the model has one) */
  int zero_uncond;       /* guidance with zeros for the uncond rows: text[0] is the prompt */
} sdc_text_plan;

void sdc_text_plan_make(const sdc_gen_params *g, const sdc_model_caps *caps, sdc_text_plan *plan /* OUT */);

/* The UNet's conditioning for a request: ctx (B, L, D) and pooled (B, P) rows laid out [uncond; cond] (N rows
 * each under guidance) as plan says, from the plan's encoded texts (ctx_texts (n_texts, L, D), pooled_texts
 * (n_texts, P); pooled NULL without). The in-process pipeline and the coordinator (from the text worker's
 * rows) both lay them out here. */
void sdc_text_layout(const sdc_text_plan *plan, int64_t N, int64_t L, int64_t D, int64_t P, const float *ctx_texts,
                     const float *pooled_texts, float *ctx, float *pooled);

/* Checks a request against the model before any work: sizes, steps, guidance,
 * UTF-8 prompts. max_pixels bounds width*height (0: no bound). */
int sdc_gen_params_check(const sdc_gen_params *g, int64_t max_pixels);

/* The image inputs of an img2img or inpainting request as the VAE encoder
 * leaves them (stages/pipeline/imagecond.h makes them from the image bytes;
 * the cluster's VAE worker sends them to the coordinator), at latent size. */
typedef struct {
  int64_t C, h, w;       /* latent channels and size */
  float *init_moments;   /* (2,C,h,w): mean then logvar of the init image's posterior; NULL when not needed */
  float *masked_moments; /* (2,C,h,w): the same of init * (mask < 0.5); NULL without a mask */
  float *mask;           /* (1,1,h,w) in {0,1}, 1 = repaint, at latent size; NULL without a mask */
} sdc_image_cond;

/* Whether a request needs its init image's own posterior (and its draw):
 * img2img always; inpainting with a 4-channel UNet always (the known region is
 * put back every step), with a 9-channel one only when strength < 1. */
int sdc_denoise_needs_init(const sdc_gen_params *g, int64_t unet_in_channels);

/* The denoising loop of one request, without the models: the scheduler, the
 * generator and the latents, so that the in-process pipeline and the
 * cluster's coordinator run literally the same arithmetic. Sequence:
 *   init -> repeat { model_input, (run the UNet on it), step } -> vae_input. */
typedef struct {
  sdc_scheduler *sched;
  sdc_rng rng;
  int64_t N, C, h, w, n_lat; /* images, latent channels, latent size */
  int64_t C_in;              /* UNet input channels: C, or 2C+1 for an inpainting UNet (latents | mask | masked) */
  int cfg;                   /* classifier-free guidance: batch 2N = [uncond; cond] */
  double guidance_scale, scaling_factor;
  float *lat, *noise;        /* n_lat each, heap */
  sdc_gen_kind kind;
  int blend;                 /* 4-channel inpainting: the known region put back after every step */
  float *image_lat;          /* (N,C,h,w) init image latents x scaling_factor; NULL unless needed */
  float *init_noise;         /* (N,C,h,w) the initial noise draw, kept for the blend; NULL without */
  float *mask;               /* (h,w) at latent size, 1 = repaint; NULL unless inpainting */
  float *masked_lat;         /* (C,h,w) masked-image latents x scaling_factor; NULL unless inpainting */
} sdc_denoise;

/* Prepares the scheduler from a scheduler_config.json text and makes the
 * starting latents with diffusers' draws in diffusers' order (text-to-image:
 * the initial noise; img2img and inpainting: see docs/engine.md). cond holds
 * the image inputs (NULL for text-to-image; g->kind says which it must be).
 * init_latents gets the initial noise draw when non-NULL. The schedule runs
 * from int(steps * strength) steps before its end. Free with sdc_denoise_free(). */
int sdc_denoise_init(sdc_denoise *d /* OUT */, const sdc_gen_params *g, const char *scheduler_json, int64_t latent_channels,
                     int64_t unet_in_channels, int64_t vae_scale, double scaling_factor, const sdc_image_cond *cond,
                     float *init_latents);
void sdc_denoise_free(sdc_denoise *d);
/* Batch of the UNet input: 2N with guidance, else N. */
static inline int64_t sdc_denoise_batch(const sdc_denoise *d) { return d->cfg ? 2 * d->N : d->N; }
/* diffusers' get_timesteps: the scheduler call an img2img / inpainting run
 * starts at, (steps - int(steps * strength)) * order; 0 for text-to-image. */
int64_t sdc_denoise_begin_call(const sdc_gen_params *g, int64_t sched_order);
/* Calls left (0 when done). */
int64_t sdc_denoise_calls_left(const sdc_denoise *d);
/* The next UNet input (batch x C_in x h x w) and its timesteps (batch). */
void sdc_denoise_model_input(const sdc_denoise *d, float *in, float *timesteps);
/* Guidance on the prediction (batch x C x h x w; overwritten), the noise draw
 * when the scheduler wants one, the scheduler step. */
int sdc_denoise_step(sdc_denoise *d, float *pred);
/* latents / scaling_factor, what the VAE decoder takes (n_lat floats). */
void sdc_denoise_vae_input(const sdc_denoise *d, float *out);
/* The A1111-style "parameters" text image tools read from a PNG, for image
 * `index` (0-based) of a request; `origin` ends it ("Model: ...", "Job: ..."). */
void sdc_gen_params_text(const sdc_gen_params *g, int64_t index, const char *origin, char *out, size_t n);

#endif
