/* rng.h - bit-compatible PyTorch CPU generator: manual_seed and randn, so a seed gives diffusers' latents. */
#ifndef SDC_RNG_H
#define SDC_RNG_H

#include <stdint.h>

typedef struct {
  uint32_t mt[624];
  int mti;
  int has_next_normal;     /* torch's cached second Box-Muller value (double path) */
  double next_normal;
} sdc_rng;

/* torch.Generator().manual_seed(seed) */
void sdc_rng_seed(sdc_rng *r, uint64_t seed);
/* torch.randn(n, generator=r) as float32, n values; successive calls continue
 * the generator as successive torch draws do (the algorithm depends on n). */
void sdc_rng_randn(sdc_rng *r, float *out, int64_t n);

#endif
