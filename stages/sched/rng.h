/* rng.h - bit-compatible PyTorch CPU generator: manual_seed and randn, so a seed gives diffusers' latents. */
#ifndef SDC_RNG_H
#define SDC_RNG_H

#include <stdint.h>

/* The whole state of a torch.Generator on CPU (PyTorch 1.13): an mt19937 and
 * the cached second Box-Muller value of its double-precision normal sampler.
 * Plain data: copying the struct forks the stream. Seed before first use. */
typedef struct {
  uint32_t mt[624];
  int mti;                 /* index of the next word of mt to temper; 624 = twist first */
  int has_next_normal;     /* torch's cached second Box-Muller value (double path) */
  double next_normal;
} sdc_rng;

/* torch.Generator().manual_seed(seed). As in torch, only the low 32 bits of
 * seed reach mt19937 (1234567890123 seeds like 1234567890123 & 0xffffffff),
 * and the cached normal is dropped. */
void sdc_rng_seed(sdc_rng *r, uint64_t seed);
/* torch.randn(n, generator=r) as float32, n values; successive calls continue
 * the generator as successive torch draws do (the algorithm depends on n:
 * n >= 16 uses the float Box-Muller over blocks of 16, n < 16 the double
 * sampler with its cached second value, which persists across calls). */
void sdc_rng_randn(sdc_rng *r, float *out, int64_t n);
/* torch.rand(n, generator=r) as float32: one 32-bit word per value, 24 bits kept. */
void sdc_rng_rand(sdc_rng *r, float *out, int64_t n);
/* The next raw mt19937 word (torch's CPUGeneratorImpl::random()). */
uint32_t sdc_rng_u32(sdc_rng *r);

#endif
