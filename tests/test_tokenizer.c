/* test_tokenizer.c - the CLIP tokenizer reproduces transformers' ids exactly and fails cleanly on bad input. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "clock.h"
#include "error.h"
#include "safetensors.h"
#include "tokenizer.h"

static int n_fail = 0;

static void check(int ok, const char *what) {
  printf("%s: %s\n", ok ? "pass" : "FAIL", what);
  if (!ok) n_fail++;
}

/* Compares ids with want (n each); prints the case and the first difference. */
static void check_ids(const char *label, const int32_t *got, const int32_t *want, int64_t n) {
  int64_t i = 0;
  while (i < n && got[i] == want[i]) i++;
  if (i == n) {
    printf("pass: %s\n", label);
  } else {
    printf("FAIL: %s: first difference at %lld: got %d, want %d\n", label, (long long)i, got[i], want[i]);
    n_fail++;
  }
}

/* Copies up to ~40 bytes of s for a label: whole UTF-8 characters, control chars as spaces. */
static const char *short_text(const char *s, char *out, size_t n) {
  size_t i = 0;
  while (s[i] && i + 4 < n && i < 40) {
    size_t k = 1;
    while (((unsigned char)s[i + k] & 0xc0) == 0x80) k++;
    for (size_t j = 0; j < k; j++) out[i + j] = (unsigned char)s[i + j] < 0x20 ? ' ' : s[i + j];
    i += k;
  }
  out[i] = 0;
  return out;
}

static int write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  size_t n = strlen(text), w = fwrite(text, 1, n, fp);
  return fclose(fp) == 0 && w == n ? 0 : -1;
}

/* Every golden prompt of model encodes to its `M/tok/<i>/ids` tensor, with the
 * model's tokenizer folder or (builtin) with the vocabulary built into the
 * binary and the family's pad token: the two must be the same tokenizer. */
static void test_tokenizer_matches_goldens(const char *ref, const char *model, const cJSON *manifest,
                                           const sdc_st_file *goldens, int builtin) {
  char path[4096], label[256];
  snprintf(path, sizeof path, "%s/%s/tokenizer", ref, model);
  sdc_tokenizer *tok = NULL;
  double t0 = 1e3 * sdc_clock_mono_s();
  int err = builtin ? sdc_tokenizer_load_builtin(&tok, strcmp(model, "tiny-sd2") == 0 ? "!" : NULL)
                    : sdc_tokenizer_load(&tok, path);
  double t1 = 1e3 * sdc_clock_mono_s();
  if (err) {
    printf("FAIL: %s: load: %s\n", model, sdc_errmsg(err));
    n_fail++;
    return;
  }
  printf("info: %s: %s tokenizer loaded in %.1f ms\n", model, builtin ? "built-in" : "folder", t1 - t0);
  check(sdc_tokenizer_max_length(tok) == 77, "model_max_length is 77");
  const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(manifest, model), "prompts");
  if (!cJSON_IsArray(prompts) || cJSON_GetArraySize(prompts) == 0) {
    printf("FAIL: %s: goldens.json has no %s.prompts list\n", model, model);
    n_fail++;
  }
  int i = 0;
  for (const cJSON *p = prompts ? prompts->child : NULL; p; p = p->next, i++) {
    char name[128];
    snprintf(name, sizeof name, "%s/tok/%d/ids", model, i);
    char brief[64];
    snprintf(label, sizeof label, "%s%s prompt %d \"%s\"", builtin ? "built-in " : "", model, i,
             cJSON_IsString(p) ? short_text(p->valuestring, brief, sizeof brief) : "?");
    const sdc_st_entry *e = sdc_st_find(goldens, name);
    if (!cJSON_IsString(p) || !e || e->dtype != SDC_I32 || e->ndim != 1 || e->shape[0] != 77) {
      printf("FAIL: %s: golden %s missing or not I32 [77]\n", label, name);
      n_fail++;
      continue;
    }
    int32_t want[77], got[77];
    memcpy(want, sdc_st_ptr(goldens, e), sizeof want);
    t0 = 1e3 * sdc_clock_mono_s();
    err = sdc_tokenizer_encode(tok, p->valuestring, got, 77);
    t1 = 1e3 * sdc_clock_mono_s();
    if (err) {
      printf("FAIL: %s: %s\n", label, sdc_errmsg(err));
      n_fail++;
      continue;
    }
    check_ids(label, got, want, 77);
    if (t1 - t0 > 50) printf("info: %s took %.1f ms\n", label, t1 - t0);
  }
  sdc_tokenizer_free(tok);
}

/* Edge cases, expected ids from a line-by-line Python transcription of transformers'
 * CLIPTokenizer (no ftfy) run with the `regex` module: uppercase specials, final
 * sigma, U+0130, zero-width / NBSP / ideographic space, CJK, U+2028, NFC, IGNORECASE
 * contractions incl. long s, a special token rebuilt by dropping a control char,
 * U+0345 (skipped by the IGNORECASE regex). */
typedef struct {
  const char *text;
  int n;
  int32_t ids[32];
} edge_case;

static const edge_case sd1_edges[] = {
    {"A<|ENDOFTEXT|>b <|endoftext|>tail", 5, {320, 49407, 321, 49407, 4132}},
    {"\xce\xa3" "\xce\x91" "\xce\xa3" " \xe1\xbd\x88" "\xce\x94" "\xce\xa5" "\xce\xa3" "\xce\xa3" "\xce\x95" "\xce\x8e"
     "\xce\xa3" " \xcf\x83" ".\xce\xa3",
     28,
     {139, 225, 138, 109, 139, 480, 157, 121, 222, 138, 112, 139, 227, 139,
      225, 139, 225, 138, 113, 139, 235, 139, 480, 139, 481, 269, 139, 480}},
    {"\xc4\xb0" "stanbul \xc7\x85" "emal", 7, {328, 16384, 11231, 131, 228, 908, 566}},
    {"x\xe2\x80\x8b" "y\xc2\xa0" "z\xe3\x80\x80" "w", 3, {11443, 345, 342}},
    {"\xe4\xb8\xad" "\xe6\x96\x87" "\xe5\xad\x97" "\xe7\xac\xa6" "test\xed\x95\x9c" "\xea\xb5\xad" "\xec\x96\xb4",
     16,
     {19759, 511, 29032, 485, 35751, 501, 163, 105, 355, 7738, 15197, 250, 31871, 255, 31625, 368}},
    {"line\xe2\x80\xa8" "sep e\xcc\x81" " \xe2\x84\xab", 5, {1148, 10434, 4166, 127, 354}},
    {"don'T I'M 'LL x'\xc5\xbf", 9, {847, 713, 328, 880, 1342, 343, 6, 129, 379}},
    {"wow!<|endoftext|>!!ok", 5, {2781, 256, 49407, 748, 2481}},
    {"<|startof\x01" "text|>", 1, {49406}},
    {"tab\x09" "end\xef\xbf\xbd" "\x7f" " \xf0\x9f\x98\x80" "\xf3\xa0\x80\x81" " \xc2\xad" "-soft",
     5,
     {14724, 806, 7334, 268, 3773}},
    {"a\xcd\x85" "b .\xcd\x85" ".", 4, {320, 321, 269, 269}}, /* U+0345 matches no regex branch */
};

/* SD 2's pad token "!" is an added token: every "!" is split out as id 0. */
static const edge_case sd2_edges[] = {
    {"wow!<|endoftext|>!!ok", 6, {2781, 0, 49407, 0, 0, 2481}},
};

static void test_tokenizer_edge_cases(const char *ref, const char *model, const edge_case *cases, int n_cases) {
  char path[4096], label[128];
  snprintf(path, sizeof path, "%s/%s/tokenizer", ref, model);
  sdc_tokenizer *tok = NULL;
  int err = sdc_tokenizer_load(&tok, path);
  if (err) {
    printf("FAIL: %s: load: %s\n", model, sdc_errmsg(err));
    n_fail++;
    return;
  }
  int32_t bos, eos, pad;
  sdc_tokenizer_special_ids(tok, &bos, &eos, &pad);
  for (int c = 0; c < n_cases; c++) {
    int32_t want[77], got[77];
    want[0] = bos;
    memcpy(want + 1, cases[c].ids, (size_t)cases[c].n * sizeof(int32_t));
    want[1 + cases[c].n] = eos;
    for (int i = 2 + cases[c].n; i < 77; i++) want[i] = pad;
    snprintf(label, sizeof label, "%s edge case %d", model, c);
    err = sdc_tokenizer_encode(tok, cases[c].text, got, 77);
    if (err) {
      printf("FAIL: %s: %s\n", label, sdc_errmsg(err));
      n_fail++;
    } else {
      check_ids(label, got, want, 77);
    }
  }
  /* Truncation keeps n_ids - 2 tokens between bos and eos for any n_ids. */
  int32_t got[4];
  err = sdc_tokenizer_encode(tok, "a photograph of an astronaut", got, 4);
  check(!err && got[0] == bos && got[1] == 320 && got[2] == 8853 && got[3] == eos, "n_ids = 4 truncates to 2 tokens");
  err = sdc_tokenizer_encode(tok, "a", got, 1);
  check(err == SDC_EINVAL, "n_ids = 1 is SDC_EINVAL");
  sdc_tokenizer_free(tok);
}

/* Malformed UTF-8 (bad lead byte, cut sequence, surrogate, overlong, > U+10FFFF) is SDC_EINVAL. */
static void test_invalid_utf8_is_einval(const sdc_tokenizer *tok) {
  static const char *const bad[] = {"\xff\xfe", "abc\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "ok \xf4\x90\x80\x80", "\x80"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    int32_t ids[77];
    int err = sdc_tokenizer_encode(tok, bad[k], ids, 77);
    char label[128];
    snprintf(label, sizeof label, "invalid UTF-8 case %zu is SDC_EINVAL saying UTF-8 (%s)", k, sdc_errmsg(err));
    check(err == SDC_EINVAL && strstr(sdc_errmsg(err), "UTF-8"), label);
  }
}

/* A tiny in-memory vocabulary: merges apply by rank, the pad token becomes an added token. */
static void test_load_mem_small_vocab(void) {
  static const char vocab[] =
      "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab</w>\": 4, \"<|startoftext|>\": 5, \"<|endoftext|>\": 6,"
      " \"ab\": 7}";
  static const char merges[] = "#version: 0.2\na b</w>\na b\n";
  sdc_tokenizer *tok = NULL;
  int err = sdc_tokenizer_load_mem(&tok, vocab, merges, NULL);
  check(!err, "load_mem of a small vocabulary");
  if (err) return;
  int32_t got[8];
  /* "abab" = a b a b</w>: (a, b</w>) has rank 0, so the end merges first, then (a, b). */
  static const int32_t want[8] = {5, 4, 4, 7, 4, 6, 6, 6};
  err = sdc_tokenizer_encode(tok, "ab AB abab", got, 8);
  if (err) printf("  %s\n", sdc_errmsg(err));
  check_ids("small vocab: merges by rank, pad = eos", got, want, err ? 0 : 8);
  sdc_tokenizer_free(tok);
  err = sdc_tokenizer_load_mem(&tok, vocab, merges, "b");
  check(!err, "load_mem with pad token \"b\"");
  if (err) return;
  static const int32_t want_pad[8] = {5, 2, 1, 2, 1, 6, 1, 1};
  err = sdc_tokenizer_encode(tok, "abab", got, 8);
  check_ids("small vocab: pad token split out of the text", got, want_pad, err ? 0 : 8);
  sdc_tokenizer_free(tok);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_next(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}

/* Runs naive and heap BPE on n_words random words over alphabet; returns the mismatches. */
static int bpe_compare(const sdc_tokenizer *tok, const char *const *alphabet, int n_alpha, int max_len, int n_words) {
  int bad = 0;
  char word[4096];
  int32_t a[4096], b[4096];
  for (int w = 0; w < n_words; w++) {
    size_t n = 0;
    int len = 1 + (int)(rng_next() % (uint32_t)max_len);
    for (int i = 0; i < len; i++) {
      const char *s = alphabet[rng_next() % (uint32_t)n_alpha];
      memcpy(word + n, s, strlen(s)), n += strlen(s);
    }
    int64_t na = sdc__tokenizer_bpe(tok, word, n, 1, a, 4096), nb = sdc__tokenizer_bpe(tok, word, n, 0, b, 4096);
    if (na != nb || (na > 0 && memcmp(a, b, (size_t)na * sizeof a[0]))) {
      if (!bad) printf("  first mismatch on \"%.*s\": %lld vs %lld ids\n", (int)n, word, (long long)na, (long long)nb);
      bad++;
    }
  }
  return bad;
}

/* The O(n log n) heap BPE agrees with the transcription of transformers' loop, also for
 * merge lists whose ranks do not follow creation order (where batching by rank matters). */
static void test_bpe_heap_matches_naive(const sdc_tokenizer *real) {
  static const char *const abc[] = {"a", "b", "c"};
  int bad = 0;
  for (int trial = 0; trial < 40; trial++) {
    /* Random merges over {a, b, c}: each joins two existing symbols (the left without </w>). */
    char syms[64][64];
    int n_syms = 6;
    strcpy(syms[0], "a"), strcpy(syms[1], "b"), strcpy(syms[2], "c");
    strcpy(syms[3], "a</w>"), strcpy(syms[4], "b</w>"), strcpy(syms[5], "c</w>");
    char merges[4096] = "#version: test\n", vocab[8192] = "{";
    for (int m = 0; m < 24 && n_syms < 64; m++) {
      int l, r;
      do l = (int)(rng_next() % (uint32_t)n_syms); while (strstr(syms[l], "</w>"));
      r = (int)(rng_next() % (uint32_t)n_syms);
      if (strlen(syms[l]) + strlen(syms[r]) >= 60) continue;
      size_t ll = strlen(syms[l]), lr = strlen(syms[r]);
      memcpy(syms[n_syms], syms[l], ll), memcpy(syms[n_syms] + ll, syms[r], lr + 1);
      int dup = 0;
      for (int k = 0; k < n_syms; k++) dup |= !strcmp(syms[k], syms[n_syms]);
      if (dup) continue;
      /* Insert the merge line at a random position so ranks are out of creation order. */
      char line[160], *at = strchr(merges, '\n') + 1;
      int lines_after = 0;
      for (char *q = at; *q; q++) lines_after += *q == '\n';
      for (int skip = lines_after ? (int)(rng_next() % (uint32_t)(lines_after + 1)) : 0; skip > 0; skip--)
        at = strchr(at, '\n') + 1;
      snprintf(line, sizeof line, "%s %s\n", syms[l], syms[r]);
      memmove(at + strlen(line), at, strlen(at) + 1);
      memcpy(at, line, strlen(line));
      n_syms++;
    }
    for (int k = 0; k < n_syms; k++)
      snprintf(vocab + strlen(vocab), sizeof vocab - strlen(vocab), "%s\"%s\": %d", k ? ", " : "", syms[k], k);
    strcat(vocab, ", \"<|startoftext|>\": 100, \"<|endoftext|>\": 101}");
    sdc_tokenizer *tok = NULL;
    if (sdc_tokenizer_load_mem(&tok, vocab, merges, NULL)) {
      printf("  load_mem failed: %s\n", sdc_errmsg(SDC_EFORMAT));
      bad++;
      continue;
    }
    bad += bpe_compare(tok, abc, 3, 40, 200);
    sdc_tokenizer_free(tok);
  }
  check(bad == 0, "heap BPE == naive BPE on random merge lists (8000 words)");
  if (real) {
    static const char *const letters[] = {"a", "e", "i", "o", "u", "n", "s", "t", "r", "l", "th", "ing",
                                          "\xc3\xa9", "\xe2\x80\x94", "\xf0\x9f\x90\xb1", "!", "1"};
    check(bpe_compare(real, letters, 17, 60, 3000) == 0, "heap BPE == naive BPE with the real vocabulary (3000 words)");
    char longw[4001];
    for (int i = 0; i < 4000; i++) longw[i] = "abcdefghijklmnopqrstuvwxyz"[rng_next() % 26];
    static int32_t a[4000], b[4000];
    double t0 = 1e3 * sdc_clock_mono_s();
    int64_t nb = sdc__tokenizer_bpe(real, longw, 4000, 0, b, 4000);
    double t1 = 1e3 * sdc_clock_mono_s();
    int64_t na = sdc__tokenizer_bpe(real, longw, 4000, 1, a, 4000);
    printf("info: 4000-letter word: heap %.1f ms\n", t1 - t0);
    check(na == nb && na > 0 && !memcmp(a, b, (size_t)na * sizeof a[0]), "heap BPE == naive BPE on a 4000-letter word");
  }
}

/* A missing folder's error names it; a corrupt vocab.json's error names the file. */
static void test_load_errors_name_the_culprit(void) {
  sdc_tokenizer *tok = (sdc_tokenizer *)1;
  const char *missing = "/nonexistent/sdc-test/tokenizer";
  int err = sdc_tokenizer_load(&tok, missing);
  check(err != 0 && tok == NULL && strstr(sdc_errmsg(err), missing), "missing folder: error names the path");

  char dir[] = "/tmp/sdc_tok_XXXXXX", vocab[64], merges[64], cfg[64];
  if (!mkdtemp(dir)) {
    printf("FAIL: mkdtemp: %s\n", strerror(errno));
    n_fail++;
    return;
  }
  snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
  struct {
    const char *vocab, *merges, *cfg, *culprit, *what;
  } cases[] = {
      {"{\"a\": 0, \"b\": ", "#version: 0.2\n", NULL, vocab, "truncated vocab.json"},
      {"[1, 2, 3]", "#version: 0.2\n", NULL, vocab, "vocab.json not an object"},
      {"{\"a\": 0, \"b\": \"x\"}", "#version: 0.2\n", NULL, "\"b\"", "vocab.json id not a number"},
      {"{\"a\": 0, \"b\": 1.5}", "#version: 0.2\n", NULL, vocab, "vocab.json fractional id"},
      {"{\"a\": 0, \"\xff\": 1}", "#version: 0.2\n", NULL, vocab, "vocab.json invalid UTF-8"},
      {"{\"a\": 0}", "#version: 0.2\na \xc3\n", NULL, "line 2", "merges.txt invalid UTF-8"},
      {"{\"a\": 0}", NULL, NULL, merges, "merges.txt missing"},
      {"{\"a\": 0}", "#v\n", "{\"model_max_length\": ", cfg, "tokenizer_config.json bad JSON"},
      {"{\"a\": 0}", "#v\n", "{\"model_max_length\": 1}", "model_max_length", "model_max_length = 1"},
      {"{\"a\": 0}", "#v\n", "{\"pad_token\": 5}", "pad_token", "pad_token not a string"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    unlink(vocab), unlink(merges), unlink(cfg);
    if (write_file(vocab, cases[k].vocab) || (cases[k].merges && write_file(merges, cases[k].merges)) ||
        (cases[k].cfg && write_file(cfg, cases[k].cfg))) {
      printf("FAIL: cannot write into %s\n", dir);
      n_fail++;
      break;
    }
    err = sdc_tokenizer_load(&tok, dir);
    char label[512];
    snprintf(label, sizeof label, "%s: error names %s (%s)", cases[k].what, cases[k].culprit, sdc_errmsg(err));
    check(err != 0 && tok == NULL && strstr(sdc_errmsg(err), cases[k].culprit) != NULL, label);
    if (!err) sdc_tokenizer_free(tok);
  }
  /* A well-formed folder with AddedToken objects and no special_tokens_map.json loads. */
  unlink(vocab), unlink(merges), unlink(cfg);
  write_file(vocab, "{\"h\": 0, \"i</w>\": 1, \"hi</w>\": 2, \"<|startoftext|>\": 3, \"<|endoftext|>\": 4}");
  write_file(merges, "#version: 0.2\nh i</w>\n");
  write_file(cfg, "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|startoftext|>\"}, "
                  "\"model_max_length\": 6}");
  err = sdc_tokenizer_load(&tok, dir);
  check(!err, "AddedToken objects in tokenizer_config.json load");
  if (!err) {
    int32_t got[6];
    static const int32_t want[6] = {3, 2, 2, 4, 4, 4};
    check(sdc_tokenizer_max_length(tok) == 6, "model_max_length read from tokenizer_config.json");
    err = sdc_tokenizer_encode(tok, "HI hi", got, sdc_tokenizer_max_length(tok));
    check_ids("temp folder tokenizer encodes", got, want, err ? 0 : 6);
    sdc_tokenizer_free(tok);
  }
  unlink(vocab), unlink(merges), unlink(cfg);
  rmdir(dir);
}

/* sdc_tokenizer_encode_count gives the same ids as encode and counts the tokens past the cut. */
static void test_encode_count_reports_the_cut(const sdc_tokenizer *tok) {
  char text[2048] = "";
  for (int i = 0; i < 100; i++) strcat(text, "cat ");
  int32_t a[77], b[77];
  int64_t n = -1;
  int err = sdc_tokenizer_encode_count(tok, text, a, 77, &n);
  check(!err && n == 100, "100 words count as 100 tokens");
  check(!sdc_tokenizer_encode(tok, text, b, 77) && memcmp(a, b, sizeof a) == 0, "counting does not change the ids");
  check(!sdc_tokenizer_encode_count(tok, "a cat", a, 77, &n) && n == 2, "a short prompt counts its tokens");
  for (int i = 0; i < 75; i++) text[4 * i + 3] = ' ';
  text[4 * 75] = 0;
  check(!sdc_tokenizer_encode_count(tok, text, a, 77, &n) && n == 75, "75 tokens fit exactly (no cut)");
}

int main(void) {
  const char *ref = getenv("SDC_REF");
  if (!ref || !*ref) ref = "../shared/ref";
  test_load_errors_name_the_culprit();
  test_load_mem_small_vocab();

  char path[4096];
  snprintf(path, sizeof path, "%s/goldens.safetensors", ref);
  struct stat st;
  if (stat(path, &st) != 0) {
    test_bpe_heap_matches_naive(NULL);
    if (n_fail) {
      printf("%d check(s) failed\n", n_fail);
      return 1;
    }
    printf("SKIP: reference folder %s not found (set SDC_REF); golden checks not run\n", ref);
    return 77;
  }
  sdc_st_file goldens;
  int err = sdc_st_open(&goldens, path);
  if (err) {
    printf("FAIL: %s\n", sdc_errmsg(err));
    return 1;
  }
  snprintf(path, sizeof path, "%s/goldens.json", ref);
  char *text = NULL;
  cJSON *manifest = NULL;
  if ((err = sdc_read_file(path, &text, NULL)) || !(manifest = cJSON_Parse(text))) {
    printf("FAIL: %s: %s\n", path, err ? sdc_errmsg(err) : "invalid JSON");
    free(text);
    sdc_st_close(&goldens);
    return 1;
  }
  free(text);

  static const char *const models[] = {"tiny-sd1", "tiny-sd2"};
  for (int m = 0; m < 2; m++) test_tokenizer_matches_goldens(ref, models[m], manifest, &goldens, 0);
  for (int m = 0; m < 2; m++) test_tokenizer_matches_goldens(ref, models[m], manifest, &goldens, 1);
  test_tokenizer_edge_cases(ref, "tiny-sd1", sd1_edges, (int)(sizeof sd1_edges / sizeof sd1_edges[0]));
  test_tokenizer_edge_cases(ref, "tiny-sd2", sd2_edges, (int)(sizeof sd2_edges / sizeof sd2_edges[0]));

  snprintf(path, sizeof path, "%s/tiny-sd1/tokenizer", ref);
  sdc_tokenizer *tok = NULL;
  if ((err = sdc_tokenizer_load(&tok, path))) {
    printf("FAIL: %s\n", sdc_errmsg(err));
    n_fail++;
  } else {
    test_invalid_utf8_is_einval(tok);
    test_encode_count_reports_the_cut(tok);
    test_bpe_heap_matches_naive(tok);
    sdc_tokenizer_free(tok);
  }
  cJSON_Delete(manifest);
  sdc_st_close(&goldens);
  if (n_fail) {
    printf("%d check(s) failed\n", n_fail);
    return 1;
  }
  printf("all tokenizer checks passed\n");
  return 0;
}
