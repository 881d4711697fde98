/* test_cluster.c - a real redis-server, `sdc cluster` with two replicas of every UNet shard, jobs enqueued with
 * redis-cli: PNGs identical to `sdc generate`, ten jobs in flight at once, bad jobs fail cleanly. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "pngio.h"
#include "test_util.h"

extern char **environ;

static const char *g_sdc, *g_ref, *g_tmp;
static int g_redis_port;
static pid_t g_redis_pid;
static redisContext *g_rc;

static void stop_redis(void) {
  if (g_redis_pid > 0) {
    kill(g_redis_pid, SIGTERM);
    waitpid(g_redis_pid, NULL, 0);
    g_redis_pid = 0;
  }
}

/* Enqueues with redis-cli (a client this project did not write); the JSON goes through stdin (-x). */
static void xadd(const char *json) {
  char path[1024], cmd[2048];
  snprintf(path, sizeof path, "%s/job.json", g_tmp);
  FILE *fp = fopen(path, "w");
  fputs(json, fp);
  fclose(fp);
  snprintf(cmd, sizeof cmd, "redis-cli -p %d -x XADD sdc:jobs '*' job < '%s' > /dev/null", g_redis_port, path);
  CHECK(system(cmd) == 0, "redis-cli XADD failed");
}

static char *hget(const char *id, const char *field) {
  redisReply *r = redisCommand(g_rc, "HGET sdc:job:%s %s", id, field);
  char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
  if (r) freeReplyObject(r);
  return v;
}

/* Waits until the job's state is final; returns it (heap) or NULL on timeout. */
static char *wait_final(const char *id, double timeout_s) {
  double t0 = sdc_clock_mono_s();
  while (sdc_clock_mono_s() - t0 < timeout_s) {
    char *st = hget(id, "state");
    if (st && (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))) return st;
    free(st);
    sdc_clock_sleep_ms(50);
  }
  return NULL;
}

/* `sdc cluster` on Redis `url` (NULL: the test's own server), with two replicas of every UNet shard
 * when `replicas`. */
static pid_t start_cluster_on(const char *url, const char *model, const char *config, const char *log, int replicas) {
  char own[64];
  snprintf(own, sizeof own, "redis://127.0.0.1:%d", g_redis_port);
  char *argv[16];
  int k = 0;
  argv[k++] = (char *)g_sdc, argv[k++] = "cluster", argv[k++] = "--model", argv[k++] = (char *)model;
  argv[k++] = "--redis", argv[k++] = (char *)(url ? url : own), argv[k++] = "--log-hops";
  if (replicas) argv[k++] = "--replicas", argv[k++] = "unet-down=2,unet-mid=2,unet-up=2";
  if (config) argv[k++] = "--config", argv[k++] = (char *)config;
  argv[k] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, g_sdc, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start sdc cluster");
  return rc == 0 ? pid : -1;
}

static pid_t start_cluster(const char *model, const char *config, const char *log) {
  return start_cluster_on(NULL, model, config, log, 1);
}

/* A redis-server on `port` (requirepass `password` unless NULL); 0 when it did not start. */
static pid_t start_redis(int port, const char *password) {
  char port_s[16];
  snprintf(port_s, sizeof port_s, "%d", port);
  char *rargv[16] = {"/usr/bin/redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                     "no", "--dir", (char *)g_tmp};
  int k = 11;
  if (password) rargv[k++] = "--requirepass", rargv[k++] = (char *)password;
  rargv[k] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, rargv[0], &fa, NULL, rargv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start redis-server on port %d", port);
  return rc == 0 ? pid : 0;
}

/* Connects to 127.0.0.1:port, waiting for the server to come up; NULL on timeout. */
static redisContext *connect_redis(int port) {
  redisContext *rc = NULL;
  for (int i = 0; i < 100 && !rc; i++) {
    sdc_clock_sleep_ms(50);
    rc = redisConnect("127.0.0.1", port);
    if (rc && rc->err) redisFree(rc), rc = NULL;
  }
  return rc;
}

/* The cluster restarts a crashed worker, so a crash would otherwise go unseen: read the log. */
static void stop_cluster(pid_t pid, const char *log, int expect_restart) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sdc cluster did not stop cleanly (status %d)", st);
  FILE *fp = fopen(log, "r");
  char line[2048];
  while (fp && fgets(line, sizeof line, fp))
    CHECK((expect_restart || !strstr(line, ") exited (")) && !strstr(line, "Sanitizer") &&
              !strstr(line, "runtime error"),
          "%s: %s", log, line);
  if (fp) fclose(fp);
}

/* The job's images against `sdc generate` with the same parameters: identical RGB. */
static void compare_with_generate(const char *id, const char *model, const char *config, const char *gen_args, int n_img) {
  char cmd[4096], err[4096], out[1024];
  snprintf(out, sizeof out, "%s/%s-gen.png", g_tmp, id);
  snprintf(cmd, sizeof cmd, "'%s' generate --quiet --model '%s' %s%s%s %s --output '%s'", g_sdc, model,
           config ? "--config '" : "", config ? config : "", config ? "'" : "", gen_args, out);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "%s: sdc generate failed: %s", id, err);
  for (int i = 0; i < n_img; i++) {
    redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:%d", id, i);
    CHECK(r && r->type == REDIS_REPLY_STRING, "%s: image %d missing in Redis", id, i);
    if (!r || r->type != REDIS_REPLY_STRING) {
      if (r) freeReplyObject(r);
      continue;
    }
    char path[1100], gen[1100];
    snprintf(path, sizeof path, "%s/%s-%d-cluster.png", g_tmp, id, i);
    FILE *fp = fopen(path, "wb");
    fwrite(r->str, 1, r->len, fp);
    fclose(fp);
    freeReplyObject(r);
    if (n_img == 1) snprintf(gen, sizeof gen, "%s", out);
    else snprintf(gen, sizeof gen, "%s/%s-gen-%d.png", g_tmp, id, i);
    uint8_t *a = NULL, *b = NULL;
    int64_t wa, ha, wb, hb;
    int ea = sdc_png_read(path, &a, &wa, &ha, NULL), eb = sdc_png_read(gen, &b, &wb, &hb, NULL);
    CHECK(!ea && !eb && wa == wb && ha == hb, "%s image %d: unreadable or sizes differ", id, i);
    if (!ea && !eb && wa == wb && ha == hb) {
      int64_t n = wa * ha * 3, diff = 0;
      for (int64_t k = 0; k < n; k++) diff += a[k] != b[k];
      CHECK(diff == 0, "%s image %d: %lld of %lld bytes differ from sdc generate", id, i, (long long)diff, (long long)n);
      printf("%s image %d: %lldx%lld, identical to sdc generate: %s\n", id, i, (long long)wa, (long long)ha,
             diff ? "NO" : "yes");
    }
    free(a), free(b);
  }
}

/* The hash of a finished job against docs/jobs.md: created_ms from the entry id even for a plain XADD,
 * the resolved scheduler name (never "default"), and the short route form, each worker once per stage. */
static void check_job_hash(const char *id, const char *want_sched) {
  char *entry = hget(id, "entry"), *created = hget(id, "created_ms"), *sched = hget(id, "scheduler");
  char *route = hget(id, "route");
  CHECK(entry && created && strtoull(created, NULL, 10) == strtoull(entry, NULL, 10) && strtoull(created, NULL, 10) > 0,
        "%s: created_ms '%s' is not the time of entry '%s'", id, created ? created : "(missing)", entry ? entry : "");
  CHECK(sched && !strcmp(sched, want_sched), "%s: scheduler '%s', expected '%s'", id, sched ? sched : "(missing)",
        want_sched);
  CHECK(route && strlen(route) < 1024, "%s: route missing or %zu bytes", id, route ? strlen(route) : 0);
  static const char *const stages[] = {"text=", "down=", "mid=", "up=", "vae="};
  const char *p = route ? route : "";
  for (int s = 0; s < 5 && route; s++) {
    /* stages in order, separated by one space, each listing distinct workers */
    CHECK(!strncmp(p, stages[s], strlen(stages[s])), "%s: route '%s' lacks '%s' in place", id, route, stages[s]);
    if (strncmp(p, stages[s], strlen(stages[s]))) break;
    p += strlen(stages[s]);
    size_t n = strcspn(p, " ");
    char list[512];
    snprintf(list, sizeof list, "%.*s", (int)(n < sizeof list ? n : sizeof list - 1), p);
    CHECK(n > 0, "%s: route '%s' has no worker for %s", id, route, stages[s]);
    for (char *a = list; *a; a += strcspn(a, ",") + (a[strcspn(a, ",")] == ','))
      for (char *b = a + strcspn(a, ",") + (a[strcspn(a, ",")] == ','); *b; b += strcspn(b, ",") + (b[strcspn(b, ",")] == ','))
        CHECK(strcspn(a, ",") != strcspn(b, ",") || strncmp(a, b, strcspn(a, ",")), "%s: route '%s' repeats a worker",
              id, route);
    p += n;
    if (*p == ' ') p++;
  }
  CHECK(!route || !*p, "%s: route '%s' has more than the five stages", id, route);
  printf("%s: created_ms %s, scheduler %s, route '%s'\n", id, created ? created : "-", sched ? sched : "-",
         route ? route : "-");
  free(entry), free(created), free(sched), free(route);
}

typedef struct {
  const char *id, *json, *gen_args;
  int n_img;
  const char *sched; /* the resolved scheduler the hash must name */
} job_case;

static void run_model(const char *name, const char *model, const char *config, const job_case *cases, int n_cases,
                      int ten_at_once) {
  char log[1024];
  snprintf(log, sizeof log, "%s/cluster-%s.log", g_tmp, name);
  pid_t cl = start_cluster(model, config, log);
  for (int i = 0; i < n_cases; i++) xadd(cases[i].json);
  for (int i = 0; i < n_cases; i++) {
    char *st = wait_final(cases[i].id, 180);
    char *err = st && strcmp(st, "done") ? hget(cases[i].id, "error") : NULL;
    CHECK(st && !strcmp(st, "done"), "%s: state %s (%s)", cases[i].id, st ? st : "timeout", err ? err : "");
    if (st && !strcmp(st, "done")) {
      compare_with_generate(cases[i].id, model, config, cases[i].gen_args, cases[i].n_img);
      check_job_hash(cases[i].id, cases[i].sched);
    }
    free(st), free(err);
  }
  if (ten_at_once) {
    double t0 = sdc_clock_mono_s();
    for (int i = 0; i < 10; i++) {
      char json[512];
      snprintf(json, sizeof json,
               "{\"id\":\"ten-%d\",\"prompt\":\"job %d of ten\",\"width\":128,\"height\":128,\"steps\":6,"
               "\"scheduler\":\"euler\",\"seed\":%d}", i, i, 100 + i);
      xadd(json);
    }
    int done = 0;
    for (int i = 0; i < 10; i++) {
      char id[32];
      snprintf(id, sizeof id, "ten-%d", i);
      char *st = wait_final(id, 240);
      done += st && !strcmp(st, "done");
      free(st);
    }
    printf("ten jobs at once: %d done in %.1f s\n", done, sdc_clock_mono_s() - t0);
    CHECK(done == 10, "only %d of 10 jobs finished", done);
    /* the workers' hop lines: overlapping hops of different jobs on different shards,
     * and every replica of every UNet shard served */
    FILE *fp = fopen(log, "r");
    struct { char job[32], stage[16], worker[32]; unsigned long long a, b; } hops[4096];
    int n = 0;
    char line[1024];
    /* "<ms> worker <id> job <job>[ step <n>]: hop stage=<stage> start_ms=<ms> end_ms=<ms>" */
    while (fp && fgets(line, sizeof line, fp) && n < 4096) {
      char *h = strstr(line, ": hop stage=");
      if (!h || !strstr(line, " job ten-")) continue;
      char worker[64];
      if (sscanf(line, "%*s worker %63s job %31[^: ]", worker, hops[n].job) != 2) continue;
      if (sscanf(h, ": hop stage=%15s start_ms=%llu end_ms=%llu", hops[n].stage, &hops[n].a, &hops[n].b) == 3) {
        snprintf(hops[n].worker, sizeof hops[n].worker, "%s", worker);
        n++;
      }
    }
    if (fp) fclose(fp);
    int overlap = 0;
    for (int i = 0; i < n && !overlap; i++)
      for (int k = 0; k < n && !overlap; k++)
        if (strcmp(hops[i].job, hops[k].job) && strcmp(hops[i].stage, hops[k].stage) && strstr(hops[i].stage, "unet") &&
            strstr(hops[k].stage, "unet") && hops[i].a < hops[k].b && hops[k].a < hops[i].b) {
          overlap = 1;
          printf("pipelining: %s in %s on %s [%llu, %llu] while %s in %s on %s [%llu, %llu]\n", hops[i].job,
                 hops[i].stage, hops[i].worker, hops[i].a, hops[i].b, hops[k].job, hops[k].stage, hops[k].worker,
                 hops[k].a, hops[k].b);
        }
    CHECK(overlap, "no two jobs were ever in different UNet shards at the same moment (%d hop lines)", n);
    static const char *const replicas[] = {"unet-down-0", "unet-down-1", "unet-mid-0", "unet-mid-1", "unet-up-0", "unet-up-1"};
    for (int r = 0; r < 6; r++) {
      int served = 0;
      for (int i = 0; i < n; i++) served += strcmp(hops[i].worker, replicas[r]) == 0;
      printf("replica %s served %d hops\n", replicas[r], served);
      CHECK(served > 0, "replica %s served no step", replicas[r]);
    }
    /* a worker killed mid-job costs a step, not the job: the images stay identical */
    for (int i = 0; i < 4; i++) {
      char json[512];
      snprintf(json, sizeof json,
               "{\"id\":\"kill-%d\",\"prompt\":\"survive a crash\",\"width\":128,\"height\":128,\"steps\":12,"
               "\"scheduler\":\"euler_a\",\"seed\":%d}", i, 200 + i);
      xadd(json);
    }
    sdc_clock_sleep_ms(800);
    /* only this cluster's children (another checkout may run the same test);
     * "[-]" keeps the patterns from matching this very shell command line */
    char kill_cmd[256];
    snprintf(kill_cmd, sizeof kill_cmd,
             "pkill -KILL -P %d -f -- '-[-]id unet-mid-0' && pkill -KILL -P %d -f -- '-[-]id unet-up-1'", (int)cl,
             (int)cl);
    CHECK(system(kill_cmd) == 0, "could not kill the workers");
    for (int i = 0; i < 4; i++) {
      char id[32], gen[256];
      snprintf(id, sizeof id, "kill-%d", i);
      char *st = wait_final(id, 120);
      CHECK(st && !strcmp(st, "done"), "%s after killing workers: %s", id, st ? st : "timeout");
      if (st && !strcmp(st, "done") && i == 0) {
        snprintf(gen, sizeof gen, "--prompt 'survive a crash' --width 128 --height 128 --steps 12 --scheduler euler_a "
                                  "--seed %d", 200 + i);
        compare_with_generate(id, model, config, gen, 1);
        check_job_hash(id, "euler_a"); /* a re-issued step may list two workers for a stage */
      }
      free(st);
    }
  }
  stop_cluster(cl, log, ten_at_once);
}

static void run_bad_jobs(const char *model) {
  char log[1024];
  snprintf(log, sizeof log, "%s/cluster-bad.log", g_tmp);
  pid_t cl = start_cluster(model, NULL, log);
  xadd("{\"id\":\"bad-json\",\"prompt\": ");
  xadd("{\"id\":\"bad-field\",\"prompt\":\"x\",\"colour\":\"red\"}");
  xadd("{\"id\":\"bad-width\",\"prompt\":\"x\",\"width\":100}");
  xadd("{\"id\":\"bad-steps\",\"prompt\":\"x\",\"steps\":0}");
  xadd("{\"id\":\"bad-sched\",\"prompt\":\"x\",\"scheduler\":\"karras9000\"}");
  /* a 10 MB prompt */
  size_t big = 10u << 20;
  char *json = malloc(big + 64);
  strcpy(json, "{\"id\":\"bad-big\",\"prompt\":\"");
  size_t len = strlen(json);
  memset(json + len, 'a', big);
  strcpy(json + len + big, "\"}");
  xadd(json);
  free(json);
  xadd("{\"id\":\"good-after-bad\",\"prompt\":\"still serving\",\"width\":64,\"height\":64,\"steps\":3,\"seed\":1}");
  static const char *const bad[][2] = {{"bad-field", "colour"}, {"bad-width", "width"}, {"bad-steps", "steps"},
                                       {"bad-sched", "karras9000"}, {"bad-big", "bytes"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *st = wait_final(bad[i][0], 60), *err = hget(bad[i][0], "error");
    CHECK(st && !strcmp(st, "failed"), "%s: state %s", bad[i][0], st ? st : "timeout");
    CHECK(err && strstr(err, bad[i][1]), "%s: error '%s' does not name '%s'", bad[i][0], err ? err : "", bad[i][1]);
    printf("%s -> failed: %s\n", bad[i][0], err ? err : "");
    free(st), free(err);
  }
  /* invalid JSON has no usable id: the failure is recorded under the stream entry id */
  redisReply *r = redisCommand(g_rc, "XRANGE sdc:jobs:dead - +");
  int dead_json = 0;
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
    for (size_t k = 0; k + 1 < r->element[i]->element[1]->elements; k += 2)
      if (strstr(r->element[i]->element[1]->element[k + 1]->str, "JSON")) dead_json = 1;
  if (r) freeReplyObject(r);
  CHECK(dead_json, "the invalid-JSON job left no failure with a JSON error in sdc:jobs:dead");
  char *st = wait_final("good-after-bad", 60);
  CHECK(st && !strcmp(st, "done"), "the cluster stopped serving after bad jobs: %s", st ? st : "timeout");
  free(st);
  stop_cluster(cl, log, 0);
}

/* A Redis that wants a password: with the right one in the URL (and a db) a job completes; with a
 * wrong one sdc-coordinator keeps retrying, one line per try naming the Redis and AUTH, never the password. */
static void run_auth(const char *model) {
  const int port = sdc_test_free_port();
  pid_t pid = start_redis(port, "s3cret");
  redisContext *rc = pid ? connect_redis(port) : NULL;
  CHECK(rc != NULL, "the password-protected redis-server did not come up");
  if (!rc) goto out;
  redisReply *r = redisCommand(rc, "AUTH s3cret");
  CHECK(r && r->type == REDIS_REPLY_STATUS, "AUTH to the test's own server failed");
  if (r) freeReplyObject(r);
  r = redisCommand(rc, "SELECT 2");
  if (r) freeReplyObject(r);
  char url[128], log[1024];
  snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/2", port);
  snprintf(log, sizeof log, "%s/cluster-auth.log", g_tmp);
  pid_t cl = start_cluster_on(url, model, NULL, log, 0);
  r = redisCommand(rc, "XADD sdc:jobs * job %s",
                   "{\"id\":\"auth-ok\",\"prompt\":\"x\",\"width\":64,\"height\":64,\"steps\":2,\"seed\":1}");
  CHECK(r && r->type == REDIS_REPLY_STRING, "XADD on the password-protected server failed");
  if (r) freeReplyObject(r);
  char *st = NULL;
  for (int i = 0; i < 1200 && !(st && (!strcmp(st, "done") || !strcmp(st, "failed"))); i++) {
    free(st);
    sdc_clock_sleep_ms(50);
    r = redisCommand(rc, "HGET sdc:job:auth-ok state");
    st = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    if (r) freeReplyObject(r);
  }
  CHECK(st && !strcmp(st, "done"), "auth-ok with the right password and db 2: state %s", st ? st : "timeout");
  printf("auth-ok with a password and db 2: %s\n", st ? st : "timeout");
  free(st);
  stop_cluster(cl, log, 0);
  FILE *fp = fopen(log, "r");
  char line[2048];
  int connected = 0;
  while (fp && fgets(line, sizeof line, fp)) connected |= strstr(line, "coordinator") && strstr(line, "connected") != NULL;
  if (fp) fclose(fp);
  CHECK(connected, "%s: the coordinator never logged that Redis is connected", log);
  /* a wrong password: the coordinator stops with a line naming the server, and never the password */
  char coord[1100], cmd[4096], err[8192], where[64];
  snprintf(coord, sizeof coord, "%s", g_sdc);
  char *slash = strrchr(coord, '/');
  snprintf(slash ? slash + 1 : coord, sizeof coord - (size_t)(slash ? slash + 1 - coord : 0), "sdc-coordinator");
  /* it never exits over Redis: it says so on every retry (backoff 100, 200, 400, ... ms) until stopped */
  snprintf(cmd, sizeof cmd, "timeout 4 '%s' --model '%s' --redis redis://:wrong-pw@127.0.0.1:%d --bind tcp://127.0.0.1:%d",
           coord, model, port, sdc_test_free_port());
  int status = sdc_test_run(cmd, err, sizeof err);
  snprintf(where, sizeof where, "127.0.0.1:%d", port);
  CHECK(status == 124, "a wrong password: sdc-coordinator exited with %d instead of retrying", status);
  CHECK(strstr(err, where) && strstr(err, "AUTH failed") && strstr(err, "retrying in"),
        "a wrong password: no line names %s, AUTH and the retry: %s", where, err);
  int auth_lines = 0;
  for (const char *p = err; (p = strstr(p, "AUTH failed")); p++) auth_lines++;
  CHECK(auth_lines >= 3, "a wrong password: %d AUTH lines in 4 s, expected one per retry: %s", auth_lines, err);
  CHECK(!strstr(err, "wrong-pw"), "a wrong password: the log shows the password: %s", err);
  const char *auth = strstr(err, "AUTH failed") ? strstr(err, "AUTH failed") : err;
  printf("wrong password: %d AUTH retries logged in 4 s, e.g. %.*s\n", auth_lines, (int)strcspn(auth, "\n"), auth);
  redisFree(rc);
out:
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_sdc = argv[1];
  g_ref = sdc_test_ref_dir();
  if (!g_ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  g_tmp = sdc_test_tmpdir();
  g_redis_port = sdc_test_free_port();
  char port[16];
  snprintf(port, sizeof port, "%d", g_redis_port);
  char *rargv[] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", (char *)g_tmp, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  CHECK(posix_spawn(&g_redis_pid, rargv[0], &fa, NULL, rargv, environ) == 0, "cannot start redis-server");
  posix_spawn_file_actions_destroy(&fa);
  atexit(stop_redis);
  for (int i = 0; i < 100 && !g_rc; i++) {
    sdc_clock_sleep_ms(50);
    g_rc = redisConnect("127.0.0.1", g_redis_port);
    if (g_rc && g_rc->err) redisFree(g_rc), g_rc = NULL;
  }
  CHECK(g_rc != NULL, "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_cluster");

  char m1[1024], m2[1024], single[1100];
  snprintf(m1, sizeof m1, "%s/tiny-sd1", g_ref);
  snprintf(m2, sizeof m2, "%s/tiny-sd2", g_ref);
  snprintf(single, sizeof single, "%s/tiny-sd1/single_file.safetensors", g_ref);
  const job_case sd1[] = {
      {"sd1-pndm", "{\"id\":\"sd1-pndm\",\"prompt\":\"a photograph of an astronaut riding a horse\",\"width\":128,"
                   "\"height\":128,\"steps\":8,\"seed\":42}",
       "--prompt 'a photograph of an astronaut riding a horse' --width 128 --height 128 --steps 8 --seed 42", 1, "pndm"},
      {"sd1-euler-a", "{\"id\":\"sd1-euler-a\",\"prompt\":\"a cat\",\"negative_prompt\":\"blurry\",\"width\":128,"
                      "\"height\":128,\"steps\":6,\"seed\":1,\"scheduler\":\"euler_a\"}",
       "--prompt 'a cat' --negative-prompt blurry --width 128 --height 128 --steps 6 --seed 1 --scheduler euler_a", 1, "euler_a"},
      {"sd1-two", "{\"id\":\"sd1-two\",\"prompt\":\"two images\",\"width\":128,\"height\":128,\"steps\":5,\"seed\":3,"
                  "\"scheduler\":\"dpmpp_2m_karras\",\"num_images\":2}",
       "--prompt 'two images' --width 128 --height 128 --steps 5 --seed 3 --scheduler dpmpp_2m_karras --num-images 2", 2, "dpmpp_2m_karras"},
  };
  const job_case sd2[] = {
      {"sd2-ddim", "{\"id\":\"sd2-ddim\",\"prompt\":\"v prediction\",\"width\":128,\"height\":192,\"steps\":6,\"seed\":9}",
       "--prompt 'v prediction' --width 128 --height 192 --steps 6 --seed 9", 1, "ddim"},
      {"sd2-unipc", "{\"id\":\"sd2-unipc\",\"prompt\":\"unipc\",\"width\":128,\"height\":128,\"steps\":5,\"seed\":4,"
                    "\"scheduler\":\"unipc\",\"guidance_scale\":1.0}",
       "--prompt unipc --width 128 --height 128 --steps 5 --seed 4 --scheduler unipc --guidance-scale 1.0", 1, "unipc"},
  };
  const job_case sf[] = {
      {"single-heun", "{\"id\":\"single-heun\",\"prompt\":\"single file\",\"width\":128,\"height\":128,\"steps\":4,"
                      "\"seed\":5,\"scheduler\":\"heun\"}",
       "--prompt 'single file' --width 128 --height 128 --steps 4 --seed 5 --scheduler heun", 1, "heun"},
  };
  run_model("sd1", m1, NULL, sd1, 3, 1);
  run_model("sd2", m2, NULL, sd2, 2, 0);
  run_model("single", single, m1, sf, 1, 0);
  run_bad_jobs(m1);
  run_auth(m1);
  redisFree(g_rc);
  stop_redis();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  else printf("logs kept in %s\n", g_tmp);
  return sdc_test_finish("test_cluster");
}
