/* arena.c - a chain of big blocks; resetting keeps them for the next request. */
#include "arena.h"

#include <stdlib.h>

struct sdc__arena_block {
  sdc__arena_block *next;
  size_t size, offset;
  unsigned char *data;
};

void sdc_arena_init(sdc_arena *a, size_t block_bytes) {
  *a = (sdc_arena){.block_bytes = block_bytes ? block_bytes : (64u << 20)};
}

void sdc_arena_free(sdc_arena *a) {
  for (sdc__arena_block *b = a->head, *n; b; b = n) {
    n = b->next;
    free(b->data);
    free(b);
  }
  *a = (sdc_arena){0};
}

float *sdc_arena_floats(sdc_arena *a, int64_t n) {
  size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
  sdc__arena_block *b = a->cur;
  /* Move forward through blocks kept from earlier requests until one fits. */
  while (b && b->offset + bytes > b->size) {
    b = b->next;
    if (b) b->offset = 0;
  }
  if (!b) {
    b = calloc(1, sizeof *b);
    size_t size = bytes > a->block_bytes ? bytes : a->block_bytes;
    if (!b || !(b->data = aligned_alloc(64, size))) {
      free(b);
      return NULL;
    }
    b->size = size;
    a->reserved_bytes += size;
    /* Append after the current block so earlier marks stay valid. */
    if (a->cur) {
      b->next = a->cur->next;
      a->cur->next = b;
    } else {
      b->next = a->head;
      a->head = b;
    }
  }
  a->cur = b;
  float *p = (float *)(b->data + b->offset);
  b->offset += bytes;
  a->used_bytes += bytes;
  if (a->used_bytes > a->peak_bytes) a->peak_bytes = a->used_bytes;
  return p;
}

sdc_arena_mark sdc_arena_get_mark(const sdc_arena *a) {
  return (sdc_arena_mark){a->cur, a->cur ? a->cur->offset : 0, a->used_bytes};
}

void sdc_arena_reset(sdc_arena *a, sdc_arena_mark m) {
  a->cur = m.block ? m.block : a->head;
  if (a->cur) a->cur->offset = m.block ? m.offset : 0;
  a->used_bytes = m.used_bytes;
}

void sdc_arena_trim(sdc_arena *a) {
  if (!a->cur) return;
  for (sdc__arena_block *b = a->cur->next, *n; b; b = n) {
    n = b->next;
    a->reserved_bytes -= b->size;
    free(b->data);
    free(b);
  }
  a->cur->next = NULL;
}
