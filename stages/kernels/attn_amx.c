/* attn_amx.c - bf16 attention on AMX tiles: Q K^T, softmax and P V per block of 32 queries on one core. */
#include "attn_amx.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "error.h"
#include "ops_bf16.h"

/* AMX basics: 8 tile registers of up to 16 rows x 64 bytes; TDPBF16PS adds
 * A (16 x 32 bf16) times B (32 x 16 bf16, stored as 16 rows of 16 bf16
 * pairs: row r holds rows 2r and 2r+1 of B interleaved) into C (16 x 16 f32).
 * Every tile here is 16 x 64 bytes, so one configuration serves all. */
#define SDC__QB 32 /* queries per block: two A tiles */

typedef struct {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) sdc__tilecfg;

static int64_t sdc__up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* K (Nk rows of dh, f32, row stride ld) -> B operands of S = Q K^T:
 * kp[nb][ks] is a 16 x 16 tile of bf16 pairs: row r, column n holds
 * K[16 nb + n][32 ks + 2r .. 2r + 1]. Rows past Nk and dims past dh are 0. */
static void sdc__pack_k(uint32_t *kp, const float *k, int64_t ld, int64_t Nk, int64_t dh, int64_t nkp, int64_t dhp,
                        uint16_t *row) {
  const int64_t n_ks = dhp / 32;
  for (int64_t j = 0; j < nkp; j++) {
    if (j < Nk) sdc__f32_to_bf16(row, k + j * ld, dh, dhp, 1.0f);
    else memset(row, 0, (size_t)dhp * sizeof *row);
    const uint32_t *words = (const uint32_t *)row;
    uint32_t *dst = kp + (j / 16) * n_ks * 256 + (j % 16);
    for (int64_t w = 0; w < dhp / 2; w++) dst[(w / 16) * 256 + (w % 16) * 16] = words[w];
  }
}

/* V (Nk rows of dh) -> B operands of O = P V: vp[kb][nt] is a 16 x 16 tile
 * of pairs: row r, column n holds V[32 kb + 2r][16 nt + n] and V[32 kb + 2r + 1][16 nt + n]. */
static void sdc__pack_v(uint32_t *vp, const float *v, int64_t ld, int64_t Nk, int64_t dh, int64_t nkp, int64_t dvp,
                        uint16_t *r0, uint16_t *r1) {
  const int64_t n_nt = dvp / 16;
  for (int64_t j = 0; j < nkp; j += 2) {
    if (j < Nk) sdc__f32_to_bf16(r0, v + j * ld, dh, dvp, 1.0f);
    else memset(r0, 0, (size_t)dvp * sizeof *r0);
    if (j + 1 < Nk) sdc__f32_to_bf16(r1, v + (j + 1) * ld, dh, dvp, 1.0f);
    else memset(r1, 0, (size_t)dvp * sizeof *r1);
    uint32_t *dst = vp + (j / 32) * n_nt * 256 + ((j % 32) / 2) * 16;
    for (int64_t n = 0; n < dvp; n++) dst[(n / 16) * 256 + (n % 16)] = (uint32_t)r0[n] | (uint32_t)r1[n] << 16;
  }
}

/* s (32, nkp) f32 = qb (32, dhp) bf16 x K^T from kp. Tiles: C 0-3, A 4-5, B 6-7. */
__attribute__((target("amx-tile,amx-bf16"))) static void sdc__scores(float *s, const uint16_t *qb, const uint32_t *kp,
                                                                      int64_t nkp, int64_t dhp) {
  const int64_t n_ks = dhp / 32, lds = nkp * 4, ldq = dhp * 2;
  for (int64_t nb = 0; nb < nkp / 16; nb += 2) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t ks = 0; ks < n_ks; ks++) {
      _tile_loadd(4, qb + ks * 32, ldq);
      _tile_loadd(5, qb + 16 * dhp + ks * 32, ldq);
      _tile_loadd(6, kp + (nb * n_ks + ks) * 256, 64);
      _tile_loadd(7, kp + ((nb + 1) * n_ks + ks) * 256, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, s + nb * 16, lds);
    _tile_stored(1, s + nb * 16 + 16, lds);
    _tile_stored(2, s + 16 * nkp + nb * 16, lds);
    _tile_stored(3, s + 16 * nkp + nb * 16 + 16, lds);
  }
}

/* o (16, dvp) f32 = p (16, nkp) bf16 x V from vp, for the 16 query rows at p.
 * Up to six output tiles at a time (C 0-5), A in 6, B in 7. */
__attribute__((target("amx-tile,amx-bf16"))) static void sdc__pv(float *o, const uint16_t *p, const uint32_t *vp,
                                                                  int64_t nkp, int64_t dvp) {
  const int64_t n_nt = dvp / 16, ldp = nkp * 2, ldo = dvp * 4;
  for (int64_t t0 = 0; t0 < n_nt; t0 += 6) {
    const int64_t g = n_nt - t0 < 6 ? n_nt - t0 : 6;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    for (int64_t kb = 0; kb < nkp / 32; kb++) {
      const uint32_t *b = vp + (kb * n_nt + t0) * 256;
      _tile_loadd(6, p + kb * 32, ldp);
      _tile_loadd(7, b, 64);
      _tile_dpbf16ps(0, 6, 7);
      if (g > 1) {
        _tile_loadd(7, b + 256, 64);
        _tile_dpbf16ps(1, 6, 7);
      }
      if (g > 2) {
        _tile_loadd(7, b + 512, 64);
        _tile_dpbf16ps(2, 6, 7);
      }
      if (g > 3) {
        _tile_loadd(7, b + 768, 64);
        _tile_dpbf16ps(3, 6, 7);
      }
      if (g > 4) {
        _tile_loadd(7, b + 1024, 64);
        _tile_dpbf16ps(4, 6, 7);
      }
      if (g > 5) {
        _tile_loadd(7, b + 1280, 64);
        _tile_dpbf16ps(5, 6, 7);
      }
    }
    float *c = o + t0 * 16;
    _tile_stored(0, c, ldo);
    if (g > 1) _tile_stored(1, c + 16, ldo);
    if (g > 2) _tile_stored(2, c + 32, ldo);
    if (g > 3) _tile_stored(3, c + 48, ldo);
    if (g > 4) _tile_stored(4, c + 64, ldo);
    if (g > 5) _tile_stored(5, c + 80, ldo);
  }
}

/* A global, not a stack object: GCC's _tile_loadconfig tells the compiler it
 * reads only 8 bytes, so stores to a local config may be dropped. */
static const sdc__tilecfg sdc__cfg = {.palette_id = 1,
                                      .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                      .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile"))) void sdc_amx_tiles_on(void) { _tile_loadconfig(&sdc__cfg); }

__attribute__((target("amx-tile"))) void sdc_amx_tiles_off(void) { _tile_release(); }

int sdc_amx_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                      const sdc_attn_shape *s) {
  const int64_t dhp = sdc__up(s->dh, 32), dvp = sdc__up(s->dh, 16), nkp = sdc__up(s->Nk, 32), D = s->heads * s->dh,
                BH = s->B * s->heads, n_blocks = (s->Nq + SDC__QB - 1) / SDC__QB;
  const int64_t kp_words = nkp * dhp / 2, vp_words = nkp * dvp / 2;
  const int nthr = omp_get_max_threads();
  /* per thread: a query block, its scores and probabilities, one output tile row block, packing rows */
  const int64_t thr_floats = sdc__up(SDC__QB * dhp / 2 + SDC__QB * nkp + SDC__QB * nkp / 2 + 16 * dvp + 2 * dvp + dhp, 16);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  uint32_t *kp = (uint32_t *)sdc_arena_floats(a, BH * kp_words), *vp = (uint32_t *)sdc_arena_floats(a, BH * vp_words);
  float *thr = sdc_arena_floats(a, nthr * thr_floats);
  if (!kp || !vp || !thr) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "attention: out of memory for bf16 tiles");
  }
#pragma omp parallel
  {
    float *base = thr + omp_get_thread_num() * thr_floats;
    uint16_t *qb = (uint16_t *)base;
    float *sc = base + SDC__QB * dhp / 2, *ob = sc + SDC__QB * nkp + SDC__QB * nkp / 2, inv[SDC__QB];
    uint16_t *pb = (uint16_t *)(sc + SDC__QB * nkp), *r0 = (uint16_t *)(ob + 16 * dvp), *r1 = r0 + dvp,
             *rk = r1 + dvp;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < BH; bh++) {
      const int64_t b = bh / s->heads, h = bh % s->heads;
      sdc__pack_k(kp + bh * kp_words, k + b * s->Nk * s->ldk + h * s->dh, s->ldk, s->Nk, s->dh, nkp, dhp, rk);
      sdc__pack_v(vp + bh * vp_words, v + b * s->Nk * s->ldv + h * s->dh, s->ldv, s->Nk, s->dh, nkp, dvp, r0, r1);
    }
    /* (implicit barrier: every head is packed) */
    sdc_amx_tiles_on();
#pragma omp for schedule(static)
    for (int64_t job = 0; job < BH * n_blocks; job++) {
      const int64_t bh = job / n_blocks, b = bh / s->heads, h = bh % s->heads, q0 = (job % n_blocks) * SDC__QB;
      const int64_t nq = s->Nq - q0 < SDC__QB ? s->Nq - q0 : SDC__QB;
      for (int64_t r = 0; r < SDC__QB; r++) {
        if (r < nq) sdc__f32_to_bf16(qb + r * dhp, q + (b * s->Nq + q0 + r) * s->ldq + h * s->dh, s->dh, dhp, s->scale);
        else memset(qb + r * dhp, 0, (size_t)dhp * sizeof *qb);
      }
      sdc__scores(sc, qb, kp + bh * kp_words, nkp, dhp);
      sdc__softmax_rows_bf16(pb, sc, nkp, nq, s->Nk, q0, s->causal, inv);
      if (nq < SDC__QB) memset(pb + nq * nkp, 0, (size_t)((SDC__QB - nq) * nkp) * sizeof *pb);
      for (int64_t t = 0; t < SDC__QB && t < nq; t += 16) {
        sdc__pv(ob, pb + t * nkp, vp + bh * vp_words, nkp, dvp);
        for (int64_t r = t; r < t + 16 && r < nq; r++) {
          float *dst = out + (b * s->Nq + q0 + r) * D + h * s->dh;
          const float *src = ob + (r - t) * dvp;
          for (int64_t c = 0; c < s->dh; c++) dst[c] = src[c] * inv[r];
        }
      }
    }
    sdc_amx_tiles_off();
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}
