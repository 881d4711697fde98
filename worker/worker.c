/* worker.c - sdc-worker: hosts stages behind ZeroMQ; libuv loop for sockets, compute on the thread pool. */
#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "abort.h"
#include "clock.h"
#include "curve.h"
#include "error.h"
#include "flag.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "ops.h"
#include "runtime.h"
#include "sdc_limits.h"
#include "stage.h"
#include "stage_exec.h"
#include "wire.h"

/* One request, from the data socket through the pool thread to the next hop. The pool thread
 * fills out..end_ms; errors travel as copies because the loop thread cannot see its messages. */
typedef struct sdc__item {
  Sdcpb__Envelope *env;
  uint8_t *out;
  size_t out_n;
  int is_reply;
  sdc_error hop_error;  /* a hop failed: the reply sent on carries this text */
  sdc_error send_error; /* nothing to send (packing failed) */
  char endpoint[SDC_MAX_ENDPOINT];
  sdc_stage_hops hops;
  uint64_t start_ms, end_ms;
  struct sdc__item *next;
} sdc__item;

/* What /readyz says; the loop thread stores it, the HTTP thread loads it. */
typedef enum { SDC__LOADING, SDC__UNREGISTERED, SDC__DRAINING, SDC__READY } sdc__readiness;

#define SDC__BUSY_WINDOW_S 10 /* sdc_worker_busy_ratio looks this far back, sampled every second */

/* The worker's metrics (docs/operations.md); updated on the loop thread, rendered on the HTTP thread. */
typedef struct {
  sdc_node_metrics node; /* what the coordinator serves too: links, drops, sdc_ready, process_* */
  sdc_metric *compute_s, *requests, *service_s, *queue, *busy;
  atomic_int readiness;
  uv_timer_t busy_timer;
  uint64_t busy_done_us, run_start_us; /* compute time of finished requests; when the running one started */
  uint64_t ring_t_us[SDC__BUSY_WINDOW_S + 1], ring_busy_us[SDC__BUSY_WINDOW_S + 1];
  int ring_n, ring_i;
} sdc__telemetry;

typedef struct {
  uv_loop_t *loop;
  /* two ZeroMQ contexts, so two I/O threads: the control socket (registration, heartbeats) must not wait
   * behind the data sockets' transfers, whose CURVE encryption of a 1024x1024 step's skips (hundreds of MB)
   * held a single I/O thread for seconds and got workers declared dead (docs/reliability.md) */
  void *zctx, *ctrl_ctx, *ctrl, *data;
  uv_poll_t ctrl_poll, data_poll;
  uv_prepare_t prep;
  uv_timer_t beat, drain_timer;
  uv_signal_t sig_term, sig_int;
  uv_work_t work;
  char id[SDC_MAX_WORKER_ID], endpoint[SDC_MAX_ENDPOINT], coordinator[SDC_MAX_ENDPOINT];
  sdc_stage_host host;
  sdc__item *head, *tail, *running;
  struct {
    char endpoint[SDC_MAX_ENDPOINT];
    char key[SDC_CURVE_Z85]; /* CURVE: the next hop's public key ("" in plaintext) */
    void *sock;
    int64_t used_ms; /* monotonic: the last send, for idle close and least-recently-used eviction */
  } peers[SDC_WORKER_MAX_PEERS];
  int n_peers, n_queued, max_queue; /* --max-queue: requests waiting beyond the running one */
  atomic_int cancel_running; /* the Cancel of the running request's job: its compute stops between blocks */
  uint64_t served, dropped_late, dropped_full, dropped_queue, cancelled, peers_closed, errors;
  int draining, registered, closing, log_hops, loaded;
  uint32_t beat_ms; /* SDC_HEARTBEAT_MS until a Welcome says otherwise */
  sdc__telemetry tm;
  /* --curve-key: the data socket is a CURVE server behind our ZAP handler (the authorized keys only); the
   * control socket and every next-hop PUSH are CURVE clients */
  sdc_curve curve;
  char coord_key[SDC_CURVE_Z85];
  uv_poll_t zap_poll;
  int silent_beats; /* beats since the coordinator last said anything: a CURVE mismatch is otherwise silent */
  /* drain: the coordinator's count of requests routed through us (-1 until it answers a draining
   * heartbeat); beats sent while it had not answered; requests received after SIGTERM */
  uint64_t max_pixel_images, memory_bytes; /* advertised in Register: what our memory takes (0: no limit) */
  uint64_t drain_timeout_ms;
  int64_t drain_start_ms, coord_routed;
  int drain_beats;
  uint64_t taken_draining;
} sdc__worker;

/* ------------------------------------------------------------ metrics */

static const char *const sdc__stage_label[] = {"stage"};

static void sdc__count_link(sdc__worker *w, Sdcpb__Stage from, Sdcpb__Stage to, const char *direction, size_t n_bytes) {
  sdc_node_metrics_link(&w->tm.node, (int)from, (int)to, direction, n_bytes);
}

/* Stores what /readyz answers and sdc_ready shows, from the loop thread's state. */
static void sdc__update_ready(sdc__worker *w) {
  const sdc__readiness r = !w->loaded      ? SDC__LOADING
                           : w->draining   ? SDC__DRAINING
                           : !w->registered ? SDC__UNREGISTERED
                                            : SDC__READY;
  atomic_store(&w->tm.readiness, (int)r);
  sdc_node_metrics_set_ready(&w->tm.node, r == SDC__READY);
}

/* The HTTP thread's /readyz: reads only the atomic. */
static int sdc__ready_fn(void *ctx, char *why, size_t n) {
  sdc__worker *w = ctx;
  switch ((sdc__readiness)atomic_load(&w->tm.readiness)) {
    case SDC__READY: return 1;
    case SDC__LOADING: snprintf(why, n, "loading models"); break;
    case SDC__DRAINING: snprintf(why, n, "draining"); break;
    default: snprintf(why, n, "not registered with coordinator %s", w->coordinator); break;
  }
  return 0;
}

/* At each scrape (HTTP thread): the wire layer's drop counters since the last scrape. */
static void sdc__collect_wire(sdc_metrics *reg, void *ctx) {
  (void)reg;
  sdc_wire_stats now;
  sdc_wire_stats_get(&now);
  sdc_node_metrics_wire_drops(ctx, now.dropped_malformed, now.dropped_version, now.bad_tensors);
}

/* Every second on the loop thread: busy time over the last SDC__BUSY_WINDOW_S seconds, the running
 * request's time so far included. */
static void sdc__on_busy_timer(uv_timer_t *t) {
  sdc__worker *w = t->data;
  sdc__telemetry *tm = &w->tm;
  const uint64_t now = sdc_clock_mono_ns() / 1000;
  const uint64_t busy = tm->busy_done_us + (w->running && now > tm->run_start_us ? now - tm->run_start_us : 0);
  const int cap = SDC__BUSY_WINDOW_S + 1;
  tm->ring_t_us[tm->ring_i] = now, tm->ring_busy_us[tm->ring_i] = busy;
  tm->ring_i = (tm->ring_i + 1) % cap;
  if (tm->ring_n < cap) tm->ring_n++;
  const int oldest = tm->ring_n < cap ? 0 : tm->ring_i;
  const uint64_t dt = now - tm->ring_t_us[oldest];
  double ratio = dt ? (double)(busy - tm->ring_busy_us[oldest]) / (double)dt : 0;
  sdc_metric_set(tm->busy, NULL, ratio < 0 ? 0 : ratio > 1 ? 1 : ratio);
}

/* Registers the worker's metrics (docs/operations.md) and serves them on addr_port. 0, or an error
 * naming addr_port or the metric (sdc_errmsg). */
static int sdc__telemetry_start(sdc__worker *w, const char *addr_port) {
  sdc__telemetry *tm = &w->tm;
  int err = sdc_node_metrics_init(&tm->node);
  if (err) return err;
  sdc_metrics *r = tm->node.reg;
  static const double service_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  tm->compute_s = sdc_metrics_counter(r, "sdc_stage_compute_seconds_total", "Seconds spent computing the stage.", 1,
                                      sdc__stage_label);
  tm->requests = sdc_metrics_counter(r, "sdc_stage_requests_total", "Requests computed.", 1, sdc__stage_label);
  tm->service_s = sdc_metrics_histogram(r, "sdc_stage_service_seconds", "Compute time of one request.", 1,
                                        sdc__stage_label, service_bounds, (int)(sizeof service_bounds / sizeof *service_bounds));
  tm->queue = sdc_metrics_gauge(r, "sdc_worker_queue_requests", "Requests received and waiting for the compute thread.", 0,
                                NULL);
  tm->busy = sdc_metrics_gauge(r, "sdc_worker_busy_ratio", "Share of the last 10 s spent computing (0..1).", 0, NULL);
  if (!tm->compute_s || !tm->requests || !tm->service_s || !tm->queue || !tm->busy)
    return SDC_EINVAL; /* sdc_errmsg names the metric */
  err = sdc_metrics_on_collect(r, sdc__collect_wire, &tm->node);
  sdc__update_ready(w);
  if (!err) err = sdc_node_metrics_serve(&tm->node, addr_port, sdc__ready_fn, w);
  return err;
}

/* After the models are loaded: each hosted stage's series exist (at 0) before its first request. */
static void sdc__telemetry_loaded(sdc__worker *w) {
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
    if (!(w->host.stages & (1u << s))) continue;
    const char *name = sdc_stage_name((sdc_stage)s);
    sdc_metric_add(w->tm.compute_s, &name, 0);
    sdc_metric_add(w->tm.requests, &name, 0);
  }
}

/* One finished request: each hop it computed, per stage. */
static void sdc__telemetry_done(sdc__worker *w, const sdc__item *it) {
  sdc__telemetry *tm = &w->tm;
  tm->busy_done_us += it->hops.total_us;
  for (int i = 0; i < it->hops.n; i++) {
    const char *name = sdc_stage_name((sdc_stage)it->hops.stage[i]);
    const double s = (double)it->hops.us[i] * 1e-6;
    sdc_metric_add(tm->compute_s, &name, s);
    sdc_metric_add(tm->requests, &name, 1);
    sdc_metric_observe(tm->service_s, &name, s);
  }
}

static void sdc__set_queue_gauge(sdc__worker *w) {
  int q = 0;
  for (sdc__item *it = w->head; it; it = it->next) q++;
  sdc_metric_set(w->tm.queue, NULL, q);
}

/* The stage a request asks of its receiver, and the scheduler step to log it under: the UNet
 * shards run once per step, text and vae once per job (their step field is 0). */
static Sdcpb__Stage sdc__stage_of(const Sdcpb__StageRequest *r) {
  return r->hop < r->n_route && r->route[r->hop] ? r->route[r->hop]->stage : SDCPB__STAGE__STAGE_INVALID;
}

static int64_t sdc__step_of(const Sdcpb__StageRequest *r) {
  Sdcpb__Stage s = sdc__stage_of(r);
  return s >= SDCPB__STAGE__UNET_DOWN && s <= SDCPB__STAGE__UNET_UP ? (int64_t)r->step : -1;
}

static void sdc__drain(sdc__worker *w);
static void sdc__start_next(sdc__worker *w);

static void sdc__send_register(sdc__worker *w) {
  Sdcpb__Stage stages[SDC_STAGE_END];
  size_t n = 0;
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++)
    if (w->host.stages & (1u << s)) stages[n++] = (Sdcpb__Stage)s;
  Sdcpb__Register reg = SDCPB__REGISTER__INIT;
  reg.worker_id = w->id;
  reg.n_stages = n, reg.stages = stages;
  reg.model_fingerprint = w->host.fingerprint;
  reg.data_endpoint = w->endpoint;
  reg.threads = 1;
  reg.max_pixel_images = w->max_pixel_images, reg.memory_bytes = w->memory_bytes;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
  env.register_ = &reg;
  sdc_zmq_send(w->ctrl, NULL, 0, &env, ZMQ_DONTWAIT);
}

static uint32_t sdc__held(const sdc__worker *w) {
  uint32_t q = w->running ? 1 : 0;
  for (const sdc__item *it = w->head; it; it = it->next) q++;
  return q;
}

/* deregister: the last word of a drained worker (see sdc.proto's Heartbeat) */
static void sdc__send_heartbeat_as(sdc__worker *w, int deregister) {
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = w->id;
  hb.in_flight = sdc__held(w), hb.served = w->served, hb.draining = w->draining;
  hb.deregister = deregister;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT;
  env.heartbeat = &hb;
  sdc_zmq_send(w->ctrl, NULL, 0, &env, ZMQ_DONTWAIT);
}

static void sdc__send_heartbeat(sdc__worker *w) { sdc__send_heartbeat_as(w, 0); }

static void sdc__peer_close(sdc__worker *w, int i, const char *why) {
  sdc_log(NULL, -1, 0, "closed next hop %s (%s)", w->peers[i].endpoint, why);
  zmq_close(w->peers[i].sock);
  w->peers[i] = w->peers[--w->n_peers];
  w->peers_closed++;
}

/* On the beat: next hops unused for SDC_WORKER_PEER_IDLE_MS are closed; a peer that moved (a restarted
 * pod on a new address) is never used again, so without this the table would only grow. */
static void sdc__peers_prune(sdc__worker *w) {
  const int64_t now = sdc_clock_mono_ms();
  for (int i = w->n_peers - 1; i >= 0; i--)
    if (now - w->peers[i].used_ms > SDC_WORKER_PEER_IDLE_MS) sdc__peer_close(w, i, "idle");
}

/* The PUSH socket to endpoint, connected on first use (with CURVE, as a client of `key`, the public key the
 * coordinator put in the route). NULL with the loop thread's message set (naming the endpoint) when it
 * cannot be had. */
static void *sdc__peer(sdc__worker *w, const char *endpoint, const char *key) {
  for (int i = 0; i < w->n_peers; i++)
    if (strcmp(w->peers[i].endpoint, endpoint) == 0) {
      if (strcmp(w->peers[i].key, key) == 0) {
        w->peers[i].used_ms = sdc_clock_mono_ms();
        return w->peers[i].sock;
      }
      /* another worker (key) now listens there: a new connection, the old one is forgotten */
      sdc__peer_close(w, i, "another key listens there now");
      break;
    }
  if (w->n_peers == SDC_WORKER_MAX_PEERS) { /* full: the least recently used makes room */
    int lru = 0;
    for (int i = 1; i < w->n_peers; i++)
      if (w->peers[i].used_ms < w->peers[lru].used_ms) lru = i;
    sdc__peer_close(w, lru, "least recently used of SDC_WORKER_MAX_PEERS");
  }
  void *s = zmq_socket(w->zctx, ZMQ_PUSH);
  if (!s) {
    sdc_seterr(SDC_EIO, "%s: zmq_socket: %s", endpoint, zmq_strerror(errno));
    return NULL;
  }
  sdc_zmq_configure(s);
  if (w->curve.on && sdc_curve_client(&w->curve, s, key) != SDC_OK) {
    sdc_adderr(SDC_EINVAL, "%s", endpoint);
    zmq_close(s);
    return NULL;
  }
  if (zmq_connect(s, endpoint) != 0) {
    sdc_seterr(SDC_EIO, "%s: zmq_connect: %s", endpoint, zmq_strerror(errno));
    zmq_close(s);
    return NULL;
  }
  snprintf(w->peers[w->n_peers].endpoint, sizeof w->peers[w->n_peers].endpoint, "%s", endpoint);
  snprintf(w->peers[w->n_peers].key, sizeof w->peers[w->n_peers].key, "%s", key);
  w->peers[w->n_peers].used_ms = sdc_clock_mono_ms();
  w->peers[w->n_peers++].sock = s;
  return s;
}

/* Drained when nothing is queued or running and nothing more can arrive: the coordinator, which routes
 * nothing new to a draining worker, has no request through us left unanswered (a hop upstream of us
 * still counts), or it has forgotten us (an empty Register: it said goodbye or expired us) and not
 * welcomed us since. A coordinator that never answers (an old one, or gone) is given
 * SDC_DEAD_AFTER_BEATS beats, after which it has stopped routing to us either way; one beat when we are
 * not registered, time enough for one that did know us to answer. Should a request still be on its way
 * after all, the deregistration makes the coordinator re-issue it at once. */
static void sdc__maybe_exit(sdc__worker *w) {
  if (!w->draining || w->running || w->head || w->closing) return;
  const int patience = w->registered ? SDC_DEAD_AFTER_BEATS : 1;
  const int confirmed = w->coord_routed == 0, unanswered = w->coord_routed < 0 && w->drain_beats > patience;
  if (!confirmed && !unanswered) return;
  w->closing = 1;
  sdc__send_heartbeat_as(w, 1);
  sdc_log(NULL, -1, 0, "drained in %lld ms (%llu requests received while draining, all served; %s); deregistered, exiting",
          (long long)(sdc_clock_mono_ms() - w->drain_start_ms), (unsigned long long)w->taken_draining,
          confirmed ? "the coordinator has nothing routed through us" : "the coordinator never answered the drain");
  uv_stop(w->loop);
}

/* On a pool thread: its error messages stay here, so they are copied into the item. */
static void sdc__work_cb(uv_work_t *req) {
  sdc__worker *w = req->data;
  sdc__item *it = w->running;
  const char *ep = NULL;
#ifdef SDC_TEST_HOOKS
  /* test hook (cmake -DSDC_TEST_HOOKS=ON only): a job whose id starts with $SDC_TEST_CRASH_JOB kills the
   * worker mid-step, every time: the coordinator's retries, backoff and dead letter are tested with it */
  const char *crash = getenv("SDC_TEST_CRASH_JOB");
  if (crash && crash[0] && strncmp(it->env->request->job_id, crash, strlen(crash)) == 0) {
    sdc_log(it->env->request->job_id, -1, 0, "SDC_TEST_CRASH_JOB: aborting (test hook)");
    abort();
  }
#endif
  it->start_ms = sdc_clock_unix_ms();
  sdc_abort_watch(&w->cancel_running);
  int err = sdc_stage_execute(&w->host, it->env->request, w->id, &it->out, &it->out_n, &it->is_reply, &ep, &it->hops,
                              &it->hop_error);
  sdc_abort_watch(NULL);
  sdc_error_capture(&it->send_error, err);
  if (ep) snprintf(it->endpoint, sizeof it->endpoint, "%s", ep);
  it->end_ms = sdc_clock_unix_ms();
}

static void sdc__after_work_cb(uv_work_t *req, int status) {
  sdc__worker *w = req->data;
  sdc__item *it = w->running;
  w->running = NULL;
  (void)status;
  const Sdcpb__StageRequest *r = it->env->request;
  const int64_t step = sdc__step_of(r);
  const char *stage = sdc_stage_name(sdc__stage_of(r));
  sdc__telemetry_done(w, it);
  /* one line per hop when asked (--log-hops): the pipeline's overlap can be read off the logs */
  if (w->log_hops)
    sdc_log(r->job_id, step, 0, "hop stage=%s start_ms=%llu end_ms=%llu", stage, (unsigned long long)it->start_ms,
            (unsigned long long)it->end_ms);
  if (it->hop_error.code == SDC_ECANCELLED) {
    /* the job was cancelled while this ran: the coordinator has ended it, nothing is sent */
    w->cancelled++;
    sdc_log(r->job_id, step, 0, "%s stopped by cancel after %llu ms: %s", stage,
            (unsigned long long)(it->end_ms - it->start_ms), it->hop_error.msg);
  } else if (it->hop_error.code) {
    w->errors++;
    sdc_log(r->job_id, step, 0, "%s failed (%s), replying with the error: %s", stage, sdc_err_name(it->hop_error.code),
            it->hop_error.msg);
  }
  const int cancelled = it->hop_error.code == SDC_ECANCELLED;
  if (cancelled) {
    /* nothing to send: the reply would be dropped as late */
  } else if (it->send_error.code) {
    w->errors++;
    sdc_log(r->job_id, step, 0, "%s: nothing to send (%s): %s", stage, sdc_err_name(it->send_error.code),
            it->send_error.msg);
  } else {
    const char *to = it->is_reply ? "the coordinator" : it->endpoint;
    const char *key = "";
    for (size_t k = r->hop + 1; !it->is_reply && k < r->n_route; k++)
      if (r->route[k] && strcmp(r->route[k]->endpoint, it->endpoint) == 0) {
        key = r->route[k]->curve_public_key;
        break;
      }
    void *sock = it->is_reply ? w->ctrl : sdc__peer(w, it->endpoint, key);
    if (!sock) {
      w->dropped_full++;
      sdc_log(r->job_id, step, 0, "%s: could not send: %s", stage, sdc_errmsg(SDC_EIO)); /* set just now, here */
    } else if (zmq_send(sock, it->out, it->out_n, ZMQ_DONTWAIT) < 0) {
      w->dropped_full++;
      sdc_log(r->job_id, step, 0, "%s: could not send to %s: %s", stage, to, zmq_strerror(errno));
    } else {
      w->served++;
      const Sdcpb__Stage last = it->hops.n ? it->hops.stage[it->hops.n - 1] : sdc__stage_of(r);
      sdc__count_link(w, last, it->is_reply ? SDCPB__STAGE__STAGE_INVALID : it->hops.next_stage, "sent", it->out_n);
    }
  }
  free(it->out);
  sdc_wire_free(it->env);
  free(it);
  sdc__drain(w);
  sdc__start_next(w);
  sdc__maybe_exit(w);
}

/* A request whose deadline is 0 (none: it could be held forever) or past is dropped and counted: the
 * coordinator re-issues a step whose deadline passed, and a request without one is not its. */
static int sdc__drop_if_late(sdc__worker *w, const Sdcpb__StageRequest *r) {
  const uint64_t now = sdc_clock_unix_ms();
  if (r->deadline_unix_ms && now <= r->deadline_unix_ms) return 0;
  w->dropped_late++;
  sdc_node_metrics_drop(&w->tm.node, "deadline");
  if (!r->deadline_unix_ms)
    sdc_log(r->job_id, sdc__step_of(r), 0, "%s: dropped, the request has no deadline", sdc_stage_name(sdc__stage_of(r)));
  else
    sdc_log(r->job_id, sdc__step_of(r), 0, "%s: dropped, %llu ms past its deadline", sdc_stage_name(sdc__stage_of(r)),
            (unsigned long long)(now - r->deadline_unix_ms));
  return 1;
}

/* On the beat: queued requests whose deadline passed leave the queue now, not when they reach its head. */
static void sdc__queue_prune(sdc__worker *w) {
  sdc__item **pp = &w->head, *last = NULL;
  while (*pp) {
    sdc__item *it = *pp;
    if (sdc__drop_if_late(w, it->env->request)) {
      *pp = it->next;
      w->n_queued--;
      sdc_wire_free(it->env);
      free(it);
    } else {
      last = it;
      pp = &it->next;
    }
  }
  w->tail = last;
  sdc__set_queue_gauge(w);
}

static void sdc__start_next(sdc__worker *w) {
  for (; !w->running && w->head; sdc__set_queue_gauge(w)) {
    sdc__item *it = w->head;
    w->head = it->next;
    w->n_queued--;
    if (!w->head) w->tail = NULL;
    const Sdcpb__StageRequest *r = it->env->request;
    if (sdc__drop_if_late(w, r)) {
      sdc_wire_free(it->env);
      free(it);
      continue;
    }
    atomic_store(&w->cancel_running, 0);
    w->running = it;
    w->tm.run_start_us = sdc_clock_mono_ns() / 1000;
    w->work.data = w;
    uv_queue_work(w->loop, &w->work, sdc__work_cb, sdc__after_work_cb);
  }
  sdc__set_queue_gauge(w);
}

/* A full queue: the coordinator hears at once (an error reply naming us and the bound) and routes the
 * step again, instead of the queue growing without end. */
static void sdc__refuse_full(sdc__worker *w, Sdcpb__Envelope *env) {
  const Sdcpb__StageRequest *r = env->request;
  char msg[SDC_MAX_WORKER_ID + 128];
  snprintf(msg, sizeof msg, "worker %s: queue full (--max-queue %d requests waiting)", w->id, w->max_queue);
  w->dropped_queue++;
  sdc_node_metrics_drop(&w->tm.node, "queue_full");
  sdc_log(r->job_id, sdc__step_of(r), 0, "%s: refused: %s", sdc_stage_name(sdc__stage_of(r)), msg);
  uint8_t *out = NULL;
  size_t n = 0;
  if (sdc_stage_error_reply(r, msg, &out, &n) == SDC_OK) zmq_send(w->ctrl, out, n, ZMQ_DONTWAIT);
  free(out);
  sdc_wire_free(env);
}

static void sdc__on_request(sdc__worker *w, Sdcpb__Envelope *env) {
  if (sdc__drop_if_late(w, env->request)) {
    sdc_wire_free(env);
    return;
  }
  if (w->n_queued >= w->max_queue) {
    sdc__refuse_full(w, env);
    return;
  }
  sdc__item *it = calloc(1, sizeof *it);
  if (!it) {
    sdc_wire_free(env);
    return;
  }
  w->n_queued++;
  it->env = env;
  if (w->tail) w->tail->next = it;
  else w->head = it;
  w->tail = it;
  sdc__start_next(w);
}

static void sdc__on_beat(uv_timer_t *t);

/* Beats every period_ms from now on: the coordinator's Welcome.heartbeat_ms, so that its
 * liveness check (SDC_DEAD_AFTER_BEATS periods) matches our rhythm. A period outside
 * SDC_MIN_HEARTBEAT_MS..SDC_MAX_HEARTBEAT_MS keeps the current one. */
static void sdc__set_beat(sdc__worker *w, uint32_t period_ms) {
  if (period_ms < SDC_MIN_HEARTBEAT_MS || period_ms > SDC_MAX_HEARTBEAT_MS) {
    sdc_log(NULL, -1, 0, "Welcome.heartbeat_ms %u is outside %d..%d; beating every %u ms", period_ms,
            SDC_MIN_HEARTBEAT_MS, SDC_MAX_HEARTBEAT_MS, w->beat_ms);
    return;
  }
  if (period_ms == w->beat_ms) return;
  sdc_log(NULL, -1, 0, "heartbeat every %u ms (was %u), as the coordinator asks", period_ms, w->beat_ms);
  w->beat_ms = period_ms;
  uv_timer_start(&w->beat, sdc__on_beat, period_ms, period_ms);
}

static void sdc__on_control(sdc__worker *w, Sdcpb__Envelope *env) {
  w->silent_beats = 0;
  if (env->body_case == SDCPB__ENVELOPE__BODY_WELCOME) {
    if (env->welcome->accepted) {
      if (!w->registered) sdc_log(NULL, -1, 0, "registered with coordinator %s", env->welcome->coordinator_id);
      w->registered = 1;
      sdc__update_ready(w);
      if (!w->draining) w->coord_routed = -1; /* it may route to us from now on */
      sdc__set_beat(w, env->welcome->heartbeat_ms);
    } else {
      sdc_log(NULL, -1, 0, "registration refused: %s", env->welcome->reason);
    }
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_CANCEL) {
    /* drop queued work of the job; what runs now stops at its next block */
    if (w->running && strcmp(w->running->env->request->job_id, env->cancel->job_id) == 0)
      atomic_store(&w->cancel_running, 1);
    sdc__item **pp = &w->head, *last = NULL;
    while (*pp) {
      sdc__item *it = *pp;
      if (strcmp(it->env->request->job_id, env->cancel->job_id) == 0) {
        *pp = it->next;
        w->n_queued--;
        sdc_wire_free(it->env);
        free(it);
      } else {
        last = it;
        pp = &it->next;
      }
    }
    w->tail = last;
    sdc__set_queue_gauge(w);
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER && w->draining) {
    /* the coordinator does not know us (it restarted, or expired us): it routes nothing through us,
     * and registering now would only invite new work */
    w->registered = 0;
    w->coord_routed = 0;
    sdc__update_ready(w);
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER) {
    w->registered = 0; /* the coordinator asks us to register again */
    w->coord_routed = 0; /* and routes nothing through us until it welcomes us */
    sdc__update_ready(w);
    sdc__send_register(w);
  } else if (env->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT && w->draining) {
    w->coord_routed = env->heartbeat->in_flight; /* its answer to our drain */
  }
  sdc_wire_free(env);
  sdc__maybe_exit(w);
}

/* ZMQ_FD is edge-triggered: read until the socket says it is empty. */
static void sdc__drain(sdc__worker *w) {
  if (w->curve.zap) {
    int refused = sdc_curve_zap_serve(&w->curve);
    while (refused-- > 0) sdc_node_metrics_drop(&w->tm.node, "unauthorized");
  }
  for (int progress = 1; progress;) {
    progress = 0;
    Sdcpb__Envelope *env;
    int err;
    size_t n_bytes;
    while ((err = sdc_zmq_recv_n(w->data, &env, NULL, 0, NULL, &n_bytes)) != SDC_EAGAIN) {
      if (err == SDC_EPROTOCOL) { /* malformed: dropped and counted */
        sdc_wire_log_drop("data socket");
        continue;
      }
      if (err) break;
      progress = 1;
      if (env->body_case == SDCPB__ENVELOPE__BODY_REQUEST) {
        const Sdcpb__StageRequest *r = env->request;
        const Sdcpb__Stage from = r->hop > 0 && r->hop <= r->n_route && r->route[r->hop - 1] ? r->route[r->hop - 1]->stage
                                                                                               : SDCPB__STAGE__STAGE_INVALID;
        sdc__count_link(w, from, sdc__stage_of(r), "received", n_bytes);
      }
      if (env->body_case != SDCPB__ENVELOPE__BODY_REQUEST) {
        sdc_wire_free(env);
        continue;
      }
      /* routed before the coordinator saw our drain, or a hop upstream forwarding: computed all the
       * same, so nothing needs re-issuing */
      w->taken_draining += w->draining != 0;
      sdc__on_request(w, env);
    }
    while ((err = sdc_zmq_recv(w->ctrl, &env, NULL, 0, NULL)) != SDC_EAGAIN) {
      if (err == SDC_EPROTOCOL) {
        sdc_wire_log_drop("control socket");
        continue;
      }
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
  if (!w->registered && !w->draining) sdc__send_register(w);
  /* unanswered: a handshake that fails (CURVE on one side only, a key it does not authorize, another server
   * key) shows nowhere else on this side */
  if (!w->registered && ++w->silent_beats % SDC_WORKER_SILENT_WARN_BEATS == 0)
    sdc_log(NULL, -1, 0, "no answer from coordinator %s for %d beats: is it running, and %s (docs/security.md)?",
            w->coordinator, w->silent_beats,
            w->curve.on ? "does it run CURVE with our key in its authorized file and the server key we were given"
                        : "does it run plaintext (we have no --curve-key)");
  sdc__send_heartbeat(w);
  sdc__peers_prune(w);
  sdc__queue_prune(w);
  if (w->draining && w->coord_routed < 0) w->drain_beats++;
  sdc__drain(w);
  sdc__maybe_exit(w);
}

/* Closes every socket. The deregistration may wait at most SDC_DRAIN_LINGER_MS to go out, unless the
 * coordinator has forgotten us (it may be gone: nobody would take it). What we forwarded needs no wait:
 * a drained worker exits only once the coordinator has the replies. */
static void sdc__close_sockets(sdc__worker *w) {
  const int linger = w->registered ? SDC_DRAIN_LINGER_MS : 0;
  for (int i = 0; i < w->n_peers; i++) zmq_close(w->peers[i].sock);
  zmq_setsockopt(w->ctrl, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(w->ctrl);
  zmq_close(w->data);
  sdc_curve_zap_close(&w->curve);
  zmq_ctx_term(w->zctx);
  zmq_ctx_term(w->ctrl_ctx);
}

/* --drain-timeout-ms ran out: say what we still hold, deregister (the coordinator re-issues those
 * steps at once instead of after 3 missed beats) and exit 1. A compute may still run on a pool thread,
 * so the process ends with _exit, touching nothing it uses. */
static void sdc__on_drain_timeout(uv_timer_t *t) {
  sdc__worker *w = t->data;
  if (w->closing) return;
  if (w->running) {
    const Sdcpb__StageRequest *r = w->running->env->request;
    sdc_log(r->job_id, sdc__step_of(r), 0, "drain timeout: still computing %s", sdc_stage_name(sdc__stage_of(r)));
  }
  for (const sdc__item *it = w->head; it; it = it->next)
    sdc_log(it->env->request->job_id, sdc__step_of(it->env->request), 0, "drain timeout: still queued: %s",
            sdc_stage_name(sdc__stage_of(it->env->request)));
  sdc_log(NULL, -1, 0,
          "drain timeout after %llu ms: %u requests held, the coordinator counts %lld routed through us; "
          "deregistering, exiting 1",
          (unsigned long long)w->drain_timeout_ms, sdc__held(w), (long long)w->coord_routed);
  w->closing = 1;
  sdc__send_heartbeat_as(w, 1);
  sdc__close_sockets(w);
  fflush(stdout), fflush(stderr);
  _exit(1);
}

static void sdc__on_signal(uv_signal_t *s, int signum) {
  sdc__worker *w = s->data;
  if (w->draining) return;
  w->draining = 1;
  sdc__update_ready(w);
  w->drain_start_ms = sdc_clock_mono_ms();
  sdc_log(NULL, -1, 0, "signal %d: draining (%u requests held; at most %llu ms)", signum, sdc__held(w),
          (unsigned long long)w->drain_timeout_ms);
  sdc__send_heartbeat(w); /* at once: the coordinator stops routing to us */
  uv_timer_start(&w->drain_timer, sdc__on_drain_timeout, w->drain_timeout_ms, 0);
  sdc__maybe_exit(w);
}

/* The memory this process may use: the cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) when
 * below the physical RAM, else the RAM (sysconf). */
static uint64_t sdc__memory_limit(const char **source) {
  const uint64_t phys = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
  static const char *const files[] = {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
  *source = "physical memory";
  for (int i = 0; i < 2; i++) {
    FILE *fp = fopen(files[i], "r");
    unsigned long long v = 0;
    const int ok = fp && fscanf(fp, "%llu", &v) == 1; /* "max" (no limit) does not parse */
    if (fp) fclose(fp);
    if (ok && v > 0 && v < phys) {
      *source = files[i];
      return v;
    }
  }
  return phys;
}

/* Our resident set now (/proc/self/statm), 0 when unknown. */
static uint64_t sdc__rss_bytes(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  unsigned long long size = 0, rss = 0;
  const int ok = fp && fscanf(fp, "%llu %llu", &size, &rss) == 2;
  if (fp) fclose(fp);
  return ok ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* After loading: the largest width*height*num_images our memory takes, from the model's per-pixel peak
 * (sdc_stage_host_bytes_per_pixel); logged with what it rests on. */
static void sdc__estimate_capacity(sdc__worker *w, uint64_t memory_mib) {
  const char *source;
  uint64_t mem = sdc__memory_limit(&source);
  const uint64_t rss = sdc__rss_bytes();
  if (memory_mib && (memory_mib << 20) < mem) mem = memory_mib << 20, source = "--memory-mib";
  const int64_t per_px = sdc_stage_host_bytes_per_pixel(&w->host);
  w->memory_bytes = mem;
  if (per_px <= 0) return; /* text: its memory does not grow with the image */
  /* with --lora-dir each cached LoRA-merged set copies our weights: counted as one more resident set
   * apiece (an upper bound: the set holds only the text encoder or the UNet part, not the process) */
  const int64_t lora_b = (int64_t)sdc_stage_host_lora_sets(&w->host) * (int64_t)rss;
  const int64_t free_b = (int64_t)mem - (int64_t)rss - lora_b - SDC_WORKER_MEMORY_RESERVE;
  w->max_pixel_images = free_b > 0 ? (uint64_t)(free_b / per_px) : 1; /* 1: refuses every job, visibly */
  sdc_log(NULL, -1, 0, "takes jobs up to %llu pixel-images (width*height*num_images): %llu MiB of %s, %llu MiB "
          "resident, %llu MiB kept for %d LoRA-merged sets, %lld bytes per pixel-image at its peak",
          (unsigned long long)w->max_pixel_images, (unsigned long long)(mem >> 20), source,
          (unsigned long long)(rss >> 20), (unsigned long long)(lora_b >> 20), sdc_stage_host_lora_sets(&w->host),
          (long long)per_px);
}

/* Copies a flag's value into a fixed field; a value that does not fit is refused, not cut
 * (a cut id or endpoint would name another worker). */
static int sdc__copy_arg(const char *flag, char *dst, size_t n, const char *value) {
  if (strlen(value) >= n) {
    fprintf(stderr, "sdc-worker: %s: '%.40s...' is %zu bytes, at most %zu\n", flag, value, strlen(value), n - 1);
    return SDC_EINVAL;
  }
  memcpy(dst, value, strlen(value) + 1);
  return SDC_OK;
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
          "  --log-hops            log one line per hop: job, step, stage, start and end (unix ms)\n"
          "  --http ADDR:PORT      serve /metrics, /healthz, /readyz there (e.g. 127.0.0.1:9101; default off)\n"
                    "  --drain-timeout-ms N  the longest a drain may take, 0..%d (default %d)\n"
          "  --curve-key FILE      our CURVE secret key (sdc keygen); with it every link is encrypted and the data\n"
          "                        socket accepts only keys in --curve-authorized (docs/security.md)\n"
          "  --curve-authorized FILE  \"PUBLIC-KEY NAME\" lines: the coordinator and fellow workers\n"
          "  --curve-server-key FILE  the coordinator's public key (default: the key named 'coordinator' in\n"
          "                        --curve-authorized)\n"
          "  --insecure            allow plaintext on a non-loopback --bind (without keys only loopback is allowed)\n"
          "  --max-queue N         requests waiting for the compute thread, 1..%d (default %d); more are\n"
          "                        answered at once with an error naming the worker and the bound\n"
          "  --lora-dir DIR        LoRAs a job may name: NAME resolves to DIR/NAME.safetensors (text and UNet\n"
          "                        workers; without it a job naming a LoRA fails)\n"
          "  --lora-cache N        LoRA-merged model sets kept, least recently used evicted, 0..%d (default %d;\n"
          "                        0: merged per request); each holds a copy of this worker's text/UNet weights\n"
          "  --memory-mib N        the memory this worker may use, when less than its cgroup limit or RAM (e.g.\n"
          "                        workers sharing a machine); bounds the jobs it takes (docs/jobs.md)\n"
          "SIGTERM/SIGINT drain: the worker tells the coordinator at once (which routes nothing new to it),\n"
          "computes and forwards every request it has received or still receives, and once the coordinator\n"
          "has nothing routed through it, deregisters and exits 0. Past --drain-timeout-ms it logs what it\n"
          "still holds, deregisters (the coordinator re-issues those steps) and exits 1.\n",
          SDC_MAX_DRAIN_TIMEOUT_MS, SDC_DEFAULT_DRAIN_TIMEOUT_MS, SDC_WORKER_MAX_QUEUE_LIMIT, SDC_WORKER_MAX_QUEUE,
          SDC_WORKER_MAX_LORA_CACHE, SDC_WORKER_DEFAULT_LORA_CACHE);
}

int main(int argc, char **argv) {
  sdc_runtime_init(argv);
  static sdc__worker w;
  const char *stages = NULL, *model = NULL, *config = NULL, *bind = "tcp://127.0.0.1:*", *advertise = NULL, *http = NULL;
  static const struct option opts[] = {{"stage", required_argument, 0, 's'},  {"model", required_argument, 0, 'm'},
                                       {"config", required_argument, 0, 'c'}, {"coordinator", required_argument, 0, 'C'},
                                       {"bind", required_argument, 0, 'b'},   {"advertise", required_argument, 0, 'a'},
                                       {"id", required_argument, 0, 'i'},     {"help", no_argument, 0, 'h'},
                                       {"precision", required_argument, 0, 'p'}, {"log-hops", no_argument, 0, 'L'},
                                       {"http", required_argument, 0, 'H'}, 
                                       {"drain-timeout-ms", required_argument, 0, 'D'},
                                       {"curve-key", required_argument, 0, 'K'}, {"curve-authorized", required_argument, 0, 'A'},
                                       {"curve-server-key", required_argument, 0, 'S'}, {"insecure", no_argument, 0, 'I'},
                                       {"memory-mib", required_argument, 0, 'M'},
                                       {"max-queue", required_argument, 0, 'Q'},
                                       {"lora-dir", required_argument, 0, 'R'}, {"lora-cache", required_argument, 0, 'E'},
                                       {0, 0, 0, 0}};
  const char *lora_dir = NULL;
  int64_t lora_cache = SDC_WORKER_DEFAULT_LORA_CACHE;
  int64_t memory_mib = 0;
  char host[HOST_NAME_MAX + 1] = "worker";
  gethostname(host, sizeof host - 1);
  snprintf(w.id, sizeof w.id, "%s-%d", host, (int)getpid());
  int ch;
  sdc_precision prec = SDC_PREC_FP32;
  w.drain_timeout_ms = SDC_DEFAULT_DRAIN_TIMEOUT_MS;
  w.coord_routed = -1;
  const char *curve_key = NULL, *curve_auth = NULL, *curve_server = NULL;
  int insecure = 0;
  w.max_queue = SDC_WORKER_MAX_QUEUE;
  while ((ch = getopt_long(argc, argv, "s:m:c:C:b:a:i:p:D:Lh", opts, NULL)) != -1) {
    switch (ch) {
      case 's': stages = optarg; break;
      case 'm': model = optarg; break;
      case 'c': config = optarg; break;
      case 'C':
        if (sdc__copy_arg("--coordinator", w.coordinator, sizeof w.coordinator, optarg)) return 2;
        break;
      case 'b': bind = optarg; break;
      case 'a': advertise = optarg; break;
      case 'i':
        if (sdc__copy_arg("--id", w.id, sizeof w.id, optarg)) return 2;
        break;
      case 'L': w.log_hops = 1; break;
      case 'H': http = optarg; break;
      case 'Q': {
        int64_t v;
        if (sdc_flag_int("--max-queue", optarg, 1, SDC_WORKER_MAX_QUEUE_LIMIT, &v)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        w.max_queue = (int)v;
        break;
      }
      case 'M':
        if (sdc_flag_int("--memory-mib", optarg, 1, (int64_t)1 << 30, &memory_mib)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        break;
      case 'D': {
        int64_t v;
        if (sdc_flag_int("--drain-timeout-ms", optarg, 0, SDC_MAX_DRAIN_TIMEOUT_MS, &v)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        w.drain_timeout_ms = (uint64_t)v;
        break;
      }
      case 'p':
        if (sdc_precision_parse(optarg, &prec)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        break;
      case 'R': lora_dir = optarg; break;
      case 'E':
        if (sdc_flag_int("--lora-cache", optarg, 0, SDC_WORKER_MAX_LORA_CACHE, &lora_cache)) {
          fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        break;
      case 'K': curve_key = optarg; break;
      case 'A': curve_auth = optarg; break;
      case 'S': curve_server = optarg; break;
      case 'I': insecure = 1; break;
      case 'h': sdc__usage(stdout); return 0;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (!stages || !model || !w.coordinator[0] || optind != argc) {
    sdc__usage(stderr);
    return 2;
  }
  sdc_log_init("worker", w.id);
  if (!curve_key != !curve_auth || (curve_server && !curve_key)) {
    fprintf(stderr, "sdc-worker: --curve-key and --curve-authorized go together (--curve-server-key needs both)\n");
    return 2;
  }
  if (!curve_key && !insecure && !sdc_endpoint_is_loopback(bind)) {
    fprintf(stderr, "sdc-worker: --bind %s is not loopback: give --curve-key and --curve-authorized, or --insecure to "
                    "accept anyone who reaches it\n", bind);
    return 2;
  }
  if (curve_key) {
    const char *ck;
    int cerr = sdc_curve_load(&w.curve, curve_key, curve_auth);
    if (!cerr && curve_server) cerr = sdc_curve_read_key(curve_server, w.coord_key);
    else if (!cerr && (ck = sdc_curve_key_of(&w.curve, "coordinator"))) snprintf(w.coord_key, sizeof w.coord_key, "%s", ck);
    else if (!cerr)
      cerr = sdc_seterr(SDC_EINVAL, "%s: no key named 'coordinator' (give --curve-server-key)", curve_auth);
    if (cerr) {
      fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(cerr));
      return 2;
    }
  } else {
    sdc_log(NULL, -1, 0, "WARNING: plaintext ZeroMQ (no --curve-key): anyone who reaches %s can send us work and "
                         "read what we compute", bind);
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
  struct stat lst; /* a bad --lora-dir is said before the (long) model load */
  if (lora_dir && (stat(lora_dir, &lst) != 0 || !S_ISDIR(lst.st_mode))) {
    fprintf(stderr, "sdc-worker: --lora-dir %s: not a readable folder\n", lora_dir);
    return 2;
  }
  /* served before the (long) model load: /healthz answers and /readyz says "loading models" */
  if (http && (err = sdc__telemetry_start(&w, http)) != SDC_OK) {
    fprintf(stderr, "sdc-worker: --http: %s\n", sdc_errmsg(err));
    return 2;
  }
  err = sdc_stage_host_load(&w.host, model, config, bits, &lo);
  if (!err) err = sdc_stage_host_set_loras(&w.host, lora_dir, (int)lora_cache);
  if (err) {
    fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(err));
    sdc_node_metrics_stop(&w.tm.node);
    return 2;
  }
  w.loaded = 1;
  sdc__estimate_capacity(&w, (uint64_t)memory_mib);
  sdc__update_ready(&w);
  if (w.tm.node.reg) sdc__telemetry_loaded(&w);
  w.zctx = zmq_ctx_new();
  w.ctrl_ctx = zmq_ctx_new();
  if (w.curve.on && (err = sdc_curve_zap_start(&w.curve, w.zctx)) != SDC_OK) {
    fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(err));
    return 2;
  }
  w.ctrl = zmq_socket(w.ctrl_ctx, ZMQ_DEALER); /* a client of the coordinator: no ZAP needed in its context */
  w.data = zmq_socket(w.zctx, ZMQ_PULL);
  sdc_zmq_configure(w.ctrl);
  sdc_zmq_configure(w.data);
  if (w.curve.on && ((err = sdc_curve_client(&w.curve, w.ctrl, w.coord_key)) != SDC_OK ||
                     (err = sdc_curve_server(&w.curve, w.data)) != SDC_OK)) {
    fprintf(stderr, "sdc-worker: %s\n", sdc_errmsg(err));
    return 2;
  }
  zmq_setsockopt(w.ctrl, ZMQ_ROUTING_ID, w.id, strlen(w.id));
  if (zmq_bind(w.data, bind) != 0) {
    fprintf(stderr, "sdc-worker: --bind %s: %s\n", bind, zmq_strerror(errno));
    return 2;
  }
  size_t len = sizeof w.endpoint;
  zmq_getsockopt(w.data, ZMQ_LAST_ENDPOINT, w.endpoint, &len);
  if (advertise && sdc__copy_arg("--advertise", w.endpoint, sizeof w.endpoint, advertise)) return 2;
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
  if (w.curve.zap) {
    zmq_getsockopt(w.curve.zap, ZMQ_FD, &fd, &fl);
    uv_poll_init(w.loop, &w.zap_poll, fd);
    w.zap_poll.data = &w;
    uv_poll_start(&w.zap_poll, UV_READABLE, sdc__on_poll);
  }
  uv_prepare_init(w.loop, &w.prep);
  w.prep.data = &w;
  uv_prepare_start(&w.prep, sdc__on_prepare);
  uv_timer_init(w.loop, &w.beat);
  w.beat.data = &w;
  w.beat_ms = SDC_HEARTBEAT_MS; /* until the coordinator's Welcome names its period */
  uv_timer_start(&w.beat, sdc__on_beat, 0, w.beat_ms);
  uv_timer_init(w.loop, &w.drain_timer);
  w.drain_timer.data = &w;
  uv_signal_init(w.loop, &w.sig_term);
  uv_signal_init(w.loop, &w.sig_int);
  w.sig_term.data = w.sig_int.data = &w;
  uv_signal_start(&w.sig_term, sdc__on_signal, SIGTERM);
  uv_signal_start(&w.sig_int, sdc__on_signal, SIGINT);
  if (w.tm.node.reg) {
    uv_timer_init(w.loop, &w.tm.busy_timer);
    w.tm.busy_timer.data = &w;
    uv_timer_start(&w.tm.busy_timer, sdc__on_busy_timer, 0, 1000);
  }
  sdc_log(NULL, -1, 0, "serving %s on %s (model %s, fingerprint %s)%s%s", stages, w.endpoint, model, w.host.fingerprint,
          w.tm.node.http ? ", metrics on " : "", w.tm.node.http ? http : "");
  uv_run(w.loop, UV_RUN_DEFAULT);
  sdc__close_sockets(&w);
  sdc_node_metrics_stop(&w.tm.node);
  sdc_stage_host_free(&w.host);
  return 0;
}
