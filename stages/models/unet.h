/* unet.h - UNet2DConditionModel driven by its config, exposed as down / mid / up shards. */
#ifndef SDC_UNET_H
#define SDC_UNET_H

#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "config.h"
#include "weights.h"

#define SDC_MAX_LAYERS 8
#define SDC_MAX_SKIPS (1 + SDC_MAX_BLOCKS * (SDC_MAX_LAYERS + 1))

enum { SDC_UNET_DOWN = 1, SDC_UNET_MID = 2, SDC_UNET_UP = 4, SDC_UNET_ALL = 7 };

typedef struct {
  int64_t n_layers, cin, cout;
  int has_attn, has_resample;
  sdc_resnet res[SDC_MAX_LAYERS + 1];
  sdc_transformer *attn; /* n_layers of them, or NULL */
  sdc_resample resample;
} sdc__unet_block;

typedef struct {
  sdc_unet_config cfg;
  unsigned parts; /* which shards' weights are loaded */
  sdc_load_opts opts; /* as loaded */
  sdc_conv conv_in, conv_out;
  const float *time_b1, *time_b2;
  sdc_wt time_w1, time_w2;
  const float *add_b1, *add_b2; /* add_embedding (text_time), with add_w1/add_w2; unused without */
  sdc_wt add_w1, add_w2;
  sdc__unet_block down[SDC_MAX_BLOCKS], up[SDC_MAX_BLOCKS];
  sdc_resnet mid_res[SDC_MAX_TLAYERS + 1];
  sdc_transformer *mid_attn;
  const float *norm_out_w, *norm_out_b;
} sdc_unet;

/* The activations that cross shard boundaries; all point into the arena. */
typedef struct {
  int64_t B, C, H, W; /* of h */
  float *h;           /* (B,C,H,W) */
  float *temb;        /* (B,time_embed_dim) after the time MLP */
  int n_skips;
  float *skips[SDC_MAX_SKIPS];
  int64_t skip_c[SDC_MAX_SKIPS], skip_h[SDC_MAX_SKIPS], skip_w[SDC_MAX_SKIPS];
} sdc_unet_acts;

/* The added conditioning of a UNet with addition_embed_type "text_time" (SDXL): per batch row the pooled
 * text embedding (text_dim wide) and the time ids (n_time_ids of them; SDXL: original size, crop top-left,
 * target size). unet-down folds them into temb, so mid and up never see them. */
typedef struct {
  const float *text_embeds; /* (B, text_dim) */
  const float *time_ids;    /* (B, n_time_ids) */
  int64_t text_dim, n_time_ids;
} sdc_unet_added;

/* Loads the weights of the shards in `parts` (SDC_UNET_DOWN | ...) from w,
 * which must outlive the model, for opts (its precision: SDC_EUNSUPPORTED
 * when this CPU cannot run it). On error returns the code; the message names
 * the file and the missing or mis-shaped tensor. Free with sdc_unet_free(). */
int sdc_unet_load(sdc_unet **out /* OUT */, sdc_weights *w, const sdc_unet_config *cfg, unsigned parts,
                  const sdc_load_opts *opts);
void sdc_unet_free(sdc_unet *u);

/* Shapes of what unet-down produces for a (H,W) latent: h (C,Hd,Wd), skips. */
void sdc_unet_shapes(const sdc_unet_config *cfg, int64_t H, int64_t W, sdc_unet_acts *shapes /* OUT: no data */);

/* unet-down: sample (B,in,H,W), timestep (B), ctx (B,Nctx,cross_dim), added (NULL unless the UNet has an
 * addition embedding, which then requires it; SDC_EINVAL naming what is missing or mis-sized) -> h, skips,
 * temb. */
int sdc_unet_down(const sdc_unet *u, sdc_arena *a, const float *sample, const float *timestep, const float *ctx,
                  const sdc_unet_added *added, int64_t B, int64_t H, int64_t W, int64_t Nctx,
                  sdc_unet_acts *acts /* OUT */);
/* unet-mid: acts->h replaced by the mid block's output (same shape). */
int sdc_unet_mid(const sdc_unet *u, sdc_arena *a, const float *ctx, int64_t Nctx, sdc_unet_acts *acts);
/* unet-up: consumes h, skips, temb; writes the prediction (B,out,H,W) to out. */
int sdc_unet_up(const sdc_unet *u, sdc_arena *a, const float *ctx, int64_t Nctx, const sdc_unet_acts *acts, float *out);
/* The three in a row. */
int sdc_unet_forward(const sdc_unet *u, sdc_arena *a, const float *sample, const float *timestep, const float *ctx,
                     const sdc_unet_added *added, int64_t B, int64_t H, int64_t W, int64_t Nctx, float *out);

#endif
