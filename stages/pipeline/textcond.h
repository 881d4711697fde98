/* textcond.h - prompts into what the UNet is conditioned on: context rows and, for SDXL, pooled text_embeds and
 * time ids. The in-process pipeline and the cluster's text worker both encode through here. */
#ifndef SDC_TEXTCOND_H
#define SDC_TEXTCOND_H

#include <stdint.h>

#include "arena.h"
#include "clip.h"
#include "denoise.h"
#include "model.h"
#include "tokenizer.h"

/* A model's text side: one tokenizer and encoder (SD 1.x/2.x), or two (SDXL: tok2/clip2 non-NULL). */
typedef struct {
  const sdc_tokenizer *tok, *tok2;
  const sdc_clip *clip, *clip2;
} sdc_text_models;

/* Loads the model's tokenizer(s): the folder's own, else the built-in vocabulary with the family's padding
 * (SDXL's second pads with "!"). tok2 is left NULL for a model with one text encoder. */
int sdc_text_tokenizers_load(const sdc_model *m, sdc_tokenizer **tok /* OUT */, sdc_tokenizer **tok2 /* OUT */);

/* What the model takes beyond SD 1.x's conditioning. */
sdc_model_caps sdc_text_caps(const sdc_model *m);

/* Width of one context row (77 of them per text) and of the pooled embedding (0 without). */
int64_t sdc_text_context_dim(const sdc_text_models *t);
int64_t sdc_text_pooled_dim(const sdc_text_models *t);

/* Encodes one text into ctx (L, context_dim) with L = the tokenizer's max length, and pooled (pooled_dim;
 * NULL or ignored without). One encoder: its last hidden state. Two: each one's penultimate state, side by
 * side, text to the first and text_2 (NULL: text) to the second, pooled from the second, as diffusers'
 * StableDiffusionXLPipeline.encode_prompt. *n_tokens (may be NULL) gets the longer token count before the
 * cut. */
int sdc_text_encode(const sdc_text_models *t, sdc_arena *a, const char *text, const char *text_2, float *ctx,
                    float *pooled, int64_t *n_tokens);

/* sdc_text_layout (denoise.h) lays the encoded texts out in guidance rows. */

#endif
