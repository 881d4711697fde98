/* lora.c - LoRA adapter files. (Stub: issue 12 fills it in.) */
#include "lora.h"

#include "error.h"

int sdc_lora_ref_parse(const char *arg, sdc_lora_ref *out) {
  (void)out;
  return sdc_seterr(SDC_EUNSUPPORTED, "LoRA %s: not supported yet", arg);
}

int sdc_lora_set_open(sdc_lora_set **out, const sdc_lora_ref *refs, int n) {
  *out = NULL;
  return sdc_seterr(SDC_EUNSUPPORTED, "LoRA %s: not supported yet", n > 0 ? refs[0].path : "?");
}

void sdc_lora_set_free(sdc_lora_set *s) { (void)s; }

int sdc_weights_set_lora(sdc_weights *w, const sdc_lora_set *s, sdc_component comp) {
  (void)w, (void)s, (void)comp;
  return sdc_seterr(SDC_EUNSUPPORTED, "LoRA: not supported yet");
}
