/* ops_bf16.h - norms, activations and layout changes that write the bf16 inputs of the bf16 GEMMs.
 *
 * In bf16 precision the convs read bf16 NHWC and write f32 NHWC, and the
 * linear layers read bf16 rows, so the norm (or activation) in front of each
 * GEMM writes its output straight in that form: one pass instead of an f32
 * write, a transpose and a conversion. All need AVX512-BF16 (bf16 mode only).
 * Statistics are in double as in the f32 kernels. */
#ifndef SDC_OPS_BF16_H
#define SDC_OPS_BF16_H

#include <stdint.h>

#include "arena.h"

/* Internal to the bf16 kernels (AVX512-BF16 only). p (rows, ld) bf16 =
 * exp(s - row max) over the first n columns of s (rows, ld) f32, row r
 * seeing keys [0, n) or causally [0, q0 + r + 1), zeros up to ld; the
 * normalisation is left to the caller: inv_sum[r] = 1 / sum of row r. */
void sdc__softmax_rows_bf16(uint16_t *p, const float *s, int64_t ld, int64_t rows, int64_t n, int64_t q0, int causal,
                            float *inv_sum /* OUT: rows */);
/* dst = bf16(src * scale) for n values, round to nearest even; zeros up to n_pad. */
void sdc__f32_to_bf16(uint16_t *dst, const float *src, int64_t n, int64_t n_pad, float scale);

/* out (B,HW,C) bf16 = group_norm(x [+ add]) * gamma + beta, then SiLU if
 * silu, where x is (B,C,HW) f32 (x_nhwc 0) or (B,HW,C) f32 (x_nhwc 1), and
 * add (B,C), one value per image and channel (a resnet's time embedding),
 * NULL or NHWC input only: folded into the statistics and the shift, as
 * sdc_group_norm_to's shift. */
int sdc_group_norm_bf16(sdc_arena *a, uint16_t *out, const float *x, int x_nhwc, const float *add, const float *gamma,
                        const float *beta, int64_t B, int64_t C, int64_t HW, int64_t groups, double eps, int silu);

/* out (rows,C) bf16 = layer_norm(in (rows,C) f32) * gamma + beta. */
void sdc_layer_norm_bf16(uint16_t *out, const float *in, const float *gamma, const float *beta, int64_t rows, int64_t C,
                         double eps);

/* out (B,HW,C) bf16 = x (B,C,HW) f32, transposed. */
void sdc_nchw_to_nhwc_bf16(uint16_t *out, const float *x, int64_t B, int64_t C, int64_t HW);

/* out (rows,C) bf16 = in (rows,C) f32. */
void sdc_f32_to_bf16_rows(uint16_t *out, const float *in, int64_t rows, int64_t C);

/* out (rows,F) bf16 = h * gelu(g) where in (rows,2F) = [h | g] f32. */
void sdc_geglu_bf16(uint16_t *out, const float *in, int64_t rows, int64_t F);

#endif
