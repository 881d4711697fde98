/* fault_util.c - real processes and Redis look-ups for the fault tests (fault_util.h). */
#include "fault_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "pngio.h"
#include "test_util.h"

extern char **environ;

const char *g_sdc, *g_tmp;
char g_model[1024];
redisContext *g_rc;
int g_port;

void fu_init(int argc, char **argv, const char *name) {
  if (argc < 2) exit(2);
  g_sdc = argv[1];
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  snprintf(g_model, sizeof g_model, "%s/tiny-sd1", ref);
  if (access(g_model, R_OK) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  g_tmp = sdc_test_tmpdir();
  g_port = sdc_test_free_port();
  printf("%s: logs in %s\n", name, g_tmp);
}

pid_t fu_spawn(char **argv, const char *out, const char *err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (err) posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}

int fu_reap(pid_t pid, int timeout_ms) {
  int st;
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (waitpid(pid, &st, WNOHANG) == pid) return st;
    sdc_clock_sleep_ms(50);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

pid_t fu_start_redis(const char *const *extra) {
  char port[16], log[1100];
  snprintf(port, sizeof port, "%d", g_port);
  snprintf(log, sizeof log, "%s/redis.log", g_tmp);
  char *argv[32] = {"/usr/bin/redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir",
                    (char *)g_tmp};
  int k = 9;
  for (int i = 0; extra && extra[i] && k < 31; i++) argv[k++] = (char *)extra[i];
  argv[k] = NULL;
  return fu_spawn(argv, log, log);
}

int fu_reconnect(int timeout_ms) {
  if (g_rc) redisFree(g_rc), g_rc = NULL;
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    g_rc = redisConnect("127.0.0.1", g_port);
    if (g_rc && !g_rc->err) {
      redisReply *r = redisCommand(g_rc, "PING"); /* LOADING while it replays its AOF */
      int ok = r && r->type == REDIS_REPLY_STATUS;
      if (r) freeReplyObject(r);
      if (ok) {
        redisSetTimeout(g_rc, (struct timeval){10, 0});
        return 1;
      }
    }
    if (g_rc) redisFree(g_rc), g_rc = NULL;
    sdc_clock_sleep_ms(50);
  }
  return 0;
}

pid_t fu_start_cluster(const char *url, const char *const *extra, const char *log) {
  char *argv[40] = {(char *)g_sdc, "cluster", "--model", g_model};
  int k = 4;
  if (url) argv[k++] = "--redis", argv[k++] = (char *)url;
  for (int i = 0; extra && extra[i] && k < 39; i++) argv[k++] = (char *)extra[i];
  argv[k] = NULL;
  pid_t pid = fu_spawn(argv, "/dev/null", log);
  int registered = 0;
  for (int waited = 0; pid && waited < 90000 && (registered = fu_log_count(log, ": stages 0x", NULL, 0)) < 5;
       waited += 100)
    sdc_clock_sleep_ms(100);
  CHECK(registered >= 5, "only %d of 5 workers registered within 90 s (see %s)", registered, log);
  return registered >= 5 ? pid : 0;
}

void fu_stop_cluster(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  fu_reap(pid, 60000);
}

int fu_log_count(const char *log, const char *needle, char *line, size_t n) {
  FILE *fp = fopen(log, "r");
  char buf[4096];
  int count = 0;
  while (fp && fgets(buf, sizeof buf, fp))
    if (strstr(buf, needle)) {
      count++;
      if (line) snprintf(line, n, "%s", buf);
    }
  if (fp) fclose(fp);
  return count;
}

pid_t fu_child_pid(const char *log, const char *name) {
  char needle[160], line[4096];
  snprintf(needle, sizeof needle, "cluster: started %s (pid ", name);
  if (!fu_log_count(log, needle, line, sizeof line)) return 0;
  return (pid_t)atoi(strstr(line, needle) + strlen(needle));
}

char *fu_hget(const char *id, const char *field) {
  if (!g_rc || g_rc->err) fu_reconnect(5000); /* Redis restarted under us */
  redisReply *r = g_rc ? redisCommand(g_rc, "HGET sdc:job:%s %s", id, field) : NULL;
  char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
  if (r) freeReplyObject(r);
  return v;
}

long long fu_hget_ll(const char *id, const char *field) {
  char *v = fu_hget(id, field);
  long long x = v ? atoll(v) : -1;
  free(v);
  return x;
}

int fu_is_state(const char *id, const char *state) {
  char *st = fu_hget(id, "state");
  int yes = st && strcmp(st, state) == 0;
  free(st);
  return yes;
}

int fu_wait_done(const char *const *ids, int n, int timeout_ms) {
  int final = 0, done = 0;
  for (int waited = 0; waited <= timeout_ms; waited += 100) {
    final = done = 0;
    for (int i = 0; i < n; i++) { /* one read per job: a job ending between two reads counted final, not done */
      char *st = fu_hget(ids[i], "state");
      done += st && !strcmp(st, "done");
      final += st && (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled"));
      free(st);
    }
    if (final == n) break;
    sdc_clock_sleep_ms(100);
  }
  return done;
}

const char *fu_xadd(const char *json) {
  static char entry[64];
  entry[0] = 0;
  redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s", json);
  if (r && r->type == REDIS_REPLY_STRING) snprintf(entry, sizeof entry, "%s", r->str);
  CHECK(entry[0], "XADD %.80s failed", json);
  if (r) freeReplyObject(r);
  return entry;
}

long long fu_int(const char *cmd) {
  redisReply *r = redisCommand(g_rc, cmd);
  long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_INTEGER)
    v = r->element[0]->integer;
  if (r) freeReplyObject(r);
  return v;
}

char *fu_dead_reason(const char *field, const char *value) {
  redisReply *r = redisCommand(g_rc, "XRANGE sdc:jobs:dead - +");
  char *reason = NULL;
  for (size_t i = 0; !reason && r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
    const redisReply *f = r->element[i]->element[1];
    int match = 0;
    for (size_t k = 0; k + 1 < f->elements; k += 2)
      match |= !strcmp(f->element[k]->str, field) && !strcmp(f->element[k + 1]->str, value);
    for (size_t k = 0; match && k + 1 < f->elements; k += 2)
      if (!strcmp(f->element[k]->str, "reason")) reason = strdup(f->element[k + 1]->str);
  }
  if (r) freeReplyObject(r);
  return reason;
}

long long fu_compare(const char *id, const char *prompt, const char *sched, int steps, int seed) {
  char cmd[4096], err[4096], gen[1200], got[1200];
  long long w = fu_hget_ll(id, "width"), h = fu_hget_ll(id, "height");
  snprintf(gen, sizeof gen, "%s/%s-gen.png", g_tmp, id);
  snprintf(got, sizeof got, "%s/%s-cluster.png", g_tmp, id);
  snprintf(cmd, sizeof cmd,
           "'%s' generate --quiet --model '%s' --prompt '%s' --width %lld --height %lld --steps %d --seed %d "
           "--scheduler %s --output '%s'",
           g_sdc, g_model, prompt, w, h, steps, seed, sched, gen);
  if (sdc_test_run(cmd, err, sizeof err) != 0) {
    CHECK(0, "%s: sdc generate failed: %s", id, err);
    return -1;
  }
  redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:0", id);
  int have = r && r->type == REDIS_REPLY_STRING;
  if (have) {
    FILE *fp = fopen(got, "wb");
    fwrite(r->str, 1, r->len, fp);
    fclose(fp);
  }
  if (r) freeReplyObject(r);
  if (!have) return -1;
  uint8_t *a = NULL, *b = NULL;
  int64_t wa = 0, ha = 0, wb = 0, hb = 0;
  int ea = sdc_png_read(got, &a, &wa, &ha, NULL), eb = sdc_png_read(gen, &b, &wb, &hb, NULL);
  long long diff = -1;
  if (!ea && !eb && wa == wb && ha == hb) {
    diff = 0;
    for (int64_t k = 0; k < wa * ha * 3; k++) diff += a[k] != b[k];
  }
  free(a), free(b);
  return diff;
}

redisContext *fu_events_open(void) {
  redisContext *sub = redisConnect("127.0.0.1", g_port);
  if (!sub || sub->err) {
    if (sub) redisFree(sub);
    return NULL;
  }
  redisReply *r = redisCommand(sub, "PSUBSCRIBE sdc:job:*:events");
  if (r) freeReplyObject(r);
  return sub;
}

void fu_events_collect(redisContext *sub, fu_job_events *jobs, int n, int wait_ms) {
  if (!sub) return;
  for (;;) {
    void *v = NULL;
    if (redisGetReplyFromReader(sub, &v) != REDIS_OK) break;
    if (!v) { /* nothing buffered: wait for more, at most wait_ms */
      struct pollfd p = {.fd = sub->fd, .events = POLLIN};
      if (poll(&p, 1, wait_ms) <= 0 || redisBufferRead(sub) != REDIS_OK) break;
      continue;
    }
    redisReply *m = v;
    /* pmessage, pattern, channel, payload */
    if (m->type == REDIS_REPLY_ARRAY && m->elements == 4 && m->element[2]->type == REDIS_REPLY_STRING) {
      const char *chan = m->element[2]->str, *ev = m->element[3]->str;
      for (int i = 0; i < n; i++) {
        char want[128];
        snprintf(want, sizeof want, "sdc:job:%s:events", jobs[i].id);
        if (strcmp(chan, want) != 0) continue;
        const int fin = strstr(ev, "\"state\":\"done\"") || strstr(ev, "\"state\":\"failed\"") ||
                        strstr(ev, "\"state\":\"cancelled\"");
        if (fin) jobs[i].finals++, jobs[i].final_seen = 1;
        else if (jobs[i].final_seen) jobs[i].running_after_final++;
      }
    }
    freeReplyObject(m);
  }
}
