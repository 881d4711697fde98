/* attn_f32.c - f32 attention with AVX-512 register-blocked kernels, one block of queries per core. */
#include "attn_f32.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "error.h"

#define SDC__QB 48 /* queries per block (a multiple of both kernels' rows): its scores stay in L2 */
#define SDC__SR 6  /* score kernel: 6 queries x 64 keys in 24 accumulators (+4 loads +1 broadcast <= 32 registers) */
#define SDC__OR 6  /* output kernel: 6 queries x up to 64 dims */
#define SDC__VC 128 /* keys per V panel: 128 x 48 floats stay in L1 at SD 1.5's head size */

static int64_t sdc__up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* s (6, ld) columns [j0, j0 + 64) = scale * qb (6, dh) x panel (dh, 64), the
 * panel of those 64 keys (scaled after the sum, as a GEMM's alpha). */
__attribute__((target("avx512f"))) static void sdc__score_6x64(float *s, int64_t ld, const float *qb, int64_t dh,
                                                                const float *panel, int64_t j0, float scale) {
  __m512 acc[SDC__SR][4];
  _Pragma("GCC unroll 8")
  for (int i = 0; i < SDC__SR; i++)
    _Pragma("GCC unroll 8")
    for (int t = 0; t < 4; t++) acc[i][t] = _mm512_setzero_ps();
  for (int64_t d = 0; d < dh; d++) {
    const float *krow = panel + d * 64;
    const __m512 b0 = _mm512_loadu_ps(krow), b1 = _mm512_loadu_ps(krow + 16), b2 = _mm512_loadu_ps(krow + 32),
                 b3 = _mm512_loadu_ps(krow + 48);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < SDC__SR; i++) {
      const __m512 a = _mm512_set1_ps(qb[i * dh + d]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
      acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
    }
  }
  const __m512 vs = _mm512_set1_ps(scale);
  _Pragma("GCC unroll 8")
  for (int i = 0; i < SDC__SR; i++)
    _Pragma("GCC unroll 8")
    for (int t = 0; t < 4; t++) _mm512_storeu_ps(s + i * ld + j0 + 16 * t, _mm512_mul_ps(acc[i][t], vs));
}

/* o (6, ldo) columns [c0, c0 + 16 NZ) (+)= p (6 rows, stride ldp) x v (nk, ldv).
 * The small loops must unroll, or the accumulators live on the stack. */
#define SDC__PV_KERNEL(NZ)                                                                                        \
  __attribute__((target("avx512f"))) static void sdc__pv_6x##NZ(float *o, int64_t ldo, const float *p,            \
                                                                int64_t ldp, const float *v, int64_t ldv,        \
                                                                int64_t nk, int64_t c0, int add) {               \
    __m512 acc[SDC__OR][NZ];                                                                                      \
    _Pragma("GCC unroll 8") for (int i = 0; i < SDC__OR; i++)                                                     \
      _Pragma("GCC unroll 8") for (int t = 0; t < NZ; t++)                                                        \
        acc[i][t] = add ? _mm512_loadu_ps(o + i * ldo + c0 + 16 * t) : _mm512_setzero_ps();                      \
    for (int64_t j = 0; j < nk; j++) {                                                                            \
      __m512 b[NZ];                                                                                               \
      _Pragma("GCC unroll 8") for (int t = 0; t < NZ; t++) b[t] = _mm512_loadu_ps(v + j * ldv + c0 + 16 * t);    \
      _Pragma("GCC unroll 8") for (int i = 0; i < SDC__OR; i++) {                                                 \
        const __m512 a = _mm512_set1_ps(p[i * ldp + j]);                                                          \
        _Pragma("GCC unroll 8") for (int t = 0; t < NZ; t++) acc[i][t] = _mm512_fmadd_ps(a, b[t], acc[i][t]);     \
      }                                                                                                           \
    }                                                                                                             \
    _Pragma("GCC unroll 8") for (int i = 0; i < SDC__OR; i++)                                                     \
      _Pragma("GCC unroll 8") for (int t = 0; t < NZ; t++)                                                        \
        _mm512_storeu_ps(o + i * ldo + c0 + 16 * t, acc[i][t]);                                                   \
  }
SDC__PV_KERNEL(1)
SDC__PV_KERNEL(2)
SDC__PV_KERNEL(3)
SDC__PV_KERNEL(4)

/* One query block: qb (QB, dh) queries -> o (QB, dvp), row r still to be multiplied by inv[r]. */
__attribute__((target("avx512f"))) static void sdc__block(float *o, float *inv, int64_t dvp, float *sc, const float *qb,
                                                           int64_t dh, const float *kt, const float *vp, int64_t nkp,
                                                           int64_t Nk, int64_t nq, int64_t q0, int causal, float scale) {
  /* key panels outer, query rows inner: a panel of K (dh x 64) or V (256 x dvp) is read from L2 once and
   * reused by every row group of the block from L1 */
  for (int64_t j0 = 0; j0 < nkp; j0 += 64)
    for (int64_t i = 0; i < SDC__QB; i += SDC__SR)
      sdc__score_6x64(sc + i * nkp, nkp, qb + i * dh, dh, kt + j0 * dh, j0, scale);
  sdc__softmax_rows(sc, nq, nkp, Nk, q0, causal, inv);
  for (int64_t i = nq; i < SDC__QB; i++) memset(sc + i * nkp, 0, (size_t)nkp * sizeof *sc);
  for (int64_t j0 = 0; j0 < nkp; j0 += SDC__VC) {
    const int64_t nk = nkp - j0 < SDC__VC ? nkp - j0 : SDC__VC;
    const float *vj = vp + j0 * dvp;
    for (int64_t i = 0; i < SDC__QB; i += SDC__OR)
      for (int64_t c0 = 0; c0 < dvp; c0 += 64) {
        const int64_t nz = (dvp - c0) / 16 < 4 ? (dvp - c0) / 16 : 4;
        float *w = o + i * dvp;
        const float *p = sc + i * nkp + j0;
        if (nz == 4) sdc__pv_6x4(w, dvp, p, nkp, vj, dvp, nk, c0, j0 > 0);
        else if (nz == 3) sdc__pv_6x3(w, dvp, p, nkp, vj, dvp, nk, c0, j0 > 0);
        else if (nz == 2) sdc__pv_6x2(w, dvp, p, nkp, vj, dvp, nk, c0, j0 > 0);
        else sdc__pv_6x1(w, dvp, p, nkp, vj, dvp, nk, c0, j0 > 0);
      }
  }
}

int sdc_attention_f32(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                      const sdc_attn_shape *s) {
  const int64_t nkp = sdc__up(s->Nk, 64), dvp = sdc__up(s->dh, 16), D = s->heads * s->dh, BH = s->B * s->heads,
                n_blocks = (s->Nq + SDC__QB - 1) / SDC__QB;
  const int nthr = omp_get_max_threads();
  const int64_t thr_floats = sdc__up(SDC__QB * s->dh + SDC__QB * nkp + SDC__QB * dvp, 16);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *kt = sdc_arena_floats(a, BH * s->dh * nkp), *vp = sdc_arena_floats(a, BH * nkp * dvp),
        *thr = sdc_arena_floats(a, nthr * thr_floats);
  if (!kt || !vp || !thr) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "attention: out of memory for %lld keys", (long long)s->Nk);
  }
#pragma omp parallel
  {
    float *qb = thr + omp_get_thread_num() * thr_floats, *sc = qb + SDC__QB * s->dh, *ob = sc + SDC__QB * nkp;
    /* per head: K transposed in panels of 64 keys, each (dh, 64) and contiguous (as one (dh, nkp)
     * matrix its rows would be nkp floats apart, a multiple of 4 KiB at 1024 or 4096 keys: all of a
     * panel's rows would fall in the same L1 sets and it would stream from L2 for every row group),
     * and V (nkp, dvp), zero-padded */
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < BH; bh++) {
      const int64_t b = bh / s->heads, h = bh % s->heads;
      float *ktb = kt + bh * s->dh * nkp, *vpb = vp + bh * nkp * dvp;
      for (int64_t j0 = 0; j0 < nkp; j0 += 64) {
        float *panel = ktb + j0 * s->dh;
        const int64_t nj = s->Nk - j0 < 64 ? s->Nk - j0 : 64;
        for (int64_t jj = 0; jj < nj; jj++) {
          const float *kr = k + (b * s->Nk + j0 + jj) * s->ldk + h * s->dh;
          for (int64_t d = 0; d < s->dh; d++) panel[d * 64 + jj] = kr[d];
        }
        for (int64_t d = 0; nj < 64 && d < s->dh; d++) memset(panel + d * 64 + nj, 0, (size_t)(64 - nj) * sizeof *panel);
      }
      for (int64_t j = 0; j < nkp; j++) {
        float *dst = vpb + j * dvp;
        if (j < s->Nk) memcpy(dst, v + (b * s->Nk + j) * s->ldv + h * s->dh, (size_t)s->dh * sizeof *dst);
        memset(dst + (j < s->Nk ? s->dh : 0), 0, (size_t)(j < s->Nk ? dvp - s->dh : dvp) * sizeof *dst);
      }
    }
#pragma omp for schedule(static)
    for (int64_t job = 0; job < BH * n_blocks; job++) {
      const int64_t bh = job / n_blocks, b = bh / s->heads, h = bh % s->heads, q0 = (job % n_blocks) * SDC__QB;
      const int64_t nq = s->Nq - q0 < SDC__QB ? s->Nq - q0 : SDC__QB;
      for (int64_t r = 0; r < SDC__QB; r++) {
        if (r < nq) memcpy(qb + r * s->dh, q + (b * s->Nq + q0 + r) * s->ldq + h * s->dh, (size_t)s->dh * sizeof *qb);
        else memset(qb + r * s->dh, 0, (size_t)s->dh * sizeof *qb);
      }
      float inv[SDC__QB];
      sdc__block(ob, inv, dvp, sc, qb, s->dh, kt + bh * s->dh * nkp, vp + bh * nkp * dvp, nkp, s->Nk, nq, q0, s->causal,
                 s->scale);
      for (int64_t r = 0; r < nq; r++) {
        float *dst = out + (b * s->Nq + q0 + r) * D + h * s->dh;
        for (int64_t d = 0; d < s->dh; d++) dst[d] = ob[r * dvp + d] * inv[r];
      }
    }
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}
