/* tensor.h - dtypes, half-precision conversion and a plain contiguous tensor. */
#ifndef SDC_TENSOR_H
#define SDC_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SDC_MAX_DIMS 8

typedef enum { SDC_F32, SDC_F16, SDC_BF16, SDC_F64, SDC_I64, SDC_I32, SDC_U8, SDC_DTYPE_COUNT } sdc_dtype;

/* Contiguous row-major tensor. `data` is owned by whoever filled it; see each API. */
typedef struct {
  sdc_dtype dtype;
  int ndim;
  int64_t shape[SDC_MAX_DIMS];
  void *data;
} sdc_tensor;

size_t sdc_dtype_size(sdc_dtype dt);
const char *sdc_dtype_name(sdc_dtype dt); /* safetensors spelling: "F32", "BF16", ... */
/* Parses a safetensors dtype string; returns -1 when unknown. */
int sdc_dtype_parse(const char *s);

int64_t sdc_shape_numel(int ndim, const int64_t *shape);
static inline int64_t sdc_tensor_numel(const sdc_tensor *t) { return sdc_shape_numel(t->ndim, t->shape); }
/* Writes "[2, 4, 16, 16]" into buf (always NUL-terminated); returns buf. */
char *sdc_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

static inline float sdc_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { /* subnormal: renormalise */
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) { mant <<= 1; exp--; }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline float sdc_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Round-to-nearest-even float -> half, as torch's .half(). */
static inline uint16_t sdc_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
  if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
  int32_t ne = (int32_t)e - 127 + 15;
  if (ne >= 31) return (uint16_t)(sign | 0x7c00);
  if (ne <= 0) {
    if (ne < -10) return (uint16_t)sign;
    m |= 0x800000;
    int shift = 14 - ne;
    uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = (uint32_t)(ne << 10) | (m >> 13), rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

static inline uint16_t sdc_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

/* Widens n values of a floating dtype (F32/F16/BF16/F64) at src into dst.
 * Returns SDC_EDTYPE for integer dtypes. */
int sdc_convert_to_f32(float *dst, const void *src, sdc_dtype dt, int64_t n);

/* Replaces an f32 tensor's data by a heap f16 copy (dtype becomes SDC_F16; the
 * f32 data stays the caller's, the copy is the caller's to free). SDC_ENOMEM. */
int sdc_tensor_narrow_f16(sdc_tensor *t);

#endif
