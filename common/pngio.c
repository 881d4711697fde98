/* pngio.c - libpng glue: atomic writes with tEXt metadata, and reads for tests. */
#include "pngio.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"

/* libpng's write callback: the encoded bytes go to an sdc_buf. */
static void sdc__png_mem_write(png_structp png, png_bytep data, png_size_t n) {
  sdc_buf_put(png_get_io_ptr(png), data, n);
}

static void sdc__png_mem_flush(png_structp png) { (void)png; }

int sdc_png_encode(const uint8_t *rgb, int64_t width, int64_t height, int n_text, const char *const *keys,
                   const char *const *values, uint8_t **out, size_t *n) {
  *out = NULL, *n = 0;
  if (width < 1 || height < 1 || width > 65535 || height > 65535)
    return sdc_seterr(SDC_EINVAL, "png: image size %lldx%lld out of range", (long long)width, (long long)height);
  sdc_buf m = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_textp text = calloc((size_t)(n_text > 0 ? n_text : 1), sizeof *text);
  png_bytep *rows = malloc((size_t)height * sizeof *rows);
  int err = SDC_OK;
  if (!png || !info || !text || !rows) {
    err = sdc_seterr(SDC_ENOMEM, "png: out of memory");
    goto done;
  }
  if (setjmp(png_jmpbuf(png))) {
    err = sdc_seterr(SDC_EIO, "png: libpng failed while encoding");
    goto done;
  }
  png_set_write_fn(png, &m, sdc__png_mem_write, sdc__png_mem_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (int i = 0; i < n_text; i++) {
    text[i].compression = PNG_TEXT_COMPRESSION_NONE;
    text[i].key = (png_charp)keys[i];
    text[i].text = (png_charp)values[i];
  }
  if (n_text > 0) png_set_text(png, info, text, n_text);
  for (int64_t y = 0; y < height; y++) rows[y] = (png_bytep)(rgb + y * width * 3);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  if (m.oom) err = sdc_seterr(SDC_ENOMEM, "png: out of memory");
done:
  if (png) png_destroy_write_struct(&png, info ? &info : NULL);
  free(text);
  free(rows);
  if (err) sdc_buf_free(&m);
  else *out = (uint8_t *)m.p, *n = m.n;
  return err;
}

int sdc_png_write(const char *path, const uint8_t *rgb, int64_t width, int64_t height, int n_text,
                  const char *const *keys, const char *const *values) {
  uint8_t *png;
  size_t n;
  int err = sdc_png_encode(rgb, width, height, n_text, keys, values, &png, &n);
  if (err) return sdc_adderr(err, "%s", path);
  /* beside the target, then renamed: the file appears whole or not at all */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    free(png);
    return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  }
  int ok = fwrite(png, 1, n, fp) == n;
  ok &= fclose(fp) == 0;
  free(png);
  if (!ok || rename(tmp, path) != 0) {
    err = sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
    unlink(tmp);
  }
  return err;
}

int sdc_png_read(const char *path, uint8_t **rgb, int64_t *width, int64_t *height, char **parameters) {
  *rgb = NULL;
  if (parameters) *parameters = NULL;
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path))
    return sdc_seterr(SDC_EFORMAT, "%s: not a readable PNG (%s)", path, img.message);
  img.format = PNG_FORMAT_RGB;
  uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
  if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
    free(buf);
    png_image_free(&img);
    return sdc_seterr(SDC_EFORMAT, "%s: PNG decode failed", path);
  }
  *rgb = buf, *width = img.width, *height = img.height;
  if (parameters) {
    /* the simplified API has no text access: a second pass with the full one */
    FILE *fp = fopen(path, "rb");
    png_structp png = fp ? png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png && info && !setjmp(png_jmpbuf(png))) {
      png_init_io(png, fp);
      png_read_info(png, info);
      png_textp text;
      int n = 0;
      png_get_text(png, info, &text, &n);
      for (int i = 0; i < n; i++)
        if (strcmp(text[i].key, "parameters") == 0) *parameters = strdup(text[i].text);
    }
    if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    if (fp) fclose(fp);
  }
  return SDC_OK;
}
