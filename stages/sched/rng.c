/* rng.c - torch's CPU generator: mt19937 plus ATen's uniform and randn algorithms (PyTorch 1.13). */
#include "rng.h"

#include <math.h>

enum { SDC__MT_N = 624, SDC__MT_M = 397 };
#define SDC__MT_MATRIX_A 0x9908b0dfu
#define SDC__MT_UPPER 0x80000000u
#define SDC__MT_LOWER 0x7fffffffu
#define SDC__PI 3.141592653589793238462643383279502884

void sdc_rng_seed(sdc_rng *r, uint64_t seed) {
  /* at::mt19937 takes a uint64 seed but initialises from its low 32 bits */
  r->mt[0] = (uint32_t)(seed & 0xffffffffu);
  for (uint32_t i = 1; i < SDC__MT_N; i++) r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + i;
  r->mti = SDC__MT_N; /* torch twists before the first word, like the reference mt19937 */
  r->has_next_normal = 0;
  r->next_normal = 0.0;
}

static inline uint32_t sdc__mt_mix(uint32_t u, uint32_t v) {
  uint32_t y = (u & SDC__MT_UPPER) | (v & SDC__MT_LOWER);
  return (y >> 1) ^ ((v & 1u) ? SDC__MT_MATRIX_A : 0u);
}

/* Regenerates all 624 words; split in three loops so no index wraps. */
static void sdc__mt_twist(uint32_t *mt) {
  int i = 0;
  for (; i < SDC__MT_N - SDC__MT_M; i++) mt[i] = mt[i + SDC__MT_M] ^ sdc__mt_mix(mt[i], mt[i + 1]);
  for (; i < SDC__MT_N - 1; i++) mt[i] = mt[i + SDC__MT_M - SDC__MT_N] ^ sdc__mt_mix(mt[i], mt[i + 1]);
  mt[i] = mt[SDC__MT_M - 1] ^ sdc__mt_mix(mt[i], mt[0]);
}

uint32_t sdc_rng_u32(sdc_rng *r) {
  if (r->mti >= SDC__MT_N) {
    sdc__mt_twist(r->mt);
    r->mti = 0;
  }
  uint32_t y = r->mt[r->mti++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* at::uniform_real_distribution<float>(0,1): the low 24 bits of one word, exact in float. */
static inline float sdc__uniform_f32(sdc_rng *r) {
  return (float)(sdc_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* at::uniform_real_distribution<double>(0,1): random64() = (first word << 32) | second,
 * low 53 bits kept. */
static inline double sdc__uniform_f64(sdc_rng *r) {
  uint64_t hi = sdc_rng_u32(r), lo = sdc_rng_u32(r);
  return (double)(((hi << 32) | lo) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* at::normal_distribution<double>(0,1): Box-Muller on two double uniforms; the sine
 * half is cached in the generator and returned by the next call. */
static double sdc__normal_f64(sdc_rng *r) {
  if (r->has_next_normal) {
    r->has_next_normal = 0;
    return r->next_normal;
  }
  double u1 = sdc__uniform_f64(r), u2 = sdc__uniform_f64(r);
  double radius = sqrt(-2.0 * log(1.0 - u2)); /* 1.13 writes log(1-u2); later versions log1p(-u2) */
  double theta = 2.0 * SDC__PI * u1;
  r->next_normal = radius * sin(theta);
  r->has_next_normal = 1;
  return radius * cos(theta);
}

/* normal_fill_16: d holds 16 float uniforms; pairs d[j] (radius) with d[j+8]
 * (angle) and writes the cosine half to d[j], the sine half to d[j+8]. The
 * angle is float(2*pi) * u2 in float, as in the AVX2 kernel x86 torch runs
 * (the scalar kernel rounds 2*pi*u2 from double instead: ~8x further from the
 * goldens); log/sin/cos still differ from its avx_mathfun by about an ulp. */
static void sdc__box_muller_16(float *d) {
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j]; /* [0,1) -> (0,1] so the log is finite */
    float u2 = d[j + 8];
    float radius = sqrtf(-2.0f * logf(u1));
    float theta = (float)(2.0 * SDC__PI) * u2;
    d[j] = radius * cosf(theta);
    d[j + 8] = radius * sinf(theta);
  }
}

void sdc_rng_randn(sdc_rng *r, float *out, int64_t n) {
  if (n <= 0) return;
  if (n < 16) {
    /* serial path: one double normal per element, cast to float; the cache carries over */
    for (int64_t i = 0; i < n; i++) out[i] = (float)sdc__normal_f64(r);
    return;
  }
  /* normal_fill: all n uniforms first, then Box-Muller over whole blocks of 16 */
  for (int64_t i = 0; i < n; i++) out[i] = sdc__uniform_f32(r);
  for (int64_t i = 0; i + 16 <= n; i += 16) sdc__box_muller_16(out + i);
  if (n % 16 != 0) {
    /* torch redraws the last 16 from fresh uniforms, overwriting the tail and
     * part of the last full block */
    float *tail = out + n - 16;
    for (int i = 0; i < 16; i++) tail[i] = sdc__uniform_f32(r);
    sdc__box_muller_16(tail);
  }
}

void sdc_rng_rand(sdc_rng *r, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = sdc__uniform_f32(r);
}
