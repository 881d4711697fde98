/* test_sched_euler.c - what the goldens leave open for Euler, Euler-a, Heun, LMS: karras, spacings, calls, noise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "scheduler.h"
#include "test_util.h"

#define T_TRAIN 1000

/* SD 1.5's training schedule, computed here independently of scheduler.c: sigma(t) = sqrt((1 - acp) / acp). */
static double ref_sigma(int64_t t) {
  static double sig[T_TRAIN];
  static int ready = 0;
  if (!ready) {
    double acp = 1.0, lo = sqrt(0.00085), hi = sqrt(0.012);
    for (int i = 0; i < T_TRAIN; i++) {
      double b = lo + (hi - lo) * i / (T_TRAIN - 1.0);
      acp *= 1.0 - b * b;
      sig[i] = sqrt((1.0 - acp) / acp);
    }
    ready = 1;
  }
  return sig[t];
}

static int close_rel(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

/* A scheduler of `kind` for SD 1.5's config plus `extra` JSON members (may be ""); NULL on error. */
static sdc_scheduler *make(sdc_sched_kind kind, const char *extra, int64_t n) {
  char json[1024];
  snprintf(json, sizeof json,
           "{\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,\"beta_end\":0.012,"
           "\"num_train_timesteps\":1000,\"steps_offset\":1%s%s}",
           extra[0] ? "," : "", extra);
  sdc_sched_config cfg;
  sdc_scheduler *s = NULL;
  int err = sdc_sched_config_parse(&cfg, json, kind, "test");
  if (!err) err = sdc_scheduler_create(&s, &cfg, n);
  CHECK(err == 0, "%s %s n=%lld: %s", sdc_sched_name(kind), extra, (long long)n, sdc_errmsg(err));
  return err ? NULL : s;
}

static void test_euler_karras_sigmas_run_from_sigma_max_to_zero(void) {
  const int64_t n = 25;
  sdc_scheduler *s = make(SDC_SCHED_EULER, "\"use_karras_sigmas\":true", n);
  if (!s) return;
  int64_t n_sig;
  const double *sig = sdc_scheduler_sigmas(s, &n_sig);
  CHECK(n_sig == n + 1, "karras: %lld sigmas for %lld steps", (long long)n_sig, (long long)n);
  CHECK(close_rel(sig[0], ref_sigma(T_TRAIN - 1), 1e-9), "karras starts at %.9g, schedule max %.9g", sig[0],
        ref_sigma(T_TRAIN - 1));
  CHECK(close_rel(sig[n - 1], ref_sigma(0), 1e-9), "karras ends at %.9g, schedule min %.9g", sig[n - 1], ref_sigma(0));
  CHECK(sig[n] == 0.0, "final sigma %g", sig[n]);
  for (int64_t i = 0; i + 1 < n_sig; i++) CHECK(sig[i + 1] < sig[i], "karras sigma %lld not decreasing", (long long)i);
  /* timesteps come back from the sigmas through _sigma_to_t */
  CHECK(sdc_scheduler_n_calls(s) == n, "%lld calls", (long long)sdc_scheduler_n_calls(s));
  CHECK(fabs(sdc_scheduler_timestep(s, 0) - 999.0) < 1e-3, "first karras timestep %g", sdc_scheduler_timestep(s, 0));
  CHECK(fabs(sdc_scheduler_timestep(s, n - 1)) < 1e-3, "last karras timestep %g", sdc_scheduler_timestep(s, n - 1));
  for (int64_t i = 0; i + 1 < n; i++)
    CHECK(sdc_scheduler_timestep(s, i + 1) < sdc_scheduler_timestep(s, i), "karras timestep %lld not decreasing",
          (long long)i);
  CHECK(close_rel(sdc_scheduler_init_noise_sigma(s), sig[0], 1e-12), "init_noise_sigma %g", sdc_scheduler_init_noise_sigma(s));
  sdc_scheduler_free(s);

  /* config sigma_min / sigma_max pin the karras range */
  s = make(SDC_SCHED_EULER, "\"use_karras_sigmas\":true,\"sigma_min\":0.1,\"sigma_max\":10.0", n);
  if (!s) return;
  sig = sdc_scheduler_sigmas(s, &n_sig);
  CHECK(close_rel(sig[0], 10.0, 1e-12) && close_rel(sig[n - 1], 0.1, 1e-12), "pinned karras range [%g, %g]", sig[n - 1],
        sig[0]);
  CHECK(close_rel(sdc_scheduler_init_noise_sigma(s), 10.0, 1e-12), "pinned init_noise_sigma %g",
        sdc_scheduler_init_noise_sigma(s));
  sdc_scheduler_free(s);
}

/* diffusers: linspace/trailing -> max sigma, leading -> sqrt(max sigma^2 + 1). */
static void test_init_noise_sigma_follows_spacing(void) {
  static const sdc_sched_kind kinds[] = {SDC_SCHED_EULER, SDC_SCHED_EULER_A, SDC_SCHED_HEUN, SDC_SCHED_LMS};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    const char *name = sdc_sched_name(kinds[k]);
    sdc_scheduler *s = make(kinds[k], "\"timestep_spacing\":\"linspace\"", 10);
    if (s) {
      double got = sdc_scheduler_init_noise_sigma(s), want = ref_sigma(999);
      CHECK(close_rel(got, want, 1e-9), "%s linspace: init_noise_sigma %.9g, want %.9g", name, got, want);
      sdc_scheduler_free(s);
    }
    s = make(kinds[k], "\"timestep_spacing\":\"trailing\"", 10);
    if (s) {
      double got = sdc_scheduler_init_noise_sigma(s), want = ref_sigma(999);
      CHECK(close_rel(got, want, 1e-9), "%s trailing: init_noise_sigma %.9g, want %.9g", name, got, want);
      int64_t last = sdc_scheduler_n_calls(s) - 1;
      CHECK(sdc_scheduler_timestep(s, 0) == 999 && sdc_scheduler_timestep(s, last) == 99, "%s trailing timesteps %g..%g",
            name, sdc_scheduler_timestep(s, 0), sdc_scheduler_timestep(s, last));
      sdc_scheduler_free(s);
    }
    /* leading, 10 steps, offset 1: timesteps 901, 801, ..., 1 */
    s = make(kinds[k], "\"timestep_spacing\":\"leading\"", 10);
    if (s) {
      double got = sdc_scheduler_init_noise_sigma(s), m = ref_sigma(901), want = sqrt(m * m + 1.0);
      CHECK(close_rel(got, want, 1e-9), "%s leading: init_noise_sigma %.9g, want %.9g", name, got, want);
      int64_t last = sdc_scheduler_n_calls(s) - 1;
      CHECK(sdc_scheduler_timestep(s, 0) == 901 && sdc_scheduler_timestep(s, last) == 1, "%s leading timesteps %g..%g",
            name, sdc_scheduler_timestep(s, 0), sdc_scheduler_timestep(s, last));
      sdc_scheduler_free(s);
    }
  }
}

static void test_heun_makes_2n_minus_1_calls(void) {
  static const int64_t steps[] = {1, 2, 10, 25};
  float x[3] = {0.5f, -1.0f, 2.0f}, out[3];
  for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
    const int64_t n = steps[k];
    sdc_scheduler *s = make(SDC_SCHED_HEUN, "", n);
    if (!s) continue;
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    CHECK(sdc_scheduler_n_calls(s) == 2 * n - 1, "heun n=%lld: %lld calls", (long long)n, (long long)sdc_scheduler_n_calls(s));
    CHECK(n_sig == 2 * n && sig[n_sig - 1] == 0.0, "heun n=%lld: %lld sigmas, last %g", (long long)n, (long long)n_sig,
          sig[n_sig - 1]);
    for (int64_t i = 1; i < n; i++)
      CHECK(sdc_scheduler_timestep(s, 2 * i - 1) == sdc_scheduler_timestep(s, 2 * i) && sig[2 * i - 1] == sig[2 * i],
            "heun n=%lld: stage pair %lld not interleaved", (long long)n, (long long)i);
    for (int64_t i = 0; i < 2 * n - 1; i++) {
      for (int j = 0; j < 3; j++) out[j] = 0.1f * x[j];
      CHECK(sdc_scheduler_step(s, out, x, 3, NULL) == 0, "heun n=%lld: call %lld failed", (long long)n, (long long)i);
    }
    CHECK(sdc_scheduler_step(s, out, x, 3, NULL) < 0, "heun n=%lld: a step past the end was accepted", (long long)n);
    sdc_scheduler_free(s);
  }
}

static void test_euler_a_refuses_step_without_noise(void) {
  sdc_scheduler *s = make(SDC_SCHED_EULER_A, "", 5);
  if (!s) return;
  float x[4] = {1, 2, 3, 4}, out[4] = {0.1f, 0.2f, 0.3f, 0.4f}, z[4] = {0.5f, -0.5f, 1, -1};
  for (int64_t i = 0; i < 5; i++) {
    CHECK(sdc_scheduler_needs_noise(s), "euler_a call %lld does not ask for noise", (long long)i);
    float before[4];
    memcpy(before, x, sizeof x);
    CHECK(sdc_scheduler_step(s, out, x, 4, NULL) == SDC_EINVAL, "euler_a call %lld accepted a NULL noise", (long long)i);
    CHECK(memcmp(before, x, sizeof x) == 0 && sdc_scheduler_call_index(s) == i, "refused step %lld changed state",
          (long long)i);
    CHECK(sdc_scheduler_step(s, out, x, 4, z) == 0, "euler_a call %lld with noise failed", (long long)i);
  }
  sdc_scheduler_free(s);
  /* the class raises NotImplementedError for sample prediction: we refuse it up front */
  sdc_sched_config cfg;
  CHECK(sdc_sched_config_parse(&cfg, "{\"prediction_type\":\"sample\"}", SDC_SCHED_EULER_A, "test") == 0, "parse");
  CHECK(sdc_scheduler_create(&s, &cfg, 5) == SDC_ECONFIG && s == NULL, "euler_a accepted prediction_type sample");
}

/* With eps = a*sigma + b the ODE dx/dsigma = eps integrates to x0 - (a sigma0^2 / 2 + b sigma0):
 * Euler and LMS are exact for constant eps (a = 0), Heun's trapezoid for linear eps. */
static void test_solvers_integrate_simple_odes_exactly(void) {
  static const struct {
    sdc_sched_kind kind;
    double a, b;
  } cases[] = {{SDC_SCHED_EULER, 0, 0.7}, {SDC_SCHED_LMS, 0, 0.7}, {SDC_SCHED_HEUN, 0, 0.7}, {SDC_SCHED_HEUN, 0.05, -0.3}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    sdc_scheduler *s = make(cases[k].kind, "", 12);
    if (!s) continue;
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    const double s0 = sig[0], x_start = 20.0;
    float x = (float)x_start;
    for (int64_t i = 0; i < sdc_scheduler_n_calls(s); i++) {
      /* Heun's interleaved sigmas[i] is the noise level of call i's input */
      float out = (float)(cases[k].a * sig[i] + cases[k].b);
      CHECK(sdc_scheduler_step(s, &out, &x, 1, NULL) == 0, "call %lld", (long long)i);
    }
    double want = x_start - (cases[k].a * s0 * s0 / 2 + cases[k].b * s0);
    CHECK(close_rel(x, want, 1e-5), "%s eps=%g*sigma+%g: got %.7g, want %.7g", sdc_sched_name(cases[k].kind), cases[k].a,
          cases[k].b, x, want);
    sdc_scheduler_free(s);
  }
}

/* Euler options: log_linear, final_sigmas_type, continuous v timesteps; input scaling follows the call index. */
static void test_euler_options(void) {
  const int64_t n = 8;
  sdc_scheduler *s = make(SDC_SCHED_EULER, "\"interpolation_type\":\"log_linear\"", n);
  if (s) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    /* diffusers makes n+1 log-spaced sigmas, then appends the final one */
    CHECK(n_sig == n + 2 && sig[n + 1] == 0.0, "log_linear: %lld sigmas", (long long)n_sig);
    CHECK(close_rel(sig[0], ref_sigma(999), 1e-6) && close_rel(sig[n], ref_sigma(0), 1e-6), "log_linear ends %g %g", sig[0],
          sig[n]);
    CHECK(close_rel(sig[1] / sig[0], sig[n] / sig[n - 1], 1e-9), "log_linear not geometric");
    sdc_scheduler_free(s);
  }
  s = make(SDC_SCHED_EULER, "\"final_sigmas_type\":\"sigma_min\"", n);
  if (s) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    CHECK(close_rel(sig[n_sig - 1], ref_sigma(0), 1e-9), "final sigma_min %g", sig[n_sig - 1]);
    sdc_scheduler_free(s);
  }
  s = make(SDC_SCHED_EULER, "\"timestep_type\":\"continuous\",\"prediction_type\":\"v_prediction\"", n);
  if (s) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    for (int64_t i = 0; i < sdc_scheduler_n_calls(s); i++)
      CHECK(close_rel(sdc_scheduler_timestep(s, i), 0.25 * log(sig[i]), 1e-6), "continuous timestep %lld", (long long)i);
    sdc_scheduler_free(s);
  }
  s = make(SDC_SCHED_EULER, "", n);
  if (s) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    float x = 1.0f, in, out = 0.0f;
    for (int64_t i = 0; i < n; i++) {
      sdc_scheduler_scale_input(s, &x, &in, 1);
      CHECK(close_rel(in, x / sqrt(sig[i] * sig[i] + 1.0), 1e-6), "scale_input at call %lld", (long long)i);
      CHECK(sdc_scheduler_step(s, &out, &x, 1, NULL) == 0, "euler call %lld", (long long)i);
    }
    sdc_scheduler_free(s);
  }
}

int main(void) {
  test_euler_karras_sigmas_run_from_sigma_max_to_zero();
  test_init_noise_sigma_follows_spacing();
  test_heun_makes_2n_minus_1_calls();
  test_euler_a_refuses_step_without_noise();
  test_solvers_integrate_simple_odes_exactly();
  test_euler_options();
  return sdc_test_finish("test_sched_euler");
}
