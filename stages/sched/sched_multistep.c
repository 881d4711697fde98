/* sched_multistep.c - diffusers 0.30's DPMSolverMultistepScheduler (DPM-Solver++ 2M, Karras, SDE) and UniPCMultistepScheduler. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sched_impl.h"

/* Both classes keep the converted model outputs of the last solver_order
 * calls (diffusers' model_outputs list, oldest first). slot[0..order-1] is
 * that list and slot[order] a spare the next output is written into before
 * the list rotates, so no step allocates once the first has run. */
typedef struct {
  int order;            /* solver_order, 1..3 */
  int lower_order_nums; /* warm-up counter: calls so far, capped at order */
  int this_order;       /* UniPC: order of the last predictor, reused by the next corrector */
  int have_last;        /* UniPC: last_sample holds a value */
  int64_t n;            /* elements per tensor; 0 until the first step */
  double *buf;          /* one allocation: (order + 2) * n doubles */
  double *slot[4];      /* [n] each */
  double *last_sample;  /* UniPC: [n], the (corrected) sample the last predictor started from */
} sdc__ms_state;

static void sdc__ms_free(sdc_scheduler *s) {
  sdc__ms_state *st = s->state;
  if (st) free(st->buf);
  free(st);
  s->state = NULL;
}

/* Carves the history buffers on the first step, when the sample size is known. */
static int sdc__ms_buffers(sdc__ms_state *st, int64_t n) {
  if (st->buf) return SDC_OK; /* the wrapper keeps n fixed for the run */
  const int64_t per = n > 0 ? n : 1;
  st->buf = malloc((size_t)(st->order + 2) * (size_t)per * sizeof(double));
  if (!st->buf) return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory for %d model outputs of %lld values", st->order,
                                  (long long)n);
  for (int i = 0; i <= st->order; i++) st->slot[i] = st->buf + (size_t)i * (size_t)per;
  st->last_sample = st->buf + (size_t)(st->order + 1) * (size_t)per;
  st->n = n;
  return SDC_OK;
}

/* The spare slot (just filled) becomes the newest output; the oldest becomes the spare. */
static void sdc__ms_rotate(sdc__ms_state *st) {
  double *oldest = st->slot[0];
  for (int i = 0; i < st->order; i++) st->slot[i] = st->slot[i + 1];
  st->slot[st->order] = oldest;
}

/* VP view of a VE sigma: alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t. */
static void sdc__alpha_sigma(double sigma, double *alpha_t /* OUT */, double *sigma_t /* OUT */) {
  *alpha_t = 1.0 / sqrt(sigma * sigma + 1.0);
  *sigma_t = sigma * *alpha_t;
}

/* Log-SNR lambda = log(alpha_t) - log(sigma_t) = -log(sigma); +inf at the final sigma 0. */
static double sdc__lambda(double sigma) { return sigma > 0 ? -log(sigma) : INFINITY; }

/* ------------------------------------------------------------- schedule */

/* The integer timesteps both classes' set_timesteps build before any Karras
 * or Lu override, with numpy's arithmetic so round-half-even ties land where
 * diffusers' do (last = the largest usable timestep + 1):
 *   linspace: round(linspace(0, last-1, n+1))[::-1][:-1]
 *   leading:  (arange(n+1) * (last // (n+1)))[::-1][:-1] + steps_offset
 *   trailing: round(arange(last, 0, -T/n)) - 1, where numpy sizes the range
 *             ceil(last / (T/n)) and fills start + i*delta
 * Unlike DDIM's, these are n+1-point ranges without the first. Trailing can
 * give n+1 entries (T=1000, n=61: the last is -1, sigma clamps to sigma(0));
 * diffusers then runs n+1 calls, and so do we. out needs n+1 slots; returns
 * the count. */
static int64_t sdc__ms_spacing(const sdc_scheduler *s, int64_t n, int64_t last, double *out) {
  const sdc_sched_config *c = &s->cfg;
  if (n >= last && strcmp(c->timestep_spacing, "trailing") != 0) {
    /* 1000 steps over 1000 timesteps: n+1 points cannot be distinct (leading's ratio is 0, every timestep
     * steps_offset; linspace rounds to repeats), a repeat makes a step's h = 0 and the sample NaN, as it
     * does in diffusers; each usable timestep once, last-1..0, instead (trailing already does that) */
    for (int64_t i = 0; i < last; i++) out[i] = (double)(last - 1 - i);
    return last;
  }
  if (strcmp(c->timestep_spacing, "leading") == 0) {
    const int64_t ratio = last / (n + 1);
    for (int64_t i = 0; i < n; i++) out[i] = (double)((n - i) * ratio + c->steps_offset);
    return n;
  }
  if (strcmp(c->timestep_spacing, "trailing") == 0) {
    const double step = -((double)c->num_train_timesteps / (double)n), start = (double)last;
    int64_t count = (int64_t)ceil((0.0 - start) / step);
    if (count > n + 1) count = n + 1; /* cannot happen for last <= T; keeps out[] in bounds */
    const double delta = (start + step) - start;
    for (int64_t i = 0; i < count; i++) {
      double v = i == 0 ? start : i == 1 ? start + step : start + (double)i * delta;
      out[i] = nearbyint(v) - 1.0;
    }
    return count > 0 ? count : 0;
  }
  const double stop = (double)(last - 1), step = stop / (double)n; /* linspace over n+1 points */
  for (int64_t i = 0; i < n; i++) {
    int64_t j = n - i; /* ascending index, j = n is the exact endpoint */
    out[i] = j == n ? nearbyint(stop) : nearbyint((double)j * step);
  }
  return n;
}

/* Fills s->timesteps, s->sigmas (n_calls + 1) and s->n_calls. lambda_min_clipped
 * applies to DPM only (UniPC has no such option). */
static int sdc__ms_schedule(sdc_scheduler *s, int is_unipc) {
  const sdc_sched_config *c = &s->cfg;
  const int64_t T = c->num_train_timesteps, n = s->n_steps;
  const char *name = sdc_sched_name(c->kind);
  s->timesteps = malloc((size_t)(n + 1) * sizeof *s->timesteps);
  s->sigmas = malloc((size_t)(n + 2) * sizeof *s->sigmas);
  if (!s->timesteps || !s->sigmas) return sdc_seterr(SDC_ENOMEM, "scheduler %s: out of memory", name);
  int64_t count;
  const int lu = !is_unipc && !c->use_karras_sigmas && c->use_lu_lambdas;
  if (c->use_karras_sigmas || lu) {
    /* sigma_min/sigma_max keys a file carries (hidden config of a compatible
     * class) override the training range, as diffusers' hasattr hack does */
    const double lo = isnan(c->sigma_min) || lu ? sdc__sched_sigma_at(s, 0) : c->sigma_min;
    const double hi = isnan(c->sigma_max) || lu ? sdc__sched_sigma_at(s, T - 1) : c->sigma_max;
    if (c->use_karras_sigmas) {
      sdc__sched_karras(lo, hi, n, s->sigmas);
    } else { /* Lu et al.: uniform in log-sigma (= -lambda) from hi down to lo */
      for (int64_t i = 0; i < n; i++) {
        double ramp = n > 1 ? (i == n - 1 ? 1.0 : (double)i * (1.0 / (double)(n - 1))) : 0.0;
        s->sigmas[i] = exp(log(hi) + ramp * (log(lo) - log(hi)));
      }
    }
    for (int64_t i = 0; i < n; i++) s->timesteps[i] = nearbyint(sdc__sched_sigma_to_t(s, s->sigmas[i]));
    count = n;
  } else {
    int64_t last = T;
    if (!is_unipc && c->lambda_min_clipped > -INFINITY) {
      /* searchsorted(flip(lambda_t), lambda_min_clipped): timesteps whose
       * log-SNR lies below the clip are cut from the top of the range */
      for (int64_t t = 0; t < T; t++) {
        double a = s->alphas_cumprod[t];
        if (log(sqrt(a)) - log(sqrt(1.0 - a)) < c->lambda_min_clipped) last--;
      }
    }
    count = sdc__ms_spacing(s, n, last, s->timesteps);
    if (count < 1)
      return sdc_seterr(SDC_ECONFIG, "scheduler %s: lambda_min_clipped %g leaves no timesteps for %s spacing", name,
                        c->lambda_min_clipped, c->timestep_spacing);
    for (int64_t i = 0; i < count; i++) s->sigmas[i] = sdc__sched_sigma_interp(s, s->timesteps[i]);
  }
  double final = 0.0;
  if (strcmp(c->final_sigmas_type, "sigma_min") == 0)
    final = is_unipc && c->use_karras_sigmas ? s->sigmas[count - 1] : sdc__sched_sigma_at(s, 0);
  s->sigmas[count] = final;
  s->n_calls = count;
  s->n_sigmas = count + 1;
  s->init_noise_sigma = 1.0;
  return SDC_OK;
}

static int sdc__ms_new_state(sdc_scheduler *s) {
  sdc__ms_state *st = calloc(1, sizeof *st);
  if (!st) return sdc_seterr(SDC_ENOMEM, "scheduler %s: out of memory", sdc_sched_name(s->cfg.kind));
  st->order = (int)s->cfg.solver_order;
  s->state = st;
  return SDC_OK;
}

/* ----------------------------------------------------------- DPM-Solver */

typedef enum { SDC__DPMPP, SDC__SDE_DPMPP, SDC__DPM, SDC__SDE_DPM } sdc__dpm_algo;

static sdc__dpm_algo sdc__dpm_algo_of(const sdc_sched_config *c) {
  if (strcmp(c->algorithm_type, "sde-dpmsolver++") == 0) return SDC__SDE_DPMPP;
  if (strcmp(c->algorithm_type, "dpmsolver") == 0) return SDC__DPM;
  if (strcmp(c->algorithm_type, "sde-dpmsolver") == 0) return SDC__SDE_DPM;
  return SDC__DPMPP;
}

static int sdc__dpm_init(sdc_scheduler *s) {
  const sdc_sched_config *c = &s->cfg;
  const char *name = sdc_sched_name(c->kind);
  const sdc__dpm_algo algo = sdc__dpm_algo_of(c);
  if (c->solver_order < 1 || c->solver_order > 3)
    return sdc_seterr(SDC_ECONFIG, "scheduler %s: field 'solver_order': %lld, expected 1, 2 or 3", name,
                      (long long)c->solver_order);
  if ((algo == SDC__DPM || algo == SDC__SDE_DPM) && strcmp(c->final_sigmas_type, "zero") == 0)
    return sdc_seterr(SDC_ECONFIG,
                      "scheduler %s: field 'final_sigmas_type': 'zero' is not supported with algorithm_type '%s' "
                      "(use 'sigma_min')",
                      name, c->algorithm_type);
  /* diffusers has no stochastic third-order update (the step fails there) */
  if ((algo == SDC__SDE_DPMPP || algo == SDC__SDE_DPM) && c->solver_order == 3)
    return sdc_seterr(SDC_EUNSUPPORTED, "scheduler %s: algorithm_type '%s' has no third-order update (solver_order 3)",
                      name, c->algorithm_type);
  int err = sdc__ms_new_state(s);
  return err ? err : sdc__ms_schedule(s, 0);
}

static int sdc__dpm_needs_noise(const sdc_scheduler *s) {
  sdc__dpm_algo algo = sdc__dpm_algo_of(&s->cfg);
  return algo == SDC__SDE_DPMPP || algo == SDC__SDE_DPM;
}

/* x_next = A*x + B0*D0 + B1*D1 + B2*D2 + C*noise, with the D's built from the
 * newest model outputs m0, m1, m2 as in diffusers' first-, second- and
 * third-order multistep updates (D0 = m0; the r's are log-SNR step ratios). */
typedef struct {
  int order;
  double A, B0, B1, B2, C, r0, r1;
} sdc__dpm_coef;

static sdc__dpm_coef sdc__dpm_coefs(const sdc_scheduler *s, int order) {
  const int64_t k = s->index;
  const sdc__dpm_algo algo = sdc__dpm_algo_of(&s->cfg);
  const int heun = strcmp(s->cfg.solver_type, "heun") == 0;
  sdc__dpm_coef q = {order, 0, 0, 0, 0, 0, 0, 0};
  double at, st, as0, ss0;
  sdc__alpha_sigma(s->sigmas[k + 1], &at, &st);
  sdc__alpha_sigma(s->sigmas[k], &as0, &ss0);
  const double lam_t = sdc__lambda(s->sigmas[k + 1]), lam_s0 = sdc__lambda(s->sigmas[k]);
  const double h = lam_t - lam_s0;
  if (order >= 2) {
    const double lam_s1 = sdc__lambda(s->sigmas[k - 1]);
    q.r0 = (lam_s0 - lam_s1) / h;
  }
  if (order == 3) {
    const double lam_s2 = sdc__lambda(s->sigmas[k - 2]);
    q.r1 = (sdc__lambda(s->sigmas[k - 1]) - lam_s2) / h;
  }
  /* data prediction (++) integrates e^{-h}; noise prediction e^{h} */
  const double em = expm1(-h), ep = expm1(h);
  switch (algo) {
    case SDC__DPMPP:
      q.A = st / ss0;
      q.B0 = -at * em;
      if (order == 2) q.B1 = heun ? at * (em / h + 1.0) : -0.5 * at * em;
      if (order == 3) q.B1 = at * (em / h + 1.0), q.B2 = -at * ((em + h) / (h * h) - 0.5);
      break;
    case SDC__DPM:
      q.A = at / as0;
      q.B0 = -st * ep;
      if (order == 2) q.B1 = heun ? -st * (ep / h - 1.0) : -0.5 * st * ep;
      if (order == 3) q.B1 = -st * (ep / h - 1.0), q.B2 = -st * ((ep - h) / (h * h) - 0.5);
      break;
    case SDC__SDE_DPMPP: { /* 1 - e^{-2h}, exactly 1 at the final sigma 0 */
      const double g = -expm1(-2.0 * h);
      q.A = st / ss0 * exp(-h);
      q.B0 = at * g;
      if (order == 2) q.B1 = heun ? at * (g / (-2.0 * h) + 1.0) : 0.5 * at * g;
      q.C = st * sqrt(g);
      break;
    }
    case SDC__SDE_DPM:
      q.A = at / as0;
      q.B0 = -2.0 * st * ep;
      if (order == 2) q.B1 = heun ? -2.0 * st * (ep / h - 1.0) : -st * ep;
      q.C = st * sqrt(expm1(2.0 * h));
      break;
  }
  return q;
}

static int sdc__dpm_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  sdc__ms_state *st = s->state;
  int err = sdc__ms_buffers(st, n);
  if (err) return err;
  const sdc_sched_config *c = &s->cfg;
  const int64_t k = s->index, N = s->n_calls;
  const int order = st->order;
  const sdc__dpm_algo algo = sdc__dpm_algo_of(c);
  const int data_pred = algo == SDC__DPMPP || algo == SDC__SDE_DPMPP;
  /* convert_model_output: x0 prediction for ++, noise prediction otherwise */
  double a, sg;
  sdc__alpha_sigma(s->sigmas[k], &a, &sg);
  double *m = st->slot[order];
  for (int64_t i = 0; i < n; i++) {
    const double x = sample[i], e = model_out[i];
    switch (c->prediction_type) {
      case SDC_PRED_EPSILON: m[i] = data_pred ? (x - sg * e) / a : e; break;
      case SDC_PRED_V: m[i] = data_pred ? a * x - sg * e : a * e + sg * x; break;
      case SDC_PRED_SAMPLE: m[i] = data_pred ? e : (x - a * e) / sg; break;
    }
  }
  sdc__ms_rotate(st);
  /* lower orders at the end stabilise short runs; a final sigma of 0 always
   * takes the first-order (DDIM-like) step */
  const int low_final = k == N - 1 && (c->euler_at_final || (c->lower_order_final && N < 15) ||
                                       strcmp(c->final_sigmas_type, "zero") == 0);
  const int low_second = k == N - 2 && c->lower_order_final && N < 15;
  int p = 3;
  if (order == 1 || st->lower_order_nums < 1 || low_final) p = 1;
  else if (order == 2 || st->lower_order_nums < 2 || low_second) p = 2;
  const sdc__dpm_coef q = sdc__dpm_coefs(s, p);
  const double *m0 = st->slot[order - 1], *m1 = p >= 2 ? st->slot[order - 2] : NULL, *m2 = p == 3 ? st->slot[0] : NULL;
  const int sde = algo == SDC__SDE_DPMPP || algo == SDC__SDE_DPM;
  for (int64_t i = 0; i < n; i++) {
    double x = q.A * sample[i] + q.B0 * m0[i];
    if (p == 2) {
      x += q.B1 * (m0[i] - m1[i]) / q.r0;
    } else if (p == 3) {
      const double d10 = (m0[i] - m1[i]) / q.r0, d11 = (m1[i] - m2[i]) / q.r1;
      x += q.B1 * (d10 + q.r0 / (q.r0 + q.r1) * (d10 - d11)) + q.B2 * (d10 - d11) / (q.r0 + q.r1);
    }
    if (sde) x += q.C * noise[i];
    sample[i] = (float)x;
  }
  if (st->lower_order_nums < order) st->lower_order_nums++;
  return SDC_OK;
}

const sdc__sched_ops sdc__dpm_ops = {
    .init = sdc__dpm_init,
    .scale_input = NULL, /* identity */
    .step = sdc__dpm_step,
    .needs_noise = sdc__dpm_needs_noise,
    .free_state = sdc__ms_free,
};

/* ------------------------------------------------------------------ UniPC */

static int sdc__unipc_init(sdc_scheduler *s) {
  const sdc_sched_config *c = &s->cfg;
  if (c->solver_order < 1 || c->solver_order > 3)
    return sdc_seterr(SDC_ECONFIG, "scheduler unipc: field 'solver_order': %lld, expected 1, 2 or 3",
                      (long long)c->solver_order);
  int err = sdc__ms_new_state(s);
  return err ? err : sdc__ms_schedule(s, 1);
}

/* Solves the p x p system A x = b (p <= 3) by elimination with partial
 * pivoting, as torch.linalg.solve's LU does. */
static void sdc__solve(int p, double A[3][3], double b[3], double x[3]) {
  for (int col = 0; col < p; col++) {
    int piv = col;
    for (int r = col + 1; r < p; r++)
      if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
    if (piv != col) {
      for (int j = 0; j < p; j++) {
        double t = A[col][j];
        A[col][j] = A[piv][j], A[piv][j] = t;
      }
      double t = b[col];
      b[col] = b[piv], b[piv] = t;
    }
    for (int r = col + 1; r < p; r++) {
      double f = A[r][col] / A[col][col];
      for (int j = col; j < p; j++) A[r][j] -= f * A[col][j];
      b[r] -= f * b[col];
    }
  }
  for (int r = p - 1; r >= 0; r--) {
    double v = b[r];
    for (int j = r + 1; j < p; j++) v -= A[r][j] * x[j];
    x[r] = v / A[r][r];
  }
}

/* One UniP (predictor) or UniC (corrector) update of order p, B(h) variant,
 * folded into scalars: x_t = a*x + b*m0 + sum_j c[j]*(m_j - m0), where m_j
 * (j < p-1) are the older outputs at sigmas sig_si[j] and, for the
 * corrector, c[p-1] multiplies (model_t - m0). Follows diffusers'
 * multistep_uni_p_bh_update / multistep_uni_c_bh_update line by line. */
typedef struct {
  double a, b, c[3];
  int n_c;
} sdc__unipc_coef;

static sdc__unipc_coef sdc__unipc_coefs(const sdc_scheduler *s, double sig_t, double sig_s0, const double *sig_si, int p,
                                        int corrector) {
  const int x0 = s->cfg.predict_x0, bh1 = strcmp(s->cfg.solver_type, "bh1") == 0;
  sdc__unipc_coef q = {0, 0, {0, 0, 0}, 0};
  double at, st, as0, ss0;
  sdc__alpha_sigma(sig_t, &at, &st);
  sdc__alpha_sigma(sig_s0, &as0, &ss0);
  const double lam_s0 = sdc__lambda(sig_s0), h = sdc__lambda(sig_t) - lam_s0;
  double rks[3];
  for (int j = 0; j < p - 1; j++) rks[j] = (sdc__lambda(sig_si[j]) - lam_s0) / h;
  rks[p - 1] = 1.0;
  const double hh = x0 ? -h : h;
  const double h_phi_1 = expm1(hh), B_h = bh1 ? hh : expm1(hh);
  double h_phi_k = h_phi_1 / hh - 1.0, fact = 1.0, R[3][3], bv[3], rhos[3] = {0, 0, 0};
  for (int i = 1; i <= p; i++) {
    for (int j = 0; j < p; j++) R[i - 1][j] = pow(rks[j], (double)(i - 1));
    bv[i - 1] = h_phi_k * fact / B_h;
    fact *= (double)(i + 1);
    h_phi_k = h_phi_k / hh - 1.0 / fact;
  }
  int n_rho = 0;
  if (!corrector) { /* the predictor uses the (p-1)-term system, and 0.5 for p = 2 */
    if (p == 2) rhos[0] = 0.5, n_rho = 1;
    else if (p == 3) sdc__solve(2, R, bv, rhos), n_rho = 2;
  } else {
    if (p == 1) rhos[0] = 0.5;
    else sdc__solve(p, R, bv, rhos);
    n_rho = p;
  }
  const double scale = x0 ? at : st;
  q.a = x0 ? st / ss0 : at / as0;
  /* sigma_t*(e^h - 1) written as alpha_t*(sig_s0 - sig_t): the same number,
   * but finite (not 0*inf) when the final sigma is 0 */
  q.b = x0 ? -at * h_phi_1 : -at * (sig_s0 - sig_t);
  for (int j = 0; j < p - 1 && j < n_rho; j++) q.c[j] = -scale * B_h * rhos[j] / rks[j];
  if (corrector) q.c[p - 1] = -scale * B_h * rhos[p - 1];
  q.n_c = corrector ? p : n_rho;
  return q;
}

static int sdc__unipc_disabled(const sdc_sched_config *c, int64_t step) {
  for (int i = 0; i < c->n_disable_corrector; i++)
    if (c->disable_corrector[i] == step) return 1;
  return 0;
}

static int sdc__unipc_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  (void)noise;
  sdc__ms_state *st = s->state;
  int err = sdc__ms_buffers(st, n);
  if (err) return err;
  const sdc_sched_config *c = &s->cfg;
  const int64_t k = s->index, N = s->n_calls;
  const int order = st->order;
  /* convert_model_output, from the sample as it came in (before correction) */
  double a, sg;
  sdc__alpha_sigma(s->sigmas[k], &a, &sg);
  double *mt = st->slot[order], *last = st->last_sample;
  for (int64_t i = 0; i < n; i++) {
    const double x = sample[i], e = model_out[i];
    switch (c->prediction_type) {
      case SDC_PRED_EPSILON: mt[i] = c->predict_x0 ? (x - sg * e) / a : e; break;
      case SDC_PRED_V: mt[i] = c->predict_x0 ? a * x - sg * e : a * e + sg * x; break;
      case SDC_PRED_SAMPLE: mt[i] = c->predict_x0 ? e : (x - a * e) / sg; break;
    }
  }
  /* UniC: correct the sample the last predictor produced, using this output;
   * `last` becomes the (possibly corrected) sample the predictor starts from */
  if (k > 0 && st->have_last && !sdc__unipc_disabled(c, k - 1)) {
    const int p = st->this_order;
    double sig_si[2];
    for (int j = 0; j < p - 1; j++) sig_si[j] = s->sigmas[k - (j + 2)];
    const sdc__unipc_coef q = sdc__unipc_coefs(s, s->sigmas[k], s->sigmas[k - 1], sig_si, p, 1);
    const double *m0 = st->slot[order - 1];
    for (int64_t i = 0; i < n; i++) {
      double x = q.a * last[i] + q.b * m0[i];
      for (int j = 0; j < p - 1; j++) x += q.c[j] * (st->slot[order - 2 - j][i] - m0[i]);
      x += q.c[p - 1] * (mt[i] - m0[i]);
      last[i] = (float)x; /* diffusers casts the corrected sample back to the sample's dtype */
    }
  } else {
    for (int64_t i = 0; i < n; i++) last[i] = sample[i];
  }
  sdc__ms_rotate(st);
  int64_t p = c->lower_order_final ? (N - k < order ? N - k : order) : order;
  if (p > st->lower_order_nums + 1) p = st->lower_order_nums + 1; /* warm-up */
  st->this_order = (int)p;
  /* UniP from the (corrected) sample to sigmas[k+1] */
  double sig_si[2];
  for (int j = 0; j < p - 1; j++) sig_si[j] = s->sigmas[k - (j + 1)];
  const sdc__unipc_coef q = sdc__unipc_coefs(s, s->sigmas[k + 1], s->sigmas[k], sig_si, (int)p, 0);
  const double *m0 = st->slot[order - 1];
  for (int64_t i = 0; i < n; i++) {
    double x = q.a * last[i] + q.b * m0[i];
    for (int j = 0; j < q.n_c; j++) x += q.c[j] * (st->slot[order - 2 - j][i] - m0[i]);
    sample[i] = (float)x;
  }
  st->have_last = 1;
  if (st->lower_order_nums < order) st->lower_order_nums++;
  return SDC_OK;
}

const sdc__sched_ops sdc__unipc_ops = {
    .init = sdc__unipc_init,
    .scale_input = NULL, /* identity */
    .step = sdc__unipc_step,
    .needs_noise = NULL, /* deterministic */
    .free_state = sdc__ms_free,
};
