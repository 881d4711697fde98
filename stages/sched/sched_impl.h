/* sched_impl.h - what each scheduler implementation provides and the shared schedule math. */
#ifndef SDC_SCHED_IMPL_H
#define SDC_SCHED_IMPL_H

#include <stdint.h>

#include "scheduler.h"

typedef struct {
  /* Fills s->timesteps / s->n_calls, s->sigmas / s->n_sigmas (if any),
   * s->init_noise_sigma and any private state (s->state). */
  int (*init)(sdc_scheduler *s);
  /* Model input for call s->index. NULL: identity. */
  void (*scale_input)(const sdc_scheduler *s, const float *x, float *out, int64_t n);
  /* One call's update; s->index is advanced by the caller afterwards. */
  int (*step)(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise);
  /* Whether call s->index draws noise. NULL: never. */
  int (*needs_noise)(const sdc_scheduler *s);
  void (*free_state)(sdc_scheduler *s);
} sdc__sched_ops;

struct sdc_scheduler {
  sdc_sched_config cfg;
  const sdc__sched_ops *ops;
  int64_t n_steps;         /* inference steps asked for */
  int64_t n_calls;         /* model calls in the run */
  double *timesteps;       /* [n_calls] */
  double *sigmas;          /* [n_sigmas] or NULL */
  int64_t n_sigmas;
  double init_noise_sigma;
  int64_t index;           /* next call */
  int64_t begin;           /* first call of the run (img2img): index - begin counts the calls made */
  int64_t n_elems;         /* sample size, fixed by the first step */
  /* training schedule, [num_train_timesteps] each, in double */
  double *betas, *alphas, *alphas_cumprod;
  void *state;             /* implementation's own */
};

/* Implementations, one per diffusers class. */
extern const sdc__sched_ops sdc__ddim_ops, sdc__pndm_ops, sdc__ddpm_ops, sdc__euler_ops, sdc__euler_a_ops,
    sdc__heun_ops, sdc__lms_ops, sdc__dpm_ops, sdc__unipc_ops, sdc__lcm_ops;

/* diffusers' set_timesteps spacing for n steps (leading / trailing / linspace,
 * with steps_offset), descending, as doubles before any rounding the caller
 * needs: `out` gets n values. linspace is NOT rounded (sigma schedulers
 * interpolate), leading/trailing are integers. */
void sdc__sched_spacing(const sdc_scheduler *s, int64_t n, double *out);
/* sigma(t) = sqrt((1 - acp) / acp) at integer t. */
double sdc__sched_sigma_at(const sdc_scheduler *s, int64_t t);
/* np.interp(t, arange(T), sigmas_train): sigma at fractional t. */
double sdc__sched_sigma_interp(const sdc_scheduler *s, double t);
/* Inverse of the above by piecewise-linear interpolation in log-sigma, as
 * diffusers' _sigma_to_t. */
double sdc__sched_sigma_to_t(const sdc_scheduler *s, double sigma);
/* Karras et al. (2022) sigmas: n values from sigma_max down to sigma_min, rho = 7. */
void sdc__sched_karras(double sigma_min, double sigma_max, int64_t n, double *out);

#endif
