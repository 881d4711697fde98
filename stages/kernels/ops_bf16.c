/* ops_bf16.c - norms and layout changes writing the bf16 NHWC / row inputs of the bf16 GEMMs. */
#include "ops_bf16.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "sdc_limits.h"
#include "vecmath.h"

#define SDC__TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

static inline int64_t sdc__min(int64_t a, int64_t b) { return a < b ? a : b; }

SDC__TARGET static inline __mmask16 sdc__mask(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

SDC__TARGET static inline void sdc__store_bf16(uint16_t *dst, __m512 v, __mmask16 k) {
  _mm256_mask_storeu_epi16(dst, k, (__m256i)_mm512_cvtneps_pbh(v));
}

/* Offsets (in floats) of one column of a 16 x 16 tile: 0, 16, ..., 240. */
SDC__TARGET static inline __m512i sdc__column_idx(void) {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
}

/* sum of 16 floats into 8 double lanes */
SDC__TARGET static inline __m512d sdc__acc_pd(__m512d acc, __m512 v) {
  acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* Mean and 1/sqrt(var + eps) of n contiguous floats, two passes in double. */
SDC__TARGET static double sdc__stats(const float *p, int64_t n, double eps, double *mean) {
  __m512d s = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) s = sdc__acc_pd(s, _mm512_maskz_loadu_ps(sdc__mask(n - i), p + i));
  const double m = _mm512_reduce_add_pd(s) / (double)n;
  const __m512d vm = _mm512_set1_pd(m);
  __m512d q = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = sdc__mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(k, p + i);
    __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
    __m512d hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), vm);
    /* masked-off lanes hold 0 - m: drop them */
    lo = _mm512_maskz_mov_pd((__mmask8)(k & 0xff), lo);
    hi = _mm512_maskz_mov_pd((__mmask8)(k >> 8), hi);
    q = _mm512_fmadd_pd(lo, lo, q);
    q = _mm512_fmadd_pd(hi, hi, q);
  }
  *mean = m;
  return 1.0 / sqrt(_mm512_reduce_add_pd(q) / (double)n + eps);
}

/* (B,C,HW) f32 -> (B,HW,C) bf16 of v * scale[c] + shift[c] (then SiLU), in
 * 16 x 16 tiles transposed through L1; scale NULL: plain copy. */
SDC__TARGET static void sdc__transpose_bf16(uint16_t *out, const float *x, const float *scale, const float *shift,
                                            int silu, int64_t B, int64_t C, int64_t HW) {
  const int64_t n_pt = (HW + 15) / 16;
  const __m512i idx = sdc__column_idx();
#pragma omp parallel for schedule(static) if (B * C * HW > SDC_PAR_MIN_ELEMS)
  for (int64_t job = 0; job < B * n_pt; job++) {
    const int64_t b = job / n_pt, p0 = (job % n_pt) * 16, np = sdc__min(16, HW - p0);
    const __mmask16 kp = sdc__mask(np);
    float tile[16 * 16]; /* [pixel][channel] */
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t nc = sdc__min(16, C - c0);
      for (int64_t cc = 0; cc < nc; cc++) {
        const int64_t c = c0 + cc;
        __m512 v = _mm512_maskz_loadu_ps(kp, x + (b * C + c) * HW + p0);
        if (scale) v = _mm512_fmadd_ps(v, _mm512_set1_ps(scale[b * C + c]), _mm512_set1_ps(shift[b * C + c]));
        if (silu) v = sdc__silu512(v);
        _mm512_mask_i32scatter_ps(tile + cc, kp, idx, v, 4);
      }
      const __mmask16 kc = sdc__mask(nc);
      for (int64_t i = 0; i < np; i++) sdc__store_bf16(out + (b * HW + p0 + i) * C + c0, _mm512_loadu_ps(tile + 16 * i), kc);
    }
  }
}

void sdc_nchw_to_nhwc_bf16(uint16_t *out, const float *x, int64_t B, int64_t C, int64_t HW) {
  sdc__transpose_bf16(out, x, NULL, NULL, 0, B, C, HW);
}

/* Per-(image, channel) scale and shift of a group norm from its group statistics. */
static void sdc__gn_affine(float *scale, float *shift, const double *mean, const double *inv, const float *gamma,
                           const float *beta, int64_t B, int64_t C, int64_t groups) {
  const int64_t cpg = C / groups;
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t g = b * groups + c / cpg;
      const double sc = gamma[c] * inv[g];
      scale[b * C + c] = (float)sc;
      shift[b * C + c] = (float)(beta[c] - mean[g] * sc);
    }
}

/* Group statistics of (B,HW,C): per-channel sums in double over pixel
 * chunks (one per thread, 8 channels per vector), then per group; the
 * variance from a second pass around the group means. */
SDC__TARGET static void sdc__gn_stats_nhwc(double *mean, double *inv, double *acc /* nthr*C */, double *mch /* C */,
                                           const float *x, const float *add, int64_t B, int64_t C, int64_t HW,
                                           int64_t groups, double eps) {
  const int64_t cpg = C / groups;
  const int nthr = omp_get_max_threads();
  for (int pass = 0; pass < 2; pass++)
    for (int64_t b = 0; b < B; b++) {
      const float *xb = x + b * HW * C;
      memset(acc, 0, (size_t)(nthr * C) * sizeof *acc);
      /* statistics of x + add: each pass sums x - mch, with mch = -add (sums of x + add), then
       * group mean - add (squares about the mean of x + add) */
      for (int64_t c = 0; c < C; c++) mch[c] = (pass ? mean[b * groups + c / cpg] : 0.0) - (add ? add[b * C + c] : 0.0);
#pragma omp parallel if (HW * C > SDC_PAR_MIN_ELEMS)
      {
        double *my = acc + omp_get_thread_num() * C;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < HW; p++) {
          const float *row = xb + p * C;
          int64_t c = 0;
          for (; c + 8 <= C; c += 8) {
            __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(row + c)), _mm512_loadu_pd(mch + c));
            _mm512_storeu_pd(my + c, pass ? _mm512_fmadd_pd(d, d, _mm512_loadu_pd(my + c))
                                          : _mm512_add_pd(d, _mm512_loadu_pd(my + c)));
          }
          for (; c < C; c++) {
            const double d = row[c] - mch[c];
            my[c] += pass ? d * d : d;
          }
        }
      }
      for (int64_t g = 0; g < groups; g++) {
        double s = 0.0;
        for (int t = 0; t < nthr; t++)
          for (int64_t c = g * cpg; c < (g + 1) * cpg; c++) s += acc[t * C + c];
        s /= (double)(cpg * HW);
        if (pass == 0) mean[b * groups + g] = s;
        else inv[b * groups + g] = 1.0 / sqrt(s + eps);
      }
    }
}

SDC__TARGET int sdc_group_norm_bf16(sdc_arena *a, uint16_t *out, const float *x, int x_nhwc, const float *add,
                                    const float *gamma, const float *beta, int64_t B, int64_t C, int64_t HW,
                                    int64_t groups, double eps, int silu) {
  const int64_t cpg = C / groups, nthr = omp_get_max_threads();
  sdc_arena_mark m = sdc_arena_get_mark(a);
  double *mean = (double *)sdc_arena_floats(a, 2 * B * groups), *inv = (double *)sdc_arena_floats(a, 2 * B * groups),
         *acc = (double *)sdc_arena_floats(a, 2 * nthr * C), *mch = (double *)sdc_arena_floats(a, 2 * C);
  float *scale = sdc_arena_floats(a, B * C), *shift = sdc_arena_floats(a, B * C);
  if (!mean || !inv || !acc || !mch || !scale || !shift) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "group norm: out of memory");
  }
  if (add && !x_nhwc) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_EINVAL, "group norm: a per-channel add needs NHWC input");
  }
  if (x_nhwc) {
    sdc__gn_stats_nhwc(mean, inv, acc, mch, x, add, B, C, HW, groups, eps);
  } else {
#pragma omp parallel for schedule(static) if (B * C * HW > SDC_PAR_MIN_ELEMS)
    for (int64_t bg = 0; bg < B * groups; bg++) inv[bg] = sdc__stats(x + bg * cpg * HW, cpg * HW, eps, &mean[bg]);
  }
  sdc__gn_affine(scale, shift, mean, inv, gamma, beta, B, C, groups);
  /* (x + add) * scale + shift = x * scale + (add * scale + shift) */
  if (add)
    for (int64_t i = 0; i < B * C; i++) shift[i] += add[i] * scale[i];
  if (!x_nhwc) {
    sdc__transpose_bf16(out, x, scale, shift, silu, B, C, HW);
  } else {
#pragma omp parallel for schedule(static) if (B * C * HW > SDC_PAR_MIN_ELEMS)
    for (int64_t bp = 0; bp < B * HW; bp++) {
      const int64_t b = bp / HW;
      const float *src = x + bp * C, *sc = scale + b * C, *sh = shift + b * C;
      uint16_t *dst = out + bp * C;
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 k = sdc__mask(C - c);
        __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, src + c), _mm512_maskz_loadu_ps(k, sc + c),
                                   _mm512_maskz_loadu_ps(k, sh + c));
        if (silu) v = sdc__silu512(v);
        sdc__store_bf16(dst + c, v, k);
      }
    }
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

SDC__TARGET void sdc_layer_norm_bf16(uint16_t *out, const float *in, const float *gamma, const float *beta, int64_t rows,
                                     int64_t C, double eps) {
#pragma omp parallel for schedule(static) if (rows * C > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = in + r * C;
    double mean, inv = sdc__stats(p, C, eps, &mean);
    const __m512 vm = _mm512_set1_ps((float)mean), vi = _mm512_set1_ps((float)inv);
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = sdc__mask(C - c);
      __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + c), vm), vi);
      v = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, gamma + c), _mm512_maskz_loadu_ps(k, beta + c));
      sdc__store_bf16(out + r * C + c, v, k);
    }
  }
}

void sdc_f32_to_bf16_rows(uint16_t *out, const float *in, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C > SDC_PAR_MIN_ELEMS)
  for (int64_t r = 0; r < rows; r++) sdc__f32_to_bf16(out + r * C, in + r * C, C, C, 1.0f);
}
