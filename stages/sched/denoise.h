/* denoise.h - one request's denoising loop without the models: what the in-process pipeline and the coordinator share. */
#ifndef SDC_DENOISE_H
#define SDC_DENOISE_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "scheduler.h"

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

/* Checks a request against the model before any work: sizes, steps, guidance,
 * UTF-8 prompts. max_pixels bounds width*height (0: no bound). */
int sdc_gen_params_check(const sdc_gen_params *g, int64_t max_pixels);

/* The denoising loop of one request, without the models: the scheduler, the
 * generator and the latents, so that the in-process pipeline and the
 * cluster's coordinator run literally the same arithmetic. Sequence:
 *   init -> repeat { model_input, (run the UNet on it), step } -> vae_input. */
typedef struct {
  sdc_scheduler *sched;
  sdc_rng rng;
  int64_t N, C, h, w, n_lat; /* images, latent channels, latent size */
  int cfg;                   /* classifier-free guidance: batch 2N = [uncond; cond] */
  double guidance_scale, scaling_factor;
  float *lat, *noise;        /* n_lat each, heap */
} sdc_denoise;

/* Draws the initial latents (the run's first randn) and prepares the
 * scheduler from a scheduler_config.json text. init_latents gets the raw draw
 * when non-NULL. Free with sdc_denoise_free(). */
int sdc_denoise_init(sdc_denoise *d /* OUT */, const sdc_gen_params *g, const char *scheduler_json, int64_t latent_channels,
                     int64_t vae_scale, double scaling_factor, float *init_latents);
void sdc_denoise_free(sdc_denoise *d);
/* Batch of the UNet input: 2N with guidance, else N. */
static inline int64_t sdc_denoise_batch(const sdc_denoise *d) { return d->cfg ? 2 * d->N : d->N; }
/* Calls left (0 when done). */
int64_t sdc_denoise_calls_left(const sdc_denoise *d);
/* The next UNet input (batch x C x h x w) and its timesteps (batch). */
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
