/* config.h - the diffusers component configs (unet, vae, text encoder) parsed from config.json. */
#ifndef SDC_CONFIG_H
#define SDC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "file.h"

#define SDC_MAX_BLOCKS 8
/* SDXL's micro-conditioning: original size (h, w), crop top-left (top, left), target size (h, w) */
#define SDC_TIME_IDS 6

typedef enum { SDC_BLOCK_PLAIN, SDC_BLOCK_CROSS_ATTN } sdc_block_kind;

typedef struct {
  int64_t in_channels, out_channels;
  int n_blocks;
  int64_t block_out_channels[SDC_MAX_BLOCKS];
  sdc_block_kind down_blocks[SDC_MAX_BLOCKS]; /* DownBlock2D / CrossAttnDownBlock2D */
  sdc_block_kind up_blocks[SDC_MAX_BLOCKS];   /* UpBlock2D / CrossAttnUpBlock2D */
  int64_t layers_per_block[SDC_MAX_BLOCKS];   /* per down block; up blocks use reversed + 1 */
  int64_t heads[SDC_MAX_BLOCKS];              /* attention heads per down block */
  int64_t transformer_layers[SDC_MAX_BLOCKS]; /* transformer depth per down block */
  int64_t cross_attention_dim;
  int use_linear_projection;
  int upcast_attention;       /* float32 scores; we always compute in f32 */
  int64_t norm_num_groups;
  double norm_eps;
  int flip_sin_to_cos;
  double freq_shift;
  int64_t conv_in_kernel, conv_out_kernel;
  int64_t downsample_padding;
  double mid_block_scale_factor;
  int64_t time_embed_dim;     /* time_embedding_dim or 4 * block_out_channels[0] */
  int64_t sample_size;
  /* addition_embed_type "text_time" (SDXL): the sinusoidal embedding (addition_time_embed_dim wide) of each
   * time id, after the pooled text embedding, through add_embedding (linear, SiLU, linear) into temb */
  int add_text_time;
  int64_t addition_time_embed_dim;
  int64_t projection_class_embeddings_input_dim;
} sdc_unet_config;

typedef struct {
  int64_t in_channels, out_channels, latent_channels;
  int n_blocks;
  int64_t block_out_channels[SDC_MAX_BLOCKS];
  int64_t layers_per_block;
  int64_t norm_num_groups;
  int mid_block_add_attention;
  int use_quant_conv, use_post_quant_conv;
  double scaling_factor;
  double shift_factor; /* 0 when null */
  int64_t sample_size;
} sdc_vae_config;

typedef enum { SDC_ACT_QUICK_GELU, SDC_ACT_GELU } sdc_act;

typedef struct {
  int64_t vocab_size, hidden_size, intermediate_size, n_layers, n_heads, max_positions;
  sdc_act act;
  double layer_norm_eps;
  int with_projection;    /* CLIPTextModelWithProjection: text_projection (projection_dim x hidden_size, no bias) */
  int64_t projection_dim;
  int64_t eos_token_id;   /* where the pooled state is read: 2 (legacy configs) means the highest id, else the
                           * first position holding this id, as transformers does */
} sdc_clip_config;

/* Each parser reads a diffusers/transformers config.json. `label` names the
 * source in errors (usually the path). Unknown block types, unsupported
 * features (class embeddings, added conditioning, ...) and inconsistent
 * sizes are SDC_ECONFIG errors naming the field. */
int sdc_unet_config_parse(sdc_unet_config *cfg /* OUT */, const char *json, const char *label);
int sdc_vae_config_parse(sdc_vae_config *cfg /* OUT */, const char *json, const char *label);
int sdc_clip_config_parse(sdc_clip_config *cfg /* OUT */, const char *json, const char *label);

/* Pixels per latent cell along each axis (8 for SD). */
static inline int64_t sdc_vae_scale(const sdc_vae_config *cfg) { return (int64_t)1 << (cfg->n_blocks - 1); }

#endif
