/* clip.h - CLIP text transformer (transformers' CLIPTextModel): token ids -> last_hidden_state. */
#ifndef SDC_CLIP_H
#define SDC_CLIP_H

#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "config.h"
#include "ops.h"
#include "weights.h"

typedef struct {
  const float *ln1_w, *ln1_b, *q_b, *k_b, *v_b, *o_b, *ln2_w, *ln2_b, *fc1_b, *fc2_b;
  sdc_wt q_w, k_w, v_w, o_w, fc1_w, fc2_w;
} sdc__clip_layer;

typedef struct {
  sdc_clip_config cfg;
  sdc_load_opts opts; /* as loaded */
  const float *tok_emb, *pos_emb, *final_w, *final_b;
  sdc__clip_layer *layers;
  const float *proj_w; /* (projection_dim, hidden_size), f32; NULL without a projection */
} sdc_clip;

/* Loads from w (diffusers/transformers names "text_model.*"), which must outlive
 * the model, for opts (its precision: SDC_EUNSUPPORTED when this CPU cannot
 * run it). Errors name the file and tensor. Free with sdc_clip_free(). */
int sdc_clip_load(sdc_clip **out /* OUT */, sdc_weights *w, const sdc_clip_config *cfg, const sdc_load_opts *opts);
void sdc_clip_free(sdc_clip *c);

/* ids (B,N) with N <= max_position_embeddings -> hidden (B,N,hidden_size),
 * after the final layer norm, causal attention. An id outside the vocabulary
 * is SDC_EINVAL naming it. */
int sdc_clip_encode(const sdc_clip *c, sdc_arena *a, const int32_t *ids, int64_t B, int64_t N, float *hidden);

/* The same with SDXL's outputs: penultimate != 0 writes hidden_states[-2] (the input of the last layer, no
 * final layer norm) to hidden instead; pooled (B, projection_dim), when non-NULL, gets the final-normed state
 * at the end-of-text token times text_projection (CLIPTextModelWithProjection's text_embeds; SDC_EINVAL
 * when the model has no projection). */
int sdc_clip_encode_ex(const sdc_clip *c, sdc_arena *a, const int32_t *ids, int64_t B, int64_t N, int penultimate,
                       float *hidden, float *pooled);

#endif
