/* vae.h - AutoencoderKL: the decoder (latents -> pixels) and the encoder (pixels -> latent distribution). */
#ifndef SDC_VAE_H
#define SDC_VAE_H

#include "arena.h"
#include "blocks.h"
#include "config.h"
#include "weights.h"

#define SDC_VAE_MAX_LAYERS 8

enum { SDC_VAE_DECODER = 1, SDC_VAE_ENCODER = 2 };

typedef struct {
  int64_t n_layers, cin, cout;
  int has_resample;
  sdc_resnet res[SDC_VAE_MAX_LAYERS];
  sdc_resample resample;
} sdc__vae_block;

typedef struct {
  sdc_conv conv_in, conv_out;
  sdc_resnet mid_res[2];
  sdc_vae_attention mid_attn;
  sdc__vae_block blocks[SDC_MAX_BLOCKS];
  const float *norm_out_w, *norm_out_b;
} sdc__vae_coder;

typedef struct {
  sdc_vae_config cfg;
  unsigned parts;
  sdc_load_opts opts; /* as loaded */
  sdc__vae_coder dec, enc;
  sdc_conv quant, post_quant; /* 1x1, when the config uses them */
} sdc_vae;

/* Loads the parts (SDC_VAE_DECODER | SDC_VAE_ENCODER) from w, which must
 * outlive the model, for opts (its precision: SDC_EUNSUPPORTED when this CPU
 * cannot run it). Errors name the file and tensor. */
int sdc_vae_load(sdc_vae **out /* OUT */, sdc_weights *w, const sdc_vae_config *cfg, unsigned parts,
                 const sdc_load_opts *opts);
void sdc_vae_free(sdc_vae *v);

/* z (B,latent,h,w) -- already divided by scaling_factor -- -> out (B,out,h*s,w*s) in [-1,1] scale. */
int sdc_vae_decode(const sdc_vae *v, sdc_arena *a, const float *z, int64_t B, int64_t h, int64_t w, float *out);
/* x (B,in,H,W) -> mean, logvar (B,latent,H/s,W/s); logvar clamped to [-30,20] as diffusers. */
int sdc_vae_encode(const sdc_vae *v, sdc_arena *a, const float *x, int64_t B, int64_t H, int64_t W, float *mean,
                   float *logvar);

#endif
