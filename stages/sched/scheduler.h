/* scheduler.h - diffusers' noise schedulers, selected by name, configured by scheduler_config.json. */
#ifndef SDC_SCHEDULER_H
#define SDC_SCHEDULER_H

#include <stdint.h>

typedef enum {
  SDC_SCHED_DDIM,
  SDC_SCHED_PNDM,
  SDC_SCHED_DDPM,
  SDC_SCHED_EULER,
  SDC_SCHED_EULER_A,
  SDC_SCHED_HEUN,
  SDC_SCHED_LMS,
  SDC_SCHED_DPMPP_2M,
  SDC_SCHED_DPMPP_2M_KARRAS, /* DPMSolverMultistepScheduler with use_karras_sigmas */
  SDC_SCHED_UNIPC,
  SDC_SCHED_LCM,
  SDC_SCHED_COUNT
} sdc_sched_kind;

typedef enum { SDC_PRED_EPSILON, SDC_PRED_V, SDC_PRED_SAMPLE } sdc_pred_type;

#define SDC_SCHED_MAX_DISABLED 16

/* Every field any supported scheduler reads, with diffusers' names. */
typedef struct {
  sdc_sched_kind kind;
  int64_t num_train_timesteps;
  double beta_start, beta_end;
  char beta_schedule[32];     /* "linear", "scaled_linear", "squaredcos_cap_v2" */
  sdc_pred_type prediction_type;
  char timestep_spacing[16];  /* "leading", "trailing", "linspace" */
  int64_t steps_offset;
  int rescale_betas_zero_snr;
  /* DDIM / DDPM / PNDM / Heun */
  int set_alpha_to_one, skip_prk_steps, clip_sample;
  double clip_sample_range;
  char variance_type[32];     /* DDPM: "fixed_small", "fixed_small_log", "fixed_large", ...; DPM: "" (None) */
  /* sigma schedulers (Euler, Heun, LMS, DPM-Solver, UniPC) */
  int use_karras_sigmas;
  char interpolation_type[16]; /* Euler: "linear" or "log_linear" */
  char timestep_type[16];      /* Euler: "discrete" or "continuous" */
  double sigma_min, sigma_max; /* NAN when null */
  char final_sigmas_type[16];  /* "zero" or "sigma_min" */
  /* multistep solvers */
  int64_t solver_order;
  char algorithm_type[24];     /* DPM: "dpmsolver++", "sde-dpmsolver++", "dpmsolver", ... */
  char solver_type[16];        /* DPM: "midpoint"/"heun"; UniPC: "bh1"/"bh2" */
  int lower_order_final, euler_at_final, use_lu_lambdas;
  double lambda_min_clipped;   /* -INFINITY when "-inf" */
  int predict_x0;              /* UniPC */
  int64_t disable_corrector[SDC_SCHED_MAX_DISABLED];
  int n_disable_corrector;
  /* LCM */
  int64_t original_inference_steps; /* the distillation schedule's length (50) */
  double timestep_scaling;          /* scales t in the boundary conditions c_skip, c_out (10) */
  double lcm_strength;              /* not a config key: set_timesteps' strength, 1 unless img2img asks */
} sdc_sched_config;

/* "ddim", ..., or NULL for an out-of-range kind. */
const char *sdc_sched_name(sdc_sched_kind kind);
/* Parses a scheduler name as given on the command line; -1 when unknown. */
int sdc_sched_parse_name(const char *name);
/* The diffusers class of a kind ("DDIMScheduler"). */
const char *sdc_sched_class(sdc_sched_kind kind);

/* Builds the config of scheduler `kind` from a scheduler_config.json text as
 * diffusers' Scheduler.from_config does: the class's own defaults, then every
 * key present in the file (other than those listed in _use_default_values)
 * overrides. kind < 0 takes the file's _class_name. Errors (SDC_ECONFIG) name
 * the label and the field: unsupported options such as thresholding,
 * trained_betas, unknown spacings or prediction types. */
int sdc_sched_config_parse(sdc_sched_config *cfg /* OUT */, const char *json, int kind, const char *label);

typedef struct sdc_scheduler sdc_scheduler;

/* A scheduler prepared for n_steps inference steps (1..1000). Free with
 * sdc_scheduler_free(). */
int sdc_scheduler_create(sdc_scheduler **out /* OUT */, const sdc_sched_config *cfg, int64_t n_steps);
void sdc_scheduler_free(sdc_scheduler *s);

/* Model calls (= step() calls) in the whole run: n_steps for most, 2n-1 for
 * Heun, n+1 for PNDM's PLMS warm-up. */
int64_t sdc_scheduler_n_calls(const sdc_scheduler *s);
/* The timestep fed to the model on call i (may be fractional). */
double sdc_scheduler_timestep(const sdc_scheduler *s, int64_t i);
/* sigmas (n_sigmas of them) for sigma-based schedulers, else NULL. */
const double *sdc_scheduler_sigmas(const sdc_scheduler *s, int64_t *n_sigmas /* OUT */);
/* Factor for the initial N(0,1) latents. */
double sdc_scheduler_init_noise_sigma(const sdc_scheduler *s);
/* Index of the next call (0 .. n_calls). */
int64_t sdc_scheduler_call_index(const sdc_scheduler *s);
/* out = the model input for the next call from the sample x (n values). out may be x. */
void sdc_scheduler_scale_input(const sdc_scheduler *s, const float *x, float *out, int64_t n);
/* Whether the next step() wants a fresh N(0,1) tensor of the sample's size. */
int sdc_scheduler_needs_noise(const sdc_scheduler *s);
/* Advances sample (n values, in place) by one call given the model output.
 * noise: required when sdc_scheduler_needs_noise() said so, else ignored.
 * The sample size must stay the same for the whole run. */
int sdc_scheduler_step(sdc_scheduler *s, const float *model_out, float *sample, int64_t n, const float *noise);

/* Calls per inference step, diffusers' `scheduler.order` (Heun 2, the rest 1):
 * img2img skips (steps - int(steps * strength)) * order calls. */
int64_t sdc_scheduler_order(const sdc_scheduler *s);
/* Starts the run at call `begin` instead of 0 (diffusers' set_begin_index, or
 * for classes without it, their fresh counters at a later timestep): only
 * before the first step. Solvers with a history start it empty there, as
 * diffusers does. SDC_EINVAL when begin is not in [0, n_calls). */
int sdc_scheduler_set_begin(sdc_scheduler *s, int64_t begin);
/* Call index the run started at (0 unless set_begin). */
int64_t sdc_scheduler_begin(const sdc_scheduler *s);
/* diffusers' add_noise: out = x0 noised to the level of call i (0 <= i <
 * n_calls): sqrt(acp)*x0 + sqrt(1-acp)*noise at timesteps[i] for the
 * alphas_cumprod schedulers, x0 + sigma*noise for Euler / Heun / LMS,
 * alpha_t*x0 + sigma_t*noise for DPM-Solver / UniPC (sigma = sigmas[i]).
 * n values each; out may be x0. */
void sdc_scheduler_add_noise(const sdc_scheduler *s, const float *x0, const float *noise, float *out, int64_t n,
                             int64_t i);

#endif
