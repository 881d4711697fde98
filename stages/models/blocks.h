/* blocks.h - the building blocks UNet and VAE share: resnet, spatial transformer, VAE attention, resampling. */
#ifndef SDC_BLOCKS_H
#define SDC_BLOCKS_H

#include <stdint.h>

#include "arena.h"
#include "error.h"
#include "ops.h"
#include "weights.h"

#define SDC_MAX_TLAYERS 16

/* Options fixed when a model is loaded (sdc_clip_load, sdc_unet_load,
 * sdc_vae_load, sdc_pipeline_load ...): the model keeps them and its layers
 * compute accordingly; nothing else sets how a model runs. */
typedef struct {
  sdc_precision precision; /* of the conv, linear and attention GEMMs (ops.h) */
  int plain;               /* fp32 weights as read, never packed: a recorder whose weights are only written out
                            * (sdc model-init), where packed copies would double the memory */
} sdc_load_opts;
/* fp32: exact, the default. */
#define SDC_LOAD_OPTS_FP32 ((sdc_load_opts){.precision = SDC_PREC_FP32})

/* Arena allocation of n floats that turns exhaustion into an error return
 * from the enclosing function. */
#define SDC__ALLOC(ptr, a, n)                                                                    \
  do {                                                                                           \
    if (!((ptr) = sdc_arena_floats((a), (n))))                                                   \
      return sdc_seterr(SDC_ENOMEM, "out of memory for activations (%lld floats)", (long long)(n)); \
  } while (0)

/* The form a layer's GEMM weights are loaded in, chosen once per layer. */
typedef enum {
  SDC_WT_F32,        /* f32 for OpenBLAS: tap-major when sdc_conv_packs() says so, plain otherwise */
  SDC_WT_F32_ONEDNN, /* f32 packed for oneDNN's convs and matmuls */
  SDC_WT_BF16,       /* packed bf16 for oneDNN (bf16 precision) */
} sdc_wt_form;

/* What a block's loader builds its layers with, from the model's options. */
typedef struct {
  sdc_precision precision; /* its attention products */
  sdc_wt_form conv, linear;
} sdc_block_opts;
/* fp32: packed for oneDNN or plain f32 for OpenBLAS, as sdc_fp32_gemm() says. */
sdc_block_opts sdc_block_opts_for(const sdc_load_opts *o);

/* Looks up "<prefix>.<name>" with the given shape (trailing zero dims are
 * dropped); NULL and a recorded error in w when missing or mis-shaped. */
const float *sdc_wget(sdc_weights *w, const char *prefix, const char *name, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3);
/* A conv's weight "<prefix>.<name>" [cout, cin, k, k] in the given form:
 * packed for oneDNN (the f32 copy released); tap-major f32 when
 * sdc_conv_packs() says the conv will want it so; plain f32 otherwise. A
 * recorder's weights stay f32 in place of bf16 (it writes them later).
 * Errors are recorded in w (then the result is empty). */
sdc_wt sdc_wget_conv(sdc_weights *w, sdc_wt_form form, const char *prefix, const char *name, int64_t cout, int64_t cin,
                     int64_t k, int64_t stride);

/* Same for a linear weight [n_out, n_in] that may be stored as a 1x1 conv
 * (prefer_conv: the layout a recorder writes, as the real files of that
 * architecture); SDC_WT_BF16 packs it, any other form keeps f32. */
sdc_wt sdc_wget_linear(sdc_weights *w, sdc_wt_form form, const char *prefix, const char *name, int64_t n_out,
                       int64_t n_in, int prefer_conv);

/* ResnetBlock2D: GroupNorm-SiLU-conv3x3 (+ time projection) GroupNorm-SiLU-conv3x3, plus shortcut. */
typedef struct {
  int64_t cin, cout, temb_dim, groups;
  double eps, out_scale;
  const float *norm1_w, *norm1_b, *conv1_b, *temb_b, *norm2_w, *norm2_b, *conv2_b, *short_b;
  sdc_wt conv1_w, temb_w, conv2_w, short_w;
} sdc_resnet;

/* temb_dim 0: no time embedding (VAE). A 1x1 conv_shortcut is loaded when cin != cout. */
void sdc_resnet_load(sdc_resnet *r, sdc_weights *w, const sdc_block_opts *o, const char *prefix, int64_t cin,
                     int64_t cout, int64_t temb_dim, int64_t groups, double eps, double out_scale);
/* out (B,cout,H,W) from x (B,cin,H,W); temb_silu (B,temb_dim) is SiLU(temb), NULL without. */
int sdc_resnet_forward(const sdc_resnet *r, sdc_arena *a, float *out, const float *x, const float *temb_silu, int64_t B,
                       int64_t H, int64_t W);

/* Transformer2DModel with BasicTransformerBlocks (self-attn, cross-attn, GEGLU feed-forward). */
/* diffusers' Attention: bias-free q/k/v projections, an output projection with bias. */
typedef struct {
  sdc_wt q, k, v, o_w;
  const float *o_b;
} sdc__attn;

typedef struct {
  const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  sdc__attn attn1, attn2; /* self-attention; cross-attention to the context */
  const float *norm3_w, *norm3_b, *ff1_b, *ff2_b;
  sdc_wt ff1_w, ff2_w;
} sdc__tblock;

typedef struct {
  int64_t C, heads, ctx_dim, groups, n_layers, ff_inner;
  sdc_precision prec; /* of the attention products */
  const float *norm_w, *norm_b, *proj_in_b, *proj_out_b;
  sdc_wt proj_in_w, proj_out_w;
  sdc__tblock blocks[SDC_MAX_TLAYERS];
} sdc_transformer;

/* linear_proj: proj_in/proj_out are linear layers (SD 2.x) rather than 1x1 convs
 * (SD 1.x); either storage is accepted when loading. */
void sdc_transformer_load(sdc_transformer *t, sdc_weights *w, const sdc_block_opts *o, const char *prefix, int64_t C,
                          int64_t heads, int64_t ctx_dim, int64_t groups, int64_t n_layers, int linear_proj);
/* out (B,C,H,W) from x (B,C,H,W) attending to ctx (B,Nctx,ctx_dim). out may not alias x. */
int sdc_transformer_forward(const sdc_transformer *t, sdc_arena *a, float *out, const float *x, const float *ctx,
                            int64_t B, int64_t H, int64_t W, int64_t Nctx);

/* The VAE mid-block's single-head self-attention (either key spelling). */
typedef struct {
  int64_t C, groups;
  sdc_precision prec; /* of the attention product */
  const float *norm_w, *norm_b, *q_b, *k_b, *v_b, *o_b;
  sdc_wt q_w, k_w, v_w, o_w;
} sdc_vae_attention;

void sdc_vae_attention_load(sdc_vae_attention *t, sdc_weights *w, const sdc_block_opts *o, const char *prefix,
                            int64_t C, int64_t groups);
int sdc_vae_attention_forward(const sdc_vae_attention *t, sdc_arena *a, float *out, const float *x, int64_t B,
                              int64_t H, int64_t W);

/* Resampling convs: a 3x3 conv with stride 2 (pad = padding on every side, or
 * the VAE's asymmetric (0,1,0,1) when padding is 0), and nearest-resize + 3x3 conv. */
typedef struct {
  int64_t C, padding;
  sdc_wt w;
  const float *b;
} sdc_resample;

/* stride 2: a downsampler; stride 1: the conv after an upsampler's resize. */
void sdc_resample_load(sdc_resample *r, sdc_weights *w, const sdc_block_opts *o, const char *prefix, int64_t C,
                       int64_t padding, int64_t stride);
int sdc_downsample_forward(const sdc_resample *r, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H,
                           int64_t W, int64_t *Ho /* OUT */, int64_t *Wo /* OUT */);
int sdc_upsample_forward(const sdc_resample *r, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H, int64_t W,
                         int64_t Ho, int64_t Wo);
/* Output size of sdc_downsample_forward along one axis. */
int64_t sdc_downsample_size(int64_t in, int64_t padding);

/* A plain conv layer's weights: a model's input and output convs, f32 in
 * every precision. */
typedef struct {
  int64_t cin, cout, k;
  sdc_wt w;
  const float *b;
} sdc_conv;

void sdc_conv_load(sdc_conv *c, sdc_weights *w, const char *prefix, int64_t cin, int64_t cout, int64_t k);
/* Same-size conv (stride 1, pad k/2). */
int sdc_conv_forward(const sdc_conv *c, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H, int64_t W);

#endif
