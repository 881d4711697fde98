/* peak.h - this machine's measured peak GFLOP/s: the yardstick benchmarks divide stage throughput by. */
#ifndef SDC_PEAK_H
#define SDC_PEAK_H

#include <stddef.h>
#include <stdio.h>

#include "isa.h"

/* Each figure is the best of several repetitions, on every core the kernels
 * use (OpenMP's threads), at the ISA level the kernels run at (isa.h); the
 * same measurement every run, so runs can be compared. */
typedef struct {
  int threads;
  sdc_isa isa;
  double fma_gflops;    /* register-blocked FMA loop (mul + add below AVX2): the arithmetic bound */
  double sgemm_gflops;  /* OpenBLAS sgemm n^3, with OPENBLAS_CORETYPE as set */
  double matmul_gflops; /* oneDNN f32 matmul n^3, weights packed as the engine packs them */
  double peak_gflops;   /* the better GEMM: the best sustained fp32 rate, what efficiency divides by */
  /* bf16 (only when measured with bf16 and the level has AVX512-BF16; else 0) */
  double bf16_dot_gflops;    /* VDPBF16PS loop */
  double amx_gflops;         /* TDPBF16PS loop (0 without AMX) */
  double bf16_matmul_gflops; /* oneDNN bf16 matmul n^3 */
  double bf16_peak_gflops;   /* = bf16_matmul_gflops: the best sustained bf16 rate */
  double seconds;            /* what measuring took */
} sdc_peak;

/* Measures (about 1.5 s, 3 s with bf16 on a 2-core machine); a buffer
 * that cannot be allocated leaves its figure 0 rather than failing. */
sdc_peak sdc_peak_measure(int bf16);

/* One line: "peak 366.1 GFLOP/s fp32 (oneDNN matmul 366.1, OpenBLAS sgemm
 * Haswell 190.3, avx512 FMA loop 420.2; 2 threads)" and the bf16 figures
 * when measured. */
void sdc_peak_describe(const sdc_peak *p, char *buf, size_t n);

/* The same figures as one JSON object (no newline), for --json outputs. */
void sdc_peak_json(const sdc_peak *p, FILE *fp);

/* How far the second measurement is from the first, as a fraction of the
 * first (peak_gflops, or bf16_peak_gflops when bf16): benchmarks measure
 * at their start and end, and a run where the machine's speed moved by more
 * than SDC_PEAK_DRIFT_MAX says so. */
#define SDC_PEAK_DRIFT_MAX 0.10
double sdc_peak_drift(const sdc_peak *start, const sdc_peak *end, int bf16);

#endif
