/* tokenizer.c - CLIP tokenizer: special-token split, BERT-style cleaning, CLIP regex, byte-level BPE. */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "file.h"
#include "utf8.h"
#include "error.h"

/* transformers reads merges.txt lines [1, 49152 - 256 - 2 + 1): at most 48894 merges. */
#define SDC__MAX_MERGES (49152 - 256 - 2)
#define SDC__DEFAULT_MAX_LENGTH 77
/* model_max_length above this is transformers' "unbounded" sentinel (1e30): use the default. */
#define SDC__MAX_LENGTH_LIMIT (1 << 20)

static const char sdc__sot[] = "<|startoftext|>", sdc__eot[] = "<|endoftext|>";

typedef struct {
  uint64_t key; /* (left + 1) << 32 | (right + 1); 0 = empty slot */
  int32_t rank, merged;
} sdc__pair;

typedef struct {
  char *str;
  size_t len;
  int32_t id;
} sdc__added;

struct sdc_tokenizer {
  /* Interned symbol strings: vocab tokens, merge parts and results, byte symbols. */
  char *pool;
  size_t pool_len, pool_cap;
  uint32_t *sym_off, *sym_len;
  int32_t *sym_vocab; /* id in vocab.json, or -1 */
  int32_t *sym_id;    /* id emitted: added token, else vocab, else unk */
  int64_t n_syms, syms_cap;
  int32_t *slots; /* open addressing over symbols, -1 = empty */
  uint64_t slot_mask;
  sdc__pair *pairs; /* merge (left, right) -> rank, merged symbol */
  uint64_t pair_mask;
  int32_t byte_sym[256], byte_end_sym[256]; /* GPT-2 byte char, and the same + "</w>" */
  int32_t sot_sym, eot_sym;
  sdc__added *added; /* split out of the raw text before anything else */
  int n_added;
  int32_t bos_id, eos_id, pad_id, unk_id;
  int64_t max_length;
};

/* ---------------------------------------------------------------- hashing */

static uint64_t sdc__hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t sdc__mix(uint64_t x) { /* splitmix64 finaliser */
  x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27, x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint64_t sdc__pow2_at_least(uint64_t n) {
  uint64_t c = 16;
  while (c < n) c <<= 1;
  return c;
}

/* Symbol index of s[0..n), or -1. */
static int32_t sdc__sym_find(const sdc_tokenizer *t, const char *s, size_t n) {
  for (uint64_t i = sdc__hash(s, n) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
    int32_t k = t->slots[i];
    if (k < 0) return -1;
    if (t->sym_len[k] == n && memcmp(t->pool + t->sym_off[k], s, n) == 0) return k;
  }
}

static int sdc__rehash(sdc_tokenizer *t, uint64_t n_slots) {
  int32_t *slots = malloc(n_slots * sizeof *slots);
  if (!slots) return SDC_ENOMEM;
  memset(slots, 0xff, n_slots * sizeof *slots);
  for (int64_t k = 0; k < t->n_syms; k++) {
    uint64_t i = sdc__hash(t->pool + t->sym_off[k], t->sym_len[k]) & (n_slots - 1);
    while (slots[i] >= 0) i = (i + 1) & (n_slots - 1);
    slots[i] = (int32_t)k;
  }
  free(t->slots);
  t->slots = slots, t->slot_mask = n_slots - 1;
  return SDC_OK;
}

/* Interns s[0..n) (s must not point into the pool); *sym gets its index. */
static int sdc__sym_intern(sdc_tokenizer *t, const char *s, size_t n, int32_t *sym /* OUT */) {
  int32_t k = sdc__sym_find(t, s, n);
  if (k >= 0) { *sym = k; return SDC_OK; }
  if ((uint64_t)(t->n_syms + 1) * 2 > t->slot_mask + 1 && sdc__rehash(t, (t->slot_mask + 1) * 2)) return SDC_ENOMEM;
  if (t->n_syms == t->syms_cap) {
    int64_t cap = t->syms_cap ? t->syms_cap * 2 : 1024;
    if (cap > INT32_MAX) return SDC_ENOMEM;
    uint32_t *off = realloc(t->sym_off, cap * sizeof *off);
    if (off) t->sym_off = off;
    uint32_t *len = realloc(t->sym_len, cap * sizeof *len);
    if (len) t->sym_len = len;
    int32_t *voc = realloc(t->sym_vocab, cap * sizeof *voc);
    if (voc) t->sym_vocab = voc;
    if (!off || !len || !voc) return SDC_ENOMEM;
    t->syms_cap = cap;
  }
  if (t->pool_len + n > t->pool_cap) {
    size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
    while (cap < t->pool_len + n) cap *= 2;
    if (cap > UINT32_MAX) return SDC_ENOMEM;
    char *pool = realloc(t->pool, cap);
    if (!pool) return SDC_ENOMEM;
    t->pool = pool, t->pool_cap = cap;
  }
  if (n) memcpy(t->pool + t->pool_len, s, n);
  k = (int32_t)t->n_syms++;
  t->sym_off[k] = (uint32_t)t->pool_len, t->sym_len[k] = (uint32_t)n, t->sym_vocab[k] = -1;
  t->pool_len += n;
  uint64_t i = sdc__hash(s, n) & t->slot_mask;
  while (t->slots[i] >= 0) i = (i + 1) & t->slot_mask;
  t->slots[i] = k;
  *sym = k;
  return SDC_OK;
}

static uint64_t sdc__pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)(a + 1) << 32 | (uint32_t)(b + 1); }

static const sdc__pair *sdc__pair_find(const sdc_tokenizer *t, int32_t a, int32_t b) {
  uint64_t key = sdc__pair_key(a, b);
  for (uint64_t i = sdc__mix(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
    if (t->pairs[i].key == key) return &t->pairs[i];
    if (!t->pairs[i].key) return NULL;
  }
}

/* A repeated merge keeps its last rank, as Python's dict(zip(merges, range(n))) does. */
static void sdc__pair_put(sdc_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
  uint64_t key = sdc__pair_key(a, b), i = sdc__mix(key) & t->pair_mask;
  while (t->pairs[i].key && t->pairs[i].key != key) i = (i + 1) & t->pair_mask;
  t->pairs[i] = (sdc__pair){key, rank, merged};
}

/* ------------------------------------------------------- unicode helpers */

static int sdc__cat(int32_t c) { return (int)utf8proc_category(c); }
static int sdc__is_letter(int32_t c) { int k = sdc__cat(c); return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO; }
static int sdc__is_number(int32_t c) { int k = sdc__cat(c); return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO; }

/* Unicode White_Space: the regex module's \s. */
static int sdc__is_white_space(int32_t c) {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Python's str.isspace(), which str.split() splits on. */
static int sdc__py_isspace(int32_t c) { return sdc__is_white_space(c) || (c >= 0x1c && c <= 0x1f); }

/* BasicTokenizer._is_chinese_char: the CJK ideograph blocks. */
static int sdc__is_cjk(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Unicode Cased (Lu/Ll/Lt or Other_Lowercase/Other_Uppercase), for Python's final-sigma rule. */
static int sdc__is_cased(int32_t c) {
  int k = sdc__cat(c);
  if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 1;
  if (utf8proc_tolower(c) != c || utf8proc_toupper(c) != c) return 1;
  return c == 0xaa || c == 0xba || (c >= 0x2b0 && c <= 0x2b8) || (c >= 0x2c0 && c <= 0x2c1) ||
         (c >= 0x2e0 && c <= 0x2e4) || c == 0x345 || c == 0x37a || (c >= 0x1d2c && c <= 0x1d6a) || c == 0x1d78 ||
         (c >= 0x1d9b && c <= 0x1dbf) || c == 0x2071 || c == 0x207f || (c >= 0x2090 && c <= 0x209c) ||
         (c >= 0x2160 && c <= 0x217f) || (c >= 0x24b6 && c <= 0x24e9) || (c >= 0x2c7c && c <= 0x2c7d) ||
         (c >= 0xa69c && c <= 0xa69d) || c == 0xa770 || (c >= 0xa7f8 && c <= 0xa7f9) ||
         (c >= 0xab5c && c <= 0xab5f) || (c >= 0x1f130 && c <= 0x1f149) || (c >= 0x1f150 && c <= 0x1f169) ||
         (c >= 0x1f170 && c <= 0x1f189);
}

/* Unicode Case_Ignorable: Mn Me Cf Lm Sk, plus Word_Break MidLetter/MidNumLet/Single_Quote. */
static int sdc__is_case_ignorable(int32_t c) {
  int k = sdc__cat(c);
  if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
      k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK)
    return 1;
  static const int32_t mid[] = {0x27,   0x2e,   0x3a,   0xb7,   0x387,  0x55f,  0x5f4,  0x2018, 0x2019,
                                0x2024, 0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a};
  for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
    if (c == mid[i]) return 1;
  return 0;
}

/* Python str.lower() of w[i] inside word w: full mapping (U+0130 -> "i\u0307")
 * and the final-sigma context rule; writes 1 or 2 code points, returns the count. */
static int sdc__py_lower(const int32_t *w, size_t n, size_t i, int32_t *out /* OUT [2] */) {
  int32_t c = w[i];
  if (c == 0x130) { out[0] = 'i', out[1] = 0x307; return 2; }
  if (c != 0x3a3) { out[0] = utf8proc_tolower(c); return 1; }
  size_t j = i;
  int32_t p = 0;
  int found = 0;
  while (j > 0)
    if (!sdc__is_case_ignorable(p = w[--j])) { found = 1; break; }
  int final = found && sdc__is_cased(p);
  if (final) {
    size_t k = i + 1;
    while (k < n && sdc__is_case_ignorable(w[k])) k++;
    final = k == n || !sdc__is_cased(w[k]);
  }
  out[0] = final ? 0x3c2 : 0x3c3;
  return 1;
}

/* ------------------------------------------------------------ scratch */

typedef struct {
  int32_t rank, pos, left, right, merged;
} sdc__hent;

typedef struct {
  char *bytes; /* cleaned piece, then one regex match, as UTF-8 */
  size_t bytes_cap;
  int32_t *cps; /* NFC piece */
  size_t cps_cap;
  int32_t *low; /* one lower-cased word */
  size_t low_cap;
  int32_t *sym, *prev, *next; /* BPE nodes */
  size_t node_cap;
  sdc__hent *heap, *batch;
  size_t heap_cap;
} sdc__scratch;

typedef struct {
  int32_t *ids;
  int64_t n, cap; /* n counts every id, only the first cap are stored */
  int count_all;  /* go on past cap to count the whole text */
} sdc__sink;

static int sdc__sink_open(const sdc__sink *o) { return o->n < o->cap || o->count_all; }

static void sdc__emit(sdc__sink *o, int32_t id) {
  if (o->n < o->cap) o->ids[o->n] = id;
  o->n++;
}

static int sdc__grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return SDC_OK;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return SDC_ENOMEM;
  *p = q, *cap = c;
  return SDC_OK;
}

static void sdc__scratch_free(sdc__scratch *w) {
  free(w->bytes), free(w->cps), free(w->low);
  free(w->sym), free(w->prev), free(w->next);
  free(w->heap), free(w->batch);
}

/* ---------------------------------------------------------------- BPE */

static int sdc__hent_less(const sdc__hent *a, const sdc__hent *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void sdc__heap_push(sdc__hent *h, size_t *n, sdc__hent e) {
  size_t i = (*n)++;
  while (i > 0 && sdc__hent_less(&e, &h[(i - 1) / 2])) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
  h[i] = e;
}

static sdc__hent sdc__heap_pop(sdc__hent *h, size_t *n) {
  sdc__hent top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && sdc__hent_less(&h[c + 1], &h[c])) c++;
    if (!sdc__hent_less(&h[c], &last)) break;
    h[i] = h[c], i = c;
  }
  if (*n) h[i] = last;
  return top;
}

/* Pushes the pair starting at node i (its right neighbour is next[i]) if it is a merge. */
static void sdc__push_pair(const sdc_tokenizer *t, sdc__scratch *w, size_t *hn, int32_t i) {
  int32_t j = w->next[i];
  if (j < 0) return;
  const sdc__pair *p = sdc__pair_find(t, w->sym[i], w->sym[j]);
  if (p) sdc__heap_push(w->heap, hn, (sdc__hent){p->rank, i, w->sym[i], w->sym[j], p->merged});
}

/* transformers' loop, transcribed: merge every occurrence (left to right) of the
 * lowest-ranked adjacent pair until none is a merge. O(n^2); reference for the heap. */
static void sdc__bpe_naive(const sdc_tokenizer *t, int32_t *sym, size_t *n_io) {
  size_t n = *n_io;
  while (n > 1) {
    const sdc__pair *best = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
      const sdc__pair *p = sdc__pair_find(t, sym[i], sym[i + 1]);
      if (p && (!best || p->rank < best->rank)) best = p;
    }
    if (!best) break;
    int32_t a = (int32_t)(best->key >> 32) - 1, b = (int32_t)(uint32_t)best->key - 1;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && sym[i] == a && sym[i + 1] == b) sym[j++] = best->merged, i += 2;
      else sym[j++] = sym[i++];
    }
    n = j;
  }
  *n_io = n;
}

/* Same result in O(n log n): a heap of (rank, position). All entries of the current
 * rank are taken out as one batch and applied left to right before any pair they
 * create, because transformers merges every occurrence of the chosen pair before
 * choosing again. A merged symbol is longer than both parts, so the pairs a merge
 * creates never have the batch's rank, and an entry whose symbols still match is live. */
static void sdc__bpe_heap(const sdc_tokenizer *t, sdc__scratch *w, size_t n) {
  for (size_t i = 0; i < n; i++) w->prev[i] = (int32_t)i - 1, w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  size_t hn = 0;
  for (size_t i = 0; i + 1 < n; i++) sdc__push_pair(t, w, &hn, (int32_t)i);
  while (hn > 0) {
    int32_t rank = w->heap[0].rank;
    size_t nb = 0;
    while (hn > 0 && w->heap[0].rank == rank) w->batch[nb++] = sdc__heap_pop(w->heap, &hn);
    for (size_t b = 0; b < nb; b++) {
      const sdc__hent *e = &w->batch[b];
      int32_t i = e->pos, j = w->next[i];
      if (w->sym[i] != e->left || j < 0 || w->sym[j] != e->right) continue; /* stale */
      w->sym[i] = e->merged, w->sym[j] = -1;
      w->next[i] = w->next[j];
      if (w->next[j] >= 0) w->prev[w->next[j]] = i;
      if (w->prev[i] >= 0) sdc__push_pair(t, w, &hn, w->prev[i]);
      sdc__push_pair(t, w, &hn, i);
    }
  }
}

/* BPE of one regex match b[0..m) (raw UTF-8 bytes), ids to o. */
static int sdc__bpe(const sdc_tokenizer *t, sdc__scratch *w, const uint8_t *b, size_t m, int naive, sdc__sink *o) {
  if (m == 0) return SDC_OK;
  /* CLIPTokenizer's bpe cache holds these two strings as they are (no "</w>"). */
  if (m == sizeof sdc__sot - 1 && !memcmp(b, sdc__sot, m)) { sdc__emit(o, t->sym_id[t->sot_sym]); return SDC_OK; }
  if (m == sizeof sdc__eot - 1 && !memcmp(b, sdc__eot, m)) { sdc__emit(o, t->sym_id[t->eot_sym]); return SDC_OK; }
  size_t cap = w->node_cap;
  if (sdc__grow((void **)&w->sym, &cap, m, sizeof *w->sym)) return SDC_ENOMEM;
  cap = w->node_cap;
  if (sdc__grow((void **)&w->prev, &cap, m, sizeof *w->prev)) return SDC_ENOMEM;
  cap = w->node_cap;
  if (sdc__grow((void **)&w->next, &cap, m, sizeof *w->next)) return SDC_ENOMEM;
  w->node_cap = cap;
  cap = w->heap_cap; /* at most n - 1 initial pairs plus two per merge */
  if (sdc__grow((void **)&w->heap, &cap, 3 * m, sizeof *w->heap)) return SDC_ENOMEM;
  cap = w->heap_cap;
  if (sdc__grow((void **)&w->batch, &cap, 3 * m, sizeof *w->batch)) return SDC_ENOMEM;
  w->heap_cap = cap;
  /* The word's last symbol carries the end-of-word marker. */
  for (size_t i = 0; i < m; i++) w->sym[i] = i + 1 < m ? t->byte_sym[b[i]] : t->byte_end_sym[b[i]];
  if (naive) {
    size_t n = m;
    sdc__bpe_naive(t, w->sym, &n);
    for (size_t i = 0; i < n; i++) sdc__emit(o, t->sym_id[w->sym[i]]);
  } else {
    sdc__bpe_heap(t, w, m);
    for (int32_t i = 0; i >= 0; i = w->next[i]) sdc__emit(o, t->sym_id[w->sym[i]]);
  }
  return SDC_OK;
}

/* ------------------------------------------------------------- encode */

/* Case-insensitive match (the CLIP regex has re.IGNORECASE) of code points c against lower-case ASCII lit. */
static size_t sdc__match_lit(const int32_t *c, size_t n, const char *lit) {
  size_t len = strlen(lit);
  if (n < len) return 0;
  for (size_t i = 0; i < len; i++) {
    int32_t x = c[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    else if (x == 0x17f) x = 's'; /* LATIN SMALL LETTER LONG S folds to s */
    else if (x == 0x212a) x = 'k'; /* KELVIN SIGN */
    if (x != (unsigned char)lit[i]) return 0;
  }
  return len;
}

/* Whether the CLIP regex can never match c: whitespace, and U+0345, which under
 * re.IGNORECASE is neither in [\p{L}] nor in [^\s\p{L}\p{N}] (its case
 * variants are letters, it is a mark), so the regex module skips it. */
static int sdc__regex_skips(int32_t c) { return sdc__is_white_space(c) || c == 0x345; }

/* Length of the CLIP regex match at w[0..n), 0 if none starts at w[0]:
 * <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
static size_t sdc__regex_match(const int32_t *w, size_t n) {
  static const char *const lits[] = {sdc__sot, sdc__eot, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
    size_t len = sdc__match_lit(w, n, lits[k]);
    if (len) return len;
  }
  size_t i = 0;
  if (sdc__is_letter(w[0])) {
    while (i < n && sdc__is_letter(w[i])) i++;
    return i;
  }
  if (sdc__is_number(w[0])) return 1;
  while (i < n && !sdc__regex_skips(w[i]) && !sdc__is_letter(w[i]) && !sdc__is_number(w[i])) i++;
  return i;
}

/* Lower-cases one whitespace-delimited word and runs the regex + BPE over it. */
static int sdc__encode_word(const sdc_tokenizer *t, sdc__scratch *w, const int32_t *word, size_t n, sdc__sink *o) {
  if (sdc__grow((void **)&w->low, &w->low_cap, 2 * n, sizeof *w->low)) return SDC_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += (size_t)sdc__py_lower(word, n, i, w->low + k);
  if (sdc__grow((void **)&w->bytes, &w->bytes_cap, 4 * k, 1)) return SDC_ENOMEM;
  for (size_t i = 0; i < k && sdc__sink_open(o);) {
    size_t len = sdc__regex_match(w->low + i, k - i);
    if (!len) { i++; continue; }
    size_t nb = 0;
    for (size_t j = i; j < i + len; j++)
      nb += (size_t)utf8proc_encode_char(w->low[j], (utf8proc_uint8_t *)w->bytes + nb);
    int err = sdc__bpe(t, w, (const uint8_t *)w->bytes, nb, 0, o);
    if (err) return err;
    i += len;
  }
  return SDC_OK;
}

/* One piece of text between added tokens, through BasicTokenizer(do_lower_case,
 * strip_accents=False, no punctuation split): drop NUL, U+FFFD and C* (not \t\n\r),
 * whitespace -> ' ', spaces around CJK, NFC, split on whitespace, lower-case. */
static int sdc__encode_piece(const sdc_tokenizer *t, sdc__scratch *w, const char *s, size_t n, sdc__sink *o) {
  if (sdc__grow((void **)&w->bytes, &w->bytes_cap, 2 * n + 1, 1)) return SDC_ENOMEM;
  size_t nb = 0;
  for (size_t i = 0; i < n;) {
    int32_t c;
    size_t k = sdc_utf8_next(s + i, n - i, &c);
    i += k;
    int cat = sdc__cat(c);
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ' || cat == UTF8PROC_CATEGORY_ZS) {
      w->bytes[nb++] = ' ';
    } else if (c == 0 || c == 0xfffd || cat == UTF8PROC_CATEGORY_CN || cat >= UTF8PROC_CATEGORY_CC) {
      continue; /* Cn Cc Cf Cs Co */
    } else if (sdc__is_cjk(c)) {
      w->bytes[nb++] = ' ';
      memcpy(w->bytes + nb, s + i - k, k), nb += k;
      w->bytes[nb++] = ' ';
    } else {
      memcpy(w->bytes + nb, s + i - k, k), nb += k;
    }
  }
  size_t lead = 0;
  while (lead < nb && w->bytes[lead] == ' ') lead++;
  if (lead == nb) return SDC_OK;
  utf8proc_uint8_t *nfc = NULL;
  utf8proc_ssize_t nn = utf8proc_map((const utf8proc_uint8_t *)w->bytes, (utf8proc_ssize_t)nb, &nfc,
                                     UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (nn < 0) return sdc_seterr(nn == UTF8PROC_ERROR_NOMEM ? SDC_ENOMEM : SDC_EINVAL,
                                "tokenizer: NFC normalisation failed: %s", utf8proc_errmsg(nn));
  int err = sdc__grow((void **)&w->cps, &w->cps_cap, (size_t)nn + 1, sizeof *w->cps);
  size_t nc = 0;
  for (size_t i = 0; !err && i < (size_t)nn;) i += sdc_utf8_next((const char *)nfc + i, (size_t)nn - i, &w->cps[nc++]);
  free(nfc);
  if (err) return SDC_ENOMEM;
  for (size_t i = 0; i < nc && sdc__sink_open(o);) {
    if (sdc__py_isspace(w->cps[i])) { i++; continue; }
    size_t j = i;
    while (j < nc && !sdc__py_isspace(w->cps[j])) j++;
    if ((err = sdc__encode_word(t, w, w->cps + i, j - i, o))) return err;
    i = j;
  }
  return SDC_OK;
}

/* Leftmost-longest added token in s[from..n): returns its index (position in *at), or -1. */
static int sdc__find_added(const sdc_tokenizer *t, const char *s, size_t n, size_t from, size_t *at /* OUT */) {
  for (size_t p = from; p < n; p++) {
    int best = -1;
    for (int k = 0; k < t->n_added; k++) {
      const sdc__added *a = &t->added[k];
      if (a->len <= n - p && a->str[0] == s[p] && !memcmp(a->str, s + p, a->len) &&
          (best < 0 || a->len > t->added[best].len))
        best = k;
    }
    if (best >= 0) { *at = p; return best; }
  }
  return -1;
}

int sdc_tokenizer_encode(const sdc_tokenizer *t, const char *text, int32_t *ids, int64_t n_ids) {
  return sdc_tokenizer_encode_count(t, text, ids, n_ids, NULL);
}

int sdc_tokenizer_encode_count(const sdc_tokenizer *t, const char *text, int32_t *ids, int64_t n_ids, int64_t *n_tokens) {
  if (n_tokens) *n_tokens = 0;
  if (!t || !text || !ids) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_encode: NULL argument");
  if (n_ids < 2) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_encode: n_ids = %lld, need at least 2", (long long)n_ids);
  size_t n = strlen(text);
  long bad = sdc_utf8_invalid_at(text, n);
  if (bad >= 0) return sdc_seterr(SDC_EINVAL, "tokenizer: text is not valid UTF-8 (byte %ld of %zu)", bad, n);
  sdc__scratch w = {0};
  sdc__sink o = {ids + 1, 0, n_ids - 2, n_tokens != NULL};
  int err = SDC_OK;
  size_t pos = 0;
  /* Added tokens are found in the raw text first; the pieces between them are tokenized alone. */
  /* counting goes on past the cut, so that a caller can say how much was lost */
  while (!err && pos < n && sdc__sink_open(&o)) {
    size_t at = n;
    int k = sdc__find_added(t, text, n, pos, &at);
    err = sdc__encode_piece(t, &w, text + pos, at - pos, &o);
    if (k < 0) break;
    if (!err) sdc__emit(&o, t->added[k].id);
    pos = at + t->added[k].len;
  }
  sdc__scratch_free(&w);
  if (err == SDC_ENOMEM) return sdc_seterr(err, "tokenizer: out of memory on a %zu-byte text", n);
  if (err) return err;
  int64_t used = o.n < o.cap ? o.n : o.cap;
  if (n_tokens) *n_tokens = o.n;
  ids[0] = t->bos_id;
  ids[1 + used] = t->eos_id;
  for (int64_t i = 2 + used; i < n_ids; i++) ids[i] = t->pad_id;
  return SDC_OK;
}

int64_t sdc__tokenizer_bpe(const sdc_tokenizer *t, const char *word, size_t n_bytes, int naive, int32_t *ids,
                           int64_t cap) {
  sdc__scratch w = {0};
  sdc__sink o = {ids, 0, cap, 0};
  int err = sdc__bpe(t, &w, (const uint8_t *)word, n_bytes, naive, &o);
  sdc__scratch_free(&w);
  return err ? err : o.n;
}

int64_t sdc_tokenizer_max_length(const sdc_tokenizer *t) { return t->max_length; }

void sdc_tokenizer_special_ids(const sdc_tokenizer *t, int32_t *bos, int32_t *eos, int32_t *pad) {
  if (bos) *bos = t->bos_id;
  if (eos) *eos = t->eos_id;
  if (pad) *pad = t->pad_id;
}

/* --------------------------------------------------------------- load */

void sdc_tokenizer_free(sdc_tokenizer *t) {
  if (!t) return;
  free(t->pool), free(t->sym_off), free(t->sym_len), free(t->sym_vocab), free(t->sym_id);
  free(t->slots), free(t->pairs);
  for (int k = 0; k < t->n_added; k++) free(t->added[k].str);
  free(t->added);
  free(t);
}

/* Special-token settings gathered from the config files (strings borrowed). */
typedef struct {
  const char *bos, *eos, *unk, *pad; /* NULL = default */
  const char **extra;                /* additional_special_tokens */
  int n_extra;
  const char **dec_str; /* added_tokens_decoder: content -> explicit id */
  int32_t *dec_id;
  int n_dec;
  int64_t max_length;
} sdc__spec;

static int sdc__is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* Registers an added token; an existing content keeps its first id. *id gets the token's id. */
static int sdc__add_token(sdc_tokenizer *t, const char *s, int32_t want, int32_t *next_id, int32_t *id /* OUT */) {
  size_t len = strlen(s);
  for (int k = 0; k < t->n_added; k++)
    if (t->added[k].len == len && !memcmp(t->added[k].str, s, len)) { *id = t->added[k].id; return SDC_OK; }
  if (want < 0) { /* a special token takes its vocab id, else the next free one */
    int32_t sym = sdc__sym_find(t, s, len);
    want = sym >= 0 && t->sym_vocab[sym] >= 0 ? t->sym_vocab[sym] : (*next_id)++;
  }
  sdc__added *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
  if (!a) return SDC_ENOMEM;
  t->added = a;
  if (!len) { *id = want; return SDC_OK; } /* an empty string is never matched */
  char *copy = malloc(len + 1);
  if (!copy) return SDC_ENOMEM;
  memcpy(copy, s, len + 1);
  t->added[t->n_added++] = (sdc__added){copy, len, want};
  *id = want;
  return SDC_OK;
}

static int sdc__load_vocab(sdc_tokenizer *t, const char *json, const char *label, int32_t *max_id /* OUT */) {
  size_t n = strlen(json);
  long bad = sdc_utf8_invalid_at(json, n);
  if (bad >= 0) return sdc_seterr(SDC_EFORMAT, "%s: not valid UTF-8 at byte %ld", label, bad);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
  if (!root)
    return sdc_seterr(SDC_EFORMAT, "%s: invalid JSON near byte %td", label, end ? end - json : (ptrdiff_t)0);
  int err = SDC_OK;
  int64_t count = 0;
  if (!cJSON_IsObject(root) || !root->child) {
    err = sdc_seterr(SDC_EFORMAT, "%s: expected a non-empty object of token -> id", label);
    goto done;
  }
  for (const cJSON *e = root->child; e; e = e->next) count++;
  if ((err = sdc__rehash(t, sdc__pow2_at_least(4 * (uint64_t)count + 4096)))) goto done;
  *max_id = -1;
  for (const cJSON *e = root->child; e; e = e->next) {
    double v = e->valuedouble;
    if (!cJSON_IsNumber(e) || !(v >= 0 && v < INT32_MAX) || v != (double)(int32_t)v) {
      if (cJSON_IsNumber(e))
        err = sdc_seterr(SDC_EFORMAT, "%s: token \"%.60s\" has id %g, want an integer in [0, 2^31)", label,
                         e->string, v);
      else
        err = sdc_seterr(SDC_EFORMAT, "%s: token \"%.60s\" has an id that is not a number", label, e->string);
      goto done;
    }
    int32_t sym;
    if ((err = sdc__sym_intern(t, e->string, strlen(e->string), &sym))) goto done;
    t->sym_vocab[sym] = (int32_t)v; /* a repeated key keeps its last id, as json.load does */
    if ((int32_t)v > *max_id) *max_id = (int32_t)v;
  }
done:
  cJSON_Delete(root);
  if (err == SDC_ENOMEM) sdc_seterr(err, "%s: out of memory", label);
  return err;
}

static int sdc__load_merges(sdc_tokenizer *t, const char *txt, const char *label) {
  size_t n = strlen(txt);
  long bad = sdc_utf8_invalid_at(txt, n);
  const char *p = txt, *end = txt + n;
  if (bad >= 0) {
    long long line = 1;
    for (long i = 0; i < bad; i++) line += txt[i] == '\n';
    return sdc_seterr(SDC_EFORMAT, "%s: line %lld is not valid UTF-8", label, line);
  }
  /* Python: read().strip().split("\n")[1 : 48895], each line .split() into a pair. */
  while (p < end && sdc__is_ascii_space(*p)) p++;
  while (end > p && sdc__is_ascii_space(end[-1])) end--;
  uint64_t n_lines = 1;
  for (const char *q = p; q < end; q++) n_lines += *q == '\n';
  free(t->pairs);
  t->pair_mask = sdc__pow2_at_least(2 * n_lines + 16) - 1;
  t->pairs = calloc(t->pair_mask + 1, sizeof *t->pairs);
  if (!t->pairs) return SDC_ENOMEM;
  char small[256], *cat = small;
  size_t cat_cap = sizeof small;
  int err = SDC_OK;
  for (int64_t line = 0; line <= SDC__MAX_MERGES && p <= end; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
    const char *part[3], *part_end[3];
    int n_parts = 0;
    for (const char *q = p; line > 0 && q < le && n_parts < 3;) {
      while (q < le && sdc__is_ascii_space(*q)) q++;
      if (q == le) break;
      part[n_parts] = q;
      while (q < le && !sdc__is_ascii_space(*q)) q++;
      part_end[n_parts++] = q;
    }
    if (n_parts == 2) { /* other lines are kept by Python but can never match a pair */
      size_t la = (size_t)(part_end[0] - part[0]), lb = (size_t)(part_end[1] - part[1]);
      if (la + lb > cat_cap) {
        char *c = realloc(cat == small ? NULL : cat, la + lb);
        if (!c) { err = SDC_ENOMEM; break; }
        cat = c, cat_cap = la + lb;
      }
      memcpy(cat, part[0], la), memcpy(cat + la, part[1], lb);
      int32_t a, b, m;
      if ((err = sdc__sym_intern(t, part[0], la, &a)) || (err = sdc__sym_intern(t, part[1], lb, &b)) ||
          (err = sdc__sym_intern(t, cat, la + lb, &m)))
        break;
      sdc__pair_put(t, a, b, (int32_t)line - 1, m);
    }
    if (!nl) break;
    p = nl + 1;
  }
  if (cat != small) free(cat);
  if (err == SDC_ENOMEM) sdc_seterr(err, "%s: out of memory", label);
  return err;
}

/* Builds a tokenizer from file contents; labels name the sources in errors. */
static int sdc__build(sdc_tokenizer **out, const char *vocab_json, const char *vocab_label, const char *merges_txt,
                      const char *merges_label, const sdc__spec *spec) {
  *out = NULL;
  sdc_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return sdc_seterr(SDC_ENOMEM, "tokenizer: out of memory");
  int32_t max_id = -1;
  int err = sdc__load_vocab(t, vocab_json, vocab_label, &max_id);
  if (!err) err = sdc__load_merges(t, merges_txt, merges_label);
  /* GPT-2 bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the rest for 256 + n. */
  for (int b = 0, n_other = 0; !err && b < 256; b++) {
    int keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    char s[16];
    size_t len = (size_t)utf8proc_encode_char(keep ? b : 256 + n_other++, (utf8proc_uint8_t *)s);
    memcpy(s + len, "</w>", 4);
    if (sdc__sym_intern(t, s, len, &t->byte_sym[b]) || sdc__sym_intern(t, s, len + 4, &t->byte_end_sym[b]))
      err = sdc_seterr(SDC_ENOMEM, "tokenizer: out of memory");
  }
  if (!err && (sdc__sym_intern(t, sdc__sot, strlen(sdc__sot), &t->sot_sym) ||
               sdc__sym_intern(t, sdc__eot, strlen(sdc__eot), &t->eot_sym)))
    err = sdc_seterr(SDC_ENOMEM, "tokenizer: out of memory");
  /* Added tokens in transformers' order: added_tokens_decoder, bos, eos, unk, pad, additional. */
  int32_t next_id = max_id + 1, ignored;
  for (int k = 0; !err && k < spec->n_dec; k++)
    if (spec->dec_id[k] >= next_id) next_id = spec->dec_id[k] + 1;
  for (int k = 0; !err && k < spec->n_dec; k++) err = sdc__add_token(t, spec->dec_str[k], spec->dec_id[k], &next_id, &ignored);
  if (!err) err = sdc__add_token(t, spec->bos ? spec->bos : sdc__sot, -1, &next_id, &t->bos_id);
  if (!err) err = sdc__add_token(t, spec->eos ? spec->eos : sdc__eot, -1, &next_id, &t->eos_id);
  if (!err) err = sdc__add_token(t, spec->unk ? spec->unk : sdc__eot, -1, &next_id, &t->unk_id);
  if (!err) err = sdc__add_token(t, spec->pad ? spec->pad : spec->eos ? spec->eos : sdc__eot, -1, &next_id, &t->pad_id);
  for (int k = 0; !err && k < spec->n_extra; k++) err = sdc__add_token(t, spec->extra[k], -1, &next_id, &ignored);
  if (err == SDC_ENOMEM) sdc_seterr(err, "tokenizer: out of memory");
  if (!err && !(t->sym_id = malloc((size_t)t->n_syms * sizeof *t->sym_id)))
    err = sdc_seterr(SDC_ENOMEM, "tokenizer: out of memory");
  if (err) { sdc_tokenizer_free(t); return err; }
  /* An emitted string is looked up among the added tokens first, then the vocab, else unk. */
  for (int64_t k = 0; k < t->n_syms; k++) t->sym_id[k] = t->sym_vocab[k] >= 0 ? t->sym_vocab[k] : t->unk_id;
  for (int k = 0; k < t->n_added; k++) {
    int32_t sym = sdc__sym_find(t, t->added[k].str, t->added[k].len);
    if (sym >= 0) t->sym_id[sym] = t->added[k].id;
  }
  t->max_length = spec->max_length;
  *out = t;
  return SDC_OK;
}

int sdc_tokenizer_load_mem(sdc_tokenizer **tok, const char *vocab_json, const char *merges_txt, const char *pad_token) {
  if (!tok) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_load_mem: NULL argument");
  *tok = NULL;
  if (!vocab_json || !merges_txt) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_load_mem: NULL argument");
  sdc__spec spec = {.pad = pad_token, .max_length = SDC__DEFAULT_MAX_LENGTH};
  return sdc__build(tok, vocab_json, "vocab (memory)", merges_txt, "merges (memory)", &spec);
}

/* data/clip-vocab, embedded by clip_vocab.S (NUL-terminated). */
extern const char sdc__clip_vocab_json[], sdc__clip_merges_txt[];

int sdc_tokenizer_load_builtin(sdc_tokenizer **tok, const char *pad_token) {
  if (!tok) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_load_builtin: NULL argument");
  *tok = NULL;
  sdc__spec spec = {.pad = pad_token, .max_length = SDC__DEFAULT_MAX_LENGTH};
  return sdc__build(tok, sdc__clip_vocab_json, "built-in CLIP vocab.json", sdc__clip_merges_txt,
                    "built-in CLIP merges.txt", &spec);
}

/* Reads an optional JSON object; *root is NULL when the file does not exist. */
static int sdc__read_json_opt(const char *path, cJSON **root /* OUT */) {
  *root = NULL;
  struct stat st;
  if (stat(path, &st) != 0 && errno == ENOENT) return SDC_OK;
  char *txt = NULL;
  size_t n = 0;
  int err = sdc_read_file(path, &txt, &n);
  if (err) return err;
  const char *end = NULL;
  *root = cJSON_ParseWithLengthOpts(txt, n, &end, 0);
  ptrdiff_t at = end ? end - txt : 0;
  free(txt);
  if (!*root) return sdc_seterr(SDC_EFORMAT, "%s: invalid JSON near byte %td", path, at);
  if (!cJSON_IsObject(*root)) {
    cJSON_Delete(*root), *root = NULL;
    return sdc_seterr(SDC_EFORMAT, "%s: expected a JSON object", path);
  }
  return SDC_OK;
}

/* A token field: a string or an AddedToken object {"content": ...}; absent or null keeps *out. */
static int sdc__token_value(const cJSON *v, const char *path, const char *key, const char **out /* OUT */) {
  if (!v || cJSON_IsNull(v)) return SDC_OK;
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  if (!cJSON_IsString(v))
    return sdc_seterr(SDC_ECONFIG, "%s: %s must be a string or an object with a string \"content\"", path, key);
  *out = v->valuestring;
  return SDC_OK;
}

/* Reads the special-token fields of one config file into spec. */
static int sdc__read_specials(const cJSON *root, const char *path, sdc__spec *spec) {
  static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
  const char **dst[] = {&spec->bos, &spec->eos, &spec->unk, &spec->pad};
  for (int k = 0; k < 4; k++) {
    int err = sdc__token_value(cJSON_GetObjectItemCaseSensitive(root, keys[k]), path, keys[k], dst[k]);
    if (err) return err;
  }
  const cJSON *extra = cJSON_GetObjectItemCaseSensitive(root, "additional_special_tokens");
  if (extra && !cJSON_IsNull(extra)) {
    if (!cJSON_IsArray(extra))
      return sdc_seterr(SDC_ECONFIG, "%s: additional_special_tokens must be a list", path);
    int n = cJSON_GetArraySize(extra);
    const char **list = realloc(spec->extra, (size_t)(n + 1) * sizeof *list);
    if (!list) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
    spec->extra = list, spec->n_extra = 0; /* a later file replaces the list */
    for (const cJSON *e = extra->child; e; e = e->next) {
      list[spec->n_extra] = NULL;
      int err = sdc__token_value(e, path, "additional_special_tokens[]", &list[spec->n_extra]);
      if (err) return err;
      if (list[spec->n_extra]) spec->n_extra++;
    }
  }
  return SDC_OK;
}

/* tokenizer_config.json only: model_max_length and added_tokens_decoder. */
static int sdc__read_config(const cJSON *root, const char *path, sdc__spec *spec) {
  const cJSON *ml = cJSON_GetObjectItemCaseSensitive(root, "model_max_length");
  if (ml && !cJSON_IsNull(ml)) {
    double v = ml->valuedouble;
    if (!cJSON_IsNumber(ml) || v < 2 || (v <= SDC__MAX_LENGTH_LIMIT && v != (double)(int64_t)v))
      return sdc_seterr(SDC_ECONFIG, "%s: model_max_length must be an integer >= 2", path);
    if (v <= SDC__MAX_LENGTH_LIMIT) spec->max_length = (int64_t)v;
  }
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder");
  if (!dec || cJSON_IsNull(dec)) return SDC_OK;
  if (!cJSON_IsObject(dec)) return sdc_seterr(SDC_ECONFIG, "%s: added_tokens_decoder must be an object", path);
  int n = cJSON_GetArraySize(dec);
  spec->dec_str = calloc((size_t)n + 1, sizeof *spec->dec_str);
  spec->dec_id = calloc((size_t)n + 1, sizeof *spec->dec_id);
  if (!spec->dec_str || !spec->dec_id) return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  for (const cJSON *e = dec->child; e; e = e->next) {
    char *endp = NULL;
    errno = 0;
    long long id = strtoll(e->string, &endp, 10);
    const char *content = NULL;
    if (!*e->string || *endp || errno || id < 0 || id >= INT32_MAX)
      return sdc_seterr(SDC_ECONFIG, "%s: added_tokens_decoder key \"%.40s\" is not a token id", path, e->string);
    int err = sdc__token_value(e, path, "added_tokens_decoder entry", &content);
    if (err) return err;
    if (!content)
      return sdc_seterr(SDC_ECONFIG, "%s: added_tokens_decoder[\"%s\"] has no content", path, e->string);
    spec->dec_str[spec->n_dec] = content, spec->dec_id[spec->n_dec++] = (int32_t)id;
  }
  return SDC_OK;
}

int sdc_tokenizer_load(sdc_tokenizer **tok, const char *dir) {
  if (!tok) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_load: NULL argument");
  *tok = NULL;
  if (!dir) return sdc_seterr(SDC_EINVAL, "sdc_tokenizer_load: NULL dir");
  size_t n = strlen(dir) + 32;
  char *vocab_path = malloc(n), *merges_path = malloc(n), *cfg_path = malloc(n), *map_path = malloc(n);
  char *vocab = NULL, *merges = NULL;
  cJSON *cfg = NULL, *map = NULL;
  sdc__spec spec = {.max_length = SDC__DEFAULT_MAX_LENGTH};
  int err = SDC_OK;
  if (!vocab_path || !merges_path || !cfg_path || !map_path) {
    err = sdc_seterr(SDC_ENOMEM, "%s: out of memory", dir);
    goto done;
  }
  snprintf(vocab_path, n, "%s/vocab.json", dir);
  snprintf(merges_path, n, "%s/merges.txt", dir);
  snprintf(cfg_path, n, "%s/tokenizer_config.json", dir);
  snprintf(map_path, n, "%s/special_tokens_map.json", dir);
  struct stat st;
  if (stat(dir, &st) != 0) {
    err = sdc_seterr(SDC_EIO, "tokenizer folder %s: %s", dir, strerror(errno));
    goto done;
  }
  if ((err = sdc_read_file(vocab_path, &vocab, NULL)) || (err = sdc_read_file(merges_path, &merges, NULL)) ||
      (err = sdc__read_json_opt(cfg_path, &cfg)) || (err = sdc__read_json_opt(map_path, &map)))
    goto done;
  /* special_tokens_map.json overrides tokenizer_config.json, as in from_pretrained(). */
  if (cfg && ((err = sdc__read_config(cfg, cfg_path, &spec)) || (err = sdc__read_specials(cfg, cfg_path, &spec))))
    goto done;
  if (map && (err = sdc__read_specials(map, map_path, &spec))) goto done;
  err = sdc__build(tok, vocab, vocab_path, merges, merges_path, &spec);
done:
  free(vocab_path), free(merges_path), free(cfg_path), free(map_path);
  free(vocab), free(merges);
  free(spec.extra), free(spec.dec_str), free(spec.dec_id);
  cJSON_Delete(cfg), cJSON_Delete(map);
  return err;
}
