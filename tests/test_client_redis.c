/* test_client_redis.c - the client library and sdc submit/wait/status/cancel against a real redis-server,
 * with this test playing the coordinator by hand. */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "job.h"
#include "pngio.h"
#include "sdc_client.h"
#include "test_util.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static const char *g_sdc, *g_tmp;
static pid_t g_redis = -1;
static int g_port;
static char g_url[64];
static redisContext *g_raw; /* a plain hiredis connection: what any language's client would see */

/* ------------------------------------------------------------ redis-server */

static void stop_redis(void) {
  if (g_redis > 0) {
    kill(g_redis, SIGTERM);
    int st;
    for (int i = 0; i < 100 && waitpid(g_redis, &st, WNOHANG) == 0; i++) usleep(20000);
    if (waitpid(g_redis, &st, WNOHANG) == 0) {
      kill(g_redis, SIGKILL);
      waitpid(g_redis, &st, 0);
    }
    g_redis = -1;
  }
  if (g_tmp) sdc_test_rmtree(g_tmp), g_tmp = NULL;
}

static void on_signal(int sig) {
  stop_redis();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Starts redis-server on a free loopback port; 0 once it answers PING. */
static int start_redis(void) {
  for (int attempt = 0; attempt < 5; attempt++) {
    g_port = sdc_test_free_port();
    if (g_port <= 0) continue;
    char port[16], log[1100];
    snprintf(port, sizeof port, "%d", g_port);
    snprintf(log, sizeof log, "%s/redis.log", g_tmp);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test, however it ends */
      int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
      execl(REDIS_SERVER, "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", g_tmp, "--daemonize", "no", (char *)NULL);
      _exit(127);
    }
    g_redis = pid;
    for (int i = 0; i < 200; i++) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        g_redis = -1;
        break; /* port taken in between, most likely: try another */
      }
      redisContext *c = redisConnect("127.0.0.1", g_port);
      redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
      int up = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
      freeReplyObject(r);
      if (up) {
        g_raw = c;
        snprintf(g_url, sizeof g_url, "redis://127.0.0.1:%d", g_port);
        return 0;
      }
      if (c) redisFree(c);
      usleep(25000);
    }
    if (g_redis > 0) { /* alive but never answered: give up on this port */
      kill(g_redis, SIGKILL);
      waitpid(g_redis, NULL, 0);
      g_redis = -1;
    }
  }
  return -1;
}

/* ----------------------------------------------------------------- helpers */

static redisReply *raw(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(g_raw, fmt, ap);
  va_end(ap);
  if (!r) {
    fprintf(stderr, "raw redis command failed: %s\n", g_raw->errstr);
    exit(1); /* atexit stops the server */
  }
  return r;
}

static long long raw_int(const char *fmt, const char *a) {
  redisReply *r = raw(fmt, a);
  long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
  freeReplyObject(r);
  return v;
}

/* HGET into buf ("" when absent). */
static const char *hget(char *buf, size_t n, const char *id, const char *field) {
  char key[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, id);
  redisReply *r = raw("HGET %s %s", key, field);
  snprintf(buf, n, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
  freeReplyObject(r);
  return buf;
}

/* The JSON of the stream entry with this id, read back with XRANGE ("" when absent). */
static void entry_json(char *buf, size_t n, const char *entry) {
  redisReply *r = raw("XRANGE %s %s %s", SDC_JOBS_STREAM, entry, entry);
  buf[0] = 0;
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
    redisReply *e = r->element[0], *fv = e->element[1];
    CHECK(fv->elements == 2 && strcmp(fv->element[0]->str, SDC_JOBS_ENTRY_FIELD) == 0, "entry %s has one field 'job'",
          entry);
    if (fv->elements == 2) snprintf(buf, n, "%s", fv->element[1]->str);
  }
  freeReplyObject(r);
}

static long long xlen(void) { return raw_int("XLEN %s", SDC_JOBS_STREAM); }

/* Runs cmd; its stdout goes to out, its stderr to err (both NUL-terminated,
 * cut at 4096). Returns the exit status, or -1. */
static int run(const char *cmd, char *out, char *err) {
  char full[8192], errfile[1100];
  snprintf(errfile, sizeof errfile, "%s/stderr.txt", g_tmp);
  snprintf(full, sizeof full, "%s 2>'%s'", cmd, errfile);
  FILE *fp = popen(full, "r");
  if (!fp) return -1;
  size_t k = fread(out, 1, 4095, fp);
  out[k] = 0;
  int st = pclose(fp);
  FILE *fe = fopen(errfile, "r");
  k = fe ? fread(err, 1, 4095, fe) : 0;
  err[k] = 0;
  if (fe) fclose(fe);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, fp);
  fclose(fp);
  return b;
}

/* A small real PNG (w x 8) to play the VAE's output. */
static uint8_t *make_png(int w, size_t *n) {
  uint8_t rgb[64 * 8 * 3];
  for (int i = 0; i < w * 8 * 3; i++) rgb[i] = (uint8_t)(i * 7 + w);
  char path[1100];
  snprintf(path, sizeof path, "%s/src.png", g_tmp);
  int err = sdc_png_write(path, rgb, w, 8, 0, NULL, NULL);
  CHECK(err == 0, "png write: %s", sdc_errmsg(err));
  return read_file(path, n);
}

/* ------------------------------------------------------ playing coordinator */

static void publish_event(redisContext *c, const char *id, sdc_job_state s, int64_t step, int64_t steps,
                          const char *error) {
  char ch[SDC_JOB_KEY_MAX], *ev = NULL;
  sdc_job_key(ch, SDC_JOB_EVENTS_FMT, id);
  if (sdc_job_event_json(&ev, s, step, steps, error)) return;
  freeReplyObject(redisCommand(c, "PUBLISH %s %s", ch, ev));
  free(ev);
}

enum { END_DONE, END_DONE_SILENT, END_FAILED, END_CANCELLED };

/* In a child process, after delay_ms: claim the job, run 3 steps with events,
 * store n_images PNGs (TTL), then end it as `how`. END_DONE_SILENT writes the
 * hash but publishes nothing, as if every event were lost. */
static pid_t coordinator(const char *id, int delay_ms, int n_images, int how) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  redisContext *c = redisConnect("127.0.0.1", g_port);
  if (!c || c->err) _exit(3);
  char key[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, id);
  usleep((useconds_t)delay_ms * 1000);
  int silent = how == END_DONE_SILENT;
  freeReplyObject(redisCommand(c, "HSET %s state running started_ms 1 step 0 steps 3 coordinator test", key));
  if (!silent) publish_event(c, id, SDC_JOB_RUNNING, 0, 3, NULL);
  for (int s = 1; s <= 3; s++) {
    usleep(60000);
    freeReplyObject(redisCommand(c, "HSET %s step %d", key, s));
    if (!silent) publish_event(c, id, SDC_JOB_RUNNING, s, 3, NULL);
  }
  if (how == END_FAILED) {
    freeReplyObject(redisCommand(c, "HSET %s state failed error %s", key, "text encoder: boom"));
    publish_event(c, id, SDC_JOB_FAILED, -1, -1, "text encoder: boom");
  } else if (how == END_CANCELLED) {
    freeReplyObject(redisCommand(c, "HSET %s state cancelled", key));
    publish_event(c, id, SDC_JOB_CANCELLED, -1, -1, NULL);
  } else {
    for (int i = 0; i < n_images; i++) {
      size_t n;
      uint8_t *png = make_png(16 + 8 * i, &n);
      char ikey[SDC_JOB_KEY_MAX];
      sdc_job_image_key(ikey, id, i);
      freeReplyObject(redisCommand(c, "SET %s %b EX %d", ikey, png, n, SDC_DEFAULT_RESULT_TTL_S));
      free(png);
    }
    /* the hash first, then the event: a waiter woken by the event finds it done */
    freeReplyObject(redisCommand(c, "HSET %s state done num_images %d finished_ms 2", key, n_images));
    if (!silent) publish_event(c, id, SDC_JOB_DONE, 3, 3, NULL);
  }
  redisFree(c);
  _exit(0); /* not exit(): the parent's atexit would stop the server */
}

static void reap(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "coordinator child failed (status %d)", st);
}

/* --------------------------------------------------------------------- tests */

static sdc_client *g_c;

static void test_connect_errors(void) {
  sdc_client *c = (sdc_client *)1;
  CHECK(sdc_client_connect(&c, "http://127.0.0.1:6379") == SDC_EINVAL && c == NULL, "non-redis URL");
  CHECK(sdc_client_connect(&c, "redis://127.0.0.1:99999") == SDC_EINVAL, "bad port");
  CHECK(sdc_client_connect(&c, "redis://127.0.0.1:6379/x") == SDC_EINVAL, "bad db");
  CHECK(sdc_client_connect(&c, "redis://pass@127.0.0.1") == SDC_EINVAL, "credentials without ':'");
  int port = sdc_test_free_port();
  char url[64];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  int err = sdc_client_connect(&c, url);
  CHECK(err == SDC_EIO && strstr(sdc_errmsg(err), "127.0.0.1"), "nothing listening: %s", sdc_errmsg(err));
  snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", g_port);
  err = sdc_client_connect(&c, url);
  CHECK(err == SDC_EPROTOCOL && strstr(sdc_errmsg(err), "AUTH") && !strstr(sdc_errmsg(err), "wrong"),
        "AUTH refused, password not shown: %s", sdc_errmsg(err));
  snprintf(url, sizeof url, "redis://[127.0.0.1]:%d/3", g_port);
  err = sdc_client_connect(&c, url);
  CHECK(err == SDC_OK, "bracketed host and db 3: %s", sdc_errmsg(err));
  sdc_client_free(c);
  /* an ACL user (Redis 6+): AUTH user password; a wrong one is refused naming AUTH, never the password */
  freeReplyObject(raw("ACL SETUSER sdc-alice on >alice-pw ~sdc:* &* +@all"));
  snprintf(url, sizeof url, "redis://sdc-alice:alice-pw@127.0.0.1:%d", g_port);
  err = sdc_client_connect(&c, url);
  CHECK(err == SDC_OK, "ACL user sdc-alice: %s", sdc_errmsg(err));
  sdc_client_free(c);
  snprintf(url, sizeof url, "redis://sdc-alice:not-hers@127.0.0.1:%d", g_port);
  err = sdc_client_connect(&c, url);
  CHECK(err == SDC_EPROTOCOL && strstr(sdc_errmsg(err), "AUTH") && !strstr(sdc_errmsg(err), "not-hers"),
        "ACL user, wrong password: %s", sdc_errmsg(err));
  /* TLS is not in Debian 12's hiredis (0.14): rediss:// is refused saying so, not as a bad URL */
  err = sdc_client_connect(&c, "rediss://127.0.0.1:6380");
  CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), "TLS"), "rediss://: %s", sdc_errmsg(err));
}

/* Submitting from the library: the entry as any reader sees it, and the hash. */
static void test_submit_library(char *id_a /* OUT */) {
  sdc_job j;
  sdc_job_init(&j);
  j.prompt = (char *)"a red cube";
  j.steps = 20, j.has_seed = 1, j.seed = 5, j.width = 64, j.height = 72;
  long long before = xlen();
  int err = sdc_client_submit(g_c, &j, id_a, SDC_MAX_JOB_ID + 1);
  CHECK(err == SDC_OK, "submit: %s", sdc_errmsg(err));
  CHECK(xlen() == before + 1, "one entry added");
  char json[8192], buf[256];
  entry_json(json, sizeof json, id_a);
  CHECK(strcmp(json, "{\"prompt\":\"a red cube\",\"width\":64,\"height\":72,\"steps\":20,\"seed\":5}") == 0,
        "entry %s JSON: %s", id_a, json);
  sdc_job back;
  err = sdc_job_parse(&back, json, strlen(json), id_a);
  CHECK(err == SDC_OK && strcmp(back.id, id_a) == 0 && back.seed == 5 && back.steps == 20, "entry parses: %s",
        sdc_errmsg(err));
  sdc_job_free(&back);
  CHECK(strcmp(hget(buf, sizeof buf, id_a, "state"), "queued") == 0, "state queued: %s", buf);
  CHECK(strcmp(hget(buf, sizeof buf, id_a, "entry"), id_a) == 0, "entry field: %s", buf);
  CHECK(strtoll(hget(buf, sizeof buf, id_a, "created_ms"), NULL, 10) == strtoll(id_a, NULL, 10),
        "created_ms is the entry's time: %s", buf);

  /* an explicit id: in the JSON, and unique */
  snprintf(j.id, sizeof j.id, "my-job.1");
  char id[SDC_MAX_JOB_ID + 1];
  err = sdc_client_submit(g_c, &j, id, sizeof id);
  CHECK(err == SDC_OK && strcmp(id, "my-job.1") == 0, "explicit id: %s %s", id, sdc_errmsg(err));
  CHECK(strcmp(hget(buf, sizeof buf, "my-job.1", "state"), "queued") == 0, "explicit id hash: %s", buf);
  long long n = xlen();
  err = sdc_client_submit(g_c, &j, id, sizeof id);
  CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), "already exists") && xlen() == n, "duplicate id refused: %s",
        sdc_errmsg(err));
  /* an invalid job never reaches the stream */
  j.id[0] = 0, j.width = 100;
  err = sdc_client_submit(g_c, &j, id, sizeof id);
  CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), "'width'") && xlen() == n, "invalid job: %s", sdc_errmsg(err));
  CHECK(sdc_client_submit(g_c, &j, id, 16) == SDC_EINVAL, "small id buffer refused");
}

static void test_submit_cli(char *id_multi /* OUT */) {
  char cmd[4096], out[4096], err[4096], json[8192];
  long long n = xlen();
  snprintf(cmd, sizeof cmd,
           "'%s' submit --redis %s --prompt 'cli \"cat\"' --negative-prompt blurry --steps 7 --seed 9 --num-images 2 "
           "--scheduler euler_a --guidance-scale 3",
           g_sdc, g_url);
  int st = run(cmd, out, err);
  CHECK(st == 0, "sdc submit: exit %d: %s", st, err);
  out[strcspn(out, "\n")] = 0;
  snprintf(id_multi, SDC_MAX_JOB_ID + 1, "%s", out);
  CHECK(sdc_job_id_valid(id_multi) && xlen() == n + 1, "sdc submit printed an id: '%s'", out);
  entry_json(json, sizeof json, id_multi);
  CHECK(strcmp(json,
               "{\"prompt\":\"cli \\\"cat\\\"\",\"negative_prompt\":\"blurry\",\"steps\":7,\"guidance_scale\":3,"
               "\"scheduler\":\"euler_a\",\"seed\":9,\"num_images\":2}") == 0,
        "sdc submit entry: %s", json);

  snprintf(cmd, sizeof cmd, "'%s' submit --redis %s --id cli-1 --prompt x", g_sdc, g_url);
  st = run(cmd, out, err);
  CHECK(st == 0 && strcmp(out, "cli-1\n") == 0, "sdc submit --id: %d '%s' %s", st, out, err);
  st = run(cmd, out, err);
  CHECK(st == 1 && strstr(err, "already exists"), "sdc submit same --id: %d %s", st, err);

  static const struct {
    const char *args, *needle;
  } bad[] = {{"--prompt x --width 100", "'width'"},
             {"--prompt x --steps 20x", "--steps"},
             {"--prompt x --steps 0", "--steps"},
             {"--prompt x --seed -2", "--seed"}, /* -1 is "random" */
             {"--prompt x --seed 9007199254740992", "--seed"},
             {"--prompt x --scheduler karras9000", "karras9000"},
             {"--prompt x --num-images 9", "--num-images"},
             {"--prompt x --guidance-scale nan", "--guidance-scale"},
             {"--prompt 'caf\xe9'", "UTF-8"},
             {"--prompt x --id 'a b'", "--id"},
             {"--prompt x --colour red", "--colour"},
             {"--prompt x --model m", "--model"},
             {"--steps 3", "--prompt"},
             {"--prompt x extra", "extra"},
             {"--prompt x --redis http://nope", "redis URL"}};
  n = xlen();
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(cmd, sizeof cmd, "'%s' submit --redis %s %s", g_sdc, g_url, bad[i].args);
    st = run(cmd, out, err);
    CHECK(st == 2 && sdc_test_lines(err) == 1 && strstr(err, bad[i].needle) && !out[0],
          "sdc submit %s: exit %d, stderr: %s", bad[i].args, st, err);
  }
  CHECK(xlen() == n, "bad submits queued nothing");
  /* $SDC_REDIS stands for --redis; --seed -1 leaves the seed to the coordinator */
  snprintf(cmd, sizeof cmd, "SDC_REDIS='%s' '%s' submit --prompt env --seed -1", g_url, g_sdc);
  st = run(cmd, out, err);
  out[strcspn(out, "\n")] = 0;
  CHECK(st == 0 && xlen() == n + 1, "SDC_REDIS submit: exit %d: %s", st, err);
  entry_json(json, sizeof json, out);
  CHECK(strcmp(json, "{\"prompt\":\"env\"}") == 0, "submit --seed -1 entry: %s", json);
  snprintf(cmd, sizeof cmd, "SDC_REDIS='redis://127.0.0.1:%d' '%s' submit --prompt x", sdc_test_free_port(), g_sdc);
  st = run(cmd, out, err);
  CHECK(st == 1 && sdc_test_lines(err) == 1 && strstr(err, "$SDC_REDIS"), "unreachable SDC_REDIS: %d %s", st, err);
  snprintf(cmd, sizeof cmd, "'%s' submit --redis redis://127.0.0.1:%d --prompt x", g_sdc, sdc_test_free_port());
  st = run(cmd, out, err);
  CHECK(st == 1 && sdc_test_lines(err) == 1 && strstr(err, "connect"), "unreachable redis: %d %s", st, err);
}

static void test_status(const char *id_a) {
  sdc_job_status st;
  int err = sdc_client_status(g_c, id_a, &st);
  CHECK(err == SDC_OK && st.state == SDC_JOB_QUEUED && st.created_ms > 0 && st.step == -1 && st.n_fields == 3,
        "status of a queued job: %s, state %s, %zu fields", sdc_errmsg(err), sdc_job_state_name(st.state), st.n_fields);
  sdc_job_status_free(&st);
  err = sdc_client_status(g_c, "no-such-job", &st);
  CHECK(err == SDC_EMISSING && strstr(sdc_errmsg(err), "no-such-job"), "unknown job: %s", sdc_errmsg(err));
  sdc_job_status_free(&st);
  err = sdc_client_status(g_c, "bad id", &st);
  CHECK(err == SDC_EINVAL, "bad id: %s", sdc_errmsg(err));
  sdc_job_status_free(&st);

  /* a bare XADD, as any Redis client may do: no hash until a coordinator claims it */
  redisReply *r = raw("XADD %s * job %s", SDC_JOBS_STREAM, "{\"prompt\":\"bare\"}");
  char bare[64];
  snprintf(bare, sizeof bare, "%s", r->str);
  freeReplyObject(r);
  err = sdc_client_status(g_c, bare, &st);
  CHECK(err == SDC_OK && st.state == SDC_JOB_QUEUED && st.n_fields == 0, "bare XADD job is queued: %s",
        sdc_errmsg(err));
  sdc_job_status_free(&st);

  char cmd[4096], out[4096], errs[4096];
  snprintf(cmd, sizeof cmd, "'%s' status %s --redis %s", g_sdc, id_a, g_url);
  int rc = run(cmd, out, errs);
  char line[300];
  snprintf(line, sizeof line, "id: %s\nstate: queued\n", id_a);
  CHECK(rc == 0 && strncmp(out, line, strlen(line)) == 0 && strstr(out, "\nentry: ") && strstr(out, "\ncreated_ms: "),
        "sdc status: %d\n%s%s", rc, out, errs);
  snprintf(cmd, sizeof cmd, "'%s' status %s --redis %s", g_sdc, bare, g_url);
  rc = run(cmd, out, errs);
  CHECK(rc == 0 && strstr(out, "state: queued"), "sdc status of a bare entry: %d %s%s", rc, out, errs);
  snprintf(cmd, sizeof cmd, "SDC_REDIS='%s' '%s' status %s --json", g_url, g_sdc, id_a);
  rc = run(cmd, out, errs);
  snprintf(line, sizeof line, "{\"id\":\"%s\",", id_a);
  CHECK(rc == 0 && strncmp(out, line, strlen(line)) == 0 && strstr(out, "\"state\":\"queued\"") &&
            strstr(out, "\"created_ms\":\"") && sdc_test_lines(out) == 1,
        "sdc status --json (SDC_REDIS): %d\n%s%s", rc, out, errs);
  snprintf(cmd, sizeof cmd, "'%s' status nope --redis %s", g_sdc, g_url);
  rc = run(cmd, out, errs);
  CHECK(rc == 1 && sdc_test_lines(errs) == 1 && strstr(errs, "no such job"), "sdc status unknown: %d %s", rc, errs);
  snprintf(cmd, sizeof cmd, "'%s' status --redis %s", g_sdc, g_url);
  rc = run(cmd, out, errs);
  CHECK(rc == 2 && sdc_test_lines(errs) == 1, "sdc status without id: %d %s", rc, errs);
}

typedef struct {
  int calls, backwards, saw_running;
  int64_t last_step, max_step;
} progress_log;

static void on_progress(void *ctx, const sdc_job_status *st) {
  progress_log *p = ctx;
  p->calls++;
  if (st->state == SDC_JOB_RUNNING) p->saw_running = 1;
  if (st->step >= 0 && st->step < p->last_step) p->backwards = 1;
  if (st->step >= 0) p->last_step = st->step;
  if (st->step > p->max_step) p->max_step = st->step;
}

static void test_wait_library(const char *id_a) {
  progress_log pl = {0, 0, 0, -1, -1};
  pid_t pid = coordinator(id_a, 300, 1, END_DONE);
  sdc_job_status st;
  int64_t t0 = sdc_clock_mono_ms();
  int err = sdc_client_wait(g_c, id_a, 10000, on_progress, &pl, &st);
  int64_t dt = sdc_clock_mono_ms() - t0;
  reap(pid);
  CHECK(err == SDC_OK && st.state == SDC_JOB_DONE && st.num_images == 1, "wait: %s, state %s", sdc_errmsg(err),
        sdc_job_state_name(st.state));
  CHECK(dt >= 450 && dt < 3000, "wait took %lld ms", (long long)dt);
  CHECK(pl.saw_running && pl.max_step == 3 && !pl.backwards && pl.calls >= 3, "progress: %d calls, max step %lld",
        pl.calls, (long long)pl.max_step);
  sdc_job_status_free(&st);

  uint8_t *png = NULL;
  size_t n = 0, n_ref = 0;
  uint8_t *ref = make_png(16, &n_ref);
  err = sdc_client_fetch_image(g_c, id_a, 0, &png, &n);
  CHECK(err == SDC_OK && n == n_ref && memcmp(png, ref, n) == 0, "fetch image: %s, %zu bytes", sdc_errmsg(err), n);
  free(png), free(ref);
  err = sdc_client_fetch_image(g_c, id_a, 1, &png, &n);
  CHECK(err == SDC_EMISSING && png == NULL, "image 1 does not exist: %s", sdc_errmsg(err));

  /* every event lost: the 500 ms poll still ends the wait */
  char id[SDC_MAX_JOB_ID + 1];
  sdc_job j;
  sdc_job_init(&j);
  j.prompt = (char *)"silent";
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit silent");
  pid = coordinator(id, 100, 1, END_DONE_SILENT);
  t0 = sdc_clock_mono_ms();
  err = sdc_client_wait(g_c, id, 10000, NULL, NULL, &st);
  dt = sdc_clock_mono_ms() - t0;
  reap(pid);
  CHECK(err == SDC_OK && st.state == SDC_JOB_DONE, "wait without events: %s", sdc_errmsg(err));
  CHECK(dt < 1500, "wait without events took %lld ms", (long long)dt);
  sdc_job_status_free(&st);

  /* failed: the wait succeeds, the state and error tell */
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit failing");
  pid = coordinator(id, 50, 0, END_FAILED);
  err = sdc_client_wait(g_c, id, 10000, NULL, NULL, &st);
  reap(pid);
  CHECK(err == SDC_OK && st.state == SDC_JOB_FAILED && strcmp(st.error, "text encoder: boom") == 0,
        "failed job: %s %s '%s'", sdc_errmsg(err), sdc_job_state_name(st.state), st.error);
  sdc_job_status_free(&st);

  /* timeout and unknown job */
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit never-run");
  t0 = sdc_clock_mono_ms();
  err = sdc_client_wait(g_c, id, 700, NULL, NULL, &st);
  dt = sdc_clock_mono_ms() - t0;
  CHECK(err == SDC_EAGAIN && st.state == SDC_JOB_QUEUED && strstr(sdc_errmsg(err), "not finished"), "timeout: %s",
        sdc_errmsg(err));
  CHECK(dt >= 690 && dt < 2000, "timeout after %lld ms", (long long)dt);
  sdc_job_status_free(&st);
  err = sdc_client_wait(g_c, "never-submitted", 5000, NULL, NULL, NULL);
  CHECK(err == SDC_EMISSING, "wait on an unknown job: %s", sdc_errmsg(err));
}

static void test_wait_cli(const char *id_a, const char *id_multi) {
  char cmd[4096], out[4096], err[4096], path[1200];
  size_t n = 0, n_ref = 0;
  /* already done: writes the PNG byte for byte */
  snprintf(cmd, sizeof cmd, "'%s' wait %s --redis %s --output '%s/a.png'", g_sdc, id_a, g_url, g_tmp);
  int st = run(cmd, out, err);
  CHECK(st == 0, "sdc wait (done job): %d %s", st, err);
  snprintf(path, sizeof path, "%s/a.png", g_tmp);
  uint8_t *got = read_file(path, &n), *ref = make_png(16, &n_ref);
  CHECK(got && n == n_ref && memcmp(got, ref, n) == 0, "a.png is the stored PNG (%zu vs %zu bytes)", n, n_ref);
  free(got), free(ref);

  /* live, two images: FILE-0.png, FILE-1.png */
  pid_t pid = coordinator(id_multi, 300, 2, END_DONE);
  snprintf(cmd, sizeof cmd, "'%s' wait --redis %s --timeout 20 %s --output '%s/m.png'", g_sdc, g_url, id_multi, g_tmp);
  st = run(cmd, out, err);
  reap(pid);
  CHECK(st == 0, "sdc wait (two images): %d %s", st, err);
  for (int i = 0; i < 2; i++) {
    uint8_t *rgb = NULL;
    int64_t w = 0, h = 0;
    snprintf(path, sizeof path, "%s/m-%d.png", g_tmp, i);
    int e = sdc_png_read(path, &rgb, &w, &h, NULL);
    CHECK(e == 0 && w == 16 + 8 * i && h == 8, "%s: %s %lldx%lld", path, e ? sdc_errmsg(e) : "ok", (long long)w,
          (long long)h);
    free(rgb);
  }

  /* failed and cancelled: exit 1 with the reason */
  char id[SDC_MAX_JOB_ID + 1];
  sdc_job j;
  sdc_job_init(&j);
  j.prompt = (char *)"x";
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit");
  pid = coordinator(id, 100, 0, END_FAILED);
  snprintf(cmd, sizeof cmd, "'%s' wait %s --redis %s --output '%s/f.png'", g_sdc, id, g_url, g_tmp);
  st = run(cmd, out, err);
  reap(pid);
  snprintf(path, sizeof path, "%s/f.png", g_tmp);
  CHECK(st == 1 && strstr(err, "text encoder: boom") && access(path, F_OK) != 0, "sdc wait (failed): %d %s", st, err);
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit");
  pid = coordinator(id, 100, 0, END_CANCELLED);
  snprintf(cmd, sizeof cmd, "'%s' wait %s --redis %s", g_sdc, id, g_url);
  st = run(cmd, out, err);
  reap(pid);
  CHECK(st == 1 && strstr(err, "cancelled"), "sdc wait (cancelled): %d %s", st, err);

  /* timeout, and bad input before any waiting */
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit");
  snprintf(cmd, sizeof cmd, "'%s' wait %s --redis %s --timeout 0.6", g_sdc, id, g_url);
  st = run(cmd, out, err);
  CHECK(st == 1 && strstr(err, "not finished"), "sdc wait --timeout: %d %s", st, err);
  static const struct {
    const char *args, *needle;
  } bad[] = {{"", "job id"},
             {"x --timeout -1", "--timeout"},
             {"x --timeout soon", "--timeout"},
             {"x --output /nonexistent-dir/a.png", "does not exist"},
             {"'a b'", "job id"},
             {"x y", "'y'"},
             {"x --frobnicate", "--frobnicate"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(cmd, sizeof cmd, "'%s' wait --redis %s %s", g_sdc, g_url, bad[i].args);
    st = run(cmd, out, err);
    CHECK(st == 2 && sdc_test_lines(err) == 1 && strstr(err, bad[i].needle), "sdc wait %s: %d %s", bad[i].args, st,
          err);
  }
}

static void test_cancel(const char *id_a) {
  char buf[256], id[SDC_MAX_JOB_ID + 1], ch[SDC_JOB_KEY_MAX];
  sdc_job j;
  sdc_job_init(&j);
  j.prompt = (char *)"to cancel";
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit");

  /* a coordinator listening on the control channel hears it */
  redisContext *sub = redisConnect("127.0.0.1", g_port);
  sdc_job_key(ch, SDC_JOB_CONTROL_FMT, id);
  freeReplyObject(redisCommand(sub, "SUBSCRIBE %s", ch));
  sdc_job_state before;
  int err = sdc_client_cancel(g_c, id, &before);
  CHECK(err == SDC_OK && before == SDC_JOB_QUEUED, "cancel: %s, before %s", sdc_errmsg(err),
        sdc_job_state_name(before));
  CHECK(strcmp(hget(buf, sizeof buf, id, "cancel"), "1") == 0, "cancel flag: '%s'", buf);
  CHECK(strcmp(hget(buf, sizeof buf, id, "state"), "queued") == 0, "cancel leaves the state to the coordinator: %s",
        buf);
  redisSetTimeout(sub, (struct timeval){2, 0});
  redisReply *m = NULL;
  CHECK(redisGetReply(sub, (void **)&m) == REDIS_OK && m && m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
            strcmp(m->element[2]->str, "cancel") == 0,
        "control channel got 'cancel'");
  freeReplyObject(m);
  redisFree(sub);
  sdc_job_status st;
  CHECK(sdc_client_status(g_c, id, &st) == SDC_OK && st.cancel_requested, "status shows the cancel request");
  sdc_job_status_free(&st);

  /* a finished job is left alone */
  err = sdc_client_cancel(g_c, id_a, &before);
  CHECK(err == SDC_OK && before == SDC_JOB_DONE && !hget(buf, sizeof buf, id_a, "cancel")[0],
        "cancel of a done job: %s", sdc_job_state_name(before));
  /* unknown: nothing is created (a 24 h hash would block the id), and the answer says so */
  err = sdc_client_cancel(g_c, "not-yet-seen", &before);
  char key[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, "not-yet-seen");
  long long ttl = raw_int("TTL %s", key);
  CHECK(err == SDC_EMISSING && strstr(sdc_errmsg(err), "no such job") && ttl == -2,
        "cancel of an unknown job: %s ttl %lld", sdc_errmsg(err), ttl);
  /* queued with a bare XADD, not claimed yet (no hash): the entry makes it known; the flag expires */
  redisReply *x = raw("XADD sdc:jobs * job %s", "{\"prompt\":\"bare\"}");
  char bare[64];
  snprintf(bare, sizeof bare, "%s", x->type == REDIS_REPLY_STRING ? x->str : "");
  freeReplyObject(x);
  err = sdc_client_cancel(g_c, bare, &before);
  sdc_job_key(key, SDC_JOB_KEY_FMT, bare);
  ttl = raw_int("TTL %s", key);
  CHECK(err == SDC_OK && before == SDC_JOB_UNKNOWN && ttl > 0 && ttl <= SDC_DEFAULT_RESULT_TTL_S,
        "cancel of a bare XADD job %s: %s ttl %lld", bare, sdc_errmsg(err), ttl);

  char cmd[4096], out[4096], errs[4096];
  CHECK(sdc_client_submit(g_c, &j, id, sizeof id) == SDC_OK, "submit");
  snprintf(cmd, sizeof cmd, "'%s' cancel %s --redis %s", g_sdc, id, g_url);
  int rc = run(cmd, out, errs);
  CHECK(rc == 0 && strstr(out, "cancel requested") && strcmp(hget(buf, sizeof buf, id, "cancel"), "1") == 0,
        "sdc cancel: %d %s%s", rc, out, errs);
  snprintf(cmd, sizeof cmd, "'%s' cancel %s --redis %s", g_sdc, id_a, g_url);
  rc = run(cmd, out, errs);
  CHECK(rc == 1 && strstr(errs, "already done"), "sdc cancel of a done job: %d %s", rc, errs);
  snprintf(cmd, sizeof cmd, "'%s' cancel --redis %s", g_sdc, g_url);
  rc = run(cmd, out, errs);
  CHECK(rc == 2 && sdc_test_lines(errs) == 1, "sdc cancel without id: %d %s", rc, errs);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  if (access(REDIS_SERVER, X_OK) != 0) sdc_test_skip(REDIS_SERVER " is not installed");
  g_sdc = argv[1];
  g_tmp = sdc_test_tmpdir();
  atexit(stop_redis);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (start_redis() != 0) {
    fprintf(stderr, "FAIL: redis-server did not start (see its log above)\n");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cat '%s/redis.log' >&2", g_tmp);
    if (system(cmd)) {
    }
    return 1;
  }
  int err = sdc_client_connect(&g_c, g_url);
  CHECK(err == SDC_OK, "connect %s: %s", g_url, sdc_errmsg(err));
  if (err) return sdc_test_finish("test_client_redis");

  char id_a[SDC_MAX_JOB_ID + 1] = "", id_multi[SDC_MAX_JOB_ID + 1] = "";
  test_connect_errors();
  test_submit_library(id_a);
  test_submit_cli(id_multi);
  test_status(id_a);
  test_wait_library(id_a);
  test_wait_cli(id_a, id_multi);
  test_cancel(id_a);

  sdc_client_free(g_c);
  redisFree(g_raw);
  int rc = sdc_test_finish("test_client_redis");
  stop_redis();
  return rc;
}
