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

#endif
