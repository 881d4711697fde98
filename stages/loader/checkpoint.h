/* checkpoint.h - single-file (original LDM/CompVis/SGM layout) SD 1.x / 2.x / SDXL checkpoints seen under diffusers
 * names. */
#ifndef SDC_CHECKPOINT_H
#define SDC_CHECKPOINT_H

#include "config.h"
#include "safetensors.h"
#include "weights.h"

/* Key prefixes of the components inside a single-file checkpoint. */
#define SDC_CKPT_UNET_PREFIX "model.diffusion_model."
#define SDC_CKPT_VAE_PREFIX "first_stage_model."
#define SDC_CKPT_CLIP_PREFIX "cond_stage_model.transformer."  /* SD 1.x: transformers' CLIPTextModel */
#define SDC_CKPT_OPENCLIP_PREFIX "cond_stage_model.model."    /* SD 2.x: OpenCLIP ViT-H/14 text tower */
/* SDXL (sd_xl_base_1.0.safetensors): generative-models' conditioner holds both text encoders */
#define SDC_CKPT_SDXL_CONDITIONER_PREFIX "conditioner.embedders."
#define SDC_CKPT_SDXL_CLIP_PREFIX "conditioner.embedders.0.transformer." /* transformers' CLIPTextModel (ViT-L/14) */
#define SDC_CKPT_SDXL_OPENCLIP_PREFIX "conditioner.embedders.1.model."    /* OpenCLIP ViT-bigG/14 text tower */

typedef enum {
  SDC_FAMILY_SD1, /* CLIP ViT-L/14 text encoder, epsilon prediction (stable-diffusion-v1-5) */
  SDC_FAMILY_SD2, /* OpenCLIP ViT-H/14 text encoder; configs of stable-diffusion-2-1 (768-v) */
  SDC_FAMILY_SDXL, /* CLIP ViT-L/14 and OpenCLIP ViT-bigG/14, text_time conditioning (stable-diffusion-xl-base-1.0) */
  SDC_FAMILY_COUNT
} sdc_family;

/* "sd1", "sd2", "sdxl" (or "?"); never NULL. */
const char *sdc_family_name(sdc_family fam);

/* Key maps (see sdc_key_map_fn in weights.h). Each takes a key with its
 * component prefix already stripped and returns how many diffusers names it
 * wrote to outs (0: the key is not used, or does not fit the config).
 *
 * unet:     ctx is a const sdc_unet_config * (required; block arithmetic
 *           follows its n_blocks, layers_per_block and block kinds). With
 *           add_text_time (SDXL) label_emb.0.0 / label_emb.0.2 are the
 *           text_time MLP, add_embedding.linear_1 / linear_2.
 * vae:      ctx is a const sdc_vae_config * (required; the decoder's up.i is
 *           diffusers' up_blocks.(n_blocks-1-i)). Attention q/k/v/proj_out
 *           keep their [C, C, 1, 1] shape.
 * clip:     ctx is a const sdc_clip_config * or NULL. Keys with or without the
 *           "text_model." level; position_ids and layers >= n_layers dropped.
 * openclip: ctx is a const sdc_clip_config * or NULL (layers >= n_layers are
 *           dropped: SD 2.x runs 23 of OpenCLIP's 24; SDXL's config has all
 *           32 of bigG's). The fused in_proj weight and bias become q/k/v
 *           parts 0, 1, 2 of 3 along dim 0. text_projection, stored [in,
 *           out], becomes text_projection.weight [out, in] (a transposed
 *           ref) when ctx is NULL or with_projection (SDXL's second
 *           encoder); SD 2.x's CLIPTextModel does not use it. logit_scale
 *           is never used. */
int sdc_checkpoint_map_unet(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx);
int sdc_checkpoint_map_vae(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx);
int sdc_checkpoint_map_clip(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx);
int sdc_checkpoint_map_openclip(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx);

/* Tells SD 1.x, SD 2.x and SDXL apart by the keys of f: SDXL when there are
 * "conditioner.embedders.*" keys (then both of SDXL's encoder prefixes must be
 * there, or SDC_EMISSING names the file and the missing prefix), or a UNet
 * with label_emb (the text_time MLP) and 2048-wide context; SD2 when OpenCLIP
 * text encoder keys are present or the UNet's cross-attention (attn2.to_k)
 * takes 1024-wide context; SD1 when CLIP ViT-L keys are present or the
 * context is 768 wide. Returns SDC_EFORMAT naming the file when there are no
 * UNet keys at all, and SDC_EUNSUPPORTED for unknown context widths without
 * text encoder keys.
 *
 * Prediction type cannot be read from the keys: SD2 is taken to be the 768-v
 * model (v_prediction, as stable-diffusion-2-1), which is what
 * sdc_checkpoint_std_config(SDC_FAMILY_SD2, "scheduler") says. An SD 2.x
 * 512-base (epsilon) file needs a scheduler config from the caller. SDXL
 * base predicts epsilon. */
int sdc_checkpoint_detect(const sdc_st_file *f, sdc_family *fam /* OUT */);

/* The standard diffusers config.json of a family's component: "unet", "vae",
 * "text_encoder", "text_encoder_2" (SDXL only) or "scheduler" as
 * stable-diffusion-v1-5 (SD1), stable-diffusion-2-1 (SD2) and
 * stable-diffusion-xl-base-1.0 (SDXL) ship them (the SD vae ones also spell
 * out scaling_factor 0.18215, diffusers' default; SDXL's is 0.13025). Static
 * strings; NULL for an unknown family or component. */
const char *sdc_checkpoint_std_config(sdc_family fam, const char *component);

/* A weight view of one component of a single-file checkpoint, under diffusers
 * names: component "unet" (cfg: const sdc_unet_config *), "vae" (cfg: const
 * sdc_vae_config *), "text_encoder" or, for SDXL, "text_encoder_2" (cfg: const
 * sdc_clip_config *, may be NULL). SD 1.x/2.x's text encoder layout follows
 * fam, falling back to the other layout when the file holds only that one;
 * SDXL's are conditioner.embedders.0 (CLIP) and .1 (OpenCLIP, whose
 * text_projection is handed out transposed). f must outlive w; free w with
 * sdc_weights_free(). Errors: SDC_EINVAL (unknown component or family, NULL
 * cfg), SDC_EMISSING (no keys for the component, message names file and
 * prefix), or sdc_weights_init's. On error *w is left empty. */
int sdc_checkpoint_weights(sdc_weights *w /* OUT */, const sdc_st_file *f, sdc_family fam, const char *component,
                           const void *cfg);

/* What the tensors of a single file say beyond its family (checkpoint_infer.c). */
typedef struct {
  int inpaint;        /* the UNet's conv_in takes 9 channels (latents, mask, masked-image latents) */
  int v_pred;         /* v-prediction */
  char pred_why[96];  /* why that prediction type, for sdc inspect */
} sdc_ckpt_facts;

/* Overwrites what shapes tell in configs that hold the family's standard
 * ones: UNet in/out channels, levels, block_out_channels, layers_per_block,
 * transformer depth, cross_attention_dim, linear or conv projections, time
 * embedding width and, for SDXL, the text_time MLP's input width
 * (projection_class_embeddings_input_dim) and addition_time_embed_dim; VAE
 * channels, levels, blocks, quant convs, mid attention; text encoder width,
 * depth, intermediate size, positions, vocabulary and, for SDXL's second one
 * (clip2, required for SDXL, else unused and may be NULL), projection_dim.
 * Heads are not in the shapes: SD 1.x UNets get 8 per level, SD 2.x and SDXL
 * a head width of 64, the text encoders a head width of 64. Nor are
 * norm_num_groups, which stay the standard ones. The prediction type follows
 * the 'v_pred' key (ComfyUI's marker); without it SD 2.x is taken as 768-v
 * except for inpainting. Errors name the file and the tensor. */
int sdc_checkpoint_infer(const sdc_st_file *f, sdc_family fam, sdc_unet_config *unet /* IN/OUT */,
                         sdc_vae_config *vae /* IN/OUT */, sdc_clip_config *clip /* IN/OUT */,
                         sdc_clip_config *clip2 /* IN/OUT */, sdc_ckpt_facts *facts /* OUT */);

#endif
