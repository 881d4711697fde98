/* lora_init.c - `sdc model-init --arch lora`: a random kohya-format LoRA / LoCon for a given model. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "flag.h"
#include "lora.h"

static void sdc__lora_init_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc model-init --arch lora --for MODEL --out FILE.safetensors [--rank R] [--locon] [--te]\n"
          "                      [--no-attn] [--dtype f16|f32] [--seed N]\n"
          "  Writes a kohya-format LoRA with random factors (alpha = rank / 2) for MODEL (diffusers folder or\n"
          "  single file), covering every linear / 1x1 conv of the UNet's transformer blocks (unless\n"
          "  --no-attn), every resnet conv1 with --locon (3x3 LoCon), the text encoder's projections with\n"
          "  --te. Rank default 4. For tests and benchmarks.\n");
}

int sdc_cmd_lora_init(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *dt = "f16";
  int64_t rank = 4, seed = 0;
  int which = SDC_LORA_ATTN, err = SDC_OK;
  enum { O_LOCON = 256, O_TE, O_NOATTN };
  static const struct option opts[] = {
      {"arch", required_argument, 0, 'a'}, {"for", required_argument, 0, 'f'},  {"out", required_argument, 0, 'o'},
      {"rank", required_argument, 0, 'r'}, {"locon", no_argument, 0, O_LOCON},   {"te", no_argument, 0, O_TE},
      {"no-attn", no_argument, 0, O_NOATTN}, {"dtype", required_argument, 0, 'd'}, {"seed", required_argument, 0, 's'},
      {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "a:f:o:r:d:s:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'a': break; /* "lora": how we got here */
      case 'f': model = optarg; break;
      case 'o': out = optarg; break;
      case 'r': err = sdc_flag_int("--rank", optarg, 1, 4096, &rank); break;
      case 'd': dt = optarg; break;
      case 's': err = sdc_flag_int("--seed", optarg, 0, INT64_MAX, &seed); break;
      case O_LOCON: which |= SDC_LORA_CONV1; break;
      case O_TE: which |= SDC_LORA_TE; break;
      case O_NOATTN: which &= ~SDC_LORA_ATTN; break;
      case 'h': sdc__lora_init_usage(stdout); return 0;
      default: err = sdc_seterr(SDC_EINVAL, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (!err && (!model || !out)) err = sdc_seterr(SDC_EINVAL, "--for MODEL and --out FILE are required");
  if (!err && strcmp(dt, "f16") != 0 && strcmp(dt, "f32") != 0)
    err = sdc_seterr(SDC_EINVAL, "--dtype '%s': expected f16 or f32", dt);
  if (err) {
    fprintf(stderr, "sdc model-init: %s\n", sdc_errmsg(err));
    return 2;
  }
  sdc_model m;
  if (!(err = sdc_model_open(&m, model, NULL))) {
    err = sdc_lora_write_random(&m, out, rank, which, strcmp(dt, "f32") == 0 ? SDC_F32 : SDC_F16, (uint64_t)seed);
    sdc_model_close(&m);
  }
  if (err) {
    fprintf(stderr, "sdc model-init: %s\n", sdc_errmsg(err));
    return 2;
  }
  fprintf(stderr, "wrote %s (rank %lld)\n", out, (long long)rank);
  return 0;
}
