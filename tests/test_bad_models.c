/* test_bad_models.c - broken files, tensors and configs each give one clear error line, exit 2, no crash. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "safetensors.h"
#include "test_util.h"

static const char *g_sdc, *g_tmp, *g_ref;

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(data, 1, n, fp) != n) {
    perror(path);
    exit(1);
  }
  fclose(fp);
}

/* A safetensors file from a header string and `n_data` zero bytes. */
static void write_st(const char *path, const char *header, size_t n_data) {
  size_t h = strlen(header);
  unsigned char *buf = calloc(1, 8 + h + n_data);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(buf + 8, header, h);
  write_bytes(path, buf, 8 + h + n_data);
  free(buf);
}

/* Opening path must fail with `code` and a message holding each of the needles. */
static void expect_open_error(const char *what, const char *path, int code, const char *n1, const char *n2) {
  sdc_st_file f;
  sdc_clearerr();
  int err = sdc_st_open(&f, path);
  const char *msg = sdc_errmsg(err);
  CHECK(err == code, "%s: got %s (%s), expected %s", what, sdc_err_name(err), msg, sdc_err_name(code));
  CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
  CHECK(!n1 || strstr(msg, n1), "%s: message lacks '%s': %s", what, n1, msg);
  CHECK(!n2 || strstr(msg, n2), "%s: message lacks '%s': %s", what, n2, msg);
  printf("%-28s -> %s\n", what, msg);
  if (!err) sdc_st_close(&f);
}

static void test_safetensors_validation(void) {
  char p[1024];
  snprintf(p, sizeof p, "%s/short.safetensors", g_tmp);
  write_bytes(p, "\x01\x02\x03", 3);
  expect_open_error("3-byte file", p, SDC_EFORMAT, "too short", NULL);

  snprintf(p, sizeof p, "%s/hlen.safetensors", g_tmp);
  write_bytes(p, "\xff\xff\xff\xff\x00\x00\x00\x00{}", 10);
  expect_open_error("header length past EOF", p, SDC_EFORMAT, "header length", NULL);

  snprintf(p, sizeof p, "%s/json.safetensors", g_tmp);
  write_st(p, "{\"a\": {\"dtype\": \"F32\", ", 0);
  expect_open_error("broken JSON", p, SDC_EFORMAT, "JSON", NULL);

  snprintf(p, sizeof p, "%s/dtype.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2);
  expect_open_error("unknown dtype", p, SDC_EDTYPE, "'w'", "F8_E4M3");

  snprintf(p, sizeof p, "%s/count.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 20);
  expect_open_error("byte count vs shape", p, SDC_EFORMAT, "'w'", "24");

  snprintf(p, sizeof p, "%s/overlap.safetensors", g_tmp);
  write_st(p,
           "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
           " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
           24);
  expect_open_error("overlapping tensors", p, SDC_EFORMAT, "overlap", "'b'");

  snprintf(p, sizeof p, "%s/bounds.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [0, 16]}}", 10);
  expect_open_error("offsets beyond data", p, SDC_EFORMAT, "'w'", "truncated");

  /* found by fuzz_safetensors: an offset past uint64_t was cast before the bounds check (UB, caught by UBSan) */
  snprintf(p, sizeof p, "%s/offset_1e43.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [0, 6.7e42]}}", 16);
  expect_open_error("offset beyond uint64_t", p, SDC_EFORMAT, "'w'", "truncated");

  snprintf(p, sizeof p, "%s/huge.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 1024], \"data_offsets\": [0, 16]}}", 16);
  expect_open_error("overflowing shape", p, SDC_EFORMAT, "'w'", NULL);

  snprintf(p, sizeof p, "%s/negative.safetensors", g_tmp);
  write_st(p, "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4);
  expect_open_error("negative dimension", p, SDC_EFORMAT, "'w'", NULL);

  snprintf(p, sizeof p, "%s/dup.safetensors", g_tmp);
  write_st(p,
           "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
           " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
           8);
  expect_open_error("duplicate key", p, SDC_EFORMAT, "'a'", "twice");
}

/* ---- model-level: a copy of tiny-sd1 with one thing broken, checked through `sdc inspect` ---- */

static void make_model_copy(const char *dir) {
  char cmd[3000];
  snprintf(cmd, sizeof cmd,
           "set -e; mkdir -p '%s'; cd '%s'; for c in unet vae text_encoder; do mkdir $c; "
           "ln -s '%s/tiny-sd1/'$c/* $c/; done; ln -s '%s/tiny-sd1/model_index.json' '%s/tiny-sd1/tokenizer' "
           "'%s/tiny-sd1/scheduler' .",
           dir, dir, g_ref, g_ref, g_ref, g_ref);
  CHECK(system(cmd) == 0, "could not build a model copy in %s", dir);
}

/* Rewrites dir/<comp>/<file> from the reference, dropping `drop` and giving `reshape` the shape `shape`. */
static void rewrite_weights(const char *dir, const char *comp, const char *file, const char *drop, const char *reshape,
                            int ndim, const int64_t *shape) {
  char src[1024], dst[1024];
  snprintf(src, sizeof src, "%s/tiny-sd1/%s/%s", g_ref, comp, file);
  snprintf(dst, sizeof dst, "%s/%s/%s", dir, comp, file);
  sdc_st_file f;
  CHECK(sdc_st_open(&f, src) == 0, "open %s: %s", src, sdc_errmsg(-1));
  const char **names = calloc((size_t)f.n_entries, sizeof *names);
  sdc_tensor *ts = calloc((size_t)f.n_entries, sizeof *ts);
  int64_t n = 0;
  for (int64_t i = 0; i < f.n_entries; i++) {
    const sdc_st_entry *e = &f.entries[i];
    if (drop && strcmp(e->name, drop) == 0) continue;
    names[n] = e->name;
    ts[n] = (sdc_tensor){.dtype = e->dtype, .ndim = e->ndim, .data = (void *)sdc_st_ptr(&f, e)};
    memcpy(ts[n].shape, e->shape, sizeof e->shape);
    if (reshape && strcmp(e->name, reshape) == 0) {
      ts[n].ndim = ndim; /* same element count, other shape */
      memcpy(ts[n].shape, shape, (size_t)ndim * sizeof *shape);
    }
    n++;
  }
  unlink(dst);
  CHECK(sdc_st_write(dst, n, names, ts) == 0, "write %s: %s", dst, sdc_errmsg(-1));
  free(names), free(ts);
  sdc_st_close(&f);
}

/* Runs `sdc inspect --model dir`: exit 2, exactly one stderr line holding each needle. */
static void expect_inspect_error(const char *what, const char *dir, const char *n1, const char *n2, const char *n3) {
  char cmd[2048], out[4096] = {0};
  snprintf(cmd, sizeof cmd, "'%s' inspect --model '%s'", g_sdc, dir);
  int st = sdc_test_run(cmd, out, sizeof out), lines = sdc_test_lines(out);
  CHECK(st == 2, "%s: exit status %d, expected 2; output: %s", what, st, out);
  CHECK(lines == 1, "%s: %d lines on stderr, expected one: %s", what, lines, out);
  CHECK(strstr(out, n1), "%s: error lacks '%s': %s", what, n1, out);
  CHECK(!n2 || strstr(out, n2), "%s: error lacks '%s': %s", what, n2, out);
  CHECK(!n3 || strstr(out, n3), "%s: error lacks '%s': %s", what, n3, out);
  printf("%-28s -> %s", what, out);
}

static void test_models(void) {
  char dir[1024], file[1200];
  /* control: the untouched copy loads */
  snprintf(dir, sizeof dir, "%s/good", g_tmp);
  make_model_copy(dir);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' inspect --model '%s' >/dev/null", g_sdc, dir);
  CHECK(system(cmd) == 0, "the untouched model copy does not load");

  snprintf(dir, sizeof dir, "%s/missing", g_tmp);
  make_model_copy(dir);
  rewrite_weights(dir, "unet", "diffusion_pytorch_model.safetensors", "mid_block.attentions.0.proj_out.weight", NULL, 0,
                  NULL);
  snprintf(file, sizeof file, "%s/unet/diffusion_pytorch_model.safetensors", dir);
  expect_inspect_error("missing tensor", dir, file, "mid_block.attentions.0.proj_out.weight", "missing");

  snprintf(dir, sizeof dir, "%s/shape", g_tmp);
  make_model_copy(dir);
  rewrite_weights(dir, "unet", "diffusion_pytorch_model.safetensors", NULL, "down_blocks.1.resnets.0.conv1.weight", 4,
                  (int64_t[]){32, 64, 3, 3});
  snprintf(file, sizeof file, "%s/unet/diffusion_pytorch_model.safetensors", dir);
  expect_inspect_error("wrong shape", dir, file, "down_blocks.1.resnets.0.conv1.weight", "[64, 32, 3, 3]");

  snprintf(dir, sizeof dir, "%s/truncated", g_tmp);
  make_model_copy(dir);
  {
    char src[1024];
    snprintf(src, sizeof src, "%s/tiny-sd1/vae/diffusion_pytorch_model.safetensors", g_ref);
    snprintf(file, sizeof file, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    sdc_st_file f;
    CHECK(sdc_st_open(&f, src) == 0, "open %s", src);
    unlink(file);
    write_bytes(file, f.map, f.map_bytes * 2 / 3);
    sdc_st_close(&f);
  }
  expect_inspect_error("truncated weights", dir, file, "truncated", NULL);

  snprintf(dir, sizeof dir, "%s/blocktype", g_tmp);
  make_model_copy(dir);
  {
    char src[1024], *json = NULL;
    snprintf(src, sizeof src, "%s/tiny-sd1/unet/config.json", g_ref);
    snprintf(file, sizeof file, "%s/unet/config.json", dir);
    FILE *fp = fopen(src, "rb");
    json = calloc(1, 1 << 16);
    size_t n = fp ? fread(json, 1, (1 << 16) - 1, fp) : 0;
    if (fp) fclose(fp);
    char *at = strstr(json, "\"DownBlock2D\"");
    CHECK(at != NULL, "reference unet config has no DownBlock2D");
    if (at) {
      unlink(file);
      fp = fopen(file, "wb");
      fwrite(json, 1, (size_t)(at - json), fp);
      fputs("\"SpiralBlock2D\"", fp);
      fputs(at + strlen("\"DownBlock2D\""), fp);
      fclose(fp);
    }
    (void)n;
    free(json);
  }
  expect_inspect_error("unknown block type", dir, file, "down_block_types", "SpiralBlock2D");

  snprintf(dir, sizeof dir, "%s/nonexistent", g_tmp);
  expect_inspect_error("missing model", dir, dir, NULL, NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_bad_models PATH_TO_SDC\n");
    return 2;
  }
  g_sdc = argv[1];
  g_tmp = sdc_test_tmpdir();
  test_safetensors_validation();
  g_ref = sdc_test_ref_dir();
  if (g_ref) test_models();
  else printf("model-level cases skipped: reference folder missing\n");
  sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_bad_models");
}
