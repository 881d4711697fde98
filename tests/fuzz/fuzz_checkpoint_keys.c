/* fuzz_checkpoint_keys.c - libFuzzer: single-file checkpoint key names (one per input line) through the four
 * key maps under the SD1, SD2 and SDXL configs, then as the keys of an in-memory checkpoint through family detection
 * and each component's weight view. Every name written must be terminated and every slice sane. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "error.h"
#include "safetensors.h"
#include "weights.h"

#define FUZZ_MAX_KEYS 64

static sdc_unet_config unet_cfg[SDC_FAMILY_COUNT];
static sdc_vae_config vae_cfg[SDC_FAMILY_COUNT];
static sdc_clip_config clip_cfg[SDC_FAMILY_COUNT];
static sdc_clip_config clip2_cfg; /* SDXL's second text encoder */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  for (int fam = 0; fam < SDC_FAMILY_COUNT; fam++)
    if (sdc_unet_config_parse(&unet_cfg[fam], sdc_checkpoint_std_config(fam, "unet"), "std unet") ||
        sdc_vae_config_parse(&vae_cfg[fam], sdc_checkpoint_std_config(fam, "vae"), "std vae") ||
        sdc_clip_config_parse(&clip_cfg[fam], sdc_checkpoint_std_config(fam, "text_encoder"), "std text_encoder")) {
      fprintf(stderr, "fuzz_checkpoint_keys: %s\n", sdc_errmsg(SDC_EFORMAT));
      abort();
    }
  const char *te2 = sdc_checkpoint_std_config(SDC_FAMILY_SDXL, "text_encoder_2");
  if (sdc_clip_config_parse(&clip2_cfg, te2, "std text_encoder_2")) {
    fprintf(stderr, "fuzz_checkpoint_keys: %s\n", sdc_errmsg(SDC_EFORMAT));
    abort();
  }
  return 0;
}

static void check_outs(int n, const sdc_key_out *outs) {
  if (n < 0 || n > SDC_KEY_MAP_MAX_OUT) abort();
  for (int i = 0; i < n; i++)
    if (!memchr(outs[i].name, 0, sizeof outs[i].name) || !outs[i].name[0] || outs[i].n_parts < 1 ||
        outs[i].part < 0 || outs[i].part >= outs[i].n_parts)
      abort();
}

/* A checkpoint whose tensors are the given keys, each F32 [1]: header and 4 data bytes per key. */
static uint8_t *make_file(char **keys, int n, size_t *size) {
  cJSON *root = cJSON_CreateObject();
  for (int i = 0; i < n; i++) {
    cJSON *e = cJSON_CreateObject();
    double shape[1] = {1}, offs[2] = {4.0 * i, 4.0 * i + 4};
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, 1));
    cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
    cJSON_AddItemToObject(root, keys[i], e);
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!json) return NULL;
  size_t hlen = strlen(json);
  *size = 8 + hlen + 4 * (size_t)n;
  uint8_t *buf = calloc(1, *size);
  if (buf) {
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, hlen);
  }
  free(json);
  return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  char *keys[FUZZ_MAX_KEYS];
  int n = 0;
  for (char *save = NULL, *k = strtok_r(text, "\n", &save); k && n < FUZZ_MAX_KEYS; k = strtok_r(NULL, "\n", &save))
    keys[n++] = k;
  static const char *const prefixes[] = {SDC_CKPT_UNET_PREFIX,      SDC_CKPT_VAE_PREFIX,
                                         SDC_CKPT_CLIP_PREFIX,      SDC_CKPT_OPENCLIP_PREFIX,
                                         SDC_CKPT_SDXL_CLIP_PREFIX, SDC_CKPT_SDXL_OPENCLIP_PREFIX};
  sdc_key_out outs[SDC_KEY_MAP_MAX_OUT];
  for (int i = 0; i < n; i++) {
    const char *key = keys[i]; /* the maps see the key without its component prefix */
    for (int p = 0; p < 6; p++)
      if (strncmp(key, prefixes[p], strlen(prefixes[p])) == 0) key += strlen(prefixes[p]);
    for (int fam = 0; fam < SDC_FAMILY_COUNT; fam++) {
      check_outs(sdc_checkpoint_map_unet(key, outs, &unet_cfg[fam]), outs);
      check_outs(sdc_checkpoint_map_vae(key, outs, &vae_cfg[fam]), outs);
      check_outs(sdc_checkpoint_map_clip(key, outs, &clip_cfg[fam]), outs);
      check_outs(sdc_checkpoint_map_clip(key, outs, NULL), outs);
      check_outs(sdc_checkpoint_map_openclip(key, outs, &clip_cfg[fam]), outs);
      check_outs(sdc_checkpoint_map_openclip(key, outs, NULL), outs);
    }
    check_outs(sdc_checkpoint_map_openclip(key, outs, &clip2_cfg), outs);
  }
  size_t fsize = 0;
  uint8_t *file = n ? make_file(keys, n, &fsize) : NULL;
  sdc_st_file f;
  if (file && sdc_st_open_mem(&f, "fuzz.ckpt", file, fsize) == SDC_OK) {
    sdc_family fam;
    if (sdc_checkpoint_detect(&f, &fam) == SDC_OK) {
      if ((unsigned)fam >= SDC_FAMILY_COUNT) abort();
      /* configs read from the keys' shapes, as a single file with no --config gets them */
      sdc_unet_config u = unet_cfg[fam];
      sdc_vae_config v = vae_cfg[fam];
      sdc_clip_config cc = clip_cfg[fam], cc2 = clip2_cfg;
      sdc_ckpt_facts facts;
      (void)sdc_checkpoint_infer(&f, fam, &u, &v, &cc, &cc2, &facts);
      static const char *const comps[] = {"unet", "vae", "text_encoder", "text_encoder_2"};
      const void *cfgs[] = {&unet_cfg[fam], &vae_cfg[fam], &clip_cfg[fam], &clip2_cfg};
      for (int c = 0; c < (fam == SDC_FAMILY_SDXL ? 4 : 3); c++) {
        sdc_weights w;
        if (sdc_checkpoint_weights(&w, &f, fam, comps[c], cfgs[c]) == SDC_OK) sdc_weights_free(&w);
      }
    }
    sdc_st_close(&f);
  }
  free(file);
  free(text);
  return 0;
}
