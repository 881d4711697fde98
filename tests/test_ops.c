/* test_ops.c - every fast kernel against its naive reference, over awkward shapes (one table, one loop per op). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"
#include "onednn.h"
#include "ops.h"
#include "test_isa.h"
#include "test_util.h"

static float *buf(int64_t n, uint32_t seed) {
  float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  if (!p) abort();
  sdc_test_fill(p, n, seed);
  return p;
}

static void test_conv2d(sdc_arena *a) {
  /* B, Cin, H, W, Cout, kh, kw, stride, pad_t, pad_l, pad_b, pad_r */
  static const int64_t cases[][12] = {
      {2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1},   /* same 3x3 */
      {1, 4, 8, 8, 6, 3, 3, 2, 1, 1, 1, 1},   /* UNet downsample */
      {1, 4, 8, 6, 4, 3, 3, 2, 0, 0, 1, 1},   /* VAE encoder (0,1,0,1) pad */
      {1, 4, 7, 5, 4, 3, 3, 2, 0, 0, 1, 1},   /* odd sizes, asymmetric */
      {2, 5, 4, 3, 7, 1, 1, 1, 0, 0, 0, 0},   /* 1x1 direct GEMM path */
      {1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1},   /* 1x1 image, all padding */
      {1, 3, 6, 6, 2, 5, 5, 1, 2, 2, 2, 2},   /* 5x5 kernel */
      {2, 40, 9, 7, 33, 3, 3, 1, 1, 1, 1, 1}, /* shifted-GEMM path: stride 1, Cin >= 32 */
      {1, 64, 1, 5, 16, 3, 3, 1, 1, 1, 1, 1}, /* shifted path, one-row image */
      {1, 32, 6, 6, 8, 5, 5, 1, 2, 2, 2, 2},  /* shifted path, 5x5 taps */
      {1, 64, 40, 2000, 4, 3, 3, 1, 1, 1, 1, 1}, /* shifted path in row blocks of 14, last one partial */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int64_t *c = cases[i];
    sdc_conv_shape s = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], 0, 0, 0};
    s.Ho = sdc_conv_out_size(s.H, s.kh, s.stride, c[8], c[10]);
    s.Wo = sdc_conv_out_size(s.W, s.kw, s.stride, c[9], c[11]);
    int64_t n_out = s.B * s.Cout * s.Ho * s.Wo;
    float *in = buf(s.B * s.Cin * s.H * s.W, 1 + i), *w = buf(s.Cout * s.Cin * s.kh * s.kw, 2 + i), *b = buf(s.Cout, 3 + i);
    float *got = buf(n_out, 4), *ref = buf(n_out, 5);
    CHECK(sdc_conv2d(a, got, in, w, i % 2 ? b : NULL, &s) == 0, "conv case %zu failed", i);
    sdc_conv2d_ref(ref, in, w, i % 2 ? b : NULL, &s);
    double e = sdc_test_rel_err(got, ref, n_out);
    CHECK(e < 1e-5, "conv case %zu: rel err %g", i, e);
    if (s.kh == s.kw && sdc_conv_packs(s.Cin, s.kh, s.stride) && s.pad_t == s.kh / 2 && s.Ho == s.H) {
      /* the same conv with weights packed tap-major, as loaders store them */
      const int64_t taps = s.kh * s.kw;
      float *wt = buf(s.Cout * s.Cin * taps, 0);
      for (int64_t o = 0; o < s.Cout; o++)
        for (int64_t ci = 0; ci < s.Cin; ci++)
          for (int64_t t = 0; t < taps; t++) wt[(t * s.Cout + o) * s.Cin + ci] = w[(o * s.Cin + ci) * taps + t];
      s.w_taps = 1;
      CHECK(sdc_conv2d(a, got, in, wt, i % 2 ? b : NULL, &s) == 0, "conv case %zu (tap-major) failed", i);
      e = sdc_test_rel_err(got, ref, n_out);
      CHECK(e < 1e-5, "conv case %zu tap-major: rel err %g", i, e);
      free(wt);
    }
    /* fp32 precision's path: the weights packed f32 for oneDNN at load, the
     * conv in oneDNN's blocked layouts; twice, as the second call finds the
     * weights re-packed into the layout the first one chose */
    sdc_wt pk = {NULL, sdc_onednn_pack_conv(w, s.Cout, s.Cin, s.kh, s.kw, s.stride, 1), 0};
    CHECK(pk.pk != NULL, "conv case %zu: f32 weights could not be packed", i);
    for (int call = 0; pk.pk && call < 2; call++) {
      memset(got, 0, (size_t)n_out * sizeof *got);
      CHECK(sdc_conv2d_wt(a, got, in, &pk, i % 2 ? b : NULL, &s) == 0, "conv case %zu (packed f32) failed", i);
      e = sdc_test_rel_err(got, ref, n_out);
      CHECK(e < 1e-5, "conv case %zu packed f32, call %d: rel err %g", i, call, e);
    }
    sdc_onednn_packed_free((void *)pk.pk);
    free(in), free(w), free(b), free(got), free(ref);
  }
}

static void test_linear(sdc_arena *a) {
  static const int64_t cases[][3] = {{1, 1, 1}, {3, 5, 7}, {77, 64, 192}, {10, 33, 2}, {2048, 320, 1280}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int64_t M = cases[i][0], K = cases[i][1], N = cases[i][2];
    float *in = buf(M * K, 10 + i), *w = buf(N * K, 11 + i), *b = buf(N, 12 + i), *got = buf(M * N, 0), *ref = buf(M * N, 0);
    sdc_linear(got, in, w, i % 2 ? b : NULL, M, K, N);
    sdc_linear_ref(ref, in, w, i % 2 ? b : NULL, M, K, N);
    double e = sdc_test_rel_err(got, ref, M * N);
    CHECK(e < 1e-5, "linear %lldx%lldx%lld: rel err %g", (long long)M, (long long)K, (long long)N, e);
    /* packed f32 for oneDNN's matmul, then at two row counts (the second
     * wants its own layout on some kernels: an alternate copy) */
    sdc_wt pk = {NULL, sdc_onednn_pack_linear(w, N, K, 1), 0};
    CHECK(pk.pk != NULL, "linear %lldx%lldx%lld: f32 weights could not be packed", (long long)M, (long long)K, (long long)N);
    for (int64_t rows = M; pk.pk && rows >= 1; rows = rows > 1 ? rows / 2 : 0) {
      memset(got, 0, (size_t)(M * N) * sizeof *got);
      CHECK(sdc_linear_wt(a, got, in, &pk, i % 2 ? b : NULL, rows, K, N) == 0, "linear (packed f32) failed");
      e = sdc_test_rel_err(got, ref, rows * N);
      CHECK(e < 1e-5, "linear %lldx%lldx%lld packed f32: rel err %g", (long long)rows, (long long)K, (long long)N, e);
      if (rows > 16) rows = 17; /* then 8, 4, 2, 1 */
    }
    sdc_onednn_packed_free((void *)pk.pk);
    free(in), free(w), free(b), free(got), free(ref);
  }
}

static void test_attention(sdc_arena *a) {
  /* B, Nq, Nk, heads, dh, causal, row padding of q/k/v (strided views) */
  static const int64_t cases[][7] = {
      {1, 5, 5, 1, 4, 0, 0}, {2, 7, 77, 4, 8, 0, 0}, {2, 9, 9, 3, 2, 1, 0},
      {1, 300, 300, 2, 4, 0, 3}, /* more queries than one tile */
      {1, 77, 77, 4, 16, 1, 5},  /* CLIP-like causal, strided rows */
      {2, 130, 70, 2, 40, 0, 0}, /* SD 1.5 head size: three 16-wide output columns, keys past 64 */
      {1, 50, 129, 2, 80, 0, 2}, /* 80 = 64 + 16 output columns */
      {1, 49, 64, 1, 160, 1, 0}, /* 160 = 64 + 64 + 32, causal */
      {1, 20, 20, 1, 512, 0, 0}, /* the VAE's single head */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int64_t *c = cases[i], D = c[3] * c[4], ld = D + c[6];
    sdc_attn_shape s = {c[0], c[1], c[2], c[3], c[4], ld, ld, ld, (float)(1.0 / sqrt((double)c[4])), (int)c[5],
                        SDC_PREC_FP32};
    float *q = buf(s.B * s.Nq * ld, 20 + i), *k = buf(s.B * s.Nk * ld, 21 + i), *v = buf(s.B * s.Nk * ld, 22 + i);
    float *got = buf(s.B * s.Nq * D, 0), *ref = buf(s.B * s.Nq * D, 0);
    CHECK(sdc_attention(a, got, q, k, v, &s) == 0, "attention case %zu failed", i);
    sdc_attention_ref(ref, q, k, v, &s);
    double e = sdc_test_rel_err(got, ref, s.B * s.Nq * D);
    CHECK(e < 1e-5, "attention case %zu: rel err %g", i, e);
    free(q), free(k), free(v), free(got), free(ref);
  }
}

/* Group norm of x (+ shift) against its definition in double; in place or
 * out of place, with and without SiLU. Returns the worst absolute error. */
static double group_norm_err(const int64_t *c, int out_of_place, int with_shift, int silu) {
  const int64_t B = c[0], C = c[1], HW = c[2], G = c[3], cpg = C / G, n = B * C * HW;
  float *x = buf(n, 30 + C), *g = buf(C, 31), *b = buf(C, 32), *y = buf(n, 0), *sh = buf(B * C, 36);
  for (int64_t i = 0; i < n; i++) x[i] = 3.0f + 5.0f * x[i]; /* offset mean: tests the two-pass variance */
  const float *shift = with_shift ? sh : NULL;
  if (out_of_place) {
    sdc_group_norm_to(y, x, shift, g, b, B, C, HW, G, 1e-6, silu);
  } else {
    memcpy(y, x, (size_t)n * sizeof *y);
    if (shift) sdc_group_norm_to(y, y, shift, g, b, B, C, HW, G, 1e-6, silu);
    else sdc_group_norm(y, g, b, B, C, HW, G, 1e-6, silu);
  }
  double worst = 0.0;
  for (int64_t bn = 0; bn < B; bn++)
    for (int64_t grp = 0; grp < G; grp++) {
      const int64_t r0 = bn * C + grp * cpg;
#define V(i) ((double)x[r0 * HW + (i)] + (shift ? shift[r0 + (i) / HW] : 0.0))
      double mean = 0.0, var = 0.0;
      for (int64_t i = 0; i < cpg * HW; i++) mean += V(i);
      mean /= (double)(cpg * HW);
      for (int64_t i = 0; i < cpg * HW; i++) var += (V(i) - mean) * (V(i) - mean);
      var /= (double)(cpg * HW);
      for (int64_t i = 0; i < cpg * HW; i++) {
        int64_t ch = grp * cpg + i / HW;
        double r = (V(i) - mean) / sqrt(var + 1e-6) * g[ch] + b[ch];
        if (silu) r = r / (1.0 + exp(-r));
        worst = fmax(worst, fabs(r - y[r0 * HW + i]));
      }
#undef V
    }
  free(x), free(g), free(b), free(y), free(sh);
  return worst;
}

static void test_norms(void) {
  /* B, C, HW, groups: vector rows with and without a scalar tail, one-pixel channels */
  static const int64_t cases[][4] = {{2, 64, 15, 32}, {1, 48, 37, 3}, {2, 40, 64, 4}, {1, 6, 1, 2}, {2, 32, 35, 32}};
  for (int scalar = 0; scalar < 2; scalar++) {
    sdc__isa_force(scalar ? SDC_ISA_SCALAR : -1);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
      for (int v = 0; v < 8; v++) {
        double e = group_norm_err(cases[i], v & 1, v >> 1 & 1, v >> 2 & 1);
        CHECK(e < 1e-5, "group_norm case %zu (scalar %d, out-of-place %d, shift %d, silu %d): max err %g", i, scalar, v & 1,
              v >> 1 & 1, v >> 2 & 1, e);
      }
    /* layer norm, in place and not, against the same definition */
    for (int64_t D = 37; D <= 48; D += 11)
      for (int inplace = 0; inplace < 2; inplace++) {
        const int64_t rows = 7;
        float *z = buf(rows * D, 33), *zo = buf(rows * D, 0), *lg = buf(D, 34), *lb = buf(D, 35), *zr = buf(rows * D, 0);
        for (int64_t i = 0; i < rows * D; i++) z[i] = 2.0f + 3.0f * z[i];
        memcpy(zr, z, (size_t)(rows * D) * sizeof *z);
        float *dst = inplace ? z : zo;
        sdc_layer_norm(dst, z, lg, lb, rows, D, 1e-5);
        double worst = 0.0;
        for (int64_t r = 0; r < rows; r++) {
          double mean = 0.0, var = 0.0;
          for (int64_t j = 0; j < D; j++) mean += zr[r * D + j];
          mean /= (double)D;
          for (int64_t j = 0; j < D; j++) var += (zr[r * D + j] - mean) * (zr[r * D + j] - mean);
          var /= (double)D;
          for (int64_t j = 0; j < D; j++)
            worst = fmax(worst, fabs((zr[r * D + j] - mean) / sqrt(var + 1e-5) * lg[j] + lb[j] - dst[r * D + j]));
        }
        CHECK(worst < 1e-5, "layer_norm D=%lld (scalar %d, in place %d): max err %g", (long long)D, scalar, inplace, worst);
        /* residual add fused with the norm, out written over the addend */
        float *dy = buf(rows * D, 37);
        memcpy(z, zr, (size_t)(rows * D) * sizeof *z);
        memcpy(zo, dy, (size_t)(rows * D) * sizeof *z);
        sdc_add_layer_norm(zo, z, zo, lg, lb, rows, D, 1e-5);
        int sum_ok = 1;
        for (int64_t j = 0; j < rows * D; j++) sum_ok &= z[j] == zr[j] + dy[j];
        sdc_layer_norm(zr, z, lg, lb, rows, D, 1e-5);
        CHECK(sum_ok && memcmp(zr, zo, (size_t)(rows * D) * sizeof *z) == 0,
              "add_layer_norm D=%lld (scalar %d): not the add then layer_norm", (long long)D, scalar);
        free(z), free(zo), free(lg), free(lb), free(zr), free(dy);
      }
  }
  sdc__isa_force(-1);
}

static void test_activations(void) {
  const int64_t n = 1000;
  float *x = buf(n, 40), *y = buf(n, 0), *gg = buf(2 * n, 41), *out = buf(n, 0);
  for (int64_t i = 0; i < n; i++) x[i] *= 6.0f;
  x[3] = 100.0f, x[4] = -100.0f, x[5] = -88.5f; /* e^-x past f32 range both ways */
  for (int scalar = 0; scalar < 2; scalar++) {
    sdc__isa_force(scalar ? SDC_ISA_SCALAR : -1);
    double e_silu = 0, e_gelu = 0, e_qg = 0, e_geglu = 0;
    memcpy(y, x, (size_t)n * sizeof *y), sdc_silu(y, n);
    for (int64_t i = 0; i < n; i++) e_silu = fmax(e_silu, fabs(y[i] - x[i] / (1.0 + exp(-(double)x[i]))));
    memcpy(y, x, (size_t)n * sizeof *y), sdc_gelu(y, n);
    for (int64_t i = 0; i < n; i++) e_gelu = fmax(e_gelu, fabs(y[i] - 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)))));
    memcpy(y, x, (size_t)n * sizeof *y), sdc_quick_gelu(y, n);
    for (int64_t i = 0; i < n; i++) e_qg = fmax(e_qg, fabs(y[i] - x[i] / (1.0 + exp(-1.702 * x[i]))));
    sdc_geglu(out, gg, 10, n / 10); /* 10 rows of [h | g], F = 100 */
    for (int64_t r = 0; r < 10; r++)
      for (int64_t i = 0; i < n / 10; i++) {
        double h = gg[r * 2 * (n / 10) + i], g = gg[r * 2 * (n / 10) + n / 10 + i];
        e_geglu = fmax(e_geglu, fabs(out[r * (n / 10) + i] - h * 0.5 * g * (1.0 + erf(g / sqrt(2.0)))));
      }
    CHECK(e_silu < 1e-5 && e_gelu < 1e-5 && e_qg < 1e-5 && e_geglu < 1e-5,
          "activations (scalar %d): silu %g gelu %g quick_gelu %g geglu %g", scalar, e_silu, e_gelu, e_qg, e_geglu);
  }
  sdc__isa_force(-1);
  free(x), free(y), free(gg), free(out);
}

/* Both transposes and the fused transpose-add, element by element, on sizes
 * with whole 16x16 tiles and ragged edges. */
static void test_transposes(void) {
  static const int64_t cases[][3] = {{2, 3, 20}, {2, 35, 50}, {1, 32, 48}, {2, 64, 17}};
  for (int scalar = 0; scalar < 2; scalar++) {
    sdc__isa_force(scalar ? SDC_ISA_SCALAR : -1);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
      const int64_t B = cases[k][0], C = cases[k][1], HW = cases[k][2], n = B * C * HW;
      float *x = buf(n, 60 + k), *t = buf(n, 0), *back = buf(n, 0), *res = buf(n, 61), *sum = buf(n, 0);
      sdc_nchw_to_nhwc(t, x, B, C, HW);
      sdc_nhwc_to_nchw(back, t, B, C, HW);
      sdc_nhwc_to_nchw_add(sum, t, res, B, C, HW);
      int ok_t = 1, ok_add = 1;
      for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
          for (int64_t i = 0; i < HW; i++) {
            const int64_t nchw = (b * C + c) * HW + i;
            ok_t &= t[(b * HW + i) * C + c] == x[nchw];
            ok_add &= sum[nchw] == res[nchw] + x[nchw];
          }
      CHECK(ok_t, "nchw->nhwc case %zu (scalar %d)", k, scalar);
      CHECK(memcmp(back, x, (size_t)n * sizeof *x) == 0, "nhwc->nchw is not the inverse, case %zu (scalar %d)", k, scalar);
      CHECK(ok_add, "nhwc->nchw with residual, case %zu (scalar %d)", k, scalar);
      /* in place on the residual, as blocks use it */
      sdc_nhwc_to_nchw_add(res, t, res, B, C, HW);
      CHECK(memcmp(res, sum, (size_t)n * sizeof *x) == 0, "nhwc->nchw add into its residual, case %zu (scalar %d)", k, scalar);
      free(x), free(t), free(back), free(res), free(sum);
    }
  }
  sdc__isa_force(-1);
}

static void test_layout_and_resize(void) {
  const int64_t B = 2, C = 3, H = 5, W = 4;
  float *x = buf(B * C * H * W, 50);
  /* 2x nearest: every output pixel copies input (y/2, x/2); odd target uses floor(dst*in/out) */
  float *up = buf(B * C * 2 * H * 2 * W, 0);
  sdc_upsample_nearest(up, x, B, C, H, W, 2 * H, 2 * W);
  int ok = 1;
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t y = 0; y < 2 * H; y++)
      for (int64_t xx = 0; xx < 2 * W; xx++) ok &= up[(p * 2 * H + y) * 2 * W + xx] == x[(p * H + y / 2) * W + xx / 2];
  CHECK(ok, "2x nearest upsample");
  float *odd = buf(B * C * 9 * 7, 0);
  sdc_upsample_nearest(odd, x, B, C, H, W, 9, 7);
  ok = 1;
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t y = 0; y < 9; y++)
      for (int64_t xx = 0; xx < 7; xx++) ok &= odd[(p * 9 + y) * 7 + xx] == x[(p * H + y * H / 9) * W + xx * W / 7];
  CHECK(ok, "nearest resize to 9x7");
  /* twice as wide, 3/2 as tall: repeated and skipped rows */
  float *wide = buf(B * C * 7 * 8, 0);
  sdc_upsample_nearest(wide, x, B, C, H, W, 7, 8);
  ok = 1;
  for (int64_t p = 0; p < B * C; p++)
    for (int64_t y = 0; y < 7; y++)
      for (int64_t xx = 0; xx < 8; xx++) ok &= wide[(p * 7 + y) * 8 + xx] == x[(p * H + y * H / 7) * W + xx / 2];
  CHECK(ok, "nearest resize to 7x8");
  float *cat = buf(B * (C + 2) * H * W, 0);
  sdc_concat_channels(cat, x, C, x, 2, B, H * W);
  /* b is x read as (B,2,HW): batch 1 channel 1 starts at (1*2+1)*HW */
  CHECK(cat[((1 * (C + 2)) + C + 1) * H * W + 3] == x[(1 * 2 + 1) * H * W + 3], "concat channels");
  CHECK(cat[((1 * (C + 2)) + 2) * H * W + 3] == x[(1 * C + 2) * H * W + 3], "concat channels (first part)");
  free(x), free(up), free(odd), free(wide), free(cat);
}

int main(void) {
  sdc_test_isa_cap();
  printf("kernels at ISA level %s (this CPU: %s)\n", sdc_isa_name(sdc_isa_level()), sdc_isa_name(sdc_isa_host()));
  sdc_arena a;
  sdc_arena_init(&a, 1 << 20); /* small blocks: exercises growth across blocks */
  test_conv2d(&a);
  test_linear(&a);
  test_attention(&a);
  test_norms();
  test_activations();
  test_transposes();
  test_layout_and_resize();
  CHECK(a.used_bytes == 0, "ops leaked %zu arena bytes", a.used_bytes);
  sdc_arena_free(&a);
  return sdc_test_finish("test_ops");
}
