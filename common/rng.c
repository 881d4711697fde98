/* placeholder: rng is being written */
#include "rng.h"
void sdc_rng_seed(sdc_rng *r, uint64_t seed) { (void)seed; r->mti = 0; }
void sdc_rng_randn(sdc_rng *r, float *out, int64_t n) { (void)r; for (int64_t i = 0; i < n; i++) out[i] = 0; }
