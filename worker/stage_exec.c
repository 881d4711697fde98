/* stage_exec.c - one hop of a route: validate the request against the model, compute, build the next message. */
#include "stage_exec.h"

#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "imagecond.h"
#include "job.h"
#include "log.h"
#include "lora.h"
#include "pipeline.h"
#include "pngio.h"
#include "sdc_limits.h"
#include "stage.h"
#include "textcond.h"
#include "wire.h"


int sdc_stage_host_load(sdc_stage_host *h, const char *model, const char *config_dir, unsigned stages,
                        const sdc_load_opts *opts) {
  memset(h, 0, sizeof *h);
  h->stages = stages;
  h->opts = opts ? *opts : (sdc_load_opts){0};
  h->lora_cache = SDC_WORKER_DEFAULT_LORA_CACHE;
  sdc_arena_init(&h->arena, 0);
  int err = sdc_model_open(&h->model, model, config_dir);
  if (err) return err;
  err = sdc_model_fingerprint(&h->model, sdc_precision_name(opts ? opts->precision : SDC_PREC_FP32), h->fingerprint,
                              sizeof h->fingerprint);
  if (err) {
    sdc_stage_host_free(h);
    return err;
  }
  if (stages & (1u << SDCPB__STAGE__TEXT)) {
    /* as the in-process pipeline loads them: SDXL's second tokenizer and encoder too */
    err = sdc_text_tokenizers_load(&h->model, &h->tok, &h->tok2);
    if (!err) err = sdc_model_weights(&h->model, SDC_COMP_TEXT_ENCODER, &h->w[SDC_COMP_TEXT_ENCODER]);
    if (!err) err = sdc_clip_load(&h->clip, &h->w[SDC_COMP_TEXT_ENCODER], &h->model.clip, opts);
    if (!err && h->model.has_text_encoder_2) {
      err = sdc_model_weights(&h->model, SDC_COMP_TEXT_ENCODER_2, &h->w[SDC_COMP_TEXT_ENCODER_2]);
      if (!err) err = sdc_clip_load(&h->clip2, &h->w[SDC_COMP_TEXT_ENCODER_2], &h->model.clip2, opts);
    }
  }
  unsigned parts = (stages & (1u << SDCPB__STAGE__UNET_DOWN) ? SDC_UNET_DOWN : 0) |
                   (stages & (1u << SDCPB__STAGE__UNET_MID) ? SDC_UNET_MID : 0) |
                   (stages & (1u << SDCPB__STAGE__UNET_UP) ? SDC_UNET_UP : 0);
  h->unet_parts = parts;
  if (!err && parts) {
    err = sdc_model_weights(&h->model, SDC_COMP_UNET, &h->w[SDC_COMP_UNET]);
    if (!err) err = sdc_unet_load(&h->unet, &h->w[SDC_COMP_UNET], &h->model.unet, parts, opts);
  }
  if (!err && (stages & (1u << SDCPB__STAGE__VAE))) {
    err = sdc_model_weights(&h->model, SDC_COMP_VAE, &h->w[SDC_COMP_VAE]);
    /* the encoder too: img2img and inpainting jobs have their images encoded here */
    if (!err) err = sdc_vae_load(&h->vae, &h->w[SDC_COMP_VAE], &h->model.vae, SDC_VAE_DECODER | SDC_VAE_ENCODER, opts);
  }
  if (err) sdc_stage_host_free(h);
  return err;
}

int sdc_stage_host_lora_sets(const sdc_stage_host *h) {
  return h->lora_dir[0] && !h->model.has_text_encoder_2 ? h->lora_cache : 0;
}

/* The constants are SD 1.5's, scaled by the full-resolution channels only. SDXL's UNet has SD's 320 there (and
 * no attention at full resolution, where SD 1.5 has its largest buffers), its VAE SD's 128: the estimate stays
 * in the measured model's terms, and nothing here divides by a size that another model could make 0. */
int64_t sdc_stage_host_bytes_per_pixel(const sdc_stage_host *h) {
  const double unet = (double)h->model.unet.block_out_channels[0] / SDC_SD15_UNET_C0,
               vae = (double)h->model.vae.block_out_channels[0] / SDC_SD15_VAE_C0;
  double b = 0;
  if (h->stages & (1u << SDCPB__STAGE__UNET_DOWN)) b += unet * SDC_UNET_DOWN_PEAK_BYTES_PER_PIXEL;
  if (h->stages & (1u << SDCPB__STAGE__UNET_MID)) b += unet * SDC_UNET_MID_PEAK_BYTES_PER_PIXEL;
  if (h->stages & (1u << SDCPB__STAGE__UNET_UP)) b += unet * SDC_UNET_UP_PEAK_BYTES_PER_PIXEL;
  if (h->stages & (1u << SDCPB__STAGE__VAE)) b += vae * SDC_VAE_PEAK_BYTES_PER_PIXEL;
  return (int64_t)(b * SDC_PEAK_MARGIN_PCT / 100 + 0.5);
}

static void sdc__lora_model_free(sdc_stage_lora_model *m) {
  sdc_clip_free(m->clip);
  sdc_unet_free(m->unet);
  sdc_weights_free(&m->w_text);
  sdc_weights_free(&m->w_unet);
  sdc_lora_set_free(m->set);
  memset(m, 0, sizeof *m);
}

int sdc_stage_host_set_loras(sdc_stage_host *h, const char *dir, int cache) {
  if (cache < 0 || cache > SDC_WORKER_MAX_LORA_CACHE)
    return sdc_seterr(SDC_EINVAL, "--lora-cache %d: expected 0..%d", cache, SDC_WORKER_MAX_LORA_CACHE);
  h->lora_cache = cache;
  h->lora_dir[0] = 0;
  if (!dir) return SDC_OK;
  char real[PATH_MAX];
  struct stat st;
  if (!realpath(dir, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
    return sdc_seterr(SDC_EINVAL, "--lora-dir %s: not a readable folder", dir);
  if (strlen(real) >= sizeof h->lora_dir) return sdc_seterr(SDC_EINVAL, "--lora-dir %s: path too long", dir);
  snprintf(h->lora_dir, sizeof h->lora_dir, "%s", real);
  return SDC_OK;
}

void sdc_stage_host_free(sdc_stage_host *h) {
  for (int i = 0; i < SDC_WORKER_MAX_LORA_CACHE; i++) sdc__lora_model_free(&h->lora[i]);
  sdc__lora_model_free(&h->lora_once);
  sdc_tokenizer_free(h->tok);
  sdc_tokenizer_free(h->tok2);
  sdc_clip_free(h->clip);
  sdc_clip_free(h->clip2);
  sdc_unet_free(h->unet);
  sdc_vae_free(h->vae);
  for (int i = 0; i < SDC_COMP_COUNT; i++) sdc_weights_free(&h->w[i]);
  sdc_model_close(&h->model);
  sdc_arena_free(&h->arena);
  memset(h, 0, sizeof *h);
}

/* ---------------------------------------------------------------- helpers */

/* Buffers that must outlive packing of the outgoing message: at most the skips, temb, hidden
 * twice and the output of a down+mid+up route run here, or one PNG per image. */
typedef struct {
  void *p[SDC_MAX_SKIPS + 4 + SDC_MAX_IMAGES];
  int n;
} sdc__owned;

static void sdc__own(sdc__owned *o, void *p) {
  if (o->n < (int)(sizeof o->p / sizeof *o->p)) o->p[o->n++] = p;
  else free(p);
}

static void sdc__owned_free(sdc__owned *o) {
  for (int i = 0; i < o->n; i++) free(o->p[i]);
  o->n = 0;
}

static Sdcpb__DType sdc__wire_dtype(const Sdcpb__StageRequest *r) {
  return r->wire_dtype == SDCPB__DTYPE__F16 || r->wire_dtype == SDCPB__DTYPE__BF16 ? r->wire_dtype : SDCPB__DTYPE__F32;
}

/* A tensor into arena floats, checked against shape (-1 = any). */
static float *sdc__take(sdc_stage_host *h, const Sdcpb__Tensor *t, const char *what, int ndim, const int64_t *shape,
                        int64_t *dims /* OUT: actual shape, may be NULL */, int *err) {
  if (*err) return NULL;
  if (!t) {
    *err = sdc_seterr(SDC_EPROTOCOL, "request has no %s tensor", what);
    return NULL;
  }
  int nd;
  int64_t sh[SDC_MAX_DIMS];
  if ((*err = sdc_wire_tensor_check(t, what, &nd, sh))) return NULL;
  int64_t n = sdc_shape_numel(nd, sh);
  float *out = sdc_arena_floats(&h->arena, n);
  if (!out) {
    *err = sdc_seterr(SDC_ENOMEM, "%s: out of memory for %lld floats", what, (long long)n);
    return NULL;
  }
  if ((*err = sdc_wire_tensor_get(t, what, ndim, shape, out, NULL))) return NULL;
  if (dims) memcpy(dims, sh, (size_t)nd * sizeof *sh);
  return out;
}

/* ------------------------------------------------------------------ LoRAs */

/* Merges the request's LoRAs into this worker's text encoder and UNet parts (a model set built with the
 * overlay, so each part takes only the adapter modules of its own blocks) into m. Names resolve to
 * DIR/NAME.safetensors whose real path must stay inside DIR. */
static int sdc__lora_build(sdc_stage_host *h, const Sdcpb__StageRequest *r, const char *worker_id,
                           sdc_stage_lora_model *m) {
  sdc_lora_ref refs[SDC_MAX_LORAS];
  for (size_t i = 0; i < r->n_loras; i++) {
    const char *name = r->loras[i]->name;
    if (!h->lora_dir[0])
      return sdc_seterr(SDC_EINVAL, "worker %s: no --lora-dir: cannot apply LoRA %s", worker_id, name);
    char path[PATH_MAX + 80], real[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.safetensors", h->lora_dir, name);
    if (!realpath(path, real))
      return sdc_seterr(SDC_EINVAL, "worker %s: unknown LoRA %s (no %s.safetensors in its --lora-dir)", worker_id, name,
                        name);
    const size_t nd = strlen(h->lora_dir);
    if (strncmp(real, h->lora_dir, nd) != 0 || real[nd] != '/')
      return sdc_seterr(SDC_EINVAL, "worker %s: LoRA %s resolves outside its --lora-dir", worker_id, name);
    snprintf(refs[i].path, sizeof refs[i].path, "%s", real);
    refs[i].multiplier = r->loras[i]->multiplier;
  }
  int err = sdc_lora_set_open(&m->set, refs, (int)r->n_loras);
  if (!err && h->clip) {
    err = sdc_model_weights(&h->model, SDC_COMP_TEXT_ENCODER, &m->w_text);
    if (!err) err = sdc_weights_set_lora(&m->w_text, m->set, SDC_COMP_TEXT_ENCODER);
    if (!err) err = sdc_clip_load(&m->clip, &m->w_text, &h->model.clip, &h->opts);
  }
  if (!err && h->unet) {
    err = sdc_model_weights(&h->model, SDC_COMP_UNET, &m->w_unet);
    if (!err) err = sdc_weights_set_lora(&m->w_unet, m->set, SDC_COMP_UNET);
    if (!err) err = sdc_unet_load(&m->unet, &m->w_unet, &h->model.unet, h->unet_parts, &h->opts);
  }
  return err;
}

/* Points h->clip_now / unet_now at the models a request wants: the base ones without LoRAs, else a cached
 * merged set (built and cached on a miss, the least recently used evicted; --lora-cache 0: built for this
 * request only). */
static int sdc__lora_select(sdc_stage_host *h, const Sdcpb__StageRequest *r, const char *worker_id) {
  h->clip_now = h->clip, h->unet_now = h->unet;
  /* --lora-cache 0: the merged set lives for one request (all of its hops here), never longer */
  if (h->lora_once.key[0] && !(r->n_loras && h->lora_once_req == r->request_id)) sdc__lora_model_free(&h->lora_once);
  if (!r->n_loras) return SDC_OK;
  /* as the in-process pipeline: neither encoder's nor the SDXL UNet's LoRA keys are mapped yet */
  if (h->model.has_text_encoder_2)
    return sdc_seterr(SDC_EUNSUPPORTED, "worker %s: LoRA %.80s: LoRAs are not supported for SDXL models yet", worker_id,
                      r->loras[0]->name);
  char key[sizeof h->lora[0].key];
  size_t len = 0;
  for (size_t i = 0; i < r->n_loras; i++) {
    const Sdcpb__LoraRef *l = r->loras[i];
    if (!sdc_job_lora_name_valid(l->name)) /* the coordinator checked; a forged request is refused here too */
      return sdc_seterr(SDC_EPROTOCOL, "LoRA name \"%.80s\" is not [A-Za-z0-9._-]{1,%d} starting with no '.'", l->name,
                        SDC_MAX_LORA_NAME);
    if (!isfinite(l->multiplier)) return sdc_seterr(SDC_EPROTOCOL, "LoRA %s: multiplier is not finite", l->name);
    len += (size_t)snprintf(key + len, sizeof key - len, "%s%s:%.17g", i ? "," : "", l->name, l->multiplier);
  }
  sdc_stage_lora_model *m = h->lora_once.key[0] && strcmp(h->lora_once.key, key) == 0 ? &h->lora_once : NULL;
  for (int i = 0; i < h->lora_cache && !m; i++)
    if (h->lora[i].key[0] && strcmp(h->lora[i].key, key) == 0) m = &h->lora[i];
  if (!m) {
    if (h->lora_cache == 0) {
      sdc__lora_model_free(&h->lora_once);
      m = &h->lora_once;
      h->lora_once_req = r->request_id;
    } else {
      m = &h->lora[0];
      for (int i = 0; i < h->lora_cache; i++) {
        if (!h->lora[i].key[0]) {
          m = &h->lora[i];
          break;
        }
        if (h->lora[i].used < m->used) m = &h->lora[i];
      }
      sdc__lora_model_free(m);
    }
    int err = sdc__lora_build(h, r, worker_id, m);
    if (err) {
      sdc__lora_model_free(m);
      return err;
    }
    snprintf(m->key, sizeof m->key, "%s", key);
  }
  m->used = ++h->lora_clock;
  if (m->clip) h->clip_now = m->clip;
  if (m->unet) h->unet_now = m->unet;
  return SDC_OK;
}

/* ------------------------------------------------------------------ stages */

/* Everything a hop produces; the caller turns it into the next message. */
typedef struct {
  Sdcpb__Tensor out, hidden, temb, skips[SDC_MAX_SKIPS];
  Sdcpb__Tensor *skip_ptrs[SDC_MAX_SKIPS];
  int n_skips;
  ProtobufCBinaryData *images;
  int n_images;
  Sdcpb__Tensor init_moments, masked_moments, mask; /* VAE encode */
  Sdcpb__Tensor pooled;                             /* text, SDXL */
  int input_error; /* the failure is the request's own input's (StageReply.input_error) */
} sdc__result;

/* Each prompt (and its prompts_2 text) to one context row (L, D) and, for SDXL, one pooled row (Pd), through
 * sdc_text_encode: the call the in-process pipeline makes, so the two encode alike. */
static int sdc__run_text(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  if (r->n_prompts < 1 || r->n_prompts > SDC_WIRE_MAX_PROMPTS)
    return sdc_seterr(SDC_EPROTOCOL, "text: %zu prompts, expected 1..%d", r->n_prompts, SDC_WIRE_MAX_PROMPTS);
  if (r->n_prompts_2 && !h->clip2)
    return sdc_seterr(SDC_EPROTOCOL, "prompts_2 sent to a model with one text encoder");
  if (r->n_prompts_2 && r->n_prompts_2 != r->n_prompts)
    return sdc_seterr(SDC_EPROTOCOL, "%zu prompts_2 for %zu prompts (expected as many, or none)", r->n_prompts_2,
                      r->n_prompts);
  const sdc_text_models tm = {.tok = h->tok, .tok2 = h->tok2, .clip = h->clip_now, .clip2 = h->clip2};
  const int64_t L = sdc_tokenizer_max_length(h->tok), D = sdc_text_context_dim(&tm), Pd = sdc_text_pooled_dim(&tm),
                P = (int64_t)r->n_prompts;
  float *ctx = sdc_arena_floats(&h->arena, P * L * D), *pooled = Pd ? sdc_arena_floats(&h->arena, P * Pd) : NULL;
  int err = ctx && (!Pd || pooled) ? SDC_OK : sdc_seterr(SDC_ENOMEM, "text: out of memory");
  for (int64_t i = 0; !err && i < P; i++) {
    int64_t n_tok = 0;
    err = sdc_text_encode(&tm, &h->arena, r->prompts[i], r->n_prompts_2 ? r->prompts_2[i] : NULL, ctx + i * L * D,
                          pooled ? pooled + i * Pd : NULL, &n_tok);
    if (!err && n_tok > L - 2) /* CLIP reads 77 positions: the job still runs, as diffusers does, but says so */
      sdc_log(r->job_id, -1, 0, "text: prompt %lld has %lld tokens; only the first %lld are used (CLIP reads %lld)",
              (long long)i, (long long)n_tok, (long long)(L - 2), (long long)L);
  }
  const Sdcpb__DType dt = sdc__wire_dtype(r);
  void *buf;
  if (!err && !(err = sdc_wire_tensor_set(&res->out, ctx, 3, (int64_t[]){P, L, D}, dt, &buf))) sdc__own(o, buf);
  if (!err && pooled && !(err = sdc_wire_tensor_set(&res->pooled, pooled, 2, (int64_t[]){P, Pd}, dt, &buf)))
    sdc__own(o, buf);
  return err;
}

static int sdc__run_unet_down(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  const sdc_unet_config *c = &h->model.unet;
  int err = SDC_OK;
  int64_t sd[4], cd[3];
  float *x = sdc__take(h, r->sample, "sample", 4, (int64_t[]){-1, c->in_channels, -1, -1}, sd, &err);
  float *ctx = sdc__take(h, r->context, "context", 3, (int64_t[]){-1, -1, c->cross_attention_dim}, cd, &err);
  if (err) return err;
  const int64_t B = sd[0], H = sd[2], W = sd[3];
  if (B < 1 || B > SDC_MAX_BATCH || H < 1 || W < 1 || H > SDC_MAX_LATENT_SIDE || W > SDC_MAX_LATENT_SIDE || cd[0] != B ||
      cd[1] < 1 || cd[1] > SDC_MAX_CONTEXT_TOKENS || (int64_t)r->n_timestep != B)
    return sdc_seterr(SDC_EPROTOCOL, "unet-down: sample [%lld, %lld, %lld, %lld], context batch %lld, %zu timesteps disagree",
                      (long long)B, (long long)sd[1], (long long)H, (long long)W, (long long)cd[0], r->n_timestep);
  /* SDXL's text_time conditioning: required by such a UNet, refused by any other */
  sdc_unet_added added = {0};
  if (c->add_text_time) {
    added.text_dim = sdc_model_pooled_dim(&h->model), added.n_time_ids = SDC_TIME_IDS;
    added.text_embeds = sdc__take(h, r->text_embeds, "text_embeds", 2, (int64_t[]){B, added.text_dim}, NULL, &err);
    added.time_ids = sdc__take(h, r->time_ids, "time_ids", 2, (int64_t[]){B, SDC_TIME_IDS}, NULL, &err);
    if (err) return err;
  } else if (r->text_embeds || r->time_ids) {
    return sdc_seterr(SDC_EPROTOCOL, "%s sent to a UNet without text_time conditioning",
                      r->text_embeds ? "text_embeds" : "time_ids");
  }
  sdc_unet_acts acts;
  const sdc_unet_added *ad = c->add_text_time ? &added : NULL;
  err = sdc_unet_down(h->unet_now, &h->arena, x, r->timestep, ctx, ad, B, H, W, cd[1], &acts);
  if (err) return err;
  const Sdcpb__DType dt = sdc__wire_dtype(r);
  void *buf;
  if ((err = sdc_wire_tensor_set(&res->hidden, acts.h, 4, (int64_t[]){B, acts.C, acts.H, acts.W}, dt, &buf))) return err;
  sdc__own(o, buf);
  if ((err = sdc_wire_tensor_set(&res->temb, acts.temb, 2, (int64_t[]){B, c->time_embed_dim}, dt, &buf))) return err;
  sdc__own(o, buf);
  for (int k = 0; k < acts.n_skips; k++) {
    sdcpb__tensor__init(&res->skips[k]);
    err = sdc_wire_tensor_set(&res->skips[k], acts.skips[k], 4,
                              (int64_t[]){B, acts.skip_c[k], acts.skip_h[k], acts.skip_w[k]}, dt, &buf);
    if (err) return err;
    sdc__own(o, buf);
    res->skip_ptrs[k] = &res->skips[k];
  }
  res->n_skips = acts.n_skips;
  return SDC_OK;
}

/* The activations a mid/up hop receives, checked against the model and the skips' own latent size. */
static int sdc__take_acts(sdc_stage_host *h, const Sdcpb__StageRequest *r, int with_skips, sdc_unet_acts *a,
                          float **ctx, int64_t *n_ctx) {
  const sdc_unet_config *c = &h->model.unet;
  int err = SDC_OK;
  int64_t hd[4], cd[3];
  a->h = sdc__take(h, r->hidden, "hidden", 4, (int64_t[]){-1, -1, -1, -1}, hd, &err);
  if (err) return err;
  const int64_t B = hd[0];
  if (B < 1 || B > SDC_MAX_BATCH) return sdc_seterr(SDC_EPROTOCOL, "hidden: batch %lld out of range", (long long)B);
  a->temb = sdc__take(h, r->temb, "temb", 2, (int64_t[]){B, c->time_embed_dim}, NULL, &err);
  *ctx = sdc__take(h, r->context, "context", 3, (int64_t[]){B, -1, c->cross_attention_dim}, cd, &err);
  if (err) return err;
  if (cd[1] < 1 || cd[1] > SDC_MAX_CONTEXT_TOKENS) return sdc_seterr(SDC_EPROTOCOL, "context: %lld tokens", (long long)cd[1]);
  *n_ctx = cd[1];
  a->B = B, a->C = hd[1], a->H = hd[2], a->W = hd[3];
  if (!with_skips) {
    sdc_unet_acts want;
    /* mid takes the lowest resolution: channels must be the last block's */
    sdc_unet_shapes(c, 1, 1, &want);
    if (a->C != c->block_out_channels[c->n_blocks - 1])
      return sdc_seterr(SDC_EPROTOCOL, "hidden: %lld channels, the mid block takes %lld", (long long)a->C,
                        (long long)c->block_out_channels[c->n_blocks - 1]);
    return SDC_OK;
  }
  if (r->n_skips < 1 || !r->skips[0] || r->skips[0]->n_shape != 4)
    return sdc_seterr(SDC_EPROTOCOL, "unet-up: no skips in the request");
  sdc_unet_acts want;
  const int64_t H0 = r->skips[0]->shape[2], W0 = r->skips[0]->shape[3];
  if (H0 < 1 || W0 < 1 || H0 > SDC_MAX_LATENT_SIDE || W0 > SDC_MAX_LATENT_SIDE)
    return sdc_seterr(SDC_EPROTOCOL, "skips[0]: latent size %lldx%lld out of range", (long long)H0, (long long)W0);
  sdc_unet_shapes(c, H0, W0, &want);
  if ((int)r->n_skips != want.n_skips || a->C != want.C || a->H != want.H || a->W != want.W)
    return sdc_seterr(SDC_EPROTOCOL, "unet-up: %zu skips and hidden [%lld, %lld, %lld] do not fit a %lldx%lld latent",
                      r->n_skips, (long long)a->C, (long long)a->H, (long long)a->W, (long long)H0, (long long)W0);
  a->n_skips = want.n_skips;
  for (int k = 0; k < want.n_skips && !err; k++) {
    char what[32];
    snprintf(what, sizeof what, "skips[%d]", k);
    a->skips[k] = sdc__take(h, r->skips[k], what, 4, (int64_t[]){B, want.skip_c[k], want.skip_h[k], want.skip_w[k]},
                            NULL, &err);
    a->skip_c[k] = want.skip_c[k], a->skip_h[k] = want.skip_h[k], a->skip_w[k] = want.skip_w[k];
  }
  return err;
}

static int sdc__run_unet_mid(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  sdc_unet_acts a;
  float *ctx;
  int64_t n_ctx;
  int err = sdc__take_acts(h, r, 0, &a, &ctx, &n_ctx);
  if (!err) err = sdc_unet_mid(h->unet_now, &h->arena, ctx, n_ctx, &a);
  void *buf;
  if (!err && !(err = sdc_wire_tensor_set(&res->hidden, a.h, 4, (int64_t[]){a.B, a.C, a.H, a.W}, sdc__wire_dtype(r), &buf)))
    sdc__own(o, buf);
  return err;
}

static int sdc__run_unet_up(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  sdc_unet_acts a;
  float *ctx;
  int64_t n_ctx;
  int err = sdc__take_acts(h, r, 1, &a, &ctx, &n_ctx);
  if (err) return err;
  const int64_t B = a.B, Co = h->model.unet.out_channels, H0 = a.skip_h[0], W0 = a.skip_w[0];
  float *pred = sdc_arena_floats(&h->arena, B * Co * H0 * W0);
  if (!pred) return sdc_seterr(SDC_ENOMEM, "unet-up: out of memory");
  if ((err = sdc_unet_up(h->unet_now, &h->arena, ctx, n_ctx, &a, pred))) return err;
  void *buf;
  if (!(err = sdc_wire_tensor_set(&res->out, pred, 4, (int64_t[]){B, Co, H0, W0}, sdc__wire_dtype(r), &buf)))
    sdc__own(o, buf);
  return err;
}

/* VAE encode: the job's images into the sdc_image_cond tensors, in f32 (the coordinator's loop must see
 * exactly what the in-process pipeline computes). */
static int sdc__run_vae_encode(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  if (!r->init_image.len) return sdc_seterr(SDC_EPROTOCOL, "vae encode: no init_image in the request");
  if (r->width < SDC_MIN_IMAGE_SIDE || r->height < SDC_MIN_IMAGE_SIDE || r->width > SDC_MAX_IMAGE_SIDE ||
      r->height > SDC_MAX_IMAGE_SIDE || r->width % 8 || r->height % 8)
    return sdc_seterr(SDC_EPROTOCOL, "vae encode: size %ux%u is not multiples of 8 in [%d, %d]", r->width, r->height,
                      SDC_MIN_IMAGE_SIDE, SDC_MAX_IMAGE_SIDE);
  sdc_image_cond cond = {0};
  int err = sdc_image_cond_encode(h->vae, &h->arena, r->init_image.data, r->init_image.len,
                                  r->mask_image.len ? r->mask_image.data : NULL, r->mask_image.len, r->width, r->height,
                                  r->need_init, &cond);
  res->input_error = err == SDC_EINVAL; /* the images themselves: retrying elsewhere cannot help */
  const int64_t moments[4] = {2, cond.C, cond.h, cond.w}, mask[4] = {1, 1, cond.h, cond.w};
  void *buf;
  if (!err && r->need_init && !cond.init_moments) err = sdc_seterr(SDC_EPROTOCOL, "vae encode: no init moments");
  if (!err && cond.init_moments &&
      !(err = sdc_wire_tensor_set(&res->init_moments, cond.init_moments, 4, moments, SDCPB__DTYPE__F32, &buf)))
    sdc__own(o, buf);
  if (!err && cond.masked_moments &&
      !(err = sdc_wire_tensor_set(&res->masked_moments, cond.masked_moments, 4, moments, SDCPB__DTYPE__F32, &buf)))
    sdc__own(o, buf);
  if (!err && cond.mask && !(err = sdc_wire_tensor_set(&res->mask, cond.mask, 4, mask, SDCPB__DTYPE__F32, &buf)))
    sdc__own(o, buf);
  sdc_image_cond_free(&cond);
  return err;
}

static int sdc__run_vae(sdc_stage_host *h, const Sdcpb__StageRequest *r, sdc__result *res, sdc__owned *o) {
  if (r->encode) return sdc__run_vae_encode(h, r, res, o);
  const sdc_vae_config *c = &h->model.vae;
  int err = SDC_OK;
  int64_t ld[4];
  float *z = sdc__take(h, r->latent, "latent", 4, (int64_t[]){-1, c->latent_channels, -1, -1}, ld, &err);
  if (err) return err;
  const int64_t N = ld[0], s = sdc_vae_scale(c), H = ld[2] * s, W = ld[3] * s, Co = c->out_channels;
  if (N < 1 || N > SDC_MAX_IMAGES || ld[2] > SDC_MAX_LATENT_SIDE || ld[3] > SDC_MAX_LATENT_SIDE)
    return sdc_seterr(SDC_EPROTOCOL, "latent: [%lld, %lld, %lld, %lld] out of range", (long long)N, (long long)ld[1],
                      (long long)ld[2], (long long)ld[3]);
  float *pix = sdc_arena_floats(&h->arena, N * Co * H * W), *img = sdc_arena_floats(&h->arena, N * H * W * 3);
  uint8_t *u8 = malloc((size_t)(N * H * W * 3));
  res->images = calloc((size_t)N, sizeof *res->images);
  if (!pix || !img || !u8 || !res->images) err = sdc_seterr(SDC_ENOMEM, "vae: out of memory");
  if (!err) err = sdc_vae_decode(h->vae, &h->arena, z, N, ld[2], ld[3], pix);
  if (!err) {
    sdc_pixels_to_images(pix, N, Co, H, W, img);
    sdc_images_to_u8(img, N * H * W * 3, u8);
  }
  for (int64_t i = 0; !err && i < N; i++) {
    const char *keys[] = {"parameters"}, *vals[] = {i < (int64_t)r->n_png_text ? r->png_text[i] : ""};
    uint8_t *png;
    size_t n;
    if (!(err = sdc_png_encode(u8 + i * H * W * 3, W, H, 1, keys, vals, &png, &n))) {
      res->images[i] = (ProtobufCBinaryData){n, png};
      res->n_images++;
      sdc__own(o, png);
    }
  }
  free(u8);
  return err;
}

/* --------------------------------------------------------------- dispatch */

static int sdc__host_has(const sdc_stage_host *h, Sdcpb__Stage s) {
  return s >= SDCPB__STAGE__TEXT && s <= SDCPB__STAGE__VAE && (h->stages & (1u << s));
}

static int sdc__pack_reply(const Sdcpb__StageRequest *r, Sdcpb__Stage stage, const char *error, sdc__result *res,
                           const char *worker_id, uint32_t hop_us, uint8_t **out, size_t *out_n) {
  Sdcpb__StageReply rep = SDCPB__STAGE_REPLY__INIT;
  rep.job_id = r->job_id;
  rep.step = r->step;
  rep.request_id = r->request_id;
  rep.stage = stage;
  rep.error = (char *)(error ? error : "");
  rep.input_error = error && res && res->input_error;
  if (!error && res && res->out.data.data) rep.output = &res->out;
  if (!error && res) rep.n_images = (size_t)res->n_images, rep.images = res->images;
  if (!error && res && res->init_moments.data.data) rep.init_moments = &res->init_moments;
  if (!error && res && res->masked_moments.data.data) rep.masked_moments = &res->masked_moments;
  if (!error && res && res->mask.data.data) rep.mask = &res->mask;
  if (!error && res && res->pooled.data.data) rep.pooled = &res->pooled;
  /* the route actually taken, and each hop's compute time */
  char *ids[SDC_WIRE_MAX_ROUTE];
  uint32_t us[SDC_WIRE_MAX_ROUTE + 1];
  size_t n = r->n_route < SDC_WIRE_MAX_ROUTE ? r->n_route : SDC_WIRE_MAX_ROUTE;
  for (size_t i = 0; i < n; i++) ids[i] = r->route[i]->worker_id;
  size_t n_us = r->n_hop_us < SDC_WIRE_MAX_ROUTE ? r->n_hop_us : SDC_WIRE_MAX_ROUTE;
  if (n_us) memcpy(us, r->hop_us, n_us * sizeof *us);
  us[n_us++] = hop_us;
  rep.n_route_taken = n, rep.route_taken = ids;
  rep.n_hop_us = n_us, rep.hop_us = us;
  (void)worker_id;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY;
  env.reply = &rep;
  return sdc_wire_pack(&env, out, out_n);
}

int sdc_stage_error_reply(const Sdcpb__StageRequest *req, const char *error, uint8_t **out, size_t *out_n) {
  const Sdcpb__Stage stage = req->hop < req->n_route && req->route[req->hop] ? req->route[req->hop]->stage
                                                                             : SDCPB__STAGE__STAGE_INVALID;
  return sdc__pack_reply(req, stage, error, NULL, "", 0, out, out_n);
}

int sdc_stage_execute(sdc_stage_host *h, const Sdcpb__StageRequest *req, const char *worker_id, uint8_t **out,
                      size_t *out_n, int *next_is_reply, const char **next_endpoint, sdc_stage_hops *hops,
                      sdc_error *hop_error) {
  *out = NULL, *out_n = 0, *next_is_reply = 1, *next_endpoint = NULL;
  memset(hops, 0, sizeof *hops);
  hops->next_stage = SDCPB__STAGE__STAGE_INVALID;
  sdc_error_capture(hop_error, SDC_OK);
  sdc_clearerr(); /* a message left by an earlier request must not name this one's failure */
  sdc__owned owned = {0};
  sdc__result res;
  Sdcpb__StageRequest fwd;
  const Sdcpb__StageRequest *r = req;
  uint32_t hop_us_buf[SDC_WIRE_MAX_ROUTE + 1];
  /* tensors handed to the next hop; they outlive each iteration's `res` */
  Sdcpb__Tensor temb_keep, hidden_keep, skips_keep[SDC_MAX_SKIPS], *skip_ptr_keep[SDC_MAX_SKIPS];
  int err = SDC_OK;
  for (;;) {
    memset(&res, 0, sizeof res);
    sdcpb__tensor__init(&res.out), sdcpb__tensor__init(&res.hidden), sdcpb__tensor__init(&res.temb);
    sdcpb__tensor__init(&res.init_moments), sdcpb__tensor__init(&res.masked_moments), sdcpb__tensor__init(&res.mask);
    sdcpb__tensor__init(&res.pooled);
    sdc_arena_mark mk = sdc_arena_get_mark(&h->arena);
    Sdcpb__Stage stage = r->hop < r->n_route && r->route[r->hop] ? r->route[r->hop]->stage : SDCPB__STAGE__STAGE_INVALID;
    double t0_s = sdc_clock_mono_s();
    if (!sdc__host_has(h, stage)) {
      err = sdc_seterr(SDC_EPROTOCOL, "hop %u asks for stage %s, which this worker does not serve", r->hop,
                       sdc_stage_name(stage));
    } else if (stage != SDCPB__STAGE__VAE && (err = sdc__lora_select(h, r, worker_id))) {
      /* the LoRA's one-line error, e.g. an unknown name or a shape that does not fit: every worker reads the
       * same LoRA folder (docs/cluster.md), so another try fails alike; only memory may differ elsewhere */
      res.input_error = err != SDC_ENOMEM;
    } else if (stage == SDCPB__STAGE__TEXT) {
      err = sdc__run_text(h, r, &res, &owned);
    } else if (stage == SDCPB__STAGE__UNET_DOWN) {
      err = sdc__run_unet_down(h, r, &res, &owned);
    } else if (stage == SDCPB__STAGE__UNET_MID) {
      err = sdc__run_unet_mid(h, r, &res, &owned);
    } else if (stage == SDCPB__STAGE__UNET_UP) {
      err = sdc__run_unet_up(h, r, &res, &owned);
    } else {
      err = sdc__run_vae(h, r, &res, &owned);
    }
    sdc_arena_reset(&h->arena, mk);
    uint64_t dt = (uint64_t)((sdc_clock_mono_s() - t0_s) * 1e6);
    hops->total_us += dt;
    if (hops->n < SDC_WIRE_MAX_ROUTE) hops->stage[hops->n] = stage, hops->us[hops->n++] = dt;
    uint32_t hop_us = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
    int last = r->hop + 1 >= r->n_route || stage == SDCPB__STAGE__TEXT || stage == SDCPB__STAGE__VAE ||
               stage == SDCPB__STAGE__UNET_UP;
    if (err || last) {
      if (err) sdc_error_capture(hop_error, sdc_adderr(err, "%s", sdc_stage_name(stage)));
      int perr = sdc__pack_reply(r, stage, err ? hop_error->msg : NULL, &res, worker_id, hop_us, out, out_n);
      free(res.images);
      sdc__owned_free(&owned);
      return perr;
    }
    /* forward to the next hop with this hop's outputs */
    const Sdcpb__Hop *next = r->route[r->hop + 1];
    Sdcpb__Stage want = stage == SDCPB__STAGE__UNET_DOWN ? SDCPB__STAGE__UNET_MID : SDCPB__STAGE__UNET_UP;
    if (!next || next->stage != want) {
      err = sdc_seterr(SDC_EPROTOCOL, "route: %s must be followed by %s", sdc_stage_name(stage), sdc_stage_name(want));
      sdc_error_capture(hop_error, err);
      int perr = sdc__pack_reply(r, stage, hop_error->msg, NULL, worker_id, hop_us, out, out_n);
      sdc__owned_free(&owned);
      return perr;
    }
    Sdcpb__StageRequest nx = *r; /* shallow: route, context and skips (mid) travel as received */
    nx.hop = r->hop + 1;
    nx.sample = NULL, nx.n_timestep = 0, nx.timestep = NULL;
    nx.text_embeds = NULL, nx.time_ids = NULL; /* folded into temb by unet-down */
    size_t n_us = r->n_hop_us < SDC_WIRE_MAX_ROUTE ? r->n_hop_us : SDC_WIRE_MAX_ROUTE;
    if (n_us) memmove(hop_us_buf, r->hop_us, n_us * sizeof *hop_us_buf); /* may be hop_us_buf itself */
    hop_us_buf[n_us++] = hop_us;
    nx.n_hop_us = n_us, nx.hop_us = hop_us_buf;
    if (stage == SDCPB__STAGE__UNET_DOWN) {
      temb_keep = res.temb;
      for (int k = 0; k < res.n_skips; k++) skips_keep[k] = res.skips[k], skip_ptr_keep[k] = &skips_keep[k];
      nx.temb = &temb_keep;
      nx.n_skips = (size_t)res.n_skips, nx.skips = skip_ptr_keep;
    }
    hidden_keep = res.hidden;
    nx.hidden = &hidden_keep;
    if (next->worker_id && strcmp(next->worker_id, worker_id) == 0 && sdc__host_has(h, next->stage)) {
      /* our own next stage: no network hop */
      fwd = nx;
      r = &fwd;
      continue;
    }
    Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
    env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
    env.request = &nx;
    err = sdc_wire_pack(&env, out, out_n);
    *next_is_reply = 0;
    *next_endpoint = next->endpoint;
    hops->next_stage = next->stage;
    sdc__owned_free(&owned);
    return err;
  }
}
