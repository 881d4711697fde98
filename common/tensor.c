/* tensor.c - dtype tables and shape helpers. */
#include "tensor.h"

#include <stdlib.h>

#include <stdio.h>

#include "error.h"

static const struct { const char *name; size_t size; } sdc__dtypes[SDC_DTYPE_COUNT] = {
    [SDC_F32] = {"F32", 4}, [SDC_F16] = {"F16", 2}, [SDC_BF16] = {"BF16", 2}, [SDC_F64] = {"F64", 8},
    [SDC_I64] = {"I64", 8}, [SDC_I32] = {"I32", 4}, [SDC_U8] = {"U8", 1},
};

size_t sdc_dtype_size(sdc_dtype dt) { return (unsigned)dt < SDC_DTYPE_COUNT ? sdc__dtypes[dt].size : 0; }

const char *sdc_dtype_name(sdc_dtype dt) { return (unsigned)dt < SDC_DTYPE_COUNT ? sdc__dtypes[dt].name : "?"; }

int sdc_dtype_parse(const char *s) {
  for (int i = 0; i < SDC_DTYPE_COUNT; i++)
    if (strcmp(s, sdc__dtypes[i].name) == 0) return i;
  return -1;
}

int64_t sdc_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

char *sdc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (len < n) snprintf(buf + len, n - len, "]");
  return buf;
}

int sdc_convert_to_f32(float *dst, const void *src, sdc_dtype dt, int64_t n) {
  switch (dt) {
    case SDC_F32: memcpy(dst, src, (size_t)n * 4); return SDC_OK;
    case SDC_F16: {
      const uint8_t *p = src;
      for (int64_t i = 0; i < n; i++) dst[i] = sdc_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
      return SDC_OK;
    }
    case SDC_BF16: {
      const uint8_t *p = src;
      for (int64_t i = 0; i < n; i++) dst[i] = sdc_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
      return SDC_OK;
    }
    case SDC_F64: {
      const uint8_t *p = src;
      for (int64_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, p + 8 * i, 8);
        dst[i] = (float)d;
      }
      return SDC_OK;
    }
    default: return sdc_seterr(SDC_EDTYPE, "cannot convert %s to F32", sdc_dtype_name(dt));
  }
}

int sdc_tensor_narrow_f16(sdc_tensor *t) {
  const int64_t k = sdc_tensor_numel(t);
  uint16_t *h = malloc((size_t)(k ? k : 1) * sizeof *h);
  if (!h) return sdc_seterr(SDC_ENOMEM, "out of memory");
  for (int64_t j = 0; j < k; j++) h[j] = sdc_f32_to_f16(((const float *)t->data)[j]);
  t->data = h, t->dtype = SDC_F16;
  return SDC_OK;
}
