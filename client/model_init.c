/* model_init.c - `sdc model-init`: a complete diffusers model folder with random weights at real sizes. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "clip.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "safetensors.h"
#include "unet.h"
#include "vae.h"

/* A small architecture with SD 1.x's structure, for smoke tests and CI. */
static const char sdc__tiny_unet[] =
    "{\"_class_name\": \"UNet2DConditionModel\", \"act_fn\": \"silu\", \"attention_head_dim\": 8,"
    " \"block_out_channels\": [32, 64, 96, 128], \"center_input_sample\": false, \"cross_attention_dim\": 64,"
    " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
    " \"downsample_padding\": 1, \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 4,"
    " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-05, \"norm_num_groups\": 32,"
    " \"out_channels\": 4, \"sample_size\": 16,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";
static const char sdc__tiny_vae[] =
    "{\"_class_name\": \"AutoencoderKL\", \"act_fn\": \"silu\", \"block_out_channels\": [32, 64, 96, 96],"
    " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"],"
    " \"in_channels\": 3, \"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32, \"out_channels\": 3,"
    " \"sample_size\": 128, \"scaling_factor\": 0.18215,"
    " \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";
static const char sdc__tiny_text[] =
    "{\"architectures\": [\"CLIPTextModel\"], \"hidden_act\": \"quick_gelu\", \"hidden_size\": 64,"
    " \"intermediate_size\": 256, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77,"
    " \"model_type\": \"clip_text_model\", \"num_attention_heads\": 4, \"num_hidden_layers\": 3, \"vocab_size\": 49408,"
    " \"bos_token_id\": 49406, \"eos_token_id\": 49407, \"pad_token_id\": 1}";

static const char sdc__model_index[] =
    "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"feature_extractor\": [null, null],\n"
    "  \"requires_safety_checker\": false,\n  \"safety_checker\": [null, null],\n"
    "  \"scheduler\": [\"diffusers\", \"%s\"],\n  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
    "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n"
    "  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";

/* SDXL's pipeline: two tokenizers and text encoders, force_zeros_for_empty_prompt as stable-diffusion-xl-base-1.0. */
static const char sdc__model_index_xl[] =
    "{\n  \"_class_name\": \"StableDiffusionXLPipeline\",\n  \"force_zeros_for_empty_prompt\": true,\n"
    "  \"scheduler\": [\"diffusers\", \"EulerDiscreteScheduler\"],\n"
    "  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
    "  \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"],\n"
    "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n  \"tokenizer_2\": [\"transformers\", \"CLIPTokenizer\"],\n"
    "  \"unet\": [\"diffusers\", \"UNet2DConditionModel\"],\n  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";

static void sdc__model_init_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc model-init --arch sd15|sd21|sdxl|tiny --out DIR [--dtype f16|f32] [--seed N] [--force]\n"
          "       sdc model-init --arch lora --for MODEL --out FILE [--rank R] [--locon] [--te] (see --arch lora --help)\n"
          "  Writes a complete diffusers model folder with random weights at the architecture's real\n"
          "  sizes (stable-diffusion-v1-5, stable-diffusion-2-1, stable-diffusion-xl-base-1.0 with its two\n"
          "  text encoders, or a tiny SD 1.x-shaped model) and a small byte-level tokenizer (two for sdxl), to\n"
          "  smoke-test and benchmark a deployment without real weights (sdxl: about 7 GB of f16 files, and\n"
          "  about 11 GB of memory while its UNet is written).\n"
          "  A DIR that exists and is not empty is refused unless --force (files in it are overwritten).\n");
}

/* 1 when path is a folder holding anything, or exists and is not a folder. */
static int sdc__occupied(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return 1;
  DIR *d = opendir(path);
  int n = 0;
  for (struct dirent *e; d && !n && (e = readdir(d));) n = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  if (d) closedir(d);
  return n;
}

static int sdc__write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  if (!fp) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  int ok = fputs(text, fp) >= 0;
  if (fclose(fp) != 0 || !ok) return sdc_seterr(SDC_EIO, "%s: write failed", path);
  return SDC_OK;
}

static int sdc__mkdir(const char *path) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  return SDC_OK;
}

/* GPT-2's byte -> printable code point table, as CLIP's BPE uses it. */
static int sdc__byte_char(int b) {
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  int n = 0;
  for (int c = 0; c < b; c++)
    if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
  return 256 + n;
}

/* Appends a code point as JSON-safe UTF-8 ("\" and quote escaped). */
static size_t sdc__put_char(char *out, int cp) {
  if (cp == '"' || cp == '\\') return (size_t)sprintf(out, "\\%c", cp);
  if (cp < 0x80) return (size_t)sprintf(out, "%c", cp);
  if (cp < 0x800) return (size_t)sprintf(out, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
  return (size_t)sprintf(out, "%c%c%c", 0xE0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F));
}

/* A byte-level vocabulary: every byte alone and word-final, plus the specials; no merges. pad_bang: pads
 * with "!" as SD 2.x's and SDXL's second tokenizer do, else with <|endoftext|>. */
static int sdc__write_tokenizer(const char *dir, int pad_bang) {
  char path[4200];
  char *vocab = malloc(64 * 1024);
  if (!vocab) return sdc_seterr(SDC_ENOMEM, "out of memory");
  size_t n = (size_t)sprintf(vocab, "{");
  for (int end = 0; end < 2; end++)
    for (int b = 0; b < 256; b++) {
      n += (size_t)sprintf(vocab + n, "\"");
      n += sdc__put_char(vocab + n, sdc__byte_char(b));
      n += (size_t)sprintf(vocab + n, "%s\": %d, ", end ? "</w>" : "", end * 256 + b);
    }
  sprintf(vocab + n, "\"<|startoftext|>\": 512, \"<|endoftext|>\": 513}\n");
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  int err = sdc__write_text(path, vocab);
  free(vocab);
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  if (!err) err = sdc__write_text(path, "#version: 0.2\n");
  const char *pad = pad_bang ? "!" : "<|endoftext|>";
  char cfg[1024];
  snprintf(cfg, sizeof cfg,
           "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"unk_token\": \"<|endoftext|>\","
           " \"pad_token\": \"%s\", \"model_max_length\": 77, \"do_lower_case\": true, \"tokenizer_class\": \"CLIPTokenizer\"}\n",
           pad);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (!err) err = sdc__write_text(path, cfg);
  snprintf(cfg, sizeof cfg,
           "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"unk_token\": \"<|endoftext|>\","
           " \"pad_token\": \"%s\"}\n",
           pad);
  snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
  if (!err) err = sdc__write_text(path, cfg);
  return err;
}

/* Writes what a recorder holds, narrowed to dtype. f16 is narrowed in place, in the recorder's own f32
 * buffers (element j's two bytes land below every f32 not yet read): a full-size SDXL UNet's 10 GB of f32
 * must not be joined by 5 GB of copies. The recorder is spent afterwards. */
static int sdc__write_recorded(const sdc_weights *rec, const char *path, sdc_dtype dtype) {
  int64_t n = sdc_weights_n_recorded(rec);
  const char **names = calloc((size_t)n, sizeof *names);
  sdc_tensor *ts = calloc((size_t)n, sizeof *ts);
  int err = names && ts ? SDC_OK : sdc_seterr(SDC_ENOMEM, "out of memory");
  for (int64_t i = 0; !err && i < n; i++) {
    sdc_weights_recorded(rec, i, &names[i], &ts[i]);
    if (dtype != SDC_F16 || ts[i].dtype != SDC_F32) continue;
    unsigned char *b = ts[i].data; /* bytes, read and written through memcpy: no aliasing of float and u16 */
    for (int64_t j = 0, k = sdc_tensor_numel(&ts[i]); j < k; j++) {
      float x;
      memcpy(&x, b + 4 * j, sizeof x);
      const uint16_t hv = sdc_f32_to_f16(x);
      memcpy(b + 2 * j, &hv, sizeof hv);
    }
    ts[i].dtype = SDC_F16;
  }
  if (!err) err = sdc_st_write(path, n, names, ts);
  free(names), free(ts);
  return err;
}

/* Records one component through its own loader and writes config + weights. */
static int sdc__init_component(const char *out, const char *comp, const char *json, const char *file, sdc_dtype dtype,
                               uint64_t seed) {
  char dir[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/%s", out, comp);
  int err = sdc__mkdir(dir);
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (!err) err = sdc__write_text(path, json);
  if (err) return err;
  sdc_weights rec;
  sdc_weights_init_recorder(&rec, seed);
  /* a recorder hands out f32 weights in any precision; plain: no packed copies beside them */
  const sdc_load_opts lo = {.precision = SDC_PREC_FP32, .plain = 1};
  void *obj = NULL;
  if (strcmp(comp, "unet") == 0) {
    sdc_unet_config c;
    if (!(err = sdc_unet_config_parse(&c, json, comp)))
      err = sdc_unet_load((sdc_unet **)&obj, &rec, &c, SDC_UNET_ALL, &lo);
    sdc_unet_free(obj);
  } else if (strcmp(comp, "vae") == 0) {
    sdc_vae_config c;
    if (!(err = sdc_vae_config_parse(&c, json, comp)))
      err = sdc_vae_load((sdc_vae **)&obj, &rec, &c, SDC_VAE_DECODER | SDC_VAE_ENCODER, &lo);
    sdc_vae_free(obj);
  } else {
    sdc_clip_config c;
    if (!(err = sdc_clip_config_parse(&c, json, comp))) err = sdc_clip_load((sdc_clip **)&obj, &rec, &c, &lo);
    sdc_clip_free(obj);
  }
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (!err) err = sdc__write_recorded(&rec, path, dtype);
  if (!err)
    fprintf(stderr, "wrote %s (%lld tensors, %.1fM parameters)\n", path, (long long)sdc_weights_n_recorded(&rec),
            (double)rec.n_bytes_used / 4e6);
  sdc_weights_free(&rec);
  return err;
}

int sdc_cmd_model_init(int argc, char **argv) {
  for (int i = 1; i < argc; i++) /* a LoRA for a model has its own options */
    if (strcmp(argv[i], "--arch=lora") == 0 || (strcmp(argv[i], "--arch") == 0 && i + 1 < argc && strcmp(argv[i + 1], "lora") == 0))
      return sdc_cmd_lora_init(argc, argv);
  const char *arch = NULL, *out = NULL, *dt = "f16";
  uint64_t seed = 0;
  int force = 0;
  static const struct option opts[] = {{"arch", required_argument, 0, 'a'}, {"out", required_argument, 0, 'o'},
                                       {"dtype", required_argument, 0, 'd'}, {"seed", required_argument, 0, 's'},
                                       {"force", no_argument, 0, 'f'},       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "a:o:d:s:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'a': arch = optarg; break;
      case 'o': out = optarg; break;
      case 'd': dt = optarg; break;
      case 's': {
        char *end;
        seed = strtoull(optarg, &end, 10);
        if (end == optarg || *end) {
          fprintf(stderr, "sdc model-init: --seed '%s': expected a non-negative integer\n", optarg);
          return 2;
        }
        break;
      }
      case 'f': force = 1; break;
      case 'h': sdc__model_init_usage(stdout); return 0;
      default: sdc__model_init_usage(stderr); return 2;
    }
  }
  sdc_dtype dtype = strcmp(dt, "f32") == 0 ? SDC_F32 : SDC_F16;
  int family = !arch ? -1 : strcmp(arch, "sd15") == 0 ? SDC_FAMILY_SD1 : strcmp(arch, "sd21") == 0 ? SDC_FAMILY_SD2
                          : strcmp(arch, "sdxl") == 0 ? SDC_FAMILY_SDXL : strcmp(arch, "tiny") == 0 ? SDC_FAMILY_COUNT : -1;
  if (!out || family < 0 || optind != argc || (strcmp(dt, "f16") != 0 && strcmp(dt, "f32") != 0)) {
    if (arch && family < 0) fprintf(stderr, "sdc model-init: --arch '%s': expected sd15, sd21, sdxl or tiny\n", arch);
    else if (strcmp(dt, "f16") != 0 && strcmp(dt, "f32") != 0)
      fprintf(stderr, "sdc model-init: --dtype '%s': expected f16 or f32\n", dt);
    else sdc__model_init_usage(stderr);
    return 2;
  }
  /* a model folder written over another one would mix two models' files */
  if (!force && sdc__occupied(out)) {
    fprintf(stderr, "sdc model-init: --out '%s': exists and is not empty (pass --force to write into it)\n", out);
    return 2;
  }
  int tiny = family == SDC_FAMILY_COUNT;
  sdc_family fam = tiny ? SDC_FAMILY_SD1 : (sdc_family)family;
  const char *unet = tiny ? sdc__tiny_unet : sdc_checkpoint_std_config(fam, "unet");
  const char *vae = tiny ? sdc__tiny_vae : sdc_checkpoint_std_config(fam, "vae");
  const char *text = tiny ? sdc__tiny_text : sdc_checkpoint_std_config(fam, "text_encoder");
  const char *sched = sdc_checkpoint_std_config(fam, "scheduler");
  const int xl = fam == SDC_FAMILY_SDXL;
  char path[4300], index[2048];
  int err = sdc__mkdir(out);
  if (xl) snprintf(index, sizeof index, "%s", sdc__model_index_xl);
  else snprintf(index, sizeof index, sdc__model_index, fam == SDC_FAMILY_SD2 ? "DDIMScheduler" : "PNDMScheduler");
  snprintf(path, sizeof path, "%s/model_index.json", out);
  if (!err) err = sdc__write_text(path, index);
  snprintf(path, sizeof path, "%s/scheduler", out);
  if (!err) err = sdc__mkdir(path);
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", out);
  if (!err) err = sdc__write_text(path, sched);
  snprintf(path, sizeof path, "%s/tokenizer", out);
  if (!err) err = sdc__mkdir(path);
  if (!err) err = sdc__write_tokenizer(path, fam == SDC_FAMILY_SD2);
  /* SDXL's second tokenizer pads with "!" (OpenCLIP's id 0) */
  snprintf(path, sizeof path, "%s/tokenizer_2", out);
  if (!err && xl) err = sdc__mkdir(path);
  if (!err && xl) err = sdc__write_tokenizer(path, 1);
  /* distinct streams per component from one seed */
  if (!err) err = sdc__init_component(out, "text_encoder", text, "model.safetensors", dtype, seed * 3 + 1);
  if (!err && xl)
    err = sdc__init_component(out, "text_encoder_2", sdc_checkpoint_std_config(fam, "text_encoder_2"),
                              "model.safetensors", dtype, seed * 3 + 4);
  if (!err) err = sdc__init_component(out, "vae", vae, "diffusion_pytorch_model.safetensors", dtype, seed * 3 + 2);
  if (!err) err = sdc__init_component(out, "unet", unet, "diffusion_pytorch_model.safetensors", dtype, seed * 3 + 3);
  if (err) {
    fprintf(stderr, "sdc model-init: %s\n", sdc_errmsg(err));
    return 2;
  }
  return 0;
}
