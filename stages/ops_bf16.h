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

/* out (B,HW,C) bf16 = group_norm(x) * gamma + beta, then SiLU if silu, where
 * x is (B,C,HW) f32 (x_nhwc 0) or (B,HW,C) f32 (x_nhwc 1). */
int sdc_group_norm_bf16(sdc_arena *a, uint16_t *out, const float *x, int x_nhwc, const float *gamma, const float *beta,
                        int64_t B, int64_t C, int64_t HW, int64_t groups, double eps, int silu);

/* out (rows,C) bf16 = layer_norm(in (rows,C) f32) * gamma + beta. */
void sdc_layer_norm_bf16(uint16_t *out, const float *in, const float *gamma, const float *beta, int64_t rows, int64_t C,
                         double eps);

/* out (B,HW,C) bf16 = x (B,C,HW) f32, transposed. */
void sdc_nchw_to_nhwc_bf16(uint16_t *out, const float *x, int64_t B, int64_t C, int64_t HW);

/* out (B,C,HW) f32 = (y (B,HW,C) [+ y2 (B,HW,C)] [+ res (B,C,HW)]) * scale;
 * y2 and res may be NULL. out may alias res. */
void sdc_nhwc_add_to_nchw(float *out, const float *y, const float *y2, const float *res, float scale, int64_t B,
                          int64_t C, int64_t HW);

/* y (B,HW,C) += t (B,C): a per-image channel vector (the resnet's time embedding). */
void sdc_nhwc_add_channels(float *y, const float *t, int64_t B, int64_t HW, int64_t C);

/* out (rows,C) bf16 = in (rows,C) f32. */
void sdc_f32_to_bf16_rows(uint16_t *out, const float *in, int64_t rows, int64_t C);

/* out (rows,F) bf16 = h * gelu(g) where in (rows,2F) = [h | g] f32. */
void sdc_geglu_bf16(uint16_t *out, const float *in, int64_t rows, int64_t F);

#endif
