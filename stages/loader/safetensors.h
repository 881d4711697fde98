/* safetensors.h - validated, mmapped reader of .safetensors files. */
#ifndef SDC_SAFETENSORS_H
#define SDC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct {
  char *name;
  sdc_dtype dtype;
  int ndim;
  int64_t shape[SDC_MAX_DIMS];
  size_t offset;  /* from the start of the data section */
  size_t n_bytes;
} sdc_st_entry;

typedef struct {
  char *path;
  void *map;          /* whole file, read-only */
  size_t map_bytes;
  const uint8_t *data; /* data section */
  size_t data_bytes;
  sdc_st_entry *entries; /* sorted by name */
  int64_t n_entries;
} sdc_st_file;

/* Opens and validates path: header size, JSON, known dtypes, shapes, byte
 * counts agreeing with dtype x shape, offsets in bounds and non-overlapping,
 * no duplicate names. On error *f is left empty and the thread's message
 * names the file and the offending key. Free with sdc_st_close(). */
int sdc_st_open(sdc_st_file *f /* OUT */, const char *path);
/* The same checks on a file's n bytes already in memory (label names it in errors). f->map stays NULL
 * and f's entries and data point into buf, which must outlive f; sdc_st_close() frees the rest. */
int sdc_st_open_mem(sdc_st_file *f /* OUT */, const char *label, const void *buf, size_t n);
void sdc_st_close(sdc_st_file *f);

/* Entry named `name`, or NULL. The pointer lives as long as f. */
const sdc_st_entry *sdc_st_find(const sdc_st_file *f, const char *name);
static inline const void *sdc_st_ptr(const sdc_st_file *f, const sdc_st_entry *e) { return f->data + e->offset; }

/* Writes tensors as a safetensors file (F32/F16/BF16/...), names in the order given. */
int sdc_st_write(const char *path, int64_t n, const char *const *names, const sdc_tensor *tensors);

#endif
