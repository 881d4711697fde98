/* fuzz_tokenizer.c - libFuzzer: arbitrary bytes as a prompt through the CLIP tokenizer (the reference vocabulary
 * of $SDC_REF/tiny-sd1/tokenizer, else a small built-in one): invalid UTF-8 must be refused, valid text must give
 * exactly n ids framed by bos/eos, and the heap BPE must agree with the naive transcription on every word. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"
#include "utf8.h"

/* The naive BPE is O(n^2) per word: longer inputs are only encoded, not compared. */
#define FUZZ_MAX_COMPARE_BYTES 512

static sdc_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *ref = getenv("SDC_REF");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tiny-sd1/tokenizer", ref && *ref ? ref : "../shared/ref");
  if (sdc_tokenizer_load(&tok, dir) == SDC_OK) return 0;
  fprintf(stderr, "fuzz_tokenizer: %s; using the built-in small vocabulary\n", sdc_errmsg(SDC_EIO));
  static const char vocab[] =
      "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab</w>\": 4, \"<|startoftext|>\": 5, \"<|endoftext|>\": 6,"
      " \"ab\": 7}";
  static const char merges[] = "#version: 0.2\na b</w>\na b\n";
  if (sdc_tokenizer_load_mem(&tok, vocab, merges, NULL)) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  int64_t n_ids = sdc_tokenizer_max_length(tok);
  int32_t ids[1024], bos, eos, pad;
  if (n_ids < 2 || n_ids > 1024) abort();
  sdc_tokenizer_special_ids(tok, &bos, &eos, &pad);
  int err = sdc_tokenizer_encode(tok, text, ids, n_ids);
  int valid = sdc_utf8_valid(text);
  if (valid != (err != SDC_EINVAL)) abort(); /* refused exactly when not UTF-8 */
  if (!err) {
    if (ids[0] != bos) abort();
    int64_t k = 1;
    while (k < n_ids && ids[k] != eos) k++;
    if (k == n_ids) abort(); /* eos always fits: text is cut at n_ids - 2 */
  }
  /* the whole input as one pre-tokenized word: fast and naive BPE agree */
  if (size <= FUZZ_MAX_COMPARE_BYTES) {
    static int32_t a[FUZZ_MAX_COMPARE_BYTES * 4], b[FUZZ_MAX_COMPARE_BYTES * 4];
    int64_t na = sdc__tokenizer_bpe(tok, (const char *)data, size, 0, a, FUZZ_MAX_COMPARE_BYTES * 4);
    int64_t nb = sdc__tokenizer_bpe(tok, (const char *)data, size, 1, b, FUZZ_MAX_COMPARE_BYTES * 4);
    if (na != nb) abort();
    if (na > 0 && memcmp(a, b, (size_t)(na < FUZZ_MAX_COMPARE_BYTES * 4 ? na : FUZZ_MAX_COMPARE_BYTES * 4) * 4)) abort();
  }
  free(text);
  return 0;
}
