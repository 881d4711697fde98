/* sched_ddpm.c - diffusers 0.30's DDIMScheduler (eta = 0), DDPMScheduler and PNDMScheduler (PRK + PLMS). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sched_impl.h"

/* ------------------------------------------------------------- timesteps */

/* The integer schedule these three classes share, computed with numpy's
 * arithmetic so that round-half-even ties land where diffusers' do:
 *   leading:  arange(n) * (T // n) + steps_offset
 *   trailing: round(arange(T, 0, -T/n)) - 1   (arange fills start + i*delta,
 *             delta = (T - T/n) - T; steps_offset is not applied)
 *   linspace: round(linspace(0, T-1, n))      (i * step, last = T-1 exactly)
 * out gets n values, descending. Differences from diffusers: for n where
 * float arange yields n+1 entries (trailing, e.g. T=1000, n=61) diffusers
 * appends a -1 timestep; we keep n. And leading with n close to T (SD's
 * steps_offset 1 and n = T = 1000: 1..1000) reaches t = T, where diffusers
 * indexes alphas_cumprod[T] and raises IndexError (its issue #10003): the
 * offset is lowered to what keeps the top timestep at T-1, so n = T gives
 * every training timestep, T-1..0, and any n <= T that the job contract
 * allows runs. */
static void sdc__ddpm_train_steps(const sdc_scheduler *s, int64_t n, int64_t *out) {
  const int64_t T = s->cfg.num_train_timesteps;
  if (strcmp(s->cfg.timestep_spacing, "leading") == 0) {
    const int64_t ratio = T / n;
    int64_t offset = s->cfg.steps_offset;
    if (ratio > 0 && (n - 1) * ratio + offset > T - 1) offset = T - 1 - (n - 1) * ratio;
    for (int64_t i = 0; i < n; i++) out[i] = (n - 1 - i) * ratio + offset;
  } else if (strcmp(s->cfg.timestep_spacing, "trailing") == 0) {
    const double delta = ((double)T - (double)T / (double)n) - (double)T;
    for (int64_t i = 0; i < n; i++) out[i] = (int64_t)nearbyint((double)T + (double)i * delta) - 1;
  } else {
    const double step = n > 1 ? (double)(T - 1) / (double)(n - 1) : 0.0;
    for (int64_t i = 0; i < n; i++) {
      int64_t k = n - 1 - i; /* ascending index */
      out[i] = k == n - 1 ? T - 1 : (int64_t)nearbyint((double)k * step);
    }
    if (n == 1) out[0] = 0;
  }
}

/* Fills s->timesteps from ts[n_calls]; every entry must index alphas_cumprod. */
static int sdc__ddpm_set_timesteps(sdc_scheduler *s, const int64_t *ts, int64_t n_calls) {
  const int64_t T = s->cfg.num_train_timesteps;
  for (int64_t i = 0; i < n_calls; i++)
    if (ts[i] < 0 || ts[i] >= T)
      return sdc_seterr(SDC_ECONFIG,
                        "scheduler %s: %lld steps with %s spacing and steps_offset %lld give timestep %lld, "
                        "outside 0..%lld",
                        sdc_sched_name(s->cfg.kind), (long long)s->n_steps, s->cfg.timestep_spacing,
                        (long long)s->cfg.steps_offset, (long long)ts[i], (long long)(T - 1));
  s->timesteps = malloc((size_t)n_calls * sizeof *s->timesteps);
  if (!s->timesteps) return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory");
  for (int64_t i = 0; i < n_calls; i++) s->timesteps[i] = (double)ts[i];
  s->n_calls = n_calls;
  return SDC_OK;
}

/* DDIM and DDPM: one call per inference step. */
static int sdc__ddpm_init_plain(sdc_scheduler *s) {
  int64_t *ts = malloc((size_t)s->n_steps * sizeof *ts);
  if (!ts) return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory");
  sdc__ddpm_train_steps(s, s->n_steps, ts);
  int err = sdc__ddpm_set_timesteps(s, ts, s->n_steps);
  free(ts);
  return err;
}

/* alphas_cumprod at t, or `final` for the step past t = 0. */
static double sdc__acp(const sdc_scheduler *s, int64_t t, double final) { return t >= 0 ? s->alphas_cumprod[t] : final; }

/* ------------------------------------------------------------------ DDIM */

static int sdc__ddim_init(sdc_scheduler *s) { return sdc__ddpm_init_plain(s); }

/* DDIM (Song et al. 2020) eq. 12 with eta = 0: deterministic, no noise.
 * model_out, sample: [n]. */
static int sdc__ddim_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  const sdc_sched_config *c = &s->cfg;
  const int64_t t = (int64_t)s->timesteps[s->index];
  /* diffusers steps back by T // n whatever the spacing */
  const int64_t prev_t = t - c->num_train_timesteps / s->n_steps;
  const double final = c->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0];
  const double a = s->alphas_cumprod[t], ap = sdc__acp(s, prev_t, final), b = 1.0 - a;
  const double sa = sqrt(a), sb = sqrt(b), sap = sqrt(ap), dir = sqrt(1.0 - ap);
  const double r = c->clip_sample_range;
  for (int64_t i = 0; i < n; i++) {
    const double x = sample[i], m = model_out[i];
    double x0, eps;
    switch (c->prediction_type) {
      case SDC_PRED_EPSILON: x0 = (x - sb * m) / sa, eps = m; break;
      case SDC_PRED_V: x0 = sa * x - sb * m, eps = sa * m + sb * x; break;
      default: x0 = m, eps = (x - sa * m) / sb; break;
    }
    /* eps is derived before clipping (use_clipped_model_output = False) */
    if (c->clip_sample) x0 = x0 < -r ? -r : x0 > r ? r : x0;
    sample[i] = (float)(sap * x0 + dir * eps);
  }
  return SDC_OK;
}

const sdc__sched_ops sdc__ddim_ops = {.init = sdc__ddim_init, .step = sdc__ddim_step};

/* ------------------------------------------------------------------ DDPM */

static int sdc__ddpm_init(sdc_scheduler *s) {
  const char *vt = s->cfg.variance_type;
  if (strncmp(vt, "learned", 7) == 0)
    return sdc_seterr(SDC_EUNSUPPORTED,
                      "scheduler ddpm: field 'variance_type': '%s' needs a model that predicts its variance", vt);
  return sdc__ddpm_init_plain(s);
}

/* The standard deviation of the noise added at step t (DDPM eq. 6/7 and the
 * variance_type variants of diffusers' _get_variance). */
static double sdc__ddpm_std(const sdc_scheduler *s, double a, double ap) {
  const char *vt = s->cfg.variance_type;
  const double beta_t = 1.0 - a / ap;
  double var = (1.0 - ap) / (1.0 - a) * beta_t;
  if (var < 1e-20) var = 1e-20; /* diffusers clamps before any log */
  if (strcmp(vt, "fixed_small_log") == 0) return exp(0.5 * log(var));
  if (strcmp(vt, "fixed_large") == 0) return sqrt(beta_t);
  /* diffusers 0.30 returns log(beta_t) here and then takes its square root
   * (NaN); we follow Glide's max_log, whose std is exp(0.5 * log(beta_t)). */
  if (strcmp(vt, "fixed_large_log") == 0) return exp(0.5 * log(beta_t));
  return sqrt(var); /* fixed_small, and None */
}

/* DDPM posterior mean (Ho et al. 2020 eq. 7) plus std * noise when t > 0.
 * model_out, sample, noise: [n]. */
static int sdc__ddpm_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  const sdc_sched_config *c = &s->cfg;
  const int64_t t = (int64_t)s->timesteps[s->index];
  const int64_t prev_t = t - c->num_train_timesteps / s->n_steps;
  const double a = s->alphas_cumprod[t], ap = sdc__acp(s, prev_t, 1.0);
  const double b = 1.0 - a, bp = 1.0 - ap, alpha_t = a / ap, beta_t = 1.0 - alpha_t;
  const double sa = sqrt(a), sb = sqrt(b);
  const double x0_coef = sqrt(ap) * beta_t / b, x_coef = sqrt(alpha_t) * bp / b;
  const double std = t > 0 ? sdc__ddpm_std(s, a, ap) : 0.0;
  const double r = c->clip_sample_range;
  for (int64_t i = 0; i < n; i++) {
    const double x = sample[i], m = model_out[i];
    double x0 = c->prediction_type == SDC_PRED_EPSILON ? (x - sb * m) / sa
                : c->prediction_type == SDC_PRED_V     ? sa * x - sb * m
                                                       : m;
    if (c->clip_sample) x0 = x0 < -r ? -r : x0 > r ? r : x0;
    double prev = x0_coef * x0 + x_coef * x;
    if (t > 0) prev += std * (double)noise[i];
    sample[i] = (float)prev;
  }
  return SDC_OK;
}

/* diffusers draws noise exactly when the current timestep is > 0. */
static int sdc__ddpm_needs_noise(const sdc_scheduler *s) { return s->timesteps[s->index] > 0; }

const sdc__sched_ops sdc__ddpm_ops = {.init = sdc__ddpm_init, .step = sdc__ddpm_step, .needs_noise = sdc__ddpm_needs_noise};

/* ------------------------------------------------------------------ PNDM */

/* Run history, sized by the first step (n = sample size). */
typedef struct {
  int64_t n_prk;        /* PRK calls at the start of the run (0 or 12) */
  double *block;        /* NULL until the first step; holds the [n] buffers below */
  double *ets[4];       /* past raw model outputs, oldest first (diffusers' self.ets) */
  int n_ets;
  double *cur_sample;   /* sample at the start of a PRK group / the PLMS warm-up */
  double *cur_mo;       /* PRK's running weighted model output */
  double *x, *e;        /* scratch: the sample and the combined model output */
} sdc__pndm_state;

static void sdc__pndm_free(sdc_scheduler *s) {
  sdc__pndm_state *st = s->state;
  if (st) free(st->block);
  free(st);
  s->state = NULL;
}

/* diffusers' set_timesteps. _ts is the schedule ascending (a_0 < ... < a_{n-1}).
 * skip_prk_steps: PLMS on _ts[:-1], _ts[-2], _ts[-1] reversed: the second
 *   timestep repeats (n+1 calls; 1 call when n = 1).
 * otherwise: PRK on the last 4 (a3 > a2 > a1 > a0 below, h = T // n // 2):
 *   a3, a2+h, a2+h, a2, a2, a1+h, a1+h, a1, a1, a0+h, a0+h, a0  (12 calls)
 *   then PLMS on _ts[:-3] reversed (n - 3 calls): n + 9 in all. */
static int sdc__pndm_init(sdc_scheduler *s) {
  const int64_t n = s->n_steps, T = s->cfg.num_train_timesteps;
  if (s->cfg.prediction_type == SDC_PRED_SAMPLE)
    return sdc_seterr(SDC_ECONFIG, "scheduler pndm: field 'prediction_type': 'sample' is not supported (epsilon or v_prediction)");
  if (!s->cfg.skip_prk_steps && n < 4)
    return sdc_seterr(SDC_EINVAL, "scheduler pndm: %lld steps; the Runge-Kutta warm-up (skip_prk_steps false) needs at least 4",
                      (long long)n);
  sdc__pndm_state *st = calloc(1, sizeof *st);
  int64_t *desc = malloc((size_t)n * sizeof *desc), *ts = malloc((size_t)(n + 9) * sizeof *ts);
  if (!st || !desc || !ts) {
    free(st), free(desc), free(ts);
    return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory");
  }
  s->state = st;
  sdc__ddpm_train_steps(s, n, desc);
  int64_t m = 0;
  if (s->cfg.skip_prk_steps) {
    ts[m++] = desc[0];
    if (n > 1) ts[m++] = desc[1]; /* the second timestep, twice */
    for (int64_t i = 1; i < n; i++) ts[m++] = desc[i];
  } else {
    const int64_t h = T / n / 2, a3 = desc[0], a2 = desc[1], a1 = desc[2], a0 = desc[3];
    const int64_t prk[12] = {a3, a2 + h, a2 + h, a2, a2, a1 + h, a1 + h, a1, a1, a0 + h, a0 + h, a0};
    for (int i = 0; i < 12; i++) ts[m++] = prk[i];
    for (int64_t i = 3; i < n; i++) ts[m++] = desc[i];
    st->n_prk = 12;
  }
  int err = sdc__ddpm_set_timesteps(s, ts, m);
  free(desc), free(ts);
  return err;
}

/* PNDM eq. 9: out = x_{t-δ} from x = x_t and the model output e (an epsilon,
 * or a v converted with the same x). x, e: [n]; out: [n]. */
static void sdc__pndm_prev(const sdc_scheduler *s, const double *x, const double *e, int64_t t, int64_t prev_t,
                           float *out, int64_t n) {
  const double final = s->cfg.set_alpha_to_one ? 1.0 : s->alphas_cumprod[0];
  const double a = s->alphas_cumprod[t], ap = sdc__acp(s, prev_t, final), b = 1.0 - a, bp = 1.0 - ap;
  const double x_coef = sqrt(ap / a), denom = a * sqrt(bp) + sqrt(a * b * ap), sa = sqrt(a), sb = sqrt(b);
  const int v = s->cfg.prediction_type == SDC_PRED_V;
  for (int64_t i = 0; i < n; i++) {
    const double eps = v ? sa * e[i] + sb * x[i] : e[i];
    out[i] = (float)(x_coef * x[i] - (ap - a) * eps / denom);
  }
}

/* Appends a model output to the history, keeping the last 4. */
static void sdc__pndm_push(sdc__pndm_state *st, const float *mo, int64_t n) {
  if (st->n_ets == 4) {
    double *oldest = st->ets[0];
    memmove(st->ets, st->ets + 1, 3 * sizeof *st->ets);
    st->ets[3] = oldest;
    st->n_ets = 3;
  }
  double *dst = st->ets[st->n_ets++];
  for (int64_t i = 0; i < n; i++) dst[i] = mo[i];
}

static void sdc__copy_in(double *dst, const float *src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

/* One PRK (Runge-Kutta) call; c = call index < 12. Each group of 4 calls
 * advances one step from cur_sample (saved at the group's first call), the
 * last call with the outputs weighted 1/6, 1/3, 1/3, 1/6. */
static void sdc__pndm_prk(sdc_scheduler *s, const float *mo, float *sample, int64_t n) {
  sdc__pndm_state *st = s->state;
  /* diffusers' counter starts at 0 whatever the first timestep (img2img) */
  const int64_t c = s->index - s->begin, h = s->cfg.num_train_timesteps / s->n_steps / 2;
  const int64_t prev_t = (int64_t)s->timesteps[s->index] - (c % 2 ? 0 : h), t = (int64_t)s->timesteps[c / 4 * 4];
  if (c % 4 == 0) {
    sdc__pndm_push(st, mo, n);
    sdc__copy_in(st->cur_sample, sample, n);
    for (int64_t i = 0; i < n; i++) st->cur_mo[i] = 1.0 / 6 * (double)mo[i];
  } else if (c % 4 < 3) {
    for (int64_t i = 0; i < n; i++) st->cur_mo[i] += 1.0 / 3 * (double)mo[i];
  }
  if (c % 4 < 3) sdc__copy_in(st->e, mo, n);
  else
    for (int64_t i = 0; i < n; i++) st->e[i] = st->cur_mo[i] + 1.0 / 6 * (double)mo[i];
  sdc__pndm_prev(s, st->cur_sample, st->e, t, prev_t, sample, n);
}

/* One PLMS (pseudo linear multistep) call: Adams-Bashforth of the order the
 * history allows. With skip_prk_steps the first two calls are a Heun-like
 * warm-up: call 0 steps with the raw output, call 1 (the repeated timestep)
 * redoes that step from the saved sample with the average of both outputs. */
static void sdc__pndm_plms(sdc_scheduler *s, const float *mo, float *sample, int64_t n) {
  sdc__pndm_state *st = s->state;
  const int64_t c = s->index - s->begin, r = s->cfg.num_train_timesteps / s->n_steps; /* c: diffusers' counter */
  int64_t t = (int64_t)s->timesteps[s->index], prev_t = t - r;
  if (c != 1) sdc__pndm_push(st, mo, n);
  else prev_t = t, t = t + r;
  double *const *E = st->ets + st->n_ets - 1; /* E[0] newest, E[-1] the one before, ... */
  const double *x = st->x;
  if (st->n_ets == 1 && c == 0) {
    sdc__copy_in(st->cur_sample, sample, n);
    sdc__copy_in(st->e, mo, n);
    x = st->cur_sample;
  } else if (st->n_ets == 1 && c == 1) {
    for (int64_t i = 0; i < n; i++) st->e[i] = ((double)mo[i] + E[0][i]) / 2;
    x = st->cur_sample;
  } else if (st->n_ets == 2) {
    for (int64_t i = 0; i < n; i++) st->e[i] = (3 * E[0][i] - E[-1][i]) / 2;
  } else if (st->n_ets == 3) {
    for (int64_t i = 0; i < n; i++) st->e[i] = (23 * E[0][i] - 16 * E[-1][i] + 5 * E[-2][i]) / 12;
  } else {
    for (int64_t i = 0; i < n; i++)
      st->e[i] = (1.0 / 24) * (55 * E[0][i] - 59 * E[-1][i] + 37 * E[-2][i] - 9 * E[-3][i]);
  }
  if (x == st->x) sdc__copy_in(st->x, sample, n);
  sdc__pndm_prev(s, x, st->e, t, prev_t, sample, n);
}

static int sdc__pndm_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  sdc__pndm_state *st = s->state;
  if (!st->block) { /* one allocation, carved into the named buffers */
    st->block = malloc((size_t)n * 8 * sizeof *st->block);
    if (!st->block) return sdc_seterr(SDC_ENOMEM, "scheduler pndm: out of memory for a %lld-value history", (long long)n);
    double *p = st->block;
    for (int k = 0; k < 4; k++) st->ets[k] = p, p += n;
    st->cur_sample = p, p += n;
    st->cur_mo = p, p += n;
    st->x = p, p += n;
    st->e = p;
  }
  if (s->index - s->begin < st->n_prk) sdc__pndm_prk(s, model_out, sample, n);
  else sdc__pndm_plms(s, model_out, sample, n);
  return SDC_OK;
}

const sdc__sched_ops sdc__pndm_ops = {.init = sdc__pndm_init, .step = sdc__pndm_step, .free_state = sdc__pndm_free};
