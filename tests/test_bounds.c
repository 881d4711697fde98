/* test_bounds.c - sdc-worker's bounded work against a fake coordinator: a Cancel stops the running step
 * between blocks (measured against the same step uncancelled) and the worker serves the next request at
 * once; a request without a deadline is dropped and counted, never held; a queue past SDC_WORKER_MAX_QUEUE
 * is answered with an error naming the worker and the bound, not grown. Prints the figures of
 * docs/reliability.md. */
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
#include "sdc_limits.h"
#include "test_util.h"
#include "wire.h"

extern char **environ;

#define WORKER_ID "bounds-test"

/* The next envelope from the worker within timeout_ms, or NULL. */
static Sdcpb__Envelope *recv_within(void *router, int64_t timeout_ms) {
  uint8_t id[128];
  size_t id_n;
  int64_t end = sdc_clock_mono_ms() + timeout_ms;
  for (int64_t left; (left = end - sdc_clock_mono_ms()) > 0;) {
    zmq_pollitem_t pi = {router, 0, ZMQ_POLLIN, 0};
    zmq_poll(&pi, 1, (long)left);
    Sdcpb__Envelope *env;
    if (sdc_zmq_recv(router, &env, id, sizeof id, &id_n) == SDC_OK) return env;
  }
  return NULL;
}

/* The next StageReply within timeout_ms (heartbeats skipped), or NULL. */
static Sdcpb__Envelope *next_reply(void *router, int64_t timeout_ms) {
  int64_t end = sdc_clock_mono_ms() + timeout_ms;
  for (int64_t left; (left = end - sdc_clock_mono_ms()) > 0;) {
    Sdcpb__Envelope *e = recv_within(router, left);
    if (e && e->body_case == SDCPB__ENVELOPE__BODY_REPLY) return e;
    if (e) sdc_wire_free(e);
  }
  return NULL;
}

/* A one-hop VAE request for an N x 4 x side x side latent of zeros; deadline_ms 0 sends none. */
static void send_vae(void *push, const char *endpoint, const char *job, uint64_t request_id, int64_t n, int64_t side,
                     uint64_t deadline_ms) {
  float *z = calloc((size_t)(n * 4 * side * side), sizeof *z);
  void *owned = NULL;
  Sdcpb__Tensor lat = SDCPB__TENSOR__INIT;
  CHECK(z && sdc_wire_tensor_set(&lat, z, 4, (int64_t[]){n, 4, side, side}, SDCPB__DTYPE__F32, &owned) == SDC_OK,
        "latent");
  Sdcpb__Hop hop = SDCPB__HOP__INIT, *hp = &hop;
  hop.stage = SDCPB__STAGE__VAE, hop.worker_id = WORKER_ID, hop.endpoint = (char *)endpoint;
  char *text[SDC_MAX_IMAGES] = {"t", "t", "t", "t", "t", "t", "t", "t"};
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = (char *)job, req.request_id = request_id, req.n_route = 1, req.route = &hp, req.hop = 0;
  req.wire_dtype = SDCPB__DTYPE__F32, req.latent = &lat, req.n_png_text = (size_t)n, req.png_text = text;
  req.deadline_unix_ms = deadline_ms;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  env.request = &req;
  CHECK(sdc_zmq_send(push, NULL, 0, &env, 0) == SDC_OK, "send request %llu", (unsigned long long)request_id);
  free(owned), free(z);
}

/* A unet-down request (tiny model: 4 channels, 8x8 latent, 64-wide context) whose next hop, unet-mid, is
 * next_endpoint: the worker computes it and forwards to that endpoint (a next-hop connection). */
static void send_down(void *push, const char *endpoint, const char *next_endpoint, uint64_t request_id) {
  static float x[4 * 8 * 8], ctx[77 * 64], t = 500.0f;
  void *owned[2] = {0};
  Sdcpb__Tensor sample = SDCPB__TENSOR__INIT, context = SDCPB__TENSOR__INIT;
  CHECK(sdc_wire_tensor_set(&sample, x, 4, (int64_t[]){1, 4, 8, 8}, SDCPB__DTYPE__F32, &owned[0]) == SDC_OK &&
            sdc_wire_tensor_set(&context, ctx, 3, (int64_t[]){1, 77, 64}, SDCPB__DTYPE__F32, &owned[1]) == SDC_OK,
        "down tensors");
  Sdcpb__Hop hops[2] = {SDCPB__HOP__INIT, SDCPB__HOP__INIT}, *hp[2] = {&hops[0], &hops[1]};
  hops[0].stage = SDCPB__STAGE__UNET_DOWN, hops[0].worker_id = WORKER_ID, hops[0].endpoint = (char *)endpoint;
  hops[1].stage = SDCPB__STAGE__UNET_MID, hops[1].worker_id = "elsewhere", hops[1].endpoint = (char *)next_endpoint;
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "peers", req.request_id = request_id, req.n_route = 2, req.route = hp, req.hop = 0;
  req.wire_dtype = SDCPB__DTYPE__F32, req.sample = &sample, req.context = &context, req.n_timestep = 1, req.timestep = &t;
  req.deadline_unix_ms = sdc_clock_unix_ms() + 60000;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  env.request = &req;
  CHECK(sdc_zmq_send(push, NULL, 0, &env, 0) == SDC_OK, "send down request %llu", (unsigned long long)request_id);
  free(owned[0]), free(owned[1]);
}

static int log_count(const char *path, const char *needle) {
  FILE *fp = fopen(path, "r");
  char line[4096];
  int n = 0;
  while (fp && fgets(line, sizeof line, fp)) n += strstr(line, needle) != NULL;
  if (fp) fclose(fp);
  return n;
}

static void send_cancel(void *router, const uint8_t *id, size_t id_n, const char *job) {
  Sdcpb__Cancel c = SDCPB__CANCEL__INIT;
  c.job_id = (char *)job;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL;
  env.cancel = &c;
  CHECK(sdc_zmq_send(router, id, id_n, &env, 0) == SDC_OK, "send Cancel");
}

static int log_has(const char *path, const char *needle) {
  FILE *fp = fopen(path, "r");
  char line[4096];
  int found = 0;
  while (fp && !found && fgets(line, sizeof line, fp)) found = strstr(line, needle) != NULL;
  if (fp) fclose(fp);
  return found;
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
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", sdc_test_free_port());
  CHECK(zmq_bind(router, url) == 0, "bind %s", url);
  char *wargv[] = {argv[1], "--stage", "unet-down,vae", "--model", model, "--coordinator", url, "--id", WORKER_ID,
                   "--memory-mib", "2048", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  CHECK(posix_spawn(&pid, argv[1], &fa, NULL, wargv, environ) == 0, "cannot start %s", argv[1]);
  posix_spawn_file_actions_destroy(&fa);

  uint8_t id[128];
  size_t id_n = 0;
  char data_ep[256] = "";
  uint64_t max_px = 0, mem = 0;
  for (int64_t end = sdc_clock_mono_ms() + 60000; !data_ep[0] && sdc_clock_mono_ms() < end;) {
    Sdcpb__Envelope *env = NULL;
    zmq_pollitem_t pi = {router, 0, ZMQ_POLLIN, 0};
    zmq_poll(&pi, 1, 1000);
    if (sdc_zmq_recv(router, &env, id, sizeof id, &id_n) != SDC_OK) continue;
    if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER)
      snprintf(data_ep, sizeof data_ep, "%s", env->register_->data_endpoint), max_px = env->register_->max_pixel_images,
      mem = env->register_->memory_bytes;
    sdc_wire_free(env);
  }
  CHECK(data_ep[0], "no Register from the worker within 60 s (see %s)", log);
  if (!data_ep[0]) return sdc_test_finish("test_bounds");
  /* --memory-mib 2048: what it takes is (2048 MiB - its RSS - 256 MiB) over its bytes per pixel-image (the tiny
   * model's unet-down 1833 * 32/320 + vae 7282 * 32/128, plus 25%: 2505); its RSS is 0..300 MiB */
  printf("Register: memory %llu MiB, takes up to %llu pixel-images\n", (unsigned long long)(mem >> 20),
         (unsigned long long)max_px);
  CHECK(mem == (uint64_t)2048 << 20, "Register.memory_bytes %llu, want --memory-mib 2048", (unsigned long long)mem);
  CHECK(max_px >= ((uint64_t)(2048 - 256 - 300) << 20) / 2505 && max_px <= ((uint64_t)(2048 - 256) << 20) / 2505,
        "Register.max_pixel_images %llu", (unsigned long long)max_px);
  void *push = zmq_socket(zctx, ZMQ_PUSH);
  sdc_zmq_configure(push);
  CHECK(zmq_connect(push, data_ep) == 0, "connect to %s", data_ep);
  const int64_t N = 1, SIDE = 72; /* one 576x576 image through the tiny VAE: a step of seconds here */

  /* 0. once to warm up: a first call at a new size builds oneDNN's primitives and re-packs the weights
   * for them, which later calls do not pay (the yardstick below must be what the cancelled run costs) */
  send_vae(push, data_ep, "warm-0", 100, N, SIDE, sdc_clock_unix_ms() + 120000);
  Sdcpb__Envelope *e = next_reply(router, 120000);
  CHECK(e && e->reply->request_id == 100 && !e->reply->error[0], "the warm-up step was not answered");
  if (e) sdc_wire_free(e);
  /* 1. the long step uncancelled: its duration is the yardstick */
  int64_t t0 = sdc_clock_mono_ms();
  send_vae(push, data_ep, "long-0", 1, N, SIDE, sdc_clock_unix_ms() + 120000);
  e = next_reply(router, 120000);
  const int64_t full_ms = sdc_clock_mono_ms() - t0;
  CHECK(e && e->reply->request_id == 1 && !e->reply->error[0], "the long step was not answered");
  if (e) sdc_wire_free(e);
  /* a small step alone */
  t0 = sdc_clock_mono_ms();
  send_vae(push, data_ep, "small-0", 2, 1, 8, sdc_clock_unix_ms() + 60000);
  e = next_reply(router, 60000);
  const int64_t small_ms = sdc_clock_mono_ms() - t0;
  CHECK(e && e->reply->request_id == 2 && !e->reply->error[0], "the small step was not answered");
  if (e) sdc_wire_free(e);

  /* 2. the same long step, cancelled a third of the way in; a small job right behind it */
  send_vae(push, data_ep, "long-1", 3, N, SIDE, sdc_clock_unix_ms() + 120000);
  sdc_clock_sleep_ms(full_ms / 3);
  const int64_t cancel_at = sdc_clock_mono_ms();
  send_cancel(router, id, id_n, "long-1");
  send_vae(push, data_ep, "small-1", 4, 1, 8, sdc_clock_unix_ms() + 60000);
  e = next_reply(router, 120000);
  const int64_t after_cancel_ms = sdc_clock_mono_ms() - cancel_at;
  CHECK(e && e->reply->request_id == 4 && !e->reply->error[0], "the reply after the cancel is request %llu, not 4",
        e ? (unsigned long long)e->reply->request_id : 0ull);
  if (e) sdc_wire_free(e);
  printf("long VAE step (%lldx%lldx%lld latent): %lld ms; small step alone: %lld ms; cancel at 1/3 -> next job "
         "answered after %lld ms\n",
         (long long)N, (long long)SIDE, (long long)SIDE, (long long)full_ms, (long long)small_ms,
         (long long)after_cancel_ms);
  /* stopped between blocks: well before the rest of the step (2/3 of full_ms) would have run */
  CHECK(after_cancel_ms < full_ms / 2, "the next job waited %lld ms after the cancel; the step takes %lld ms",
        (long long)after_cancel_ms, (long long)full_ms);
  sdc_clock_sleep_ms(200);
  CHECK(log_has(log, "stopped by cancel"), "the worker log does not say the step was stopped by the cancel");

  /* 3. a request without a deadline is dropped (never held), the next one served */
  send_vae(push, data_ep, "nodeadline", 5, 1, 8, 0);
  send_vae(push, data_ep, "after", 6, 1, 8, sdc_clock_unix_ms() + 60000);
  e = next_reply(router, 30000);
  CHECK(e && e->reply->request_id == 6, "after a request without deadline: reply %llu, want 6",
        e ? (unsigned long long)e->reply->request_id : 0ull);
  if (e) sdc_wire_free(e);
  CHECK(log_has(log, "dropped, the request has no deadline"), "no log line for the request without a deadline");

  /* 4. a full queue: one long step runs, SDC_WORKER_MAX_QUEUE wait, the rest are refused at once */
  const int extra = 5;
  send_vae(push, data_ep, "long-2", 100, N, SIDE, sdc_clock_unix_ms() + 120000);
  sdc_clock_sleep_ms(300); /* it is running */
  for (int i = 0; i < SDC_WORKER_MAX_QUEUE + extra; i++)
    send_vae(push, data_ep, "queued", 1000 + (uint64_t)i, 1, 8, sdc_clock_unix_ms() + 120000);
  int refused = 0, named = 0;
  for (int64_t end = sdc_clock_mono_ms() + 5000; refused < extra && sdc_clock_mono_ms() < end;) {
    e = next_reply(router, end - sdc_clock_mono_ms());
    if (!e) break;
    if (e->reply->error[0]) {
      refused++;
      named += strstr(e->reply->error, WORKER_ID) && strstr(e->reply->error, "--max-queue 64");
    }
    sdc_wire_free(e);
  }
  printf("queue bound: %d requests past SDC_WORKER_MAX_QUEUE (%d) refused at once, %d naming the worker and bound\n",
         refused, SDC_WORKER_MAX_QUEUE, named);
  CHECK(refused == extra && named == extra, "%d of %d requests past the queue bound refused (%d named it)", refused, extra,
        named);
  send_cancel(router, id, id_n, "long-2");
  send_cancel(router, id, id_n, "queued");

  /* 5. next hops on ever new addresses (peers that moved): the table stays at SDC_WORKER_MAX_PEERS, the
   * least recently used closed first */
  for (int64_t end = sdc_clock_mono_ms() + 60000; sdc_clock_mono_ms() < end && log_count(log, "stopped by cancel") < 2;)
    sdc_clock_sleep_ms(100);
  const int n_peers = SDC_WORKER_MAX_PEERS + 6;
  for (int i = 0; i < n_peers; i++) {
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + i); /* nobody listens: only the connection counts */
    send_down(push, data_ep, ep, 5000 + (uint64_t)i);
    if (i % 8 == 7) sdc_clock_sleep_ms(200); /* paced: the queue bound is not what this checks */
  }
  int closed = 0;
  for (int64_t end = sdc_clock_mono_ms() + 60000; sdc_clock_mono_ms() < end; sdc_clock_sleep_ms(200))
    if ((closed = log_count(log, "least recently used of SDC_WORKER_MAX_PEERS")) >= n_peers - SDC_WORKER_MAX_PEERS) break;
  printf("peer table: %d next hops on new addresses, %d least recently used closed (bound %d)\n", n_peers, closed,
         SDC_WORKER_MAX_PEERS);
  CHECK(closed == n_peers - SDC_WORKER_MAX_PEERS, "%d next-hop connections closed for %d new peers past the bound %d",
        closed, n_peers - SDC_WORKER_MAX_PEERS, SDC_WORKER_MAX_PEERS);

  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  zmq_close(push);
  zmq_close(router);
  zmq_ctx_term(zctx);
  if (!sdc_test_failures) sdc_test_rmtree(tmp);
  return sdc_test_finish("test_bounds");
}
