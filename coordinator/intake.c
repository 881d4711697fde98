/* intake.c - the coordinator's Redis side: connections, claims and takeovers, the job hash, events, images, acks. */
#include <hiredis/adapters/libuv.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "log.h"

/* ------------------------------------------------------------ connections */

static void sdc__redis_setup_failed(sdc_coord *c, const char *what, const char *why) {
  sdc_log(NULL, -1, 0, "redis %s: %s failed: %s; exiting", c->redis.where, what, why);
  c->exit_code = 1;
  uv_stop(c->loop);
}

static void sdc__on_auth(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_ERROR) sdc__redis_setup_failed(priv, "AUTH", rep->str);
}

static void sdc__on_select(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_ERROR) sdc__redis_setup_failed(priv, "SELECT", rep->str);
}

/* The PING queued after AUTH/SELECT: its OK means the connection is usable. */
static void sdc__on_ready(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  redisReply *rep = r;
  if (!rep || rep->type == REDIS_REPLY_ERROR || c->exit_code) return;
  if (++c->redis_ready == 2) sdc_log(NULL, -1, 0, "redis %s: connected", c->redis.where);
}

static void sdc__on_redis_connect(const redisAsyncContext *ac, int status) {
  sdc_coord *c = ac->data;
  if (status != REDIS_OK) sdc__redis_setup_failed(c, "connect", ac->errstr);
}

static void sdc__on_redis_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  sdc_coord *c = ac->data;
  if (ac == c->rc) c->rc = NULL;
  if (ac == c->rb) c->rb = NULL;
  if (c->closing) return;
  sdc_log(NULL, -1, 0, "redis %s: connection lost: %s; exiting (pending jobs stay in the stream)", c->redis.where,
          ac->errstr);
  if (!c->draining) c->exit_code = 1;
  uv_stop(c->loop);
}

redisAsyncContext *sdc_coord_redis_connect(sdc_coord *c) {
  const sdc_redis_url *u = &c->redis;
  redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
  if (!ac || ac->err) {
    sdc_log(NULL, -1, 0, "redis %s: %s", u->where, ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    return NULL;
  }
  ac->data = c;
  redisLibuvAttach(ac, c->loop);
  redisAsyncSetConnectCallback(ac, sdc__on_redis_connect);
  redisAsyncSetDisconnectCallback(ac, sdc__on_redis_disconnect);
  /* first on the wire: nothing else may run before the connection is authenticated and on its db */
  if (u->password[0] && u->user[0]) redisAsyncCommand(ac, sdc__on_auth, c, "AUTH %s %s", u->user, u->password);
  else if (u->password[0]) redisAsyncCommand(ac, sdc__on_auth, c, "AUTH %s", u->password);
  if (u->db) redisAsyncCommand(ac, sdc__on_select, c, "SELECT %d", u->db);
  redisAsyncCommand(ac, sdc__on_ready, c, "PING");
  return ac;
}

/* ------------------------------------------------------------ job hash */

void sdc_coord_publish(sdc_coord *c, const sdc_coord_job *j, sdc_job_state st, const char *error) {
  char *ev = NULL, chan[SDC_JOB_KEY_MAX];
  int64_t calls = j->denoise_ready ? sdc_scheduler_n_calls(j->d.sched) : 0;
  int64_t done = j->denoise_ready ? calls - sdc_denoise_calls_left(&j->d) : 0;
  if (sdc_job_event_json(&ev, st, done, calls, error) != 0) return;
  sdc_job_key(chan, SDC_JOB_EVENTS_FMT, j->id);
  redisAsyncCommand(c->rc, NULL, NULL, "PUBLISH %s %s", chan, ev);
  free(ev);
}

/* created_ms of a job enqueued with a plain XADD: the entry id's milliseconds (the server's clock when
 * it was queued). HSETNX: what the submitter wrote wins. */
static void sdc__store_created(sdc_coord *c, const sdc_coord_job *j) {
  char ms[32];
  size_t n = strcspn(j->entry, "-");
  if (n == 0 || n >= sizeof ms) return;
  snprintf(ms, sizeof ms, "%.*s", (int)n, j->entry);
  redisAsyncCommand(c->rc, NULL, NULL, "HSETNX %s %s %s", j->key, SDC_JOB_F_CREATED_MS, ms);
}

void sdc_coord_store_running(sdc_coord *c, sdc_coord_job *j) {
  char now[32], seed[32], w[16], h[16], steps[16];
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc_clock_unix_ms());
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->g.seed);
  snprintf(w, sizeof w, "%lld", (long long)j->g.width);
  snprintf(h, sizeof h, "%lld", (long long)j->g.height);
  snprintf(steps, sizeof steps, "%lld", (long long)sdc_scheduler_n_calls(j->d.sched));
  const char *argv[] = {"HSET", j->key, SDC_JOB_F_STATE, "running", SDC_JOB_F_STARTED_MS, now, SDC_JOB_F_SEED, seed,
                        SDC_JOB_F_WIDTH, w, SDC_JOB_F_HEIGHT, h, SDC_JOB_F_STEPS, steps, SDC_JOB_F_STEP, "0",
                        SDC_JOB_F_SCHEDULER, j->sched_name, SDC_JOB_F_COORDINATOR, c->id, SDC_JOB_F_ENTRY, j->entry};
  redisAsyncCommandArgv(c->rc, NULL, NULL, sizeof argv / sizeof *argv, argv, NULL);
  redisAsyncCommand(c->rc, NULL, NULL, "HINCRBY %s %s 1", j->key, SDC_JOB_F_ATTEMPTS);
  redisAsyncCommand(c->rc, NULL, NULL, "PERSIST %s", j->key); /* no expiry while it runs */
  sdc_coord_publish(c, j, SDC_JOB_RUNNING, NULL);
}

static void sdc__on_cancel_checked(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord_job *j = priv;
  redisReply *rep = r;
  if (!rep) return; /* connection lost: the loop stops */
  j->awaiting_redis = 0;
  if (j->left || j->phase == SDC_COORD_STORING) return; /* ended meanwhile (cancel poll, job timeout) */
  sdc_coord_job_cancel_checked(j->c, j, rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0);
}

static void sdc__on_cancel_polled(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord_job *j = priv;
  redisReply *rep = r;
  if (!rep) return; /* connection lost: the loop stops */
  j->cancel_poll_pending = 0;
  if (j->left || j->phase == SDC_COORD_STORING || j->phase == SDC_COORD_CHECKING) return;
  if (rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0) {
    sdc_coord_job_log(j, "cancelled with %s: stopping its work on every worker",
                      j->n_route ? "a step in flight" : "a step to re-issue");
    sdc_coord_broadcast_cancel(j->c, j->id);
    sdc_coord_job_finish(j->c, j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  if (j->recheck_cancel && !j->n_route && !j->awaiting_redis) {
    j->recheck_cancel = 0; /* the tick issues it once its backoff has passed */
    if (sdc_clock_mono_ms() >= j->retry_at_ms) sdc_coord_issue(j->c, j);
  }
}

void sdc_coord_poll_cancel(sdc_coord *c, sdc_coord_job *j) {
  if (j->cancel_poll_pending) return;
  j->cancel_poll_pending = 1;
  j->cancel_polled_ms = sdc_clock_mono_ms();
  redisAsyncCommand(c->rc, sdc__on_cancel_polled, j, "HGET %s %s", j->key, SDC_JOB_F_CANCEL);
}

void sdc_coord_store_step(sdc_coord *c, sdc_coord_job *j) {
  int64_t calls = sdc_scheduler_n_calls(j->d.sched), done = calls - sdc_denoise_calls_left(&j->d);
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)done);
  redisAsyncCommand(c->rc, NULL, NULL, "HSET %s %s %s", j->key, SDC_JOB_F_STEP, step);
  sdc_coord_publish(c, j, SDC_JOB_RUNNING, NULL);
  /* a cancel asked for since the last step stops the job here */
  j->awaiting_redis = 1;
  redisAsyncCommand(c->rc, sdc__on_cancel_checked, j, "HGET %s %s", j->key, SDC_JOB_F_CANCEL);
}

static void sdc__on_images_stored(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord_job *j = priv;
  sdc_coord *c = j->c;
  redisReply *rep = r;
  if (!rep) return; /* connection lost: the entry stays pending and is re-delivered */
  if (rep->type == REDIS_REPLY_ERROR && !j->store_failed) {
    j->store_failed = 1;
    snprintf(j->last_error, sizeof j->last_error, "storing the images in Redis failed: %s", rep->str);
  }
  if (--j->storing_pending > 0) return;
  if (j->store_failed) {
    sdc_coord_job_fail(c, j, j->last_error);
    return;
  }
  char n[16];
  snprintf(n, sizeof n, "%lld", (long long)j->d.N);
  redisAsyncCommand(c->rc, NULL, NULL, "HSET %s %s %s", j->key, SDC_JOB_F_NUM_IMAGES, n);
  sdc_coord_job_finish(c, j, SDC_JOB_DONE, NULL);
}

void sdc_coord_store_images(sdc_coord *c, sdc_coord_job *j, const ProtobufCBinaryData *images, size_t n) {
  j->phase = SDC_COORD_STORING;
  j->storing_pending = (int)n;
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_s);
  for (size_t i = 0; i < n; i++) {
    char key[SDC_JOB_KEY_MAX];
    sdc_job_image_key(key, j->id, (int)i);
    const char *argv[] = {"SET", key, (const char *)images[i].data, "EX", ttl};
    size_t lens[] = {3, strlen(key), images[i].len, 2, strlen(ttl)};
    redisAsyncCommandArgv(c->rc, sdc__on_images_stored, j, 5, argv, lens);
  }
}

/* The entry leaves the pending list only now: its outcome is stored. */
static void sdc__ack(sdc_coord *c, const sdc_coord_job *j) {
  redisAsyncCommand(c->rc, NULL, NULL, "XACK %s %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, j->entry);
  redisAsyncCommand(c->rc, NULL, NULL, "XDEL %s %s", SDC_JOBS_STREAM, j->entry);
}

/* A copy in the dead-letter stream: entry, id, reason, attempts and (the first
 * SDC_DEAD_LETTER_JSON_BYTES of) the original JSON, per docs/jobs.md. */
static void sdc__dead_letter(sdc_coord *c, const sdc_coord_job *j, const char *reason) {
  char attempts[16];
  snprintf(attempts, sizeof attempts, "%d", j->attempts);
  const char *argv[] = {"XADD", SDC_JOBS_DEAD_STREAM, "*", "job", j->raw ? j->raw : "", "entry", j->entry,
                        "id", j->id, "reason", reason, "attempts", attempts};
  redisAsyncCommandArgv(c->rc, NULL, NULL, sizeof argv / sizeof *argv, argv, NULL);
}

static void sdc__on_final_stored(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  sdc_coord_job *j = priv;
  sdc_coord *c = j->c;
  if (!reply) return; /* connection lost: the entry stays pending and is re-delivered */
  sdc__ack(c, j);
  sdc_coord_job_free(c, j);
  sdc_coord_claim_more(c);
}

void sdc_coord_store_final(sdc_coord *c, sdc_coord_job *j, sdc_job_state st, const char *error) {
  char now[32], ttl[32], route[SDC_STAGE_END * (SDC_COORD_ROUTE_STAGE_BYTES + 16)];
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc_clock_unix_ms());
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_s);
  sdc_coord_job_route_text(j, route, sizeof route);
  const char *argv[] = {"HSET", j->key, SDC_JOB_F_STATE, sdc_job_state_name(st), SDC_JOB_F_FINISHED_MS, now,
                        SDC_JOB_F_ERROR, error ? error : "", SDC_JOB_F_ROUTE, route};
  redisAsyncCommandArgv(c->rc, NULL, NULL, sizeof argv / sizeof *argv, argv, NULL);
  redisAsyncCommand(c->rc, NULL, NULL, "EXPIRE %s %s", j->key, ttl);
  if (st == SDC_JOB_FAILED && error) sdc__dead_letter(c, j, error);
  sdc_coord_publish(c, j, st, error);
  /* a PING after the writes: its reply means they were all applied */
  redisAsyncCommand(c->rc, sdc__on_final_stored, j, "PING");
}

/* ---------------------------------------------------------------- claims */

static void sdc__on_state_checked(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord_job *j = priv;
  sdc_coord *c = j->c;
  redisReply *rep = r;
  if (!rep || j->left) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) {
    sdc_coord_job_fail(c, j, "reading the job's state from Redis failed");
    return;
  }
  /* another entry already owns this id: leave that job alone */
  const redisReply *owner = rep->element[3];
  if (owner->type == REDIS_REPLY_STRING && strcmp(owner->str, j->entry) != 0) {
    char reason[300];
    snprintf(reason, sizeof reason, "duplicate job id '%s' (already used by entry %s)", j->id, owner->str);
    sdc_coord_job_log(j, "%s", reason);
    sdc__dead_letter(c, j, reason);
    sdc__ack(c, j);
    sdc_coord_job_free(c, j);
    sdc_coord_claim_more(c);
    return;
  }
  /* re-delivered after it ended (a coordinator died between storing and acking) */
  if (rep->element[0]->type == REDIS_REPLY_STRING && sdc_job_state_final(sdc_job_state_parse(rep->element[0]->str))) {
    sdc_coord_job_log(j, "already %s; acknowledging", rep->element[0]->str);
    sdc__ack(c, j);
    sdc_coord_job_free(c, j);
    sdc_coord_claim_more(c);
    return;
  }
  sdc__store_created(c, j);
  if (rep->element[1]->type == REDIS_REPLY_STRING && strcmp(rep->element[1]->str, "1") == 0) {
    sdc_coord_job_finish(c, j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  sdc_coord_job_run(c, j, rep->element[2]->type == REDIS_REPLY_STRING ? rep->element[2]->str : NULL);
}

/* The "id" of a job whose JSON was refused, so its failure lands under the id
 * the client chose. A scan of the first bytes, not a parse: the JSON may be
 * huge or broken. Leaves out untouched when there is no usable id. */
static void sdc__sniff_id(const char *json, size_t n, char *out, size_t cap) {
  const char *end = json + (n < SDC_COORD_ID_SNIFF_BYTES ? n : SDC_COORD_ID_SNIFF_BYTES);
  for (const char *p = json; p && p + 4 < end; p++) {
    if (memcmp(p, "\"id\"", 4) != 0) continue;
    const char *q = p + 4;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
    if (q >= end || *q++ != ':') continue;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
    if (q >= end || *q++ != '"') continue;
    const char *v = q;
    while (q < end && *q != '"') q++;
    if (q >= end || (size_t)(q - v) >= cap) return;
    char id[SDC_MAX_JOB_ID + 1];
    snprintf(id, sizeof id, "%.*s", (int)(q - v), v);
    if (sdc_job_id_valid(id)) snprintf(out, cap, "%s", id);
    return;
  }
}

/* Makes a job of stream entry `entry` (json: its "job" field, NULL when it has none) and reads its
 * hash; a job that does not parse fails at once under the id it meant to have. */
static void sdc__start_job(sdc_coord *c, const char *entry, const char *json, size_t n) {
  for (sdc_coord_job *o = c->jobs; o; o = o->next)
    if (strcmp(o->entry, entry) == 0) return; /* already ours (a touch or reclaim returned it) */
  sdc_coord_job *j = calloc(1, sizeof *j);
  if (!j) return; /* stays pending; claimed again later */
  j->c = c;
  j->next = c->jobs, c->jobs = j, c->n_jobs++;
  j->claimed_ns = sdc_clock_mono_ns();
  sdc_metric_set(c->tm.in_flight, NULL, c->n_jobs);
  /* the entry id's milliseconds are the server's clock when it was queued */
  const unsigned long long queued_ms = strtoull(entry, NULL, 10), now_ms = sdc_clock_unix_ms();
  if (queued_ms && queued_ms <= now_ms) sdc_metric_observe(c->tm.queue_wait, NULL, (double)(now_ms - queued_ms) * 1e-3);
  snprintf(j->entry, sizeof j->entry, "%s", entry);
  const size_t kept = n < SDC_DEAD_LETTER_JSON_BYTES ? n : SDC_DEAD_LETTER_JSON_BYTES;
  if (json && (j->raw = malloc(kept + 1))) memcpy(j->raw, json, kept), j->raw[kept] = 0;
  sdc_job_init(&j->spec);
  int err = json ? sdc_job_parse(&j->spec, json, n, entry) : sdc_seterr(SDC_EINVAL, "stream entry has no 'job' field");
  if (err) snprintf(j->last_error, sizeof j->last_error, "%s", sdc_errmsg(err));
  snprintf(j->id, sizeof j->id, "%s", j->spec.id[0] ? j->spec.id : entry);
  if (err && json) sdc__sniff_id(json, n, j->id, sizeof j->id);
  if (!sdc_job_id_valid(j->id)) snprintf(j->id, sizeof j->id, "%s", entry);
  sdc_job_key(j->key, SDC_JOB_KEY_FMT, j->id);
  if (err) {
    sdc__store_created(c, j);
    sdc_coord_job_fail(c, j, j->last_error);
    return;
  }
  j->phase = SDC_COORD_CHECKING;
  redisAsyncCommand(c->rc, sdc__on_state_checked, j, "HMGET %s %s %s %s %s", j->key, SDC_JOB_F_STATE, SDC_JOB_F_CANCEL,
                    SDC_JOB_F_SEED, SDC_JOB_F_ENTRY);
}

/* Hands a pending entry of ours to whichever coordinator runs XAUTOCLAIM next: XCLAIM to ourselves with
 * an idle time past any --reclaim-idle-ms (JUSTID: the delivery count is not raised). */
static void sdc__hand_over(sdc_coord *c, const char *entry) {
  redisAsyncCommand(c->rc, NULL, NULL, "XCLAIM %s %s %s 0 %s IDLE %lld JUSTID", SDC_JOBS_STREAM, SDC_JOBS_GROUP,
                    c->id, entry, (long long)SDC_COORD_MAX_RECLAIM_IDLE_MS);
}

void sdc_coord_leave(sdc_coord *c, sdc_coord_job *j) {
  if (j->left) return;
  sdc_coord_job_log(j, "drain timeout: left pending in %s for another coordinator (entry %s)", SDC_JOBS_STREAM,
                    j->entry);
  sdc_coord_release_route(c, j);
  j->left = 1;
  sdc__hand_over(c, j->entry);
}

static void sdc__on_exit_ping(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac, (void)r;
  uv_stop(((sdc_coord *)priv)->loop);
}

void sdc_coord_exit_after_redis(sdc_coord *c) {
  if (c->rc) redisAsyncCommand(c->rc, sdc__on_exit_ping, c, "PING");
  else uv_stop(c->loop);
}

/* Entries of an XREADGROUP / XAUTOCLAIM reply: [[id, [field, value, ...]], ...]. A draining coordinator
 * starts none of them (a read issued before SIGTERM may still deliver some): each is handed over. */
static void sdc__take_entries(sdc_coord *c, const redisReply *entries) {
  if (!entries || entries->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i < entries->elements; i++) {
    const redisReply *e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
    const redisReply *fields = e->element[1];
    const char *json = NULL;
    size_t n = 0;
    for (size_t k = 0; fields && fields->type == REDIS_REPLY_ARRAY && k + 1 < fields->elements; k += 2)
      if (fields->element[k]->type == REDIS_REPLY_STRING && strcmp(fields->element[k]->str, SDC_JOBS_ENTRY_FIELD) == 0 &&
          fields->element[k + 1]->type == REDIS_REPLY_STRING)
        json = fields->element[k + 1]->str, n = fields->element[k + 1]->len;
    if (!fields || fields->type == REDIS_REPLY_NIL) {
      /* deleted from the stream while pending: nothing to run */
      redisAsyncCommand(c->rc, NULL, NULL, "XACK %s %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, e->element[0]->str);
      continue;
    }
    if (c->draining) {
      sdc_log(NULL, -1, 0, "entry %s arrived while draining: left pending for another coordinator", e->element[0]->str);
      sdc__hand_over(c, e->element[0]->str);
      continue;
    }
    sdc__start_job(c, e->element[0]->str, json, n);
  }
}

static void sdc__on_read(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  c->reading = 0;
  redisReply *rep = r;
  if (!rep) return; /* connection lost: the loop stops */
  if (rep->type == REDIS_REPLY_ARRAY)
    for (size_t s = 0; s < rep->elements; s++)
      if (rep->element[s]->type == REDIS_REPLY_ARRAY && rep->element[s]->elements == 2)
        sdc__take_entries(c, rep->element[s]->element[1]);
  if (rep->type == REDIS_REPLY_ERROR) sdc_log(NULL, -1, 0, "XREADGROUP on %s: %s", SDC_JOBS_STREAM, rep->str);
  sdc_coord_claim_more(c);
}

void sdc_coord_claim_more(sdc_coord *c) {
  if (c->reading || c->draining || c->n_jobs >= c->max_jobs || !c->rb || c->exit_code) return;
  if (!sdc_registry_complete(&c->reg, SDC_STAGE_ALL_BITS)) return; /* the tick tries again */
  c->reading = 1;
  redisAsyncCommand(c->rb, sdc__on_read, c, "XREADGROUP GROUP %s %s COUNT %d BLOCK %d STREAMS %s >", SDC_JOBS_GROUP,
                    c->id, c->max_jobs - c->n_jobs, SDC_COORD_READ_BLOCK_MS, SDC_JOBS_STREAM);
}

static void sdc__on_autoclaim(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  redisReply *rep = r;
  /* [next-cursor, [entries], (deleted ids)] */
  if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
    if (rep->element[1]->elements)
      sdc_log(NULL, -1, 0, "took over %zu abandoned entries", rep->element[1]->elements);
    sdc__take_entries(c, rep->element[1]);
  }
}

void sdc_coord_intake_tick(sdc_coord *c, int64_t now_ms) {
  if (!c->rc || c->exit_code) return;
  /* keep our pending entries ours: XCLAIM resets their idle time, well within --reclaim-idle-ms */
  const int64_t touch_ms = c->reclaim_idle_ms / 3 < SDC_COORD_TOUCH_MS ? c->reclaim_idle_ms / 3 : SDC_COORD_TOUCH_MS;
  if (now_ms > c->last_touch_ms + touch_ms && c->jobs) {
    c->last_touch_ms = now_ms;
    for (sdc_coord_job *j = c->jobs; j; j = j->next)
      if (!j->left)
        redisAsyncCommand(c->rc, NULL, NULL, "XCLAIM %s %s %s 0 %s JUSTID", SDC_JOBS_STREAM, SDC_JOBS_GROUP, c->id,
                          j->entry);
  }
  /* take over what dead or drained coordinators left */
  const int64_t reclaim_ms = c->reclaim_idle_ms / 2 < SDC_COORD_TOUCH_MS ? c->reclaim_idle_ms / 2 : SDC_COORD_TOUCH_MS;
  if (now_ms > c->last_reclaim_ms + reclaim_ms && !c->draining && c->n_jobs < c->max_jobs &&
      sdc_registry_complete(&c->reg, SDC_STAGE_ALL_BITS)) {
    c->last_reclaim_ms = now_ms;
    redisAsyncCommand(c->rc, sdc__on_autoclaim, c, "XAUTOCLAIM %s %s %s %lld 0-0 COUNT %d", SDC_JOBS_STREAM,
                      SDC_JOBS_GROUP, c->id, (long long)c->reclaim_idle_ms, c->max_jobs - c->n_jobs);
  }
  sdc_coord_claim_more(c);
}
