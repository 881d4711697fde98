/* arena.h - bump allocator for activations: sized by first use, reset per request, no per-op malloc. */
#ifndef SDC_ARENA_H
#define SDC_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef struct sdc__arena_block sdc__arena_block;

typedef struct {
  sdc__arena_block *head, *cur;
  size_t block_bytes;   /* minimum size of a new block */
  size_t used_bytes;    /* live bytes now */
  size_t peak_bytes;    /* high-water mark of used_bytes */
  size_t reserved_bytes; /* bytes obtained from malloc */
} sdc_arena;

typedef struct {
  sdc__arena_block *block;
  size_t offset, used_bytes;
} sdc_arena_mark;

void sdc_arena_init(sdc_arena *a /* OUT */, size_t block_bytes);
void sdc_arena_free(sdc_arena *a);
/* 64-byte aligned floats; NULL only when memory runs out. Lives until the
 * arena is reset below it. */
float *sdc_arena_floats(sdc_arena *a, int64_t n);
sdc_arena_mark sdc_arena_get_mark(const sdc_arena *a);
void sdc_arena_reset(sdc_arena *a, sdc_arena_mark m);
/* Frees the blocks past the one in use: when the next work has another
 * shape (the VAE after the UNet), its peak then adds to what is live now,
 * not to every block the last work kept. */
void sdc_arena_trim(sdc_arena *a);

#endif
