/* test_bench_stats.c - sdc bench's arithmetic on fixed text: the Prometheus parser (comments, escaped label
 * values, +Inf/NaN, malformed lines), counter deltas with restarts, per-stage service time and utilisation,
 * bytes per image per link, re-issued steps, percentiles; and a scrape over HTTP of a served registry. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"
#include "error.h"
#include "http.h"
#include "metrics.h"
#include "prom.h"
#include "test_util.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

static sdc_prom_set parse(const char *text) {
  sdc_prom_set s;
  CHECK(sdc_prom_parse(&s, text, strlen(text)) == SDC_OK, "parse failed");
  return s;
}

static double value_of(const sdc_prom_set *s, const char *key) {
  const sdc_prom_sample *x = sdc_prom_find(s, key);
  CHECK(x != NULL, "no series %s", key);
  return x ? x->value : NAN;
}

static void test_parser_reads_the_text_format(void) {
  const char *text =
      "# HELP sdc_link_bytes_total Bytes of frames on each link.\n"
      "# TYPE sdc_link_bytes_total counter\n"
      "sdc_link_bytes_total{link=\"coordinator>text\",direction=\"sent\"} 1024\n"
      "sdc_link_bytes_total{direction=\"received\",link=\"coordinator>text\"} 2048 1718035200123\n"
      "\n"
      "   # an indented comment\n"
      "weird{path=\"C:\\\\dir\\\\\",say=\"he said \\\"hi\\\"\",nl=\"a\\nb\",} 3.5\r\n"
      "sdc_job_duration_seconds_bucket{state=\"done\",le=\"+Inf\"} 7\n"
      "sdc_worker_busy_ratio NaN\n"
      "neg_inf -Inf\n"
      "plus_inf +Inf\n"
      "sci 1.5e3\n"
      "spaced { a = \"x\" , b=\"y\" }   2\n"
      /* malformed lines: skipped and counted, never fatal */
      "no_value\n"
      "bad_value{a=\"b\"} twelve\n"
      "unclosed{a=\"b} 1\n"
      "9starts_with_digit 1\n"
      "dup{a=\"1\",a=\"2\"} 1\n"
      "trailing 1 2 3\n"
      "last_without_newline 42";
  sdc_prom_set s = parse(text);
  CHECK(s.n == 10, "%zu samples, expected 10", s.n);
  CHECK(s.n_bad_lines == 6, "%zu bad lines, expected 6", s.n_bad_lines);
  /* labels sorted in the key, whatever order the server printed them in */
  CHECK(value_of(&s, "sdc_link_bytes_total{direction=\"sent\",link=\"coordinator>text\"}") == 1024, "sent");
  CHECK(value_of(&s, "sdc_link_bytes_total{direction=\"received\",link=\"coordinator>text\"}") == 2048,
        "received, with a timestamp");
  const sdc_prom_sample *w = sdc_prom_find(&s, "weird{nl=\"a\\nb\",path=\"C:\\\\dir\\\\\",say=\"he said \\\"hi\\\"\"}");
  CHECK(w && w->value == 3.5, "escaped label values: key not found");
  if (w) {
    CHECK(!strcmp(sdc_prom_label(w, "say"), "he said \"hi\""), "say = '%s'", sdc_prom_label(w, "say"));
    CHECK(!strcmp(sdc_prom_label(w, "path"), "C:\\dir\\"), "path = '%s'", sdc_prom_label(w, "path"));
    CHECK(!strcmp(sdc_prom_label(w, "nl"), "a\nb"), "nl = '%s'", sdc_prom_label(w, "nl"));
    CHECK(sdc_prom_label(w, "absent") == NULL, "absent label");
  }
  CHECK(value_of(&s, "sdc_job_duration_seconds_bucket{le=\"+Inf\",state=\"done\"}") == 7, "+Inf bucket");
  CHECK(isnan(value_of(&s, "sdc_worker_busy_ratio")), "NaN");
  CHECK(value_of(&s, "neg_inf") == -INFINITY && value_of(&s, "plus_inf") == INFINITY, "infinities");
  CHECK(value_of(&s, "sci") == 1500, "1.5e3");
  CHECK(value_of(&s, "spaced{a=\"x\",b=\"y\"}") == 2, "blanks inside braces");
  CHECK(value_of(&s, "last_without_newline") == 42, "last line without a newline");
  CHECK(sdc_prom_find(&s, "no_value") == NULL && sdc_prom_find(&s, "trailing") == NULL, "malformed lines read");
  sdc_prom_set_free(&s);
  sdc_prom_set empty = parse("");
  CHECK(empty.n == 0 && empty.n_bad_lines == 0, "empty text");
  sdc_prom_set_free(&empty);
  printf("parser: comments, escapes, +Inf/NaN, timestamps, 6 malformed lines skipped\n");
}

static void test_counter_delta_handles_new_series_and_restarts(void) {
  sdc_prom_set before = parse("c{a=\"1\"} 10\nc{a=\"2\"} 50\n");
  sdc_prom_set after = parse("c{a=\"1\"} 25\nc{a=\"2\"} 5\nc{a=\"3\"} 7\n");
  CHECK(sdc_prom_counter_delta(&before, &after.samples[0]) == 15, "plain delta");
  CHECK(sdc_prom_counter_delta(&before, &after.samples[1]) == 5, "a restart counts from 0");
  CHECK(sdc_prom_counter_delta(&before, &after.samples[2]) == 7, "a new series counts from 0");
  sdc_prom_set_free(&before);
  sdc_prom_set_free(&after);
}

/* A coordinator, two unet-down workers (one restarted between the scrapes) and a text worker. */
static void test_stage_and_link_figures_from_deltas(void) {
  const char *coord0 =
      "sdc_steps_reissued_total 2\n"
      "sdc_link_bytes_total{link=\"coordinator>text\",direction=\"sent\"} 1000\n"
      "sdc_link_bytes_total{link=\"text>coordinator\",direction=\"received\"} 999999\n"
      "sdc_link_bytes_total{link=\"coordinator>unet-down\",direction=\"sent\"} 0\n";
  const char *coord1 =
      "sdc_steps_reissued_total 5\n"
      "sdc_link_bytes_total{link=\"coordinator>text\",direction=\"sent\"} 5000\n"
      "sdc_link_bytes_total{link=\"text>coordinator\",direction=\"received\"} 9999999\n"
      "sdc_link_bytes_total{link=\"coordinator>unet-down\",direction=\"sent\"} 40000\n";
  const char *down_a0 =
      "# TYPE sdc_stage_compute_seconds_total counter\n"
      "sdc_stage_compute_seconds_total{stage=\"unet-down\"} 100\n"
      "sdc_stage_requests_total{stage=\"unet-down\"} 1000\n";
  const char *down_a1 =
      "sdc_stage_compute_seconds_total{stage=\"unet-down\"} 106\n"
      "sdc_stage_requests_total{stage=\"unet-down\"} 1030\n";
  const char *down_b0 =
      "sdc_stage_compute_seconds_total{stage=\"unet-down\"} 500\n"
      "sdc_stage_requests_total{stage=\"unet-down\"} 900\n";
  const char *down_b1 = /* restarted: counters from 0 */
      "sdc_stage_compute_seconds_total{stage=\"unet-down\"} 2\n"
      "sdc_stage_requests_total{stage=\"unet-down\"} 10\n"
      "sdc_link_bytes_total{link=\"unet-down>unet-mid\",direction=\"sent\"} 8000\n";
  const char *text0 = "sdc_stage_compute_seconds_total{stage=\"text\"} 0\nsdc_stage_requests_total{stage=\"text\"} 0\n"
                      "sdc_link_bytes_total{link=\"text>coordinator\",direction=\"sent\"} 0\n";
  const char *text1 = "sdc_stage_compute_seconds_total{stage=\"text\"} 0.5\nsdc_stage_requests_total{stage=\"text\"} 4\n"
                      "sdc_link_bytes_total{link=\"text>coordinator\",direction=\"sent\"} 12000\n";
  sdc_prom_set before[4] = {parse(coord0), parse(down_a0), parse(down_b0), parse(text0)};
  sdc_prom_set after[4] = {parse(coord1), parse(down_a1), parse(down_b1), parse(text1)};
  sdc_bench_metrics m;
  const double wall_s = 10;
  sdc_bench_metrics_compute(&m, before, after, 4, wall_s, 4);
  const sdc_bench_stage *d = &m.stage[SDC_STAGE_UNET_DOWN], *t = &m.stage[SDC_STAGE_TEXT];
  /* unet-down: 6 + 2 compute seconds over 30 + 10 requests, 2 workers for 10 s */
  CHECK(near(d->compute_s, 8) && near(d->requests, 40), "unet-down compute %g requests %g", d->compute_s, d->requests);
  CHECK(near(d->service_s, 0.2), "unet-down mean service %g, expected 0.2", d->service_s);
  CHECK(d->workers == 2 && near(d->utilisation, 8.0 / (10 * 2)), "unet-down workers %d utilisation %g", d->workers,
        d->utilisation);
  CHECK(near(t->service_s, 0.125) && t->workers == 1 && near(t->utilisation, 0.05), "text service %g util %g",
        t->service_s, t->utilisation);
  /* no endpoint served these stages: unknown, not zero */
  for (int s = SDC_STAGE_UNET_MID; s < SDC_STAGE_END; s++)
    if (s != SDC_STAGE_UNET_DOWN)
      CHECK(isnan(m.stage[s].service_s) && isnan(m.stage[s].utilisation) && m.stage[s].workers == 0,
            "stage %s should be n/a", sdc_stage_name(s));
  CHECK(near(m.reissued, 3), "re-issued %g, expected 3", m.reissued);
  /* sent sides only, sorted by name: the received 9 MB on text>coordinator must not count twice */
  CHECK(m.n_links == 4, "%d links, expected 4", m.n_links);
  static const char *const names[] = {"coordinator>text", "coordinator>unet-down", "text>coordinator",
                                      "unet-down>unet-mid"};
  static const double per_image[] = {1000, 10000, 3000, 2000};
  for (int k = 0; k < m.n_links && k < 4; k++)
    CHECK(!strcmp(m.links[k].name, names[k]) && near(m.links[k].bytes_per_image, per_image[k]),
          "link %d: %s %g bytes/image, expected %s %g", k, m.links[k].name, m.links[k].bytes_per_image, names[k],
          per_image[k]);
  /* no endpoints at all: everything n/a */
  sdc_bench_metrics none;
  sdc_bench_metrics_compute(&none, NULL, NULL, 0, wall_s, 4);
  CHECK(none.n_endpoints == 0 && none.n_links == 0 && isnan(none.reissued) &&
            isnan(none.stage[SDC_STAGE_VAE].utilisation),
        "no endpoints should leave everything n/a");
  for (int i = 0; i < 4; i++) sdc_prom_set_free(&before[i]), sdc_prom_set_free(&after[i]);
  printf("deltas: unet-down 0.2 s/request at 40%% of 2 workers, 4 links, 3 re-issued steps\n");
}

static void test_percentiles_interpolate_like_numpy(void) {
  const double x[] = {1, 2, 3, 4}, one[] = {7};
  CHECK(near(sdc_bench_percentile(x, 4, 50), 2.5), "p50 of 1..4");
  CHECK(near(sdc_bench_percentile(x, 4, 95), 3.85), "p95 of 1..4 = %g", sdc_bench_percentile(x, 4, 95));
  CHECK(near(sdc_bench_percentile(x, 4, 0), 1) && near(sdc_bench_percentile(x, 4, 100), 4), "ends");
  CHECK(near(sdc_bench_percentile(one, 1, 99), 7), "one value");
  CHECK(isnan(sdc_bench_percentile(x, 0, 50)), "no values");
}

/* A registry served by the metrics layer's own HTTP server, scraped twice with the bench's GET. */
static void test_scrape_over_http(void) {
  sdc_metrics *reg = sdc_metrics_new();
  static const char *const stage_label[] = {"stage"};
  sdc_metric *compute = sdc_metrics_counter(reg, "sdc_stage_compute_seconds_total", "Seconds computing.", 1, stage_label);
  sdc_metric *requests = sdc_metrics_counter(reg, "sdc_stage_requests_total", "Requests computed.", 1, stage_label);
  const char *const vae[] = {"vae"};
  sdc_metric_add(compute, vae, 1.25);
  sdc_metric_add(requests, vae, 5);
  sdc_http *srv = NULL;
  int err = sdc_http_start(&srv, "127.0.0.1:0", reg, NULL, NULL);
  CHECK(err == SDC_OK, "cannot serve metrics: %s", sdc_errmsg(err));
  if (err) {
    sdc_metrics_free(reg);
    return;
  }
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", sdc_http_port(srv));
  sdc_prom_set scrape[2];
  for (int i = 0; i < 2; i++) {
    char *body = NULL;
    size_t n = 0;
    err = sdc_prom_http_get(url, 3000, &body, &n);
    CHECK(err == SDC_OK && body && n == strlen(body), "GET %s: %s", url, err ? sdc_errmsg(err) : "");
    sdc_prom_parse(&scrape[i], body ? body : "", body ? n : 0);
    CHECK(scrape[i].n_bad_lines == 0, "the metrics layer's text has %zu lines this parser rejects", scrape[i].n_bad_lines);
    free(body);
    sdc_metric_add(compute, vae, 0.75);
    sdc_metric_add(requests, vae, 5);
  }
  sdc_bench_metrics m;
  sdc_bench_metrics_compute(&m, &scrape[0], &scrape[1], 1, 1.0, 1);
  CHECK(near(m.stage[SDC_STAGE_VAE].service_s, 0.15) && near(m.stage[SDC_STAGE_VAE].utilisation, 0.75),
        "over HTTP: vae service %g utilisation %g", m.stage[SDC_STAGE_VAE].service_s, m.stage[SDC_STAGE_VAE].utilisation);
  sdc_prom_set_free(&scrape[0]), sdc_prom_set_free(&scrape[1]);
  /* a wrong path is an HTTP error, not a parse of the 404 page */
  char bad[80], *body = NULL;
  size_t n;
  snprintf(bad, sizeof bad, "http://127.0.0.1:%d/nothing", sdc_http_port(srv));
  err = sdc_prom_http_get(bad, 3000, &body, &n);
  CHECK(err == SDC_EIO && strstr(sdc_errmsg(err), "404"), "404: %s", sdc_errmsg(err));
  sdc_http_stop(srv);
  sdc_metrics_free(reg);
  /* a closed port and malformed URLs: errors naming the URL */
  snprintf(bad, sizeof bad, "http://127.0.0.1:%d/metrics", sdc_test_free_port());
  err = sdc_prom_http_get(bad, 1000, &body, &n);
  CHECK(err == SDC_EIO && strstr(sdc_errmsg(err), bad), "closed port: %s", sdc_errmsg(err));
  static const char *const malformed[] = {"https://x/metrics", "http://", "http://host:99999/", "http://host:x/",
                                          "127.0.0.1:9100"};
  for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
    err = sdc_prom_http_get(malformed[i], 1000, &body, &n);
    CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), malformed[i]), "%s: %s", malformed[i], sdc_errmsg(err));
  }
  printf("scrape over HTTP: vae 0.15 s/request at 75%%; 404, closed port and bad URLs are errors\n");
}

int main(void) {
  test_parser_reads_the_text_format();
  test_counter_delta_handles_new_series_and_restarts();
  test_stage_and_link_figures_from_deltas();
  test_percentiles_interpolate_like_numpy();
  test_scrape_over_http();
  return sdc_test_finish("test_bench_stats");
}
