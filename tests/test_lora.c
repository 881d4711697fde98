/* test_lora.c - LoRA / LoCon files merged on weight lookup, against a naive double-precision merge of the
 * reference files; every bad adapter answered with one line naming the file and key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "lora.h"
#include "model.h"
#include "test_util.h"

static char g_ref[1024], g_tmp[1024];

/* A tensor of f as doubles (heap), numel in *n. */
static double *read_d(const sdc_st_file *f, const char *name, int64_t *n) {
  const sdc_st_entry *e = sdc_st_find(f, name);
  if (!e) return NULL;
  *n = sdc_shape_numel(e->ndim, e->shape);
  float *x = malloc((size_t)(*n ? *n : 1) * sizeof *x);
  double *d = malloc((size_t)(*n ? *n : 1) * sizeof *d);
  sdc_convert_to_f32(x, sdc_st_ptr(f, e), e->dtype, *n);
  for (int64_t i = 0; i < *n; i++) d[i] = x[i];
  free(x);
  return d;
}

typedef struct {
  const char *file; /* in pipelines/lora/, or an absolute path */
  const char *module;
  double mult;
} term;

/* W + sum m * (alpha / rank) * up . down, in double, straight from the files. */
static double *naive(const char *model_file, const char *tensor, const term *terms, int n_terms, int64_t *n) {
  sdc_st_file mf;
  if (sdc_st_open(&mf, model_file)) return NULL;
  double *W = read_d(&mf, tensor, n);
  const int64_t rows = sdc_st_find(&mf, tensor)->shape[0], cols = *n / rows;
  sdc_st_close(&mf);
  for (int t = 0; t < n_terms; t++) {
    char path[2048], key[512];
    if (terms[t].file[0] == '/') snprintf(path, sizeof path, "%s", terms[t].file);
    else snprintf(path, sizeof path, "%s/pipelines/lora/%s", g_ref, terms[t].file);
    sdc_st_file lf;
    if (sdc_st_open(&lf, path)) return free(W), NULL;
    int64_t nu, nd, na = 0;
    snprintf(key, sizeof key, "%s.lora_up.weight", terms[t].module);
    double *up = read_d(&lf, key, &nu);
    snprintf(key, sizeof key, "%s.lora_down.weight", terms[t].module);
    double *down = read_d(&lf, key, &nd);
    snprintf(key, sizeof key, "%s.alpha", terms[t].module);
    double *alpha = read_d(&lf, key, &na);
    const int64_t rank = nu / rows;
    const double scale = terms[t].mult * (alpha ? alpha[0] : (double)rank) / (double)rank;
    for (int64_t o = 0; o < rows; o++)
      for (int64_t i = 0; i < cols; i++) {
        double s = 0;
        for (int64_t k = 0; k < rank; k++) s += up[o * rank + k] * down[k * cols + i];
        W[o * cols + i] += scale * s;
      }
    free(up), free(down), free(alpha);
    sdc_st_close(&lf);
  }
  return W;
}

/* max |got - want| / max(1, max |want|), and how far want is from base (the LoRA must show). */
static void compare(const char *what, const float *got, const double *want, const double *base, int64_t n) {
  double err = 0, scale = 1, moved = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int64_t i = 0; i < n; i++) {
    err = fmax(err, fabs((double)got[i] - want[i]));
    if (base) moved = fmax(moved, fabs(want[i] - base[i]));
  }
  err /= scale;
  printf("%-58s rel err %.2e (delta max %.2e)\n", what, err, moved);
  CHECK(got && err <= 2e-6, "%s: merged tensor off by %.3g", what, err);
  CHECK(!base || moved > 1e-3, "%s: the adapter barely changes the tensor (%.3g): the check would prove nothing", what,
        moved);
}

/* Opens refs (paths relative to pipelines/lora unless absolute) and applies them to model's comp view. */
static int apply(sdc_model *m, sdc_component comp, sdc_weights *w, sdc_lora_set **set, const term *terms, int n) {
  sdc_lora_ref refs[SDC_MAX_LORAS];
  for (int i = 0; i < n; i++) {
    if (terms[i].file[0] == '/') snprintf(refs[i].path, sizeof refs[i].path, "%s", terms[i].file);
    else snprintf(refs[i].path, sizeof refs[i].path, "%s/pipelines/lora/%s", g_ref, terms[i].file);
    refs[i].multiplier = terms[i].mult;
  }
  int err = sdc_lora_set_open(set, refs, n);
  if (!err) err = sdc_model_weights(m, comp, w);
  if (!err) err = sdc_weights_set_lora(w, *set, comp);
  return err;
}

static void test_merge(void) {
  char model[1200], unet_file[1400], te_file[1400];
  snprintf(model, sizeof model, "%s/tiny-sd1", g_ref);
  snprintf(unet_file, sizeof unet_file, "%s/unet/diffusion_pytorch_model.safetensors", model);
  snprintf(te_file, sizeof te_file, "%s/text_encoder/model.safetensors", model);
  sdc_model m;
  CHECK(sdc_model_open(&m, model, NULL) == 0, "open %s: %s", model, sdc_errmsg(1));
  /* two stacked, one negative: the style file (rank 4, alpha 2) and the LoCon one (rank 8, alpha 8) */
  const term stack[] = {{"tiny-sd1-style.safetensors", "", 0.8}, {"tiny-sd1-locon.safetensors", "", -0.6}};
  sdc_weights w;
  sdc_lora_set *set = NULL;
  int err = apply(&m, SDC_COMP_UNET, &w, &set, stack, 2);
  CHECK(err == 0, "apply stack: %s", sdc_errmsg(err));
  if (!err) {
    int64_t n;
    /* linear, adapted by both files */
    const char *q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
    const char *qm = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    term tq[] = {{stack[0].file, qm, 0.8}, {stack[1].file, qm, -0.6}};
    double *want = naive(unet_file, q, tq, 2, &n), *base = naive(unet_file, q, NULL, 0, &n);
    compare("linear to_q, two stacked (0.8, -0.6)", sdc_weights_get_linear(&w, q, 32, 32, 0), want, base, n);
    free(want), free(base);
    /* 1x1 conv proj_in (the style file only) */
    const char *pi = "down_blocks.0.attentions.0.proj_in.weight";
    term tp[] = {{stack[0].file, "lora_unet_down_blocks_0_attentions_0_proj_in", 0.8}};
    want = naive(unet_file, pi, tp, 1, &n), base = naive(unet_file, pi, NULL, 0, &n);
    compare("1x1 conv proj_in, as a linear", sdc_weights_get_linear(&w, pi, 32, 32, 1), want, base, n);
    free(want), free(base);
    /* 3x3 LoCon conv1 with a negative multiplier, plain and tap-major (how the UNet loads it) */
    const char *c1 = "up_blocks.1.resnets.0.conv1.weight";
    term tc[] = {{stack[1].file, "lora_unet_up_blocks_1_resnets_0_conv1", -0.6}};
    want = naive(unet_file, c1, tc, 1, &n), base = naive(unet_file, c1, NULL, 0, &n);
    CHECK(n == 96 * 224 * 9, "conv1 numel %lld", (long long)n);
    compare("3x3 LoCon conv1 (-0.6)", sdc_weights_get(&w, c1, 4, (int64_t[]){96, 224, 3, 3}), want, base, n);
    const float *taps = sdc_weights_get_taps(&w, c1, 96, 224, 3, 3);
    float *flat = malloc((size_t)n * sizeof *flat);
    for (int64_t o = 0; taps && o < 96; o++)
      for (int64_t c = 0; c < 224; c++)
        for (int64_t t = 0; t < 9; t++) flat[(o * 224 + c) * 9 + t] = taps[(t * 96 + o) * 224 + c];
    compare("3x3 LoCon conv1, tap-major", taps ? flat : NULL, want, NULL, n);
    free(flat), free(want), free(base);
    /* a tensor no adapter touches comes out as stored */
    const char *ci = "conv_in.weight";
    want = naive(unet_file, ci, NULL, 0, &n);
    compare("conv_in (not adapted)", sdc_weights_get(&w, ci, 4, (int64_t[]){32, 4, 3, 3}), want, NULL, n);
    free(want);
    CHECK(w.n_merged == 3, "merged %lld tensors, expected 3 (to_q, proj_in, conv1; taps reuse conv1's)",
          (long long)w.n_merged);
    CHECK(sdc_weights_error(&w) == 0, "view error: %s", sdc_errmsg(1));
    /* too late: the view has handed out tensors */
    int e2 = sdc_weights_set_lora(&w, set, SDC_COMP_UNET);
    CHECK(e2 != 0 && strstr(sdc_errmsg(e2), "after"), "set_lora after lookups: %s", e2 ? sdc_errmsg(e2) : "accepted");
  }
  sdc_weights_free(&w);
  sdc_lora_set_free(set);

  /* the text encoder part, through the single file of the same model (CLIP keys mapped to diffusers names) */
  char single[1300];
  snprintf(single, sizeof single, "%s/single_file.safetensors", model);
  sdc_model sm;
  CHECK(sdc_model_open(&sm, single, model) == 0, "open %s: %s", single, sdc_errmsg(1));
  const term te[] = {{"tiny-sd1-style.safetensors", "lora_te_text_model_encoder_layers_1_self_attn_v_proj", -1.5}};
  set = NULL;
  err = apply(&sm, SDC_COMP_TEXT_ENCODER, &w, &set, te, 1);
  CHECK(err == 0, "apply te: %s", sdc_errmsg(err));
  if (!err) {
    int64_t n;
    const char *v = "text_model.encoder.layers.1.self_attn.v_proj.weight";
    double *want = naive(te_file, v, te, 1, &n), *base = naive(te_file, v, NULL, 0, &n);
    compare("text encoder v_proj via single file (-1.5)", sdc_weights_get_linear(&w, v, 64, 64, 0), want, base, n);
    free(want), free(base);
  }
  sdc_weights_free(&w);
  sdc_lora_set_free(set);
  sdc_model_close(&sm);
  sdc_model_close(&m);
}

/* Writes a LoRA file of the given tensors (f32 values from a seed) under g_tmp. */
typedef struct {
  const char *name;
  int ndim;
  int64_t shape[4];
  float value; /* 0: random */
} spec;

static void write_file(const char *path, const spec *s, int n) {
  const char *names[32] = {0};
  sdc_tensor ts[32] = {0};
  for (int i = 0; i < n; i++) {
    names[i] = s[i].name;
    memset(&ts[i], 0, sizeof ts[i]);
    ts[i].dtype = SDC_F32;
    ts[i].ndim = s[i].ndim;
    memcpy(ts[i].shape, s[i].shape, sizeof s[i].shape);
    int64_t k = sdc_shape_numel(s[i].ndim, s[i].shape);
    float *x = malloc((size_t)(k ? k : 1) * sizeof *x);
    sdc_test_fill(x, k, (uint32_t)i + 7);
    for (int64_t j = 0; j < k; j++) x[j] *= 0.3f;
    if (s[i].value != 0) x[0] = s[i].value;
    ts[i].data = x;
  }
  CHECK(sdc_st_write(path, n, names, ts) == 0, "write %s: %s", path, sdc_errmsg(1));
  for (int i = 0; i < n; i++) free(ts[i].data);
}

/* The LDM module names of files in the wild, and factors stored the other way (conv for linear and back). */
static void test_ldm_names(void) {
  char model[1200], unet_file[1400], path[1400];
  snprintf(model, sizeof model, "%s/tiny-sd1", g_ref);
  snprintf(unet_file, sizeof unet_file, "%s/unet/diffusion_pytorch_model.safetensors", model);
  snprintf(path, sizeof path, "%s/ldm.safetensors", g_tmp);
  const spec s[] = {
      {"lora_unet_input_blocks_1_1_proj_in.lora_down.weight", 2, {4, 32}, 0},          /* 1x1 conv, linear factors */
      {"lora_unet_input_blocks_1_1_proj_in.lora_up.weight", 2, {32, 4}, 0},
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.alpha", 0, {0}, 3.0f},
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_down.weight", 4, {4, 64, 1, 1}, 0}, /* linear, conv factors */
      {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_up.weight", 4, {32, 4, 1, 1}, 0},
      {"lora_unet_middle_block_0_in_layers_2.lora_down.weight", 4, {2, 128, 3, 3}, 0}, /* LoCon on mid resnet conv1 */
      {"lora_unet_middle_block_0_in_layers_2.lora_up.weight", 4, {128, 2, 1, 1}, 0},
      {"lora_unet_output_blocks_3_0_in_layers_2.lora_down.weight", 4, {2, 224, 3, 3}, 0}, /* up_blocks.1.resnets.0.conv1 */
      {"lora_unet_output_blocks_3_0_in_layers_2.lora_up.weight", 4, {96, 2, 1, 1}, 0},
  };
  write_file(path, s, 9);
  sdc_model m;
  CHECK(sdc_model_open(&m, model, NULL) == 0, "open %s: %s", model, sdc_errmsg(1));
  sdc_weights w;
  sdc_lora_set *set = NULL;
  const term t[] = {{path, "", 0.5}};
  int err = apply(&m, SDC_COMP_UNET, &w, &set, t, 1);
  CHECK(err == 0, "apply LDM-named file: %s", sdc_errmsg(err));
  if (!err) {
    static const struct {
      const char *mod, *tensor;
      int64_t rows, cols;
    } c[] = {{"lora_unet_input_blocks_1_1_proj_in", "down_blocks.0.attentions.0.proj_in.weight", 32, 32},
             {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",
              "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", 32, 64},
             {"lora_unet_middle_block_0_in_layers_2", "mid_block.resnets.0.conv1.weight", 128, 128 * 9},
             {"lora_unet_output_blocks_3_0_in_layers_2", "up_blocks.1.resnets.0.conv1.weight", 96, 224 * 9}};
    for (int i = 0; i < 4; i++) {
      int64_t n;
      term ti[] = {{path, c[i].mod, 0.5}};
      double *want = naive(unet_file, c[i].tensor, ti, 1, &n), *base = naive(unet_file, c[i].tensor, NULL, 0, &n);
      const float *got = c[i].cols % 9 == 0 && c[i].cols > 300
                             ? sdc_weights_get(&w, c[i].tensor, 4, (int64_t[]){c[i].rows, c[i].cols / 9, 3, 3})
                             : sdc_weights_get_linear(&w, c[i].tensor, c[i].rows, c[i].cols, 0);
      char what[200];
      snprintf(what, sizeof what, "LDM %s", c[i].mod + 10);
      compare(what, got, want, base, n);
      free(want), free(base);
    }
  }
  sdc_weights_free(&w);
  sdc_lora_set_free(set);
  sdc_model_close(&m);
}

/* A view that hands out parts of a fused tensor (OpenCLIP's in_proj split into q, k, v): only k's part is merged. */
static void test_parts(void) {
  char ckpt[1400], lora[1400];
  snprintf(ckpt, sizeof ckpt, "%s/openclip.safetensors", g_tmp);
  snprintf(lora, sizeof lora, "%s/k.safetensors", g_tmp);
  const spec c[] = {{"cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 2, {192, 64}, 0}};
  write_file(ckpt, c, 1);
  const spec l[] = {{"lora_te_text_model_encoder_layers_0_self_attn_k_proj.alpha", 0, {0}, 2.0f},
                    {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight", 2, {4, 64}, 0},
                    {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_up.weight", 2, {64, 4}, 0}};
  write_file(lora, l, 3);
  sdc_st_file f;
  sdc_weights w;
  sdc_lora_set *set = NULL;
  sdc_lora_ref ref = {.multiplier = -2.0};
  snprintf(ref.path, sizeof ref.path, "%s", lora);
  int err = sdc_st_open(&f, ckpt);
  if (!err) err = sdc_checkpoint_weights(&w, &f, SDC_FAMILY_SD2, "text_encoder", NULL);
  if (!err) err = sdc_lora_set_open(&set, &ref, 1);
  if (!err) err = sdc_weights_set_lora(&w, set, SDC_COMP_TEXT_ENCODER);
  CHECK(err == 0, "fused in_proj view with a LoRA: %s", sdc_errmsg(err));
  if (!err) {
    int64_t n, nk;
    double *fused = naive(ckpt, c[0].name, NULL, 0, &n); /* [192, 64]: q, k, v rows */
    const term t[] = {{lora, "lora_te_text_model_encoder_layers_0_self_attn_k_proj", -2.0}};
    /* the naive merge of k alone, on a file holding only k's rows */
    char konly[1400];
    snprintf(konly, sizeof konly, "%s/konly.safetensors", g_tmp);
    float *rows = malloc(64 * 64 * sizeof *rows);
    for (int i = 0; i < 64 * 64; i++) rows[i] = (float)fused[64 * 64 + i];
    const char *kn[] = {"k"};
    const sdc_tensor kt[] = {{.dtype = SDC_F32, .ndim = 2, .shape = {64, 64}, .data = rows}};
    CHECK(sdc_st_write(konly, 1, kn, kt) == 0, "write %s", konly);
    double *want = naive(konly, "k", t, 1, &nk);
    compare("fused in_proj, part k (1 of 3), -2.0",
            sdc_weights_get_linear(&w, "text_model.encoder.layers.0.self_attn.k_proj.weight", 64, 64, 0), want, fused + 64 * 64, nk);
    compare("fused in_proj, part q untouched", sdc_weights_get_linear(&w, "text_model.encoder.layers.0.self_attn.q_proj.weight", 64, 64, 0),
            fused, NULL, 64 * 64);
    free(rows), free(want), free(fused);
    sdc_weights_free(&w);
  }
  sdc_lora_set_free(set);
  sdc_st_close(&f);
}

/* A bad adapter: one line naming the file and the culprit, and the view left as it was. */
static void expect_bad(const char *what, const spec *s, int n, double mult, const char *needle) {
  char path[1400], model[1200];
  snprintf(path, sizeof path, "%s/bad.safetensors", g_tmp);
  snprintf(model, sizeof model, "%s/tiny-sd1", g_ref);
  remove(path);
  if (n >= 0) write_file(path, s, n);
  else {
    FILE *fp = fopen(path, "w");
    fputs("this is not a safetensors file\n", fp);
    fclose(fp);
  }
  /* a good file first: its modules must not stay applied when the second one fails */
  sdc_lora_ref refs[2] = {{.multiplier = 1}, {.multiplier = mult}};
  snprintf(refs[0].path, sizeof refs[0].path, "%s/pipelines/lora/tiny-sd1-style.safetensors", g_ref);
  snprintf(refs[1].path, sizeof refs[1].path, "%s", path);
  sdc_model m;
  sdc_weights w;
  memset(&w, 0, sizeof w);
  sdc_lora_set *set = NULL;
  int err = sdc_model_open(&m, model, NULL);
  CHECK(err == 0, "open: %s", sdc_errmsg(err));
  if (err) return;
  err = sdc_lora_set_open(&set, refs, 2);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_UNET, &w);
  if (!err) {
    err = sdc_weights_set_lora(&w, set, SDC_COMP_UNET);
    CHECK(!err || w.n_overlay == 0, "%s: the view kept %lld overlays after a failure", what, (long long)w.n_overlay);
  }
  const char *msg = sdc_errmsg(err);
  printf("%-34s -> %s\n", what, err ? msg : "(accepted)");
  CHECK(err != 0, "%s: accepted", what);
  CHECK(err == 0 || strstr(msg, needle), "%s: message lacks '%s': %s", what, needle, msg);
  CHECK(err == 0 || strstr(msg, "bad.safetensors"), "%s: message does not name the file: %s", what, msg);
  CHECK(!strchr(msg, '\n'), "%s: more than one line: %s", what, msg);
  sdc_weights_free(&w);
  sdc_lora_set_free(set);
  sdc_model_close(&m);
}

static void test_bad_files(void) {
#define Q "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
  const spec nomod[] = {{"lora_unet_foo.lora_down.weight", 2, {4, 32}, 0}, {"lora_unet_foo.lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("module names nothing", nomod, 2, 1, "lora_unet_foo names no module of the unet");
  const spec shape[] = {{Q ".lora_down.weight", 2, {4, 33}, 0}, {Q ".lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("wrong shape", shape, 2, 1, "does not fit");
  const spec conv[] = {{Q ".lora_down.weight", 4, {4, 32, 3, 3}, 0}, {Q ".lora_up.weight", 4, {32, 4, 1, 1}, 0}};
  expect_bad("3x3 factors on a linear", conv, 2, 1, "does not fit");
  const spec rank[] = {{Q ".lora_down.weight", 2, {4, 32}, 0}, {Q ".lora_up.weight", 2, {32, 8}, 0}};
  expect_bad("rank mismatch", rank, 2, 1, "rank 4 but lora_up 8");
  const spec half[] = {{Q ".lora_down.weight", 2, {4, 32}, 0}};
  expect_bad("missing lora_up", half, 1, 1, "has no lora_up.weight");
  const spec half2[] = {{Q ".alpha", 0, {0}, 2.0f}, {Q ".lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("missing lora_down", half2, 2, 1, "has no lora_down.weight");
  expect_bad("not a safetensors file", NULL, -1, 1, "LoRA");
  expect_bad("no tensors at all", NULL, 0, 1, "no LoRA keys");
  const spec other[] = {{"model.diffusion_model.out.2.weight", 2, {4, 4}, 0}};
  expect_bad("a checkpoint, not a LoRA", other, 1, 1, "is not a LoRA tensor");
  const spec alpha[] = {{Q ".alpha", 0, {0}, INFINITY}, {Q ".lora_down.weight", 2, {4, 32}, 0},
                        {Q ".lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("infinite alpha", alpha, 3, 1, "alpha is not finite");
  const spec good[] = {{Q ".lora_down.weight", 2, {4, 32}, 0}, {Q ".lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("NaN multiplier", good, 2, NAN, "multiplier is not finite");
  const spec sdxl[] = {{"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", 2, {4, 64}, 0},
                       {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", 2, {256, 4}, 0}};
  expect_bad("SDXL text encoder", sdxl, 2, 1, "SDXL");
  const spec twice[] = {{Q ".lora_down.weight", 2, {4, 32}, 0},
                        {Q ".lora_up.weight", 2, {32, 4}, 0},
                        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_down.weight", 2, {4, 32}, 0},
                        {"lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_up.weight", 2, {32, 4}, 0}};
  expect_bad("one module under two names", twice, 4, 1, "a second time");
#undef Q
}

static void test_parse(void) {
  static const struct {
    const char *arg, *path;
    double mult; /* NAN: an error */
  } c[] = {{"style.safetensors", "style.safetensors", 1},
           {"style.safetensors:0.8", "style.safetensors", 0.8},
           {"dir/style.safetensors:-0.25", "dir/style.safetensors", -0.25},
           {"a:b/style.safetensors:1e-1", "a:b/style.safetensors", 0.1},
           {"a:b/style.safetensors", "a:b/style.safetensors", 1},
           {"x:notanumber", NULL, NAN},
           {"x:nan", NULL, NAN},
           {"x:inf", NULL, NAN},
           {":0.5", NULL, NAN},
           {"", NULL, NAN}};
  for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
    sdc_lora_ref r;
    int err = sdc_lora_ref_parse(c[i].arg, &r);
    if (c[i].path) {
      CHECK(err == 0 && strcmp(r.path, c[i].path) == 0 && r.multiplier == c[i].mult, "'%s' -> '%s' %g (%s)", c[i].arg,
            err ? "" : r.path, err ? 0 : r.multiplier, err ? sdc_errmsg(err) : "ok");
    } else {
      CHECK(err != 0 && strstr(sdc_errmsg(err), c[i].arg) && !strchr(sdc_errmsg(err), '\n'), "'%s' accepted or unnamed: %s",
            c[i].arg, err ? sdc_errmsg(err) : "accepted");
      if (err) printf("%-34s -> %s\n", c[i].arg, sdc_errmsg(err));
    }
  }
}

int main(void) {
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("no reference folder (SDC_REF)");
  snprintf(g_ref, sizeof g_ref, "%s", ref);
  snprintf(g_tmp, sizeof g_tmp, "%s", sdc_test_tmpdir());
  test_parse();
  test_merge();
  test_ldm_names();
  test_parts();
  test_bad_files();
  sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_lora");
}
