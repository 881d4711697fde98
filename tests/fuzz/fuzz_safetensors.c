/* fuzz_safetensors.c - libFuzzer: a .safetensors file's bytes through the header validation of
 * sdc_st_open_mem; every entry it accepts must lie inside the data section and be findable by name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdc_st_file f;
  if (sdc_st_open_mem(&f, "fuzz.safetensors", data, size) != SDC_OK) return 0;
  for (int64_t i = 0; i < f.n_entries; i++) {
    const sdc_st_entry *e = &f.entries[i];
    if (e->offset > f.data_bytes || e->n_bytes > f.data_bytes - e->offset) abort();
    if (sdc_st_find(&f, e->name) != e) abort();
    /* touch the first and last byte: ASan sees a read outside the input */
    if (e->n_bytes) {
      const uint8_t *p = sdc_st_ptr(&f, e);
      volatile uint8_t x = p[0] ^ p[e->n_bytes - 1];
      (void)x;
    }
  }
  sdc_st_close(&f);
  return 0;
}
