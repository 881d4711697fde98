/* peak.h - this machine's measured peak GFLOP/s: the yardstick benchmarks divide stage throughput by. */
#ifndef SDC_PEAK_H
#define SDC_PEAK_H

typedef struct {
  double sgemm_gflops; /* OpenBLAS sgemm 4096^3, best of 3 */
  double fma_gflops;   /* a register-resident FMA loop on every core for 0.5 s (0: no AVX2/AVX-512) */
  double peak_gflops;  /* the better of the two */
  int threads;         /* cores the FMA loop ran on */
} sdc_peak;

/* Measures both (about two seconds on a big machine); a buffer that cannot
 * be allocated leaves sgemm_gflops 0 rather than failing. */
sdc_peak sdc_peak_measure(void);

#endif
