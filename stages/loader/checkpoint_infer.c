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

static int64_t sdc__gcd(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b, b = t;
  }
  return a;
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
    /* heads cannot be read from shapes: SD 1.x has 8 everywhere, SD 2.x and SDXL a head width of 64 (SDXL's
     * 320/640/1280 channels: 5/10/20 heads). A smaller SDXL-shaped model whose level 64 does not divide gets
     * the widest head width that does, gcd(c, 64): a guess that keeps it loadable; --config DIR has the real
     * heads. */
    const int64_t c = u->block_out_channels[i];
    const int64_t width = fam == SDC_FAMILY_SDXL ? sdc__gcd(c, 64) : 64;
    u->heads[i] = fam == SDC_FAMILY_SD1 ? 8 : width > 0 ? c / width : 0;
    if (u->heads[i] < 1 || c % u->heads[i])
      return sdc_seterr(SDC_EUNSUPPORTED, "%s: UNet level %d has %lld channels, which the %s heads rule (%s) does not divide; "
                        "pass --config DIR", f->path, i, (long long)c, sdc_family_name(fam),
                        fam == SDC_FAMILY_SD1 ? "8 heads" : "head width 64");
  }
  if (fam != SDC_FAMILY_SDXL) return SDC_OK;
  /* SDXL's text_time MLP (label_emb.0.0: Linear(text_embeds + 6 time ids x addition_time_embed_dim, temb));
   * addition_time_embed_dim follows once the second text encoder's projection width is known */
  if ((err = sdc__need(f, &e, 2, P, "label_emb.0.0.weight", 0, 0))) return err;
  if (e->shape[0] != u->time_embed_dim)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%slabel_emb.0.0.weight' has %lld outputs, the time embedding %lld; pass "
                      "--config DIR", f->path, P, (long long)e->shape[0], (long long)u->time_embed_dim);
  u->add_text_time = 1;
  u->projection_class_embeddings_input_dim = e->shape[1];
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

/* CLIP's head width of 64 (one head for narrower encoders). */
static int sdc__clip_heads(const sdc_st_file *f, sdc_clip_config *c) {
  c->n_heads = c->hidden_size / 64 > 0 ? c->hidden_size / 64 : 1;
  if (c->hidden_size % c->n_heads)
    return sdc_seterr(SDC_EUNSUPPORTED, "%s: text encoder width %lld is not a multiple of CLIP's head width 64; pass --config DIR",
                      f->path, (long long)c->hidden_size);
  return SDC_OK;
}

/* OpenCLIP's text tower under P: widths from the embeddings, depth by counting
 * layers, less the last one when penultimate (SD 2.x conditions on the
 * penultimate layer and never runs the last; SDXL's second encoder runs all,
 * the last for the pooled embedding). */
static int sdc__infer_openclip(const sdc_st_file *f, const char *P, int penultimate, sdc_clip_config *c) {
  const sdc_st_entry *e;
  int err;
  if ((err = sdc__need(f, &e, 2, P, "token_embedding.weight", 0, 0))) return err;
  c->vocab_size = e->shape[0], c->hidden_size = e->shape[1];
  if ((err = sdc__need(f, &e, 2, P, "positional_embedding", 0, 0))) return err;
  c->max_positions = e->shape[0];
  if ((err = sdc__need(f, &e, 2, P, "transformer.resblocks.0.mlp.c_fc.weight", 0, 0))) return err;
  c->intermediate_size = e->shape[0];
  int64_t l = 0;
  while (sdc__at(f, P, "transformer.resblocks.%lld.ln_1.weight", l, 0)) l++;
  c->n_layers = penultimate && l > 1 ? l - 1 : l;
  return sdc__clip_heads(f, c);
}

/* transformers' CLIPTextModel under P, saved with or without the "text_model." level; every layer counts. */
static int sdc__infer_clip_hf(const sdc_st_file *f, const char *P, sdc_clip_config *c) {
  const sdc_st_entry *e;
  int err;
  char pre[96];
  const int level = sdc__at(f, P, "text_model.embeddings.token_embedding.weight", 0, 0) != NULL;
  snprintf(pre, sizeof pre, "%s%s", P, level ? "text_model." : "");
  if ((err = sdc__need(f, &e, 2, pre, "embeddings.token_embedding.weight", 0, 0))) return err;
  c->vocab_size = e->shape[0], c->hidden_size = e->shape[1];
  if ((err = sdc__need(f, &e, 2, pre, "embeddings.position_embedding.weight", 0, 0))) return err;
  c->max_positions = e->shape[0];
  if ((err = sdc__need(f, &e, 2, pre, "encoder.layers.0.mlp.fc1.weight", 0, 0))) return err;
  c->intermediate_size = e->shape[0];
  int64_t l = 0;
  while (sdc__at(f, pre, "encoder.layers.%lld.layer_norm1.weight", l, 0)) l++;
  c->n_layers = l;
  return sdc__clip_heads(f, c);
}

/* SD 1.x / 2.x's text encoder in whichever layout the file has. */
static int sdc__infer_clip(const sdc_st_file *f, sdc_clip_config *c) {
  if (sdc__at(f, SDC_CKPT_OPENCLIP_PREFIX, "token_embedding.weight", 0, 0))
    return sdc__infer_openclip(f, SDC_CKPT_OPENCLIP_PREFIX, 1, c);
  return sdc__infer_clip_hf(f, SDC_CKPT_CLIP_PREFIX, c);
}

/* SDXL's two encoders, then what ties them to the UNet: the pooled text_embeds are text_projection's output
 * (stored [in, out]), and the text_time MLP takes them with 6 time ids of addition_time_embed_dim each. */
static int sdc__infer_sdxl_text(const sdc_st_file *f, sdc_unet_config *u, sdc_clip_config *c, sdc_clip_config *c2) {
  const char *P = SDC_CKPT_SDXL_OPENCLIP_PREFIX;
  const sdc_st_entry *e;
  int err = sdc__infer_clip_hf(f, SDC_CKPT_SDXL_CLIP_PREFIX, c);
  if (!err) err = sdc__infer_openclip(f, P, 0, c2);
  if (!err) err = sdc__need(f, &e, 2, P, "text_projection", 0, 0);
  if (err) return err;
  if (e->shape[0] != c2->hidden_size)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%stext_projection' takes %lld inputs, the encoder is %lld wide; pass "
                      "--config DIR", f->path, P, (long long)e->shape[0], (long long)c2->hidden_size);
  c2->projection_dim = e->shape[1];
  const int64_t times = u->projection_class_embeddings_input_dim - c2->projection_dim;
  if (times <= 0 || times % (2 * SDC_TIME_IDS))
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%slabel_emb.0.0.weight' takes %lld inputs: not text_projection's %lld "
                      "plus %d time ids of an even width; pass --config DIR", f->path, SDC_CKPT_UNET_PREFIX,
                      (long long)u->projection_class_embeddings_input_dim, (long long)c2->projection_dim, SDC_TIME_IDS);
  u->addition_time_embed_dim = times / SDC_TIME_IDS;
  return SDC_OK;
}

/* A value read from shapes must lie where config.c would accept it from a config.json. */
static int sdc__in(const sdc_st_file *f, const char *what, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return SDC_OK;
  return sdc_seterr(SDC_EFORMAT, "%s: %s is %lld by its tensors' shapes, expected %lld..%lld; pass --config DIR", f->path,
                    what, (long long)v, (long long)lo, (long long)hi);
}

/* A text encoder's values as sdc_clip_config_parse checks them; who: "text encoder" or "second text encoder". */
static int sdc__check_clip(const sdc_st_file *f, const char *who, const sdc_clip_config *c) {
  char what[96];
  snprintf(what, sizeof what, "the %s's vocabulary", who);
  int err = sdc__in(f, what, c->vocab_size, 1, 1 << 24);
  snprintf(what, sizeof what, "the %s's width", who);
  if (!err) err = sdc__in(f, what, c->hidden_size, 1, 1 << 16);
  snprintf(what, sizeof what, "the %s's intermediate size", who);
  if (!err) err = sdc__in(f, what, c->intermediate_size, 1, 1 << 18);
  snprintf(what, sizeof what, "the %s's depth", who);
  if (!err) err = sdc__in(f, what, c->n_layers, 1, 256);
  snprintf(what, sizeof what, "the %s's positions", who);
  if (!err) err = sdc__in(f, what, c->max_positions, 1, 1 << 16);
  snprintf(what, sizeof what, "the %s's projection width", who);
  if (!err && c->with_projection) err = sdc__in(f, what, c->projection_dim, 1, 1 << 16);
  return err;
}

/* The checks sdc_*_config_parse make, on configs that did not come from JSON (c2 NULL: no second encoder). */
static int sdc__check_inferred(const sdc_st_file *f, const sdc_unet_config *u, const sdc_vae_config *v,
                               const sdc_clip_config *c, const sdc_clip_config *c2) {
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
  if (!err) err = sdc__check_clip(f, "text encoder", c);
  if (!err && c2) err = sdc__check_clip(f, "second text encoder", c2);
  if (!err && u->add_text_time)
    err = sdc__in(f, "UNet projection_class_embeddings_input_dim", u->projection_class_embeddings_input_dim, 1, 1 << 20);
  return err;
}

int sdc_checkpoint_infer(const sdc_st_file *f, sdc_family fam, sdc_unet_config *unet, sdc_vae_config *vae,
                         sdc_clip_config *clip, sdc_clip_config *clip2, sdc_ckpt_facts *facts) {
  memset(facts, 0, sizeof *facts);
  const int xl = fam == SDC_FAMILY_SDXL;
  if (xl && !clip2)
    return sdc_seterr(SDC_EINVAL, "%s: an SDXL checkpoint needs a config for its second text encoder", f->path);
  int err = sdc__infer_unet(f, fam, unet);
  if (!err) err = sdc__infer_vae(f, vae);
  if (!err) err = xl ? sdc__infer_sdxl_text(f, unet, clip, clip2) : sdc__infer_clip(f, clip);
  if (!err) err = sdc__check_inferred(f, unet, vae, clip, xl ? clip2 : NULL);
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
    snprintf(facts->pred_why, sizeof facts->pred_why, "%s%s",
             fam == SDC_FAMILY_SD2 ? "SD 2.x inpainting" : xl ? "SDXL" : "SD 1.x",
             facts->inpaint && fam != SDC_FAMILY_SD2 ? " (inpainting)" : "");
  }
  return SDC_OK;
}
