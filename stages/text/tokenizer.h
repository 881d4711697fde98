/* tokenizer.h - CLIP byte-level BPE tokenizer, matching transformers' slow CLIPTokenizer without ftfy. */
#ifndef SDC_TOKENIZER_H
#define SDC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sdc_tokenizer sdc_tokenizer;

/* Loads vocab.json and merges.txt from dir (both required) plus the optional
 * tokenizer_config.json and special_tokens_map.json (bos/eos/unk/pad token
 * strings, additional_special_tokens, added_tokens_decoder, model_max_length;
 * special_tokens_map.json wins over tokenizer_config.json, as in transformers).
 * Defaults: bos <|startoftext|>, eos and unk <|endoftext|>, pad = eos, 77.
 * As in transformers, only merges.txt lines 2..48895 are used (line 1 is the
 * "#version" header). On success *tok is owned by the caller (sdc_tokenizer_free);
 * on error *tok is NULL and the message names the file and the culprit. */
int sdc_tokenizer_load(sdc_tokenizer **tok /* OUT */, const char *dir);

/* Same from in-memory file contents (for a built-in vocabulary). pad_token may
 * be NULL (pad = eos); the other specials and max length take the defaults. */
int sdc_tokenizer_load_mem(sdc_tokenizer **tok /* OUT */, const char *vocab_json, const char *merges_txt,
                           const char *pad_token);

/* The CLIP vocabulary built into the binaries (data/clip-vocab: OpenAI's CLIP
 * BPE, MIT), for single-file checkpoints that come without a tokenizer folder.
 * pad_token: NULL pads with <|endoftext|> (SD 1.x), "!" as SD 2.x does. */
int sdc_tokenizer_load_builtin(sdc_tokenizer **tok /* OUT */, const char *pad_token);

void sdc_tokenizer_free(sdc_tokenizer *tok);

/* Tokenizes NUL-terminated UTF-8 text into exactly n_ids ids (normally
 * sdc_tokenizer_max_length()): bos, the tokens truncated to n_ids - 2, eos,
 * then the pad id. Invalid UTF-8 or n_ids < 2 => SDC_EINVAL (checked before
 * anything is written); on SDC_ENOMEM ids may be partly written. Thread-safe:
 * tok is only read; scratch memory is allocated per call. */
int sdc_tokenizer_encode(const sdc_tokenizer *tok, const char *text, int32_t *ids /* OUT [n_ids] */,
                         int64_t n_ids);

/* Same, and *n_tokens gets how many tokens the text has before the cut
 * (without bos/eos): more than n_ids - 2 means the end was dropped. */
int sdc_tokenizer_encode_count(const sdc_tokenizer *tok, const char *text, int32_t *ids /* OUT [n_ids] */, int64_t n_ids,
                               int64_t *n_tokens /* OUT */);

/* model_max_length (77 for Stable Diffusion). */
int64_t sdc_tokenizer_max_length(const sdc_tokenizer *tok);

/* Ids of the bos, eos and pad tokens; any pointer may be NULL. */
void sdc_tokenizer_special_ids(const sdc_tokenizer *tok, int32_t *bos /* OUT */, int32_t *eos /* OUT */,
                               int32_t *pad /* OUT */);

/* Internal, for tests: BPE of one pre-tokenized word (raw UTF-8 bytes of one
 * regex match), writing at most cap ids; returns the full id count, or a
 * negative error code. naive != 0 selects the O(n^2) transcription of
 * transformers' loop that the fast heap version must agree with. */
int64_t sdc__tokenizer_bpe(const sdc_tokenizer *tok, const char *word, size_t n_bytes, int naive,
                           int32_t *ids /* OUT [cap] */, int64_t cap);

#endif
