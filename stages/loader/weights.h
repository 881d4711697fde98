/* weights.h - a component's tensors looked up by their diffusers names, widened to f32 on demand. */
#ifndef SDC_WEIGHTS_H
#define SDC_WEIGHTS_H

#include <stdint.h>

#include "safetensors.h"
#include "sdc_limits.h"
#include "tensor.h"

#define SDC_KEY_MAX 256
#define SDC_KEY_MAP_MAX_OUT 4

/* One diffusers tensor that a checkpoint key stands for: all of it, or the
 * part-th of n_parts equal slices along dim 0 (OpenCLIP's fused in_proj);
 * transpose: a 2-D tensor stored [in, out] that diffusers holds [out, in]
 * (OpenCLIP's text_projection), handed out transposed (whole tensors only). */
typedef struct {
  char name[SDC_KEY_MAX];
  int part, n_parts; /* 0, 1 for the whole tensor */
  int transpose;
} sdc_key_out;

/* Maps a checkpoint key (prefix already stripped) to the diffusers names it
 * stands for. Returns how many of outs it filled (0: the key is not used). */
typedef int (*sdc_key_map_fn)(const char *key, sdc_key_out outs[SDC_KEY_MAP_MAX_OUT], const void *ctx);

typedef struct {
  char *name;                 /* diffusers name */
  const sdc_st_file *file;
  const sdc_st_entry *entry;
  int part, n_parts;
  int transpose; /* the 2-D entry is handed out transposed (see sdc_key_out) */
} sdc__weight_ref;

/* One low-rank term of a LoRA overlay (lora.h): the tensor gets scale * up .
 * down added, up [out, r(, 1, 1)] and down [r, rest...] read flat as [out, r]
 * and [r, numel / out] from file (which the adapter set keeps open). */
typedef struct {
  const sdc_st_file *file;
  const sdc_st_entry *up, *down;
  double scale; /* multiplier * alpha / rank */
} sdc_weight_delta;

/* A tensor handed out merged: W + the sum of its terms, built on first lookup. */
typedef struct {
  char *name; /* diffusers name */
  int n_terms;
  sdc_weight_delta terms[SDC_MAX_LORAS];
  const float *merged; /* once built, until released */
} sdc__weight_overlay;

/* A view of one model component's tensors. Lookups never fail silently: the
 * first error is kept (`err`, message in `msg`) and later lookups return NULL,
 * so a loader makes all its lookups and checks once at the end. */
/* C (m,n) += alpha * A (m,k) . B (k,n), row-major, contiguous: the product a
 * LoRA merge needs. The loader links no BLAS (docs/architecture.md, layers):
 * the models layer hands its sgemm to each view it loads from
 * (sdc_weights_set_gemm); a view used without a model merges with a plain loop. */
typedef void (*sdc_weights_gemm_fn)(int64_t m, int64_t n, int64_t k, float alpha, const float *A, const float *B,
                                    float *C);

typedef struct {
  sdc__weight_ref *refs; /* sorted by name */
  int64_t n_refs;
  void **owned;          /* widened copies, freed with the view */
  struct sdc__kept *kept; /* objects built from the tensors (packed weights), freed with the view */
  int64_t n_kept, cap_kept;
  int64_t n_owned, cap_owned;
  int64_t n_bytes_owned;  /* heap bytes held for widened weights */
  int64_t n_bytes_used;   /* bytes of every tensor handed out */
  /* recorder mode: every tensor asked for is invented and remembered */
  int recording;
  uint64_t seed;
  struct sdc__recorded *rec; /* sorted by name */
  int64_t n_rec, cap_rec;
  /* LoRA overlay: tensors handed out merged (sdc_weights_add_delta), sorted by name */
  sdc__weight_overlay *overlay;
  int64_t n_overlay, cap_overlay;
  int64_t n_merged;       /* tensors merged so far */
  double merge_s;         /* wall seconds spent merging them (benchmarks) */
  sdc_weights_gemm_fn gemm; /* the merges' product; NULL: a plain loop */
  const void *unet_cfg;   /* the model's sdc_unet_config (set by sdc_model_weights): LoRAs' LDM names need it */
  char source[400];       /* "file" or "file (keys prefix*)", for messages */
  int err;
  char msg[512];
} sdc_weights;

/* Builds a view over the keys of `file` that start with `prefix`, mapped
 * through `map` (NULL: strip the prefix only). The file must outlive the view. */
int sdc_weights_init(sdc_weights *w /* OUT */, const sdc_st_file *file, const char *prefix, sdc_key_map_fn map,
                     const void *ctx);
void sdc_weights_free(sdc_weights *w);

int sdc_weights_has(const sdc_weights *w, const char *name);
/* Where the tensor `name` comes from (file entry, part), or NULL. */
const sdc__weight_ref *sdc_weights_ref(const sdc_weights *w, const char *name);
/* The shape r's tensor is handed out with (its part of dim 0, transposed when
 * r says so) into shape; returns the number of dims. */
int sdc_weights_ref_shape(const sdc__weight_ref *r, int64_t shape[SDC_MAX_DIMS] /* OUT */);

/* Records err with a printf message naming the tensor (or block) at fault,
 * unless an error is already recorded: the first one is what gets reported.
 * Returns NULL, so a lookup can `return sdc_weights_fail(...)`. */
void *sdc_weights_fail(sdc_weights *w, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* SDC_OK, or the first recorded error, set as the thread's error (sdc_seterr)
 * with its message: what a loader returns after all its lookups. */
int sdc_weights_error(const sdc_weights *w);

/* The tensor `name` as f32 with exactly the given shape. A mismatch, a missing
 * name or an integer dtype records an error naming file and key, and returns
 * NULL. The memory lives as long as w. */
const float *sdc_weights_get(sdc_weights *w, const char *name, int ndim, const int64_t *shape);

/* A linear layer's [n_out, n_in] weight that may be stored as a 1x1 conv
 * [n_out, n_in, 1, 1] (VAE attention, conv proj_in/proj_out). prefer_conv
 * says which layout a recorder writes. */
const float *sdc_weights_get_linear(sdc_weights *w, const char *name, int64_t n_out, int64_t n_in, int prefer_conv);

/* A conv weight stored [n_out, n_in, kh, kw] in the file, returned tap-major
 * (kh*kw, n_out, n_in): converted once from the file's dtype into memory the
 * view owns (the file's pages are then dropped). Shape errors as get(). A
 * recorder records the file layout and hands out the packed copy. */
const float *sdc_weights_get_taps(sdc_weights *w, const char *name, int64_t n_out, int64_t n_in, int64_t kh, int64_t kw);

/* Done with p, a tensor get() returned with n floats (its content was
 * copied elsewhere): a widened copy is freed, file pages are dropped from
 * the resident set. A recorder keeps it (it writes the tensors later). */
void sdc_weights_release(sdc_weights *w, const float *p, int64_t n);
/* Keeps obj (n_bytes, built from this view's tensors) until the view is
 * freed, then calls free_fn(obj). obj NULL records an out-of-memory error
 * naming `name` and returns NULL; so does a failure to keep it (obj is then freed). */
void *sdc_weights_keep(sdc_weights *w, void *obj, void (*free_fn)(void *), size_t n_bytes, const char *name);

/* Makes lookups of `name` (a tensor of w) hand out W + d.scale * up . down,
 * added to the terms already there (several adapters add up). Merging happens
 * on the tensor's first lookup, in f32 on the widened tensor, before any
 * packing, so every loader and kernel sees merged weights. The caller (lora.c)
 * has checked the shapes; this only refuses a recorder, a view already looked
 * into, and more than SDC_MAX_LORAS terms on one tensor. */
int sdc_weights_add_delta(sdc_weights *w, const char *name, const sdc_weight_delta *d);
/* The product LoRA merges of w use from now on (see sdc_weights_gemm_fn). */
void sdc_weights_set_gemm(sdc_weights *w, sdc_weights_gemm_fn gemm);

/* A recorder: a view with no file behind it that invents every tensor a
 * loader asks for (deterministic from seed and name: norm scales near 1,
 * small biases, weights uniform with unit-variance fan-in scaling) and keeps
 * it. Running a model's loader against it yields a complete random model of
 * that architecture, in the loader's own names and shapes. */
void sdc_weights_init_recorder(sdc_weights *w /* OUT */, uint64_t seed);
/* The i-th recorded tensor in name order; data stays owned by w. */
int64_t sdc_weights_n_recorded(const sdc_weights *w);
void sdc_weights_recorded(const sdc_weights *w, int64_t i, const char **name /* OUT */, sdc_tensor *t /* OUT */);

#endif
