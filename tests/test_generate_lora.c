/* test_generate_lora.c - `sdc generate --lora` with each text-to-image LoRA case of pipelines/goldens.json writes
 * diffusers' PNG (the LoRA merged as diffusers merged it: single, stacked with a LoCon and a negative multiplier,
 * v-prediction SD 2). Cases of other kinds (img2img with LoRAs) belong to their own tests. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "pngio.h"
#include "safetensors.h"
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
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(model, "cases")) {
      char prompt[2048], neg[2048] = "''", cmd[8192], out[2300], err[4096], loras[4096] = "";
      const cJSON *kind = cJSON_GetObjectItemCaseSensitive(c, "kind"), *ls = cJSON_GetObjectItemCaseSensitive(c, "loras"), *l;
      if (!cJSON_IsArray(ls) || cJSON_GetArraySize(ls) == 0 || !cJSON_IsString(kind) || strcmp(kind->valuestring, "txt2img"))
        continue;
      cJSON_ArrayForEach(l, ls) {
        size_t k = strlen(loras);
        snprintf(loras + k, sizeof loras - k, " --lora '%s/pipelines/lora/%s:%.17g'", ref,
                 cJSON_GetStringValue(cJSON_GetArrayItem(l, 0)), cJSON_GetNumberValue(cJSON_GetArrayItem(l, 1)));
      }
      shell_quote(prompt, sizeof prompt, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt")));
      const cJSON *np = cJSON_GetObjectItemCaseSensitive(c, "negative_prompt"), *ni = cJSON_GetObjectItemCaseSensitive(c, "num_images");
      if (cJSON_IsString(np)) shell_quote(neg, sizeof neg, np->valuestring);
      int64_t n_img = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 1;
      snprintf(out, sizeof out, "%s/%s-%s.png", tmp, model->string, c->string);
      snprintf(cmd, sizeof cmd,
               "'%s' generate --quiet --model '%s/%s' --prompt %s %s%s --width %d --height %d --steps %d "
               "--guidance-scale %.17g --seed %.0f --scheduler %s --num-images %lld --output '%s'%s",
               argv[1], ref, model->string, prompt, cJSON_IsString(np) ? "--negative-prompt " : "",
               cJSON_IsString(np) ? neg : "", (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "width")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "height")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "steps")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "guidance_scale")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "seed")),
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scheduler")), (long long)n_img, out, loras);
      int st = sdc_test_run(cmd, err, sizeof err);
      CHECK(st == 0, "%s/%s: sdc generate exit %d: %s", model->string, c->string, st, err);
      snprintf(path, sizeof path, "%s/%s/png_uint8", model->string, c->string);
      const sdc_st_entry *e = sdc_st_find(&gold, path);
      CHECK(e != NULL, "golden %s missing", path);
      if (st || !e) continue;
      const uint8_t *want = sdc_st_ptr(&gold, e);
      int64_t per = sdc_shape_numel(e->ndim, e->shape) / n_img, within1 = 0, worst = 0;
      for (int64_t i = 0; i < n_img; i++) {
        char file[2400];
        if (n_img == 1) snprintf(file, sizeof file, "%s", out);
        else snprintf(file, sizeof file, "%.*s-%lld.png", (int)(strlen(out) - 4), out, (long long)i);
        uint8_t *rgb = NULL;
        int64_t w, h;
        int rc = sdc_png_read(file, &rgb, &w, &h, NULL);
        CHECK(rc == 0 && w * h * 3 == per, "%s: %s", file, rc ? sdc_errmsg(rc) : "size differs from the golden");
        for (int64_t k = 0; rgb && w * h * 3 == per && k < per; k++) {
          int64_t d = llabs((long long)rgb[k] - (long long)want[i * per + k]);
          within1 += d <= 1;
          if (d > worst) worst = d;
        }
        free(rgb);
      }
      double frac = (double)within1 / (double)(per * n_img);
      printf("%s/%s: %.4f%% of bytes within 1, max diff %lld\n", model->string, c->string, 100 * frac, (long long)worst);
      CHECK(frac >= 0.999 && worst <= 3, "%s/%s: PNG outside tolerance", model->string, c->string);
      n_cases++;
    }
  }
  CHECK(n_cases >= 3, "%d LoRA cases ran, expected at least 3", n_cases);
  sdc_st_close(&gold);
  cJSON_Delete(manifest);
  sdc_test_rmtree(tmp);
  return sdc_test_finish("test_generate_lora");
}
