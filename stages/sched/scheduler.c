/* scheduler.c - scheduler names, from_config semantics, the training schedule and shared sigma math. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "sched_impl.h"

static const struct {
  const char *name, *cls;
  const sdc__sched_ops *ops;
} sdc__scheds[SDC_SCHED_COUNT] = {
    [SDC_SCHED_DDIM] = {"ddim", "DDIMScheduler", &sdc__ddim_ops},
    [SDC_SCHED_PNDM] = {"pndm", "PNDMScheduler", &sdc__pndm_ops},
    [SDC_SCHED_DDPM] = {"ddpm", "DDPMScheduler", &sdc__ddpm_ops},
    [SDC_SCHED_EULER] = {"euler", "EulerDiscreteScheduler", &sdc__euler_ops},
    [SDC_SCHED_EULER_A] = {"euler_a", "EulerAncestralDiscreteScheduler", &sdc__euler_a_ops},
    [SDC_SCHED_HEUN] = {"heun", "HeunDiscreteScheduler", &sdc__heun_ops},
    [SDC_SCHED_LMS] = {"lms", "LMSDiscreteScheduler", &sdc__lms_ops},
    [SDC_SCHED_DPMPP_2M] = {"dpmpp_2m", "DPMSolverMultistepScheduler", &sdc__dpm_ops},
    [SDC_SCHED_DPMPP_2M_KARRAS] = {"dpmpp_2m_karras", "DPMSolverMultistepScheduler", &sdc__dpm_ops},
    [SDC_SCHED_UNIPC] = {"unipc", "UniPCMultistepScheduler", &sdc__unipc_ops},
    [SDC_SCHED_LCM] = {"lcm", "LCMScheduler", &sdc__lcm_ops},
};

const char *sdc_sched_name(sdc_sched_kind kind) { return (unsigned)kind < SDC_SCHED_COUNT ? sdc__scheds[kind].name : NULL; }
const char *sdc_sched_class(sdc_sched_kind kind) { return (unsigned)kind < SDC_SCHED_COUNT ? sdc__scheds[kind].cls : NULL; }

int sdc_sched_parse_name(const char *name) {
  for (int i = 0; i < SDC_SCHED_COUNT; i++)
    if (strcmp(name, sdc__scheds[i].name) == 0) return i;
  return -1;
}

/* The class's own __init__ defaults (diffusers 0.30). */
static void sdc__sched_defaults(sdc_sched_config *c, sdc_sched_kind kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->num_train_timesteps = 1000;
  c->beta_start = 0.0001, c->beta_end = 0.02;
  snprintf(c->beta_schedule, sizeof c->beta_schedule, "linear");
  c->prediction_type = SDC_PRED_EPSILON;
  snprintf(c->timestep_spacing, sizeof c->timestep_spacing, "linspace");
  c->clip_sample_range = 1.0;
  snprintf(c->interpolation_type, sizeof c->interpolation_type, "linear");
  snprintf(c->timestep_type, sizeof c->timestep_type, "discrete");
  c->sigma_min = c->sigma_max = NAN;
  snprintf(c->final_sigmas_type, sizeof c->final_sigmas_type, "zero");
  c->solver_order = 2;
  snprintf(c->algorithm_type, sizeof c->algorithm_type, "dpmsolver++");
  snprintf(c->solver_type, sizeof c->solver_type, "midpoint");
  c->lower_order_final = 1;
  c->lambda_min_clipped = -INFINITY;
  c->predict_x0 = 1;
  c->original_inference_steps = 50;
  c->timestep_scaling = 10.0;
  c->lcm_strength = 1.0;
  switch (kind) {
    case SDC_SCHED_DDIM:
      snprintf(c->timestep_spacing, sizeof c->timestep_spacing, "leading");
      c->clip_sample = 1, c->set_alpha_to_one = 1;
      break;
    case SDC_SCHED_PNDM: snprintf(c->timestep_spacing, sizeof c->timestep_spacing, "leading"); break;
    case SDC_SCHED_DDPM:
      snprintf(c->timestep_spacing, sizeof c->timestep_spacing, "leading");
      snprintf(c->variance_type, sizeof c->variance_type, "fixed_small");
      c->clip_sample = 1;
      break;
    case SDC_SCHED_HEUN: c->beta_start = 0.00085, c->beta_end = 0.012; break;
    case SDC_SCHED_DPMPP_2M_KARRAS: c->use_karras_sigmas = 1; break;
    case SDC_SCHED_UNIPC: snprintf(c->solver_type, sizeof c->solver_type, "bh2"); break;
    case SDC_SCHED_LCM:
      c->beta_start = 0.00085, c->beta_end = 0.012, c->set_alpha_to_one = 1;
      snprintf(c->beta_schedule, sizeof c->beta_schedule, "scaled_linear");
      snprintf(c->timestep_spacing, sizeof c->timestep_spacing, "leading");
      break;
    default: break;
  }
}

/* A number field: null (diffusers' None) is NaN, "-inf" is -infinity; absent keeps *out. */
static void sdc__sj_num(sdc_json_fields *j, const char *key, double *out) {
  const cJSON *it = sdc_json_raw(j, key);
  if (!it) return;
  if (cJSON_IsNull(it)) *out = NAN;
  else if (cJSON_IsNumber(it)) *out = it->valuedouble;
  else if (cJSON_IsString(it) && strcmp(it->valuestring, "-inf") == 0) *out = -INFINITY;
  else sdc_json_fail_value(j, key, "expected a number", it);
}

/* A string field that must be one of `allowed` (NULL-terminated); null maps to "". */
static void sdc__sj_enum(sdc_json_fields *j, const char *key, char *out, size_t n, const char *const *allowed) {
  const cJSON *it = sdc_json_raw(j, key);
  if (!it) return;
  const char *v = cJSON_IsNull(it) ? "" : cJSON_IsString(it) ? it->valuestring : NULL;
  for (int i = 0; v && allowed[i]; i++)
    if (strcmp(v, allowed[i]) == 0) {
      snprintf(out, n, "%s", v);
      return;
    }
  char why[256] = "expected one of:";
  for (int i = 0; allowed[i]; i++) {
    size_t len = strlen(why);
    snprintf(why + len, sizeof why - len, " '%s'", allowed[i][0] ? allowed[i] : "null");
  }
  sdc_json_fail(j, key, why);
}

int sdc_sched_config_parse(sdc_sched_config *c, const char *json, int kind, const char *label) {
  cJSON *root = cJSON_Parse(json);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return sdc_seterr(SDC_ECONFIG, "%s: not a JSON object", label);
  }
  char where[1024];
  snprintf(where, sizeof where, "%s:", label);
  sdc_json_fields j;
  sdc_json_fields_init(&j, root, where, SDC_ECONFIG);
  j.ignored = cJSON_GetObjectItemCaseSensitive(root, "_use_default_values");
  if (kind < 0) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    for (int i = 0; i < SDC_SCHED_COUNT && kind < 0 && cJSON_IsString(cls); i++)
      if (strcmp(cls->valuestring, sdc__scheds[i].cls) == 0) kind = i;
    if (kind == SDC_SCHED_DPMPP_2M) {
      const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "use_karras_sigmas");
      if (cJSON_IsTrue(k)) kind = SDC_SCHED_DPMPP_2M_KARRAS;
    }
    if (kind < 0) {
      int err = sdc_seterr(SDC_ECONFIG, "%s: field '_class_name': unsupported scheduler class '%s'", label,
                           cJSON_IsString(cls) ? cls->valuestring : "(missing)");
      cJSON_Delete(root);
      return err;
    }
  }
  if (kind >= SDC_SCHED_COUNT) {
    cJSON_Delete(root);
    return sdc_seterr(SDC_EINVAL, "%s: scheduler kind %d out of range", label, kind);
  }
  sdc__sched_defaults(c, (sdc_sched_kind)kind);
  static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
  static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
  static const char *const variances[] = {"fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                                          "learned", "learned_range", "", NULL};
  static const char *const interps[] = {"linear", "log_linear", NULL};
  static const char *const ttypes[] = {"discrete", "continuous", NULL};
  static const char *const finals[] = {"zero", "sigma_min", NULL};
  static const char *const algos[] = {"dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver", NULL};
  static const char *const dpm_solvers[] = {"midpoint", "heun", NULL};
  static const char *const unipc_solvers[] = {"bh1", "bh2", NULL};
  c->num_train_timesteps = sdc_json_int(&j, "num_train_timesteps", c->num_train_timesteps, 2, 100000);
  sdc__sj_num(&j, "beta_start", &c->beta_start);
  sdc__sj_num(&j, "beta_end", &c->beta_end);
  sdc__sj_enum(&j, "beta_schedule", c->beta_schedule, sizeof c->beta_schedule, schedules);
  const cJSON *pt = sdc_json_raw(&j, "prediction_type");
  if (pt) {
    if (cJSON_IsString(pt) && strcmp(pt->valuestring, "epsilon") == 0) c->prediction_type = SDC_PRED_EPSILON;
    else if (cJSON_IsString(pt) && strcmp(pt->valuestring, "v_prediction") == 0) c->prediction_type = SDC_PRED_V;
    else if (cJSON_IsString(pt) && strcmp(pt->valuestring, "sample") == 0) c->prediction_type = SDC_PRED_SAMPLE;
    else sdc_json_fail(&j, "prediction_type", "expected 'epsilon', 'v_prediction' or 'sample'");
  }
  sdc__sj_enum(&j, "timestep_spacing", c->timestep_spacing, sizeof c->timestep_spacing, spacings);
  c->steps_offset = sdc_json_int(&j, "steps_offset", c->steps_offset, 0, 1000);
  /* from_config drops keys the chosen class does not take */
  if (kind != SDC_SCHED_HEUN && kind != SDC_SCHED_LMS && kind != SDC_SCHED_PNDM)
    c->rescale_betas_zero_snr = sdc_json_bool(&j, "rescale_betas_zero_snr", c->rescale_betas_zero_snr);
  c->set_alpha_to_one = sdc_json_bool(&j, "set_alpha_to_one", c->set_alpha_to_one);
  c->skip_prk_steps = sdc_json_bool(&j, "skip_prk_steps", c->skip_prk_steps);
  c->clip_sample = sdc_json_bool(&j, "clip_sample", c->clip_sample);
  sdc__sj_num(&j, "clip_sample_range", &c->clip_sample_range);
  if (kind == SDC_SCHED_DDPM) sdc__sj_enum(&j, "variance_type", c->variance_type, sizeof c->variance_type, variances);
  if (kind != SDC_SCHED_DPMPP_2M_KARRAS) c->use_karras_sigmas = sdc_json_bool(&j, "use_karras_sigmas", c->use_karras_sigmas);
  sdc__sj_enum(&j, "interpolation_type", c->interpolation_type, sizeof c->interpolation_type, interps);
  sdc__sj_enum(&j, "timestep_type", c->timestep_type, sizeof c->timestep_type, ttypes);
  sdc__sj_num(&j, "sigma_min", &c->sigma_min);
  sdc__sj_num(&j, "sigma_max", &c->sigma_max);
  sdc__sj_enum(&j, "final_sigmas_type", c->final_sigmas_type, sizeof c->final_sigmas_type, finals);
  c->solver_order = sdc_json_int(&j, "solver_order", c->solver_order, 1, 3);
  sdc__sj_enum(&j, "algorithm_type", c->algorithm_type, sizeof c->algorithm_type, algos);
  if (kind == SDC_SCHED_UNIPC) sdc__sj_enum(&j, "solver_type", c->solver_type, sizeof c->solver_type, unipc_solvers);
  else sdc__sj_enum(&j, "solver_type", c->solver_type, sizeof c->solver_type, dpm_solvers);
  c->lower_order_final = sdc_json_bool(&j, "lower_order_final", c->lower_order_final);
  c->euler_at_final = sdc_json_bool(&j, "euler_at_final", c->euler_at_final);
  c->use_lu_lambdas = sdc_json_bool(&j, "use_lu_lambdas", c->use_lu_lambdas);
  sdc__sj_num(&j, "lambda_min_clipped", &c->lambda_min_clipped);
  c->predict_x0 = sdc_json_bool(&j, "predict_x0", c->predict_x0);
  const cJSON *dc = sdc_json_raw(&j, "disable_corrector"), *d;
  if (dc && !cJSON_IsArray(dc)) sdc_json_fail(&j, "disable_corrector", "expected a list of step indices");
  cJSON_ArrayForEach(d, dc) {
    if (c->n_disable_corrector == SDC_SCHED_MAX_DISABLED || !cJSON_IsNumber(d)) {
      sdc_json_fail(&j, "disable_corrector", "expected at most 16 integers");
      break;
    }
    c->disable_corrector[c->n_disable_corrector++] = (int64_t)d->valuedouble;
  }
  c->original_inference_steps = sdc_json_int(&j, "original_inference_steps", c->original_inference_steps, 1, 100000);
  sdc__sj_num(&j, "timestep_scaling", &c->timestep_scaling);
  if (!j.err && !(c->timestep_scaling > 0 && isfinite(c->timestep_scaling)))
    sdc_json_fail(&j, "timestep_scaling", "expected a positive number");
  /* options we do not implement must be off */
  const cJSON *tb = sdc_json_raw(&j, "trained_betas");
  if (tb && !cJSON_IsNull(tb)) sdc_json_fail(&j, "trained_betas", "explicit beta lists are not supported");
  int thresholding = 0;
  thresholding = sdc_json_bool(&j, "thresholding", thresholding);
  if (thresholding) sdc_json_fail(&j, "thresholding", "dynamic thresholding is not supported");
  if (!j.err && !(c->beta_start > 0 && c->beta_end > 0 && c->beta_end < 1))
    sdc_json_fail(&j, "beta_end", "betas must lie in (0, 1)");
  int err = j.err;
  cJSON_Delete(root);
  return err;
}

/* ----------------------------------------------------------- the schedule */

static double sdc__alpha_bar_cos(double t) { return pow(cos((t + 0.008) / 1.008 * M_PI / 2), 2); }

/* Lin et al. (2023): rescale so the final alpha_cumprod is exactly zero. */
static void sdc__rescale_zero_snr(double *betas, int64_t T) {
  double *s = malloc((size_t)T * sizeof *s), acp = 1.0;
  if (!s) return;
  for (int64_t i = 0; i < T; i++) acp *= 1.0 - betas[i], s[i] = sqrt(acp);
  double s0 = s[0], sT = s[T - 1];
  for (int64_t i = 0; i < T; i++) s[i] = (s[i] - sT) * s0 / (s0 - sT);
  for (int64_t i = 0; i < T; i++) {
    double a_bar = s[i] * s[i], prev = i ? s[i - 1] * s[i - 1] : 1.0;
    betas[i] = 1.0 - (i ? a_bar / prev : a_bar);
  }
  free(s);
}

int sdc_scheduler_create(sdc_scheduler **out, const sdc_sched_config *cfg, int64_t n_steps) {
  *out = NULL;
  if ((unsigned)cfg->kind >= SDC_SCHED_COUNT) return sdc_seterr(SDC_EINVAL, "scheduler: unknown kind %d", cfg->kind);
  if (n_steps < 1 || n_steps > cfg->num_train_timesteps)
    return sdc_seterr(SDC_EINVAL, "scheduler: %lld steps, expected 1 to %lld", (long long)n_steps,
                      (long long)cfg->num_train_timesteps);
  sdc_scheduler *s = calloc(1, sizeof *s);
  const int64_t T = cfg->num_train_timesteps;
  if (s) {
    s->betas = malloc((size_t)T * sizeof(double));
    s->alphas = malloc((size_t)T * sizeof(double));
    s->alphas_cumprod = malloc((size_t)T * sizeof(double));
  }
  if (!s || !s->betas || !s->alphas || !s->alphas_cumprod) {
    sdc_scheduler_free(s);
    return sdc_seterr(SDC_ENOMEM, "scheduler: out of memory");
  }
  s->cfg = *cfg;
  s->ops = sdc__scheds[cfg->kind].ops;
  s->n_steps = n_steps;
  s->init_noise_sigma = 1.0;
  for (int64_t i = 0; i < T; i++) {
    double f = T > 1 ? (double)i / (double)(T - 1) : 0.0;
    if (strcmp(cfg->beta_schedule, "scaled_linear") == 0) {
      double b = sqrt(cfg->beta_start) + f * (sqrt(cfg->beta_end) - sqrt(cfg->beta_start));
      s->betas[i] = b * b;
    } else if (strcmp(cfg->beta_schedule, "squaredcos_cap_v2") == 0) {
      double b = 1.0 - sdc__alpha_bar_cos((double)(i + 1) / (double)T) / sdc__alpha_bar_cos((double)i / (double)T);
      s->betas[i] = b < 0.999 ? b : 0.999;
    } else {
      s->betas[i] = cfg->beta_start + f * (cfg->beta_end - cfg->beta_start);
    }
  }
  if (cfg->rescale_betas_zero_snr) sdc__rescale_zero_snr(s->betas, T);
  double acp = 1.0;
  for (int64_t i = 0; i < T; i++) {
    s->alphas[i] = 1.0 - s->betas[i];
    s->alphas_cumprod[i] = acp *= s->alphas[i];
  }
  /* zero terminal SNR would make sigma infinite: diffusers nudges it */
  if (cfg->rescale_betas_zero_snr) s->alphas_cumprod[T - 1] = 1.0 / 16777216.0;
  int err = s->ops->init(s);
  if (err) {
    sdc_scheduler_free(s);
    return err;
  }
  *out = s;
  return SDC_OK;
}

void sdc_scheduler_free(sdc_scheduler *s) {
  if (!s) return;
  if (s->ops && s->ops->free_state) s->ops->free_state(s);
  free(s->timesteps);
  free(s->sigmas);
  free(s->betas);
  free(s->alphas);
  free(s->alphas_cumprod);
  free(s);
}

int64_t sdc_scheduler_n_calls(const sdc_scheduler *s) { return s->n_calls; }
double sdc_scheduler_timestep(const sdc_scheduler *s, int64_t i) { return i >= 0 && i < s->n_calls ? s->timesteps[i] : NAN; }
double sdc_scheduler_init_noise_sigma(const sdc_scheduler *s) { return s->init_noise_sigma; }
int64_t sdc_scheduler_call_index(const sdc_scheduler *s) { return s->index; }

const double *sdc_scheduler_sigmas(const sdc_scheduler *s, int64_t *n) {
  *n = s->n_sigmas;
  return s->sigmas;
}

void sdc_scheduler_scale_input(const sdc_scheduler *s, const float *x, float *out, int64_t n) {
  if (s->ops->scale_input && s->index < s->n_calls) s->ops->scale_input(s, x, out, n);
  else if (out != x) memcpy(out, x, (size_t)n * sizeof *out);
}

int sdc_scheduler_needs_noise(const sdc_scheduler *s) {
  return s->index < s->n_calls && s->ops->needs_noise && s->ops->needs_noise(s);
}

int sdc_scheduler_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise) {
  if (s->index >= s->n_calls)
    return sdc_seterr(SDC_EINVAL, "scheduler: step %lld past the end of a %lld-call run", (long long)s->index + 1,
                      (long long)s->n_calls);
  if (s->n_elems && s->n_elems != n)
    return sdc_seterr(SDC_EINVAL, "scheduler: sample size changed from %lld to %lld", (long long)s->n_elems, (long long)n);
  if (sdc_scheduler_needs_noise(s) && !noise)
    return sdc_seterr(SDC_EINVAL, "scheduler %s: step %lld needs a noise tensor", sdc_sched_name(s->cfg.kind),
                      (long long)s->index);
  s->n_elems = n;
  int err = s->ops->step(s, model_out, sample, n, noise);
  if (!err) s->index++;
  return err;
}

int64_t sdc_scheduler_order(const sdc_scheduler *s) { return s->cfg.kind == SDC_SCHED_HEUN ? 2 : 1; }
int64_t sdc_scheduler_begin(const sdc_scheduler *s) { return s->begin; }

int sdc_scheduler_set_begin(sdc_scheduler *s, int64_t begin) {
  if (s->index != s->begin || s->n_elems)
    return sdc_seterr(SDC_EINVAL, "scheduler: begin index set after the run started");
  if (begin < 0 || begin >= s->n_calls)
    return sdc_seterr(SDC_EINVAL, "scheduler: begin index %lld outside a %lld-call run", (long long)begin,
                      (long long)s->n_calls);
  s->begin = s->index = begin;
  return SDC_OK;
}

void sdc_scheduler_add_noise(const sdc_scheduler *s, const float *x0, const float *noise, float *out, int64_t n,
                             int64_t i) {
  double a, b; /* out = a * x0 + b * noise */
  if (!s->sigmas) {
    const double acp = s->alphas_cumprod[(int64_t)s->timesteps[i]];
    a = sqrt(acp), b = sqrt(1.0 - acp);
  } else {
    const double sigma = s->sigmas[i];
    const sdc_sched_kind k = s->cfg.kind;
    if (k == SDC_SCHED_DPMPP_2M || k == SDC_SCHED_DPMPP_2M_KARRAS || k == SDC_SCHED_UNIPC) /* VP form */
      a = 1.0 / sqrt(sigma * sigma + 1.0), b = sigma * a;
    else
      a = 1.0, b = sigma;
  }
  const float fa = (float)a, fb = (float)b;
  for (int64_t j = 0; j < n; j++) out[j] = fa * x0[j] + fb * noise[j];
}

/* ------------------------------------------------------ shared sigma math */

void sdc__sched_spacing(const sdc_scheduler *s, int64_t n, double *out) {
  const int64_t T = s->cfg.num_train_timesteps;
  if (strcmp(s->cfg.timestep_spacing, "leading") == 0) {
    int64_t ratio = T / n;
    for (int64_t i = 0; i < n; i++) out[i] = (double)((n - 1 - i) * ratio + s->cfg.steps_offset);
  } else if (strcmp(s->cfg.timestep_spacing, "trailing") == 0) {
    /* numpy's float arange(T, 0, -T/n): element i is start + i * delta with
     * delta = (start + step) - start, rounded as numpy rounds (half to even);
     * the arithmetic matters at ties (n = 48 gives 937, not 938) */
    const double step = -(double)T / (double)n, delta = ((double)T + step) - (double)T;
    for (int64_t i = 0; i < n; i++) out[i] = nearbyint((double)T + (double)i * delta) - 1.0;
  } else {
    /* numpy's linspace(0, T-1, n): i * ((T-1)/(n-1)), the last exactly T-1 */
    const double step = n > 1 ? (double)(T - 1) / (double)(n - 1) : 0.0;
    for (int64_t i = 0; i < n; i++) {
      int64_t k = n - 1 - i;
      out[i] = n == 1 ? 0.0 : k == n - 1 ? (double)(T - 1) : (double)k * step; /* linspace(.., 1) is [start] */
    }
  }
}

double sdc__sched_sigma_at(const sdc_scheduler *s, int64_t t) {
  double a = s->alphas_cumprod[t];
  return sqrt((1.0 - a) / a);
}

double sdc__sched_sigma_interp(const sdc_scheduler *s, double t) {
  const int64_t T = s->cfg.num_train_timesteps;
  if (t <= 0) return sdc__sched_sigma_at(s, 0);
  if (t >= (double)(T - 1)) return sdc__sched_sigma_at(s, T - 1);
  int64_t lo = (int64_t)floor(t);
  double w = t - (double)lo;
  return (1.0 - w) * sdc__sched_sigma_at(s, lo) + w * sdc__sched_sigma_at(s, lo + 1);
}

double sdc__sched_sigma_to_t(const sdc_scheduler *s, double sigma) {
  const int64_t T = s->cfg.num_train_timesteps;
  double ls = log(sigma > 1e-10 ? sigma : 1e-10);
  /* last index whose log-sigma is <= ls, clipped so that idx + 1 exists */
  int64_t lo = 0;
  for (int64_t i = 0; i < T; i++)
    if (ls - log(sdc__sched_sigma_at(s, i)) >= 0) lo = i;
  if (lo > T - 2) lo = T - 2;
  double low = log(sdc__sched_sigma_at(s, lo)), high = log(sdc__sched_sigma_at(s, lo + 1));
  double w = (low - ls) / (low - high);
  w = w < 0 ? 0 : w > 1 ? 1 : w;
  return (1.0 - w) * (double)lo + w * (double)(lo + 1);
}

void sdc__sched_karras(double sigma_min, double sigma_max, int64_t n, double *out) {
  const double rho = 7.0, lo = pow(sigma_min, 1.0 / rho), hi = pow(sigma_max, 1.0 / rho);
  for (int64_t i = 0; i < n; i++) {
    double ramp = n > 1 ? (double)i / (double)(n - 1) : 0.0;
    out[i] = pow(hi + ramp * (lo - hi), rho);
  }
}
