/* ops.c - fast kernels: convolutions and projections as OpenBLAS sgemm, attention in query tiles. */
#include "ops.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_amx.h"
#include "attn_f32.h"
#include "clock.h"
#include "error.h"
#include "isa.h"
#include "onednn.h"
#include "ops_bf16.h"
#include "sdc_limits.h"
#include "vecmath.h"

static uint64_t sdc__flops;

static inline void sdc__count(double flops) { __atomic_add_fetch(&sdc__flops, (uint64_t)flops, __ATOMIC_RELAXED); }
uint64_t sdc_ops_flops(void) { return __atomic_load_n(&sdc__flops, __ATOMIC_RELAXED); }
void sdc_ops_flops_reset(void) { __atomic_store_n(&sdc__flops, 0, __ATOMIC_RELAXED); }

static uint64_t sdc__ns[SDC_OPS_KINDS], sdc__kind_flops[SDC_OPS_KINDS];

/* Charges the time since t0 and the FLOPs counted since f0 to kind k. */
static void sdc__spent(sdc_ops_kind k, uint64_t t0, uint64_t f0) {
  __atomic_add_fetch(&sdc__ns[k], sdc_clock_mono_ns() - t0, __ATOMIC_RELAXED);
  __atomic_add_fetch(&sdc__kind_flops[k], sdc_ops_flops() - f0, __ATOMIC_RELAXED);
}
double sdc_ops_seconds(sdc_ops_kind kind) { return 1e-9 * (double)__atomic_load_n(&sdc__ns[kind], __ATOMIC_RELAXED); }
uint64_t sdc_ops_kind_flops(sdc_ops_kind kind) { return __atomic_load_n(&sdc__kind_flops[kind], __ATOMIC_RELAXED); }
void sdc_ops_seconds_reset(void) {
  for (int k = 0; k < SDC_OPS_KINDS; k++)
    __atomic_store_n(&sdc__ns[k], 0, __ATOMIC_RELAXED), __atomic_store_n(&sdc__kind_flops[k], 0, __ATOMIC_RELAXED);
}

sdc_gemm_backend sdc_fp32_gemm(void) {
  const char *e = getenv("SDC_GEMM");
  return e && strcmp(e, "openblas") == 0 ? SDC_GEMM_OPENBLAS : SDC_GEMM_ONEDNN;
}

const char *sdc_gemm_name(sdc_gemm_backend g) { return g == SDC_GEMM_OPENBLAS ? "OpenBLAS" : "oneDNN"; }

int sdc_gemm_env_check(void) {
  const char *e = getenv("SDC_GEMM");
  if (e && *e && strcmp(e, "openblas") != 0 && strcmp(e, "onednn") != 0)
    return sdc_seterr(SDC_EINVAL, "SDC_GEMM='%s': expected onednn or openblas", e);
  return SDC_OK;
}

int sdc_precision_check(sdc_precision p) { return p == SDC_PREC_BF16 ? sdc_onednn_bf16_check() : SDC_OK; }

const char *sdc_precision_name(sdc_precision p) { return p == SDC_PREC_BF16 ? "bf16" : "fp32"; }

int sdc_precision_parse(const char *s, sdc_precision *p) {
  if (strcmp(s, "fp32") == 0) *p = SDC_PREC_FP32;
  else if (strcmp(s, "bf16") == 0) *p = SDC_PREC_BF16;
  else return sdc_seterr(SDC_EINVAL, "precision '%s': expected fp32 or bf16", s);
  return SDC_OK;
}

/* col (Cin*kh*kw, Ho*Wo) for one image: each row is one (c, ky, kx) tap. */
static void sdc__im2col(float *col, const float *in, const sdc_conv_shape *s) {
  const int64_t HoWo = s->Ho * s->Wo;
#pragma omp parallel for schedule(static) if (s->Cin * s->kh * s->kw * HoWo > SDC_PAR_MIN_ELEMS)
  for (int64_t c = 0; c < s->Cin; c++)
    for (int64_t ky = 0; ky < s->kh; ky++)
      for (int64_t kx = 0; kx < s->kw; kx++) {
        float *row = col + ((c * s->kh + ky) * s->kw + kx) * HoWo;
        const float *plane = in + c * s->H * s->W;
        for (int64_t oy = 0; oy < s->Ho; oy++) {
          int64_t iy = oy * s->stride - s->pad_t + ky;
          float *dst = row + oy * s->Wo;
          if (iy < 0 || iy >= s->H) {
            memset(dst, 0, (size_t)s->Wo * sizeof *dst);
            continue;
          }
          const float *src = plane + iy * s->W;
          if (s->stride == 1) {
            /* contiguous run with zero fringes */
            int64_t x0 = s->pad_l - kx, lo = x0 > 0 ? x0 : 0, hi = s->W + x0 < s->Wo ? s->W + x0 : s->Wo;
            if (hi < lo) hi = lo;
            memset(dst, 0, (size_t)lo * sizeof *dst);
            if (hi > lo) memcpy(dst + lo, src + lo - x0, (size_t)(hi - lo) * sizeof *dst);
            memset(dst + hi, 0, (size_t)(s->Wo - hi) * sizeof *dst);
          } else {
            for (int64_t ox = 0; ox < s->Wo; ox++) {
              int64_t ix = ox * s->stride - s->pad_l + kx;
              dst[ox] = (ix >= 0 && ix < s->W) ? src[ix] : 0.0f;
            }
          }
        }
      }
}

/* A stride-1 conv as kh*kw accumulated GEMMs over shifted views of one padded
 * copy of the input: output position p = y*Wp + x reads in_pad[ci][p + ky*Wp + kx],
 * a contiguous slice, so no im2col matrix (kh*kw times the input) is written.
 * The Wp - Wo extra columns per row are computed and dropped. */
static int sdc__conv_shifted(sdc_arena *a, float *out, const float *in, const float *w, const float *b,
                             const sdc_conv_shape *s) {
  const int64_t taps = s->kh * s->kw, Wp = s->Wo + s->kw - 1, Cin = s->Cin, Cout = s->Cout;
  /* output rows per block: the block's padded input (Cin x (R+kh-1) x Wp) stays
   * around 8 MiB (within the last-level cache), so the kh*kw GEMMs re-read it
   * from cache, not memory; UNet-sized layers stay one block */
  int64_t R = (int64_t)(8 << 20) / (int64_t)sizeof(float) / (Cin * Wp) - (s->kh - 1);
  if (R < 4) R = 4;
  if (R > s->Ho) R = s->Ho;
  const int64_t S = (R + s->kh - 1) * Wp, N = R * Wp;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *pad = sdc_arena_floats(a, Cin * S + s->kw), *wt = s->w_taps ? (float *)w : sdc_arena_floats(a, taps * Cout * Cin),
        *acc = sdc_arena_floats(a, Cout * N);
  if (!pad || !wt || !acc) return sdc_seterr(SDC_ENOMEM, "conv2d: out of memory for a %lldx%lld conv", (long long)s->Cout,
                                             (long long)s->Cin);
  /* weights (Cout, Cin, kh, kw) -> one (Cout, Cin) matrix per tap, unless the loader did it once */
  if (s->w_taps) {
    wt = (float *)w;
  } else {
#pragma omp parallel for schedule(static) if (taps * Cout * Cin > SDC_PAR_MIN_ELEMS)
    for (int64_t o = 0; o < Cout; o++)
      for (int64_t c = 0; c < Cin; c++)
        for (int64_t t = 0; t < taps; t++) wt[(t * Cout + o) * Cin + c] = w[(o * Cin + c) * taps + t];
  }
  memset(pad + Cin * S, 0, (size_t)s->kw * sizeof *pad);
  for (int64_t n = 0; n < s->B; n++) {
    const float *src = in + n * Cin * s->H * s->W;
    float *dst = out + n * Cout * s->Ho * s->Wo;
    for (int64_t y0 = 0; y0 < s->Ho; y0 += R) {
      const int64_t rows = s->Ho - y0 < R ? s->Ho - y0 : R, n_cols = rows * Wp, in_rows = rows + s->kh - 1;
#pragma omp parallel for schedule(static) if (Cin * in_rows * Wp > SDC_PAR_MIN_ELEMS)
      for (int64_t c = 0; c < Cin; c++) {
        for (int64_t y = 0; y < in_rows; y++) {
          int64_t iy = y0 + y - s->pad_t;
          float *row = pad + c * S + y * Wp;
          if (iy < 0 || iy >= s->H) {
            memset(row, 0, (size_t)Wp * sizeof *row);
            continue;
          }
          const float *srow = src + (c * s->H + iy) * s->W;
          for (int64_t x = 0; x < Wp; x++) {
            int64_t ix = x - s->pad_l;
            row[x] = ix >= 0 && ix < s->W ? srow[ix] : 0.0f;
          }
        }
      }
      for (int64_t t = 0; t < taps; t++) {
        const int64_t off = (t / s->kw) * Wp + (t % s->kw);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cout, (int)n_cols, (int)Cin, 1.0f,
                    wt + t * Cout * Cin, (int)Cin, pad + off, (int)S, t ? 1.0f : 0.0f, acc, (int)n_cols);
      }
#pragma omp parallel for schedule(static) if (Cout * n_cols > SDC_PAR_MIN_ELEMS)
      for (int64_t o = 0; o < Cout; o++) {
        const float bv = b ? b[o] : 0.0f;
        for (int64_t y = 0; y < rows; y++) {
          const float *arow = acc + o * n_cols + y * Wp;
          float *orow = dst + (o * s->Ho + y0 + y) * s->Wo;
          for (int64_t x = 0; x < s->Wo; x++) orow[x] = arow[x] + bv;
        }
      }
    }
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

int sdc_conv2d(sdc_arena *a, float *out, const float *in, const float *w, const float *b, const sdc_conv_shape *s) {
  const int64_t HoWo = s->Ho * s->Wo, K = s->Cin * s->kh * s->kw;
  /* stride 1 with enough input channels for each tap's GEMM to be efficient */
  const int shifted = s->stride == 1 && s->kh * s->kw > 1 && s->Cin >= 32 && s->Ho == s->H + 2 * s->pad_t - s->kh + 1 &&
                      s->Wo == s->W + 2 * s->pad_l - s->kw + 1;
  if (s->w_taps && !shifted)
    return sdc_seterr(SDC_EINVAL, "conv2d: tap-major weights given to a conv that cannot use them");
  if (shifted) {
    sdc__count(2.0 * (double)s->B * (double)s->Cout * (double)K * (double)HoWo);
    return sdc__conv_shifted(a, out, in, w, b, s);
  }
  const int direct = s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad_t == 0 && s->pad_l == 0 && s->Ho == s->H &&
                     s->Wo == s->W;
  sdc__count(2.0 * (double)s->B * (double)s->Cout * (double)K * (double)HoWo);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *col = direct ? NULL : sdc_arena_floats(a, K * HoWo);
  if (!direct && !col) return sdc_seterr(SDC_ENOMEM, "conv2d: out of memory for im2col (%lld floats)", (long long)(K * HoWo));
  for (int64_t n = 0; n < s->B; n++) {
    const float *src = in + n * s->Cin * s->H * s->W;
    float *dst = out + n * s->Cout * HoWo;
    if (!direct) {
      sdc__im2col(col, src, s);
      src = col;
    }
    /* bias first, then accumulate: beta = 1 */
    for (int64_t o = 0; o < s->Cout; o++) {
      float bv = b ? b[o] : 0.0f;
      for (int64_t i = 0; i < HoWo; i++) dst[o * HoWo + i] = bv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->Cout, (int)HoWo, (int)K, 1.0f, w, (int)K, src,
                (int)HoWo, 1.0f, dst, (int)HoWo);
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

int sdc_conv2d_wt(sdc_arena *a, float *out, const float *in, const sdc_wt *w, const float *b, const sdc_conv_shape *s) {
  const uint64_t t0 = sdc_clock_mono_ns(), f0 = sdc_ops_flops();
  int err;
  if (w->pk) {
    sdc__count(2.0 * (double)s->B * (double)s->Cout * (double)(s->Cin * s->kh * s->kw) * (double)(s->Ho * s->Wo));
    err = sdc_onednn_conv(a, out, in, w->pk, b, s);
  } else {
    sdc_conv_shape ws = *s;
    ws.w_taps = w->taps;
    err = sdc_conv2d(a, out, in, w->f32, b, &ws);
  }
  sdc__spent(SDC_OPS_CONV, t0, f0);
  return err;
}

int sdc_linear_wt(sdc_arena *a, float *out, const float *in, const sdc_wt *w, const float *b, int64_t M, int64_t K,
                  int64_t N) {
  const uint64_t t0 = sdc_clock_mono_ns(), f0 = sdc_ops_flops();
  int err = SDC_OK;
  if (w->pk) {
    sdc__count(2.0 * (double)M * (double)K * (double)N);
    err = sdc_onednn_linear(a, out, in, w->pk, b, M, K, N);
  } else {
    sdc_linear(out, in, w->f32, b, M, K, N);
  }
  sdc__spent(SDC_OPS_LINEAR, t0, f0);
  return err;
}

int sdc_conv2d_nhwc(sdc_arena *a, float *out, const uint16_t *in, const sdc_wt *w, const float *b, const sdc_conv_shape *s) {
  const uint64_t t0 = sdc_clock_mono_ns(), f0 = sdc_ops_flops();
  if (!w->pk) return sdc_seterr(SDC_EINVAL, "conv2d: bf16 NHWC input needs packed bf16 weights");
  sdc__count(2.0 * (double)s->B * (double)s->Cout * (double)(s->Cin * s->kh * s->kw) * (double)(s->Ho * s->Wo));
  int err = sdc_onednn_conv_nhwc(a, out, in, w->pk, b, s);
  sdc__spent(SDC_OPS_CONV, t0, f0);
  return err;
}

int sdc_linear_bf16(sdc_arena *a, float *out, const uint16_t *in, const sdc_wt *w, const float *b, int64_t M, int64_t K,
                    int64_t N, int accumulate) {
  const uint64_t t0 = sdc_clock_mono_ns(), f0 = sdc_ops_flops();
  if (!w->pk) return sdc_seterr(SDC_EINVAL, "linear: bf16 input needs packed bf16 weights");
  sdc__count(2.0 * (double)M * (double)K * (double)N);
  int err = sdc_onednn_linear_bf16(a, out, in, w->pk, b, M, K, N, accumulate);
  sdc__spent(SDC_OPS_LINEAR, t0, f0);
  return err;
}

void sdc_sgemm_acc(int64_t m, int64_t n, int64_t k, float alpha, const float *A, const float *B, float *C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, A, (int)k, B, (int)n, 1.0f, C,
              (int)n);
}

void sdc_linear(float *out, const float *in, const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
  sdc__count(2.0 * (double)M * (double)K * (double)N);
  for (int64_t i = 0; i < M; i++) {
    if (b) memcpy(out + i * N, b, (size_t)N * sizeof *out);
    else memset(out + i * N, 0, (size_t)N * sizeof *out);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, in, (int)K, w, (int)K, 1.0f, out,
              (int)N);
}

/* ------------------------------------------------ norms and elementwise ops
 * Each has a portable scalar loop and an AVX-512 one chosen at run time;
 * statistics and the normalising affine map stay in double either way. */

static int sdc__have_avx512(void);

/* Mean and M2 = sum (x - mean)^2 of one channel or token row, two passes in
 * double (the goldens are fp64); the second pass finds the row in L1/L2. */
static void sdc__row_stats(const float *p, int64_t n, double *mean /* OUT */, double *m2 /* OUT */) {
  double sum = 0.0, sq = 0.0;
  for (int64_t i = 0; i < n; i++) sum += p[i];
  *mean = sum / (double)n;
  for (int64_t i = 0; i < n; i++) {
    double d = p[i] - *mean;
    sq += d * d;
  }
  *m2 = sq;
}

/* f32 lanes 0-7 / 8-15 widened to double, and two halves joined back. */
__attribute__((target("avx512f"))) static inline __m512d sdc__lo_pd(__m512 v) {
  return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}
__attribute__((target("avx512f"))) static inline __m512d sdc__hi_pd(__m512 v) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
__attribute__((target("avx512f"))) static inline __m512 sdc__join_ps(__m512d lo, __m512d hi) {
  __m256 l = _mm512_cvtpd_ps(lo), h = _mm512_cvtpd_ps(hi);
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(l)), _mm256_castps_pd(h), 1));
}
/* The two passes of sdc__row_stats: the sum, then M2 about the mean. */
__attribute__((target("avx512f"))) static double sdc__row_sum_avx512(const float *p, int64_t n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(p + i);
    s0 = _mm512_add_pd(s0, sdc__lo_pd(v));
    s1 = _mm512_add_pd(s1, sdc__hi_pd(v));
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; i++) sum += p[i];
  return sum;
}

__attribute__((target("avx512f"))) static double sdc__row_m2_avx512(const float *p, int64_t n, double mean) {
  const __m512d vmu = _mm512_set1_pd(mean);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(p + i);
    __m512d d0 = _mm512_sub_pd(sdc__lo_pd(v), vmu), d1 = _mm512_sub_pd(sdc__hi_pd(v), vmu);
    s0 = _mm512_fmadd_pd(d0, d0, s0);
    s1 = _mm512_fmadd_pd(d1, d1, s1);
  }
  double sq = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; i++) {
    double d = p[i] - mean;
    sq += d * d;
  }
  return sq;
}

__attribute__((target("avx512f"))) static void sdc__row_stats_avx512(const float *p, int64_t n, double *mean, double *m2) {
  *mean = sdc__row_sum_avx512(p, n) / (double)n;
  *m2 = sdc__row_m2_avx512(p, n, *mean);
}

/* o = f32(x * g + sh) computed in double, then SiLU if silu; o may be x. */
static void sdc__affine_row(float *o, const float *x, int64_t n, double g, double sh, int silu) {
  for (int64_t i = 0; i < n; i++) {
    float v = (float)(x[i] * g + sh);
    o[i] = silu ? v / (1.0f + expf(-v)) : v;
  }
}

__attribute__((target("avx512f"))) static void sdc__affine_row_avx512(float *o, const float *x, int64_t n, double g,
                                                                      double sh, int silu) {
  const __m512d vg = _mm512_set1_pd(g), vs = _mm512_set1_pd(sh);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 y = sdc__join_ps(_mm512_fmadd_pd(sdc__lo_pd(v), vg, vs), _mm512_fmadd_pd(sdc__hi_pd(v), vg, vs));
    _mm512_storeu_ps(o + i, silu ? sdc__silu512(y) : y);
  }
  sdc__affine_row(o + i, x + i, n - i, g, sh, silu);
}

void sdc_group_norm_to(float *out, const float *in, const float *shift, const float *gamma, const float *beta, int64_t B,
                       int64_t C, int64_t HW, int64_t groups, double eps, int silu) {
  const int64_t cpg = C / groups;
  const int fast = sdc__have_avx512();
#pragma omp parallel for schedule(static) if (B * C * HW > SDC_PAR_MIN_ELEMS)
  for (int64_t bg = 0; bg < B * groups; bg++) {
    const int64_t c0 = (bg % groups) * cpg, row0 = (bg / groups) * C + c0; /* rows of (B*C, HW) */
    /* Each channel's exact two-pass statistics merged by Chan's pairwise
     * update, so the second pass re-reads a channel from L1, not the group. */
    double mean = 0.0, m2 = 0.0;
    for (int64_t c = 0; c < cpg; c++) {
      double mc, m2c;
      if (fast) sdc__row_stats_avx512(in + (row0 + c) * HW, HW, &mc, &m2c);
      else sdc__row_stats(in + (row0 + c) * HW, HW, &mc, &m2c);
      if (shift) mc += shift[row0 + c];
      const double d = mc - mean;
      mean += d / (double)(c + 1);
      m2 += m2c + d * d * (double)HW * (double)c / (double)(c + 1);
    }
    const double inv = 1.0 / sqrt(m2 / (double)(cpg * HW) + eps);
    /* (x + shift - mean) * inv * gamma + beta as x * g + sh */
    for (int64_t c = 0; c < cpg; c++) {
      const double g = gamma[c0 + c] * inv, sh = beta[c0 + c] + ((shift ? shift[row0 + c] : 0.0) - mean) * g;
      if (fast) sdc__affine_row_avx512(out + (row0 + c) * HW, in + (row0 + c) * HW, HW, g, sh, silu);
      else sdc__affine_row(out + (row0 + c) * HW, in + (row0 + c) * HW, HW, g, sh, silu);
    }
  }
}

void sdc_group_norm(float *x, const float *gamma, const float *beta, int64_t B, int64_t C, int64_t HW, int64_t groups,
                    double eps, int silu) {
  sdc_group_norm_to(x, x, NULL, gamma, beta, B, C, HW, groups, eps, silu);
}

__attribute__((target("avx512f"))) static void sdc__layer_norm_row_avx512(float *q, const float *p, const float *gamma,
                                                                          const float *beta, int64_t C, double mean,
                                                                          double inv) {
  const __m512d vm = _mm512_set1_pd(mean), vi = _mm512_set1_pd(inv);
  int64_t i = 0;
  for (; i + 16 <= C; i += 16) {
    __m512 v = _mm512_loadu_ps(p + i), g = _mm512_loadu_ps(gamma + i), b = _mm512_loadu_ps(beta + i);
    __m512d lo = _mm512_mul_pd(_mm512_sub_pd(sdc__lo_pd(v), vm), vi), hi = _mm512_mul_pd(_mm512_sub_pd(sdc__hi_pd(v), vm), vi);
    _mm512_storeu_ps(q + i, sdc__join_ps(_mm512_fmadd_pd(lo, sdc__lo_pd(g), sdc__lo_pd(b)),
                                         _mm512_fmadd_pd(hi, sdc__hi_pd(g), sdc__hi_pd(b))));
  }
  for (; i < C; i++) q[i] = (float)((p[i] - mean) * inv * gamma[i] + beta[i]);
}

void sdc_layer_norm(float *out, const float *in, const float *gamma, const float *beta, int64_t rows, int64_t C,
                    double eps) {
  const int fast = sdc__have_avx512();
#pragma omp parallel for schedule(static) if (rows * C > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = in + r * C;
    float *q = out + r * C;
    double mean, m2;
    if (fast) sdc__row_stats_avx512(p, C, &mean, &m2);
    else sdc__row_stats(p, C, &mean, &m2);
    const double inv = 1.0 / sqrt(m2 / (double)C + eps);
    if (fast) sdc__layer_norm_row_avx512(q, p, gamma, beta, C, mean, inv);
    else
      for (int64_t i = 0; i < C; i++) q[i] = (float)((p[i] - mean) * inv * gamma[i] + beta[i]);
  }
}

/* x += y over a row, returning the new row's sum in double (the first
 * statistics pass of the layer norm that follows). */
__attribute__((target("avx512f"))) static double sdc__add_row_avx512(float *x, const float *y, int64_t n) {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
    _mm512_storeu_ps(x + i, v);
    s0 = _mm512_add_pd(s0, sdc__lo_pd(v));
    s1 = _mm512_add_pd(s1, sdc__hi_pd(v));
  }
  double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; i++) sum += (x[i] += y[i]);
  return sum;
}

void sdc_add_layer_norm(float *out, float *x, const float *y, const float *gamma, const float *beta, int64_t rows,
                        int64_t C, double eps) {
  const int fast = sdc__have_avx512();
  /* row by row, so the norm's passes find the sum just written in L1 */
#pragma omp parallel for schedule(static) if (rows * C > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    float *p = x + r * C, *q = out + r * C;
    const float *d = y + r * C;
    double mean, m2;
    if (fast) {
      mean = sdc__add_row_avx512(p, d, C) / (double)C;
      m2 = sdc__row_m2_avx512(p, C, mean);
    } else {
      for (int64_t i = 0; i < C; i++) p[i] += d[i];
      sdc__row_stats(p, C, &mean, &m2);
    }
    const double inv = 1.0 / sqrt(m2 / (double)C + eps);
    if (fast) sdc__layer_norm_row_avx512(q, p, gamma, beta, C, mean, inv);
    else
      for (int64_t i = 0; i < C; i++) q[i] = (float)((p[i] - mean) * inv * gamma[i] + beta[i]);
  }
}

/* Elementwise loops go to cores in chunks of this many floats. */
#define SDC__CHUNK 16384

__attribute__((target("avx512f"))) static void sdc__silu_avx512(float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, sdc__silu512(_mm512_loadu_ps(x + i)));
  for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void sdc_silu(float *x, int64_t n) {
  const int fast = sdc__have_avx512();
#pragma omp parallel for schedule(static) if (n > SDC_PAR_MIN_ELEMS)
  for (int64_t i0 = 0; i0 < n; i0 += SDC__CHUNK) {
    const int64_t m = n - i0 < SDC__CHUNK ? n - i0 : SDC__CHUNK;
    if (fast) sdc__silu_avx512(x + i0, m);
    else
      for (int64_t i = i0; i < i0 + m; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
  }
}

void sdc_gelu(float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > SDC_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void sdc_quick_gelu(float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > SDC_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void sdc_add(float *x, const float *y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > SDC_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* exp(x - mx) over a row, returning the sum, and the row's max. The AVX-512
 * path computes exp by range reduction x = k ln2 + r, |r| <= ln2/2, a
 * degree-6 polynomial for e^r and scalef for 2^k: within 2 ulp of expf. */
__attribute__((target("avx512f"))) static float sdc__row_max_avx512(const float *p, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(p + j));
  float mx = _mm512_reduce_max_ps(m);
  for (; j < n; j++) mx = p[j] > mx ? p[j] : mx;
  return mx;
}

__attribute__((target("avx512f"))) static double sdc__row_exp_avx512(float *p, int64_t n, float mx) {
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 y = sdc__exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), vmx));
    _mm512_storeu_ps(p + j, y);
    acc = _mm512_add_ps(acc, y);
  }
  double sum = (double)_mm512_reduce_add_ps(acc);
  for (; j < n; j++) sum += (p[j] = expf(p[j] - mx));
  return sum;
}

static int sdc__have_avx512(void) { return sdc_isa_level() >= SDC_ISA_AVX512; }

void sdc__softmax_rows(float *s, int64_t rows, int64_t ld, int64_t n, int64_t causal_q0, int causal, float *inv_out) {
  const int fast = sdc__have_avx512();
#pragma omp parallel for schedule(static) if (rows * n > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    float *p = s + r * ld;
    int64_t lim = causal ? causal_q0 + r + 1 : n;
    if (lim > n) lim = n;
    double sum;
    if (fast) {
      sum = sdc__row_exp_avx512(p, lim, sdc__row_max_avx512(p, lim));
    } else {
      float mx = -INFINITY;
      for (int64_t j = 0; j < lim; j++) mx = p[j] > mx ? p[j] : mx;
      sum = 0.0;
      for (int64_t j = 0; j < lim; j++) sum += (p[j] = expf(p[j] - mx));
    }
    float inv = (float)(1.0 / sum);
    if (inv_out) inv_out[r] = inv;
    else
      for (int64_t j = 0; j < lim; j++) p[j] *= inv;
    for (int64_t j = lim; j < ld; j++) p[j] = 0.0f;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void sdc__f32_to_bf16(uint16_t *dst, const float *src, int64_t n,
                                                                       int64_t n_pad, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(src + i), vs));
    _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
  }
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    __m256bh h = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, src + i), vs));
    _mm256_mask_storeu_epi16(dst + i, k, (__m256i)h);
  }
  if (n_pad > n) memset(dst + n, 0, (size_t)(n_pad - n) * sizeof *dst);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void sdc__softmax_rows_bf16(
    uint16_t *p, const float *s, int64_t ld, int64_t rows, int64_t n, int64_t q0, int causal, float *inv_sum) {
  for (int64_t r = 0; r < rows; r++) {
    const float *row = s + r * ld;
    uint16_t *prow = p + r * ld;
    int64_t lim = causal ? q0 + r + 1 : n;
    if (lim > n) lim = n;
    const __m512 vmx = _mm512_set1_ps(sdc__row_max_avx512(row, lim));
    __m512 acc = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= lim; j += 16) {
      __m512 e = sdc__exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmx));
      acc = _mm512_add_ps(acc, e);
      _mm256_storeu_si256((__m256i *)(prow + j), (__m256i)_mm512_cvtneps_pbh(e));
    }
    if (j < lim) {
      const __mmask16 k = (__mmask16)((1u << (lim - j)) - 1);
      __m512 e = _mm512_maskz_mov_ps(k, sdc__exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), vmx)));
      acc = _mm512_add_ps(acc, e);
      _mm256_mask_storeu_epi16(prow + j, k, (__m256i)_mm512_cvtneps_pbh(e));
    }
    if (ld > lim) memset(prow + lim, 0, (size_t)(ld - lim) * sizeof *prow);
    inv_sum[r] = 1.0f / _mm512_reduce_add_ps(acc);
  }
}

/* h * gelu(g) for n values: erf by Abramowitz & Stegun 7.1.26 (absolute error
 * below 1.5e-7) on the vector exp, the scalar erff for the tail. */
__attribute__((target("avx512f"))) static void sdc__geglu_row_avx512(float *o, const float *h, const float *g, int64_t n) {
  const __m512 p = _mm512_set1_ps(0.3275911f), a1 = _mm512_set1_ps(0.254829592f), a2 = _mm512_set1_ps(-0.284496736f),
               a3 = _mm512_set1_ps(1.421413741f), a4 = _mm512_set1_ps(-1.453152027f), a5 = _mm512_set1_ps(1.061405429f),
               one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f), rsqrt2 = _mm512_set1_ps((float)M_SQRT1_2);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps(g + i), z = _mm512_mul_ps(x, rsqrt2);
    __m512 az = _mm512_abs_ps(z);
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(p, az, one));
    __m512 poly = _mm512_fmadd_ps(a5, t, a4);
    poly = _mm512_fmadd_ps(poly, t, a3);
    poly = _mm512_fmadd_ps(poly, t, a2);
    poly = _mm512_fmadd_ps(poly, t, a1);
    poly = _mm512_mul_ps(poly, t);
    __m512 e = sdc__exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(az, az)));
    __m512 erf_abs = _mm512_fnmadd_ps(poly, e, one);
    /* odd function: give erf the sign of z */
    __m512 erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs),
                                                    _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000))));
    __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, erf));
    _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(h + i), gelu));
  }
  for (; i < n; i++) o[i] = h[i] * (0.5f * g[i] * (1.0f + erff(g[i] * (float)M_SQRT1_2)));
}

void sdc_geglu(float *out, const float *in, int64_t rows, int64_t F) {
  const int fast = sdc__have_avx512();
#pragma omp parallel for schedule(static) if (rows * F > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    const float *h = in + r * 2 * F, *g = h + F;
    float *o = out + r * F;
    if (fast) {
      sdc__geglu_row_avx512(o, h, g, F);
    } else {
      for (int64_t i = 0; i < F; i++) o[i] = h[i] * (0.5f * g[i] * (1.0f + erff(g[i] * (float)M_SQRT1_2)));
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void sdc_geglu_bf16(uint16_t *out, const float *in,
                                                                                int64_t rows, int64_t F) {
#pragma omp parallel for schedule(static) if (rows * F > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    const float *h = in + r * 2 * F, *g = h + F;
    float tmp[256]; /* f32 in chunks that stay in L1, then rounded */
    for (int64_t i = 0; i < F; i += 256) {
      const int64_t n = F - i < 256 ? F - i : 256;
      sdc__geglu_row_avx512(tmp, h + i, g + i, n);
      sdc__f32_to_bf16(out + r * F + i, tmp, n, n, 1.0f);
    }
  }
}

/* Query rows per tile: bounds the score matrix to tile x Nk floats. */
#define SDC__ATTN_TILE 256

static int sdc__attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                          const sdc_attn_shape *s);

int sdc_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v, const sdc_attn_shape *s) {
  const uint64_t t0 = sdc_clock_mono_ns(), f0 = sdc_ops_flops();
  int err = sdc__attention(a, out, q, k, v, s);
  sdc__spent(SDC_OPS_ATTENTION, t0, f0);
  return err;
}

static int sdc__attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                          const sdc_attn_shape *s) {
  const int64_t D = s->heads * s->dh, tile = s->Nq < SDC__ATTN_TILE ? s->Nq : SDC__ATTN_TILE;
  sdc__count(4.0 * (double)s->B * (double)s->heads * (double)s->Nq * (double)s->Nk * (double)s->dh);
  if (s->prec == SDC_PREC_BF16)
    return sdc_isa_amx() ? sdc_amx_attention(a, out, q, k, v, s) : sdc_onednn_attention(a, out, q, k, v, s);
  if (sdc__have_avx512()) return sdc_attention_f32(a, out, q, k, v, s);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *scores = sdc_arena_floats(a, tile * s->Nk);
  if (!scores) return sdc_seterr(SDC_ENOMEM, "attention: out of memory for %lld scores", (long long)(tile * s->Nk));
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t h = 0; h < s->heads; h++) {
      const float *kb = k + b * s->Nk * s->ldk + h * s->dh, *vb = v + b * s->Nk * s->ldv + h * s->dh;
      for (int64_t q0 = 0; q0 < s->Nq; q0 += tile) {
        int64_t nq = s->Nq - q0 < tile ? s->Nq - q0 : tile;
        const float *qb = q + (b * s->Nq + q0) * s->ldq + h * s->dh;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)s->Nk, (int)s->dh, s->scale, qb, (int)s->ldq,
                    kb, (int)s->ldk, 0.0f, scores, (int)s->Nk);
        sdc__softmax_rows(scores, nq, s->Nk, s->Nk, q0, s->causal, NULL);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)s->dh, (int)s->Nk, 1.0f, scores, (int)s->Nk,
                    vb, (int)s->ldv, 0.0f, out + (b * s->Nq + q0) * D + h * s->dh, (int)D);
      }
    }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

/* Transposes go in 16x16 tiles: each tile reads 16 whole cache lines and
 * writes 16, where a row-at-a-time transpose touches a new line per value. */
#define SDC__TILE 16

/* out[j * ldo + i] = in[i * ldi + j] (+ res[j * ldo + i] if res) for an r x c block. */
static void sdc__transpose_block(float *out, int64_t ldo, const float *in, int64_t ldi, const float *res, int64_t r,
                                 int64_t c) {
  for (int64_t j = 0; j < c; j++)
    for (int64_t i = 0; i < r; i++) out[j * ldo + i] = in[i * ldi + j] + (res ? res[j * ldo + i] : 0.0f);
}

/* The same for a full 16x16 tile in registers: three rounds of shuffles
 * (32-bit, 64-bit, then 128-bit lanes twice) take rows to columns. */
__attribute__((target("avx512f"))) static void sdc__transpose16_avx512(float *out, int64_t ldo, const float *in,
                                                                       int64_t ldi, const float *res) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(in + i * ldi);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
  for (int i = 0; i < 16; i++) {
    __m512 v = res ? _mm512_add_ps(r[i], _mm512_loadu_ps(res + i * ldo)) : r[i];
    _mm512_storeu_ps(out + i * ldo, v);
  }
}

/* out (cols, rows) (+)= in (rows, cols)^T for each of B matrices, in tiles split across cores. */
static void sdc__transpose(float *out, const float *in, const float *res, int64_t B, int64_t rows, int64_t cols) {
  const int fast = sdc__have_avx512();
  const int64_t tr = (rows + SDC__TILE - 1) / SDC__TILE, tc = (cols + SDC__TILE - 1) / SDC__TILE;
  /* one task is a strip of tiles along the output's rows: its writes stay in its own lines */
#pragma omp parallel for schedule(static) if (B * rows * cols > SDC_PAR_MIN_ELEMS)
  for (int64_t bj = 0; bj < B * tc; bj++) {
    const int64_t b = bj / tc, j0 = (bj % tc) * SDC__TILE, c = cols - j0 < SDC__TILE ? cols - j0 : SDC__TILE;
    const float *src = in + b * rows * cols + j0;
    float *dst = out + b * rows * cols + j0 * rows;
    const float *add = res ? res + b * rows * cols + j0 * rows : NULL;
    for (int64_t t = 0; t < tr; t++) {
      const int64_t i0 = t * SDC__TILE, r = rows - i0 < SDC__TILE ? rows - i0 : SDC__TILE;
      if (fast && r == SDC__TILE && c == SDC__TILE)
        sdc__transpose16_avx512(dst + i0, rows, src + i0 * cols, cols, add ? add + i0 : NULL);
      else
        sdc__transpose_block(dst + i0, rows, src + i0 * cols, cols, add ? add + i0 : NULL, r, c);
    }
  }
}

void sdc_nchw_to_nhwc(float *out, const float *in, int64_t B, int64_t C, int64_t HW) {
  sdc__transpose(out, in, NULL, B, C, HW);
}

void sdc_nhwc_to_nchw(float *out, const float *in, int64_t B, int64_t C, int64_t HW) {
  sdc__transpose(out, in, NULL, B, HW, C);
}

void sdc_nhwc_to_nchw_add(float *out, const float *in, const float *res, int64_t B, int64_t C, int64_t HW) {
  sdc__transpose(out, in, res, B, HW, C);
}

void sdc_upsample_nearest(float *out, const float *in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho,
                          int64_t Wo) {
  /* torch: scale = in/out as float, src = min(floor(dst * scale), in - 1) */
  const float sy = (float)H / (float)Ho, sx = (float)W / (float)Wo;
  const int twice = Wo == 2 * W; /* sx is exactly 1/2: src = x / 2 */
#pragma omp parallel for schedule(static) if (B * C * Ho * Wo > SDC_PAR_MIN_ELEMS)
  for (int64_t p = 0; p < B * C; p++) {
    const float *src = in + p * H * W;
    float *dst = out + p * Ho * Wo;
    int64_t prev = -1;
    for (int64_t y = 0; y < Ho; y++) {
      int64_t iy = (int64_t)floorf((float)y * sy);
      if (iy > H - 1) iy = H - 1;
      float *d = dst + y * Wo;
      const float *s = src + iy * W;
      if (iy == prev) { /* a repeated source row: copy the row just made */
        memcpy(d, d - Wo, (size_t)Wo * sizeof *d);
        continue;
      }
      prev = iy;
      if (twice) {
        for (int64_t x = 0; x < W; x++) d[2 * x] = d[2 * x + 1] = s[x];
        continue;
      }
      for (int64_t x = 0; x < Wo; x++) {
        int64_t ix = (int64_t)floorf((float)x * sx);
        if (ix > W - 1) ix = W - 1;
        d[x] = s[ix];
      }
    }
  }
}

void sdc_concat_channels(float *out, const float *a, int64_t C1, const float *b, int64_t C2, int64_t B, int64_t HW) {
  /* one channel plane per iteration, so both cores copy */
#pragma omp parallel for schedule(static) if (B * (C1 + C2) * HW > SDC_PAR_MIN_ELEMS)
  for (int64_t p = 0; p < B * (C1 + C2); p++) {
    const int64_t n = p / (C1 + C2), c = p % (C1 + C2);
    const float *src = c < C1 ? a + (n * C1 + c) * HW : b + (n * C2 + c - C1) * HW;
    memcpy(out + p * HW, src, (size_t)HW * sizeof *out);
  }
}
