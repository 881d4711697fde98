/* telemetry.c - the coordinator's --http: its metrics (docs/operations.md), readiness, and the queue poll. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "log.h"

static const char *const sdc__stage_label[] = {"stage"};

/* ---------------------------------------------------------------- readiness */

/* The HTTP thread's /readyz: reads only the atomics the tick stores. */
static int sdc__ready_fn(void *ctx, char *why, size_t n) {
  sdc_coord *c = ctx;
  switch ((sdc_coord_readiness)atomic_load(&c->tm.readiness)) {
    case SDC_COORD_READY: return 1;
    case SDC_COORD_NO_REDIS: snprintf(why, n, "redis %s does not answer", c->redis.where); break;
    case SDC_COORD_DRAINING: snprintf(why, n, "draining"); break;
    default: {
      const unsigned missing = atomic_load(&c->tm.missing);
      size_t len = (size_t)snprintf(why, n, "no live worker for stage");
      for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END && len < n; s++)
        if (missing & (1u << s)) len += (size_t)snprintf(why + len, n - len, " %s", sdc_stage_name((sdc_stage)s));
    }
  }
  return 0;
}

/* Redis answers: both connections set up, and the queue poll (sent every SDC_COORD_QUEUE_POLL_MS) not
 * left unanswered for SDC_COORD_REDIS_SILENT_MS. */
static int sdc__redis_answers(const sdc_coord *c, int64_t now_ms) {
  if (c->redis_ready < 2 || !c->rc || !c->rb) return 0;
  return !c->tm.poll_in_flight || now_ms - c->tm.poll_sent_ms < SDC_COORD_REDIS_SILENT_MS;
}

static void sdc__update_ready(sdc_coord *c, int64_t now_ms) {
  unsigned missing = 0;
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++)
    if (sdc_registry_pick(&c->reg, (Sdcpb__Stage)s) < 0) missing |= 1u << s;
  const sdc_coord_readiness r = c->draining                  ? SDC_COORD_DRAINING
                                : !sdc__redis_answers(c, now_ms) ? SDC_COORD_NO_REDIS
                                : missing                      ? SDC_COORD_NO_WORKERS
                                                               : SDC_COORD_READY;
  atomic_store(&c->tm.missing, missing);
  const int was = atomic_exchange(&c->tm.readiness, (int)r);
  if (was != (int)r && (was == SDC_COORD_READY || r == SDC_COORD_READY)) {
    char why[256] = "";
    sdc__ready_fn(c, why, sizeof why);
    sdc_log(NULL, -1, 0, "%s%s", r == SDC_COORD_READY ? "ready" : "not ready: ", why);
  }
  sdc_node_metrics_set_ready(&c->tm.node, r == SDC_COORD_READY);
}

/* ---------------------------------------------------------------- the queue poll */

/* A RESP2 map, a flat array [k, v, k, v, ...]: the value of key, NULL when absent. */
static const redisReply *sdc__field(const redisReply *m, const char *key) {
  if (!m || m->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t i = 0; i + 1 < m->elements; i += 2)
    if (m->element[i]->type == REDIS_REPLY_STRING && strcmp(m->element[i]->str, key) == 0) return m->element[i + 1];
  return NULL;
}

/* XPENDING sdc:jobs sdc-coordinators: [count, min, max, consumers]. */
static void sdc__on_xpending(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  const redisReply *rep = r;
  if (!rep) return;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_INTEGER) {
    c->tm.pending_entries = rep->element[0]->integer;
    sdc_metric_set(c->tm.pending, NULL, (double)rep->element[0]->integer);
  } else if (rep->type == REDIS_REPLY_ERROR) {
    sdc_log(NULL, -1, 0, "XPENDING %s %s: %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, rep->str);
  }
}

/* XLEN sdc:jobs, for the lag when Redis cannot tell it. */
static void sdc__on_xlen(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  const redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_INTEGER) c->tm.stream_len = rep->integer;
}

/* XINFO GROUPS sdc:jobs: our group's lag. Redis reports lag nil when entries were deleted ahead of the
 * group (the coordinator XDELs what it acks); then the stream's length less the pending entries is the
 * same number, since every entry still in the stream is pending or undelivered. The answer also proves
 * Redis answers (readiness). */
static void sdc__on_xinfo(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  const redisReply *rep = r;
  if (!rep) return;
  c->tm.poll_in_flight = 0;
  c->tm.poll_answered_ms = sdc_clock_mono_ms();
  if (rep->type == REDIS_REPLY_ERROR) {
    sdc_log(NULL, -1, 0, "XINFO GROUPS %s: %s", SDC_JOBS_STREAM, rep->str);
    return;
  }
  for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
    const redisReply *name = sdc__field(rep->element[i], "name"), *lag = sdc__field(rep->element[i], "lag");
    if (!name || name->type != REDIS_REPLY_STRING || strcmp(name->str, SDC_JOBS_GROUP) != 0) continue;
    const long long est = c->tm.stream_len - c->tm.pending_entries;
    sdc_metric_set(c->tm.lag, NULL, lag && lag->type == REDIS_REPLY_INTEGER ? (double)lag->integer : est > 0 ? (double)est : 0);
    return;
  }
}

static void sdc__poll_queue(sdc_coord *c, int64_t now_ms) {
  if (!c->rc || c->redis_ready < 2 || c->tm.poll_in_flight || now_ms - c->tm.poll_sent_ms < SDC_COORD_QUEUE_POLL_MS)
    return;
  c->tm.poll_sent_ms = now_ms;
  c->tm.poll_in_flight = 1;
  redisAsyncCommand(c->rc, sdc__on_xpending, c, "XPENDING %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP);
  redisAsyncCommand(c->rc, sdc__on_xlen, c, "XLEN %s", SDC_JOBS_STREAM);
  redisAsyncCommand(c->rc, sdc__on_xinfo, c, "XINFO GROUPS %s", SDC_JOBS_STREAM);
}

/* ---------------------------------------------------------------- workers */

/* Live workers per stage, and each worker's outstanding requests (0 once it is dead). */
static void sdc__update_workers(sdc_coord *c) {
  int live[SDC_STAGE_END] = {0};
  for (int i = 0; i < c->reg.n; i++) {
    const sdc_worker_info *w = &c->reg.w[i];
    char stages[96] = "";
    size_t len = 0;
    for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
      if (!(w->stages & (1u << s))) continue;
      if (w->alive) live[s]++;
      if (len < sizeof stages)
        len += (size_t)snprintf(stages + len, sizeof stages - len, "%s%s", len ? "," : "", sdc_stage_name((sdc_stage)s));
    }
    sdc_metric_set(c->tm.outstanding, (const char *const[]){w->id, stages}, w->alive ? w->outstanding : 0);
  }
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) {
    const char *name = sdc_stage_name((sdc_stage)s);
    sdc_metric_set(c->tm.workers, &name, live[s]);
  }
}

void sdc_coord_telemetry_tick(sdc_coord *c, int64_t now_ms) {
  if (!c->tm.node.reg) return;
  sdc__poll_queue(c, now_ms);
  sdc__update_workers(c);
  sdc__update_ready(c, now_ms);
}

/* ---------------------------------------------------------------- counting */

/* At each scrape (HTTP thread): the wire layer's drop counters. */
static void sdc__collect_wire(sdc_metrics *reg, void *ctx) {
  (void)reg;
  sdc_wire_stats now;
  sdc_wire_stats_get(&now);
  sdc_node_metrics_wire_drops(ctx, now.dropped_malformed, now.dropped_version, now.bad_tensors);
}

/* ---------------------------------------------------------------- start, stop */

int sdc_coord_telemetry_start(sdc_coord *c, const char *addr_port) {
  sdc_coord_telemetry *tm = &c->tm;
  int err = sdc_node_metrics_init(&tm->node);
  if (err) return err;
  /* jobs take seconds to minutes; a step's round trip milliseconds to seconds */
  static const double job_bounds[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  static const double step_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  static const char *const state_label[] = {"state"}, *const ws_labels[] = {"worker", "stage"};
  const int n_job = (int)(sizeof job_bounds / sizeof *job_bounds), n_step = (int)(sizeof step_bounds / sizeof *step_bounds);
  sdc_metrics *r = tm->node.reg;
  tm->jobs = sdc_metrics_counter(r, "sdc_jobs_total", "Jobs that reached a final state here.", 1, state_label);
  tm->in_flight = sdc_metrics_gauge(r, "sdc_jobs_in_flight", "Jobs this coordinator holds now.", 0, NULL);
  tm->pending = sdc_metrics_gauge(r, "sdc_queue_pending_entries",
                                  "Entries of sdc:jobs delivered to the group and not acknowledged (XPENDING).", 0, NULL);
  tm->lag = sdc_metrics_gauge(r, "sdc_queue_lag_entries", "Entries of sdc:jobs not yet delivered to the group.", 0, NULL);
  tm->duration = sdc_metrics_histogram(r, "sdc_job_duration_seconds", "Claim to final state.", 1, state_label,
                                       job_bounds, n_job);
  tm->queue_wait = sdc_metrics_histogram(r, "sdc_job_queue_wait_seconds", "Stream entry time to claim.", 0, NULL,
                                         job_bounds, n_job);
  tm->step_latency = sdc_metrics_histogram(r, "sdc_step_latency_seconds",
                                           "One request's round trip, issue to reply (unet: down, mid and up).", 1,
                                           sdc__stage_label, step_bounds, n_step);
  tm->reissued = sdc_metrics_counter(r, "sdc_steps_reissued_total",
                                     "Stage requests issued again after a timeout, an error or a worker's death.", 0, NULL);
  tm->workers = sdc_metrics_gauge(r, "sdc_workers_registered", "Live registered workers serving the stage.", 1,
                                  sdc__stage_label);
  tm->outstanding = sdc_metrics_gauge(r, "sdc_worker_outstanding_requests",
                                      "Requests issued through a worker and not answered.", 2, ws_labels);
  if (!tm->jobs || !tm->in_flight || !tm->pending || !tm->lag || !tm->duration || !tm->queue_wait || !tm->step_latency ||
      !tm->reissued || !tm->workers || !tm->outstanding)
    return SDC_EINVAL; /* sdc_errmsg names the metric */
  /* every series a dashboard sums over exists from the start, at 0 */
  static const char *const states[] = {"done", "failed", "cancelled"};
  for (int i = 0; i < 3; i++) sdc_metric_add(tm->jobs, &states[i], 0);
  atomic_store(&tm->readiness, SDC_COORD_NO_REDIS);
  sdc__update_workers(c);
  err = sdc_metrics_on_collect(r, sdc__collect_wire, &tm->node);
  if (!err) err = sdc_node_metrics_serve(&tm->node, addr_port, sdc__ready_fn, c);
  return err;
}

void sdc_coord_telemetry_stop(sdc_coord *c) {
  sdc_node_metrics_stop(&c->tm.node);
}
