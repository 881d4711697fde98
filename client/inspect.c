/* inspect.c - `sdc inspect --model PATH`: load every component as the engine would and describe it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "clip.h"
#include "cli.h"
#include "error.h"
#include "model.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

static void sdc__inspect_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc inspect --model PATH [--config DIR]\n"
          "  Loads the configs, tokenizer and every weight of a model (a diffusers folder, or a\n"
          "  single .safetensors checkpoint with --config naming a diffusers folder for its\n"
          "  configs) and prints its architecture. A broken model gets a one-line error naming\n"
          "  the file and the culprit, and exit code 2.\n");
}

static int64_t sdc__params(const sdc_weights *w) { return w->n_bytes_used / 4; }

int sdc_cmd_inspect(int argc, char **argv) {
  const char *path = NULL, *config = NULL;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"config", required_argument, 0, 'c'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "m:c:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': path = optarg; break;
      case 'c': config = optarg; break;
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
  sdc_clip *clip = NULL;
  sdc_tokenizer *tok = NULL;
  const sdc_load_opts lo = SDC_LOAD_OPTS_FP32;
  int err = sdc_model_open(&m, path, config);
  if (err) {
    fprintf(stderr, "sdc inspect: %s\n", sdc_errmsg(err));
    return 2;
  }
  char tokdir[1200];
  if (sdc_model_tokenizer_dir(&m, tokdir, sizeof tokdir)[0]) err = sdc_tokenizer_load(&tok, tokdir);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_TEXT_ENCODER, &w[SDC_COMP_TEXT_ENCODER]);
  if (!err) err = sdc_clip_load(&clip, &w[SDC_COMP_TEXT_ENCODER], &m.clip, &lo);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_UNET, &w[SDC_COMP_UNET]);
  if (!err) err = sdc_unet_load(&unet, &w[SDC_COMP_UNET], &m.unet, SDC_UNET_ALL, &lo);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_VAE, &w[SDC_COMP_VAE]);
  if (!err) err = sdc_vae_load(&vae, &w[SDC_COMP_VAE], &m.vae, SDC_VAE_DECODER | SDC_VAE_ENCODER, &lo);
  if (err) {
    fprintf(stderr, "sdc inspect: %s\n", sdc_errmsg(err));
  } else {
    printf("model        %s (%s%s)\n", path, m.single_file ? "single file, " : "diffusers folder",
           m.single_file ? sdc_family_name(m.family) : "");
    printf("configs      %s\n", m.config_dir[0] ? m.config_dir : "built-in standard configs");
    printf("text encoder %lld layers, width %lld, %lld heads, %s; %.1fM params\n", (long long)m.clip.n_layers,
           (long long)m.clip.hidden_size, (long long)m.clip.n_heads,
           m.clip.act == SDC_ACT_GELU ? "gelu" : "quick_gelu", sdc__params(&w[SDC_COMP_TEXT_ENCODER]) / 1e6);
    printf("unet         %d blocks, channels", m.unet.n_blocks);
    for (int i = 0; i < m.unet.n_blocks; i++) printf(" %lld", (long long)m.unet.block_out_channels[i]);
    printf(", context %lld, %s projection; %.1fM params\n", (long long)m.unet.cross_attention_dim,
           m.unet.use_linear_projection ? "linear" : "conv", sdc__params(&w[SDC_COMP_UNET]) / 1e6);
    printf("vae          %d blocks, latent %lld channels, scaling %.5f; %.1fM params\n", m.vae.n_blocks,
           (long long)m.vae.latent_channels, m.vae.scaling_factor, sdc__params(&w[SDC_COMP_VAE]) / 1e6);
    printf("tokenizer    %s\n", tokdir[0] ? tokdir : "built-in");
  }
  sdc_tokenizer_free(tok);
  sdc_clip_free(clip);
  sdc_unet_free(unet);
  sdc_vae_free(vae);
  for (int i = 0; i < SDC_COMP_COUNT; i++) sdc_weights_free(&w[i]);
  sdc_model_close(&m);
  return err ? 2 : 0;
}
