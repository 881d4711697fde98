/* config.c - cJSON-based parsing of component configs, rejecting what the engine cannot run. */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "error.h"
#include "json.h"

/* --- fields: common/json.h; the per-block lists are configs' own --- */

/* An int or a list of n ints (diffusers accepts both for per-block values). */
static void sdc__int_or_list(sdc_json_fields *c, const char *key, int64_t dflt, int n, int64_t *out) {
  const cJSON *it = sdc_json_item(c, key);
  if (!it || cJSON_IsNumber(it)) {
    int64_t v = sdc_json_int(c, key, dflt, 1, 1 << 20);
    for (int i = 0; i < n; i++) out[i] = v;
    return;
  }
  if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n) {
    char why[96];
    snprintf(why, sizeof why, "expected an integer or a list of %d integers (one per block)", n);
    sdc_json_fail(c, key, why);
    return;
  }
  for (int i = 0; i < n; i++) {
    const cJSON *v = cJSON_GetArrayItem(it, i);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble != floor(v->valuedouble)) {
      sdc_json_fail(c, key, "list entries must be positive integers");
      return;
    }
    out[i] = (int64_t)v->valuedouble;
  }
}

static int sdc__int_list(sdc_json_fields *c, const char *key, int64_t *out, int max_n) {
  const cJSON *it = sdc_json_item(c, key);
  if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) < 1 || cJSON_GetArraySize(it) > max_n) {
    char why[96];
    snprintf(why, sizeof why, "expected a list of 1 to %d integers", max_n);
    sdc_json_fail(c, key, why);
    return 0;
  }
  int n = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, it) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (1 << 20) || v->valuedouble != floor(v->valuedouble)) {
      sdc_json_fail(c, key, "list entries must be positive integers");
      return 0;
    }
    out[n++] = (int64_t)v->valuedouble;
  }
  return n;
}

/* Reads a list of block type names, each one of names[0..1] (index = kind). */
static int sdc__block_list(sdc_json_fields *c, const char *key, int n, const char *const names[2], sdc_block_kind *out) {
  const cJSON *it = sdc_json_item(c, key);
  if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n) {
    char why[96];
    snprintf(why, sizeof why, "expected a list of %d block types", n);
    return sdc_json_fail(c, key, why);
  }
  for (int i = 0; i < n; i++) {
    const cJSON *v = cJSON_GetArrayItem(it, i);
    int k = -1;
    for (int j = 0; j < 2 && cJSON_IsString(v); j++)
      if (names[j] && strcmp(v->valuestring, names[j]) == 0) k = j;
    if (k < 0) {
      char why[200];
      snprintf(why, sizeof why, "unknown block type '%s' (supported: %s%s%s)", cJSON_IsString(v) ? v->valuestring : "?",
               names[0] ? names[0] : "", names[0] && names[1] ? ", " : "", names[1] ? names[1] : "");
      return sdc_json_fail(c, key, why);
    }
    out[i] = (sdc_block_kind)k;
  }
  return SDC_OK;
}

static int sdc__open(sdc_json_fields *c, cJSON **root, const char *json, const char *label) {
  char where[1024];
  snprintf(where, sizeof where, "%s:", label);
  *root = cJSON_Parse(json);
  sdc_json_fields_init(c, *root, where, SDC_ECONFIG);
  if (!cJSON_IsObject(*root)) {
    cJSON_Delete(*root);
    *root = NULL;
    return sdc_seterr(SDC_ECONFIG, "%s: not a JSON object", label);
  }
  return SDC_OK;
}

/* A feature we do not implement must be absent, null or the given harmless value. */
static void sdc__require_absent(sdc_json_fields *c, const char *key) {
  const cJSON *it = sdc_json_item(c, key);
  if (it && !(cJSON_IsFalse(it))) sdc_json_fail(c, key, "not supported by this engine (must be null)");
}

int sdc_unet_config_parse(sdc_unet_config *cfg, const char *json, const char *label) {
  memset(cfg, 0, sizeof *cfg);
  sdc_json_fields c;
  cJSON *root;
  int err = sdc__open(&c, &root, json, label);
  if (err) return err;
  cfg->in_channels = sdc_json_int(&c, "in_channels", 4, 1, 1024);
  cfg->out_channels = sdc_json_int(&c, "out_channels", 4, 1, 1024);
  int n = sdc__int_list(&c, "block_out_channels", cfg->block_out_channels, SDC_MAX_BLOCKS);
  cfg->n_blocks = n;
  static const char *const down_names[2] = {"DownBlock2D", "CrossAttnDownBlock2D"};
  static const char *const up_names[2] = {"UpBlock2D", "CrossAttnUpBlock2D"};
  if (n && !c.err) sdc__block_list(&c, "down_block_types", n, down_names, cfg->down_blocks);
  if (n && !c.err) sdc__block_list(&c, "up_block_types", n, up_names, cfg->up_blocks);
  const char *mid = sdc_json_str(&c, "mid_block_type", "UNetMidBlock2DCrossAttn");
  if (!c.err && strcmp(mid, "UNetMidBlock2DCrossAttn") != 0) {
    char why[160];
    snprintf(why, sizeof why, "unknown block type '%s' (supported: UNetMidBlock2DCrossAttn)", mid);
    sdc_json_fail(&c, "mid_block_type", why);
  }
  sdc__int_or_list(&c, "layers_per_block", 2, n, cfg->layers_per_block);
  /* diffusers' historical misnomer: attention_head_dim is the number of heads
   * unless num_attention_heads is given. */
  if (sdc_json_item(&c, "num_attention_heads"))
    sdc__int_or_list(&c, "num_attention_heads", 8, n, cfg->heads);
  else
    sdc__int_or_list(&c, "attention_head_dim", 8, n, cfg->heads);
  sdc__int_or_list(&c, "transformer_layers_per_block", 1, n, cfg->transformer_layers);
  cfg->cross_attention_dim = sdc_json_int(&c, "cross_attention_dim", 1280, 1, 1 << 16);
  cfg->use_linear_projection = sdc_json_bool(&c, "use_linear_projection", 0);
  cfg->upcast_attention = sdc_json_bool(&c, "upcast_attention", 0);
  cfg->norm_num_groups = sdc_json_int(&c, "norm_num_groups", 32, 1, 1 << 16);
  cfg->norm_eps = sdc_json_num(&c, "norm_eps", 1e-5);
  cfg->flip_sin_to_cos = sdc_json_bool(&c, "flip_sin_to_cos", 1);
  cfg->freq_shift = sdc_json_num(&c, "freq_shift", 0);
  cfg->conv_in_kernel = sdc_json_int(&c, "conv_in_kernel", 3, 1, 15);
  cfg->conv_out_kernel = sdc_json_int(&c, "conv_out_kernel", 3, 1, 15);
  cfg->downsample_padding = sdc_json_int(&c, "downsample_padding", 1, 0, 1);
  cfg->mid_block_scale_factor = sdc_json_num(&c, "mid_block_scale_factor", 1.0);
  cfg->sample_size = sdc_json_int(&c, "sample_size", 64, 1, 1 << 16);
  cfg->time_embed_dim = sdc_json_int(&c, "time_embedding_dim", n ? 4 * cfg->block_out_channels[0] : 0, 1, 1 << 20);
  if (strcmp(sdc_json_str(&c, "time_embedding_type", "positional"), "positional") != 0)
    sdc_json_fail(&c, "time_embedding_type", "only 'positional' is supported");
  if (strcmp(sdc_json_str(&c, "act_fn", "silu"), "silu") != 0) sdc_json_fail(&c, "act_fn", "only 'silu' is supported");
  if (strcmp(sdc_json_str(&c, "resnet_time_scale_shift", "default"), "default") != 0)
    sdc_json_fail(&c, "resnet_time_scale_shift", "only 'default' is supported");
  if (strcmp(sdc_json_str(&c, "attention_type", "default"), "default") != 0)
    sdc_json_fail(&c, "attention_type", "only 'default' is supported");
  if (sdc_json_num(&c, "resnet_out_scale_factor", 1.0) != 1.0)
    sdc_json_fail(&c, "resnet_out_scale_factor", "only 1.0 is supported");
  const char *add = sdc_json_str(&c, "addition_embed_type", NULL);
  if (add && strcmp(add, "text_time") == 0) {
    cfg->add_text_time = 1;
    cfg->addition_time_embed_dim = sdc_json_int(&c, "addition_time_embed_dim", 256, 2, 1 << 16);
    cfg->projection_class_embeddings_input_dim =
        sdc_json_int(&c, "projection_class_embeddings_input_dim", 0, 1, 1 << 20);
    if (!c.err && cfg->addition_time_embed_dim % 2)
      sdc_json_fail(&c, "addition_time_embed_dim", "must be even (sin and cos halves)");
  } else if (add && !c.err) {
    char why[160];
    snprintf(why, sizeof why, "'%s' is not supported by this engine (null or 'text_time')", add);
    sdc_json_fail(&c, "addition_embed_type", why);
  }
  static const char *const absent[] = {"class_embed_type", "time_cond_proj_dim",
                                       "encoder_hid_dim", "num_class_embeds", "only_cross_attention",
                                       "dual_cross_attention", "center_input_sample", "cross_attention_norm",
                                       "timestep_post_act", "time_embedding_act_fn", "resnet_skip_time_act",
                                       "mid_block_only_cross_attention", "class_embeddings_concat",
                                       "reverse_transformer_layers_per_block"};
  for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) sdc__require_absent(&c, absent[i]);
  for (int i = 0; i < n && !c.err; i++) {
    if (cfg->block_out_channels[i] % cfg->norm_num_groups) sdc_json_fail(&c, "block_out_channels", "not divisible by norm_num_groups");
    else if (cfg->block_out_channels[i] % cfg->heads[i]) sdc_json_fail(&c, "attention_head_dim", "heads do not divide the block's channels");
  }
  err = c.err;
  cJSON_Delete(root);
  return err;
}

int sdc_vae_config_parse(sdc_vae_config *cfg, const char *json, const char *label) {
  memset(cfg, 0, sizeof *cfg);
  sdc_json_fields c;
  cJSON *root;
  int err = sdc__open(&c, &root, json, label);
  if (err) return err;
  cfg->in_channels = sdc_json_int(&c, "in_channels", 3, 1, 64);
  cfg->out_channels = sdc_json_int(&c, "out_channels", 3, 1, 64);
  cfg->latent_channels = sdc_json_int(&c, "latent_channels", 4, 1, 1024);
  cfg->n_blocks = sdc__int_list(&c, "block_out_channels", cfg->block_out_channels, SDC_MAX_BLOCKS);
  sdc_block_kind kinds[SDC_MAX_BLOCKS];
  static const char *const down_names[2] = {"DownEncoderBlock2D", NULL};
  static const char *const up_names[2] = {"UpDecoderBlock2D", NULL};
  if (cfg->n_blocks && !c.err) sdc__block_list(&c, "down_block_types", cfg->n_blocks, down_names, kinds);
  if (cfg->n_blocks && !c.err) sdc__block_list(&c, "up_block_types", cfg->n_blocks, up_names, kinds);
  cfg->layers_per_block = sdc_json_int(&c, "layers_per_block", 1, 1, 64);
  cfg->norm_num_groups = sdc_json_int(&c, "norm_num_groups", 32, 1, 1 << 16);
  cfg->mid_block_add_attention = sdc_json_bool(&c, "mid_block_add_attention", 1);
  cfg->use_quant_conv = sdc_json_bool(&c, "use_quant_conv", 1);
  cfg->use_post_quant_conv = sdc_json_bool(&c, "use_post_quant_conv", 1);
  cfg->scaling_factor = sdc_json_num(&c, "scaling_factor", 0.18215);
  cfg->shift_factor = sdc_json_num(&c, "shift_factor", 0.0);
  cfg->sample_size = sdc_json_int(&c, "sample_size", 512, 1, 1 << 16);
  if (strcmp(sdc_json_str(&c, "act_fn", "silu"), "silu") != 0) sdc_json_fail(&c, "act_fn", "only 'silu' is supported");
  for (int i = 0; i < cfg->n_blocks && !c.err; i++)
    if (cfg->block_out_channels[i] % cfg->norm_num_groups) sdc_json_fail(&c, "block_out_channels", "not divisible by norm_num_groups");
  err = c.err;
  cJSON_Delete(root);
  return err;
}

int sdc_clip_config_parse(sdc_clip_config *cfg, const char *json, const char *label) {
  memset(cfg, 0, sizeof *cfg);
  sdc_json_fields c;
  cJSON *root;
  int err = sdc__open(&c, &root, json, label);
  if (err) return err;
  cfg->vocab_size = sdc_json_int(&c, "vocab_size", 49408, 1, 1 << 24);
  cfg->hidden_size = sdc_json_int(&c, "hidden_size", 512, 1, 1 << 16);
  cfg->intermediate_size = sdc_json_int(&c, "intermediate_size", 2048, 1, 1 << 18);
  cfg->n_layers = sdc_json_int(&c, "num_hidden_layers", 12, 1, 256);
  cfg->n_heads = sdc_json_int(&c, "num_attention_heads", 8, 1, 1024);
  cfg->max_positions = sdc_json_int(&c, "max_position_embeddings", 77, 1, 1 << 16);
  cfg->layer_norm_eps = sdc_json_num(&c, "layer_norm_eps", 1e-5);
  const char *act = sdc_json_str(&c, "hidden_act", "quick_gelu");
  if (strcmp(act, "quick_gelu") == 0) cfg->act = SDC_ACT_QUICK_GELU;
  else if (strcmp(act, "gelu") == 0) cfg->act = SDC_ACT_GELU;
  else sdc_json_fail(&c, "hidden_act", "expected 'quick_gelu' or 'gelu'");
  cfg->eos_token_id = sdc_json_int(&c, "eos_token_id", 2, 0, 1 << 24);
  /* transformers names the class in "architectures"; the projection only exists in the WithProjection one */
  const cJSON *arch = sdc_json_item(&c, "architectures");
  if (arch && !cJSON_IsArray(arch)) sdc_json_fail(&c, "architectures", "expected a list of class names");
  const cJSON *a0 = cJSON_GetArrayItem(arch, 0);
  cfg->with_projection = cJSON_IsString(a0) && strcmp(a0->valuestring, "CLIPTextModelWithProjection") == 0;
  cfg->projection_dim = sdc_json_int(&c, "projection_dim", 512, 1, 1 << 16);
  if (!c.err && cfg->hidden_size % cfg->n_heads) sdc_json_fail(&c, "num_attention_heads", "does not divide hidden_size");
  err = c.err;
  cJSON_Delete(root);
  return err;
}
