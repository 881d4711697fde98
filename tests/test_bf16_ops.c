/* test_bf16_ops.c - the bf16 conv, linear and attention kernels against the f32 references run on bf16-rounded inputs.
 *
 * In bf16 precision a GEMM's inputs are rounded to bf16 (nearest even) and its
 * products accumulate in f32. A bf16 x bf16 product is exact in f32, so once
 * the reference is fed the same rounded inputs the only difference left is
 * the order and width of the sums: the f32 tolerance of test_ops applies.
 * Attention also rounds its probabilities P to bf16; there the reference
 * mirrors that rounding, and the tolerance allows for the rare P whose f32
 * value (AMX scores, vector exp) and double value round to neighbouring bf16s. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "isa.h"
#include "onednn.h"
#include "ops.h"
#include "ops_bf16.h"
#include "test_isa.h"
#include "test_util.h"

/* Conv and linear: after pre-rounding only the f32 accumulation differs from
 * the double reference, as for the f32 kernels in test_ops. */
#define SDC__GEMM_TOL 1e-5
/* Attention: 1e-5 of max|ref| for the f32 sums (scores over dh, P @ V over
 * Nk), plus, per output, |v_j| times one bf16 step of each P_j within
 * SDC__P_NEAR (relative) of a rounding boundary: the kernel's P_j before
 * rounding differs from the double one by ~1e-6 relative (f32 scores, a
 * 2-ulp vector exp, f32 sums), so either neighbour is right for those. The
 * window is 2^-16, 1/256 of a bf16 step (2^-8 relative): about 1% of the P_j
 * get slack, and a kernel that skipped rounding P would be off by ~1e-4. */
#define SDC__ATTN_TOL 1e-5
#define SDC__P_NEAR 0x1p-16

/* worst errors seen, printed at the end beside their tolerances */
static double worst_conv, worst_linear, worst_attn;

static float *buf(int64_t n, uint32_t seed) {
  float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  if (!p) abort();
  sdc_test_fill(p, n, seed);
  return p;
}

/* x rounded to the nearest bf16, ties to even, kept as f32 (the values here are finite). */
static float bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* A fresh copy of x (n values) rounded to bf16; caller frees. */
static float *bf16_copy(const float *x, int64_t n) {
  float *r = buf(n, 0);
  for (int64_t i = 0; i < n; i++) r[i] = bf16_round(x[i]);
  return r;
}

static void test_bf16_rounding(void) {
  /* the helper itself: ties go to even, everything else to nearest */
  CHECK(bf16_round(1.0f + 0x1p-8f) == 1.0f, "tie below an even bf16 should round down");
  CHECK(bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f, "tie above an odd bf16 should round up");
  CHECK(bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f, "above the tie should round up");
  CHECK(bf16_round(-1.0f - 0x1p-9f) == -1.0f, "below the tie should round down (in magnitude)");
}

static void test_conv_bf16(sdc_arena *a) {
  /* B, Cin, H, W, Cout, kh, kw, stride, pad_t, pad_l, pad_b, pad_r */
  static const int64_t cases[][12] = {
      {1, 4, 7, 9, 3, 3, 3, 1, 1, 1, 1, 1},      /* same 3x3, tiny channels, odd sizes */
      {2, 3, 9, 7, 8, 3, 3, 1, 1, 1, 1, 1},      /* RGB in (VAE encoder conv_in) */
      {1, 8, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1},      /* to latent channels (UNet conv_out) */
      {2, 40, 9, 7, 33, 3, 3, 1, 1, 1, 1, 1},    /* channels not multiples of 16 */
      {1, 64, 12, 10, 64, 3, 3, 1, 1, 1, 1, 1},  /* a UNet resnet conv, shrunk */
      {1, 8, 9, 7, 5, 3, 3, 2, 1, 1, 1, 1},      /* UNet downsample, odd sizes */
      {2, 32, 16, 16, 32, 3, 3, 2, 1, 1, 1, 1},  /* UNet downsample */
      {1, 4, 8, 6, 4, 3, 3, 2, 0, 0, 1, 1},      /* VAE encoder (0,1,0,1) pad: Ho = H/2 */
      {2, 16, 7, 9, 8, 3, 3, 2, 0, 0, 1, 1},     /* the same on odd sizes: Ho = 3, Wo = 4 */
      {1, 4, 7, 9, 3, 1, 1, 1, 0, 0, 0, 0},      /* 1x1, tiny channels */
      {2, 50, 5, 6, 77, 1, 1, 1, 0, 0, 0, 0},    /* 1x1 shortcut, K and N not multiples of 16 */
      {1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1},      /* 1x1 image, all padding */
      {2, 96, 2, 2, 128, 3, 3, 1, 1, 1, 1, 1},   /* the tiny UNet's deepest level: 2x2 pixels, more channels */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int64_t *c = cases[i];
    sdc_conv_shape s = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], 0, 0, 0};
    s.Ho = sdc_conv_out_size(s.H, s.kh, s.stride, c[8], c[10]);
    s.Wo = sdc_conv_out_size(s.W, s.kw, s.stride, c[9], c[11]);
    const int64_t n_in = s.B * s.Cin * s.H * s.W, n_w = s.Cout * s.Cin * s.kh * s.kw, n_out = s.B * s.Cout * s.Ho * s.Wo;
    float *in = buf(n_in, 100 + i), *w = buf(n_w, 200 + i), *b = buf(s.Cout, 300 + i);
    float *in16 = bf16_copy(in, n_in), *w16 = bf16_copy(w, n_w), *got = buf(n_out, 4), *ref = buf(n_out, 5),
          *ref32 = buf(n_out, 6);
    sdc_wt wt = {NULL, sdc_onednn_pack_conv(w, s.Cout, s.Cin, s.kh, s.kw, s.stride, 0), 0};
    CHECK(wt.pk, "conv case %zu: packing failed: %s", i, sdc_errmsg(SDC_EUNSUPPORTED));
    for (int with_bias = 0; wt.pk && with_bias < 2; with_bias++) {
      const float *bias = with_bias ? b : NULL;
      int err = sdc_conv2d_wt(a, got, in, &wt, bias, &s);
      CHECK(err == 0, "conv case %zu (bias %d) failed: %s", i, with_bias, sdc_errmsg(err));
      sdc_conv2d_ref(ref, in16, w16, bias, &s);
      double e = sdc_test_rel_err(got, ref, n_out);
      worst_conv = fmax(worst_conv, e);
      CHECK(e < SDC__GEMM_TOL, "conv case %zu (bias %d, %lldx%lld -> %lldx%lld): rel err %g against bf16-rounded ref", i,
            with_bias, (long long)s.H, (long long)s.W, (long long)s.Ho, (long long)s.Wo, e);
      /* and it really ran in bf16: the unrounded f32 answer is farther away */
      sdc_conv2d_ref(ref32, in, w, bias, &s);
      double e32 = sdc_test_rel_err(got, ref32, n_out);
      CHECK(e32 > 10 * e, "conv case %zu: as close to the f32 ref (%g) as to the bf16 one (%g): not rounded?", i, e32, e);
    }
    sdc_onednn_packed_free((void *)wt.pk);
    free(in), free(w), free(b), free(in16), free(w16), free(got), free(ref), free(ref32);
  }
}

static void test_linear_bf16(sdc_arena *a) {
  /* M, K, N: every M a model uses (1 token, 2 timesteps, 77 tokens, 300 pixels), K and N off 16 */
  static const int64_t cases[][3] = {{1, 33, 7}, {1, 320, 1281}, {2, 77, 45}, {2, 320, 1280},
                                     {77, 768, 321}, {77, 13, 3}, {300, 40, 97}, {300, 1000, 77}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int64_t M = cases[i][0], K = cases[i][1], N = cases[i][2];
    float *in = buf(M * K, 400 + i), *w = buf(N * K, 500 + i), *b = buf(N, 600 + i);
    float *in16 = bf16_copy(in, M * K), *w16 = bf16_copy(w, N * K), *got = buf(M * N, 0), *ref = buf(M * N, 0);
    sdc_wt wt = {NULL, sdc_onednn_pack_linear(w, N, K, 0), 0};
    CHECK(wt.pk, "linear %lldx%lldx%lld: packing failed", (long long)M, (long long)K, (long long)N);
    for (int with_bias = 0; wt.pk && with_bias < 2; with_bias++) {
      const float *bias = with_bias ? b : NULL;
      int err = sdc_linear_wt(a, got, in, &wt, bias, M, K, N);
      CHECK(err == 0, "linear %lldx%lldx%lld failed: %s", (long long)M, (long long)K, (long long)N, sdc_errmsg(err));
      sdc_linear_ref(ref, in16, w16, bias, M, K, N);
      double e = sdc_test_rel_err(got, ref, M * N);
      worst_linear = fmax(worst_linear, e);
      CHECK(e < SDC__GEMM_TOL, "linear %lldx%lldx%lld (bias %d): rel err %g against bf16-rounded ref", (long long)M,
            (long long)K, (long long)N, with_bias, e);
    }
    sdc_onednn_packed_free((void *)wt.pk);
    free(in), free(w), free(b), free(in16), free(w16), free(got), free(ref);
  }
}

/* The bf16 attention's arithmetic in double: q*scale (an f32 product) rounded
 * to bf16, k and v rounded, scores in double, P = exp(score - max) rounded
 * to bf16 before normalising, P @ V in double, divided by the sum of the
 * unrounded exponentials (flash-attention style, as the kernels do). Shapes as sdc_attention.
 * slack (B,Nq,H*dh) gets, per output, what the P_j that lie within
 * SDC__P_NEAR of a bf16 rounding boundary could move it by if the kernel's
 * f32 P_j (AMX scores, vector exp) rounds to the other neighbour. */
static void attention_bf16_ref(float *out, float *slack /* OUT */, const float *q, const float *k, const float *v,
                               const sdc_attn_shape *s) {
  const int64_t D = s->heads * s->dh;
  double *p = malloc((size_t)s->Nk * sizeof *p), *dp = malloc((size_t)s->Nk * sizeof *dp);
  float *qs = malloc((size_t)s->dh * sizeof *qs);
  if (!p || !dp || !qs) abort();
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t h = 0; h < s->heads; h++)
      for (int64_t i = 0; i < s->Nq; i++) {
        const float *qi = q + (b * s->Nq + i) * s->ldq + h * s->dh;
        for (int64_t c = 0; c < s->dh; c++) qs[c] = bf16_round(qi[c] * s->scale);
        const int64_t lim = s->causal ? (i + 1 < s->Nk ? i + 1 : s->Nk) : s->Nk;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < lim; j++) {
          const float *kj = k + (b * s->Nk + j) * s->ldk + h * s->dh;
          double d = 0.0;
          for (int64_t c = 0; c < s->dh; c++) d += (double)qs[c] * bf16_round(kj[c]);
          p[j] = d;
          mx = d > mx ? d : mx;
        }
        for (int64_t j = 0; j < lim; j++) {
          const double ej = exp(p[j] - mx);
          sum += ej;
          p[j] = bf16_round((float)ej);
          dp[j] = bf16_round((float)(ej * (1 + SDC__P_NEAR))) - bf16_round((float)(ej * (1 - SDC__P_NEAR)));
        }
        for (int64_t c = 0; c < s->dh; c++) {
          double acc = 0.0, sl = 0.0;
          for (int64_t j = 0; j < lim; j++) {
            const double vj = bf16_round(v[(b * s->Nk + j) * s->ldv + h * s->dh + c]);
            acc += p[j] * vj;
            sl += dp[j] * fabs(vj);
          }
          out[(b * s->Nq + i) * D + h * s->dh + c] = (float)(acc / sum);
          slack[(b * s->Nq + i) * D + h * s->dh + c] = (float)(sl / sum);
        }
      }
  free(p), free(dp), free(qs);
}

/* max over i of |got - ref| / (tol * max|ref| + slack[i]): at most 1 passes. */
static double attn_err(const float *got, const float *ref, const float *slack, int64_t n) {
  double mr = 0.0, worst = 0.0;
  for (int64_t i = 0; i < n; i++) mr = fmax(mr, fabs((double)ref[i]));
  for (int64_t i = 0; i < n; i++) {
    double r = fabs((double)got[i] - ref[i]) / (SDC__ATTN_TOL * mr + slack[i]);
    if (!(r <= worst)) worst = isnan(r) ? INFINITY : r;
  }
  return worst;
}

static void test_attention_bf16(sdc_arena *a) {
  /* B, Nq, Nk, heads, dh, causal, extra row padding of q / k / v (ldq = D + pad, ldk = D + 2 pad, ldv = D + 3 pad) */
  static const int64_t cases[][7] = {
      {1, 5, 5, 1, 8, 0, 0},       /* smallest */
      {2, 64, 77, 8, 40, 0, 0},    /* SD 1.5 cross-attention: 8 heads of 40, 77 text tokens */
      {2, 130, 77, 5, 64, 0, 3},   /* SD 2 cross-attention heads, queries past two 64-row tiles, strided */
      {2, 100, 100, 2, 80, 0, 7},  /* self-attention, dh 80 (SD 2 / SDXL), strided */
      {1, 50, 33, 4, 160, 0, 0},   /* dh 160 (SD 1.5's deepest level), Nq > Nk */
      {2, 77, 77, 8, 64, 1, 0},    /* CLIP: causal, 77 tokens, batch 2 */
      {1, 77, 77, 3, 40, 1, 5},    /* causal, strided */
      {1, 256, 256, 1, 512, 0, 0}, /* VAE mid-block: one head of 512 over 16x16 pixels */
      {2, 33, 200, 6, 8, 0, 16},   /* Nq < Nk, tiny heads */
      {1, 300, 9, 7, 8, 0, 1},     /* many queries, few keys */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int64_t *c = cases[i], D = c[3] * c[4];
    sdc_attn_shape s = {c[0], c[1], c[2], c[3], c[4], D + c[6], D + 2 * c[6], D + 3 * c[6],
                        (float)(1.0 / sqrt((double)c[4])), (int)c[5], SDC_PREC_BF16};
    float *q = buf(s.B * s.Nq * s.ldq, 700 + i), *k = buf(s.B * s.Nk * s.ldk, 800 + i),
          *v = buf(s.B * s.Nk * s.ldv, 900 + i);
    /* scores of a few units, as in trained models: a peaked P exercises rounding of small probabilities */
    for (int64_t j = 0; j < s.B * s.Nq * s.ldq; j++) q[j] *= 3.0f;
    const int64_t n_out = s.B * s.Nq * D;
    float *got = buf(n_out, 0), *ref = buf(n_out, 0), *slack = buf(n_out, 0);
    int err = sdc_attention(a, got, q, k, v, &s);
    CHECK(err == 0, "attention case %zu failed: %s", i, sdc_errmsg(err));
    attention_bf16_ref(ref, slack, q, k, v, &s);
    double e = attn_err(got, ref, slack, n_out);
    worst_attn = fmax(worst_attn, e);
    CHECK(e <= 1.0, "attention case %zu (B %lld Nq %lld Nk %lld heads %lld dh %lld causal %d): err %g of what is allowed",
          i, (long long)s.B, (long long)s.Nq, (long long)s.Nk, (long long)s.heads, (long long)s.dh, s.causal, e);
    /* and it really ran in bf16: the f32 attention is farther away than the tolerance */
    sdc_attention_ref(ref, q, k, v, &s);
    double e32 = sdc_test_rel_err(got, ref, n_out);
    CHECK(e32 > 10 * SDC__ATTN_TOL, "attention case %zu: within %g of the f32 attention: not rounded?", i, e32);
    free(q), free(k), free(v), free(got), free(ref), free(slack);
  }
}

static void test_precision_names(void) {
  sdc_precision p = SDC_PREC_BF16;
  CHECK(sdc_precision_parse("fp32", &p) == 0 && p == SDC_PREC_FP32, "fp32 should parse");
  CHECK(sdc_precision_parse("bf16", &p) == 0 && p == SDC_PREC_BF16, "bf16 should parse");
  static const char *bad[] = {"fp16", "BF16", "", "bf16 "};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int err = sdc_precision_parse(bad[i], &p);
    CHECK(err == SDC_EINVAL, "precision '%s' should be SDC_EINVAL, got %d", bad[i], err);
    if (*bad[i]) CHECK(strstr(sdc_errmsg(err), bad[i]) != NULL, "message should name '%s': %s", bad[i], sdc_errmsg(err));
  }
  CHECK(strcmp(sdc_precision_name(SDC_PREC_BF16), "bf16") == 0, "name of bf16");
}

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* max over i of |bf16 got - ref| / (2^-8 |ref| + 1e-5 max|ref|): the output
 * is ref rounded to bf16 (at most half a step, 2^-9) after f32 arithmetic
 * that may differ from the reference's by ulps; at most 1 passes. */
static double bf16_out_err(const uint16_t *got, const float *ref, int64_t n) {
  double mr = 0.0, worst = 0.0;
  for (int64_t i = 0; i < n; i++) mr = fmax(mr, fabs((double)ref[i]));
  for (int64_t i = 0; i < n; i++) {
    double r = fabs((double)bf16_to_f32(got[i]) - ref[i]) / (0x1p-8 * fabs((double)ref[i]) + 1e-5 * mr);
    if (!(r <= worst)) worst = isnan(r) ? INFINITY : r;
  }
  return worst;
}

/* The kernels that write the bf16 inputs of the GEMMs, against the f32 ops. */
static void test_bf16_producers(sdc_arena *a) {
  /* B, C, HW, groups */
  static const int64_t gn[][4] = {{2, 32, 63, 8}, {1, 4, 5, 2}, {2, 48, 33, 16}, {1, 320, 256, 32}};
  for (size_t i = 0; i < sizeof gn / sizeof *gn; i++)
    for (int silu = 0; silu < 2; silu++)
      for (int mode = 0; mode < 3; mode++) { /* NCHW in; NHWC in; NHWC in plus a per-channel add */
        const int64_t B = gn[i][0], C = gn[i][1], HW = gn[i][2], G = gn[i][3], n = B * C * HW;
        const int nhwc = mode > 0;
        float *x = buf(n, 40 + i), *g = buf(C, 50 + i), *bt = buf(C, 60 + i), *ref = buf(n, 0), *ref_t = buf(n, 0),
              *x_t = buf(n, 0), *add = mode == 2 ? buf(B * C, 65 + i) : NULL;
        for (int64_t j = 0; j < n; j++) x[j] = 3.0f * x[j] + 0.5f; /* an offset: the mean matters */
        uint16_t *got = malloc((size_t)n * sizeof *got);
        sdc_group_norm_to(ref, x, add, g, bt, B, C, HW, G, 1e-5, silu);
        sdc_nchw_to_nhwc(ref_t, ref, B, C, HW);
        sdc_nchw_to_nhwc(x_t, x, B, C, HW);
        CHECK(sdc_group_norm_bf16(a, got, nhwc ? x_t : x, nhwc, add, g, bt, B, C, HW, G, 1e-5, silu) == 0,
              "group norm bf16");
        double e = bf16_out_err(got, ref_t, n);
        CHECK(e <= 1.0, "group norm bf16 case %zu (silu %d, mode %d): err %g of what is allowed", i, silu, mode, e);
        free(x), free(g), free(bt), free(ref), free(ref_t), free(x_t), free(add), free(got);
      }
  /* the per-channel add is for NHWC input only: NCHW with one is refused, not ignored */
  {
    float x[8] = {0}, g[4] = {1, 1, 1, 1}, bt[4] = {0}, add[4] = {1, 2, 3, 4};
    uint16_t out[8];
    CHECK(sdc_group_norm_bf16(a, out, x, 0, add, g, bt, 1, 4, 2, 2, 1e-5, 0) != 0, "NCHW group norm with an add accepted");
  }
  /* rows, C */
  static const int64_t ln[][2] = {{5, 40}, {77, 768}, {3, 7}};
  for (size_t i = 0; i < sizeof ln / sizeof *ln; i++) {
    const int64_t R = ln[i][0], C = ln[i][1];
    float *x = buf(R * C, 70 + i), *g = buf(C, 71 + i), *bt = buf(C, 72 + i), *ref = buf(R * C, 0);
    uint16_t *got = malloc((size_t)(R * C) * sizeof *got);
    sdc_layer_norm(ref, x, g, bt, R, C, 1e-5);
    sdc_layer_norm_bf16(got, x, g, bt, R, C, 1e-5);
    double e = bf16_out_err(got, ref, R * C);
    CHECK(e <= 1.0, "layer norm bf16 %lldx%lld: err %g of what is allowed", (long long)R, (long long)C, e);
    /* GEGLU over the same rows as [h | g] halves */
    if (C % 2 == 0) {
      float *gref = buf(R * C / 2, 0);
      sdc_geglu(gref, x, R, C / 2);
      sdc_geglu_bf16(got, x, R, C / 2);
      e = bf16_out_err(got, gref, R * C / 2);
      CHECK(e <= 1.0, "geglu bf16 %lldx%lld: err %g of what is allowed", (long long)R, (long long)C / 2, e);
      free(gref);
    }
    /* plain rounding is exact: RNE both ways */
    sdc_f32_to_bf16_rows(got, x, R, C);
    int same = 1;
    for (int64_t j = 0; j < R * C; j++) same &= bf16_to_f32(got[j]) == bf16_round(x[j]);
    CHECK(same, "f32 -> bf16 rows %lldx%lld is not round-to-nearest-even", (long long)R, (long long)C);
    free(x), free(g), free(bt), free(ref), free(got);
  }
  /* the bf16 transpose: B, C, HW with partial 16x16 tiles on both sides (the way back to NCHW is
   * sdc_nhwc_to_nchw_add, shared with the f32 path and checked in test_ops) */
  static const int64_t tr[][3] = {{2, 5, 7}, {1, 33, 17}, {2, 320, 64}};
  for (size_t i = 0; i < sizeof tr / sizeof *tr; i++) {
    const int64_t B = tr[i][0], C = tr[i][1], HW = tr[i][2], n = B * C * HW;
    float *x = buf(n, 80 + i), *xt = buf(n, 0);
    uint16_t *got = malloc((size_t)n * sizeof *got);
    sdc_nchw_to_nhwc_bf16(got, x, B, C, HW);
    sdc_nchw_to_nhwc(xt, x, B, C, HW);
    int same = 1;
    for (int64_t j = 0; j < n; j++) same &= bf16_to_f32(got[j]) == bf16_round(xt[j]);
    CHECK(same, "nchw -> nhwc bf16 %lldx%lldx%lld differs from transpose + rounding", (long long)B, (long long)C,
          (long long)HW);
    free(x), free(xt), free(got);
  }
}

int main(void) {
  test_precision_names();
  char why[512] = "";
  int err = SDC_OK;
  sdc_test_isa_cap();
  if (!sdc_isa_bf16()) {
    /* refused in one line that says why: the CPU, or the cap SDC_ISA puts on it */
    err = sdc_precision_check(SDC_PREC_BF16);
    CHECK(err == SDC_EUNSUPPORTED && strstr(sdc_errmsg(err), sdc_isa_level() < sdc_isa_host() ? "SDC_ISA" : "AVX512-BF16"),
          "bf16 on a level without AVX512-BF16: %s", sdc_errmsg(err));
    snprintf(why, sizeof why, "kernels at ISA level %s (this CPU: %s) have no AVX512-BF16: bf16 precision cannot run",
             sdc_isa_name(sdc_isa_level()), sdc_isa_name(sdc_isa_host()));
  } else if ((err = sdc_precision_check(SDC_PREC_BF16)))
    snprintf(why, sizeof why, "sdc_precision_check(bf16): %s", sdc_errmsg(err));
  if (*why) {
    if (sdc_test_failures) return sdc_test_finish("test_bf16_ops"); /* a skip must not hide a failure */
    sdc_test_skip(why);
  }
  printf("oneDNN ready\n");
  sdc_arena a;
  sdc_arena_init(&a, 1 << 20);
  test_bf16_rounding();
  test_conv_bf16(&a);
  printf("conv kernel family: %s\n", sdc_onednn_isa());
  test_linear_bf16(&a);
  test_attention_bf16(&a);
  test_bf16_producers(&a);
  printf("worst errors: conv %.2e, linear %.2e (tol %.0e of max(1, max|ref|)); attention %.2f of what is allowed\n",
         worst_conv, worst_linear, SDC__GEMM_TOL, worst_attn);
  CHECK(a.used_bytes == 0, "bf16 ops leaked %zu arena bytes", a.used_bytes);
  sdc_arena_free(&a);
  return sdc_test_finish("test_bf16_ops");
}
