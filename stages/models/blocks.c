/* blocks.c - resnet, spatial transformer, VAE attention and resampling, shared by UNet and VAE. */
#include "blocks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "onednn.h"
#include "ops.h"
#include "ops_bf16.h"
#include "sdc_limits.h"

#define SDC__NAME_MAX 320

const float *sdc_wget(sdc_weights *w, const char *prefix, const char *name, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3) {
  char key[SDC__NAME_MAX];
  snprintf(key, sizeof key, "%s.%s", prefix, name);
  int64_t shape[4] = {d0, d1, d2, d3};
  int ndim = 4;
  while (ndim > 1 && shape[ndim - 1] == 0) ndim--;
  return sdc_weights_get(w, key, ndim, shape);
}

sdc_block_opts sdc_block_opts_for(const sdc_load_opts *o) {
  if (o->precision == SDC_PREC_BF16) return (sdc_block_opts){SDC_PREC_BF16, SDC_WT_BF16, SDC_WT_BF16};
  const sdc_wt_form f = sdc_fp32_gemm() == SDC_GEMM_ONEDNN && !o->plain ? SDC_WT_F32_ONEDNN : SDC_WT_F32;
  return (sdc_block_opts){SDC_PREC_FP32, f, f};
}

/* Packed forms: weights are packed for oneDNN straight from their f32
 * widening, which is then released, so only the packed copy stays resident
 * (2 bytes a weight in bf16). A recorder hands out f32 in bf16 precision
 * (it writes the file later); in fp32 its layers run as a file's would. */
static int sdc__packs(const sdc_weights *w, sdc_wt_form form) {
  return form == SDC_WT_F32_ONEDNN || (form == SDC_WT_BF16 && !w->recording);
}

sdc_wt sdc_wget_conv(sdc_weights *w, sdc_wt_form form, const char *prefix, const char *name, int64_t cout, int64_t cin,
                     int64_t k, int64_t stride) {
  char key[SDC__NAME_MAX];
  snprintf(key, sizeof key, "%s.%s", prefix, name);
  sdc_wt r = {0};
  if (sdc__packs(w, form)) {
    const float *f = sdc_weights_get(w, key, 4, (int64_t[]){cout, cin, k, k});
    if (!f) return r;
    sdc_packed *pk = sdc_onednn_pack_conv(f, cout, cin, k, k, stride, form == SDC_WT_F32_ONEDNN);
    sdc_weights_release(w, f, cout * cin * k * k);
    r.pk = sdc_weights_keep(w, pk, sdc_onednn_packed_free, sdc_onednn_packed_bytes(pk), key);
    return r;
  }
  r.taps = sdc_conv_packs(cin, k, stride);
  r.f32 = r.taps ? sdc_weights_get_taps(w, key, cout, cin, k, k) : sdc_weights_get(w, key, 4, (int64_t[]){cout, cin, k, k});
  return r;
}

sdc_wt sdc_wget_linear(sdc_weights *w, sdc_wt_form form, const char *prefix, const char *name, int64_t n_out,
                       int64_t n_in, int prefer_conv) {
  char key[SDC__NAME_MAX];
  snprintf(key, sizeof key, "%s.%s", prefix, name);
  sdc_wt r = {.f32 = sdc_weights_get_linear(w, key, n_out, n_in, prefer_conv)};
  if (r.f32 && sdc__packs(w, form)) {
    sdc_packed *pk = sdc_onednn_pack_linear(r.f32, n_out, n_in, form == SDC_WT_F32_ONEDNN);
    sdc_weights_release(w, r.f32, n_out * n_in);
    r.f32 = NULL;
    r.pk = sdc_weights_keep(w, pk, sdc_onednn_packed_free, sdc_onednn_packed_bytes(pk), key);
  }
  return r;
}

/* ------------------------------------------------------------------ resnet */

void sdc_resnet_load(sdc_resnet *r, sdc_weights *w, const sdc_block_opts *o, const char *p, int64_t cin, int64_t cout,
                     int64_t temb_dim, int64_t groups, double eps, double out_scale) {
  *r = (sdc_resnet){.cin = cin, .cout = cout, .temb_dim = temb_dim, .groups = groups, .eps = eps, .out_scale = out_scale};
  r->norm1_w = sdc_wget(w, p, "norm1.weight", cin, 0, 0, 0);
  r->norm1_b = sdc_wget(w, p, "norm1.bias", cin, 0, 0, 0);
  r->conv1_w = sdc_wget_conv(w, o->conv, p, "conv1.weight", cout, cin, 3, 1);
  r->conv1_b = sdc_wget(w, p, "conv1.bias", cout, 0, 0, 0);
  if (temb_dim) {
    r->temb_w = sdc_wget_linear(w, o->linear, p, "time_emb_proj.weight", cout, temb_dim, 0);
    r->temb_b = sdc_wget(w, p, "time_emb_proj.bias", cout, 0, 0, 0);
  }
  r->norm2_w = sdc_wget(w, p, "norm2.weight", cout, 0, 0, 0);
  r->norm2_b = sdc_wget(w, p, "norm2.bias", cout, 0, 0, 0);
  r->conv2_w = sdc_wget_conv(w, o->conv, p, "conv2.weight", cout, cout, 3, 1);
  r->conv2_b = sdc_wget(w, p, "conv2.bias", cout, 0, 0, 0);
  if (cin != cout) {
    r->short_w = sdc_wget_conv(w, o->conv, p, "conv_shortcut.weight", cout, cin, 1, 1);
    r->short_b = sdc_wget(w, p, "conv_shortcut.bias", cout, 0, 0, 0);
  }
}

/* bf16 arena scratch of n values. */
#define SDC__ALLOC_BF16(ptr, a, n)                                                                 \
  do {                                                                                             \
    if (!((ptr) = (uint16_t *)sdc_arena_floats((a), ((n) + 1) / 2)))                              \
      return sdc_seterr(SDC_ENOMEM, "out of memory for activations (%lld bf16)", (long long)(n));  \
  } while (0)

/* The resnet in bf16 precision: each norm writes the bf16 NHWC input of the
 * conv after it, the convs write f32 NHWC, and the residual add turns the
 * result back into NCHW - no separate layout passes. */
static int sdc__resnet_forward_bf16(const sdc_resnet *r, sdc_arena *a, float *out, const float *x, const float *temb_silu,
                                    int64_t B, int64_t H, int64_t W) {
  const int64_t HW = H * W, cmax = r->cin > r->cout ? r->cin : r->cout;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  uint16_t *hb;
  float *y1, *y2;
  SDC__ALLOC_BF16(hb, a, B * HW * cmax);
  SDC__ALLOC(y1, a, B * HW * r->cout);
  SDC__ALLOC(y2, a, B * HW * r->cout);
  int err = sdc_group_norm_bf16(a, hb, x, 0, NULL, r->norm1_w, r->norm1_b, B, r->cin, HW, r->groups, r->eps, 1);
  sdc_conv_shape cs = {B, r->cin, H, W, r->cout, 3, 3, 1, 1, 1, H, W, 0};
  if (!err) err = sdc_conv2d_nhwc(a, y1, hb, &r->conv1_w, r->conv1_b, &cs);
  float *t = NULL;
  if (!err && r->temb_dim && temb_silu) {
    SDC__ALLOC(t, a, B * r->cout);
    err = sdc_linear_wt(a, t, temb_silu, &r->temb_w, r->temb_b, B, r->temb_dim, r->cout);
  }
  /* the time embedding is folded into norm2, as in the f32 path */
  if (!err) err = sdc_group_norm_bf16(a, hb, y1, 1, t, r->norm2_w, r->norm2_b, B, r->cout, HW, r->groups, r->eps, 1);
  cs.Cin = r->cout;
  if (!err) err = sdc_conv2d_nhwc(a, y2, hb, &r->conv2_w, r->conv2_b, &cs);
  if (err) return err;
  const float *res = x; /* NCHW */
  if (r->short_w.pk) {
    sdc_nchw_to_nhwc_bf16(hb, x, B, r->cin, HW);
    sdc_conv_shape ss = {B, r->cin, H, W, r->cout, 1, 1, 1, 0, 0, H, W, 0};
    if ((err = sdc_conv2d_nhwc(a, y1, hb, &r->short_w, r->short_b, &ss))) return err;
    sdc_add(y2, y1, B * HW * r->cout); /* both NHWC */
    res = NULL;
  }
  sdc_nhwc_to_nchw_add(out, y2, res, B, r->cout, HW);
  if (r->out_scale != 1.0) {
    const float inv = (float)(1.0 / r->out_scale);
    for (int64_t i = 0; i < B * r->cout * HW; i++) out[i] *= inv;
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

int sdc_resnet_forward(const sdc_resnet *r, sdc_arena *a, float *out, const float *x, const float *temb_silu, int64_t B,
                       int64_t H, int64_t W) {
  if (sdc_onednn_packed_bf16(r->conv1_w.pk) && sdc_onednn_packed_bf16(r->conv2_w.pk) &&
      (r->cin == r->cout || sdc_onednn_packed_bf16(r->short_w.pk)))
    return sdc__resnet_forward_bf16(r, a, out, x, temb_silu, B, H, W);
  const int64_t HW = H * W;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *h, *h2, *t = NULL;
  SDC__ALLOC(h, a, B * r->cin * HW);
  SDC__ALLOC(h2, a, B * r->cout * HW);
  sdc_group_norm_to(h, x, NULL, r->norm1_w, r->norm1_b, B, r->cin, HW, r->groups, r->eps, 1);
  sdc_conv_shape cs = {B, r->cin, H, W, r->cout, 3, 3, 1, 1, 1, H, W, 0};
  int err = sdc_conv2d_wt(a, h2, h, &r->conv1_w, r->conv1_b, &cs);
  if (err) return err;
  if (r->temb_dim && temb_silu) {
    SDC__ALLOC(t, a, B * r->cout);
    if ((err = sdc_linear_wt(a, t, temb_silu, &r->temb_w, r->temb_b, B, r->temb_dim, r->cout))) return err;
  }
  /* the time embedding is one value per (batch, channel): norm2 folds it
   * into its statistics and shift rather than a pass adding it to h2 */
  sdc_group_norm_to(h2, h2, t, r->norm2_w, r->norm2_b, B, r->cout, HW, r->groups, r->eps, 1);
  cs.Cin = r->cout;
  if ((err = sdc_conv2d_wt(a, out, h2, &r->conv2_w, r->conv2_b, &cs))) return err;
  const float *res = x;
  if (r->short_w.f32 || r->short_w.pk) {
    sdc_conv_shape ss = {B, r->cin, H, W, r->cout, 1, 1, 1, 0, 0, H, W, 0};
    if ((err = sdc_conv2d_wt(a, h2, x, &r->short_w, r->short_b, &ss))) return err;
    res = h2;
  }
  const int64_t n = B * r->cout * HW;
  if (r->out_scale != 1.0) {
    /* (out + res) / out_scale in the one pass, rounded as two */
    const float inv = (float)(1.0 / r->out_scale);
#pragma omp parallel for schedule(static) if (n > SDC_PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) out[i] = (out[i] + res[i]) * inv;
  } else {
    sdc_add(out, res, n);
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}

/* ------------------------------------------------------------- transformer */

/* "<block>.<name>.to_q" ...: queries from C-wide tokens, keys/values from kv_dim-wide ones. */
static void sdc__attn_load(sdc__attn *at, sdc_weights *w, sdc_wt_form form, const char *block, const char *name,
                           int64_t C, int64_t kv_dim) {
  char p[SDC__NAME_MAX];
  snprintf(p, sizeof p, "%s.%s", block, name);
  at->q = sdc_wget_linear(w, form, p, "to_q.weight", C, C, 0);
  at->k = sdc_wget_linear(w, form, p, "to_k.weight", C, kv_dim, 0);
  at->v = sdc_wget_linear(w, form, p, "to_v.weight", C, kv_dim, 0);
  at->o_w = sdc_wget_linear(w, form, p, "to_out.0.weight", C, C, 0);
  at->o_b = sdc_wget(w, p, "to_out.0.bias", C, 0, 0, 0);
}

/* res (rows, C) = attention of x (rows, C) over kv (B*Nk, kv_dim), projected
 * out; q/k/v/o are (rows or B*Nk, C) scratch. */
static int sdc__attn_forward(const sdc__attn *at, sdc_arena *a, float *res, const float *x, const float *kv, float *q,
                             float *k, float *v, float *o, int64_t B, int64_t N, int64_t Nk, int64_t C, int64_t kv_dim,
                             int64_t heads, sdc_precision prec) {
  const int64_t rows = B * N, dh = C / heads;
  sdc_attn_shape as = {B, N, Nk, heads, dh, C, C, C, (float)(1.0 / sqrt((double)dh)), 0, prec};
  int err = sdc_linear_wt(a, q, x, &at->q, NULL, rows, C, C);
  if (!err) err = sdc_linear_wt(a, k, kv, &at->k, NULL, B * Nk, kv_dim, C);
  if (!err) err = sdc_linear_wt(a, v, kv, &at->v, NULL, B * Nk, kv_dim, C);
  if (!err) err = sdc_attention(a, o, q, k, v, &as);
  if (!err) err = sdc_linear_wt(a, res, o, &at->o_w, at->o_b, rows, C, C);
  return err;
}

void sdc_transformer_load(sdc_transformer *t, sdc_weights *w, const sdc_block_opts *o, const char *p, int64_t C,
                          int64_t heads, int64_t ctx_dim, int64_t groups, int64_t n_layers, int linear_proj) {
  memset(t, 0, sizeof *t);
  t->C = C, t->heads = heads, t->ctx_dim = ctx_dim, t->groups = groups, t->n_layers = n_layers, t->ff_inner = 4 * C;
  t->prec = o->precision;
  if (n_layers > SDC_MAX_TLAYERS) {
    /* recorded like a weight error so the loader reports it once */
    sdc_weights_fail(w, SDC_ECONFIG, "%s: %lld transformer layers, at most %d supported", p, (long long)n_layers,
                     SDC_MAX_TLAYERS);
    return;
  }
  t->norm_w = sdc_wget(w, p, "norm.weight", C, 0, 0, 0);
  t->norm_b = sdc_wget(w, p, "norm.bias", C, 0, 0, 0);
  /* conv 1x1 (SD 1.x) and linear (SD 2.x) projections are the same matrix */
  t->proj_in_w = sdc_wget_linear(w, o->linear, p, "proj_in.weight", C, C, !linear_proj);
  t->proj_in_b = sdc_wget(w, p, "proj_in.bias", C, 0, 0, 0);
  t->proj_out_w = sdc_wget_linear(w, o->linear, p, "proj_out.weight", C, C, !linear_proj);
  t->proj_out_b = sdc_wget(w, p, "proj_out.bias", C, 0, 0, 0);
  for (int64_t l = 0; l < n_layers; l++) {
    char q[SDC__NAME_MAX];
    snprintf(q, sizeof q, "%s.transformer_blocks.%lld", p, (long long)l);
    sdc__tblock *b = &t->blocks[l];
    b->norm1_w = sdc_wget(w, q, "norm1.weight", C, 0, 0, 0);
    b->norm1_b = sdc_wget(w, q, "norm1.bias", C, 0, 0, 0);
    sdc__attn_load(&b->attn1, w, o->linear, q, "attn1", C, C);
    b->norm2_w = sdc_wget(w, q, "norm2.weight", C, 0, 0, 0);
    b->norm2_b = sdc_wget(w, q, "norm2.bias", C, 0, 0, 0);
    sdc__attn_load(&b->attn2, w, o->linear, q, "attn2", C, ctx_dim);
    b->norm3_w = sdc_wget(w, q, "norm3.weight", C, 0, 0, 0);
    b->norm3_b = sdc_wget(w, q, "norm3.bias", C, 0, 0, 0);
    b->ff1_w = sdc_wget_linear(w, o->linear, q, "ff.net.0.proj.weight", 2 * t->ff_inner, C, 0);
    b->ff1_b = sdc_wget(w, q, "ff.net.0.proj.bias", 2 * t->ff_inner, 0, 0, 0);
    b->ff2_w = sdc_wget_linear(w, o->linear, q, "ff.net.2.weight", C, t->ff_inner, 0);
    b->ff2_b = sdc_wget(w, q, "ff.net.2.bias", C, 0, 0, 0);
  }
}

/* bf16 precision: tok (rows, C) += out-projection of the attention of the
 * bf16 rows xb over keys/values from kvb (bf16 rows, self-attention) or ctx
 * (f32, cross-attention); q/k/v/o are f32 scratch, ob bf16. */
static int sdc__attn_forward_bf16(const sdc__attn *at, sdc_arena *a, float *tok, const uint16_t *xb, const float *ctx,
                                  float *q, float *k, float *v, float *o, uint16_t *ob, int64_t B, int64_t N, int64_t Nk,
                                  int64_t C, int64_t kv_dim, int64_t heads, sdc_precision prec) {
  const int64_t rows = B * N, dh = C / heads;
  sdc_attn_shape as = {B, N, Nk, heads, dh, C, C, C, (float)(1.0 / sqrt((double)dh)), 0, prec};
  int err = sdc_linear_bf16(a, q, xb, &at->q, NULL, rows, C, C, 0);
  if (!err) err = ctx ? sdc_linear_wt(a, k, ctx, &at->k, NULL, B * Nk, kv_dim, C)
                      : sdc_linear_bf16(a, k, xb, &at->k, NULL, rows, C, C, 0);
  if (!err) err = ctx ? sdc_linear_wt(a, v, ctx, &at->v, NULL, B * Nk, kv_dim, C)
                      : sdc_linear_bf16(a, v, xb, &at->v, NULL, rows, C, C, 0);
  if (!err) err = sdc_attention(a, o, q, k, v, &as);
  if (err) return err;
  sdc_f32_to_bf16_rows(ob, o, rows, C);
  return sdc_linear_bf16(a, tok, ob, &at->o_w, at->o_b, rows, C, C, 1);
}

/* The transformer in bf16 precision: norms write the bf16 rows the linear
 * layers read, residual adds happen inside the GEMMs (accumulate). */
static int sdc__transformer_forward_bf16(const sdc_transformer *t, sdc_arena *a, float *out, const float *x,
                                         const float *ctx, int64_t B, int64_t H, int64_t W, int64_t Nctx) {
  const int64_t C = t->C, N = H * W, rows = B * N, F = t->ff_inner;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *tok, *q, *k, *v, *o, *ff;
  uint16_t *xb, *ob;
  const int64_t kv_rows = rows > B * Nctx ? rows : B * Nctx, wide = F > C ? F : C;
  SDC__ALLOC(tok, a, rows * C);
  SDC__ALLOC(q, a, rows * C);
  SDC__ALLOC(k, a, kv_rows * C);
  SDC__ALLOC(v, a, kv_rows * C);
  SDC__ALLOC(o, a, rows * C);
  SDC__ALLOC(ff, a, rows * 2 * F);
  SDC__ALLOC_BF16(xb, a, rows * wide);
  SDC__ALLOC_BF16(ob, a, rows * C);
  int err = sdc_group_norm_bf16(a, xb, x, 0, NULL, t->norm_w, t->norm_b, B, C, N, t->groups, 1e-6, 0);
  if (!err) err = sdc_linear_bf16(a, tok, xb, &t->proj_in_w, t->proj_in_b, rows, C, C, 0);
  for (int64_t l = 0; !err && l < t->n_layers; l++) {
    const sdc__tblock *b = &t->blocks[l];
    sdc_layer_norm_bf16(xb, tok, b->norm1_w, b->norm1_b, rows, C, 1e-5);
    err = sdc__attn_forward_bf16(&b->attn1, a, tok, xb, NULL, q, k, v, o, ob, B, N, N, C, C, t->heads, t->prec);
    if (err) break;
    sdc_layer_norm_bf16(xb, tok, b->norm2_w, b->norm2_b, rows, C, 1e-5);
    err = sdc__attn_forward_bf16(&b->attn2, a, tok, xb, ctx, q, k, v, o, ob, B, N, Nctx, C, t->ctx_dim, t->heads,
                                 t->prec);
    if (err) break;
    sdc_layer_norm_bf16(xb, tok, b->norm3_w, b->norm3_b, rows, C, 1e-5);
    if ((err = sdc_linear_bf16(a, ff, xb, &b->ff1_w, b->ff1_b, rows, C, 2 * F, 0))) break;
    sdc_geglu_bf16(xb, ff, rows, F);
    err = sdc_linear_bf16(a, tok, xb, &b->ff2_w, b->ff2_b, rows, F, C, 1);
  }
  if (err) return err;
  sdc_f32_to_bf16_rows(xb, tok, rows, C);
  if ((err = sdc_linear_bf16(a, o, xb, &t->proj_out_w, t->proj_out_b, rows, C, C, 0))) return err;
  sdc_nhwc_to_nchw_add(out, o, x, B, C, N);
  sdc_arena_reset(a, m);
  return SDC_OK;
}

int sdc_transformer_forward(const sdc_transformer *t, sdc_arena *a, float *out, const float *x, const float *ctx,
                            int64_t B, int64_t H, int64_t W, int64_t Nctx) {
  if (sdc_onednn_packed_bf16(t->proj_in_w.pk)) return sdc__transformer_forward_bf16(t, a, out, x, ctx, B, H, W, Nctx);
  const int64_t C = t->C, N = H * W, rows = B * N;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *h, *tok, *nrm, *q, *k, *v, *o, *ff, *gg;
  int64_t kv_rows = rows > B * Nctx ? rows : B * Nctx;
  SDC__ALLOC(h, a, B * C * N);
  SDC__ALLOC(tok, a, rows * C);
  SDC__ALLOC(nrm, a, rows * C);
  SDC__ALLOC(q, a, rows * C);
  SDC__ALLOC(k, a, kv_rows * C);
  SDC__ALLOC(v, a, kv_rows * C);
  SDC__ALLOC(o, a, rows * C);
  SDC__ALLOC(ff, a, rows * 2 * t->ff_inner);
  SDC__ALLOC(gg, a, rows * t->ff_inner);
  sdc_group_norm_to(h, x, NULL, t->norm_w, t->norm_b, B, C, N, t->groups, 1e-6, 0);
  sdc_nchw_to_nhwc(nrm, h, B, C, N);
  int err;
  if ((err = sdc_linear_wt(a, tok, nrm, &t->proj_in_w, t->proj_in_b, rows, C, C))) return err;
  /* Each sub-block's residual add is fused with the norm that follows it
   * (sdc_add_layer_norm), so nrm holds the next sub-block's input. */
  if (t->n_layers) sdc_layer_norm(nrm, tok, t->blocks[0].norm1_w, t->blocks[0].norm1_b, rows, C, 1e-5);
  for (int64_t l = 0; l < t->n_layers; l++) {
    const sdc__tblock *b = &t->blocks[l];
    /* self-attention */
    if ((err = sdc__attn_forward(&b->attn1, a, nrm, nrm, nrm, q, k, v, o, B, N, N, C, C, t->heads, t->prec)))
      return err;
    sdc_add_layer_norm(nrm, tok, nrm, b->norm2_w, b->norm2_b, rows, C, 1e-5);
    /* cross-attention to the text context */
    if ((err = sdc__attn_forward(&b->attn2, a, nrm, nrm, ctx, q, k, v, o, B, N, Nctx, C, t->ctx_dim, t->heads,
                                 t->prec)))
      return err;
    sdc_add_layer_norm(nrm, tok, nrm, b->norm3_w, b->norm3_b, rows, C, 1e-5);
    /* GEGLU feed-forward */
    if ((err = sdc_linear_wt(a, ff, nrm, &b->ff1_w, b->ff1_b, rows, C, 2 * t->ff_inner))) return err;
    sdc_geglu(gg, ff, rows, t->ff_inner);
    if ((err = sdc_linear_wt(a, nrm, gg, &b->ff2_w, b->ff2_b, rows, t->ff_inner, C))) return err;
    if (l + 1 < t->n_layers)
      sdc_add_layer_norm(nrm, tok, nrm, t->blocks[l + 1].norm1_w, t->blocks[l + 1].norm1_b, rows, C, 1e-5);
    else
      sdc_add(tok, nrm, rows * C);
  }
  if ((err = sdc_linear_wt(a, nrm, tok, &t->proj_out_w, t->proj_out_b, rows, C, C))) return err;
  sdc_nhwc_to_nchw_add(out, nrm, x, B, C, N);
  sdc_arena_reset(a, m);
  return SDC_OK;
}

/* ----------------------------------------------------------- VAE attention */

void sdc_vae_attention_load(sdc_vae_attention *t, sdc_weights *w, const sdc_block_opts *o, const char *p, int64_t C,
                            int64_t groups) {
  memset(t, 0, sizeof *t);
  t->C = C, t->groups = groups, t->prec = o->precision;
  char probe[SDC__NAME_MAX];
  snprintf(probe, sizeof probe, "%s.query.weight", p);
  /* Many real files still carry the pre-0.14 names query/key/value/proj_attn. */
  int old = sdc_weights_has(w, probe);
  t->norm_w = sdc_wget(w, p, "group_norm.weight", C, 0, 0, 0);
  t->norm_b = sdc_wget(w, p, "group_norm.bias", C, 0, 0, 0);
  t->q_w = sdc_wget_linear(w, o->linear, p, old ? "query.weight" : "to_q.weight", C, C, 0);
  t->q_b = sdc_wget(w, p, old ? "query.bias" : "to_q.bias", C, 0, 0, 0);
  t->k_w = sdc_wget_linear(w, o->linear, p, old ? "key.weight" : "to_k.weight", C, C, 0);
  t->k_b = sdc_wget(w, p, old ? "key.bias" : "to_k.bias", C, 0, 0, 0);
  t->v_w = sdc_wget_linear(w, o->linear, p, old ? "value.weight" : "to_v.weight", C, C, 0);
  t->v_b = sdc_wget(w, p, old ? "value.bias" : "to_v.bias", C, 0, 0, 0);
  t->o_w = sdc_wget_linear(w, o->linear, p, old ? "proj_attn.weight" : "to_out.0.weight", C, C, 0);
  t->o_b = sdc_wget(w, p, old ? "proj_attn.bias" : "to_out.0.bias", C, 0, 0, 0);
}

int sdc_vae_attention_forward(const sdc_vae_attention *t, sdc_arena *a, float *out, const float *x, int64_t B,
                              int64_t H, int64_t W) {
  const int64_t C = t->C, N = H * W, rows = B * N;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *h, *tok, *q, *k, *v, *o;
  SDC__ALLOC(h, a, B * C * N);
  SDC__ALLOC(tok, a, rows * C);
  SDC__ALLOC(q, a, rows * C);
  SDC__ALLOC(k, a, rows * C);
  SDC__ALLOC(v, a, rows * C);
  SDC__ALLOC(o, a, rows * C);
  sdc_group_norm_to(h, x, NULL, t->norm_w, t->norm_b, B, C, N, t->groups, 1e-6, 0);
  sdc_nchw_to_nhwc(tok, h, B, C, N);
  int err = sdc_linear_wt(a, q, tok, &t->q_w, t->q_b, rows, C, C);
  if (!err) err = sdc_linear_wt(a, k, tok, &t->k_w, t->k_b, rows, C, C);
  if (!err) err = sdc_linear_wt(a, v, tok, &t->v_w, t->v_b, rows, C, C);
  if (err) return err;
  sdc_attn_shape as = {B, N, N, 1, C, C, C, C, (float)(1.0 / sqrt((double)C)), 0, t->prec};
  if ((err = sdc_attention(a, o, q, k, v, &as))) return err;
  if ((err = sdc_linear_wt(a, tok, o, &t->o_w, t->o_b, rows, C, C))) return err;
  sdc_nhwc_to_nchw_add(out, tok, x, B, C, N);
  sdc_arena_reset(a, m);
  return SDC_OK;
}

/* -------------------------------------------------------------- resampling */

void sdc_resample_load(sdc_resample *r, sdc_weights *w, const sdc_block_opts *o, const char *p, int64_t C,
                       int64_t padding, int64_t stride) {
  r->C = C, r->padding = padding;
  r->w = sdc_wget_conv(w, o->conv, p, "conv.weight", C, C, 3, stride);
  r->b = sdc_wget(w, p, "conv.bias", C, 0, 0, 0);
}

int64_t sdc_downsample_size(int64_t in, int64_t padding) {
  return padding ? sdc_conv_out_size(in, 3, 2, padding, padding) : sdc_conv_out_size(in, 3, 2, 0, 1);
}

int sdc_downsample_forward(const sdc_resample *r, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H,
                           int64_t W, int64_t *Ho, int64_t *Wo) {
  *Ho = sdc_downsample_size(H, r->padding);
  *Wo = sdc_downsample_size(W, r->padding);
  sdc_conv_shape cs = {B, r->C, H, W, r->C, 3, 3, 2, r->padding, r->padding, *Ho, *Wo, 0};
  return sdc_conv2d_wt(a, out, x, &r->w, r->b, &cs);
}

int sdc_upsample_forward(const sdc_resample *r, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H, int64_t W,
                         int64_t Ho, int64_t Wo) {
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *up;
  SDC__ALLOC(up, a, B * r->C * Ho * Wo);
  sdc_upsample_nearest(up, x, B, r->C, H, W, Ho, Wo);
  sdc_conv_shape cs = {B, r->C, Ho, Wo, r->C, 3, 3, 1, 1, 1, Ho, Wo, 0};
  int err = sdc_conv2d_wt(a, out, up, &r->w, r->b, &cs);
  sdc_arena_reset(a, m);
  return err;
}

void sdc_conv_load(sdc_conv *c, sdc_weights *w, const char *p, int64_t cin, int64_t cout, int64_t k) {
  c->cin = cin, c->cout = cout, c->k = k;
  /* A model's input and output convs stay f32 in every precision: a few
   * channels on one side, so under 1% of the FLOPs, and they feed the
   * latents and pixels directly (bf16 there costs dBs of PSNR). */
  /* prefix is the conv itself: its weight is "<prefix>.weight" */
  c->w = sdc_wget_conv(w, SDC_WT_F32, p, "weight", cout, cin, k, 1);
  c->b = sdc_wget(w, p, "bias", cout, 0, 0, 0);
}

int sdc_conv_forward(const sdc_conv *c, sdc_arena *a, float *out, const float *x, int64_t B, int64_t H, int64_t W) {
  sdc_conv_shape cs = {B, c->cin, H, W, c->cout, c->k, c->k, 1, c->k / 2, c->k / 2, H, W, 0};
  return sdc_conv2d_wt(a, out, x, &c->w, c->b, &cs);
}
