/* prom.c - Prometheus text format 0.0.4 read into samples with canonical series keys, and a tiny HTTP GET. */
#include "prom.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "buf.h"
#include "error.h"

#define SDC__PROM_MAX_BODY (32u << 20)
#define SDC__PROM_MAX_LABELS 32

/* ------------------------------------------------------------- parsing */


static int sdc__is_name_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static int sdc__is_name_char(int c) { return sdc__is_name_start(c) || (c >= '0' && c <= '9'); }
static int sdc__is_blank(int c) { return c == ' ' || c == '\t'; }

static void sdc__sample_free(sdc_prom_sample *s) {
  free(s->key);
  free(s->name);
  for (int i = 0; i < s->n_labels; i++) free(s->label_names[i]), free(s->label_values[i]);
  free(s->label_names);
  free(s->label_values);
  memset(s, 0, sizeof *s);
}

/* The canonical key: labels sorted by name, values escaped back (\\, \", \n). NULL when memory runs out. */
static char *sdc__sample_key(const sdc_prom_sample *s) {
  int order[SDC__PROM_MAX_LABELS];
  for (int i = 0; i < s->n_labels; i++) order[i] = i;
  for (int i = 1; i < s->n_labels; i++) /* insertion sort: a handful of labels */
    for (int k = i; k > 0 && strcmp(s->label_names[order[k - 1]], s->label_names[order[k]]) > 0; k--) {
      int t = order[k];
      order[k] = order[k - 1], order[k - 1] = t;
    }
  sdc_buf b = {0};
  sdc_buf_puts(&b, s->name);
  if (s->n_labels) sdc_buf_puts(&b, "{");
  for (int i = 0; i < s->n_labels; i++) {
    if (i) sdc_buf_puts(&b, ",");
    sdc_buf_puts(&b, s->label_names[order[i]]);
    sdc_buf_puts(&b, "=\"");
    for (const char *v = s->label_values[order[i]]; *v; v++)
      if (*v == '\\') sdc_buf_puts(&b, "\\\\");
      else if (*v == '"') sdc_buf_puts(&b, "\\\"");
      else if (*v == '\n') sdc_buf_puts(&b, "\\n");
      else sdc_buf_put(&b, v, 1);
    sdc_buf_puts(&b, "\"");
  }
  if (s->n_labels) sdc_buf_puts(&b, "}");
  if (b.oom || !b.p) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

/* Parses one line [p, end) into *s. 1: a sample; 0: malformed; -1: out of memory. */
static int sdc__parse_line(const char *p, const char *end, sdc_prom_sample *s) {
  memset(s, 0, sizeof *s);
  const char *q = p;
  if (q == end || !sdc__is_name_start((unsigned char)*q)) return 0;
  while (q < end && sdc__is_name_char((unsigned char)*q)) q++;
  s->name = strndup(p, (size_t)(q - p));
  s->label_names = calloc(SDC__PROM_MAX_LABELS, sizeof *s->label_names);
  s->label_values = calloc(SDC__PROM_MAX_LABELS, sizeof *s->label_values);
  if (!s->name || !s->label_names || !s->label_values) return -1;
  const char *after_name = q;
  while (q < end && sdc__is_blank((unsigned char)*q)) q++;
  int separated = q > after_name; /* a value must not run into the name; after '}' it may */
  if (q < end && *q == '{') {
    separated = 1;
    q++;
    for (;;) {
      while (q < end && sdc__is_blank((unsigned char)*q)) q++;
      if (q < end && *q == '}') {
        q++;
        break;
      }
      if (q == end || s->n_labels == SDC__PROM_MAX_LABELS || !sdc__is_name_start((unsigned char)*q) || *q == ':')
        return 0;
      const char *n0 = q;
      while (q < end && sdc__is_name_char((unsigned char)*q) && *q != ':') q++;
      const char *n1 = q;
      while (q < end && sdc__is_blank((unsigned char)*q)) q++;
      if (q == end || *q++ != '=') return 0;
      while (q < end && sdc__is_blank((unsigned char)*q)) q++;
      if (q == end || *q++ != '"') return 0;
      sdc_buf v = {0};
      sdc_buf_puts(&v, "");
      int closed = 0;
      while (q < end) {
        char c = *q++;
        if (c == '"') {
          closed = 1;
          break;
        }
        if (c == '\\' && q < end) {
          c = *q++;
          if (c == 'n') c = '\n'; /* \\ and \" are the char itself; other escapes kept as the char */
        }
        sdc_buf_put(&v, &c, 1);
      }
      int i = s->n_labels++;
      s->label_names[i] = strndup(n0, (size_t)(n1 - n0));
      s->label_values[i] = v.p;
      if (v.oom || !v.p || !s->label_names[i]) return -1;
      if (!closed) return 0;
      for (int k = 0; k < i; k++)
        if (!strcmp(s->label_names[k], s->label_names[i])) return 0; /* a label given twice */
      while (q < end && sdc__is_blank((unsigned char)*q)) q++;
      if (q < end && *q == ',') q++;
      else if (q < end && *q == '}') continue;
      else return 0;
    }
  }
  /* the value, then an optional integer timestamp */
  if (!separated) return 0;
  while (q < end && sdc__is_blank((unsigned char)*q)) q++;
  const char *v0 = q;
  while (q < end && !sdc__is_blank((unsigned char)*q)) q++;
  if (q == v0 || q - v0 > 63) return 0;
  char tok[64], *tend;
  snprintf(tok, sizeof tok, "%.*s", (int)(q - v0), v0);
  s->value = strtod(tok, &tend);
  if (*tend) return 0;
  if (isnan(s->value)) s->value = NAN; /* whatever sign or payload strtod gave */
  while (q < end && sdc__is_blank((unsigned char)*q)) q++;
  if (q < end) {
    const char *t0 = q;
    if (*q == '-' || *q == '+') q++;
    while (q < end && *q >= '0' && *q <= '9') q++;
    if (q == t0 || (q == t0 + 1 && (*t0 == '-' || *t0 == '+'))) return 0;
    while (q < end && sdc__is_blank((unsigned char)*q)) q++;
    if (q < end) return 0;
  }
  s->key = sdc__sample_key(s);
  return s->key ? 1 : -1;
}

int sdc_prom_parse(sdc_prom_set *out, const char *text, size_t n) {
  memset(out, 0, sizeof *out);
  const char *p = text, *end = text + n;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end;
    const char *q = p, *e = line_end;
    if (e > q && e[-1] == '\r') e--;
    while (q < e && sdc__is_blank((unsigned char)*q)) q++;
    while (e > q && sdc__is_blank((unsigned char)e[-1])) e--;
    if (q < e && *q != '#') {
      if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        sdc_prom_sample *s = realloc(out->samples, cap * sizeof *s);
        if (!s) goto oom;
        out->samples = s, out->cap = cap;
      }
      sdc_prom_sample *s = &out->samples[out->n];
      int rc = sdc__parse_line(q, e, s);
      if (rc < 0) {
        sdc__sample_free(s);
        goto oom;
      }
      if (rc == 0) {
        sdc__sample_free(s);
        out->n_bad_lines++;
      } else {
        out->n++;
      }
    }
    p = eol ? eol + 1 : end;
  }
  return SDC_OK;
oom:
  sdc_prom_set_free(out);
  return sdc_seterr(SDC_ENOMEM, "out of memory reading a metrics scrape");
}

void sdc_prom_set_free(sdc_prom_set *set) {
  for (size_t i = 0; i < set->n; i++) sdc__sample_free(&set->samples[i]);
  free(set->samples);
  memset(set, 0, sizeof *set);
}

const sdc_prom_sample *sdc_prom_find(const sdc_prom_set *set, const char *key) {
  for (size_t i = 0; i < set->n; i++)
    if (!strcmp(set->samples[i].key, key)) return &set->samples[i];
  return NULL;
}

const char *sdc_prom_label(const sdc_prom_sample *s, const char *name) {
  for (int i = 0; i < s->n_labels; i++)
    if (!strcmp(s->label_names[i], name)) return s->label_values[i];
  return NULL;
}

double sdc_prom_counter_delta(const sdc_prom_set *before, const sdc_prom_sample *after) {
  const sdc_prom_sample *b = sdc_prom_find(before, after->key);
  if (!b || after->value < b->value) return after->value;
  return after->value - b->value;
}

/* ------------------------------------------------------------ HTTP GET */

/* Splits http://host[:port][/path]; host may be [v6]. */
static int sdc__split_url(const char *url, char *host, size_t nh, char *port, size_t np, char *path, size_t npath) {
  if (strncasecmp(url, "http://", 7) != 0)
    return sdc_seterr(SDC_EINVAL, "metrics URL '%s': expected http://HOST[:PORT][/PATH]", url);
  const char *h = url + 7, *h_end, *after;
  if (*h == '[') {
    h_end = strchr(h, ']');
    if (!h_end) return sdc_seterr(SDC_EINVAL, "metrics URL '%s': unclosed [", url);
    h++;
    after = h_end + 1;
  } else {
    h_end = h + strcspn(h, ":/");
    after = h_end;
  }
  if (h_end == h || (size_t)(h_end - h) >= nh) return sdc_seterr(SDC_EINVAL, "metrics URL '%s': no host", url);
  snprintf(host, nh, "%.*s", (int)(h_end - h), h);
  snprintf(port, np, "80");
  if (*after == ':') {
    const char *p0 = after + 1;
    size_t len = strcspn(p0, "/");
    if (len == 0 || len >= np || strspn(p0, "0123456789") != len || atoi(p0) < 1 || atoi(p0) > 65535)
      return sdc_seterr(SDC_EINVAL, "metrics URL '%s': bad port", url);
    snprintf(port, np, "%.*s", (int)len, p0);
    after = p0 + len;
  } else if (*after && *after != '/') {
    return sdc_seterr(SDC_EINVAL, "metrics URL '%s': expected http://HOST[:PORT][/PATH]", url);
  }
  snprintf(path, npath, "%s", *after ? after : "/");
  for (const char *c = path; *c; c++)
    if ((unsigned char)*c <= ' ' || *c == 0x7f) return sdc_seterr(SDC_EINVAL, "metrics URL '%s': blank or control character in the path", url);
  return SDC_OK;
}

/* A socket connected to host:port within timeout_ms, or -1 with the error set. */
static int sdc__connect(const char *url, const char *host, const char *port, int timeout_ms) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) return sdc_seterr(SDC_EIO, "metrics URL '%s': %s", url, gai_strerror(rc)), -1;
  int fd = -1, e = 0;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      e = errno;
      if (e == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        socklen_t len = sizeof e;
        int k = poll(&pfd, 1, timeout_ms);
        if (k == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0) break;
        if (k == 0) e = ETIMEDOUT;
      }
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (fd < 0) sdc_seterr(SDC_EIO, "metrics URL '%s': %s", url, strerror(e ? e : ECONNREFUSED));
  return fd;
}

/* Undoes chunked transfer encoding in place; the decoded length, or -1 when malformed. */
static long sdc__dechunk(char *body, size_t n) {
  size_t r = 0, w = 0;
  for (;;) {
    char *end;
    if (r >= n) return -1;
    unsigned long len = strtoul(body + r, &end, 16);
    char *eol = memchr(body + r, '\n', n - r);
    if (end == body + r || !eol) return -1;
    r = (size_t)(eol - body) + 1;
    if (len == 0) break;
    if (len > n - r) return -1;
    memmove(body + w, body + r, len);
    w += len, r += len;
    if (r < n && body[r] == '\r') r++;
    if (r < n && body[r] == '\n') r++;
  }
  body[w] = 0;
  return (long)w;
}

int sdc_prom_http_get(const char *url, int timeout_ms, char **body, size_t *n) {
  *body = NULL, *n = 0;
  char host[256], port[8], path[2048];
  int err = sdc__split_url(url, host, sizeof host, port, sizeof port, path, sizeof path);
  if (err) return err;
  int fd = sdc__connect(url, host, port, timeout_ms);
  if (fd < 0) return SDC_EIO;
  char req[2600];
  int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
                     path, host, port);
  sdc_buf b = {0};
  int64_t deadline = sdc_clock_mono_ms() + timeout_ms;
  for (int sent = 0; sent < len && !err;) {
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int k = poll(&pfd, 1, timeout_ms);
    ssize_t w = k == 1 ? send(fd, req + sent, (size_t)(len - sent), MSG_NOSIGNAL) : -1;
    if (w < 0 && k == 1 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w <= 0) err = sdc_seterr(SDC_EIO, "metrics URL '%s': cannot send the request: %s", url, k == 1 ? strerror(errno) : "timed out");
    else sent += (int)w;
  }
  /* each read waits at most timeout_ms, the whole response at most 10 of them */
  deadline = sdc_clock_mono_ms() + 10 * (int64_t)timeout_ms;
  while (!err) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t left = deadline - sdc_clock_mono_ms();
    int k = poll(&pfd, 1, left < timeout_ms ? (int)(left > 0 ? left : 0) : timeout_ms);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      err = sdc_seterr(SDC_EIO, "metrics URL '%s': timed out after %d ms", url, timeout_ms);
      break;
    }
    char chunk[16384];
    ssize_t r = recv(fd, chunk, sizeof chunk, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) err = sdc_seterr(SDC_EIO, "metrics URL '%s': %s", url, strerror(errno));
    if (r <= 0) break;
    if (b.n + (size_t)r > SDC__PROM_MAX_BODY) err = sdc_seterr(SDC_EIO, "metrics URL '%s': response over %u bytes", url, SDC__PROM_MAX_BODY);
    else sdc_buf_put(&b, chunk, (size_t)r);
    if (b.oom) err = sdc_seterr(SDC_ENOMEM, "metrics URL '%s': out of memory", url);
  }
  close(fd);
  if (!err && !b.p) err = sdc_seterr(SDC_EIO, "metrics URL '%s': empty response", url);
  int status = 0;
  char *hdr_end = NULL;
  if (!err) {
    if (sscanf(b.p, "HTTP/%*d.%*d %d", &status) != 1)
      err = sdc_seterr(SDC_EIO, "metrics URL '%s': not an HTTP response", url);
    else if (status != 200)
      err = sdc_seterr(SDC_EIO, "metrics URL '%s': HTTP status %d", url, status);
  }
  if (!err) {
    char *a = strstr(b.p, "\r\n\r\n"), *c = strstr(b.p, "\n\n");
    hdr_end = a && (!c || a < c) ? a + 4 : c ? c + 2 : NULL;
    if (!hdr_end) err = sdc_seterr(SDC_EIO, "metrics URL '%s': response headers never end", url);
  }
  if (!err) {
    size_t body_n = b.n - (size_t)(hdr_end - b.p);
    /* chunked is HTTP/1.1's; a server may still send it, so look for the header */
    int chunked = 0;
    for (char *h = strchr(b.p, '\n'); h && h + 1 < hdr_end; h = strchr(h + 1, '\n'))
      if (!strncasecmp(h + 1, "transfer-encoding:", 18)) {
        char *v = h + 19;
        while (*v == ' ' || *v == '\t') v++;
        chunked = !strncasecmp(v, "chunked", 7);
      }
    memmove(b.p, hdr_end, body_n);
    b.p[body_n] = 0;
    if (chunked) {
      long k = sdc__dechunk(b.p, body_n);
      if (k < 0) err = sdc_seterr(SDC_EIO, "metrics URL '%s': malformed chunked body", url);
      else body_n = (size_t)k;
    }
    if (!err) *body = b.p, *n = body_n;
  }
  if (err) free(b.p);
  return err;
}
