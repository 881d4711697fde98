/* lora.c - LoRA / LoCon adapter files (kohya names), checked against a model and merged on weight lookup. */
#include "lora.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "checkpoint.h"
#include "error.h"

#define SDC__LDM_MAX_SPLITS 14 /* underscores of an LDM module path tried as dots: 2^14 key maps at most */

typedef struct {
  char name[SDC_KEY_MAX]; /* "lora_unet_..." without the tensor suffix */
  const sdc_st_entry *up, *down, *alpha;
} sdc__lora_module;

typedef struct {
  sdc_lora_ref ref;
  const char *label; /* the file's base name, for messages */
  sdc_st_file f;
  sdc__lora_module *mods;
  int64_t n_mods;
} sdc__lora_file;

struct sdc_lora_set {
  int n;
  sdc__lora_file files[SDC_MAX_LORAS];
};

int sdc_lora_ref_parse(const char *arg, sdc_lora_ref *out) {
  memset(out, 0, sizeof *out);
  out->multiplier = 1.0;
  size_t n = strlen(arg);
  const char *colon = strrchr(arg, ':');
  if (colon) {
    const char *num = colon + 1;
    char *end;
    errno = 0;
    double m = strtod(num, &end);
    if (*num && *end == 0 && end != num) {
      if (!isfinite(m)) return sdc_seterr(SDC_EINVAL, "LoRA '%s': multiplier '%s' is not finite", arg, num);
      out->multiplier = m;
      n = (size_t)(colon - arg);
    } else if (!strchr(num, '/') && !strstr(num, ".safetensors") && access(arg, F_OK) != 0) {
      /* "x:notanumber" is a typo'd multiplier, not a file name with a colon */
      return sdc_seterr(SDC_EINVAL, "LoRA '%s': multiplier '%s' is not a number", arg, num);
    }
  }
  if (n == 0) return sdc_seterr(SDC_EINVAL, "LoRA '%s': no file name", arg);
  if (n >= sizeof out->path) return sdc_seterr(SDC_EINVAL, "LoRA '%.64s...': path longer than %d bytes", arg,
                                               SDC_MAX_LORA_PATH - 1);
  memcpy(out->path, arg, n);
  out->path[n] = 0;
  return SDC_OK;
}

static int sdc__ends(const char *s, const char *suffix, size_t *stem) {
  size_t n = strlen(s), m = strlen(suffix);
  if (n < m || strcmp(s + n - m, suffix) != 0) return 0;
  *stem = n - m;
  return 1;
}

static int sdc__is_float(sdc_dtype d) { return d == SDC_F32 || d == SDC_F16 || d == SDC_BF16; }

/* Reads f's keys into modules and checks each one on its own (halves, rank, alpha). */
static int sdc__read_modules(sdc__lora_file *lf) {
  const sdc_st_file *f = &lf->f;
  const char *L = lf->label;
  lf->mods = calloc((size_t)f->n_entries + 1, sizeof *lf->mods);
  if (!lf->mods) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", L);
  for (int64_t i = 0; i < f->n_entries; i++) {
    const sdc_st_entry *e = &f->entries[i];
    size_t stem;
    int part; /* 0 down, 1 up, 2 alpha */
    if (sdc__ends(e->name, ".lora_down.weight", &stem)) part = 0;
    else if (sdc__ends(e->name, ".lora_up.weight", &stem)) part = 1;
    else if (sdc__ends(e->name, ".alpha", &stem)) part = 2;
    else return sdc_seterr(SDC_EUNSUPPORTED, "%s: %s is not a LoRA tensor (expected <module>.lora_down.weight, "
                           ".lora_up.weight or .alpha)", L, e->name);
    if (stem >= SDC_KEY_MAX) return sdc_seterr(SDC_EFORMAT, "%s: %.64s...: name too long", L, e->name);
    if (strncmp(e->name, "lora_te1_", 9) == 0 || strncmp(e->name, "lora_te2_", 9) == 0)
      return sdc_seterr(SDC_EUNSUPPORTED, "%s: %.*s is for an SDXL text encoder: not supported", L, (int)stem, e->name);
    if (strncmp(e->name, "lora_unet_", 10) != 0 && strncmp(e->name, "lora_te_", 8) != 0)
      return sdc_seterr(SDC_EUNSUPPORTED, "%s: %.*s names no component (expected lora_unet_ or lora_te_)", L,
                        (int)stem, e->name);
    if (!sdc__is_float(e->dtype))
      return sdc_seterr(SDC_EDTYPE, "%s: %s: dtype %s (expected F16, BF16 or F32)", L, e->name, sdc_dtype_name(e->dtype));
    sdc__lora_module *m = NULL;
    for (int64_t j = lf->n_mods - 1; j >= 0 && !m; j--)
      if (strncmp(lf->mods[j].name, e->name, stem) == 0 && lf->mods[j].name[stem] == 0) m = &lf->mods[j];
    if (!m) {
      m = &lf->mods[lf->n_mods++];
      memcpy(m->name, e->name, stem);
      m->name[stem] = 0;
    }
    if (part == 0) m->down = e;
    else if (part == 1) m->up = e;
    else m->alpha = e;
  }
  if (lf->n_mods == 0) return sdc_seterr(SDC_EFORMAT, "%s: no LoRA keys (<module>.lora_down.weight) in the file", L);
  for (int64_t j = 0; j < lf->n_mods; j++) {
    const sdc__lora_module *m = &lf->mods[j];
    if (!m->down || !m->up)
      return sdc_seterr(SDC_EMISSING, "%s: %s has no %s", L, m->name, m->down ? "lora_up.weight" : "lora_down.weight");
    const sdc_st_entry *d = m->down, *u = m->up;
    if ((d->ndim != 2 && d->ndim != 4) || d->shape[0] < 1)
      return sdc_seterr(SDC_ESHAPE, "%s: %s.lora_down.weight: expected [rank, in] or [rank, in, kh, kw]", L, m->name);
    if (!((u->ndim == 2) || (u->ndim == 4 && u->shape[2] == 1 && u->shape[3] == 1)) || u->shape[0] < 1)
      return sdc_seterr(SDC_ESHAPE, "%s: %s.lora_up.weight: expected [out, rank] or [out, rank, 1, 1]", L, m->name);
    if (u->shape[1] != d->shape[0])
      return sdc_seterr(SDC_ESHAPE, "%s: %s: lora_down has rank %lld but lora_up %lld", L, m->name,
                        (long long)d->shape[0], (long long)u->shape[1]);
    if (m->alpha) {
      float a;
      if (sdc_shape_numel(m->alpha->ndim, m->alpha->shape) != 1)
        return sdc_seterr(SDC_ESHAPE, "%s: %s.alpha: expected one value", L, m->name);
      sdc_convert_to_f32(&a, sdc_st_ptr(f, m->alpha), m->alpha->dtype, 1);
      if (!isfinite(a)) return sdc_seterr(SDC_EINVAL, "%s: %s.alpha is not finite", L, m->name);
    }
  }
  return SDC_OK;
}

int sdc_lora_set_open(sdc_lora_set **out, const sdc_lora_ref *refs, int n) {
  *out = NULL;
  if (n < 0 || n > SDC_MAX_LORAS)
    return sdc_seterr(SDC_EINVAL, "LoRA: %d adapters (at most %d)", n, SDC_MAX_LORAS);
  sdc_lora_set *s = calloc(1, sizeof *s);
  if (!s) return sdc_seterr(SDC_ENOMEM, "LoRA: out of memory");
  for (int i = 0; i < n; i++) {
    sdc__lora_file *lf = &s->files[i];
    lf->ref = refs[i];
    const char *slash = strrchr(lf->ref.path, '/');
    lf->label = slash ? slash + 1 : lf->ref.path;
    int err = SDC_OK;
    if (!isfinite(refs[i].multiplier))
      err = sdc_seterr(SDC_EINVAL, "%s: multiplier is not finite", lf->label);
    if (!err && (err = sdc_st_open(&lf->f, lf->ref.path)))
      sdc_adderr(err, "LoRA");
    if (!err) {
      s->n = i + 1;
      err = sdc__read_modules(lf);
    }
    if (err) {
      sdc_lora_set_free(s);
      return err;
    }
  }
  *out = s;
  return SDC_OK;
}

void sdc_lora_set_free(sdc_lora_set *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++) {
    sdc_st_close(&s->files[i].f);
    free(s->files[i].mods);
  }
  free(s);
}

/* kohya's spelling of a module path: "a.b_c.0" -> "a_b_c_0". */
typedef struct {
  char key[SDC_KEY_MAX];
  const char *name; /* the tensor's name in the view */
} sdc__cand;

static int sdc__cmp_cand(const void *a, const void *b) {
  return strcmp(((const sdc__cand *)a)->key, ((const sdc__cand *)b)->key);
}

/* Finds the diffusers tensor an LDM-named UNet module stands for: the module
 * path's underscores are dots or not, so every split of the part after the
 * block indices goes through the single-file key map and the one that names a
 * tensor of w wins. NULL when none does; *ambiguous when two do. */
static const char *sdc__ldm_lookup(const sdc_weights *w, const char *mod, int *ambiguous) {
  *ambiguous = 0;
  if (!w->unet_cfg) return NULL;
  char head[64] = "", tail[SDC_KEY_MAX];
  long long k, s;
  int used = 0;
  if (sscanf(mod, "input_blocks_%lld_%lld_%n", &k, &s, &used) == 2 && used)
    snprintf(head, sizeof head, "input_blocks.%lld.%lld.", k, s);
  else if (used = 0, sscanf(mod, "output_blocks_%lld_%lld_%n", &k, &s, &used) == 2 && used)
    snprintf(head, sizeof head, "output_blocks.%lld.%lld.", k, s);
  else if (used = 0, sscanf(mod, "middle_block_%lld_%n", &s, &used) == 1 && used)
    snprintf(head, sizeof head, "middle_block.%lld.", s);
  else used = 0;
  snprintf(tail, sizeof tail, "%s", mod + used);
  int pos[SDC__LDM_MAX_SPLITS], n_us = 0;
  for (int i = 0; tail[i]; i++)
    if (tail[i] == '_') {
      if (n_us == SDC__LDM_MAX_SPLITS) return NULL;
      pos[n_us++] = i;
    }
  const char *found = NULL;
  for (unsigned mask = 0; mask < (1u << n_us); mask++) {
    char key[SDC_KEY_MAX + 80];
    for (int b = 0; b < n_us; b++) tail[pos[b]] = (mask >> b) & 1 ? '.' : '_';
    snprintf(key, sizeof key, "%s%s.weight", head, tail);
    sdc_key_out outs[SDC_KEY_MAP_MAX_OUT];
    int n = sdc_checkpoint_map_unet(key, outs, w->unet_cfg);
    for (int o = 0; o < n; o++) {
      if (!sdc_weights_has(w, outs[o].name)) continue;
      /* the view's own string: outs is a local */
      const sdc__weight_ref *r = sdc_weights_ref(w, outs[o].name);
      if (found && strcmp(found, r->name) != 0) *ambiguous = 1;
      found = r->name;
    }
  }
  return found;
}

int sdc_weights_set_lora(sdc_weights *w, const sdc_lora_set *s, sdc_component comp) {
  const char *prefix = comp == SDC_COMP_UNET ? "lora_unet_" : comp == SDC_COMP_TEXT_ENCODER ? "lora_te_" : NULL;
  const char *comp_name = comp == SDC_COMP_UNET ? "unet" : "text encoder";
  if (!s || !prefix) return SDC_OK; /* the VAE has no adapters */
  if (w->recording) return sdc_seterr(SDC_EINVAL, "LoRA: cannot apply to a recorder");
  const size_t plen = strlen(prefix);
  /* every module name the component could hold, in kohya's spelling */
  sdc__cand *cands = calloc((size_t)w->n_refs + 1, sizeof *cands);
  int64_t n_cands = 0, n_pending = 0, cap_pending = 0;
  struct pend {
    const char *name;
    sdc_weight_delta d;
  } *pend = NULL;
  if (!cands) return sdc_seterr(SDC_ENOMEM, "LoRA: out of memory");
  for (int64_t i = 0; i < w->n_refs; i++) {
    size_t stem;
    if (!sdc__ends(w->refs[i].name, ".weight", &stem) || stem >= SDC_KEY_MAX) continue;
    sdc__cand *c = &cands[n_cands++];
    memcpy(c->key, w->refs[i].name, stem);
    c->key[stem] = 0;
    for (char *p = c->key; *p; p++)
      if (*p == '.') *p = '_';
    c->name = w->refs[i].name;
  }
  qsort(cands, (size_t)n_cands, sizeof *cands, sdc__cmp_cand);
  int err = SDC_OK;
  for (int fi = 0; fi < s->n && !err; fi++) {
    const sdc__lora_file *lf = &s->files[fi];
    const char *L = lf->label;
    const int64_t first_pending = n_pending;
    for (int64_t j = 0; j < lf->n_mods && !err; j++) {
      const sdc__lora_module *m = &lf->mods[j];
      if (strncmp(m->name, prefix, plen) != 0) continue;
      sdc__cand key;
      snprintf(key.key, sizeof key.key, "%s", m->name + plen);
      const sdc__cand *c = bsearch(&key, cands, (size_t)n_cands, sizeof *cands, sdc__cmp_cand);
      const char *target = c ? c->name : NULL;
      int ambiguous = 0;
      if (!target && comp == SDC_COMP_UNET) target = sdc__ldm_lookup(w, m->name + plen, &ambiguous);
      if (ambiguous) {
        err = sdc_seterr(SDC_EFORMAT, "%s: %s names more than one module of the %s", L, m->name, comp_name);
        break;
      }
      if (!target) {
        err = sdc_seterr(SDC_EMISSING, "%s: %s names no module of the %s", L, m->name, comp_name);
        break;
      }
      /* the tensor as the view hands it out (one part of a fused tensor, maybe) */
      const sdc__weight_ref *r = sdc_weights_ref(w, target);
      const sdc_st_entry *e = r->entry, *u = m->up, *d = m->down;
      int64_t wshape[SDC_MAX_DIMS];
      const int wdim = sdc_weights_ref_shape(r, wshape);
      const int64_t rows = wdim ? wshape[0] : 0, numel = sdc_shape_numel(wdim, wshape), rank = d->shape[0],
                    dn = sdc_shape_numel(d->ndim, d->shape);
      int fits = e->ndim >= 2 && u->shape[0] == rows && rows > 0 && dn / rank == numel / rows;
      /* a 3x3 LoCon down needs a 3x3 conv with the same taps; a 1x1 or linear one fits either layout */
      if (fits && d->ndim == 4 && d->shape[2] * d->shape[3] > 1)
        fits = e->ndim == 4 && e->shape[1] == d->shape[1] && e->shape[2] == d->shape[2] && e->shape[3] == d->shape[3];
      if (!fits) {
        char ws[128], us[128], ds[128];
        sdc_shape_str(ws, sizeof ws, wdim, wshape);
        sdc_shape_str(us, sizeof us, u->ndim, u->shape);
        sdc_shape_str(ds, sizeof ds, d->ndim, d->shape);
        err = sdc_seterr(SDC_ESHAPE, "%s: %s (up %s, down %s) does not fit %s %s of the %s", L, m->name, us, ds, target,
                         ws, comp_name);
        break;
      }
      for (int64_t q = first_pending; q < n_pending; q++)
        if (strcmp(pend[q].name, target) == 0) {
          err = sdc_seterr(SDC_EFORMAT, "%s: %s adapts %s a second time", L, m->name, target);
          break;
        }
      if (err) break;
      float alpha = (float)rank;
      if (m->alpha) sdc_convert_to_f32(&alpha, sdc_st_ptr(&lf->f, m->alpha), m->alpha->dtype, 1);
      if (n_pending == cap_pending) {
        int64_t cap = cap_pending ? 2 * cap_pending : 256;
        struct pend *p = realloc(pend, (size_t)cap * sizeof *p);
        if (!p) {
          err = sdc_seterr(SDC_ENOMEM, "LoRA: out of memory");
          break;
        }
        pend = p, cap_pending = cap;
      }
      pend[n_pending++] = (struct pend){target, {&lf->f, u, d, lf->ref.multiplier * (double)alpha / (double)rank}};
    }
  }
  /* all checked: only now does the view change */
  for (int64_t q = 0; q < n_pending && !err; q++) err = sdc_weights_add_delta(w, pend[q].name, &pend[q].d);
  free(pend);
  free(cands);
  return err;
}

/* ------------------------------------------------------------ random adapters */

static int sdc__lora_pick(const char *name, int comp, int which) {
  static const char *const attn[] = {".attn1.to_q.weight", ".attn1.to_k.weight", ".attn1.to_v.weight",
                                     ".attn1.to_out.0.weight", ".attn2.to_q.weight", ".attn2.to_k.weight",
                                     ".attn2.to_v.weight", ".attn2.to_out.0.weight", ".ff.net.0.proj.weight",
                                     ".ff.net.2.weight"};
  static const char *const te[] = {".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight",
                                   ".self_attn.out_proj.weight", ".mlp.fc1.weight", ".mlp.fc2.weight"};
  size_t stem;
  if (comp == SDC_COMP_TEXT_ENCODER) {
    for (size_t i = 0; (which & SDC_LORA_TE) && i < sizeof te / sizeof *te; i++)
      if (sdc__ends(name, te[i], &stem)) return 1;
    return 0;
  }
  if (which & SDC_LORA_ATTN) {
    if (strstr(name, ".attentions.") && (sdc__ends(name, ".proj_in.weight", &stem) || sdc__ends(name, ".proj_out.weight", &stem)))
      return 1;
    for (size_t i = 0; strstr(name, ".transformer_blocks.") && i < sizeof attn / sizeof *attn; i++)
      if (sdc__ends(name, attn[i], &stem)) return 1;
  }
  return (which & SDC_LORA_CONV1) && strstr(name, ".resnets.") && sdc__ends(name, ".conv1.weight", &stem);
}

static uint64_t sdc__mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* One tensor of the adapter being written: name, shape, values (f32 heap). */
typedef struct {
  char name[SDC_KEY_MAX + 32];
  sdc_tensor t;
} sdc__out_tensor;

static int sdc__add_random(sdc__out_tensor *o, const char *name, int ndim, const int64_t *shape, double scale,
                           uint64_t *s) {
  snprintf(o->name, sizeof o->name, "%s", name);
  o->t.dtype = SDC_F32;
  o->t.ndim = ndim;
  if (ndim > 0) memcpy(o->t.shape, shape, (size_t)ndim * sizeof *shape); /* alpha is 0-d: no shape */
  int64_t n = sdc_shape_numel(ndim, shape);
  float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
  if (!x) return sdc_seterr(SDC_ENOMEM, "out of memory for %s", name);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * ((double)(sdc__mix(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0));
  o->t.data = x;
  return SDC_OK;
}

int sdc_lora_write_random(sdc_model *m, const char *path, int64_t rank, int which, sdc_dtype dtype, uint64_t seed) {
  if (rank < 1) return sdc_seterr(SDC_EINVAL, "LoRA rank %lld: expected >= 1", (long long)rank);
  if (dtype != SDC_F16 && dtype != SDC_F32) return sdc_seterr(SDC_EINVAL, "LoRA dtype: expected f16 or f32");
  sdc__out_tensor *outs = NULL;
  int64_t n = 0, cap = 0;
  uint64_t s = seed;
  int err = SDC_OK;
  const sdc_component comps[2] = {SDC_COMP_TEXT_ENCODER, SDC_COMP_UNET};
  for (int ci = 0; ci < 2 && !err; ci++) {
    if (comps[ci] == SDC_COMP_TEXT_ENCODER && !(which & SDC_LORA_TE)) continue;
    if (comps[ci] == SDC_COMP_UNET && !(which & (SDC_LORA_ATTN | SDC_LORA_CONV1))) continue;
    sdc_weights w;
    if ((err = sdc_model_weights(m, comps[ci], &w))) break;
    for (int64_t i = 0; i < w.n_refs && !err; i++) {
      const sdc__weight_ref *r = &w.refs[i];
      const sdc_st_entry *e = r->entry;
      size_t stem;
      if (!sdc__lora_pick(r->name, comps[ci], which) || e->ndim < 2 || !sdc__ends(r->name, ".weight", &stem)) continue;
      if (n + 3 > cap) {
        cap = cap ? 2 * cap : 256;
        sdc__out_tensor *p = realloc(outs, (size_t)cap * sizeof *p);
        if (!p) {
          err = sdc_seterr(SDC_ENOMEM, "out of memory");
          break;
        }
        outs = p;
      }
      char mod[SDC_KEY_MAX];
      snprintf(mod, sizeof mod, "%s%.*s", comps[ci] == SDC_COMP_UNET ? "lora_unet_" : "lora_te_", (int)stem, r->name);
      for (char *c = mod; *c; c++)
        if (*c == '.') *c = '_';
      int64_t wshape[SDC_MAX_DIMS];
      const int wdim = sdc_weights_ref_shape(r, wshape);
      const int64_t out = wshape[0], in = sdc_shape_numel(wdim, wshape) / out;
      int64_t dshape[4] = {rank, in, 1, 1}, ushape[4] = {out, rank, 1, 1};
      if (e->ndim == 4) dshape[1] = e->shape[1], dshape[2] = e->shape[2], dshape[3] = e->shape[3];
      char name[SDC_KEY_MAX + 32];
      memset(&outs[n], 0, 3 * sizeof *outs);
      snprintf(name, sizeof name, "%s.lora_down.weight", mod);
      err = sdc__add_random(&outs[n++], name, e->ndim == 4 ? 4 : 2, dshape, 1.0 / sqrt((double)in), &s);
      snprintf(name, sizeof name, "%s.lora_up.weight", mod);
      /* a delta of about a tenth of a weight's size: visible, not destructive */
      if (!err) err = sdc__add_random(&outs[n++], name, e->ndim == 4 ? 4 : 2, ushape, 0.2 / sqrt((double)rank), &s);
      snprintf(name, sizeof name, "%s.alpha", mod);
      if (!err) err = sdc__add_random(&outs[n++], name, 0, NULL, 0.0, &s);
      if (!err) ((float *)outs[n - 1].t.data)[0] = (float)rank / 2.0f;
    }
    sdc_weights_free(&w);
  }
  if (!err && n == 0) err = sdc_seterr(SDC_EMISSING, "%s: the model has no module the LoRA would cover", m->path);
  const char **names = err ? NULL : calloc((size_t)n, sizeof *names);
  sdc_tensor *ts = err ? NULL : calloc((size_t)n, sizeof *ts);
  if (!err && (!names || !ts)) err = sdc_seterr(SDC_ENOMEM, "out of memory");
  for (int64_t i = 0; !err && i < n; i++) {
    names[i] = outs[i].name;
    ts[i] = outs[i].t;
    if (dtype == SDC_F16) err = sdc_tensor_narrow_f16(&ts[i]);
  }
  if (!err) err = sdc_st_write(path, n, names, ts);
  for (int64_t i = 0; ts && i < n; i++)
    if (ts[i].dtype == SDC_F16) free(ts[i].data);
  for (int64_t i = 0; i < n; i++) free(outs[i].t.data);
  free(outs), free(names), free(ts);
  return err;
}
