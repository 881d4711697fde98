/* test_metrics.c - the metrics registry's exact text format, its series bound, concurrent sums, and the
 * HTTP endpoints fetched over a plain socket on 127.0.0.1. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "error.h"
#include "http.h"
#include "metrics.h"
#include "test_util.h"

#define DROPPED_HEAD                                                                                         \
  "# HELP sdc_metrics_series_dropped_total Updates sent to a metric's overflow series because it reached its " \
  "series limit.\n"                                                                                          \
  "# TYPE sdc_metrics_series_dropped_total counter\n"

/* The registry's whole text must equal want; prints both when not. */
static void expect_render(const char *what, sdc_metrics *reg, const char *want) {
  char *got = NULL;
  size_t n = 0;
  int err = sdc_metrics_render(reg, &got, &n);
  CHECK(err == 0, "%s: render: %s", what, sdc_errmsg(err));
  if (!got) return;
  CHECK(n == strlen(got), "%s: length %zu but strlen %zu", what, n, strlen(got));
  CHECK(strcmp(got, want) == 0, "%s: text differs\n--- got\n%s--- want\n%s---", what, got, want);
  free(got);
}

static void test_render_counter_and_gauge_golden(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const labels[] = {"stage", "outcome"};
  sdc_metric *jobs = sdc_metrics_counter(reg, "sdc_jobs_total", "Jobs finished.", 2, labels);
  sdc_metric *depth = sdc_metrics_gauge(reg, "sdc_queue_depth", "Jobs waiting.", 0, NULL);
  CHECK(jobs && depth, "register: %s", sdc_errmsg(SDC_EINVAL));
  expect_render("before any update", reg,
                DROPPED_HEAD "# HELP sdc_jobs_total Jobs finished.\n# TYPE sdc_jobs_total counter\n"
                             "# HELP sdc_queue_depth Jobs waiting.\n# TYPE sdc_queue_depth gauge\nsdc_queue_depth 0\n");
  sdc_metric_add(jobs, (const char *const[]){"unet", "ok"}, 1);
  sdc_metric_add(jobs, (const char *const[]){"vae", "error"}, 1);
  sdc_metric_add(jobs, (const char *const[]){"unet", "ok"}, 1);
  sdc_metric_add(jobs, (const char *const[]){"unet", "ok"}, -5); /* a counter never goes down */
  sdc_metric_set(depth, NULL, 3.5);
  sdc_metric_add(depth, NULL, -1);
  expect_render("after updates", reg,
                DROPPED_HEAD "# HELP sdc_jobs_total Jobs finished.\n# TYPE sdc_jobs_total counter\n"
                             "sdc_jobs_total{stage=\"unet\",outcome=\"ok\"} 2\n"
                             "sdc_jobs_total{stage=\"vae\",outcome=\"error\"} 1\n"
                             "# HELP sdc_queue_depth Jobs waiting.\n# TYPE sdc_queue_depth gauge\nsdc_queue_depth 2.5\n");
  CHECK(sdc_metric_value(jobs, (const char *const[]){"unet", "ok"}) == 2, "value of a series");
  CHECK(sdc_metric_value(jobs, (const char *const[]){"clip", "ok"}) == 0, "value of a series not yet created");
  sdc_metrics_free(reg);
}

static void test_render_escapes_label_values_and_help(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const labels[] = {"prompt"};
  sdc_metric *c = sdc_metrics_counter(reg, "esc_total", "Back\\slash and\nnewline \"quoted\".", 1, labels);
  sdc_metric_add(c, (const char *const[]){"a\\b\"c\nd"}, 1);
  /* HELP escapes backslash and newline only; label values also the double quote */
  expect_render("escaping", reg,
                DROPPED_HEAD "# HELP esc_total Back\\\\slash and\\nnewline \"quoted\".\n# TYPE esc_total counter\n"
                             "esc_total{prompt=\"a\\\\b\\\"c\\nd\"} 1\n");
  sdc_metrics_free(reg);
}

static void test_render_histogram_buckets_cumulative(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const labels[] = {"stage"};
  static const double bounds[] = {0.25, 1, 10};
  sdc_metric *h = sdc_metrics_histogram(reg, "sdc_step_seconds", "Step time.", 1, labels, bounds, 3);
  sdc_metric *h0 = sdc_metrics_histogram(reg, "plain_seconds", "No labels.", 0, NULL, bounds, 1);
  CHECK(h && h0, "register: %s", sdc_errmsg(SDC_EINVAL));
  /* 0.25 lands in le="0.25": a bucket counts v <= bound */
  const double obs[] = {0.125, 0.25, 0.5, 5, 50, NAN};
  for (int i = 0; i < 6; i++) sdc_metric_observe(h, (const char *const[]){"unet"}, obs[i]);
  sdc_metric_observe(h0, NULL, 2);
  expect_render("histogram", reg,
                DROPPED_HEAD "# HELP sdc_step_seconds Step time.\n# TYPE sdc_step_seconds histogram\n"
                             "sdc_step_seconds_bucket{stage=\"unet\",le=\"0.25\"} 2\n"
                             "sdc_step_seconds_bucket{stage=\"unet\",le=\"1\"} 3\n"
                             "sdc_step_seconds_bucket{stage=\"unet\",le=\"10\"} 4\n"
                             "sdc_step_seconds_bucket{stage=\"unet\",le=\"+Inf\"} 5\n"
                             "sdc_step_seconds_sum{stage=\"unet\"} 55.875\n"
                             "sdc_step_seconds_count{stage=\"unet\"} 5\n"
                             "# HELP plain_seconds No labels.\n# TYPE plain_seconds histogram\n"
                             "plain_seconds_bucket{le=\"0.25\"} 0\n"
                             "plain_seconds_bucket{le=\"+Inf\"} 1\n"
                             "plain_seconds_sum 2\n"
                             "plain_seconds_count 1\n");
  sdc_metrics_free(reg);
}

static void test_overflow_series_counts_dropped(void) {
  sdc_metrics *reg = sdc_metrics_new_limited(2);
  static const char *const labels[] = {"job"};
  sdc_metric *c = sdc_metrics_counter(reg, "per_job_total", "Per job.", 1, labels);
  const char *jobs[] = {"a", "b", "c", "d", "a", "c"};
  for (int i = 0; i < 6; i++) sdc_metric_add(c, (const char *const[]){jobs[i]}, 1);
  expect_render("overflow", reg,
                "# HELP sdc_metrics_series_dropped_total Updates sent to a metric's overflow series because it "
                "reached its series limit.\n"
                "# TYPE sdc_metrics_series_dropped_total counter\n"
                "sdc_metrics_series_dropped_total{metric=\"per_job_total\"} 3\n"
                "# HELP per_job_total Per job.\n# TYPE per_job_total counter\n"
                "per_job_total{job=\"a\"} 2\n"
                "per_job_total{job=\"b\"} 1\n"
                "per_job_total{job=\"__overflow__\"} 3\n");
  sdc_metrics_free(reg);
}

static void test_number_spellings(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const labels[] = {"k"};
  sdc_metric *g = sdc_metrics_gauge(reg, "g", "", 1, labels);
  sdc_metric_set(g, (const char *const[]){"tiny"}, 1e-9);
  sdc_metric_set(g, (const char *const[]){"tenth"}, 0.1);
  sdc_metric_set(g, (const char *const[]){"third"}, 1.0 / 3);
  sdc_metric_set(g, (const char *const[]){"big"}, 123456789012.0);
  sdc_metric_set(g, (const char *const[]){"inf"}, INFINITY);
  sdc_metric_set(g, (const char *const[]){"ninf"}, -INFINITY);
  sdc_metric_set(g, (const char *const[]){"nan"}, NAN);
  expect_render("numbers", reg,
                DROPPED_HEAD "# HELP g \n# TYPE g gauge\n"
                             "g{k=\"tiny\"} 1e-09\ng{k=\"tenth\"} 0.1\ng{k=\"third\"} 0.33333333333333331\n"
                             "g{k=\"big\"} 123456789012\ng{k=\"inf\"} +Inf\ng{k=\"ninf\"} -Inf\ng{k=\"nan\"} NaN\n");
  sdc_metrics_free(reg);
}

/* Registration must fail with SDC_EINVAL and a message holding needle. */
static void expect_bad_register(const char *what, sdc_metric *m, const char *needle) {
  const char *msg = sdc_errmsg(SDC_EINVAL);
  CHECK(m == NULL, "%s: registered", what);
  CHECK(strstr(msg, needle) != NULL, "%s: message lacks '%s': %s", what, needle, msg);
  if (!m) printf("%-28s -> %s\n", what, msg);
}

static void test_registration_rules(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const ok_labels[] = {"stage"};
  static const char *const reserved[] = {"__name"};
  static const char *const le[] = {"le"};
  static const char *const twice[] = {"a", "a"};
  static const char *const dash[] = {"a-b"};
  static const double bounds[] = {1, 2}, unsorted[] = {2, 1};
  sdc_clearerr();
  expect_bad_register("digit first", sdc_metrics_counter(reg, "1bad", "", 0, NULL), "1bad");
  expect_bad_register("dash in name", sdc_metrics_counter(reg, "bad-name", "", 0, NULL), "bad-name");
  expect_bad_register("empty name", sdc_metrics_gauge(reg, "", "", 0, NULL), "metric name");
  expect_bad_register("reserved label", sdc_metrics_counter(reg, "x_total", "", 1, reserved), "__name");
  expect_bad_register("colon in label", sdc_metrics_counter(reg, "x_total", "", 1, dash), "a-b");
  expect_bad_register("label twice", sdc_metrics_counter(reg, "x_total", "", 2, twice), "twice");
  expect_bad_register("le on histogram", sdc_metrics_histogram(reg, "h", "", 1, le, bounds, 2), "h");
  expect_bad_register("unsorted bounds", sdc_metrics_histogram(reg, "h", "", 0, NULL, unsorted, 2), "bound 1");
  expect_bad_register("no bounds", sdc_metrics_histogram(reg, "h", "", 0, NULL, bounds, 0), "h");
  sdc_metric *a = sdc_metrics_counter(reg, "ns:sub_total", "Colons are fine in names.", 1, ok_labels);
  CHECK(a != NULL, "colon name: %s", sdc_errmsg(SDC_EINVAL));
  CHECK(sdc_metrics_counter(reg, "ns:sub_total", "again", 1, ok_labels) == a, "same registration returns the same");
  expect_bad_register("same name, other type", sdc_metrics_gauge(reg, "ns:sub_total", "", 1, ok_labels),
                      "ns:sub_total");
  expect_bad_register("same name, other labels", sdc_metrics_counter(reg, "ns:sub_total", "", 0, NULL),
                      "already registered");
  sdc_metric_add(NULL, NULL, 1); /* a failed registration's NULL is a no-op */
  CHECK(sdc_metrics_new_limited(0) == NULL, "max_series 0 accepted");
  sdc_metrics_free(reg);
}

#define N_THREADS 4
#define N_ITERS 100000

typedef struct {
  sdc_metric *c, *g, *h;
  int id;
} worker_arg;

static void *hammer(void *p) {
  worker_arg *a = p;
  const char *stages[] = {"clip", "unet", "vae"};
  for (int i = 0; i < N_ITERS; i++) {
    /* every thread creates every series, so creation races too */
    sdc_metric_add(a->c, (const char *const[]){stages[(i + a->id) % 3]}, 1);
    sdc_metric_add(a->g, NULL, 0.5);
    sdc_metric_observe(a->h, NULL, (i % 2) ? 0.01 : 2.0);
  }
  return NULL;
}

static void *scrape(void *p) {
  for (int i = 0; i < 50; i++) {
    char *text;
    size_t n;
    if (sdc_metrics_render(p, &text, &n) == 0) free(text);
  }
  return NULL;
}

static void test_concurrent_updates_sum_exactly(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const labels[] = {"stage"};
  static const double bounds[] = {0.1};
  worker_arg args[N_THREADS];
  pthread_t t[N_THREADS], scraper;
  sdc_metric *c = sdc_metrics_counter(reg, "c_total", "", 1, labels);
  sdc_metric *g = sdc_metrics_gauge(reg, "g", "", 0, NULL);
  sdc_metric *h = sdc_metrics_histogram(reg, "h_seconds", "", 0, NULL, bounds, 1);
  pthread_create(&scraper, NULL, scrape, reg);
  for (int i = 0; i < N_THREADS; i++) {
    args[i] = (worker_arg){c, g, h, i};
    pthread_create(&t[i], NULL, hammer, &args[i]);
  }
  for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
  pthread_join(scraper, NULL);
  double total = sdc_metric_value(c, (const char *const[]){"clip"}) + sdc_metric_value(c, (const char *const[]){"unet"}) +
                 sdc_metric_value(c, (const char *const[]){"vae"});
  CHECK(total == N_THREADS * N_ITERS, "counter sum %.17g, want %d", total, N_THREADS * N_ITERS);
  CHECK(sdc_metric_value(g, NULL) == 0.5 * N_THREADS * N_ITERS, "gauge %.17g", sdc_metric_value(g, NULL));
  CHECK(sdc_metric_value(h, NULL) == N_THREADS * N_ITERS, "histogram count %.17g", sdc_metric_value(h, NULL));
  char *text;
  size_t n;
  if (sdc_metrics_render(reg, &text, &n) == 0) {
    char want[128];
    snprintf(want, sizeof want, "h_seconds_bucket{le=\"0.1\"} %d\n", N_THREADS * N_ITERS / 2);
    CHECK(strstr(text, want) != NULL, "histogram bucket: want %s in\n%s", want, text);
    CHECK(strstr(text, "sdc_metrics_series_dropped_total{") == NULL, "3 series must not overflow:\n%s", text);
    free(text);
  }
  sdc_metrics_free(reg);
}

static int n_collects;
static void collect_depth(sdc_metrics *reg, void *ctx) {
  (void)reg;
  sdc_metric_set(ctx, NULL, ++n_collects);
}

static void test_collect_callbacks_and_process_metrics(void) {
  sdc_metrics *reg = sdc_metrics_new();
  sdc_metric *depth = sdc_metrics_gauge(reg, "depth", "Read at scrape.", 0, NULL);
  CHECK(sdc_metrics_on_collect(reg, collect_depth, depth) == 0, "on_collect");
  int err = sdc_metrics_add_process(reg);
  CHECK(err == 0, "add_process: %s", sdc_errmsg(err));
  char *text;
  size_t n;
  if (sdc_metrics_render(reg, &text, &n) == 0) {
    CHECK(strstr(text, "\ndepth 1\n") != NULL, "collect ran once before writing:\n%s", text);
    const char *rss = strstr(text, "\nprocess_resident_memory_bytes ");
    CHECK(rss && atof(rss + strlen("\nprocess_resident_memory_bytes ")) > 1e5, "rss:\n%s", text);
    const char *st = strstr(text, "\nprocess_start_time_seconds ");
    CHECK(st && atof(st + strlen("\nprocess_start_time_seconds ")) > 1.6e9, "start time:\n%s", text);
    CHECK(strstr(text, "# TYPE process_cpu_seconds_total counter\n") && strstr(text, "\nprocess_open_fds "),
          "cpu and fds:\n%s", text);
    free(text);
  }
  sdc_metrics_free(reg);
}

/* ---------------------------------------------------------------- HTTP */

typedef struct {
  int status;
  char head[2048];
  char body[65536];
} http_reply;

/* One HTTP/1.0 request to 127.0.0.1:port; 0 when a whole reply came back. */
static int http_fetch(int port, const char *method, const char *path, http_reply *r) {
  memset(r, 0, sizeof *r);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
    if (fd >= 0) close(fd);
    return -1;
  }
  char req[256], buf[sizeof r->head + sizeof r->body];
  int len = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", method, path);
  if (write(fd, req, (size_t)len) != len) {
    close(fd);
    return -1;
  }
  size_t got = 0;
  for (ssize_t k; got < sizeof buf - 1 && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0;) got += (size_t)k;
  close(fd);
  buf[got] = 0;
  char *end = strstr(buf, "\r\n\r\n");
  if (!end || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) return -1;
  snprintf(r->head, sizeof r->head, "%.*s", (int)(end - buf), buf);
  snprintf(r->body, sizeof r->body, "%s", end + 4);
  return 0;
}

static int ready_flag;
static int is_ready(void *ctx, char *why, size_t n) {
  if (*(int *)ctx) return 1;
  snprintf(why, n, "models still loading");
  return 0;
}

static void test_http_endpoints(void) {
  sdc_metrics *reg = sdc_metrics_new();
  sdc_metric *c = sdc_metrics_counter(reg, "served_total", "Things served.", 0, NULL);
  sdc_metric_add(c, NULL, 7);
  sdc_http *srv = NULL;
  int err = sdc_http_start(&srv, "127.0.0.1:0", reg, is_ready, &ready_flag);
  CHECK(err == 0, "start on 127.0.0.1:0: %s", sdc_errmsg(err));
  if (err) {
    sdc_metrics_free(reg);
    return;
  }
  int port = sdc_http_port(srv);
  CHECK(port > 0, "port %d", port);
  http_reply *r = malloc(sizeof *r);

  CHECK(http_fetch(port, "GET", "/metrics", r) == 0, "GET /metrics: no reply");
  CHECK(r->status == 200, "GET /metrics: %d", r->status);
  CHECK(strstr(r->head, "Content-Type: text/plain; version=0.0.4") != NULL, "content type in\n%s", r->head);
  CHECK(strstr(r->body, "# TYPE served_total counter\nserved_total 7\n") != NULL, "body:\n%s", r->body);

  CHECK(http_fetch(port, "GET", "/healthz", r) == 0 && r->status == 200 && !strcmp(r->body, "ok\n"),
        "healthz: %d %s", r->status, r->body);
  ready_flag = 0;
  CHECK(http_fetch(port, "GET", "/readyz", r) == 0 && r->status == 503 &&
            !strcmp(r->body, "not ready: models still loading\n"),
        "readyz not ready: %d %s", r->status, r->body);
  ready_flag = 1;
  CHECK(http_fetch(port, "GET", "/readyz", r) == 0 && r->status == 200 && !strcmp(r->body, "ready\n"),
        "readyz ready: %d %s", r->status, r->body);
  CHECK(http_fetch(port, "GET", "/nope", r) == 0 && r->status == 404, "GET /nope: %d", r->status);
  CHECK(http_fetch(port, "GET", "/metrics/", r) == 0 && r->status == 404, "GET /metrics/: %d", r->status);
  CHECK(http_fetch(port, "POST", "/metrics", r) == 0 && r->status == 405, "POST /metrics: %d", r->status);
  CHECK(strstr(r->head, "Allow: GET, HEAD") != NULL, "405 without Allow:\n%s", r->head);
  CHECK(http_fetch(port, "GET", "/metrics?x=1", r) == 0 && r->status == 200, "query string: %d", r->status);

  /* the same port again: in use, and the message says which address */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  sdc_http *second = NULL;
  err = sdc_http_start(&second, addr, reg, NULL, NULL);
  const char *msg = sdc_errmsg(err);
  CHECK(err == SDC_EIO && second == NULL, "port in use: got %s", sdc_err_name(err));
  CHECK(strstr(msg, addr) != NULL, "port in use: message lacks %s: %s", addr, msg);
  printf("%-28s -> %s\n", "port in use", msg);
  sdc_http_stop(second);
  free(r);
  sdc_http_stop(srv);
  sdc_metrics_free(reg);
}

static void test_http_bad_addresses(void) {
  const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:9x", "nohost:9100", "[::1:9100",
                       "[::zz]:9100", "1.2.3:9100", NULL};
  sdc_metrics *reg = sdc_metrics_new();
  for (int i = 0; bad[i]; i++) {
    sdc_http *srv = (sdc_http *)1;
    int err = sdc_http_start(&srv, bad[i], reg, NULL, NULL);
    const char *msg = sdc_errmsg(err);
    CHECK(err == SDC_EINVAL && srv == NULL, "%s: got %s", bad[i], sdc_err_name(err));
    CHECK(strstr(msg, bad[i]) != NULL, "%s: message does not name it: %s", bad[i], msg);
    printf("%-28s -> %s\n", bad[i], msg);
  }
  /* an address that parses but is not this host's: a bind error naming it (TEST-NET-1, never routed) */
  sdc_http *srv = NULL;
  int err = sdc_http_start(&srv, "192.0.2.1:0", reg, NULL, NULL);
  CHECK(err == SDC_EIO && strstr(sdc_errmsg(err), "192.0.2.1:0"), "foreign address: %s %s", sdc_err_name(err),
        sdc_errmsg(err));
  printf("%-28s -> %s\n", "192.0.2.1:0", sdc_errmsg(err));
  sdc_http_stop(srv);
  /* IPv6 loopback parses and binds where the host has IPv6; no traffic is sent to it */
  err = sdc_http_start(&srv, "[::1]:0", reg, NULL, NULL);
  CHECK(err == 0 || err == SDC_EIO, "[::1]:0: %s %s", sdc_err_name(err), sdc_errmsg(err));
  sdc_http_stop(srv);
  sdc_metrics_free(reg);
}

int main(void) {
  test_render_counter_and_gauge_golden();
  test_render_escapes_label_values_and_help();
  test_render_histogram_buckets_cumulative();
  test_overflow_series_counts_dropped();
  test_number_spellings();
  test_registration_rules();
  test_concurrent_updates_sum_exactly();
  test_collect_callbacks_and_process_metrics();
  test_http_endpoints();
  test_http_bad_addresses();
  return sdc_test_finish("test_metrics");
}
