/* vae.c - AutoencoderKL decoder and encoder, with the mid-block attention in either key spelling. */
#include "vae.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abort.h"
#include "error.h"
#include "ops.h"

#define SDC__VAE_EPS 1e-6

static void sdc__load_mid(sdc__vae_coder *c, sdc_weights *w, const sdc_block_opts *o, const char *side,
                          const sdc_vae_config *cfg) {
  const int64_t C = cfg->block_out_channels[cfg->n_blocks - 1], G = cfg->norm_num_groups;
  char p[128];
  for (int j = 0; j < 2; j++) {
    snprintf(p, sizeof p, "%s.mid_block.resnets.%d", side, j);
    sdc_resnet_load(&c->mid_res[j], w, o, p, C, C, 0, G, SDC__VAE_EPS, 1.0);
  }
  if (cfg->mid_block_add_attention) {
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", side);
    sdc_vae_attention_load(&c->mid_attn, w, o, p, C, G);
  }
}

int sdc_vae_load(sdc_vae **out, sdc_weights *w, const sdc_vae_config *cfg, unsigned parts, const sdc_load_opts *opts) {
  *out = NULL;
  sdc_weights_set_gemm(w, sdc_sgemm_acc); /* LoRA merges, on the lookups below */
  int err = sdc_precision_check(opts->precision);
  if (err) return err;
  if (cfg->n_blocks < 1) return sdc_seterr(SDC_ECONFIG, "vae config: no blocks");
  if (cfg->layers_per_block + 1 > SDC_VAE_MAX_LAYERS)
    return sdc_seterr(SDC_ECONFIG, "vae config: layers_per_block %lld exceeds %d", (long long)cfg->layers_per_block,
                      SDC_VAE_MAX_LAYERS - 1);
  sdc_vae *v = calloc(1, sizeof *v);
  if (!v) return sdc_seterr(SDC_ENOMEM, "out of memory loading the vae");
  v->cfg = *cfg;
  v->parts = parts;
  v->opts = *opts;
  /* the VAE's full-resolution convs run as shifted GEMMs in fp32 */
  const sdc_block_opts bo = sdc_block_opts_for(opts);
  const int nb = cfg->n_blocks;
  const int64_t G = cfg->norm_num_groups, L = cfg->latent_channels, *boc = cfg->block_out_channels;
  char p[128];
  if (parts & SDC_VAE_DECODER) {
    sdc__vae_coder *d = &v->dec;
    if (cfg->use_post_quant_conv) sdc_conv_load(&v->post_quant, w, "post_quant_conv", L, L, 1);
    sdc_conv_load(&d->conv_in, w, "decoder.conv_in", L, boc[nb - 1], 3);
    sdc__load_mid(d, w, &bo, "decoder", cfg);
    int64_t out_ch = boc[nb - 1];
    for (int i = 0; i < nb; i++) {
      sdc__vae_block *b = &d->blocks[i];
      int64_t prev = out_ch;
      out_ch = boc[nb - 1 - i];
      b->cin = prev, b->cout = out_ch, b->n_layers = cfg->layers_per_block + 1, b->has_resample = i != nb - 1;
      for (int64_t j = 0; j < b->n_layers; j++) {
        snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%lld", i, (long long)j);
        sdc_resnet_load(&b->res[j], w, &bo, p, j ? out_ch : prev, out_ch, 0, G, SDC__VAE_EPS, 1.0);
      }
      if (b->has_resample) {
        snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0", i);
        sdc_resample_load(&b->resample, w, &bo, p, out_ch, 1, 1);
      }
    }
    d->norm_out_w = sdc_weights_get(w, "decoder.conv_norm_out.weight", 1, (int64_t[]){boc[0]});
    d->norm_out_b = sdc_weights_get(w, "decoder.conv_norm_out.bias", 1, (int64_t[]){boc[0]});
    sdc_conv_load(&d->conv_out, w, "decoder.conv_out", boc[0], cfg->out_channels, 3);
  }
  if (parts & SDC_VAE_ENCODER) {
    sdc__vae_coder *e = &v->enc;
    sdc_conv_load(&e->conv_in, w, "encoder.conv_in", cfg->in_channels, boc[0], 3);
    int64_t out_ch = boc[0];
    for (int i = 0; i < nb; i++) {
      sdc__vae_block *b = &e->blocks[i];
      int64_t in_ch = out_ch;
      out_ch = boc[i];
      b->cin = in_ch, b->cout = out_ch, b->n_layers = cfg->layers_per_block, b->has_resample = i != nb - 1;
      for (int64_t j = 0; j < b->n_layers; j++) {
        snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%lld", i, (long long)j);
        sdc_resnet_load(&b->res[j], w, &bo, p, j ? out_ch : in_ch, out_ch, 0, G, SDC__VAE_EPS, 1.0);
      }
      if (b->has_resample) {
        /* padding 0: the encoder pads (0,1,0,1) before its stride-2 conv */
        snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0", i);
        sdc_resample_load(&b->resample, w, &bo, p, out_ch, 0, 2);
      }
    }
    sdc__load_mid(e, w, &bo, "encoder", cfg);
    e->norm_out_w = sdc_weights_get(w, "encoder.conv_norm_out.weight", 1, (int64_t[]){boc[nb - 1]});
    e->norm_out_b = sdc_weights_get(w, "encoder.conv_norm_out.bias", 1, (int64_t[]){boc[nb - 1]});
    sdc_conv_load(&e->conv_out, w, "encoder.conv_out", boc[nb - 1], 2 * L, 3);
    if (cfg->use_quant_conv) sdc_conv_load(&v->quant, w, "quant_conv", 2 * L, 2 * L, 1);
  }
  if ((err = sdc_weights_error(w))) {
    sdc_vae_free(v);
    return err;
  }
  *out = v;
  return SDC_OK;
}

void sdc_vae_free(sdc_vae *v) { free(v); }

/* resnet, attention, resnet at the lowest resolution; h is replaced. */
static int sdc__vae_mid(const sdc__vae_coder *c, const sdc_vae_config *cfg, sdc_arena *a, float **h, int64_t B,
                        int64_t C, int64_t H, int64_t W) {
  float *t1, *t2;
  SDC__ALLOC(t1, a, B * C * H * W);
  SDC__ALLOC(t2, a, B * C * H * W);
  int err;
  if ((err = sdc_resnet_forward(&c->mid_res[0], a, t1, *h, NULL, B, H, W))) return err;
  if (cfg->mid_block_add_attention) {
    if ((err = sdc_vae_attention_forward(&c->mid_attn, a, t2, t1, B, H, W))) return err;
    float *t = t1;
    t1 = t2, t2 = t;
  }
  if ((err = sdc_resnet_forward(&c->mid_res[1], a, t2, t1, NULL, B, H, W))) return err;
  *h = t2;
  return SDC_OK;
}

int sdc_vae_decode(const sdc_vae *v, sdc_arena *a, const float *z, int64_t B, int64_t H, int64_t W, float *out) {
  const sdc_vae_config *cfg = &v->cfg;
  if (!(v->parts & SDC_VAE_DECODER)) return sdc_seterr(SDC_EINVAL, "vae: decoder weights are not loaded");
  const int nb = cfg->n_blocks;
  const int64_t L = cfg->latent_channels, *boc = cfg->block_out_channels;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  int err;
  const float *in = z;
  if (cfg->use_post_quant_conv) {
    float *pq;
    SDC__ALLOC(pq, a, B * L * H * W);
    if ((err = sdc_conv_forward(&v->post_quant, a, pq, z, B, H, W))) return err;
    in = pq;
  }
  int64_t C = boc[nb - 1];
  /* two buffers sized for the largest activation, used in turn: each layer
   * reads one and writes the other, so a 512x512 decode keeps two
   * full-resolution tensors alive rather than every layer's output */
  int64_t max_n = C * H * W, hh = H, ww = W;
  for (int i = 0; i < nb; i++) {
    const int64_t co = v->dec.blocks[i].cout;
    if (co * hh * ww > max_n) max_n = co * hh * ww;
    if (v->dec.blocks[i].has_resample) {
      hh *= 2, ww *= 2;
      if (co * hh * ww > max_n) max_n = co * hh * ww;
    }
  }
  float *pp[2], *h;
  SDC__ALLOC(pp[0], a, B * max_n);
  SDC__ALLOC(pp[1], a, B * max_n);
  int k = 1;
  h = pp[0];
  if ((err = sdc_conv_forward(&v->dec.conv_in, a, h, in, B, H, W))) return err;
  if ((err = sdc_abort_check("vae mid", -1, -1)) || (err = sdc__vae_mid(&v->dec, cfg, a, &h, B, C, H, W))) return err;
  for (int i = 0; i < nb; i++) {
    const sdc__vae_block *b = &v->dec.blocks[i];
    for (int64_t j = 0; j < b->n_layers; j++) {
      if ((err = sdc_abort_check("vae decoder", i, (int)j))) return err; /* the caller resets the arena */
      float *r = pp[k] == h ? pp[k ^= 1] : pp[k];
      if ((err = sdc_resnet_forward(&b->res[j], a, r, h, NULL, B, H, W))) return err;
      h = r, k ^= 1;
    }
    C = b->cout;
    if (b->has_resample) {
      if ((err = sdc_abort_check("vae decoder upsample", i, -1))) return err;
      float *u = pp[k] == h ? pp[k ^= 1] : pp[k];
      if ((err = sdc_upsample_forward(&b->resample, a, u, h, B, H, W, 2 * H, 2 * W))) return err;
      h = u, H *= 2, W *= 2, k ^= 1;
    }
  }
  sdc_group_norm(h, v->dec.norm_out_w, v->dec.norm_out_b, B, C, H * W, cfg->norm_num_groups, SDC__VAE_EPS, 1);
  err = sdc_conv_forward(&v->dec.conv_out, a, out, h, B, H, W);
  sdc_arena_reset(a, m);
  return err;
}

int sdc_vae_encode(const sdc_vae *v, sdc_arena *a, const float *x, int64_t B, int64_t H, int64_t W, float *mean,
                   float *logvar) {
  const sdc_vae_config *cfg = &v->cfg;
  if (!(v->parts & SDC_VAE_ENCODER)) return sdc_seterr(SDC_EINVAL, "vae: encoder weights are not loaded");
  const int nb = cfg->n_blocks;
  const int64_t L = cfg->latent_channels, *boc = cfg->block_out_channels;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  int err;
  int64_t C = boc[0];
  float *h;
  SDC__ALLOC(h, a, B * C * H * W);
  if ((err = sdc_conv_forward(&v->enc.conv_in, a, h, x, B, H, W))) return err;
  for (int i = 0; i < nb; i++) {
    const sdc__vae_block *b = &v->enc.blocks[i];
    for (int64_t j = 0; j < b->n_layers; j++) {
      float *r;
      SDC__ALLOC(r, a, B * b->cout * H * W);
      if ((err = sdc_resnet_forward(&b->res[j], a, r, h, NULL, B, H, W))) return err;
      h = r;
    }
    C = b->cout;
    if (b->has_resample) {
      int64_t Ho = sdc_downsample_size(H, 0), Wo = sdc_downsample_size(W, 0);
      float *d;
      SDC__ALLOC(d, a, B * C * Ho * Wo);
      if ((err = sdc_downsample_forward(&b->resample, a, d, h, B, H, W, &H, &W))) return err;
      h = d;
    }
  }
  if ((err = sdc__vae_mid(&v->enc, cfg, a, &h, B, C, H, W))) return err;
  sdc_group_norm(h, v->enc.norm_out_w, v->enc.norm_out_b, B, C, H * W, cfg->norm_num_groups, SDC__VAE_EPS, 1);
  float *moments, *q;
  SDC__ALLOC(moments, a, B * 2 * L * H * W);
  if ((err = sdc_conv_forward(&v->enc.conv_out, a, moments, h, B, H, W))) return err;
  if (cfg->use_quant_conv) {
    SDC__ALLOC(q, a, B * 2 * L * H * W);
    if ((err = sdc_conv_forward(&v->quant, a, q, moments, B, H, W))) return err;
    moments = q;
  }
  const int64_t n = L * H * W;
  for (int64_t b = 0; b < B; b++) {
    memcpy(mean + b * n, moments + b * 2 * n, (size_t)n * sizeof *mean);
    for (int64_t i = 0; i < n; i++) {
      float lv = moments[b * 2 * n + n + i];
      logvar[b * n + i] = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
    }
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}
