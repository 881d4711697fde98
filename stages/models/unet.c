/* unet.c - the conditional UNet: time embedding, down blocks with skips, mid block, up blocks. */
#include "unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abort.h"
#include "error.h"
#include "ops.h"

static int sdc__unet_check_cfg(const sdc_unet_config *c) {
  if (c->n_blocks < 1) return sdc_seterr(SDC_ECONFIG, "unet config: no blocks");
  for (int i = 0; i < c->n_blocks; i++) {
    if (c->layers_per_block[i] > SDC_MAX_LAYERS - 1)
      return sdc_seterr(SDC_ECONFIG, "unet config: layers_per_block %lld exceeds %d", (long long)c->layers_per_block[i],
                        SDC_MAX_LAYERS - 1);
    if (c->transformer_layers[i] > SDC_MAX_TLAYERS)
      return sdc_seterr(SDC_ECONFIG, "unet config: transformer_layers_per_block %lld exceeds %d",
                        (long long)c->transformer_layers[i], SDC_MAX_TLAYERS);
  }
  return SDC_OK;
}

static sdc_transformer *sdc__load_attns(sdc_weights *w, const sdc_block_opts *o, const char *block, int64_t n,
                                        int64_t C, int64_t heads, const sdc_unet_config *c, int64_t depth) {
  sdc_transformer *t = calloc((size_t)n, sizeof *t);
  if (!t) return sdc_weights_fail(w, SDC_ENOMEM, "out of memory loading %s", block);
  for (int64_t j = 0; j < n; j++) {
    char p[256];
    snprintf(p, sizeof p, "%s.attentions.%lld", block, (long long)j);
    sdc_transformer_load(&t[j], w, o, p, C, heads, c->cross_attention_dim, c->norm_num_groups, depth,
                         c->use_linear_projection);
  }
  return t;
}

int sdc_unet_load(sdc_unet **out, sdc_weights *w, const sdc_unet_config *c, unsigned parts, const sdc_load_opts *opts) {
  *out = NULL;
  sdc_weights_set_gemm(w, sdc_sgemm_acc); /* LoRA merges, on the lookups below */
  int err = sdc_precision_check(opts->precision);
  if (!err) err = sdc__unet_check_cfg(c);
  if (err) return err;
  sdc_unet *u = calloc(1, sizeof *u);
  if (!u) return sdc_seterr(SDC_ENOMEM, "out of memory loading the unet");
  u->cfg = *c;
  u->parts = parts;
  u->opts = *opts;
  /* the UNet's convs run at 64x64 and below, where oneDNN's f32 convs beat
   * the shifted GEMMs (the VAE's full-resolution ones stay shifted GEMMs) */
  const sdc_block_opts bo = sdc_block_opts_for(opts);
  const int nb = c->n_blocks;
  const int64_t temb = c->time_embed_dim, C0 = c->block_out_channels[0];
  const double eps = c->norm_eps;
  const int64_t G = c->norm_num_groups;
  char p[256];
  /* Down blocks; channel bookkeeping is needed by every shard. */
  int64_t ch = C0;
  for (int i = 0; i < nb; i++) {
    sdc__unet_block *b = &u->down[i];
    b->cin = ch, b->cout = c->block_out_channels[i], b->n_layers = c->layers_per_block[i];
    b->has_attn = c->down_blocks[i] == SDC_BLOCK_CROSS_ATTN;
    b->has_resample = i != nb - 1;
    ch = b->cout;
  }
  if (parts & SDC_UNET_DOWN) {
    sdc_conv_load(&u->conv_in, w, "conv_in", c->in_channels, C0, c->conv_in_kernel);
    /* the time MLP stays f32: two rows per step, f32 costs nothing */
    u->time_w1 = sdc_wget_linear(w, SDC_WT_F32, "time_embedding", "linear_1.weight", temb, C0, 0);
    u->time_b1 = sdc_weights_get(w, "time_embedding.linear_1.bias", 1, (int64_t[]){temb});
    u->time_w2 = sdc_wget_linear(w, SDC_WT_F32, "time_embedding", "linear_2.weight", temb, temb, 0);
    u->time_b2 = sdc_weights_get(w, "time_embedding.linear_2.bias", 1, (int64_t[]){temb});
    if (c->add_text_time) {
      const int64_t pin = c->projection_class_embeddings_input_dim;
      u->add_w1 = sdc_wget_linear(w, SDC_WT_F32, "add_embedding", "linear_1.weight", temb, pin, 0);
      u->add_b1 = sdc_weights_get(w, "add_embedding.linear_1.bias", 1, (int64_t[]){temb});
      u->add_w2 = sdc_wget_linear(w, SDC_WT_F32, "add_embedding", "linear_2.weight", temb, temb, 0);
      u->add_b2 = sdc_weights_get(w, "add_embedding.linear_2.bias", 1, (int64_t[]){temb});
    }
    for (int i = 0; i < nb; i++) {
      sdc__unet_block *b = &u->down[i];
      for (int64_t j = 0; j < b->n_layers; j++) {
        snprintf(p, sizeof p, "down_blocks.%d.resnets.%lld", i, (long long)j);
        sdc_resnet_load(&b->res[j], w, &bo, p, j ? b->cout : b->cin, b->cout, temb, G, eps, 1.0);
      }
      snprintf(p, sizeof p, "down_blocks.%d", i);
      if (b->has_attn)
        b->attn = sdc__load_attns(w, &bo, p, b->n_layers, b->cout, c->heads[i], c, c->transformer_layers[i]);
      if (b->has_resample) {
        snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0", i);
        sdc_resample_load(&b->resample, w, &bo, p, b->cout, c->downsample_padding, 2);
      }
    }
  }
  const int64_t Cm = c->block_out_channels[nb - 1];
  if (parts & SDC_UNET_MID) {
    for (int j = 0; j < 2; j++) {
      snprintf(p, sizeof p, "mid_block.resnets.%d", j);
      sdc_resnet_load(&u->mid_res[j], w, &bo, p, Cm, Cm, temb, G, eps, c->mid_block_scale_factor);
    }
    u->mid_attn = sdc__load_attns(w, &bo, "mid_block", 1, Cm, c->heads[nb - 1], c, c->transformer_layers[nb - 1]);
  }
  /* Up blocks mirror the down blocks (diffusers' reversed lists). */
  int64_t out_ch = c->block_out_channels[nb - 1];
  for (int i = 0; i < nb; i++) {
    sdc__unet_block *b = &u->up[i];
    int r = nb - 1 - i;
    int64_t prev = out_ch;
    out_ch = c->block_out_channels[r];
    int64_t in_ch = c->block_out_channels[r > 0 ? r - 1 : 0];
    b->cin = prev, b->cout = out_ch, b->n_layers = c->layers_per_block[r] + 1;
    b->has_attn = c->up_blocks[i] == SDC_BLOCK_CROSS_ATTN;
    b->has_resample = i != nb - 1;
    if (!(parts & SDC_UNET_UP)) continue;
    for (int64_t j = 0; j < b->n_layers; j++) {
      int64_t skip_ch = j == b->n_layers - 1 ? in_ch : out_ch, res_in = j == 0 ? prev : out_ch;
      snprintf(p, sizeof p, "up_blocks.%d.resnets.%lld", i, (long long)j);
      sdc_resnet_load(&b->res[j], w, &bo, p, res_in + skip_ch, out_ch, temb, G, eps, 1.0);
    }
    snprintf(p, sizeof p, "up_blocks.%d", i);
    if (b->has_attn)
      b->attn = sdc__load_attns(w, &bo, p, b->n_layers, out_ch, c->heads[r], c, c->transformer_layers[r]);
    if (b->has_resample) {
      snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0", i);
      sdc_resample_load(&b->resample, w, &bo, p, out_ch, 1, 1);
    }
  }
  if (parts & SDC_UNET_UP) {
    u->norm_out_w = sdc_weights_get(w, "conv_norm_out.weight", 1, (int64_t[]){C0});
    u->norm_out_b = sdc_weights_get(w, "conv_norm_out.bias", 1, (int64_t[]){C0});
    sdc_conv_load(&u->conv_out, w, "conv_out", C0, c->out_channels, c->conv_out_kernel);
  }
  if ((err = sdc_weights_error(w))) {
    sdc_unet_free(u);
    return err;
  }
  *out = u;
  return SDC_OK;
}

void sdc_unet_free(sdc_unet *u) {
  if (!u) return;
  for (int i = 0; i < SDC_MAX_BLOCKS; i++) {
    free(u->down[i].attn);
    free(u->up[i].attn);
  }
  free(u->mid_attn);
  free(u);
}

void sdc_unet_shapes(const sdc_unet_config *c, int64_t H, int64_t W, sdc_unet_acts *s) {
  memset(s, 0, sizeof *s);
  int64_t ch = c->block_out_channels[0];
  int n = 0;
  s->skip_c[n] = ch, s->skip_h[n] = H, s->skip_w[n++] = W;
  for (int i = 0; i < c->n_blocks; i++) {
    ch = c->block_out_channels[i];
    for (int64_t j = 0; j < c->layers_per_block[i]; j++) s->skip_c[n] = ch, s->skip_h[n] = H, s->skip_w[n++] = W;
    if (i != c->n_blocks - 1) {
      H = sdc_downsample_size(H, c->downsample_padding), W = sdc_downsample_size(W, c->downsample_padding);
      s->skip_c[n] = ch, s->skip_h[n] = H, s->skip_w[n++] = W;
    }
  }
  s->n_skips = n;
  s->C = ch, s->H = H, s->W = W;
}

/* Sinusoidal embedding of each timestep (diffusers' get_timestep_embedding),
 * in double: the timesteps are fractional and reach 999. */
static void sdc__timestep_embedding(float *out, const float *t, int64_t B, int64_t dim, int flip, double shift) {
  int64_t half = dim / 2;
  for (int64_t n = 0; n < B; n++) {
    float *o = out + n * dim;
    for (int64_t i = 0; i < half; i++) {
      double freq = exp(-log(10000.0) * (double)i / ((double)half - shift)), arg = (double)t[n] * freq;
      o[flip ? half + i : i] = (float)sin(arg);
      o[flip ? i : half + i] = (float)cos(arg);
    }
    if (dim % 2) o[dim - 1] = 0.0f;
  }
}

/* diffusers' get_aug_embed for "text_time": add_embedding(concat(text_embeds, flatten(add_time_proj(time_ids))))
 * added to temb (B, T). */
static int sdc__add_text_time(const sdc_unet *u, sdc_arena *a, const sdc_unet_added *ad, int64_t B, float *temb) {
  const sdc_unet_config *c = &u->cfg;
  const int64_t T = c->time_embed_dim, E = c->addition_time_embed_dim, P = c->projection_class_embeddings_input_dim;
  if (!ad || !ad->text_embeds || !ad->time_ids)
    return sdc_seterr(SDC_EINVAL, "unet-down: this UNet (addition_embed_type 'text_time') needs text_embeds and time_ids");
  if (ad->text_dim < 1 || ad->n_time_ids < 1 || ad->text_dim + ad->n_time_ids * E != P)
    return sdc_seterr(SDC_EINVAL,
                      "unet-down: text_embeds width %lld and %lld time ids x %lld do not make "
                      "projection_class_embeddings_input_dim %lld",
                      (long long)ad->text_dim, (long long)ad->n_time_ids, (long long)E, (long long)P);
  float *in, *h1, *h2;
  SDC__ALLOC(in, a, B * P);
  SDC__ALLOC(h1, a, B * T);
  SDC__ALLOC(h2, a, B * T);
  for (int64_t b = 0; b < B; b++) {
    float *row = in + b * P;
    memcpy(row, ad->text_embeds + b * ad->text_dim, (size_t)ad->text_dim * sizeof *row);
    sdc__timestep_embedding(row + ad->text_dim, ad->time_ids + b * ad->n_time_ids, ad->n_time_ids, E,
                            c->flip_sin_to_cos, c->freq_shift);
  }
  int err = sdc_linear_wt(a, h1, in, &u->add_w1, u->add_b1, B, P, T);
  if (err) return err;
  sdc_silu(h1, B * T);
  if ((err = sdc_linear_wt(a, h2, h1, &u->add_w2, u->add_b2, B, T, T))) return err;
  sdc_add(temb, h2, B * T);
  return SDC_OK;
}

int sdc_unet_down(const sdc_unet *u, sdc_arena *a, const float *sample, const float *timestep, const float *ctx,
                  const sdc_unet_added *added, int64_t B, int64_t H, int64_t W, int64_t Nctx, sdc_unet_acts *acts) {
  const sdc_unet_config *c = &u->cfg;
  if (!(u->parts & SDC_UNET_DOWN)) return sdc_seterr(SDC_EINVAL, "unet-down: weights of this shard are not loaded");
  if (added && !c->add_text_time)
    return sdc_seterr(SDC_EINVAL, "unet-down: text_embeds/time_ids given to a UNet without an addition embedding");
  sdc_unet_shapes(c, H, W, acts);
  acts->B = B;
  const int64_t C0 = c->block_out_channels[0], T = c->time_embed_dim;
  float *tproj, *t1;
  SDC__ALLOC(acts->temb, a, B * T);
  SDC__ALLOC(tproj, a, B * C0);
  SDC__ALLOC(t1, a, B * T);
  sdc__timestep_embedding(tproj, timestep, B, C0, c->flip_sin_to_cos, c->freq_shift);
  int err = sdc_linear_wt(a, t1, tproj, &u->time_w1, u->time_b1, B, C0, T);
  if (err) return err;
  sdc_silu(t1, B * T);
  if ((err = sdc_linear_wt(a, acts->temb, t1, &u->time_w2, u->time_b2, B, T, T))) return err;
  if (c->add_text_time && (err = sdc__add_text_time(u, a, added, B, acts->temb))) return err;
  /* resnets take SiLU(temb); computed once for all of them */
  float *temb_silu = t1;
  memcpy(temb_silu, acts->temb, (size_t)(B * T) * sizeof *t1);
  sdc_silu(temb_silu, B * T);

  int k = 0;
  float *h;
  SDC__ALLOC(h, a, B * C0 * H * W);
  if ((err = sdc_conv_forward(&u->conv_in, a, h, sample, B, H, W))) return err;
  acts->skips[k++] = h;
  for (int i = 0; i < c->n_blocks; i++) {
    const sdc__unet_block *b = &u->down[i];
    for (int64_t j = 0; j < b->n_layers; j++) {
      if ((err = sdc_abort_check("unet-down", i, (int)j))) return err; /* a cancelled job stops here */
      float *r;
      SDC__ALLOC(r, a, B * b->cout * H * W);
      if ((err = sdc_resnet_forward(&b->res[j], a, r, h, temb_silu, B, H, W))) return err;
      if (b->has_attn) {
        float *t;
        SDC__ALLOC(t, a, B * b->cout * H * W);
        if ((err = sdc_transformer_forward(&b->attn[j], a, t, r, ctx, B, H, W, Nctx))) return err;
        r = t;
      }
      acts->skips[k++] = h = r;
    }
    if (b->has_resample) {
      int64_t Ho = sdc_downsample_size(H, b->resample.padding), Wo = sdc_downsample_size(W, b->resample.padding);
      float *d;
      SDC__ALLOC(d, a, B * b->cout * Ho * Wo);
      if ((err = sdc_downsample_forward(&b->resample, a, d, h, B, H, W, &H, &W))) return err;
      acts->skips[k++] = h = d;
    }
  }
  acts->h = h;
  return SDC_OK;
}

int sdc_unet_mid(const sdc_unet *u, sdc_arena *a, const float *ctx, int64_t Nctx, sdc_unet_acts *acts) {
  if (!(u->parts & SDC_UNET_MID)) return sdc_seterr(SDC_EINVAL, "unet-mid: weights of this shard are not loaded");
  const int64_t B = acts->B, C = acts->C, H = acts->H, W = acts->W, T = u->cfg.time_embed_dim;
  float *ts, *h1, *h2;
  SDC__ALLOC(ts, a, B * T);
  SDC__ALLOC(h1, a, B * C * H * W);
  SDC__ALLOC(h2, a, B * C * H * W);
  memcpy(ts, acts->temb, (size_t)(B * T) * sizeof *ts);
  sdc_silu(ts, B * T);
  int err;
  if ((err = sdc_abort_check("unet-mid", -1, -1))) return err;
  if ((err = sdc_resnet_forward(&u->mid_res[0], a, h1, acts->h, ts, B, H, W))) return err;
  if ((err = sdc_transformer_forward(&u->mid_attn[0], a, h2, h1, ctx, B, H, W, Nctx))) return err;
  if ((err = sdc_resnet_forward(&u->mid_res[1], a, h1, h2, ts, B, H, W))) return err;
  acts->h = h1;
  return SDC_OK;
}

int sdc_unet_up(const sdc_unet *u, sdc_arena *a, const float *ctx, int64_t Nctx, const sdc_unet_acts *acts, float *out) {
  const sdc_unet_config *c = &u->cfg;
  if (!(u->parts & SDC_UNET_UP)) return sdc_seterr(SDC_EINVAL, "unet-up: weights of this shard are not loaded");
  const int64_t B = acts->B, T = c->time_embed_dim, C0 = c->block_out_channels[0];
  int64_t H = acts->H, W = acts->W, C = acts->C;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *ts;
  SDC__ALLOC(ts, a, B * T);
  memcpy(ts, acts->temb, (size_t)(B * T) * sizeof *ts);
  sdc_silu(ts, B * T);
  int k = acts->n_skips, err;
  const float *h = acts->h;
  for (int i = 0; i < c->n_blocks; i++) {
    const sdc__unet_block *b = &u->up[i];
    for (int64_t j = 0; j < b->n_layers; j++) {
      if ((err = sdc_abort_check("unet-up", i, (int)j))) {
        sdc_arena_reset(a, m);
        return err;
      }
      k--;
      if (k < 0 || acts->skip_h[k] != H || acts->skip_w[k] != W)
        return sdc_seterr(SDC_ESHAPE, "unet-up: skip %d does not match the hidden state's size", k);
      int64_t Cs = acts->skip_c[k];
      float *cat, *r;
      SDC__ALLOC(cat, a, B * (C + Cs) * H * W);
      SDC__ALLOC(r, a, B * b->cout * H * W);
      sdc_concat_channels(cat, h, C, acts->skips[k], Cs, B, H * W);
      if ((err = sdc_resnet_forward(&b->res[j], a, r, cat, ts, B, H, W))) return err;
      C = b->cout;
      if (b->has_attn) {
        float *t;
        SDC__ALLOC(t, a, B * C * H * W);
        if ((err = sdc_transformer_forward(&b->attn[j], a, t, r, ctx, B, H, W, Nctx))) return err;
        r = t;
      }
      h = r;
    }
    if (b->has_resample) {
      /* resize to the next skip's size: 2x, or odd sizes as diffusers' upsample_size */
      int64_t Ho = k > 0 ? acts->skip_h[k - 1] : 2 * H, Wo = k > 0 ? acts->skip_w[k - 1] : 2 * W;
      float *up;
      SDC__ALLOC(up, a, B * C * Ho * Wo);
      if ((err = sdc_upsample_forward(&b->resample, a, up, h, B, H, W, Ho, Wo))) return err;
      h = up, H = Ho, W = Wo;
    }
  }
  float *n;
  SDC__ALLOC(n, a, B * C0 * H * W);
  sdc_group_norm_to(n, h, NULL, u->norm_out_w, u->norm_out_b, B, C0, H * W, c->norm_num_groups, c->norm_eps, 1);
  err = sdc_conv_forward(&u->conv_out, a, out, n, B, H, W);
  sdc_arena_reset(a, m);
  return err;
}

int sdc_unet_forward(const sdc_unet *u, sdc_arena *a, const float *sample, const float *timestep, const float *ctx,
                     const sdc_unet_added *added, int64_t B, int64_t H, int64_t W, int64_t Nctx, float *out) {
  sdc_arena_mark m = sdc_arena_get_mark(a);
  sdc_unet_acts acts;
  int err = sdc_unet_down(u, a, sample, timestep, ctx, added, B, H, W, Nctx, &acts);
  if (!err) err = sdc_unet_mid(u, a, ctx, Nctx, &acts);
  if (!err) err = sdc_unet_up(u, a, ctx, Nctx, &acts, out);
  sdc_arena_reset(a, m);
  return err;
}
