/* stage.c - the five stages of the pipeline and their names. */
#include "stage.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

static const char *const sdc__names[SDC_STAGE_END] = {
    [SDC_STAGE_INVALID] = "invalid",   [SDC_STAGE_TEXT] = "text",       [SDC_STAGE_UNET_DOWN] = "unet-down",
    [SDC_STAGE_UNET_MID] = "unet-mid", [SDC_STAGE_UNET_UP] = "unet-up", [SDC_STAGE_VAE] = "vae",
};

const char *sdc_stage_name(int stage) {
  return stage > SDC_STAGE_INVALID && stage < SDC_STAGE_END ? sdc__names[stage] : "invalid";
}

sdc_stage sdc_stage_parse(const char *name) {
  for (int s = SDC_STAGE_TEXT; name && s < SDC_STAGE_END; s++)
    if (strcmp(name, sdc__names[s]) == 0) return (sdc_stage)s;
  return SDC_STAGE_INVALID;
}

int sdc_stage_parse_list(const char *list, unsigned *bits) {
  *bits = 0;
  if (!list || !list[0]) return sdc_seterr(SDC_EINVAL, "stages: empty list (expected names such as text,unet-down)");
  if (strcmp(list, "all") == 0) {
    *bits = SDC_STAGE_ALL_BITS;
    return SDC_OK;
  }
  for (const char *p = list; *p;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char tok[32];
    if (n == 0 || n >= sizeof tok)
      return sdc_seterr(SDC_EINVAL, "stages '%s': bad entry at '%.*s'", list, (int)(n ? n : 1), p);
    memcpy(tok, p, n);
    tok[n] = 0;
    sdc_stage s = sdc_stage_parse(tok);
    if (s == SDC_STAGE_INVALID)
      return sdc_seterr(SDC_EINVAL, "stages '%s': unknown stage '%s' (text, unet-down, unet-mid, unet-up, vae, all)", list,
                        tok);
    *bits |= 1u << s;
    p += n + (comma != NULL);
  }
  return SDC_OK;
}
