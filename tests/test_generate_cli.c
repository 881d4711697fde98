/* test_generate_cli.c - sdc generate on a model-init'd tiny model: bad input is one line, exit 2, nothing written. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file.h"
#include "pngio.h"
#include "safetensors.h"
#include "sdc_limits.h"
#include "test_util.h"

static const char *g_sdc, *g_tmp;
static char g_model[1024], g_out[1024];

static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

/* `sdc generate --model <tiny> --output <out>/img.png <args>` must fail with exit 2,
 * one stderr line containing needle, and leave the output folder empty. */
static void expect_bad(const char *what, const char *args, const char *needle) {
  char cmd[4096], err[4096];
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --output '%s/img.png' --steps 2 --quiet %s", g_sdc, g_model,
           g_out, args);
  int st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 2, "%s: exit %d, expected 2 (%s)", what, st, err);
  CHECK(sdc_test_lines(err) == 1, "%s: expected one line of error, got: %s", what, err);
  CHECK(strstr(err, needle) != NULL, "%s: error lacks '%s': %s", what, needle, err);
  CHECK(dir_entries(g_out) == 0, "%s: something was written to %s", what, g_out);
  printf("%-30s -> %s", what, err);
}

/* What users bring from other tools: --seed -1, --json, the scheduler named in the PNG, the 77-token
 * warning, --version, help COMMAND, model-init refusing a non-empty folder. */
static void test_habits(void) {
  char cmd[4096], err[4096], dir[1100], path[1200], *params = NULL, *json = NULL;
  snprintf(dir, sizeof dir, "%s/habits", g_tmp);
  mkdir(dir, 0755);
  snprintf(cmd, sizeof cmd,
           "('%s' generate --model '%s' --prompt 'a red cube' --width 64 --height 64 --steps 2 --seed -1 --quiet --json "
           "--output '%s/r.png' > '%s/r.json')",
           g_sdc, g_model, dir, dir);
  int st = sdc_test_run(cmd, err, sizeof err);
  unsigned long long seed = 0;
  const char *at = strstr(err, "seed ");
  CHECK(st == 0 && at && sscanf(at, "seed %llu (random)", &seed) == 1 && strstr(err, "(random)"),
        "--seed -1: exit %d, stderr does not say the random seed: %s", st, err);
  snprintf(path, sizeof path, "%s/r.json", dir);
  size_t n = 0;
  char want[256];
  CHECK(sdc_read_file(path, &json, &n) == 0, "--json wrote nothing to stdout");
  snprintf(want, sizeof want, "\"seed\":%llu,", seed);
  CHECK(json && strstr(json, want) && strstr(json, "\"images\":[\"") && strstr(json, "r.png\"]") &&
            strstr(json, "\"generate_ms\":") && strstr(json, "\"scheduler\":\"pndm\""),
        "--json output lacks %s, the image, timings or the scheduler: %s", want, json ? json : "(none)");
  free(json);
  uint8_t *rgb = NULL;
  int64_t w = 0, h = 0;
  snprintf(path, sizeof path, "%s/r.png", dir);
  snprintf(want, sizeof want, "Seed: %llu,", seed);
  /* the model's own scheduler (model-init writes SD 1.5's PNDM config) is named, not "model default" */
  CHECK(sdc_png_read(path, &rgb, &w, &h, &params) == 0 && params && strstr(params, want) &&
            strstr(params, "Sampler: pndm,"),
        "random-seed PNG parameters lack '%s' or 'Sampler: pndm': %s", want, params ? params : "(none)");
  free(rgb), free(params);

  /* a prompt past 77 tokens is used cut, with a warning */
  snprintf(cmd, sizeof cmd,
           "'%s' generate --model '%s' --prompt '%s' --width 64 --height 64 --steps 1 --seed 1 --quiet --output '%s/long.png'",
           g_sdc, g_model,
           "a very long prompt that goes on and on about a red cube on a blue table in a green room with many windows",
           dir);
  st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 0 && strstr(err, "warning: --prompt has") && strstr(err, "tokens"), "long prompt: exit %d, no warning: %s",
        st, err);

  /* sdc --version and sdc help COMMAND */
  snprintf(cmd, sizeof cmd, "('%s' --version > '%s/version.txt')", g_sdc, dir);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "sdc --version failed: %s", err);
  snprintf(path, sizeof path, "%s/version.txt", dir);
  char *ver = NULL;
  CHECK(sdc_read_file(path, &ver, &n) == 0 && strncmp(ver, "sdc ", 4) == 0 && ver[4] >= '0' && ver[4] <= '9',
        "sdc --version printed: %s", ver ? ver : "(nothing)");
  free(ver);
  snprintf(cmd, sizeof cmd, "('%s' help generate > '%s/h1.txt' && '%s' generate --help > '%s/h2.txt' && cmp -s '%s/h1.txt' '%s/h2.txt')",
           g_sdc, dir, g_sdc, dir, dir, dir);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "sdc help generate differs from sdc generate --help: %s", err);
  snprintf(cmd, sizeof cmd, "'%s' help frobnicate", g_sdc);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 2 && strstr(err, "frobnicate"), "sdc help of an unknown command: %s", err);

  /* model-init into a folder that holds something: refused without --force */
  snprintf(cmd, sizeof cmd, "'%s' model-init --arch tiny --dtype f32 --seed 4 --out '%s'", g_sdc, g_model);
  st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 2 && sdc_test_lines(err) == 1 && strstr(err, "--force") && strstr(err, g_model),
        "model-init into a non-empty folder: exit %d: %s", st, err);
  snprintf(cmd, sizeof cmd, "'%s' model-init --arch tiny --dtype f32 --seed 4 --force --out '%s'", g_sdc, g_model);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "model-init --force failed: %s", err);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_sdc = argv[1];
  g_tmp = sdc_test_tmpdir();
  snprintf(g_model, sizeof g_model, "%s/tiny", g_tmp);
  snprintf(g_out, sizeof g_out, "%s/out", g_tmp);
  mkdir(g_out, 0755);
  char cmd[4096], err[4096];
  snprintf(cmd, sizeof cmd, "'%s' model-init --arch tiny --dtype f32 --seed 3 --out '%s'", g_sdc, g_model);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "model-init failed: %s", err);

  expect_bad("width not a multiple of 8", "--prompt cat --width 100 --height 64", "multiples of 8");
  expect_bad("height not a multiple of 8", "--prompt cat --width 64 --height 63", "multiples of 8");
  expect_bad("size over the limit", "--prompt cat --width 4096 --height 4096", "limit");
  expect_bad("size over --max-pixels", "--prompt cat --width 128 --height 128 --max-pixels 4096", "limit");
  expect_bad("steps 0", "--prompt cat --steps 0", "--steps");
  expect_bad("steps 1001", "--prompt cat --steps 1001", "--steps");
  expect_bad("steps not a number", "--prompt cat --steps ten", "--steps");
  expect_bad("unknown scheduler", "--prompt cat --scheduler karras9000", "karras9000");
  expect_bad("NaN guidance", "--prompt cat --guidance-scale nan", "--guidance-scale");
  expect_bad("negative guidance", "--prompt cat --guidance-scale -1", "--guidance-scale");
  expect_bad("prompt not UTF-8", "--prompt 'caf\xe9'", "UTF-8");
  expect_bad("negative prompt not UTF-8", "--prompt cat --negative-prompt '\xff\xfe'", "UTF-8");
  expect_bad("missing prompt", "", "--prompt");
  expect_bad("unknown flag", "--prompt cat --colour red", "--colour");
  expect_bad("bad seed", "--prompt cat --seed -5", "--seed");
  expect_bad("num-images 0", "--prompt cat --num-images 0", "--num-images");

  /* the model itself: missing, or a weights file that is not safetensors */
  char saved[1024];
  snprintf(saved, sizeof saved, "%s", g_model);
  snprintf(g_model, sizeof g_model, "%s/no-such-model", g_tmp);
  expect_bad("missing model", "--prompt cat", "no-such-model");
  snprintf(g_model, sizeof g_model, "%s/broken", g_tmp);
  snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && echo garbage > '%s/unet/diffusion_pytorch_model.safetensors'", saved, g_model,
           g_model);
  CHECK(system(cmd) == 0, "could not make a broken model");
  expect_bad("unreadable weights", "--prompt cat", "unet/diffusion_pytorch_model.safetensors");
  snprintf(g_model, sizeof g_model, "%s", saved);

  /* LoRA adapters: a missing file, a bad multiplier, one whose shape does not fit, too many */
  expect_bad("missing LoRA", "--prompt cat --lora missing.safetensors", "missing.safetensors");
  expect_bad("LoRA multiplier not a number", "--prompt cat --lora x:notanumber", "notanumber");
  char lora[1200], args[4096];
  snprintf(lora, sizeof lora, "%s/wrong.safetensors", g_tmp);
  {
    float down[4 * 33] = {0}, up[32 * 4] = {0};
    const char *names[] = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
                           "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"};
    const sdc_tensor ts[] = {{.dtype = SDC_F32, .ndim = 2, .shape = {4, 33}, .data = down},
                             {.dtype = SDC_F32, .ndim = 2, .shape = {32, 4}, .data = up}};
    CHECK(sdc_st_write(lora, 2, names, ts) == 0, "could not write %s", lora);
  }
  snprintf(args, sizeof args, "--prompt cat --lora '%s:0.5'", lora);
  expect_bad("LoRA of the wrong shape", args, "wrong.safetensors: lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q");
  args[0] = 0;
  for (int i = 0; i <= SDC_MAX_LORAS; i++) strcat(args, " --lora x.safetensors");
  expect_bad("too many LoRAs", args, "at most");

  /* the output: a folder that does not exist, a folder as the file, a read-only folder */
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt cat --steps 2 --output '%s/nope/img.png'", g_sdc,
           g_model, g_tmp);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 2 && strstr(err, "does not exist"), "missing output folder: %s", err);
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt cat --steps 2 --output '%s'", g_sdc, g_model, g_out);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 2 && strstr(err, "is a directory"), "output is a folder: %s", err);
  char ro[1100];
  snprintf(ro, sizeof ro, "%s/ro", g_tmp);
  mkdir(ro, 0555);
  if (geteuid() != 0) { /* root writes anywhere: the permission case only means something for others */
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt cat --steps 2 --output '%s/img.png'", g_sdc, g_model, ro);
    CHECK(sdc_test_run(cmd, err, sizeof err) == 2 && strstr(err, "not writable"), "read-only folder: %s", err);
  }

  /* and a good run: two images, readable PNGs carrying their parameters */
  snprintf(cmd, sizeof cmd,
           "'%s' generate --model '%s' --prompt 'a red cube' --width 64 --height 48 --steps 2 --scheduler ddim --seed 5 "
           "--num-images 2 --output '%s/img.png'",
           g_sdc, g_model, g_out);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "good run failed: %s", err);
  for (int i = 0; i < 2; i++) {
    char path[1200], *params = NULL;
    uint8_t *rgb = NULL;
    int64_t w = 0, h = 0;
    snprintf(path, sizeof path, "%s/img-%d.png", g_out, i);
    int e = sdc_png_read(path, &rgb, &w, &h, &params);
    CHECK(e == 0 && w == 64 && h == 48, "%s: %s (%lldx%lld)", path, e ? sdc_errmsg(e) : "ok", (long long)w, (long long)h);
    CHECK(params && strstr(params, "a red cube") && strstr(params, "Seed: 5") && strstr(params, "Steps: 2"),
          "%s: parameters chunk: %s", path, params ? params : "(none)");
    free(rgb), free(params);
  }
  CHECK(dir_entries(g_out) == 2, "expected exactly img-0.png and img-1.png in %s", g_out);

  /* a random LoRA + LoCon + text-encoder adapter for the tiny model applies, and the PNG says so */
  snprintf(lora, sizeof lora, "%s/style.safetensors", g_tmp);
  snprintf(cmd, sizeof cmd, "'%s' model-init --arch lora --for '%s' --rank 4 --locon --te --out '%s'", g_sdc, g_model, lora);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "model-init --arch lora failed: %s", err);
  snprintf(cmd, sizeof cmd,
           "'%s' generate --model '%s' --prompt 'a red cube' --width 64 --height 48 --steps 2 --seed 5 --quiet "
           "--lora '%s:-0.75' --output '%s/lora.png'",
           g_sdc, g_model, lora, g_out);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "run with a LoRA failed: %s", err);
  {
    char path[1200], *params = NULL;
    uint8_t *rgb = NULL;
    int64_t w = 0, h = 0;
    snprintf(path, sizeof path, "%s/lora.png", g_out);
    int e = sdc_png_read(path, &rgb, &w, &h, &params);
    CHECK(e == 0 && params && strstr(params, "LoRA: style.safetensors:-0.75"), "%s: parameters: %s", path,
          params ? params : "(none)");
    free(rgb), free(params);
  }
  test_habits();
  sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_generate_cli");
}
