/* generate.c - `sdc generate`: one process, prompt in, PNG out, same image as diffusers for the same seed. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "error.h"
#include "file.h"
#include "flag.h"
#include "image.h"
#include "sdc_limits.h"
#include "utf8.h"
#include "ops.h"
#include "pipeline.h"
#include "pngio.h"
#include "tokenizer.h"


static void sdc__generate_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc generate --model PATH --prompt TEXT [options]\n"
          "  --model PATH            diffusers folder, or one original-layout .safetensors checkpoint\n"
          "  --config DIR            diffusers folder lending a single file its configs, tokenizer, scheduler\n"
          "  --prompt TEXT           what to draw (UTF-8)\n"
          "  --negative-prompt TEXT  what to steer away from (default: empty)\n"
          "  --width N, --height N   image size in pixels, multiples of 8 (default: the model's native size)\n"
          "  --steps N               denoising steps, 1..%d (default 50)\n"
          "  --guidance-scale X      classifier-free guidance, >= 0; <= 1 disables it (default 7.5)\n"
          "  --scheduler NAME        ddim, pndm, ddpm, euler, euler_a, heun, lms, dpmpp_2m, dpmpp_2m_karras,\n"
          "                          unipc, lcm (default: the model's own scheduler config)\n"
          "  --seed N                torch-compatible seed; -1 or none: random, printed and stored in the PNG\n"
          "  --num-images N          images from one seed, 1..%d (default 1); FILE-0.png, FILE-1.png, ...\n"
          "  --output FILE.png       where to write (default out.png)\n"
          "  --max-pixels N          refuse width*height above N (default %d)\n"
          "  --lora FILE[:MULT]      apply a LoRA / LoCon adapter (kohya .safetensors), multiplier default 1,\n"
          "                          may be negative; repeat for up to %d (they add up)\n"
          "  --precision fp32|bf16   GEMM arithmetic (default fp32, exact; bf16 on AMX/AVX512-BF16 via oneDNN)\n"
          "  --init-image FILE       img2img: start from this PNG or JPEG (its size unless --width/--height)\n"
          "  --mask FILE             inpainting: PNG or JPEG of the init image's size, white = repaint\n"
          "  --strength S            share of the schedule run from the init image, in (0, 1]\n"
          "                          (default 0.8 for img2img, 1.0 for inpainting)\n"
          "  --quiet                 no progress bar (it is shown only on a terminal anyway)\n"
          "  --json                  print one JSON object on stdout: paths, seed, scheduler, timings\n"
          "SDXL only (a model with two text encoders; refused for others):\n"
          "  --prompt-2 TEXT         the second text encoder's prompt (default: --prompt)\n"
          "  --negative-prompt-2 TEXT  its negative prompt (default: --negative-prompt)\n"
          "  --original-size WxH     micro-conditioning: the size the training image had, WIDTHxHEIGHT in pixels\n"
          "                          like --width/--height (default: the output size); the job JSON's\n"
          "                          original_size is [height, width]\n"
          "  --target-size WxH       the same for the target size (default: the output size)\n"
          "  --crop-top-left TOP,LEFT  crops_coords_top_left in pixels, top first (default 0,0)\n"
          "                          each value 0..%d (sizes 1..%d)\n"
          "Bad input gets a one-line error and exit code 2; nothing is written.\n",
          SDC_MAX_STEPS, SDC_MAX_IMAGES, SDC_DEFAULT_MAX_PIXELS, SDC_MAX_LORAS, SDC_MAX_MICRO_COND, SDC_MAX_MICRO_COND);
}

/* FILE.png -> FILE-i.png when several images are written. */
static void sdc__output_name(char *buf, size_t n, const char *out, int64_t i, int64_t count) {
  if (count == 1) {
    snprintf(buf, n, "%s", out);
    return;
  }
  const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
  if (!dot || (slash && dot < slash)) snprintf(buf, n, "%s-%lld", out, (long long)i);
  else snprintf(buf, n, "%.*s-%lld%s", (int)(dot - out), out, (long long)i, dot);
}

/* The output's folder must exist and take new files; the path must not be a folder. */
static int sdc__check_output(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return sdc_seterr(SDC_EINVAL, "output '%s': is a directory", path);
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", path);
  const char *dir = dirname(copy);
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return sdc_seterr(SDC_EINVAL, "output '%s': folder '%s' does not exist", path, dir);
  if (access(dir, W_OK) != 0) return sdc_seterr(SDC_EINVAL, "output '%s': folder '%s' is not writable", path, dir);
  if (access(path, F_OK) == 0 && access(path, W_OK) != 0)
    return sdc_seterr(SDC_EINVAL, "output '%s': file exists and is not writable", path);
  return SDC_OK;
}

typedef struct {
  double t0;
  int tty;
} sdc__progress;

static void sdc__on_progress(void *ctx, int64_t call, int64_t n) {
  sdc__progress *pr = ctx;
  if (!pr->tty) return;
  double el = sdc_clock_mono_s() - pr->t0, per = el / (double)call, eta = per * (double)(n - call);
  char bar[31];
  int fill = (int)(30 * call / n);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\rstep %lld/%lld [%s] %.2f s/step, ETA %.0f s ", (long long)call, (long long)n, bar, per, eta);
  if (call == n) fputc('\n', stderr);
  fflush(stderr);
}

/* The init image and mask: read and decoded once up front (so a bad file is
 * refused before the model loads), the init image's size taken for a size not
 * given. in points into *init_buf / *mask_buf (heap, the caller frees). */
static int sdc__read_inputs(const char *init, const char *mask, sdc_gen_params *g, sdc_pipeline_images *in,
                            char **init_buf, char **mask_buf) {
  int64_t iw = 0, ih = 0, mw = 0, mh = 0;
  uint8_t *pix = NULL;
  int err = sdc_read_file(init, init_buf, &in->n_init);
  if (err) return err;
  in->init = *init_buf;
  if ((err = sdc_image_decode(in->init, in->n_init, "init_image", 3, &pix, &iw, &ih))) return err;
  free(pix), pix = NULL;
  if (mask) {
    if ((err = sdc_read_file(mask, mask_buf, &in->n_mask))) return err;
    in->mask = *mask_buf;
    if ((err = sdc_image_decode(in->mask, in->n_mask, "mask", 1, &pix, &mw, &mh))) return err;
    free(pix);
    if (mw != iw || mh != ih)
      return sdc_seterr(SDC_EINVAL, "mask is %lldx%lld but init_image is %lldx%lld: resize it first", (long long)mw,
                        (long long)mh, (long long)iw, (long long)ih);
  }
  if (!g->width || !g->height) {
    if (iw % 8 || ih % 8 || iw < SDC_MIN_IMAGE_SIDE || ih < SDC_MIN_IMAGE_SIDE || iw > SDC_MAX_IMAGE_SIDE ||
        ih > SDC_MAX_IMAGE_SIDE)
      return sdc_seterr(SDC_EINVAL, "init_image is %lldx%lld: its size must be multiples of 8 from %d to %d (resize it)",
                        (long long)iw, (long long)ih, SDC_MIN_IMAGE_SIDE, SDC_MAX_IMAGE_SIDE);
    if (!g->width) g->width = iw;
    if (!g->height) g->height = ih;
  }
  if (iw != g->width || ih != g->height)
    return sdc_seterr(SDC_EINVAL, "init_image is %lldx%lld but the request is %lldx%lld: resize it first", (long long)iw,
                      (long long)ih, (long long)g->width, (long long)g->height);
  return SDC_OK;
}

static uint64_t sdc__random_seed(void) {
  uint64_t s = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
    close(fd);
  }
  if (!s) s = (uint64_t)time(NULL) * 6364136223846793005ull;
  return s & ((1ull << 53) - 1); /* survives a round trip through JSON numbers */
}

/* CLIP reads 77 positions: a longer prompt loses its end, as in diffusers; say so. */
static void sdc__warn_truncated(const sdc_tokenizer *tok, const char *flag, const char *text) {
  const int64_t L = sdc_tokenizer_max_length(tok);
  int32_t *ids = malloc((size_t)L * sizeof *ids);
  int64_t n_tok = 0;
  if (ids && sdc_tokenizer_encode_count(tok, text, ids, L, &n_tok) == SDC_OK && n_tok > L - 2)
    fprintf(stderr, "sdc generate: warning: %s has %lld tokens; only the first %lld are used (CLIP reads %lld)\n", flag,
            (long long)n_tok, (long long)(L - 2), (long long)L);
  free(ids);
}

/* --json: one object on stdout for scripts. */
static void sdc__print_json(const sdc_gen_params *g, const char *sched, const char *output, double load_s, double gen_s) {
  cJSON *o = cJSON_CreateObject(), *paths = cJSON_AddArrayToObject(o, "images"), *t = cJSON_CreateObject();
  char name[4200];
  for (int64_t i = 0; i < g->num_images; i++) {
    sdc__output_name(name, sizeof name, output, i, g->num_images);
    cJSON_AddItemToArray(paths, cJSON_CreateString(name));
  }
  /* all images of a request come from one generator seeded once */
  char seed[32]; /* written as an integer: cJSON would round a 53-bit seed to 15 digits */
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)g->seed);
  cJSON_AddRawToObject(o, "seed", seed);
  cJSON_AddNumberToObject(o, "width", (double)g->width);
  cJSON_AddNumberToObject(o, "height", (double)g->height);
  cJSON_AddNumberToObject(o, "steps", (double)g->steps);
  cJSON_AddNumberToObject(o, "guidance_scale", g->guidance_scale);
  cJSON_AddStringToObject(o, "scheduler", sched);
  cJSON_AddNumberToObject(t, "load_ms", load_s * 1e3);
  cJSON_AddNumberToObject(t, "generate_ms", gen_s * 1e3);
  cJSON_AddItemToObject(o, "timings", t);
  char *text = cJSON_PrintUnformatted(o);
  if (text) printf("%s\n", text);
  free(text);
  cJSON_Delete(o);
}

int sdc_cmd_generate(int argc, char **argv) {
  const char *model = NULL, *config = NULL, *output = "out.png", *init_path = NULL, *mask_path = NULL;
  const char *strength_arg = NULL;
  char *init_buf = NULL, *mask_buf = NULL;
  sdc_pipeline_images inputs = {0};
  sdc_gen_params g = {.steps = 50, .guidance_scale = 7.5, .scheduler = -1, .num_images = 1};
  int64_t max_pixels = SDC_DEFAULT_MAX_PIXELS;
  int have_seed = 0, quiet = 0, err = SDC_OK;
  sdc_precision prec = SDC_PREC_FP32;
  sdc_lora_ref loras[SDC_MAX_LORAS];
  int n_loras = 0;
  enum {
    O_NEG = 256, O_GS, O_SCHED, O_NUM, O_MAXPX, O_QUIET, O_PREC, O_INIT, O_MASK, O_STRENGTH, O_LORA, O_JSON, O_PROMPT2,
    O_NEG2, O_ORIG, O_TARGET, O_CROP
  };
  int json = 0;
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},      {"config", required_argument, 0, 'c'},
      {"prompt", required_argument, 0, 'p'},     {"negative-prompt", required_argument, 0, O_NEG},
      {"width", required_argument, 0, 'W'},      {"height", required_argument, 0, 'H'},
      {"steps", required_argument, 0, 's'},      {"guidance-scale", required_argument, 0, O_GS},
      {"scheduler", required_argument, 0, O_SCHED}, {"seed", required_argument, 0, 'S'},
      {"num-images", required_argument, 0, O_NUM}, {"output", required_argument, 0, 'o'},
      {"max-pixels", required_argument, 0, O_MAXPX}, {"quiet", no_argument, 0, O_QUIET},
      {"precision", required_argument, 0, O_PREC}, {"help", no_argument, 0, 'h'},
      {"init-image", required_argument, 0, O_INIT}, {"mask", required_argument, 0, O_MASK},
      {"strength", required_argument, 0, O_STRENGTH},
      {"lora", required_argument, 0, O_LORA},
      {"json", no_argument, 0, O_JSON},
      {"prompt-2", required_argument, 0, O_PROMPT2}, {"negative-prompt-2", required_argument, 0, O_NEG2},
      {"original-size", required_argument, 0, O_ORIG}, {"target-size", required_argument, 0, O_TARGET},
      {"crop-top-left", required_argument, 0, O_CROP},
      {0, 0, 0, 0}};
  int ch;
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "m:c:p:W:H:s:S:o:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'c': config = optarg; break;
      case 'p': g.prompt = optarg; break;
      case O_NEG: g.negative_prompt = optarg; break;
      case 'W': err = sdc_flag_int("--width", optarg, 8, 1 << 16, &g.width); break;
      case 'H': err = sdc_flag_int("--height", optarg, 8, 1 << 16, &g.height); break;
      case 's': err = sdc_flag_int("--steps", optarg, 1, SDC_MAX_STEPS, &g.steps); break;
      case O_GS: {
        char *end;
        g.guidance_scale = strtod(optarg, &end);
        if (end == optarg || *end || !isfinite(g.guidance_scale) || g.guidance_scale < 0)
          err = sdc_seterr(SDC_EINVAL, "--guidance-scale '%s': expected a finite number >= 0", optarg);
        break;
      }
      case O_SCHED:
        if ((g.scheduler = sdc_sched_parse_name(optarg)) < 0)
          err = sdc_seterr(SDC_EINVAL, "--scheduler '%s': unknown (ddim, pndm, ddpm, euler, euler_a, heun, lms, "
                                       "dpmpp_2m, dpmpp_2m_karras, unipc, lcm)", optarg);
        break;
      case 'S': {
        char *end;
        errno = 0;
        if (strcmp(optarg, "-1") == 0) { /* other tools' spelling of "random" */
          have_seed = 0;
          break;
        }
        unsigned long long s = strtoull(optarg, &end, 10);
        if (errno || end == optarg || *end || optarg[0] == '-')
          err = sdc_seterr(SDC_EINVAL, "--seed '%s': expected a non-negative integer, or -1 for a random one", optarg);
        g.seed = s, have_seed = 1;
        break;
      }
      case O_NUM: err = sdc_flag_int("--num-images", optarg, 1, SDC_MAX_IMAGES, &g.num_images); break;
      case 'o': output = optarg; break;
      case O_MAXPX: err = sdc_flag_int("--max-pixels", optarg, 64, (int64_t)1 << 40, &max_pixels); break;
      case O_QUIET: quiet = 1; break;
      case O_JSON: json = 1; break;
      case O_PREC:
        if (sdc_precision_parse(optarg, &prec)) err = sdc_seterr(SDC_EINVAL, "--precision '%s': expected fp32 or bf16", optarg);
        break;
      case O_INIT: init_path = optarg; break;
      case O_MASK: mask_path = optarg; break;
      case O_STRENGTH: {
        char *end;
        strength_arg = optarg;
        g.strength = strtod(optarg, &end);
        if (end == optarg || *end) err = sdc_seterr(SDC_EINVAL, "--strength '%s': expected a number in (0, 1]", optarg);
        break;
      }
      case O_LORA:
        if (n_loras == SDC_MAX_LORAS) err = sdc_seterr(SDC_EINVAL, "--lora '%s': at most %d adapters", optarg, SDC_MAX_LORAS);
        else err = sdc_lora_ref_parse(optarg, &loras[n_loras++]);
        break;
      case O_PROMPT2: g.prompt_2 = optarg; break;
      case O_NEG2: g.negative_prompt_2 = optarg; break;
      /* WIDTHxHEIGHT as --width/--height and the PNG's Size; stored (height, width) as diffusers' */
      case O_ORIG:
        err = sdc_flag_pair("--original-size", optarg, 'x', "WIDTHxHEIGHT", 1, SDC_MAX_MICRO_COND, &g.original_size[1],
                            &g.original_size[0]);
        break;
      case O_TARGET:
        err = sdc_flag_pair("--target-size", optarg, 'x', "WIDTHxHEIGHT", 1, SDC_MAX_MICRO_COND, &g.target_size[1],
                            &g.target_size[0]);
        break;
      case O_CROP:
        err = sdc_flag_pair("--crop-top-left", optarg, ',', "TOP,LEFT", 0, SDC_MAX_MICRO_COND,
                            &g.crops_coords_top_left[0], &g.crops_coords_top_left[1]);
        g.has_crop = !err;
        break;
      case 'h': sdc__generate_usage(stdout); return 0;
      default:
        err = sdc_seterr(SDC_EINVAL, "unknown or incomplete option '%s' (see sdc generate --help)", argv[optind - 1]);
    }
  }
  if (!err && optind != argc) err = sdc_seterr(SDC_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!err && !model) err = sdc_seterr(SDC_EINVAL, "--model is required");
  if (!err && !g.prompt) err = sdc_seterr(SDC_EINVAL, "--prompt is required");
  if (!err && !sdc_utf8_valid(g.prompt)) err = sdc_seterr(SDC_EINVAL, "--prompt is not valid UTF-8");
  if (!err && g.negative_prompt && !sdc_utf8_valid(g.negative_prompt))
    err = sdc_seterr(SDC_EINVAL, "--negative-prompt is not valid UTF-8");
  if (!err && g.prompt_2 && !sdc_utf8_valid(g.prompt_2)) err = sdc_seterr(SDC_EINVAL, "--prompt-2 is not valid UTF-8");
  if (!err && g.negative_prompt_2 && !sdc_utf8_valid(g.negative_prompt_2))
    err = sdc_seterr(SDC_EINVAL, "--negative-prompt-2 is not valid UTF-8");
  if (!err && mask_path && !init_path) err = sdc_seterr(SDC_EINVAL, "--mask needs --init-image");
  if (!err && strength_arg && !init_path) err = sdc_seterr(SDC_EINVAL, "--strength needs --init-image");
  if (!err && init_path) {
    g.kind = mask_path ? SDC_GEN_INPAINT : SDC_GEN_IMG2IMG;
    if (!strength_arg) g.strength = mask_path ? 1.0 : 0.8; /* diffusers' defaults */
    err = sdc__read_inputs(init_path, mask_path, &g, &inputs, &init_buf, &mask_buf);
  }
  char name[4200];
  for (int64_t i = 0; !err && i < g.num_images; i++) {
    sdc__output_name(name, sizeof name, output, i, g.num_images);
    err = sdc__check_output(name);
  }
  /* sizes are checked before the model is loaded when given; defaults after */
  if (!err && (g.width || g.height)) {
    sdc_gen_params probe = g;
    if (!probe.width) probe.width = 8;
    if (!probe.height) probe.height = 8;
    err = sdc_gen_params_check(&probe, max_pixels);
  }
  if (err) {
    fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
    free(init_buf), free(mask_buf);
    return 2;
  }
  if (!err) err = sdc_precision_check(prec);
  if (err) {
    fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
    free(init_buf), free(mask_buf);
    return 2;
  }
  if (!have_seed) g.seed = sdc__random_seed();
  sdc_pipeline *p = NULL;
  const double t_load = sdc_clock_mono_s();
  if ((err = sdc_pipeline_load(&p, model, config, &(sdc_load_opts){.precision = prec}, loras, n_loras))) {
    fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
    free(init_buf), free(mask_buf);
    return 2;
  }
  const int64_t native = p->model.unet.sample_size * sdc_vae_scale(&p->model.vae);
  if (!g.width) g.width = native;
  if (!g.height) g.height = native;
  /* what the model takes: SDXL's flags on an SD 1.x model, an init image on SDXL (one line naming the field) */
  const sdc_model_caps caps = sdc_text_caps(&p->model);
  err = sdc_gen_params_check(&g, max_pixels);
  if (!err) err = sdc_gen_params_check_model(&g, &caps);
  if (err) {
    fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
    sdc_pipeline_free(p);
    free(init_buf), free(mask_buf);
    return 2;
  }
  const int64_t n_px = g.width * g.height * 3;
  float *img = malloc((size_t)(g.num_images * n_px) * sizeof *img);
  uint8_t *u8 = malloc((size_t)(g.num_images * n_px));
  if (!img || !u8) {
    fprintf(stderr, "sdc generate: out of memory for %lld images\n", (long long)g.num_images);
    free(img), free(u8), sdc_pipeline_free(p);
    free(init_buf), free(mask_buf);
    return 1;
  }
  /* the PNG names the scheduler that runs: the model's own when none was asked (as the coordinator does) */
  sdc_gen_params shown = g;
  sdc_sched_config sc;
  if (shown.scheduler < 0 && sdc_sched_config_parse(&sc, p->model.scheduler_json, -1, "scheduler_config.json") == SDC_OK)
    shown.scheduler = sc.kind;
  const char *sched = shown.scheduler >= 0 ? sdc_sched_name((sdc_sched_kind)shown.scheduler) : "model default";
  /* a random seed is always said: without it the image cannot be made again */
  if (!quiet || !have_seed)
    fprintf(stderr, "seed %llu%s, %lldx%lld, %lld steps, %s\n", (unsigned long long)g.seed, have_seed ? "" : " (random)",
            (long long)g.width, (long long)g.height, (long long)g.steps, sched);
  sdc__warn_truncated(p->tok, "--prompt", g.prompt);
  if (g.negative_prompt) sdc__warn_truncated(p->tok, "--negative-prompt", g.negative_prompt);
  if (g.prompt_2) sdc__warn_truncated(p->tok2, "--prompt-2", g.prompt_2);
  if (g.negative_prompt_2) sdc__warn_truncated(p->tok2, "--negative-prompt-2", g.negative_prompt_2);
  const double t_gen = sdc_clock_mono_s();
  sdc__progress pr = {t_gen, !quiet && isatty(2)};
  err = sdc_pipeline_generate(p, &g, init_path ? &inputs : NULL, img, NULL, sdc__on_progress, &pr);
  const double gen_s = sdc_clock_mono_s() - t_gen, load_s = t_gen - t_load;
  int rc = 0;
  if (err) {
    fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
    rc = 1;
  } else {
    sdc_images_to_u8(img, g.num_images * n_px, u8);
    char params[8192], origin[4200];
    int o = snprintf(origin, sizeof origin, "Model: %s%s", model, prec == SDC_PREC_BF16 ? ", Precision: bf16" : "");
    /* "LoRA: style:0.8 detail:-0.5": file base names and multipliers, short as A1111's hashes field */
    for (int i = 0; i < n_loras && o > 0 && (size_t)o < sizeof origin; i++) {
      const char *base = strrchr(loras[i].path, '/');
      o += snprintf(origin + o, sizeof origin - (size_t)o, "%s%s:%g", i ? " " : ", LoRA: ", base ? base + 1 : loras[i].path,
                    loras[i].multiplier);
    }
    for (int64_t i = 0; i < g.num_images && !rc; i++) {
      sdc_gen_params_text(&shown, i, origin, params, sizeof params);
      const char *keys[] = {"parameters"}, *vals[] = {params};
      sdc__output_name(name, sizeof name, output, i, g.num_images);
      if ((err = sdc_png_write(name, u8 + i * n_px, g.width, g.height, 1, keys, vals))) {
        fprintf(stderr, "sdc generate: %s\n", sdc_errmsg(err));
        rc = 1;
      } else if (!quiet) {
        fprintf(stderr, "wrote %s\n", name);
      }
    }
  }
  if (!rc && json) sdc__print_json(&g, sched, output, load_s, gen_s);
  free(img), free(u8), free(init_buf), free(mask_buf);
  sdc_pipeline_free(p);
  return rc;
}
