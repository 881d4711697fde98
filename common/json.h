/* json.h - typed fields of a cJSON object with errors that name the source and the field: one reader for
 * model configs, scheduler configs and job JSON. */
#ifndef SDC_JSON_H
#define SDC_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Reads fields of one object. The first bad field's error is kept in `err`
 * (later reads neither overwrite it nor fail): a parser reads every field,
 * then checks err once. Messages read "<label> field '<key>': <why>, got <value>". */
typedef struct {
  const cJSON *root;    /* the object */
  const cJSON *ignored; /* NULL, or a list of keys read as absent (diffusers' _use_default_values) */
  char label[1024];     /* "unet/config.json:" or "job" */
  int code;             /* the error code of a bad field: SDC_ECONFIG, SDC_EINVAL */
  int err;              /* SDC_OK, or the first error */
} sdc_json_fields;

void sdc_json_fields_init(sdc_json_fields *f /* OUT */, const cJSON *root, const char *label, int code);

/* The value of key: NULL when absent or listed in `ignored`; a JSON null is returned as is. */
const cJSON *sdc_json_raw(const sdc_json_fields *f, const char *key);
/* Same, but a JSON null is NULL too (null = absent = default). */
const cJSON *sdc_json_item(const sdc_json_fields *f, const char *key);

/* Records "<label> field '<key>': <why>" unless an error is already kept; returns f->err. */
int sdc_json_fail(sdc_json_fields *f, const char *key, const char *why);
/* Same, with ", got <what the value is>" appended. */
int sdc_json_fail_value(sdc_json_fields *f, const char *key, const char *why, const cJSON *got);

/* Typed getters: absent (or null) gives dflt; a value of the wrong type or out
 * of range records an error and gives dflt. Integers are JSON numbers with an
 * integral value (20 and 20.0 are the same number). */
int64_t sdc_json_int(sdc_json_fields *f, const char *key, int64_t dflt, int64_t lo, int64_t hi);
double sdc_json_num(sdc_json_fields *f, const char *key, double dflt);
int sdc_json_bool(sdc_json_fields *f, const char *key, int dflt);
const char *sdc_json_str(sdc_json_fields *f, const char *key, const char *dflt);
/* The same checks on a value already in hand (e.g. while iterating an object's children). */
int sdc_json_as_int(sdc_json_fields *f, const cJSON *v, const char *key, int64_t lo, int64_t hi, int64_t *out /* OUT */);
int sdc_json_as_str(sdc_json_fields *f, const cJSON *v, const char *key, const char **out /* OUT */);

/* What a JSON value is, for "expected X, got Y": `the string "abc"`, `2.5`, `null`, `an array`. Returns buf. */
const char *sdc_json_describe(char *buf, size_t cap, const cJSON *v);
/* s as a short one-line quote for a message: printable ASCII kept, every other
 * byte as \xNN, cut after 40 bytes with "...". Returns buf. */
const char *sdc_json_quote(char *buf, size_t cap, const char *s);

/* Python's json.dump writes non-finite floats (a scheduler config's lambda_min_clipped: -inf) as bare
 * -Infinity / Infinity / NaN, which JSON (and cJSON) does not have. Rewrites them, outside strings, to the
 * strings "-inf" / "inf" and to null, which the scheduler config parser reads as those values, so that
 * cJSON_Parse reads the text. In place: each replacement is no longer than its token, padded with spaces. */
void sdc_json_nonfinite(char *s);

#endif
