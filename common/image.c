/* image.c - decoding the images a request brings (PNG via libpng, JPEG via libjpeg-turbo), from memory, with limits. */
#include "image.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "error.h"
#include "sdc_limits.h"

/* Both decoders report errors by longjmp. Everything that must survive the
 * jump lives in this struct, owned by the caller of the function that calls
 * setjmp, so no local variable of that function is read after a jump. */
typedef struct {
  const uint8_t *data;
  size_t n, pos;
  const char *label;
  int header_only, channels;
  uint8_t *pix;     /* H*W*3 RGB, heap */
  uint8_t **rows;   /* PNG row pointers, heap */
  int64_t width, height;
  char why[200];    /* the decoder's own reason */
  jmp_buf jb;
} sdc__img;

static int sdc__img_size_ok(sdc__img *m) {
  return m->width >= 1 && m->height >= 1 && m->width <= SDC_MAX_INPUT_IMAGE_SIDE && m->height <= SDC_MAX_INPUT_IMAGE_SIDE;
}

/* ------------------------------------------------------------------ PNG */

static void sdc__png_error(png_structp png, png_const_charp msg) {
  sdc__img *m = png_get_error_ptr(png);
  snprintf(m->why, sizeof m->why, "%s", msg);
  longjmp(m->jb, 1);
}

static void sdc__png_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void sdc__png_read(png_structp png, png_bytep out, size_t len) {
  sdc__img *m = png_get_io_ptr(png);
  if (len > m->n - m->pos) png_error(png, "truncated PNG");
  memcpy(out, m->data + m->pos, len);
  m->pos += len;
}

/* 0, or 1 after a libpng error (m->why) or a size refused (m->why empty). */
static int sdc__png_run(sdc__img *m) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, m, sdc__png_error, sdc__png_warning);
  if (!png) return snprintf(m->why, sizeof m->why, "out of memory"), 1;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(m->jb)) {
    if (!info) snprintf(m->why, sizeof m->why, "out of memory");
    png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    return 1;
  }
  png_set_read_fn(png, m, sdc__png_read);
  png_set_user_limits(png, SDC_MAX_INPUT_IMAGE_SIDE, SDC_MAX_INPUT_IMAGE_SIDE);
  png_read_info(png, info);
  m->width = png_get_image_width(png, info), m->height = png_get_image_height(png, info);
  if (m->header_only || !sdc__img_size_ok(m)) {
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
  }
  /* to 8-bit RGB whatever the file holds: palette and low-bit grey expanded,
   * 16-bit reduced, grey spread to RGB, alpha dropped (PIL's convert("RGB")) */
  const int ct = png_get_color_type(png, info);
  png_set_expand(png);
  png_set_strip_16(png);
  if (!(ct & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)m->width * 3) png_error(png, "unexpected row layout after conversion");
  m->pix = malloc((size_t)(m->width * m->height * 3));
  m->rows = malloc((size_t)m->height * sizeof *m->rows);
  if (!m->pix || !m->rows) png_error(png, "out of memory");
  for (int64_t y = 0; y < m->height; y++) m->rows[y] = m->pix + y * m->width * 3;
  png_read_image(png, m->rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  return 0;
}

/* ----------------------------------------------------------------- JPEG */

typedef struct {
  struct jpeg_error_mgr pub;
  sdc__img *m;
} sdc__jpeg_err;

static void sdc__jpeg_error(j_common_ptr cinfo) {
  sdc__jpeg_err *e = (sdc__jpeg_err *)cinfo->err;
  char buf[JMSG_LENGTH_MAX];
  e->pub.format_message(cinfo, buf);
  snprintf(e->m->why, sizeof e->m->why, "%s", buf);
  longjmp(e->m->jb, 1);
}

/* libjpeg's own counts warnings and prints them; count them without printing */
static void sdc__jpeg_silent(j_common_ptr cinfo, int level) {
  if (level < 0) cinfo->err->num_warnings++;
}

static int sdc__jpeg_run(sdc__img *m) {
  struct jpeg_decompress_struct cinfo;
  sdc__jpeg_err err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = sdc__jpeg_error;
  err.pub.emit_message = sdc__jpeg_silent; /* warnings (e.g. premature end) would go to stderr */
  err.m = m;
  if (setjmp(m->jb)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, m->data, (unsigned long)m->n);
  jpeg_read_header(&cinfo, TRUE);
  m->width = cinfo.image_width, m->height = cinfo.image_height;
  if (m->header_only || !sdc__img_size_ok(m)) {
    jpeg_destroy_decompress(&cinfo);
    return 0;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    snprintf(m->why, sizeof m->why, "CMYK JPEG is not supported: convert it to RGB");
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  cinfo.out_color_space = JCS_RGB; /* grey is spread to RGB by the library */
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3) {
    snprintf(m->why, sizeof m->why, "%d colour components: expected grey or RGB", cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  m->pix = malloc((size_t)(m->width * m->height * 3));
  if (!m->pix) {
    snprintf(m->why, sizeof m->why, "out of memory");
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = m->pix + (size_t)cinfo.output_scanline * (size_t)m->width * 3;
    /* a truncated file yields grey rows and a warning: refuse it instead */
    const long before = err.pub.num_warnings;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (err.pub.num_warnings != before) {
      snprintf(m->why, sizeof m->why, "truncated or corrupt JPEG data");
      jpeg_destroy_decompress(&cinfo);
      return 1;
    }
  }
  jpeg_finish_decompress(&cinfo);
  if (err.pub.num_warnings) {
    snprintf(m->why, sizeof m->why, "corrupt JPEG data");
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

/* ------------------------------------------------------------- the API */

static int sdc__img_format(const uint8_t *p, size_t n, sdc_image_format *f) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && memcmp(p, png_sig, 8) == 0) return *f = SDC_IMAGE_PNG, 1;
  if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return *f = SDC_IMAGE_JPEG, 1;
  return 0;
}

/* Runs a decoder on m; frees m's buffers on any error. */
static int sdc__img_run(sdc__img *m, sdc_image_format *format) {
  if (!m->data || m->n == 0) return sdc_seterr(SDC_EINVAL, "%s: empty image", m->label);
  if (m->n > SDC_MAX_INPUT_IMAGE_BYTES)
    return sdc_seterr(SDC_EINVAL, "%s: %zu bytes, over the limit of %d", m->label, m->n, SDC_MAX_INPUT_IMAGE_BYTES);
  if (!sdc__img_format(m->data, m->n, format))
    return sdc_seterr(SDC_EINVAL, "%s: not a PNG or JPEG image", m->label);
  const char *name = *format == SDC_IMAGE_PNG ? "PNG" : "JPEG";
  const int failed = *format == SDC_IMAGE_PNG ? sdc__png_run(m) : sdc__jpeg_run(m);
  if (failed) {
    free(m->pix), free(m->rows);
    m->pix = NULL, m->rows = NULL;
    return sdc_seterr(SDC_EINVAL, "%s: bad %s (%s)", m->label, name, m->why);
  }
  free(m->rows);
  m->rows = NULL;
  if (!sdc__img_size_ok(m)) {
    free(m->pix);
    m->pix = NULL;
    return sdc_seterr(SDC_EINVAL, "%s: %s of %lldx%lld pixels: expected 1 to %d a side", m->label, name,
                      (long long)m->width, (long long)m->height, SDC_MAX_INPUT_IMAGE_SIDE);
  }
  return SDC_OK;
}

int sdc_image_probe(const void *data, size_t n, const char *label, sdc_image_format *format, int64_t *width,
                    int64_t *height) {
  sdc__img *m = calloc(1, sizeof *m);
  if (!m) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", label);
  m->data = data, m->n = n, m->label = label, m->header_only = 1;
  sdc_image_format f = 0;
  int err = sdc__img_run(m, &f);
  if (!err) *format = f, *width = m->width, *height = m->height;
  free(m);
  return err;
}

int sdc_image_decode(const void *data, size_t n, const char *label, int channels, uint8_t **pix, int64_t *width,
                     int64_t *height) {
  *pix = NULL;
  if (channels != 1 && channels != 3) return sdc_seterr(SDC_EINVAL, "%s: %d channels asked: expected 1 or 3", label, channels);
  sdc__img *m = calloc(1, sizeof *m);
  if (!m) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", label);
  m->data = data, m->n = n, m->label = label, m->channels = channels;
  sdc_image_format f = 0;
  int err = sdc__img_run(m, &f);
  if (!err) {
    const int64_t np = m->width * m->height;
    if (channels == 1) /* PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded */
      for (int64_t i = 0; i < np; i++) {
        const uint8_t *p = m->pix + 3 * i;
        m->pix[i] = (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
      }
    *pix = m->pix, *width = m->width, *height = m->height;
  }
  free(m);
  return err;
}
