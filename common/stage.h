/* stage.h - the five stages of the pipeline and their names, as flags (--stages) and logs spell them.
 * The numbers equal proto/sdc.proto's Stage values (proto/wire.c checks it at compile time). */
#ifndef SDC_STAGE_H
#define SDC_STAGE_H

typedef enum {
  SDC_STAGE_INVALID = 0,
  SDC_STAGE_TEXT = 1,
  SDC_STAGE_UNET_DOWN = 2,
  SDC_STAGE_UNET_MID = 3,
  SDC_STAGE_UNET_UP = 4,
  SDC_STAGE_VAE = 5,
  SDC_STAGE_END /* one past the last */
} sdc_stage;

/* Every stage's bit, as in a stage set (1u << stage). */
#define SDC_STAGE_ALL_BITS                                                                                         \
  ((1u << SDC_STAGE_TEXT) | (1u << SDC_STAGE_UNET_DOWN) | (1u << SDC_STAGE_UNET_MID) | (1u << SDC_STAGE_UNET_UP) | \
   (1u << SDC_STAGE_VAE))

/* "text", "unet-down", "unet-mid", "unet-up", "vae"; "invalid" for anything else. Never NULL. */
const char *sdc_stage_name(int stage);
/* The stage named `name`, or SDC_STAGE_INVALID. */
sdc_stage sdc_stage_parse(const char *name);
/* A comma-separated list of stage names, or "all", into a set of bits
 * (1u << stage). SDC_EINVAL naming the bad entry when one is unknown or the
 * list is empty. */
int sdc_stage_parse_list(const char *list, unsigned *bits /* OUT */);

#endif
