/* pipeline.h - the whole text-to-image run in one process: tokenize, encode, denoise with CFG, decode. */
#ifndef SDC_PIPELINE_H
#define SDC_PIPELINE_H

#include <stdint.h>

#include "arena.h"
#include "clip.h"
#include "model.h"
#include "denoise.h"
#include "lora.h"
#include "textcond.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

typedef struct {
  sdc_model model;
  sdc_tokenizer *tok, *tok2; /* tok2, clip2: SDXL's second tokenizer and text encoder, else NULL */
  sdc_clip *clip, *clip2;
  sdc_unet *unet;
  sdc_vae *vae;
  sdc_weights w[SDC_COMP_COUNT];
  sdc_lora_set *loras; /* merged into the weights at load; NULL without */
  sdc_arena arena;
} sdc_pipeline;

/* Called after each model call: call (1-based), n_calls. */
typedef void (*sdc_progress_fn)(void *ctx, int64_t call, int64_t n_calls);

/* Loads everything for generation from a model path (see sdc_model_open),
 * every model with opts (blocks.h), with n_loras adapters merged into the text
 * encoder's and UNet's weights (lora.h; loras may be NULL when n_loras is 0).
 * The VAE encoder is loaded too (img2img, inpainting). Errors name the file
 * and culprit. Free with sdc_pipeline_free(). */
int sdc_pipeline_load(sdc_pipeline **out /* OUT */, const char *path, const char *config_dir,
                      const sdc_load_opts *opts, const sdc_lora_ref *loras, int n_loras);
void sdc_pipeline_free(sdc_pipeline *p);

/* The pipeline's tokenizers and text encoders (textcond.h). */
sdc_text_models sdc_pipeline_text_models(const sdc_pipeline *p);

/* The encoded init image and mask of an img2img / inpainting request (PNG or
 * JPEG bytes, as a job carries them); mask NULL for img2img. */
typedef struct {
  const void *init;
  size_t n_init;
  const void *mask;
  size_t n_mask;
} sdc_pipeline_images;

/* Runs the pipeline. images (num_images, height, width, 3) floats in [0,1]
 * (diffusers' output_type="np"); init_latents (num_images,4,h,w) gets the
 * initial noise draw when non-NULL. in: the image inputs g->kind asks for
 * (NULL for text-to-image). */
int sdc_pipeline_generate(sdc_pipeline *p, const sdc_gen_params *g, const sdc_pipeline_images *in, float *images,
                          float *init_latents, sdc_progress_fn progress, void *ctx);

/* Decoded pixels (N, Co, H, W) in [-1,1] -> images (N, H, W, 3) in [0,1]. */
void sdc_pixels_to_images(const float *pix, int64_t N, int64_t Co, int64_t H, int64_t W, float *images);

/* round(x * 255) of [0,1] floats, as diffusers' numpy_to_pil. */
void sdc_images_to_u8(const float *images, int64_t n, uint8_t *out);

#endif
