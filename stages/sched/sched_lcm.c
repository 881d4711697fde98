/* sched_lcm.c - diffusers 0.30's LCMScheduler: consistency-model multistep sampling (Luo et al. 2023). */
#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "sched_impl.h"

/* set_timesteps: the distillation schedule is every k-th training timestep,
 * k = T // original_inference_steps, i.e. k-1, 2k-1, ..., limited to the first
 * int(original_steps * strength) of them; n inference timesteps are picked
 * from it (descending) at floor(linspace(0, len, n, endpoint=False)).
 * diffusers refuses n > original_steps and len // n < 1; so do we. */
static int sdc__lcm_init(sdc_scheduler *s) {
  const sdc_sched_config *c = &s->cfg;
  const int64_t T = c->num_train_timesteps, orig = c->original_inference_steps, n = s->n_steps;
  if (orig < 1 || orig > T)
    return sdc_seterr(SDC_ECONFIG, "scheduler lcm: field 'original_inference_steps': %lld, expected 1 to %lld",
                      (long long)orig, (long long)T);
  if (!(c->lcm_strength > 0 && c->lcm_strength <= 1))
    return sdc_seterr(SDC_EINVAL, "scheduler lcm: strength %g, expected (0, 1]", c->lcm_strength);
  const int64_t k = T / orig, len = (int64_t)((double)orig * c->lcm_strength);
  if (n > orig)
    return sdc_seterr(SDC_EINVAL, "scheduler lcm: %lld steps exceed original_inference_steps %lld", (long long)n,
                      (long long)orig);
  if (len / n < 1)
    return sdc_seterr(SDC_EINVAL, "scheduler lcm: %lld steps exceed the %lld timesteps that original_inference_steps %lld "
                      "x strength %g leave", (long long)n, (long long)len, (long long)orig, c->lcm_strength);
  s->timesteps = malloc((size_t)n * sizeof *s->timesteps);
  if (!s->timesteps) return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory");
  for (int64_t i = 0; i < n; i++) {
    /* numpy's linspace(0, len, n, endpoint=False)[i] = i * (len / n), floored */
    const int64_t idx = (int64_t)floor((double)i * ((double)len / (double)n));
    s->timesteps[i] = (double)((len - idx) * k - 1); /* reversed origin schedule at idx */
  }
  s->n_calls = n;
  return SDC_OK;
}

/* One consistency step at t: x0 from the model output, the boundary-condition
 * mix denoised = c_out x0 + c_skip x, then (all but the last step) re-noised to
 * the next timestep with a fresh draw. model_out, sample, noise: [n]. */
static int sdc__lcm_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  const sdc_sched_config *c = &s->cfg;
  const int64_t t = (int64_t)s->timesteps[s->index];
  const int last = s->index == s->n_steps - 1;
  const int64_t prev_t = last ? t : (int64_t)s->timesteps[s->index + 1];
  const double a = s->alphas_cumprod[t], ap = s->alphas_cumprod[prev_t];
  const double sa = sqrt(a), sb = sqrt(1.0 - a), sap = sqrt(ap), sbp = sqrt(1.0 - ap);
  /* sigma_data 0.5; the scaled timestep makes c_skip ~ 0 except near t = 0 */
  const double st = (double)t * c->timestep_scaling, sd2 = 0.25;
  const double c_skip = sd2 / (st * st + sd2), c_out = st / sqrt(st * st + sd2);
  const double r = c->clip_sample_range;
  for (int64_t i = 0; i < n; i++) {
    const double x = sample[i], m = model_out[i];
    double x0 = c->prediction_type == SDC_PRED_EPSILON ? (x - sb * m) / sa
                : c->prediction_type == SDC_PRED_V     ? sa * x - sb * m
                                                       : m;
    if (c->clip_sample) x0 = x0 < -r ? -r : x0 > r ? r : x0;
    const double denoised = c_out * x0 + c_skip * x;
    sample[i] = (float)(last ? denoised : sap * denoised + sbp * (double)noise[i]);
  }
  return SDC_OK;
}

/* diffusers draws on every step but the last of the n_steps. */
static int sdc__lcm_needs_noise(const sdc_scheduler *s) { return s->index != s->n_steps - 1; }

const sdc__sched_ops sdc__lcm_ops = {.init = sdc__lcm_init, .step = sdc__lcm_step, .needs_noise = sdc__lcm_needs_noise};
