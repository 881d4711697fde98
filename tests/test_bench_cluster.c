/* test_bench_cluster.c - `sdc bench` against a real `sdc cluster`: 6 jobs at concurrency 3, the CSV's rows all
 * done with the fixed seeds, the JSON's p50/p95 and images/minute equal to what the CSV's rows give. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "test_util.h"

extern char **environ;

static const char *g_sdc, *g_tmp;
static pid_t g_redis_pid, g_cluster_pid;

static void stop_all(void) {
  if (g_cluster_pid > 0) {
    kill(g_cluster_pid, SIGTERM);
    waitpid(g_cluster_pid, NULL, 0);
    g_cluster_pid = 0;
  }
  if (g_redis_pid > 0) {
    kill(g_redis_pid, SIGTERM);
    waitpid(g_redis_pid, NULL, 0);
    g_redis_pid = 0;
  }
}

static pid_t spawn(char **argv, const char *out, const char *err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}

static char *slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return strdup("");
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, fp);
  s[got] = 0;
  fclose(fp);
  return s;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* numpy's default percentile, written again here so the test does not trust the code it checks */
static double percentile(const double *sorted, int n, double p) {
  double pos = p / 100.0 * (n - 1);
  int i = (int)pos;
  return i + 1 < n ? sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]) : sorted[n - 1];
}

static double json_num(const cJSON *root, const char *obj, const char *name) {
  const cJSON *o = obj ? cJSON_GetObjectItemCaseSensitive(root, obj) : root;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_sdc = argv[1];
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  char model[1100];
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  if (access(model, R_OK) != 0) sdc_test_skip("tiny-sd1 missing from the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  g_tmp = sdc_test_tmpdir();
  atexit(stop_all);

  int port = sdc_test_free_port();
  char port_s[16], url[64], path[4][1200];
  snprintf(port_s, sizeof port_s, "%d", port);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  char *rargv[] = {"/usr/bin/redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                   "no", "--dir", (char *)g_tmp, NULL};
  snprintf(path[0], sizeof path[0], "%s/redis.log", g_tmp);
  g_redis_pid = spawn(rargv, path[0], path[0]);
  redisContext *rc = NULL;
  for (int i = 0; i < 100 && !rc; i++) {
    sdc_clock_sleep_ms(50);
    rc = redisConnect("127.0.0.1", port);
    if (rc && rc->err) redisFree(rc), rc = NULL;
  }
  CHECK(rc != NULL, "redis-server did not come up");
  if (!rc) return sdc_test_finish("test_bench_cluster");
  char *cargv[] = {(char *)g_sdc, "cluster", "--model", model, "--redis", url, NULL};
  snprintf(path[1], sizeof path[1], "%s/cluster.log", g_tmp);
  g_cluster_pid = spawn(cargv, "/dev/null", path[1]);

  char cmd[4096], err[8192];
  /* bad flags: one line naming the flag, exit 2, nothing queued */
  snprintf(cmd, sizeof cmd, "'%s' bench --redis %s --concurrency 0", g_sdc, url);
  int status = sdc_test_run(cmd, err, sizeof err);
  CHECK(status == 2 && strstr(err, "--concurrency") && sdc_test_lines(err) == 1, "--concurrency 0: exit %d: %s",
        status, err);
  snprintf(cmd, sizeof cmd, "'%s' bench --redis %s --metrics localhost:9100", g_sdc, url);
  status = sdc_test_run(cmd, err, sizeof err);
  CHECK(status == 2 && strstr(err, "localhost:9100"), "--metrics without http://: exit %d: %s", status, err);

  /* a one-job run first: the cluster's start-up stays out of the measured run, and the table is checked */
  snprintf(path[2], sizeof path[2], "%s/warm.txt", g_tmp);
  snprintf(cmd, sizeof cmd, "('%s' bench --redis %s --jobs 1 --concurrency 1 --width 64 --height 64 --steps 1 "
                            "--timeout-s 45 > '%s')", g_sdc, url, path[2]);
  status = sdc_test_run(cmd, err, sizeof err);
  char *table = slurp(path[2]);
  CHECK(status == 0, "the warm-up run: exit %d: %s", status, err);
  CHECK(strstr(table, "images/minute") && strstr(table, "latency (submit..done)") && strstr(table, "unet-mid") &&
            strstr(table, "re-issued steps: n/a"),
        "the table lacks a section:\n%s", table);
  free(table);

  /* the measured run, with a metrics URL nobody answers: a warning, and n/a */
  char csv[1200], png[1200], out[1200];
  snprintf(csv, sizeof csv, "%s/bench.csv", g_tmp);
  snprintf(png, sizeof png, "%s/bench.png", g_tmp);
  snprintf(out, sizeof out, "%s/bench.json", g_tmp);
  int plot = system("command -v gnuplot > /dev/null 2>&1") == 0;
  int dead_port = sdc_test_free_port();
  snprintf(cmd, sizeof cmd,
           "('%s' bench --redis %s --jobs 6 --concurrency 3 --width 64 --height 64 --steps 3 --seed-base 500 "
           "--timeout-s 45 --csv '%s' --json --metrics http://127.0.0.1:%d/metrics %s%s%s > '%s')",
           g_sdc, url, csv, dead_port, plot ? "--plot '" : "", plot ? png : "", plot ? "'" : "", out);
  status = sdc_test_run(cmd, err, sizeof err);
  CHECK(status == 0, "sdc bench: exit %d: %s", status, err);
  CHECK(strstr(err, "warning: metrics URL") && strstr(err, "n/a"), "no warning for the silent metrics URL: %s", err);

  /* the CSV: 6 job rows, all done, then a blank line and the summary */
  char *text = slurp(csv);
  double lat[6];
  int n_rows = 0, in_rows = 1, seeds_ok = 1;
  char *save = NULL;
  char *line = strtok_r(text, "\n", &save);
  CHECK(line && !strcmp(line, "index,id,seed,submit_ms,start_ms,finish_ms,latency_s,queue_wait_s,state,service_s,error"),
        "CSV header: %s", line ? line : "(none)");
  /* strtok_r skips the blank line, so find the summary by its own header */
  while ((line = strtok_r(NULL, "\n", &save))) {
    if (!strcmp(line, "metric,value")) {
      in_rows = 0;
      continue;
    }
    if (!in_rows) continue;
    long long idx, seed, sub, start, fin;
    char id[160], state[32];
    double l, q, svc;
    int k = sscanf(line, "%lld,%159[^,],%lld,%lld,%lld,%lld,%lf,%lf,%31[^,],%lf", &idx, id, &seed, &sub, &start, &fin,
                   &l, &q, state, &svc);
    CHECK(k == 10, "CSV row does not parse: %s", line);
    if (k != 10 || n_rows >= 6) {
      n_rows++;
      continue;
    }
    CHECK(idx == n_rows && seed == 500 + idx, "row %d: index %lld seed %lld", n_rows, idx, seed);
    CHECK(!strcmp(state, "done"), "row %d: state %s", n_rows, state);
    CHECK(l > 0 && q >= 0 && svc > 0 && sub > 0 && start <= fin, "row %d: inconsistent times: %s", n_rows, line);
    /* the service time is part of the latency, on two clocks that agree on one machine to a few ms */
    CHECK(svc <= l + 0.05, "row %d: service %.3f s exceeds the latency %.3f s", n_rows, svc, l);
    redisReply *r = redisCommand(rc, "HGET sdc:job:%s seed", id);
    seeds_ok &= r && r->type == REDIS_REPLY_STRING && atoll(r->str) == seed;
    if (r) freeReplyObject(r);
    lat[n_rows++] = l;
  }
  CHECK(n_rows == 6 && !in_rows, "CSV: %d job rows (expected 6), summary %s", n_rows, in_rows ? "missing" : "found");
  CHECK(seeds_ok, "a job hash's seed differs from the CSV's");
  const char *raw = slurp(csv);
  CHECK(strstr(raw, ",\n\nmetric,value\n") && strstr(raw, "\nimages_per_minute,") && strstr(raw, "\nreissued_steps,n/a"),
        "CSV summary block malformed:\n%s", raw);
  free((void *)raw);
  free(text);

  /* the JSON against the CSV: percentiles computed here from the rows, images/minute from the wall time */
  char *js = slurp(out);
  cJSON *root = cJSON_Parse(js);
  CHECK(root != NULL, "stdout is not one JSON object:\n%s", js);
  if (root && n_rows == 6) {
    qsort(lat, 6, sizeof *lat, cmp_double);
    double p50 = percentile(lat, 6, 50), p95 = percentile(lat, 6, 95);
    double j50 = json_num(root, "latency_s", "p50"), j95 = json_num(root, "latency_s", "p95");
    CHECK(fabs(j50 - p50) < 1e-3 && fabs(j95 - p95) < 1e-3, "JSON p50 %.4f p95 %.4f, CSV gives %.4f %.4f", j50, j95,
          p50, p95);
    double wall = json_num(root, "summary", "wall_s"), ipm = json_num(root, "summary", "images_per_minute");
    CHECK(wall > 0 && fabs(ipm - 6 * 60 / wall) < 1e-6 * ipm + 1e-9, "images/minute %.4f, 6*60/wall %.4f", ipm,
          6 * 60 / wall);
    /* the run can be no shorter than its slowest job, measured on the same clock */
    CHECK(wall >= lat[5] - 1e-3, "wall %.3f s is shorter than the slowest job %.3f s", wall, lat[5]);
    CHECK(json_num(root, "summary", "done") == 6 && json_num(root, "config", "concurrency") == 3, "summary/config");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    CHECK(cJSON_GetArraySize(rows) == 6, "JSON rows: %d", cJSON_GetArraySize(rows));
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stages");
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(st, "unet-down");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(down, "utilisation")) &&
              cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "reissued_steps")),
          "figures from a silent metrics URL should be null");
    printf("6 jobs: wall %.2f s, %.1f images/minute, p50 %.3f s, p95 %.3f s (CSV: %.3f, %.3f)\n", wall, ipm, j50, j95,
           p50, p95);
  }
  cJSON_Delete(root);
  free(js);
  if (plot) {
    char *img = slurp(png);
    CHECK(!strncmp(img, "\x89PNG", 4), "--plot wrote no PNG at %s", png);
    free(img);
  } else {
    printf("gnuplot not installed: --plot not exercised\n");
  }
  redisFree(rc);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  else printf("logs kept in %s\n", g_tmp);
  return sdc_test_finish("test_bench_cluster");
}
