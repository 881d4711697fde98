/* test_redis_faults.c - Redis is down or restarts; nothing is lost, nothing runs twice, nothing is silent.
 *  0. `sdc cluster` on a Redis that is not there yet: the coordinator says so at once and keeps retrying
 *     with backoff, /readyz names Redis; once Redis starts, jobs run.
 *  1. `sdc cluster --redis-dir DIR --redis-fsync always` (its own Redis with an AOF); jobs queued and
 *     running when that Redis gets SIGKILL (appendfsync always), SIGTERM (everysec) and SIGKILL (everysec):
 *     sdc cluster restarts it, the coordinator reconnects and re-claims, every job ends done exactly once
 *     with sdc generate's pixels; `sdc wait` across the restart retries, says so and succeeds.
 *     Then Redis is paused (SIGSTOP) past SDC_REDIS_STALL_MS: the coordinator notices, reconnects after
 *     SIGCONT, and every job still ends done once.
 *  2. `sdc cluster` refuses a bad flag before starting anything, and stops (exit 1, quoting the child's
 *     error line) when a worker cannot load its model, instead of running on with jobs stuck queued.
 *  The recovery times measured are printed (docs/reliability.md). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "fault_util.h"
#include "test_util.h"

#define N_JOBS 3 /* = the cluster's --max-jobs: two more stay queued */

static char g_log[1100];
static pid_t g_cluster, g_redis;

static void stop_all(void) {
  if (g_cluster) fu_stop_cluster(g_cluster), g_cluster = 0; /* SIGTERM: it stops its children too */
  if (g_redis) kill(g_redis, SIGKILL), waitpid(g_redis, NULL, 0), g_redis = 0;
}

/* GET path from 127.0.0.1:port: the status line and body in out. */
static void http_get(int port, const char *path, char *out, size_t n) {
  out[0] = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return;
  }
  char req[128];
  int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
  if (write(fd, req, (size_t)len) == len) {
    size_t got = 0;
    ssize_t k;
    while (got < n - 1 && (k = read(fd, out + got, n - 1 - got)) > 0) got += (size_t)k;
    out[got] = 0;
  }
  close(fd);
}

typedef struct {
  char id[32], prompt[48], sched[16];
  int steps, seed;
} job;

static void submit(job *j, const char *round, int i) {
  static const char *const scheds[] = {"euler_a", "ddim", "dpmpp_2m", "lms"};
  snprintf(j->id, sizeof j->id, "%s-%d", round, i);
  snprintf(j->prompt, sizeof j->prompt, "redis fault %s %d", round, i);
  snprintf(j->sched, sizeof j->sched, "%s", scheds[i % 4]);
  j->steps = 14, j->seed = 900 + i;
  char json[512];
  snprintf(json, sizeof json,
           "{\"id\":\"%s\",\"prompt\":\"%s\",\"steps\":%d,\"seed\":%d,\"scheduler\":\"%s\",\"width\":96,\"height\":96}",
           j->id, j->prompt, j->steps, j->seed, j->sched);
  fu_xadd(json);
}

/* No silent failure in sdc cluster: a bad flag is refused before anything starts; a model its VAE
 * worker cannot load stops the whole cluster with exit 1 and the worker's own error line. */
static void run_cluster_cannot_start(void) {
  char cmd[4096], err[8192], bad[1100];
  snprintf(cmd, sizeof cmd, "timeout 20 '%s' cluster --model '%s' --wire f8", g_sdc, g_model);
  int st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 2 && strstr(err, "--wire 'f8'") && !strstr(err, "started"), "--wire f8: exit %d: %s", st, err);
  snprintf(cmd, sizeof cmd, "timeout 20 '%s' cluster --model '%s' --redis redis://127.0.0.1:1 --redis-dir '%s'", g_sdc,
           g_model, g_tmp);
  st = sdc_test_run(cmd, err, sizeof err);
  CHECK(st == 2 && strstr(err, "--redis-dir"), "--redis with --redis-dir: exit %d: %s", st, err);
  /* tiny-sd1 with a truncated VAE: every part linked but the VAE's weights */
  snprintf(bad, sizeof bad, "%s/bad-vae", g_tmp);
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/vae' && for f in model_index.json scheduler text_encoder tokenizer unet; do ln -s '%s'/$f '%s'/$f; "
           "done && ln -s '%s/vae/config.json' '%s/vae/config.json' && head -c 100 '%s/vae/diffusion_pytorch_model.safetensors' "
           "> '%s/vae/diffusion_pytorch_model.safetensors'",
           bad, g_model, bad, g_model, bad, g_model, bad);
  CHECK(system(cmd) == 0, "cannot build the broken model");
  const long long t0 = (long long)sdc_clock_mono_ms();
  snprintf(cmd, sizeof cmd, "timeout 120 '%s' cluster --model '%s'", g_sdc, bad);
  st = sdc_test_run(cmd, err, sizeof err);
  const char *line = strstr(err, "sdc cluster: vae-0 cannot start");
  CHECK(st == 1 && line && strstr(line, "safetensors"), "a VAE that cannot load: exit %d: %s", st, err);
  printf("a VAE that cannot load: exit %d after %lld ms: %.*s\n", st, (long long)sdc_clock_mono_ms() - t0,
         line ? (int)strcspn(line, "\n") : 0, line ? line : "");
}

/* INFO clients' connected_clients, -1 on error. */
static long long fu_clients(void) {
  redisReply *r = redisCommand(g_rc, "INFO clients");
  const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "connected_clients:") : NULL;
  long long n = p ? atoll(p + 18) : -1;
  if (r) freeReplyObject(r);
  return n;
}

/* Phase 0: the coordinator starts before Redis. */
static void run_no_redis_at_start(void) {
  char log[1100], url[64], http[16], body[4096], line[4096];
  snprintf(log, sizeof log, "%s/cluster-noredis.log", g_tmp);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  /* the cluster serves metrics on http_port .. http_port+5: a range that must not hold the Redis port */
  int http_port;
  do http_port = sdc_test_free_port();
  while (http_port > 0 && g_port >= http_port && g_port < http_port + 8);
  snprintf(http, sizeof http, "%d", http_port);
  const char *flags[] = {"--http-base", http, NULL};
  pid_t cl = fu_start_cluster(url, flags, log);
  if (!cl) return;
  g_cluster = cl;
  int retries = 0;
  for (int waited = 0; waited < 5000 && (retries = fu_log_count(log, "cannot connect: Connection refused; retrying in", NULL, 0)) < 3;
       waited += 50)
    sdc_clock_sleep_ms(50);
  CHECK(retries >= 3, "the coordinator did not log its retries without Redis (see %s)", log);
  fu_log_count(log, "retrying in", line, sizeof line);
  printf("without Redis: %s", line);
  http_get(http_port, "/readyz", body, sizeof body);
  CHECK(strstr(body, "503") && strstr(body, "redis"), "/readyz without Redis: %s", body);
  printf("/readyz without Redis: %.*s\n", (int)strcspn(strstr(body, "\r\n\r\n") ? strstr(body, "\r\n\r\n") + 4 : body, "\n"),
         strstr(body, "\r\n\r\n") ? strstr(body, "\r\n\r\n") + 4 : body);
  const long long t_start = (long long)sdc_clock_mono_ms();
  g_redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(10000), "redis-server did not come up");
  int connected = 0;
  for (int waited = 0; waited < 10000 && !(connected = fu_log_count(log, ": connected", NULL, 0)); waited += 20)
    sdc_clock_sleep_ms(20);
  CHECK(connected, "the coordinator never connected once Redis started (see %s)", log);
  printf("coordinator connected %lld ms after redis-server was started\n", (long long)sdc_clock_mono_ms() - t_start);
  job j;
  submit(&j, "late", 0);
  const char *ids[] = {j.id};
  CHECK(fu_wait_done(ids, 1, 60000) == 1, "no job ran once Redis came");
  fu_stop_cluster(cl);
  g_cluster = 0;
  kill(g_redis, SIGTERM), waitpid(g_redis, NULL, 0), g_redis = 0;
}

/* One restart of the cluster's Redis with jobs queued and running. */
static void run_restart(const char *round, const char *fsync, int sig, const char *redis_url) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "CONFIG SET appendfsync %s", fsync);
  redisReply *r = redisCommand(g_rc, cmd);
  CHECK(r && r->type == REDIS_REPLY_STATUS, "%s failed", cmd);
  if (r) freeReplyObject(r);
  job jobs[N_JOBS + 2];
  for (int i = 0; i < N_JOBS + 2; i++) submit(&jobs[i], round, i); /* more than run at once: some stay queued */
  int stepping = 0;
  for (int waited = 0; waited < 60000 && stepping < 2; waited += 50) {
    stepping = 0;
    for (int i = 0; i < N_JOBS + 2; i++) stepping += fu_hget_ll(jobs[i].id, "step") >= 1;
    if (stepping < 2) sdc_clock_sleep_ms(50);
  }
  int queued = 0, running = 0, waited_job = 0;
  for (int i = 0; i < N_JOBS + 2; i++) {
    queued += fu_hget_ll(jobs[i].id, "epoch") < 0; /* never claimed */
    running += fu_is_state(jobs[i].id, "running");
    if (fu_hget_ll(jobs[i].id, "step") >= 1) waited_job = i;
  }
  /* a client waits across the restart (on a job with a hash: a bare XADD's explicit id has none until claimed) */
  char wait_err[1200];
  snprintf(wait_err, sizeof wait_err, "%s/wait-%s.err", g_tmp, round);
  char *wargv[] = {(char *)g_sdc, "wait", "--redis", (char *)redis_url, jobs[waited_job].id, NULL};
  const long long clients = fu_clients();
  pid_t waiter = fu_spawn(wargv, "/dev/null", wait_err);
  /* its two connections (commands, events) are up before Redis goes: the restart happens under it */
  for (int w = 0; w < 20000 && fu_clients() < clients + 2; w += 20) sdc_clock_sleep_ms(20);
  const int reconnects = fu_log_count(g_log, ": reconnected after ", NULL, 0);
  pid_t rp = fu_child_pid(g_log, "redis-server");
  CHECK(rp > 0, "no redis-server pid in %s", g_log);
  const long long t_kill = (long long)sdc_clock_mono_ms();
  kill(rp, sig);
  /* the dying server may still answer: talk to its successor only */
  for (int w = 0; w < 30000 && fu_child_pid(g_log, "redis-server") == rp; w += 10) sdc_clock_sleep_ms(10);
  CHECK(fu_reconnect(30000), "the restarted Redis does not answer");
  const long long t_up = (long long)sdc_clock_mono_ms();
  char line[4096] = "";
  for (int waited = 0; waited < 30000 && fu_log_count(g_log, ": reconnected after ", line, sizeof line) <= reconnects;
       waited += 20)
    sdc_clock_sleep_ms(20);
  const long long t_reconnected = (long long)sdc_clock_mono_ms();
  CHECK(fu_log_count(g_log, ": reconnected after ", NULL, 0) > reconnects, "%s: the coordinator never reconnected", round);
  const char *ids[N_JOBS + 2];
  for (int i = 0; i < N_JOBS + 2; i++) ids[i] = jobs[i].id;
  const int done = fu_wait_done(ids, N_JOBS + 2, 90000);
  const long long t_done = (long long)sdc_clock_mono_ms();
  CHECK(done == N_JOBS + 2, "%s: only %d of %d jobs done after the restart", round, done, N_JOBS + 2);
  int twice = 0, differ = 0;
  for (int i = 0; i < N_JOBS + 2; i++) {
    char needle[96];
    snprintf(needle, sizeof needle, " job %s: done (route", jobs[i].id);
    const int n = fu_log_count(g_log, needle, NULL, 0);
    CHECK(n == 1, "%s reached done %d times", jobs[i].id, n);
    twice += n > 1;
    long long d = fu_compare(jobs[i].id, jobs[i].prompt, jobs[i].sched, jobs[i].steps, jobs[i].seed);
    CHECK(d == 0, "%s: %lld bytes differ from sdc generate (-1: no image)", jobs[i].id, d);
    differ += d != 0;
  }
  int st = fu_reap(waiter, 60000);
  char err[4096] = "";
  FILE *fp = fopen(wait_err, "r");
  if (fp) err[fread(err, 1, sizeof err - 1, fp)] = 0, fclose(fp);
  CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: sdc wait across the restart failed: %s", round, err);
  CHECK(strstr(err, "retrying in") || strstr(err, "reconnecting"), "%s: sdc wait never said it retried: %s", round, err);
  printf("%s (appendfsync %s, signal %d): %d running + %d queued; Redis answering again after %lld ms, coordinator "
         "reconnected after %lld ms, all %d done %lld ms after the kill; lost %d, twice %d, images differing %d\n",
         round, fsync, sig, running, queued, t_up - t_kill, t_reconnected - t_kill, N_JOBS + 2, t_done - t_kill,
         N_JOBS + 2 - done, twice, differ);
  printf("  coordinator: %s", strstr(line, "coordinator") ? strstr(line, "coordinator") : line);
  printf("  sdc wait: %.*s\n", (int)strcspn(err, "\n"), err);
}

/* Redis paused (SIGSTOP) past SDC_REDIS_STALL_MS with jobs running: the coordinator notices, says so,
 * drops its jobs and reconnects once Redis answers again (SIGCONT); every job done once, same pixels. */
static void run_stall(void) {
  job jobs[N_JOBS + 2];
  for (int i = 0; i < N_JOBS + 2; i++) submit(&jobs[i], "stall", i);
  int stepping = 0;
  for (int waited = 0; waited < 60000 && stepping < 2; waited += 50) {
    stepping = 0;
    for (int i = 0; i < N_JOBS + 2; i++) stepping += fu_hget_ll(jobs[i].id, "step") >= 1;
    if (stepping < 2) sdc_clock_sleep_ms(50);
  }
  const int stalls = fu_log_count(g_log, ": no reply for ", NULL, 0),
            reconnects = fu_log_count(g_log, ": reconnected after ", NULL, 0);
  pid_t rp = fu_child_pid(g_log, "redis-server");
  const long long t_stop = (long long)sdc_clock_mono_ms();
  kill(rp, SIGSTOP);
  /* no Redis command of ours while it is stopped */
  char line[4096] = "";
  for (int waited = 0; waited < 30000 && fu_log_count(g_log, ": no reply for ", line, sizeof line) <= stalls; waited += 50)
    sdc_clock_sleep_ms(50);
  const long long t_noticed = (long long)sdc_clock_mono_ms();
  kill(rp, SIGCONT);
  CHECK(fu_log_count(g_log, ": no reply for ", NULL, 0) > stalls, "a stopped Redis went unnoticed (see %s)", g_log);
  printf("Redis SIGSTOPped: %s", strstr(line, "coordinator") ? strstr(line, "coordinator") : line);
  for (int waited = 0; waited < 30000 && fu_log_count(g_log, ": reconnected after ", NULL, 0) <= reconnects; waited += 20)
    sdc_clock_sleep_ms(20);
  const long long t_back = (long long)sdc_clock_mono_ms();
  CHECK(fu_log_count(g_log, ": reconnected after ", NULL, 0) > reconnects, "no reconnect after SIGCONT");
  const char *ids[N_JOBS + 2];
  for (int i = 0; i < N_JOBS + 2; i++) ids[i] = jobs[i].id;
  const int done = fu_wait_done(ids, N_JOBS + 2, 90000);
  const long long t_done = (long long)sdc_clock_mono_ms();
  CHECK(done == N_JOBS + 2, "stall: only %d of %d jobs done", done, N_JOBS + 2);
  int twice = 0, differ = 0;
  for (int i = 0; i < N_JOBS + 2; i++) {
    char needle[96];
    snprintf(needle, sizeof needle, " job %s: done (route", jobs[i].id);
    const int n = fu_log_count(g_log, needle, NULL, 0);
    CHECK(n == 1, "%s reached done %d times", jobs[i].id, n);
    twice += n > 1;
    long long d = fu_compare(jobs[i].id, jobs[i].prompt, jobs[i].sched, jobs[i].steps, jobs[i].seed);
    CHECK(d == 0, "%s: %lld bytes differ from sdc generate (-1: no image)", jobs[i].id, d);
    differ += d != 0;
  }
  printf("stall: noticed %lld ms after SIGSTOP, reconnected %lld ms after SIGCONT, all %d done %lld ms after "
         "SIGCONT; lost %d, twice %d, images differing %d\n",
         t_noticed - t_stop, t_back - t_noticed, N_JOBS + 2, t_done - t_noticed, N_JOBS + 2 - done, twice, differ);
}

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_redis_faults");
  atexit(stop_all);
  const long long t0 = (long long)sdc_clock_mono_ms();
  snprintf(g_log, sizeof g_log, "%s/cluster.log", g_tmp);
  run_cluster_cannot_start();
  run_no_redis_at_start();

  /* sdc cluster with its own persistent Redis; stdout carries its URL */
  char dir[1100], out[1100], url[128] = "";
  snprintf(dir, sizeof dir, "%s/aof", g_tmp);
  snprintf(out, sizeof out, "%s/cluster.out", g_tmp);
  char *cargv[] = {(char *)g_sdc, "cluster", "--model", g_model, "--redis-dir", dir, "--redis-fsync", "always",
                   "--max-jobs", "3", "--reclaim-idle-ms", "2000", NULL};
  g_cluster = fu_spawn(cargv, out, g_log);
  for (int waited = 0; waited < 90000 && fu_log_count(g_log, ": stages 0x", NULL, 0) < 5; waited += 100)
    sdc_clock_sleep_ms(100);
  FILE *fp = fopen(out, "r");
  if (fp && fgets(url, sizeof url, fp)) url[strcspn(url, "\n")] = 0;
  if (fp) fclose(fp);
  CHECK(strncmp(url, "redis://127.0.0.1:", 18) == 0, "sdc cluster printed no Redis URL: '%s'", url);
  if (strncmp(url, "redis://127.0.0.1:", 18) != 0) return sdc_test_finish("test_redis_faults");
  g_port = atoi(url + 18);
  CHECK(fu_reconnect(10000), "the cluster's Redis does not answer");
  redisReply *r = redisCommand(g_rc, "CONFIG GET appendonly");
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && !strcmp(r->element[1]->str, "yes"),
        "--redis-dir did not turn the AOF on");
  if (r) freeReplyObject(r);

  run_restart("always-kill", "always", SIGKILL, url);
  run_restart("everysec-term", "everysec", SIGTERM, url);
  run_restart("everysec-kill", "everysec", SIGKILL, url);
  run_stall();

  CHECK(fu_int("XPENDING sdc:jobs sdc-coordinators") == 0, "entries still pending at the end");
  CHECK(fu_int("XLEN sdc:jobs:dead") == 0, "something was dead-lettered");
  fu_stop_cluster(g_cluster);
  g_cluster = 0;
  fp = fopen(g_log, "r");
  char line[4096];
  while (fp && fgets(line, sizeof line, fp))
    CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error"), "%s", line);
  if (fp) fclose(fp);
  printf("test_redis_faults: %lld ms\n", (long long)sdc_clock_mono_ms() - t0);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_redis_faults");
}
