/* attn_amx.h - bf16 attention on AMX tiles, the score matrix never leaving a core's cache. */
#ifndef SDC_ATTN_AMX_H
#define SDC_ATTN_AMX_H

#include "arena.h"
#include "ops.h"

/* sdc_attention in bf16 (q*scale, k, v and the probabilities rounded to
 * bf16, f32 accumulation): per (batch, head) K and V are rounded and laid
 * out once as AMX B operands; then each block of 32 queries computes its
 * scores against every key (32 x Nk f32, in L2), their softmax as bf16 and
 * the product with V, on one core. Call only when sdc_isa_amx() (isa.h). */
/* This thread's tile registers configured as 8 tiles of 16 rows x 64 bytes
 * (what every AMX kernel here uses), and released. Only when sdc_isa_amx(). */
void sdc_amx_tiles_on(void);
void sdc_amx_tiles_off(void);

int sdc_amx_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                      const sdc_attn_shape *s);

#endif
