/* test_dead_letter.c - a job that crashes its worker every time (the SDC_TEST_CRASH_JOB hook, built only with
 * -DSDC_TEST_HOOKS=ON) is tried SDC_COORD_MAX_ATTEMPTS times with a growing backoff, then ends failed and is
 * moved to sdc:jobs:dead with its error; `sdc cluster` restarts the crashed worker each time and the other
 * jobs, submitted alongside, all complete. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "fault_util.h"
#include "sdc_limits.h"
#include "test_util.h"

#define N_OK 3

static pid_t g_redis, g_cluster;

static void stop_all(void) {
  fu_stop_cluster(g_cluster), g_cluster = 0;
  if (g_redis > 0) kill(g_redis, SIGTERM), fu_reap(g_redis, 10000), g_redis = 0;
}

static void submit(const char *id, int steps) {
  char json[256];
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"churn %s\",\"steps\":%d,\"seed\":7}", id, id, steps);
  CHECK(fu_xadd(json)[0], "XADD %s", id);
}

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_dead_letter");
  char log[1100];
  snprintf(log, sizeof log, "%s/cluster.log", g_tmp);
  atexit(stop_all);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* the crashes are deliberate: no core files */
  setenv("SDC_TEST_CRASH_JOB", "crash-", 1);
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  g_redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(5000), "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_dead_letter");
  g_cluster = fu_start_cluster(url, NULL, log);
  if (!g_cluster) return sdc_test_finish("test_dead_letter");

  const int64_t t0 = sdc_clock_mono_ms();
  submit("crash-1", 4);
  const char *ids[N_OK];
  char ok_ids[N_OK][32];
  for (int i = 0; i < N_OK; i++) {
    snprintf(ok_ids[i], sizeof ok_ids[i], "ok-%d", i);
    ids[i] = ok_ids[i];
    submit(ok_ids[i], 4);
  }
  const char *crash_id[] = {"crash-1"};
  fu_wait_done(crash_id, 1, 120000);
  const int64_t failed_ms = sdc_clock_mono_ms() - t0;
  char *st = fu_hget("crash-1", "state"), *err = fu_hget("crash-1", "error");
  CHECK(st && !strcmp(st, "failed"), "the crashing job ended '%s'", st ? st : "(none)");
  char want[32];
  snprintf(want, sizeof want, "(after %d attempts)", SDC_COORD_MAX_ATTEMPTS);
  CHECK(err && strstr(err, want) != NULL, "its error does not say %s: %s", want, err ? err : "(none)");
  const int done = fu_wait_done(ids, N_OK, 120000);
  CHECK(done == N_OK, "%d of %d jobs beside the crashing one done", done, N_OK);
  /* the dead letter: its id and its reason */
  char *reason = fu_dead_reason("id", "crash-1");
  CHECK(reason && strstr(reason, want), "no dead letter for crash-1 with its error: %s", reason ? reason : "(none)");
  const int crashes = fu_log_count(log, "SDC_TEST_CRASH_JOB: aborting", NULL, 0);
  const int restarts = fu_log_count(log, "exited (signal 6); restarting", NULL, 0);
  CHECK(crashes == SDC_COORD_MAX_ATTEMPTS, "the worker crashed %d times on the job, want %d", crashes,
        SDC_COORD_MAX_ATTEMPTS);
  CHECK(restarts == crashes, "sdc cluster restarted the crashed worker %d times for %d crashes", restarts, crashes);
  /* backoff: 500 ms, then 1000 ms between the tries */
  CHECK(failed_ms >= SDC_COORD_RETRY_BACKOFF_MS * 3, "the job failed after %lld ms, less than its backoff",
        (long long)failed_ms);
  printf("crashing job: %d crashes, %d worker restarts, failed and dead-lettered after %lld ms: %s; "
         "%d of %d other jobs done\n",
         crashes, restarts, (long long)failed_ms, err ? err : "", done, N_OK);
  free(st), free(err), free(reason);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_dead_letter");
}
