/* metrics.c - the Prometheus registry: series looked up lock-free, values updated by CAS, text 0.0.4 out. */
#include "metrics.h"

#include <assert.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"

const double sdc_metrics_default_bounds[SDC_METRICS_N_DEFAULT_BOUNDS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                        0.5,   1,    2.5,   5,    10};

#define SDC__MAX_COLLECTORS 16
/* Enough for one dropped-series row per metric a binary registers; past it the row is the overflow one. */
#define SDC__DROPPED_MAX_SERIES 1024

typedef enum { SDC__COUNTER, SDC__GAUGE, SDC__HISTOGRAM } sdc__kind;

/* One tuple of label values. Immutable once published, except for its atomics. */
typedef struct {
  char **values;             /* n_labels strings owned here; NULL without labels */
  _Atomic uint64_t bits;     /* bits of a double: a counter's or gauge's value, a histogram's _sum */
  _Atomic uint64_t *buckets; /* histogram: n_bounds + 1 counts, NOT cumulative; the last is (max bound, +Inf] */
} sdc__series;

struct sdc_metric {
  sdc_metrics *reg;
  sdc__kind kind;
  char *name, *help;
  int n_labels;
  char *label_names[SDC_METRICS_MAX_LABELS];
  int n_bounds;
  double *bounds;
  int max_series;
  /* series[0..n_series) are published with a release store of n_series and never move or change, so
   * readers scan them without the lock; lock serializes only the creation of new series. */
  pthread_mutex_t lock;
  sdc__series **series; /* capacity max_series */
  _Atomic int n_series;
  sdc__series *_Atomic overflow;
};

struct sdc_metrics {
  pthread_mutex_t lock;        /* the metric list and the collectors */
  pthread_mutex_t render_lock; /* one render (and so one round of collect callbacks) at a time */
  sdc_metric **metrics;
  int n_metrics, cap_metrics;
  int max_series;
  sdc_metric *dropped;
  struct {
    void (*fn)(sdc_metrics *, void *);
    void *ctx;
  } collectors[SDC__MAX_COLLECTORS];
  int n_collectors;
  /* sdc_metrics_add_process's gauges; NULL until then */
  sdc_metric *proc_rss, *proc_vsize, *proc_cpu, *proc_fds, *proc_start;
};

static double sdc__bits_to_double(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

static uint64_t sdc__double_to_bits(double d) {
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

static void sdc__atomic_add(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(p, &old, sdc__double_to_bits(sdc__bits_to_double(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* ---------------------------------------------------------------- registration */

static int sdc__valid_name(const char *s, int colon_ok) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    int c = (unsigned char)*p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':') ||
             (p > s && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

static void sdc__series_free(sdc__series *s, int n_labels) {
  if (!s) return;
  if (s->values)
    for (int i = 0; i < n_labels; i++) free(s->values[i]);
  free(s->values);
  free(s->buckets);
  free(s);
}

/* A zeroed series holding copies of values (NULL: every label SDC_METRICS_OVERFLOW_VALUE); NULL on OOM. */
static sdc__series *sdc__series_new(const sdc_metric *m, const char *const *values) {
  sdc__series *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  atomic_init(&s->bits, sdc__double_to_bits(0));
  if (m->n_labels > 0) {
    s->values = calloc((size_t)m->n_labels, sizeof *s->values);
    if (!s->values) goto oom;
    for (int i = 0; i < m->n_labels; i++)
      if (!(s->values[i] = strdup(values ? values[i] : SDC_METRICS_OVERFLOW_VALUE))) goto oom;
  }
  if (m->kind == SDC__HISTOGRAM) {
    s->buckets = calloc((size_t)m->n_bounds + 1, sizeof *s->buckets);
    if (!s->buckets) goto oom;
    for (int i = 0; i <= m->n_bounds; i++) atomic_init(&s->buckets[i], 0);
  }
  return s;
oom:
  sdc__series_free(s, m->n_labels);
  return NULL;
}

static void sdc__metric_free(sdc_metric *m) {
  if (!m) return;
  int n = atomic_load(&m->n_series);
  for (int i = 0; i < n; i++) sdc__series_free(m->series[i], m->n_labels);
  sdc__series_free(atomic_load(&m->overflow), m->n_labels);
  free(m->series);
  for (int i = 0; i < m->n_labels; i++) free(m->label_names[i]);
  free(m->bounds);
  free(m->name);
  free(m->help);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static const char *sdc__kind_name(sdc__kind k) {
  return k == SDC__COUNTER ? "counter" : k == SDC__GAUGE ? "gauge" : "histogram";
}

/* Whether an existing metric is the one the caller asks for again. */
static int sdc__same_metric(const sdc_metric *m, sdc__kind kind, int n_labels, const char *const *label_names,
                            const double *bounds, int n_bounds) {
  if (m->kind != kind || m->n_labels != n_labels) return 0;
  for (int i = 0; i < n_labels; i++)
    if (strcmp(m->label_names[i], label_names[i])) return 0;
  if (kind == SDC__HISTOGRAM) {
    if (m->n_bounds != n_bounds) return 0;
    for (int i = 0; i < n_bounds; i++)
      if (m->bounds[i] != bounds[i]) return 0;
  }
  return 1;
}

static sdc_metric *sdc__register(sdc_metrics *reg, sdc__kind kind, const char *name, const char *help, int n_labels,
                                 const char *const *label_names, const double *bounds, int n_bounds,
                                 int max_series) {
  assert(reg);
  if (!sdc__valid_name(name, 1)) {
    sdc_seterr(SDC_EINVAL, "metric name \"%s\": not [a-zA-Z_:][a-zA-Z0-9_:]*", name ? name : "(null)");
    return NULL;
  }
  if (n_labels < 0 || n_labels > SDC_METRICS_MAX_LABELS || (n_labels > 0 && !label_names)) {
    sdc_seterr(SDC_EINVAL, "metric %s: %d label names, want 0..%d", name, n_labels, SDC_METRICS_MAX_LABELS);
    return NULL;
  }
  for (int i = 0; i < n_labels; i++) {
    const char *l = label_names[i];
    if (!sdc__valid_name(l, 0) || !strncmp(l, "__", 2) || (kind == SDC__HISTOGRAM && !strcmp(l, "le"))) {
      sdc_seterr(SDC_EINVAL, "metric %s: label name \"%s\" is not [a-zA-Z_][a-zA-Z0-9_]*, starts with __ or is a "
                 "histogram's le", name, l ? l : "(null)");
      return NULL;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(label_names[j], l)) {
        sdc_seterr(SDC_EINVAL, "metric %s: label name \"%s\" twice", name, l);
        return NULL;
      }
  }
  if (kind == SDC__HISTOGRAM) {
    if (n_bounds < 1 || n_bounds > SDC_METRICS_MAX_BOUNDS || !bounds) {
      sdc_seterr(SDC_EINVAL, "histogram %s: %d bucket bounds, want 1..%d", name, n_bounds, SDC_METRICS_MAX_BOUNDS);
      return NULL;
    }
    for (int i = 0; i < n_bounds; i++)
      if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
        sdc_seterr(SDC_EINVAL, "histogram %s: bound %d (%g) is not finite and above the one before", name, i,
                   bounds[i]);
        return NULL;
      }
  }

  pthread_mutex_lock(&reg->lock);
  for (int i = 0; i < reg->n_metrics; i++) {
    sdc_metric *old = reg->metrics[i];
    if (strcmp(old->name, name)) continue;
    pthread_mutex_unlock(&reg->lock);
    if (sdc__same_metric(old, kind, n_labels, label_names, bounds, n_bounds)) return old;
    sdc_seterr(SDC_EINVAL, "metric %s: already registered as a %s with other labels or buckets", name,
               sdc__kind_name(old->kind));
    return NULL;
  }
  if (reg->n_metrics == reg->cap_metrics) {
    int cap = reg->cap_metrics ? 2 * reg->cap_metrics : 16;
    sdc_metric **grown = realloc(reg->metrics, (size_t)cap * sizeof *grown);
    if (!grown) goto oom_locked;
    reg->metrics = grown;
    reg->cap_metrics = cap;
  }
  sdc_metric *m = calloc(1, sizeof *m);
  if (!m) goto oom_locked;
  pthread_mutex_init(&m->lock, NULL);
  m->reg = reg;
  m->kind = kind;
  m->n_labels = n_labels;
  m->max_series = n_labels ? max_series : 1;
  atomic_init(&m->n_series, 0);
  atomic_init(&m->overflow, NULL);
  int ok = (m->name = strdup(name)) && (m->help = strdup(help ? help : "")) &&
           (m->series = calloc((size_t)m->max_series, sizeof *m->series));
  for (int i = 0; ok && i < n_labels; i++) ok = (m->label_names[i] = strdup(label_names[i])) != NULL;
  if (ok && kind == SDC__HISTOGRAM) {
    m->n_bounds = n_bounds;
    ok = (m->bounds = malloc((size_t)n_bounds * sizeof *m->bounds)) != NULL;
    if (ok) memcpy(m->bounds, bounds, (size_t)n_bounds * sizeof *bounds);
  }
  if (ok && n_labels == 0) { /* the one series exists from the start, so a scrape shows 0 */
    ok = (m->series[0] = sdc__series_new(m, NULL)) != NULL;
    if (ok) atomic_store(&m->n_series, 1);
  }
  if (!ok) {
    sdc__metric_free(m);
    goto oom_locked;
  }
  reg->metrics[reg->n_metrics++] = m;
  pthread_mutex_unlock(&reg->lock);
  return m;
oom_locked:
  pthread_mutex_unlock(&reg->lock);
  sdc_seterr(SDC_ENOMEM, "metric %s: out of memory registering it", name);
  return NULL;
}

sdc_metrics *sdc_metrics_new_limited(int max_series) {
  if (max_series < 1) {
    sdc_seterr(SDC_EINVAL, "metrics registry: max_series %d, want >= 1", max_series);
    return NULL;
  }
  sdc_metrics *reg = calloc(1, sizeof *reg);
  if (!reg) {
    sdc_seterr(SDC_ENOMEM, "metrics registry: out of memory");
    return NULL;
  }
  pthread_mutex_init(&reg->lock, NULL);
  pthread_mutex_init(&reg->render_lock, NULL);
  reg->max_series = max_series;
  static const char *const metric_label[] = {"metric"};
  reg->dropped = sdc__register(reg, SDC__COUNTER, "sdc_metrics_series_dropped_total",
                               "Updates sent to a metric's overflow series because it reached its series limit.",
                               1, metric_label, NULL, 0, SDC__DROPPED_MAX_SERIES);
  if (!reg->dropped) {
    sdc_metrics_free(reg);
    return NULL;
  }
  return reg;
}

sdc_metrics *sdc_metrics_new(void) { return sdc_metrics_new_limited(SDC_METRICS_DEFAULT_MAX_SERIES); }

void sdc_metrics_free(sdc_metrics *reg) {
  if (!reg) return;
  for (int i = 0; i < reg->n_metrics; i++) sdc__metric_free(reg->metrics[i]);
  free(reg->metrics);
  pthread_mutex_destroy(&reg->lock);
  pthread_mutex_destroy(&reg->render_lock);
  free(reg);
}

sdc_metric *sdc_metrics_counter(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                                const char *const *label_names) {
  return sdc__register(reg, SDC__COUNTER, name, help, n_labels, label_names, NULL, 0, reg->max_series);
}

sdc_metric *sdc_metrics_gauge(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                              const char *const *label_names) {
  return sdc__register(reg, SDC__GAUGE, name, help, n_labels, label_names, NULL, 0, reg->max_series);
}

sdc_metric *sdc_metrics_histogram(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                                  const char *const *label_names, const double *bounds, int n_bounds) {
  return sdc__register(reg, SDC__HISTOGRAM, name, help, n_labels, label_names, bounds, n_bounds, reg->max_series);
}

int sdc_metrics_on_collect(sdc_metrics *reg, void (*fn)(sdc_metrics *reg, void *ctx), void *ctx) {
  assert(reg && fn);
  pthread_mutex_lock(&reg->lock);
  if (reg->n_collectors == SDC__MAX_COLLECTORS) {
    pthread_mutex_unlock(&reg->lock);
    return sdc_seterr(SDC_EINVAL, "metrics registry: more than %d collect callbacks", SDC__MAX_COLLECTORS);
  }
  reg->collectors[reg->n_collectors].fn = fn;
  reg->collectors[reg->n_collectors].ctx = ctx;
  reg->n_collectors++;
  pthread_mutex_unlock(&reg->lock);
  return 0;
}

/* ---------------------------------------------------------------- updates */

static int sdc__series_matches(const sdc__series *s, int n_labels, const char *const *values) {
  for (int i = 0; i < n_labels; i++)
    if (strcmp(s->values[i], values[i])) return 0;
  return 1;
}

/* The series for values, created when new; the overflow series past max_series. NULL only when memory ran
 * out (find_only: when the series does not exist), and the update is then lost. */
static sdc__series *sdc__series_get(sdc_metric *m, const char *const *values, int find_only) {
  if (m->n_labels == 0) return m->series[0];
  assert(values);
  for (int i = 0; i < m->n_labels; i++) assert(values[i]);
  int n = atomic_load_explicit(&m->n_series, memory_order_acquire);
  for (int i = 0; i < n; i++)
    if (sdc__series_matches(m->series[i], m->n_labels, values)) return m->series[i];
  if (find_only) return NULL;

  sdc__series *s = NULL;
  pthread_mutex_lock(&m->lock);
  int n_now = atomic_load_explicit(&m->n_series, memory_order_relaxed);
  for (int i = n; i < n_now; i++) /* created by another thread since the scan above */
    if (sdc__series_matches(m->series[i], m->n_labels, values)) {
      s = m->series[i];
      break;
    }
  if (!s && n_now < m->max_series) {
    s = sdc__series_new(m, values);
    if (s) {
      m->series[n_now] = s;
      atomic_store_explicit(&m->n_series, n_now + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->lock);
    return s;
  }
  if (!s) {
    s = atomic_load_explicit(&m->overflow, memory_order_acquire);
    if (!s && (s = sdc__series_new(m, NULL))) atomic_store_explicit(&m->overflow, s, memory_order_release);
    pthread_mutex_unlock(&m->lock);
    /* the dropped counter never counts its own overflow, which would recurse */
    if (m != m->reg->dropped) sdc_metric_add(m->reg->dropped, (const char *const[]){m->name}, 1);
    return s;
  }
  pthread_mutex_unlock(&m->lock);
  return s;
}

void sdc_metric_add(sdc_metric *m, const char *const *label_values, double v) {
  if (!m) return;
  assert(m->kind != SDC__HISTOGRAM);
  if (m->kind == SDC__COUNTER && !(v >= 0)) return;
  sdc__series *s = sdc__series_get(m, label_values, 0);
  if (s) sdc__atomic_add(&s->bits, v);
}

void sdc_metric_set(sdc_metric *m, const char *const *label_values, double v) {
  if (!m) return;
  assert(m->kind == SDC__GAUGE);
  sdc__series *s = sdc__series_get(m, label_values, 0);
  if (s) atomic_store_explicit(&s->bits, sdc__double_to_bits(v), memory_order_relaxed);
}

void sdc_metric_observe(sdc_metric *m, const char *const *label_values, double v) {
  if (!m) return;
  assert(m->kind == SDC__HISTOGRAM);
  if (isnan(v)) return;
  sdc__series *s = sdc__series_get(m, label_values, 0);
  if (!s) return;
  int b = 0;
  while (b < m->n_bounds && v > m->bounds[b]) b++;
  atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
  sdc__atomic_add(&s->bits, v);
}

static uint64_t sdc__histogram_count(const sdc_metric *m, sdc__series *s) {
  uint64_t n = 0;
  for (int b = 0; b <= m->n_bounds; b++) n += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
  return n;
}

double sdc_metric_value(sdc_metric *m, const char *const *label_values) {
  if (!m) return 0;
  sdc__series *s = sdc__series_get(m, label_values, 1);
  if (!s) return 0;
  if (m->kind == SDC__HISTOGRAM) return (double)sdc__histogram_count(m, s);
  return sdc__bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed));
}

/* ---------------------------------------------------------------- process metrics */

static void sdc__process_collect(sdc_metrics *reg, void *ctx) {
  (void)ctx;
  long page = sysconf(_SC_PAGESIZE);
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size_pages, rss_pages;
  if (f) {
    if (fscanf(f, "%llu %llu", &size_pages, &rss_pages) == 2) {
      sdc_metric_set(reg->proc_vsize, NULL, (double)size_pages * (double)page);
      sdc_metric_set(reg->proc_rss, NULL, (double)rss_pages * (double)page);
    }
    fclose(f);
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec * 1e-6;
    /* a counter the kernel keeps: stored, not added */
    atomic_store_explicit(&reg->proc_cpu->series[0]->bits, sdc__double_to_bits(cpu), memory_order_relaxed);
  }
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    int n = -1; /* the directory handle itself is one of them */
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.') n++;
    closedir(d);
    sdc_metric_set(reg->proc_fds, NULL, n);
  }
}

/* Seconds since the epoch at which this process started: boot time plus field 22 of /proc/self/stat. */
static double sdc__process_start_time(void) {
  char buf[4096];
  unsigned long long btime = 0, start_ticks = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  while (fgets(buf, sizeof buf, f))
    if (sscanf(buf, "btime %llu", &btime) == 1) break;
  fclose(f);
  if (!(f = fopen("/proc/self/stat", "r"))) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (!p) return 0;
  /* after ") " come fields 3 (state) .. 22 (starttime) */
  p++;
  for (int field = 3; field < 22 && p; field++) p = strchr(p + 1, ' ');
  if (!p || sscanf(p, " %llu", &start_ticks) != 1) return 0;
  return (double)btime + (double)start_ticks / (double)sysconf(_SC_CLK_TCK);
}

int sdc_metrics_add_process(sdc_metrics *reg) {
  assert(reg);
  if (!(reg->proc_rss = sdc_metrics_gauge(reg, "process_resident_memory_bytes", "Resident memory size in bytes.",
                                          0, NULL)) ||
      !(reg->proc_vsize = sdc_metrics_gauge(reg, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                            0, NULL)) ||
      !(reg->proc_cpu = sdc_metrics_counter(reg, "process_cpu_seconds_total",
                                            "Total user and system CPU time spent in seconds.", 0, NULL)) ||
      !(reg->proc_fds = sdc_metrics_gauge(reg, "process_open_fds", "Number of open file descriptors.", 0, NULL)) ||
      !(reg->proc_start = sdc_metrics_gauge(reg, "process_start_time_seconds",
                                            "Start time of the process since unix epoch in seconds.", 0, NULL)))
    return sdc_adderr(SDC_EINVAL, "process metrics");
  sdc_metric_set(reg->proc_start, NULL, sdc__process_start_time());
  return sdc_metrics_on_collect(reg, sdc__process_collect, NULL);
}

/* ---------------------------------------------------------------- rendering */

/* Writes s with backslash and newline escaped, and the double quote too when quote (label values). */
static void sdc__put_escaped(sdc_buf *b, const char *s, int quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : (quote && *s == '"') ? "\\\"" : NULL;
    if (!esc) continue;
    sdc_buf_put(b, run, (size_t)(s - run));
    sdc_buf_puts(b, esc);
    run = s + 1;
  }
  sdc_buf_put(b, run, (size_t)(s - run));
}

/* The shortest of %.15g / %.17g that reads back as v; Prometheus' spellings of the infinities and NaN. */
static void sdc__put_double(sdc_buf *b, double v) {
  char s[40];
  if (isnan(v))
    snprintf(s, sizeof s, "NaN");
  else if (isinf(v))
    snprintf(s, sizeof s, v > 0 ? "+Inf" : "-Inf");
  else {
    snprintf(s, sizeof s, "%.15g", v);
    if (strtod(s, NULL) != v) snprintf(s, sizeof s, "%.17g", v);
  }
  sdc_buf_puts(b, s);
}

static void sdc__put_u64(sdc_buf *b, uint64_t v) {
  char s[24];
  snprintf(s, sizeof s, "%llu", (unsigned long long)v);
  sdc_buf_puts(b, s);
}

/* name{a="x",b="y"[,le="bound"]} -- or name alone when there is nothing in the braces. */
static void sdc__put_series_name(sdc_buf *b, const sdc_metric *m, const char *suffix, const sdc__series *s,
                                 const char *le) {
  sdc_buf_puts(b, m->name);
  sdc_buf_puts(b, suffix);
  if (m->n_labels == 0 && !le) return;
  sdc_buf_puts(b, "{");
  for (int i = 0; i < m->n_labels; i++) {
    if (i) sdc_buf_puts(b, ",");
    sdc_buf_puts(b, m->label_names[i]);
    sdc_buf_puts(b, "=\"");
    sdc__put_escaped(b, s->values[i], 1);
    sdc_buf_puts(b, "\"");
  }
  if (le) {
    if (m->n_labels) sdc_buf_puts(b, ",");
    sdc_buf_puts(b, "le=\"");
    sdc_buf_puts(b, le);
    sdc_buf_puts(b, "\"");
  }
  sdc_buf_puts(b, "}");
}

static void sdc__render_series(sdc_buf *b, const sdc_metric *m, sdc__series *s) {
  if (m->kind != SDC__HISTOGRAM) {
    sdc__put_series_name(b, m, "", s, NULL);
    sdc_buf_puts(b, " ");
    sdc__put_double(b, sdc__bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed)));
    sdc_buf_puts(b, "\n");
    return;
  }
  /* Read each bucket once, so the cumulative +Inf row and _count agree even while observations land. */
  uint64_t cum = 0;
  for (int i = 0; i <= m->n_bounds; i++) {
    cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    char le[40];
    if (i == m->n_bounds) {
      snprintf(le, sizeof le, "+Inf");
    } else {
      sdc_buf lb = {0};
      sdc__put_double(&lb, m->bounds[i]);
      snprintf(le, sizeof le, "%s", lb.p ? lb.p : "");
      free(lb.p);
      if (lb.oom) b->oom = 1;
    }
    sdc__put_series_name(b, m, "_bucket", s, le);
    sdc_buf_puts(b, " ");
    sdc__put_u64(b, cum);
    sdc_buf_puts(b, "\n");
  }
  sdc__put_series_name(b, m, "_sum", s, NULL);
  sdc_buf_puts(b, " ");
  sdc__put_double(b, sdc__bits_to_double(atomic_load_explicit(&s->bits, memory_order_relaxed)));
  sdc_buf_puts(b, "\n");
  sdc__put_series_name(b, m, "_count", s, NULL);
  sdc_buf_puts(b, " ");
  sdc__put_u64(b, cum);
  sdc_buf_puts(b, "\n");
}

int sdc_metrics_render(sdc_metrics *reg, char **out, size_t *n) {
  assert(reg && out && n);
  *out = NULL;
  *n = 0;
  pthread_mutex_lock(&reg->render_lock);
  pthread_mutex_lock(&reg->lock);
  int n_collectors = reg->n_collectors;
  pthread_mutex_unlock(&reg->lock);
  /* outside reg->lock: a callback may register or set metrics */
  for (int i = 0; i < n_collectors; i++) reg->collectors[i].fn(reg, reg->collectors[i].ctx);

  sdc_buf b = {0};
  sdc_buf_put(&b, "", 0); /* an empty registry still renders as "" */
  pthread_mutex_lock(&reg->lock);
  for (int i = 0; i < reg->n_metrics; i++) {
    const sdc_metric *m = reg->metrics[i];
    sdc_buf_puts(&b, "# HELP ");
    sdc_buf_puts(&b, m->name);
    sdc_buf_puts(&b, " ");
    sdc__put_escaped(&b, m->help, 0);
    sdc_buf_puts(&b, "\n# TYPE ");
    sdc_buf_puts(&b, m->name);
    sdc_buf_puts(&b, " ");
    sdc_buf_puts(&b, sdc__kind_name(m->kind));
    sdc_buf_puts(&b, "\n");
    int n_series = atomic_load_explicit(&((sdc_metric *)m)->n_series, memory_order_acquire);
    for (int j = 0; j < n_series; j++) sdc__render_series(&b, m, m->series[j]);
    sdc__series *ov = atomic_load_explicit(&((sdc_metric *)m)->overflow, memory_order_acquire);
    if (ov) sdc__render_series(&b, m, ov);
  }
  pthread_mutex_unlock(&reg->lock);
  pthread_mutex_unlock(&reg->render_lock);
  if (b.oom) {
    free(b.p);
    return sdc_seterr(SDC_ENOMEM, "metrics render: out of memory at %zu bytes", b.n);
  }
  *out = b.p;
  *n = b.n;
  return 0;
}
