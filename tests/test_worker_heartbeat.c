/* test_worker_heartbeat.c - sdc-worker against a fake coordinator: it beats at Welcome.heartbeat_ms once welcomed,
 * and a period outside SDC_MIN_HEARTBEAT_MS..SDC_MAX_HEARTBEAT_MS is logged and ignored. Its drain: on SIGTERM it
 * says so at once, computes a request that arrives after that (the coordinator had not seen the drain yet), and
 * deregisters and exits 0 only once the coordinator says nothing is routed through it. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "error.h"
#include "test_util.h"
#include "wire.h"

extern char **environ;

/* The next envelope from the worker within timeout_ms, or NULL. */
static Sdcpb__Envelope *recv_within(void *router, int64_t timeout_ms, uint8_t *id, size_t *id_n) {
  int64_t end = sdc_clock_mono_ms() + timeout_ms;
  for (int64_t left; (left = end - sdc_clock_mono_ms()) > 0;) {
    zmq_pollitem_t pi = {router, 0, ZMQ_POLLIN, 0};
    zmq_poll(&pi, 1, (long)left);
    Sdcpb__Envelope *env;
    if (sdc_zmq_recv(router, &env, id, 128, id_n) == SDC_OK) return env;
  }
  return NULL;
}

static int count_heartbeats(void *router, int64_t ms) {
  int n = 0;
  uint8_t id[128];
  size_t id_n;
  int64_t end = sdc_clock_mono_ms() + ms;
  for (int64_t left; (left = end - sdc_clock_mono_ms()) > 0;) {
    Sdcpb__Envelope *env = recv_within(router, left, id, &id_n);
    if (!env) break;
    n += env->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT;
    sdc_wire_free(env);
  }
  return n;
}

static void welcome(void *router, const uint8_t *id, size_t id_n, uint32_t heartbeat_ms) {
  Sdcpb__Welcome wel = SDCPB__WELCOME__INIT;
  wel.coordinator_id = "fake", wel.accepted = 1, wel.heartbeat_ms = heartbeat_ms;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_WELCOME;
  env.welcome = &wel;
  CHECK(sdc_zmq_send(router, id, id_n, &env, 0) == SDC_OK, "send Welcome");
}

/* The coordinator's answer to a draining worker: `routed` requests through it still unanswered. */
static void drain_status(void *router, const uint8_t *id, size_t id_n, uint32_t routed) {
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = "hb-test", hb.in_flight = routed, hb.draining = 1;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT;
  env.heartbeat = &hb;
  CHECK(sdc_zmq_send(router, id, id_n, &env, 0) == SDC_OK, "send the drain status");
}

/* A one-hop VAE request (request id 77) for a 16x16 latent of zeros. */
static void send_vae_request(void *push, const char *endpoint) {
  static float z[4 * 16 * 16];
  void *owned = NULL;
  Sdcpb__Tensor lat = SDCPB__TENSOR__INIT;
  CHECK(sdc_wire_tensor_set(&lat, z, 4, (int64_t[]){1, 4, 16, 16}, SDCPB__DTYPE__F32, &owned) == SDC_OK, "latent");
  Sdcpb__Hop hop = SDCPB__HOP__INIT, *hp = &hop;
  hop.stage = SDCPB__STAGE__VAE, hop.worker_id = "hb-test", hop.endpoint = (char *)endpoint;
  char *text = "late";
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "late-job", req.request_id = 77, req.n_route = 1, req.route = &hp, req.hop = 0;
  req.wire_dtype = SDCPB__DTYPE__F32, req.latent = &lat, req.n_png_text = 1, req.png_text = &text;
  req.deadline_unix_ms = sdc_clock_unix_ms() + 60000; /* a request without one is dropped */
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  env.request = &req;
  CHECK(sdc_zmq_send(push, NULL, 0, &env, 0) == SDC_OK, "send the late request");
  free(owned);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("no reference folder (SDC_REF)");
  const char *tmp = sdc_test_tmpdir();
  char model[1024], log[1024], url[64];
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  snprintf(log, sizeof log, "%s/worker.log", tmp);
  void *zctx = zmq_ctx_new(), *router = zmq_socket(zctx, ZMQ_ROUTER);
  sdc_zmq_configure(router);
  int port = sdc_test_free_port();
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
  CHECK(zmq_bind(router, url) == 0, "bind %s", url);
  char *wargv[] = {argv[1], "--stage", "vae", "--model", model, "--coordinator", url, "--id", "hb-test", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  CHECK(posix_spawn(&pid, argv[1], &fa, NULL, wargv, environ) == 0, "cannot start %s", argv[1]);
  posix_spawn_file_actions_destroy(&fa);

  uint8_t id[128];
  size_t id_n = 0;
  char data_ep[256] = "";
  Sdcpb__Envelope *env = NULL;
  for (int64_t end = sdc_clock_mono_ms() + 60000; !env && sdc_clock_mono_ms() < end;) {
    env = recv_within(router, 1000, id, &id_n);
    if (env && env->body_case != SDCPB__ENVELOPE__BODY_REGISTER) sdc_wire_free(env), env = NULL;
  }
  CHECK(env, "no Register from the worker within 60 s (see %s)", log);
  if (env) {
    snprintf(data_ep, sizeof data_ep, "%s", env->register_->data_endpoint);
    sdc_wire_free(env);
    /* welcomed at 100 ms: about 10 beats a second where the default period gives 1 */
    welcome(router, id, id_n, 100);
    count_heartbeats(router, 300); /* the old period's beat may still be due */
    int n = count_heartbeats(router, 1000);
    printf("Welcome.heartbeat_ms 100: %d heartbeats in 1 s\n", n);
    CHECK(n >= 5 && n <= 15, "%d heartbeats in 1 s at a 100 ms period", n);
    /* 10 ms is below SDC_MIN_HEARTBEAT_MS: ignored, the 100 ms period stays */
    welcome(router, id, id_n, 10);
    n = count_heartbeats(router, 1000);
    printf("Welcome.heartbeat_ms 10 (out of range): %d heartbeats in 1 s\n", n);
    CHECK(n >= 5 && n <= 15, "%d heartbeats in 1 s after an out-of-range period", n);
  }
  kill(pid, SIGTERM);
  /* the drain is announced at once; we answer that one request is still routed through the worker */
  Sdcpb__Envelope *hb = NULL;
  for (int64_t end = sdc_clock_mono_ms() + 2000; !hb && sdc_clock_mono_ms() < end;) {
    hb = recv_within(router, 500, id, &id_n);
    if (hb && !(hb->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT && hb->heartbeat->draining)) sdc_wire_free(hb), hb = NULL;
  }
  CHECK(hb, "no draining Heartbeat within 2 s of SIGTERM");
  if (hb) sdc_wire_free(hb);
  drain_status(router, id, id_n, 1);
  /* that request arrives only now, after the drain began: it is computed and answered, not dropped */
  void *push = zmq_socket(zctx, ZMQ_PUSH);
  sdc_zmq_configure(push);
  CHECK(data_ep[0] && zmq_connect(push, data_ep) == 0, "connect to the worker's data endpoint '%s'", data_ep);
  send_vae_request(push, data_ep);
  int replied = 0, deregistered = 0;
  for (int64_t end = sdc_clock_mono_ms() + 30000; !replied && sdc_clock_mono_ms() < end;) {
    Sdcpb__Envelope *e = recv_within(router, 500, id, &id_n);
    if (e && e->body_case == SDCPB__ENVELOPE__BODY_REPLY) {
      replied = 1;
      CHECK(e->reply->request_id == 77 && !e->reply->error[0] && e->reply->n_images == 1,
            "the late request's reply: request %llu, error '%s', %zu images", (unsigned long long)e->reply->request_id,
            e->reply->error, e->reply->n_images);
    }
    deregistered += e && e->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT && e->heartbeat->deregister;
    if (e) sdc_wire_free(e);
  }
  CHECK(replied, "a request that arrived while draining was not answered within 30 s");
  /* served, but the coordinator still counts one request through it: it must stay */
  sdc_clock_sleep_ms(1000);
  int st;
  CHECK(waitpid(pid, &st, WNOHANG) == 0 && !deregistered, "the worker left while the coordinator still counted a request");
  drain_status(router, id, id_n, 0);
  for (int64_t end = sdc_clock_mono_ms() + 5000; !deregistered && sdc_clock_mono_ms() < end;) {
    Sdcpb__Envelope *e = recv_within(router, 500, id, &id_n);
    deregistered += e && e->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT && e->heartbeat->deregister;
    if (e) sdc_wire_free(e);
  }
  CHECK(deregistered, "no deregistration within 5 s of the coordinator's count 0");
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sdc-worker did not drain cleanly (status %d)", st);
  printf("drain: a request sent after SIGTERM was answered; deregistered and exited 0 once told nothing is routed\n");
  zmq_close(push);
  FILE *fp = fopen(log, "r");
  char line[2048];
  int told = 0, logged_range = 0;
  while (fp && fgets(line, sizeof line, fp)) {
    told += strstr(line, " worker hb-test: heartbeat every 100 ms") != NULL;
    logged_range += strstr(line, " worker hb-test: Welcome.heartbeat_ms 10 is outside") != NULL;
  }
  if (fp) fclose(fp);
  CHECK(told == 1, "the worker did not log its new period (%s)", log);
  CHECK(logged_range == 1, "the worker did not log the out-of-range period (%s)", log);
  zmq_close(router);
  zmq_ctx_term(zctx);
  if (!sdc_test_failures) sdc_test_rmtree(tmp);
  return sdc_test_finish("test_worker_heartbeat");
}
