/* peak.c - the yardstick: FMA loops per ISA, OpenBLAS sgemm and oneDNN matmul, each best of several runs. */
#include "peak.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "attn_amx.h"
#include "clock.h"
#include "onednn.h"
#include "ops.h"
#include "ops_bf16.h"

extern char *openblas_get_corename(void);

#define SDC__REPS 5 /* repetitions of each loop; the best counts */
#define SDC__GEMM_N 2048 /* square GEMMs: big enough for every library's best kernel, 17 GFLOP each */
#define SDC__GEMM_REPS 3

/* ---- register-blocked loops: 12 independent accumulators hide the FMA
 * latency on every core measured (4-5 cycles, 2 pipes); the unroll pragma
 * keeps them in registers (a loop over an array of them would go through
 * memory and measure store forwarding instead). Each returns FLOPs done. */

#define SDC__CHAINS 12
#define SDC__ITERS 200000 /* iterations between looks at the clock */
/* each repetition runs this long on every thread: long against waking them */
#define SDC__LOOP_S 0.05

/* One loop: T the vector type, INIT(i) accumulator i's start, STEP(x) one
 * multiply-add into x (its constants are hoisted), SUM(x) one lane of x for
 * the sink that keeps the compiler from dropping the loop, FLOPS what one
 * STEP does. */
#define SDC__LOOP(name, isa, T, INIT, STEP, SUM, FLOPS)                                                  \
  __attribute__((target(isa))) static double name(void) {                                                \
    T x[SDC__CHAINS];                                                                                    \
    for (int i = 0; i < SDC__CHAINS; i++) x[i] = INIT(i);                                                \
    long n = 0;                                                                                          \
    for (const double t0 = sdc_clock_mono_s(); sdc_clock_mono_s() - t0 < SDC__LOOP_S; n += SDC__ITERS)   \
      for (long k = 0; k < SDC__ITERS; k++) {                                                            \
        _Pragma("GCC unroll 16") for (int i = 0; i < SDC__CHAINS; i++) x[i] = STEP(x[i]);                \
      }                                                                                                  \
    float sink = 0;                                                                                      \
    for (int i = 0; i < SDC__CHAINS; i++) sink += SUM(x[i]);                                             \
    return (double)n * SDC__CHAINS * (FLOPS) + (sink == 12345.0f);                                       \
  }

#define SDC__FMA512(x) _mm512_fmadd_ps(x, _mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-7f))
#define SDC__FMA256(x) _mm256_fmadd_ps(x, _mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-7f))
/* below AVX2, SSE multiply then add (x86-64's baseline has no FMA) */
#define SDC__MULADD128(x) _mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(0.999999f)), _mm_set1_ps(1e-7f))
/* VDPBF16PS: 16 lanes x 2 bf16 products (1.0 x ~6e-8) accumulated in f32 = 64 FLOPs */
#define SDC__DPBF16(x) \
  _mm512_dpbf16_ps(x, (__m512bh)_mm512_set1_epi16(0x3f80), (__m512bh)_mm512_set1_epi16(0x3380))

SDC__LOOP(sdc__loop_avx512, "avx512f", __m512, _mm512_set1_ps, SDC__FMA512, _mm512_reduce_add_ps, 16 * 2)
SDC__LOOP(sdc__loop_avx2, "avx2,fma", __m256, _mm256_set1_ps, SDC__FMA256, _mm256_cvtss_f32, 8 * 2)
SDC__LOOP(sdc__loop_sse, "sse2", __m128, _mm_set1_ps, SDC__MULADD128, _mm_cvtss_f32, 4 * 2)
SDC__LOOP(sdc__loop_bf16, "avx512f,avx512bf16", __m512, _mm512_set1_ps, SDC__DPBF16, _mm512_reduce_add_ps, 64)

/* AMX: four 16x16 f32 accumulators, each TDPBF16PS 16x16x32 products =
 * 16384 FLOPs; the A and B tiles are loaded once (the loop measures the unit). */
__attribute__((target("amx-tile,amx-bf16"))) static double sdc__loop_amx(void) {
  static _Thread_local uint16_t ab[16 * 32] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 32; i++) ab[i] = 0x3380;
  sdc_amx_tiles_on();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, ab, 64);
  _tile_loadd(7, ab, 64);
  long n = 0;
  for (const double t0 = sdc_clock_mono_s(); sdc_clock_mono_s() - t0 < SDC__LOOP_S; n += SDC__ITERS / 4)
    for (long k = 0; k < SDC__ITERS / 4; k++) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  float out[16 * 16];
  _tile_stored(0, out, 64);
  sdc_amx_tiles_off();
  return (double)n * 4 * 16384 + (out[0] == 12345.0f);
}

/* GFLOP/s of loop on every thread at once, best of SDC__REPS. */
static double sdc__loop_gflops(double (*loop)(void)) {
  double best = 0;
  for (int r = 0; r < SDC__REPS; r++) {
    double flops = 0, t0 = sdc_clock_mono_s();
#pragma omp parallel reduction(+ : flops)
    flops += loop();
    const double g = flops / (sdc_clock_mono_s() - t0) / 1e9;
    if (g > best) best = g;
  }
  return best;
}

/* ---- GEMMs: n^3, best of SDC__GEMM_REPS after one warm-up call */

static float *sdc__filled(int64_t n, int mod) {
  float *p = malloc((size_t)n * sizeof *p);
  for (int64_t i = 0; p && i < n; i++) p[i] = (float)(i % mod) * 0.01f;
  return p;
}

static double sdc__sgemm_gflops(int n) {
  float *a = sdc__filled((int64_t)n * n, 13), *b = sdc__filled((int64_t)n * n, 7), *c = sdc__filled((int64_t)n * n, 3);
  double best = 0;
  for (int r = 0; a && b && c && r <= SDC__GEMM_REPS; r++) {
    double t0 = sdc_clock_mono_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double g = 2.0 * n * n * (double)n / (sdc_clock_mono_s() - t0) / 1e9;
    if (r && g > best) best = g;
  }
  free(a), free(b), free(c);
  return best;
}

/* The engine's own linear-layer path: weights packed as at load, then
 * sdc_onednn_linear (f32) or sdc_onednn_linear_bf16 on rows rounded to bf16
 * beforehand (the rounding is not what is timed). */
static double sdc__matmul_gflops(int n, int bf16) {
  float *in = sdc__filled((int64_t)n * n, 13), *w = sdc__filled((int64_t)n * n, 7), *out = sdc__filled((int64_t)n * n, 3);
  uint16_t *in16 = bf16 ? malloc((size_t)n * n * 2) : NULL;
  sdc_packed *pk = in && w && out && (!bf16 || in16) ? sdc_onednn_pack_linear(w, n, n, !bf16) : NULL;
  sdc_arena a;
  sdc_arena_init(&a, 1 << 20);
  double best = 0;
  if (pk && in16) sdc_f32_to_bf16_rows(in16, in, n, n);
  for (int r = 0; pk && r <= SDC__GEMM_REPS; r++) {
    double t0 = sdc_clock_mono_s();
    int err = bf16 ? sdc_onednn_linear_bf16(&a, out, in16, pk, NULL, n, n, n, 0)
                   : sdc_onednn_linear(&a, out, in, pk, NULL, n, n, n);
    double g = err ? 0 : 2.0 * n * n * (double)n / (sdc_clock_mono_s() - t0) / 1e9;
    if (r && g > best) best = g;
  }
  sdc_onednn_packed_free(pk);
  sdc_arena_free(&a);
  free(in), free(w), free(out), free(in16);
  return best;
}

sdc_peak sdc_peak_measure(int bf16) {
  const double t0 = sdc_clock_mono_s();
  sdc_peak p = {.threads = omp_get_max_threads(), .isa = sdc_isa_level()};
  p.fma_gflops = sdc__loop_gflops(p.isa >= SDC_ISA_AVX512 ? sdc__loop_avx512
                                  : p.isa == SDC_ISA_AVX2 ? sdc__loop_avx2
                                                          : sdc__loop_sse);
  p.sgemm_gflops = sdc__sgemm_gflops(SDC__GEMM_N);
  p.matmul_gflops = sdc__matmul_gflops(SDC__GEMM_N, 0);
  p.peak_gflops = fmax(p.sgemm_gflops, p.matmul_gflops);
  if (bf16 && sdc_isa_bf16()) {
    p.bf16_dot_gflops = sdc__loop_gflops(sdc__loop_bf16);
    if (sdc_isa_amx()) p.amx_gflops = sdc__loop_gflops(sdc__loop_amx);
    p.bf16_matmul_gflops = sdc__matmul_gflops(2 * SDC__GEMM_N, 1);
    p.bf16_peak_gflops = p.bf16_matmul_gflops;
  }
  p.seconds = sdc_clock_mono_s() - t0;
  return p;
}

void sdc_peak_describe(const sdc_peak *p, char *buf, size_t n) {
  int k = snprintf(buf, n, "peak %.1f GFLOP/s fp32 (oneDNN matmul %.1f, OpenBLAS sgemm %s %.1f, %s FMA loop %.1f; %d threads)",
                   p->peak_gflops, p->matmul_gflops, openblas_get_corename(), p->sgemm_gflops, sdc_isa_name(p->isa),
                   p->fma_gflops, p->threads);
  if (p->bf16_peak_gflops > 0 && k > 0 && (size_t)k < n)
    snprintf(buf + k, n - (size_t)k, ", %.1f bf16 (oneDNN matmul %.1f, VDPBF16PS loop %.1f, AMX loop %.1f)",
             p->bf16_peak_gflops, p->bf16_matmul_gflops, p->bf16_dot_gflops, p->amx_gflops);
}

void sdc_peak_json(const sdc_peak *p, FILE *fp) {
  fprintf(fp,
          "{\"isa\":\"%s\",\"threads\":%d,\"fma_gflops\":%.1f,\"sgemm_gflops\":%.1f,\"matmul_gflops\":%.1f,"
          "\"peak_gflops\":%.1f,\"bf16_dot_gflops\":%.1f,\"amx_gflops\":%.1f,\"bf16_matmul_gflops\":%.1f,"
          "\"bf16_peak_gflops\":%.1f,\"seconds\":%.2f}",
          sdc_isa_name(p->isa), p->threads, p->fma_gflops, p->sgemm_gflops, p->matmul_gflops, p->peak_gflops,
          p->bf16_dot_gflops, p->amx_gflops, p->bf16_matmul_gflops, p->bf16_peak_gflops, p->seconds);
}

double sdc_peak_drift(const sdc_peak *start, const sdc_peak *end, int bf16) {
  const double a = bf16 ? start->bf16_peak_gflops : start->peak_gflops, b = bf16 ? end->bf16_peak_gflops : end->peak_gflops;
  return a > 0 ? fabs(b - a) / a : 0;
}
