/* lora.h - LoRA / LoCon adapter files (kohya names, diffusers or LDM module paths), merged into weights on lookup. */
#ifndef SDC_LORA_H
#define SDC_LORA_H

#include "model.h"
#include "sdc_limits.h"
#include "weights.h"

/* One adapter a request names, and its multiplier (negative allowed). */
typedef struct {
  char path[SDC_MAX_LORA_PATH];
  double multiplier;
} sdc_lora_ref;

/* Parses "FILE[:MULTIPLIER]" (a finite number; 1 when absent). Errors name arg. */
int sdc_lora_ref_parse(const char *arg, sdc_lora_ref *out /* OUT */);

typedef struct sdc_lora_set sdc_lora_set;

/* Opens n (<= SDC_MAX_LORAS) adapter files and reads their modules; a file
 * that is not a LoRA, or a module with missing or inconsistent tensors, is an
 * error naming the file and key. Free with sdc_lora_set_free(). */
int sdc_lora_set_open(sdc_lora_set **out /* OUT */, const sdc_lora_ref *refs, int n);
void sdc_lora_set_free(sdc_lora_set *s);

/* Makes w, component comp's weight view, hand out W + sum m * (alpha / rank) *
 * up . down for every module the set adapts in comp (several adapters add up)
 * and checks, before anything is computed, that each such module names a
 * tensor of w with a fitting shape (errors name the adapter file and key).
 * Modules of other components are left alone. s must outlive w. */
int sdc_weights_set_lora(sdc_weights *w, const sdc_lora_set *s, sdc_component comp);

/* Which modules a random adapter covers (sdc_lora_write_random). */
enum {
  SDC_LORA_ATTN = 1,   /* every linear / 1x1 conv of the UNet's transformer blocks (kohya's default set) */
  SDC_LORA_CONV1 = 2,  /* LoCon: every UNet resnet's 3x3 conv1 */
  SDC_LORA_TE = 4,     /* the text encoder's q/k/v/out projections and MLP */
};

/* Writes a kohya-format adapter of the given rank for model m, with random
 * factors (deterministic from seed; small enough that the model stays sane)
 * and alpha = rank / 2, for the modules `which` selects, found in the model's
 * own weight views. dtype: SDC_F16 or SDC_F32. For tests and benchmarks. */
int sdc_lora_write_random(sdc_model *m, const char *path, int64_t rank, int which, sdc_dtype dtype, uint64_t seed);

#endif
