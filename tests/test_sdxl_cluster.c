/* test_sdxl_cluster.c - SDXL through a real `sdc cluster` on the tiny SDXL: every case of sdxl/goldens.json
 * (default, micro_cond, prompt_2, negative_euler_a, wide_dpmpp_karras, nocfg) gives the pixels and the
 * "parameters" text of `sdc generate` with the same parameters and threads, and diffusers' PNG within the PNG tolerance; `sdc submit` with SDXL's flags does the
 * same. Requests a model cannot take fail in one line naming the field, at the coordinator (the job's error) and in
 * `sdc generate` (exit 2): SDXL's fields on SD 1.x, an init image or a LoRA on SDXL. Skips without SDC_REF/sdxl. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "fault_util.h"
#include "file.h"
#include "json.h"
#include "png_golden.h"
#include "pngio.h"
#include "safetensors.h"
#include "test_util.h"

#define THREADS "2" /* the workers' and sdc generate's: images are bit-identical only with the same count */

static const char *const g_cases[] = {"default", "micro_cond", "prompt_2", "negative_euler_a", "wide_dpmpp_karras", "nocfg"};
#define N_CASES ((int)(sizeof g_cases / sizeof *g_cases))

/* Single-quotes s for the shell. */
static void shell_quote(char *out, size_t n, const char *s) {
  size_t k = 0;
  out[k++] = '\'';
  for (; *s && k + 6 < n; s++) {
    if (*s == '\'') k += (size_t)snprintf(out + k, n - k, "'\\''");
    else out[k++] = *s;
  }
  out[k++] = '\'';
  out[k] = 0;
}

/* A case's [a, b] field (original_size, crops_coords_top_left, target_size): 1 when given. */
static int pair(const cJSON *c, const char *name, int64_t v[2]) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, name);
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2) return 0;
  v[0] = (int64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(a, 0));
  v[1] = (int64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(a, 1));
  return 1;
}

static const char *str(const cJSON *c, const char *name) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, name));
}

static double num(const cJSON *c, const char *name) {
  return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, name));
}

/* The job JSON of a case (heap) and the same request as `sdc generate` / `sdc submit` flags (into flags). */
static char *case_job(const char *id, const cJSON *c, char *flags, size_t n) {
  cJSON *o = cJSON_CreateObject();
  char q[3][1024];
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "prompt", str(c, "prompt"));
  shell_quote(q[0], sizeof q[0], str(c, "prompt"));
  int k = snprintf(flags, n, "--prompt %s --width %.0f --height %.0f --steps %.0f --guidance-scale %.17g --seed %.0f "
                   "--scheduler %s", q[0], num(c, "width"), num(c, "height"), num(c, "steps"), num(c, "guidance_scale"),
                   num(c, "seed"), str(c, "scheduler"));
  cJSON_AddNumberToObject(o, "width", num(c, "width"));
  cJSON_AddNumberToObject(o, "height", num(c, "height"));
  cJSON_AddNumberToObject(o, "steps", num(c, "steps"));
  cJSON_AddNumberToObject(o, "guidance_scale", num(c, "guidance_scale"));
  cJSON_AddNumberToObject(o, "seed", num(c, "seed"));
  cJSON_AddStringToObject(o, "scheduler", str(c, "scheduler"));
  static const char *const texts[][2] = {{"negative_prompt", "--negative-prompt"},
                                         {"prompt_2", "--prompt-2"},
                                         {"negative_prompt_2", "--negative-prompt-2"}};
  for (int i = 0; i < 3; i++) {
    const char *t = str(c, texts[i][0]);
    if (!t) continue;
    cJSON_AddStringToObject(o, texts[i][0], t);
    shell_quote(q[1], sizeof q[1], t);
    k += snprintf(flags + k, n - (size_t)k, " %s %s", texts[i][1], q[1]);
  }
  /* the JSON's pairs are [height, width] / [top, left]; the flags WIDTHxHEIGHT / TOP,LEFT */
  static const char *const pairs[][2] = {{"original_size", "--original-size"},
                                         {"crops_coords_top_left", "--crop-top-left"},
                                         {"target_size", "--target-size"}};
  for (int i = 0; i < 3; i++) {
    int64_t v[2];
    if (!pair(c, pairs[i][0], v)) continue;
    cJSON *a = cJSON_AddArrayToObject(o, pairs[i][0]);
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[0]));
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[1]));
    if (i == 1) k += snprintf(flags + k, n - (size_t)k, " %s %lld,%lld", pairs[i][1], (long long)v[0], (long long)v[1]);
    else k += snprintf(flags + k, n - (size_t)k, " %s %lldx%lld", pairs[i][1], (long long)v[1], (long long)v[0]);
  }
  char *json = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return json;
}

/* Job id failed with a one-line error holding both needles. */
static void expect_failed(const char *id, const char *n1, const char *n2) {
  char *state = fu_hget(id, "state"), *error = fu_hget(id, "error");
  CHECK(state && strcmp(state, "failed") == 0, "%s: state %s, expected failed", id, state ? state : "(none)");
  CHECK(error && !strchr(error, '\n'), "%s: error is not one line: %s", id, error ? error : "(none)");
  CHECK(error && strstr(error, n1) && (!n2 || strstr(error, n2)), "%s: error lacks '%s'/'%s': %s", id, n1,
        n2 ? n2 : "", error ? error : "(none)");
  CHECK(error && !strstr(error, "attempts"), "%s: retried instead of refused at its claim: %s", id, error ? error : "");
  printf("%-26s failed: %s\n", id, error ? error : "(none)");
  free(state), free(error);
}

/* `sdc generate <flags>` must exit 2 with one stderr line holding needle. */
static void expect_generate_refused(const char *what, const char *model, const char *flags, const char *needle) {
  char cmd[4096], out[4096];
  snprintf(cmd, sizeof cmd, "'%s' generate --quiet --model '%s' --steps 2 --output '%s/refused.png' %s", g_sdc, model,
           g_tmp, flags);
  int st = sdc_test_run(cmd, out, sizeof out);
  size_t len = strlen(out);
  while (len && out[len - 1] == '\n') out[--len] = 0;
  CHECK(st == 2, "%s: sdc generate exit %d, expected 2: %s", what, st, out);
  CHECK(!strchr(out, '\n') && strstr(out, needle), "%s: stderr is not one line naming '%s': %s", what, needle, out);
  printf("%-26s sdc generate exit %d: %s\n", what, st, out);
}

/* Image 0 of job id (from Redis, into got) against the PNG sdc generate wrote (want): identical pixels, and the same
 * "parameters" text but for its origin ("Model: <path>" there, "Job: <id>" here). 1 when both hold. */
static int same_as_generate(const char *id, const char *got, const char *want) {
  redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:0", id);
  int have = r && r->type == REDIS_REPLY_STRING;
  FILE *fp = have ? fopen(got, "wb") : NULL;
  if (fp) fwrite(r->str, 1, r->len, fp), fclose(fp);
  if (r) freeReplyObject(r);
  CHECK(have, "%s: no image 0 in Redis", id);
  if (!have) return 0;
  uint8_t *a = NULL, *b = NULL;
  char *ta = NULL, *tb = NULL;
  int64_t wa = 0, ha = 0, wb = 0, hb = 0;
  int ea = sdc_png_read(got, &a, &wa, &ha, &ta), eb = sdc_png_read(want, &b, &wb, &hb, &tb);
  long long diff = -1;
  if (!ea && !eb && wa == wb && ha == hb) {
    diff = 0;
    for (int64_t k = 0; k < wa * ha * 3; k++) diff += a[k] != b[k];
  }
  CHECK(diff == 0, "%s: %lld bytes differ from sdc generate (%lldx%lld vs %lldx%lld)", id, diff, (long long)wa,
        (long long)ha, (long long)wb, (long long)hb);
  /* generate's text with its origin replaced by the job's */
  char expect[8192] = "", origin[1200];
  snprintf(origin, sizeof origin, "Model: %s", g_model);
  const char *at = tb ? strstr(tb, origin) : NULL;
  if (at) snprintf(expect, sizeof expect, "%.*sJob: %s%s", (int)(at - tb), tb, id, at + strlen(origin));
  const int same_text = at && ta && strcmp(ta, expect) == 0;
  CHECK(same_text, "%s: parameters differ:\n  cluster:  %s\n  generate: %s", id, ta ? ta : "(none)", tb ? tb : "(none)");
  free(a), free(b), free(ta), free(tb);
  return diff == 0 && same_text;
}

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_sdxl_cluster");
  const char *ref = sdc_test_ref_dir();
  char sd1[1024], path[1300];
  snprintf(sd1, sizeof sd1, "%s", g_model);
  snprintf(g_model, sizeof g_model, "%s/sdxl/tiny-sdxl", ref);
  snprintf(path, sizeof path, "%s/model_index.json", g_model);
  if (access(path, R_OK) != 0) sdc_test_skip("no SDXL reference folder (SDC_REF/sdxl/tiny-sdxl)");
  const double t_start = sdc_clock_mono_s();
  /* the cases' parameters, read as sdc verify reads them (Python's bare -Infinity made parseable) */
  char *text = NULL;
  snprintf(path, sizeof path, "%s/sdxl/goldens.json", ref);
  CHECK(sdc_read_file(path, &text, NULL) == SDC_OK, "read %s", path);
  if (text) sdc_json_nonfinite(text);
  cJSON *manifest = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(manifest, "tiny-sdxl");
  const cJSON *pipes = cJSON_GetObjectItemCaseSensitive(model, "pipelines");
  CHECK(cJSON_IsObject(pipes), "%s: no tiny-sdxl.pipelines", path);
  sdc_st_file gold;
  snprintf(path, sizeof path, "%s/sdxl/goldens.safetensors", ref);
  int gerr = sdc_st_open(&gold, path);
  CHECK(gerr == SDC_OK, "open %s: %s", path, sdc_errmsg(gerr));
  if (!cJSON_IsObject(pipes) || gerr) return sdc_test_finish("test_sdxl_cluster");
  setenv("OMP_NUM_THREADS", THREADS, 1), setenv("OPENBLAS_NUM_THREADS", THREADS, 1); /* for sdc generate */

  pid_t redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(10000), "redis did not start");
  char url[64], log[1200];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  snprintf(log, sizeof log, "%s/cluster-sdxl.log", g_tmp);
  const char *extra[] = {"--threads", THREADS, "--replicas", "unet-down=2", NULL};
  double t0 = sdc_clock_mono_s();
  pid_t cl = fu_start_cluster(url, extra, log);
  printf("cluster (tiny-sdxl, 2 unet-down replicas) up in %.1f s\n", sdc_clock_mono_s() - t0);

  char ids[N_CASES][64], flags[N_CASES][4096];
  const char *all[N_CASES + 4];
  int n_all = 0;
  for (int i = 0; i < N_CASES; i++) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(pipes, g_cases[i]);
    CHECK(cJSON_IsObject(c), "goldens.json: no case %s", g_cases[i]);
    snprintf(ids[i], sizeof ids[i], "xl-%s", g_cases[i]);
    char *json = c ? case_job(ids[i], c, flags[i], sizeof flags[i]) : NULL;
    CHECK(json && fu_xadd(json)[0], "%s: XADD failed", ids[i]);
    free(json);
    all[n_all++] = ids[i];
  }
  /* what SDXL does not take: refused at the claim, naming the field, while the good jobs run */
  CHECK(fu_xadd("{\"id\":\"xl-bad-init\",\"prompt\":\"a fox\",\"init_image\":\"in:none\",\"steps\":2}")[0], "XADD");
  CHECK(fu_xadd("{\"id\":\"xl-bad-mask\",\"prompt\":\"a fox\",\"init_image\":{\"base64\":\"iVBORw0KGgo=\"},"
                "\"mask\":{\"base64\":\"iVBORw0KGgo=\"},\"steps\":2}")[0], "XADD");
  CHECK(fu_xadd("{\"id\":\"xl-bad-lora\",\"prompt\":\"a fox\",\"loras\":[{\"name\":\"style\"}],\"steps\":2}")[0],
        "XADD");
  all[n_all++] = "xl-bad-init", all[n_all++] = "xl-bad-mask", all[n_all++] = "xl-bad-lora";
  t0 = sdc_clock_mono_s();
  int done = fu_wait_done(all, n_all, 60000);
  printf("%d of %d jobs done in %.1f s\n", done, n_all, sdc_clock_mono_s() - t0);
  CHECK(done == N_CASES, "%d jobs done, expected the %d good ones", done, N_CASES);
  expect_failed("xl-bad-init", "init_image", "not supported");
  expect_failed("xl-bad-mask", "mask", "not supported");
  expect_failed("xl-bad-lora", "loras", "not supported for SDXL");

  /* sdc submit with SDXL's flags (micro_cond's), then sdc wait: the command line's way */
  char sub_png[1300];
  snprintf(sub_png, sizeof sub_png, "%s/submit-micro_cond.png", g_tmp);
  {
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "id=$('%s' submit --redis %s --id xl-submit %s) && '%s' wait \"$id\" --quiet --redis %s "
             "--timeout 60 --output '%s'", g_sdc, url, flags[1], g_sdc, url, sub_png);
    CHECK(sdc_test_run(cmd, out, sizeof out) == 0, "sdc submit/wait with SDXL flags: %s", out);
  }
  char *js = fu_hget("xl-submit", "state");
  CHECK(js && strcmp(js, "done") == 0, "xl-submit: %s", js ? js : "(none)");
  free(js);

  for (int i = 0; i < N_CASES; i++) {
    char cmd[8192], err[4096], want[1300], got[1300];
    snprintf(want, sizeof want, "%s/%s-gen.png", g_tmp, ids[i]);
    snprintf(got, sizeof got, "%s/%s-cluster.png", g_tmp, ids[i]);
    snprintf(cmd, sizeof cmd, "'%s' generate --quiet --model '%s' %s --output '%s'", g_sdc, g_model, flags[i], want);
    if (sdc_test_run(cmd, err, sizeof err) != 0) {
      CHECK(0, "%s: sdc generate failed: %s", ids[i], err);
      continue;
    }
    const int same = same_as_generate(ids[i], got, want);
    /* and diffusers' image within the PNG tolerance */
    snprintf(path, sizeof path, "tiny-sdxl/pipe/%s/png_uint8", g_cases[i]);
    const sdc_st_entry *e = sdc_st_find(&gold, path);
    CHECK(e != NULL, "golden %s missing", path);
    double frac = 0;
    int64_t worst = -1;
    if (e) sdc_test_png_golden(got, 1, sdc_st_ptr(&gold, e), sdc_shape_numel(e->ndim, e->shape), &frac, &worst);
    CHECK(frac >= 0.999 && worst >= 0 && worst <= 3, "%s: %.4f%% of bytes within 1, max diff %lld: outside the PNG "
          "tolerance", ids[i], 100 * frac, (long long)worst);
    printf("%-26s identical to sdc generate (pixels, parameters): %s; diffusers: %.4f%% within 1, max diff %lld\n",
           ids[i], same ? "yes" : "NO", 100 * frac, (long long)worst);
    if (i == 1) { /* the sdc submit run of the same case */
      uint8_t *a = NULL, *b = NULL;
      int64_t wa = 0, ha = 0, wb = 0, hb = 0;
      int ok = !sdc_png_read(sub_png, &a, &wa, &ha, NULL) && !sdc_png_read(want, &b, &wb, &hb, NULL) && wa == wb &&
               ha == hb && memcmp(a, b, (size_t)(wa * ha * 3)) == 0;
      CHECK(ok, "sdc submit --original-size/--crop-top-left/--target-size: pixels differ from sdc generate");
      printf("%-26s identical to sdc generate: %s\n", "sdc submit (micro_cond)", ok ? "yes" : "NO");
      free(a), free(b);
    }
  }
  fu_stop_cluster(cl);

  /* an SD 1.x cluster refuses SDXL's fields, naming each */
  snprintf(g_model, sizeof g_model, "%s", sd1);
  snprintf(log, sizeof log, "%s/cluster-sd1.log", g_tmp);
  const char *extra1[] = {"--threads", THREADS, NULL};
  cl = fu_start_cluster(url, extra1, log);
  static const char *const bad1[][3] = {
      {"sd1-prompt_2", "\"prompt_2\":\"an oil painting\"", "prompt_2"},
      {"sd1-negative_prompt_2", "\"negative_prompt_2\":\"blurry\"", "negative_prompt_2"},
      {"sd1-original_size", "\"original_size\":[512,384]", "original_size"},
      {"sd1-crop", "\"crops_coords_top_left\":[0,0]", "crops_coords_top_left"},
      {"sd1-target_size", "\"target_size\":[64,64]", "target_size"},
  };
  const int n_bad1 = (int)(sizeof bad1 / sizeof *bad1);
  const char *ids1[8];
  for (int i = 0; i < n_bad1; i++) {
    char json[512];
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"a fox\",\"steps\":2,%s}", bad1[i][0], bad1[i][1]);
    CHECK(fu_xadd(json)[0], "%s: XADD failed", bad1[i][0]);
    ids1[i] = bad1[i][0];
  }
  CHECK(fu_xadd("{\"id\":\"sd1-good\",\"prompt\":\"a fox\",\"width\":64,\"height\":64,\"steps\":2,\"seed\":1}")[0],
        "XADD");
  ids1[n_bad1] = "sd1-good";
  done = fu_wait_done(ids1, n_bad1 + 1, 60000);
  CHECK(done == 1, "%d of the SD 1.x jobs done, expected only sd1-good", done);
  for (int i = 0; i < n_bad1; i++) expect_failed(bad1[i][0], bad1[i][2], "only for SDXL");
  fu_stop_cluster(cl);

  /* sdc generate refuses the same, exit 2, one line */
  char init[1300];
  snprintf(init, sizeof init, "--prompt x --init-image '%s/pipelines/inputs/init_128x128.png'", ref);
  expect_generate_refused("generate sd1 --prompt-2", sd1, "--prompt x --prompt-2 y", "prompt_2");
  expect_generate_refused("generate sd1 --original-size", sd1, "--prompt x --original-size 512x384", "original_size");
  expect_generate_refused("generate sd1 --crop-top-left", sd1, "--prompt x --crop-top-left 0,0",
                          "crops_coords_top_left");
  char xl[1100];
  snprintf(xl, sizeof xl, "%s/sdxl/tiny-sdxl", ref);
  expect_generate_refused("generate sdxl --init-image", xl, init, "init_image");
  expect_generate_refused("generate --original-size 512", xl, "--prompt x --original-size 512", "--original-size");
  expect_generate_refused("generate --crop-top-left -1,0", xl, "--prompt x --crop-top-left -1,0", "--crop-top-left");
  expect_generate_refused("generate --target-size 0x8", xl, "--prompt x --target-size 0x8", "--target-size");

  sdc_st_close(&gold);
  cJSON_Delete(manifest);
  if (redis) {
    kill(redis, SIGTERM);
    fu_reap(redis, 10000);
  }
  printf("test_sdxl_cluster: %.1f s\n", sdc_clock_mono_s() - t_start);
  return sdc_test_finish("test_sdxl_cluster");
}
