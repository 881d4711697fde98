/* onednn.c - the bf16 precision mode's GEMMs on oneDNN: convolutions, linear layers, tiled attention. */
#include "onednn.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "isa.h"
#include "ops_bf16.h"

#define SDC__ALT_MAX 3

struct sdc_packed {
  dnnl_memory_desc_t md; /* oneDNN's layout for these weights */
  int f32;               /* f32 weights (fp32 precision), else bf16 */
  void *data;
  size_t n_bytes;
  /* The best kernel for a layer depends on its activation's size, and so
   * does the weight layout it wants: the first call re-packs data into its
   * layout (so a process serving one resolution keeps one copy); calls at
   * other sizes that want yet another layout get one of a few alternates,
   * made on first need and kept rather than reordered on every call. */
  pthread_mutex_t mu;
  int used; /* a call has run on data: its layout is fixed from now on */
  int n_alt;
  dnnl_memory_desc_t alt_md[SDC__ALT_MAX];
  void *alt[SDC__ALT_MAX];
};

static dnnl_engine_t sdc__eng;
static pthread_once_t sdc__once = PTHREAD_ONCE_INIT;
static int sdc__init_err;
static char sdc__isa[64] = "none";
static _Thread_local dnnl_stream_t sdc__stream; /* one per thread: primitives run concurrently in attention */

/* Every primitive takes its scratchpad from the caller (arena), so the same
 * primitive can run on several threads at once. */
static dnnl_primitive_attr_t sdc__attr, sdc__attr_sum; /* the latter also adds into dst (post-op sum) */

/* ---------------------------------------------------------------- start-up */

/* oneDNN's own dispatch caps at the same level as our kernels (set before
 * its first use; a user's ONEDNN_MAX_CPU_ISA still applies when SDC_ISA
 * does not cap anything). */
static void sdc__cap_isa(void) {
  static const dnnl_cpu_isa_t max[] = {dnnl_cpu_isa_sse41, dnnl_cpu_isa_avx2, dnnl_cpu_isa_avx512_core_bf16,
                                       dnnl_cpu_isa_all};
  if (sdc_isa_level() < sdc_isa_host()) dnnl_set_max_cpu_isa(max[sdc_isa_level()]);
}

static void sdc__start(void) {
  sdc__cap_isa();
  if (dnnl_engine_create(&sdc__eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_primitive_attr_create(&sdc__attr) != dnnl_success ||
      dnnl_primitive_attr_set_scratchpad_mode(sdc__attr, dnnl_scratchpad_mode_user) != dnnl_success ||
      dnnl_primitive_attr_clone(&sdc__attr_sum, sdc__attr) != dnnl_success) {
    sdc__init_err = sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: cannot create a CPU engine");
    return;
  }
  dnnl_post_ops_t po;
  if (dnnl_post_ops_create(&po) != dnnl_success || dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success ||
      dnnl_primitive_attr_set_post_ops(sdc__attr_sum, po) != dnnl_success) {
    sdc__init_err = sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: cannot set up a post-op sum");
    return;
  }
  dnnl_post_ops_destroy(po);
}

int sdc_onednn_init(void) {
  pthread_once(&sdc__once, sdc__start);
  if (sdc__init_err) return sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: cannot start a CPU engine");
  return SDC_OK;
}

int sdc_onednn_bf16_check(void) {
  if (!sdc_isa_bf16()) {
    if (sdc_isa_level() < sdc_isa_host())
      return sdc_seterr(SDC_EUNSUPPORTED, "bf16 precision needs AVX512-BF16, which SDC_ISA=%s excludes: use --precision "
                                          "fp32 or raise SDC_ISA", sdc_isa_name(sdc_isa_level()));
    return sdc_seterr(SDC_EUNSUPPORTED, "bf16 precision needs a CPU with AVX512-BF16 (or AMX); this one has neither: "
                                        "use --precision fp32");
  }
  return sdc_onednn_init();
}

const char *sdc_onednn_isa(void) { return sdc__isa; }

static dnnl_stream_t sdc__get_stream(void) {
  if (!sdc__stream && dnnl_stream_create(&sdc__stream, sdc__eng, dnnl_stream_default_flags) != dnnl_success)
    sdc__stream = NULL;
  return sdc__stream;
}

/* ------------------------------------------------------ primitive caching */

/* Primitives are built once per shape and kept for the life of the process
 * (a model has a few dozen distinct shapes). */
typedef enum { SDC__P_CONV, SDC__P_MATMUL, SDC__P_REORDER } sdc__pkind;

typedef struct {
  int64_t kind; /* an sdc__pkind; 64 bits so the key has no padding for memcmp */
  int64_t k[14];
} sdc__pkey;

typedef struct {
  sdc__pkey key;
  dnnl_primitive_t prim;
  dnnl_memory_desc_t src, wei, dst; /* what prim expects */
  size_t scratch_bytes;
} sdc__prim;

typedef struct {
  sdc__prim main, in, out; /* the op, and reorders of its input and output (prim NULL: none) */
} sdc__entry;

/* A model at one resolution needs about 70 shapes; a worker serving many
 * resolutions fills this slowly. When full, new shapes are refused with an
 * error rather than built and leaked on every call. */
#define SDC__CACHE_MAX 4096
static sdc__entry *sdc__cache[SDC__CACHE_MAX];
static sdc__pkey sdc__keys[SDC__CACHE_MAX];
static int sdc__n_cache;
static pthread_mutex_t sdc__cache_mu = PTHREAD_MUTEX_INITIALIZER;

static sdc__entry *sdc__cache_find(const sdc__pkey *key) {
  pthread_mutex_lock(&sdc__cache_mu);
  sdc__entry *e = NULL;
  for (int i = 0; i < sdc__n_cache && !e; i++)
    if (memcmp(&sdc__keys[i], key, sizeof *key) == 0) e = sdc__cache[i];
  pthread_mutex_unlock(&sdc__cache_mu);
  return e;
}

/* Keeps e under key; when another thread got there first, its entry wins. */
static sdc__entry *sdc__cache_add(const sdc__pkey *key, sdc__entry *e) {
  pthread_mutex_lock(&sdc__cache_mu);
  sdc__entry *got = NULL;
  for (int i = 0; i < sdc__n_cache && !got; i++)
    if (memcmp(&sdc__keys[i], key, sizeof *key) == 0) got = sdc__cache[i];
  if (!got && sdc__n_cache < SDC__CACHE_MAX) {
    sdc__keys[sdc__n_cache] = *key;
    sdc__cache[sdc__n_cache++] = e;
    got = e;
  }
  pthread_mutex_unlock(&sdc__cache_mu);
  if (got != e) { /* lost the race (got: the winner's entry), or the cache is full (got NULL) */
    dnnl_primitive_destroy(e->main.prim);
    if (e->in.prim) dnnl_primitive_destroy(e->in.prim);
    if (e->out.prim) dnnl_primitive_destroy(e->out.prim);
    free(e);
    if (!got) sdc_seterr(SDC_ENOMEM, "oneDNN: more than %d distinct layer shapes in one process", SDC__CACHE_MAX);
  }
  return got;
}

/* Finishes p from a primitive descriptor (destroyed here). */
static int sdc__make_prim(sdc__prim *p, dnnl_primitive_desc_t pd) {
  int ok = dnnl_primitive_create(&p->prim, pd) == dnnl_success;
  if (ok) {
    const dnnl_memory_desc_t *md;
    if ((md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0))) p->src = *md;
    if ((md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0))) p->wei = *md;
    if ((md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0))) p->dst = *md;
    md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scratch_bytes = md ? dnnl_memory_desc_get_size(md) : 0;
  }
  dnnl_primitive_desc_destroy(pd);
  return ok ? SDC_OK : sdc_seterr(SDC_ENOMEM, "oneDNN: cannot create a primitive");
}

static int sdc__make_reorder(sdc__prim *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
  dnnl_primitive_desc_t pd;
  if (dnnl_reorder_primitive_desc_create(&pd, from, sdc__eng, to, sdc__eng, sdc__attr) != dnnl_success)
    return sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: no reorder between these layouts");
  int err = sdc__make_prim(p, pd);
  if (!err) {
    p->src = *from;
    p->dst = *to;
  }
  return err;
}

/* Runs p on (src, weights, bias, dst) handles (NULL: argument absent), its
 * scratchpad from a. */
static int sdc__run(const sdc__prim *p, sdc_arena *a, const void *src, const void *wei, const void *bias,
                    const dnnl_memory_desc_t *bias_md, void *dst, int is_reorder) {
  dnnl_stream_t st = sdc__get_stream();
  if (!st) return sdc_seterr(SDC_ENOMEM, "oneDNN: cannot create a stream");
  sdc_arena_mark m = sdc_arena_get_mark(a);
  void *scratch = p->scratch_bytes ? sdc_arena_floats(a, (int64_t)(p->scratch_bytes + 3) / 4) : NULL;
  if (p->scratch_bytes && !scratch) return sdc_seterr(SDC_ENOMEM, "oneDNN: out of memory for a scratchpad");
  dnnl_memory_t mem[5] = {0};
  dnnl_exec_arg_t args[5];
  int n = 0, ok = 1;
#define SDC__ARG(id, md, ptr)                                                                          \
  do {                                                                                                 \
    if (ok && dnnl_memory_create(&mem[n], (md), sdc__eng, (void *)(ptr)) != dnnl_success) ok = 0;       \
    if (ok) args[n] = (dnnl_exec_arg_t){(id), mem[n]}, n++;                                            \
  } while (0)
  if (is_reorder) {
    SDC__ARG(DNNL_ARG_FROM, &p->src, src);
    SDC__ARG(DNNL_ARG_TO, &p->dst, dst);
  } else {
    SDC__ARG(DNNL_ARG_SRC, &p->src, src);
    SDC__ARG(DNNL_ARG_WEIGHTS, &p->wei, wei);
    if (bias) SDC__ARG(DNNL_ARG_BIAS, bias_md, bias);
    SDC__ARG(DNNL_ARG_DST, &p->dst, dst);
  }
  if (ok && scratch) {
    dnnl_memory_desc_t smd;
    dnnl_dims_t d = {(dnnl_dim_t)p->scratch_bytes};
    dnnl_memory_desc_init_by_tag(&smd, 1, d, dnnl_u8, dnnl_a);
    SDC__ARG(DNNL_ARG_SCRATCHPAD, &smd, scratch);
  }
#undef SDC__ARG
  if (ok) ok = dnnl_primitive_execute(p->prim, st, n, args) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
  for (int i = 0; i < 5; i++)
    if (mem[i]) dnnl_memory_destroy(mem[i]);
  sdc_arena_reset(a, m);
  return ok ? SDC_OK : sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: a primitive failed to run");
}

/* --------------------------------------------------------------- weights */

static void sdc__md(dnnl_memory_desc_t *md, int ndim, const int64_t *dims, dnnl_data_type_t dt, dnnl_format_tag_t tag) {
  dnnl_dims_t d;
  for (int i = 0; i < ndim; i++) d[i] = dims[i];
  dnnl_memory_desc_init_by_tag(md, ndim, d, dt, tag);
}

static sdc_packed *sdc__pack(const float *w, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *packed) {
  sdc_packed *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  pthread_mutex_init(&p->mu, NULL);
  p->md = *packed;
  p->n_bytes = dnnl_memory_desc_get_size(packed);
  p->data = aligned_alloc(64, (p->n_bytes + 63) & ~(size_t)63);
  sdc__prim r = {0};
  sdc_arena a;
  sdc_arena_init(&a, 1 << 20);
  int err = !p->data || sdc__make_reorder(&r, plain, packed) || sdc__run(&r, &a, w, NULL, NULL, NULL, p->data, 1);
  if (r.prim) dnnl_primitive_destroy(r.prim);
  sdc_arena_free(&a);
  if (err) {
    sdc_onednn_packed_free(p);
    return NULL;
  }
  return p;
}

void sdc_onednn_packed_free(void *p) {
  sdc_packed *pk = p;
  if (!pk) return;
  pthread_mutex_destroy(&pk->mu);
  for (int i = 0; i < pk->n_alt; i++) free(pk->alt[i]);
  free(pk->data);
  free(pk);
}

size_t sdc_onednn_packed_bytes(const sdc_packed *p) { return p ? p->n_bytes : 0; }

int sdc_onednn_packed_bf16(const sdc_packed *p) { return p && !p->f32; }

/* --------------------------------------------------------- convolution */

/* The conv primitive and the reorders from and to the caller's f32 NCHW:
 * bf16 reads NHWC bf16 (what the AMX kernels want) and writes NHWC f32;
 * f32 lets oneDNN pick its blocked layouts (nChw16c), which its direct
 * kernels run faster than any NCHW kernel even counting the reorders. */
#define SDC__CONV_BIAS 1
#define SDC__CONV_F32 2
static int sdc__conv_entry(sdc__entry *e, const sdc_conv_shape *s, int flags) {
  const int has_bias = flags & SDC__CONV_BIAS, f32 = flags & SDC__CONV_F32;
  const int64_t src_dims[4] = {s->B, s->Cin, s->H, s->W}, dst_dims[4] = {s->B, s->Cout, s->Ho, s->Wo},
                wdims[4] = {s->Cout, s->Cin, s->kh, s->kw}, bdims[1] = {s->Cout};
  dnnl_memory_desc_t src, wei, bias, dst, src_user, dst_user;
  sdc__md(&src, 4, src_dims, f32 ? dnnl_f32 : dnnl_bf16, f32 ? dnnl_format_tag_any : dnnl_nhwc);
  sdc__md(&wei, 4, wdims, f32 ? dnnl_f32 : dnnl_bf16, dnnl_format_tag_any);
  sdc__md(&bias, 1, bdims, dnnl_f32, dnnl_a);
  sdc__md(&dst, 4, dst_dims, dnnl_f32, f32 ? dnnl_format_tag_any : dnnl_nhwc);
  sdc__md(&src_user, 4, src_dims, dnnl_f32, dnnl_nchw);
  sdc__md(&dst_user, 4, dst_dims, dnnl_f32, dnnl_nchw);
  dnnl_dims_t strides = {s->stride, s->stride}, pad_l = {s->pad_t, s->pad_l},
              pad_r = {(s->Ho - 1) * s->stride + s->kh - s->H - s->pad_t, (s->Wo - 1) * s->stride + s->kw - s->W - s->pad_l};
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  const char *impl = NULL;
  if ((dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src, &wei,
                                                 has_bias ? &bias : NULL, &dst, strides, pad_l, pad_r) != dnnl_success ||
              dnnl_primitive_desc_create(&pd, &cd, sdc__attr, sdc__eng, NULL) != dnnl_success))
    return sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: no %s convolution for %lldx%lld k%lld", f32 ? "f32" : "bf16",
                      (long long)s->Cout, (long long)s->Cin, (long long)s->kh);
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl && !f32 &&
      strcmp(sdc__isa, "none") == 0) {
    const char *colon = strchr(impl, ':');
    snprintf(sdc__isa, sizeof sdc__isa, "%s", colon ? colon + 1 : impl);
  }
  int err = sdc__make_prim(&e->main, pd);
  /* no reorder where the primitive already takes NCHW */
  if (!err && !dnnl_memory_desc_equal(&e->main.src, &src_user)) err = sdc__make_reorder(&e->in, &src_user, &e->main.src);
  if (!err && !dnnl_memory_desc_equal(&e->main.dst, &dst_user)) err = sdc__make_reorder(&e->out, &e->main.dst, &dst_user);
  return err;
}

sdc_packed *sdc_onednn_pack_conv(const float *w, int64_t Cout, int64_t Cin, int64_t kh, int64_t kw, int64_t stride,
                                 int f32) {
  if (sdc_onednn_init()) return NULL;
  /* the layout oneDNN picks for a representative activation; the first call
   * re-packs into its own (sdc__weights_for) */
  const int64_t H = 32, Ho = (H + 2 * (kh / 2) - kh) / stride + 1;
  sdc_conv_shape s = {2, Cin, H, H, Cout, kh, kw, stride, kh / 2, kw / 2, Ho, Ho, 0};
  sdc__entry e = {0};
  sdc_packed *p = NULL;
  if (!sdc__conv_entry(&e, &s, SDC__CONV_BIAS | (f32 ? SDC__CONV_F32 : 0))) {
    dnnl_memory_desc_t plain;
    sdc__md(&plain, 4, (int64_t[]){Cout, Cin, kh, kw}, dnnl_f32, dnnl_oihw);
    if ((p = sdc__pack(w, &plain, &e.main.wei))) p->f32 = f32;
  }
  if (e.main.prim) dnnl_primitive_destroy(e.main.prim);
  if (e.in.prim) dnnl_primitive_destroy(e.in.prim);
  if (e.out.prim) dnnl_primitive_destroy(e.out.prim);
  return p;
}

/* pk's weights reordered into layout md, in a new 64-byte aligned buffer
 * (NULL when out of memory or oneDNN cannot). */
static void *sdc__repack(sdc_arena *a, const sdc_packed *pk, const dnnl_memory_desc_t *md) {
  const size_t n = dnnl_memory_desc_get_size(md);
  void *dst = aligned_alloc(64, (n + 63) & ~(size_t)63);
  sdc__prim r = {0};
  int e = !dst || sdc__make_reorder(&r, &pk->md, md) || sdc__run(&r, a, pk->data, NULL, NULL, NULL, dst, 1);
  if (r.prim) dnnl_primitive_destroy(r.prim);
  if (e) free(dst);
  return e ? NULL : dst;
}

/* Weights in the layout prim wants: pk's own (re-packed into it if no call
 * has used pk yet), an alternate (made here the first time), or, past
 * SDC__ALT_MAX layouts, a per-call reorder into a. */
static const void *sdc__weights_for(sdc_arena *a, const sdc__prim *prim, const sdc_packed *pk, int *err) {
  *err = SDC_OK;
  sdc_packed *mp = (sdc_packed *)pk; /* layouts are a cache: logically const */
  const void *hit = NULL;
  pthread_mutex_lock(&mp->mu);
  if (!mp->used && !dnnl_memory_desc_equal(&prim->wei, &mp->md)) {
    void *moved = sdc__repack(a, mp, &prim->wei);
    if (moved) {
      free(mp->data);
      mp->data = moved, mp->md = prim->wei, mp->n_bytes = dnnl_memory_desc_get_size(&prim->wei);
    }
  }
  if (dnnl_memory_desc_equal(&prim->wei, &mp->md)) hit = mp->data, mp->used = 1;
  for (int i = 0; !hit && i < mp->n_alt; i++)
    if (dnnl_memory_desc_equal(&prim->wei, &mp->alt_md[i])) hit = mp->alt[i];
  if (!hit && mp->n_alt < SDC__ALT_MAX && (hit = sdc__repack(a, mp, &prim->wei)))
    mp->alt_md[mp->n_alt] = prim->wei, mp->alt[mp->n_alt++] = (void *)hit;
  if (!hit) mp->used = 1; /* the reorder below reads data outside the lock: it must not move */
  pthread_mutex_unlock(&mp->mu);
  if (hit) return hit;
  void *tmp = sdc_arena_floats(a, (int64_t)(dnnl_memory_desc_get_size(&prim->wei) + 3) / 4);
  sdc__prim r = {0};
  if (!tmp) *err = sdc_seterr(SDC_ENOMEM, "oneDNN: out of memory for weights");
  if (!*err) *err = sdc__make_reorder(&r, &pk->md, &prim->wei);
  if (!*err) *err = sdc__run(&r, a, pk->data, NULL, NULL, NULL, tmp, 1);
  if (r.prim) dnnl_primitive_destroy(r.prim);
  return *err ? NULL : tmp;
}

static sdc__entry *sdc__get_entry(const sdc__pkey *key, int (*build)(sdc__entry *, const void *, int), const void *arg,
                                  int flag, int *err) {
  sdc__entry *e = sdc__cache_find(key);
  *err = SDC_OK;
  if (e) return e;
  if (!(e = calloc(1, sizeof *e))) {
    *err = sdc_seterr(SDC_ENOMEM, "oneDNN: out of memory");
    return NULL;
  }
  if ((*err = build(e, arg, flag))) {
    if (e->main.prim) dnnl_primitive_destroy(e->main.prim);
    if (e->in.prim) dnnl_primitive_destroy(e->in.prim);
    if (e->out.prim) dnnl_primitive_destroy(e->out.prim);
    free(e);
    return NULL;
  }
  sdc__entry *got = sdc__cache_add(key, e);
  if (!got) *err = SDC_ENOMEM;
  return got;
}

static int sdc__build_conv(sdc__entry *e, const void *arg, int flags) { return sdc__conv_entry(e, arg, flags); }

/* Every weight of one conv shape is packed alike, so the shape keys the cache. */
static sdc__entry *sdc__conv_lookup(const sdc_conv_shape *s, int flags, int *err) {
  sdc__pkey key = {SDC__P_CONV, {s->B, s->Cin, s->H, s->W, s->Cout, s->kh, s->kw, s->stride, s->pad_t, s->pad_l, s->Ho,
                                 s->Wo, flags}};
  return sdc__get_entry(&key, sdc__build_conv, s, flags, err);
}

int sdc_onednn_conv(sdc_arena *a, float *out, const float *in, const sdc_packed *w, const float *b,
                    const sdc_conv_shape *s) {
  int err;
  sdc__entry *e = sdc__conv_lookup(s, (b ? SDC__CONV_BIAS : 0) | (w->f32 ? SDC__CONV_F32 : 0), &err);
  if (!e) return err;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  void *src = e->in.prim ? sdc_arena_floats(a, (int64_t)(dnnl_memory_desc_get_size(&e->main.src) + 3) / 4) : (void *)in;
  float *dst = e->out.prim ? sdc_arena_floats(a, (int64_t)(dnnl_memory_desc_get_size(&e->main.dst) + 3) / 4) : out;
  if (!src || !dst) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "conv2d: out of memory for a %lldx%lld conv", (long long)s->Cout, (long long)s->Cin);
  }
  dnnl_memory_desc_t bias_md;
  sdc__md(&bias_md, 1, (int64_t[]){s->Cout}, dnnl_f32, dnnl_a);
  const void *wd = sdc__weights_for(a, &e->main, w, &err);
  if (!err && e->in.prim) err = sdc__run(&e->in, a, in, NULL, NULL, NULL, src, 1);
  if (!err) err = sdc__run(&e->main, a, src, wd, b, &bias_md, dst, 0);
  if (!err && e->out.prim) err = sdc__run(&e->out, a, dst, NULL, NULL, NULL, out, 1);
  sdc_arena_reset(a, m);
  return err;
}

/* ------------------------------------------------------------------ matmul */

typedef struct {
  int64_t M, K, N, ldc;
  int64_t accumulate; /* dst += product instead of dst = product */
  int64_t f32;        /* f32 source and weights, else bf16 */
} sdc__mm_shape;

/* (M,K) x weights (K,N), both bf16 or both f32, [+ bias (1,N) f32] -> (M,N) f32 with row stride ldc. */
static int sdc__build_mm(sdc__entry *e, const void *arg, int has_bias) {
  const sdc__mm_shape *s = arg;
  dnnl_memory_desc_t src, wei, bias, dst;
  const dnnl_data_type_t dt = s->f32 ? dnnl_f32 : dnnl_bf16;
  sdc__md(&src, 2, (int64_t[]){s->M, s->K}, dt, dnnl_ab);
  sdc__md(&wei, 2, (int64_t[]){s->K, s->N}, dt, dnnl_format_tag_any);
  sdc__md(&bias, 2, (int64_t[]){1, s->N}, dnnl_f32, dnnl_ab);
  dnnl_dims_t dd = {s->M, s->N}, ds = {s->ldc, 1};
  dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, ds);
  dnnl_matmul_desc_t d;
  dnnl_primitive_desc_t pd;
  if (dnnl_matmul_desc_init(&d, &src, &wei, has_bias ? &bias : NULL, &dst) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &d, s->accumulate ? sdc__attr_sum : sdc__attr, sdc__eng, NULL) != dnnl_success)
    return sdc_seterr(SDC_EUNSUPPORTED, "oneDNN: no %s matmul for %lldx%lldx%lld", s->f32 ? "f32" : "bf16", (long long)s->M, (long long)s->K,
                      (long long)s->N);
  return sdc__make_prim(&e->main, pd);
}

static sdc__entry *sdc__mm_entry(const sdc__mm_shape *s, int has_bias, int *err) {
  sdc__pkey key = {SDC__P_MATMUL, {s->M, s->K, s->N, s->ldc, has_bias, s->accumulate, s->f32}};
  return sdc__get_entry(&key, sdc__build_mm, s, has_bias, err);
}

sdc_packed *sdc_onednn_pack_linear(const float *w, int64_t N, int64_t K, int f32) {
  if (sdc_onednn_init()) return NULL;
  sdc__mm_shape s = {1024, K, N, N, 0, f32};
  int err;
  sdc__entry *e = sdc__mm_entry(&s, 1, &err);
  if (!e) return NULL;
  dnnl_memory_desc_t plain; /* w is (N,K) row-major: the (K,N) matrix in "ba" order */
  sdc__md(&plain, 2, (int64_t[]){K, N}, dnnl_f32, dnnl_ba);
  sdc_packed *p = sdc__pack(w, &plain, &e->main.wei);
  if (p) p->f32 = f32;
  return p;
}

/* (M,K) rows of in x packed weights (+ bias) -> out, either precision. */
static int sdc__linear(sdc_arena *a, float *out, const void *in, const sdc_packed *w, const float *b, int64_t M,
                       int64_t K, int64_t N, int accumulate) {
  sdc__mm_shape s = {M, K, N, N, accumulate, w->f32};
  int err;
  sdc__entry *e = sdc__mm_entry(&s, b != NULL, &err);
  if (!e) return err;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  dnnl_memory_desc_t bias_md;
  sdc__md(&bias_md, 2, (int64_t[]){1, N}, dnnl_f32, dnnl_ab);
  const void *wd = sdc__weights_for(a, &e->main, w, &err);
  if (!err) err = sdc__run(&e->main, a, in, wd, b, &bias_md, out, 0);
  sdc_arena_reset(a, m);
  return err;
}

int sdc_onednn_linear(sdc_arena *a, float *out, const float *in, const sdc_packed *w, const float *b, int64_t M,
                      int64_t K, int64_t N) {
  if (w->f32) return sdc__linear(a, out, in, w, b, M, K, N, 0);
  sdc_arena_mark m = sdc_arena_get_mark(a);
  uint16_t *src = (uint16_t *)sdc_arena_floats(a, (M * K + 1) / 2);
  if (!src) return sdc_seterr(SDC_ENOMEM, "linear: out of memory for a bf16 %lldx%lld input", (long long)M, (long long)K);
  sdc_f32_to_bf16_rows(src, in, M, K);
  int err = sdc_onednn_linear_bf16(a, out, src, w, b, M, K, N, 0);
  sdc_arena_reset(a, m);
  return err;
}

int sdc_onednn_linear_bf16(sdc_arena *a, float *out, const uint16_t *in, const sdc_packed *w, const float *b, int64_t M,
                           int64_t K, int64_t N, int accumulate) {
  if (w->f32) return sdc_seterr(SDC_EINVAL, "linear: bf16 input given to f32 weights");
  return sdc__linear(a, out, in, w, b, M, K, N, accumulate);
}

int sdc_onednn_conv_nhwc(sdc_arena *a, float *out, const uint16_t *in, const sdc_packed *w, const float *b,
                         const sdc_conv_shape *s) {
  int err;
  sdc__entry *e = sdc__conv_lookup(s, b ? SDC__CONV_BIAS : 0, &err);
  if (!e) return err;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  dnnl_memory_desc_t bias_md;
  sdc__md(&bias_md, 1, (int64_t[]){s->Cout}, dnnl_f32, dnnl_a);
  const void *wd = sdc__weights_for(a, &e->main, w, &err);
  if (!err) err = sdc__run(&e->main, a, in, wd, b, &bias_md, out, 0);
  sdc_arena_reset(a, m);
  return err;
}

/* --------------------------------------------------------------- attention */

/* Query rows per tile: the tile's scores (T x Nk f32) and probabilities stay
 * in a core's L2 at Nk = 4096. */
#define SDC__ATTN_T 64

static int64_t sdc__round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Per (batch, head): K and V rounded to bf16 and packed once; then every
 * tile of T queries on one core: S = (scale Q) K^T (AMX, f32), softmax -> P
 * bf16, O = P V. Head dim and key count are zero-padded to multiples of 32
 * (AMX's bf16 depth), which changes nothing in the products. The [Nq x Nk]
 * score matrix never exists whole. */
int sdc_onednn_attention(sdc_arena *a, float *out, const float *q, const float *k, const float *v,
                         const sdc_attn_shape *s) {
  const int64_t T = SDC__ATTN_T, dhp = sdc__round_up(s->dh, 32), nkp = sdc__round_up(s->Nk, 32), D = s->heads * s->dh,
                BH = s->B * s->heads, n_tiles = (s->Nq + T - 1) / T;
  int err;
  sdc__mm_shape qk = {T, dhp, nkp, nkp, 0, 0}, pv = {T, nkp, s->dh, s->dh, 0, 0};
  sdc__entry *e1 = sdc__mm_entry(&qk, 0, &err), *e2 = e1 ? sdc__mm_entry(&pv, 0, &err) : NULL;
  if (!e2) return err;
  /* plain bf16 K (nkp, dhp) and V (nkp, dh) of one head -> their packed layouts */
  dnnl_memory_desc_t kplain, vplain;
  sdc__md(&kplain, 2, (int64_t[]){dhp, nkp}, dnnl_bf16, dnnl_ba);
  sdc__md(&vplain, 2, (int64_t[]){nkp, s->dh}, dnnl_bf16, dnnl_ab);
  sdc__pkey kk = {SDC__P_REORDER, {dhp, nkp, 0}}, vk = {SDC__P_REORDER, {nkp, s->dh, 1}};
  sdc__entry *rk = sdc__cache_find(&kk), *rv = sdc__cache_find(&vk);
  if (!rk) {
    if (!(rk = calloc(1, sizeof *rk)) || (err = sdc__make_reorder(&rk->main, &kplain, &e1->main.wei))) {
      free(rk);
      return rk ? err : sdc_seterr(SDC_ENOMEM, "attention: out of memory");
    }
    if (!(rk = sdc__cache_add(&kk, rk))) return SDC_ENOMEM;
  }
  if (!rv) {
    if (!(rv = calloc(1, sizeof *rv)) || (err = sdc__make_reorder(&rv->main, &vplain, &e2->main.wei))) {
      free(rv);
      return rv ? err : sdc_seterr(SDC_ENOMEM, "attention: out of memory");
    }
    if (!(rv = sdc__cache_add(&vk, rv))) return SDC_ENOMEM;
  }
  const size_t kp_bytes = dnnl_memory_desc_get_size(&e1->main.wei), vp_bytes = dnnl_memory_desc_get_size(&e2->main.wei);
  const int nthr = omp_get_max_threads();
  /* per thread: plain K/V of a head, Q tile, scores, probabilities, O tile */
  const size_t per_thr = 2 * (size_t)(nkp * dhp) * 2 + (size_t)(T * dhp) * 2 + (size_t)(T * nkp) * 6 +
                         (size_t)(T * s->dh) * 4 + 6 * 64;
  sdc_arena_mark m = sdc_arena_get_mark(a);
  uint8_t *kp = (uint8_t *)sdc_arena_floats(a, (int64_t)(BH * ((kp_bytes + 63) & ~(size_t)63) + 3) / 4),
          *vp = (uint8_t *)sdc_arena_floats(a, (int64_t)(BH * ((vp_bytes + 63) & ~(size_t)63) + 3) / 4),
          *thr = (uint8_t *)sdc_arena_floats(a, (int64_t)((size_t)nthr * per_thr + 3) / 4);
  if (!kp || !vp || !thr) {
    sdc_arena_reset(a, m);
    return sdc_seterr(SDC_ENOMEM, "attention: out of memory for bf16 tiles");
  }
  const size_t kstride = (kp_bytes + 63) & ~(size_t)63, vstride = (vp_bytes + 63) & ~(size_t)63;
  int fail = 0;
#pragma omp parallel reduction(| : fail)
  {
    /* a thread's own slice of scratch, carved like a small arena */
    uint8_t *cur = thr + (size_t)omp_get_thread_num() * per_thr;
#define SDC__TAKE(ptr, n_bytes) (ptr = (void *)cur, cur += ((size_t)(n_bytes) + 63) & ~(size_t)63)
    uint16_t *kb, *vb, *qb, *pb;
    float *sb, *ob;
    SDC__TAKE(kb, nkp * dhp * 2);
    SDC__TAKE(vb, nkp * dhp * 2);
    SDC__TAKE(qb, T * dhp * 2);
    SDC__TAKE(pb, T * nkp * 2);
    SDC__TAKE(sb, T * nkp * 4);
    SDC__TAKE(ob, T * s->dh * 4);
#undef SDC__TAKE
    sdc_arena ta; /* oneDNN scratchpads: the shared arena is not thread-safe */
    sdc_arena_init(&ta, 1 << 16);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < BH; bh++) {
      const int64_t b = bh / s->heads, h = bh % s->heads;
      for (int64_t j = 0; j < nkp; j++) {
        if (j < s->Nk) {
          sdc__f32_to_bf16(kb + j * dhp, k + (b * s->Nk + j) * s->ldk + h * s->dh, s->dh, dhp, 1.0f);
          sdc__f32_to_bf16(vb + j * s->dh, v + (b * s->Nk + j) * s->ldv + h * s->dh, s->dh, s->dh, 1.0f);
        } else {
          memset(kb + j * dhp, 0, (size_t)dhp * 2);
          memset(vb + j * s->dh, 0, (size_t)s->dh * 2);
        }
      }
      if (sdc__run(&rk->main, &ta, kb, NULL, NULL, NULL, kp + bh * kstride, 1) ||
          sdc__run(&rv->main, &ta, vb, NULL, NULL, NULL, vp + bh * vstride, 1))
        fail = 1;
    }
    /* the implicit barrier: every head is packed */
#pragma omp for schedule(static)
    for (int64_t job = 0; job < BH * n_tiles; job++) {
      const int64_t bh = job / n_tiles, b = bh / s->heads, h = bh % s->heads, q0 = (job % n_tiles) * T;
      const int64_t nq = s->Nq - q0 < T ? s->Nq - q0 : T;
      for (int64_t r = 0; r < T; r++) {
        if (r < nq) sdc__f32_to_bf16(qb + r * dhp, q + (b * s->Nq + q0 + r) * s->ldq + h * s->dh, s->dh, dhp, s->scale);
        else memset(qb + r * dhp, 0, (size_t)dhp * 2);
      }
      if (sdc__run(&e1->main, &ta, qb, kp + bh * kstride, NULL, NULL, sb, 0)) {
        fail = 1;
        continue;
      }
      float inv[SDC__ATTN_T];
      sdc__softmax_rows_bf16(pb, sb, nkp, nq, s->Nk, q0, s->causal, inv);
      if (nq < T) memset(pb + nq * nkp, 0, (size_t)((T - nq) * nkp) * 2);
      if (sdc__run(&e2->main, &ta, pb, vp + bh * vstride, NULL, NULL, ob, 0)) {
        fail = 1;
        continue;
      }
      for (int64_t r = 0; r < nq; r++)
        for (int64_t c = 0; c < s->dh; c++) out[(b * s->Nq + q0 + r) * D + h * s->dh + c] = ob[r * s->dh + c] * inv[r];
    }
    sdc_arena_free(&ta);
  }
  sdc_arena_reset(a, m);
  return fail ? sdc_seterr(SDC_EUNSUPPORTED, "attention: a oneDNN primitive failed to run") : SDC_OK;
}
