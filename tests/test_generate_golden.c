/* test_generate_golden.c - `sdc generate` with each golden pipeline case's parameters writes diffusers' PNG. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
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

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  char path[2048], *json = NULL;
  snprintf(path, sizeof path, "%s/goldens.json", ref);
  CHECK(sdc_read_file(path, &json, NULL) == 0, "read %s", path);
  cJSON *manifest = cJSON_Parse(json);
  free(json);
  sdc_st_file gold;
  snprintf(path, sizeof path, "%s/goldens.safetensors", ref);
  CHECK(sdc_st_open(&gold, path) == 0, "open %s", path);
  const char *tmp = sdc_test_tmpdir();
  int n_cases = 0;
  const cJSON *model;
  cJSON_ArrayForEach(model, manifest) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(model, "pipelines")) {
      char prompt[2048], neg[2048] = "''", cmd[8192], out[2300], err[4096];
      shell_quote(prompt, sizeof prompt, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt")));
      const cJSON *np = cJSON_GetObjectItemCaseSensitive(c, "negative_prompt"), *ni = cJSON_GetObjectItemCaseSensitive(c, "num_images");
      if (cJSON_IsString(np)) shell_quote(neg, sizeof neg, np->valuestring);
      int64_t n_img = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 1;
      snprintf(out, sizeof out, "%s/%s-%s.png", tmp, model->string, c->string);
      snprintf(cmd, sizeof cmd,
               "'%s' generate --quiet --model '%s/%s' --prompt %s %s%s --width %d --height %d --steps %d "
               "--guidance-scale %.17g --seed %.0f --scheduler %s --num-images %lld --output '%s'",
               argv[1], ref, model->string, prompt, cJSON_IsString(np) ? "--negative-prompt " : "",
               cJSON_IsString(np) ? neg : "", (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "width")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "height")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "steps")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "guidance_scale")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "seed")),
               cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scheduler")), (long long)n_img, out);
      int st = sdc_test_run(cmd, err, sizeof err);
      CHECK(st == 0, "%s/%s: sdc generate exit %d: %s", model->string, c->string, st, err);
      snprintf(path, sizeof path, "%s/pipe/%s/png_uint8", model->string, c->string);
      const sdc_st_entry *e = sdc_st_find(&gold, path);
      CHECK(e != NULL, "golden %s missing", path);
      if (st || !e) continue;
      const uint8_t *want = sdc_st_ptr(&gold, e);
      int64_t per = sdc_shape_numel(e->ndim, e->shape) / n_img, worst;
      double frac;
      sdc_test_png_golden(out, n_img, want, per, &frac, &worst);
      printf("%s/%s: %.4f%% of bytes within 1, max diff %lld\n", model->string, c->string, 100 * frac, (long long)worst);
      CHECK(frac >= 0.999 && worst <= 3, "%s/%s: PNG outside tolerance", model->string, c->string);
      n_cases++;
    }
  }
  CHECK(n_cases > 0, "no pipeline cases ran");
  sdc_st_close(&gold);
  cJSON_Delete(manifest);
  sdc_test_rmtree(tmp);
  return sdc_test_finish("test_generate_golden");
}
