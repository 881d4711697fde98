/* pngio.c - libpng glue: atomic writes with tEXt metadata, and reads for tests. */
#include "pngio.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

int sdc_png_write(const char *path, const uint8_t *rgb, int64_t width, int64_t height, int n_text,
                  const char *const *keys, const char *const *values) {
  if (width < 1 || height < 1 || width > 65535 || height > 65535)
    return sdc_seterr(SDC_EINVAL, "%s: image size %lldx%lld out of range", path, (long long)width, (long long)height);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
  FILE *fp = fopen(tmp, "wb");
  if (!fp) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_textp text = calloc((size_t)(n_text > 0 ? n_text : 1), sizeof *text);
  png_bytep *rows = malloc((size_t)height * sizeof *rows);
  int err = SDC_OK;
  if (!png || !info || !text || !rows) {
    err = sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  if (setjmp(png_jmpbuf(png))) {
    err = sdc_seterr(SDC_EIO, "%s: libpng failed while writing", path);
    goto done;
  }
  png_init_io(png, fp);
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
done:
  if (png) png_destroy_write_struct(&png, info ? &info : NULL);
  free(text);
  free(rows);
  if (fclose(fp) != 0 && !err) err = sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  if (!err && rename(tmp, path) != 0) err = sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  if (err) unlink(tmp);
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
