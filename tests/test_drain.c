/* test_drain.c - graceful drain under load: `sdc cluster` with two replicas of every stage runs eight jobs; one
 * worker of each stage, then the coordinator, get SIGTERM mid-denoise. Every job ends done exactly once with
 * pixels identical to `sdc generate`, nothing is dead-lettered or left pending, every SIGTERMed process exits 0,
 * no step is re-issued, and the drain time of each process (SIGTERM to exit) is printed. */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pngio.h"
#include "clock.h"
#include "test_util.h"

extern char **environ;

#define N_JOBS 8
/* short on purpose: the coordinator leaves jobs mid-denoise and its successor must take them over */
#define COORD_DRAIN_MS 1500

static const char *g_sdc, *g_tmp;
static char g_log[1024], g_model[1024];
static int g_port;
static pid_t g_redis, g_cluster;
static redisContext *g_rc;

static pid_t spawn_logged(char **argv, const char *out, const char *err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err) posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}

/* Waits at most timeout_ms for pid (our child) to end; SIGKILL after that. Its wait status, or -1. */
static int reap(pid_t pid, int timeout_ms) {
  int st;
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (waitpid(pid, &st, WNOHANG) == pid) return st;
    sdc_clock_sleep_ms(50);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

static void stop_all(void) {
  if (g_cluster > 0) kill(g_cluster, SIGKILL), waitpid(g_cluster, NULL, 0), g_cluster = 0;
  if (g_redis > 0) kill(g_redis, SIGTERM), waitpid(g_redis, NULL, 0), g_redis = 0;
}

/* The last line of the cluster's log holding `needle` (copied into line), or 0. */
static int log_last(const char *needle, char *line, size_t n) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int found = 0;
  while (fp && fgets(buf, sizeof buf, fp))
    if (strstr(buf, needle)) snprintf(line, n, "%s", buf), found = 1;
  if (fp) fclose(fp);
  return found;
}

static int log_count(const char *needle) {
  FILE *fp = fopen(g_log, "r");
  char buf[4096];
  int n = 0;
  while (fp && fgets(buf, sizeof buf, fp)) n += strstr(buf, needle) != NULL;
  if (fp) fclose(fp);
  return n;
}

/* The pid `sdc cluster` last started `name` under ("started NAME (pid N)"), or 0. */
static pid_t child_pid(const char *name) {
  char needle[160], line[4096];
  snprintf(needle, sizeof needle, "cluster: started %s (pid ", name);
  if (!log_last(needle, line, sizeof line)) return 0;
  return (pid_t)atoi(strstr(line, needle) + strlen(needle));
}

typedef struct {
  const char *name;
  pid_t pid;
  long long sent_ms, exit_ms;
  char status[32];
} drained;

/* SIGTERMs a child of the cluster and records when. */
static void term_child(drained *d) {
  d->pid = child_pid(d->name);
  CHECK(d->pid > 0, "no pid of %s in %s", d->name, g_log);
  if (d->pid <= 0) return;
  d->sent_ms = (long long)sdc_clock_unix_ms();
  kill(d->pid, SIGTERM);
}

/* Waits for the cluster to log d's exit: "NAME (pid N) exited (exit 0)..."; fills status and exit_ms. */
static void await_exit(drained *d, int timeout_ms) {
  if (d->pid <= 0) return;
  char needle[200], line[4096];
  snprintf(needle, sizeof needle, "cluster: %s (pid %d) exited (", d->name, (int)d->pid);
  for (int waited = 0; waited < timeout_ms && !log_last(needle, line, sizeof line); waited += 50) sdc_clock_sleep_ms(50);
  if (!log_last(needle, line, sizeof line)) {
    CHECK(0, "%s (pid %d) did not exit within %d ms of SIGTERM (see %s)", d->name, (int)d->pid, timeout_ms, g_log);
    return;
  }
  d->exit_ms = atoll(line);
  const char *s = strstr(line, needle) + strlen(needle);
  snprintf(d->status, sizeof d->status, "%.*s", (int)strcspn(s, ")"), s);
  CHECK(strcmp(d->status, "exit 0") == 0, "%s drained with %s, not exit 0: %s", d->name, d->status, line);
}

static char *hget(const char *id, const char *field) {
  redisReply *r = redisCommand(g_rc, "HGET sdc:job:%s %s", id, field);
  char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
  if (r) freeReplyObject(r);
  return v;
}

static long long hget_ll(const char *id, const char *field) {
  char *v = hget(id, field);
  long long x = v ? atoll(v) : -1;
  free(v);
  return x;
}

static int is_state(const char *id, const char *want) {
  char *st = hget(id, "state");
  int yes = st && strcmp(st, want) == 0;
  free(st);
  return yes;
}

static long long redis_int(const char *cmd) {
  redisReply *r = redisCommand(g_rc, cmd);
  long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  /* XPENDING's summary: [count, ...] */
  if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_INTEGER)
    v = r->element[0]->integer;
  if (r) freeReplyObject(r);
  return v;
}

typedef struct {
  char id[32], prompt[64], sched[16];
  int steps, seed;
} job;

/* The job's image against `sdc generate` with the same parameters: every RGB byte equal. */
static void compare_with_generate(const job *j) {
  char cmd[4096], err[4096], gen[1100], got[1100];
  long long w = hget_ll(j->id, "width"), h = hget_ll(j->id, "height");
  snprintf(gen, sizeof gen, "%s/%s-gen.png", g_tmp, j->id);
  snprintf(got, sizeof got, "%s/%s-cluster.png", g_tmp, j->id);
  snprintf(cmd, sizeof cmd,
           "'%s' generate --quiet --model '%s' --prompt '%s' --width %lld --height %lld --steps %d --seed %d "
           "--scheduler %s --output '%s'",
           g_sdc, g_model, j->prompt, w, h, j->steps, j->seed, j->sched, gen);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "%s: sdc generate failed: %s", j->id, err);
  redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:0", j->id);
  CHECK(r && r->type == REDIS_REPLY_STRING, "%s: image missing in Redis", j->id);
  if (r && r->type == REDIS_REPLY_STRING) {
    FILE *fp = fopen(got, "wb");
    fwrite(r->str, 1, r->len, fp);
    fclose(fp);
  }
  if (r) freeReplyObject(r);
  uint8_t *a = NULL, *b = NULL;
  int64_t wa = 0, ha = 0, wb = 0, hb = 0;
  int ea = sdc_png_read(got, &a, &wa, &ha, NULL), eb = sdc_png_read(gen, &b, &wb, &hb, NULL);
  CHECK(!ea && !eb && wa == wb && ha == hb, "%s: unreadable image or sizes differ", j->id);
  if (!ea && !eb && wa == wb && ha == hb) {
    int64_t diff = 0;
    for (int64_t k = 0; k < wa * ha * 3; k++) diff += a[k] != b[k];
    CHECK(diff == 0, "%s: %lld bytes differ from sdc generate", j->id, (long long)diff);
    printf("%s (%s, %d steps, attempts %lld): %lldx%lld, identical to sdc generate: %s\n", j->id, j->sched, j->steps,
           hget_ll(j->id, "attempts"), (long long)wa, (long long)ha, diff ? "NO" : "yes");
  }
  free(a), free(b);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_sdc = argv[1];
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  snprintf(g_model, sizeof g_model, "%s/tiny-sd1", ref);
  if (access(g_model, R_OK) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  g_tmp = sdc_test_tmpdir();
  snprintf(g_log, sizeof g_log, "%s/cluster.log", g_tmp);
  atexit(stop_all);

  /* Redis on a free loopback port */
  g_port = sdc_test_free_port();
  char port_s[16], url[64];
  snprintf(port_s, sizeof port_s, "%d", g_port);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", g_port);
  char *rargv[] = {"/usr/bin/redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", (char *)g_tmp, NULL};
  g_redis = spawn_logged(rargv, "/dev/null", NULL);
  for (int i = 0; i < 100 && !g_rc; i++) {
    sdc_clock_sleep_ms(50);
    g_rc = redisConnect("127.0.0.1", g_port);
    if (g_rc && g_rc->err) redisFree(g_rc), g_rc = NULL;
  }
  CHECK(g_rc != NULL, "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_drain");

  char coord_drain[16];
  snprintf(coord_drain, sizeof coord_drain, "%d", COORD_DRAIN_MS);
  char *cargv[] = {(char *)g_sdc, "cluster", "--model", g_model, "--redis", url, "--replicas",
                   "text=2,unet-down=2,unet-mid=2,unet-up=2,vae=2", "--coordinator-drain-timeout-ms", coord_drain,
                   "--drain-timeout-ms", "60000", NULL};
  g_cluster = spawn_logged(cargv, "/dev/null", g_log);
  int registered = 0;
  for (int waited = 0; waited < 120000 && (registered = log_count(": stages 0x")) < 10; waited += 100) sdc_clock_sleep_ms(100);
  CHECK(registered >= 10, "only %d of 10 workers registered within 120 s (see %s)", registered, g_log);
  if (registered < 10) return sdc_test_finish("test_drain");

  /* eight jobs at the model's native size, deterministic and ancestral schedulers alike */
  static const char *const scheds[N_JOBS] = {"euler_a", "ddim", "dpmpp_2m", "euler", "lms", "pndm", "euler_a", "unipc"};
  job jobs[N_JOBS];
  for (int i = 0; i < N_JOBS; i++) {
    job *j = &jobs[i];
    snprintf(j->id, sizeof j->id, "drain-%d", i);
    snprintf(j->prompt, sizeof j->prompt, "drained job %d", i);
    snprintf(j->sched, sizeof j->sched, "%s", scheds[i]);
    j->steps = 10 + i % 3, j->seed = 500 + i;
    char json[512];
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"%s\",\"steps\":%d,\"seed\":%d,\"scheduler\":\"%s\"}", j->id,
             j->prompt, j->steps, j->seed, j->sched);
    redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s", json);
    CHECK(r && r->type == REDIS_REPLY_STRING, "XADD %s failed", j->id);
    if (r) freeReplyObject(r);
  }
  /* mid-denoise: every job has taken a step */
  int stepping = 0;
  for (int waited = 0; waited < 120000 && stepping < N_JOBS; waited += 50) {
    stepping = 0;
    for (int i = 0; i < N_JOBS; i++) stepping += hget_ll(jobs[i].id, "step") >= 1;
    if (stepping < N_JOBS) sdc_clock_sleep_ms(50);
  }
  CHECK(stepping == N_JOBS, "only %d of %d jobs started denoising within 120 s", stepping, N_JOBS);

  /* one worker of each stage, all at once while every job is in flight */
  drained d[6] = {{.name = "text-0"}, {.name = "unet-down-0"}, {.name = "unet-mid-0"}, {.name = "unet-up-0"},
                  {.name = "vae-0"},  {.name = "coordinator"}};
  for (int i = 0; i < 5; i++) term_child(&d[i]);
  for (int i = 0; i < 5; i++) await_exit(&d[i], 90000);
  int running = 0;
  for (int i = 0; i < N_JOBS; i++) running += !is_state(jobs[i].id, "done");
  printf("%d of %d jobs still running when the coordinator gets SIGTERM\n", running, N_JOBS);
  CHECK(running > 0, "every job finished before the coordinator's SIGTERM: its drain went untested");
  term_child(&d[5]);
  await_exit(&d[5], COORD_DRAIN_MS + 30000);

  /* every job done, nothing dead-lettered, nothing pending */
  int done = 0;
  for (int waited = 0; waited < 240000 && done < N_JOBS; waited += 100) {
    done = 0;
    for (int i = 0; i < N_JOBS; i++) done += is_state(jobs[i].id, "done");
    if (done < N_JOBS) sdc_clock_sleep_ms(100);
  }
  CHECK(done == N_JOBS, "only %d of %d jobs done within 240 s of the drains", done, N_JOBS);
  long long pending = -1;
  for (int waited = 0; waited < 10000 && (pending = redis_int("XPENDING sdc:jobs sdc-coordinators")) != 0; waited += 100)
    sdc_clock_sleep_ms(100);
  CHECK(pending == 0, "%lld entries still pending in sdc:jobs after every job is done", pending);
  CHECK(redis_int("XLEN sdc:jobs:dead") == 0, "sdc:jobs:dead is not empty");

  /* the logs: each job done exactly once; no step re-issued, no worker declared dead */
  for (int i = 0; i < N_JOBS; i++) {
    char needle[96];
    snprintf(needle, sizeof needle, " job %s: done (route", jobs[i].id);
    int n = log_count(needle);
    CHECK(n == 1, "%s reached done %d times (see %s)", jobs[i].id, n, g_log);
  }
  CHECK(log_count("re-issu") == 0, "a step was re-issued (see %s)", g_log);
  CHECK(log_count(" is dead (no heartbeat") == 0, "a worker was declared dead (see %s)", g_log);
  for (int i = 0; i < 5; i++) {
    char needle[96];
    snprintf(needle, sizeof needle, "worker %s drained and deregistered", d[i].name);
    CHECK(log_count(needle) >= 1, "the coordinator never saw %s deregister (see %s)", d[i].name, g_log);
  }
  const int left = log_count("drain timeout: left pending in sdc:jobs");
  printf("the coordinator left %d jobs; taken over: %s\n", left, log_count("abandoned entries") ? "yes" : "no");
  CHECK(left == 0 || log_count("took over ") > 0, "jobs were left but no coordinator took them over");
  for (int i = 0; i < N_JOBS; i++)
    if (is_state(jobs[i].id, "done")) compare_with_generate(&jobs[i]);

  /* the cluster's own SIGTERM: coordinator, then workers, all exit 0 */
  long long t0 = (long long)sdc_clock_unix_ms();
  kill(g_cluster, SIGTERM);
  int st = reap(g_cluster, 180000);
  g_cluster = 0;
  CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sdc cluster did not stop cleanly (status %d, see %s)", st,
        g_log);
  printf("sdc cluster stopped in %lld ms\n", (long long)sdc_clock_unix_ms() - t0);

  printf("drain times (SIGTERM to exit) under load:\n");
  for (int i = 0; i < 6; i++)
    if (d[i].exit_ms) printf("  %-12s %6lld ms  (%s)\n", d[i].name, d[i].exit_ms - d[i].sent_ms, d[i].status);
  printf("drain times when sdc cluster stops:\n");
  FILE *fp = fopen(g_log, "r");
  char line[4096];
  while (fp && fgets(line, sizeof line, fp)) {
    char *s = strstr(line, "cluster: ");
    if (s && strstr(s, ") stopped (")) printf("  %s", s + 9);
    CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error"), "%s", line);
  }
  if (fp) fclose(fp);

  redisFree(g_rc);
  stop_all();
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  else printf("logs kept in %s\n", g_tmp);
  return sdc_test_finish("test_drain");
}
