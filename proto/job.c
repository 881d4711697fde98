/* job.c - parsing, validating and writing the job JSON of the Redis job contract (docs/jobs.md). */
#include "job.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "utf8.h"

static const char *const sdc__states[] = {"unknown", "queued", "running", "done", "failed", "cancelled"};

/* In sdc_sched_kind order; tests/test_job.c checks it against stages/scheduler.c. */
static const char *const sdc__schedulers[] = {"ddim", "pndm", "ddpm",     "euler",           "euler_a",
                                              "heun", "lms",  "dpmpp_2m", "dpmpp_2m_karras", "unipc", "lcm"};
#define SDC__N_SCHEDULERS ((int)(sizeof sdc__schedulers / sizeof *sdc__schedulers))

const char *sdc_job_state_name(sdc_job_state s) {
  return (unsigned)s < sizeof sdc__states / sizeof *sdc__states ? sdc__states[s] : "unknown";
}

sdc_job_state sdc_job_state_parse(const char *s) {
  for (int i = SDC_JOB_QUEUED; s && i <= SDC_JOB_CANCELLED; i++)
    if (strcmp(s, sdc__states[i]) == 0) return (sdc_job_state)i;
  return SDC_JOB_UNKNOWN;
}

int sdc_job_state_final(sdc_job_state s) { return s == SDC_JOB_DONE || s == SDC_JOB_FAILED || s == SDC_JOB_CANCELLED; }

const char *sdc_job_scheduler_name(int i) { return i >= 0 && i < SDC__N_SCHEDULERS ? sdc__schedulers[i] : NULL; }

int sdc_job_scheduler_valid(const char *name) {
  for (int i = 0; name && i < SDC__N_SCHEDULERS; i++)
    if (strcmp(name, sdc__schedulers[i]) == 0) return 1;
  return 0;
}

int sdc_job_id_valid(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n < 1 || n > SDC_MAX_JOB_ID) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-')) /* no ':': "sdc:job:<a>:image:0" must never be job <b>'s hash */
      return 0;
  }
  return 1;
}

void sdc_job_key(char *out, const char *fmt, const char *id) { snprintf(out, SDC_JOB_KEY_MAX, fmt, id); }

void sdc_job_image_key(char *out, const char *id, int i) {
  snprintf(out, SDC_JOB_KEY_MAX, SDC_JOB_IMAGE_KEY_FMT, id, i);
}

void sdc_job_init(sdc_job *job) {
  memset(job, 0, sizeof *job);
  job->steps = 50;
  job->guidance_scale = 7.5;
  job->num_images = 1;
}

void sdc_job_free(sdc_job *job) {
  free(job->prompt);
  free(job->negative_prompt);
  free(job->prompt_2);
  free(job->negative_prompt_2);
  free(job->init_image.key), free(job->init_image.data);
  free(job->mask.key), free(job->mask.data);
  sdc_job_init(job);
}

double sdc_job_strength(const sdc_job *job) {
  if (job->has_strength) return job->strength;
  return job->mask.key || job->mask.data ? 1.0 : 0.8; /* as sdc generate and diffusers' pipelines */
}

int sdc_job_lora_name_valid(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n > SDC_MAX_LORA_NAME || name[0] == '.') return 0; /* no ".", "..", hidden files */
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return 0;
  }
  return 1;
}

/* ------------------------------------------------------------- base64 */

static const char sdc__b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int sdc__b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int sdc_base64_decode(const char *s, size_t n, const char *label, uint8_t **out, size_t *out_n) {
  *out = NULL, *out_n = 0;
  if (n % 4) return sdc_seterr(SDC_EINVAL, "%s: base64 of %zu characters is not a multiple of 4", label, n);
  size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
  uint8_t *p = malloc(n / 4 * 3 + 1);
  if (!p) return sdc_seterr(SDC_ENOMEM, "%s: out of memory for %zu base64 characters", label, n);
  size_t k = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    for (int j = 0; j < 4; j++) {
      v[j] = i + j >= n - pad ? 0 : sdc__b64_val((unsigned char)s[i + j]);
      if (v[j] < 0) {
        free(p);
        return sdc_seterr(SDC_EINVAL, "%s: not base64 at character %zu", label, i + j);
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    p[k++] = (uint8_t)(w >> 16), p[k++] = (uint8_t)(w >> 8), p[k++] = (uint8_t)w;
  }
  *out = p, *out_n = k - pad;
  return SDC_OK;
}

char *sdc_base64_encode(const uint8_t *p, size_t n) {
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (!s) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    s[k++] = sdc__b64[w >> 18 & 63], s[k++] = sdc__b64[w >> 12 & 63];
    s[k++] = i + 1 < n ? sdc__b64[w >> 6 & 63] : '=';
    s[k++] = i + 2 < n ? sdc__b64[w & 63] : '=';
  }
  s[k] = 0;
  return s;
}

/* ------------------------------------------------------------ messages */

/* ---------------------------------------------------------- validation */

static int sdc__check_text(const char *field, const char *s) {
  size_t n = strlen(s);
  if (n > SDC_MAX_PROMPT_BYTES)
    return sdc_seterr(SDC_EINVAL, "job field '%s': %zu bytes; the limit is %d", field, n, SDC_MAX_PROMPT_BYTES);
  long bad = sdc_utf8_invalid_at(s, n);
  if (bad >= 0) return sdc_seterr(SDC_EINVAL, "job field '%s': not valid UTF-8 at byte %ld", field, bad);
  return SDC_OK;
}

static int sdc__check_size(const char *field, int64_t v) {
  if (v == 0 || (v >= SDC_MIN_IMAGE_SIDE && v <= SDC_MAX_IMAGE_SIDE && v % 8 == 0)) return SDC_OK;
  return sdc_seterr(SDC_EINVAL,
                    "job field '%s': %lld is not a multiple of 8 in [%d, %d] (or 0 for the model's native size)", field,
                    (long long)v, SDC_MIN_IMAGE_SIDE, SDC_MAX_IMAGE_SIDE);
}

/* An SDXL micro-conditioning pair ([height, width] or [top, left]): both in lo..SDC_MAX_MICRO_COND, as
 * stages/sched/denoise.c checks them against the model. */
static int sdc__check_pair(const char *field, const char *what, const int64_t v[2], int64_t lo) {
  if (v[0] >= lo && v[1] >= lo && v[0] <= SDC_MAX_MICRO_COND && v[1] <= SDC_MAX_MICRO_COND) return SDC_OK;
  return sdc_seterr(SDC_EINVAL, "job field '%s': [%lld, %lld] is out of range: %s, each in %lld..%d", field,
                    (long long)v[0], (long long)v[1], what, (long long)lo, SDC_MAX_MICRO_COND);
}

int sdc_job_validate(const sdc_job *job) {
  char q[200];
  int err;
  if (job->id[0] && !sdc_job_id_valid(job->id))
    return sdc_seterr(SDC_EINVAL, "job field 'id': %s is not 1..%d characters of [A-Za-z0-9._-]",
                      sdc_json_quote(q, sizeof q, job->id), SDC_MAX_JOB_ID);
  if (!job->prompt) return sdc_seterr(SDC_EINVAL, "job field 'prompt': missing (it is required)");
  if ((err = sdc__check_text("prompt", job->prompt))) return err;
  if (job->negative_prompt && (err = sdc__check_text("negative_prompt", job->negative_prompt))) return err;
  if (job->prompt_2 && (err = sdc__check_text("prompt_2", job->prompt_2))) return err;
  if (job->negative_prompt_2 && (err = sdc__check_text("negative_prompt_2", job->negative_prompt_2))) return err;
  /* {0, 0}: absent (a given size is never 0) */
  if ((job->original_size[0] || job->original_size[1]) &&
      (err = sdc__check_pair("original_size", "[height, width]", job->original_size, 1)))
    return err;
  if ((job->target_size[0] || job->target_size[1]) &&
      (err = sdc__check_pair("target_size", "[height, width]", job->target_size, 1)))
    return err;
  if (job->has_crop && (err = sdc__check_pair("crops_coords_top_left", "[top, left]", job->crops_coords_top_left, 0)))
    return err;
  if ((err = sdc__check_size("width", job->width)) || (err = sdc__check_size("height", job->height))) return err;
  if (job->steps < 1 || job->steps > SDC_MAX_STEPS)
    return sdc_seterr(SDC_EINVAL, "job field 'steps': %lld is out of range [1, %d]", (long long)job->steps,
                      SDC_MAX_STEPS);
  if (!isfinite(job->guidance_scale) || job->guidance_scale < 0)
    return sdc_seterr(SDC_EINVAL, "job field 'guidance_scale': %g is not a finite number >= 0", job->guidance_scale);
  if (job->scheduler[0] && !sdc_job_scheduler_valid(job->scheduler))
    return sdc_seterr(SDC_EINVAL,
                      "job field 'scheduler': %s is unknown (ddim, pndm, ddpm, euler, euler_a, heun, lms, dpmpp_2m, "
                      "dpmpp_2m_karras, unipc, lcm)",
                      sdc_json_quote(q, sizeof q, job->scheduler));
  if (job->has_seed && job->seed >= SDC_SEED_LIMIT)
    return sdc_seterr(SDC_EINVAL, "job field 'seed': %llu is not below 2^53", (unsigned long long)job->seed);
  if (job->num_images < 1 || job->num_images > SDC_MAX_IMAGES)
    return sdc_seterr(SDC_EINVAL, "job field 'num_images': %lld is out of range [1, %d]", (long long)job->num_images,
                      SDC_MAX_IMAGES);
  const int has_init = job->init_image.key || job->init_image.data, has_mask = job->mask.key || job->mask.data;
  if (has_mask && !has_init)
    return sdc_seterr(SDC_EINVAL, "job field 'mask': given without 'init_image' (inpainting needs both)");
  if (job->has_strength && (!isfinite(job->strength) || job->strength <= 0 || job->strength > 1))
    return sdc_seterr(SDC_EINVAL, "job field 'strength': %g is not a number in (0, 1]", job->strength);
  if (job->has_strength && !has_init)
    return sdc_seterr(SDC_EINVAL, "job field 'strength': given without 'init_image' (text-to-image has none)");
  const sdc_job_image *imgs[2] = {&job->init_image, &job->mask};
  for (int i = 0; i < 2; i++) {
    const char *name = i ? "mask" : "init_image";
    if (imgs[i]->key && imgs[i]->data)
      return sdc_seterr(SDC_EINVAL, "job field '%s': both a key and inline bytes", name);
    if (imgs[i]->key) {
      size_t n = strlen(imgs[i]->key);
      if (n < 1 || n > SDC_MAX_IMAGE_KEY)
        return sdc_seterr(SDC_EINVAL, "job field '%s': a key of %zu bytes; keys are 1..%d bytes", name, n,
                          SDC_MAX_IMAGE_KEY);
      if (strncmp(imgs[i]->key, SDC_JOB_IMAGE_KEY_RESERVED, strlen(SDC_JOB_IMAGE_KEY_RESERVED)) == 0)
        return sdc_seterr(SDC_EINVAL, "job field '%s': key %s is in the reserved \"sdc:\" namespace (job state and "
                          "results are not inputs)", name, sdc_json_quote(q, sizeof q, imgs[i]->key));
    }
    if (imgs[i]->data && imgs[i]->n < 1) return sdc_seterr(SDC_EINVAL, "job field '%s': empty inline bytes", name);
    if (imgs[i]->data && imgs[i]->n > SDC_MAX_INPUT_IMAGE_BYTES)
      return sdc_seterr(SDC_EINVAL, "job field '%s': %zu inline bytes; the limit is %d", name, imgs[i]->n,
                        SDC_MAX_INPUT_IMAGE_BYTES);
  }
  if (job->n_loras < 0 || job->n_loras > SDC_MAX_LORAS)
    return sdc_seterr(SDC_EINVAL, "job field 'loras': %d entries; the limit is %d", job->n_loras, SDC_MAX_LORAS);
  for (int i = 0; i < job->n_loras; i++) {
    if (!sdc_job_lora_name_valid(job->loras[i].name))
      return sdc_seterr(SDC_EINVAL, "job field 'loras[%d].name': %s is not 1..%d characters of [A-Za-z0-9._-] "
                        "starting with no '.' (a name in the workers' --lora-dir, never a path)", i,
                        sdc_json_quote(q, sizeof q, job->loras[i].name), SDC_MAX_LORA_NAME);
    if (!isfinite(job->loras[i].multiplier))
      return sdc_seterr(SDC_EINVAL, "job field 'loras[%d].multiplier': %g is not finite", i, job->loras[i].multiplier);
  }
  if (job->timeout_ms && (job->timeout_ms < SDC_COORD_MIN_JOB_TIMEOUT_MS || job->timeout_ms > SDC_COORD_MAX_JOB_TIMEOUT_MS))
    return sdc_seterr(SDC_EINVAL, "job field 'timeout_ms': %lld is out of range [%d, %d]", (long long)job->timeout_ms,
                      SDC_COORD_MIN_JOB_TIMEOUT_MS, SDC_COORD_MAX_JOB_TIMEOUT_MS);
  return SDC_OK;
}

/* --------------------------------------------------------------- parse */

enum {
  F_ID, F_PROMPT, F_NEG, F_WIDTH, F_HEIGHT, F_STEPS, F_GUIDANCE, F_SCHED, F_SEED, F_NUM, F_TIMEOUT, F_STRENGTH,
  F_INIT, F_MASK, F_LORAS, F_PROMPT2, F_NEG2, F_ORIG, F_CROP, F_TARGET, F_COUNT
};
static const char *const sdc__fields[F_COUNT] = {
    "id",         "prompt",   "negative_prompt", "width",      "height", "steps", "guidance_scale", "scheduler", "seed",
    "num_images", "timeout_ms", "strength",      "init_image", "mask",   "loras", "prompt_2", "negative_prompt_2",
    "original_size", "crops_coords_top_left", "target_size"};

/* original_size / target_size [height, width], crops_coords_top_left [top, left]: exactly two integers, each in
 * lo..SDC_MAX_MICRO_COND. */
static int sdc__parse_pair(sdc_json_fields *jf, const cJSON *f, const char *name, const char *what, int64_t lo,
                           int64_t out[2]) {
  char item[48];
  if (!cJSON_IsArray(f))
    return sdc_seterr(SDC_EINVAL, "job field '%s': expected an array of 2 integers %s, got %s", name, what,
                      sdc_json_describe((char[240]){0}, 240, f));
  const int n = cJSON_GetArraySize(f);
  if (n != 2)
    return sdc_seterr(SDC_EINVAL, "job field '%s': expected an array of 2 integers %s, got %d of them", name, what, n);
  int i = 0, err = SDC_OK;
  for (const cJSON *e = f->child; e && !err; e = e->next, i++) {
    snprintf(item, sizeof item, "%s[%d]", name, i);
    err = sdc_json_as_int(jf, e, item, lo, SDC_MAX_MICRO_COND, &out[i]);
  }
  return err;
}

/* init_image / mask: a string names a Redis key; {"base64": "..."} carries the bytes. */
static int sdc__parse_image(sdc_json_fields *jf, const cJSON *f, const char *name, sdc_job_image *out) {
  char q[200];
  if (cJSON_IsString(f)) {
    if (!(out->key = strdup(f->valuestring))) return sdc_seterr(SDC_ENOMEM, "job field '%s': out of memory", name);
    return SDC_OK;
  }
  if (!cJSON_IsObject(f))
    return sdc_json_fail_value(jf, name, "expected a Redis key name (string) or {\"base64\": \"...\"}", f);
  const cJSON *b = f->child;
  if (!b || b->next || strcmp(b->string, "base64") != 0)
    return sdc_seterr(SDC_EINVAL, "job field '%s': an object must be exactly {\"base64\": \"...\"}%s%s", name,
                      b && strcmp(b->string, "base64") ? ", not " : "",
                      b && strcmp(b->string, "base64") ? sdc_json_quote(q, sizeof q, b->string) : "");
  if (!cJSON_IsString(b)) return sdc_json_fail_value(jf, name, "base64: expected a string", b);
  char label[40];
  snprintf(label, sizeof label, "job field '%s'", name);
  return sdc_base64_decode(b->valuestring, strlen(b->valuestring), label, &out->data, &out->n);
}

/* loras: [{"name": "style", "multiplier": 0.8}, ...] */
static int sdc__parse_loras(sdc_job *job, const cJSON *f) {
  char q[200], field[40];
  if (!cJSON_IsArray(f))
    return sdc_seterr(SDC_EINVAL, "job field 'loras': expected an array of {\"name\", \"multiplier\"}, got %s",
                      sdc_json_describe((char[240]){0}, 240, f));
  int n = cJSON_GetArraySize(f);
  if (n > SDC_MAX_LORAS) return sdc_seterr(SDC_EINVAL, "job field 'loras': %d entries; the limit is %d", n, SDC_MAX_LORAS);
  int i = 0;
  for (const cJSON *e = f->child; e; e = e->next, i++) {
    if (!cJSON_IsObject(e))
      return sdc_seterr(SDC_EINVAL, "job field 'loras[%d]': expected an object {\"name\", \"multiplier\"}, got %s", i,
                        sdc_json_describe((char[240]){0}, 240, e));
    sdc_job_lora *l = &job->loras[i];
    l->multiplier = 1.0;
    int has_name = 0, has_mult = 0;
    for (const cJSON *k = e->child; k; k = k->next) {
      if (strcmp(k->string, "name") == 0 && !has_name++) {
        snprintf(field, sizeof field, "loras[%d].name", i);
        if (!cJSON_IsString(k))
          return sdc_seterr(SDC_EINVAL, "job field '%s': expected a string, got %s", field,
                            sdc_json_describe((char[240]){0}, 240, k));
        if (!sdc_job_lora_name_valid(k->valuestring))
          return sdc_seterr(SDC_EINVAL, "job field '%s': %s is not 1..%d characters of [A-Za-z0-9._-] starting with "
                            "no '.' (a name in the workers' --lora-dir, never a path)", field,
                            sdc_json_quote(q, sizeof q, k->valuestring), SDC_MAX_LORA_NAME);
        snprintf(l->name, sizeof l->name, "%s", k->valuestring);
      } else if (strcmp(k->string, "multiplier") == 0 && !has_mult++) {
        if (cJSON_IsNull(k)) continue;
        if (!cJSON_IsNumber(k) || !isfinite(k->valuedouble))
          return sdc_seterr(SDC_EINVAL, "job field 'loras[%d].multiplier': expected a finite number, got %s", i,
                            sdc_json_describe((char[240]){0}, 240, k));
        l->multiplier = k->valuedouble;
      } else {
        return sdc_seterr(SDC_EINVAL, "job field 'loras[%d]': %s is unknown or given twice (known: name, multiplier)",
                          i, sdc_json_quote(q, sizeof q, k->string));
      }
    }
    if (!has_name) return sdc_seterr(SDC_EINVAL, "job field 'loras[%d].name': missing (it is required)", i);
  }
  job->n_loras = n;
  return SDC_OK;
}

/* cJSON decodes \u0000 into a NUL that would silently cut the string; refuse it. */
static int sdc__has_escaped_nul(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] != '\\') continue;
    if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return 1;
    i++; /* skip the escaped character, so "\\u0000" (an escaped backslash) is text */
  }
  return 0;
}

/* The byte where brackets nest deeper than limit (outside strings), or -1. A job is one flat object, so a
 * deep one is hostile; saying so beats cJSON's "syntax error" at its own depth limit. */
static long sdc__too_deep_at(const char *s, size_t n, int limit) {
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return (long)i;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return -1;
}

/* JSON has no integer type: 20 and 20.0 are the same number. The caller checks the range. */
#define SDC__JOB_INT_LIMIT 9000000000000000000LL

static int sdc__parse_fields(sdc_job *job, const cJSON *root) {
  int seen[F_COUNT] = {0}, err = SDC_OK;
  sdc_json_fields jf;
  sdc_json_fields_init(&jf, root, "job", SDC_EINVAL);
  char q[200];
  const char *s = NULL;
  int64_t v;
  for (const cJSON *f = root->child; f && !err; f = f->next) {
    int k = 0;
    while (k < F_COUNT && strcmp(f->string, sdc__fields[k]) != 0) k++;
    if (k == F_COUNT)
      return sdc_seterr(SDC_EINVAL,
                        "job field %s: unknown (known: id, prompt, negative_prompt, width, height, steps, "
                        "guidance_scale, scheduler, seed, num_images, timeout_ms, strength, init_image, mask, loras, "
                        "prompt_2, negative_prompt_2, original_size, crops_coords_top_left, target_size)",
                        sdc_json_quote(q, sizeof q, f->string));
    if (seen[k]++) return sdc_seterr(SDC_EINVAL, "job field '%s': given more than once", sdc__fields[k]);
    if (cJSON_IsNull(f) && k != F_PROMPT) continue; /* null = absent = default */
    const char *name = sdc__fields[k];
    switch (k) {
      case F_ID:
        if ((err = sdc_json_as_str(&jf, f, name, &s))) break;
        if (!sdc_job_id_valid(s))
          err = sdc_seterr(SDC_EINVAL, "job field 'id': %s is not 1..%d characters of [A-Za-z0-9._-]",
                           sdc_json_quote(q, sizeof q, s), SDC_MAX_JOB_ID);
        else
          snprintf(job->id, sizeof job->id, "%s", s);
        break;
      case F_PROMPT:
      case F_NEG:
      case F_PROMPT2:
      case F_NEG2: {
        if ((err = sdc_json_as_str(&jf, f, name, &s))) break;
        char *copy = strdup(s);
        if (!copy) return sdc_seterr(SDC_ENOMEM, "job field '%s': out of memory", name);
        char **const dst[F_COUNT] = {[F_PROMPT] = &job->prompt, [F_NEG] = &job->negative_prompt,
                                     [F_PROMPT2] = &job->prompt_2, [F_NEG2] = &job->negative_prompt_2};
        *dst[k] = copy;
        break;
      }
      case F_ORIG: err = sdc__parse_pair(&jf, f, name, "[height, width]", 1, job->original_size); break;
      case F_TARGET: err = sdc__parse_pair(&jf, f, name, "[height, width]", 1, job->target_size); break;
      case F_CROP:
        if (!(err = sdc__parse_pair(&jf, f, name, "[top, left]", 0, job->crops_coords_top_left))) job->has_crop = 1;
        break;
      case F_WIDTH: err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &job->width); break;
      case F_HEIGHT: err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &job->height); break;
      case F_STEPS: err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &job->steps); break;
      case F_NUM: err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &job->num_images); break;
      case F_TIMEOUT:
        err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &job->timeout_ms);
        if (!err && job->timeout_ms == 0)
          err = sdc_seterr(SDC_EINVAL, "job field 'timeout_ms': 0 is out of range [%d, %d] (leave it out for the default)",
                           SDC_COORD_MIN_JOB_TIMEOUT_MS, SDC_COORD_MAX_JOB_TIMEOUT_MS);
        break;
      case F_GUIDANCE: {
        if (!cJSON_IsNumber(f))
          err = sdc_json_fail_value(&jf, name, "expected a number", f);
        else
          job->guidance_scale = f->valuedouble;
        break;
      }
      case F_SCHED:
        if ((err = sdc_json_as_str(&jf, f, name, &s))) break;
        if (!sdc_job_scheduler_valid(s))
          err = sdc_seterr(SDC_EINVAL,
                           "job field 'scheduler': %s is unknown (ddim, pndm, ddpm, euler, euler_a, heun, lms, "
                           "dpmpp_2m, dpmpp_2m_karras, unipc, lcm)",
                           sdc_json_quote(q, sizeof q, s));
        else
          snprintf(job->scheduler, sizeof job->scheduler, "%s", s);
        break;
      case F_STRENGTH:
        if (!cJSON_IsNumber(f)) {
          err = sdc_json_fail_value(&jf, name, "expected a number in (0, 1]", f);
        } else if (!isfinite(f->valuedouble) || f->valuedouble <= 0 || f->valuedouble > 1) {
          err = sdc_seterr(SDC_EINVAL, "job field 'strength': %g is not a number in (0, 1]", f->valuedouble);
        } else {
          job->strength = f->valuedouble, job->has_strength = 1;
        }
        break;
      case F_INIT: err = sdc__parse_image(&jf, f, name, &job->init_image); break;
      case F_MASK: err = sdc__parse_image(&jf, f, name, &job->mask); break;
      case F_LORAS: err = sdc__parse_loras(job, f); break;
      case F_SEED:
        if ((err = sdc_json_as_int(&jf, f, name, -SDC__JOB_INT_LIMIT, SDC__JOB_INT_LIMIT, &v))) break;
        if (v < 0) err = sdc_seterr(SDC_EINVAL, "job field 'seed': %lld is negative", (long long)v);
        job->seed = (uint64_t)v, job->has_seed = 1;
        break;
    }
  }
  if (!err && !seen[F_PROMPT]) err = sdc_seterr(SDC_EINVAL, "job field 'prompt': missing (it is required)");
  if (!err && !job->prompt) err = sdc_seterr(SDC_EINVAL, "job field 'prompt': expected a string, got null");
  return err;
}

int sdc_job_parse(sdc_job *job, const char *json, size_t n, const char *fallback_id) {
  sdc_job_init(job);
  if (n > SDC_MAX_JOB_JSON_BYTES)
    return sdc_seterr(SDC_EINVAL, "job JSON: %zu bytes; the limit is %d", n, SDC_MAX_JOB_JSON_BYTES);
  if (sdc__has_escaped_nul(json, n))
    return sdc_seterr(SDC_EINVAL, "job JSON: a string contains \\u0000, which is not allowed");
  long deep = sdc__too_deep_at(json, n, SDC_MAX_JOB_JSON_DEPTH);
  if (deep >= 0)
    return sdc_seterr(SDC_EINVAL, "job JSON: nested more than %d levels deep at byte %ld", SDC_MAX_JOB_JSON_DEPTH, deep);
  /* a private NUL-terminated copy: the input need not be terminated */
  char *text = malloc(n + 1);
  if (!text) return sdc_seterr(SDC_ENOMEM, "job JSON: out of memory");
  memcpy(text, json, n);
  text[n] = 0;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
  int err = SDC_OK;
  if (!root) {
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    err = sdc_seterr(SDC_EINVAL, "job JSON: syntax error at byte %zu of %zu", at, n);
  } else {
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
    if ((size_t)(end - text) != n)
      err = sdc_seterr(SDC_EINVAL, "job JSON: unexpected data after the object at byte %zu", (size_t)(end - text));
    else if (!cJSON_IsObject(root))
      err = sdc_seterr(SDC_EINVAL, "job JSON: expected an object, got %s", sdc_json_describe((char[240]){0}, 240, root));
  }
  if (!err) err = sdc__parse_fields(job, root);
  if (!err && !job->id[0]) {
    if (!fallback_id)
      err = sdc_seterr(SDC_EINVAL, "job field 'id': missing, and no stream entry id to use instead");
    else if (!sdc_job_id_valid(fallback_id))
      err = sdc_seterr(SDC_EINVAL, "job id: stream entry id %s is not a valid job id",
                       sdc_json_quote((char[200]){0}, 200, fallback_id));
    else
      snprintf(job->id, sizeof job->id, "%s", fallback_id);
  }
  if (!err) err = sdc_job_validate(job);
  cJSON_Delete(root);
  free(text);
  if (err) sdc_job_free(job);
  return err;
}

/* ------------------------------------------------------------- writing */

/* An integer as a raw JSON number (cJSON would print large ones with %g). */
static int sdc__add_int(cJSON *o, const char *name, int64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)v);
  return cJSON_AddRawToObject(o, name, buf) != NULL;
}

/* [a, b] of integers. */
static int sdc__add_pair(cJSON *o, const char *name, const int64_t v[2]) {
  char buf[64];
  snprintf(buf, sizeof buf, "[%lld,%lld]", (long long)v[0], (long long)v[1]);
  return cJSON_AddRawToObject(o, name, buf) != NULL;
}

/* The shortest %g form that reads back to the same double. */
static void sdc__fmt_double(char *buf, size_t n, double v) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

int sdc_job_to_json(const sdc_job *job, char **json) {
  *json = NULL;
  int err = sdc_job_validate(job);
  if (err) return err;
  cJSON *o = cJSON_CreateObject();
  int ok = o != NULL;
  if (ok && job->id[0]) ok = cJSON_AddStringToObject(o, "id", job->id) != NULL;
  if (ok) ok = cJSON_AddStringToObject(o, "prompt", job->prompt) != NULL;
  if (ok && job->negative_prompt) ok = cJSON_AddStringToObject(o, "negative_prompt", job->negative_prompt) != NULL;
  if (ok && job->prompt_2) ok = cJSON_AddStringToObject(o, "prompt_2", job->prompt_2) != NULL;
  if (ok && job->negative_prompt_2)
    ok = cJSON_AddStringToObject(o, "negative_prompt_2", job->negative_prompt_2) != NULL;
  if (ok && (job->original_size[0] || job->original_size[1]))
    ok = sdc__add_pair(o, "original_size", job->original_size);
  if (ok && job->has_crop) ok = sdc__add_pair(o, "crops_coords_top_left", job->crops_coords_top_left);
  if (ok && (job->target_size[0] || job->target_size[1])) ok = sdc__add_pair(o, "target_size", job->target_size);
  if (ok && job->width) ok = sdc__add_int(o, "width", job->width);
  if (ok && job->height) ok = sdc__add_int(o, "height", job->height);
  if (ok && job->steps != 50) ok = sdc__add_int(o, "steps", job->steps);
  if (ok && job->guidance_scale != 7.5) {
    char buf[40];
    sdc__fmt_double(buf, sizeof buf, job->guidance_scale);
    ok = cJSON_AddRawToObject(o, "guidance_scale", buf) != NULL;
  }
  if (ok && job->scheduler[0]) ok = cJSON_AddStringToObject(o, "scheduler", job->scheduler) != NULL;
  if (ok && job->has_seed) ok = sdc__add_int(o, "seed", (int64_t)job->seed);
  if (ok && job->num_images != 1) ok = sdc__add_int(o, "num_images", job->num_images);
  if (ok && job->timeout_ms) ok = sdc__add_int(o, "timeout_ms", job->timeout_ms);
  if (ok && job->has_strength) {
    char buf[40];
    sdc__fmt_double(buf, sizeof buf, job->strength);
    ok = cJSON_AddRawToObject(o, "strength", buf) != NULL;
  }
  const sdc_job_image *imgs[2] = {&job->init_image, &job->mask};
  for (int i = 0; ok && i < 2; i++) {
    const char *name = i ? "mask" : "init_image";
    if (imgs[i]->key) {
      ok = cJSON_AddStringToObject(o, name, imgs[i]->key) != NULL;
    } else if (imgs[i]->data) {
      char *b64 = sdc_base64_encode(imgs[i]->data, imgs[i]->n);
      cJSON *img = b64 ? cJSON_AddObjectToObject(o, name) : NULL;
      ok = img && cJSON_AddStringToObject(img, "base64", b64) != NULL;
      free(b64);
    }
  }
  if (ok && job->n_loras) {
    cJSON *arr = cJSON_AddArrayToObject(o, "loras");
    ok = arr != NULL;
    for (int i = 0; ok && i < job->n_loras; i++) {
      cJSON *e = cJSON_CreateObject();
      char buf[40];
      sdc__fmt_double(buf, sizeof buf, job->loras[i].multiplier);
      ok = e && cJSON_AddItemToArray(arr, e) && cJSON_AddStringToObject(e, "name", job->loras[i].name) &&
           cJSON_AddRawToObject(e, "multiplier", buf);
    }
  }
  if (ok) ok = (*json = cJSON_PrintUnformatted(o)) != NULL;
  cJSON_Delete(o);
  return ok ? SDC_OK : sdc_seterr(SDC_ENOMEM, "job JSON: out of memory");
}

/* -------------------------------------------------------------- events */

int sdc_job_event_json(char **out, sdc_job_state state, int64_t step, int64_t steps, const char *error) {
  *out = NULL;
  cJSON *o = cJSON_CreateObject();
  int ok = o && cJSON_AddStringToObject(o, "state", sdc_job_state_name(state));
  if (ok && step >= 0) ok = sdc__add_int(o, "step", step);
  if (ok && steps >= 0) ok = sdc__add_int(o, "steps", steps);
  if (ok && error) ok = cJSON_AddStringToObject(o, "error", error) != NULL;
  if (ok) ok = (*out = cJSON_PrintUnformatted(o)) != NULL;
  cJSON_Delete(o);
  return ok ? SDC_OK : sdc_seterr(SDC_ENOMEM, "job event: out of memory");
}

int sdc_job_event_parse(const char *json, size_t n, sdc_job_state *state, int64_t *step, int64_t *steps) {
  *state = SDC_JOB_UNKNOWN, *step = -1, *steps = -1;
  if (n > SDC_MAX_JOB_JSON_BYTES) return sdc_seterr(SDC_EINVAL, "job event: %zu bytes, too long", n);
  cJSON *o = cJSON_ParseWithLength(json, n);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "state");
  int err = SDC_OK;
  if (!cJSON_IsObject(o) || !cJSON_IsString(s) || !(*state = sdc_job_state_parse(s->valuestring))) {
    err = sdc_seterr(SDC_EINVAL, "job event: not an object with a known \"state\"");
  } else {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "step"), *b = cJSON_GetObjectItemCaseSensitive(o, "steps");
    if (cJSON_IsNumber(a) && a->valuedouble >= 0 && a->valuedouble < 1e15) *step = (int64_t)a->valuedouble;
    if (cJSON_IsNumber(b) && b->valuedouble >= 0 && b->valuedouble < 1e15) *steps = (int64_t)b->valuedouble;
  }
  cJSON_Delete(o);
  return err;
}
