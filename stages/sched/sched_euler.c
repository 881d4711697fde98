/* sched_euler.c - diffusers 0.30's sigma-space samplers: Euler, Euler ancestral, Heun and LMS (k-diffusion family). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sched_impl.h"

/* ------------------------------------------------------- shared schedule */

/* What differs between the four classes' set_timesteps. */
typedef struct {
  int euler_options;   /* interpolation_type, final_sigmas_type, timestep_type */
  int karras_cfg_range; /* karras honours config sigma_min / sigma_max (Euler, Heun: hasattr(config)) */
} sdc__sched_opts;

/* Fills s->timesteps [n_calls] and s->sigmas [n_sigmas] (the last one the
 * final sigma) as EulerDiscreteScheduler.set_timesteps does; the other classes
 * are the special case without interpolation / final / timestep options. */
static int sdc__sigma_schedule(sdc_scheduler *s, const sdc__sched_opts *o) {
  const sdc_sched_config *c = &s->cfg;
  const int64_t n = s->n_steps, T = c->num_train_timesteps;
  const int log_linear = o->euler_options && strcmp(c->interpolation_type, "log_linear") == 0;
  /* log_linear yields n + 1 sigmas (diffusers' own off-by-one), then the final one */
  const int64_t n_sig = (log_linear ? n + 1 : n) + 1;
  s->timesteps = malloc((size_t)(n + 1) * sizeof(double));
  s->sigmas = malloc((size_t)n_sig * sizeof(double));
  if (!s->timesteps || !s->sigmas)
    return sdc_seterr(SDC_ENOMEM, "scheduler %s: out of memory", sdc_sched_name(c->kind));
  sdc__sched_spacing(s, n, s->timesteps);
  /* numpy builds the timesteps in float32, and interpolates at those values */
  for (int64_t i = 0; i < n; i++) s->timesteps[i] = (double)(float)s->timesteps[i];
  if (log_linear) {
    const double hi = log(sdc__sched_sigma_at(s, T - 1)), lo = log(sdc__sched_sigma_at(s, 0));
    for (int64_t i = 0; i <= n; i++) s->sigmas[i] = exp(hi + (lo - hi) * (double)i / (double)n);
  } else {
    for (int64_t i = 0; i < n; i++) s->sigmas[i] = sdc__sched_sigma_interp(s, s->timesteps[i]);
  }
  int64_t n_ts = n;
  if (c->use_karras_sigmas) {
    /* the range comes from the interpolated sigmas unless the config pins it */
    double smax = s->sigmas[0], smin = s->sigmas[n_sig - 2];
    if (o->karras_cfg_range && !isnan(c->sigma_max)) smax = c->sigma_max;
    if (o->karras_cfg_range && !isnan(c->sigma_min)) smin = c->sigma_min;
    if (!(smin >= 0 && smax > 0))
      return sdc_seterr(SDC_ECONFIG, "scheduler %s: field 'sigma_min'/'sigma_max': karras range [%g, %g] is invalid",
                        sdc_sched_name(c->kind), smin, smax);
    sdc__sched_karras(smin, smax, n, s->sigmas);
    for (int64_t i = 0; i < n; i++) s->timesteps[i] = sdc__sched_sigma_to_t(s, s->sigmas[i]);
    /* Euler casts them to float32; Heun and LMS keep float64 */
    if (o->euler_options)
      for (int64_t i = 0; i < n; i++) s->timesteps[i] = (double)(float)s->timesteps[i];
    s->n_sigmas = n + 1;
  } else {
    s->n_sigmas = n_sig;
  }
  s->sigmas[s->n_sigmas - 1] =
      o->euler_options && strcmp(c->final_sigmas_type, "sigma_min") == 0 ? sdc__sched_sigma_at(s, 0) : 0.0;
  if (o->euler_options && strcmp(c->timestep_type, "continuous") == 0 && c->prediction_type == SDC_PRED_V) {
    /* EDM-style c_noise: one timestep per sigma except the final one */
    n_ts = s->n_sigmas - 1;
    for (int64_t i = 0; i < n_ts; i++) s->timesteps[i] = (double)(float)(0.25 * log((float)s->sigmas[i]));
  }
  s->n_calls = n_ts;
  return SDC_OK;
}

/* Every call divides by its own sigma, so none may be zero (e.g. sigma_min 0 with karras). */
static int sdc__check_sigmas(const sdc_scheduler *s, int64_t n_used) {
  for (int64_t i = 0; i < n_used; i++)
    if (!(s->sigmas[i] > 0))
      return sdc_seterr(SDC_ECONFIG, "scheduler %s: sigma %lld of the schedule is %g; every step needs sigma > 0",
                        sdc_sched_name(s->cfg.kind), (long long)i, s->sigmas[i]);
  return SDC_OK;
}

/* init_noise_sigma: max sigma for linspace/trailing, sqrt(max^2 + 1) for leading. */
static void sdc__set_init_noise_sigma(sdc_scheduler *s) {
  double m = 0.0;
  for (int64_t i = 0; i < s->n_sigmas; i++) m = s->sigmas[i] > m ? s->sigmas[i] : m;
  s->init_noise_sigma = strcmp(s->cfg.timestep_spacing, "leading") == 0 ? sqrt(m * m + 1.0) : m;
}

/* The k-diffusion preconditioning shared by all four: x / sqrt(sigma^2 + 1). */
static void sdc__scale_by_sigma(const sdc_scheduler *s, const float *x, float *out, int64_t n) {
  const double sigma = s->sigmas[s->index], k = 1.0 / sqrt(sigma * sigma + 1.0);
  for (int64_t i = 0; i < n; i++) out[i] = (float)((double)x[i] * k);
}

/* Predicted clean sample from one element of the model output at noise level sigma. */
static inline double sdc__pred_x0(sdc_pred_type p, double m, double x, double sigma) {
  switch (p) {
    case SDC_PRED_EPSILON: return x - sigma * m;
    case SDC_PRED_V: return m * (-sigma / sqrt(sigma * sigma + 1.0)) + x / (sigma * sigma + 1.0);
    default: return m; /* sample */
  }
}

/* ------------------------------------------------------------------ Euler */

static int sdc__euler_init(sdc_scheduler *s) {
  static const sdc__sched_opts o = {1, 1};
  int err = sdc__sigma_schedule(s, &o);
  if (!err) err = sdc__check_sigmas(s, s->n_calls);
  if (err) return err;
  sdc__set_init_noise_sigma(s);
  return SDC_OK;
}

/* s_churn = 0 (the default), so gamma = 0 and sigma_hat = sigma: no noise. */
static int sdc__euler_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  const double sigma = s->sigmas[s->index], dt = s->sigmas[s->index + 1] - sigma;
  const sdc_pred_type p = s->cfg.prediction_type;
  for (int64_t i = 0; i < n; i++) {
    double x = sample[i], d = (x - sdc__pred_x0(p, model_out[i], x, sigma)) / sigma;
    sample[i] = (float)(x + d * dt);
  }
  return SDC_OK;
}

const sdc__sched_ops sdc__euler_ops = {
    .init = sdc__euler_init, .scale_input = sdc__scale_by_sigma, .step = sdc__euler_step};

/* -------------------------------------------------------- Euler ancestral */

static int sdc__euler_a_init(sdc_scheduler *s) {
  if (s->cfg.prediction_type == SDC_PRED_SAMPLE)
    return sdc_seterr(SDC_ECONFIG, "scheduler euler_a: field 'prediction_type': 'sample' is not implemented by "
                                   "EulerAncestralDiscreteScheduler");
  /* the class has no karras / interpolation options: from_config drops them */
  s->cfg.use_karras_sigmas = 0;
  static const sdc__sched_opts o = {0, 0};
  int err = sdc__sigma_schedule(s, &o);
  if (!err) err = sdc__check_sigmas(s, s->n_calls);
  if (err) return err;
  sdc__set_init_noise_sigma(s);
  return SDC_OK;
}

/* Euler step down to sigma_down, then fresh noise up to sigma_to (ancestral sampling). */
static int sdc__euler_a_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  if (!noise) return sdc_seterr(SDC_EINVAL, "scheduler euler_a: step %lld needs a noise tensor", (long long)s->index);
  const double sigma = s->sigmas[s->index], to = s->sigmas[s->index + 1];
  const double up = sqrt(to * to * (sigma * sigma - to * to) / (sigma * sigma));
  const double down = sqrt(fmax(to * to - up * up, 0.0)), dt = down - sigma;
  const sdc_pred_type p = s->cfg.prediction_type;
  for (int64_t i = 0; i < n; i++) {
    double x = sample[i], d = (x - sdc__pred_x0(p, model_out[i], x, sigma)) / sigma;
    sample[i] = (float)(x + d * dt + (double)noise[i] * up);
  }
  return SDC_OK;
}

/* diffusers draws on every step, the last one (sigma_up = 0) included, so a shared generator stays in sync. */
static int sdc__euler_a_needs_noise(const sdc_scheduler *s) {
  (void)s;
  return 1;
}

const sdc__sched_ops sdc__euler_a_ops = {.init = sdc__euler_a_init,
                                         .scale_input = sdc__scale_by_sigma,
                                         .step = sdc__euler_a_step,
                                         .needs_noise = sdc__euler_a_needs_noise};

/* ------------------------------------------------------------------- Heun */

/* Between the first-order (Euler) and second-order (trapezoid) stage of one step. */
typedef struct {
  int in_second;   /* diffusers' `dt is not None` */
  double dt;
  int64_t n;       /* elements in the buffers below */
  double *deriv;   /* [n] first-stage derivative */
  double *x_start; /* [n] sample the step started from */
} sdc__heun_state;

static int sdc__heun_init(sdc_scheduler *s) {
  static const sdc__sched_opts o = {0, 1};
  int err = sdc__sigma_schedule(s, &o);
  if (err) return err;
  const int64_t n = s->n_steps;
  /* interleave: sigmas s0, s1, s1, ..., s(n-1), s(n-1), 0 and timesteps t0, t1, t1, ..., t(n-1), t(n-1) */
  double *sig = malloc((size_t)(2 * n) * sizeof *sig), *ts = malloc((size_t)(2 * n - 1) * sizeof *ts);
  s->state = calloc(1, sizeof(sdc__heun_state));
  if (!sig || !ts || !s->state) {
    free(sig), free(ts);
    return sdc_seterr(SDC_ENOMEM, "scheduler heun: out of memory");
  }
  sig[0] = s->sigmas[0], ts[0] = s->timesteps[0];
  for (int64_t i = 1; i < n; i++) {
    sig[2 * i - 1] = sig[2 * i] = s->sigmas[i];
    ts[2 * i - 1] = ts[2 * i] = s->timesteps[i];
  }
  sig[2 * n - 1] = s->sigmas[n];
  free(s->sigmas), free(s->timesteps);
  s->sigmas = sig, s->n_sigmas = 2 * n;
  s->timesteps = ts, s->n_calls = 2 * n - 1;
  err = sdc__check_sigmas(s, s->n_sigmas - 1);
  if (err) return err;
  sdc__set_init_noise_sigma(s);
  return SDC_OK;
}

static int sdc__heun_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  sdc__heun_state *h = s->state;
  if (!h->deriv) { /* first call fixes the sample size */
    h->deriv = malloc((size_t)n * 2 * sizeof(double));
    if (!h->deriv) return sdc_seterr(SDC_ENOMEM, "scheduler heun: out of memory for %lld-value state", (long long)n);
    h->x_start = h->deriv + n, h->n = n;
  }
  const sdc_pred_type p = s->cfg.prediction_type;
  const int clip = s->cfg.clip_sample;
  const double r = s->cfg.clip_sample_range;
  if (!h->in_second) {
    const double sigma = s->sigmas[s->index], dt = s->sigmas[s->index + 1] - sigma;
    for (int64_t i = 0; i < n; i++) {
      double x = sample[i], x0 = sdc__pred_x0(p, model_out[i], x, sigma);
      if (clip) x0 = fmin(fmax(x0, -r), r);
      double d = (x - x0) / sigma;
      h->deriv[i] = d, h->x_start[i] = x;
      sample[i] = (float)(x + d * dt);
    }
    h->dt = dt, h->in_second = 1;
  } else {
    /* the model saw the Euler estimate at sigma_next; average the two slopes */
    const double sigma_next = s->sigmas[s->index];
    for (int64_t i = 0; i < n; i++) {
      double x = sample[i], x0 = sdc__pred_x0(p, model_out[i], x, sigma_next);
      if (clip) x0 = fmin(fmax(x0, -r), r);
      double d = 0.5 * (h->deriv[i] + (x - x0) / sigma_next);
      sample[i] = (float)(h->x_start[i] + d * h->dt);
    }
    h->in_second = 0;
  }
  return SDC_OK;
}

static void sdc__heun_free(sdc_scheduler *s) {
  sdc__heun_state *h = s->state;
  if (h) free(h->deriv);
  free(h);
  s->state = NULL;
}

const sdc__sched_ops sdc__heun_ops = {
    .init = sdc__heun_init, .scale_input = sdc__scale_by_sigma, .step = sdc__heun_step, .free_state = sdc__heun_free};

/* -------------------------------------------------------------------- LMS */

#define SDC__LMS_ORDER 4 /* diffusers' step(order=4) default */

typedef struct {
  double (*coeff)[SDC__LMS_ORDER]; /* [n_calls][order]: weight of the derivative k calls back */
  int64_t n;                       /* elements per derivative */
  double *hist;                    /* [order][n] ring buffer, slot (call % order) */
} sdc__lms_state;

/* integral over tau in [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial
 * that is 1 at sigma_{t-cur} and 0 at the other sigma_{t-k}, k < order. The
 * integrand has degree order-1 <= 3, so 4-point Gauss-Legendre is exact (as
 * is scipy's adaptive quad that diffusers uses). */
static double sdc__lms_coeff(const double *sig, int order, int64_t t, int cur) {
  static const double node[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
  static const double weight[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
  const double a = sig[t], b = sig[t + 1], half = 0.5 * (b - a), mid = 0.5 * (a + b);
  double sum = 0.0;
  for (int q = 0; q < 4; q++) {
    double tau = mid + half * node[q], prod = 1.0;
    for (int k = 0; k < order; k++)
      if (k != cur) prod *= (tau - sig[t - k]) / (sig[t - cur] - sig[t - k]);
    sum += weight[q] * prod;
  }
  return half * sum;
}

static int sdc__lms_init(sdc_scheduler *s) {
  static const sdc__sched_opts o = {0, 0};
  int err = sdc__sigma_schedule(s, &o);
  if (!err) err = sdc__check_sigmas(s, s->n_calls);
  if (err) return err;
  sdc__set_init_noise_sigma(s);
  sdc__lms_state *st = calloc(1, sizeof *st);
  if (st) st->coeff = calloc((size_t)s->n_calls, sizeof *st->coeff);
  s->state = st;
  if (!st || !st->coeff) return sdc_seterr(SDC_ENOMEM, "scheduler lms: out of memory");
  /* the coefficients depend on the sigmas alone: all of them up front */
  for (int64_t t = 0; t < s->n_calls; t++) {
    int order = t + 1 < SDC__LMS_ORDER ? (int)(t + 1) : SDC__LMS_ORDER;
    for (int k = 0; k < order; k++) st->coeff[t][k] = sdc__lms_coeff(s->sigmas, order, t, k);
  }
  return SDC_OK;
}

static int sdc__lms_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  sdc__lms_state *st = s->state;
  if (!st->hist) { /* first call fixes the sample size */
    st->hist = malloc((size_t)n * SDC__LMS_ORDER * sizeof(double));
    if (!st->hist) return sdc_seterr(SDC_ENOMEM, "scheduler lms: out of memory for %lld-value history", (long long)n);
    st->n = n;
  }
  const int64_t t = s->index;
  const double sigma = s->sigmas[t];
  const sdc_pred_type p = s->cfg.prediction_type;
  double *d_now = st->hist + (t % SDC__LMS_ORDER) * n;
  for (int64_t i = 0; i < n; i++) {
    double x = sample[i];
    d_now[i] = (x - sdc__pred_x0(p, model_out[i], x, sigma)) / sigma;
  }
  const int order = t + 1 < SDC__LMS_ORDER ? (int)(t + 1) : SDC__LMS_ORDER;
  /* after a begin index diffusers' derivative list starts empty and its zip
   * stops at the derivatives it has: the leading coefficients alone */
  const int64_t made = t - s->begin + 1;
  const int have = made < order ? (int)made : order;
  const double *d[SDC__LMS_ORDER];
  for (int k = 0; k < have; k++) d[k] = st->hist + ((t - k) % SDC__LMS_ORDER) * n; /* k calls back */
  const double *c = st->coeff[t];
  for (int64_t i = 0; i < n; i++) {
    double acc = sample[i];
    for (int k = 0; k < have; k++) acc += c[k] * d[k][i];
    sample[i] = (float)acc;
  }
  return SDC_OK;
}

static void sdc__lms_free(sdc_scheduler *s) {
  sdc__lms_state *st = s->state;
  if (st) free(st->coeff), free(st->hist);
  free(st);
  s->state = NULL;
}

const sdc__sched_ops sdc__lms_ops = {
    .init = sdc__lms_init, .scale_input = sdc__scale_by_sigma, .step = sdc__lms_step, .free_state = sdc__lms_free};
