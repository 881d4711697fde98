/* test_sched_ddpm.c - DDIM / DDPM / PNDM behaviour the goldens do not cover (spacings, PRK warm-up, noise, limits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "scheduler.h"
#include "sdc_limits.h"
#include "test_util.h"

#define SD_BETAS "\"beta_start\": 0.00085, \"beta_end\": 0.012, \"beta_schedule\": \"scaled_linear\""

/* A scheduler of `kind` for n steps from a JSON config, or NULL (with the error in *err). */
static sdc_scheduler *make(sdc_sched_kind kind, const char *json, int64_t n, int *err) {
  sdc_sched_config cfg;
  sdc_scheduler *s = NULL;
  *err = sdc_sched_config_parse(&cfg, json, kind, "test");
  if (!*err) *err = sdc_scheduler_create(&s, &cfg, n);
  return s;
}

static void check_timesteps(const sdc_scheduler *s, const double *want, int64_t n, const char *what) {
  CHECK(sdc_scheduler_n_calls(s) == n, "%s: %lld calls, want %lld", what, (long long)sdc_scheduler_n_calls(s), (long long)n);
  for (int64_t i = 0; i < n && i < sdc_scheduler_n_calls(s); i++)
    CHECK(sdc_scheduler_timestep(s, i) == want[i], "%s: timestep %lld is %g, want %g", what, (long long)i,
          sdc_scheduler_timestep(s, i), want[i]);
}

/* Runs every call with the goldens' stand-in model (0.5 tanh(x) + 0.1 cos(t/100))
 * on an 8-value sample, drawing noise when asked; returns the number of draws,
 * or -1 when a step fails. The sample ends in x. */
static int run_all(sdc_scheduler *s, float *x) {
  enum { N = 8 };
  float out[N], z[N];
  int draws = 0;
  for (int i = 0; i < N; i++) x[i] = (float)(2.0 * sin(i * 1.3 + 0.2));
  for (int64_t c = 0; c < sdc_scheduler_n_calls(s); c++) {
    double t = sdc_scheduler_timestep(s, c);
    for (int i = 0; i < N; i++) out[i] = (float)(0.5 * tanh((double)x[i]) + 0.1 * cos(t / 100.0));
    const float *zp = NULL;
    if (sdc_scheduler_needs_noise(s)) {
      for (int i = 0; i < N; i++) z[i] = (float)cos(draws * 7.0 + i * 0.3);
      zp = z, draws++;
    }
    if (sdc_scheduler_step(s, out, x, N, zp) != SDC_OK) return -1;
  }
  return draws;
}

static int all_finite(const float *x, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static void test_ddim_trailing_and_linspace_timesteps(void) {
  int err;
  /* trailing: round(arange(1000, 0, -100)) - 1 = 999, 899, ..., 99 (steps_offset ignored) */
  sdc_scheduler *s = make(SDC_SCHED_DDIM, "{\"timestep_spacing\": \"trailing\", \"steps_offset\": 1}", 10, &err);
  CHECK(s, "trailing ddim: %s", sdc_errmsg(err));
  if (s) {
    const double want[] = {999, 899, 799, 699, 599, 499, 399, 299, 199, 99};
    check_timesteps(s, want, 10, "ddim trailing n=10");
  }
  sdc_scheduler_free(s);
  /* trailing n=3: 1000 - i*333.33 = 1000, 666.67, 333.33 -> round - 1 = 999, 666, 332 */
  s = make(SDC_SCHED_DDIM, "{\"timestep_spacing\": \"trailing\"}", 3, &err);
  if (s) {
    const double want[] = {999, 666, 332};
    check_timesteps(s, want, 3, "ddim trailing n=3");
  }
  sdc_scheduler_free(s);
  /* linspace: round(linspace(0, 999, 10)) = 0, 111, ..., 999, descending */
  s = make(SDC_SCHED_DDIM, "{\"timestep_spacing\": \"linspace\"}", 10, &err);
  if (s) {
    const double want[] = {999, 888, 777, 666, 555, 444, 333, 222, 111, 0};
    check_timesteps(s, want, 10, "ddim linspace n=10");
  }
  sdc_scheduler_free(s);
  /* linspace n=27, entry 13: numpy computes 13 * (999/26) = 499.49999999999994,
   * which rounds to 499, not to the 500 that exact 999*13/26 = 499.5 gives */
  s = make(SDC_SCHED_DDIM, "{\"timestep_spacing\": \"linspace\"}", 27, &err);
  if (s) CHECK(sdc_scheduler_timestep(s, 13) == 499, "linspace n=27 tie: %g", sdc_scheduler_timestep(s, 13));
  sdc_scheduler_free(s);
  /* leading with steps_offset 1: arange(10) * 100 + 1, descending */
  s = make(SDC_SCHED_DDIM, "{\"steps_offset\": 1}", 10, &err);
  if (s) {
    const double want[] = {901, 801, 701, 601, 501, 401, 301, 201, 101, 1};
    check_timesteps(s, want, 10, "ddim leading n=10");
  }
  sdc_scheduler_free(s);
}

static void test_pndm_prk_warmup_runs_all_calls(void) {
  int err;
  sdc_scheduler *s = make(SDC_SCHED_PNDM, "{" SD_BETAS ", \"steps_offset\": 1, \"skip_prk_steps\": false}", 10, &err);
  CHECK(s, "pndm prk: %s", sdc_errmsg(err));
  if (!s) return;
  /* _timesteps = 1, 101, ..., 901; PRK on the last four (601..901) with half
   * steps of 1000 // 10 // 2 = 50, then PLMS on 601, 501, ..., 1: 12 + 7 calls */
  const double want[] = {901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601,
                         601, 501, 401, 301, 201, 101, 1};
  check_timesteps(s, want, 19, "pndm prk n=10");
  float x[8];
  CHECK(!sdc_scheduler_needs_noise(s), "pndm never draws noise");
  CHECK(run_all(s, x) == 0, "pndm prk run failed: %s", sdc_errmsg(SDC_EINVAL));
  CHECK(all_finite(x, 8), "pndm prk run ended non-finite");
  CHECK(sdc_scheduler_call_index(s) == 19, "pndm prk: index %lld after the run", (long long)sdc_scheduler_call_index(s));
  sdc_scheduler_free(s);
  /* v_prediction and trailing spacing take the same path */
  s = make(SDC_SCHED_PNDM,
           "{" SD_BETAS ", \"skip_prk_steps\": false, \"prediction_type\": \"v_prediction\", \"timestep_spacing\": \"trailing\"}",
           25, &err);
  CHECK(s, "pndm prk v: %s", sdc_errmsg(err));
  if (s) {
    CHECK(sdc_scheduler_n_calls(s) == 25 + 9, "pndm prk n=25: %lld calls", (long long)sdc_scheduler_n_calls(s));
    CHECK(run_all(s, x) == 0 && all_finite(x, 8), "pndm prk v run failed or non-finite");
  }
  sdc_scheduler_free(s);
  /* diffusers' PRK needs the last 4 timesteps: fewer steps is an error */
  s = make(SDC_SCHED_PNDM, "{\"skip_prk_steps\": false}", 3, &err);
  CHECK(!s && err == SDC_EINVAL, "pndm prk with 3 steps: err %d", err);
  sdc_scheduler_free(s);
}

static void test_pndm_plms_repeats_second_timestep(void) {
  int err;
  sdc_scheduler *s = make(SDC_SCHED_PNDM, "{\"steps_offset\": 1, \"skip_prk_steps\": true}", 4, &err);
  if (s) {
    const double want[] = {751, 501, 501, 251, 1};
    check_timesteps(s, want, 5, "pndm plms n=4");
  }
  sdc_scheduler_free(s);
  s = make(SDC_SCHED_PNDM, "{\"skip_prk_steps\": true}", 1, &err);
  if (s) {
    const double want[] = {0};
    check_timesteps(s, want, 1, "pndm plms n=1");
    float x[8];
    CHECK(run_all(s, x) == 0 && all_finite(x, 8), "pndm n=1 run");
  }
  sdc_scheduler_free(s);
}

static void test_ddpm_no_noise_at_t0(void) {
  int err;
  /* linspace ends at t = 0; trailing with T = n = 20 ends at round(1) - 1 = 0 */
  static const char *const cfgs[] = {
      "{" SD_BETAS ", \"timestep_spacing\": \"linspace\"}",
      "{" SD_BETAS ", \"timestep_spacing\": \"trailing\", \"num_train_timesteps\": 20}",
  };
  static const int64_t steps[] = {10, 20};
  for (int k = 0; k < 2; k++) {
    sdc_scheduler *s = make(SDC_SCHED_DDPM, cfgs[k], steps[k], &err);
    CHECK(s, "ddpm %s: %s", cfgs[k], sdc_errmsg(err));
    if (!s) continue;
    const int64_t n = sdc_scheduler_n_calls(s);
    CHECK(sdc_scheduler_timestep(s, n - 1) == 0, "ddpm case %d: last timestep %g", k, sdc_scheduler_timestep(s, n - 1));
    float x[8] = {0}, out[8] = {0};
    /* a step that needs noise refuses to run without it */
    CHECK(sdc_scheduler_needs_noise(s), "ddpm case %d: first step must draw noise", k);
    CHECK(sdc_scheduler_step(s, out, x, 8, NULL) != SDC_OK, "ddpm case %d: step without noise accepted", k);
    CHECK(run_all(s, x) == (int)n - 1, "ddpm case %d: expected %lld draws", k, (long long)n - 1);
    CHECK(all_finite(x, 8), "ddpm case %d ended non-finite", k);
    sdc_scheduler_free(s);
  }
  /* leading with steps_offset 1 ends at t = 1 > 0: every step draws */
  sdc_scheduler *s = make(SDC_SCHED_DDPM, "{" SD_BETAS ", \"steps_offset\": 1}", 10, &err);
  if (s) {
    float x[8];
    CHECK(run_all(s, x) == 10, "ddpm leading: every step draws noise");
  }
  sdc_scheduler_free(s);
}

/* At t = 0 the previous alpha is 1, so DDPM's mean is exactly the predicted
 * x0: with prediction_type sample, the (clipped) model output itself. */
static void test_ddpm_last_step_returns_x0(void) {
  int err;
  sdc_scheduler *s = make(SDC_SCHED_DDPM,
                          "{\"timestep_spacing\": \"linspace\", \"prediction_type\": \"sample\", \"clip_sample\": true, "
                          "\"clip_sample_range\": 1.5}",
                          1, &err);
  CHECK(s, "ddpm one step: %s", sdc_errmsg(err));
  if (!s) return;
  CHECK(sdc_scheduler_timestep(s, 0) == 0 && !sdc_scheduler_needs_noise(s), "ddpm n=1 linspace: t = 0, no noise");
  float x[4] = {3, -3, 0.25f, 7}, out[4] = {0.5f, -2, 1.25f, 9};
  CHECK(sdc_scheduler_step(s, out, x, 4, NULL) == SDC_OK, "ddpm step failed");
  const float want[4] = {0.5f, -1.5f, 1.25f, 1.5f};
  for (int i = 0; i < 4; i++) CHECK(fabsf(x[i] - want[i]) < 1e-6f, "x[%d] = %g, want %g", i, x[i], want[i]);
  sdc_scheduler_free(s);
}

static void test_limits(void) {
  static const sdc_sched_kind kinds[] = {SDC_SCHED_DDIM, SDC_SCHED_DDPM, SDC_SCHED_PNDM};
  int err;
  for (int k = 0; k < 3; k++) {
    /* steps < 1 */
    for (int64_t n = -1; n <= 0; n++) {
      sdc_scheduler *s = make(kinds[k], "{}", n, &err);
      CHECK(!s && err == SDC_EINVAL, "%s with %lld steps: err %d", sdc_sched_name(kinds[k]), (long long)n, err);
    }
    /* stepping past the end */
    sdc_scheduler *s = make(kinds[k], "{\"steps_offset\": 1}", 5, &err);
    CHECK(s, "%s: %s", sdc_sched_name(kinds[k]), sdc_errmsg(err));
    if (!s) continue;
    float x[8], out[8] = {0}, z[8] = {0};
    CHECK(run_all(s, x) >= 0, "%s: run failed", sdc_sched_name(kinds[k]));
    CHECK(!sdc_scheduler_needs_noise(s), "%s: needs noise past the end", sdc_sched_name(kinds[k]));
    CHECK(sdc_scheduler_step(s, out, x, 8, z) == SDC_EINVAL, "%s: step past the end accepted", sdc_sched_name(kinds[k]));
    sdc_scheduler_free(s);
  }
  sdc_scheduler *s;
  /* options these classes cannot honour */
  s = make(SDC_SCHED_DDPM, "{\"variance_type\": \"learned_range\"}", 10, &err);
  CHECK(!s && err == SDC_EUNSUPPORTED, "ddpm learned_range: err %d", err);
  sdc_scheduler_free(s);
  s = make(SDC_SCHED_PNDM, "{\"prediction_type\": \"sample\"}", 10, &err);
  CHECK(!s && err == SDC_ECONFIG, "pndm sample prediction: err %d", err);
  sdc_scheduler_free(s);
}

/* SDC_MAX_STEPS with SD's own scheduler config (leading, steps_offset 1): 1000 steps over 1000 training
 * timesteps would start at t = 1000, past alphas_cumprod (diffusers raises IndexError); every training
 * timestep 999..0 is used instead, and every kind of scheduler runs the whole contract range. */
static void test_max_steps_with_sd_config(void) {
  int err;
  const char *sd = "{" SD_BETAS ", \"steps_offset\": 1, \"skip_prk_steps\": true, \"set_alpha_to_one\": false}";
  static const sdc_sched_kind kinds[] = {SDC_SCHED_DDIM, SDC_SCHED_DDPM, SDC_SCHED_PNDM};
  for (int k = 0; k < 3; k++) {
    sdc_scheduler *s = make(kinds[k], sd, SDC_MAX_STEPS, &err);
    CHECK(s, "%s with %d steps: %s", sdc_sched_name(kinds[k]), SDC_MAX_STEPS, sdc_errmsg(err));
    if (!s) continue;
    const int64_t n = sdc_scheduler_n_calls(s);
    CHECK(n == SDC_MAX_STEPS + (kinds[k] == SDC_SCHED_PNDM), "%s: %lld calls", sdc_sched_name(kinds[k]), (long long)n);
    CHECK(sdc_scheduler_timestep(s, 0) == 999 && sdc_scheduler_timestep(s, n - 1) == 0, "%s: timesteps %g..%g, want 999..0",
          sdc_sched_name(kinds[k]), sdc_scheduler_timestep(s, 0), sdc_scheduler_timestep(s, n - 1));
    float x[8];
    CHECK(run_all(s, x) >= 0 && all_finite(x, 8), "%s: %d-step run failed or non-finite", sdc_sched_name(kinds[k]),
          SDC_MAX_STEPS);
    sdc_scheduler_free(s);
    /* 500 steps keep diffusers' schedule exactly: 2*(499-i) + 1 */
    s = make(kinds[k], sd, 500, &err);
    CHECK(s && sdc_scheduler_timestep(s, 0) == 999, "%s 500 steps: first timestep %g", sdc_sched_name(kinds[k]),
          s ? sdc_scheduler_timestep(s, 0) : -1.0);
    sdc_scheduler_free(s);
  }
  /* the other schedulers: the model's own config with the most steps the contract allows */
  static const sdc_sched_kind rest[] = {SDC_SCHED_EULER, SDC_SCHED_EULER_A, SDC_SCHED_HEUN, SDC_SCHED_LMS,
                                        SDC_SCHED_DPMPP_2M, SDC_SCHED_DPMPP_2M_KARRAS, SDC_SCHED_UNIPC};
  for (size_t k = 0; k < sizeof rest / sizeof *rest; k++) {
    sdc_scheduler *s = make(rest[k], sd, SDC_MAX_STEPS, &err);
    CHECK(s, "%s with %d steps: %s", sdc_sched_name(rest[k]), SDC_MAX_STEPS, sdc_errmsg(err));
    float x[8];
    if (s) CHECK(run_all(s, x) >= 0 && all_finite(x, 8), "%s: %d-step run failed or non-finite", sdc_sched_name(rest[k]), SDC_MAX_STEPS);
    sdc_scheduler_free(s);
  }
}

int main(void) {
  test_max_steps_with_sd_config();
  test_ddim_trailing_and_linspace_timesteps();
  test_pndm_prk_warmup_runs_all_calls();
  test_pndm_plms_repeats_second_timestep();
  test_ddpm_no_noise_at_t0();
  test_ddpm_last_step_returns_x0();
  test_limits();
  return sdc_test_finish("test_sched_ddpm");
}
