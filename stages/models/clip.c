/* clip.c - pre-norm causal transformer over token + position embeddings. */
#include "clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"

int sdc_clip_load(sdc_clip **out, sdc_weights *w, const sdc_clip_config *cfg, const sdc_load_opts *opts) {
  *out = NULL;
  sdc_weights_set_gemm(w, sdc_sgemm_acc); /* LoRA merges, on the lookups below */
  int err = sdc_precision_check(opts->precision);
  if (err) return err;
  sdc_clip *c = calloc(1, sizeof *c);
  if (c) c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
  if (!c || !c->layers) {
    sdc_clip_free(c);
    return sdc_seterr(SDC_ENOMEM, "out of memory loading the text encoder");
  }
  c->cfg = *cfg;
  c->opts = *opts;
  const sdc_wt_form form = sdc_block_opts_for(opts).linear;
  const int64_t D = cfg->hidden_size, F = cfg->intermediate_size;
  c->tok_emb = sdc_weights_get(w, "text_model.embeddings.token_embedding.weight", 2, (int64_t[]){cfg->vocab_size, D});
  c->pos_emb = sdc_weights_get(w, "text_model.embeddings.position_embedding.weight", 2, (int64_t[]){cfg->max_positions, D});
  for (int64_t l = 0; l < cfg->n_layers; l++) {
    char p[128];
    snprintf(p, sizeof p, "text_model.encoder.layers.%lld", (long long)l);
    sdc__clip_layer *L = &c->layers[l];
    L->ln1_w = sdc_wget(w, p, "layer_norm1.weight", D, 0, 0, 0);
    L->ln1_b = sdc_wget(w, p, "layer_norm1.bias", D, 0, 0, 0);
    L->q_w = sdc_wget_linear(w, form, p, "self_attn.q_proj.weight", D, D, 0);
    L->q_b = sdc_wget(w, p, "self_attn.q_proj.bias", D, 0, 0, 0);
    L->k_w = sdc_wget_linear(w, form, p, "self_attn.k_proj.weight", D, D, 0);
    L->k_b = sdc_wget(w, p, "self_attn.k_proj.bias", D, 0, 0, 0);
    L->v_w = sdc_wget_linear(w, form, p, "self_attn.v_proj.weight", D, D, 0);
    L->v_b = sdc_wget(w, p, "self_attn.v_proj.bias", D, 0, 0, 0);
    L->o_w = sdc_wget_linear(w, form, p, "self_attn.out_proj.weight", D, D, 0);
    L->o_b = sdc_wget(w, p, "self_attn.out_proj.bias", D, 0, 0, 0);
    L->ln2_w = sdc_wget(w, p, "layer_norm2.weight", D, 0, 0, 0);
    L->ln2_b = sdc_wget(w, p, "layer_norm2.bias", D, 0, 0, 0);
    L->fc1_w = sdc_wget_linear(w, form, p, "mlp.fc1.weight", F, D, 0);
    L->fc1_b = sdc_wget(w, p, "mlp.fc1.bias", F, 0, 0, 0);
    L->fc2_w = sdc_wget_linear(w, form, p, "mlp.fc2.weight", D, F, 0);
    L->fc2_b = sdc_wget(w, p, "mlp.fc2.bias", D, 0, 0, 0);
  }
  c->final_w = sdc_weights_get(w, "text_model.final_layer_norm.weight", 1, (int64_t[]){D});
  c->final_b = sdc_weights_get(w, "text_model.final_layer_norm.bias", 1, (int64_t[]){D});
  /* one row per prompt: f32 costs nothing */
  if (cfg->with_projection)
    c->proj_w = sdc_weights_get(w, "text_projection.weight", 2, (int64_t[]){cfg->projection_dim, D});
  if ((err = sdc_weights_error(w))) {
    sdc_clip_free(c);
    return err;
  }
  *out = c;
  return SDC_OK;
}

void sdc_clip_free(sdc_clip *c) {
  if (!c) return;
  free(c->layers);
  free(c);
}

int sdc_clip_encode(const sdc_clip *c, sdc_arena *a, const int32_t *ids, int64_t B, int64_t N, float *x) {
  return sdc_clip_encode_ex(c, a, ids, B, N, 0, x, NULL);
}

/* transformers' pooled position: with the legacy eos_token_id 2 the first highest id (CLIP's end-of-text is
 * the last of the vocabulary), else the first position holding eos_token_id (0 when absent: its argmax of an
 * all-false mask). */
static int64_t sdc__eos_position(const sdc_clip_config *cfg, const int32_t *ids, int64_t N) {
  int64_t at = 0;
  for (int64_t t = 0; t < N; t++) {
    if (cfg->eos_token_id == 2 ? ids[t] > ids[at] : ids[t] == cfg->eos_token_id) at = t;
    if (cfg->eos_token_id != 2 && ids[t] == cfg->eos_token_id) break;
  }
  return at;
}

int sdc_clip_encode_ex(const sdc_clip *c, sdc_arena *a, const int32_t *ids, int64_t B, int64_t N, int penultimate,
                       float *hidden, float *pooled) {
  const sdc_clip_config *cfg = &c->cfg;
  if (pooled && !c->proj_w)
    return sdc_seterr(SDC_EINVAL, "text encoder: no text_projection (not a CLIPTextModelWithProjection)");
  if (penultimate && cfg->n_layers < 2)
    return sdc_seterr(SDC_EINVAL, "text encoder: %lld layer(s) have no penultimate state", (long long)cfg->n_layers);
  const int64_t D = cfg->hidden_size, F = cfg->intermediate_size, rows = B * N, dh = D / cfg->n_heads;
  if (N > cfg->max_positions)
    return sdc_seterr(SDC_EINVAL, "text encoder: %lld tokens, at most %lld", (long long)N, (long long)cfg->max_positions);
  for (int64_t i = 0; i < rows; i++)
    if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
      return sdc_seterr(SDC_EINVAL, "text encoder: token id %d outside the vocabulary of %lld", ids[i],
                        (long long)cfg->vocab_size);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  float *n = sdc_arena_floats(a, rows * D), *q = sdc_arena_floats(a, rows * D), *k = sdc_arena_floats(a, rows * D),
        *v = sdc_arena_floats(a, rows * D), *o = sdc_arena_floats(a, rows * D), *h = sdc_arena_floats(a, rows * F);
  /* the residual stream: the caller's buffer when it wants the last state, else scratch */
  float *x = penultimate ? sdc_arena_floats(a, rows * D) : hidden;
  if (!n || !q || !k || !v || !o || !h || !x) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "text encoder: out of memory for activations");
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++) {
      float *dst = x + (b * N + t) * D;
      const float *te = c->tok_emb + (int64_t)ids[b * N + t] * D, *pe = c->pos_emb + t * D;
      for (int64_t i = 0; i < D; i++) dst[i] = te[i] + pe[i];
    }
  /* without a pooled output nothing after the penultimate state is needed */
  const int64_t n_run = penultimate && !pooled ? cfg->n_layers - 1 : cfg->n_layers;
  for (int64_t l = 0; l < n_run; l++) {
    if (penultimate && l == cfg->n_layers - 1) memcpy(hidden, x, (size_t)(rows * D) * sizeof *x);
    const sdc__clip_layer *L = &c->layers[l];
    sdc_layer_norm(n, x, L->ln1_w, L->ln1_b, rows, D, cfg->layer_norm_eps);
    sdc_attn_shape as = {B, N, N, cfg->n_heads, dh, D, D, D, (float)(1.0 / sqrt((double)dh)), 1,
                         c->opts.precision};
    int err = sdc_linear_wt(a, q, n, &L->q_w, L->q_b, rows, D, D);
    if (!err) err = sdc_linear_wt(a, k, n, &L->k_w, L->k_b, rows, D, D);
    if (!err) err = sdc_linear_wt(a, v, n, &L->v_w, L->v_b, rows, D, D);
    if (!err) err = sdc_attention(a, o, q, k, v, &as);
    if (!err) err = sdc_linear_wt(a, n, o, &L->o_w, L->o_b, rows, D, D);
    if (err) return err;
    sdc_add(x, n, rows * D);
    sdc_layer_norm(n, x, L->ln2_w, L->ln2_b, rows, D, cfg->layer_norm_eps);
    if ((err = sdc_linear_wt(a, h, n, &L->fc1_w, L->fc1_b, rows, D, F))) return err;
    if (cfg->act == SDC_ACT_QUICK_GELU) sdc_quick_gelu(h, rows * F);
    else sdc_gelu(h, rows * F);
    if ((err = sdc_linear_wt(a, n, h, &L->fc2_w, L->fc2_b, rows, F, D))) return err;
    sdc_add(x, n, rows * D);
  }
  if (penultimate && n_run == cfg->n_layers - 1) memcpy(hidden, x, (size_t)(rows * D) * sizeof *x);
  if (!penultimate || pooled) sdc_layer_norm(x, x, c->final_w, c->final_b, rows, D, cfg->layer_norm_eps);
  /* pooled = final-normed state at the end-of-text token . text_projection^T, accumulated in double (one row
   * per prompt) */
  for (int64_t b = 0; pooled && b < B; b++) {
    const float *s = x + (b * N + sdc__eos_position(cfg, ids + b * N, N)) * D;
    for (int64_t j = 0; j < cfg->projection_dim; j++) {
      const float *wr = c->proj_w + j * D;
      double acc = 0;
      for (int64_t i = 0; i < D; i++) acc += (double)s[i] * wr[i];
      pooled[b * cfg->projection_dim + j] = (float)acc;
    }
  }
  sdc_arena_reset(a, m);
  return SDC_OK;
}
