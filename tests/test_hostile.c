/* test_hostile.c - bad input on every surface of a running cluster (real redis-server, `sdc cluster` on loopback,
 * tiny-sd1): hostile job JSONs each end dead-lettered with a one-line reason naming the field; garbage,
 * truncated, wrong-version and multipart frames, tensors with a wrong shape, size or crc32c, frames announcing
 * more than ZMQ_MAXMSGSIZE and a flood of TCP connections hit the coordinator's control port and a worker's data
 * port. Every frame that reaches our code is dropped and counted in sdc_frames_dropped_total, the log names the
 * sender, no process dies, and a normal job completes before and after; a normal job cancelled mid-denoise
 * stops within one step. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "error.h"
#include "test_util.h"
#include "wire.h"

extern char **environ;

#define N_WORKERS 5
#define N_GARBAGE 200 /* random frames to each port */
#define N_FLOOD 1000  /* TCP connections opened and dropped at the coordinator's port (and a fifth at a worker's) */

static const char *g_sdc, *g_tmp;
static char g_log[1024], g_model[1024];
static pid_t g_redis, g_cluster;
static redisContext *g_rc;

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

static void stop_all(void) {
  if (g_cluster > 0) kill(g_cluster, SIGKILL), waitpid(g_cluster, NULL, 0), g_cluster = 0;
  if (g_redis > 0) kill(g_redis, SIGTERM), waitpid(g_redis, NULL, 0), g_redis = 0;
}

static int log_count(const char *needle) {
  FILE *fp = fopen(g_log, "r");
  char buf[8192];
  int n = 0;
  while (fp && fgets(buf, sizeof buf, fp)) n += strstr(buf, needle) != NULL;
  if (fp) fclose(fp);
  return n;
}

/* The first log line holding needle, into line; 0 if none. */
static int log_first(const char *needle, char *line, size_t n) {
  FILE *fp = fopen(g_log, "r");
  char buf[8192];
  int found = 0;
  while (!found && fp && fgets(buf, sizeof buf, fp))
    if (strstr(buf, needle)) snprintf(line, n, "%s", buf), found = 1;
  if (fp) fclose(fp);
  return found;
}

static int free_port_range(int n) {
  for (int tries = 0; tries < 50; tries++) {
    int base = sdc_test_free_port(), ok = base > 0 && base + n < 65536;
    for (int i = 1; ok && i < n; i++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(base + i)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
      if (fd >= 0) close(fd);
    }
    if (ok) return base;
  }
  return -1;
}

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The value of the series `name{...label...}` in a /metrics scrape of 127.0.0.1:port; -1 when absent. */
static double metric(int port, const char *name, const char *label) {
  int fd = tcp_connect(port);
  if (fd < 0) return -1;
  char req[256];
  int k = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
  static char resp[1 << 20];
  size_t got = 0;
  ssize_t r;
  if (write(fd, req, (size_t)k) == k)
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
  close(fd);
  resp[got] = 0;
  for (char *line = resp; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    size_t n = strlen(name);
    char *end = strchr(line, '\n');
    if (strncmp(line, name, n) != 0 || line[n] != '{') continue;
    char *close_brace = strchr(line, '}');
    if (!close_brace || (end && close_brace > end)) continue;
    char *l = strstr(line, label);
    if (l && l < close_brace) return atof(close_brace + 1);
  }
  return -1;
}

static char *hget(const char *id, const char *field) {
  redisReply *r = redisCommand(g_rc, "HGET sdc:job:%s %s", id, field);
  char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
  if (r) freeReplyObject(r);
  return v;
}

/* Enqueues a normal job and waits for it to be done; returns seconds taken, or -1. */
static double normal_job(const char *id, int seed) {
  char json[256];
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"a calm lake\",\"steps\":4,\"seed\":%d}", id, seed);
  double t0 = sdc_clock_mono_s();
  redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s", json);
  CHECK(r && r->type == REDIS_REPLY_STRING, "XADD %s failed", id);
  if (r) freeReplyObject(r);
  char *st = NULL;
  while (sdc_clock_mono_s() - t0 < 60) {
    free(st);
    st = hget(id, "state");
    if (st && (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))) break;
    sdc_clock_sleep_ms(100);
  }
  int ok = st && !strcmp(st, "done");
  char *err = ok ? NULL : hget(id, "error");
  CHECK(ok, "normal job %s ended '%s' (%s), not done, within 60 s (see %s)", id, st ? st : "(none)", err ? err : "",
        g_log);
  free(st), free(err);
  return ok ? sdc_clock_mono_s() - t0 : -1;
}

/* ---------------------------------------------------------------- job JSONs */

typedef struct {
  const char *what;
  char *json; /* heap; NULL: an entry without a `job` field */
  size_t n;
  const char *want; /* in the dead-letter reason */
  char entry[64];   /* the stream entry id XADD gave */
} hostile_job;

static char *repeat(const char *head, const char *unit, int times, const char *tail, size_t *n) {
  size_t hu = strlen(unit), len = strlen(head) + hu * (size_t)times + strlen(tail);
  char *s = malloc(len + 1), *p = s;
  p += sprintf(p, "%s", head);
  for (int i = 0; i < times; i++) memcpy(p, unit, hu), p += hu;
  sprintf(p, "%s", tail);
  *n = len;
  return s;
}

static char *lit(const char *s, size_t *n) {
  *n = strlen(s);
  return strdup(s);
}

static int make_jobs(hostile_job *j) {
  int k = 0;
  size_t n;
  char *s;
#define ADD(what_, json_, want_) (j[k].what = (what_), j[k].json = (json_), j[k].n = n, j[k].want = (want_), k++)
  /* 5 000 000 levels of nesting: 5 MB, refused by size (4 MiB) before parsing; 20 000 levels under it */
  s = repeat("{\"prompt\":", "[", 5000000, "", &n);
  ADD("nesting 5 000 000 levels", s, "the limit is 4194304");
  {
    size_t a, b;
    char *open = repeat("{\"prompt\":", "[", 20000, "", &a), *shut = repeat("", "]", 20000, "}", &b);
    s = malloc(a + b + 1);
    memcpy(s, open, a), memcpy(s + a, shut, b + 1), n = a + b;
    free(open), free(shut);
    ADD("nesting 20 000 levels", s, "nested more than");
  }
  s = repeat("{\"prompt\":\"x\"", ",\"f\":0", 10000, "}", &n);
  ADD("10 000 fields", s, "\"f\": unknown");
  ADD("steps 1e999", lit("{\"prompt\":\"x\",\"steps\":1e999}", &n), "steps");
  ADD("steps -0", lit("{\"prompt\":\"x\",\"steps\":-0}", &n), "steps");
  ADD("seed 2^64", lit("{\"prompt\":\"x\",\"seed\":18446744073709551616}", &n), "seed");
  ADD("seed -1", lit("{\"prompt\":\"x\",\"seed\":-1}", &n), "seed");
  ADD("seed 1.5", lit("{\"prompt\":\"x\",\"seed\":1.5}", &n), "seed");
  ADD("duplicate key", lit("{\"prompt\":\"a\",\"steps\":4,\"prompt\":\"b\"}", &n), "'prompt': given more than once");
  ADD("id with glob characters", lit("{\"id\":\"a*b?[c]\",\"prompt\":\"x\"}", &n), "'id'");
  s = repeat("{\"id\":\"", "k", 10240, "\",\"prompt\":\"x\"}", &n);
  ADD("id 10 KB long", s, "'id'");
  ADD("id 129 characters", repeat("{\"id\":\"", "i", 129, "\",\"prompt\":\"x\"}", &n), "'id'");
  ADD("empty id", lit("{\"id\":\"\",\"prompt\":\"x\"}", &n), "'id'");
  ADD("invalid UTF-8", lit("{\"prompt\":\"caf\xc3\x28 \xff\"}", &n), "'prompt'");
  {
    static const char nul[] = "{\"prompt\":\"a\0b\"}";
    s = malloc(sizeof nul), memcpy(s, nul, sizeof nul), n = sizeof nul - 1;
    ADD("NUL byte in the JSON", s, "job JSON");
  }
  ADD("escaped \\u0000", lit("{\"prompt\":\"a\\u0000b\"}", &n), "\\u0000");
  ADD("no job field", NULL, "job");
  ADD("not JSON", lit("hello, coordinator", &n), "syntax error");
  ADD("empty", lit("", &n), "job JSON");
  ADD("an array", lit("[{\"prompt\":\"x\"}]", &n), "expected an object");
  ADD("steps as a string", lit("{\"prompt\":\"x\",\"steps\":\"20\"}", &n), "steps");
  ADD("num_images 1000", lit("{\"prompt\":\"x\",\"num_images\":1000}", &n), "num_images");
  ADD("width 2049", lit("{\"prompt\":\"x\",\"width\":2049}", &n), "width");
  ADD("guidance_scale -1", lit("{\"prompt\":\"x\",\"guidance_scale\":-1}", &n), "guidance_scale");
  ADD("unknown scheduler", lit("{\"prompt\":\"x\",\"scheduler\":\"$(rm -rf /)\"}", &n), "scheduler");
  ADD("prompt 5000 bytes", repeat("{\"prompt\":\"", "p", 5000, "\"}", &n), "'prompt'");
  ADD("prompt null", lit("{\"prompt\":null}", &n), "'prompt'");
  ADD("unknown field __proto__", lit("{\"prompt\":\"x\",\"__proto__\":{}}", &n), "__proto__");
  ADD("5 MB JSON", repeat("{\"prompt\":\"", " ", 5000000, "\"}", &n), "the limit is 4194304");
#undef ADD
  return k;
}

/* Every hostile entry is in sdc:jobs:dead with a one-line reason naming the culprit. */
static void check_dead_letters(hostile_job *j, int n_jobs) {
  int found[64] = {0};
  for (int waited = 0; waited < 30000; waited += 200) {
    redisReply *r = redisCommand(g_rc, "XRANGE sdc:jobs:dead - +");
    for (size_t e = 0; r && r->type == REDIS_REPLY_ARRAY && e < r->elements; e++) {
      redisReply *fields = r->element[e]->element[1];
      const char *entry = NULL, *reason = NULL;
      for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        if (!strcmp(fields->element[f]->str, "entry")) entry = fields->element[f + 1]->str;
        if (!strcmp(fields->element[f]->str, "reason")) reason = fields->element[f + 1]->str;
      }
      for (int i = 0; entry && i < n_jobs; i++)
        if (!found[i] && !strcmp(entry, j[i].entry)) {
          found[i] = 1;
          CHECK(reason && strstr(reason, j[i].want) && !strchr(reason, '\n'),
                "%s: dead-letter reason lacks \"%s\" or is not one line: %s", j[i].what, j[i].want,
                reason ? reason : "(none)");
          if (reason) printf("  %-26s -> %.110s\n", j[i].what, reason);
        }
    }
    if (r) freeReplyObject(r);
    int all = 1;
    for (int i = 0; i < n_jobs; i++) all &= found[i];
    if (all) break;
    sdc_clock_sleep_ms(200);
  }
  for (int i = 0; i < n_jobs; i++) CHECK(found[i], "%s (entry %s): never dead-lettered within 30 s", j[i].what, j[i].entry);
}

/* ------------------------------------------------------------------- frames */

static uint32_t g_rng = 12345;
static uint32_t rng_next(void) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 17, g_rng ^= g_rng << 5;
  return g_rng;
}

static void send_raw(void *sock, const void *buf, size_t n) {
  CHECK(zmq_send(sock, buf, n, 0) == (int)n, "zmq_send of %zu bytes: %s", n, zmq_strerror(zmq_errno()));
}

/* Garbage, a truncated protobuf, another protocol version and a multipart message; returns how many of them
 * count as malformed at the receiver (the version one counts under "version"). */
static int send_junk(void *sock, const uint8_t *good, size_t good_n) {
  int malformed = 0;
  uint8_t buf[512];
  for (int i = 0; i < N_GARBAGE; i++) {
    size_t n = 1 + rng_next() % sizeof buf;
    for (size_t k = 0; k < n; k++) buf[k] = (uint8_t)rng_next();
    buf[0] = 0xff; /* never a valid first tag: garbage must not parse by chance */
    send_raw(sock, buf, n);
    malformed++;
  }
  send_raw(sock, good, good_n / 2); /* truncated protobuf */
  malformed++;
  uint8_t *v2 = malloc(good_n);
  memcpy(v2, good, good_n);
  CHECK(v2[0] == 0x08 && v2[1] == SDC_PROTOCOL_VERSION, "packed envelope does not start with its version");
  v2[1] = SDC_PROTOCOL_VERSION + 1;
  send_raw(sock, v2, good_n);
  free(v2);
  CHECK(zmq_send(sock, good, good_n, ZMQ_SNDMORE) >= 0 && zmq_send(sock, "x", 1, 0) >= 0, "multipart send");
  malformed++;
  return malformed;
}

/* A VAE request for the worker with one thing wrong in its latent; the worker fails it with a reply naming
 * the tensor (to the coordinator, which drops it: no such job) and counts a bad tensor. */
static void send_bad_tensor(void *push, const char *worker_id, const char *endpoint, int what) {
  static float latent[4 * 8 * 8];
  for (int i = 0; i < 4 * 8 * 8; i++) latent[i] = (float)(i % 7) - 3.0f;
  Sdcpb__Tensor t = SDCPB__TENSOR__INIT;
  void *owned = NULL;
  CHECK(sdc_wire_tensor_set(&t, latent, 4, (int64_t[]){1, 4, 8, 8}, SDCPB__DTYPE__F32, &owned) == SDC_OK, "tensor");
  if (what == 0) t.crc32c ^= 1;                 /* bad checksum */
  if (what == 1) t.data.len -= 4;               /* bytes do not match the shape */
  if (what == 2) ((int64_t *)t.shape)[3] = 9;   /* shape does not match the bytes */
  if (what == 3) t.dtype = (Sdcpb__DType)7;     /* no such dtype */
  if (what == 1) t.crc32c = sdc_crc32c(t.data.data, t.data.len);
  Sdcpb__Hop hop = SDCPB__HOP__INIT, *route[] = {&hop};
  hop.stage = SDCPB__STAGE__VAE, hop.worker_id = (char *)worker_id, hop.endpoint = (char *)endpoint;
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  char job[32];
  snprintf(job, sizeof job, "hostile-tensor-%d", what);
  req.job_id = job, req.request_id = 900 + (uint64_t)what, req.deadline_unix_ms = sdc_clock_unix_ms() + 60000;
  req.n_route = 1, req.route = route, req.latent = &t;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST, env.request = &req;
  /* sdc_wire_pack would refuse nothing here (tensors are checked by the receiver): pack by hand all the same,
   * so a stricter sender cannot hide the case */
  env.version = SDC_PROTOCOL_VERSION;
  size_t n = sdcpb__envelope__get_packed_size(&env);
  uint8_t *buf = malloc(n);
  sdcpb__envelope__pack(&env, buf);
  send_raw(push, buf, n);
  free(buf);
  free(owned);
}

/* A raw TCP peer that completes the ZMTP 3.0 NULL handshake, then announces a frame of `announce` bytes.
 * ZeroMQ must close the connection (ZMQ_MAXMSGSIZE) without our code seeing anything. Returns 1 when the
 * peer hung up within 5 s. */
static int oversized_frame(int port, uint64_t announce, const char *socket_type) {
  int fd = tcp_connect(port);
  if (fd < 0) return 0;
  uint8_t greet[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
  uint8_t ready[64];
  size_t st = strlen(socket_type), k = 0;
  ready[k++] = 0x04; /* command, short */
  ready[k++] = (uint8_t)(6 + 1 + 11 + 4 + st);
  memcpy(ready + k, "\x05READY", 6), k += 6;
  ready[k++] = 11, memcpy(ready + k, "Socket-Type", 11), k += 11;
  ready[k++] = 0, ready[k++] = 0, ready[k++] = 0, ready[k++] = (uint8_t)st;
  memcpy(ready + k, socket_type, st), k += st;
  uint8_t frame[9 + 16] = {0x02}; /* message, long: 8-byte big-endian size */
  for (int i = 0; i < 8; i++) frame[1 + i] = (uint8_t)(announce >> (56 - 8 * i));
  memset(frame + 9, 'A', 16);
  int ok = write(fd, greet, sizeof greet) == (ssize_t)sizeof greet && write(fd, ready, k) == (ssize_t)k &&
           write(fd, frame, sizeof frame) == (ssize_t)sizeof frame;
  /* read the peer's greeting and READY, then expect EOF (or a reset) */
  uint8_t in[4096];
  ssize_t r = 1;
  double t0 = sdc_clock_mono_s();
  while (ok && r > 0 && sdc_clock_mono_s() - t0 < 5) r = read(fd, in, sizeof in);
  close(fd);
  return ok && r <= 0 && sdc_clock_mono_s() - t0 < 5;
}

/* Opens and drops n TCP connections; every fourth writes junk first. Returns how many connected. */
static int flood(int port, int n) {
  int connected = 0;
  for (int i = 0; i < n; i++) {
    int fd = tcp_connect(port);
    if (fd < 0) continue;
    connected++;
    if (i % 4 == 0) {
      static const char junk[] = "GET / HTTP/1.1\r\n\r\n\xff\x00\x01";
      if (write(fd, junk, sizeof junk) < 0) { /* a peer that hung up first is fine */
      }
    }
    close(fd);
  }
  return connected;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_sdc = argv[1];
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  snprintf(g_model, sizeof g_model, "%s/tiny-sd1", ref);
  if (access(g_model, R_OK) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  signal(SIGPIPE, SIG_IGN); /* flooded peers hang up on us */
  double t_start = sdc_clock_mono_s();
  g_tmp = sdc_test_tmpdir();
  snprintf(g_log, sizeof g_log, "%s/cluster.log", g_tmp);
  atexit(stop_all);

  int redis_port = sdc_test_free_port(), coord_port = sdc_test_free_port(), http_base;
  do /* the metrics range must hold neither port: they are not bound yet */
    http_base = free_port_range(1 + N_WORKERS);
  while (http_base > 0 && ((redis_port >= http_base && redis_port <= http_base + N_WORKERS) ||
                           (coord_port >= http_base && coord_port <= http_base + N_WORKERS)));
  CHECK(redis_port > 0 && coord_port > 0 && http_base > 0, "no free loopback ports");
  char port_s[16], url[64], coord_s[16], http_s[16];
  snprintf(port_s, sizeof port_s, "%d", redis_port);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_port);
  snprintf(coord_s, sizeof coord_s, "%d", coord_port);
  snprintf(http_s, sizeof http_s, "%d", http_base);
  char *rargv[] = {"/usr/bin/redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", (char *)g_tmp, NULL};
  g_redis = spawn_logged(rargv, NULL);
  for (int i = 0; i < 100 && !g_rc; i++) {
    sdc_clock_sleep_ms(50);
    g_rc = redisConnect("127.0.0.1", redis_port);
    if (g_rc && g_rc->err) redisFree(g_rc), g_rc = NULL;
  }
  CHECK(g_rc != NULL, "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_hostile");

  /* the workers' default thread count: under ThreadSanitizer (SDC_TSAN) their OpenMP regions are checked too */
  /* --insecure: the hostile peer here is one that reaches the sockets (a compromised host, or a cluster run in
   * plaintext); strangers without a key are test_security's, refused before any frame reaches our code */
  char *cargv[] = {(char *)g_sdc, "cluster", "--model", g_model, "--redis", url, "--port", coord_s, "--http-base", http_s,
                   "--insecure", NULL};
  g_cluster = spawn_logged(cargv, g_log);
  /* one worker per stage (a slow worker may register more than once: count stages, not lines) */
  static const char *const masks[N_WORKERS] = {"stages 0x2 at ", "stages 0x4 at ", "stages 0x8 at ", "stages 0x10 at ",
                                               "stages 0x20 at "};
  int registered = 0;
  for (int waited = 0; waited < 120000 && registered < N_WORKERS; waited += 100) {
    registered = 0;
    for (int i = 0; i < N_WORKERS; i++) registered += log_count(masks[i]) > 0;
    if (registered < N_WORKERS) sdc_clock_sleep_ms(100);
  }
  CHECK(registered == N_WORKERS, "only %d of %d stages registered within 120 s (see %s)", registered, N_WORKERS, g_log);
  if (registered < N_WORKERS) return sdc_test_finish("test_hostile");
  /* the VAE worker's data endpoint and id, from "worker vae-0 registered: stages 0x20 at tcp://..." */
  char line[8192], vae_ep[256] = "", vae_id[64] = "vae-0";
  if (log_first("registered: stages 0x20 at ", line, sizeof line))
    sscanf(strstr(line, " at ") + 4, "%255s", vae_ep);
  CHECK(vae_ep[0], "no VAE worker endpoint in %s", g_log);
  int vae_port = vae_ep[0] ? atoi(strrchr(vae_ep, ':') + 1) : 0;
  printf("cluster up in %.1f s: coordinator port %d, VAE worker at %s\n", sdc_clock_mono_s() - t_start, coord_port,
         vae_ep);

  double t_ok = normal_job("hostile-ok-0", 1);
  printf("normal job before: %.2f s\n", t_ok);

  /* 1. hostile job JSONs */
  hostile_job jobs[64];
  int n_jobs = make_jobs(jobs);
  for (int i = 0; i < n_jobs; i++) {
    redisReply *r = jobs[i].json ? redisCommand(g_rc, "XADD sdc:jobs * job %b", jobs[i].json, jobs[i].n)
                                 : redisCommand(g_rc, "XADD sdc:jobs * notjob %s", "{\"prompt\":\"x\"}");
    CHECK(r && r->type == REDIS_REPLY_STRING, "XADD %s failed", jobs[i].what);
    if (r && r->type == REDIS_REPLY_STRING) snprintf(jobs[i].entry, sizeof jobs[i].entry, "%s", r->str);
    if (r) freeReplyObject(r);
  }
  printf("%d hostile job JSONs:\n", n_jobs);
  check_dead_letters(jobs, n_jobs);
  for (int i = 0; i < n_jobs; i++) free(jobs[i].json);

  /* 2. frames at the coordinator's control port (a DEALER, as workers use) and the VAE worker's data port */
  double c_mal0 = metric(http_base, "sdc_frames_dropped_total", "reason=\"malformed\"");
  double c_ver0 = metric(http_base, "sdc_frames_dropped_total", "reason=\"version\"");
  double w_mal0 = metric(http_base + N_WORKERS, "sdc_frames_dropped_total", "reason=\"malformed\"");
  double w_bad0 = metric(http_base + N_WORKERS, "sdc_frames_dropped_total", "reason=\"bad_tensor\"");
  CHECK(c_mal0 >= 0 && c_ver0 >= 0 && w_mal0 >= 0 && w_bad0 >= 0,
        "sdc_frames_dropped_total missing from a /metrics scrape (ports %d, %d)", http_base, http_base + N_WORKERS);
  void *ctx = zmq_ctx_new(), *dealer = zmq_socket(ctx, ZMQ_DEALER), *push = zmq_socket(ctx, ZMQ_PUSH);
  char ep[128];
  snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", coord_port);
  int linger = 2000;
  zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
  CHECK(zmq_connect(dealer, ep) == 0 && zmq_connect(push, vae_ep) == 0, "connect: %s", zmq_strerror(zmq_errno()));
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = "stranger";
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT, env.heartbeat = &hb;
  uint8_t *good;
  size_t good_n;
  CHECK(sdc_wire_pack(&env, &good, &good_n) == SDC_OK, "pack heartbeat");
  int c_sent = send_junk(dealer, good, good_n), w_sent = send_junk(push, good, good_n);
  free(good);
  /* 200 MB of junk: under ZMQ_MAXMSGSIZE, so it reaches the decoder, which refuses it */
  size_t big_n = (size_t)200 << 20;
  uint8_t *big = malloc(big_n);
  CHECK(big != NULL, "no memory for a 200 MB frame");
  if (big) {
    memset(big, 0xff, big_n);
    send_raw(dealer, big, big_n);
    c_sent++;
    free(big);
  }
  for (int what = 0; what < 4; what++) send_bad_tensor(push, vae_id, vae_ep, what);
  /* frames announcing 4 GiB and ZMQ_MAXMSGSIZE + 1 bytes: ZeroMQ hangs up on the sender */
  int hung = oversized_frame(coord_port, (uint64_t)4 << 30, "DEALER") + oversized_frame(vae_port, (uint64_t)4 << 30, "PUSH") +
             oversized_frame(coord_port, (uint64_t)SDC_WIRE_MAX_MSG_BYTES + 1, "DEALER");
  CHECK(hung == 3, "only %d of 3 oversized-frame senders were disconnected", hung);
  /* a flood of connections opened and dropped */
  double t_flood = sdc_clock_mono_s();
  int c_conn = flood(coord_port, N_FLOOD), w_conn = flood(vae_port, N_FLOOD / 5);
  printf("flood: %d + %d connections opened and dropped in %.2f s\n", c_conn, w_conn, sdc_clock_mono_s() - t_flood);
  CHECK(c_conn >= N_FLOOD * 9 / 10, "only %d of %d connections to the coordinator's port went through", c_conn, N_FLOOD);

  /* counted: wait for the counters to catch up (metrics refresh on the loop) */
  double c_mal = 0, c_ver = 0, w_mal = 0, w_bad = 0;
  for (int waited = 0; waited < 15000; waited += 250) {
    c_mal = metric(http_base, "sdc_frames_dropped_total", "reason=\"malformed\"") - c_mal0;
    c_ver = metric(http_base, "sdc_frames_dropped_total", "reason=\"version\"") - c_ver0;
    w_mal = metric(http_base + N_WORKERS, "sdc_frames_dropped_total", "reason=\"malformed\"") - w_mal0;
    w_bad = metric(http_base + N_WORKERS, "sdc_frames_dropped_total", "reason=\"bad_tensor\"") - w_bad0;
    if (c_mal >= c_sent && c_ver >= 1 && w_mal >= w_sent && w_bad >= 4) break;
    sdc_clock_sleep_ms(250);
  }
  printf("dropped and counted: coordinator %.0f malformed (sent %d), %.0f version; VAE worker %.0f malformed (sent %d), "
         "%.0f bad tensors (sent 4)\n",
         c_mal, c_sent, c_ver, w_mal, w_sent, w_bad);
  CHECK(c_mal >= c_sent && c_ver >= 1, "coordinator counted %.0f malformed / %.0f version drops, sent %d / 1", c_mal, c_ver,
        c_sent);
  CHECK(w_mal >= w_sent && w_bad >= 4, "VAE worker counted %.0f malformed / %.0f bad tensors, sent %d / 4", w_mal, w_bad,
        w_sent);
  zmq_close(dealer), zmq_close(push);
  zmq_ctx_term(ctx);

  /* the log names the sender, and a flood does not flood the log */
  CHECK(log_count("control socket: dropped: frame from 127.0.0.1") >= 1, "no log line names the sender (see %s)", g_log);
  CHECK(log_count("data socket: dropped: frame from 127.0.0.1") >= 1, "no worker log line names the sender (see %s)",
        g_log);
  if (log_first("control socket: dropped: frame from", line, sizeof line)) printf("log: %s", line);
  if (log_first("data socket: dropped: frame from", line, sizeof line)) printf("log: %s", line);
  int drop_lines = log_count(": dropped: frame from ");
  CHECK(drop_lines <= 8 * SDC_WIRE_DROP_LOG_LINES, "%d log lines for dropped frames: the log is flooded", drop_lines);
  for (int what = 0; what < 4; what++) {
    char needle[64];
    snprintf(needle, sizeof needle, "hostile-tensor-%d", what);
    CHECK(log_count(needle) >= 1, "the failed request %s left no log line naming it (see %s)", needle, g_log);
  }

  /* nobody died, and the cluster still works */
  double t_after = normal_job("hostile-ok-1", 2);
  printf("normal job after: %.2f s\n", t_after);

  /* a normal job cancelled mid-denoise stops within one step (the contract in docs/jobs.md) */
  {
    redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s",
                                 "{\"id\":\"hostile-cancel\",\"prompt\":\"a long job\",\"steps\":500,"
                                 "\"scheduler\":\"euler\",\"seed\":3}");
    CHECK(r && r->type == REDIS_REPLY_STRING, "XADD hostile-cancel failed");
    if (r) freeReplyObject(r);
    long long step = -1;
    for (int waited = 0; waited < 30000 && step < 2; waited += 20) {
      char *v = hget("hostile-cancel", "step");
      step = v ? atoll(v) : -1;
      free(v);
      if (step < 2) sdc_clock_sleep_ms(20);
    }
    CHECK(step >= 2, "hostile-cancel never reached step 2 within 30 s");
    freeReplyObject(redisCommand(g_rc, "HSET sdc:job:hostile-cancel cancel 1"));
    freeReplyObject(redisCommand(g_rc, "PUBLISH sdc:job:hostile-cancel:control cancel"));
    char *v = hget("hostile-cancel", "step");
    long long at_cancel = v ? atoll(v) : -1;
    free(v);
    double t0 = sdc_clock_mono_s();
    char *st = NULL;
    while (sdc_clock_mono_s() - t0 < 20) {
      free(st);
      st = hget("hostile-cancel", "state");
      if (st && strcmp(st, "running") && strcmp(st, "queued")) break;
      sdc_clock_sleep_ms(20);
    }
    v = hget("hostile-cancel", "step");
    long long final_step = v ? atoll(v) : -1;
    free(v);
    printf("cancel at step %lld of 500: %s at step %lld, %.2f s later\n", at_cancel, st ? st : "(none)", final_step,
           sdc_clock_mono_s() - t0);
    CHECK(st && !strcmp(st, "cancelled"), "hostile-cancel ended '%s', not cancelled", st ? st : "(none)");
    CHECK(final_step >= 0 && final_step <= at_cancel + 1, "cancelled at step %lld, stopped at %lld: more than one step",
          at_cancel, final_step);
    free(st);
  }
  CHECK(log_count(") exited (") == 0, "a cluster process exited (see %s)", g_log);
  FILE *fp = fopen(g_log, "r");
  while (fp && fgets(line, sizeof line, fp))
    CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error"), "%s", line);
  if (fp) fclose(fp);

  kill(g_cluster, SIGTERM);
  int st = -1;
  for (int waited = 0; waited < 60000 && waitpid(g_cluster, &st, WNOHANG) != g_cluster; waited += 50) {
    st = -1;
    sdc_clock_sleep_ms(50);
  }
  CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sdc cluster did not stop cleanly (see %s)", g_log);
  if (st >= 0) g_cluster = 0;
  redisFree(g_rc);
  stop_all();
  printf("test_hostile: %.1f s\n", sdc_clock_mono_s() - t_start);
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  else printf("logs kept in %s\n", g_tmp);
  return sdc_test_finish("test_hostile");
}
