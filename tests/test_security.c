/* test_security.c - strangers and impostors against a CURVE cluster: a real redis-server, sdc-coordinator and two
 * sdc-workers on loopback with keys from `sdc keygen`, and an attacker made of libzmq sockets and the wire helpers.
 *
 * A stranger (a key not in the authorized file, or no CURVE at all) cannot register, take a worker's id, send a
 * heartbeat or a reply, or reach a worker's data socket. An authorized key that is not the worker's ("evil")
 * cannot take a worker's id or forge its heartbeats or a route's replies. A bf16 worker is refused by an fp32
 * coordinator; no refusal carries the coordinator's fingerprint. The fingerprint covers weights and precision.
 * Through all of it a job completes with pixels identical to `sdc generate`, and no worker is cut off. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "curve.h"
#include "model.h"
#include "pngio.h"
#include "test_util.h"
#include "wire.h"

extern char **environ;

static const char *g_bin, *g_tmp;
static char g_model[1024], g_keys[1100], g_clog[1100], g_alog[1100], g_blog[1100], g_coord_url[64], g_fp[64];
static pid_t g_redis, g_coord, g_wa, g_wb;
static redisContext *g_rc;
static void *g_zctx;

static pid_t spawn_logged(char **argv, const char *log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  CHECK(rc == 0, "cannot start %s", argv[0]);
  return rc == 0 ? pid : 0;
}

static void stop(pid_t *p) {
  if (*p > 0) kill(*p, SIGKILL), waitpid(*p, NULL, 0);
  *p = 0;
}

static void stop_all(void) {
  stop(&g_wa), stop(&g_wb), stop(&g_coord), stop(&g_redis);
}

static int log_count(const char *path, const char *needle) {
  FILE *fp = fopen(path, "r");
  char buf[8192];
  int n = 0;
  while (fp && fgets(buf, sizeof buf, fp)) n += strstr(buf, needle) != NULL;
  if (fp) fclose(fp);
  return n;
}

/* The first line of the log holding needle, copied into line; 0 when none. */
static int log_line(const char *path, const char *needle, char *line, size_t n) {
  FILE *fp = fopen(path, "r");
  char buf[8192];
  int found = 0;
  while (!found && fp && fgets(buf, sizeof buf, fp))
    if (strstr(buf, needle)) snprintf(line, n, "%s", buf), found = 1;
  if (fp) fclose(fp);
  return found;
}

static int wait_log(const char *path, const char *needle, int at_least, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (log_count(path, needle) >= at_least) return 1;
    sdc_clock_sleep_ms(50);
  }
  return log_count(path, needle) >= at_least;
}

static void read_key(const char *name, const char *ext, char out[SDC_CURVE_Z85]) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s.%s", g_keys, name, ext);
  CHECK(sdc_curve_read_key(p, out) == 0, "%s unreadable", p);
}

/* A socket of `type` to endpoint: a CURVE client with (pub, sec) of the server server_pub, or plaintext when
 * pub is NULL; a routing id when rid is given. */
static void *attacker(int type, const char *endpoint, const char *rid, const char *pub, const char *sec,
                      const char *server_pub) {
  void *s = zmq_socket(g_zctx, type);
  sdc_zmq_configure(s);
  if (rid) zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
  if (pub) {
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
  }
  CHECK(zmq_connect(s, endpoint) == 0, "connect %s", endpoint);
  return s;
}

/* The next envelope on s within ms, or NULL. */
static Sdcpb__Envelope *recv_within(void *s, int ms) {
  for (int waited = 0; waited <= ms; waited += 20) {
    Sdcpb__Envelope *env;
    int err = sdc_zmq_recv(s, &env, NULL, 0, NULL);
    if (err == 0) return env;
    sdc_clock_sleep_ms(20);
  }
  return NULL;
}

static void send_register(void *s, const char *id, const char *fp, const char *endpoint) {
  Sdcpb__Stage st[] = {SDCPB__STAGE__TEXT};
  Sdcpb__Register r = SDCPB__REGISTER__INIT;
  r.worker_id = (char *)id, r.model_fingerprint = (char *)fp, r.data_endpoint = (char *)endpoint;
  r.n_stages = 1, r.stages = st;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER, env.register_ = &r;
  sdc_zmq_send(s, NULL, 0, &env, ZMQ_DONTWAIT);
}

static void send_heartbeat(void *s, const char *id, int draining, int deregister) {
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = (char *)id, hb.draining = draining, hb.deregister = deregister;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT, env.heartbeat = &hb;
  sdc_zmq_send(s, NULL, 0, &env, ZMQ_DONTWAIT);
}

/* Forged replies for request ids 1..n of job_id: a UNet prediction of zeros and a VAE "image". */
static void send_replies(void *s, const char *job_id, int n) {
  for (int k = 1; k <= n; k++) {
    Sdcpb__StageReply rep = SDCPB__STAGE_REPLY__INIT;
    rep.job_id = (char *)job_id, rep.request_id = (uint64_t)k;
    ProtobufCBinaryData img = {.len = 8, .data = (uint8_t *)"notapng!"};
    if (k % 2) {
      rep.stage = SDCPB__STAGE__VAE, rep.n_images = 1, rep.images = &img;
    } else {
      rep.stage = SDCPB__STAGE__UNET_UP;
    }
    Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
    env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &rep;
    sdc_zmq_send(s, NULL, 0, &env, ZMQ_DONTWAIT);
  }
}

/* A text request for `wid` at endpoint, to be answered to the coordinator. */
static void send_request(void *s, const char *job_id, const char *wid, const char *endpoint) {
  Sdcpb__Hop hop = SDCPB__HOP__INIT, *hp = &hop;
  hop.stage = SDCPB__STAGE__TEXT, hop.worker_id = (char *)wid, hop.endpoint = (char *)endpoint;
  char *prompts[] = {"a stranger's prompt"};
  Sdcpb__StageRequest r = SDCPB__STAGE_REQUEST__INIT;
  r.job_id = (char *)job_id, r.request_id = 424242, r.n_route = 1, r.route = &hp;
  r.deadline_unix_ms = sdc_clock_unix_ms() + 60000; /* a worker drops a request without a deadline */
  r.n_prompts = 1, r.prompts = prompts, r.wire_dtype = SDCPB__DTYPE__F32;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST, env.request = &r;
  sdc_zmq_send(s, NULL, 0, &env, ZMQ_DONTWAIT);
}

static void close_all(void **s, int n) {
  for (int i = 0; i < n; i++) {
    int zero = 0;
    zmq_setsockopt(s[i], ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(s[i]);
  }
}

/* A sample of the coordinator's /metrics (its --http on 127.0.0.1:port), e.g.
 * sdc_frames_dropped_total{reason="sender"}; -1 when unreadable. */
static double metric(int port, const char *series) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  static char resp[1 << 20];
  size_t got = 0;
  ssize_t r;
  const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1))
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
  close(fd);
  resp[got] = 0;
  char needle[256];
  snprintf(needle, sizeof needle, "\n%s ", series);
  const char *p = strstr(resp, needle);
  return p ? atof(p + strlen(needle)) : -1;
}

static char *hget(const char *id, const char *field) {
  redisReply *r = redisCommand(g_rc, "HGET sdc:job:%s %s", id, field);
  char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
  if (r) freeReplyObject(r);
  return v;
}

/* The fingerprint changes with any weight byte and with the precision. */
static void check_fingerprint(void) {
  sdc_model m;
  char a[64] = "", b[64] = "", c[64] = "";
  CHECK(sdc_model_open(&m, g_model, NULL) == 0, "open %s", g_model);
  CHECK(sdc_model_fingerprint(&m, "fp32", a, sizeof a) == 0, "fingerprint fp32");
  CHECK(sdc_model_fingerprint(&m, "bf16", b, sizeof b) == 0, "fingerprint bf16");
  sdc_model_close(&m);
  CHECK(strcmp(a, b) != 0, "fp32 and bf16 share fingerprint %s", a);
  /* a copy with one byte of the VAE's last weight changed */
  char copy[1200], cmd[4096], err[512];
  snprintf(copy, sizeof copy, "%s/model-copy", g_tmp);
  snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && printf '\\x5a' | dd of='%s/vae/diffusion_pytorch_model.safetensors' bs=1 "
           "seek=$(( $(stat -c %%s '%s/vae/diffusion_pytorch_model.safetensors') - 2 )) conv=notrunc status=none",
           g_model, copy, copy, copy);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "copying the model: %s", err);
  CHECK(sdc_model_open(&m, copy, NULL) == 0, "open %s", copy);
  CHECK(sdc_model_fingerprint(&m, "fp32", c, sizeof c) == 0, "fingerprint of the copy");
  sdc_model_close(&m);
  CHECK(strcmp(a, c) != 0, "a changed weight byte keeps fingerprint %s", a);
  printf("fingerprint: %s; bf16 %s; one weight byte changed %s\n", a, b, c);
}

/* Without keys, a non-loopback bind needs --insecure. */
static void check_plaintext_guard(void) {
  char cmd[4096], err[2048];
  snprintf(cmd, sizeof cmd, "'%s/sdc-coordinator' --model '%s' --bind tcp://0.0.0.0:%d --redis redis://127.0.0.1:1", g_bin,
           g_model, sdc_test_free_port());
  int rc = sdc_test_run(cmd, err, sizeof err);
  CHECK(rc == 2 && strstr(err, "--insecure") && sdc_test_lines(err) == 1,
        "coordinator on 0.0.0.0 without keys: exit %d, %s", rc, err);
  snprintf(cmd, sizeof cmd, "'%s/sdc-worker' --model '%s' --stage vae --coordinator tcp://127.0.0.1:1 --bind tcp://0.0.0.0:*",
           g_bin, g_model);
  rc = sdc_test_run(cmd, err, sizeof err);
  CHECK(rc == 2 && strstr(err, "--insecure") && sdc_test_lines(err) == 1, "worker on 0.0.0.0 without keys: exit %d, %s",
        rc, err);
}

/* Bad key files (the k8s placeholder, a bad authorized line) stop a process with one line naming the file. */
static void check_bad_keys(void) {
  char bad[1200], badauth[1200], cmd[4096], err[2048];
  snprintf(bad, sizeof bad, "%s/placeholder.key", g_tmp);
  snprintf(badauth, sizeof badauth, "%s/bad-authorized", g_tmp);
  FILE *fp = fopen(bad, "w");
  if (fp) fputs("replace-me-with-sdc-keygen\n", fp), fclose(fp);
  fp = fopen(badauth, "w");
  if (fp) fputs("# a comment\nnot-a-key coordinator\n", fp), fclose(fp);
  snprintf(cmd, sizeof cmd, "'%s/sdc-coordinator' --model '%s' --curve-key '%s' --curve-authorized '%s/keys/authorized'",
           g_bin, g_model, bad, g_tmp);
  int rc = sdc_test_run(cmd, err, sizeof err);
  CHECK(rc == 2 && strstr(err, bad) && sdc_test_lines(err) == 1, "placeholder key: exit %d, %s", rc, err);
  snprintf(cmd, sizeof cmd, "'%s/sdc-worker' --model '%s' --stage vae --coordinator tcp://127.0.0.1:1 --curve-key "
           "'%s/keys/wA.key' --curve-authorized '%s'", g_bin, g_model, g_tmp, badauth);
  rc = sdc_test_run(cmd, err, sizeof err);
  CHECK(rc == 2 && strstr(err, ":2: expected") && sdc_test_lines(err) == 1, "bad authorized line: exit %d, %s", rc, err);
}

/* The job's image against `sdc generate` with the same parameters: every RGB byte equal. */
static void compare_with_generate(const char *id, const char *prompt, int steps, int seed) {
  char cmd[4096], err[4096], gen[1100], got[1100];
  snprintf(gen, sizeof gen, "%s/%s-gen.png", g_tmp, id);
  snprintf(got, sizeof got, "%s/%s-cluster.png", g_tmp, id);
  char *w = hget(id, "width"), *h = hget(id, "height");
  snprintf(cmd, sizeof cmd,
           "'%s/sdc' generate --quiet --model '%s' --prompt '%s' --width %s --height %s --steps %d --seed %d "
           "--scheduler euler --output '%s'",
           g_bin, g_model, prompt, w ? w : "0", h ? h : "0", steps, seed, gen);
  free(w), free(h);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "sdc generate failed: %s", err);
  redisReply *r = redisCommand(g_rc, "GET sdc:job:%s:image:0", id);
  CHECK(r && r->type == REDIS_REPLY_STRING, "%s: image missing in Redis", id);
  if (r && r->type == REDIS_REPLY_STRING) {
    FILE *fp = fopen(got, "wb");
    fwrite(r->str, 1, r->len, fp);
    fclose(fp);
  }
  if (r) freeReplyObject(r);
  uint8_t *a = NULL, *b = NULL;
  int64_t wa = 0, ha = 0, wb = 0, hb = 0;
  int ea = sdc_png_read(got, &a, &wa, &ha, NULL), eb = sdc_png_read(gen, &b, &wb, &hb, NULL);
  CHECK(!ea && !eb && wa == wb && ha == hb, "%s: unreadable image or sizes differ", id);
  if (!ea && !eb && wa == wb && ha == hb) {
    int64_t diff = 0;
    for (int64_t k = 0; k < wa * ha * 3; k++) diff += a[k] != b[k];
    CHECK(diff == 0, "%s: %lld bytes differ from sdc generate", id, (long long)diff);
    printf("%s under attack: %lldx%lld, identical to sdc generate: %s\n", id, (long long)wa, (long long)ha,
           diff ? "NO" : "yes");
  }
  free(a), free(b);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_bin = argv[1]; /* the folder of sdc, sdc-coordinator, sdc-worker */
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("reference folder not found (set SDC_REF)");
  snprintf(g_model, sizeof g_model, "%s/tiny-sd1", ref);
  if (access(g_model, R_OK) != 0) sdc_test_skip("no tiny-sd1 in the reference folder");
  if (access("/usr/bin/redis-server", X_OK) != 0) sdc_test_skip("redis-server not installed");
  if (!zmq_has("curve")) sdc_test_skip("libzmq without CURVE");
  const int64_t t_start = sdc_clock_mono_ms();
  g_tmp = sdc_test_tmpdir();
  atexit(stop_all);
  g_zctx = zmq_ctx_new();
  check_fingerprint();
  check_plaintext_guard();

  /* keys: the coordinator, two workers, an authorized impostor and a bf16 worker; "stranger" is not authorized */
  char cmd[4096], err[2048];
  snprintf(g_keys, sizeof g_keys, "%s/keys", g_tmp);
  snprintf(cmd, sizeof cmd, "'%s/sdc' keygen --out '%s' --name coordinator --name wA --name wB --name evil --name wbf16",
           g_bin, g_keys);
  CHECK(sdc_test_run(cmd, err, sizeof err) == 0, "sdc keygen: %s", err);
  char stranger_pub[41], stranger_sec[41], coord_pub[41], evil_pub[41], evil_sec[41], wa_pub[41];
  zmq_curve_keypair(stranger_pub, stranger_sec);
  read_key("coordinator", "pub", coord_pub);
  read_key("evil", "pub", evil_pub), read_key("evil", "key", evil_sec), read_key("wA", "pub", wa_pub);
  check_bad_keys();

  /* redis, the coordinator, worker wA (text, unet-down, unet-mid) and wB (unet-up, vae): down -> mid is local to
   * wA, mid -> up crosses to wB over CURVE */
  int rport = sdc_test_free_port(), cport = sdc_test_free_port(), hport = sdc_test_free_port();
  char http_arg[32];
  snprintf(http_arg, sizeof http_arg, "127.0.0.1:%d", hport);
  char rport_s[16], redis_url[64], auth[1200], ckey[1200], akey[1200], bkey[1200];
  snprintf(rport_s, sizeof rport_s, "%d", rport);
  snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", rport);
  snprintf(g_coord_url, sizeof g_coord_url, "tcp://127.0.0.1:%d", cport);
  snprintf(auth, sizeof auth, "%s/authorized", g_keys);
  snprintf(ckey, sizeof ckey, "%s/coordinator.key", g_keys);
  snprintf(akey, sizeof akey, "%s/wA.key", g_keys);
  snprintf(bkey, sizeof bkey, "%s/wB.key", g_keys);
  snprintf(g_clog, sizeof g_clog, "%s/coordinator.log", g_tmp);
  snprintf(g_alog, sizeof g_alog, "%s/wA.log", g_tmp);
  snprintf(g_blog, sizeof g_blog, "%s/wB.log", g_tmp);
  char rlog[1200], coord_bin[1200], worker_bin[1200];
  snprintf(rlog, sizeof rlog, "%s/redis.log", g_tmp);
  snprintf(coord_bin, sizeof coord_bin, "%s/sdc-coordinator", g_bin);
  snprintf(worker_bin, sizeof worker_bin, "%s/sdc-worker", g_bin);
  char *rargv[] = {"/usr/bin/redis-server", "--port", rport_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", (char *)g_tmp, NULL};
  g_redis = spawn_logged(rargv, rlog);
  for (int i = 0; i < 100 && !g_rc; i++) {
    sdc_clock_sleep_ms(50);
    g_rc = redisConnect("127.0.0.1", rport);
    if (g_rc && g_rc->err) redisFree(g_rc), g_rc = NULL;
  }
  CHECK(g_rc != NULL, "redis-server did not come up");
  if (!g_rc) return sdc_test_finish("test_security");
  char *cargv[] = {coord_bin, "--model", g_model, "--redis", redis_url, "--bind", g_coord_url, "--curve-key", ckey,
                   "--curve-authorized", auth, "--id", "coord", "--http", http_arg, NULL};
  g_coord = spawn_logged(cargv, g_clog);
  char *aargv[] = {worker_bin, "--stage", "text,unet-down,unet-mid", "--model", g_model, "--coordinator", g_coord_url,
                   "--id", "wA", "--curve-key", akey, "--curve-authorized", auth, NULL};
  char *bargv[] = {worker_bin, "--stage", "unet-up,vae", "--model", g_model, "--coordinator", g_coord_url, "--id", "wB",
                   "--curve-key", bkey, "--curve-authorized", auth, NULL};
  g_wa = spawn_logged(aargv, g_alog);
  g_wb = spawn_logged(bargv, g_blog);
  int up = wait_log(g_clog, "worker wA registered", 1, 60000) && wait_log(g_clog, "worker wB registered", 1, 60000);
  CHECK(up, "the workers did not register within 60 s (see %s)", g_tmp);
  if (!up) return sdc_test_finish("test_security");
  CHECK(log_count(g_clog, "WARNING: plaintext") == 0, "the coordinator runs plaintext with keys");
  char line[8192], a_endpoint[256] = "";
  if (log_line(g_clog, "fingerprint of ", line, sizeof line)) {
    const char *p = strstr(line, "): ");
    if (p) snprintf(g_fp, sizeof g_fp, "%.*s", (int)strcspn(p + 3, ","), p + 3);
  }
  CHECK(strlen(g_fp) >= 16, "no fingerprint in the coordinator's log");
  if (log_line(g_alog, "serving ", line, sizeof line)) {
    const char *p = strstr(line, " on ");
    if (p) snprintf(a_endpoint, sizeof a_endpoint, "%.*s", (int)strcspn(p + 4, " "), p + 4);
  }
  CHECK(strncmp(a_endpoint, "tcp://", 6) == 0, "no data endpoint in wA's log");

  /* 1. strangers at the coordinator: register (also under wA's id), heartbeat for wA, no answer at all */
  void *st[4];
  st[0] = attacker(ZMQ_DEALER, g_coord_url, "stranger-1", stranger_pub, stranger_sec, coord_pub);
  st[1] = attacker(ZMQ_DEALER, g_coord_url, "stranger-2", NULL, NULL, NULL); /* plaintext */
  st[2] = attacker(ZMQ_DEALER, g_coord_url, "wA", stranger_pub, stranger_sec, coord_pub);
  st[3] = attacker(ZMQ_DEALER, g_coord_url, "wB", NULL, NULL, NULL);
  send_register(st[0], "stranger-1", g_fp, "tcp://127.0.0.1:1");
  send_register(st[1], "stranger-2", g_fp, "tcp://127.0.0.1:1");
  send_register(st[2], "wA", g_fp, "tcp://127.0.0.1:1");
  send_register(st[3], "wB", g_fp, "tcp://127.0.0.1:1");
  for (int i = 0; i < 4; i++) send_heartbeat(st[i], i % 2 ? "wB" : "wA", 1, i == 3);
  for (int i = 0; i < 4; i++) {
    Sdcpb__Envelope *env = recv_within(st[i], i ? 200 : 1500);
    CHECK(!env, "stranger %d got an answer from the coordinator (body %d)", i, env ? (int)env->body_case : 0);
    if (env) sdc_wire_free(env);
  }
  CHECK(wait_log(g_clog, "refused a connection from", 1, 3000), "the coordinator logged no refused connection");
  CHECK(log_count(g_clog, "stranger-") == 0, "a stranger's message reached the coordinator");

  /* 2. strangers at wA's data socket: a text request never arrives. The same from an authorized key does (its
   * answer reaches the coordinator as a late reply), so it is the key that stops the stranger */
  void *dp[3];
  dp[0] = attacker(ZMQ_PUSH, a_endpoint, NULL, stranger_pub, stranger_sec, wa_pub);
  dp[1] = attacker(ZMQ_PUSH, a_endpoint, NULL, NULL, NULL, NULL);
  dp[2] = attacker(ZMQ_PUSH, a_endpoint, NULL, evil_pub, evil_sec, wa_pub);
  send_request(dp[0], "stranger-job", "wA", a_endpoint);
  send_request(dp[1], "stranger-job", "wA", a_endpoint);
  send_request(dp[2], "control-job", "wA", a_endpoint);
  CHECK(wait_log(g_clog, "job control-job", 1, 10000), "an authorized key's request never reached wA (control)");
  sdc_clock_sleep_ms(500);
  CHECK(log_count(g_alog, "stranger-job") == 0 && log_count(g_clog, "stranger-job") == 0,
        "a stranger's request reached wA");
  CHECK(log_count(g_alog, "refused a connection from") >= 1, "wA logged no refused connection");

  /* 3. an authorized impostor: its refusals do not carry the fingerprint; it cannot take wA's id or speak for it */
  void *ev[4];
  ev[0] = attacker(ZMQ_DEALER, g_coord_url, "evil-1", evil_pub, evil_sec, coord_pub);
  send_register(ev[0], "evil-1", "0123456789abcdef-fp32", "tcp://127.0.0.1:1");
  Sdcpb__Envelope *env = recv_within(ev[0], 3000);
  CHECK(env && env->body_case == SDCPB__ENVELOPE__BODY_WELCOME && !env->welcome->accepted,
        "a wrong fingerprint was not refused");
  if (env && env->body_case == SDCPB__ENVELOPE__BODY_WELCOME) {
    char fp8[9];
    snprintf(fp8, sizeof fp8, "%s", g_fp);
    CHECK(!strstr(env->welcome->reason, fp8), "the refusal discloses the fingerprint: %s", env->welcome->reason);
    printf("refusal seen by a worker with another model: \"%s\"\n", env->welcome->reason);
  }
  if (env) sdc_wire_free(env);
  ev[1] = attacker(ZMQ_DEALER, g_coord_url, "evil-2", evil_pub, evil_sec, coord_pub);
  send_heartbeat(ev[1], "wA", 1, 0);
  send_heartbeat(ev[1], "wB", 0, 1);
  /* wA's routing id while wA is connected: the ROUTER refuses the second connection (no hand-over with CURVE) */
  ev[2] = attacker(ZMQ_DEALER, g_coord_url, "wA", evil_pub, evil_sec, coord_pub);
  send_register(ev[2], "wA", g_fp, "tcp://127.0.0.1:1");
  send_heartbeat(ev[2], "wA", 1, 0);
  ev[3] = attacker(ZMQ_DEALER, g_coord_url, "evil-3", evil_pub, evil_sec, coord_pub);
  send_register(ev[3], "wA", g_fp, "tcp://127.0.0.1:1");
  env = recv_within(ev[2], 1500);
  CHECK(!env, "a second connection under wA's routing id got an answer (body %d)", env ? (int)env->body_case : 0);
  if (env) sdc_wire_free(env);
  CHECK(wait_log(g_clog, "dropped a heartbeat naming worker wA", 1, 5000), "evil's heartbeat for wA was not dropped");
  CHECK(wait_log(g_clog, "dropped a heartbeat naming worker wB", 1, 5000), "evil's deregistration of wB was not dropped");
  CHECK(wait_log(g_clog, "refused worker evil-3 (key 'evil'", 1, 5000), "evil's registration as wA was not refused");
  close_all(ev, 4);

  /* a worker without keys against the CURVE coordinator: the handshake fails, and the worker says so */
  char plog[1200];
  snprintf(plog, sizeof plog, "%s/wplain.log", g_tmp);
  char *pargv[] = {worker_bin, "--stage", "vae", "--model", g_model, "--coordinator", g_coord_url, "--id", "wplain", NULL};
  pid_t plain = spawn_logged(pargv, plog);

  /* 4. a job under a storm of forged replies from a stranger and the impostor */
  const char *id = "sec-job", *prompt = "a locked door";
  const int steps = 12, seed = 4242;
  char json[512];
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"%s\",\"steps\":%d,\"seed\":%d,\"scheduler\":\"euler\"}", id,
           prompt, steps, seed);
  redisReply *r = redisCommand(g_rc, "XADD sdc:jobs * job %s", json);
  CHECK(r && r->type == REDIS_REPLY_STRING, "XADD failed");
  if (r) freeReplyObject(r);
  void *fr[2];
  fr[0] = attacker(ZMQ_DEALER, g_coord_url, "forger-1", stranger_pub, stranger_sec, coord_pub);
  fr[1] = attacker(ZMQ_DEALER, g_coord_url, "forger-2", evil_pub, evil_sec, coord_pub);
  char *state = NULL;
  for (int waited = 0; waited < 60000; waited += 20) {
    free(state);
    state = hget(id, "state");
    if (state && (!strcmp(state, "done") || !strcmp(state, "failed"))) break;
    if (state && !strcmp(state, "running")) send_replies(fr[waited / 20 % 2], id, 32);
    sdc_clock_sleep_ms(20);
  }
  close_all(fr, 2);
  CHECK(state && !strcmp(state, "done"), "the job ended %s under forged replies (see %s)", state ? state : "(none)", g_tmp);
  if (state && !strcmp(state, "done")) compare_with_generate(id, prompt, steps, seed);
  free(state);
  int forged = log_count(g_clog, "not a worker of its route");
  CHECK(forged >= 1, "no forged reply was dropped as one (see %s)", g_clog);
  CHECK(log_count(g_clog, "forger-1") == 0, "the stranger's replies reached the coordinator");
  printf("forged replies dropped by sender (impostor): %d log lines\n", forged);
  /* every drop is counted, by reason */
  const double m_sender = metric(hport, "sdc_frames_dropped_total{reason=\"sender\"}"),
               m_unauth = metric(hport, "sdc_frames_dropped_total{reason=\"unauthorized\"}"),
               m_refused = metric(hport, "sdc_frames_dropped_total{reason=\"refused\"}");
  CHECK(m_sender >= forged + 2 && m_unauth >= 3 && m_refused >= 2,
        "coordinator's sdc_frames_dropped_total: sender %g (>= %d), unauthorized %g (>= 3), refused %g (>= 2)", m_sender,
        forged + 2, m_unauth, m_refused);
  printf("coordinator sdc_frames_dropped_total: sender %g, unauthorized %g, refused %g\n", m_sender, m_unauth, m_refused);

  CHECK(wait_log(plog, "no answer from coordinator", 1, 20000) && log_count(plog, "WARNING: plaintext") == 1,
        "a plaintext worker facing a CURVE coordinator did not say why it gets no answer (see %s)", plog);
  CHECK(log_count(g_clog, "worker wplain registered") == 0, "a plaintext worker registered with a CURVE coordinator");
  stop(&plain);

  /* 5. a bf16 worker joins an fp32 coordinator: refused, without our fingerprint */
  char bflog[1200], bfkey[1200];
  snprintf(bflog, sizeof bflog, "%s/wbf16.log", g_tmp);
  snprintf(bfkey, sizeof bfkey, "%s/wbf16.key", g_keys);
  char *fargv[] = {worker_bin, "--stage", "vae", "--model", g_model, "--coordinator", g_coord_url, "--id", "wbf16",
                   "--precision", "bf16", "--curve-key", bfkey, "--curve-authorized", auth, NULL};
  pid_t bf = spawn_logged(fargv, bflog);
  int refused = 0;
  for (int waited = 0; waited < 30000 && !(refused = log_count(bflog, "registration refused")); waited += 100) {
    int stw;
    if (waitpid(bf, &stw, WNOHANG) == bf) {
      bf = 0;
      break;
    }
    sdc_clock_sleep_ms(100);
  }
  if (!bf && !refused) {
    printf("SKIP (part): sdc-worker --precision bf16 exited before registering (a CPU without bf16?): %s",
           log_line(bflog, "bf16", line, sizeof line) ? line : "(no log)\n");
  } else {
    CHECK(refused, "the bf16 worker was not refused (see %s)", bflog);
    CHECK(log_count(g_clog, "worker wbf16 registered") == 0, "the bf16 worker registered");
    char fp8[9];
    snprintf(fp8, sizeof fp8, "%s", g_fp);
    if (log_line(bflog, "registration refused", line, sizeof line)) {
      CHECK(!strstr(line, fp8), "the bf16 worker's refusal discloses the fingerprint: %s", line);
      printf("bf16 worker: %s", strstr(line, "registration refused"));
    }
    stop(&bf);
  }

  /* nobody was cut off: each worker registered once and was never declared dead */
  CHECK(log_count(g_clog, "worker wA registered") == 1 && log_count(g_clog, "worker wB registered") == 1,
        "a worker registered more than once (cut off?)");
  CHECK(log_count(g_clog, " is dead (no heartbeat") == 0 && log_count(g_clog, "is draining") == 0 &&
            log_count(g_clog, "deregistered") == 0,
        "a forged heartbeat took effect (see %s)", g_clog);

  /* 6. wA dies; before the coordinator expires it, the impostor takes its free routing id and registers as wA:
   * refused, the id stays bound to wA's key. The restarted wA (same key) is welcomed back */
  stop(&g_wa);
  sdc_clock_sleep_ms(300); /* its TCP connection closes: the routing id is free */
  /* tries until the ROUTER has let go of wA's dead connection (a second one under a live id is refused), within
   * the 3.5 s before the coordinator expires wA */
  env = NULL;
  for (int64_t t0 = sdc_clock_mono_ms(); !env && sdc_clock_mono_ms() - t0 < 2500;) {
    void *im = attacker(ZMQ_DEALER, g_coord_url, "wA", evil_pub, evil_sec, coord_pub);
    send_register(im, "wA", g_fp, "tcp://127.0.0.1:1");
    env = recv_within(im, 600);
    close_all(&im, 1);
  }
  CHECK(env && env->body_case == SDCPB__ENVELOPE__BODY_WELCOME && !env->welcome->accepted &&
            strstr(env->welcome->reason, "held by another key"),
        "the impostor was not refused wA's id");
  if (env && env->body_case == SDCPB__ENVELOPE__BODY_WELCOME) printf("impostor as wA: \"%s\"\n", env->welcome->reason);
  if (env) sdc_wire_free(env);
  g_wa = spawn_logged(aargv, g_alog);
  CHECK(wait_log(g_clog, "worker wA registered", 2, 60000), "the restarted wA was not welcomed back (see %s)", g_clog);
  close_all(st, 4);
  close_all(dp, 3);
  zmq_ctx_term(g_zctx);
  redisFree(g_rc);
  stop_all();
  printf("test_security: %lld ms\n", (long long)(sdc_clock_mono_ms() - t_start));
  if (!sdc_test_failures) sdc_test_rmtree(g_tmp);
  else printf("logs kept in %s\n", g_tmp);
  return sdc_test_finish("test_security");
}
