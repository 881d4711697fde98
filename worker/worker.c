/* worker.c - sdc-worker: hosts stages behind ZeroMQ; libuv loop for sockets, compute on the thread pool. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "clock.h"
#include "error.h"
#include "ops.h"
#include "runtime.h"
#include "stage.h"
#include "stage_exec.h"
#include "wire.h"

#define SDC__MAX_PEERS 64
#define SDC__BEAT_MS 1000

typedef struct sdc__item {
  Sdcpb__Envelope *env;
  uint8_t *out;
  size_t out_n;
  int is_reply, err;
  char endpoint[256];
  uint64_t us, start_ms, end_ms;
  struct sdc__item *next;
} sdc__item;

typedef struct {
  uv_loop_t *loop;
  void *zctx, *ctrl, *data;
  uv_poll_t ctrl_poll, data_poll;
  uv_prepare_t prep;
  uv_timer_t beat;
  uv_signal_t sig_term, sig_int;
  uv_work_t work;
  char id[96], endpoint[256], coordinator[256];
  sdc_stage_host host;
  sdc__item *head, *tail, *running;
  struct {
    char endpoint[256];
    void *sock;
  } peers[SDC__MAX_PEERS];
  int n_peers;
  uint64_t served, dropped_late, dropped_full, errors;
  int draining, registered, closing, log_hops;
  unsigned beat_ms;
} sdc__worker;

static void sdc__log(const sdc__worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sdc__log(const sdc__worker *w, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%llu worker %s: %s\n", (unsigned long long)sdc_clock_unix_ms(), w->id, msg);
}

static void sdc__drain(sdc__worker *w);
static void sdc__start_next(sdc__worker *w);

static void sdc__send_register(sdc__worker *w) {
  Sdcpb__Stage stages[8];
  size_t n = 0;
  for (int s = SDCPB__STAGE__TEXT; s <= SDCPB__STAGE__VAE; s++)
    if (w->host.stages & (1u << s)) stages[n++] = (Sdcpb__Stage)s;
  Sdcpb__Register reg = SDCPB__REGISTER__INIT;
  reg.worker_id = w->id;
  reg.n_stages = n, reg.stages = stages;
  reg.model_fingerprint = w->host.fingerprint;
  reg.data_endpoint = w->endpoint;
  reg.threads = 1;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
  env.register_ = &reg;
  sdc_zmq_send(w->ctrl, NULL, 0, &env, ZMQ_DONTWAIT);
}

static void sdc__send_heartbeat(sdc__worker *w) {
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = w->id;
  uint32_t q = w->running ? 1 : 0;
  for (sdc__item *it = w->head; it; it = it->next) q++;
  hb.in_flight = q, hb.served = w->served, hb.draining = w->draining;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT;
  env.heartbeat = &hb;
  sdc_zmq_send(w->ctrl, NULL, 0, &env, ZMQ_DONTWAIT);
}

static void *sdc__peer(sdc__worker *w, const char *endpoint) {
  for (int i = 0; i < w->n_peers; i++)
    if (strcmp(w->peers[i].endpoint, endpoint) == 0) return w->peers[i].sock;
  if (w->n_peers == SDC__MAX_PEERS) return NULL;
  void *s = zmq_socket(w->zctx, ZMQ_PUSH);
  if (!s) return NULL;
  sdc_zmq_configure(s);
  if (zmq_connect(s, endpoint) != 0) {
    zmq_close(s);
    return NULL;
  }
  snprintf(w->peers[w->n_peers].endpoint, sizeof w->peers[w->n_peers].endpoint, "%s", endpoint);
  w->peers[w->n_peers++].sock = s;
  return s;
}

static void sdc__maybe_exit(sdc__worker *w) {
  if (!w->draining || w->running || w->head || w->closing) return;
  w->closing = 1;
  sdc__send_heartbeat(w); /* last word: draining, nothing in flight */
  sdc__log(w, "drained after %llu requests; exiting", (unsigned long long)w->served);
  uv_stop(w->loop);
}

static void sdc__work_cb(uv_work_t *req) {
  sdc__worker *w = req->data;
  sdc__item *it = w->running;
  const char *ep = NULL;
  it->start_ms = sdc_clock_unix_ms();
  it->err = sdc_stage_execute(&w->host, it->env->request, w->id, &it->out, &it->out_n, &it->is_reply, &ep, &it->us);
  if (ep) snprintf(it->endpoint, sizeof it->endpoint, "%s", ep);
  it->end_ms = sdc_clock_unix_ms();
}

static void sdc__after_work_cb(uv_work_t *req, int status) {
  sdc__worker *w = req->data;
  sdc__item *it = w->running;
  w->running = NULL;
  (void)status;
  const Sdcpb__StageRequest *r = it->env->request;
  /* one line per hop when asked: the pipeline's overlap can be read off the logs */
  if (w->log_hops)
    sdc__log(w, "hop job=%s step=%u stage=%s start_ms=%llu end_ms=%llu", r->job_id, r->step,
             r->hop < r->n_route ? sdc_stage_name(r->route[r->hop]->stage) : "?", (unsigned long long)it->start_ms,
             (unsigned long long)it->end_ms);
  if (it->err) {
    w->errors++;
    sdc__log(w, "job %s step %u: %s", r->job_id, r->step, sdc_errmsg(it->err));
  } else {
    void *sock = it->is_reply ? w->ctrl : sdc__peer(w, it->endpoint);
    if (!sock || zmq_send(sock, it->out, it->out_n, ZMQ_DONTWAIT) < 0) {
      w->dropped_full++;
      sdc__log(w, "job %s step %u: could not send to %s", r->job_id, r->step, it->is_reply ? "coordinator" : it->endpoint);
    } else {
      w->served++;
    }
  }
  free(it->out);
  sdc_wire_free(it->env);
  free(it);
  sdc__drain(w);
  sdc__start_next(w);
  sdc__maybe_exit(w);
}

static void sdc__start_next(sdc__worker *w) {
  while (!w->running && w->head) {
    sdc__item *it = w->head;
    w->head = it->next;
    if (!w->head) w->tail = NULL;
    const Sdcpb__StageRequest *r = it->env->request;
    if (r->deadline_unix_ms && sdc_clock_unix_ms() > r->deadline_unix_ms) {
      w->dropped_late++; /* the coordinator has re-issued it by now */
      sdc_wire_free(it->env);
      free(it);
      continue;
    }
    w->running = it;
    w->work.data = w;
    uv_queue_work(w->loop, &w->work, sdc__work_cb, sdc__after_work_cb);
  }
}

static void sdc__on_request(sdc__worker *w, Sdcpb__Envelope *env) {
  sdc__item *it = calloc(1, sizeof *it);
  if (!it) {
    sdc_wire_free(env);
    return;
  }
  it->env = env;
  if (w->tail) w->tail->next = it;
  else w->head = it;
  w->tail = it;
  sdc__start_next(w);
}

static void sdc__on_control(sdc__worker *w, Sdcpb__Envelope *env) {
  if (env->body_case == SDCPB__ENVELOPE__BODY_WELCOME) {
    if (env->welcome->accepted) {
      if (!w->registered) sdc__log(w, "registered with coordinator %s", env->welcome->coordinator_id);
      w->registered = 1;
    } else {
      sdc__log(w, "registration refused: %s", env->welcome->reason);
    }
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_CANCEL) {
    /* drop queued work of the job; what runs now finishes (one step at most) */
    sdc__item **pp = &w->head, *last = NULL;
    while (*pp) {
      sdc__item *it = *pp;
      if (strcmp(it->env->request->job_id, env->cancel->job_id) == 0) {
        *pp = it->next;
        sdc_wire_free(it->env);
        free(it);
      } else {
        last = it;
        pp = &it->next;
      }
    }
    w->tail = last;
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER) {
    w->registered = 0; /* the coordinator asks us to register again */
    sdc__send_register(w);
  }
  sdc_wire_free(env);
}

/* ZMQ_FD is edge-triggered: read until the socket says it is empty. */
static void sdc__drain(sdc__worker *w) {
  for (int progress = 1; progress;) {
    progress = 0;
    Sdcpb__Envelope *env;
    int err;
    while ((err = sdc_zmq_recv(w->data, &env, NULL, 0, NULL)) != SDC_EAGAIN) {
      if (err == SDC_EPROTOCOL) continue; /* malformed: dropped and counted */
      if (err) break;
      progress = 1;
      if (env->body_case != SDCPB__ENVELOPE__BODY_REQUEST || w->draining) {
        sdc_wire_free(env);
        continue;
      }
      sdc__on_request(w, env);
    }
    while ((err = sdc_zmq_recv(w->ctrl, &env, NULL, 0, NULL)) != SDC_EAGAIN) {
      if (err == SDC_EPROTOCOL) continue;
      if (err) break;
      progress = 1;
      sdc__on_control(w, env);
    }
  }
}

static void sdc__on_poll(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  sdc__drain(h->data);
}

/* ZMQ_FD is edge-triggered and a send can swallow the edge of an arrival:
 * before the loop sleeps, read whatever the sockets hold. */
static void sdc__on_prepare(uv_prepare_t *p) { sdc__drain(p->data); }

static void sdc__on_beat(uv_timer_t *t) {
  sdc__worker *w = t->data;
  if (!w->registered) sdc__send_register(w);
  sdc__send_heartbeat(w);
  sdc__drain(w);
}

static void sdc__on_signal(uv_signal_t *s, int signum) {
  sdc__worker *w = s->data;
  if (w->draining) return;
  sdc__log(w, "signal %d: draining", signum);
  w->draining = 1;
  sdc__send_heartbeat(w);
  sdc__maybe_exit(w);
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc-worker --stage LIST --model PATH --coordinator tcp://HOST:PORT [options]\n"
          "  --stage LIST          comma-separated: text, unet-down, unet-mid, unet-up, vae\n"
          "  --model PATH          diffusers folder or single .safetensors file\n"
          "  --config DIR          diffusers folder with configs/tokenizer for a single file\n"
          "  --coordinator URL     the coordinator's control endpoint\n"
          "  --bind URL            data endpoint to listen on (default tcp://127.0.0.1:*)\n"
          "  --advertise URL       data endpoint others should connect to (default: the bound one)\n"
          "  --id NAME             worker id (default: host-pid)\n"
          "  --precision fp32|bf16 GEMM arithmetic (default fp32; bf16 on AMX/AVX512-BF16, weights kept in bf16)\n"
          "SIGTERM/SIGINT drain: queued work finishes, nothing new is taken, then the worker exits.\n");
}

int main(int argc, char **argv) {
  sdc_runtime_init(argv);
  static sdc__worker w;
  const char *stages = NULL, *model = NULL, *config = NULL, *bind = "tcp://127.0.0.1:*", *advertise = NULL;
  static const struct option opts[] = {{"stage", required_argument, 0, 's'},  {"model", required_argument, 0, 'm'},
                                       {"config", required_argument, 0, 'c'}, {"coordinator", required_argument, 0, 'C'},
                                       {"bind", required_argument, 0, 'b'},   {"advertise", required_argument, 0, 'a'},
                                       {"id", required_argument, 0, 'i'},     {"help", no_argument, 0, 'h'},
                                       {"precision", required_argument, 0, 'p'}, {0, 0, 0, 0}};
  char host[64] = "worker";
  gethostname(host, sizeof host - 1);
  snprintf(w.id, sizeof w.id, "%s-%d", host, (int)getpid());
  int ch;
  sdc_precision prec = SDC_PREC_FP32;
  while ((ch = getopt_long(argc, argv, "s:m:c:C:b:a:i:p:h", opts, NULL)) != -1) {
    switch (ch) {
      case 's': stages = optarg; break;
      case 'm': model = optarg; break;
      case 'c': config = optarg; break;
      case 'C': snprintf(w.coordinator, sizeof w.coordinator, "%s", optarg); break;
      case 'b': bind = optarg; break;
      case 'a': advertise = optarg; break;
      case 'i': snprintf(w.id, sizeof w.id, "%s", optarg); break;
      case 'p':
        if (sdc_precision_parse(optarg, &prec)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        break;
      case 'h': sdc__usage(stdout); return 0;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (!stages || !model || !w.coordinator[0] || optind != argc) {
    sdc__usage(stderr);
    return 2;
  }
  unsigned bits = 0;
  if (sdc_stage_parse_list(stages, &bits) != SDC_OK) {
    fprintf(stderr, "sdc-worker: --stage: %s\n", sdc_errmsg(SDC_EINVAL));
    return 2;
  }
  const sdc_load_opts lo = {.precision = prec};
  int err = sdc_precision_check(prec);
  if (err) {
    fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(err));
    return 2;
  }
  err = sdc_stage_host_load(&w.host, model, config, bits, &lo);
  if (err) {
    fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(err));
    return 2;
  }
  w.zctx = zmq_ctx_new();
  w.ctrl = zmq_socket(w.zctx, ZMQ_DEALER);
  w.data = zmq_socket(w.zctx, ZMQ_PULL);
  sdc_zmq_configure(w.ctrl);
  sdc_zmq_configure(w.data);
  zmq_setsockopt(w.ctrl, ZMQ_ROUTING_ID, w.id, strlen(w.id));
  if (zmq_bind(w.data, bind) != 0) {
    fprintf(stderr, "sdc-worker: --bind %s: %s\n", bind, zmq_strerror(errno));
    return 2;
  }
  size_t len = sizeof w.endpoint;
  zmq_getsockopt(w.data, ZMQ_LAST_ENDPOINT, w.endpoint, &len);
  if (advertise) snprintf(w.endpoint, sizeof w.endpoint, "%s", advertise);
  if (zmq_connect(w.ctrl, w.coordinator) != 0) {
    fprintf(stderr, "sdc-worker: --coordinator %s: %s\n", w.coordinator, zmq_strerror(errno));
    return 2;
  }
  w.loop = uv_default_loop();
  int fd;
  size_t fl = sizeof fd;
  zmq_getsockopt(w.ctrl, ZMQ_FD, &fd, &fl);
  uv_poll_init(w.loop, &w.ctrl_poll, fd);
  zmq_getsockopt(w.data, ZMQ_FD, &fd, &fl);
  uv_poll_init(w.loop, &w.data_poll, fd);
  w.ctrl_poll.data = w.data_poll.data = &w;
  uv_poll_start(&w.ctrl_poll, UV_READABLE, sdc__on_poll);
  uv_poll_start(&w.data_poll, UV_READABLE, sdc__on_poll);
  uv_prepare_init(w.loop, &w.prep);
  w.prep.data = &w;
  uv_prepare_start(&w.prep, sdc__on_prepare);
  uv_timer_init(w.loop, &w.beat);
  w.beat.data = &w;
  uv_timer_start(&w.beat, sdc__on_beat, 0, SDC__BEAT_MS);
  uv_signal_init(w.loop, &w.sig_term);
  uv_signal_init(w.loop, &w.sig_int);
  w.sig_term.data = w.sig_int.data = &w;
  uv_signal_start(&w.sig_term, sdc__on_signal, SIGTERM);
  uv_signal_start(&w.sig_int, sdc__on_signal, SIGINT);
  w.log_hops = getenv("SDC_LOG_HOPS") && strcmp(getenv("SDC_LOG_HOPS"), "1") == 0;
  sdc__log(&w, "serving %s on %s (model %s, fingerprint %s)", stages, w.endpoint, model, w.host.fingerprint);
  uv_run(w.loop, UV_RUN_DEFAULT);
  for (int i = 0; i < w.n_peers; i++) zmq_close(w.peers[i].sock);
  zmq_close(w.ctrl);
  zmq_close(w.data);
  zmq_ctx_term(w.zctx);
  sdc_stage_host_free(&w.host);
  return 0;
}
