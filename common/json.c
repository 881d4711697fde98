/* json.c - typed fields of a cJSON object with errors that name the source and the field. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

void sdc_json_fields_init(sdc_json_fields *f, const cJSON *root, const char *label, int code) {
  memset(f, 0, sizeof *f);
  f->root = root;
  f->code = code;
  snprintf(f->label, sizeof f->label, "%s", label ? label : "json");
}

const cJSON *sdc_json_raw(const sdc_json_fields *f, const char *key) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(f->root, key), *d;
  if (!it) return NULL;
  cJSON_ArrayForEach(d, f->ignored) if (cJSON_IsString(d) && strcmp(d->valuestring, key) == 0) return NULL;
  return it;
}

const cJSON *sdc_json_item(const sdc_json_fields *f, const char *key) {
  const cJSON *it = sdc_json_raw(f, key);
  return cJSON_IsNull(it) ? NULL : it;
}

int sdc_json_fail(sdc_json_fields *f, const char *key, const char *why) {
  if (!f->err) f->err = sdc_seterr(f->code, "%s field '%s': %s", f->label, key, why);
  return f->err;
}

int sdc_json_fail_value(sdc_json_fields *f, const char *key, const char *why, const cJSON *got) {
  char d[240];
  if (!f->err) f->err = sdc_seterr(f->code, "%s field '%s': %s, got %s", f->label, key, why, sdc_json_describe(d, sizeof d, got));
  return f->err;
}

int sdc_json_as_int(sdc_json_fields *f, const cJSON *v, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
    return sdc_json_fail_value(f, key, "expected an integer", v);
  if (v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
    char why[96];
    snprintf(why, sizeof why, "out of range [%lld, %lld]", (long long)lo, (long long)hi);
    return sdc_json_fail_value(f, key, why, v);
  }
  *out = (int64_t)v->valuedouble;
  return SDC_OK;
}

int sdc_json_as_str(sdc_json_fields *f, const cJSON *v, const char *key, const char **out) {
  if (!cJSON_IsString(v)) return sdc_json_fail_value(f, key, "expected a string", v);
  *out = v->valuestring;
  return SDC_OK;
}

int64_t sdc_json_int(sdc_json_fields *f, const char *key, int64_t dflt, int64_t lo, int64_t hi) {
  const cJSON *it = sdc_json_item(f, key);
  int64_t v = dflt;
  if (it && sdc_json_as_int(f, it, key, lo, hi, &v) != SDC_OK) return dflt;
  return v;
}

double sdc_json_num(sdc_json_fields *f, const char *key, double dflt) {
  const cJSON *it = sdc_json_item(f, key);
  if (!it) return dflt;
  if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
    sdc_json_fail_value(f, key, "expected a number", it);
    return dflt;
  }
  return it->valuedouble;
}

int sdc_json_bool(sdc_json_fields *f, const char *key, int dflt) {
  const cJSON *it = sdc_json_item(f, key);
  if (!it) return dflt;
  if (!cJSON_IsBool(it)) {
    sdc_json_fail_value(f, key, "expected true or false", it);
    return dflt;
  }
  return cJSON_IsTrue(it);
}

const char *sdc_json_str(sdc_json_fields *f, const char *key, const char *dflt) {
  const cJSON *it = sdc_json_item(f, key);
  const char *v = dflt;
  if (it && sdc_json_as_str(f, it, key, &v) != SDC_OK) return dflt;
  return v;
}

const char *sdc_json_quote(char *buf, size_t cap, const char *s) {
  size_t o = 0, i = 0;
  buf[o++] = '"';
  for (; s[i] && i < 40 && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
  }
  if (s[i] && o + 5 < cap) memcpy(buf + o, "...", 3), o += 3;
  buf[o++] = '"';
  buf[o] = 0;
  return buf;
}

const char *sdc_json_describe(char *buf, size_t cap, const cJSON *v) {
  if (cJSON_IsString(v)) {
    char q[200];
    snprintf(buf, cap, "the string %s", sdc_json_quote(q, sizeof q, v->valuestring));
  } else if (cJSON_IsNumber(v)) {
    snprintf(buf, cap, "%.17g", v->valuedouble);
  } else {
    snprintf(buf, cap, "%s",
             cJSON_IsBool(v)    ? (cJSON_IsTrue(v) ? "true" : "false")
             : cJSON_IsNull(v)  ? "null"
             : cJSON_IsArray(v) ? "an array"
                                : "an object");
  }
  return buf;
}

void sdc_json_nonfinite(char *s) {
  static const struct { const char *tok, *to; } reps[] = {{"-Infinity", "\"-inf\""}, {"Infinity", "\"inf\""}, {"NaN", "null"}};
  int in_str = 0;
  for (char *p = s; *p; p++) {
    if (in_str) {
      if (*p == '\\' && p[1]) p++;
      else if (*p == '"') in_str = 0;
      continue;
    }
    if (*p == '"') {
      in_str = 1;
      continue;
    }
    for (size_t i = 0; i < sizeof reps / sizeof *reps; i++) {
      const size_t n = strlen(reps[i].tok), m = strlen(reps[i].to);
      if (strncmp(p, reps[i].tok, n) == 0) {
        memcpy(p, reps[i].to, m);
        memset(p + m, ' ', n - m);
        p += n - 1;
        break;
      }
    }
  }
}
