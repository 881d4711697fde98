/* crc32c.c - CRC-32C (Castagnoli): SSE4.2's crc32 instruction where present, slicing-by-8 tables elsewhere. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* Slicing-by-8 tables for the reflected Castagnoli polynomial. */
static uint32_t sdc__crc_table[8][256];
static pthread_once_t sdc__crc_once = PTHREAD_ONCE_INIT;

static void sdc__crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    sdc__crc_table[0][i] = c;
  }
  for (int s = 1; s < 8; s++)
    for (int i = 0; i < 256; i++) {
      uint32_t prev = sdc__crc_table[s - 1][i];
      sdc__crc_table[s][i] = (prev >> 8) ^ sdc__crc_table[0][prev & 0xff];
    }
}

static uint32_t sdc__crc32c_portable(uint32_t crc, const void *data, size_t n) {
  pthread_once(&sdc__crc_once, sdc__crc_init);
  const uint32_t(*t)[256] = (const uint32_t(*)[256])sdc__crc_table;
  const uint8_t *p = data;
  uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
        t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

uint32_t sdc_crc32c_portable(const void *data, size_t n) { return sdc__crc32c_portable(0, data, n); }

#if defined(__x86_64__)
/* The crc32 instruction computes exactly this polynomial, 8 bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t sdc__crc32c_sse42(uint32_t crc, const void *data, size_t n) {
  const uint8_t *p = data;
  uint64_t c = ~crc;
  for (; n && ((uintptr_t)p & 7); n--) c = _mm_crc32_u8((uint32_t)c, *p++);
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
  return ~(uint32_t)c;
}
#endif

uint32_t sdc_crc32c_update(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return sdc__crc32c_sse42(crc, data, n);
#endif
  return sdc__crc32c_portable(crc, data, n);
}

uint32_t sdc_crc32c(const void *data, size_t n) { return sdc_crc32c_update(0, data, n); }

