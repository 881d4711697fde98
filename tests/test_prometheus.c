/* test_prometheus.c - a real Prometheus scrapes `sdc cluster --http-base`: after three jobs its API shows them done,
 * no step re-issued, every stage computing, bytes on the down>mid link, every target up; /readyz answers 200 on a
 * ready coordinator and worker and 503 with a reason on a coordinator without workers. Loopback only. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "test_util.h"

extern char **environ;

#define N_PROCS 6 /* the coordinator and one worker per stage */

static const char *g_tmp;
static pid_t g_redis, g_cluster, g_prom, g_lone;

/* Starts argv[0] with stdout and stderr to `log` (NULL: /dev/null); 0 when it could not start. */
static pid_t spawn(char *const *argv, const char *log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}

/* SIGTERM, then SIGKILL after timeout_s: never waits unbounded. */
static void stop(pid_t *pid, double timeout_s) {
  if (*pid <= 0) return;
  kill(*pid, SIGTERM);
  double t0 = sdc_clock_mono_s();
  while (waitpid(*pid, NULL, WNOHANG) == 0) {
    if (sdc_clock_mono_s() - t0 > timeout_s) {
      fprintf(stderr, "pid %d ignored SIGTERM for %.0f s: killing it\n", (int)*pid, timeout_s);
      kill(*pid, SIGKILL);
      waitpid(*pid, NULL, 0);
      break;
    }
    sdc_clock_sleep_ms(50);
  }
  *pid = 0;
}

static void stop_all(void) {
  stop(&g_lone, 10);
  stop(&g_prom, 10);
  stop(&g_cluster, 60);
  stop(&g_redis, 10);
}

/* n consecutive loopback ports that were free a moment ago: base, or -1. */
static int free_port_range(int n) {
  for (int tries = 0; tries < 50; tries++) {
    int base = sdc_test_free_port(), ok = base > 0 && base + n < 65536;
    for (int i = 1; ok && i < n; i++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + i)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
      if (fd >= 0) close(fd);
    }
    if (ok) return base;
  }
  return -1;
}

/* GET http://127.0.0.1:port<path> (HTTP/1.0, 5 s timeouts). Returns the status (-1: no answer); the body
 * goes to body (NUL-terminated, cut at n). */
static int http_get(int port, const char *path, char *body, size_t n) {
  body[0] = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  char req[4096];
  int k = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
  if (write(fd, req, (size_t)k) != k) {
    close(fd);
    return -1;
  }
  static char resp[1 << 20];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
  close(fd);
  resp[got] = 0;
  int status = -1;
  if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return -1;
  const char *b = strstr(resp, "\r\n\r\n");
  if (b) snprintf(body, n, "%s", b + 4);
  return status;
}

/* Prometheus' instant query: every series' labels and value, via the HTTP API. NULL on any error. */
static cJSON *prom_query(int port, const char *promql) {
  char path[2048] = "/api/v1/query?query=";
  size_t len = strlen(path);
  for (const unsigned char *p = (const unsigned char *)promql; *p && len + 4 < sizeof path; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.~", *p))
      path[len++] = (char)*p;
    else
      len += (size_t)snprintf(path + len, sizeof path - len, "%%%02X", *p);
  }
  path[len] = 0;
  static char body[1 << 20];
  if (http_get(port, path, body, sizeof body) != 200) return NULL;
  cJSON *root = cJSON_Parse(body);
  const cJSON *st = cJSON_GetObjectItem(root, "status");
  if (!cJSON_IsString(st) || strcmp(st->valuestring, "success") != 0) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* The result vector of a query. */
static const cJSON *prom_result(const cJSON *root) {
  return cJSON_GetObjectItem(cJSON_GetObjectItem(root, "data"), "result");
}

static double series_value(const cJSON *series) {
  const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(series, "value"), 1);
  return cJSON_IsString(v) ? strtod(v->valuestring, NULL) : -1;
}

static const char *series_label(const cJSON *series, const char *name) {
  const cJSON *l = cJSON_GetObjectItem(cJSON_GetObjectItem(series, "metric"), name);
  return cJSON_IsString(l) ? l->valuestring : "";
}

/* The single value of a query that sums to one series; -1 when there is none. */
static double prom_scalar(int port, const char *promql) {
  cJSON *root = prom_query(port, promql);
  const cJSON *res = prom_result(root);
  double v = cJSON_GetArraySize(res) == 1 ? series_value(cJSON_GetArrayItem(res, 0)) : -1;
  cJSON_Delete(root);
  return v;
}

/* Waits until promql's value reaches want (>=), up to timeout_s; returns the last value. */
static double prom_wait(int port, const char *promql, double want, double timeout_s) {
  double t0 = sdc_clock_mono_s(), v = -1;
  while (sdc_clock_mono_s() - t0 < timeout_s && (v = prom_scalar(port, promql)) < want) sdc_clock_sleep_ms(500);
  return v;
}

/* Waits until GET path on port answers `want`; returns the last status. */
static int http_wait(int port, const char *path, int want, double timeout_s, char *body, size_t n) {
  double t0 = sdc_clock_mono_s();
  int st = -1;
  while (sdc_clock_mono_s() - t0 < timeout_s && (st = http_get(port, path, body, n)) != want) sdc_clock_sleep_ms(250);
  return st;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "FAIL test_prometheus: overall timeout (300 s); stopping what it started\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
  stop_all();
  _exit(1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_prometheus PATH/TO/sdc\n");
    return 1;
  }
  const char *ref = sdc_test_ref_dir();
  char model[1024], coord_bin[1100], sdc_dir[1024];
  if (!ref) sdc_test_skip("no reference folder ($SDC_REF)");
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  struct stat st;
  if (stat(model, &st) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/prometheus", X_OK) != 0) sdc_test_skip("no /usr/bin/prometheus (apt-get install prometheus)");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("no /usr/bin/redis-server");
  snprintf(sdc_dir, sizeof sdc_dir, "%s", argv[1]);
  snprintf(coord_bin, sizeof coord_bin, "%s/sdc-coordinator", dirname(sdc_dir));
  g_tmp = sdc_test_tmpdir();
  signal(SIGALRM, on_alarm);
  alarm(300);

  /* Redis */
  int redis_port = sdc_test_free_port();
  char redis_port_s[16], redis_url[64];
  snprintf(redis_port_s, sizeof redis_port_s, "%d", redis_port);
  snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", redis_port);
  char *rargv[] = {"/usr/bin/redis-server", "--port", redis_port_s, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", (char *)g_tmp, NULL};
  g_redis = spawn(rargv, NULL);
  redisContext *rc = NULL;
  for (int i = 0; i < 100 && !rc; i++) {
    sdc_clock_sleep_ms(50);
    rc = redisConnect("127.0.0.1", redis_port);
    if (rc && rc->err) redisFree(rc), rc = NULL;
  }
  CHECK(rc != NULL, "redis-server on port %d did not come up in 5 s", redis_port);
  if (!rc) goto out;

  /* the cluster, each process serving metrics */
  int base = free_port_range(N_PROCS);
  CHECK(base > 0, "no %d consecutive free loopback ports", N_PROCS);
  if (base <= 0) goto out;
  char base_s[16], cluster_log[1100];
  snprintf(base_s, sizeof base_s, "%d", base);
  snprintf(cluster_log, sizeof cluster_log, "%s/cluster.log", g_tmp);
  char *cargv[] = {(char *)argv[1], "cluster", "--model", model, "--redis", redis_url, "--http-base", base_s, NULL};
  g_cluster = spawn(cargv, cluster_log);
  char body[8192];
  int s = http_wait(base, "/readyz", 200, 120, body, sizeof body);
  CHECK(s == 200, "coordinator /readyz: %d '%s' after 120 s (log %s)", s, body, cluster_log);
  if (s != 200) goto out;
  s = http_wait(base + 1, "/readyz", 200, 30, body, sizeof body);
  CHECK(s == 200, "worker (text-0) /readyz: %d '%s'", s, body);
  /* the cluster names every scrape target on stderr */
  {
    char want[N_PROCS][128], line[1024];
    snprintf(want[0], sizeof want[0], "metrics coordinator http://127.0.0.1:%d/metrics", base);
    static const char *const stages[] = {"text", "unet-down", "unet-mid", "unet-up", "vae"};
    for (int i = 1; i < N_PROCS; i++)
      snprintf(want[i], sizeof want[i], "metrics worker %s-0 http://127.0.0.1:%d/metrics", stages[i - 1], base + i);
    int seen[N_PROCS] = {0};
    FILE *fp = fopen(cluster_log, "r");
    while (fp && fgets(line, sizeof line, fp))
      for (int i = 0; i < N_PROCS; i++) seen[i] |= strncmp(line, want[i], strlen(want[i])) == 0;
    if (fp) fclose(fp);
    for (int i = 0; i < N_PROCS; i++) CHECK(seen[i], "sdc cluster did not print '%s'", want[i]);
  }

  /* Prometheus scraping every process each second */
  int prom_port = sdc_test_free_port();
  char yml[1100], tsdb[1100], cfg_arg[1200], tsdb_arg[1200], listen_arg[64], prom_log[1100];
  snprintf(yml, sizeof yml, "%s/prometheus.yml", g_tmp);
  snprintf(tsdb, sizeof tsdb, "%s/tsdb", g_tmp);
  snprintf(prom_log, sizeof prom_log, "%s/prometheus.log", g_tmp);
  FILE *fp = fopen(yml, "w");
  fprintf(fp, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
              "scrape_configs:\n  - job_name: sdc\n    static_configs:\n      - targets: [");
  for (int i = 0; i < N_PROCS; i++) fprintf(fp, "%s'127.0.0.1:%d'", i ? ", " : "", base + i);
  fprintf(fp, "]\n");
  fclose(fp);
  snprintf(cfg_arg, sizeof cfg_arg, "--config.file=%s", yml);
  snprintf(tsdb_arg, sizeof tsdb_arg, "--storage.tsdb.path=%s", tsdb);
  snprintf(listen_arg, sizeof listen_arg, "--web.listen-address=127.0.0.1:%d", prom_port);
  char *pargv[] = {"/usr/bin/prometheus", cfg_arg, tsdb_arg, listen_arg, NULL};
  g_prom = spawn(pargv, prom_log);
  s = http_wait(prom_port, "/-/ready", 200, 60, body, sizeof body);
  CHECK(s == 200, "prometheus not ready after 60 s: %d (log %s)", s, prom_log);
  if (s != 200) goto out;
  double up = prom_wait(prom_port, "sum(up)", N_PROCS, 30);
  CHECK(up == N_PROCS, "sum(up) is %g after 30 s, expected %d targets up", up, N_PROCS);

  /* three small jobs */
  double t_jobs = sdc_clock_mono_s();
  for (int i = 0; i < 3; i++) {
    char json[256];
    snprintf(json, sizeof json, "{\"id\":\"prom-%d\",\"prompt\":\"metrics job %d\",\"width\":64,\"height\":64,\"steps\":3,\"seed\":%d}",
             i, i, 7 + i);
    redisReply *r = redisCommand(rc, "XADD sdc:jobs * job %s", json);
    CHECK(r && r->type == REDIS_REPLY_STRING, "XADD prom-%d failed", i);
    if (r) freeReplyObject(r);
  }
  for (int i = 0; i < 3; i++) {
    char *state = NULL;
    double t0 = sdc_clock_mono_s();
    while (sdc_clock_mono_s() - t0 < 120) {
      redisReply *r = redisCommand(rc, "HGET sdc:job:prom-%d state", i);
      free(state);
      state = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
      if (r) freeReplyObject(r);
      if (state && (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))) break;
      sdc_clock_sleep_ms(100);
    }
    CHECK(state && !strcmp(state, "done"), "prom-%d: state '%s' (log %s)", i, state ? state : "(none after 120 s)",
          cluster_log);
    free(state);
  }
  printf("3 jobs done in %.1f s\n", sdc_clock_mono_s() - t_jobs);
  /* Prometheus scrapes each target on its own schedule: until every target has been scraped after the
   * jobs ended, one process's counters can be from before them and another's from after (a link's sent
   * and received bytes disagree). timestamp(up) is each target's last scrape. */
  const double t_done = (double)sdc_clock_unix_ms() / 1000.0;
  const double last_scrape = prom_wait(prom_port, "min(timestamp(up))", t_done + 0.5, 20);
  CHECK(last_scrape >= t_done + 0.5, "not every target scraped within 20 s after the jobs (oldest scrape %.1f s before)",
        t_done - last_scrape);

  /* what Prometheus scraped */
  double done = prom_wait(prom_port, "sum(sdc_jobs_total{state=\"done\"})", 3, 30);
  CHECK(done == 3, "sum(sdc_jobs_total{state=\"done\"}) = %g, expected 3", done);
  double reissued = prom_scalar(prom_port, "sum(sdc_steps_reissued_total)");
  CHECK(reissued == 0, "sum(sdc_steps_reissued_total) = %g, expected 0", reissued);
  /* every stage's worker computed; the tallies reach Prometheus on its next scrape */
  double vae_n = prom_wait(prom_port, "sum(sdc_stage_requests_total{stage=\"vae\"})", 3, 10);
  CHECK(vae_n == 3, "vae requests %g, expected 3 (one per job)", vae_n);
  cJSON *q = prom_query(prom_port, "sdc_stage_requests_total");
  static const char *const stages[] = {"text", "unet-down", "unet-mid", "unet-up", "vae"};
  for (int k = 0; k < 5; k++) {
    double v = -1;
    for (int i = 0; i < cJSON_GetArraySize(prom_result(q)); i++) {
      const cJSON *sr = cJSON_GetArrayItem(prom_result(q), i);
      if (!strcmp(series_label(sr, "stage"), stages[k])) v = series_value(sr);
    }
    CHECK(v > 0, "sdc_stage_requests_total{stage=\"%s\"} = %g, expected > 0", stages[k], v);
    printf("sdc_stage_requests_total{stage=\"%s\"} %g\n", stages[k], v);
  }
  cJSON_Delete(q);
  double sent = prom_scalar(prom_port, "sum(sdc_link_bytes_total{link=\"unet-down>unet-mid\",direction=\"sent\"})");
  double recv = prom_scalar(prom_port, "sum(sdc_link_bytes_total{link=\"unet-down>unet-mid\",direction=\"received\"})");
  CHECK(sent > 0 && sent == recv, "unet-down>unet-mid: %g bytes sent, %g received (expected equal, > 0)", sent, recv);
  printf("unet-down>unet-mid: %g bytes sent, %g received\n", sent, recv);
  double vae_workers = prom_scalar(prom_port, "sum(sdc_workers_registered{stage=\"vae\"})");
  CHECK(vae_workers >= 1, "sdc_workers_registered{stage=\"vae\"} = %g, expected >= 1", vae_workers);
  double ready = prom_scalar(prom_port, "min(sdc_ready)");
  CHECK(ready == 1, "min(sdc_ready) = %g, expected every process ready", ready);
  q = prom_query(prom_port, "up");
  int n_up = 0;
  for (int i = 0; i < cJSON_GetArraySize(prom_result(q)); i++) {
    const cJSON *sr = cJSON_GetArrayItem(prom_result(q), i);
    CHECK(series_value(sr) == 1, "target %s: up = %g", series_label(sr, "instance"), series_value(sr));
    n_up += series_value(sr) == 1;
  }
  cJSON_Delete(q);
  CHECK(n_up == N_PROCS, "%d targets up, expected %d", n_up, N_PROCS);
  double rss = prom_scalar(prom_port, "min(process_resident_memory_bytes)");
  CHECK(rss > 0, "min(process_resident_memory_bytes) = %g", rss);
  s = http_get(base, "/readyz", body, sizeof body);
  CHECK(s == 200, "coordinator /readyz after the jobs: %d '%s'", s, body);
  s = http_get(base + 5, "/readyz", body, sizeof body);
  CHECK(s == 200, "vae worker /readyz after the jobs: %d '%s'", s, body);

  /* a coordinator nobody serves is alive but not ready, and says why */
  {
    int lone_http = sdc_test_free_port(), lone_bind = sdc_test_free_port();
    char http_arg[64], bind_arg[64], lone_log[1100];
    snprintf(http_arg, sizeof http_arg, "127.0.0.1:%d", lone_http);
    snprintf(bind_arg, sizeof bind_arg, "tcp://127.0.0.1:%d", lone_bind);
    snprintf(lone_log, sizeof lone_log, "%s/lone.log", g_tmp);
    char *largv[] = {coord_bin, "--model", model, "--redis", redis_url, "--bind", bind_arg, "--http", http_arg,
                     "--id", "lone", NULL};
    g_lone = spawn(largv, lone_log);
    s = http_wait(lone_http, "/healthz", 200, 30, body, sizeof body);
    CHECK(s == 200, "lone coordinator /healthz: %d", s);
    /* it hashes the model's weights (the fingerprint) before it connects to Redis: until then /readyz names Redis */
    for (int waited = 0; waited < 10000; waited += 100) {
      s = http_get(lone_http, "/readyz", body, sizeof body);
      if (!strstr(body, "does not answer")) break;
      sdc_clock_sleep_ms(100);
    }
    CHECK(s == 503 && strstr(body, "not ready: ") && strstr(body, "no live worker"),
          "lone coordinator /readyz: %d '%s', expected 503 naming the missing workers", s, body);
    printf("lone coordinator /readyz: %d %s", s, body);
  }

out:
  if (rc) redisFree(rc);
  stop_all();
  sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_prometheus");
}
