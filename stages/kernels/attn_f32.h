/* attn_f32.h - f32 attention on AVX-512 register-blocked kernels, the score matrix kept per query block. */
#ifndef SDC_ATTN_F32_H
#define SDC_ATTN_F32_H

#include "arena.h"
#include "ops.h"

/* sdc_attention in f32 on a CPU with AVX-512: per (batch, head) K is
 * transposed and V padded once; then each block of 48 queries computes its
 * scores against every key with an 8 x 64 register-blocked kernel, their
 * softmax in place, and the product with V (6 x 64 kernel), on one core.
 * Same arithmetic as the GEMM path (f32 products and sums, scale applied
 * after the dot product, exp within 2 ulp); only summation order differs. */
int sdc_attention_f32(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                      const sdc_attn_shape *s);

#endif
