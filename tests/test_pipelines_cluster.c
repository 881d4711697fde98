/* test_pipelines_cluster.c - img2img, both inpainting kinds, LoRA (stacked, with img2img) and LCM through a real
 * `sdc cluster` (2 replicas per UNet shard) give the same pixels as `sdc generate` with the same parameters and
 * threads; bad image inputs and LoRAs each fail their own job with one line naming the culprit while good jobs
 * submitted alongside complete. Uses the cases of the pipelines reference folder; skips without it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "fault_util.h"
#include "job.h"
#include "pngio.h"
#include "test_util.h"

static char g_pipes[1024], g_loras[1200];

/* A file's bytes (caller frees), or NULL. */
static uint8_t *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
  *n = p ? fread(p, 1, (size_t)len, fp) : 0;
  fclose(fp);
  return p;
}

static void copy_file(const char *from, const char *to) {
  size_t n;
  uint8_t *p = slurp(from, &n);
  FILE *fp = p ? fopen(to, "wb") : NULL;
  CHECK(fp && fwrite(p, 1, n, fp) == n, "cannot copy %s to %s", from, to);
  if (fp) fclose(fp);
  free(p);
}

/* SET key to n bytes. */
static void put(const char *key, const void *p, size_t n) {
  redisReply *r = redisCommand(g_rc, "SET %s %b", key, p, n);
  CHECK(r && r->type == REDIS_REPLY_STATUS, "SET %s failed", key);
  if (r) freeReplyObject(r);
}

static void put_file(const char *key, const char *name) {
  char path[1300];
  snprintf(path, sizeof path, "%s/inputs/%s", g_pipes, name);
  size_t n;
  uint8_t *p = slurp(path, &n);
  CHECK(p != NULL, "cannot read %s", path);
  if (p) put(key, p, n);
  free(p);
}

/* One good case: the job's JSON fields after the prompt, and the matching sdc generate flags. */
typedef struct {
  const char *id, *json, *gen;
} good_case;

/* The cluster's images of job id against `sdc generate <gen>` on model: identical RGB, each of n images. */
static void compare_n(const char *id, const char *model, const char *gen, int n_img) {
  char cmd[4096], err[4096], out[1200], want[1300], got[1200];
  snprintf(out, sizeof out, "%s/%s-gen.png", g_tmp, id);
  snprintf(cmd, sizeof cmd, "cd '%s/inputs' && '%s' generate --quiet --model '%s' %s --output '%s'", g_pipes, g_sdc,
           model, gen, out);
  double t0 = sdc_clock_mono_s();
  if (sdc_test_run(cmd, err, sizeof err) != 0) {
    CHECK(0, "%s: sdc generate failed: %s", id, err);
    return;
  }
  const double gen_s = sdc_clock_mono_s() - t0;
  for (int i = 0; i < n_img; i++) {
    if (n_img > 1) snprintf(want, sizeof want, "%s/%s-gen-%d.png", g_tmp, id, i); /* generate's FILE-i.png */
    else snprintf(want, sizeof want, "%s", out);
    snprintf(got, sizeof got, "%s/%s-cluster-%d.png", g_tmp, id, i);
    redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:%d", id, i);
    int have = r && r->type == REDIS_REPLY_STRING;
    FILE *fp = have ? fopen(got, "wb") : NULL;
    if (fp) fwrite(r->str, 1, r->len, fp), fclose(fp);
    if (r) freeReplyObject(r);
    CHECK(have, "%s: no image %d in Redis", id, i);
    if (!have) continue;
    uint8_t *a = NULL, *b = NULL;
    int64_t wa = 0, ha = 0, wb = 0, hb = 0;
    int ea = sdc_png_read(got, &a, &wa, &ha, NULL), eb = sdc_png_read(want, &b, &wb, &hb, NULL);
    long long diff = -1;
    if (!ea && !eb && wa == wb && ha == hb) {
      diff = 0;
      for (int64_t k = 0; k < wa * ha * 3; k++) diff += a[k] != b[k];
    }
    free(a), free(b);
    CHECK(diff == 0, "%s image %d: %lld bytes differ from sdc generate (%lldx%lld vs %lldx%lld)", id, i, diff,
          (long long)wa, (long long)ha, (long long)wb, (long long)hb);
    printf("%-22s image %d %lldx%lld identical to sdc generate: %s (generate %.1f s)\n", id, i, (long long)wa,
           (long long)ha, diff == 0 ? "yes" : "NO", gen_s);
  }
}

static void compare(const char *id, const char *model, const char *gen) { compare_n(id, model, gen, 1); }

/* Submits {"id":id,"prompt":...,<fields>} with XADD. */
static void submit(const char *id, const char *fields) {
  char json[8192];
  snprintf(json, sizeof json, "{\"id\":\"%s\",%s}", id, fields);
  CHECK(fu_xadd(json)[0] != 0, "%s: XADD failed", id);
}

/* Job id failed with a one-line error holding both needles. */
static void expect_failed(const char *id, const char *n1, const char *n2) {
  char *state = fu_hget(id, "state"), *error = fu_hget(id, "error");
  CHECK(state && strcmp(state, "failed") == 0, "%s: state %s, expected failed", id, state ? state : "(none)");
  CHECK(error && !strchr(error, '\n'), "%s: error is not one line: %s", id, error ? error : "(none)");
  CHECK(error && strstr(error, n1), "%s: error lacks '%s': %s", id, n1, error ? error : "(none)");
  CHECK(error && (!n2 || strstr(error, n2)), "%s: error lacks '%s': %s", id, n2, error ? error : "(none)");
  printf("%-22s failed: %s\n", id, error ? error : "(none)");
  free(state), free(error);
}

#define P_ASTRO "\"prompt\":\"a photograph of an astronaut riding a horse\""
#define P_FOX "\"prompt\":\"a watercolor fox in the snow\""
#define G_ASTRO "--prompt 'a photograph of an astronaut riding a horse'"
#define G_FOX "--prompt 'a watercolor fox in the snow'"

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_pipelines_cluster");
  snprintf(g_pipes, sizeof g_pipes, "%s/pipelines", sdc_test_ref_dir());
  char inpaint_model[1200];
  snprintf(inpaint_model, sizeof inpaint_model, "%s/tiny-sd1-inpaint", g_pipes);
  if (access(inpaint_model, R_OK) != 0) sdc_test_skip("no pipelines reference folder (pipelines/tiny-sd1-inpaint)");
  const double t_start = sdc_clock_mono_s();
  /* the workers' LoRA folder: copies (a symlink out of the folder is refused, as it should be) */
  snprintf(g_loras, sizeof g_loras, "%s/loras", g_tmp);
  mkdir(g_loras, 0700);
  char from[1300], to[1300];
  static const char *const lora_files[][2] = {{"tiny-sd1-style", "style"},
                                              {"tiny-sd1-locon", "locon"},
                                              {"tiny-sd2-style", "wrongshape"}}; /* tiny-sd2's: shapes do not fit */
  for (int i = 0; i < 3; i++) {
    snprintf(from, sizeof from, "%s/lora/%s.safetensors", g_pipes, lora_files[i][0]);
    snprintf(to, sizeof to, "%s/%s.safetensors", g_loras, lora_files[i][1]);
    copy_file(from, to);
  }
  /* a symlink leading out of the folder: its name is valid, its file is not the folder's */
  snprintf(from, sizeof from, "%s/lora/tiny-sd1-style.safetensors", g_pipes);
  snprintf(to, sizeof to, "%s/escape.safetensors", g_loras);
  CHECK(symlink(from, to) == 0, "symlink %s: %s", to, strerror(errno));
  pid_t redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(10000), "redis did not start");
  put_file("in:init128", "init_128x128.png");
  put_file("in:mask128", "mask_128x128.png");
  put_file("in:init192", "init_192x128.png");
  put_file("in:mask192", "mask_192x128.png");
  /* hostile images: a truncated PNG and a 1x1 one */
  {
    char path[1300];
    snprintf(path, sizeof path, "%s/inputs/init_128x128.png", g_pipes);
    size_t n;
    uint8_t *p = slurp(path, &n);
    if (p) put("in:truncated", p, n / 2);
    free(p);
    uint8_t px[3] = {200, 10, 10}, *png = NULL;
    size_t pn = 0;
    CHECK(sdc_png_encode(px, 1, 1, 0, NULL, NULL, &png, &pn) == SDC_OK, "1x1 PNG");
    if (png) put("in:tiny", png, pn);
    free(png);
    /* a 2048x2048 PNG of noise (about 12 MB): read from its key and probed at claim like any other */
    const int64_t big = 2048;
    uint8_t *rgb = malloc((size_t)(big * big * 3));
    uint32_t x = 12345;
    for (int64_t k = 0; rgb && k < big * big * 3; k++) x = x * 1664525u + 1013904223u, rgb[k] = (uint8_t)(x >> 24);
    png = NULL, pn = 0;
    CHECK(rgb && sdc_png_encode(rgb, big, big, 0, NULL, NULL, &png, &pn) == SDC_OK, "2048x2048 PNG");
    if (png) put("in:big", png, pn);
    printf("2048x2048 noise PNG: %zu bytes\n", pn);
    free(png), free(rgb);
  }
  /* an inline (base64) init image for one case */
  char *inline_json = NULL;
  {
    char path[1300];
    snprintf(path, sizeof path, "%s/inputs/init_128x128.png", g_pipes);
    size_t n;
    uint8_t *p = slurp(path, &n);
    char *b64 = p ? sdc_base64_encode(p, n) : NULL;
    inline_json = malloc(b64 ? strlen(b64) + 256 : 1);
    if (b64) sprintf(inline_json, "{\"base64\":\"%s\"}", b64);
    free(p), free(b64);
  }

  char url[64], log[1200];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  snprintf(log, sizeof log, "%s/cluster-sd1.log", g_tmp);
  const char *extra[] = {"--replicas", "unet-down=2,unet-mid=2,unet-up=2", "--lora-dir", g_loras, NULL};
  double t0 = sdc_clock_mono_s();
  pid_t cl = fu_start_cluster(url, extra, log);
  printf("cluster (tiny-sd1, 2 replicas per UNet shard) up in %.1f s\n", sdc_clock_mono_s() - t0);

  static const good_case good[] = {
      {"img2img-ddim", P_ASTRO ",\"init_image\":\"in:init128\",\"strength\":0.75,\"steps\":10,\"seed\":42,"
                       "\"scheduler\":\"ddim\"",
       G_ASTRO " --init-image init_128x128.png --strength 0.75 --steps 10 --seed 42 --scheduler ddim"},
      {"inpaint4-euler-half", P_FOX ",\"init_image\":\"in:init192\",\"mask\":\"in:mask192\",\"strength\":0.6,"
                              "\"steps\":10,\"seed\":9,\"scheduler\":\"euler\"",
       G_FOX " --init-image init_192x128.png --mask mask_192x128.png --strength 0.6 --steps 10 --seed 9 --scheduler euler"},
      {"inpaint4-ddim", P_ASTRO ",\"init_image\":\"in:init128\",\"mask\":\"in:mask128\",\"steps\":10,\"seed\":8,"
                        "\"scheduler\":\"ddim\"",
       G_ASTRO " --init-image init_128x128.png --mask mask_128x128.png --steps 10 --seed 8 --scheduler ddim"},
      {"lora-stack-dpmpp", "\"prompt\":\"a castle\",\"loras\":[{\"name\":\"style\"},{\"name\":\"locon\",\"multiplier\":-0.6}],"
                           "\"width\":128,\"height\":128,\"steps\":10,\"seed\":13,\"scheduler\":\"dpmpp_2m\"",
       "--prompt 'a castle' --width 128 --height 128 --steps 10 --seed 13 --scheduler dpmpp_2m --lora '" /* below */},
      {"lora-img2img", P_FOX ",\"init_image\":\"in:init128\",\"strength\":0.7,\"loras\":[{\"name\":\"style\"},"
                       "{\"name\":\"locon\",\"multiplier\":-0.6}],\"steps\":10,\"seed\":14,\"scheduler\":\"ddim\"",
       G_FOX " --init-image init_128x128.png --strength 0.7 --steps 10 --seed 14 --scheduler ddim --lora '"},
      {"img2img-2-images", "\"prompt\":\"a castle\",\"init_image\":\"in:init192\",\"strength\":0.9,\"num_images\":2,"
                           "\"steps\":10,\"seed\":123,\"scheduler\":\"dpmpp_2m_karras\"",
       "--prompt 'a castle' --init-image init_192x128.png --strength 0.9 --num-images 2 --steps 10 --seed 123 "
       "--scheduler dpmpp_2m_karras"},
      {"lcm-4", P_ASTRO ",\"width\":128,\"height\":128,\"steps\":4,\"seed\":10,\"scheduler\":\"lcm\",\"guidance_scale\":1",
       G_ASTRO " --width 128 --height 128 --steps 4 --seed 10 --scheduler lcm --guidance-scale 1"},
  };
  const int n_good = (int)(sizeof good / sizeof *good);
  char gen_args[8][2048];
  for (int i = 0; i < n_good; i++) {
    const char *g = good[i].gen;
    if (g[strlen(g) - 1] == '\'') /* the LoRA cases: the same two files sdc generate reads by path */
      snprintf(gen_args[i], sizeof gen_args[i], "%s%s/style.safetensors:1' --lora '%s/locon.safetensors:-0.6'", g, g_loras,
               g_loras);
    else
      snprintf(gen_args[i], sizeof gen_args[i], "%s", g);
  }
  /* bad jobs, interleaved with the good ones: each fails alone */
  typedef struct {
    const char *id, *fields, *n1, *n2;
  } bad_case;
  static const bad_case bad[] = {
      {"bad-truncated", P_FOX ",\"init_image\":\"in:truncated\",\"steps\":4,\"seed\":1", "init_image", NULL},
      {"bad-mask-size", P_FOX ",\"init_image\":\"in:init128\",\"mask\":\"in:mask192\",\"steps\":4", "mask", "in:mask192"},
      {"bad-1x1", P_FOX ",\"init_image\":\"in:tiny\",\"steps\":4", "in:tiny", "1x1"},
      {"bad-size-differs", P_FOX ",\"init_image\":\"in:init128\",\"width\":192,\"steps\":4", "in:init128", "192x128"},
      {"bad-big-size", P_FOX ",\"init_image\":\"in:big\",\"width\":512,\"steps\":4", "in:big",
       "2048x2048 pixels, but the job asks for 512x2048"},
      {"bad-strength-0", P_FOX ",\"init_image\":\"in:init128\",\"strength\":0", "'strength'", "(0, 1]"},
      {"bad-strength-1.5", P_FOX ",\"init_image\":\"in:init128\",\"strength\":1.5", "'strength'", "1.5"},
      {"bad-strength-nan", P_FOX ",\"init_image\":\"in:init128\",\"strength\":\"nan\"", "'strength'", "nan"},
      {"bad-strength-inf", P_FOX ",\"init_image\":\"in:init128\",\"strength\":1e999", "'strength'", "inf"},
      {"bad-lora-shape", P_FOX ",\"loras\":[{\"name\":\"wrongshape\"}],\"width\":128,\"height\":128,\"steps\":4",
       "wrongshape", "does not fit"},
      {"bad-lora-unknown", P_FOX ",\"loras\":[{\"name\":\"nosuch\"}],\"width\":128,\"height\":128,\"steps\":4", "nosuch",
       "unknown LoRA"},
      {"bad-lora-symlink", P_FOX ",\"loras\":[{\"name\":\"escape\"}],\"width\":128,\"height\":128,\"steps\":4",
       "escape", "outside its --lora-dir"},
      {"bad-lora-path", P_FOX ",\"loras\":[{\"name\":\"../style\"}],\"width\":128,\"height\":128,\"steps\":4",
       "'loras[0].name'", "../style"},
      {"bad-key-sdc", P_FOX ",\"init_image\":\"sdc:job:img2img-ddim:image:0\",\"steps\":4", "'init_image'", "sdc:"},
      {"bad-key-missing", P_FOX ",\"init_image\":\"in:nosuchkey\",\"steps\":4", "in:nosuchkey", "no such key"},
  };
  const int n_bad = (int)(sizeof bad / sizeof *bad);
  const char *ids[32];
  int n_ids = 0;
  for (int i = 0; i < n_good || i < n_bad; i++) {
    if (i < n_bad) submit(bad[i].id, bad[i].fields), ids[n_ids++] = bad[i].id;
    if (i < n_good) submit(good[i].id, good[i].json), ids[n_ids++] = good[i].id;
  }
  {
    char fields[16384];
    int need = snprintf(fields, sizeof fields, P_ASTRO ",\"init_image\":%s,\"strength\":0.5,\"steps\":10,\"seed\":1,"
                        "\"scheduler\":\"euler_a\",\"negative_prompt\":\"blurry\"", inline_json);
    CHECK(need < (int)sizeof fields, "inline JSON of %d bytes does not fit the test's buffer", need);
    submit("img2img-inline", fields);
    ids[n_ids++] = "img2img-inline";
  }
  t0 = sdc_clock_mono_s();
  int done = fu_wait_done(ids, n_ids, 90000);
  printf("%d of %d jobs done (%d good) in %.1f s\n", done, n_ids, n_good + 1, sdc_clock_mono_s() - t0);
  CHECK(done == n_good + 1, "%d jobs done, expected the %d good ones", done, n_good + 1);
  for (int i = 0; i < n_bad; i++) expect_failed(bad[i].id, bad[i].n1, bad[i].n2);
  /* an image that does not decode fails at once (StageReply.input_error), not after retries */
  char *trunc_err = fu_hget("bad-truncated", "error");
  CHECK(trunc_err && !strstr(trunc_err, "attempts"), "a truncated PNG was retried: %s", trunc_err ? trunc_err : "");
  free(trunc_err);
  /* so does a LoRA that does not fit: every worker reads the same folder */
  char *shape_err = fu_hget("bad-lora-shape", "error");
  CHECK(shape_err && !strstr(shape_err, "attempts"), "a LoRA of the wrong shape was retried: %s",
        shape_err ? shape_err : "");
  free(shape_err);
  /* sdc submit --init-image --mask --strength --lora, then sdc wait --output: the command line's way */
  {
    char cmd[4096], out[4096], want[1300], got[1300];
    snprintf(got, sizeof got, "%s/submit-cli.png", g_tmp);
    snprintf(cmd, sizeof cmd,
             "cd '%s/inputs' && id=$('%s' submit --redis %s " G_FOX " --init-image init_192x128.png --mask "
             "mask_192x128.png --strength 0.6 --lora style:0.5 --steps 10 --seed 21 --scheduler euler) && '%s' wait "
             "\"$id\" --quiet --redis %s --timeout 60 --output '%s'",
             g_pipes, g_sdc, url, g_sdc, url, got);
    CHECK(sdc_test_run(cmd, out, sizeof out) == 0, "sdc submit/wait with image flags: %s", out);
    snprintf(want, sizeof want, "%s/submit-cli-gen.png", g_tmp);
    snprintf(cmd, sizeof cmd,
             "cd '%s/inputs' && '%s' generate --quiet --model '%s' " G_FOX " --init-image init_192x128.png --mask "
             "mask_192x128.png --strength 0.6 --lora '%s/style.safetensors:0.5' --steps 10 --seed 21 --scheduler euler "
             "--output '%s'",
             g_pipes, g_sdc, g_model, g_loras, want);
    CHECK(sdc_test_run(cmd, out, sizeof out) == 0, "sdc generate: %s", out);
    uint8_t *a = NULL, *b = NULL;
    int64_t wa = 0, ha = 0, wb = 0, hb = 0;
    int ok = !sdc_png_read(got, &a, &wa, &ha, NULL) && !sdc_png_read(want, &b, &wb, &hb, NULL) && wa == wb &&
             ha == hb && memcmp(a, b, (size_t)(wa * ha * 3)) == 0;
    CHECK(ok, "sdc submit --init-image/--mask/--lora: pixels differ from sdc generate");
    printf("%-22s %lldx%lld identical to sdc generate: %s\n", "sdc submit (cli)", (long long)wa, (long long)ha,
           ok ? "yes" : "NO");
    free(a), free(b);
  }
  char *lh = fu_hget("lora-img2img", "loras"), *sh = fu_hget("lora-img2img", "strength");
  CHECK(lh && strcmp(lh, "style:1,locon:-0.6") == 0, "hash loras: %s", lh ? lh : "(none)");
  CHECK(sh && strcmp(sh, "0.7") == 0, "hash strength: %s", sh ? sh : "(none)");
  free(lh), free(sh);
  for (int i = 0; i < n_good; i++) compare_n(good[i].id, g_model, gen_args[i], strstr(good[i].json, "\"num_images\":2") ? 2 : 1);
  compare("img2img-inline", g_model,
          G_ASTRO " --init-image init_128x128.png --strength 0.5 --steps 10 --seed 1 --scheduler euler_a "
                  "--negative-prompt blurry");
  fu_stop_cluster(cl);

  /* the 9-channel inpainting model: its own cluster */
  snprintf(g_model, sizeof g_model, "%s", inpaint_model);
  snprintf(log, sizeof log, "%s/cluster-inpaint.log", g_tmp);
  const char *extra9[] = {"--replicas", "unet-down=2,unet-mid=2,unet-up=2", NULL};
  cl = fu_start_cluster(url, extra9, log);
  submit("inpaint9-ddim", P_ASTRO ",\"init_image\":\"in:init128\",\"mask\":\"in:mask128\",\"steps\":10,\"seed\":15,"
                          "\"scheduler\":\"ddim\"");
  submit("inpaint9-half", P_FOX ",\"init_image\":\"in:init192\",\"mask\":\"in:mask192\",\"strength\":0.6,\"steps\":10,"
                          "\"seed\":16,\"scheduler\":\"euler_a\"");
  submit("bad9-lora", P_FOX ",\"init_image\":\"in:init128\",\"mask\":\"in:mask128\",\"loras\":[{\"name\":\"style\"}],"
                      "\"steps\":4");
  const char *ids9[] = {"inpaint9-ddim", "inpaint9-half", "bad9-lora"};
  done = fu_wait_done(ids9, 3, 60000);
  CHECK(done == 2, "%d of the 2 good 9-channel jobs done", done);
  expect_failed("bad9-lora", "no --lora-dir", "cannot apply LoRA style");
  compare("inpaint9-ddim", g_model,
          G_ASTRO " --init-image init_128x128.png --mask mask_128x128.png --steps 10 --seed 15 --scheduler ddim");
  compare("inpaint9-half", g_model,
          G_FOX " --init-image init_192x128.png --mask mask_192x128.png --strength 0.6 --steps 10 --seed 16 "
                "--scheduler euler_a");
  fu_stop_cluster(cl);
  free(inline_json);
  if (redis) {
    kill(redis, SIGTERM);
    fu_reap(redis, 10000);
  }
  printf("test_pipelines_cluster: %.1f s\n", sdc_clock_mono_s() - t_start);
  return sdc_test_finish("test_pipelines_cluster");
}
