/* ops.h - the tensor operations of latent diffusion, f32, NCHW, each with a naive reference. */
#ifndef SDC_OPS_H
#define SDC_OPS_H

#include <stdint.h>

#include "arena.h"

/* Scratch space comes from an arena; every op releases what it took. */

/* Multiply-add FLOPs (2 per MAC) of every conv, linear and attention GEMM
 * since the last reset, all threads together: what benchmarks divide by. */
uint64_t sdc_ops_flops(void);
void sdc_ops_flops_reset(void);
/* Wall seconds spent inside convs, linear layers and attention since the
 * last reset (the rest of a stage's time is norms, activations, copies). */
typedef enum { SDC_OPS_CONV, SDC_OPS_LINEAR, SDC_OPS_ATTENTION, SDC_OPS_KINDS } sdc_ops_kind;
double sdc_ops_seconds(sdc_ops_kind kind);
uint64_t sdc_ops_kind_flops(sdc_ops_kind kind); /* their FLOPs, same period */
void sdc_ops_seconds_reset(void);

/* Arithmetic of the conv, linear and attention GEMMs. A model takes it as a
 * load option (blocks.h) and packs its weights for it; attention takes it per
 * call (sdc_attn_shape). fp32 is exact f32 on OpenBLAS; bf16 rounds GEMM
 * inputs to bf16 and accumulates in f32 on oneDNN (AMX / AVX512-BF16), see
 * onednn.h. Norms, softmax, activations and residuals are f32 in both. */
typedef enum { SDC_PREC_FP32, SDC_PREC_BF16 } sdc_precision;
/* SDC_EUNSUPPORTED (message says why) when this CPU cannot run p; readies
 * oneDNN for bf16. Keeps no state of its own: safe to call per load. */
int sdc_precision_check(sdc_precision p);
const char *sdc_precision_name(sdc_precision p); /* "fp32", "bf16" */
/* "fp32" / "bf16" -> *p; SDC_EINVAL naming the value otherwise. */
int sdc_precision_parse(const char *s, sdc_precision *p /* OUT */);

/* Where fp32 precision's conv and linear GEMMs run. oneDNN by default, at
 * every ISA level (isa.h), by measurement (docs/performance.md): with
 * weights packed at load its matmul runs 1.05x OpenBLAS's best AVX-512
 * sgemm and 2x its Haswell kernel, its convs 1.5-2x OpenBLAS's shifted
 * GEMMs, and it does not depend on OPENBLAS_CORETYPE. At AVX2 a whole UNet
 * step was 3.69 s on oneDNN, 3.93 s with the linear layers alone on
 * OpenBLAS (faster there, but its spinning threads slow the convs) and
 * 4.81 s all on OpenBLAS. SDC_GEMM=openblas keeps the weights plain for
 * OpenBLAS (shifted-GEMM convs, sgemm linear layers), to compare. Read
 * when a model loads (its weights are packed for one or the other);
 * programs check SDC_GEMM at start-up (sdc_runtime_init). */
typedef enum { SDC_GEMM_ONEDNN, SDC_GEMM_OPENBLAS } sdc_gemm_backend;
sdc_gemm_backend sdc_fp32_gemm(void);
const char *sdc_gemm_name(sdc_gemm_backend g); /* "oneDNN", "OpenBLAS" */
/* SDC_EINVAL naming the value when SDC_GEMM is set to neither. */
int sdc_gemm_env_check(void);

/* A conv or linear layer's weights in the form its GEMMs want: f32 (plain,
 * or tap-major when taps, see sdc_conv_packs), or packed for oneDNN (bf16
 * weights in bf16 precision, f32 ones for the UNet's convs in fp32; then
 * f32 is NULL). */
typedef struct sdc_packed sdc_packed;
typedef struct {
  const float *f32;
  const sdc_packed *pk;
  int taps; /* f32 is tap-major (shifted-GEMM conv) */
} sdc_wt;

/* out (B,Cout,Ho,Wo) = conv(in (B,Cin,H,W), w (Cout,Cin,kh,kw)) + b (Cout, may be NULL).
 * Zero padding pad_t/pad_l at top/left; bottom/right padding is whatever Ho/Wo imply
 * (so the VAE encoder's asymmetric (0,1,0,1) pad is pad_t = pad_l = 0 with Ho = H/2). */
typedef struct {
  int64_t B, Cin, H, W, Cout, kh, kw, stride, pad_t, pad_l, Ho, Wo;
  int w_taps; /* w is already (kh*kw, Cout, Cin), as sdc_conv_packs() convs are loaded */
} sdc_conv_shape;
/* Whether a same-size conv with these sizes runs as shifted GEMMs, which read
 * their weights as one (Cout, Cin) matrix per tap: loaders store such weights
 * tap-major once instead of the conv repacking them on every call. */
static inline int sdc_conv_packs(int64_t Cin, int64_t k, int64_t stride) { return stride == 1 && k > 1 && Cin >= 32; }
/* Output size of a symmetric-pad conv along one axis. */
static inline int64_t sdc_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_before, int64_t pad_after) {
  return (in + pad_before + pad_after - k) / stride + 1;
}
int sdc_conv2d(sdc_arena *a, float *out, const float *in, const float *w, const float *b, const sdc_conv_shape *s);
/* The same with a layer's weights in either precision; s->w_taps is taken from w. */
int sdc_conv2d_wt(sdc_arena *a, float *out, const float *in, const sdc_wt *w, const float *b, const sdc_conv_shape *s);
void sdc_conv2d_ref(float *out, const float *in, const float *w, const float *b, const sdc_conv_shape *s);

/* C (m,n) += alpha * A (m,k) . B (k,n), row-major, contiguous (OpenBLAS);
 * the product LoRA merges use (sdc_weights_set_gemm). Not counted in the FLOPs. */
void sdc_sgemm_acc(int64_t m, int64_t n, int64_t k, float alpha, const float *A, const float *B, float *C);

/* out (M,N) = in (M,K) @ w (N,K)^T + b (N, may be NULL). out may not alias in. */
void sdc_linear(float *out, const float *in, const float *w, const float *b, int64_t M, int64_t K, int64_t N);
/* bf16 precision with packed weights, no layout changes: a conv of (B,H,W,Cin)
 * bf16 into (B,Ho,Wo,Cout) f32; a linear layer of (M,K) bf16 rows into (M,N)
 * f32, added into out when accumulate (see ops_bf16.h for the producers). */
int sdc_conv2d_nhwc(sdc_arena *a, float *out, const uint16_t *in, const sdc_wt *w, const float *b, const sdc_conv_shape *s);
int sdc_linear_bf16(sdc_arena *a, float *out, const uint16_t *in, const sdc_wt *w, const float *b, int64_t M, int64_t K,
                    int64_t N, int accumulate);
/* The same with a layer's weights in either precision; scratch from a. */
int sdc_linear_wt(sdc_arena *a, float *out, const float *in, const sdc_wt *w, const float *b, int64_t M, int64_t K,
                  int64_t N);
void sdc_linear_ref(float *out, const float *in, const float *w, const float *b, int64_t M, int64_t K, int64_t N);

/* In place on x (B,C,HW): per (batch, group) normalisation, then gamma/beta per
 * channel, then SiLU if silu. Statistics in double, as the fp64 goldens. */
void sdc_group_norm(float *x, const float *gamma, const float *beta, int64_t B, int64_t C, int64_t HW, int64_t groups,
                    double eps, int silu);
/* The same from in to out (out may be in), normalising in + shift where shift
 * (B,C) adds one value per channel (a resnet's time embedding; may be NULL). */
void sdc_group_norm_to(float *out, const float *in, const float *shift, const float *gamma, const float *beta, int64_t B,
                       int64_t C, int64_t HW, int64_t groups, double eps, int silu);
/* out (rows,C) = layer_norm(in (rows,C)) * gamma + beta. out may alias in. */
void sdc_layer_norm(float *out, const float *in, const float *gamma, const float *beta, int64_t rows, int64_t C,
                    double eps);
/* x (rows,C) += y, then out = layer_norm(x) * gamma + beta: a residual add
 * and the next norm in one pass. out may alias y, not x. */
void sdc_add_layer_norm(float *out, float *x, const float *y, const float *gamma, const float *beta, int64_t rows,
                        int64_t C, double eps);

void sdc_silu(float *x, int64_t n);
void sdc_gelu(float *x, int64_t n);       /* exact erf form, torch's default */
void sdc_quick_gelu(float *x, int64_t n); /* x * sigmoid(1.702 x), OpenAI CLIP */
/* out (rows,F) = h * gelu(g) where in (rows,2F) = [h | g] (diffusers' GEGLU). out may not alias in. */
void sdc_geglu(float *out, const float *in, int64_t rows, int64_t F);
void sdc_add(float *x, const float *y, int64_t n); /* x += y */

/* Multi-head scaled dot-product attention, tokens-major.
 * q (B,Nq,H*dh) row stride ldq, k/v (B,Nk,H*dh) row stride ldk/ldv, out (B,Nq,H*dh)
 * contiguous. scale usually 1/sqrt(dh). causal masks key j > query i.
 * prec: the layer's precision (zero, the default, is fp32). */
typedef struct {
  int64_t B, Nq, Nk, heads, dh, ldq, ldk, ldv;
  float scale;
  int causal;
  sdc_precision prec;
} sdc_attn_shape;
/* In bf16 (s->prec) q, k, v are rounded to bf16 and the probabilities too. */
int sdc_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v, const sdc_attn_shape *s);
/* Internal to the attention kernels: softmax in place of the first n
 * columns of each row of s (rows, ld), row r seeing keys [0, n) or causally
 * [0, q0 + r + 1); zeros up to ld. Rows are split across cores. With inv
 * (rows floats), the rows are left as exp(x - max) and inv[r] = 1 / their
 * sum, for the caller to scale its product with V instead (one pass less). */
void sdc__softmax_rows(float *s, int64_t rows, int64_t ld, int64_t n, int64_t q0, int causal, float *inv);
void sdc_attention_ref(float *out, const float *q, const float *k, const float *v, const sdc_attn_shape *s);

/* (B,C,HW) <-> (B,HW,C) */
void sdc_nchw_to_nhwc(float *out, const float *in, int64_t B, int64_t C, int64_t HW);
void sdc_nhwc_to_nchw(float *out, const float *in, int64_t B, int64_t C, int64_t HW);
/* out (B,C,HW) = res (B,C,HW) + in (B,HW,C) transposed: a block's residual
 * add fused into its way back to NCHW. out may alias res, not in. */
void sdc_nhwc_to_nchw_add(float *out, const float *in, const float *res, int64_t B, int64_t C, int64_t HW);

/* Nearest-neighbour resize (B,C,H,W) -> (B,C,Ho,Wo) with torch's index rule
 * src = floor(dst * in / out); 2x upsampling is Ho = 2H. */
void sdc_upsample_nearest(float *out, const float *in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho,
                          int64_t Wo);

/* out (B,C1+C2,HW) = concat(a (B,C1,HW), b (B,C2,HW)) along channels. */
void sdc_concat_channels(float *out, const float *a, int64_t C1, const float *b, int64_t C2, int64_t B, int64_t HW);

#endif
