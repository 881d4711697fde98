/* onednn.h - bf16 convolutions, linear layers and attention on oneDNN (AMX, AVX512-BF16).
 *
 * The bf16 precision mode: activations are rounded to bf16 at the input of
 * every conv, linear and attention GEMM, weights are kept in bf16 in oneDNN's
 * own blocked layout (packed once, at load), products accumulate in f32 and
 * every output, norm, softmax and residual stays f32 - what PyTorch's bf16
 * autocast does. fp32 mode never comes here. */
#ifndef SDC_ONEDNN_H
#define SDC_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ops.h"

/* Starts the oneDNN engine; safe to call more than once. */
int sdc_onednn_init(void);
/* Checks that this CPU can run bf16 (AVX512-BF16 at least; AMX when present)
 * and starts the engine; SDC_EUNSUPPORTED with a message naming what is
 * missing otherwise. */
int sdc_onednn_bf16_check(void);

/* The oneDNN kernel family its bf16 convolutions use here ("avx512_core_amx_bf16", ...),
 * "none" before init. */
const char *sdc_onednn_isa(void);

/* Weights packed for one layer. Owned by the caller: sdc_onednn_packed_free. */
/* f32: packed f32 for fp32 precision (sdc_onednn_conv / sdc_onednn_linear
 * then run in f32), else bf16. */
sdc_packed *sdc_onednn_pack_conv(const float *w /* (Cout,Cin,kh,kw) */, int64_t Cout, int64_t Cin, int64_t kh, int64_t kw,
                                 int64_t stride, int f32);
sdc_packed *sdc_onednn_pack_linear(const float *w /* (N,K) */, int64_t N, int64_t K, int f32);
void sdc_onednn_packed_free(void *p);
size_t sdc_onednn_packed_bytes(const sdc_packed *p);
/* Whether p holds bf16 weights (else f32, or p is NULL). */
int sdc_onednn_packed_bf16(const sdc_packed *p);

/* As sdc_conv2d / sdc_linear / sdc_attention, in bf16 (see above); a conv
 * whose weights were packed f32 runs in f32 on oneDNN's blocked layouts. */
int sdc_onednn_conv(sdc_arena *a, float *out, const float *in, const sdc_packed *w, const float *b,
                    const sdc_conv_shape *s);
int sdc_onednn_linear(sdc_arena *a, float *out, const float *in, const sdc_packed *w, const float *b, int64_t M,
                      int64_t K, int64_t N);
/* Without the layout changes: a conv of (B,H,W,Cin) bf16 into (B,Ho,Wo,Cout)
 * f32, and a linear layer of (M,K) bf16 rows into (M,N) f32, adding into out
 * when accumulate. */
int sdc_onednn_conv_nhwc(sdc_arena *a, float *out, const uint16_t *in, const sdc_packed *w, const float *b,
                         const sdc_conv_shape *s);
int sdc_onednn_linear_bf16(sdc_arena *a, float *out, const uint16_t *in, const sdc_packed *w, const float *b, int64_t M,
                           int64_t K, int64_t N, int accumulate);
int sdc_onednn_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                         const sdc_attn_shape *s);

#endif
