/* intake.c - the coordinator's Redis side: connections, claims and takeovers, the job hash, events, images, acks. */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "log.h"

/* ------------------------------------------------------------ scripts */

/* Every write a coordinator makes to a job goes through this one script (docs/jobs.md, "Fencing"): it
 * runs only while the hash still names us (owner) with the epoch our claim got, and while the job is not
 * final; otherwise it changes nothing and says why. KEYS[1] the hash; ARGV: owner, epoch, then commands,
 * each as its argument count followed by its arguments. Replies {1, last command's reply} or {0, why}. */
static const char sdc__fenced_lua[] =
    "local f = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'state')\n"
    "if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then\n"
    "  return {0, 'owned by ' .. tostring(f[1]) .. ' at epoch ' .. tostring(f[2])}\n"
    "end\n"
    "if f[3] == 'done' or f[3] == 'failed' or f[3] == 'cancelled' then return {0, 'already ' .. f[3]} end\n"
    "local i, r = 3, nil\n"
    "while i <= #ARGV do\n"
    "  local n = tonumber(ARGV[i])\n"
    "  r = redis.call(unpack(ARGV, i + 1, i + n))\n"
    "  i = i + n + 1\n"
    "end\n"
    "return {1, r}\n";

/* The claim: bumps the job's epoch and records us as its owner, unless the hash belongs to another entry
 * (a duplicate id; strict: any existing hash not naming our entry, for a refused JSON whose id was only
 * sniffed) or is final already: a real end has an epoch, a hash pre-set final without one was forged.
 * KEYS[1] the hash; ARGV: owner, entry, created_ms, strict. Replies {'ok', epoch, cancel, seed},
 * {'duplicate', entry}, {'final', state} or {'forged', state}. */
static const char sdc__claim_lua[] =
    "local f = redis.call('HMGET', KEYS[1], 'state', 'entry', 'epoch', 'cancel', 'seed')\n"
    "if f[2] and f[2] ~= ARGV[2] then return {'duplicate', f[2]} end\n"
    "if ARGV[4] == '1' and not f[2] and redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate', '(none)'} end\n"
    "if f[1] == 'done' or f[1] == 'failed' or f[1] == 'cancelled' then\n"
    "  if f[3] then return {'final', f[1]} end\n"
    "  return {'forged', f[1]}\n"
    "end\n"
    "local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)\n"
    "redis.call('HSET', KEYS[1], 'owner', ARGV[1])\n"
    "redis.call('HSETNX', KEYS[1], 'entry', ARGV[2])\n"
    "redis.call('HSETNX', KEYS[1], 'state', 'queued')\n"
    "if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[3]) end\n"
    "return {'ok', tostring(e), f[4] or '', f[5] or ''}\n";

/* ------------------------------------------------------------ event adapter */

/* hiredis's own libuv adapter (adapters/libuv.h, 0.14) ignores a poll error: a refused connect (POLLERR)
 * then never reaches hiredis and the context hangs silently. This one hands the error to hiredis, which
 * reads the socket's error and calls the connect (or disconnect) callback. */
typedef struct {
  redisAsyncContext *ac;
  uv_poll_t handle;
  int events;
} sdc__uv_events;

static void sdc__uv_poll(uv_poll_t *h, int status, int events) {
  sdc__uv_events *p = h->data;
  if (status != 0 && p->ac) {
    if (p->ac->c.flags & REDIS_CONNECTED) redisAsyncHandleRead(p->ac); /* the read sees the error */
    else redisAsyncHandleWrite(p->ac);                                 /* the connect check sees it */
    return;
  }
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void sdc__uv_set(sdc__uv_events *p, int add, int ev) {
  p->events = add ? p->events | ev : p->events & ~ev;
  if (p->events) uv_poll_start(&p->handle, p->events, sdc__uv_poll);
  else uv_poll_stop(&p->handle);
}
static void sdc__uv_add_read(void *p) { sdc__uv_set(p, 1, UV_READABLE); }
static void sdc__uv_del_read(void *p) { sdc__uv_set(p, 0, UV_READABLE); }
static void sdc__uv_add_write(void *p) { sdc__uv_set(p, 1, UV_WRITABLE); }
static void sdc__uv_del_write(void *p) { sdc__uv_set(p, 0, UV_WRITABLE); }
static void sdc__uv_closed(uv_handle_t *h) { free(h->data); }
static void sdc__uv_cleanup(void *priv) {
  sdc__uv_events *p = priv;
  p->ac = NULL; /* the context is going away */
  uv_close((uv_handle_t *)&p->handle, sdc__uv_closed);
}

static int sdc__uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  sdc__uv_events *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    free(p);
    return REDIS_ERR;
  }
  p->handle.data = p, p->ac = ac;
  ac->ev.addRead = sdc__uv_add_read, ac->ev.delRead = sdc__uv_del_read;
  ac->ev.addWrite = sdc__uv_add_write, ac->ev.delWrite = sdc__uv_del_write;
  ac->ev.cleanup = sdc__uv_cleanup, ac->ev.data = p;
  return REDIS_OK;
}

/* ------------------------------------------------------------ connections */

static void sdc__on_retry(uv_timer_t *t);
static void sdc__on_read(redisAsyncContext *ac, void *r, void *priv);

/* Drops every job in memory (their entries stay pending), closes both connections and retries with
 * backoff. Idempotent within one outage: the second connection's failure says nothing more. */
static void sdc__redis_lost(sdc_coord *c, const char *why) {
  if (c->closing || c->redis_retrying) return;
  c->redis_retrying = 1;
  c->redis_ready = 0;
  c->reading = 0;
  c->redis_ping_sent_ms = 0;
  if (!c->redis_lost_ms) c->redis_lost_ms = sdc_clock_mono_ms();
  const int dropped = c->n_jobs; /* counted first: the callbacks run below release their jobs */
  redisAsyncContext *rc = c->rc, *rb = c->rb;
  c->rc = c->rb = NULL;
  if (rc) redisAsyncFree(rc); /* pending callbacks run now with no reply */
  if (rb) redisAsyncFree(rb);
  while (c->jobs) {
    sdc_coord_job *j = c->jobs;
    sdc_coord_release_route(c, j);
    c->jobs = j->next, c->n_jobs--;
    j->dropped = 1;
    if (!j->redis_pending) sdc_coord_job_free(c, j);
  }
  sdc_metric_set(c->tm.in_flight, NULL, c->n_jobs);
  c->redis_backoff_ms = !c->redis_backoff_ms ? SDC_REDIS_RETRY_MIN_MS
                        : 2 * c->redis_backoff_ms > SDC_REDIS_RETRY_MAX_MS ? SDC_REDIS_RETRY_MAX_MS
                                                                           : 2 * c->redis_backoff_ms;
  if (dropped)
    sdc_log(NULL, -1, 0, "redis %s: %s; retrying in %lld ms (%d jobs dropped from memory: their entries stay pending "
            "and are re-claimed on reconnect)", c->redis.where, why, (long long)c->redis_backoff_ms, dropped);
  else
    sdc_log(NULL, -1, 0, "redis %s: %s; retrying in %lld ms", c->redis.where, why, (long long)c->redis_backoff_ms);
  uv_timer_start(&c->redis_retry, sdc__on_retry, (uint64_t)c->redis_backoff_ms, 0);
}

static void sdc__on_auth(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  redisReply *rep = r;
  char why[300];
  if (!rep || rep->type != REDIS_REPLY_ERROR) return;
  snprintf(why, sizeof why, "AUTH failed: %s", rep->str);
  sdc__redis_lost(c, why);
}

static void sdc__on_select(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  redisReply *rep = r;
  char why[300];
  if (!rep || rep->type != REDIS_REPLY_ERROR) return;
  snprintf(why, sizeof why, "SELECT %d failed: %s", c->redis.db, rep->str);
  sdc__redis_lost(c, why);
}

/* The PING queued after AUTH/SELECT: its OK means the connection is usable. Once both are, the stream's
 * group exists and our own pending entries (a previous connection's jobs) are read back and re-run. */
static void sdc__on_ready(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  redisReply *rep = r;
  if (!rep || c->redis_retrying) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    char why[300];
    snprintf(why, sizeof why, "PING: %s", rep->str); /* e.g. LOADING while it replays its AOF */
    sdc__redis_lost(c, why);
    return;
  }
  if (++c->redis_ready < 2) return;
  if (c->redis_lost_ms && c->redis_was_up)
    sdc_log(NULL, -1, 0, "redis %s: reconnected after %lld ms; re-claiming our pending entries", c->redis.where,
            (long long)(sdc_clock_mono_ms() - c->redis_lost_ms));
  else if (c->redis_lost_ms)
    sdc_log(NULL, -1, 0, "redis %s: connected (after %lld ms of retries)", c->redis.where,
            (long long)(sdc_clock_mono_ms() - c->redis_lost_ms));
  else
    sdc_log(NULL, -1, 0, "redis %s: connected", c->redis.where);
  c->redis_was_up = 1;
  c->redis_lost_ms = 0, c->redis_backoff_ms = 0, c->redis_connect_ms = 0;
  redisAsyncCommand(c->rb, NULL, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", SDC_JOBS_STREAM, SDC_JOBS_GROUP);
  if (c->draining || !c->max_jobs) return;
  c->reading = 1;
  redisAsyncCommand(c->rb, sdc__on_read, c, "XREADGROUP GROUP %s %s COUNT %d STREAMS %s 0", SDC_JOBS_GROUP, c->id,
                    c->max_jobs, SDC_JOBS_STREAM);
}

static void sdc__on_redis_connect(const redisAsyncContext *ac, int status) {
  sdc_coord *c = ac->data;
  if (status == REDIS_OK) return;
  char why[300];
  snprintf(why, sizeof why, "cannot connect: %s", ac->errstr);
  if (ac == c->rc) c->rc = NULL; /* hiredis frees it after this callback */
  if (ac == c->rb) c->rb = NULL;
  sdc__redis_lost(c, why);
}

static void sdc__on_redis_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  sdc_coord *c = ac->data;
  char why[300];
  snprintf(why, sizeof why, "connection lost: %s", ac->errstr[0] ? ac->errstr : "closed by the server");
  if (ac == c->rc) c->rc = NULL;
  if (ac == c->rb) c->rb = NULL;
  sdc__redis_lost(c, why);
}

static redisAsyncContext *sdc__connect_one(sdc_coord *c) {
  const sdc_redis_url *u = &c->redis;
  redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
  if (!ac || ac->err) {
    if (ac) redisAsyncFree(ac);
    return NULL;
  }
  ac->data = c;
  if (sdc__uv_attach(ac, c->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    return NULL;
  }
  redisAsyncSetConnectCallback(ac, sdc__on_redis_connect);
  redisAsyncSetDisconnectCallback(ac, sdc__on_redis_disconnect);
  /* first on the wire: nothing else may run before the connection is authenticated and on its db */
  if (u->password[0] && u->user[0]) redisAsyncCommand(ac, sdc__on_auth, c, "AUTH %s %s", u->user, u->password);
  else if (u->password[0]) redisAsyncCommand(ac, sdc__on_auth, c, "AUTH %s", u->password);
  if (u->db) redisAsyncCommand(ac, sdc__on_select, c, "SELECT %d", u->db);
  redisAsyncCommand(ac, sdc__on_ready, c, "PING");
  return ac;
}

static void sdc__on_retry(uv_timer_t *t) {
  sdc_coord *c = t->data;
  c->redis_retrying = 0;
  c->redis_ready = 0;
  c->redis_connect_ms = sdc_clock_mono_ms();
  if (!(c->rc = sdc__connect_one(c)) || !(c->rb = sdc__connect_one(c))) sdc__redis_lost(c, "cannot open a connection");
}

void sdc_coord_redis_start(sdc_coord *c) {
  uv_timer_init(c->loop, &c->redis_retry);
  c->redis_retry.data = c;
  sdc__on_retry(&c->redis_retry);
}

/* ------------------------------------------------------------ job commands */

/* A job's command in flight: its callback runs once (with NULL when the connection is lost). */
typedef void sdc__job_fn(sdc_coord *c, sdc_coord_job *j, const redisReply *r);
typedef struct {
  sdc_coord_job *j;
  sdc__job_fn *fn;
  int fenced;
} sdc__job_cb;

/* Unlinks j (no longer ours, or ended); it is freed once no command of it is in flight. */
static void sdc__job_release(sdc_coord *c, sdc_coord_job *j) {
  if (j->dropped) return;
  sdc_coord_release_route(c, j);
  for (sdc_coord_job **pp = &c->jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next, c->n_jobs--;
      break;
    }
  sdc_metric_set(c->tm.in_flight, NULL, c->n_jobs);
  j->dropped = 1;
  if (!j->redis_pending) sdc_coord_job_free(c, j);
}

static void sdc__on_job_reply(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc__job_cb cb = *(sdc__job_cb *)priv;
  free(priv);
  sdc_coord_job *j = cb.j;
  sdc_coord *c = j->c;
  const redisReply *rep = r;
  j->redis_pending--;
  if (j->dropped) {
    if (!j->redis_pending) sdc_coord_job_free(c, j);
    return;
  }
  if (!rep) { /* connection lost: the outage drops every job; the entry stays pending */
    sdc__job_release(c, j);
    return;
  }
  if (cb.fenced && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_INTEGER) {
    if (rep->element[0]->integer == 0) {
      sdc_coord_job_log(j, "no longer ours (%s; we had epoch %s): dropped, nothing written",
                        rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->str : "?",
                        j->epoch);
      sdc__job_release(c, j);
      return;
    }
    rep = rep->elements > 1 ? rep->element[1] : NULL; /* the last command's reply (nil: NULL) */
  }
  if (cb.fn) cb.fn(c, j, rep);
}

/* Queues argv for job j on the command connection; without one (Redis lost) the job is dropped. */
static void sdc__job_cmd(sdc_coord *c, sdc_coord_job *j, sdc__job_fn *fn, int fenced, int argc, const char **argv,
                         const size_t *lens) {
  sdc__job_cb *cb = malloc(sizeof *cb);
  if (cb) *cb = (sdc__job_cb){j, fn, fenced};
  if (cb && c->rc) j->redis_pending++;
  if (!cb || !c->rc || redisAsyncCommandArgv(c->rc, sdc__on_job_reply, cb, argc, argv, lens) != REDIS_OK) {
    if (cb && c->rc) j->redis_pending--;
    free(cb);
    sdc__job_release(c, j);
  }
}

/* A fenced write's arguments: the EVAL header, then commands (count, arguments). */
#define SDC__MAX_ARGS (16 + 6 * SDC_MAX_IMAGES + 64)
typedef struct {
  int n;
  const char *v[SDC__MAX_ARGS];
  size_t len[SDC__MAX_ARGS];
  char counts[SDC__MAX_ARGS][4];
} sdc__args;

static void sdc__arg(sdc__args *a, const char *s, size_t n) {
  if (a->n < SDC__MAX_ARGS) a->v[a->n] = s, a->len[a->n++] = n;
}

/* One command of n string arguments (NUL-terminated). */
static void sdc__command(sdc__args *a, int n, ...) {
  if (a->n + n + 1 > SDC__MAX_ARGS) return;
  snprintf(a->counts[a->n], sizeof a->counts[a->n], "%d", n);
  sdc__arg(a, a->counts[a->n], strlen(a->counts[a->n]));
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const char *s = va_arg(ap, const char *);
    sdc__arg(a, s, strlen(s));
  }
  va_end(ap);
}

static void sdc__fenced_begin(sdc__args *a, const sdc_coord *c, const sdc_coord_job *j) {
  a->n = 0;
  sdc__arg(a, "EVAL", 4);
  sdc__arg(a, sdc__fenced_lua, strlen(sdc__fenced_lua));
  sdc__arg(a, "1", 1);
  sdc__arg(a, j->key, strlen(j->key));
  sdc__arg(a, c->id, strlen(c->id));
  sdc__arg(a, j->epoch, strlen(j->epoch));
}

/* ------------------------------------------------------------ job hash */

/* The PUBLISH of j's progress event, as one command of a fenced write (ev: caller frees). */
static void sdc__publish_cmd(sdc__args *a, const sdc_coord_job *j, sdc_job_state st, const char *error, char *chan,
                             char **ev) {
  int64_t calls = j->denoise_ready ? sdc_scheduler_n_calls(j->d.sched) : 0;
  int64_t done = j->denoise_ready ? calls - sdc_denoise_calls_left(&j->d) : 0;
  *ev = NULL;
  if (sdc_job_event_json(ev, st, done, calls, error) != 0) return;
  sdc_job_key(chan, SDC_JOB_EVENTS_FMT, j->id);
  sdc__command(a, 3, "PUBLISH", chan, *ev);
}

/* The shortest %g form that reads back to the same double ("0.7", not 0.69999999999999996). */
static int sdc__shortest(char *buf, size_t n, double v) {
  int k = 0;
  for (int prec = 15; prec <= 17; prec++) {
    k = snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return k;
}

void sdc_coord_store_running(sdc_coord *c, sdc_coord_job *j) {
  char now[32], seed[32], w[16], h[16], steps[16], chan[SDC_JOB_KEY_MAX], *ev;
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc_clock_unix_ms());
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->g.seed);
  snprintf(w, sizeof w, "%lld", (long long)j->g.width);
  snprintf(h, sizeof h, "%lld", (long long)j->g.height);
  snprintf(steps, sizeof steps, "%lld", (long long)sdc_scheduler_n_calls(j->d.sched));
  sdc__args *a = malloc(sizeof *a);
  if (!a) { /* stays pending; re-claimed later */
    sdc__job_release(c, j);
    return;
  }
  sdc__fenced_begin(a, c, j);
  sdc__command(a, 22, "HSET", j->key, SDC_JOB_F_STATE, "running", SDC_JOB_F_STARTED_MS, now, SDC_JOB_F_SEED, seed,
               SDC_JOB_F_WIDTH, w, SDC_JOB_F_HEIGHT, h, SDC_JOB_F_STEPS, steps, SDC_JOB_F_STEP, "0", SDC_JOB_F_SCHEDULER,
               j->sched_name, SDC_JOB_F_COORDINATOR, c->id, SDC_JOB_F_ENTRY, j->entry);
  /* what makes an image job's pixels besides the above: its strength and LoRAs */
  char strength[32], loras[SDC_MAX_LORAS * (SDC_MAX_LORA_NAME + 32)] = "";
  if (j->g.kind != SDC_GEN_TXT2IMG) {
    sdc__shortest(strength, sizeof strength, j->g.strength);
    sdc__command(a, 4, "HSET", j->key, SDC_JOB_F_STRENGTH, strength);
  }
  for (int i = 0, len = 0; i < j->spec.n_loras; i++) {
    len += snprintf(loras + len, sizeof loras - (size_t)len, "%s%s:", i ? "," : "", j->spec.loras[i].name);
    len += sdc__shortest(loras + len, sizeof loras - (size_t)len, j->spec.loras[i].multiplier);
  }
  if (j->spec.n_loras) sdc__command(a, 4, "HSET", j->key, SDC_JOB_F_LORAS, loras);
  sdc__command(a, 4, "HINCRBY", j->key, SDC_JOB_F_ATTEMPTS, "1");
  sdc__command(a, 2, "PERSIST", j->key); /* no expiry while it runs */
  sdc__publish_cmd(a, j, SDC_JOB_RUNNING, NULL, chan, &ev);
  sdc__job_cmd(c, j, NULL, 1, a->n, a->v, a->len);
  free(ev);
  free(a);
}

static void sdc__on_cancel_checked(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  j->awaiting_redis = 0;
  if (j->left || j->phase == SDC_COORD_STORING) return; /* ended meanwhile (cancel poll, job timeout) */
  sdc_coord_job_cancel_checked(c, j, rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0);
}

static void sdc__on_cancel_polled(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  j->cancel_poll_pending = 0;
  if (j->left || j->phase == SDC_COORD_STORING || j->phase == SDC_COORD_CHECKING) return;
  if (rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0) {
    sdc_coord_job_log(j, "cancelled with %s: stopping its work on every worker",
                      j->n_route ? "a step in flight" : "a step to re-issue");
    sdc_coord_broadcast_cancel(c, j->id);
    sdc_coord_job_finish(c, j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  if (j->recheck_cancel && !j->n_route && !j->awaiting_redis) {
    j->recheck_cancel = 0; /* the tick issues it once its backoff has passed */
    if (sdc_clock_mono_ms() >= j->retry_at_ms) sdc_coord_issue(c, j);
  }
}

/* A read, not a write: unfenced (a job no longer ours is dropped by the next fenced write). */
void sdc_coord_poll_cancel(sdc_coord *c, sdc_coord_job *j) {
  if (j->cancel_poll_pending || j->dropped) return;
  j->cancel_poll_pending = 1;
  j->cancel_polled_ms = sdc_clock_mono_ms();
  const char *argv[] = {"HGET", j->key, SDC_JOB_F_CANCEL};
  sdc__job_cmd(c, j, sdc__on_cancel_polled, 0, 3, argv, NULL);
}

void sdc_coord_store_step(sdc_coord *c, sdc_coord_job *j) {
  int64_t calls = sdc_scheduler_n_calls(j->d.sched), done = calls - sdc_denoise_calls_left(&j->d);
  char step[32], chan[SDC_JOB_KEY_MAX], *ev;
  snprintf(step, sizeof step, "%lld", (long long)done);
  sdc__args *a = malloc(sizeof *a);
  if (!a) { /* stays pending; re-claimed later */
    sdc__job_release(c, j);
    return;
  }
  sdc__fenced_begin(a, c, j);
  sdc__command(a, 4, "HSET", j->key, SDC_JOB_F_STEP, step);
  sdc__publish_cmd(a, j, SDC_JOB_RUNNING, NULL, chan, &ev);
  /* a cancel asked for since the last step stops the job here: the script's last reply */
  sdc__command(a, 3, "HGET", j->key, SDC_JOB_F_CANCEL);
  j->awaiting_redis = 1;
  sdc__job_cmd(c, j, sdc__on_cancel_checked, 1, a->n, a->v, a->len);
  free(ev);
  free(a);
}

static void sdc__on_images_stored(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  if (rep && rep->type == REDIS_REPLY_ERROR) {
    snprintf(j->last_error, sizeof j->last_error, "storing the images in Redis failed: %s", rep->str);
    sdc_coord_job_fail(c, j, j->last_error);
    return;
  }
  sdc_coord_job_finish(c, j, SDC_JOB_DONE, NULL);
}

void sdc_coord_store_images(sdc_coord *c, sdc_coord_job *j, const ProtobufCBinaryData *images, size_t n) {
  j->phase = SDC_COORD_STORING;
  char ttl[32], num[16], keys[SDC_MAX_IMAGES][SDC_JOB_KEY_MAX];
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_s);
  snprintf(num, sizeof num, "%zu", n);
  sdc__args *a = malloc(sizeof *a);
  if (!a || n > SDC_MAX_IMAGES) {
    free(a);
    sdc_coord_job_fail(c, j, "storing the images: out of memory or too many images");
    return;
  }
  sdc__fenced_begin(a, c, j);
  for (size_t i = 0; i < n; i++) {
    sdc_job_image_key(keys[i], j->id, (int)i);
    sdc__arg(a, "5", 1);
    sdc__arg(a, "SET", 3);
    sdc__arg(a, keys[i], strlen(keys[i]));
    sdc__arg(a, (const char *)images[i].data, images[i].len);
    sdc__arg(a, "EX", 2);
    sdc__arg(a, ttl, strlen(ttl));
  }
  sdc__command(a, 4, "HSET", j->key, SDC_JOB_F_NUM_IMAGES, num);
  sdc__job_cmd(c, j, sdc__on_images_stored, 1, a->n, a->v, a->len);
  free(a);
}

/* The entry leaves the pending list (unfenced: only for entries whose job is not ours to write). */
static void sdc__ack(sdc_coord *c, const char *entry) {
  if (!c->rc) return;
  redisAsyncCommand(c->rc, NULL, NULL, "XACK %s %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, entry);
  redisAsyncCommand(c->rc, NULL, NULL, "XDEL %s %s", SDC_JOBS_STREAM, entry);
}

/* A copy in the dead-letter stream: entry, id, reason, attempts and (the first
 * SDC_DEAD_LETTER_JSON_BYTES of) the original JSON, per docs/jobs.md. Unfenced: for entries we do not own. */
static void sdc__dead_letter(sdc_coord *c, const sdc_coord_job *j, const char *reason) {
  char attempts[16];
  snprintf(attempts, sizeof attempts, "%d", j->attempts);
  const char *argv[] = {"XADD", SDC_JOBS_DEAD_STREAM, "*", "job", j->raw ? j->raw : "", "entry", j->entry,
                        "id", j->id, "reason", reason, "attempts", attempts};
  if (c->rc) redisAsyncCommandArgv(c->rc, NULL, NULL, sizeof argv / sizeof *argv, argv, NULL);
}

static void sdc__on_final_stored(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  if (rep && rep->type == REDIS_REPLY_ERROR) sdc_coord_job_log(j, "storing the final state: %s", rep->str);
  sdc__job_release(c, j);
  sdc_coord_claim_more(c);
}

/* One fenced write: final state, TTL, dead letter for a failure, the event, the ack. Nothing of it lands
 * if another coordinator owns the job now or it is final already (then exactly one final event exists). */
void sdc_coord_store_final(sdc_coord *c, sdc_coord_job *j, sdc_job_state st, const char *error) {
  char now[32], ttl[32], attempts[16], chan[SDC_JOB_KEY_MAX], *ev;
  char route[SDC_STAGE_END * (SDC_COORD_ROUTE_STAGE_BYTES + 16)];
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc_clock_unix_ms());
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)c->ttl_s);
  snprintf(attempts, sizeof attempts, "%d", j->attempts);
  sdc_coord_job_route_text(j, route, sizeof route);
  sdc__args *a = malloc(sizeof *a);
  if (!a) { /* stays pending; re-claimed later */
    sdc__job_release(c, j);
    return;
  }
  sdc__fenced_begin(a, c, j);
  sdc__command(a, 10, "HSET", j->key, SDC_JOB_F_STATE, sdc_job_state_name(st), SDC_JOB_F_FINISHED_MS, now,
               SDC_JOB_F_ERROR, error ? error : "", SDC_JOB_F_ROUTE, route);
  sdc__command(a, 3, "EXPIRE", j->key, ttl);
  if (st == SDC_JOB_FAILED && error)
    sdc__command(a, 13, "XADD", SDC_JOBS_DEAD_STREAM, "*", "job", j->raw ? j->raw : "", "entry", j->entry, "id", j->id,
                 "reason", error, "attempts", attempts);
  sdc__publish_cmd(a, j, st, error, chan, &ev);
  sdc__command(a, 4, "XACK", SDC_JOBS_STREAM, SDC_JOBS_GROUP, j->entry);
  sdc__command(a, 3, "XDEL", SDC_JOBS_STREAM, j->entry);
  sdc__job_cmd(c, j, sdc__on_final_stored, 1, a->n, a->v, a->len);
  free(ev);
  free(a);
}

/* ------------------------------------------------------- image inputs */

/* The bytes of each key (KEYS), or {index, why} for the first that is missing, not a string or larger than
 * ARGV[1] bytes: nothing big is read only to be refused. A read, not a write: unfenced. */
static const char sdc__images_lua[] =
    "local out = {0}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  if t == 'none' then return {i, 'no such key'} end\n"
    "  if t ~= 'string' then return {i, 'a ' .. t .. ', not a string of PNG or JPEG bytes'} end\n"
    "  local n = redis.call('STRLEN', k)\n"
    "  if n > tonumber(ARGV[1]) then return {i, n .. ' bytes; the limit is ' .. ARGV[1]} end\n"
    "  if n == 0 then return {i, 'empty'} end\n"
    "  out[#out + 1] = redis.call('GET', k)\n"
    "end\n"
    "return out\n";

static void sdc__on_images(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  if (j->left || j->phase == SDC_COORD_STORING) return;
  const sdc_job_image *im[2] = {&j->spec.init_image, &j->spec.mask};
  int which[2], n = 0; /* the key of each reply element */
  for (int i = 0; i < 2; i++)
    if (im[i]->key) which[n++] = i;
  char why[SDC_MAX_ERROR_MSG];
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_INTEGER) {
    snprintf(why, sizeof why, "reading the image keys: %s", rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    sdc_coord_job_images(c, j, why);
    return;
  }
  const long long bad = rep->element[0]->integer;
  if (bad >= 1 && bad <= n && rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_STRING) {
    const int i = which[bad - 1];
    snprintf(why, sizeof why, "%s: key \"%.200s\": %s", i ? "mask" : "init_image", im[i]->key, rep->element[1]->str);
    sdc_coord_job_images(c, j, why);
    return;
  }
  if (bad != 0 || rep->elements != (size_t)n + 1) {
    sdc_coord_job_images(c, j, "reading the image keys: unexpected reply");
    return;
  }
  for (int k = 0; k < n; k++) {
    const redisReply *e = rep->element[k + 1];
    const int i = which[k];
    j->img[i] = e->type == REDIS_REPLY_STRING ? malloc(e->len ? e->len : 1) : NULL;
    if (!j->img[i]) {
      sdc_coord_job_images(c, j, "reading the image keys: out of memory");
      return;
    }
    memcpy(j->img[i], e->str, e->len);
    j->n_img[i] = e->len, j->img_owned[i] = 1;
  }
  sdc_coord_job_images(c, j, NULL);
}

void sdc_coord_fetch_images(sdc_coord *c, sdc_coord_job *j) {
  char max[24];
  snprintf(max, sizeof max, "%d", SDC_MAX_INPUT_IMAGE_BYTES);
  const char *argv[7] = {"EVAL", sdc__images_lua, "0"};
  int argc = 3, nk = 0;
  if (j->spec.init_image.key) argv[argc++] = j->spec.init_image.key, nk++;
  if (j->spec.mask.key) argv[argc++] = j->spec.mask.key, nk++;
  char nks[4];
  snprintf(nks, sizeof nks, "%d", nk);
  argv[2] = nks;
  argv[argc++] = max;
  sdc__job_cmd(c, j, sdc__on_images, 0, argc, argv, NULL);
}

/* ---------------------------------------------------------------- claims */

/* Ends j without writing its hash: a dead letter naming why, then the ack. */
static void sdc__reject(sdc_coord *c, sdc_coord_job *j, const char *reason) {
  sdc_coord_job_log(j, "%s", reason);
  sdc__dead_letter(c, j, reason);
  sdc__ack(c, j->entry);
  sdc__job_release(c, j);
  sdc_coord_claim_more(c);
}

static void sdc__on_claimed(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  if (j->left) return;
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
      rep->element[1]->type != REDIS_REPLY_STRING) {
    sdc_coord_job_log(j, "claiming the job in Redis failed: %s; left pending",
                      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    sdc__job_release(c, j);
    return;
  }
  const char *verdict = rep->element[0]->str, *arg = rep->element[1]->str;
  char reason[SDC_MAX_ERROR_MSG];
  if (strcmp(verdict, "duplicate") == 0) {
    if (j->parse_failed)
      snprintf(reason, sizeof reason, "%.600s (id '%s' is another job's (entry %s): its hash was left alone)",
               j->last_error, j->id, arg);
    else
      snprintf(reason, sizeof reason, "duplicate job id '%s' (already used by entry %s)", j->id, arg);
    sdc__reject(c, j, reason);
    return;
  }
  if (strcmp(verdict, "forged") == 0) {
    snprintf(reason, sizeof reason, "job hash says '%s' but no coordinator ever claimed the job (no epoch): not run",
             arg);
    sdc__reject(c, j, reason);
    return;
  }
  if (strcmp(verdict, "final") == 0) {
    /* re-delivered after it ended (a coordinator died between storing and acking) */
    sdc_coord_job_log(j, "already %s; acknowledging", arg);
    sdc__ack(c, j->entry);
    sdc__job_release(c, j);
    sdc_coord_claim_more(c);
    return;
  }
  if (strcmp(verdict, "ok") != 0 || rep->elements != 4) {
    sdc_coord_job_log(j, "claiming the job: unexpected verdict '%s'; left pending", verdict);
    sdc__job_release(c, j);
    return;
  }
  snprintf(j->epoch, sizeof j->epoch, "%s", arg);
  if (j->parse_failed) {
    sdc_coord_job_fail(c, j, j->last_error);
    return;
  }
  const redisReply *cancel = rep->element[2], *seed = rep->element[3];
  if (cancel->type == REDIS_REPLY_STRING && strcmp(cancel->str, "1") == 0) {
    sdc_coord_job_finish(c, j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  sdc_coord_job_run(c, j, seed->type == REDIS_REPLY_STRING && seed->str[0] ? seed->str : NULL);
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

/* Makes a job of stream entry `entry` (json: its "job" field, NULL when it has none) and claims it (the
 * claim script); a job that does not parse fails once claimed, under the id it meant to have only when
 * no other job's hash has that id. */
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
  j->parse_failed = err != 0;
  snprintf(j->id, sizeof j->id, "%s", j->spec.id[0] ? j->spec.id : entry);
  if (err && json) sdc__sniff_id(json, n, j->id, sizeof j->id);
  if (!sdc_job_id_valid(j->id)) snprintf(j->id, sizeof j->id, "%s", entry);
  sdc_job_key(j->key, SDC_JOB_KEY_FMT, j->id);
  /* created_ms of a job enqueued with a plain XADD: the entry id's milliseconds (HSETNX in the claim:
   * what the submitter wrote wins) */
  char created[32] = "";
  size_t digits = strcspn(entry, "-");
  if (digits > 0 && digits < sizeof created) snprintf(created, sizeof created, "%.*s", (int)digits, entry);
  j->phase = SDC_COORD_CHECKING;
  const char *argv[] = {"EVAL", sdc__claim_lua, "1", j->key, c->id, j->entry, created, j->parse_failed ? "1" : "0"};
  sdc__job_cmd(c, j, sdc__on_claimed, 0, sizeof argv / sizeof *argv, argv, NULL);
}

/* The touch's answer: an entry no longer pending was acknowledged by the coordinator that took the job
 * over while we were stalled; the job is not ours to run (its writes would be fenced anyway). */
static void sdc__on_touched(sdc_coord *c, sdc_coord_job *j, const redisReply *rep) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements || j->phase == SDC_COORD_STORING || j->left) return;
  sdc_coord_job_log(j, "entry %s is no longer pending (another coordinator ended the job): dropped", j->entry);
  sdc__job_release(c, j);
}

/* Hands a pending entry of ours to whichever coordinator runs XAUTOCLAIM next: XCLAIM to ourselves with
 * an idle time past any --reclaim-idle-ms (JUSTID: the delivery count is not raised). */
static void sdc__hand_over(sdc_coord *c, const char *entry) {
  if (c->rc)
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
      sdc__ack(c, e->element[0]->str);
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
  if (!rep) return; /* connection lost: the outage retries */
  if (rep->type == REDIS_REPLY_ARRAY)
    for (size_t s = 0; s < rep->elements; s++)
      if (rep->element[s]->type == REDIS_REPLY_ARRAY && rep->element[s]->elements == 2)
        sdc__take_entries(c, rep->element[s]->element[1]);
  if (rep->type == REDIS_REPLY_ERROR) sdc_log(NULL, -1, 0, "XREADGROUP on %s: %s", SDC_JOBS_STREAM, rep->str);
  sdc_coord_claim_more(c);
}

void sdc_coord_claim_more(sdc_coord *c) {
  if (c->reading || c->draining || c->n_jobs >= c->max_jobs || !c->rb || c->redis_ready < 2 || c->exit_code) return;
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

/* The liveness PING's answer (NULL when the connection went: the outage handles that). */
static void sdc__on_alive(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc_coord *c = priv;
  if (r) c->redis_ping_sent_ms = 0;
}

void sdc_coord_intake_tick(sdc_coord *c, int64_t now_ms) {
  /* a Redis that stopped answering (paused, or a network that drops packets without a reset) would hang
   * every job silently: a PING unanswered for SDC_REDIS_STALL_MS counts as a lost connection */
  if (c->redis_ready >= 2 && c->rc && !c->redis_retrying) {
    if (c->redis_ping_sent_ms && now_ms - c->redis_ping_sent_ms > SDC_REDIS_STALL_MS) {
      char why[96];
      snprintf(why, sizeof why, "no reply for %lld ms", (long long)(now_ms - c->redis_ping_sent_ms));
      sdc__redis_lost(c, why);
    } else if (!c->redis_ping_sent_ms) {
      c->redis_ping_sent_ms = now_ms;
      redisAsyncCommand(c->rc, sdc__on_alive, c, "PING");
    }
  }
  if (!c->redis_retrying && c->redis_ready < 2 && c->redis_connect_ms &&
      now_ms - c->redis_connect_ms > SDC_REDIS_CONNECT_TIMEOUT_MS) {
    char why[96];
    snprintf(why, sizeof why, "not ready within %d ms", SDC_REDIS_CONNECT_TIMEOUT_MS);
    sdc__redis_lost(c, why);
  }
  if (!c->rc || c->redis_ready < 2 || c->exit_code) return;
  /* keep our pending entries ours: XCLAIM resets their idle time, well within --reclaim-idle-ms */
  const int64_t touch_ms = c->reclaim_idle_ms / 3 < SDC_COORD_TOUCH_MS ? c->reclaim_idle_ms / 3 : SDC_COORD_TOUCH_MS;
  if (now_ms > c->last_touch_ms + touch_ms && c->jobs) {
    c->last_touch_ms = now_ms;
    for (sdc_coord_job *j = c->jobs, *next; j; j = next) {
      next = j->next; /* a failed queueing releases j */
      if (j->left) continue;
      const char *argv[] = {"XCLAIM", SDC_JOBS_STREAM, SDC_JOBS_GROUP, c->id, "0", j->entry, "JUSTID"};
      sdc__job_cmd(c, j, sdc__on_touched, 0, sizeof argv / sizeof *argv, argv, NULL);
    }
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
