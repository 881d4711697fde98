/* test_generate_pipelines.c - `sdc generate` with the parameters of every case of pipelines/goldens.json (img2img,
 * both inpainting kinds, LoRA single and stacked with a LoCon and a negative multiplier, LoRA with img2img, LCM)
 * writes diffusers' PNG within the PNG tolerance, from the diffusers folder and, where the model has one, from its
 * single file; the LoRA cases' float images are checked in-process too (PNG rounding hides less). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "pipeline.h"
#include "pngio.h"
#include "safetensors.h"
#include "png_golden.h"
#include "test_util.h"

/* Single-quotes s for the shell (prompts carry quotes, tabs and newlines). */
static void shell_quote(char *out, size_t n, const char *s) {
  size_t k = 0;
  out[k++] = '\'';
  for (; *s && k + 5 < n; s++) {
    if (*s == '\'') k += (size_t)snprintf(out + k, n - k, "'\\''");
    else out[k++] = *s;
  }
  out[k++] = '\'';
  out[k] = 0;
}

/* The same case in-process: the float image against diffusers' within 2e-3 (PNG rounding hides less). */
static void float_image(const char *ref, const char *model, const char *name, const cJSON *c, const sdc_st_file *gold) {
  sdc_lora_ref refs[SDC_MAX_LORAS];
  int n = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(c, "loras")) {
    snprintf(refs[n].path, sizeof refs[n].path, "%s/pipelines/lora/%s", ref, cJSON_GetStringValue(cJSON_GetArrayItem(l, 0)));
    refs[n++].multiplier = cJSON_GetNumberValue(cJSON_GetArrayItem(l, 1));
  }
  char path[2048];
  snprintf(path, sizeof path, "%s/%s/model_index.json", ref, model);
  if (access(path, F_OK) == 0) snprintf(path, sizeof path, "%s/%s", ref, model);
  else snprintf(path, sizeof path, "%s/pipelines/%s", ref, model);
  sdc_pipeline *p = NULL;
  int err = sdc_pipeline_load(&p, path, NULL, &SDC_LOAD_OPTS_FP32, refs, n);
  CHECK(err == 0, "%s/%s: load: %s", model, name, sdc_errmsg(err));
  if (err) return;
  const cJSON *np = cJSON_GetObjectItemCaseSensitive(c, "negative_prompt");
  sdc_gen_params g = {
      .prompt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt")),
      .negative_prompt = cJSON_IsString(np) ? np->valuestring : NULL,
      .width = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "width")),
      .height = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "height")),
      .steps = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "steps")),
      .guidance_scale = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "guidance_scale")),
      .seed = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "seed")),
      .scheduler = sdc_sched_parse_name(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scheduler"))),
      .num_images = 1};
  snprintf(path, sizeof path, "%s/%s/image", model, name);
  const sdc_st_entry *e = sdc_st_find(gold, path);
  const int64_t n_px = g.width * g.height * 3;
  float *img = malloc((size_t)n_px * sizeof *img), *want = malloc((size_t)n_px * sizeof *want);
  CHECK(e && sdc_shape_numel(e->ndim, e->shape) == n_px, "%s: missing or another size", path);
  if (e && img && want && sdc_shape_numel(e->ndim, e->shape) == n_px) {
    err = sdc_pipeline_generate(p, &g, NULL, img, NULL, NULL, NULL);
    CHECK(err == 0, "%s/%s: generate: %s", model, name, sdc_errmsg(err));
    sdc_convert_to_f32(want, sdc_st_ptr(gold, e), e->dtype, n_px);
    double worst = 0;
    for (int64_t i = 0; !err && i < n_px; i++) worst = fmax(worst, fabs((double)img[i] - want[i]));
    printf("%s/%s: float image max abs diff %.2e\n", model, name, worst);
    CHECK(!err && worst <= 2e-3, "%s/%s: float image off by %.3g", model, name, worst);
  }
  free(img), free(want);
  sdc_pipeline_free(p);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  char path[2048], *json = NULL;
  snprintf(path, sizeof path, "%s/pipelines/goldens.json", ref);
  CHECK(sdc_read_file(path, &json, NULL) == 0, "read %s", path);
  cJSON *manifest = cJSON_Parse(json);
  free(json);
  sdc_st_file gold;
  snprintf(path, sizeof path, "%s/pipelines/goldens.safetensors", ref);
  CHECK(sdc_st_open(&gold, path) == 0, "open %s", path);
  const char *tmp = sdc_test_tmpdir();
  int n_cases = 0;
  const cJSON *model;
  cJSON_ArrayForEach(model, manifest) {
    const cJSON *c;
    char mdir[2048], single[2100];
    snprintf(mdir, sizeof mdir, "%s/%s/model_index.json", ref, model->string);
    if (access(mdir, F_OK) == 0) snprintf(mdir, sizeof mdir, "%s/%s", ref, model->string);
    else snprintf(mdir, sizeof mdir, "%s/pipelines/%s", ref, model->string);
    snprintf(single, sizeof single, "%s/single_file.safetensors", mdir);
    const int has_single = access(single, F_OK) == 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(model, "cases"))
    for (int layout = 0; layout < 1 + has_single; layout++) {
      char prompt[2048], neg[2048] = "''", cmd[8192], out[2300], err[4096], loras[4096] = "", images[3000] = "";
      const cJSON *ls = cJSON_GetObjectItemCaseSensitive(c, "loras"), *l;
      if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "kind"))) continue; /* scheduler trajectories */
      const cJSON *init = cJSON_GetObjectItemCaseSensitive(c, "init_image"), *mask = cJSON_GetObjectItemCaseSensitive(c, "mask_image"),
                  *strength = cJSON_GetObjectItemCaseSensitive(c, "strength");
      if (cJSON_IsString(init))
        snprintf(images, sizeof images, " --init-image '%s/pipelines/inputs/%s' --strength %.17g", ref, init->valuestring,
                 cJSON_IsNumber(strength) ? strength->valuedouble : 1.0);
      if (cJSON_IsString(mask)) {
        size_t k = strlen(images);
        snprintf(images + k, sizeof images - k, " --mask '%s/pipelines/inputs/%s'", ref, mask->valuestring);
      }
      /* a single file is run as downloaded, lent the folder's configs (its CLIP heads are not in any shape) */
      char model_arg[4300];
      if (layout) snprintf(model_arg, sizeof model_arg, "'%s' --config '%s'", single, mdir);
      else snprintf(model_arg, sizeof model_arg, "'%s'", mdir);
      cJSON_ArrayForEach(l, ls) {
        size_t k = strlen(loras);
        snprintf(loras + k, sizeof loras - k, " --lora '%s/pipelines/lora/%s:%.17g'", ref,
                 cJSON_GetStringValue(cJSON_GetArrayItem(l, 0)), cJSON_GetNumberValue(cJSON_GetArrayItem(l, 1)));
      }
      shell_quote(prompt, sizeof prompt, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt")));
      const cJSON *np = cJSON_GetObjectItemCaseSensitive(c, "negative_prompt"), *ni = cJSON_GetObjectItemCaseSensitive(c, "num_images");
      if (cJSON_IsString(np)) shell_quote(neg, sizeof neg, np->valuestring);
      int64_t n_img = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 1;
      snprintf(out, sizeof out, "%s/%s-%s-%d.png", tmp, model->string, c->string, layout);
      snprintf(cmd, sizeof cmd,
               "'%s' generate --quiet --model %s --prompt %s %s%s --width %d --height %d --steps %d "
               "--guidance-scale %.17g --seed %.0f --scheduler %s --num-images %lld --output '%s'%s%s",
               argv[1], model_arg, prompt, cJSON_IsString(np) ? "--negative-prompt " : "",
               cJSON_IsString(np) ? neg : "", (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "width")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "height")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "steps")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "guidance_scale")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "seed")),
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scheduler")), (long long)n_img, out, loras, images);
      int st = sdc_test_run(cmd, err, sizeof err);
      CHECK(st == 0, "%s/%s: sdc generate exit %d: %s", model->string, c->string, st, err);
      snprintf(path, sizeof path, "%s/%s/png_uint8", model->string, c->string);
      const sdc_st_entry *e = sdc_st_find(&gold, path);
      CHECK(e != NULL, "golden %s missing", path);
      if (st || !e) continue;
      const uint8_t *want = sdc_st_ptr(&gold, e);
      int64_t per = sdc_shape_numel(e->ndim, e->shape) / n_img, worst;
      double frac;
      sdc_test_png_golden(out, n_img, want, per, &frac, &worst);
      const char *lay = layout ? "single_file" : "diffusers";
      printf("%s [%s] %s: %.4f%% of bytes within 1, max diff %lld\n", model->string, lay, c->string, 100 * frac,
             (long long)worst);
      CHECK(frac >= 0.999 && worst <= 3, "%s [%s] %s: PNG outside tolerance", model->string, lay, c->string);
      /* the LoRA text-to-image cases in-process too: a merge error shows in floats before it shows in bytes */
      const cJSON *kind = cJSON_GetObjectItemCaseSensitive(c, "kind");
      if (!layout && cJSON_GetArraySize(ls) > 0 && cJSON_IsString(kind) && strcmp(kind->valuestring, "txt2img") == 0)
        float_image(ref, model->string, c->string, c, &gold);
      n_cases++;
    }
  }
  CHECK(n_cases >= 16, "%d case runs, expected at least the 16 cases of the manifest", n_cases);
  sdc_st_close(&gold);
  cJSON_Delete(manifest);
  sdc_test_rmtree(tmp);
  return sdc_test_finish("test_generate_pipelines");
}
