/* model.h - where a model's configs and weights come from: a diffusers folder or a single checkpoint file. */
#ifndef SDC_MODEL_H
#define SDC_MODEL_H

#include "checkpoint.h"
#include "config.h"
#include "safetensors.h"
#include "weights.h"

/* SDC_COMP_TEXT_ENCODER_2: SDXL's second text encoder (CLIPTextModelWithProjection); absent in SD 1.x/2.x */
typedef enum { SDC_COMP_UNET, SDC_COMP_VAE, SDC_COMP_TEXT_ENCODER, SDC_COMP_TEXT_ENCODER_2, SDC_COMP_COUNT } sdc_component;

typedef struct {
  char path[1024];        /* what the user named */
  char config_dir[1024];  /* diffusers folder supplying configs/tokenizer/scheduler, "" when built-in */
  int single_file;        /* weights come from one original-layout checkpoint */
  sdc_family family;      /* meaningful for single files */
  sdc_unet_config unet;
  sdc_vae_config vae;
  sdc_clip_config clip;
  /* SDXL: a second tokenizer and text encoder; the context is both penultimate states side by side and the
   * pooled text_embeds come from the second (docs/engine.md, "SDXL") */
  int has_text_encoder_2;
  sdc_clip_config clip2;
  int force_zeros_for_empty_prompt; /* model_index.json: no negative prompt under guidance = zero conditioning */
  char *scheduler_json;   /* scheduler_config.json text (heap), or a built-in one */
  sdc_ckpt_facts facts;   /* single files without --config: inpainting, prediction type and why */
  int configs_inferred;   /* single files without --config: the shapes differ from the family's built-in configs */
  /* weight files, opened on first use so a shard worker maps only its own */
  sdc_st_file files[SDC_COMP_COUNT];
  int opened[SDC_COMP_COUNT];
} sdc_model;

/* Opens `path`: a diffusers folder (model_index.json + component folders) or a
 * single .safetensors checkpoint. For a single file, `config_dir` (may be NULL)
 * names a diffusers folder whose configs, tokenizer and scheduler config apply
 * (its model_index.json must list a text_encoder_2 exactly when the file is
 * SDXL); without it the family (SD 1.x, 2.x, SDXL) is recognised from the keys
 * and its standard configs, corrected by the tensor shapes, are used (SDXL:
 * with the second text encoder and force_zeros_for_empty_prompt). Errors name
 * the file and the field. Free with sdc_model_close(). */
int sdc_model_open(sdc_model *m /* OUT */, const char *path, const char *config_dir);
void sdc_model_close(sdc_model *m);

/* A weight view of one component under diffusers names (file mapped on first
 * use). The view must be freed (sdc_weights_free) before the model is closed. */
int sdc_model_weights(sdc_model *m, sdc_component comp, sdc_weights *w /* OUT */);

/* A short digest of the model's configs (unet, vae, text encoder, scheduler),
 * every byte of its weight files (crc32c over the mapped files) and the
 * precision name ("fp32", "bf16"), written into out (>= 32 bytes). Workers and
 * the coordinator of a cluster compare it: the same model and precision
 * everywhere or a worker is refused. Errors name the weight file. */
int sdc_model_fingerprint(const sdc_model *m, const char *precision, char *out, size_t n);

/* The tokenizer folder ("<config_dir>/tokenizer") into buf, or "" when the
 * built-in vocabulary applies (see sdc_model_pad_token). */
const char *sdc_model_tokenizer_dir(const sdc_model *m, char *buf, size_t n);

/* The second tokenizer's folder ("<config_dir>/tokenizer_2"), or "" for the built-in vocabulary padded
 * with "!" (as SDXL's second tokenizer pads). */
const char *sdc_model_tokenizer2_dir(const sdc_model *m, char *buf, size_t n);

/* Width of the context the UNet attends to: the text encoder's hidden size, or the two encoders' together. */
int64_t sdc_model_context_dim(const sdc_model *m);
/* Width of the pooled text embedding the UNet takes (SDXL's text_embeds), 0 when it takes none. */
int64_t sdc_model_pooled_dim(const sdc_model *m);

/* The pad token of the built-in vocabulary for this model's (first) tokenizer:
 * "!" for SD 2.x (OpenCLIP pads with id 0), NULL for SD 1.x and SDXL (pad with
 * <|endoftext|>; SDXL's second tokenizer pads with "!", see
 * sdc_model_tokenizer2_dir). */
const char *sdc_model_pad_token(const sdc_model *m);

#endif
