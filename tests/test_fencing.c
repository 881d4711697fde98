/* test_fencing.c - exactly once, fenced: two `sdc cluster`s (A and B) share one Redis stream.
 *  1. A's coordinator is SIGSTOPped mid-denoise, B takes its jobs over and finishes them; after SIGCONT A
 *     writes nothing: one final event per job, no `running` after `done`, step/finished_ms/epoch unchanged.
 *  2. Both coordinators active: every job completes exactly once.
 *  3. kill -9 of the coordinator holding jobs mid-denoise: takeover within --reclaim-idle-ms and a tick.
 *  Every image equals `sdc generate`'s. Then the reject path: a refused JSON naming another job's id (done,
 *  running, queued) leaves that hash alone; a hash pre-set `done` is dead-lettered, not acknowledged; an
 *  entry without `job` is dead-lettered; `kc:image:0` is no id; `sdc cancel` of an unknown id fails and
 *  creates nothing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "fault_util.h"
#include "test_util.h"

#define RECLAIM_MS 2000
#define RECLAIM_S "2000"

static char g_log_a[1100], g_log_b[1100];
static pid_t g_redis, g_a, g_b;

static void stop_all(void) {
  pid_t coord = g_a ? fu_child_pid(g_log_a, "coordinator") : 0;
  if (coord > 0) kill(coord, SIGCONT);
  /* SIGTERM: sdc cluster drains and stops its children (a SIGKILLed one would orphan them) */
  if (g_a) fu_stop_cluster(g_a), g_a = 0;
  if (g_b) fu_stop_cluster(g_b), g_b = 0;
  if (g_redis) kill(g_redis, SIGTERM), waitpid(g_redis, NULL, 0), g_redis = 0;
}

typedef struct {
  char id[32], prompt[48], sched[16];
  int steps, seed, w;
} job;

static void submit(job *j, const char *id, int i, int steps, int w) {
  static const char *const scheds[] = {"euler_a", "ddim", "dpmpp_2m", "euler", "lms", "unipc"};
  snprintf(j->id, sizeof j->id, "%s", id);
  snprintf(j->prompt, sizeof j->prompt, "fenced job %d", i);
  snprintf(j->sched, sizeof j->sched, "%s", scheds[i % 6]);
  j->steps = steps, j->seed = 700 + i, j->w = w;
  char json[512];
  snprintf(json, sizeof json,
           "{\"id\":\"%s\",\"prompt\":\"%s\",\"steps\":%d,\"seed\":%d,\"scheduler\":\"%s\",\"width\":%d,\"height\":%d}",
           j->id, j->prompt, j->steps, j->seed, j->sched, w, w);
  fu_xadd(json);
}

/* Waits until each job has taken a step (or ended); how many have. */
static int wait_stepping(job *jobs, int n, int timeout_ms) {
  int k = 0;
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    k = 0;
    for (int i = 0; i < n; i++) k += fu_hget_ll(jobs[i].id, "step") >= 1;
    if (k == n) break;
    sdc_clock_sleep_ms(50);
  }
  return k;
}

static int wait_all_done(job *jobs, int n, int timeout_ms) {
  const char *ids[16];
  for (int i = 0; i < n; i++) ids[i] = jobs[i].id;
  return fu_wait_done(ids, n, timeout_ms);
}

static void compare_all(job *jobs, int n) {
  for (int i = 0; i < n; i++) {
    long long d = fu_compare(jobs[i].id, jobs[i].prompt, jobs[i].sched, jobs[i].steps, jobs[i].seed);
    CHECK(d == 0, "%s: %lld bytes differ from sdc generate (-1: no image)", jobs[i].id, d);
  }
}

/* "done (route" lines for id across both clusters' logs */
static int done_lines(const char *id) {
  char needle[96];
  snprintf(needle, sizeof needle, " job %s: done (route", id);
  return fu_log_count(g_log_a, needle, NULL, 0) + fu_log_count(g_log_b, needle, NULL, 0);
}

/* Phase 1: SIGSTOP / SIGCONT. */
static void run_pause(job *jobs, int n) {
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "pause-%d", i);
    submit(&jobs[i], id, i, 20, 96);
  }
  CHECK(wait_stepping(jobs, n, 60000) == n, "not every job started denoising on A");
  pid_t coord = fu_child_pid(g_log_a, "coordinator");
  CHECK(coord > 0, "no coordinator pid in %s", g_log_a);
  if (coord <= 0) return;
  kill(coord, SIGSTOP);
  const long long t_stop = (long long)sdc_clock_mono_ms();
  int running = 0;
  for (int i = 0; i < n; i++) running += fu_is_state(jobs[i].id, "running");
  printf("SIGSTOP of A's coordinator (pid %d) with %d of %d jobs running\n", (int)coord, running, n);
  CHECK(running > 0, "every job finished before the pause: the fence went untested");
  const char *flags[] = {"--reclaim-idle-ms", RECLAIM_S, NULL};
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  g_b = fu_start_cluster(url, flags, g_log_b);
  int done = wait_all_done(jobs, n, 90000);
  printf("B finished %d of %d jobs %lld ms after A's SIGSTOP\n", done, n, (long long)sdc_clock_mono_ms() - t_stop);
  CHECK(done == n, "only %d of %d jobs done by B while A is stopped", done, n);
  long long step[8], fin[8], epoch[8];
  for (int i = 0; i < n; i++)
    step[i] = fu_hget_ll(jobs[i].id, "step"), fin[i] = fu_hget_ll(jobs[i].id, "finished_ms"),
    epoch[i] = fu_hget_ll(jobs[i].id, "epoch");
  kill(coord, SIGCONT);
  /* A wakes up with its steps' replies and its ticks due: give it time to try every write it would make */
  sdc_clock_sleep_ms(3000);
  for (int i = 0; i < n; i++) {
    CHECK(fu_is_state(jobs[i].id, "done"), "%s is no longer done after A resumed", jobs[i].id);
    CHECK(fu_hget_ll(jobs[i].id, "step") == step[i], "%s: step changed after A resumed", jobs[i].id);
    CHECK(fu_hget_ll(jobs[i].id, "finished_ms") == fin[i], "%s: finished_ms changed after A resumed", jobs[i].id);
    CHECK(fu_hget_ll(jobs[i].id, "epoch") == epoch[i], "%s: epoch changed after A resumed", jobs[i].id);
    CHECK(epoch[i] >= 2, "%s: epoch %lld: B never claimed it", jobs[i].id, epoch[i]);
  }
  /* either its touch finds the entry acknowledged, or a write of it is fenced: one line per job either way */
  const int fenced = fu_log_count(g_log_a, "no longer ours", NULL, 0) + fu_log_count(g_log_a, "is no longer pending", NULL, 0);
  printf("after SIGCONT A dropped %d jobs it no longer owned (one log line each), wrote nothing\n", fenced);
  CHECK(fenced >= 1, "A resumed and never noticed it lost its jobs (see %s)", g_log_a);
  compare_all(jobs, n);
}

/* Phase 2: both coordinators claim from one group. */
static void run_both(job *jobs, int n) {
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "both-%d", i);
    submit(&jobs[i], id, i, 8, 64);
  }
  int done = wait_all_done(jobs, n, 90000);
  CHECK(done == n, "only %d of %d jobs done with two coordinators", done, n);
  int on_a = 0;
  for (int i = 0; i < n; i++) {
    CHECK(done_lines(jobs[i].id) == 1, "%s reached done %d times", jobs[i].id, done_lines(jobs[i].id));
    char needle[96];
    snprintf(needle, sizeof needle, " job %s: done (route", jobs[i].id);
    on_a += fu_log_count(g_log_a, needle, NULL, 0);
  }
  printf("two coordinators: %d jobs on A, %d on B, each done exactly once\n", on_a, n - on_a);
  compare_all(jobs, n);
}

/* Phase 2b: the fence itself. Another claim of a running job (its epoch bumped behind its coordinator's
 * back) makes that coordinator's next write change nothing: it drops the job, the entry stays pending,
 * is taken over, and the job ends done once with the same pixels. */
static void run_steal(job *j) {
  submit(j, "steal-0", 5, 20, 96);
  CHECK(wait_stepping(j, 1, 60000) == 1, "steal-0 never started");
  const int before = fu_log_count(g_log_a, "no longer ours", NULL, 0) + fu_log_count(g_log_b, "no longer ours", NULL, 0);
  redisReply *r = redisCommand(g_rc, "HINCRBY sdc:job:steal-0 epoch 1");
  if (r) freeReplyObject(r);
  const long long step = fu_hget_ll("steal-0", "step");
  int after = before;
  for (int waited = 0; waited < 10000 && after == before; waited += 20) {
    after = fu_log_count(g_log_a, "no longer ours", NULL, 0) + fu_log_count(g_log_b, "no longer ours", NULL, 0);
    sdc_clock_sleep_ms(20);
  }
  CHECK(after == before + 1, "a write with a stale epoch was not refused (%d lines)", after - before);
  CHECK(fu_hget_ll("steal-0", "step") == step, "the stale coordinator wrote a step");
  CHECK(wait_all_done(j, 1, 60000) == 1, "steal-0 not done after its takeover");
  CHECK(done_lines("steal-0") == 1, "steal-0 done %d times", done_lines("steal-0"));
  printf("stale epoch: the write was refused, the job dropped, taken over (epoch %lld) and done once\n",
         fu_hget_ll("steal-0", "epoch"));
  compare_all(j, 1);
}

/* Phase 3: kill -9 of the coordinator that holds the most jobs mid-denoise. */
static long long run_kill(job *jobs, int n) {
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "kill-%d", i);
    submit(&jobs[i], id, i + 2, 20, 96);
  }
  CHECK(wait_stepping(jobs, n, 60000) == n, "not every job started denoising");
  pid_t ca = fu_child_pid(g_log_a, "coordinator"), cb = fu_child_pid(g_log_b, "coordinator");
  char id_a[32], id_b[32];
  snprintf(id_a, sizeof id_a, "-%d", (int)ca), snprintf(id_b, sizeof id_b, "-%d", (int)cb);
  int on_a = 0, on_b = 0;
  char *owner[8] = {0};
  for (int i = 0; i < n; i++) {
    owner[i] = fu_hget(jobs[i].id, "owner");
    const size_t ol = owner[i] ? strlen(owner[i]) : 0;
    on_a += ol > strlen(id_a) && !strcmp(owner[i] + ol - strlen(id_a), id_a);
    on_b += ol > strlen(id_b) && !strcmp(owner[i] + ol - strlen(id_b), id_b);
  }
  const int kill_a = on_a >= on_b;
  const pid_t victim = kill_a ? ca : cb;
  const char *vid = kill_a ? id_a : id_b;
  long long epoch[8];
  int held[8], n_held = 0;
  for (int i = 0; i < n; i++) {
    const size_t ol = owner[i] ? strlen(owner[i]) : 0;
    held[i] = ol > strlen(vid) && !strcmp(owner[i] + ol - strlen(vid), vid) && fu_is_state(jobs[i].id, "running");
    n_held += held[i];
    epoch[i] = fu_hget_ll(jobs[i].id, "epoch");
    free(owner[i]);
  }
  printf("kill -9 of %s's coordinator (pid %d) holding %d running jobs\n", kill_a ? "A" : "B", (int)victim, n_held);
  CHECK(n_held > 0, "the killed coordinator held no running job: the takeover went untested");
  const long long t_kill = (long long)sdc_clock_mono_ms();
  kill(victim, SIGKILL);
  long long worst = 0;
  for (int i = 0; i < n; i++) {
    if (!held[i]) continue;
    long long t = -1;
    for (int waited = 0; waited < 30000; waited += 20) {
      if (fu_hget_ll(jobs[i].id, "epoch") > epoch[i]) {
        t = (long long)sdc_clock_mono_ms() - t_kill;
        break;
      }
      sdc_clock_sleep_ms(20);
    }
    CHECK(t >= 0, "%s was never taken over", jobs[i].id);
    if (t > worst) worst = t;
  }
  /* XAUTOCLAIM runs every reclaim/2; an entry is idle since its last touch (every reclaim/3) */
  printf("takeover after kill -9: %lld ms at worst (--reclaim-idle-ms %d)\n", worst, RECLAIM_MS);
  CHECK(worst <= RECLAIM_MS + RECLAIM_MS / 2 + 1000, "takeover took %lld ms", worst);
  int done = wait_all_done(jobs, n, 90000);
  CHECK(done == n, "only %d of %d jobs done after the kill", done, n);
  for (int i = 0; i < n; i++) CHECK(done_lines(jobs[i].id) == 1, "%s done %d times", jobs[i].id, done_lines(jobs[i].id));
  compare_all(jobs, n);
  return worst;
}

/* Waits for the dead letter of entry; its reason (caller frees). */
static char *wait_dead(const char *entry) {
  char *reason = NULL;
  for (int waited = 0; waited < 20000 && !(reason = fu_dead_reason("entry", entry)); waited += 100) sdc_clock_sleep_ms(100);
  return reason;
}

static char *hgetall_text(const char *key) {
  redisReply *r = redisCommand(g_rc, "HGETALL %s", key);
  size_t cap = 8192, len = 0;
  char *s = calloc(1, cap);
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
    len += (size_t)snprintf(s + len, len < cap ? cap - len : 0, "%s%s", r->element[i]->str, i % 2 ? ";" : "=");
  if (r) freeReplyObject(r);
  return s;
}

static void run_reject(void) {
  /* a done victim: pause-0 */
  char *before = hgetall_text("sdc:job:pause-0");
  const char *e = fu_xadd("{\"id\":\"pause-0\",\"steps\":0}");
  char entry[64];
  snprintf(entry, sizeof entry, "%s", e);
  char *reason = wait_dead(entry);
  CHECK(reason && strstr(reason, "job field") && strstr(reason, "left alone"), "bad JSON naming a done job: %s",
        reason ? reason : "no dead letter");
  char *after = hgetall_text("sdc:job:pause-0");
  CHECK(!strcmp(before, after), "the done victim's hash changed:\n  %s\n  %s", before, after);
  printf("{\"id\":\"pause-0\",\"steps\":0} -> dead letter only: %s\n", reason ? reason : "");
  free(before), free(after), free(reason);

  /* a running victim */
  job v;
  submit(&v, "victim-run", 3, 24, 128);
  CHECK(wait_stepping(&v, 1, 60000) == 1, "victim-run never started");
  snprintf(entry, sizeof entry, "%s", fu_xadd("{\"id\":\"victim-run\",\"steps\":0}"));
  reason = wait_dead(entry);
  CHECK(reason != NULL, "bad JSON naming a running job: no dead letter");
  free(reason);
  CHECK(wait_all_done(&v, 1, 60000) == 1, "the running victim did not finish done");
  char *err = fu_hget("victim-run", "error");
  CHECK(!err || !err[0], "the running victim got an error: %s", err);
  free(err);
  compare_all(&v, 1);

  /* a queued victim (the MULTI form: a hash with state queued only, its entry not yet added) */
  redisReply *r = redisCommand(g_rc, "HSET sdc:job:victim-q state queued");
  if (r) freeReplyObject(r);
  snprintf(entry, sizeof entry, "%s", fu_xadd("{\"id\":\"victim-q\",\"steps\":0}"));
  reason = wait_dead(entry);
  CHECK(reason != NULL, "bad JSON naming a queued job: no dead letter");
  free(reason);
  after = hgetall_text("sdc:job:victim-q");
  CHECK(!strcmp(after, "state=queued;"), "the queued victim's hash changed: %s", after);
  free(after);

  /* a hash pre-set to done by a client: not acknowledged as done, dead-lettered */
  r = redisCommand(g_rc, "HSET sdc:job:forged state done");
  if (r) freeReplyObject(r);
  snprintf(entry, sizeof entry,
           "%s", fu_xadd("{\"id\":\"forged\",\"prompt\":\"x\",\"width\":64,\"height\":64,\"steps\":2,\"seed\":1}"));
  reason = wait_dead(entry);
  CHECK(reason && strstr(reason, "no coordinator ever claimed"), "forged done: %s", reason ? reason : "no dead letter");
  printf("hash pre-set done -> %s\n", reason ? reason : "");
  free(reason);
  CHECK(fu_int("EXISTS sdc:job:forged:image:0") == 0, "the forged job was run");

  /* an entry without a job field */
  r = redisCommand(g_rc, "XADD sdc:jobs * colour red");
  snprintf(entry, sizeof entry, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "");
  if (r) freeReplyObject(r);
  reason = wait_dead(entry);
  CHECK(reason && strstr(reason, "no 'job' field"), "entry without job: %s", reason ? reason : "no dead letter");
  free(reason);

  /* ids cannot contain ':': kc:image:0 is never a job whose hash is kc's image key */
  snprintf(entry, sizeof entry, "%s", fu_xadd("{\"id\":\"kc:image:0\",\"prompt\":\"x\"}"));
  reason = wait_dead(entry);
  CHECK(reason && strstr(reason, "'id'"), "id kc:image:0: %s", reason ? reason : "no dead letter");
  free(reason);
  r = redisCommand(g_rc, "TYPE sdc:job:kc:image:0");
  CHECK(r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "none"), "sdc:job:kc:image:0 exists");
  if (r) freeReplyObject(r);

  /* sdc cancel of an unknown id: fails, creates nothing */
  char cmd[1200], out[2048];
  snprintf(cmd, sizeof cmd, "'%s' cancel --redis redis://127.0.0.1:%d no-such-job", g_sdc, g_port);
  int st = sdc_test_run(cmd, out, sizeof out);
  CHECK(st != 0 && strstr(out, "no such job"), "sdc cancel of an unknown id: exit %d: %s", st, out);
  CHECK(fu_int("EXISTS sdc:job:no-such-job") == 0, "sdc cancel created a hash for an unknown id");
  printf("sdc cancel no-such-job: exit %d: %s", st, out);
}

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_fencing");
  atexit(stop_all);
  snprintf(g_log_a, sizeof g_log_a, "%s/cluster-a.log", g_tmp);
  snprintf(g_log_b, sizeof g_log_b, "%s/cluster-b.log", g_tmp);
  const long long t0 = (long long)sdc_clock_mono_ms();
  g_redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(10000), "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_fencing");
  redisContext *sub = fu_events_open();
  CHECK(sub != NULL, "cannot subscribe to the events");
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  const char *flags[] = {"--reclaim-idle-ms", RECLAIM_S, NULL};
  g_a = fu_start_cluster(url, flags, g_log_a);
  if (!g_a) return sdc_test_finish("test_fencing");

  job pause[4], both[6], killed[4], steal;
  run_pause(pause, 4);
  if (g_b) {
    run_both(both, 6);
    run_steal(&steal);
    run_kill(killed, 4);
  }
  run_reject();

  /* every job ended once on the events channel, and nothing said running after that */
  static const char *const phases[4] = {"pause", "both", "kill", "steal"};
  const int counts[4] = {4, 6, 4, 1};
  fu_job_events ev[16];
  memset(ev, 0, sizeof ev);
  int k = 0;
  for (int s = 0; s < 4; s++)
    for (int i = 0; i < counts[s]; i++) snprintf(ev[k++].id, sizeof ev[0].id, "%s-%d", phases[s], i);
  fu_events_collect(sub, ev, k, 1000); /* everything published since the start waits in the socket */
  for (int i = 0; i < k; i++) {
    CHECK(ev[i].finals == 1, "%s: %d final events", ev[i].id, ev[i].finals);
    CHECK(ev[i].running_after_final == 0, "%s: %d running events after its final one", ev[i].id,
          ev[i].running_after_final);
  }
  CHECK(fu_int("XPENDING sdc:jobs sdc-coordinators") == 0, "entries still pending at the end");
  if (sub) redisFree(sub);
  stop_all();
  const char *logs[2] = {g_log_a, g_log_b};
  for (int l = 0; l < 2; l++) {
    FILE *fp = fopen(logs[l], "r");
    char line[4096];
    while (fp && fgets(line, sizeof line, fp))
      CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error"), "%s", line);
    if (fp) fclose(fp);
  }
  printf("test_fencing: %lld ms\n", (long long)sdc_clock_mono_ms() - t0);
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_fencing");
}
