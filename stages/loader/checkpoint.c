/* checkpoint.c - LDM/CompVis/SGM single-file key names mapped to diffusers names, family detection, standard configs. */
#include "checkpoint.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "error.h"

/* ---- key parsing helpers ---- */

/* Consumes the literal `lit` at *p; returns 0 (and leaves *p) when absent. */
static int sdc__eat(const char **p, const char *lit) {
  size_t n = strlen(lit);
  if (strncmp(*p, lit, n) != 0) return 0;
  *p += n;
  return 1;
}

/* Consumes "<index>." at *p. Leading zeros and absurd lengths are refused so
 * that "01" never aliases "1". */
static int sdc__eat_index(const char **p, int64_t *out) {
  const char *s = *p;
  int64_t v = 0;
  int n_digits = 0;
  while (*s >= '0' && *s <= '9') {
    if (++n_digits > 9) return 0;
    v = v * 10 + (*s++ - '0');
  }
  if (n_digits == 0 || *s != '.' || (n_digits > 1 && **p == '0')) return 0;
  *p = s + 1;
  *out = v;
  return 1;
}

/* Fills one whole-tensor output; returns 1, or 0 when the name does not fit. */
__attribute__((format(printf, 2, 3))) static int sdc__out(sdc_key_out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(o->name, sizeof o->name, fmt, ap);
  va_end(ap);
  o->part = 0;
  o->n_parts = 1;
  o->transpose = 0;
  return n > 0 && (size_t)n < sizeof o->name;
}

typedef struct {
  const char *from, *to;
} sdc__rename;

/* Replaces the leading component of *p found in table[] (from -> to); NULL if none matches. */
static const char *sdc__rename_head(const char **p, const sdc__rename *table, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (sdc__eat(p, table[i].from)) return table[i].to;
  return NULL;
}

#define SDC__N(a) (sizeof(a) / sizeof *(a))

/* ---- UNet: model.diffusion_model.* ---- */

/* ResBlock children in openaimodel.py -> diffusers ResnetBlock2D. */
static const sdc__rename sdc__unet_resnet[] = {
    {"in_layers.0.", "norm1."},       {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."},      {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
};

static int sdc__unet_resnet_out(sdc_key_out *o, const char *base, const char *rest) {
  const char *to = sdc__rename_head(&rest, sdc__unet_resnet, SDC__N(sdc__unet_resnet));
  return to ? sdc__out(o, "%s%s%s", base, to, rest) : 0;
}

/* input_blocks.K.S.*: K = 0 is conv_in; then per level l, layers_per_block[l]
 * entries [resnet, (transformer)] and, except on the last level, one [downsampler]. */
static int sdc__unet_input(sdc_key_out *o, const sdc_unet_config *cfg, int64_t k, int64_t s, const char *rest) {
  char base[96];
  if (k == 0) return s == 0 ? sdc__out(o, "conv_in.%s", rest) : 0;
  int64_t idx = 1;
  for (int l = 0; l < cfg->n_blocks; l++) {
    int64_t n_layers = cfg->layers_per_block[l];
    if (k < idx + n_layers) {
      int64_t j = k - idx;
      if (s == 0) {
        snprintf(base, sizeof base, "down_blocks.%d.resnets.%lld.", l, (long long)j);
        return sdc__unet_resnet_out(o, base, rest);
      }
      if (s == 1 && cfg->down_blocks[l] == SDC_BLOCK_CROSS_ATTN)
        return sdc__out(o, "down_blocks.%d.attentions.%lld.%s", l, (long long)j, rest);
      return 0;
    }
    idx += n_layers;
    if (l < cfg->n_blocks - 1) {
      if (k == idx) return s == 0 && sdc__eat(&rest, "op.") ? sdc__out(o, "down_blocks.%d.downsamplers.0.conv.%s", l, rest) : 0;
      idx++;
    }
  }
  return 0;
}

/* output_blocks.K.S.*: up block i (diffusers order) mirrors down level n-1-i
 * with one layer more; its entries are [resnet, (transformer), (upsampler on
 * the block's last entry, except in the last block)]. */
static int sdc__unet_output(sdc_key_out *o, const sdc_unet_config *cfg, int64_t k, int64_t s, const char *rest) {
  char base[96];
  int n = cfg->n_blocks;
  int64_t idx = 0;
  for (int i = 0; i < n; i++) {
    int64_t n_layers = cfg->layers_per_block[n - 1 - i] + 1;
    if (k < idx + n_layers) {
      int64_t j = k - idx;
      int cross = cfg->up_blocks[i] == SDC_BLOCK_CROSS_ATTN;
      if (s == 0) {
        snprintf(base, sizeof base, "up_blocks.%d.resnets.%lld.", i, (long long)j);
        return sdc__unet_resnet_out(o, base, rest);
      }
      if (i < n - 1 && j == n_layers - 1 && s == (cross ? 2 : 1) && sdc__eat(&rest, "conv."))
        return sdc__out(o, "up_blocks.%d.upsamplers.0.conv.%s", i, rest);
      if (cross && s == 1) return sdc__out(o, "up_blocks.%d.attentions.%lld.%s", i, (long long)j, rest);
      return 0;
    }
    idx += n_layers;
  }
  return 0;
}

int sdc_checkpoint_map_unet(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx) {
  const sdc_unet_config *cfg = ctx;
  if (!cfg || cfg->n_blocks < 1 || cfg->n_blocks > SDC_MAX_BLOCKS) return 0;
  const char *p = key;
  int64_t k, s;
  if (sdc__eat(&p, "time_embed.0.")) return sdc__out(outs, "time_embedding.linear_1.%s", p);
  if (sdc__eat(&p, "time_embed.2.")) return sdc__out(outs, "time_embedding.linear_2.%s", p);
  if (sdc__eat(&p, "out.0.")) return sdc__out(outs, "conv_norm_out.%s", p);
  if (sdc__eat(&p, "out.2.")) return sdc__out(outs, "conv_out.%s", p);
  /* SDXL's text_time MLP: label_emb = Sequential(Sequential(Linear, SiLU, Linear)) */
  if (cfg->add_text_time && sdc__eat(&p, "label_emb.0.0.")) return sdc__out(outs, "add_embedding.linear_1.%s", p);
  if (cfg->add_text_time && sdc__eat(&p, "label_emb.0.2.")) return sdc__out(outs, "add_embedding.linear_2.%s", p);
  if (sdc__eat(&p, "input_blocks.")) {
    if (!sdc__eat_index(&p, &k) || !sdc__eat_index(&p, &s)) return 0;
    return sdc__unet_input(outs, cfg, k, s, p);
  }
  if (sdc__eat(&p, "output_blocks.")) {
    if (!sdc__eat_index(&p, &k) || !sdc__eat_index(&p, &s)) return 0;
    return sdc__unet_output(outs, cfg, k, s, p);
  }
  /* middle_block: [resnet, transformer, resnet] */
  if (sdc__eat(&p, "middle_block.")) {
    if (!sdc__eat_index(&p, &s)) return 0;
    if (s == 0) return sdc__unet_resnet_out(outs, "mid_block.resnets.0.", p);
    if (s == 1) return sdc__out(outs, "mid_block.attentions.0.%s", p);
    if (s == 2) return sdc__unet_resnet_out(outs, "mid_block.resnets.1.", p);
  }
  return 0; /* label_emb.* without text_time, input_hint_block.* and the like: not ours */
}

/* ---- VAE: first_stage_model.* ---- */

static const sdc__rename sdc__vae_resnet[] = {
    {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
    {"nin_shortcut.", "conv_shortcut."},
};

/* AttnBlock in LDM's model.py -> diffusers Attention (current spelling). */
static const sdc__rename sdc__vae_attn[] = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."},
};

static int sdc__vae_resnet_out(sdc_key_out *o, const char *base, const char *rest) {
  const char *to = sdc__rename_head(&rest, sdc__vae_resnet, SDC__N(sdc__vae_resnet));
  return to ? sdc__out(o, "%s%s%s", base, to, rest) : 0;
}

int sdc_checkpoint_map_vae(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx) {
  const sdc_vae_config *cfg = ctx;
  if (!cfg || cfg->n_blocks < 1 || cfg->n_blocks > SDC_MAX_BLOCKS) return 0;
  const char *p = key;
  if (sdc__eat(&p, "quant_conv.")) return sdc__out(outs, "quant_conv.%s", p);
  if (sdc__eat(&p, "post_quant_conv.")) return sdc__out(outs, "post_quant_conv.%s", p);
  int decoder;
  if (sdc__eat(&p, "encoder.")) decoder = 0;
  else if (sdc__eat(&p, "decoder.")) decoder = 1;
  else return 0;
  const char *part = decoder ? "decoder" : "encoder";
  char base[96];
  int64_t i, j, n = cfg->n_blocks;
  if (sdc__eat(&p, "conv_in.")) return sdc__out(outs, "%s.conv_in.%s", part, p);
  if (sdc__eat(&p, "conv_out.")) return sdc__out(outs, "%s.conv_out.%s", part, p);
  if (sdc__eat(&p, "norm_out.")) return sdc__out(outs, "%s.conv_norm_out.%s", part, p);
  for (int r = 0; r < 2; r++)
    if (sdc__eat(&p, r ? "mid.block_2." : "mid.block_1.")) {
      snprintf(base, sizeof base, "%s.mid_block.resnets.%d.", part, r);
      return sdc__vae_resnet_out(outs, base, p);
    }
  if (sdc__eat(&p, "mid.attn_1.")) {
    const char *to = sdc__rename_head(&p, sdc__vae_attn, SDC__N(sdc__vae_attn));
    return to ? sdc__out(outs, "%s.mid_block.attentions.0.%s%s", part, to, p) : 0;
  }
  /* Encoder levels keep their order; decoder level i is diffusers' up block n-1-i. */
  if (sdc__eat(&p, decoder ? "up." : "down.")) {
    if (!sdc__eat_index(&p, &i) || i >= n) return 0;
    int64_t b = decoder ? n - 1 - i : i;
    const char *blocks = decoder ? "up_blocks" : "down_blocks";
    if (sdc__eat(&p, "block.")) {
      if (!sdc__eat_index(&p, &j) || j >= cfg->layers_per_block + decoder) return 0;
      snprintf(base, sizeof base, "%s.%s.%lld.resnets.%lld.", part, blocks, (long long)b, (long long)j);
      return sdc__vae_resnet_out(outs, base, p);
    }
    if (b < n - 1 && sdc__eat(&p, decoder ? "upsample.conv." : "downsample.conv."))
      return sdc__out(outs, "%s.%s.%lld.%s.0.conv.%s", part, blocks, (long long)b,
                      decoder ? "upsamplers" : "downsamplers", p);
  }
  return 0;
}

/* ---- text encoders: cond_stage_model.* ---- */

/* True when the key names an encoder layer at or beyond the config's depth. */
static int sdc__beyond_depth(const char *p, const char *layers_prefix, const sdc_clip_config *cfg) {
  int64_t l;
  return cfg && sdc__eat(&p, layers_prefix) && sdc__eat_index(&p, &l) && l >= cfg->n_layers;
}

int sdc_checkpoint_map_clip(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx) {
  const char *p = key;
  sdc__eat(&p, "text_model."); /* older transformers versions saved without this level */
  if (strcmp(p, "embeddings.position_ids") == 0) return 0; /* an int64 buffer, not a weight */
  if (sdc__beyond_depth(p, "encoder.layers.", ctx)) return 0;
  return sdc__out(outs, "text_model.%s", p);
}

static const sdc__rename sdc__openclip_layer[] = {
    {"ln_1.", "layer_norm1."},  {"ln_2.", "layer_norm2."},      {"attn.out_proj.", "self_attn.out_proj."},
    {"mlp.c_fc.", "mlp.fc1."}, {"mlp.c_proj.", "mlp.fc2."},
};

int sdc_checkpoint_map_openclip(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx) {
  const sdc_clip_config *cfg = ctx;
  const char *p = key;
  int64_t l;
  /* OpenCLIP multiplies x @ text_projection ([in, out]); diffusers' Linear holds [out, in] */
  if (strcmp(p, "text_projection") == 0) {
    if (cfg && !cfg->with_projection) return 0; /* SD 2.x's CLIPTextModel has no projection */
    if (!sdc__out(outs, "text_projection.weight")) return 0;
    outs[0].transpose = 1;
    return 1;
  }
  if (strcmp(p, "token_embedding.weight") == 0)
    return sdc__out(outs, "text_model.embeddings.token_embedding.weight");
  if (strcmp(p, "positional_embedding") == 0)
    return sdc__out(outs, "text_model.embeddings.position_embedding.weight");
  if (sdc__eat(&p, "ln_final.")) return sdc__out(outs, "text_model.final_layer_norm.%s", p);
  if (sdc__beyond_depth(p, "transformer.resblocks.", ctx)) return 0;
  if (!sdc__eat(&p, "transformer.resblocks.") || !sdc__eat_index(&p, &l)) return 0; /* logit_scale */
  long long ll = (long long)l;
  const char *to = sdc__rename_head(&p, sdc__openclip_layer, SDC__N(sdc__openclip_layer));
  if (to) return sdc__out(outs, "text_model.encoder.layers.%lld.%s%s", ll, to, p);
  /* nn.MultiheadAttention's fused projection: rows [q; k; v]. */
  const char *what = strcmp(p, "attn.in_proj_weight") == 0 ? "weight" : strcmp(p, "attn.in_proj_bias") == 0 ? "bias" : NULL;
  if (!what) return 0;
  static const char qkv[3] = {'q', 'k', 'v'};
  for (int t = 0; t < 3; t++) {
    if (!sdc__out(&outs[t], "text_model.encoder.layers.%lld.self_attn.%c_proj.%s", ll, qkv[t], what)) return 0;
    outs[t].part = t;
    outs[t].n_parts = 3;
  }
  return 3;
}

/* ---- family detection ---- */

const char *sdc_family_name(sdc_family fam) {
  switch (fam) {
    case SDC_FAMILY_SD1: return "sd1";
    case SDC_FAMILY_SD2: return "sd2";
    case SDC_FAMILY_SDXL: return "sdxl";
    default: return "?";
  }
}

/* Entries are sorted by strcmp, so keys with a prefix are contiguous: find the first. */
static int64_t sdc__first_with_prefix(const sdc_st_file *f, const char *prefix) {
  size_t plen = strlen(prefix);
  int64_t lo = 0, hi = f->n_entries;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (strcmp(f->entries[mid].name, prefix) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < f->n_entries && strncmp(f->entries[lo].name, prefix, plen) == 0 ? lo : -1;
}

static int sdc__has_prefix(const sdc_st_file *f, const char *prefix) { return sdc__first_with_prefix(f, prefix) >= 0; }

/* Input width of the UNet's first cross-attention key projection, or 0. */
static int64_t sdc__context_dim(const sdc_st_file *f) {
  static const char suffix[] = ".attn2.to_k.weight";
  size_t slen = sizeof suffix - 1, plen = strlen(SDC_CKPT_UNET_PREFIX);
  int64_t i = sdc__first_with_prefix(f, SDC_CKPT_UNET_PREFIX);
  for (; i >= 0 && i < f->n_entries; i++) {
    const sdc_st_entry *e = &f->entries[i];
    if (strncmp(e->name, SDC_CKPT_UNET_PREFIX, plen) != 0) break;
    size_t n = strlen(e->name);
    if (n >= slen && strcmp(e->name + n - slen, suffix) == 0 && e->ndim == 2) return e->shape[1];
  }
  return 0;
}

int sdc_checkpoint_detect(const sdc_st_file *f, sdc_family *fam) {
  *fam = SDC_FAMILY_SD1;
  if (!sdc__has_prefix(f, SDC_CKPT_UNET_PREFIX))
    return sdc_seterr(SDC_EFORMAT, "%s: no '%s*' keys: not a single-file Stable Diffusion checkpoint", f->path,
                      SDC_CKPT_UNET_PREFIX);
  int64_t ctx_dim = sdc__context_dim(f);
  if (sdc__has_prefix(f, SDC_CKPT_SDXL_CONDITIONER_PREFIX)) {
    *fam = SDC_FAMILY_SDXL;
    /* a conditioner with other embedders (the refiner's lone OpenCLIP, say) is not the base model's pair */
    static const char *const need[2][2] = {{SDC_CKPT_SDXL_CLIP_PREFIX, "first text encoder, CLIP ViT-L"},
                                           {SDC_CKPT_SDXL_OPENCLIP_PREFIX, "second text encoder, OpenCLIP ViT-bigG"}};
    for (int i = 0; i < 2; i++)
      if (!sdc__has_prefix(f, need[i][0]))
        return sdc_seterr(SDC_EMISSING, "%s: an SDXL checkpoint ('%s*' keys) without '%s*' keys (its %s)", f->path,
                          SDC_CKPT_SDXL_CONDITIONER_PREFIX, need[i][0], need[i][1]);
    return SDC_OK;
  }
  /* a UNet alone: SDXL's has the text_time MLP and takes both encoders' states, 768 + 1280 wide */
  if (sdc__has_prefix(f, SDC_CKPT_UNET_PREFIX "label_emb.0.0.") && ctx_dim == 2048) {
    *fam = SDC_FAMILY_SDXL;
    return SDC_OK;
  }
  if (sdc__has_prefix(f, SDC_CKPT_OPENCLIP_PREFIX) || ctx_dim == 1024) {
    *fam = SDC_FAMILY_SD2;
    return SDC_OK;
  }
  if (sdc__has_prefix(f, SDC_CKPT_CLIP_PREFIX) || ctx_dim == 768) {
    *fam = SDC_FAMILY_SD1;
    return SDC_OK;
  }
  return sdc_seterr(SDC_EUNSUPPORTED,
                    "%s: cannot tell the model family: no '%s*', '%s*' or '%s*' keys, and cross-attention width %lld is "
                    "neither 768 (SD 1.x) nor 1024 (SD 2.x)",
                    f->path, SDC_CKPT_CLIP_PREFIX, SDC_CKPT_OPENCLIP_PREFIX, SDC_CKPT_SDXL_CONDITIONER_PREFIX,
                    (long long)ctx_dim);
}

/* ---- standard configs (as stable-diffusion-v1-5 and stable-diffusion-2-1 ship them; SDXL's below) ---- */

#define SDC__DOWN_BLOCKS \
  "  \"down_block_types\": [\n    \"CrossAttnDownBlock2D\",\n    \"CrossAttnDownBlock2D\",\n    \"CrossAttnDownBlock2D\",\n    \"DownBlock2D\"\n  ],\n"
#define SDC__UP_BLOCKS \
  "  \"up_block_types\": [\n    \"UpBlock2D\",\n    \"CrossAttnUpBlock2D\",\n    \"CrossAttnUpBlock2D\",\n    \"CrossAttnUpBlock2D\"\n  ]"
/* extra: fields between down_block_types and in_channels (SDXL's force_upcast) */
#define SDC__VAE_BODY(extra, size, scale)                                                                                     \
  "  \"block_out_channels\": [\n    128,\n    256,\n    512,\n    512\n  ],\n"                                                 \
  "  \"down_block_types\": [\n    \"DownEncoderBlock2D\",\n    \"DownEncoderBlock2D\",\n    \"DownEncoderBlock2D\",\n"      \
  "    \"DownEncoderBlock2D\"\n  ],\n" extra                                                                                  \
  "  \"in_channels\": 3,\n  \"latent_channels\": 4,\n  \"layers_per_block\": 2,\n  \"norm_num_groups\": 32,\n"               \
  "  \"out_channels\": 3,\n  \"sample_size\": " size ",\n  \"scaling_factor\": " scale ",\n"                                \
  "  \"up_block_types\": [\n    \"UpDecoderBlock2D\",\n    \"UpDecoderBlock2D\",\n    \"UpDecoderBlock2D\",\n"               \
  "    \"UpDecoderBlock2D\"\n  ]\n}\n"
#define SDC__VAE_BLOCKS(size) SDC__VAE_BODY("", size, "0.18215")

static const char sdc__sd1_unet[] =
    "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.6.0\",\n  \"act_fn\": \"silu\",\n"
    "  \"attention_head_dim\": 8,\n  \"block_out_channels\": [\n    320,\n    640,\n    1280,\n    1280\n  ],\n"
    "  \"center_input_sample\": false,\n  \"cross_attention_dim\": 768,\n" SDC__DOWN_BLOCKS
    "  \"downsample_padding\": 1,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"in_channels\": 4,\n"
    "  \"layers_per_block\": 2,\n  \"mid_block_scale_factor\": 1,\n  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n"
    "  \"out_channels\": 4,\n  \"sample_size\": 64,\n" SDC__UP_BLOCKS "\n}\n";

static const char sdc__sd2_unet[] =
    "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.10.0.dev0\",\n  \"act_fn\": \"silu\",\n"
    "  \"attention_head_dim\": [\n    5,\n    10,\n    20,\n    20\n  ],\n"
    "  \"block_out_channels\": [\n    320,\n    640,\n    1280,\n    1280\n  ],\n"
    "  \"center_input_sample\": false,\n  \"cross_attention_dim\": 1024,\n" SDC__DOWN_BLOCKS
    "  \"downsample_padding\": 1,\n  \"dual_cross_attention\": false,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n"
    "  \"in_channels\": 4,\n  \"layers_per_block\": 2,\n  \"mid_block_scale_factor\": 1,\n  \"norm_eps\": 1e-05,\n"
    "  \"norm_num_groups\": 32,\n  \"num_class_embeds\": null,\n  \"only_cross_attention\": false,\n"
    "  \"out_channels\": 4,\n  \"sample_size\": 96,\n" SDC__UP_BLOCKS ",\n"
    "  \"upcast_attention\": true,\n  \"use_linear_projection\": true\n}\n";

static const char sdc__sd1_vae[] =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.6.0\",\n  \"act_fn\": \"silu\",\n"
    SDC__VAE_BLOCKS("512");

static const char sdc__sd2_vae[] =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.8.0\",\n"
    "  \"_name_or_path\": \"hf-models/stable-diffusion-v2-768x768/vae\",\n  \"act_fn\": \"silu\",\n"
    SDC__VAE_BLOCKS("768");

#define SDC__CLIP_TEXT(name, act, hidden, inter, heads, layers, proj, tver)                                              \
  "{\n  \"_name_or_path\": \"" name "\",\n  \"architectures\": [\n    \"CLIPTextModel\"\n  ],\n"                          \
  "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n"                  \
  "  \"hidden_act\": \"" act "\",\n  \"hidden_size\": " hidden ",\n  \"initializer_factor\": 1.0,\n"                     \
  "  \"initializer_range\": 0.02,\n  \"intermediate_size\": " inter ",\n  \"layer_norm_eps\": 1e-05,\n"                   \
  "  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n  \"num_attention_heads\": " heads ",\n"   \
  "  \"num_hidden_layers\": " layers ",\n  \"pad_token_id\": 1,\n  \"projection_dim\": " proj ",\n"                       \
  "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"" tver "\",\n  \"vocab_size\": 49408\n}\n"

static const char sdc__sd1_text[] =
    SDC__CLIP_TEXT("openai/clip-vit-large-patch14", "quick_gelu", "768", "3072", "12", "12", "768", "4.22.0.dev0");
/* OpenCLIP ViT-H/14 has 24 layers; SD 2.x conditions on the penultimate one. */
static const char sdc__sd2_text[] = SDC__CLIP_TEXT("hf-models/stable-diffusion-v2-768x768/text_encoder", "gelu", "1024",
                                                   "4096", "16", "23", "512", "4.25.0.dev0");

#define SDC__SCHED_COMMON                                                                                     \
  "  \"beta_end\": 0.012,\n  \"beta_schedule\": \"scaled_linear\",\n  \"beta_start\": 0.00085,\n"               \
  "  \"clip_sample\": false,\n  \"num_train_timesteps\": 1000,\n"

static const char sdc__sd1_sched[] =
    "{\n  \"_class_name\": \"PNDMScheduler\",\n  \"_diffusers_version\": \"0.6.0\",\n" SDC__SCHED_COMMON
    "  \"set_alpha_to_one\": false,\n  \"skip_prk_steps\": true,\n  \"steps_offset\": 1,\n  \"trained_betas\": null\n}\n";

static const char sdc__sd2_sched[] =
    "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"_diffusers_version\": \"0.8.0\",\n" SDC__SCHED_COMMON
    "  \"prediction_type\": \"v_prediction\",\n  \"set_alpha_to_one\": false,\n  \"skip_prk_steps\": true,\n"
    "  \"steps_offset\": 1,\n  \"trained_betas\": null\n}\n";

/* ---- SDXL (as stable-diffusion-xl-base-1.0 ships them) ---- */

static const char sdc__sdxl_unet[] =
    "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.19.0.dev0\",\n  \"act_fn\": \"silu\",\n"
    "  \"addition_embed_type\": \"text_time\",\n  \"addition_embed_type_num_heads\": 64,\n"
    "  \"addition_time_embed_dim\": 256,\n  \"attention_head_dim\": [\n    5,\n    10,\n    20\n  ],\n"
    "  \"block_out_channels\": [\n    320,\n    640,\n    1280\n  ],\n  \"center_input_sample\": false,\n"
    "  \"class_embed_type\": null,\n  \"class_embeddings_concat\": false,\n  \"conv_in_kernel\": 3,\n"
    "  \"conv_out_kernel\": 3,\n  \"cross_attention_dim\": 2048,\n  \"cross_attention_norm\": null,\n"
    "  \"down_block_types\": [\n    \"DownBlock2D\",\n    \"CrossAttnDownBlock2D\",\n    \"CrossAttnDownBlock2D\"\n  ],\n"
    "  \"downsample_padding\": 1,\n  \"dual_cross_attention\": false,\n  \"encoder_hid_dim\": null,\n"
    "  \"encoder_hid_dim_type\": null,\n  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"in_channels\": 4,\n"
    "  \"layers_per_block\": 2,\n  \"mid_block_only_cross_attention\": null,\n  \"mid_block_scale_factor\": 1,\n"
    "  \"mid_block_type\": \"UNetMidBlock2DCrossAttn\",\n  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n"
    "  \"num_attention_heads\": null,\n  \"num_class_embeds\": null,\n  \"only_cross_attention\": false,\n"
    "  \"out_channels\": 4,\n  \"projection_class_embeddings_input_dim\": 2816,\n  \"resnet_out_scale_factor\": 1.0,\n"
    "  \"resnet_skip_time_act\": false,\n  \"resnet_time_scale_shift\": \"default\",\n  \"sample_size\": 128,\n"
    "  \"time_cond_proj_dim\": null,\n  \"time_embedding_act_fn\": null,\n  \"time_embedding_dim\": null,\n"
    "  \"time_embedding_type\": \"positional\",\n  \"timestep_post_act\": null,\n"
    "  \"transformer_layers_per_block\": [\n    1,\n    2,\n    10\n  ],\n"
    "  \"up_block_types\": [\n    \"CrossAttnUpBlock2D\",\n    \"CrossAttnUpBlock2D\",\n    \"UpBlock2D\"\n  ],\n"
    "  \"upcast_attention\": null,\n  \"use_linear_projection\": true\n}\n";

static const char sdc__sdxl_vae[] =
    "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": \"0.20.0.dev0\",\n"
    "  \"_name_or_path\": \"../sdxl-vae/\",\n  \"act_fn\": \"silu\",\n"
    SDC__VAE_BODY("  \"force_upcast\": true,\n", "1024", "0.13025");

#define SDC__SDXL_TEXT(arch, act, hidden, inter, heads, layers, proj)                                               \
  "{\n  \"architectures\": [\n    \"" arch "\"\n  ],\n  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n"       \
  "  \"dropout\": 0.0,\n  \"eos_token_id\": 2,\n  \"hidden_act\": \"" act "\",\n  \"hidden_size\": " hidden ",\n"      \
  "  \"initializer_factor\": 1.0,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": " inter ",\n"              \
  "  \"layer_norm_eps\": 1e-05,\n  \"max_position_embeddings\": 77,\n  \"model_type\": \"clip_text_model\",\n"        \
  "  \"num_attention_heads\": " heads ",\n  \"num_hidden_layers\": " layers ",\n  \"pad_token_id\": 1,\n"               \
  "  \"projection_dim\": " proj ",\n  \"torch_dtype\": \"float16\",\n  \"transformers_version\": \"4.32.0.dev0\",\n"  \
  "  \"vocab_size\": 49408\n}\n"

/* CLIP ViT-L/14: all 12 layers are loaded; the pipeline conditions on the penultimate one */
static const char sdc__sdxl_text[] = SDC__SDXL_TEXT("CLIPTextModel", "quick_gelu", "768", "3072", "12", "12", "768");
/* OpenCLIP ViT-bigG/14: all 32 layers, the last one for the pooled text_embeds */
static const char sdc__sdxl_text2[] =
    SDC__SDXL_TEXT("CLIPTextModelWithProjection", "gelu", "1280", "5120", "20", "32", "1280");

static const char sdc__sdxl_sched[] =
    "{\n  \"_class_name\": \"EulerDiscreteScheduler\",\n  \"_diffusers_version\": \"0.19.0.dev0\",\n"
    "  \"beta_end\": 0.012,\n  \"beta_schedule\": \"scaled_linear\",\n  \"beta_start\": 0.00085,\n"
    "  \"clip_sample\": false,\n  \"interpolation_type\": \"linear\",\n  \"num_train_timesteps\": 1000,\n"
    "  \"prediction_type\": \"epsilon\",\n  \"sample_max_value\": 1.0,\n  \"set_alpha_to_one\": false,\n"
    "  \"skip_prk_steps\": true,\n  \"steps_offset\": 1,\n  \"timestep_spacing\": \"leading\",\n"
    "  \"trained_betas\": null,\n  \"use_karras_sigmas\": false\n}\n";

const char *sdc_checkpoint_std_config(sdc_family fam, const char *component) {
  static const char *const names[] = {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"};
  static const char *const configs[SDC_FAMILY_COUNT][5] = {
      {sdc__sd1_unet, sdc__sd1_vae, sdc__sd1_text, NULL, sdc__sd1_sched},
      {sdc__sd2_unet, sdc__sd2_vae, sdc__sd2_text, NULL, sdc__sd2_sched},
      {sdc__sdxl_unet, sdc__sdxl_vae, sdc__sdxl_text, sdc__sdxl_text2, sdc__sdxl_sched},
  };
  if ((unsigned)fam >= SDC_FAMILY_COUNT || !component) return NULL;
  for (size_t i = 0; i < SDC__N(names); i++)
    if (strcmp(component, names[i]) == 0) return configs[fam][i];
  return NULL;
}

/* ---- weight views ---- */

int sdc_checkpoint_weights(sdc_weights *w, const sdc_st_file *f, sdc_family fam, const char *component, const void *cfg) {
  memset(w, 0, sizeof *w);
  if ((unsigned)fam >= SDC_FAMILY_COUNT)
    return sdc_seterr(SDC_EINVAL, "%s: unknown model family %d", f->path, (int)fam);
  const char *prefix;
  sdc_key_map_fn map;
  if (component && strcmp(component, "unet") == 0) {
    prefix = SDC_CKPT_UNET_PREFIX, map = sdc_checkpoint_map_unet;
  } else if (component && strcmp(component, "vae") == 0) {
    prefix = SDC_CKPT_VAE_PREFIX, map = sdc_checkpoint_map_vae;
  } else if (component && fam == SDC_FAMILY_SDXL && strcmp(component, "text_encoder") == 0) {
    prefix = SDC_CKPT_SDXL_CLIP_PREFIX, map = sdc_checkpoint_map_clip;
  } else if (component && fam == SDC_FAMILY_SDXL && strcmp(component, "text_encoder_2") == 0) {
    prefix = SDC_CKPT_SDXL_OPENCLIP_PREFIX, map = sdc_checkpoint_map_openclip;
  } else if (component && strcmp(component, "text_encoder") == 0) {
    int open = fam == SDC_FAMILY_SD2;
    /* Some converters store the other family's layout; take what the file has. */
    if (!sdc__has_prefix(f, open ? SDC_CKPT_OPENCLIP_PREFIX : SDC_CKPT_CLIP_PREFIX) &&
        sdc__has_prefix(f, open ? SDC_CKPT_CLIP_PREFIX : SDC_CKPT_OPENCLIP_PREFIX))
      open = !open;
    prefix = open ? SDC_CKPT_OPENCLIP_PREFIX : SDC_CKPT_CLIP_PREFIX;
    map = open ? sdc_checkpoint_map_openclip : sdc_checkpoint_map_clip;
  } else {
    return sdc_seterr(SDC_EINVAL, "%s: unknown component '%s' of an %s checkpoint (expected unet, vae, text_encoder%s)",
                      f->path, component ? component : "(null)", sdc_family_name(fam),
                      fam == SDC_FAMILY_SDXL ? " or text_encoder_2" : "");
  }
  if (!cfg && map != sdc_checkpoint_map_clip && map != sdc_checkpoint_map_openclip)
    return sdc_seterr(SDC_EINVAL, "%s: component '%s' needs its config to map keys", f->path, component);
  if (!sdc__has_prefix(f, prefix))
    return sdc_seterr(SDC_EMISSING, "%s: no '%s*' keys: the file holds no %s", f->path, prefix, component);
  return sdc_weights_init(w, f, prefix, map, cfg);
}
