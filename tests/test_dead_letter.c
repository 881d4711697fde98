/* test_dead_letter.c - a job that crashes its worker every time (the SDC_TEST_CRASH_JOB hook, built only with
 * -DSDC_TEST_HOOKS=ON) is tried SDC_COORD_MAX_ATTEMPTS times with a growing backoff, then ends failed and is
 * moved to sdc:jobs:dead with its error; `sdc cluster` restarts the crashed worker each time and the other
 * jobs, submitted alongside, all complete. */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "sdc_limits.h"
#include "test_util.h"

extern char **environ;

#define N_OK 3

static char g_log[1024];
static pid_t g_redis, g_cluster;
static redisContext *g_rc;

static void stop_all(void) {
  if (g_cluster > 0) kill(g_cluster, SIGKILL), waitpid(g_cluster, NULL, 0), g_cluster = 0;
  if (g_redis > 0) kill(g_redis, SIGTERM), waitpid(g_redis, NULL, 0), g_redis = 0;
}

static pid_t spawn_logged(char **argv, const char *err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (err) posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}


static int log_count2(const char *a, const char *b) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int n = 0;
  while (fp && fgets(buf, sizeof buf, fp)) n += strstr(buf, a) && (!b || strstr(buf, b));
  if (fp) fclose(fp);
  return n;
}


static void hget(const char *id, const char *field, char *out, size_t n) {
  out[0] = 0;
  redisReply *r = redisCommand(g_rc, "HGET sdc:job:%s %s", id, field);
  if (r && r->type == REDIS_REPLY_STRING) snprintf(out, n, "%s", r->str);
  if (r) freeReplyObject(r);
}

static void submit(const char *id, int steps) {
  char json[256];
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"churn %s\",\"steps\":%d,\"seed\":7}", id, id, steps);
  redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s", json);
  CHECK(r && r->type == REDIS_REPLY_STRING, "XADD %s", id);
  if (r) freeReplyObject(r);
}

/* Waits at most timeout_ms for job id to reach a final state; the state (into st). */
static void await_final(const char *id, int64_t timeout_ms, char *st, size_t n) {
  for (int64_t end = sdc_clock_mono_ms() + timeout_ms; sdc_clock_mono_ms() < end; sdc_clock_sleep_ms(50)) {
    hget(id, "state", st, n);
    if (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled")) return;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  char model[1024];
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  if (access(model, R_OK) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  const char *tmp = sdc_test_tmpdir();
  snprintf(g_log, sizeof g_log, "%s/cluster.log", tmp);
  atexit(stop_all);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* the crashes are deliberate: no core files */
  setenv("SDC_TEST_CRASH_JOB", "crash-", 1);
  const int port = sdc_test_free_port();
  char port_s[16], url[64];
  snprintf(port_s, sizeof port_s, "%d", port);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  char *rargv[] = {"/usr/bin/redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", (char *)tmp, NULL};
  g_redis = spawn_logged(rargv, NULL);
  for (int i = 0; i < 100 && !g_rc; i++) {
    sdc_clock_sleep_ms(50);
    g_rc = redisConnect("127.0.0.1", port);
    if (g_rc && g_rc->err) redisFree(g_rc), g_rc = NULL;
  }
  CHECK(g_rc != NULL, "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_dead_letter");
  char *cargv[] = {(char *)argv[1], "cluster", "--model", model, "--redis", url, NULL};
  g_cluster = spawn_logged(cargv, g_log);
  int registered = 0;
  for (int waited = 0; waited < 120000 && (registered = log_count2(": stages 0x", NULL)) < 5; waited += 100)
    sdc_clock_sleep_ms(100);
  CHECK(registered >= 5, "only %d of 5 workers registered within 120 s (see %s)", registered, g_log);
  if (registered < 5) return sdc_test_finish("test_dead_letter");

  const int64_t t0 = sdc_clock_mono_ms();
  submit("crash-1", 4);
  char id[32], st[32];
  for (int i = 0; i < N_OK; i++) {
    snprintf(id, sizeof id, "ok-%d", i);
    submit(id, 4);
  }
  await_final("crash-1", 120000, st, sizeof st);
  const int64_t failed_ms = sdc_clock_mono_ms() - t0;
  char err[512], attempts[16];
  hget("crash-1", "error", err, sizeof err);
  CHECK(!strcmp(st, "failed"), "the crashing job ended '%s'", st);
  char want[32];
  snprintf(want, sizeof want, "(after %d attempts)", SDC_COORD_MAX_ATTEMPTS);
  CHECK(strstr(err, want) != NULL, "its error does not say %s: %s", want, err);
  int done = 0;
  for (int i = 0; i < N_OK; i++) {
    snprintf(id, sizeof id, "ok-%d", i);
    await_final(id, 120000, st, sizeof st);
    done += !strcmp(st, "done");
  }
  CHECK(done == N_OK, "%d of %d jobs beside the crashing one done", done, N_OK);
  /* the dead letter: its id, reason and attempts */
  int dead = 0;
  redisReply *r = redisCommand(g_rc, "XRANGE sdc:jobs:dead - +");
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
    const redisReply *fields = r->element[i]->element[1];
    int is_it = 0, has_reason = 0;
    for (size_t k = 0; k + 1 < fields->elements; k += 2) {
      is_it |= !strcmp(fields->element[k]->str, "id") && !strcmp(fields->element[k + 1]->str, "crash-1");
      if (!strcmp(fields->element[k]->str, "reason")) has_reason = strstr(fields->element[k + 1]->str, want) != NULL;
      if (!strcmp(fields->element[k]->str, "attempts")) snprintf(attempts, sizeof attempts, "%s", fields->element[k + 1]->str);
    }
    dead += is_it && has_reason;
  }
  if (r) freeReplyObject(r);
  CHECK(dead == 1, "%d dead letters for crash-1 with its error, want 1", dead);
  const int crashes = log_count2("SDC_TEST_CRASH_JOB: aborting", NULL);
  const int restarts = log_count2("exited (signal 6)", "restarting");
  CHECK(crashes == SDC_COORD_MAX_ATTEMPTS, "the worker crashed %d times on the job, want %d", crashes,
        SDC_COORD_MAX_ATTEMPTS);
  CHECK(restarts == crashes, "sdc cluster restarted the crashed worker %d times for %d crashes", restarts, crashes);
  /* backoff: 500 ms, then 1000 ms between the tries */
  CHECK(failed_ms >= SDC_COORD_RETRY_BACKOFF_MS * 3, "the job failed after %lld ms, less than its backoff",
        (long long)failed_ms);
  printf("crashing job: %d crashes, %d worker restarts, failed and dead-lettered after %lld ms (attempts %s): %s; "
         "%d of %d other jobs done\n",
         crashes, restarts, (long long)failed_ms, attempts, err, done, N_OK);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(tmp);
  return sdc_test_finish("test_dead_letter");
}
