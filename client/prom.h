/* prom.h - reading Prometheus text format 0.0.4 and fetching it with a plain HTTP/1.0 GET (sdc bench's scrapes). */
#ifndef SDC_PROM_H
#define SDC_PROM_H

#include <stddef.h>

/* One sample line: name{labels} value. key is the series' canonical form, name{a="x",b="y"} with the
 * labels sorted by name and values escaped as the format escapes them, so two scrapes of one series
 * compare equal whatever order a server printed its labels in. */
typedef struct {
  char *key, *name;
  int n_labels;
  char **label_names, **label_values; /* unescaped */
  double value;                       /* +Inf, -Inf and NaN as C's INFINITY, -INFINITY, NAN */
} sdc_prom_sample;

/* Every sample of one scrape, in the order read; owned, free with sdc_prom_set_free. */
typedef struct {
  sdc_prom_sample *samples;
  size_t n, cap;
  size_t n_bad_lines; /* lines that were neither a comment, blank, nor a well-formed sample: skipped */
} sdc_prom_set;

/* Parses n bytes of text into *out (zeroed first). Comments (# HELP, # TYPE, anything after #), blank
 * lines and an optional timestamp after the value are accepted; a malformed line is skipped and counted
 * in n_bad_lines, never fatal, so one odd series cannot blank a whole scrape. Label values may hold
 * escaped quotes, backslashes and newlines; values may be +Inf, -Inf, NaN. SDC_ENOMEM is the only error
 * (then *out is freed). */
int sdc_prom_parse(sdc_prom_set *out /* OUT */, const char *text, size_t n);
/* Frees what set owns and zeroes it; a zeroed set is fine. */
void sdc_prom_set_free(sdc_prom_set *set);

/* The sample whose canonical key equals key, or NULL. */
const sdc_prom_sample *sdc_prom_find(const sdc_prom_set *set, const char *key);
/* The value of label name on s, or NULL when s has no such label. */
const char *sdc_prom_label(const sdc_prom_sample *s, const char *name);
/* How much a counter series grew from before to after: after - before; after itself when before lacks
 * the series (created since, so it started at 0) or when after < before (the process restarted and the
 * counter began again at 0, as Prometheus' rate() reads it). */
double sdc_prom_counter_delta(const sdc_prom_set *before, const sdc_prom_sample *after);

/* GET url (http://host[:port][/path]; no TLS) with HTTP/1.0, waiting at most timeout_ms for the connect
 * and for each read. On success *body is the response body (heap, NUL-terminated, the caller frees) of
 * *n bytes; chunked transfer encoding is undone. Errors name the URL: SDC_EINVAL (not an http:// URL),
 * SDC_EIO (no answer, refused, timed out, a status other than 200, over 32 MiB), SDC_ENOMEM. */
int sdc_prom_http_get(const char *url, int timeout_ms, char **body /* OUT */, size_t *n /* OUT */);

#endif
