/* test_sched_multistep.c - DPM-Solver++ and UniPC paths the goldens leave out: orders 1 and 3, trailing and
 * leading spacing, Karras sigmas, 1-step runs, the SDE variant's noise, config errors. Self-contained. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "scheduler.h"
#include "test_util.h"

/* SD 1.5's training schedule, as the goldens use it */
#define SD15 "\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,\"beta_end\":0.012,\"steps_offset\":1"
#define N_ELEMS 72 /* a [2,4,3,3] latent */

/* A scheduler of `kind` with SD 1.5 betas plus `extra` JSON members; NULL (and a recorded failure) on error. */
static sdc_scheduler *make(const char *kind, const char *extra, int64_t n) {
  char json[512];
  snprintf(json, sizeof json, "{" SD15 "%s%s}", extra[0] ? "," : "", extra);
  sdc_sched_config cfg;
  sdc_scheduler *s = NULL;
  int err = sdc_sched_config_parse(&cfg, json, sdc_sched_parse_name(kind), "test");
  if (!err) err = sdc_scheduler_create(&s, &cfg, n);
  CHECK(!err, "%s %s n=%lld: %s", kind, json, (long long)n, sdc_errmsg(err));
  return s;
}

/* The goldens' stand-in model: out = 0.5 tanh(x) + 0.1 cos(t/100). */
static void model(const float *x, double t, float *out) {
  for (int64_t k = 0; k < N_ELEMS; k++) out[k] = (float)(0.5 * tanh((double)x[k]) + 0.1 * cos(t / 100.0));
}

/* Runs every call from the seeded sample x (in place, with fresh noise where
 * asked for); returns 1 when all steps succeeded and every value stayed finite. */
static int run(sdc_scheduler *s, float *x, uint32_t seed) {
  float out[N_ELEMS], noise[N_ELEMS];
  sdc_test_fill(x, N_ELEMS, seed);
  int ok = 1;
  for (int64_t i = 0; i < sdc_scheduler_n_calls(s) && ok; i++) {
    model(x, sdc_scheduler_timestep(s, i), out);
    sdc_test_fill(noise, N_ELEMS, seed + 1000 + (uint32_t)i);
    ok = sdc_scheduler_step(s, out, x, N_ELEMS, sdc_scheduler_needs_noise(s) ? noise : NULL) == SDC_OK;
    for (int64_t k = 0; k < N_ELEMS && ok; k++) ok = isfinite(x[k]);
  }
  return ok && sdc_scheduler_call_index(s) == sdc_scheduler_n_calls(s);
}

static void test_orders_1_and_3_run_finite(void) {
  static const char *const kinds[] = {"dpmpp_2m", "dpmpp_2m_karras", "unipc"};
  static const char *const variants[] = {
      "\"solver_order\":1",
      "\"solver_order\":3",
      "\"solver_order\":3,\"prediction_type\":\"v_prediction\"",
      "\"solver_order\":3,\"lower_order_final\":false,\"final_sigmas_type\":\"sigma_min\"",
  };
  static const int64_t steps[] = {10, 25};
  for (size_t k = 0; k < 3; k++)
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++)
      for (size_t j = 0; j < 2; j++) {
        sdc_scheduler *s = make(kinds[k], variants[v], steps[j]);
        float x[N_ELEMS];
        if (!s) continue;
        CHECK(sdc_scheduler_n_calls(s) == steps[j], "%s {%s}: %lld calls for %lld steps", kinds[k], variants[v],
              (long long)sdc_scheduler_n_calls(s), (long long)steps[j]);
        CHECK(run(s, x, 7), "%s {%s} n=%lld: step failed or went non-finite", kinds[k], variants[v], (long long)steps[j]);
        sdc_scheduler_free(s);
      }
}

/* Other solver variants: DPM heun and the noise-prediction form, UniPC bh1 and
 * eps-space. diffusers 0.30 ends UniPC bh1 / predict_x0=false runs with NaN
 * (0 * inf at the final sigma 0); we take the finite limit, the x0 estimate. */
static void test_solver_variants_run_finite(void) {
  static const struct {
    const char *kind, *extra;
  } cases[] = {
      {"dpmpp_2m", "\"solver_type\":\"heun\""},
      {"dpmpp_2m", "\"solver_type\":\"heun\",\"solver_order\":3"},
      {"dpmpp_2m", "\"algorithm_type\":\"dpmsolver\",\"final_sigmas_type\":\"sigma_min\",\"solver_order\":3"},
      {"dpmpp_2m", "\"use_lu_lambdas\":true"},
      {"dpmpp_2m", "\"euler_at_final\":true,\"final_sigmas_type\":\"sigma_min\""},
      {"unipc", "\"solver_type\":\"bh1\""},
      {"unipc", "\"solver_type\":\"bh1\",\"solver_order\":3"},
      {"unipc", "\"predict_x0\":false"},
      {"unipc", "\"predict_x0\":false,\"solver_order\":3,\"solver_type\":\"bh1\""},
      {"unipc", "\"disable_corrector\":[0,2]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sdc_scheduler *s = make(cases[i].kind, cases[i].extra, 10);
    float x[N_ELEMS];
    if (!s) continue;
    CHECK(run(s, x, 11), "%s {%s}: step failed or went non-finite", cases[i].kind, cases[i].extra);
    sdc_scheduler_free(s);
  }
}

static void check_timesteps(const char *kind, const char *extra, int64_t n, const double *want, int64_t n_want) {
  sdc_scheduler *s = make(kind, extra, n);
  if (!s) return;
  CHECK(sdc_scheduler_n_calls(s) == n_want, "%s {%s} n=%lld: %lld calls, want %lld", kind, extra, (long long)n,
        (long long)sdc_scheduler_n_calls(s), (long long)n_want);
  for (int64_t i = 0; i < n_want && i < sdc_scheduler_n_calls(s); i++)
    CHECK(sdc_scheduler_timestep(s, i) == want[i], "%s {%s} n=%lld: timestep %lld is %g, want %g", kind, extra,
          (long long)n, (long long)i, sdc_scheduler_timestep(s, i), want[i]);
  sdc_scheduler_free(s);
}

/* Expected values worked out by hand from diffusers 0.30's set_timesteps
 * (identical in both classes):
 *   trailing: round(np.arange(T, 0, -T/n)) - 1, steps_offset ignored.
 *     n=10: ratio 100, arange = 1000, 900, ..., 100  ->  999, 899, ..., 99.
 *     n=3:  ratio 333.33.., arange = 1000, 666.67, 333.33 -> 1000, 667, 333 -> 999, 666, 332.
 *     n=61: 1000 / (1000/61) = 61.00000000000001 in doubles, so numpy sizes the
 *           range ceil() = 62; its last entry is 1000 + 61*delta ~ -1e-13,
 *           which rounds to 0, giving a 62nd call at t = -1 (whose sigma
 *           np.interp clamps to sigma(0)).
 *   leading: (np.arange(n+1) * (T // (n+1)))[::-1][:-1] + steps_offset.
 *     n=10: 1000 // 11 = 90  ->  900, 810, ..., 90, plus 1.
 *   linspace: round(np.linspace(0, T-1, n+1))[::-1][:-1], numpy rounding half to even.
 *     n=6: 0, 166.5, 333, 499.5, 666, 832.5, 999 (all exact in doubles) -> 999, 832, 666, 500, 333, 166. */
static void test_spacing_timesteps(void) {
  double want[62];
  for (int i = 0; i < 10; i++) want[i] = 999 - 100 * i;
  check_timesteps("dpmpp_2m", "\"timestep_spacing\":\"trailing\"", 10, want, 10);
  check_timesteps("unipc", "\"timestep_spacing\":\"trailing\"", 10, want, 10);
  check_timesteps("dpmpp_2m", "\"timestep_spacing\":\"trailing\"", 3, (const double[]){999, 666, 332}, 3);
  check_timesteps("unipc", "\"timestep_spacing\":\"trailing\"", 3, (const double[]){999, 666, 332}, 3);
  for (int i = 0; i < 10; i++) want[i] = 900 - 90 * i + 1;
  check_timesteps("dpmpp_2m", "\"timestep_spacing\":\"leading\"", 10, want, 10);
  check_timesteps("unipc", "\"timestep_spacing\":\"leading\"", 10, want, 10);
  check_timesteps("dpmpp_2m", "", 6, (const double[]){999, 832, 666, 500, 333, 166}, 6);
  check_timesteps("unipc", "", 6, (const double[]){999, 832, 666, 500, 333, 166}, 6);
  sdc_scheduler *s = make("dpmpp_2m", "\"timestep_spacing\":\"trailing\"", 61);
  if (s) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    CHECK(sdc_scheduler_n_calls(s) == 62 && sdc_scheduler_timestep(s, 61) == -1.0,
          "trailing n=61: %lld calls, last timestep %g (diffusers: 62 calls, last -1)",
          (long long)sdc_scheduler_n_calls(s), sdc_scheduler_timestep(s, sdc_scheduler_n_calls(s) - 1));
    CHECK(n_sig == 63 && fabs(sig[61] - 0.029168) < 1e-4 && sig[62] == 0.0,
          "trailing n=61: the t=-1 sigma should clamp to sigma(0) = 0.029168 and be followed by 0");
    float x[N_ELEMS];
    CHECK(run(s, x, 3), "trailing n=61: step failed or went non-finite");
    sdc_scheduler_free(s);
  }
}

static void test_karras_sigmas_monotone_to_zero(void) {
  static const char *const cases[][2] = {{"dpmpp_2m_karras", ""}, {"unipc", "\"use_karras_sigmas\":true"}};
  static const int64_t steps[] = {1, 10, 25, 50};
  for (size_t c = 0; c < 2; c++)
    for (size_t j = 0; j < 4; j++) {
      const int64_t n = steps[j];
      sdc_scheduler *s = make(cases[c][0], cases[c][1], n);
      if (!s) continue;
      int64_t n_sig;
      const double *sig = sdc_scheduler_sigmas(s, &n_sig);
      CHECK(n_sig == n + 1 && sig[n] == 0.0, "%s n=%lld: %lld sigmas, last %g; want n+1 ending at 0", cases[c][0],
            (long long)n, (long long)n_sig, sig[n_sig - 1]);
      /* SD 1.5's training range: sigma(999) ~ 14.6146, sigma(0) ~ 0.0292 */
      CHECK(fabs(sig[0] - 14.6146) < 1e-3, "%s n=%lld: first sigma %g, want sigma_max 14.6146", cases[c][0],
            (long long)n, sig[0]);
      if (n > 1)
        CHECK(fabs(sig[n - 1] - 0.029168) < 1e-4, "%s n=%lld: last nonzero sigma %g, want sigma_min 0.029168",
              cases[c][0], (long long)n, sig[n - 1]);
      for (int64_t i = 1; i < n_sig; i++)
        CHECK(sig[i] < sig[i - 1], "%s n=%lld: sigma %lld = %g not below %g", cases[c][0], (long long)n, (long long)i,
              sig[i], sig[i - 1]);
      CHECK(sdc_scheduler_timestep(s, 0) == 999.0, "%s n=%lld: first timestep %g", cases[c][0], (long long)n,
            sdc_scheduler_timestep(s, 0));
      for (int64_t i = 1; i < n; i++)
        CHECK(sdc_scheduler_timestep(s, i) <= sdc_scheduler_timestep(s, i - 1) && sdc_scheduler_timestep(s, i) >= 0,
              "%s n=%lld: timestep %lld = %g out of order", cases[c][0], (long long)n, (long long)i,
              sdc_scheduler_timestep(s, i));
      sdc_scheduler_free(s);
    }
}

/* One step from sigma_0 to 0 is the first-order update, which lands exactly on
 * the data prediction (x - sigma_t eps) / alpha_t for both classes. */
static void test_one_step_run_is_x0_prediction(void) {
  static const char *const kinds[] = {"dpmpp_2m", "dpmpp_2m_karras", "unipc"};
  for (size_t k = 0; k < 3; k++) {
    sdc_scheduler *s = make(kinds[k], "\"solver_order\":3", 1);
    if (!s) continue;
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    CHECK(sdc_scheduler_n_calls(s) == 1 && n_sig == 2 && sdc_scheduler_timestep(s, 0) == 999.0,
          "%s n=1: %lld calls, %lld sigmas, t0 %g", kinds[k], (long long)sdc_scheduler_n_calls(s), (long long)n_sig,
          sdc_scheduler_timestep(s, 0));
    float x[N_ELEMS], out[N_ELEMS], want[N_ELEMS];
    sdc_test_fill(x, N_ELEMS, 5);
    model(x, sdc_scheduler_timestep(s, 0), out);
    const double alpha = 1.0 / sqrt(sig[0] * sig[0] + 1.0), sigma = sig[0] * alpha;
    for (int k2 = 0; k2 < N_ELEMS; k2++) want[k2] = (float)(((double)x[k2] - sigma * out[k2]) / alpha);
    CHECK(sdc_scheduler_step(s, out, x, N_ELEMS, NULL) == SDC_OK, "%s n=1: step failed", kinds[k]);
    double e = sdc_test_rel_err(x, want, N_ELEMS);
    CHECK(e < 1e-5, "%s n=1: result off the x0 prediction by %g", kinds[k], e);
    CHECK(sdc_scheduler_step(s, out, x, N_ELEMS, NULL) == SDC_EINVAL, "%s n=1: a second step should be refused",
          kinds[k]);
    sdc_scheduler_free(s);
  }
}

/* DPM-Solver (noise prediction) and DPM-Solver++ (data prediction) agree at
 * first order: both are DDIM. Cross-checks the two conversion branches. */
static void test_dpm_first_order_forms_agree(void) {
  sdc_scheduler *a = make("dpmpp_2m", "\"solver_order\":1,\"final_sigmas_type\":\"sigma_min\"", 12);
  sdc_scheduler *b = make("dpmpp_2m",
                          "\"solver_order\":1,\"final_sigmas_type\":\"sigma_min\",\"algorithm_type\":\"dpmsolver\"", 12);
  float xa[N_ELEMS], xb[N_ELEMS];
  if (a && b) {
    CHECK(run(a, xa, 9) && run(b, xb, 9), "first-order runs failed");
    double e = sdc_test_rel_err(xa, xb, N_ELEMS);
    CHECK(e < 1e-5, "dpmsolver vs dpmsolver++ at order 1 differ by %g", e);
  }
  sdc_scheduler_free(a);
  sdc_scheduler_free(b);
}

static void test_sde_needs_noise_every_step(void) {
  sdc_scheduler *s = make("dpmpp_2m", "\"algorithm_type\":\"sde-dpmsolver++\"", 10);
  if (!s) return;
  CHECK(sdc_scheduler_needs_noise(s), "sde-dpmsolver++ should ask for noise");
  float x[N_ELEMS], out[N_ELEMS];
  sdc_test_fill(x, N_ELEMS, 1);
  model(x, sdc_scheduler_timestep(s, 0), out);
  CHECK(sdc_scheduler_step(s, out, x, N_ELEMS, NULL) == SDC_EINVAL, "a step without noise should be refused");
  CHECK(run(s, x, 2), "sde-dpmsolver++ run failed or went non-finite");
  sdc_scheduler_free(s);
  s = make("dpmpp_2m", "", 10);
  if (s) CHECK(!sdc_scheduler_needs_noise(s), "dpmsolver++ is deterministic");
  sdc_scheduler_free(s);
}

static void test_unsupported_configs_are_errors(void) {
  static const struct {
    const char *extra;
    int err;
  } cases[] = {
      /* diffusers raises ValueError: noise prediction needs a nonzero final sigma */
      {"\"algorithm_type\":\"dpmsolver\"", SDC_ECONFIG},
      /* diffusers has no SDE third-order update and fails at the third step */
      {"\"algorithm_type\":\"sde-dpmsolver++\",\"solver_order\":3", SDC_EUNSUPPORTED},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char json[256];
    snprintf(json, sizeof json, "{" SD15 ",%s}", cases[i].extra);
    sdc_sched_config cfg;
    sdc_scheduler *s = NULL;
    int err = sdc_sched_config_parse(&cfg, json, SDC_SCHED_DPMPP_2M, "test");
    CHECK(err == SDC_OK, "parse {%s}: %s", cases[i].extra, sdc_errmsg(err));
    err = sdc_scheduler_create(&s, &cfg, 10);
    CHECK(err == cases[i].err && !s, "{%s}: got %s, want %s", cases[i].extra, sdc_err_name(err),
          sdc_err_name(cases[i].err));
    sdc_scheduler_free(s);
  }
}

int main(void) {
  test_orders_1_and_3_run_finite();
  test_solver_variants_run_finite();
  test_spacing_timesteps();
  test_karras_sigmas_monotone_to_zero();
  test_one_step_run_is_x0_prediction();
  test_dpm_first_order_forms_agree();
  test_sde_needs_noise_every_step();
  test_unsupported_configs_are_errors();
  return sdc_test_finish("test_sched_multistep");
}
