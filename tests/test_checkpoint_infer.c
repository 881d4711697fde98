/* test_checkpoint_infer.c - configs read from tensor shapes: full-size SD 1.5 / 2.1 / SDXL base layouts give exactly
 * the built-in configs (heads by the family's rule), and a missing tensor is an error naming it. No weights needed:
 * the checkpoints are headers only (names and shapes), built here from the architectures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "error.h"
#include "test_util.h"

enum { MAX_KEYS = 512 };
static sdc_st_entry g_e[MAX_KEYS];
static int g_n;

static void key(const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
  if (g_n == MAX_KEYS) return;
  sdc_st_entry *e = &g_e[g_n++];
  memset(e, 0, sizeof *e);
  e->name = strdup(name);
  e->dtype = SDC_F16;
  e->ndim = ndim;
  const int64_t s[4] = {a, b, c, d};
  for (int i = 0; i < ndim; i++) e->shape[i] = s[i];
}

static int by_name(const void *a, const void *b) { return strcmp(((const sdc_st_entry *)a)->name, ((const sdc_st_entry *)b)->name); }

/* The keys checkpoint_infer reads, shaped as stable-diffusion-v1-5 (sd2 = 0) or -2-1 (sd2 = 1) ship them. */
static sdc_st_file full_size(int sd2, const char *skip) {
  char n[256];
  const char *U = SDC_CKPT_UNET_PREFIX, *V = SDC_CKPT_VAE_PREFIX;
  const int64_t ch[4] = {320, 640, 1280, 1280}, ctx = sd2 ? 1024 : 768, vch[4] = {128, 256, 512, 512};
  g_n = 0;
  snprintf(n, sizeof n, "%sinput_blocks.0.0.weight", U), key(n, 4, 320, 4, 3, 3);
  snprintf(n, sizeof n, "%sout.2.weight", U), key(n, 4, 4, 320, 3, 3);
  snprintf(n, sizeof n, "%stime_embed.0.weight", U), key(n, 2, 1280, 320, 0, 0);
  int k = 1;
  for (int l = 0; l < 4; l++) {
    for (int j = 0; j < 2; j++, k++) {
      snprintf(n, sizeof n, "%sinput_blocks.%d.0.in_layers.2.weight", U, k), key(n, 4, ch[l], ch[l], 3, 3);
      if (l == 3) continue;
      snprintf(n, sizeof n, "%sinput_blocks.%d.1.proj_in.weight", U, k);
      sd2 ? key(n, 2, ch[l], ch[l], 0, 0) : key(n, 4, ch[l], ch[l], 1, 1);
      snprintf(n, sizeof n, "%sinput_blocks.%d.1.transformer_blocks.0.norm1.weight", U, k), key(n, 1, ch[l], 0, 0, 0);
      snprintf(n, sizeof n, "%sinput_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", U, k), key(n, 2, ch[l], ctx, 0, 0);
    }
    if (l < 3) snprintf(n, sizeof n, "%sinput_blocks.%d.0.op.weight", U, k++), key(n, 4, ch[l], ch[l], 3, 3);
  }
  snprintf(n, sizeof n, "%sencoder.conv_in.weight", V), key(n, 4, 128, 3, 3, 3);
  snprintf(n, sizeof n, "%sdecoder.conv_in.weight", V), key(n, 4, 512, 4, 3, 3);
  snprintf(n, sizeof n, "%sdecoder.conv_out.weight", V), key(n, 4, 3, 128, 3, 3);
  snprintf(n, sizeof n, "%squant_conv.weight", V), key(n, 4, 8, 8, 1, 1);
  snprintf(n, sizeof n, "%spost_quant_conv.weight", V), key(n, 4, 4, 4, 1, 1);
  snprintf(n, sizeof n, "%sdecoder.mid.attn_1.q.weight", V), key(n, 4, 512, 512, 1, 1);
  for (int l = 0; l < 4; l++)
    for (int b = 0; b < 2; b++)
      snprintf(n, sizeof n, "%sencoder.down.%d.block.%d.conv1.weight", V, l, b), key(n, 4, vch[l], l ? vch[l - 1] : 128, 3, 3);
  if (sd2) {
    const char *C = SDC_CKPT_OPENCLIP_PREFIX;
    snprintf(n, sizeof n, "%stoken_embedding.weight", C), key(n, 2, 49408, 1024, 0, 0);
    snprintf(n, sizeof n, "%spositional_embedding", C), key(n, 2, 77, 1024, 0, 0);
    snprintf(n, sizeof n, "%stransformer.resblocks.0.mlp.c_fc.weight", C), key(n, 2, 4096, 1024, 0, 0);
    for (int l = 0; l < 24; l++) snprintf(n, sizeof n, "%stransformer.resblocks.%d.ln_1.weight", C, l), key(n, 1, 1024, 0, 0, 0);
  } else {
    const char *C = SDC_CKPT_CLIP_PREFIX "text_model.";
    snprintf(n, sizeof n, "%sembeddings.token_embedding.weight", C), key(n, 2, 49408, 768, 0, 0);
    snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", C), key(n, 2, 77, 768, 0, 0);
    snprintf(n, sizeof n, "%sencoder.layers.0.mlp.fc1.weight", C), key(n, 2, 3072, 768, 0, 0);
    for (int l = 0; l < 12; l++) snprintf(n, sizeof n, "%sencoder.layers.%d.layer_norm1.weight", C, l), key(n, 1, 768, 0, 0, 0);
  }
  for (int i = 0; skip && i < g_n; i++)
    if (strstr(g_e[i].name, skip)) free(g_e[i].name), g_e[i] = g_e[--g_n];
  qsort(g_e, (size_t)g_n, sizeof *g_e, by_name);
  return (sdc_st_file){.path = sd2 ? "sd21.safetensors" : "sd15.safetensors", .entries = g_e, .n_entries = g_n};
}

/* The keys checkpoint_infer reads, shaped as sd_xl_base_1.0.safetensors has them: 3 levels [320, 640, 1280], no
 * attention on the first, transformer depth [1, 2, 10] (the highest transformer_blocks index counts), the text_time
 * MLP label_emb.0.0 [1280, 2816], CLIP ViT-L and OpenCLIP bigG (32 layers, text_projection stored [in, out]). */
static sdc_st_file full_size_sdxl(const char *skip) {
  char n[256];
  const char *U = SDC_CKPT_UNET_PREFIX, *V = SDC_CKPT_VAE_PREFIX;
  const int64_t ch[3] = {320, 640, 1280}, depth[3] = {0, 2, 10}, vch[4] = {128, 256, 512, 512};
  g_n = 0;
  snprintf(n, sizeof n, "%sinput_blocks.0.0.weight", U), key(n, 4, 320, 4, 3, 3);
  snprintf(n, sizeof n, "%sout.2.weight", U), key(n, 4, 4, 320, 3, 3);
  snprintf(n, sizeof n, "%stime_embed.0.weight", U), key(n, 2, 1280, 320, 0, 0);
  snprintf(n, sizeof n, "%slabel_emb.0.0.weight", U), key(n, 2, 1280, 2816, 0, 0);
  int k = 1;
  for (int l = 0; l < 3; l++) {
    for (int j = 0; j < 2; j++, k++) {
      snprintf(n, sizeof n, "%sinput_blocks.%d.0.in_layers.2.weight", U, k), key(n, 4, ch[l], l ? ch[l - 1] : 320, 3, 3);
      if (!depth[l]) continue;
      snprintf(n, sizeof n, "%sinput_blocks.%d.1.proj_in.weight", U, k), key(n, 2, ch[l], ch[l], 0, 0);
      for (int t = 0; t < depth[l]; t++) {
        snprintf(n, sizeof n, "%sinput_blocks.%d.1.transformer_blocks.%d.norm1.weight", U, k, t);
        key(n, 1, ch[l], 0, 0, 0);
      }
      snprintf(n, sizeof n, "%sinput_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", U, k), key(n, 2, ch[l], 2048, 0, 0);
    }
    if (l < 2) snprintf(n, sizeof n, "%sinput_blocks.%d.0.op.weight", U, k++), key(n, 4, ch[l], ch[l], 3, 3);
  }
  snprintf(n, sizeof n, "%sencoder.conv_in.weight", V), key(n, 4, 128, 3, 3, 3);
  snprintf(n, sizeof n, "%sdecoder.conv_in.weight", V), key(n, 4, 512, 4, 3, 3);
  snprintf(n, sizeof n, "%sdecoder.conv_out.weight", V), key(n, 4, 3, 128, 3, 3);
  snprintf(n, sizeof n, "%squant_conv.weight", V), key(n, 4, 8, 8, 1, 1);
  snprintf(n, sizeof n, "%spost_quant_conv.weight", V), key(n, 4, 4, 4, 1, 1);
  snprintf(n, sizeof n, "%sdecoder.mid.attn_1.q.weight", V), key(n, 4, 512, 512, 1, 1);
  for (int l = 0; l < 4; l++)
    for (int b = 0; b < 2; b++)
      snprintf(n, sizeof n, "%sencoder.down.%d.block.%d.conv1.weight", V, l, b), key(n, 4, vch[l], l ? vch[l - 1] : 128, 3, 3);
  const char *C = SDC_CKPT_SDXL_CLIP_PREFIX "text_model.", *G = SDC_CKPT_SDXL_OPENCLIP_PREFIX;
  snprintf(n, sizeof n, "%sembeddings.token_embedding.weight", C), key(n, 2, 49408, 768, 0, 0);
  snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", C), key(n, 2, 77, 768, 0, 0);
  snprintf(n, sizeof n, "%sencoder.layers.0.mlp.fc1.weight", C), key(n, 2, 3072, 768, 0, 0);
  for (int l = 0; l < 12; l++) snprintf(n, sizeof n, "%sencoder.layers.%d.layer_norm1.weight", C, l), key(n, 1, 768, 0, 0, 0);
  snprintf(n, sizeof n, "%stoken_embedding.weight", G), key(n, 2, 49408, 1280, 0, 0);
  snprintf(n, sizeof n, "%spositional_embedding", G), key(n, 2, 77, 1280, 0, 0);
  snprintf(n, sizeof n, "%stext_projection", G), key(n, 2, 1280, 1280, 0, 0);
  snprintf(n, sizeof n, "%stransformer.resblocks.0.mlp.c_fc.weight", G), key(n, 2, 5120, 1280, 0, 0);
  for (int l = 0; l < 32; l++) snprintf(n, sizeof n, "%stransformer.resblocks.%d.ln_1.weight", G, l), key(n, 1, 1280, 0, 0, 0);
  for (int i = 0; skip && i < g_n; i++)
    if (strstr(g_e[i].name, skip)) free(g_e[i].name), g_e[i] = g_e[--g_n];
  qsort(g_e, (size_t)g_n, sizeof *g_e, by_name);
  return (sdc_st_file){.path = "sd_xl_base.safetensors", .entries = g_e, .n_entries = g_n};
}

static void free_keys(void) {
  for (int i = 0; i < g_n; i++) free(g_e[i].name);
  g_n = 0;
}

static void test_full_size_gives_the_builtin_configs(int sd2) {
  const sdc_family fam = sd2 ? SDC_FAMILY_SD2 : SDC_FAMILY_SD1;
  const char *name = sd2 ? "sd21" : "sd15";
  sdc_unet_config u0, u;
  sdc_vae_config v0, v;
  sdc_clip_config c0, c;
  memset(&u0, 0, sizeof u0), memset(&v0, 0, sizeof v0), memset(&c0, 0, sizeof c0);
  int err = sdc_unet_config_parse(&u0, sdc_checkpoint_std_config(fam, "unet"), "unet");
  if (!err) err = sdc_vae_config_parse(&v0, sdc_checkpoint_std_config(fam, "vae"), "vae");
  if (!err) err = sdc_clip_config_parse(&c0, sdc_checkpoint_std_config(fam, "text_encoder"), "text");
  CHECK(!err, "%s built-in configs: %s", name, sdc_errmsg(err));
  /* from the built-in configs with every shape-borne field scrambled: inference must restore them all */
  u = u0, v = v0, c = c0;
  u.in_channels = u.out_channels = 1, u.n_blocks = 2, u.cross_attention_dim = 5, u.use_linear_projection = !sd2;
  u.time_embed_dim = 7;
  for (int i = 0; i < SDC_MAX_BLOCKS; i++)
    if (i < 4) u.block_out_channels[i] = 9, u.layers_per_block[i] = 3, u.heads[i] = 3, u.transformer_layers[i] = 2;
  v.n_blocks = 2, v.block_out_channels[0] = 1, v.layers_per_block = 5, v.latent_channels = 16, v.use_quant_conv = 0;
  c.hidden_size = 8, c.n_layers = 1, c.n_heads = 2, c.intermediate_size = 3, c.max_positions = 5;
  sdc_st_file f = full_size(sd2, NULL);
  sdc_ckpt_facts facts;
  err = sdc_checkpoint_infer(&f, fam, &u, &v, &c, NULL, &facts);
  CHECK(!err, "%s infer: %s", name, sdc_errmsg(err));
  CHECK(!memcmp(&u, &u0, sizeof u), "%s: inferred UNet config differs from the built-in one (heads %lld/%lld/%lld)", name,
        (long long)u.heads[0], (long long)u.heads[1], (long long)u.heads[2]);
  CHECK(!memcmp(&v, &v0, sizeof v), "%s: inferred VAE config differs from the built-in one", name);
  CHECK(!memcmp(&c, &c0, sizeof c), "%s: inferred text config differs (layers %lld, heads %lld)", name,
        (long long)c.n_layers, (long long)c.n_heads);
  CHECK(facts.v_pred == sd2 && !facts.inpaint, "%s: v_pred %d inpaint %d", name, facts.v_pred, facts.inpaint);
  free_keys();
  /* a tensor inference needs, missing: one line naming it */
  f = full_size(sd2, "time_embed.0.weight");
  u = u0, v = v0, c = c0;
  err = sdc_checkpoint_infer(&f, fam, &u, &v, &c, NULL, &facts);
  CHECK(err && strstr(sdc_errmsg(err), "model.diffusion_model.time_embed.0.weight") && strstr(sdc_errmsg(err), "--config"),
        "%s without time_embed: %s", name, err ? sdc_errmsg(err) : "accepted");
  free_keys();
  /* shapes a config.json could not say: 104 channels with 32 norm groups (8 heads divide it) */
  f = full_size(sd2, NULL);
  for (int i = 0; i < g_n; i++)
    if (strstr(g_e[i].name, "input_blocks.2.0.in_layers.2.weight")) g_e[i].shape[0] = 104;
  u = u0, v = v0, c = c0;
  err = sdc_checkpoint_infer(&f, fam, &u, &v, &c, NULL, &facts);
  CHECK(err && strstr(sdc_errmsg(err), "104 channels") && strstr(sdc_errmsg(err), "norm_num_groups"),
        "%s with a 104-channel level: %s", name, err ? sdc_errmsg(err) : "accepted");
  free_keys();
}

static void test_sdxl_full_size_gives_the_builtin_configs(void) {
  const sdc_family X = SDC_FAMILY_SDXL;
  sdc_unet_config u0, u;
  sdc_vae_config v0, v;
  sdc_clip_config c0, c, d0, d;
  memset(&u0, 0, sizeof u0), memset(&v0, 0, sizeof v0), memset(&c0, 0, sizeof c0), memset(&d0, 0, sizeof d0);
  int err = sdc_unet_config_parse(&u0, sdc_checkpoint_std_config(X, "unet"), "unet");
  if (!err) err = sdc_vae_config_parse(&v0, sdc_checkpoint_std_config(X, "vae"), "vae");
  if (!err) err = sdc_clip_config_parse(&c0, sdc_checkpoint_std_config(X, "text_encoder"), "text");
  if (!err) err = sdc_clip_config_parse(&d0, sdc_checkpoint_std_config(X, "text_encoder_2"), "text2");
  CHECK(!err, "sdxl built-in configs: %s", sdc_errmsg(err));
  u = u0, v = v0, c = c0, d = d0;
  u.in_channels = 1, u.n_blocks = 2, u.cross_attention_dim = 5, u.time_embed_dim = 7, u.add_text_time = 0;
  u.addition_time_embed_dim = 3, u.projection_class_embeddings_input_dim = 11;
  for (int i = 0; i < 3; i++)
    u.block_out_channels[i] = 9, u.heads[i] = 3, u.transformer_layers[i] = 4,
    u.down_blocks[i] = u.up_blocks[i] = SDC_BLOCK_CROSS_ATTN;
  c.hidden_size = d.hidden_size = 8, c.n_layers = d.n_layers = 1, c.n_heads = d.n_heads = 2, d.projection_dim = 3;
  sdc_st_file f = full_size_sdxl(NULL);
  sdc_ckpt_facts facts;
  err = sdc_checkpoint_infer(&f, X, &u, &v, &c, &d, &facts);
  CHECK(!err, "sdxl infer: %s", sdc_errmsg(err));
  CHECK(!memcmp(&u, &u0, sizeof u), "sdxl: inferred UNet config differs (heads %lld/%lld/%lld, depth %lld/%lld/%lld, "
        "text_time %lld/%lld)", (long long)u.heads[0], (long long)u.heads[1], (long long)u.heads[2],
        (long long)u.transformer_layers[0], (long long)u.transformer_layers[1], (long long)u.transformer_layers[2],
        (long long)u.addition_time_embed_dim, (long long)u.projection_class_embeddings_input_dim);
  CHECK(!memcmp(&v, &v0, sizeof v), "sdxl: inferred VAE config differs from the built-in one");
  CHECK(!memcmp(&c, &c0, sizeof c), "sdxl: inferred text config differs (layers %lld)", (long long)c.n_layers);
  CHECK(!memcmp(&d, &d0, sizeof d),
        "sdxl: inferred text_encoder_2 config differs (layers %lld, heads %lld, projection %lld)", (long long)d.n_layers, (long long)d.n_heads, (long long)d.projection_dim);
  CHECK(!facts.v_pred && !facts.inpaint, "sdxl: v_pred %d inpaint %d", facts.v_pred, facts.inpaint);
  err = sdc_checkpoint_infer(&f, X, &u, &v, &c, NULL, &facts);
  CHECK(err == SDC_EINVAL, "sdxl without a second text config: %s", err ? sdc_errmsg(err) : "accepted");
  free_keys();
  /* what ties the encoders to the UNet, missing or inconsistent: one line naming the tensor */
  static const char *const gone[] = {"label_emb.0.0.weight", "conditioner.embedders.1.model.text_projection",
                                     "conditioner.embedders.1.model.token_embedding.weight"};
  for (int i = 0; i < 3; i++) {
    f = full_size_sdxl(gone[i]);
    u = u0, v = v0, c = c0, d = d0;
    err = sdc_checkpoint_infer(&f, X, &u, &v, &c, &d, &facts);
    const char *m = sdc_errmsg(err);
    CHECK(err && strstr(m, gone[i]) && strstr(m, "sd_xl_base.safetensors") && strstr(m, "--config") && !strchr(m, '\n'),
          "sdxl without %s: %s", gone[i], err ? m : "accepted");
    free_keys();
  }
  f = full_size_sdxl(NULL);
  for (int i = 0; i < g_n; i++)
    if (strstr(g_e[i].name, "label_emb.0.0.weight")) g_e[i].shape[1] = 2815; /* 1280 + 1535: not 6 even widths */
  u = u0, v = v0, c = c0, d = d0;
  err = sdc_checkpoint_infer(&f, X, &u, &v, &c, &d, &facts);
  CHECK(err && strstr(sdc_errmsg(err), "label_emb.0.0.weight") && strstr(sdc_errmsg(err), "2815"),
        "sdxl with a 2815-wide text_time input: %s", err ? sdc_errmsg(err) : "accepted");
  free_keys();
}

int main(void) {
  test_full_size_gives_the_builtin_configs(0);
  test_full_size_gives_the_builtin_configs(1);
  test_sdxl_full_size_gives_the_builtin_configs();
  return sdc_test_finish("test_checkpoint_infer");
}
