/* verify.c - `sdc verify --ref DIR`: run every stage case of a golden manifest and compare;
 * with --precision bf16, the PSNR of each reference pipeline's image against the fp32 golden. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "clip.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "file.h"
#include "json.h"
#include "model.h"
#include "ops.h"
#include "pipeline.h"
#include "rng.h"
#include "scheduler.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

typedef struct {
  const char *ref;
  const char *only;     /* run only cases whose name contains this */
  sdc_st_file goldens;
  cJSON *manifest;
  sdc_arena arena;
  int n_pass, n_fail;
  int bf16;           /* pipelines only, judged by PSNR against the fp32 goldens */
  sdc_load_opts opts; /* every model is loaded with these: bf16 precision when bf16 */
  int quiet;          /* bf16: no line per passing case; failures go to stderr */
  double min_psnr_db; /* bf16: over the cases that produced an image */
  int n_psnr;
} sdc__verify;

/* A golden tensor with the expected dtype, or NULL with a message. */
static const sdc_st_entry *sdc__golden(sdc__verify *v, const char *name, sdc_dtype dt) {
  const sdc_st_entry *e = sdc_st_find(&v->goldens, name);
  if (!e) {
    sdc_seterr(SDC_EMISSING, "%s/goldens.safetensors: missing tensor '%s'", v->ref, name);
    return NULL;
  }
  if (e->dtype != dt) {
    sdc_seterr(SDC_EDTYPE, "%s/goldens.safetensors: tensor '%s' is %s, expected %s", v->ref, name,
               sdc_dtype_name(e->dtype), sdc_dtype_name(dt));
    return NULL;
  }
  return e;
}

/* Golden as a fresh f32 heap copy (caller frees); NULL with a message. */
static float *sdc__golden_f32(sdc__verify *v, const char *name, int64_t *numel /* OUT */, sdc_st_entry const **entry) {
  const sdc_st_entry *e = sdc__golden(v, name, SDC_F32);
  if (!e) return NULL;
  int64_t n = sdc_shape_numel(e->ndim, e->shape);
  float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  if (!p) {
    sdc_seterr(SDC_ENOMEM, "out of memory for golden '%s'", name);
    return NULL;
  }
  memcpy(p, sdc_st_ptr(&v->goldens, e), (size_t)n * sizeof *p);
  if (numel) *numel = n;
  if (entry) *entry = e;
  return p;
}

static int sdc__selected(const sdc__verify *v, const char *name) { return !v->only || strstr(name, v->only); }

static void sdc__report_error(sdc__verify *v, const char *label, int err) {
  fprintf(v->quiet ? stderr : stdout, "%-52s error: %s  FAIL\n", label, sdc_errmsg(err));
  v->n_fail++;
  sdc_clearerr();
}

/* max |got - ref| of a float32 or float64 golden against got (n values), or -1 when the
 * golden is missing or of another size (message set). *max_ref gets max |ref|. */
static double sdc__max_err(sdc__verify *v, const char *name, const float *got, int64_t n_got, int64_t offset,
                           double *max_ref) {
  const sdc_st_entry *e = sdc_st_find(&v->goldens, name);
  if (!e || (e->dtype != SDC_F32 && e->dtype != SDC_F64)) {
    sdc_seterr(SDC_EMISSING, "%s/goldens.safetensors: no float tensor '%s'", v->ref, name);
    return -1.0;
  }
  int64_t n = sdc_shape_numel(e->ndim, e->shape);
  if (offset + n_got > n) {
    sdc_seterr(SDC_ESHAPE, "golden '%s' has %lld values, %lld compared", name, (long long)n, (long long)(offset + n_got));
    return -1.0;
  }
  const void *p = sdc_st_ptr(&v->goldens, e);
  double mx = 0.0, mr = 0.0;
  for (int64_t i = 0; i < n_got; i++) {
    double r = e->dtype == SDC_F32 ? (double)((const float *)p)[offset + i] : ((const double *)p)[offset + i];
    double d = fabs((double)got[i] - r);
    if (fabs(r) > mr) mr = fabs(r);
    if (!(d <= mx)) mx = isnan(d) ? INFINITY : d;
  }
  *max_ref = mr;
  return mx;
}

static void sdc__report(sdc__verify *v, const char *label, double max_err, double tol) {
  int ok = max_err >= 0 && max_err <= tol;
  printf("%-52s max_err %.3e  tol %.1e  %s\n", label, max_err, tol, ok ? "pass" : "FAIL");
  ok ? v->n_pass++ : v->n_fail++;
}

/* Compares got with golden `name` at 1e-4 * max(1, max|ref|) and prints one line. */
static void sdc__check(sdc__verify *v, const char *label, const char *name, const float *got, int64_t n_got) {
  const sdc_st_entry *e = sdc_st_find(&v->goldens, name);
  if (e && sdc_shape_numel(e->ndim, e->shape) != n_got) {
    printf("%-52s size %lld, golden %lld  FAIL\n", label, (long long)n_got, (long long)sdc_shape_numel(e->ndim, e->shape));
    v->n_fail++;
    return;
  }
  double max_ref = 0.0, err = sdc__max_err(v, name, got, n_got, 0, &max_ref);
  if (err < 0) return sdc__report_error(v, label, SDC_EMISSING);
  sdc__report(v, label, err, 1e-4 * (max_ref > 1.0 ? max_ref : 1.0));
}

/* A float64/float32 golden widened into a fresh float array (caller frees). */
static float *sdc__golden_any(sdc__verify *v, const char *name, int64_t *numel) {
  const sdc_st_entry *e = sdc_st_find(&v->goldens, name);
  if (!e) return NULL;
  int64_t n = sdc_shape_numel(e->ndim, e->shape);
  float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  if (!p || sdc_convert_to_f32(p, sdc_st_ptr(&v->goldens, e), e->dtype, n)) {
    free(p);
    return NULL;
  }
  *numel = n;
  return p;
}

/* ------------------------------------------------------------- rng cases */

static void sdc__rng_cases(sdc__verify *v, const cJSON *spec) {
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "cases")) {
    const char *name = c->string;
    char label[256];
    snprintf(label, sizeof label, "%s", name);
    if (!sdc__selected(v, label)) continue;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(c, "seed"), *shape = cJSON_GetObjectItemCaseSensitive(c, "shape");
    const sdc_st_entry *e = sdc_st_find(&v->goldens, name);
    if (!cJSON_IsNumber(seed) || !e) {
      sdc_seterr(SDC_EMISSING, "rng case '%s': missing seed or golden", name);
      sdc__report_error(v, label, SDC_EMISSING);
      continue;
    }
    int64_t n = sdc_shape_numel(e->ndim, e->shape);
    /* "two successive draws": the shape's first dim counts draws */
    int64_t draws = strstr(name, "two_draws") ? 2 : 1, per = n / draws;
    (void)shape;
    float *got = malloc((size_t)(n ? n : 1) * sizeof *got);
    sdc_rng r;
    sdc_rng_seed(&r, (uint64_t)cJSON_GetNumberValue(seed));
    for (int64_t d = 0; d < draws; d++) sdc_rng_randn(&r, got + d * per, per);
    double max_ref = 0.0, err = sdc__max_err(v, name, got, n, 0, &max_ref);
    if (err < 0) sdc__report_error(v, label, SDC_EMISSING);
    else sdc__report(v, label, err, 1e-5);
    free(got);
  }
}

/* ------------------------------------------------------- scheduler cases */

static void sdc__sched_case(sdc__verify *v, const char *name, const cJSON *c) {
  char label[256], gname[300];
  snprintf(label, sizeof label, "sched/%s", name);
  if (!sdc__selected(v, label)) return;
  char kind_name[64];
  snprintf(kind_name, sizeof kind_name, "%s", name);
  char *slash = strchr(kind_name, '/');
  if (slash) *slash = 0;
  const char *last = strrchr(name, '/');
  int kind = sdc_sched_parse_name(kind_name);
  int64_t n_steps = last ? atoll(last + 1) : 0;
  const cJSON *cfg_json = cJSON_GetObjectItemCaseSensitive(c, "scheduler_config");
  char *text = cfg_json ? cJSON_PrintUnformatted(cfg_json) : NULL;
  sdc_sched_config cfg;
  sdc_scheduler *s = NULL;
  int err = kind < 0 ? sdc_seterr(SDC_EINVAL, "unknown scheduler '%s'", kind_name)
            : !text  ? sdc_seterr(SDC_EMISSING, "case has no scheduler_config")
                     : sdc_sched_config_parse(&cfg, text, kind, label);
  free(text);
  if (!err) err = sdc_scheduler_create(&s, &cfg, n_steps);
  if (err) {
    sdc__report_error(v, label, err);
    return;
  }
  const int64_t n_calls = sdc_scheduler_n_calls(s);
  /* timesteps (and sigmas where the scheduler has them) */
  float *ts = malloc((size_t)n_calls * sizeof *ts);
  for (int64_t i = 0; i < n_calls; i++) ts[i] = (float)sdc_scheduler_timestep(s, i);
  snprintf(gname, sizeof gname, "sched/%s/timesteps", name);
  snprintf(label, sizeof label, "sched/%s timesteps", name);
  sdc__check(v, label, gname, ts, n_calls);
  free(ts);
  snprintf(gname, sizeof gname, "sched/%s/sigmas", name);
  if (sdc_st_find(&v->goldens, gname)) {
    int64_t n_sig;
    const double *sig = sdc_scheduler_sigmas(s, &n_sig);
    float *sf = malloc((size_t)(n_sig ? n_sig : 1) * sizeof *sf);
    for (int64_t i = 0; i < n_sig; i++) sf[i] = (float)sig[i];
    snprintf(label, sizeof label, "sched/%s sigmas", name);
    sdc__check(v, label, gname, sf, n_sig);
    free(sf);
  }
  const cJSON *ins = cJSON_GetObjectItemCaseSensitive(c, "init_noise_sigma");
  if (cJSON_IsNumber(ins)) {
    double d = fabs(sdc_scheduler_init_noise_sigma(s) - ins->valuedouble);
    snprintf(label, sizeof label, "sched/%s init_noise_sigma", name);
    sdc__report(v, label, d, 1e-4 * (fabs(ins->valuedouble) > 1 ? fabs(ins->valuedouble) : 1));
  }
  /* the trajectory with the stand-in model out = 0.5 tanh(x) + 0.1 cos(t/100) */
  int64_t n = 0, n_noise = 0;
  snprintf(gname, sizeof gname, "sched/%s/x0", name);
  float *sample = sdc__golden_any(v, gname, &n);
  snprintf(gname, sizeof gname, "sched/%s/noise", name);
  float *noise = sdc__golden_any(v, gname, &n_noise);
  float *x = sample ? malloc((size_t)n * sizeof *x) : NULL, *out = sample ? malloc((size_t)n * sizeof *out) : NULL;
  double err_in = 0, err_s = 0, ref_in = 0, ref_s = 0;
  int64_t draws = 0;
  snprintf(label, sizeof label, "sched/%s trajectory", name);
  for (int64_t i = 0; sample && x && out && !err && i < n_calls; i++) {
    double t = sdc_scheduler_timestep(s, i), mr;
    sdc_scheduler_scale_input(s, sample, x, n);
    snprintf(gname, sizeof gname, "sched/%s/model_inputs", name);
    double e = sdc__max_err(v, gname, x, n, i * n, &mr);
    if (e < 0) err = SDC_EMISSING;
    err_in = fmax(err_in, e), ref_in = fmax(ref_in, mr);
    for (int64_t k = 0; k < n; k++) out[k] = (float)(0.5 * tanh((double)x[k]) + 0.1 * cos(t / 100.0));
    const float *z = NULL;
    if (sdc_scheduler_needs_noise(s)) {
      if (!noise || (draws + 1) * n > n_noise) {
        err = sdc_seterr(SDC_EMISSING, "scheduler asked for noise draw %lld the golden does not have", (long long)draws);
        break;
      }
      z = noise + (draws++) * n;
    }
    if (!err) err = sdc_scheduler_step(s, out, sample, n, z);
    snprintf(gname, sizeof gname, "sched/%s/samples", name);
    e = err ? -1 : sdc__max_err(v, gname, sample, n, i * n, &mr);
    if (e < 0 && !err) err = SDC_EMISSING;
    err_s = fmax(err_s, e), ref_s = fmax(ref_s, mr);
  }
  if (!sample || err) {
    sdc__report_error(v, label, err ? err : SDC_EMISSING);
  } else {
    snprintf(label, sizeof label, "sched/%s model_inputs (%lld calls)", name, (long long)n_calls);
    sdc__report(v, label, err_in, 1e-4 * fmax(1.0, ref_in));
    snprintf(label, sizeof label, "sched/%s samples", name);
    sdc__report(v, label, err_s, 1e-4 * fmax(1.0, ref_s));
  }
  free(sample), free(noise), free(x), free(out);
  sdc_scheduler_free(s);
}

/* tok: "tok" (DIR/<model>/tokenizer) or "tok2" (SDXL's tokenizer_2). */
static int sdc__tokenizer_cases(sdc__verify *v, const char *model, const cJSON *prompts, const char *tok_key) {
  char dir[1200], label[256], name[256];
  snprintf(dir, sizeof dir, "%s/%s/%s", v->ref, model, strcmp(tok_key, "tok2") == 0 ? "tokenizer_2" : "tokenizer");
  sdc_tokenizer *tok = NULL;
  int err = sdc_tokenizer_load(&tok, dir);
  if (err) {
    snprintf(label, sizeof label, "%s tokenizer", model);
    sdc__report_error(v, label, err);
    return err;
  }
  int i = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, prompts) {
    snprintf(name, sizeof name, "%s/%s/%d/ids", model, tok_key, i);
    snprintf(label, sizeof label, "%s %s/%d", model, tok_key, i);
    i++;
    if (!sdc__selected(v, label)) continue;
    const sdc_st_entry *e = sdc__golden(v, name, SDC_I32);
    if (!e || !cJSON_IsString(p)) {
      sdc__report_error(v, label, SDC_EMISSING);
      continue;
    }
    int64_t n = sdc_shape_numel(e->ndim, e->shape);
    int32_t *ids = calloc((size_t)n, sizeof *ids);
    const int32_t *ref = sdc_st_ptr(&v->goldens, e);
    if (!ids || (err = sdc_tokenizer_encode(tok, p->valuestring, ids, n))) {
      sdc__report_error(v, label, ids ? err : SDC_ENOMEM);
      free(ids);
      continue;
    }
    int64_t bad = -1;
    for (int64_t j = 0; j < n && bad < 0; j++)
      if (ids[j] != ref[j]) bad = j;
    if (bad < 0) {
      printf("%-52s exact (%lld ids)  pass\n", label, (long long)n);
      v->n_pass++;
    } else {
      printf("%-52s id[%lld] = %d, golden %d  FAIL\n", label, (long long)bad, ids[bad], ref[bad]);
      v->n_fail++;
    }
    free(ids);
  }
  sdc_tokenizer_free(tok);
  return SDC_OK;
}

/* SDXL: each encoder's penultimate state and the second's text_embeds from the golden ids, then the context
 * the UNet receives from the prompts themselves (tokenizers included). */
static void sdc__dual_text_cases(sdc__verify *v, sdc_model *m, const char *model, const char *layout,
                                 const cJSON *prompts) {
  char label[256], name[256];
  sdc_weights w[2] = {0};
  sdc_clip *clip[2] = {0};
  sdc_tokenizer *tok = NULL, *tok2 = NULL;
  int err = sdc_model_weights(m, SDC_COMP_TEXT_ENCODER, &w[0]);
  if (!err) err = sdc_clip_load(&clip[0], &w[0], &m->clip, &v->opts);
  if (!err) err = sdc_model_weights(m, SDC_COMP_TEXT_ENCODER_2, &w[1]);
  if (!err) err = sdc_clip_load(&clip[1], &w[1], &m->clip2, &v->opts);
  if (!err) err = sdc_text_tokenizers_load(m, &tok, &tok2);
  if (err) {
    snprintf(label, sizeof label, "%s [%s] text encoders", model, layout);
    sdc__report_error(v, label, err);
    goto done;
  }
  const sdc_text_models tm = {tok, tok2, clip[0], clip[1]};
  const int64_t P = m->clip2.projection_dim, D = sdc_text_context_dim(&tm);
  int n_prompts = cJSON_GetArraySize(prompts);
  for (int i = 0; i < n_prompts; i++) {
    for (int e = 0; e < 2; e++) {
      const char *te = e ? "te2" : "te";
      snprintf(label, sizeof label, "%s [%s] %s/%d/penultimate", model, layout, te, i);
      if (!sdc__selected(v, label)) continue;
      snprintf(name, sizeof name, "%s/%s/%d/ids", model, e ? "tok2" : "tok", i);
      const sdc_st_entry *ids = sdc__golden(v, name, SDC_I32);
      if (!ids) {
        sdc__report_error(v, label, SDC_EMISSING);
        continue;
      }
      const int64_t N = sdc_shape_numel(ids->ndim, ids->shape), Dh = clip[e]->cfg.hidden_size;
      sdc_arena_mark mk = sdc_arena_get_mark(&v->arena);
      float *hidden = sdc_arena_floats(&v->arena, N * Dh), *pooled = e ? sdc_arena_floats(&v->arena, P) : NULL;
      err = hidden && (!e || pooled)
                ? sdc_clip_encode_ex(clip[e], &v->arena, sdc_st_ptr(&v->goldens, ids), 1, N, 1, hidden, pooled)
                : SDC_ENOMEM;
      if (err) {
        sdc__report_error(v, label, err);
      } else {
        snprintf(name, sizeof name, "%s/%s/%d/penultimate", model, te, i);
        sdc__check(v, label, name, hidden, N * Dh);
        if (e) {
          snprintf(label, sizeof label, "%s [%s] te2/%d/text_embeds", model, layout, i);
          snprintf(name, sizeof name, "%s/te2/%d/text_embeds", model, i);
          sdc__check(v, label, name, pooled, P);
        }
      }
      sdc_arena_reset(&v->arena, mk);
    }
    snprintf(label, sizeof label, "%s [%s] context/%d", model, layout, i);
    const cJSON *p = cJSON_GetArrayItem(prompts, i);
    if (!sdc__selected(v, label) || !cJSON_IsString(p)) continue;
    const int64_t L = sdc_tokenizer_max_length(tok);
    sdc_arena_mark mk = sdc_arena_get_mark(&v->arena);
    float *ctx = sdc_arena_floats(&v->arena, L * D);
    err = ctx ? sdc_text_encode(&tm, &v->arena, p->valuestring, NULL, ctx, NULL, NULL) : SDC_ENOMEM;
    snprintf(name, sizeof name, "%s/context/%d", model, i);
    if (err) sdc__report_error(v, label, err);
    else sdc__check(v, label, name, ctx, L * D);
    sdc_arena_reset(&v->arena, mk);
  }
done:
  for (int e = 0; e < 2; e++) sdc_clip_free(clip[e]), sdc_weights_free(&w[e]);
  sdc_tokenizer_free(tok), sdc_tokenizer_free(tok2);
}

static void sdc__text_encoder_cases(sdc__verify *v, sdc_model *m, const char *model, const char *layout,
                                    const cJSON *prompts) {
  char label[256], name[256];
  if (m->has_text_encoder_2) return sdc__dual_text_cases(v, m, model, layout, prompts);
  sdc_weights w;
  sdc_clip *clip = NULL;
  int err = sdc_model_weights(m, SDC_COMP_TEXT_ENCODER, &w);
  if (!err) err = sdc_clip_load(&clip, &w, &m->clip, &v->opts);
  if (err) {
    snprintf(label, sizeof label, "%s [%s] text encoder", model, layout);
    sdc__report_error(v, label, err);
    sdc_weights_free(&w);
    return;
  }
  int n_prompts = cJSON_GetArraySize(prompts);
  for (int i = 0; i < n_prompts; i++) {
    snprintf(label, sizeof label, "%s [%s] te/%d/hidden", model, layout, i);
    if (!sdc__selected(v, label)) continue;
    snprintf(name, sizeof name, "%s/tok/%d/ids", model, i);
    /* the golden ids isolate the encoder from the tokenizer */
    const sdc_st_entry *e = sdc__golden(v, name, SDC_I32);
    if (!e) {
      sdc__report_error(v, label, SDC_EMISSING);
      continue;
    }
    int64_t N = sdc_shape_numel(e->ndim, e->shape);
    sdc_arena_mark mk = sdc_arena_get_mark(&v->arena);
    float *hidden = sdc_arena_floats(&v->arena, N * m->clip.hidden_size);
    err = hidden ? sdc_clip_encode(clip, &v->arena, sdc_st_ptr(&v->goldens, e), 1, N, hidden) : SDC_ENOMEM;
    snprintf(name, sizeof name, "%s/te/%d/hidden", model, i);
    if (err) sdc__report_error(v, label, err);
    else sdc__check(v, label, name, hidden, N * m->clip.hidden_size);
    sdc_arena_reset(&v->arena, mk);
  }
  sdc_clip_free(clip);
  sdc_weights_free(&w);
}

/* Loads a UNet holding only `parts`, as a shard worker would. */
static int sdc__unet_shard(const sdc__verify *v, sdc_model *m, unsigned parts, sdc_weights *w, sdc_unet **u) {
  int err = sdc_model_weights(m, SDC_COMP_UNET, w);
  if (!err) err = sdc_unet_load(u, w, &m->unet, parts, &v->opts);
  return err;
}

static void sdc__unet_case(sdc__verify *v, sdc_model *m, const char *model, const char *layout, const char *c) {
  char label[256], name[256], pfx[160];
  snprintf(pfx, sizeof pfx, "%s/unet/%s", model, c);
  snprintf(label, sizeof label, "%s [%s] unet/%s", model, layout, c);
  if (!sdc__selected(v, label)) return;
  const sdc_st_entry *se, *ce;
  int64_t n_sample, n_ctx, n_t;
  snprintf(name, sizeof name, "%s/sample", pfx);
  float *sample = sdc__golden_f32(v, name, &n_sample, &se);
  snprintf(name, sizeof name, "%s/context", pfx);
  float *ctx = sdc__golden_f32(v, name, &n_ctx, &ce);
  snprintf(name, sizeof name, "%s/timestep", pfx);
  float *t = sdc__golden_f32(v, name, &n_t, NULL);
  /* text_time (SDXL): the pooled text_embeds and time ids the case gives */
  float *temb_in = NULL, *tids = NULL;
  const sdc_st_entry *te_e = NULL, *ti_e = NULL;
  sdc_unet_added added = {0};
  if (m->unet.add_text_time) {
    snprintf(name, sizeof name, "%s/text_embeds", pfx);
    temb_in = sdc__golden_f32(v, name, NULL, &te_e);
    snprintf(name, sizeof name, "%s/time_ids", pfx);
    tids = sdc__golden_f32(v, name, NULL, &ti_e);
    if (te_e && ti_e && te_e->ndim == 2 && ti_e->ndim == 2)
      added = (sdc_unet_added){temb_in, tids, te_e->shape[1], ti_e->shape[1]};
  }
  const sdc_unet_added *addp = m->unet.add_text_time ? &added : NULL;
  sdc_weights w[4] = {0};
  sdc_unet *down = NULL, *mid = NULL, *up = NULL, *whole = NULL;
  int err = !sample || !ctx || !t || (addp && !added.text_embeds) ? SDC_EMISSING : SDC_OK;
  if (!err && (se->ndim != 4 || ce->ndim != 3 || n_t != se->shape[0] || ce->shape[0] != se->shape[0]))
    err = sdc_seterr(SDC_ESHAPE, "%s: inconsistent sample/context/timestep shapes", pfx);
  if (!err) err = sdc__unet_shard(v, m, SDC_UNET_DOWN, &w[0], &down);
  if (!err) err = sdc__unet_shard(v, m, SDC_UNET_MID, &w[1], &mid);
  if (!err) err = sdc__unet_shard(v, m, SDC_UNET_UP, &w[2], &up);
  if (!err) err = sdc__unet_shard(v, m, SDC_UNET_ALL, &w[3], &whole);
  if (err) {
    sdc__report_error(v, label, err);
    goto done;
  }
  const int64_t B = se->shape[0], H = se->shape[2], W = se->shape[3], Nctx = ce->shape[1];
  sdc_arena_mark mk = sdc_arena_get_mark(&v->arena);
  sdc_unet_acts acts;
  /* unet-down from the case inputs */
  if ((err = sdc_unet_down(down, &v->arena, sample, t, ctx, addp, B, H, W, Nctx, &acts))) {
    sdc__report_error(v, label, err);
    goto reset;
  }
  snprintf(label, sizeof label, "%s [%s] unet/%s/temb", model, layout, c);
  snprintf(name, sizeof name, "%s/temb", pfx);
  sdc__check(v, label, name, acts.temb, B * m->unet.time_embed_dim);
  for (int k = 0; k < acts.n_skips; k++) {
    snprintf(label, sizeof label, "%s [%s] unet/%s/skip.%d", model, layout, c, k);
    snprintf(name, sizeof name, "%s/skip.%d", pfx, k);
    sdc__check(v, label, name, acts.skips[k], B * acts.skip_c[k] * acts.skip_h[k] * acts.skip_w[k]);
  }
  snprintf(label, sizeof label, "%s [%s] unet/%s/down_out", model, layout, c);
  snprintf(name, sizeof name, "%s/down_out", pfx);
  sdc__check(v, label, name, acts.h, B * acts.C * acts.H * acts.W);
  /* each later shard starts from the golden boundary tensors, so a shard is judged alone */
  sdc_unet_acts gold = acts;
  float *owned[SDC_MAX_SKIPS + 3] = {0};
  int n_owned = 0, bad = 0;
  snprintf(name, sizeof name, "%s/temb", pfx);
  bad |= !(gold.temb = owned[n_owned++] = sdc__golden_f32(v, name, NULL, NULL));
  snprintf(name, sizeof name, "%s/down_out", pfx);
  bad |= !(gold.h = owned[n_owned++] = sdc__golden_f32(v, name, NULL, NULL));
  for (int k = 0; k < gold.n_skips; k++) {
    snprintf(name, sizeof name, "%s/skip.%d", pfx, k);
    bad |= !(gold.skips[k] = owned[n_owned++] = sdc__golden_f32(v, name, NULL, NULL));
  }
  if (!bad && !(err = sdc_unet_mid(mid, &v->arena, ctx, Nctx, &gold))) {
    snprintf(label, sizeof label, "%s [%s] unet/%s/mid_out", model, layout, c);
    snprintf(name, sizeof name, "%s/mid_out", pfx);
    sdc__check(v, label, name, gold.h, B * gold.C * gold.H * gold.W);
  }
  snprintf(name, sizeof name, "%s/mid_out", pfx);
  if (!bad && !err && (gold.h = owned[n_owned++] = sdc__golden_f32(v, name, NULL, NULL))) {
    float *pred = sdc_arena_floats(&v->arena, n_sample);
    if (!(err = pred ? sdc_unet_up(up, &v->arena, ctx, Nctx, &gold, pred) : SDC_ENOMEM)) {
      snprintf(label, sizeof label, "%s [%s] unet/%s/out (up shard)", model, layout, c);
      snprintf(name, sizeof name, "%s/out", pfx);
      sdc__check(v, label, name, pred, n_sample);
    }
    /* and the whole UNet in one call */
    if (!err && !(err = sdc_unet_forward(whole, &v->arena, sample, t, ctx, addp, B, H, W, Nctx, pred))) {
      snprintf(label, sizeof label, "%s [%s] unet/%s/out (whole)", model, layout, c);
      sdc__check(v, label, name, pred, n_sample);
    }
  }
  if (bad || err) sdc__report_error(v, label, err ? err : SDC_EMISSING);
  for (int i = 0; i < n_owned; i++) free(owned[i]);
reset:
  sdc_arena_reset(&v->arena, mk);
done:
  sdc_unet_free(down), sdc_unet_free(mid), sdc_unet_free(up), sdc_unet_free(whole);
  for (int i = 0; i < 4; i++) sdc_weights_free(&w[i]);
  free(sample), free(ctx), free(t), free(temb_in), free(tids);
}

/* enc: the case has an encoder part too (enc_input, enc_mean, enc_logvar). */
static void sdc__vae_case(sdc__verify *v, sdc_model *m, sdc_vae *vae, const char *model, const char *layout,
                          const char *c, int enc) {
  char label[256], name[256];
  snprintf(label, sizeof label, "%s [%s] vae/%s/decoded", model, layout, c);
  const sdc_st_entry *e;
  int64_t n;
  sdc_arena_mark mk = sdc_arena_get_mark(&v->arena);
  if (sdc__selected(v, label)) {
    snprintf(name, sizeof name, "%s/vae/%s/latent", model, c);
    float *z = sdc__golden_f32(v, name, &n, &e);
    if (!z || e->ndim != 4) {
      sdc__report_error(v, label, SDC_EMISSING);
    } else {
      for (int64_t i = 0; i < n; i++) z[i] = (float)(z[i] / m->vae.scaling_factor);
      const int64_t s = sdc_vae_scale(&m->vae), B = e->shape[0], h = e->shape[2], w = e->shape[3];
      int64_t n_out = B * m->vae.out_channels * h * s * w * s;
      float *out = sdc_arena_floats(&v->arena, n_out);
      int err = out ? sdc_vae_decode(vae, &v->arena, z, B, h, w, out) : SDC_ENOMEM;
      snprintf(name, sizeof name, "%s/vae/%s/decoded", model, c);
      if (err) sdc__report_error(v, label, err);
      else sdc__check(v, label, name, out, n_out);
    }
    free(z);
  }
  snprintf(label, sizeof label, "%s [%s] vae/%s/enc_mean", model, layout, c);
  if (enc && sdc__selected(v, label)) {
    snprintf(name, sizeof name, "%s/vae/%s/enc_input", model, c);
    float *x = sdc__golden_f32(v, name, &n, &e);
    if (!x || e->ndim != 4) {
      sdc__report_error(v, label, SDC_EMISSING);
    } else {
      const int64_t s = sdc_vae_scale(&m->vae), B = e->shape[0], H = e->shape[2], W = e->shape[3];
      int64_t n_lat = B * m->vae.latent_channels * (H / s) * (W / s);
      float *mean = sdc_arena_floats(&v->arena, n_lat), *logvar = sdc_arena_floats(&v->arena, n_lat);
      int err = mean && logvar ? sdc_vae_encode(vae, &v->arena, x, B, H, W, mean, logvar) : SDC_ENOMEM;
      if (err) {
        sdc__report_error(v, label, err);
      } else {
        snprintf(name, sizeof name, "%s/vae/%s/enc_mean", model, c);
        sdc__check(v, label, name, mean, n_lat);
        snprintf(label, sizeof label, "%s [%s] vae/%s/enc_logvar", model, layout, c);
        snprintf(name, sizeof name, "%s/vae/%s/enc_logvar", model, c);
        sdc__check(v, label, name, logvar, n_lat);
      }
    }
    free(x);
  }
  sdc_arena_reset(&v->arena, mk);
}

static void sdc__model_cases(sdc__verify *v, const char *model, const cJSON *spec, const char *layout) {
  char path[1200], cfgdir[1200], label[256], name[300];
  snprintf(cfgdir, sizeof cfgdir, "%s/%s", v->ref, model);
  int single = strcmp(layout, "single_file") == 0;
  if (single) snprintf(path, sizeof path, "%s/%s/single_file.safetensors", v->ref, model);
  else snprintf(path, sizeof path, "%s", cfgdir);
  sdc_model m;
  int err = sdc_model_open(&m, path, single ? cfgdir : NULL);
  if (err) {
    snprintf(label, sizeof label, "%s [%s] open", model, layout);
    sdc__report_error(v, label, err);
    return;
  }
  const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(spec, "prompts");
  if (cJSON_IsArray(prompts)) sdc__text_encoder_cases(v, &m, model, layout, prompts);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(spec, "unet_cases"), *c;
  cJSON_ArrayForEach(c, cases) sdc__unet_case(v, &m, model, layout, c->string);
  cases = cJSON_GetObjectItemCaseSensitive(spec, "vae_cases");
  /* a manifest without vae_cases (the SDXL one) still has <model>/vae/<c>/latent goldens: each is a case */
  cJSON *found = NULL;
  if (!cases) {
    found = cJSON_CreateObject();
    char pfx[300];
    const int np = snprintf(pfx, sizeof pfx, "%s/vae/", model);
    for (int64_t i = 0; found && i < v->goldens.n_entries; i++) {
      const char *n = v->goldens.entries[i].name, *slash = strncmp(n, pfx, (size_t)np) == 0 ? strchr(n + np, '/') : NULL;
      if (slash && strcmp(slash, "/latent") == 0) {
        char cname[64];
        snprintf(cname, sizeof cname, "%.*s", (int)(slash - n - np), n + np);
        snprintf(name, sizeof name, "%s/vae/%s/enc_input", model, cname);
        cJSON_AddBoolToObject(found, cname, sdc_st_find(&v->goldens, name) != NULL);
      }
    }
    cases = found;
  }
  if (cJSON_GetArraySize(cases) > 0) {
    sdc_weights w;
    sdc_vae *vae = NULL;
    err = sdc_model_weights(&m, SDC_COMP_VAE, &w);
    if (!err) err = sdc_vae_load(&vae, &w, &m.vae, SDC_VAE_DECODER | SDC_VAE_ENCODER, &v->opts);
    if (err) {
      snprintf(label, sizeof label, "%s [%s] vae", model, layout);
      sdc__report_error(v, label, err);
    } else {
      cJSON_ArrayForEach(c, cases) sdc__vae_case(v, &m, vae, model, layout, c->string, !found || cJSON_IsTrue(c));
    }
    sdc_vae_free(vae);
    sdc_weights_free(&w);
  }
  cJSON_Delete(found);
  sdc_model_close(&m);
}

/* ------------------------------------------------------- pipeline cases */

/* 10 log10(255^2 / MSE) over n bytes, in dB; INFINITY when a == b. */
static double sdc__psnr_u8(const uint8_t *a, const uint8_t *b, int64_t n) {
  double se = 0.0;
  for (int64_t i = 0; i < n; i++) se += (double)(a[i] - b[i]) * (a[i] - b[i]);
  return se > 0 ? 10.0 * log10(255.0 * 255.0 / (se / (double)n)) : INFINITY;
}

/* bf16: PSNR of the image's PNG bytes against the fp32 golden ones, one line. */
static void sdc__psnr_check(sdc__verify *v, const char *model, const char *layout, const char *gprefix,
                            const char *name, const float *img, uint8_t *u8, int64_t n_img) {
  char label[256], gname[300];
  snprintf(gname, sizeof gname, "%s/png_uint8", gprefix);
  snprintf(label, sizeof label, "%s [%s] pipe/%s bf16 vs fp32", model, layout, name);
  const sdc_st_entry *e = sdc__golden(v, gname, SDC_U8);
  if (!e || sdc_shape_numel(e->ndim, e->shape) != n_img) {
    if (e) sdc_seterr(SDC_ESHAPE, "golden '%s' has %lld bytes, the image %lld", gname,
                      (long long)sdc_shape_numel(e->ndim, e->shape), (long long)n_img);
    return sdc__report_error(v, label, e ? SDC_ESHAPE : SDC_EMISSING);
  }
  sdc_images_to_u8(img, n_img, u8);
  const double psnr = sdc__psnr_u8(u8, sdc_st_ptr(&v->goldens, e), n_img);
  const int ok = psnr >= SDC_BF16_PSNR_MIN_DB;
  if (!v->quiet || !ok)
    fprintf(v->quiet ? stderr : stdout, "%-52s psnr %6.2f dB  min %.0f dB  %s\n", label, psnr, SDC_BF16_PSNR_MIN_DB,
            ok ? "pass" : "FAIL");
  ok ? v->n_pass++ : v->n_fail++;
  if (v->n_psnr++ == 0 || psnr < v->min_psnr_db) v->min_psnr_db = psnr;
}

/* The image against <gprefix>/image (float, 2e-3) and <gprefix>/png_uint8
 * (>= 99.9% within 1 of the golden, all within 3): one line each. */
static void sdc__image_checks(sdc__verify *v, const char *label0, const char *gprefix, const float *img, uint8_t *u8,
                              int64_t n_img) {
  char label[300], gname[400];
  double mr;
  snprintf(gname, sizeof gname, "%s/image", gprefix);
  snprintf(label, sizeof label, "%s/image", label0);
  sdc__report(v, label, sdc__max_err(v, gname, img, n_img, 0, &mr), 2e-3);
  snprintf(gname, sizeof gname, "%s/png_uint8", gprefix);
  snprintf(label, sizeof label, "%s/png_uint8", label0);
  const sdc_st_entry *e = sdc__golden(v, gname, SDC_U8);
  if (!e || sdc_shape_numel(e->ndim, e->shape) != n_img) return sdc__report_error(v, label, SDC_EMISSING);
  const uint8_t *ref = sdc_st_ptr(&v->goldens, e);
  sdc_images_to_u8(img, n_img, u8);
  int64_t within1 = 0, worst = 0;
  for (int64_t i = 0; i < n_img; i++) {
    int64_t d = llabs((long long)u8[i] - (long long)ref[i]);
    within1 += d <= 1;
    if (d > worst) worst = d;
  }
  double frac = (double)within1 / (double)n_img;
  int ok = frac >= 0.999 && worst <= 3;
  printf("%-52s within1 %.4f%%  max_diff %lld  %s\n", label, 100.0 * frac, (long long)worst, ok ? "pass" : "FAIL");
  ok ? v->n_pass++ : v->n_fail++;
}

/* Entry i of a case's [a, b] list (SDXL's sizes), 0 when absent. */
static int64_t sdc__pair(const cJSON *c, const char *key, int i) {
  const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, key), i);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* A golden case's request parameters (goldens.json names them as diffusers' pipeline arguments); the strings
 * stay the case's. Strength is 1 where the case gives none (it only matters with an init image). */
static sdc_gen_params sdc__case_params(const cJSON *c) {
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(c, "scheduler"), *neg = cJSON_GetObjectItemCaseSensitive(c, "negative_prompt"),
              *ni = cJSON_GetObjectItemCaseSensitive(c, "num_images"), *st = cJSON_GetObjectItemCaseSensitive(c, "strength");
  return (sdc_gen_params){
      .prompt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt")),
      .negative_prompt = cJSON_IsString(neg) ? neg->valuestring : NULL,
      .width = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "width")),
      .height = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "height")),
      .steps = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "steps")),
      .guidance_scale = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "guidance_scale")),
      .seed = (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "seed")),
      .scheduler = cJSON_IsString(sch) ? sdc_sched_parse_name(sch->valuestring) : -1,
      .num_images = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 1,
      .strength = cJSON_IsNumber(st) ? st->valuedouble : 1.0,
      .prompt_2 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "prompt_2")),
      .negative_prompt_2 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "negative_prompt_2")),
      .original_size = {sdc__pair(c, "original_size", 0), sdc__pair(c, "original_size", 1)},
      .target_size = {sdc__pair(c, "target_size", 0), sdc__pair(c, "target_size", 1)},
      .has_crop = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(c, "crops_coords_top_left")),
      .crops_coords_top_left = {sdc__pair(c, "crops_coords_top_left", 0), sdc__pair(c, "crops_coords_top_left", 1)},
  };
}

static void sdc__pipeline_case(sdc__verify *v, sdc_pipeline *p, const char *model, const char *layout, const char *name,
                               const cJSON *c) {
  char label[256], gname[300];
  snprintf(label, sizeof label, "%s [%s] pipe/%s", model, layout, name);
  if (!sdc__selected(v, label)) return;
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(c, "scheduler");
  sdc_gen_params g = sdc__case_params(c);
  int err = cJSON_IsString(sch) && g.scheduler < 0 ? sdc_seterr(SDC_EINVAL, "unknown scheduler '%s'", sch->valuestring)
                                                   : sdc_gen_params_check(&g, 0);
  if (err) return sdc__report_error(v, label, err);
  const int64_t n_img = g.num_images * g.height * g.width * 3, s = sdc_vae_scale(&p->model.vae);
  const int64_t n_lat = g.num_images * p->model.unet.in_channels * (g.height / s) * (g.width / s);
  float *img = malloc((size_t)n_img * sizeof *img), *lat = malloc((size_t)n_lat * sizeof *lat);
  uint8_t *u8 = malloc((size_t)n_img);
  if (!img || !lat || !u8) err = sdc_seterr(SDC_ENOMEM, "out of memory");
  if (!err) err = sdc_pipeline_generate(p, &g, NULL, img, lat, NULL, NULL);
  if (err) {
    sdc__report_error(v, label, err);
  } else if (v->bf16) {
    snprintf(gname, sizeof gname, "%s/pipe/%s", model, name);
    sdc__psnr_check(v, model, layout, gname, name, img, u8, n_img);
  } else {
    double mr;
    snprintf(gname, sizeof gname, "%s/pipe/%s/init_latents", model, name);
    snprintf(label, sizeof label, "%s [%s] pipe/%s/init_latents", model, layout, name);
    sdc__report(v, label, sdc__max_err(v, gname, lat, n_lat, 0, &mr), 1e-5);
    snprintf(gname, sizeof gname, "%s/pipe/%s", model, name);
    snprintf(label, sizeof label, "%s [%s] pipe/%s", model, layout, name);
    sdc__image_checks(v, label, gname, img, u8, n_img);
  }
  free(img), free(lat), free(u8);
}

static void sdc__pipeline_cases(sdc__verify *v, const char *model, const cJSON *spec, const char *layout) {
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(spec, "pipelines"), *c;
  if (cJSON_GetArraySize(cases) == 0) return;
  int any = 0;
  char label[256], path[1200], cfgdir[1200];
  cJSON_ArrayForEach(c, cases) {
    snprintf(label, sizeof label, "%s [%s] pipe/%s", model, layout, c->string);
    any |= sdc__selected(v, label);
  }
  if (!any) return;
  int single = strcmp(layout, "single_file") == 0;
  snprintf(cfgdir, sizeof cfgdir, "%s/%s", v->ref, model);
  if (single) snprintf(path, sizeof path, "%s/%s/single_file.safetensors", v->ref, model);
  else snprintf(path, sizeof path, "%s", cfgdir);
  sdc_pipeline *p = NULL;
  int err = sdc_pipeline_load(&p, path, single ? cfgdir : NULL, &v->opts, NULL, 0);
  if (err) {
    snprintf(label, sizeof label, "%s [%s] pipeline", model, layout);
    return sdc__report_error(v, label, err);
  }
  cJSON_ArrayForEach(c, cases) sdc__pipeline_case(v, p, model, layout, c->string, c);
  sdc_pipeline_free(p);
}

/* ------------------------------------- the pipelines manifest (issue 12) */

/* A model of the pipelines manifest: DIR/<model>, else DIR/../<model> (the
 * text-to-image reference models one folder up). */
static void sdc__case_model_dir(const sdc__verify *v, const char *model, char *out, size_t n) {
  snprintf(out, n, "%s/%s", v->ref, model);
  if (access(out, F_OK) != 0) snprintf(out, n, "%s/../%s", v->ref, model);
}

/* Reads DIR/inputs/<file of key> into *buf (heap), or leaves it NULL when the case has no such key. */
static int sdc__case_input(const sdc__verify *v, const cJSON *c, const char *key, char **buf, size_t *n) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, key);
  *buf = NULL, *n = 0;
  if (!f || cJSON_IsNull(f)) return SDC_OK;
  if (!cJSON_IsString(f)) return sdc_seterr(SDC_EFORMAT, "%s/goldens.json: '%s' is not a file name", v->ref, key);
  char path[1200];
  snprintf(path, sizeof path, "%s/inputs/%s", v->ref, f->valuestring);
  return sdc_read_file(path, buf, n);
}

/* One case of kind txt2img / img2img / inpaint: its own pipeline (LoRAs differ per case), the image, the PNG
 * bytes and the initial noise draw against randn.<j>. */
static void sdc__case_pipeline(sdc__verify *v, const char *model, const char *layout, const char *name, const cJSON *c) {
  char label[256], gname[300], dir[1200], path[1300];
  snprintf(label, sizeof label, "%s [%s] %s", model, layout, name);
  if (!sdc__selected(v, label)) return;
  const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "kind"));
  const cJSON *loras = cJSON_GetObjectItemCaseSensitive(c, "loras"), *l;
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(c, "scheduler");
  sdc_gen_params g = sdc__case_params(c);
  int err = SDC_OK;
  if (!kind || strcmp(kind, "txt2img") == 0) g.kind = SDC_GEN_TXT2IMG;
  else if (strcmp(kind, "img2img") == 0) g.kind = SDC_GEN_IMG2IMG;
  else if (strcmp(kind, "inpaint") == 0) g.kind = SDC_GEN_INPAINT;
  else err = sdc_seterr(SDC_EFORMAT, "kind '%s': expected txt2img, img2img or inpaint", kind);
  if (!err && cJSON_IsString(sch) && g.scheduler < 0) err = sdc_seterr(SDC_EINVAL, "unknown scheduler '%s'", sch->valuestring);
  if (!err) err = sdc_gen_params_check(&g, 0);
  sdc_lora_ref refs[SDC_MAX_LORAS];
  int n_loras = 0;
  cJSON_ArrayForEach(l, loras) {
    const char *file = cJSON_GetStringValue(cJSON_GetArrayItem(l, 0));
    if (err) break;
    if (n_loras == SDC_MAX_LORAS || !file || !cJSON_IsNumber(cJSON_GetArrayItem(l, 1))) {
      err = sdc_seterr(SDC_EFORMAT, "loras: expected at most %d [file, multiplier] pairs", SDC_MAX_LORAS);
      break;
    }
    snprintf(refs[n_loras].path, sizeof refs[n_loras].path, "%s/lora/%s", v->ref, file);
    refs[n_loras++].multiplier = cJSON_GetArrayItem(l, 1)->valuedouble;
  }
  char *init = NULL, *mask = NULL;
  size_t n_init = 0, n_mask = 0;
  if (!err) err = sdc__case_input(v, c, "init_image", &init, &n_init);
  if (!err) err = sdc__case_input(v, c, "mask_image", &mask, &n_mask);
  sdc_pipeline *p = NULL;
  sdc__case_model_dir(v, model, dir, sizeof dir);
  const int single = strcmp(layout, "single_file") == 0;
  snprintf(path, sizeof path, "%s/single_file.safetensors", dir);
  if (!err) err = sdc_pipeline_load(&p, single ? path : dir, single ? dir : NULL, &v->opts, refs, n_loras);
  float *img = NULL, *lat = NULL;
  uint8_t *u8 = NULL;
  int64_t n_img = 0, n_lat = 0;
  if (!err) {
    const int64_t s = sdc_vae_scale(&p->model.vae);
    n_img = g.num_images * g.height * g.width * 3;
    n_lat = g.num_images * p->model.vae.latent_channels * (g.height / s) * (g.width / s);
    img = malloc((size_t)n_img * sizeof *img), lat = malloc((size_t)n_lat * sizeof *lat), u8 = malloc((size_t)n_img);
    if (!img || !lat || !u8) err = sdc_seterr(SDC_ENOMEM, "out of memory");
  }
  const sdc_pipeline_images in = {init, n_init, mask, n_mask};
  if (!err) err = sdc_pipeline_generate(p, &g, g.kind == SDC_GEN_TXT2IMG ? NULL : &in, img, lat, NULL, NULL);
  snprintf(gname, sizeof gname, "%s/%s", model, name);
  if (err) {
    sdc__report_error(v, label, err);
  } else if (v->bf16) {
    sdc__psnr_check(v, model, layout, gname, name, img, u8, n_img);
  } else {
    /* the initial noise is draw 0, or 1 after the init image's posterior */
    const int j = sdc_denoise_needs_init(&g, p->model.unet.in_channels);
    char rname[340], rlabel[300];
    snprintf(rname, sizeof rname, "%s/randn.%d", gname, j);
    snprintf(rlabel, sizeof rlabel, "%s/randn.%d", label, j);
    double mr;
    if (sdc_st_find(&v->goldens, rname)) sdc__report(v, rlabel, sdc__max_err(v, rname, lat, n_lat, 0, &mr), 1e-5);
    sdc__image_checks(v, label, gname, img, u8, n_img);
  }
  sdc_pipeline_free(p);
  free(init), free(mask), free(img), free(lat), free(u8);
}

/* goldens.json[<model>].cases, from the diffusers folder and the single file when there is one. */
static void sdc__case_pipelines(sdc__verify *v, const char *model, const cJSON *spec) {
  char dir[1200], path[1300];
  sdc__case_model_dir(v, model, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/single_file.safetensors", dir);
  const int has_single = access(path, F_OK) == 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "cases")) {
    sdc__case_pipeline(v, model, "diffusers", c->string, c);
    if (has_single) sdc__case_pipeline(v, model, "single_file", c->string, c);
  }
}

static void sdc__verify_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc verify --ref DIR [--only SUBSTRING] [--precision fp32|bf16]\n"
          "  Runs every case of DIR/goldens.json against DIR/goldens.safetensors, loading each\n"
          "  model from DIR/<model>/ (diffusers layout, and single_file.safetensors when present).\n"
          "  A manifest of pipeline cases (goldens.json[<model>].cases: txt2img, img2img, inpaint)\n"
          "  takes its models from DIR/<model> or DIR/../<model>, its images from DIR/inputs/ and\n"
          "  its LoRAs from DIR/lora/.\n"
          "  Prints one line per case; exits 0 only if all pass.\n"
          "  --precision bf16 runs only the pipeline cases, in bf16, and passes those whose image\n"
          "  has a PSNR of at least %.0f dB against the fp32 golden PNG bytes; exits 77 (SKIP)\n"
          "  when this CPU cannot run bf16.\n",
          SDC_BF16_PSNR_MIN_DB);
}

/* Reads DIR/goldens.json and opens DIR/goldens.safetensors into v. */
static int sdc__verify_open(sdc__verify *v, const char *ref) {
  char path[1200];
  char *json = NULL;
  v->ref = ref;
  snprintf(path, sizeof path, "%s/goldens.json", ref);
  int err = sdc_read_file(path, &json, NULL);
  if (!err) {
    sdc_json_nonfinite(json);
    v->manifest = cJSON_Parse(json);
    if (!cJSON_IsObject(v->manifest)) err = sdc_seterr(SDC_EFORMAT, "%s: not a JSON object", path);
  }
  free(json);
  snprintf(path, sizeof path, "%s/goldens.safetensors", ref);
  if (!err) err = sdc_st_open(&v->goldens, path);
  if (err) {
    cJSON_Delete(v->manifest);
    v->manifest = NULL;
    return err;
  }
  sdc_arena_init(&v->arena, 0);
  return SDC_OK;
}

static void sdc__verify_close(sdc__verify *v) {
  sdc_arena_free(&v->arena);
  sdc_st_close(&v->goldens);
  cJSON_Delete(v->manifest);
}

/* Every model's pipeline cases, in each layout it has, as the fp32 run does them. */
static void sdc__all_pipelines(sdc__verify *v) {
  char path[1200];
  const cJSON *spec;
  cJSON_ArrayForEach(spec, v->manifest) {
    const char *model = spec->string;
    if (!cJSON_IsObject(spec) || strcmp(model, "rng") == 0 || strcmp(model, "sched") == 0 ||
        strcmp(model, "sched_lcm") == 0)
      continue;
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(spec, "cases"))) {
      sdc__case_pipelines(v, model, spec);
      continue;
    }
    sdc__pipeline_cases(v, model, spec, "diffusers");
    snprintf(path, sizeof path, "%s/%s/single_file.safetensors", v->ref, model);
    if (access(path, F_OK) == 0) sdc__pipeline_cases(v, model, spec, "single_file");
  }
}

int sdc_verify_bf16_psnr(const char *ref_dir, double *min_psnr_db, int *n_cases, int quiet) {
  sdc__verify v = {.bf16 = 1, .quiet = quiet, .opts = {.precision = SDC_PREC_BF16}};
  *min_psnr_db = NAN, *n_cases = 0;
  int err = sdc_precision_check(SDC_PREC_BF16);
  if (!err) err = sdc__verify_open(&v, ref_dir);
  if (err) return err;
  sdc__all_pipelines(&v);
  sdc__verify_close(&v);
  *min_psnr_db = v.n_psnr ? v.min_psnr_db : NAN;
  *n_cases = v.n_psnr;
  if (v.n_fail) return sdc_seterr(SDC_EMISMATCH, "%d of %d bf16 pipeline case(s) failed or fell below %.0f dB", v.n_fail,
                                  v.n_pass + v.n_fail, SDC_BF16_PSNR_MIN_DB);
  if (!v.n_psnr) return sdc_seterr(SDC_EMISSING, "%s/goldens.json: no pipeline cases", ref_dir);
  return SDC_OK;
}

int sdc_cmd_verify(int argc, char **argv) {
  sdc__verify v = {0};
  const char *ref = NULL, *precision = "fp32";
  static const struct option opts[] = {{"ref", required_argument, 0, 'r'},
                                       {"only", required_argument, 0, 'o'},
                                       {"precision", required_argument, 0, 'p'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "r:o:p:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'r': ref = optarg; break;
      case 'o': v.only = optarg; break;
      case 'p': precision = optarg; break;
      case 'h': sdc__verify_usage(stdout); return 0;
      default: sdc__verify_usage(stderr); return 2;
    }
  }
  sdc_precision prec;
  if (!ref || optind != argc) {
    sdc__verify_usage(stderr);
    return 2;
  }
  int err = sdc_precision_parse(precision, &prec);
  if (err) {
    fprintf(stderr, "sdc verify: --precision: %s\n", sdc_errmsg(err));
    return 2;
  }
  if ((err = sdc_precision_check(prec))) {
    printf("SKIP: %s\n", sdc_errmsg(err)); /* exit 77: what ctest and automake call skipped */
    return 77;
  }
  v.bf16 = prec == SDC_PREC_BF16;
  v.opts.precision = prec;
  if ((err = sdc__verify_open(&v, ref))) {
    fprintf(stderr, "sdc verify: %s\n", sdc_errmsg(err));
    return 2;
  }
  if (v.bf16) {
    sdc__all_pipelines(&v);
    if (v.n_psnr) printf("min PSNR %.2f dB over %d case(s); ", v.min_psnr_db, v.n_psnr);
    printf("%d passed, %d failed\n", v.n_pass, v.n_fail);
    sdc__verify_close(&v);
    return v.n_fail || !v.n_psnr ? 1 : 0;
  }
  const cJSON *spec;
  char path[1200];
  cJSON_ArrayForEach(spec, v.manifest) {
    const char *model = spec->string;
    if (strcmp(model, "rng") == 0) {
      sdc__rng_cases(&v, spec);
      continue;
    }
    if (strcmp(model, "sched") == 0) {
      const cJSON *c;
      cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "cases")) sdc__sched_case(&v, c->string, c);
      continue;
    }
    if (strcmp(model, "sched_lcm") == 0) { /* the pipelines goldens: cases "<pred>/<n>" under sched/lcm/ */
      const cJSON *c;
      char name[256];
      cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "cases")) {
        snprintf(name, sizeof name, "lcm/%s", c->string);
        sdc__sched_case(&v, name, c);
      }
      continue;
    }
    if (!cJSON_IsObject(spec)) continue;
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(spec, "cases"))) {
      sdc__case_pipelines(&v, model, spec);
      continue;
    }
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(spec, "prompts");
    if (cJSON_IsArray(prompts)) sdc__tokenizer_cases(&v, model, prompts, "tok");
    snprintf(path, sizeof path, "%s/%s/tokenizer_2", v.ref, model);
    if (cJSON_IsArray(prompts) && access(path, F_OK) == 0) sdc__tokenizer_cases(&v, model, prompts, "tok2");
    sdc__model_cases(&v, model, spec, "diffusers");
    sdc__pipeline_cases(&v, model, spec, "diffusers");
    snprintf(path, sizeof path, "%s/%s/single_file.safetensors", v.ref, model);
    if (access(path, F_OK) == 0) {
      sdc__model_cases(&v, model, spec, "single_file");
      sdc__pipeline_cases(&v, model, spec, "single_file");
    }
  }
  printf("%d passed, %d failed\n", v.n_pass, v.n_fail);
  sdc__verify_close(&v);
  return v.n_fail ? 1 : 0;
}
