/* bench.c - `sdc bench`: N jobs at concurrency C against a running cluster; throughput, latency, stage and link figures. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_stats.h"
#include "cli.h"
#include "clock.h"
#include "error.h"
#include "flag.h"
#include "prom.h"
#include "redis_url.h"
#include "sdc_client.h"
#include "sdc_limits.h"

#define SDC__BENCH_DEFAULT_REDIS "redis://127.0.0.1:6379"
#define SDC__BENCH_DEFAULT_PROMPT "a photograph of an astronaut riding a horse"
#define SDC__BENCH_MAX_JOBS 100000
#define SDC__BENCH_MAX_CONCURRENCY 256
#define SDC__BENCH_MAX_METRICS 64
#define SDC__BENCH_SCRAPE_TIMEOUT_MS 3000

/* One job of the run, as measured. Times: *_ms since the Unix epoch (submit on this machine's clock,
 * created/started/finished from the job hash), -1 when unknown; *_s durations, NAN when unknown. */
typedef struct {
  int64_t index;
  char id[SDC_MAX_JOB_ID + 1];
  uint64_t seed;
  int64_t submit_ms, created_ms, start_ms, finish_ms;
  double latency_s, queue_wait_s, service_s;
  char state[16]; /* done, failed, cancelled, timeout, error (never submitted or lost) */
  char error[256];
} sdc__bench_job;

typedef struct {
  const char *url, *prompt, *scheduler;
  int64_t n_jobs, concurrency, width, height, steps, seed_base;
  double timeout_s;
  char run_id[32];
  sdc__bench_job *jobs;
  pthread_mutex_t mu;
  int64_t next, n_finished, n_done; /* under mu */
  double last_end_mono_s;           /* under mu: when the last job to end ended */
} sdc__bench;

/* --------------------------------------------------------------- running */

static void sdc__job_fail(sdc__bench_job *j, const char *state, const char *msg) {
  snprintf(j->state, sizeof j->state, "%s", state);
  snprintf(j->error, sizeof j->error, "%s", msg);
  for (char *c = j->error; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
}

/* Submits job j and waits for it on client c; fills the row. Never blocks past the per-job timeout. */
static void sdc__bench_one(sdc__bench *b, sdc_client *c, sdc__bench_job *j) {
  sdc_job job;
  sdc_job_init(&job);
  snprintf(job.id, sizeof job.id, "bench-%s-%lld", b->run_id, (long long)j->index);
  job.prompt = (char *)b->prompt; /* borrowed: never sdc_job_free()d */
  job.width = b->width, job.height = b->height, job.steps = b->steps;
  if (b->scheduler) snprintf(job.scheduler, sizeof job.scheduler, "%s", b->scheduler);
  job.has_seed = 1, job.seed = (uint64_t)(b->seed_base + j->index);
  snprintf(j->id, sizeof j->id, "%s", job.id);
  j->seed = job.seed;
  double t0 = sdc_clock_mono_s();
  j->submit_ms = (int64_t)sdc_clock_unix_ms();
  char id[SDC_MAX_JOB_ID + 1];
  int err = sdc_client_submit(c, &job, id, sizeof id);
  if (err) {
    sdc__job_fail(j, "error", sdc_errmsg(err));
    return;
  }
  sdc_job_status st;
  err = sdc_client_wait(c, id, (int64_t)(b->timeout_s * 1000), NULL, NULL, &st);
  j->latency_s = sdc_clock_mono_s() - t0;
  j->created_ms = st.created_ms, j->start_ms = st.started_ms, j->finish_ms = st.finished_ms;
  if (st.created_ms > 0 && st.started_ms > 0) j->queue_wait_s = (double)(st.started_ms - st.created_ms) / 1000;
  if (st.started_ms > 0 && st.finished_ms > 0) j->service_s = (double)(st.finished_ms - st.started_ms) / 1000;
  if (err == SDC_EAGAIN) {
    /* stop it, so a stuck job does not keep a slot of the cluster busy for the rest of the run */
    sdc__job_fail(j, "timeout", "no final state within --timeout-s; cancel requested");
    sdc_client_cancel(c, id, NULL);
    j->latency_s = NAN;
  } else if (err) {
    sdc__job_fail(j, "error", sdc_errmsg(err));
    j->latency_s = NAN;
  } else {
    snprintf(j->state, sizeof j->state, "%s", sdc_job_state_name(st.state));
    if (st.state != SDC_JOB_DONE) {
      sdc__job_fail(j, sdc_job_state_name(st.state), st.error[0] ? st.error : "(no error recorded)");
      j->latency_s = NAN;
    }
  }
  sdc_job_status_free(&st);
}

/* One of C threads: each keeps one job in flight, on its own connection (a client is not thread-safe). */
static void *sdc__bench_thread(void *arg) {
  sdc__bench *b = arg;
  sdc_client *c = NULL;
  int err = sdc_client_connect(&c, b->url);
  char why[256];
  snprintf(why, sizeof why, "%s", err ? sdc_errmsg(err) : "");
  for (;;) {
    pthread_mutex_lock(&b->mu);
    int64_t i = b->next < b->n_jobs ? b->next++ : -1;
    pthread_mutex_unlock(&b->mu);
    if (i < 0) break;
    sdc__bench_job *j = &b->jobs[i];
    if (err) sdc__job_fail(j, "error", why);
    else sdc__bench_one(b, c, j);
    double end = sdc_clock_mono_s();
    pthread_mutex_lock(&b->mu);
    if (end > b->last_end_mono_s) b->last_end_mono_s = end;
    b->n_finished++;
    b->n_done += !strcmp(j->state, "done");
    pthread_mutex_unlock(&b->mu);
  }
  sdc_client_free(c);
  return NULL;
}

static void sdc__bench_bar(sdc__bench *b, double elapsed_s) {
  pthread_mutex_lock(&b->mu);
  int64_t fin = b->n_finished, done = b->n_done, started = b->next;
  pthread_mutex_unlock(&b->mu);
  char bar[31];
  int fill = (int)(30 * fin / b->n_jobs);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  fprintf(stderr, "\r[%s] %lld/%lld finished, %lld in flight, %lld failed, %.1f s, %.2f images/min ", bar,
          (long long)fin, (long long)b->n_jobs, (long long)(started - fin), (long long)(fin - done), elapsed_s,
          elapsed_s > 0 ? (double)done * 60 / elapsed_s : 0.0);
  fflush(stderr);
}

/* ---------------------------------------------------------------- scrapes */

/* Scrapes every URL; ok[i] says which answered (a warning line for each that did not). */
static void sdc__scrape_all(const char *const *urls, int n, sdc_prom_set *sets, int *ok, const char *when) {
  for (int i = 0; i < n; i++) {
    char *body = NULL;
    size_t len = 0;
    ok[i] = 0;
    memset(&sets[i], 0, sizeof sets[i]);
    int err = sdc_prom_http_get(urls[i], SDC__BENCH_SCRAPE_TIMEOUT_MS, &body, &len);
    if (!err) err = sdc_prom_parse(&sets[i], body, len);
    free(body);
    if (err) {
      fprintf(stderr, "sdc bench: warning: %s (scrape %s the run); its figures are n/a\n", sdc_errmsg(err), when);
      continue;
    }
    if (sets[i].n_bad_lines)
      fprintf(stderr, "sdc bench: warning: metrics URL '%s': %zu malformed lines skipped\n", urls[i], sets[i].n_bad_lines);
    ok[i] = 1;
  }
}

/* ------------------------------------------------------------------ output */

typedef struct {
  double p50, p95, p99, mean, min, max;
  int64_t n;
} sdc__dist;

static int sdc__cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The distribution of the field at offset off of the done jobs' rows (NAN values skipped). */
static sdc__dist sdc__distribution(const sdc__bench *b, size_t off) {
  double *v = malloc((size_t)b->n_jobs * sizeof *v);
  sdc__dist d = {NAN, NAN, NAN, NAN, NAN, NAN, 0};
  if (!v) return d;
  double sum = 0;
  for (int64_t i = 0; i < b->n_jobs; i++) {
    double x = *(const double *)((const char *)&b->jobs[i] + off);
    if (!strcmp(b->jobs[i].state, "done") && isfinite(x)) v[d.n++] = x, sum += x;
  }
  qsort(v, (size_t)d.n, sizeof *v, sdc__cmp_double);
  if (d.n) {
    d.p50 = sdc_bench_percentile(v, (size_t)d.n, 50);
    d.p95 = sdc_bench_percentile(v, (size_t)d.n, 95);
    d.p99 = sdc_bench_percentile(v, (size_t)d.n, 99);
    d.mean = sum / (double)d.n, d.min = v[0], d.max = v[d.n - 1];
  }
  free(v);
  return d;
}

/* A number, or n/a when unknown. */
static const char *sdc__num(char *buf, size_t n, const char *fmt, double x) {
  if (!isfinite(x)) snprintf(buf, n, "n/a");
  else snprintf(buf, n, fmt, x);
  return buf;
}

static void sdc__json_num(cJSON *o, const char *name, double x) {
  if (isfinite(x)) cJSON_AddNumberToObject(o, name, x);
  else cJSON_AddNullToObject(o, name);
}

static cJSON *sdc__json_dist(const sdc__dist *d) {
  cJSON *o = cJSON_CreateObject();
  sdc__json_num(o, "p50", d->p50), sdc__json_num(o, "p95", d->p95), sdc__json_num(o, "p99", d->p99);
  sdc__json_num(o, "mean", d->mean), sdc__json_num(o, "min", d->min), sdc__json_num(o, "max", d->max);
  cJSON_AddNumberToObject(o, "n", (double)d->n);
  return o;
}

typedef struct {
  int64_t done, failed, cancelled, timed_out, errors;
  double wall_s, images_per_minute;
  sdc__dist latency, queue_wait, service;
  int have_metrics; /* at least one endpoint answered both scrapes */
  sdc_bench_metrics m;
} sdc__bench_result;

static void sdc__print_table(const sdc__bench *b, const sdc__bench_result *r, int n_urls) {
  char a[6][32], size[48] = "the model's native size";
  if (b->width || b->height) snprintf(size, sizeof size, "%lldx%lld", (long long)b->width, (long long)b->height);
  printf("sdc bench: %lld jobs at concurrency %lld, %s, %lld steps, scheduler %s, seeds %lld..%lld\n",
         (long long)b->n_jobs, (long long)b->concurrency, size,
         (long long)b->steps, b->scheduler ? b->scheduler : "the model's", (long long)b->seed_base,
         (long long)(b->seed_base + b->n_jobs - 1));
  printf("done %lld, failed %lld, cancelled %lld, timed out %lld, errors %lld\n", (long long)r->done,
         (long long)r->failed, (long long)r->cancelled, (long long)r->timed_out, (long long)r->errors);
  printf("wall %.2f s, %s images/minute\n\n", r->wall_s, sdc__num(a[0], sizeof a[0], "%.2f", r->images_per_minute));
  printf("%-28s %9s %9s %9s %9s %9s %9s\n", "seconds (done jobs)", "p50", "p95", "p99", "mean", "min", "max");
  const struct {
    const char *name;
    const sdc__dist *d;
  } rows[] = {{"latency (submit..done)", &r->latency},
              {"queue wait (created..start)", &r->queue_wait},
              {"service (start..finish)", &r->service}};
  for (int i = 0; i < 3; i++) {
    const sdc__dist *d = rows[i].d;
    printf("%-28s %9s %9s %9s %9s %9s %9s\n", rows[i].name, sdc__num(a[0], 32, "%.3f", d->p50),
           sdc__num(a[1], 32, "%.3f", d->p95), sdc__num(a[2], 32, "%.3f", d->p99), sdc__num(a[3], 32, "%.3f", d->mean),
           sdc__num(a[4], 32, "%.3f", d->min), sdc__num(a[5], 32, "%.3f", d->max));
  }
  printf("\n%-12s %9s %16s %8s %12s   (from --metrics: %d of %d endpoints answered)\n", "stage", "requests",
         "mean service ms", "workers", "utilisation", r->m.n_endpoints, n_urls);
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
    const sdc_bench_stage *g = &r->m.stage[s];
    char w[16];
    snprintf(w, sizeof w, "%d", g->workers);
    printf("%-12s %9s %16s %8s %12s\n", sdc_stage_name(s), sdc__num(a[0], 32, "%.0f", g->requests),
           sdc__num(a[1], 32, "%.2f", g->service_s * 1000), r->have_metrics && g->workers ? w : "n/a",
           sdc__num(a[2], 32, "%.1f%%", g->utilisation * 100));
  }
  printf("\n%-28s %14s\n", "link (bytes sent)", "bytes/image");
  if (!r->m.n_links) printf("%-28s %14s\n", "(none reported)", "n/a");
  for (int k = 0; k < r->m.n_links; k++)
    printf("%-28s %14s\n", r->m.links[k].name, sdc__num(a[0], 32, "%.0f", r->m.links[k].bytes_per_image));
  printf("\nre-issued steps: %s\n", sdc__num(a[0], 32, "%.0f", r->m.reissued));
}

static cJSON *sdc__json(const sdc__bench *b, const sdc__bench_result *r, const char *const *urls, int n_urls) {
  cJSON *root = cJSON_CreateObject(), *cfg = cJSON_AddObjectToObject(root, "config");
  sdc_redis_url shown;
  cJSON_AddStringToObject(cfg, "redis", sdc_redis_url_parse(&shown, b->url) == SDC_OK ? shown.where : "?");
  cJSON_AddNumberToObject(cfg, "jobs", (double)b->n_jobs);
  cJSON_AddNumberToObject(cfg, "concurrency", (double)b->concurrency);
  cJSON_AddNumberToObject(cfg, "width", (double)b->width);
  cJSON_AddNumberToObject(cfg, "height", (double)b->height);
  cJSON_AddNumberToObject(cfg, "steps", (double)b->steps);
  if (b->scheduler) cJSON_AddStringToObject(cfg, "scheduler", b->scheduler);
  else cJSON_AddNullToObject(cfg, "scheduler");
  cJSON_AddNumberToObject(cfg, "seed_base", (double)b->seed_base);
  cJSON_AddStringToObject(cfg, "prompt", b->prompt);
  cJSON_AddNumberToObject(cfg, "timeout_s", b->timeout_s);
  cJSON *mu = cJSON_AddArrayToObject(cfg, "metrics");
  for (int i = 0; i < n_urls; i++) cJSON_AddItemToArray(mu, cJSON_CreateString(urls[i]));
  cJSON *sum = cJSON_AddObjectToObject(root, "summary");
  cJSON_AddNumberToObject(sum, "jobs", (double)b->n_jobs);
  cJSON_AddNumberToObject(sum, "done", (double)r->done);
  cJSON_AddNumberToObject(sum, "failed", (double)r->failed);
  cJSON_AddNumberToObject(sum, "cancelled", (double)r->cancelled);
  cJSON_AddNumberToObject(sum, "timed_out", (double)r->timed_out);
  cJSON_AddNumberToObject(sum, "errors", (double)r->errors);
  cJSON_AddNumberToObject(sum, "images", (double)r->done);
  cJSON_AddNumberToObject(sum, "wall_s", r->wall_s);
  sdc__json_num(sum, "images_per_minute", r->images_per_minute);
  cJSON_AddItemToObject(root, "latency_s", sdc__json_dist(&r->latency));
  cJSON_AddItemToObject(root, "queue_wait_s", sdc__json_dist(&r->queue_wait));
  cJSON_AddItemToObject(root, "service_s", sdc__json_dist(&r->service));
  cJSON *st = cJSON_AddObjectToObject(root, "stages");
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
    const sdc_bench_stage *g = &r->m.stage[s];
    cJSON *o = cJSON_AddObjectToObject(st, sdc_stage_name(s));
    sdc__json_num(o, "requests", g->requests);
    sdc__json_num(o, "compute_s", g->compute_s);
    sdc__json_num(o, "mean_service_s", g->service_s);
    sdc__json_num(o, "workers", r->have_metrics && g->workers ? g->workers : NAN);
    sdc__json_num(o, "utilisation", g->utilisation);
  }
  cJSON *ln = cJSON_AddObjectToObject(root, "links");
  for (int k = 0; k < r->m.n_links; k++) {
    cJSON *o = cJSON_AddObjectToObject(ln, r->m.links[k].name);
    sdc__json_num(o, "bytes_sent", r->m.links[k].bytes_sent);
    sdc__json_num(o, "bytes_per_image", r->m.links[k].bytes_per_image);
  }
  sdc__json_num(root, "reissued_steps", r->m.reissued);
  cJSON *me = cJSON_AddObjectToObject(root, "metrics_endpoints");
  cJSON_AddNumberToObject(me, "given", n_urls);
  cJSON_AddNumberToObject(me, "answered", r->m.n_endpoints);
  cJSON *rows = cJSON_AddArrayToObject(root, "rows");
  for (int64_t i = 0; i < b->n_jobs; i++) {
    const sdc__bench_job *j = &b->jobs[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)j->index);
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddNumberToObject(o, "seed", (double)j->seed);
    sdc__json_num(o, "submit_ms", j->submit_ms > 0 ? (double)j->submit_ms : NAN);
    sdc__json_num(o, "start_ms", j->start_ms > 0 ? (double)j->start_ms : NAN);
    sdc__json_num(o, "finish_ms", j->finish_ms > 0 ? (double)j->finish_ms : NAN);
    sdc__json_num(o, "latency_s", j->latency_s);
    sdc__json_num(o, "queue_wait_s", j->queue_wait_s);
    sdc__json_num(o, "service_s", j->service_s);
    cJSON_AddStringToObject(o, "state", j->state);
    if (j->error[0]) cJSON_AddStringToObject(o, "error", j->error);
    cJSON_AddItemToArray(rows, o);
  }
  return root;
}

/* A CSV field: quoted when it holds a comma, quote or newline. */
static void sdc__csv_str(FILE *fp, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

static void sdc__csv_ms(FILE *fp, int64_t ms) {
  if (ms > 0) fprintf(fp, "%lld", (long long)ms);
}

static void sdc__csv_s(FILE *fp, double s) {
  if (isfinite(s)) fprintf(fp, "%.4f", s);
}

static int sdc__write_csv(const char *path, const sdc__bench *b, const sdc__bench_result *r) {
  FILE *fp = fopen(path, "w");
  if (!fp) return sdc_seterr(SDC_EIO, "--csv '%s': %s", path, strerror(errno));
  fprintf(fp, "index,id,seed,submit_ms,start_ms,finish_ms,latency_s,queue_wait_s,state,service_s,error\n");
  for (int64_t i = 0; i < b->n_jobs; i++) {
    const sdc__bench_job *j = &b->jobs[i];
    fprintf(fp, "%lld,%s,%llu,", (long long)j->index, j->id, (unsigned long long)j->seed);
    sdc__csv_ms(fp, j->submit_ms), fputc(',', fp);
    sdc__csv_ms(fp, j->start_ms), fputc(',', fp);
    sdc__csv_ms(fp, j->finish_ms), fputc(',', fp);
    sdc__csv_s(fp, j->latency_s), fputc(',', fp);
    sdc__csv_s(fp, j->queue_wait_s), fputc(',', fp);
    fprintf(fp, "%s,", j->state);
    sdc__csv_s(fp, j->service_s), fputc(',', fp);
    sdc__csv_str(fp, j->error);
    fputc('\n', fp);
  }
  /* the summary: a blank line, then metric,value rows (n/a when unknown) */
  char v[32];
  fprintf(fp, "\nmetric,value\n");
  fprintf(fp, "jobs,%lld\ndone,%lld\nfailed,%lld\ncancelled,%lld\ntimed_out,%lld\nerrors,%lld\n", (long long)b->n_jobs,
          (long long)r->done, (long long)r->failed, (long long)r->cancelled, (long long)r->timed_out,
          (long long)r->errors);
  fprintf(fp, "wall_s,%.4f\nimages_per_minute,%s\n", r->wall_s, sdc__num(v, sizeof v, "%.4f", r->images_per_minute));
  const struct {
    const char *name;
    const sdc__dist *d;
  } dists[] = {{"latency", &r->latency}, {"queue_wait", &r->queue_wait}, {"service", &r->service}};
  for (int i = 0; i < 3; i++) {
    const sdc__dist *d = dists[i].d;
    fprintf(fp, "%s_p50_s,%s\n", dists[i].name, sdc__num(v, sizeof v, "%.4f", d->p50));
    fprintf(fp, "%s_p95_s,%s\n", dists[i].name, sdc__num(v, sizeof v, "%.4f", d->p95));
    fprintf(fp, "%s_p99_s,%s\n", dists[i].name, sdc__num(v, sizeof v, "%.4f", d->p99));
    fprintf(fp, "%s_mean_s,%s\n", dists[i].name, sdc__num(v, sizeof v, "%.4f", d->mean));
  }
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
    const sdc_bench_stage *g = &r->m.stage[s];
    fprintf(fp, "stage_%s_requests,%s\n", sdc_stage_name(s), sdc__num(v, sizeof v, "%.0f", g->requests));
    fprintf(fp, "stage_%s_mean_service_s,%s\n", sdc_stage_name(s), sdc__num(v, sizeof v, "%.6f", g->service_s));
    fprintf(fp, "stage_%s_utilisation,%s\n", sdc_stage_name(s), sdc__num(v, sizeof v, "%.4f", g->utilisation));
  }
  for (int k = 0; k < r->m.n_links; k++) {
    fputs("link_", fp);
    sdc__csv_str(fp, r->m.links[k].name);
    fprintf(fp, "_bytes_per_image,%s\n", sdc__num(v, sizeof v, "%.0f", r->m.links[k].bytes_per_image));
  }
  fprintf(fp, "reissued_steps,%s\n", sdc__num(v, sizeof v, "%.0f", r->m.reissued));
  if (fclose(fp) != 0) return sdc_seterr(SDC_EIO, "--csv '%s': %s", path, strerror(errno));
  return SDC_OK;
}

/* gnuplot's single-quoted string: '' stands for one quote. */
static void sdc__gp_str(FILE *fp, const char *s) {
  fputc('\'', fp);
  for (; *s; s++) {
    if (*s == '\'') fputc('\'', fp);
    fputc(*s, fp);
  }
  fputc('\'', fp);
}

/* Whether an executable `name` is on PATH. */
static int sdc__on_path(const char *name) {
  const char *path = getenv("PATH");
  char dir[4096];
  for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
    size_t n = strcspn(p, ":");
    snprintf(dir, sizeof dir, "%.*s/%s", (int)n, p, name);
    if (n && access(dir, X_OK) == 0) return 1;
    p += n + (p[n] == ':');
  }
  return 0;
}

/* Latency over job index (left) and its CDF (right), as a PNG drawn by gnuplot in a subprocess. */
static int sdc__plot(const char *png, const sdc__bench *b, const sdc__bench_result *r) {
  char dir[] = "/tmp/sdc-bench-XXXXXX", data[64], cdf[64];
  if (!mkdtemp(dir)) return sdc_seterr(SDC_EIO, "--plot: cannot make a temporary folder: %s", strerror(errno));
  snprintf(data, sizeof data, "%s/jobs.dat", dir);
  snprintf(cdf, sizeof cdf, "%s/cdf.dat", dir);
  FILE *fd = fopen(data, "w"), *fc = fopen(cdf, "w");
  double *v = malloc((size_t)b->n_jobs * sizeof *v);
  int64_t n = 0;
  for (int64_t i = 0; fd && i < b->n_jobs; i++)
    if (!strcmp(b->jobs[i].state, "done") && isfinite(b->jobs[i].latency_s)) {
      fprintf(fd, "%lld %.4f\n", (long long)i, b->jobs[i].latency_s);
      if (v) v[n++] = b->jobs[i].latency_s;
    }
  if (v) qsort(v, (size_t)n, sizeof *v, sdc__cmp_double);
  for (int64_t i = 0; fc && v && i < n; i++) fprintf(fc, "%.4f %.6f\n", v[i], (double)(i + 1) / (double)n);
  free(v);
  if (fd) fclose(fd);
  if (fc) fclose(fc);
  int err = SDC_OK;
  if (!n) err = sdc_seterr(SDC_EINVAL, "--plot '%s': no job finished done; nothing to plot", png);
  FILE *gp = err ? NULL : popen("gnuplot", "w");
  if (!err && !gp) err = sdc_seterr(SDC_EIO, "--plot: cannot run gnuplot: %s", strerror(errno));
  if (gp) {
    fprintf(gp, "set terminal pngcairo size 1200,480\nset output ");
    sdc__gp_str(gp, png);
    fprintf(gp, "\nset multiplot layout 1,2 title 'sdc bench: %lld jobs at concurrency %lld, %.2f images/min, p50 %.3f s, p95 %.3f s'\n",
            (long long)b->n_jobs, (long long)b->concurrency, isfinite(r->images_per_minute) ? r->images_per_minute : 0.0,
            isfinite(r->latency.p50) ? r->latency.p50 : 0.0, isfinite(r->latency.p95) ? r->latency.p95 : 0.0);
    fprintf(gp, "set grid\nset xlabel 'job index'\nset ylabel 'latency (s)'\nset yrange [0:*]\n"
                "plot '%s' using 1:2 with linespoints pt 7 ps 0.6 title 'latency, submit to done'\n", data);
    fprintf(gp, "set xlabel 'latency (s)'\nset ylabel 'share of jobs'\nset yrange [0:1]\nset xrange [0:*]\n"
                "plot '%s' using 1:2 with steps lw 2 title 'CDF'\nunset multiplot\n", cdf);
    int st = pclose(gp);
    if (st != 0) err = sdc_seterr(SDC_EIO, "--plot '%s': gnuplot failed (status %d)", png, st);
  }
  unlink(data), unlink(cdf), rmdir(dir);
  return err;
}

/* ------------------------------------------------------------------ main */

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc bench --redis URL [options]   (benchmark a running cluster; see docs/operations.md)\n"
          "  --redis URL         redis://[[user]:password@]host[:port][/db] (default $SDC_REDIS, else " SDC__BENCH_DEFAULT_REDIS ")\n"
          "  --jobs N            jobs in all (default 20)\n"
          "  --concurrency C     jobs kept in flight (default 4)\n"
          "  --width W --height H  image size, multiples of 8 in [64, 2048] (default: the model's native size)\n"
          "  --steps S           denoising steps (default 20)\n"
          "  --scheduler NAME    (default: the model's own)\n"
          "  --seed-base N       job i gets seed N+i (default 1000)\n"
          "  --prompt TEXT       (default '" SDC__BENCH_DEFAULT_PROMPT "')\n"
          "  --metrics URL       a /metrics endpoint (coordinator or worker) scraped before and after; repeatable\n"
          "  --csv FILE          one row per job, a blank line, then metric,value summary rows\n"
          "  --json              one JSON object on stdout instead of the table\n"
          "  --plot FILE.png     latency per job and its CDF (needs gnuplot: apt-get install gnuplot-nox)\n"
          "  --timeout-s T       give up on (and cancel) a job after T seconds (default 600)\n"
          "Exit 0 when every job finished done, 1 when one did not or Redis is unreachable, 2 for bad flags.\n");
}

/* The folder of path must exist and be writable, so a typo costs nothing before a long run. */
static int sdc__check_out(const char *flag, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return sdc_seterr(SDC_EINVAL, "%s '%s': is a directory", flag, path);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0)
    return sdc_seterr(SDC_EINVAL, "%s '%s': folder '%s' does not exist or is not writable", flag, path, dir);
  return SDC_OK;
}

int sdc_cmd_bench(int argc, char **argv) {
  sdc__bench b = {.url = sdc_cli_redis_default(), .prompt = SDC__BENCH_DEFAULT_PROMPT, .n_jobs = 20,
                  .concurrency = 4, .steps = 20, .seed_base = 1000, .timeout_s = 600};
  const char *csv = NULL, *plot = NULL;
  const char *urls[SDC__BENCH_MAX_METRICS];
  int n_urls = 0, json = 0, err = SDC_OK;
  enum { O_REDIS = 256, O_JOBS, O_CONC, O_W, O_H, O_STEPS, O_SCHED, O_SEED, O_PROMPT, O_METRICS, O_CSV, O_JSON,
         O_PLOT, O_TIMEOUT };
  static const struct option opts[] = {
      {"redis", required_argument, 0, O_REDIS},     {"jobs", required_argument, 0, O_JOBS},
      {"concurrency", required_argument, 0, O_CONC}, {"width", required_argument, 0, O_W},
      {"height", required_argument, 0, O_H},        {"steps", required_argument, 0, O_STEPS},
      {"scheduler", required_argument, 0, O_SCHED}, {"seed-base", required_argument, 0, O_SEED},
      {"prompt", required_argument, 0, O_PROMPT},   {"metrics", required_argument, 0, O_METRICS},
      {"csv", required_argument, 0, O_CSV},         {"json", no_argument, 0, O_JSON},
      {"plot", required_argument, 0, O_PLOT},       {"timeout-s", required_argument, 0, O_TIMEOUT},
      {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
  int ch;
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (ch) {
      case O_REDIS: b.url = optarg; break;
      case O_JOBS: err = sdc_flag_int("--jobs", optarg, 1, SDC__BENCH_MAX_JOBS, &b.n_jobs); break;
      case O_CONC: err = sdc_flag_int("--concurrency", optarg, 1, SDC__BENCH_MAX_CONCURRENCY, &b.concurrency); break;
      case O_W: err = sdc_flag_int("--width", optarg, 0, SDC_MAX_IMAGE_SIDE, &b.width); break;
      case O_H: err = sdc_flag_int("--height", optarg, 0, SDC_MAX_IMAGE_SIDE, &b.height); break;
      case O_STEPS: err = sdc_flag_int("--steps", optarg, 1, SDC_MAX_STEPS, &b.steps); break;
      case O_SCHED:
        if (!sdc_job_scheduler_valid(optarg))
          err = sdc_seterr(SDC_EINVAL, "--scheduler '%s': unknown (ddim, pndm, ddpm, euler, euler_a, heun, lms, "
                                       "dpmpp_2m, dpmpp_2m_karras, unipc, lcm)", optarg);
        b.scheduler = optarg;
        break;
      case O_SEED: err = sdc_flag_int("--seed-base", optarg, 0, (int64_t)SDC_SEED_LIMIT - 1, &b.seed_base); break;
      case O_PROMPT: b.prompt = optarg; break;
      case O_METRICS: {
        if (n_urls == SDC__BENCH_MAX_METRICS)
          err = sdc_seterr(SDC_EINVAL, "--metrics '%s': at most %d endpoints", optarg, SDC__BENCH_MAX_METRICS);
        else if (strncmp(optarg, "http://", 7) != 0 || !optarg[7])
          err = sdc_seterr(SDC_EINVAL, "--metrics '%s': expected http://HOST:PORT/metrics", optarg);
        else
          urls[n_urls++] = optarg;
        break;
      }
      case O_CSV: csv = optarg; break;
      case O_JSON: json = 1; break;
      case O_PLOT: plot = optarg; break;
      case O_TIMEOUT: {
        char *end;
        b.timeout_s = strtod(optarg, &end);
        if (end == optarg || *end || !isfinite(b.timeout_s) || b.timeout_s <= 0 || b.timeout_s > 1e7)
          err = sdc_seterr(SDC_EINVAL, "--timeout-s '%s': expected a number of seconds in (0, 1e7]", optarg);
        break;
      }
      case 'h': sdc__usage(stdout); return 0;
      default:
        err = sdc_seterr(SDC_EINVAL, "unknown or incomplete option '%s' (see sdc bench --help)", argv[optind - 1]);
    }
  }
  if (!err && optind != argc) err = sdc_seterr(SDC_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!err && b.seed_base + b.n_jobs > (int64_t)SDC_SEED_LIMIT)
    err = sdc_seterr(SDC_EINVAL, "--seed-base %lld: seed-base + jobs must stay below 2^53", (long long)b.seed_base);
  if (!err) { /* the job's own rules (sizes, prompt), on the first job */
    sdc_job job;
    sdc_job_init(&job);
    job.prompt = (char *)b.prompt, job.width = b.width, job.height = b.height, job.steps = b.steps;
    err = sdc_job_validate(&job);
  }
  if (!err && csv) err = sdc__check_out("--csv", csv);
  if (!err && plot) err = sdc__check_out("--plot", plot);
  if (!err && plot && !sdc__on_path("gnuplot"))
    err = sdc_seterr(SDC_EINVAL, "--plot '%s': gnuplot is not installed (apt-get install gnuplot-nox)", plot);
  if (err) {
    fprintf(stderr, "sdc bench: %s\n", sdc_errmsg(err));
    return 2;
  }
  /* one connection up front: an unreachable Redis is one line, not N failed jobs */
  sdc_client *probe;
  err = sdc_client_connect(&probe, b.url);
  if (err) {
    fprintf(stderr, "sdc bench: %s\n", sdc_errmsg(err));
    return err == SDC_EINVAL ? 2 : 1;
  }
  sdc_client_free(probe);
  if (b.concurrency > b.n_jobs) b.concurrency = b.n_jobs;
  snprintf(b.run_id, sizeof b.run_id, "%llu-%ld", (unsigned long long)sdc_clock_unix_ms(), (long)getpid());
  b.jobs = calloc((size_t)b.n_jobs, sizeof *b.jobs);
  pthread_t *threads = calloc((size_t)b.concurrency, sizeof *threads);
  sdc_prom_set *before = calloc((size_t)n_urls + 1, sizeof *before), *after = calloc((size_t)n_urls + 1, sizeof *after);
  int ok_before[SDC__BENCH_MAX_METRICS], ok_after[SDC__BENCH_MAX_METRICS];
  if (!b.jobs || !threads || !before || !after) {
    fprintf(stderr, "sdc bench: out of memory\n");
    return 1;
  }
  for (int64_t i = 0; i < b.n_jobs; i++) {
    sdc__bench_job *j = &b.jobs[i];
    j->index = i, j->submit_ms = j->created_ms = j->start_ms = j->finish_ms = -1;
    j->latency_s = j->queue_wait_s = j->service_s = NAN;
    snprintf(j->state, sizeof j->state, "error");
  }
  pthread_mutex_init(&b.mu, NULL);
  sdc__scrape_all(urls, n_urls, before, ok_before, "before");

  int tty = isatty(2);
  double t0 = sdc_clock_mono_s();
  int64_t started = 0;
  for (; started < b.concurrency; started++)
    if (pthread_create(&threads[started], NULL, sdc__bench_thread, &b) != 0) break;
  if (started == 0) {
    fprintf(stderr, "sdc bench: cannot start a thread\n");
    return 1;
  }
  for (;;) {
    pthread_mutex_lock(&b.mu);
    int all = b.n_finished == b.n_jobs;
    pthread_mutex_unlock(&b.mu);
    if (tty) sdc__bench_bar(&b, sdc_clock_mono_s() - t0);
    if (all) break;
    sdc_clock_sleep_ms(tty ? 200 : 50);
  }
  for (int64_t i = 0; i < started; i++) pthread_join(threads[i], NULL);
  sdc__bench_result r = {0};
  r.wall_s = b.last_end_mono_s - t0; /* the jobs' own end, not when this loop noticed it */
  if (tty) fputc('\n', stderr);
  sdc__scrape_all(urls, n_urls, after, ok_after, "after");

  for (int64_t i = 0; i < b.n_jobs; i++) {
    const char *s = b.jobs[i].state;
    r.done += !strcmp(s, "done"), r.failed += !strcmp(s, "failed"), r.cancelled += !strcmp(s, "cancelled");
    r.timed_out += !strcmp(s, "timeout"), r.errors += !strcmp(s, "error");
  }
  r.images_per_minute = r.wall_s > 0 ? (double)r.done * 60 / r.wall_s : NAN;
  r.latency = sdc__distribution(&b, offsetof(sdc__bench_job, latency_s));
  r.queue_wait = sdc__distribution(&b, offsetof(sdc__bench_job, queue_wait_s));
  r.service = sdc__distribution(&b, offsetof(sdc__bench_job, service_s));
  /* only endpoints that answered both scrapes count */
  int k = 0;
  for (int i = 0; i < n_urls; i++)
    if (ok_before[i] && ok_after[i]) {
      sdc_prom_set tb = before[i], ta = after[i];
      before[i] = before[k], after[i] = after[k];
      before[k] = tb, after[k] = ta;
      k++;
    }
  r.have_metrics = k > 0;
  sdc_bench_metrics_compute(&r.m, before, after, (size_t)k, r.wall_s, r.done);

  int rc = r.done == b.n_jobs ? 0 : 1;
  if (json) {
    cJSON *root = sdc__json(&b, &r, urls, n_urls);
    char *text = root ? cJSON_Print(root) : NULL;
    if (text) printf("%s\n", text);
    else fprintf(stderr, "sdc bench: out of memory writing JSON\n"), rc = 1;
    free(text);
    cJSON_Delete(root);
  } else {
    sdc__print_table(&b, &r, n_urls);
  }
  for (int64_t i = 0; i < b.n_jobs; i++)
    if (strcmp(b.jobs[i].state, "done"))
      fprintf(stderr, "sdc bench: job %s: %s: %s\n", b.jobs[i].id, b.jobs[i].state, b.jobs[i].error);
  if (csv && (err = sdc__write_csv(csv, &b, &r))) fprintf(stderr, "sdc bench: %s\n", sdc_errmsg(err)), rc = 1;
  if (plot && (err = sdc__plot(plot, &b, &r))) fprintf(stderr, "sdc bench: %s\n", sdc_errmsg(err)), rc = 1;
  fflush(stdout);
  for (int i = 0; i < n_urls; i++) sdc_prom_set_free(&before[i]), sdc_prom_set_free(&after[i]);
  free(before), free(after), free(threads), free(b.jobs);
  pthread_mutex_destroy(&b.mu);
  return rc;
}
