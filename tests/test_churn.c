/* test_churn.c - bookkeeping that stays bounded under churn, and cancel / deadlines in a real cluster.
 * `sdc cluster` (tiny model, real Redis) runs jobs while 300 workers with distinct ids (fakes speaking the
 * protocol, draining so nothing is routed to them) register and vanish in waves: the coordinator's registry
 * never holds more than a wave plus the real workers, a 257th+ id is still welcomed, and every job
 * completes. Then, with the unet-mid worker stopped (SIGSTOP) mid-step: a cancelled job ends `cancelled`
 * within about one SDC_COORD_CANCEL_POLL_MS and its step is never re-issued; a job past --job-timeout-ms
 * fails naming the deadline; after the stopped worker is killed (and restarted by sdc cluster) a new job
 * completes. */
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "error.h"
#include "fault_util.h"
#include "sdc_limits.h"
#include "test_util.h"
#include "wire.h"

#define N_FAKES 300
#define WAVE 60
#define CLUSTER_JOB_TIMEOUT_MS 120000 /* passed through sdc cluster; the jobs here finish well within */
#define JOB_TIMEOUT_MS 5000           /* the one job's own timeout_ms, shorter: it applies */

static char g_log[1100];
static pid_t g_redis, g_cluster;

static void stop_all(void) {
  if (g_cluster > 0) kill(g_cluster, SIGKILL), fu_reap(g_cluster, 10000), g_cluster = 0;
  if (g_redis > 0) kill(g_redis, SIGTERM), fu_reap(g_redis, 10000), g_redis = 0;
}

static int log_field(const char *needle, const char *after, char *out, size_t n) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int found = 0;
  while (fp && fgets(buf, sizeof buf, fp)) {
    char *p = strstr(buf, needle) ? strstr(buf, after) : NULL;
    if (!p) continue;
    p += strlen(after);
    size_t k = strcspn(p, " ),\n");
    snprintf(out, n, "%.*s", (int)k, p);
    found = 1;
  }
  if (fp) fclose(fp);
  return found;
}

static int log_count2(const char *a, const char *b) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int n = 0;
  while (fp && fgets(buf, sizeof buf, fp)) n += strstr(buf, a) && (!b || strstr(buf, b));
  if (fp) fclose(fp);
  return n;
}

/* The largest "N of 256 registry slots in use" the coordinator logged. */
static int max_slots_used(void) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int best = 0;
  while (fp && fgets(buf, sizeof buf, fp)) {
    char *p = strstr(buf, " of " "256" " registry slots in use");
    if (!p) continue;
    while (p > buf && p[-1] >= '0' && p[-1] <= '9') p--;
    int v = atoi(p);
    if (v > best) best = v;
  }
  if (fp) fclose(fp);
  return best;
}

static void hget(const char *id, const char *field, char *out, size_t n) {
  char *v = fu_hget(id, field);
  snprintf(out, n, "%s", v ? v : "");
  free(v);
}

static void submit(const char *id, int steps) {
  char json[256];
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"churn %s\",\"steps\":%d,\"seed\":7}", id, id, steps);
  CHECK(fu_xadd(json)[0], "XADD %s", id);
}

/* Waits at most timeout_ms for job id to reach a final state; the state (into st). */
static void await_final(const char *id, int64_t timeout_ms, char *st, size_t n) {
  for (int64_t end = sdc_clock_mono_ms() + timeout_ms; sdc_clock_mono_ms() < end; sdc_clock_sleep_ms(50)) {
    hget(id, "state", st, n);
    if (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled")) return;
  }
}

/* One fake worker: registers (stage vae, draining at once so nothing is routed to it), then is closed. */
typedef struct {
  void *s;
  int welcomed;
} fake;

static void fake_start(fake *f, void *zctx, const char *coord, const char *fp, int i) {
  char id[64], ep[64];
  snprintf(id, sizeof id, "churn-fake-%d", i);
  snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 1 + i % 9); /* never listened on: nothing is sent there */
  f->s = zmq_socket(zctx, ZMQ_DEALER);
  f->welcomed = 0;
  sdc_zmq_configure(f->s);
  zmq_setsockopt(f->s, ZMQ_ROUTING_ID, id, strlen(id));
  zmq_connect(f->s, coord);
  Sdcpb__Stage st = SDCPB__STAGE__VAE;
  Sdcpb__Register reg = SDCPB__REGISTER__INIT;
  reg.worker_id = id, reg.n_stages = 1, reg.stages = &st, reg.model_fingerprint = (char *)fp, reg.data_endpoint = ep;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
  env.register_ = &reg;
  sdc_zmq_send(f->s, NULL, 0, &env, 0);
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = id, hb.draining = 1;
  Sdcpb__Envelope henv = SDCPB__ENVELOPE__INIT;
  henv.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT;
  henv.heartbeat = &hb;
  sdc_zmq_send(f->s, NULL, 0, &henv, 0);
}

static void fake_poll(fake *f) {
  Sdcpb__Envelope *env;
  while (sdc_zmq_recv(f->s, &env, NULL, 0, NULL) == SDC_OK) {
    if (env->body_case == SDCPB__ENVELOPE__BODY_WELCOME && env->welcome->accepted) f->welcomed = 1;
    sdc_wire_free(env);
  }
}

int main(int argc, char **argv) {
  fu_init(argc, argv, "test_churn");
  snprintf(g_log, sizeof g_log, "%s/cluster.log", g_tmp);
  atexit(stop_all);
  char url[64], jt[16];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  snprintf(jt, sizeof jt, "%d", CLUSTER_JOB_TIMEOUT_MS);
  g_redis = fu_start_redis(NULL);
  CHECK(fu_reconnect(5000), "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_churn");
  /* --insecure: the 300 fake workers are plain DEALER sockets that register with the cluster's fingerprint;
   * this test is about the registry's bookkeeping (test_security covers who may register) */
  const char *flags[] = {"--job-timeout-ms", jt, "--worker-memory-mib", "1024", "--insecure", NULL};
  g_cluster = fu_start_cluster(url, flags, g_log);
  char coord[128] = "", fp[64] = "", mid_pid_s[16] = "";
  log_field("compute threads each", "coordinator ", coord, sizeof coord);
  log_field("fingerprint ", "fingerprint ", fp, sizeof fp);
  log_field("started unet-mid-0", "(pid ", mid_pid_s, sizeof mid_pid_s);
  CHECK(coord[0] && fp[0] && mid_pid_s[0], "the log names no coordinator endpoint, fingerprint or unet-mid pid");
  if (!g_cluster || !coord[0] || !fp[0]) return sdc_test_finish("test_churn");

  redisReply *r;
  char id[64], st[32];
  /* 0. fairness: a small job's latency alone, then while a huge job denoises (the coordinator issues at
   * step granularity, one request per job in flight; workers serve in arrival order) */
  const int small_steps = 2;
  int64_t t = sdc_clock_mono_ms();
  submit("fair-small-alone", small_steps);
  await_final("fair-small-alone", 60000, st, sizeof st);
  const int64_t alone_ms = sdc_clock_mono_ms() - t;
  CHECK(!strcmp(st, "done"), "the small job alone ended '%s'", st);
  r = redisCommand(g_rc, "XADD sdc:jobs * job %s",
                   "{\"id\":\"fair-huge\",\"prompt\":\"huge\",\"steps\":50,\"width\":384,\"height\":384}");
  if (r) freeReplyObject(r);
  /* the huge job's step time, from its progress */
  char step_s[16];
  int64_t step_at[4] = {0};
  for (int k = 0, last = -1; k < 4;) {
    hget("fair-huge", "step", step_s, sizeof step_s);
    const int now_step = step_s[0] ? atoi(step_s) : -1;
    if (now_step > last && now_step >= 1) step_at[k++] = sdc_clock_mono_ms(), last = now_step;
    if (sdc_clock_mono_ms() - t > 120000) break;
    sdc_clock_sleep_ms(20);
  }
  const int64_t huge_step_ms = (step_at[3] - step_at[1]) / 2;
  t = sdc_clock_mono_ms();
  submit("fair-small-with", small_steps);
  await_final("fair-small-with", 120000, st, sizeof st);
  const int64_t with_ms = sdc_clock_mono_ms() - t;
  CHECK(!strcmp(st, "done"), "the small job beside the huge one ended '%s'", st);
  hget("fair-huge", "step", step_s, sizeof step_s);
  /* each of the small job's model calls (steps + 1 with PNDM's repeated one) may wait for one of the huge
   * job's steps, one more for slack (its text or VAE request meeting the huge one's), never for the huge
   * job as a whole (50 steps); its own compute shares the 2 cores with the huge job's, so it may take twice
   * as long; 5 s for scheduling noise (an ASan build ran it at 58.8 s for alone 11.2 s, steps 8.7 s) */
  const int64_t bound_ms = 2 * alone_ms + (small_steps + 3) * huge_step_ms + 5000;
  printf("fairness: small job (64x64, %d steps) alone %lld ms; beside a 384x384 50-step job (one step %lld ms) %lld "
         "ms, bound %lld ms; the huge job was at step %s\n",
         small_steps, (long long)alone_ms, (long long)huge_step_ms, (long long)with_ms, (long long)bound_ms, step_s);
  CHECK(step_at[3] > 0 && with_ms < bound_ms, "the small job took %lld ms beside the huge one (bound %lld)",
        (long long)with_ms, (long long)bound_ms);
  CHECK(atoi(step_s) < 45, "the huge job had reached step %s: the small one waited for it", step_s);
  /* the huge job is cancelled mid-step */
  r = redisCommand(g_rc, "HSET sdc:job:fair-huge cancel 1");
  if (r) freeReplyObject(r);
  t = sdc_clock_mono_ms();
  await_final("fair-huge", 60000, st, sizeof st);
  printf("fairness: the huge job cancelled %lld ms after the cancel\n", (long long)(sdc_clock_mono_ms() - t));
  CHECK(!strcmp(st, "cancelled"), "the huge job ended '%s'", st);

  /* 1. churn: waves of fake workers with new ids register and vanish while jobs run */
  void *zctx = zmq_ctx_new();
  int n_jobs = 0, welcomed = 0;
  const int64_t churn_t0 = sdc_clock_mono_ms();
  for (int base = 0; base < N_FAKES; base += WAVE) {
    snprintf(id, sizeof id, "churn-job-%d", n_jobs++);
    submit(id, 4);
    static fake f[WAVE];
    for (int i = 0; i < WAVE; i++) fake_start(&f[i], zctx, coord, fp, base + i);
    for (int64_t end = sdc_clock_mono_ms() + 1500; sdc_clock_mono_ms() < end; sdc_clock_sleep_ms(50))
      for (int i = 0; i < WAVE; i++) fake_poll(&f[i]);
    for (int i = 0; i < WAVE; i++) {
      welcomed += f[i].welcomed;
      int linger = 0;
      zmq_setsockopt(f[i].s, ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(f[i].s);
    }
    /* silent from now on: dead after SDC_DEAD_AFTER_BEATS beats, their slots freed */
    sdc_clock_sleep_ms(SDC_DEAD_AFTER_BEATS * SDC_HEARTBEAT_MS + SDC_HEARTBEAT_MS);
  }
  int done = 0;
  for (int i = 0; i < n_jobs; i++) {
    snprintf(id, sizeof id, "churn-job-%d", i);
    await_final(id, 60000, st, sizeof st);
    done += !strcmp(st, "done");
  }
  const int slots = max_slots_used();
  printf("churn: %d workers with new ids in %d waves over %lld ms: %d welcomed, at most %d of %d registry slots in "
         "use; %d of %d jobs done meanwhile\n",
         N_FAKES, N_FAKES / WAVE, (long long)(sdc_clock_mono_ms() - churn_t0), welcomed, slots, SDC_MAX_WORKERS, done,
         n_jobs);
  CHECK(welcomed == N_FAKES, "%d of %d fake workers welcomed (the registry refused the rest)", welcomed, N_FAKES);
  CHECK(slots <= WAVE + 5 + 1, "the registry held %d slots at once; a wave is %d plus 5 real workers", slots, WAVE);
  CHECK(done == n_jobs, "%d of %d jobs done during the churn", done, n_jobs);
  zmq_ctx_term(zctx);

  /* 2. a job larger than the workers' memory takes is refused at once, naming the limit and who set it */
  r = redisCommand(g_rc, "XADD sdc:jobs * job %s",
                   "{\"id\":\"churn-huge\",\"prompt\":\"huge\",\"steps\":4,\"width\":512,\"height\":512,\"num_images\":8}");
  if (r) freeReplyObject(r);
  const int64_t huge_t0 = sdc_clock_mono_ms();
  await_final("churn-huge", 30000, st, sizeof st);
  const int64_t huge_ms = sdc_clock_mono_ms() - huge_t0;
  char huge_err[512], cap_line[512] = "";
  hget("churn-huge", "error", huge_err, sizeof huge_err);
  log_field("takes jobs up to", "takes jobs up to ", cap_line, sizeof cap_line);
  CHECK(!strcmp(st, "failed") && strstr(huge_err, "pixel-images") && strstr(huge_err, "1024 MiB"),
        "a 512x512 x8 job on 1024 MiB workers ended '%s': %s", st, huge_err);
  CHECK(huge_ms < 5000, "the oversized job took %lld ms to be refused", (long long)huge_ms);
  printf("oversized job (512x512 x 8 images, --worker-memory-mib 1024): refused after %lld ms: %s\n", (long long)huge_ms,
         huge_err);

  /* 3. a step that never ends (unet-mid stopped): cancel reaches it, a job deadline ends the other */
  const pid_t mid = (pid_t)atoi(mid_pid_s);
  CHECK(mid > 0 && kill(mid, SIGSTOP) == 0, "SIGSTOP unet-mid (pid %d)", (int)mid);
  submit("churn-cancel", 20);
  r = redisCommand(g_rc, "XADD sdc:jobs * job {\"id\":\"churn-timeout\",\"prompt\":\"t\",\"steps\":20,\"timeout_ms\":%d}",
                   JOB_TIMEOUT_MS);
  if (r) freeReplyObject(r);
  for (int64_t end = sdc_clock_mono_ms() + 30000; sdc_clock_mono_ms() < end; sdc_clock_sleep_ms(20)) {
    hget("churn-cancel", "state", st, sizeof st);
    if (!strcmp(st, "running")) break;
  }
  sdc_clock_sleep_ms(300); /* its first step is issued and stuck */
  r = redisCommand(g_rc, "HSET sdc:job:churn-cancel cancel 1");
  if (r) freeReplyObject(r);
  const int64_t cancel_t0 = sdc_clock_mono_ms();
  await_final("churn-cancel", 30000, st, sizeof st);
  const int64_t cancel_ms = sdc_clock_mono_ms() - cancel_t0;
  CHECK(!strcmp(st, "cancelled"), "the job cancelled during a stuck step ended '%s'", st);
  CHECK(cancel_ms < 3 * SDC_COORD_CANCEL_POLL_MS + 1000, "cancel during a stuck step took %lld ms", (long long)cancel_ms);
  const int64_t timeout_t0 = sdc_clock_mono_ms();
  await_final("churn-timeout", JOB_TIMEOUT_MS + 30000, st, sizeof st);
  char err[512], started[32], finished[32];
  hget("churn-timeout", "error", err, sizeof err);
  hget("churn-timeout", "started_ms", started, sizeof started);
  hget("churn-timeout", "finished_ms", finished, sizeof finished);
  const long long ran_ms = atoll(finished) - atoll(started);
  CHECK(!strcmp(st, "failed") && strstr(err, "job timed out") && strstr(err, "the job's timeout_ms"),
        "the job past its deadline ended '%s': %s", st, err);
  CHECK(ran_ms >= JOB_TIMEOUT_MS && ran_ms < JOB_TIMEOUT_MS + 2000, "the job past its deadline ran %lld ms (deadline %d)",
        ran_ms, JOB_TIMEOUT_MS);
  (void)timeout_t0;
  /* the stopped worker dies; sdc cluster restarts it; nothing of the cancelled job is re-issued */
  kill(mid, SIGKILL);
  submit("churn-after", 4);
  await_final("churn-after", 90000, st, sizeof st);
  CHECK(!strcmp(st, "done"), "a job after the worker's restart ended '%s'", st);
  const int reissued = log_count2("job churn-cancel", "re-issu");
  CHECK(reissued == 0, "the cancelled job's step was re-issued %d times", reissued);
  printf("cancel during a stuck step: cancelled after %lld ms (poll %d ms), re-issued %d times; timeout_ms %d: "
         "failed after %lld ms: %s\n",
         (long long)cancel_ms, SDC_COORD_CANCEL_POLL_MS, reissued, JOB_TIMEOUT_MS, ran_ms, err);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  return sdc_test_finish("test_churn");
}
