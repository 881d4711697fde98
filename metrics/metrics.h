/* metrics.h - a thread-safe registry of Prometheus counters, gauges and histograms, rendered as text 0.0.4.
 *
 * Usage (the coordinator or a worker, once at start-up, then from any thread):
 *
 *   sdc_metrics *reg = sdc_metrics_new();
 *   static const char *const job_labels[] = {"stage", "outcome"};
 *   sdc_metric *jobs = sdc_metrics_counter(reg, "sdc_jobs_total", "Jobs finished.", 2, job_labels);
 *   sdc_metric *lat = sdc_metrics_histogram(reg, "sdc_step_seconds", "Time per denoising step.", 0, NULL,
 *                                           sdc_metrics_default_bounds, SDC_METRICS_N_DEFAULT_BOUNDS);
 *   sdc_metrics_add_process(reg);                      // process_resident_memory_bytes & co, read at scrape
 *   sdc_http *srv;
 *   if (sdc_http_start(&srv, ":9100", reg, my_ready, my_ctx)) die(sdc_errmsg(...));   // see http.h
 *   ...
 *   sdc_metric_add(jobs, (const char *const[]){"unet", "ok"}, 1);   // any thread, lock-free once the series exists
 *   sdc_metric_observe(lat, NULL, 0.093);
 *   ...
 *   sdc_http_stop(srv);                                // stop the server before freeing what it renders
 *   sdc_metrics_free(reg);
 *
 * Series: a metric with labels gets one series per distinct tuple of label values, created on first use.
 * A metric holds at most max_series of them (sdc_metrics_new_limited); past that, updates go to a single
 * overflow series whose every label value is SDC_METRICS_OVERFLOW_VALUE, and each such update adds one to
 * sdc_metrics_series_dropped_total{metric="<name>"}, so a label fed by a peer (a job id, a worker name)
 * cannot grow memory without bound. A metric without labels has its one series from registration on, so
 * it renders 0 before its first update.
 *
 * Values are doubles updated atomically (compare-and-swap on their bits), so integer increments sum
 * exactly up to 2^53. Updates on a NULL metric do nothing: a binary whose registration failed keeps
 * running without that metric. */
#ifndef SDC_METRICS_H
#define SDC_METRICS_H

#include <stddef.h>

typedef struct sdc_metrics sdc_metrics;
typedef struct sdc_metric sdc_metric;

#define SDC_METRICS_MAX_LABELS 8          /* label names per metric */
#define SDC_METRICS_MAX_BOUNDS 64         /* histogram buckets, +Inf aside */
#define SDC_METRICS_DEFAULT_MAX_SERIES 256 /* series per metric, the overflow series aside */
#define SDC_METRICS_OVERFLOW_VALUE "__overflow__"

/* Prometheus' default latency buckets in seconds (5 ms .. 10 s). */
#define SDC_METRICS_N_DEFAULT_BOUNDS 11
extern const double sdc_metrics_default_bounds[SDC_METRICS_N_DEFAULT_BOUNDS];

/* A new empty registry (sdc_metrics_series_dropped_total aside) allowing SDC_METRICS_DEFAULT_MAX_SERIES
 * series per metric, or max_series (>= 1) with _limited. The caller owns it and frees it with
 * sdc_metrics_free. NULL when memory runs out or max_series < 1 (sdc_errmsg says which). */
sdc_metrics *sdc_metrics_new(void);
sdc_metrics *sdc_metrics_new_limited(int max_series);
/* Frees the registry and every metric it handed out; NULL is fine. No thread may still use its metrics,
 * and an HTTP server rendering it must be stopped first. */
void sdc_metrics_free(sdc_metrics *reg);

/* Registers a metric; the registry owns it (and copies name, help and label names). name must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* without a leading "__" (and no "le" on a
 * histogram), 0 <= n_labels <= SDC_METRICS_MAX_LABELS. Registering a name again with the same type and
 * label names returns the existing metric; anything else about an existing name is an error. Histogram
 * bounds (upper bounds in seconds, or any unit the name says) must be finite and strictly increasing,
 * 1 <= n_bounds <= SDC_METRICS_MAX_BOUNDS; they are copied and +Inf is implied.
 * Returns NULL on error with sdc_errmsg naming the metric and what is wrong with it (SDC_EINVAL), or
 * SDC_ENOMEM. Thread-safe. */
sdc_metric *sdc_metrics_counter(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                                const char *const *label_names);
sdc_metric *sdc_metrics_gauge(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                              const char *const *label_names);
sdc_metric *sdc_metrics_histogram(sdc_metrics *reg, const char *name, const char *help, int n_labels,
                                  const char *const *label_names, const double *bounds, int n_bounds);

/* Updates the series named by label_values (n_labels strings, copied on first use; NULL when the metric
 * has no labels). Lock-free once the series exists; creating one takes the metric's lock. Any thread.
 *  add: counters and gauges; a counter ignores v < 0 and NaN, since a counter never goes down.
 *  set: gauges only.
 *  observe: histograms only; counts v in the first bucket with v <= bound, adds v to _sum; ignores NaN.
 * Calling one on the wrong type of metric is a bug in the caller (assert). NULL metric: no-op. */
void sdc_metric_add(sdc_metric *m, const char *const *label_values, double v);
void sdc_metric_set(sdc_metric *m, const char *const *label_values, double v);
void sdc_metric_observe(sdc_metric *m, const char *const *label_values, double v);
/* The current value of a counter or gauge series (0 when it does not exist yet); for tests and
 * self-checks. For a histogram, its _count. */
double sdc_metric_value(sdc_metric *m, const char *const *label_values);

/* Calls fn(reg, ctx) at the start of every sdc_metrics_render, before anything is written, so fn can
 * sdc_metric_set gauges whose values are only known at scrape time (memory, queue depth read from
 * Redis...). fn runs on the rendering thread (the HTTP server's), one render at a time; ctx stays the
 * caller's and must outlive the registry. At most 16 callbacks. SDC_EINVAL past that. */
int sdc_metrics_on_collect(sdc_metrics *reg, void (*fn)(sdc_metrics *reg, void *ctx), void *ctx);

/* Registers the Prometheus process metrics, read from /proc/self at each render:
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, process_start_time_seconds. 0 or an error code (sdc_errmsg says which). */
int sdc_metrics_add_process(sdc_metrics *reg);

/* Runs the collect callbacks, then writes every metric in registration order, series in creation order,
 * in the Prometheus text exposition format 0.0.4. *out is NUL-terminated, malloc'd and the caller's to
 * free(); *n is its length without the NUL. Returns 0, or SDC_ENOMEM with *out NULL. Thread-safe. */
int sdc_metrics_render(sdc_metrics *reg, char **out /* OUT */, size_t *n /* OUT */);

#endif
