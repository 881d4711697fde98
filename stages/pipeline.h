/* pipeline.h - the whole text-to-image run in one process: tokenize, encode, denoise with CFG, decode. */
#ifndef SDC_PIPELINE_H
#define SDC_PIPELINE_H

#include <stdint.h>

#include "arena.h"
#include "clip.h"
#include "model.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

typedef struct {
  const char *prompt;
  const char *negative_prompt; /* NULL: "" */
  int64_t width, height;       /* pixels, multiples of 8 */
  int64_t steps;
  double guidance_scale;       /* <= 1: no classifier-free guidance */
  uint64_t seed;
  int scheduler;               /* sdc_sched_kind, or -1 for the model's own */
  int64_t num_images;
} sdc_gen_params;

typedef struct {
  sdc_model model;
  sdc_tokenizer *tok;
  sdc_clip *clip;
  sdc_unet *unet;
  sdc_vae *vae;
  sdc_weights w[SDC_COMP_COUNT];
  sdc_arena arena;
} sdc_pipeline;

/* Called after each model call: call (1-based), n_calls. */
typedef void (*sdc_progress_fn)(void *ctx, int64_t call, int64_t n_calls);

/* Loads everything for generation from a model path (see sdc_model_open).
 * Errors name the file and culprit. Free with sdc_pipeline_free(). */
int sdc_pipeline_load(sdc_pipeline **out /* OUT */, const char *path, const char *config_dir);
void sdc_pipeline_free(sdc_pipeline *p);

/* Checks a request against the model before any work: sizes, steps, guidance,
 * UTF-8 prompts. max_pixels bounds width*height (0: no bound). */
int sdc_gen_params_check(const sdc_gen_params *g, int64_t max_pixels);

/* Runs the pipeline. images (num_images, height, width, 3) floats in [0,1]
 * (diffusers' output_type="np"); init_latents (num_images,4,h,w) gets the
 * first randn draw when non-NULL. */
int sdc_pipeline_generate(sdc_pipeline *p, const sdc_gen_params *g, float *images, float *init_latents,
                          sdc_progress_fn progress, void *ctx);

/* round(x * 255) of [0,1] floats, as diffusers' numpy_to_pil. */
void sdc_images_to_u8(const float *images, int64_t n, uint8_t *out);

#endif
