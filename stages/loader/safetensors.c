/* safetensors.c - mmap a .safetensors file and validate every header field before use. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* Real headers are a few hundred KiB; anything near this is hostile. */
#define SDC__ST_MAX_HEADER (256u << 20)

static int sdc__cmp_entry_name(const void *a, const void *b) {
  return strcmp(((const sdc_st_entry *)a)->name, ((const sdc_st_entry *)b)->name);
}

static int sdc__cmp_entry_offset(const void *a, const void *b) {
  const sdc_st_entry *x = *(const sdc_st_entry *const *)a, *y = *(const sdc_st_entry *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int sdc__parse_entry(sdc_st_entry *e, const cJSON *item, const char *path, size_t data_bytes) {
  const char *key = item->string;
  if (!cJSON_IsObject(item)) return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': header entry is not an object", path, key);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(dt)) return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': missing dtype", path, key);
  int dtype = sdc_dtype_parse(dt->valuestring);
  if (dtype < 0) return sdc_seterr(SDC_EDTYPE, "%s: tensor '%s': unsupported dtype '%s'", path, key, dt->valuestring);
  if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > SDC_MAX_DIMS)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': shape missing or over %d dims", path, key, SDC_MAX_DIMS);
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", path, key);
  e->dtype = (sdc_dtype)dtype;
  e->ndim = 0;
  /* numel * elsize must not overflow: a hostile shape is caught here, not in a later multiply. */
  uint64_t n_bytes = sdc_dtype_size(e->dtype);
  int overflow = 0, empty = 0;
  const cJSON *d;
  cJSON_ArrayForEach(d, shape) {
    if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 || d->valuedouble != (double)(int64_t)d->valuedouble)
      return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': bad dimension in shape", path, key);
    int64_t v = (int64_t)d->valuedouble;
    e->shape[e->ndim++] = v;
    overflow |= __builtin_mul_overflow(n_bytes, (uint64_t)v, &n_bytes);
    empty |= v == 0;
  }
  if (empty) n_bytes = 0;
  if (overflow && !empty) {
    char s[160];
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': shape %s overflows a 64-bit byte count", path, key,
                      sdc_shape_str(s, sizeof s, e->ndim, e->shape));
  }
  double b = cJSON_GetArrayItem(offs, 0)->valuedouble, en = cJSON_GetArrayItem(offs, 1)->valuedouble;
  if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) || b < 0 || en < b)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': bad data_offsets", path, key);
  if (en > (double)data_bytes)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': data_offsets end %.0f beyond the data section (%zu bytes; truncated file?)",
                      path, key, en, data_bytes);
  /* only now, within [0, data_bytes], may they be cast: a double beyond uint64_t does not convert (found by
   * fuzz_safetensors: an end offset of 6.7e42) */
  if (b != (double)(uint64_t)b || en != (double)(uint64_t)en)
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': bad data_offsets", path, key);
  e->offset = (size_t)b;
  e->n_bytes = (size_t)en - (size_t)b;
  if (e->n_bytes != n_bytes) {
    char s[128];
    return sdc_seterr(SDC_EFORMAT, "%s: tensor '%s': %zu bytes stored but %s %s needs %llu", path, key, e->n_bytes,
                      sdc_dtype_name(e->dtype), sdc_shape_str(s, sizeof s, e->ndim, e->shape), (unsigned long long)n_bytes);
  }
  return SDC_OK;
}

/* The header of the size bytes at buf (f->map set by the caller when it owns a mapping): every check. */
static int sdc__st_parse(sdc_st_file *f, const char *path, const void *buf, size_t size) {
  f->path = strdup(path);
  if (!f->path) {
    sdc_st_close(f);
    return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  }
  const uint8_t *p = buf;
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)p[i] << (8 * i);
  if (hlen > size - 8 || hlen > SDC__ST_MAX_HEADER || hlen < 2) {
    int err = sdc_seterr(SDC_EFORMAT, "%s: header length %llu does not fit a %zu-byte file (truncated or not safetensors)",
                         path, (unsigned long long)hlen, size);
    sdc_st_close(f);
    return err;
  }
  f->data = p + 8 + hlen;
  f->data_bytes = size - 8 - (size_t)hlen;
  cJSON *root = cJSON_ParseWithLength((const char *)p + 8, (size_t)hlen);
  int err = SDC_OK;
  if (!cJSON_IsObject(root)) {
    err = sdc_seterr(SDC_EFORMAT, "%s: header is not a JSON object", path);
    goto done;
  }
  int64_t n = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, root) if (strcmp(item->string, "__metadata__") != 0) n++;
  f->entries = calloc((size_t)(n ? n : 1), sizeof *f->entries);
  if (!f->entries) {
    err = sdc_seterr(SDC_ENOMEM, "%s: out of memory for %lld entries", path, (long long)n);
    goto done;
  }
  cJSON_ArrayForEach(item, root) {
    if (strcmp(item->string, "__metadata__") == 0) continue;
    sdc_st_entry *e = &f->entries[f->n_entries];
    if ((err = sdc__parse_entry(e, item, path, f->data_bytes)) != SDC_OK) goto done;
    if (!(e->name = strdup(item->string))) {
      err = sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
      goto done;
    }
    f->n_entries++;
  }
  qsort(f->entries, (size_t)f->n_entries, sizeof *f->entries, sdc__cmp_entry_name);
  for (int64_t i = 1; i < f->n_entries; i++)
    if (strcmp(f->entries[i - 1].name, f->entries[i].name) == 0) {
      err = sdc_seterr(SDC_EFORMAT, "%s: tensor '%s' appears twice in the header", path, f->entries[i].name);
      goto done;
    }
  /* Overlap check on a copy sorted by offset. */
  if (f->n_entries > 1) {
    const sdc_st_entry **by_off = malloc((size_t)f->n_entries * sizeof *by_off);
    if (!by_off) {
      err = sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
      goto done;
    }
    for (int64_t i = 0; i < f->n_entries; i++) by_off[i] = &f->entries[i];
    qsort(by_off, (size_t)f->n_entries, sizeof *by_off, sdc__cmp_entry_offset);
    for (int64_t i = 1; i < f->n_entries && !err; i++)
      if (by_off[i]->n_bytes && by_off[i - 1]->offset + by_off[i - 1]->n_bytes > by_off[i]->offset)
        err = sdc_seterr(SDC_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data section", path, by_off[i - 1]->name,
                         by_off[i]->name);
    free(by_off);
  }
done:
  cJSON_Delete(root);
  if (err) sdc_st_close(f);
  return err;
}

int sdc_st_open(sdc_st_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return sdc_seterr(SDC_EIO, "%s: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  if (size < 8) {
    close(fd);
    return sdc_seterr(SDC_EFORMAT, "%s: %zu bytes, too short for a safetensors header", path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return sdc_seterr(SDC_EIO, "%s: mmap: %s", path, strerror(errno));
  f->map = map;
  f->map_bytes = size;
  return sdc__st_parse(f, path, map, size);
}

int sdc_st_open_mem(sdc_st_file *f, const char *label, const void *buf, size_t n) {
  memset(f, 0, sizeof *f);
  if (n < 8) return sdc_seterr(SDC_EFORMAT, "%s: %zu bytes, too short for a safetensors header", label, n);
  return sdc__st_parse(f, label, buf, n);
}

void sdc_st_close(sdc_st_file *f) {
  if (f->map) munmap(f->map, f->map_bytes);
  for (int64_t i = 0; i < f->n_entries; i++) free(f->entries[i].name);
  free(f->entries);
  free(f->path);
  memset(f, 0, sizeof *f);
}

const sdc_st_entry *sdc_st_find(const sdc_st_file *f, const char *name) {
  sdc_st_entry key = {.name = (char *)name};
  return bsearch(&key, f->entries, (size_t)f->n_entries, sizeof *f->entries, sdc__cmp_entry_name);
}

int sdc_st_write(const char *path, int64_t n, const char *const *names, const sdc_tensor *tensors) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  size_t off = 0;
  for (int64_t i = 0; i < n; i++) {
    cJSON *e = cJSON_AddObjectToObject(root, names[i]);
    const sdc_tensor *t = &tensors[i];
    size_t nb = (size_t)sdc_tensor_numel(t) * sdc_dtype_size(t->dtype);
    double shape[SDC_MAX_DIMS], offs[2] = {(double)off, (double)(off + nb)};
    for (int d = 0; d < t->ndim; d++) shape[d] = (double)t->shape[d];
    if (!e || !cJSON_AddStringToObject(e, "dtype", sdc_dtype_name(t->dtype)) ||
        !cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, t->ndim)) ||
        !cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2))) {
      cJSON_Delete(root);
      return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
    }
    off += nb;
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!json) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  size_t hlen = strlen(json), padded = (hlen + 7) & ~(size_t)7;
  FILE *fp = fopen(path, "wb");
  int err = SDC_OK;
  if (!fp) {
    err = sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  } else {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, hlen, fp) == hlen;
    for (size_t i = hlen; i < padded && ok; i++) ok = fputc(' ', fp) != EOF;
    for (int64_t i = 0; i < n && ok; i++) {
      size_t nb = (size_t)sdc_tensor_numel(&tensors[i]) * sdc_dtype_size(tensors[i].dtype);
      ok = fwrite(tensors[i].data, 1, nb, fp) == nb;
    }
    if (fclose(fp) != 0) ok = 0;
    if (!ok) err = sdc_seterr(SDC_EIO, "%s: write failed: %s", path, strerror(errno));
  }
  free(json);
  return err;
}
