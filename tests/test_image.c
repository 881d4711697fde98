/* test_image.c - image inputs: PNG/JPEG decoding of every layout and of broken files, the request's checks on
 * strength, and sdc generate's img2img / inpainting flags (bad input: one line, exit 2, nothing written). */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "denoise.h"
#include "error.h"
#include "image.h"
#include "pngio.h"
#include "test_util.h"

/* ------------------------------------------------------------ encoders */

typedef struct {
  uint8_t *p;
  size_t n, cap;
} membuf;

static void mem_write(png_structp png, png_bytep data, size_t len) {
  membuf *b = png_get_io_ptr(png);
  if (b->n + len > b->cap) {
    b->cap = (b->n + len) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, data, len);
  b->n += len;
}
static void mem_flush(png_structp png) { (void)png; }

/* A PNG of any colour type / depth: rows of raw bytes as libpng takes them;
 * palette: plte has n_plte RGB entries. */
static membuf png_make(int w, int h, int color_type, int depth, const uint8_t *raw, const png_color *plte, int n_plte) {
  membuf b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) abort();
  png_set_write_fn(png, &b, mem_write, mem_flush);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (plte) png_set_PLTE(png, info, plte, n_plte);
  png_write_info(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, raw + (size_t)y * stride);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return b;
}

/* A baseline JPEG of w x h with `comps` components (1 grey, 3 RGB, 4 CMYK). */
static membuf jpeg_make(int w, int h, int comps, const uint8_t *pix) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  unsigned char *out = NULL;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &out, &n);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = comps;
  c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * (size_t)(w * comps));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  membuf b = {malloc(n), n, n};
  memcpy(b.p, out, n);
  free(out);
  return b;
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(p, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

/* --------------------------------------------------------- the decoder */

/* decode must fail with SDC_EINVAL and a one-line message naming the label and holding needle */
static void expect_refused(const char *what, const void *p, size_t n, const char *needle) {
  uint8_t *pix = (uint8_t *)1;
  int64_t w = 0, h = 0;
  int err = sdc_image_decode(p, n, "init_image", 3, &pix, &w, &h);
  const char *msg = sdc_errmsg(err);
  CHECK(err == SDC_EINVAL, "%s: decode returned %d (%s), expected SDC_EINVAL", what, err, msg);
  CHECK(pix == NULL, "%s: pixels returned on error", what);
  CHECK(strncmp(msg, "init_image: ", 12) == 0 && !strchr(msg, '\n'), "%s: message '%s'", what, msg);
  CHECK(strstr(msg, needle) != NULL, "%s: message lacks '%s': %s", what, needle, msg);
  printf("%-34s -> %s\n", what, msg);
  sdc_clearerr();
}

static void test_decoder(void) {
  enum { W = 5, H = 3 };
  uint8_t rgb[W * H * 3], grey[W * H], ga[W * H * 2], rgba[W * H * 4], pal[W * H], rgb16[W * H * 6];
  for (int i = 0; i < W * H; i++) {
    rgb[3 * i] = (uint8_t)(i * 17), rgb[3 * i + 1] = (uint8_t)(255 - i * 9), rgb[3 * i + 2] = (uint8_t)(i * 5 + 3);
    grey[i] = (uint8_t)(i * 16);
    ga[2 * i] = grey[i], ga[2 * i + 1] = (uint8_t)(i * 3);
    memcpy(rgba + 4 * i, rgb + 3 * i, 3), rgba[4 * i + 3] = 7;
    pal[i] = (uint8_t)(i % 3);
    for (int c = 0; c < 3; c++) rgb16[6 * i + 2 * c] = rgb[3 * i + c], rgb16[6 * i + 2 * c + 1] = 0xab;
  }
  const png_color plte[3] = {{10, 20, 30}, {200, 100, 0}, {1, 2, 3}};
  uint8_t *pix = NULL;
  int64_t w = 0, h = 0;
  sdc_image_format f = 0;

  membuf b = png_make(W, H, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0);
  CHECK(sdc_image_probe(b.p, b.n, "init_image", &f, &w, &h) == 0 && f == SDC_IMAGE_PNG && w == W && h == H,
        "probe of a 5x3 RGB PNG: %s", sdc_errmsg(-1));
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0 && memcmp(pix, rgb, sizeof rgb) == 0,
        "RGB PNG: pixels differ");
  free(pix);
  /* luminance as PIL's convert("L") */
  CHECK(sdc_image_decode(b.p, b.n, "mask", 1, &pix, &w, &h) == 0, "RGB PNG as grey: %s", sdc_errmsg(-1));
  for (int i = 0; pix && i < W * H; i++) {
    const unsigned L = (rgb[3 * i] * 19595u + rgb[3 * i + 1] * 38470u + rgb[3 * i + 2] * 7471u + 0x8000u) >> 16;
    CHECK(pix[i] == L, "grey of pixel %d: %u, expected %u", i, pix[i], L);
  }
  free(pix);
  /* truncated anywhere: an error, never a crash */
  for (size_t cut = 1; cut < b.n; cut += 7) {
    int err = sdc_image_decode(b.p, cut, "init_image", 3, &pix, &w, &h);
    CHECK(err == SDC_EINVAL && pix == NULL, "PNG cut at %zu of %zu bytes: %d", cut, b.n, err);
    sdc_clearerr();
  }
  expect_refused("truncated PNG", b.p, b.n - 20, "PNG");
  b.p[40] ^= 0x55; /* inside IDAT: CRC mismatch */
  expect_refused("corrupt PNG", b.p, b.n, "PNG");
  free(b.p);

  b = png_make(W, H, PNG_COLOR_TYPE_GRAY, 8, grey, NULL, 0);
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0, "grey PNG: %s", sdc_errmsg(-1));
  for (int i = 0; pix && i < W * H; i++) CHECK(pix[3 * i] == grey[i] && pix[3 * i + 2] == grey[i], "grey PNG pixel %d", i);
  free(pix), free(b.p);
  b = png_make(W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0);
  CHECK(sdc_image_decode(b.p, b.n, "mask", 1, &pix, &w, &h) == 0, "grey+alpha PNG: %s", sdc_errmsg(-1));
  for (int i = 0; pix && i < W * H; i++) CHECK(pix[i] == grey[i], "grey+alpha PNG pixel %d: alpha not dropped", i);
  free(pix), free(b.p);
  b = png_make(W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, NULL, 0);
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0 && memcmp(pix, rgb, sizeof rgb) == 0,
        "RGBA PNG: alpha not dropped");
  free(pix), free(b.p);
  b = png_make(W, H, PNG_COLOR_TYPE_PALETTE, 8, pal, plte, 3);
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0, "palette PNG: %s", sdc_errmsg(-1));
  for (int i = 0; pix && i < W * H; i++)
    CHECK(pix[3 * i] == plte[pal[i]].red && pix[3 * i + 1] == plte[pal[i]].green, "palette PNG pixel %d", i);
  free(pix), free(b.p);
  b = png_make(W, H, PNG_COLOR_TYPE_RGB, 16, rgb16, NULL, 0);
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0 && memcmp(pix, rgb, sizeof rgb) == 0,
        "16-bit PNG: not reduced to the high bytes");
  free(pix), free(b.p);
  b = png_make(1, 1, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0);
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0 && w == 1 && h == 1, "1x1 PNG decodes");
  free(pix), free(b.p);

  /* JPEG: grey and RGB decode; truncated, corrupt and CMYK refused */
  enum { JW = 16, JH = 8 };
  uint8_t jrgb[JW * JH * 4];
  for (int i = 0; i < JW * JH * 4; i++) jrgb[i] = (uint8_t)(128 + 60 * sin(i * 0.05));
  b = jpeg_make(JW, JH, 3, jrgb);
  CHECK(sdc_image_probe(b.p, b.n, "init_image", &f, &w, &h) == 0 && f == SDC_IMAGE_JPEG && w == JW && h == JH,
        "probe of a 16x8 JPEG");
  CHECK(sdc_image_decode(b.p, b.n, "init_image", 3, &pix, &w, &h) == 0, "RGB JPEG: %s", sdc_errmsg(-1));
  int worst = 0;
  for (int i = 0; pix && i < JW * JH * 3; i++) worst = abs(pix[i] - jrgb[i]) > worst ? abs(pix[i] - jrgb[i]) : worst;
  CHECK(worst <= 8, "RGB JPEG at quality 100: off by %d", worst);
  free(pix);
  expect_refused("truncated JPEG", b.p, b.n / 2, "JPEG");
  for (size_t i = 200; i < b.n - 2; i += 3) b.p[i] = 0xff; /* markers everywhere in the entropy data */
  expect_refused("corrupt JPEG", b.p, b.n, "JPEG");
  free(b.p);
  b = jpeg_make(JW, JH, 1, jrgb);
  CHECK(sdc_image_decode(b.p, b.n, "mask", 1, &pix, &w, &h) == 0, "grey JPEG: %s", sdc_errmsg(-1));
  free(pix), free(b.p);
  b = jpeg_make(JW, JH, 4, jrgb);
  expect_refused("CMYK JPEG", b.p, b.n, "CMYK");
  free(b.p);
  expect_refused("empty", "", 0, "empty");
  expect_refused("not an image", "GIF89a....", 10, "not a PNG or JPEG");
}

/* ------------------------------------------------------ the request checks */

static void test_params(void) {
  sdc_gen_params g = {.prompt = "x", .width = 64, .height = 64, .steps = 10, .guidance_scale = 7.5,
                      .num_images = 1, .scheduler = -1, .kind = SDC_GEN_IMG2IMG};
  const double bad[] = {0.0, -0.5, 1.5, NAN, INFINITY, 0.05};
  const char *needle[] = {"strength 0:", "strength -0.5:", "strength 1.5:", "strength nan:", "strength inf:", "no step"};
  for (int i = 0; i < 6; i++) {
    g.strength = bad[i];
    int err = sdc_gen_params_check(&g, 0);
    CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), needle[i]), "strength %g: %s", bad[i], sdc_errmsg(err));
    sdc_clearerr();
  }
  g.strength = 0.1; /* int(10 * 0.1) = 1 */
  CHECK(sdc_gen_params_check(&g, 0) == 0, "strength 0.1 at 10 steps refused: %s", sdc_errmsg(-1));
  CHECK(sdc_denoise_begin_call(&g, 1) == 9 && sdc_denoise_begin_call(&g, 2) == 18, "begin call at 0.1");
  g.strength = 0.75;
  CHECK(sdc_denoise_begin_call(&g, 1) == 3, "begin call at 0.75: %lld", (long long)sdc_denoise_begin_call(&g, 1));
  g.strength = 0.7; /* 10 * 0.7 = 7.000000000000001: int() gives 7 */
  CHECK(sdc_denoise_begin_call(&g, 1) == 3, "begin call at 0.7");
  CHECK(sdc_denoise_needs_init(&g, 4), "img2img needs its init latents");
  g.kind = SDC_GEN_INPAINT, g.strength = 1.0;
  CHECK(sdc_denoise_needs_init(&g, 4) && !sdc_denoise_needs_init(&g, 9), "inpainting at strength 1: 4 yes, 9 no");
  g.strength = 0.5;
  CHECK(sdc_denoise_needs_init(&g, 9), "9-channel inpainting below strength 1 needs the init latents");
  g.kind = SDC_GEN_TXT2IMG, g.strength = NAN;
  CHECK(sdc_gen_params_check(&g, 0) == 0 && !sdc_denoise_needs_init(&g, 4), "text-to-image ignores strength");
}

/* ------------------------------------------- the scheduler's img2img entry */

/* Every scheduler starts at a later call (img2img), runs to the end with
 * finite samples, refuses a begin index out of range or after a step, and
 * add_noise follows its class. */
static void test_sched_begin(void) {
  enum { N = 32, STEPS = 10 };
  float x0[N], noise[N], out[N], mo[N], x[N];
  for (int i = 0; i < N; i++) x0[i] = (float)sin(i * 0.3), noise[i] = (float)cos(i * 0.7), mo[i] = 0.1f * (float)i / N;
  for (int k = 0; k < SDC_SCHED_COUNT; k++) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"_class_name\": \"%s\", \"beta_start\": 0.00085, \"beta_end\": 0.012, \"beta_schedule\": "
             "\"scaled_linear\", \"num_train_timesteps\": 1000, \"steps_offset\": 1, \"skip_prk_steps\": true}",
             sdc_sched_class((sdc_sched_kind)k));
    sdc_sched_config cfg;
    sdc_scheduler *s = NULL;
    const char *name = sdc_sched_name((sdc_sched_kind)k);
    if (sdc_sched_config_parse(&cfg, json, k, "test") || sdc_scheduler_create(&s, &cfg, STEPS)) {
      CHECK(0, "%s: %s", name, sdc_errmsg(-1));
      continue;
    }
    const int64_t order = sdc_scheduler_order(s), n_calls = sdc_scheduler_n_calls(s), begin = 4 * order;
    CHECK(order == (k == SDC_SCHED_HEUN ? 2 : 1), "%s: order %lld", name, (long long)order);
    CHECK(sdc_scheduler_set_begin(s, n_calls) == SDC_EINVAL, "%s: begin past the end accepted", name);
    sdc_clearerr();
    CHECK(sdc_scheduler_set_begin(s, begin) == 0 && sdc_scheduler_call_index(s) == begin, "%s: set_begin", name);
    /* add_noise at the begin call, by class */
    sdc_scheduler_add_noise(s, x0, noise, out, N, begin);
    int64_t n_sig = 0;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    if (sig) {
      const double sg = sig[begin];
      const int vp = k == SDC_SCHED_DPMPP_2M || k == SDC_SCHED_DPMPP_2M_KARRAS || k == SDC_SCHED_UNIPC;
      const double a = vp ? 1.0 / sqrt(sg * sg + 1.0) : 1.0, b = vp ? sg * a : sg;
      for (int i = 0; i < N; i++)
        CHECK(fabs(out[i] - (a * x0[i] + b * noise[i])) < 1e-5 * (1 + fabs(out[i])), "%s: add_noise value %d", name, i);
    } else { /* sqrt(acp) x0 + sqrt(1 - acp) noise: x0[0] = 0 gives b, then a; a^2 + b^2 = 1 */
      const double b = out[0] / noise[0], a = (out[5] - b * noise[5]) / x0[5];
      CHECK(b > 0 && a > 0 && fabs(a * a + b * b - 1.0) < 1e-4, "%s: add_noise not variance-preserving (%g, %g)", name, a, b);
    }
    memcpy(x, out, sizeof x);
    int err = 0;
    while (!err && sdc_scheduler_call_index(s) < n_calls) {
      err = sdc_scheduler_step(s, mo, x, N, noise);
      if (sdc_scheduler_call_index(s) == begin + 1) {
        CHECK(sdc_scheduler_set_begin(s, 0) == SDC_EINVAL, "%s: begin accepted after a step", name);
        sdc_clearerr();
      }
    }
    CHECK(!err, "%s: step failed: %s", name, sdc_errmsg(err));
    for (int i = 0; i < N; i++) CHECK(isfinite(x[i]), "%s: sample %d not finite after a late start", name, i);
    sdc_scheduler_free(s);
  }
}

/* ---------------------------------------------------------- sdc generate */

static const char *g_sdc;
static char g_model[1024], g_out[1024], g_dir[1024];

static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

static void expect_bad(const char *what, const char *args, const char *needle) {
  char cmd[4096], err[4096];
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --output '%s/img.png' --steps 4 --quiet --prompt cat %s", g_sdc,
           g_model, g_out, args);
  int st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 2, "%s: exit %d, expected 2 (%s)", what, st, err);
  CHECK(sdc_test_lines(err) == 1, "%s: expected one line of error, got: %s", what, err);
  CHECK(strstr(err, needle) != NULL, "%s: error lacks '%s': %s", what, needle, err);
  CHECK(dir_entries(g_out) == 0, "%s: something was written to %s", what, g_out);
  printf("%-34s -> %s", what, err);
}

static void test_cli(void) {
  char cmd[4096], err[4096], path[1200];
  snprintf(cmd, sizeof cmd, "'%s' model-init --arch tiny --dtype f32 --seed 3 --out '%s'", g_sdc, g_model);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "model-init failed: %s", err);
  enum { S = 64 };
  uint8_t *rgb = malloc(S * 96 * 3), *grey = malloc(S * 96);
  for (int i = 0; i < S * 96; i++) {
    rgb[3 * i] = (uint8_t)i, rgb[3 * i + 1] = (uint8_t)(i >> 3), rgb[3 * i + 2] = 77;
    grey[i] = (i % 64) > 32 ? 255 : 0;
  }
  membuf init = png_make(S, S, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0), mask = png_make(S, S, PNG_COLOR_TYPE_GRAY, 8, grey, NULL, 0),
         wide = png_make(96, S, PNG_COLOR_TYPE_GRAY, 8, grey, NULL, 0), one = png_make(1, 1, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0),
         jpg = jpeg_make(S, S, 3, rgb), odd = png_make(60, S, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0);
  struct {
    const char *name;
    const void *p;
    size_t n;
  } files[] = {{"init.png", init.p, init.n},        {"mask.png", mask.p, mask.n},       {"wide.png", wide.p, wide.n},
               {"one.png", one.p, one.n},           {"init.jpg", jpg.p, jpg.n},         {"cut.png", init.p, init.n / 2},
               {"cut.jpg", jpg.p, jpg.n / 2},       {"odd.png", odd.p, odd.n}};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(path, sizeof path, "%s/%s", g_dir, files[i].name);
    CHECK(write_file(path, files[i].p, files[i].n) == 0, "writing %s", path);
  }
  char a[3000];
#define ARGS(...) (snprintf(a, sizeof a, __VA_ARGS__), a)
  expect_bad("truncated PNG", ARGS("--init-image '%s/cut.png'", g_dir), "init_image: bad PNG");
  expect_bad("truncated JPEG", ARGS("--init-image '%s/cut.jpg'", g_dir), "init_image: bad JPEG");
  expect_bad("1x1 init image", ARGS("--init-image '%s/one.png'", g_dir), "init_image is 1x1");
  expect_bad("init image 60 wide", ARGS("--init-image '%s/odd.png'", g_dir), "multiples of 8");
  expect_bad("init image vs --width", ARGS("--init-image '%s/init.png' --width 128", g_dir), "resize it first");
  expect_bad("mask of another size", ARGS("--init-image '%s/init.png' --mask '%s/wide.png'", g_dir, g_dir),
             "mask is 96x64 but init_image is 64x64");
  expect_bad("mask truncated", ARGS("--init-image '%s/init.png' --mask '%s/cut.png'", g_dir, g_dir), "mask: bad PNG");
  expect_bad("missing init image", ARGS("--init-image '%s/nope.png'", g_dir), "nope.png");
  expect_bad("mask without init image", ARGS("--mask '%s/mask.png'", g_dir), "--mask needs --init-image");
  expect_bad("strength without init image", "--strength 0.5", "--strength needs --init-image");
  expect_bad("strength 0", ARGS("--init-image '%s/init.png' --strength 0", g_dir), "strength 0:");
  expect_bad("strength 1.5", ARGS("--init-image '%s/init.png' --strength 1.5", g_dir), "strength 1.5:");
  expect_bad("strength NaN", ARGS("--init-image '%s/init.png' --strength nan", g_dir), "strength nan:");
  expect_bad("strength too small for steps", ARGS("--init-image '%s/init.png' --strength 0.2", g_dir), "no step would run");
  expect_bad("strength not a number", ARGS("--init-image '%s/init.png' --strength half", g_dir), "--strength 'half'");

  /* and the good ones: img2img from a JPEG, inpainting from PNGs; the PNG says the strength */
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --output '%s/i2i.png' --steps 4 --quiet --prompt cat --seed 5 "
           "--init-image '%s/init.jpg' --strength 0.5", g_sdc, g_model, g_out, g_dir);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "img2img run failed: %s", err);
  snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --output '%s/inp.png' --steps 4 --quiet --prompt cat --seed 5 "
           "--init-image '%s/init.png' --mask '%s/mask.png'", g_sdc, g_model, g_out, g_dir, g_dir);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "inpainting run failed: %s", err);
  uint8_t *px = NULL;
  char *params = NULL;
  int64_t w = 0, h = 0;
  snprintf(path, sizeof path, "%s/i2i.png", g_out);
  CHECK(sdc_png_read(path, &px, &w, &h, &params) == 0 && w == S && h == S, "img2img output %s", path);
  CHECK(params && strstr(params, "Denoising strength: 0.5"), "img2img parameters: %s", params ? params : "(none)");
  free(px), free(params), px = NULL, params = NULL;
  snprintf(path, sizeof path, "%s/inp.png", g_out);
  CHECK(sdc_png_read(path, &px, &w, &h, &params) == 0 && w == S && h == S, "inpainting output %s", path);
  CHECK(params && strstr(params, "Denoising strength: 1"), "inpainting parameters: %s", params ? params : "(none)");
  free(px), free(params);
  free(init.p), free(mask.p), free(wide.p), free(one.p), free(jpg.p), free(odd.p), free(rgb), free(grey);
}

int main(int argc, char **argv) {
  test_decoder();
  test_params();
  test_sched_begin();
  if (argc >= 2) {
    g_sdc = argv[1];
    const char *tmp = sdc_test_tmpdir();
    snprintf(g_model, sizeof g_model, "%s/tiny", tmp);
    snprintf(g_out, sizeof g_out, "%s/out", tmp);
    snprintf(g_dir, sizeof g_dir, "%s/in", tmp);
    mkdir(g_out, 0755), mkdir(g_dir, 0755);
    test_cli();
    sdc_test_rmtree(tmp);
  }
  return sdc_test_finish("test_image");
}
