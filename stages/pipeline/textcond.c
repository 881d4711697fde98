/* textcond.c - tokenize, encode with one or two CLIP text encoders, lay out the guidance rows. */
#include "textcond.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int sdc_text_tokenizers_load(const sdc_model *m, sdc_tokenizer **tok, sdc_tokenizer **tok2) {
  char dir[1200];
  *tok = NULL, *tok2 = NULL;
  int err = sdc_model_tokenizer_dir(m, dir, sizeof dir)[0] ? sdc_tokenizer_load(tok, dir)
                                                            : sdc_tokenizer_load_builtin(tok, sdc_model_pad_token(m));
  if (!err && m->has_text_encoder_2)
    err = sdc_model_tokenizer2_dir(m, dir, sizeof dir)[0] ? sdc_tokenizer_load(tok2, dir)
                                                           : sdc_tokenizer_load_builtin(tok2, "!");
  if (err) {
    sdc_tokenizer_free(*tok), sdc_tokenizer_free(*tok2);
    *tok = NULL, *tok2 = NULL;
  }
  return err;
}

sdc_model_caps sdc_text_caps(const sdc_model *m) {
  return (sdc_model_caps){.dual_text = m->has_text_encoder_2,
                          .text_time = m->unet.add_text_time,
                          .force_zeros = m->force_zeros_for_empty_prompt,
                          .image_input = !m->has_text_encoder_2};
}

int64_t sdc_text_context_dim(const sdc_text_models *t) {
  return t->clip->cfg.hidden_size + (t->clip2 ? t->clip2->cfg.hidden_size : 0);
}

int64_t sdc_text_pooled_dim(const sdc_text_models *t) { return t->clip2 ? t->clip2->cfg.projection_dim : 0; }

int sdc_text_encode(const sdc_text_models *t, sdc_arena *a, const char *text, const char *text_2, float *ctx,
                    float *pooled, int64_t *n_tokens) {
  const int64_t L = sdc_tokenizer_max_length(t->tok), D1 = t->clip->cfg.hidden_size;
  if (t->clip2 && sdc_tokenizer_max_length(t->tok2) != L)
    return sdc_seterr(SDC_ECONFIG, "tokenizer_2: model_max_length %lld, the first tokenizer's is %lld",
                      (long long)sdc_tokenizer_max_length(t->tok2), (long long)L);
  const int64_t D2 = t->clip2 ? t->clip2->cfg.hidden_size : 0, D = D1 + D2;
  sdc_arena_mark mk = sdc_arena_get_mark(a);
  int32_t *ids = malloc((size_t)L * sizeof *ids);
  float *h1 = t->clip2 ? sdc_arena_floats(a, L * D1) : ctx, *h2 = t->clip2 ? sdc_arena_floats(a, L * D2) : NULL;
  int err = ids && h1 && (!t->clip2 || h2) ? SDC_OK : sdc_seterr(SDC_ENOMEM, "text encoder: out of memory");
  int64_t n1 = 0, n2 = 0;
  if (!err) err = sdc_tokenizer_encode_count(t->tok, text, ids, L, &n1);
  /* SD 1.x/2.x: the last hidden state; SDXL: the penultimate one of each */
  if (!err) err = sdc_clip_encode_ex(t->clip, a, ids, 1, L, t->clip2 != NULL, h1, NULL);
  if (!err && t->clip2) {
    if (!(err = sdc_tokenizer_encode_count(t->tok2, text_2 ? text_2 : text, ids, L, &n2)))
      err = sdc_clip_encode_ex(t->clip2, a, ids, 1, L, 1, h2, pooled);
    for (int64_t i = 0; !err && i < L; i++) {
      memcpy(ctx + i * D, h1 + i * D1, (size_t)D1 * sizeof *ctx);
      memcpy(ctx + i * D + D1, h2 + i * D2, (size_t)D2 * sizeof *ctx);
    }
  }
  if (n_tokens) *n_tokens = n1 > n2 ? n1 : n2;
  free(ids);
  sdc_arena_reset(a, mk);
  return err;
}
