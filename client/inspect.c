/* inspect.c - `sdc inspect --model PATH`: load every component as the engine would and describe it. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "cli.h"
#include "error.h"
#include "model.h"
#include "textcond.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

static void sdc__inspect_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc inspect --model PATH [--config DIR] [--json]\n"
          "  Loads the configs, tokenizer and every weight of a model (a diffusers folder, or a\n"
          "  single .safetensors checkpoint, whose family, prediction type, inpainting UNet and\n"
          "  configs are read from its tensors unless --config names a diffusers folder) and\n"
          "  prints what it recognised and its architecture; --json prints one JSON object.\n"
          "  A broken model gets a one-line error naming the file and the culprit, and exit code 2.\n");
}

static int64_t sdc__params(const sdc_weights *w) { return w->n_bytes_used / 4; }

/* The scheduler config's prediction_type ("epsilon" when absent, as diffusers). */
static const char *sdc__sched_pred(const sdc_model *m, char *buf, size_t n) {
  cJSON *root = m->scheduler_json ? cJSON_Parse(m->scheduler_json) : NULL;
  const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "prediction_type");
  snprintf(buf, n, "%s", cJSON_IsString(pt) ? pt->valuestring : "epsilon");
  cJSON_Delete(root);
  return buf;
}

/* What was recognised and the architecture, as text lines or one JSON object. */
static void sdc__inspect_print(const sdc_model *m, const char *path, const char *tokdir, const sdc_weights *w, int json) {
  char pred[32], why[160], blocks[128] = "";
  sdc__sched_pred(m, pred, sizeof pred);
  const int inpaint = m->unet.in_channels == 9, builtin = m->single_file && !m->config_dir[0];
  if (builtin) snprintf(why, sizeof why, "%s", m->facts.pred_why);
  else snprintf(why, sizeof why, "%s/scheduler/scheduler_config.json", m->config_dir);
  const char *configs = !builtin ? "from the diffusers folder"
                        : m->configs_inferred ? "inferred from tensor shapes (heads by the family's rule)"
                                              : "built-in (the tensor shapes match them)";
  const char *family = !m->single_file ? "diffusers folder"
                       : m->family == SDC_FAMILY_SDXL ? "SDXL"
                       : m->family == SDC_FAMILY_SD2 ? "SD 2.x"
                                                     : "SD 1.x";
  for (int i = 0; i < m->unet.n_blocks; i++) {
    size_t len = strlen(blocks);
    snprintf(blocks + len, sizeof blocks - len, " %lld", (long long)m->unet.block_out_channels[i]);
  }
  if (json) {
    cJSON *o = cJSON_CreateObject(), *u = cJSON_CreateObject(), *c = cJSON_CreateObject(), *v = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", path);
    cJSON_AddStringToObject(o, "layout", m->single_file ? "single_file" : "diffusers");
    if (m->single_file) cJSON_AddStringToObject(o, "family", sdc_family_name(m->family));
    cJSON_AddStringToObject(o, "prediction_type", pred);
    cJSON_AddStringToObject(o, "prediction_reason", why);
    cJSON_AddBoolToObject(o, "inpainting", inpaint);
    cJSON_AddStringToObject(o, "configs", !builtin ? "folder" : m->configs_inferred ? "inferred" : "built-in");
    if (m->config_dir[0]) cJSON_AddStringToObject(o, "config_dir", m->config_dir);
    cJSON_AddStringToObject(o, "tokenizer", tokdir[0] ? tokdir : "built-in");
    cJSON_AddNumberToObject(c, "layers", (double)m->clip.n_layers);
    cJSON_AddNumberToObject(c, "width", (double)m->clip.hidden_size);
    cJSON_AddNumberToObject(c, "heads", (double)m->clip.n_heads);
    cJSON_AddStringToObject(c, "act", m->clip.act == SDC_ACT_GELU ? "gelu" : "quick_gelu");
    cJSON_AddNumberToObject(c, "params", (double)sdc__params(&w[SDC_COMP_TEXT_ENCODER]));
    cJSON_AddItemToObject(o, "text_encoder", c);
    if (m->has_text_encoder_2) {
      cJSON *c2 = cJSON_CreateObject();
      cJSON_AddNumberToObject(c2, "layers", (double)m->clip2.n_layers);
      cJSON_AddNumberToObject(c2, "width", (double)m->clip2.hidden_size);
      cJSON_AddNumberToObject(c2, "heads", (double)m->clip2.n_heads);
      cJSON_AddStringToObject(c2, "act", m->clip2.act == SDC_ACT_GELU ? "gelu" : "quick_gelu");
      cJSON_AddNumberToObject(c2, "projection_dim", (double)m->clip2.projection_dim);
      cJSON_AddNumberToObject(c2, "params", (double)sdc__params(&w[SDC_COMP_TEXT_ENCODER_2]));
      cJSON_AddItemToObject(o, "text_encoder_2", c2);
      cJSON_AddBoolToObject(o, "force_zeros_for_empty_prompt", m->force_zeros_for_empty_prompt);
    }
    cJSON *ch = cJSON_AddArrayToObject(u, "block_out_channels");
    for (int i = 0; i < m->unet.n_blocks; i++) cJSON_AddItemToArray(ch, cJSON_CreateNumber((double)m->unet.block_out_channels[i]));
    cJSON_AddNumberToObject(u, "in_channels", (double)m->unet.in_channels);
    cJSON_AddNumberToObject(u, "cross_attention_dim", (double)m->unet.cross_attention_dim);
    cJSON_AddStringToObject(u, "projection", m->unet.use_linear_projection ? "linear" : "conv");
    cJSON *tl = cJSON_AddArrayToObject(u, "transformer_layers_per_block");
    for (int i = 0; i < m->unet.n_blocks; i++)
      cJSON_AddItemToArray(tl, cJSON_CreateNumber(m->unet.down_blocks[i] == SDC_BLOCK_CROSS_ATTN
                                                      ? (double)m->unet.transformer_layers[i] : 0));
    if (m->unet.add_text_time) {
      cJSON_AddStringToObject(u, "addition_embed_type", "text_time");
      cJSON_AddNumberToObject(u, "addition_time_embed_dim", (double)m->unet.addition_time_embed_dim);
      cJSON_AddNumberToObject(u, "projection_class_embeddings_input_dim",
                              (double)m->unet.projection_class_embeddings_input_dim);
    }
    cJSON_AddNumberToObject(u, "params", (double)sdc__params(&w[SDC_COMP_UNET]));
    cJSON_AddItemToObject(o, "unet", u);
    cJSON_AddNumberToObject(v, "blocks", m->vae.n_blocks);
    cJSON_AddNumberToObject(v, "latent_channels", (double)m->vae.latent_channels);
    cJSON_AddNumberToObject(v, "scaling_factor", m->vae.scaling_factor);
    cJSON_AddNumberToObject(v, "params", (double)sdc__params(&w[SDC_COMP_VAE]));
    cJSON_AddItemToObject(o, "vae", v);
    char *text = cJSON_PrintUnformatted(o);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    return;
  }
  printf("model        %s (%s)\n", path, m->single_file ? "single file" : "diffusers folder");
  if (m->single_file) printf("family       %s%s\n", family, inpaint ? " inpainting" : "");
  printf("prediction   %s (%s)\n", pred, why);
  printf("inpainting   %s (UNet in_channels %lld)\n", inpaint ? "yes" : "no", (long long)m->unet.in_channels);
  printf("configs      %s%s%s\n", configs, m->config_dir[0] ? ": " : "", m->config_dir);
  printf("text encoder %lld layers, width %lld, %lld heads, %s; %.1fM params\n", (long long)m->clip.n_layers,
         (long long)m->clip.hidden_size, (long long)m->clip.n_heads, m->clip.act == SDC_ACT_GELU ? "gelu" : "quick_gelu",
         sdc__params(&w[SDC_COMP_TEXT_ENCODER]) / 1e6);
  if (m->has_text_encoder_2)
    printf("text enc. 2  %lld layers, width %lld, %lld heads, %s, projection %lld; %.1fM params (SDXL: both "
           "encoders' penultimate states, pooled text_embeds from this one)\n",
           (long long)m->clip2.n_layers, (long long)m->clip2.hidden_size, (long long)m->clip2.n_heads,
           m->clip2.act == SDC_ACT_GELU ? "gelu" : "quick_gelu", (long long)m->clip2.projection_dim,
           sdc__params(&w[SDC_COMP_TEXT_ENCODER_2]) / 1e6);
  char depth[96] = "";
  for (int i = 0; i < m->unet.n_blocks; i++) {
    size_t len = strlen(depth);
    snprintf(depth + len, sizeof depth - len, "%s%lld", i ? "," : "",
             m->unet.down_blocks[i] == SDC_BLOCK_CROSS_ATTN ? (long long)m->unet.transformer_layers[i] : 0LL);
  }
  printf("unet         %d blocks, channels%s, transformers per layer [%s], context %lld, %s projection%s; %.1fM "
         "params\n", m->unet.n_blocks, blocks, depth, (long long)m->unet.cross_attention_dim,
         m->unet.use_linear_projection ? "linear" : "conv", m->unet.add_text_time ? ", text_time conditioning" : "",
         sdc__params(&w[SDC_COMP_UNET]) / 1e6);
  printf("vae          %d blocks, latent %lld channels, scaling %.5f; %.1fM params\n", m->vae.n_blocks,
         (long long)m->vae.latent_channels, m->vae.scaling_factor, sdc__params(&w[SDC_COMP_VAE]) / 1e6);
  printf("tokenizer    %s\n", tokdir[0] ? tokdir : "built-in CLIP vocabulary (data/clip-vocab)");
}

int sdc_cmd_inspect(int argc, char **argv) {
  const char *path = NULL, *config = NULL;
  int json = 0;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"config", required_argument, 0, 'c'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "m:c:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': path = optarg; break;
      case 'c': config = optarg; break;
      case 'j': json = 1; break;
      case 'h': sdc__inspect_usage(stdout); return 0;
      default: sdc__inspect_usage(stderr); return 2;
    }
  }
  if (!path || optind != argc) {
    sdc__inspect_usage(stderr);
    return 2;
  }
  sdc_model m;
  sdc_weights w[SDC_COMP_COUNT] = {0};
  sdc_unet *unet = NULL;
  sdc_vae *vae = NULL;
  sdc_clip *clip = NULL, *clip2 = NULL;
  sdc_tokenizer *tok = NULL, *tok2 = NULL;
  const sdc_load_opts lo = SDC_LOAD_OPTS_FP32;
  int err = sdc_model_open(&m, path, config);
  if (err) {
    fprintf(stderr, "sdc inspect: %s\n", sdc_errmsg(err));
    return 2;
  }
  char tokdir[1200];
  sdc_model_tokenizer_dir(&m, tokdir, sizeof tokdir);
  err = sdc_text_tokenizers_load(&m, &tok, &tok2);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_TEXT_ENCODER, &w[SDC_COMP_TEXT_ENCODER]);
  if (!err) err = sdc_clip_load(&clip, &w[SDC_COMP_TEXT_ENCODER], &m.clip, &lo);
  if (!err && m.has_text_encoder_2) err = sdc_model_weights(&m, SDC_COMP_TEXT_ENCODER_2, &w[SDC_COMP_TEXT_ENCODER_2]);
  if (!err && m.has_text_encoder_2) err = sdc_clip_load(&clip2, &w[SDC_COMP_TEXT_ENCODER_2], &m.clip2, &lo);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_UNET, &w[SDC_COMP_UNET]);
  if (!err) err = sdc_unet_load(&unet, &w[SDC_COMP_UNET], &m.unet, SDC_UNET_ALL, &lo);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_VAE, &w[SDC_COMP_VAE]);
  if (!err) err = sdc_vae_load(&vae, &w[SDC_COMP_VAE], &m.vae, SDC_VAE_DECODER | SDC_VAE_ENCODER, &lo);
  if (err) {
    fprintf(stderr, "sdc inspect: %s\n", sdc_errmsg(err));
  } else {
    sdc__inspect_print(&m, path, tokdir, w, json);
  }
  sdc_tokenizer_free(tok), sdc_tokenizer_free(tok2);
  sdc_clip_free(clip), sdc_clip_free(clip2);
  sdc_unet_free(unet);
  sdc_vae_free(vae);
  for (int i = 0; i < SDC_COMP_COUNT; i++) sdc_weights_free(&w[i]);
  sdc_model_close(&m);
  return err ? 2 : 0;
}
