/* test_sched_lcm.c - LCMScheduler behaviour the trajectory goldens leave open: schedules, strength, draws, refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "scheduler.h"
#include "test_util.h"

/* SD 1.5's scheduler_config.json as it ships (a PNDM config), applied to LCM as from_config does. */
#define SD15 "{\"_class_name\": \"PNDMScheduler\", \"beta_start\": 0.00085, \"beta_end\": 0.012, " \
             "\"beta_schedule\": \"scaled_linear\", \"steps_offset\": 1, \"skip_prk_steps\": true, " \
             "\"set_alpha_to_one\": false, \"clip_sample\": false, \"num_train_timesteps\": 1000"

static sdc_scheduler *make(const char *json, int64_t n, double strength, int *err) {
  sdc_sched_config cfg;
  sdc_scheduler *s = NULL;
  *err = sdc_sched_config_parse(&cfg, json, SDC_SCHED_LCM, "test");
  cfg.lcm_strength = strength;
  if (!*err) *err = sdc_scheduler_create(&s, &cfg, n);
  return s;
}

static void check_timesteps(const char *json, int64_t n, double strength, const double *want, const char *what) {
  int err;
  sdc_scheduler *s = make(json, n, strength, &err);
  CHECK(s, "%s: %s", what, sdc_errmsg(err));
  if (!s) return;
  CHECK(sdc_scheduler_n_calls(s) == n, "%s: %lld calls", what, (long long)sdc_scheduler_n_calls(s));
  for (int64_t i = 0; i < n; i++)
    CHECK(sdc_scheduler_timestep(s, i) == want[i], "%s: timestep %lld is %g, want %g", what, (long long)i,
          sdc_scheduler_timestep(s, i), want[i]);
  sdc_scheduler_free(s);
}

static void test_lcm_timesteps_follow_the_distillation_schedule(void) {
  /* the pipelines goldens' lcm_4 and lcm_6_cfg schedules */
  const double four[] = {999, 759, 499, 259}, six[] = {999, 839, 679, 499, 339, 179};
  check_timesteps(SD15 "}", 4, 1.0, four, "lcm n=4");
  check_timesteps(SD15 "}", 6, 1.0, six, "lcm n=6");
  /* one step: the top of the distillation schedule; 50 steps: all of it */
  const double one[] = {999};
  check_timesteps(SD15 "}", 1, 1.0, one, "lcm n=1");
  double all[50];
  for (int i = 0; i < 50; i++) all[i] = 999 - 20 * i;
  check_timesteps(SD15 "}", 50, 1.0, all, "lcm n=50");
  /* original_inference_steps 25: k = 40, origin 39..999 */
  const double o25[] = {999, 679, 359}; /* floor(linspace(0, 25, 3, endpoint=False)) = 0, 8, 16 */
  check_timesteps(SD15 ", \"original_inference_steps\": 25}", 3, 1.0, o25, "lcm orig=25 n=3");
  /* strength 0.5 keeps the first int(50 * 0.5) = 25 origin steps (19..499): the
   * img2img pipelines' set_timesteps(strength=) */
  const double half[] = {499, 379, 259, 139};
  check_timesteps(SD15 "}", 4, 0.5, half, "lcm strength 0.5 n=4");
}

static void test_lcm_draws_noise_on_every_step_but_the_last(void) {
  int err;
  sdc_scheduler *s = make(SD15 "}", 4, 1.0, &err);
  CHECK(s, "lcm: %s", sdc_errmsg(err));
  if (!s) return;
  float x[8], out[8], z[8];
  for (int i = 0; i < 8; i++) x[i] = (float)sin(i + 0.5), z[i] = 0.25f;
  int draws = 0;
  for (int64_t c = 0; c < 4; c++) {
    int want = c < 3;
    CHECK(sdc_scheduler_needs_noise(s) == want, "lcm call %lld: needs_noise %d, want %d", (long long)c,
          sdc_scheduler_needs_noise(s), want);
    for (int i = 0; i < 8; i++) out[i] = (float)(0.5 * tanh(x[i]));
    draws += sdc_scheduler_needs_noise(s);
    CHECK(sdc_scheduler_step(s, out, x, 8, sdc_scheduler_needs_noise(s) ? z : NULL) == SDC_OK, "lcm step %lld: %s",
          (long long)c, sdc_errmsg(SDC_EINVAL));
  }
  CHECK(draws == 3, "lcm 4 steps drew %d times, want 3", draws);
  CHECK(!sdc_scheduler_needs_noise(s), "lcm: noise asked past the end");
  CHECK(sdc_scheduler_step(s, out, x, 8, z) != SDC_OK, "lcm: a fifth step was accepted");
  sdc_scheduler_free(s);
  /* a step that needs noise refuses to run without it */
  s = make(SD15 "}", 2, 1.0, &err);
  if (s) {
    err = sdc_scheduler_step(s, out, x, 8, NULL);
    CHECK(err != SDC_OK && strstr(sdc_errmsg(err), "noise"), "lcm without noise: %s", sdc_errmsg(err));
  }
  sdc_scheduler_free(s);
}

/* One step at t = 999 by hand: x0 = (x - sqrt(1-a) eps) / sqrt(a), the
 * boundary mix c_out x0 + c_skip x, then sqrt(a') d + sqrt(1-a') z. */
static void test_lcm_step_matches_the_formula(void) {
  int err;
  sdc_scheduler *s = make(SD15 ", \"prediction_type\": \"v_prediction\"}", 2, 1.0, &err);
  CHECK(s, "lcm v: %s", sdc_errmsg(err));
  if (!s) return;
  double acp[1000], p = 1.0;
  for (int i = 0; i < 1000; i++) {
    double b = sqrt(0.00085) + i / 999.0 * (sqrt(0.012) - sqrt(0.00085));
    acp[i] = p *= 1.0 - b * b;
  }
  const double a = acp[999], ap = acp[499], st = 9990.0;
  const double c_skip = 0.25 / (st * st + 0.25), c_out = st / sqrt(st * st + 0.25);
  float x[1] = {0.7f}, m[1] = {-0.3f}, z[1] = {1.5f};
  double x0 = sqrt(a) * 0.7 - sqrt(1 - a) * (double)m[0];
  double want = sqrt(ap) * (c_out * x0 + c_skip * (double)x[0]) + sqrt(1 - ap) * 1.5;
  CHECK(sdc_scheduler_timestep(s, 1) == 499, "lcm n=2: second timestep %g", sdc_scheduler_timestep(s, 1));
  CHECK(sdc_scheduler_step(s, m, x, 1, z) == SDC_OK, "lcm v step failed");
  CHECK(fabs(x[0] - want) < 1e-5, "lcm v step: %.7f, want %.7f", x[0], want);
  sdc_scheduler_free(s);
}

static void test_lcm_refusals_name_the_field(void) {
  int err;
  sdc_scheduler *s = make(SD15 "}", 51, 1.0, &err);
  CHECK(!s && strstr(sdc_errmsg(err), "original_inference_steps"), "lcm 51 steps: %s", s ? "accepted" : sdc_errmsg(err));
  sdc_scheduler_free(s);
  s = make(SD15 "}", 30, 0.5, &err); /* 25 origin steps left */
  CHECK(!s && strstr(sdc_errmsg(err), "strength"), "lcm 30 steps at strength 0.5: %s", s ? "accepted" : sdc_errmsg(err));
  sdc_scheduler_free(s);
  s = make(SD15 ", \"thresholding\": true}", 4, 1.0, &err);
  CHECK(!s && strstr(sdc_errmsg(err), "thresholding"), "lcm thresholding: %s", s ? "accepted" : sdc_errmsg(err));
  sdc_scheduler_free(s);
  s = make(SD15 ", \"timestep_scaling\": -1}", 4, 1.0, &err);
  CHECK(!s && strstr(sdc_errmsg(err), "timestep_scaling"), "lcm timestep_scaling -1: %s", s ? "accepted" : sdc_errmsg(err));
  sdc_scheduler_free(s);
  s = make(SD15 ", \"original_inference_steps\": 2000}", 4, 1.0, &err);
  CHECK(!s && strstr(sdc_errmsg(err), "original_inference_steps"), "lcm orig 2000: %s", s ? "accepted" : sdc_errmsg(err));
  sdc_scheduler_free(s);
  /* the class name selects LCM from a file as any other */
  sdc_sched_config cfg;
  err = sdc_sched_config_parse(&cfg, "{\"_class_name\": \"LCMScheduler\"}", -1, "test");
  CHECK(!err && cfg.kind == SDC_SCHED_LCM && cfg.set_alpha_to_one && cfg.original_inference_steps == 50 &&
            cfg.timestep_scaling == 10.0,
        "LCMScheduler class: %s", sdc_errmsg(err));
  CHECK(sdc_sched_parse_name("lcm") == SDC_SCHED_LCM, "'lcm' does not parse");
}

int main(void) {
  test_lcm_timesteps_follow_the_distillation_schedule();
  test_lcm_draws_noise_on_every_step_but_the_last();
  test_lcm_step_matches_the_formula();
  test_lcm_refusals_name_the_field();
  return sdc_test_finish("test_sched_lcm");
}
