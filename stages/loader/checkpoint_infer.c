/* checkpoint_infer.c - what a single-file checkpoint is, read from its tensors: family facts and configs from shapes. */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"

/* Shape of `prefix` + `name`, or NULL when the file has no such tensor. */
static const sdc_st_entry *sdc__at(const sdc_st_file *f, const char *prefix, const char *fmt, long long a, long long b) {
  char name[256], tail[200];
  snprintf(tail, sizeof tail, fmt, a, b);
  snprintf(name, sizeof name, "%s%s", prefix, tail);
  return sdc_st_find(f, name);
}

/* A tensor that must be there with ndim dims; names it when it is not. */
static int sdc__need(const sdc_st_file *f, const sdc_st_entry **out, int ndim, const char *prefix, const char *fmt,
                     long long a, long long b) {
  *out = sdc__at(f, prefix, fmt, a, b);
  if (*out && (*out)->ndim == ndim) return SDC_OK;
  char tail[200];
  snprintf(tail, sizeof tail, fmt, a, b);
  return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s%s' is %s; cannot infer the configs (pass --config DIR)", f->path, prefix,
                    tail, *out ? "not of the expected rank" : "missing");
}

/* The UNet (openaimodel.py layout): levels are read off input_blocks, whose
 * entries are a resnet (K.0.in_layers), a transformer (K.1.proj_in) or a
 * level's downsampler (K.0.op). Heads follow the family's rule. */
static int sdc__infer_unet(const sdc_st_file *f, sdc_family fam, sdc_unet_config *u) {
  const char *P = SDC_CKPT_UNET_PREFIX;
  const sdc_st_entry *e;
  int err = sdc__need(f, &e, 4, P, "input_blocks.0.0.weight", 0, 0);
  if (err) return err;
  u->in_channels = e->shape[1];
  if ((err = sdc__need(f, &e, 4, P, "out.2.weight", 0, 0))) return err;
  u->out_channels = e->shape[0];
  if ((err = sdc__need(f, &e, 2, P, "time_embed.0.weight", 0, 0))) return err;
  u->time_embed_dim = e->shape[0];
  int n = 0;
  int64_t lay = 0, depth = 0;
  int cross = 0;
  for (long long k = 1;; k++) {
    if (sdc__at(f, P, "input_blocks.%lld.0.op.weight", k, 0) || !sdc__at(f, P, "input_blocks.%lld.0.in_layers.2.weight", k, 0)) {
      if (!lay) break; /* past the last level */
      if (n == SDC_MAX_BLOCKS)
        return sdc_seterr(SDC_EUNSUPPORTED, "%s: UNet has more than %d levels", f->path, SDC_MAX_BLOCKS);
      u->layers_per_block[n] = lay;
      u->down_blocks[n] = cross ? SDC_BLOCK_CROSS_ATTN : SDC_BLOCK_PLAIN;
      u->transformer_layers[n] = cross ? depth : 1;
      n++, lay = 0, cross = 0;
      if (!sdc__at(f, P, "input_blocks.%lld.0.op.weight", k, 0)) break; /* the last level has no downsampler */
      continue;
    }
    const sdc_st_entry *r = sdc__at(f, P, "input_blocks.%lld.0.in_layers.2.weight", k, 0);
    if (n == SDC_MAX_BLOCKS) return sdc_seterr(SDC_EUNSUPPORTED, "%s: UNet has more than %d levels", f->path, SDC_MAX_BLOCKS);
    if (r->ndim != 4) return sdc_seterr(SDC_EFORMAT, "%s: tensor '%sinput_blocks.%lld.0.in_layers.2.weight' is not 4-d", f->path, P, k);
    u->block_out_channels[n] = r->shape[0];
    lay++;
    const sdc_st_entry *pin = sdc__at(f, P, "input_blocks.%lld.1.proj_in.weight", k, 0);
    if (pin) {
      cross = 1;
      u->use_linear_projection = pin->ndim == 2;
      for (depth = 0; sdc__at(f, P, "input_blocks.%lld.1.transformer_blocks.%lld.norm1.weight", k, depth); depth++) {}
      const sdc_st_entry *kw = sdc__at(f, P, "input_blocks.%lld.1.transformer_blocks.0.attn2.to_k.weight", k, 0);
      if (kw && kw->ndim == 2) u->cross_attention_dim = kw->shape[1];
    }
  }
  if (n < 1) return sdc_seterr(SDC_EFORMAT, "%s: no UNet levels under '%sinput_blocks.*'", f->path, P);
  u->n_blocks = n;
  for (int i = 0; i < n; i++) {
    u->up_blocks[i] = u->down_blocks[n - 1 - i];
    /* heads cannot be read from shapes: SD 1.x has 8 everywhere, SD 2.x a head width of 64 */
    const int64_t c = u->block_out_channels[i];
    u->heads[i] = fam == SDC_FAMILY_SD2 ? c / 64 : 8;
    if (u->heads[i] < 1 || c % u->heads[i])
      return sdc_seterr(SDC_EUNSUPPORTED, "%s: UNet level %d has %lld channels, which the %s heads rule (%s) does not divide; "
                        "pass --config DIR", f->path, i, (long long)c, sdc_family_name(fam),
                        fam == SDC_FAMILY_SD2 ? "head width 64" : "8 heads");
  }
  return SDC_OK;
}

/* The VAE (ldm's Encoder/Decoder): levels and blocks from encoder.down.*. */
static int sdc__infer_vae(const sdc_st_file *f, sdc_vae_config *v) {
  const char *P = SDC_CKPT_VAE_PREFIX;
  const sdc_st_entry *e;
  int err = sdc__need(f, &e, 4, P, "encoder.conv_in.weight", 0, 0);
  if (!err) v->in_channels = e->shape[1];
  if (!err && !(err = sdc__need(f, &e, 4, P, "decoder.conv_in.weight", 0, 0))) v->latent_channels = e->shape[1];
  if (!err && !(err = sdc__need(f, &e, 4, P, "decoder.conv_out.weight", 0, 0))) v->out_channels = e->shape[0];
  if (err) return err;
  int n = 0;
  while (n < SDC_MAX_BLOCKS && (e = sdc__at(f, P, "encoder.down.%lld.block.0.conv1.weight", n, 0)) && e->ndim == 4)
    v->block_out_channels[n++] = e->shape[0];
  if (n < 1) return sdc_seterr(SDC_EFORMAT, "%s: no VAE levels under '%sencoder.down.*'", f->path, P);
  v->n_blocks = n;
  int64_t b = 0;
  while (sdc__at(f, P, "encoder.down.0.block.%lld.conv1.weight", b, 0)) b++;
  v->layers_per_block = b;
  v->use_quant_conv = sdc__at(f, P, "quant_conv.weight", 0, 0) != NULL;
  v->use_post_quant_conv = sdc__at(f, P, "post_quant_conv.weight", 0, 0) != NULL;
  v->mid_block_add_attention = sdc__at(f, P, "decoder.mid.attn_1.q.weight", 0, 0) != NULL;
  return SDC_OK;
}

/* The text encoder in either layout: widths from the embeddings, depth by
 * counting layers (OpenCLIP: all but the last, SD 2.x's penultimate-layer
 * conditioning), heads by CLIP's head width of 64. */
static int sdc__infer_clip(const sdc_st_file *f, sdc_clip_config *c) {
  const char *P = SDC_CKPT_OPENCLIP_PREFIX;
  const sdc_st_entry *e;
  int err;
  if (sdc__at(f, P, "token_embedding.weight", 0, 0)) {
    if ((err = sdc__need(f, &e, 2, P, "token_embedding.weight", 0, 0))) return err;
    c->vocab_size = e->shape[0], c->hidden_size = e->shape[1];
    if ((err = sdc__need(f, &e, 2, P, "positional_embedding", 0, 0))) return err;
    c->max_positions = e->shape[0];
    if ((err = sdc__need(f, &e, 2, P, "transformer.resblocks.0.mlp.c_fc.weight", 0, 0))) return err;
    c->intermediate_size = e->shape[0];
    int64_t l = 0;
    while (sdc__at(f, P, "transformer.resblocks.%lld.ln_1.weight", l, 0)) l++;
    c->n_layers = l > 1 ? l - 1 : l;
  } else {
    char pre[96];
    snprintf(pre, sizeof pre, "%s%s", SDC_CKPT_CLIP_PREFIX,
             sdc__at(f, SDC_CKPT_CLIP_PREFIX, "text_model.embeddings.token_embedding.weight", 0, 0) ? "text_model." : "");
    if ((err = sdc__need(f, &e, 2, pre, "embeddings.token_embedding.weight", 0, 0))) return err;
    c->vocab_size = e->shape[0], c->hidden_size = e->shape[1];
    if ((err = sdc__need(f, &e, 2, pre, "embeddings.position_embedding.weight", 0, 0))) return err;
    c->max_positions = e->shape[0];
    if ((err = sdc__need(f, &e, 2, pre, "encoder.layers.0.mlp.fc1.weight", 0, 0))) return err;
    c->intermediate_size = e->shape[0];
    int64_t l = 0;
    while (sdc__at(f, pre, "encoder.layers.%lld.layer_norm1.weight", l, 0)) l++;
    c->n_layers = l;
  }
  c->n_heads = c->hidden_size / 64 > 0 ? c->hidden_size / 64 : 1;
  if (c->hidden_size % c->n_heads)
    return sdc_seterr(SDC_EUNSUPPORTED, "%s: text encoder width %lld is not a multiple of CLIP's head width 64; pass --config DIR",
                      f->path, (long long)c->hidden_size);
  return SDC_OK;
}

/* A value read from shapes must lie where config.c would accept it from a config.json. */
static int sdc__in(const sdc_st_file *f, const char *what, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return SDC_OK;
  return sdc_seterr(SDC_EFORMAT, "%s: %s is %lld by its tensors' shapes, expected %lld..%lld; pass --config DIR", f->path,
                    what, (long long)v, (long long)lo, (long long)hi);
}

/* The checks sdc_*_config_parse make, on configs that did not come from JSON. */
static int sdc__check_inferred(const sdc_st_file *f, const sdc_unet_config *u, const sdc_vae_config *v,
                               const sdc_clip_config *c) {
  int err = sdc__in(f, "UNet in_channels", u->in_channels, 1, 1024);
  if (!err) err = sdc__in(f, "UNet out_channels", u->out_channels, 1, 1024);
  if (!err) err = sdc__in(f, "UNet cross_attention_dim", u->cross_attention_dim, 1, 1 << 16);
  if (!err) err = sdc__in(f, "UNet time embedding width", u->time_embed_dim, 1, 1 << 20);
  for (int i = 0; !err && i < u->n_blocks; i++) {
    err = sdc__in(f, "a UNet level's layers_per_block", u->layers_per_block[i], 1, 64);
    if (!err) err = sdc__in(f, "a UNet level's transformer depth", u->transformer_layers[i], 1, 64);
    if (!err) err = sdc__in(f, "a UNet level's channels", u->block_out_channels[i], 1, 1 << 16);
    if (!err && u->block_out_channels[i] % u->norm_num_groups)
      err = sdc_seterr(SDC_EFORMAT, "%s: UNet level %d has %lld channels, not a multiple of norm_num_groups %lld; pass --config DIR",
                       f->path, i, (long long)u->block_out_channels[i], (long long)u->norm_num_groups);
  }
  if (!err) err = sdc__in(f, "VAE in_channels", v->in_channels, 1, 64);
  if (!err) err = sdc__in(f, "VAE out_channels", v->out_channels, 1, 64);
  if (!err) err = sdc__in(f, "VAE latent_channels", v->latent_channels, 1, 1024);
  if (!err) err = sdc__in(f, "VAE layers_per_block", v->layers_per_block, 1, 64);
  for (int i = 0; !err && i < v->n_blocks; i++) {
    err = sdc__in(f, "a VAE level's channels", v->block_out_channels[i], 1, 1 << 16);
    if (!err && v->block_out_channels[i] % v->norm_num_groups)
      err = sdc_seterr(SDC_EFORMAT, "%s: VAE level %d has %lld channels, not a multiple of norm_num_groups %lld; pass --config DIR",
                       f->path, i, (long long)v->block_out_channels[i], (long long)v->norm_num_groups);
  }
  if (!err) err = sdc__in(f, "the text encoder's vocabulary", c->vocab_size, 1, 1 << 24);
  if (!err) err = sdc__in(f, "the text encoder's width", c->hidden_size, 1, 1 << 16);
  if (!err) err = sdc__in(f, "the text encoder's intermediate size", c->intermediate_size, 1, 1 << 18);
  if (!err) err = sdc__in(f, "the text encoder's depth", c->n_layers, 1, 256);
  if (!err) err = sdc__in(f, "the text encoder's positions", c->max_positions, 1, 1 << 16);
  return err;
}

int sdc_checkpoint_infer(const sdc_st_file *f, sdc_family fam, sdc_unet_config *unet, sdc_vae_config *vae,
                         sdc_clip_config *clip, sdc_ckpt_facts *facts) {
  memset(facts, 0, sizeof *facts);
  int err = sdc__infer_unet(f, fam, unet);
  if (!err) err = sdc__infer_vae(f, vae);
  if (!err) err = sdc__infer_clip(f, clip);
  if (!err) err = sdc__check_inferred(f, unet, vae, clip);
  if (err) return err;
  facts->inpaint = unet->in_channels == 9;
  /* Tensors cannot tell 2.x-v from 2.x-base. As ComfyUI does, a 'v_pred' key
   * marks a v-prediction file; otherwise SD 2.x is the 768-v model (2-1),
   * except its inpainting model, which predicts epsilon like all SD 1.x. */
  if (sdc_st_find(f, "v_pred")) {
    facts->v_pred = 1;
    snprintf(facts->pred_why, sizeof facts->pred_why, "the file has a 'v_pred' key");
  } else if (fam == SDC_FAMILY_SD2 && !facts->inpaint) {
    facts->v_pred = 1;
    snprintf(facts->pred_why, sizeof facts->pred_why, "SD 2.x without a 'v_pred' key is taken as 768-v (2-1)");
  } else {
    snprintf(facts->pred_why, sizeof facts->pred_why, "%s%s", fam == SDC_FAMILY_SD2 ? "SD 2.x inpainting" : "SD 1.x",
             facts->inpaint && fam != SDC_FAMILY_SD2 ? " (inpainting)" : "");
  }
  return SDC_OK;
}
