/* weights.c - diffusers-name lookup over one safetensors file, with dtype widening. */
#include "weights.h"

#include <math.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include "clock.h"
#include "error.h"

struct sdc__recorded {
  char *name;
  int ndim;
  int64_t shape[SDC_MAX_DIMS];
  float *data;
};

static int sdc__cmp_ref(const void *a, const void *b) {
  return strcmp(((const sdc__weight_ref *)a)->name, ((const sdc__weight_ref *)b)->name);
}

int sdc_weights_init(sdc_weights *w, const sdc_st_file *file, const char *prefix, sdc_key_map_fn map, const void *ctx) {
  memset(w, 0, sizeof *w);
  size_t plen = strlen(prefix);
  if (plen)
    snprintf(w->source, sizeof w->source, "%s (keys %s*)", file->path, prefix);
  else
    snprintf(w->source, sizeof w->source, "%s", file->path);
  size_t cap = (size_t)file->n_entries * SDC_KEY_MAP_MAX_OUT + 1;
  w->refs = calloc(cap, sizeof *w->refs);
  if (!w->refs) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", file->path);
  sdc_key_out outs[SDC_KEY_MAP_MAX_OUT];
  for (int64_t i = 0; i < file->n_entries; i++) {
    const char *key = file->entries[i].name;
    if (strncmp(key, prefix, plen) != 0) continue;
    int n_out = 1;
    if (map) {
      n_out = map(key + plen, outs, ctx);
    } else {
      snprintf(outs[0].name, sizeof outs[0].name, "%s", key + plen);
      outs[0].part = 0, outs[0].n_parts = 1;
    }
    for (int k = 0; k < n_out; k++) {
      sdc__weight_ref *r = &w->refs[w->n_refs];
      if (!(r->name = strdup(outs[k].name))) {
        sdc_weights_free(w);
        return sdc_seterr(SDC_ENOMEM, "%s: out of memory", file->path);
      }
      r->file = file;
      r->entry = &file->entries[i];
      r->part = outs[k].part;
      r->n_parts = outs[k].n_parts > 0 ? outs[k].n_parts : 1;
      r->transpose = map ? outs[k].transpose : 0;
      const sdc_st_entry *e = r->entry;
      w->n_refs++;
      if (r->n_parts > 1 && (e->ndim < 1 || e->shape[0] % r->n_parts != 0)) {
        int err = sdc_seterr(SDC_ESHAPE, "%s: tensor '%s' cannot be split in %d along dim 0", file->path, e->name,
                             r->n_parts);
        sdc_weights_free(w);
        return err;
      }
      if (r->transpose && (e->ndim != 2 || r->n_parts != 1)) {
        int err = sdc_seterr(SDC_ESHAPE, "%s: tensor '%s' is %d-d; only a whole 2-d tensor can be transposed", file->path,
                             e->name, e->ndim);
        sdc_weights_free(w);
        return err;
      }
    }
  }
  qsort(w->refs, (size_t)w->n_refs, sizeof *w->refs, sdc__cmp_ref);
  for (int64_t i = 1; i < w->n_refs; i++)
    if (strcmp(w->refs[i - 1].name, w->refs[i].name) == 0) {
      int err = sdc_seterr(SDC_EFORMAT, "%s: keys '%s' and '%s' both map to '%s'", file->path, w->refs[i - 1].entry->name,
                           w->refs[i].entry->name, w->refs[i].name);
      sdc_weights_free(w);
      return err;
    }
  return SDC_OK;
}

struct sdc__kept {
  void *obj;
  void (*free_fn)(void *);
};

void sdc_weights_free(sdc_weights *w) {
  for (int64_t i = 0; i < w->n_overlay; i++) free(w->overlay[i].name);
  free(w->overlay);
  for (int64_t i = 0; i < w->n_kept; i++) w->kept[i].free_fn(w->kept[i].obj);
  free(w->kept);
  for (int64_t i = 0; i < w->n_rec; i++) free(w->rec[i].name), free(w->rec[i].data);
  free(w->rec);
  for (int64_t i = 0; i < w->n_refs; i++) free(w->refs[i].name);
  for (int64_t i = 0; i < w->n_owned; i++) free(w->owned[i]);
  free(w->refs);
  free(w->owned);
  memset(w, 0, sizeof *w);
}

static const sdc__weight_ref *sdc__find(const sdc_weights *w, const char *name) {
  if (w->n_refs == 0) return NULL; /* a recorder has no refs array at all */
  sdc__weight_ref key = {.name = (char *)name};
  return bsearch(&key, w->refs, (size_t)w->n_refs, sizeof *w->refs, sdc__cmp_ref);
}

int sdc_weights_has(const sdc_weights *w, const char *name) { return sdc__find(w, name) != NULL; }

const sdc__weight_ref *sdc_weights_ref(const sdc_weights *w, const char *name) { return sdc__find(w, name); }

int sdc_weights_ref_shape(const sdc__weight_ref *r, int64_t shape[SDC_MAX_DIMS]) {
  const sdc_st_entry *e = r->entry;
  for (int i = 0; i < e->ndim; i++) shape[i] = e->shape[i];
  if (e->ndim > 0) shape[0] /= r->n_parts;
  if (r->transpose) shape[0] = e->shape[1], shape[1] = e->shape[0]; /* init made sure it is 2-d */
  return e->ndim;
}

void *sdc_weights_fail(sdc_weights *w, int err, const char *fmt, ...) {
  if (!w->err) {
    w->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
  }
  return NULL;
}

int sdc_weights_error(const sdc_weights *w) { return w->err ? sdc_seterr(w->err, "%s", w->msg) : SDC_OK; }

/* dst (cols, rows) = src (rows, cols)^T: a tensor stored [in, out] handed out [out, in]. */
static void sdc__transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

static const float *sdc__materialize(sdc_weights *w, const sdc__weight_ref *r) {
  const sdc_st_entry *e = r->entry;
  int64_t n = sdc_shape_numel(e->ndim, e->shape) / r->n_parts;
  const void *src = (const uint8_t *)sdc_st_ptr(r->file, e) + (size_t)(n * r->part) * sdc_dtype_size(e->dtype);
  w->n_bytes_used += n * 4;
  /* f32 data that is suitably aligned is used in place: the mmap is the weight (never a transposed one). */
  if (e->dtype == SDC_F32 && ((uintptr_t)src % 4) == 0 && !r->transpose) return src;
  if (e->dtype != SDC_F32 && e->dtype != SDC_F16 && e->dtype != SDC_BF16 && e->dtype != SDC_F64)
    return sdc_weights_fail(w, SDC_EDTYPE, "%s: tensor '%s': dtype %s is not a float type", r->file->path, e->name,
                     sdc_dtype_name(e->dtype));
  if (w->n_owned == w->cap_owned) {
    int64_t cap = w->cap_owned ? 2 * w->cap_owned : 64;
    void **p = realloc(w->owned, (size_t)cap * sizeof *p);
    if (!p) return sdc_weights_fail(w, SDC_ENOMEM, "%s: tensor '%s': out of memory", r->file->path, e->name);
    w->owned = p;
    w->cap_owned = cap;
  }
  float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
  if (!dst) return sdc_weights_fail(w, SDC_ENOMEM, "%s: tensor '%s': out of memory", r->file->path, e->name);
  if (r->transpose) {
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp); /* the file's layout, widened */
    if (!tmp) {
      free(dst);
      return sdc_weights_fail(w, SDC_ENOMEM, "%s: tensor '%s': out of memory", r->file->path, e->name);
    }
    sdc_convert_to_f32(tmp, src, e->dtype, n);
    sdc__transpose(dst, tmp, e->shape[0], e->shape[1]);
    free(tmp);
  } else {
    sdc_convert_to_f32(dst, src, e->dtype, n);
  }
  /* The narrow copy in the page cache is no longer needed by this process:
   * drop its whole pages from our resident set (they are file-backed, so a
   * later read simply faults them in again). */
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)src + page - 1) & ~(page - 1),
                  hi = ((uintptr_t)src + (size_t)n * sdc_dtype_size(e->dtype)) & ~(page - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
  w->owned[w->n_owned++] = dst;
  w->n_bytes_owned += n * 4;
  return dst;
}

static const float *sdc__record(sdc_weights *w, const char *name, int ndim, const int64_t *shape);

/* Drops the whole pages of [p, p + n_bytes) from the resident set (file-backed: a later read faults them in). */
static void sdc__drop_pages(const void *p, size_t n_bytes) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
                  hi = ((uintptr_t)p + n_bytes) & ~(page - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void sdc_weights_release(sdc_weights *w, const float *p, int64_t n) {
  if (!p || w->recording) return;
  for (int64_t i = 0; i < w->n_overlay; i++)
    if (w->overlay[i].merged == p) w->overlay[i].merged = NULL;
  for (int64_t i = w->n_owned - 1; i >= 0; i--)
    if (w->owned[i] == p) {
      free(w->owned[i]);
      w->owned[i] = w->owned[--w->n_owned];
      w->n_bytes_owned -= n * 4;
      return;
    }
  sdc__drop_pages(p, (size_t)n * sizeof *p); /* f32 used in place from the mmap */
}

void *sdc_weights_keep(sdc_weights *w, void *obj, void (*free_fn)(void *), size_t n_bytes, const char *name) {
  if (obj && w->n_kept == w->cap_kept) {
    int64_t cap = w->cap_kept ? 2 * w->cap_kept : 64;
    struct sdc__kept *k = realloc(w->kept, (size_t)cap * sizeof *k);
    if (!k) {
      free_fn(obj);
      obj = NULL;
    } else {
      w->kept = k;
      w->cap_kept = cap;
    }
  }
  if (!obj)
    return sdc_weights_fail(w, SDC_ENOMEM, "tensor '%s': out of memory (or no kernel) for packed weights", name);
  w->kept[w->n_kept++] = (struct sdc__kept){obj, free_fn};
  w->n_bytes_owned += (int64_t)n_bytes;
  return obj;
}

static int sdc__cmp_overlay(const void *a, const void *b) {
  return strcmp(((const sdc__weight_overlay *)a)->name, ((const sdc__weight_overlay *)b)->name);
}

static sdc__weight_overlay *sdc__find_overlay(const sdc_weights *w, const char *name) {
  if (w->n_overlay == 0) return NULL;
  sdc__weight_overlay key = {.name = (char *)name};
  return bsearch(&key, w->overlay, (size_t)w->n_overlay, sizeof *w->overlay, sdc__cmp_overlay);
}

void sdc_weights_set_gemm(sdc_weights *w, sdc_weights_gemm_fn gemm) { w->gemm = gemm; }

int sdc_weights_add_delta(sdc_weights *w, const char *name, const sdc_weight_delta *d) {
  if (w->recording) return sdc_seterr(SDC_EINVAL, "%s: a LoRA cannot be applied to a recorder", d->file->path);
  /* merging happens on lookup: a tensor already handed out would stay unmerged */
  if (w->n_bytes_used)
    return sdc_seterr(SDC_EINVAL, "%s: LoRA applied after the model's weights were read", d->file->path);
  sdc__weight_overlay *o = sdc__find_overlay(w, name);
  if (o) {
    if (o->n_terms == SDC_MAX_LORAS)
      return sdc_seterr(SDC_EINVAL, "%s: more than %d adapters on tensor '%s'", d->file->path, SDC_MAX_LORAS, name);
    o->terms[o->n_terms++] = *d;
    return SDC_OK;
  }
  if (w->n_overlay == w->cap_overlay) {
    int64_t cap = w->cap_overlay ? 2 * w->cap_overlay : 64;
    sdc__weight_overlay *p = realloc(w->overlay, (size_t)cap * sizeof *p);
    if (!p) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", d->file->path);
    w->overlay = p, w->cap_overlay = cap;
  }
  int64_t at = w->n_overlay;
  while (at > 0 && strcmp(w->overlay[at - 1].name, name) > 0) at--;
  sdc__weight_overlay n = {.name = strdup(name), .n_terms = 1};
  if (!n.name) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", d->file->path);
  n.terms[0] = *d;
  memmove(&w->overlay[at + 1], &w->overlay[at], (size_t)(w->n_overlay - at) * sizeof *w->overlay);
  w->overlay[at] = n;
  w->n_overlay++;
  return SDC_OK;
}

static float *sdc__own_floats(sdc_weights *w, int64_t n, const char *name);

/* A low-rank factor widened to f32 (heap; NULL when memory runs out). */
static float *sdc__widen(const sdc_st_file *f, const sdc_st_entry *e) {
  int64_t n = sdc_shape_numel(e->ndim, e->shape);
  float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
  if (x) sdc_convert_to_f32(x, sdc_st_ptr(f, e), e->dtype, n);
  return x;
}

/* r's tensor with o's terms added: the widened copy itself when the file is
 * not f32, else a heap copy (the mapped file stays untouched). */
static const float *sdc__merged(sdc_weights *w, const sdc__weight_ref *r, sdc__weight_overlay *o) {
  int64_t shape[SDC_MAX_DIMS];
  const int ndim = sdc_weights_ref_shape(r, shape);
  const int64_t rows = shape[0], n = sdc_shape_numel(ndim, shape), cols = rows ? n / rows : 0;
  if (o->merged) return o->merged; /* merged once per tensor */
  const float *base = sdc__materialize(w, r);
  if (!base) return NULL;
  float *W;
  if (w->n_owned && w->owned[w->n_owned - 1] == base) {
    W = (float *)base;
  } else {
    if (!(W = sdc__own_floats(w, n, r->name))) return NULL;
    memcpy(W, base, (size_t)n * sizeof *W);
    sdc__drop_pages(base, (size_t)n * sizeof *base);
  }
  const double t0 = sdc_clock_mono_s();
  for (int t = 0; t < o->n_terms; t++) {
    const sdc_weight_delta *d = &o->terms[t];
    const int64_t rank = d->down->shape[0];
    float *up = sdc__widen(d->file, d->up), *down = sdc__widen(d->file, d->down);
    if (!up || !down) {
      free(up), free(down);
      return sdc_weights_fail(w, SDC_ENOMEM, "%s: LoRA of '%s': out of memory", d->file->path, r->name);
    }
    /* W (rows, cols) += scale * up (rows, rank) . down (rank, cols), f32 as the reference does it */
    if (w->gemm) {
      w->gemm(rows, cols, rank, (float)d->scale, up, down, W);
    } else { /* views merged without a model (tests): the same sum, in a plain loop */
      for (int64_t i = 0; i < rows; i++)
        for (int64_t q = 0; q < rank; q++) {
          const float a = (float)d->scale * up[i * rank + q];
          for (int64_t j = 0; j < cols; j++) W[i * cols + j] += a * down[q * cols + j];
        }
    }
    free(up), free(down);
  }
  w->n_merged++;
  w->merge_s += sdc_clock_mono_s() - t0; /* the factors' widening and the sgemms: what an unmerged load does not do */
  return o->merged = W;
}

const float *sdc_weights_get(sdc_weights *w, const char *name, int ndim, const int64_t *shape) {
  if (w->err) return NULL;
  if (w->recording) return sdc__record(w, name, ndim, shape);
  const sdc__weight_ref *r = sdc__find(w, name);
  if (!r) return sdc_weights_fail(w, SDC_EMISSING, "%s: missing tensor '%s'", w->source, name);
  const sdc_st_entry *e = r->entry;
  int64_t has[SDC_MAX_DIMS];
  int same = sdc_weights_ref_shape(r, has) == ndim;
  for (int i = 0; same && i < ndim; i++) same = has[i] == shape[i];
  if (!same) {
    char want[128], got[128];
    /* both in the file's layout: a transposed tensor is expected stored [in, out] */
    const int64_t stored[2] = {ndim == 2 ? shape[1] : 0, ndim == 2 ? shape[0] : 0};
    sdc_shape_str(want, sizeof want, ndim, r->transpose && ndim == 2 ? stored : shape);
    sdc_shape_str(got, sizeof got, e->ndim, e->shape);
    return sdc_weights_fail(w, SDC_ESHAPE, "tensor '%s' (%s) has shape %s, expected %s%s", e->name, r->file->path, got,
                            want, r->transpose ? " (stored transposed)" : "");
  }
  sdc__weight_overlay *o = sdc__find_overlay(w, name);
  return o ? sdc__merged(w, r, o) : sdc__materialize(w, r);
}

const float *sdc_weights_get_linear(sdc_weights *w, const char *name, int64_t n_out, int64_t n_in, int prefer_conv) {
  if (w->err) return NULL;
  if (w->recording)
    return prefer_conv ? sdc__record(w, name, 4, (int64_t[]){n_out, n_in, 1, 1})
                       : sdc__record(w, name, 2, (int64_t[]){n_out, n_in});
  const sdc__weight_ref *r = sdc__find(w, name);
  if (r && r->entry->ndim == 4) return sdc_weights_get(w, name, 4, (int64_t[]){n_out, n_in, 1, 1});
  return sdc_weights_get(w, name, 2, (int64_t[]){n_out, n_in});
}

/* ---------------------------------------------------------------- recorder */

void sdc_weights_init_recorder(sdc_weights *w, uint64_t seed) {
  memset(w, 0, sizeof *w);
  w->recording = 1;
  w->seed = seed;
  snprintf(w->source, sizeof w->source, "recorder");
}

static uint64_t sdc__splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int sdc__ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Values that keep activations of a random network in a sane range. */
static void sdc__invent(float *x, int64_t n, const char *name, int ndim, const int64_t *shape, uint64_t seed) {
  uint64_t s = seed;
  for (const char *c = name; *c; c++) s = (s ^ (uint8_t)*c) * 0x100000001b3ull; /* FNV-1a over the name */
  int is_norm = ndim == 1 && sdc__ends_with(name, ".weight") && strstr(name, "norm");
  int is_bias = sdc__ends_with(name, ".bias");
  double fan_in = ndim > 1 && shape[0] ? (double)n / (double)shape[0] : 1.0;
  double scale = is_norm || is_bias ? 0.05 : strstr(name, "embedding") ? 0.5 : sqrt(3.0 / fan_in);
  for (int64_t i = 0; i < n; i++) {
    double u = (double)(sdc__splitmix(&s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
    x[i] = (float)((is_norm ? 1.0 : 0.0) + scale * u);
  }
}

static const float *sdc__record(sdc_weights *w, const char *name, int ndim, const int64_t *shape) {
  int64_t lo = 0, hi = w->n_rec;
  while (lo < hi) { /* binary search for the insertion point */
    int64_t mid = (lo + hi) / 2;
    int c = strcmp(w->rec[mid].name, name);
    if (c == 0) {
      struct sdc__recorded *r = &w->rec[mid];
      int same = r->ndim == ndim;
      for (int i = 0; same && i < ndim; i++) same = r->shape[i] == shape[i];
      if (!same) return sdc_weights_fail(w, SDC_ESHAPE, "recorder: tensor '%s' asked for with two shapes", name);
      return r->data;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  if (w->n_rec == w->cap_rec) {
    int64_t cap = w->cap_rec ? 2 * w->cap_rec : 256;
    struct sdc__recorded *p = realloc(w->rec, (size_t)cap * sizeof *p);
    if (!p) return sdc_weights_fail(w, SDC_ENOMEM, "recorder: out of memory for '%s'", name);
    w->rec = p, w->cap_rec = cap;
  }
  int64_t n = sdc_shape_numel(ndim, shape);
  struct sdc__recorded r = {.name = strdup(name), .ndim = ndim, .data = malloc((size_t)(n ? n : 1) * sizeof(float))};
  if (!r.name || !r.data) {
    free(r.name), free(r.data);
    return sdc_weights_fail(w, SDC_ENOMEM, "recorder: out of memory for '%s'", name);
  }
  memcpy(r.shape, shape, (size_t)ndim * sizeof *shape);
  sdc__invent(r.data, n, name, ndim, shape, w->seed);
  memmove(&w->rec[lo + 1], &w->rec[lo], (size_t)(w->n_rec - lo) * sizeof *w->rec);
  w->rec[lo] = r;
  w->n_rec++;
  w->n_bytes_owned += n * 4;
  w->n_bytes_used += n * 4;
  return r.data;
}

int64_t sdc_weights_n_recorded(const sdc_weights *w) { return w->n_rec; }

void sdc_weights_recorded(const sdc_weights *w, int64_t i, const char **name, sdc_tensor *t) {
  const struct sdc__recorded *r = &w->rec[i];
  *name = r->name;
  memset(t, 0, sizeof *t);
  t->dtype = SDC_F32;
  t->ndim = r->ndim;
  memcpy(t->shape, r->shape, sizeof r->shape);
  t->data = r->data;
}

/* Keeps p (heap) until the view is freed; NULL and a recorded error when memory runs out. */
static float *sdc__own_floats(sdc_weights *w, int64_t n, const char *name) {
  if (w->n_owned == w->cap_owned) {
    int64_t cap = w->cap_owned ? 2 * w->cap_owned : 64;
    void **p = realloc(w->owned, (size_t)cap * sizeof *p);
    if (!p) return sdc_weights_fail(w, SDC_ENOMEM, "tensor '%s': out of memory", name);
    w->owned = p;
    w->cap_owned = cap;
  }
  float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
  if (!dst) return sdc_weights_fail(w, SDC_ENOMEM, "tensor '%s': out of memory", name);
  w->owned[w->n_owned++] = dst;
  w->n_bytes_owned += n * 4;
  return dst;
}

const float *sdc_weights_get_taps(sdc_weights *w, const char *name, int64_t n_out, int64_t n_in, int64_t kh, int64_t kw) {
  if (w->err) return NULL;
  const int64_t shape[4] = {n_out, n_in, kh, kw}, taps = kh * kw, n = n_out * n_in * taps;
  const float *src = NULL;
  const sdc__weight_ref *r = w->recording ? NULL : sdc__find(w, name);
  const uint8_t *raw = NULL;
  int merged_here = 0;
  sdc_dtype dt = SDC_F32;
  if (w->recording) {
    if (!(src = sdc__record(w, name, 4, shape))) return NULL; /* the file keeps the usual layout */
  } else {
    if (!r) return sdc_weights_fail(w, SDC_EMISSING, "%s: missing tensor '%s'", w->source, name);
    /* shape check (and error message) exactly as get() */
    const sdc_st_entry *e = r->entry;
    int same = e->ndim == 4 && r->n_parts == 1;
    for (int i = 0; same && i < 4; i++) same = e->shape[i] == shape[i];
    if (!same) return sdc_weights_get(w, name, 4, shape);
    const sdc__weight_overlay *o = sdc__find_overlay(w, name);
    if (o) {
      /* a LoRA'd conv: merged first, then packed like a recorded one */
      merged_here = !o->merged;
      if (!(src = sdc_weights_get(w, name, 4, shape))) return NULL;
    }
    dt = e->dtype;
    if (dt != SDC_F32 && dt != SDC_F16 && dt != SDC_BF16)
      return sdc_weights_fail(w, SDC_EDTYPE, "%s: tensor '%s': dtype %s is not a float type", r->file->path, e->name,
                       sdc_dtype_name(dt));
    if (!src) {
      raw = sdc_st_ptr(r->file, e);
      w->n_bytes_used += n * 4;
    }
  }
  float *dst = sdc__own_floats(w, n, name);
  if (!dst) return NULL;
  for (int64_t o = 0; o < n_out; o++)
    for (int64_t c = 0; c < n_in; c++)
      for (int64_t t = 0; t < taps; t++) {
        const int64_t i = (o * n_in + c) * taps + t;
        float v;
        if (src) v = src[i];
        else if (dt == SDC_F32) memcpy(&v, raw + 4 * i, 4);
        else if (dt == SDC_F16) v = sdc_f16_to_f32((uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
        else v = sdc_bf16_to_f32((uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8));
        dst[(t * n_out + o) * n_in + c] = v;
      }
  if (raw) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)raw + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)raw + (size_t)n * sdc_dtype_size(dt)) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
  } else if (merged_here) {
    sdc_weights_release(w, src, n); /* the merged copy: the packed one is what stays */
  }
  return dst;
}
