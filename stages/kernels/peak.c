/* peak.c - the yardstick: best of OpenBLAS sgemm 4096^3 and a register-resident FMA loop on every core. */
#include "peak.h"

#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"

#define SDC__PEAK_THREADS_MAX 64

/* Best GFLOP/s of reps square n^3 sgemms. */
static double sdc__sgemm_gflops(int n, int reps) {
  float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
  double best = 0;
  if (a && b && c) {
    for (int64_t i = 0; i < (int64_t)n * n; i++) a[i] = (float)(i % 13) * 0.01f, b[i] = (float)(i % 7) * 0.01f;
    for (int r = 0; r < reps; r++) {
      double t0 = sdc_clock_mono_s();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      double g = 2.0 * n * n * (double)n / (sdc_clock_mono_s() - t0) / 1e9;
      if (g > best) best = g;
    }
  }
  free(a), free(b), free(c);
  return best;
}

typedef struct {
  double seconds;
  uint64_t flops;
} sdc__fma_arg;

/* Eight independent FMA chains hide the FMA latency; the sink keeps the
 * compiler from dropping the loop. */
__attribute__((target("avx512f"))) static void *sdc__fma512(void *p) {
  sdc__fma_arg *a = p;
  __m512 x[8], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 8; i++) x[i] = _mm512_set1_ps((float)i);
  uint64_t iters = 0;
  double t0 = sdc_clock_mono_s();
  while (sdc_clock_mono_s() - t0 < a->seconds) {
    for (int k = 0; k < 4096; k++)
      for (int i = 0; i < 8; i++) x[i] = _mm512_fmadd_ps(x[i], m, c);
    iters += 4096;
  }
  float sink = 0;
  for (int i = 0; i < 8; i++) sink += _mm512_reduce_add_ps(x[i]);
  a->flops = iters * 8 * 16 * 2 + (sink == 12345.0f);
  return NULL;
}

__attribute__((target("avx2,fma"))) static void *sdc__fma256(void *p) {
  sdc__fma_arg *a = p;
  __m256 x[8], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 8; i++) x[i] = _mm256_set1_ps((float)i);
  uint64_t iters = 0;
  double t0 = sdc_clock_mono_s();
  while (sdc_clock_mono_s() - t0 < a->seconds) {
    for (int k = 0; k < 4096; k++)
      for (int i = 0; i < 8; i++) x[i] = _mm256_fmadd_ps(x[i], m, c);
    iters += 4096;
  }
  float v[8], sink = 0;
  for (int i = 0; i < 8; i++) _mm256_storeu_ps(v, x[i]), sink += v[0];
  a->flops = iters * 8 * 8 * 2 + (sink == 12345.0f);
  return NULL;
}

static double sdc__fma_gflops(int threads) {
  __builtin_cpu_init();
  void *(*fn)(void *) = __builtin_cpu_supports("avx512f") ? sdc__fma512
                        : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? sdc__fma256
                                                                                          : NULL;
  if (!fn) return 0;
  pthread_t tid[SDC__PEAK_THREADS_MAX];
  sdc__fma_arg args[SDC__PEAK_THREADS_MAX];
  if (threads > SDC__PEAK_THREADS_MAX) threads = SDC__PEAK_THREADS_MAX;
  double t0 = sdc_clock_mono_s();
  for (int i = 0; i < threads; i++) {
    args[i] = (sdc__fma_arg){.seconds = 0.5};
    pthread_create(&tid[i], NULL, fn, &args[i]);
  }
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL), total += args[i].flops;
  return (double)total / (sdc_clock_mono_s() - t0) / 1e9;
}

sdc_peak sdc_peak_measure(void) {
  sdc_peak p = {.threads = (int)sysconf(_SC_NPROCESSORS_ONLN)};
  p.sgemm_gflops = sdc__sgemm_gflops(4096, 3);
  p.fma_gflops = sdc__fma_gflops(p.threads);
  p.peak_gflops = p.sgemm_gflops > p.fma_gflops ? p.sgemm_gflops : p.fma_gflops;
  return p;
}
