/* sdc_client.c - submit, watch, fetch and cancel jobs through Redis (docs/jobs.md), synchronously, over hiredis. */
#include "sdc_client.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "redis_url.h"

#define SDC__CONNECT_TIMEOUT_S 5
#define SDC__COMMAND_TIMEOUT_S 10
#define SDC__POLL_MS 500
#define SDC__IO_GIVE_UP_MS 30000

struct sdc_client {
  redisContext *ctx; /* NULL after an I/O error: the next command reconnects */
  sdc_redis_url url; /* url.where names it in messages (never the password) */
  int was_up;        /* connected once: a Redis lost later is retried (one down at the start fails at once) */
};

/* Enqueue atomically: the job hash can never be missing for an entry a
 * coordinator reads, whichever id the job gets. HSETNX: a coordinator that
 * already claimed the entry (state, started_ms, ...) must not be overwritten.
 * KEYS[1] stream; ARGV: json, explicit id or "", hash prefix, entry field. */
static const char sdc__submit_lua[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local id = ARGV[2]\n"
    "if id ~= '' and redis.call('EXISTS', ARGV[3] .. id) == 1 then\n"
    "  return redis.error_reply('ERR job ' .. id .. ' already exists')\n"
    "end\n"
    "local entry = redis.call('XADD', KEYS[1], '*', ARGV[4], ARGV[1])\n"
    "if id == '' then id = entry end\n"
    "local h = ARGV[3] .. id\n"
    "redis.call('HSETNX', h, 'state', 'queued')\n"
    "redis.call('HSETNX', h, 'created_ms', string.match(entry, '^(%d+)-'))\n"
    "redis.call('HSETNX', h, 'entry', entry)\n"
    "return {id, entry}\n";

/* Cancel unless the job already ended or never existed: only a hash, or (for a job queued with a bare
 * XADD, whose id is its entry id) the entry in the stream, makes an id known; an unknown id gets no hash.
 * KEYS[1] hash, KEYS[2] stream; ARGV: control channel, ttl, the id when it has an entry id's form. */
static const char sdc__cancel_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if st == 'done' or st == 'failed' or st == 'cancelled' then return st end\n"
    "local existed = redis.call('EXISTS', KEYS[1])\n"
    "if existed == 0 and (ARGV[3] == '' or #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) == 0) then\n"
    "  return redis.error_reply('NOSUCHJOB')\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'cancel', '1')\n"
    "if existed == 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "redis.call('PUBLISH', ARGV[1], 'cancel')\n"
    "if st then return st end\n"
    "return ''\n";

/* ------------------------------------------------------------ connection */

/* A reply that is an error or NULL becomes an sdc error naming what was asked. */
static int sdc__check_reply(const sdc_client *c, redisContext *ctx, const redisReply *r, const char *what) {
  if (!r) return sdc_seterr(SDC_EIO, "redis %s: %s: %s", c->url.where, what, ctx->errstr[0] ? ctx->errstr : "no reply");
  if (r->type == REDIS_REPLY_ERROR) return sdc_seterr(SDC_EPROTOCOL, "redis %s: %s: %s", c->url.where, what, r->str);
  return SDC_OK;
}

/* One try at a new authenticated connection on the client's db; *transient: worth retrying (refused,
 * reset, or a Redis still loading its data). */
static int sdc__open_once(sdc_client *c, redisContext **out, int *transient) {
  *out = NULL;
  *transient = 0;
  redisContext *ctx = redisConnectWithTimeout(c->url.host, c->url.port, (struct timeval){SDC__CONNECT_TIMEOUT_S, 0});
  if (!ctx) return sdc_seterr(SDC_ENOMEM, "redis %s: out of memory", c->url.where);
  if (ctx->err) {
    int err = sdc_seterr(SDC_EIO, "redis %s: cannot connect: %s", c->url.where, ctx->errstr);
    redisFree(ctx);
    *transient = 1;
    return err;
  }
  redisSetTimeout(ctx, (struct timeval){SDC__COMMAND_TIMEOUT_S, 0});
  int err = SDC_OK;
  redisReply *r = NULL;
  if (c->url.password[0]) {
    r = c->url.user[0] ? redisCommand(ctx, "AUTH %s %s", c->url.user, c->url.password) : redisCommand(ctx, "AUTH %s", c->url.password);
    err = sdc__check_reply(c, ctx, r, "AUTH");
    freeReplyObject(r);
  }
  if (!err && c->url.db) {
    r = redisCommand(ctx, "SELECT %d", c->url.db);
    err = sdc__check_reply(c, ctx, r, "SELECT");
    freeReplyObject(r);
  }
  if (!err) {
    r = redisCommand(ctx, "PING");
    err = sdc__check_reply(c, ctx, r, "PING");
    *transient = !r || (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) == 0);
    freeReplyObject(r);
  } else {
    *transient = err == SDC_EIO;
  }
  if (err)
    redisFree(ctx);
  else
    *out = ctx;
  return err;
}

/* A new connection. Once the client has been connected, a Redis that is down, restarting or loading is
 * retried with backoff (SDC_REDIS_RETRY_MIN_MS doubling to SDC_REDIS_RETRY_MAX_MS) for
 * SDC_CLIENT_REDIS_RETRY_MS, each retry said on stderr; the first connection and a refused password or
 * db fail at once (a wrong URL is told, not waited on). */
static int sdc__open(sdc_client *c, redisContext **out) {
  const int64_t t0 = sdc_clock_mono_ms();
  int64_t backoff = SDC_REDIS_RETRY_MIN_MS;
  for (;;) {
    int transient, err = sdc__open_once(c, out, &transient);
    if (!err || !transient || !c->was_up || sdc_clock_mono_ms() - t0 + backoff > SDC_CLIENT_REDIS_RETRY_MS) return err;
    fprintf(stderr, "sdc: %s; retrying in %lld ms\n", sdc_errmsg(err), (long long)backoff);
    sdc_clock_sleep_ms(backoff);
    backoff = 2 * backoff > SDC_REDIS_RETRY_MAX_MS ? SDC_REDIS_RETRY_MAX_MS : 2 * backoff;
  }
}

int sdc_client_connect(sdc_client **out, const char *url) {
  *out = NULL;
  sdc_client *c = calloc(1, sizeof *c);
  if (!c) return sdc_seterr(SDC_ENOMEM, "redis client: out of memory");
  int err = sdc_redis_url_parse(&c->url, url);
  if (!err) err = sdc__open(c, &c->ctx);
  c->was_up = !err;
  if (err) {
    sdc_client_free(c);
    return err;
  }
  *out = c;
  return SDC_OK;
}

void sdc_client_free(sdc_client *c) {
  if (!c) return;
  if (c->ctx) redisFree(c->ctx);
  memset(c->url.password, 0, sizeof c->url.password);
  free(c);
}

/* Runs one command on the main connection, reconnecting first when the last one broke. A command that
 * failed on a broken connection is re-sent once on a new one only when `again` says it may be (a read,
 * or a cancel: running it twice changes nothing more); a submit never is: it may have run. The reply
 * (caller frees) or NULL with *err set; error replies set *err too. */
static redisReply *sdc__vcmd(sdc_client *c, int again, int *err, const char *what, const char *fmt, va_list ap0) {
  for (int tries = 0;; tries++) {
    if (!c->ctx && (*err = sdc__open(c, &c->ctx))) return NULL;
    va_list ap;
    va_copy(ap, ap0);
    redisReply *r = redisvCommand(c->ctx, fmt, ap);
    va_end(ap);
    *err = sdc__check_reply(c, c->ctx, r, what);
    if (!r) {
      redisFree(c->ctx);
      c->ctx = NULL;
      if (again && tries == 0) {
        fprintf(stderr, "sdc: %s; reconnecting\n", sdc_errmsg(*err));
        continue;
      }
    }
    if (*err) {
      freeReplyObject(r);
      return NULL;
    }
    return r;
  }
}

static redisReply *sdc__cmd(sdc_client *c, int *err, const char *what, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = sdc__vcmd(c, 1, err, what, fmt, ap);
  va_end(ap);
  return r;
}

static redisReply *sdc__cmd_once(sdc_client *c, int *err, const char *what, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = sdc__vcmd(c, 0, err, what, fmt, ap);
  va_end(ap);
  return r;
}

static int sdc__check_id(const char *id) {
  if (sdc_job_id_valid(id)) return SDC_OK;
  return sdc_seterr(SDC_EINVAL, "job id '%.*s': not 1..%d characters of [A-Za-z0-9._-]", 140, id ? id : "(null)",
                    SDC_MAX_JOB_ID);
}

/* ---------------------------------------------------------------- submit */

int sdc_client_put_image(sdc_client *c, const void *data, size_t len, int64_t ttl_s, char *key_out, size_t n) {
  if (n < 40) return sdc_seterr(SDC_EINVAL, "sdc_client_put_image: key buffer of %zu bytes is too small", n);
  if (len < 1 || len > SDC_MAX_INPUT_IMAGE_BYTES)
    return sdc_seterr(SDC_EINVAL, "image of %zu bytes: expected 1..%d", len, SDC_MAX_INPUT_IMAGE_BYTES);
  uint8_t rnd[12];
  FILE *fp = fopen("/dev/urandom", "rb");
  size_t got = fp ? fread(rnd, 1, sizeof rnd, fp) : 0;
  if (fp) fclose(fp);
  if (got != sizeof rnd) return sdc_seterr(SDC_EIO, "/dev/urandom: cannot read a key name");
  int k = snprintf(key_out, n, "img:");
  for (size_t i = 0; i < sizeof rnd; i++) k += snprintf(key_out + k, n - (size_t)k, "%02x", rnd[i]);
  char ttl[24];
  snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_s);
  int err;
  /* SET NX twice is harmless (the second answers nil): a retried write is safe */
  redisReply *r = sdc__cmd(c, &err, "SET image", "SET %s %b NX EX %s", key_out, data, len, ttl);
  if (!err && r->type != REDIS_REPLY_STATUS)
    err = sdc_seterr(SDC_EINVAL, "SET %s: the key exists already (retry)", key_out);
  freeReplyObject(r);
  return err;
}

int sdc_client_submit(sdc_client *c, const sdc_job *job, char *id_out, size_t n) {
  if (n < SDC_MAX_JOB_ID + 1)
    return sdc_seterr(SDC_EINVAL, "sdc_client_submit: id buffer of %zu bytes is too small", n);
  id_out[0] = 0;
  char *json = NULL, prefix[SDC_JOB_KEY_MAX];
  int err = sdc_job_to_json(job, &json);
  if (err) return err;
  sdc_job_key(prefix, SDC_JOB_KEY_FMT, "");
  redisReply *r = sdc__cmd_once(c, &err, "submitting a job", "EVAL %s 1 %s %b %s %s %s", sdc__submit_lua, SDC_JOBS_STREAM,
                           json, strlen(json), job->id, prefix, SDC_JOBS_ENTRY_FIELD);
  free(json);
  if (err == SDC_EPROTOCOL && strstr(sdc_errmsg(err), "already exists"))
    return sdc_seterr(SDC_EINVAL, "job '%s': already exists (job ids must be unique); nothing was queued", job->id);
  if (err) return err;
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[0]->len > SDC_MAX_JOB_ID)
    err = sdc_seterr(SDC_EPROTOCOL, "redis %s: submitting a job: unexpected reply", c->url.where);
  else
    snprintf(id_out, n, "%s", r->element[0]->str);
  freeReplyObject(r);
  return err;
}

/* ---------------------------------------------------------------- status */

void sdc_job_status_free(sdc_job_status *st) {
  for (size_t i = 0; st->fields && i < 2 * st->n_fields; i++) free(st->fields[i]);
  free(st->fields);
  memset(st, 0, sizeof *st);
}

static void sdc__status_init(sdc_job_status *st) {
  memset(st, 0, sizeof *st);
  st->step = st->steps = st->num_images = st->width = st->height = -1;
  st->created_ms = st->started_ms = st->finished_ms = -1;
}

/* A non-negative decimal integer field; -1 when it is not one (the hash is
 * written by others: a bad field is ignored, not fatal). */
static int64_t sdc__field_int(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  return errno || end == s || *end || v < 0 ? -1 : (int64_t)v;
}

static void sdc__status_field(sdc_job_status *st, const char *k, const char *v) {
  if (strcmp(k, SDC_JOB_F_STATE) == 0)
    st->state = sdc_job_state_parse(v);
  else if (strcmp(k, SDC_JOB_F_STEP) == 0)
    st->step = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_STEPS) == 0)
    st->steps = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_NUM_IMAGES) == 0)
    st->num_images = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_WIDTH) == 0)
    st->width = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_HEIGHT) == 0)
    st->height = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_CREATED_MS) == 0)
    st->created_ms = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_STARTED_MS) == 0)
    st->started_ms = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_FINISHED_MS) == 0)
    st->finished_ms = sdc__field_int(v);
  else if (strcmp(k, SDC_JOB_F_CANCEL) == 0)
    st->cancel_requested = strcmp(v, "1") == 0;
  else if (strcmp(k, SDC_JOB_F_ERROR) == 0)
    snprintf(st->error, sizeof st->error, "%s", v);
  else if (strcmp(k, SDC_JOB_F_ROUTE) == 0)
    snprintf(st->route, sizeof st->route, "%s", v);
  else if (strcmp(k, SDC_JOB_F_SEED) == 0) {
    int64_t s = sdc__field_int(v);
    st->has_seed = s >= 0, st->seed = s >= 0 ? (uint64_t)s : 0;
  }
}

/* Whether id has the form of a stream entry id ("1700000000000-0"). */
static int sdc__is_entry_id(const char *id) {
  const char *p = id;
  if (*p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p++ != '-' || *p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') p++;
  return *p == 0;
}

int sdc_client_status(sdc_client *c, const char *id, sdc_job_status *out) {
  sdc__status_init(out);
  int err = sdc__check_id(id);
  if (err) return err;
  char key[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, id);
  redisReply *r = sdc__cmd(c, &err, "reading the job hash", "HGETALL %s", key);
  if (err) return err;
  if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
    freeReplyObject(r);
    return sdc_seterr(SDC_EPROTOCOL, "redis %s: HGETALL %s: unexpected reply", c->url.where, key);
  }
  if (r->elements == 0) {
    freeReplyObject(r);
    /* submitted with a bare XADD and not claimed yet: the entry is the record */
    if (sdc__is_entry_id(id)) {
      r = sdc__cmd(c, &err, "reading the job stream", "XRANGE %s %s %s COUNT 1", SDC_JOBS_STREAM, id, id);
      if (err) return err;
      int queued = r->type == REDIS_REPLY_ARRAY && r->elements == 1;
      freeReplyObject(r);
      if (queued) {
        out->state = SDC_JOB_QUEUED;
        return SDC_OK;
      }
    }
    return sdc_seterr(SDC_EMISSING, "job '%s': no such job (never submitted, or its record expired)", id);
  }
  out->fields = calloc(r->elements, sizeof *out->fields);
  if (!out->fields) err = sdc_seterr(SDC_ENOMEM, "job '%s': out of memory", id);
  for (size_t i = 0; !err && i < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    char *ks = strdup(k->str), *vs = strdup(v->str);
    if (!ks || !vs) {
      free(ks), free(vs);
      err = sdc_seterr(SDC_ENOMEM, "job '%s': out of memory", id);
      break;
    }
    out->fields[2 * out->n_fields] = ks, out->fields[2 * out->n_fields + 1] = vs;
    out->n_fields++;
    sdc__status_field(out, ks, vs);
  }
  freeReplyObject(r);
  return err;
}

/* ------------------------------------------------------------------ wait */

/* A second connection subscribed to channel, or NULL (then waiting polls only). */
static redisContext *sdc__subscribe(sdc_client *c, const char *channel) {
  redisContext *sub = NULL;
  if (sdc__open(c, &sub)) return NULL;
  redisReply *r = redisCommand(sub, "SUBSCRIBE %s", channel);
  int ok = r && r->type == REDIS_REPLY_ARRAY;
  freeReplyObject(r);
  if (!ok) {
    redisFree(sub);
    return NULL;
  }
  return sub;
}

/* The next pub/sub push within wait_ms: 1 with *reply set (caller frees),
 * 0 when none came, -1 when the connection broke. */
static int sdc__sub_next(redisContext *sub, int64_t wait_ms, redisReply **reply) {
  void *r = NULL;
  *reply = NULL;
  if (redisGetReplyFromReader(sub, &r) != REDIS_OK) return -1;
  if (!r) {
    struct pollfd p = {.fd = sub->fd, .events = POLLIN};
    int k = poll(&p, 1, (int)wait_ms);
    if (k < 0) return errno == EINTR ? 0 : -1;
    if (k == 0) return 0;
    if (redisBufferRead(sub) != REDIS_OK || redisGetReplyFromReader(sub, &r) != REDIS_OK) return -1;
  }
  *reply = r;
  return r != NULL;
}

typedef struct {
  sdc_client_progress_fn fn;
  void *ctx;
  sdc_job_state state;
  int64_t step, steps;
} sdc__reporter;

/* Reports st when it moved on: a new state or total, or a higher step (events
 * and hash reads may arrive out of order; progress never goes backwards). */
static void sdc__report(sdc__reporter *rp, const sdc_job_status *st) {
  if (st->state == rp->state && st->steps == rp->steps && st->step <= rp->step) return;
  rp->state = st->state, rp->steps = st->steps;
  if (st->step > rp->step) rp->step = st->step;
  if (rp->fn) rp->fn(rp->ctx, st);
}

int sdc_client_wait(sdc_client *c, const char *id, int64_t timeout_ms, sdc_client_progress_fn progress, void *ctx,
                    sdc_job_status *out) {
  sdc_job_status st;
  sdc__status_init(&st);
  if (out) sdc__status_init(out);
  int err = sdc__check_id(id);
  if (err) return err;
  char channel[SDC_JOB_KEY_MAX];
  sdc_job_key(channel, SDC_JOB_EVENTS_FMT, id);
  const int64_t t0 = sdc_clock_mono_ms(), deadline = timeout_ms < 0 ? INT64_MAX : t0 + timeout_ms;
  int64_t io_failing_since = -1;
  sdc__reporter rp = {progress, ctx, (sdc_job_state)-1, -1, -2};
  redisContext *sub = NULL;
  for (;;) {
    sdc_job_status_free(&st);
    err = sdc_client_status(c, id, &st);
    int64_t now = sdc_clock_mono_ms();
    if (err == SDC_EIO) {
      if (io_failing_since < 0) io_failing_since = now;
      if (now - io_failing_since >= SDC__IO_GIVE_UP_MS) break;
    } else if (err) {
      break;
    } else {
      io_failing_since = -1;
      sdc__report(&rp, &st);
      if (sdc_job_state_final(st.state)) break;
      /* subscribed after a successful read: an event published in between is
       * caught by the next read, 500 ms later at worst */
      if (!sub) sub = sdc__subscribe(c, channel);
    }
    now = sdc_clock_mono_ms();
    if (now >= deadline) {
      err = sdc_seterr(SDC_EAGAIN, "job '%s': not finished after %lld ms (state %s, step %lld/%lld)", id,
                       (long long)(now - t0), sdc_job_state_name(st.state), (long long)st.step, (long long)st.steps);
      break;
    }
    const int64_t tick_end = deadline - now < SDC__POLL_MS ? deadline : now + SDC__POLL_MS;
    int ended = 0;
    while (!ended && (now = sdc_clock_mono_ms()) < tick_end) {
      if (!sub) {
        sdc_clock_sleep_ms(tick_end - now);
        break;
      }
      redisReply *m = NULL;
      int k = sdc__sub_next(sub, tick_end - now, &m);
      if (k < 0) {
        redisFree(sub);
        sub = NULL;
        continue;
      }
      if (k == 0) continue;
      if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[0]->type == REDIS_REPLY_STRING &&
          strcmp(m->element[0]->str, "message") == 0 && m->element[2]->type == REDIS_REPLY_STRING) {
        sdc_job_state s;
        int64_t step, steps;
        if (sdc_job_event_parse(m->element[2]->str, m->element[2]->len, &s, &step, &steps) == SDC_OK) {
          /* a final event sends us to the hash at once; only the hash decides */
          if (sdc_job_state_final(s)) {
            ended = 1;
          } else {
            st.state = s;
            if (step >= 0) st.step = step;
            if (steps >= 0) st.steps = steps;
            sdc__report(&rp, &st);
          }
        }
      }
      freeReplyObject(m);
    }
  }
  if (sub) redisFree(sub);
  if (out)
    *out = st;
  else
    sdc_job_status_free(&st);
  return err;
}

/* ----------------------------------------------------------------- image */

int sdc_client_fetch_image(sdc_client *c, const char *id, int i, uint8_t **png, size_t *n) {
  *png = NULL, *n = 0;
  int err = sdc__check_id(id);
  if (err) return err;
  if (i < 0 || i >= SDC_MAX_IMAGES)
    return sdc_seterr(SDC_EINVAL, "job '%s': no image %d (0..%d)", id, i, SDC_MAX_IMAGES - 1);
  char key[SDC_JOB_KEY_MAX];
  sdc_job_image_key(key, id, i);
  redisReply *r = sdc__cmd(c, &err, "reading an image", "GET %s", key);
  if (err) return err;
  if (r->type == REDIS_REPLY_NIL)
    err = sdc_seterr(SDC_EMISSING, "job '%s': image %d not found (not produced, or expired)", id, i);
  else if (r->type != REDIS_REPLY_STRING)
    err = sdc_seterr(SDC_EPROTOCOL, "redis %s: GET %s: not a string", c->url.where, key);
  else if (!(*png = malloc(r->len ? r->len : 1)))
    err = sdc_seterr(SDC_ENOMEM, "job '%s': image %d: out of memory", id, i);
  else
    memcpy(*png, r->str, r->len), *n = r->len;
  freeReplyObject(r);
  return err;
}

/* ---------------------------------------------------------------- cancel */

int sdc_client_cancel(sdc_client *c, const char *id, sdc_job_state *state) {
  if (state) *state = SDC_JOB_UNKNOWN;
  int err = sdc__check_id(id);
  if (err) return err;
  char key[SDC_JOB_KEY_MAX], channel[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, id);
  sdc_job_key(channel, SDC_JOB_CONTROL_FMT, id);
  redisReply *r = sdc__cmd(c, &err, "cancelling a job", "EVAL %s 2 %s %s %s %d %s", sdc__cancel_lua, key,
                           SDC_JOBS_STREAM, channel, SDC_DEFAULT_RESULT_TTL_S, sdc__is_entry_id(id) ? id : "");
  if (err == SDC_EPROTOCOL && strstr(sdc_errmsg(err), "NOSUCHJOB"))
    return sdc_seterr(SDC_EMISSING, "job '%s': no such job (never submitted, or its record expired); nothing was cancelled",
                      id);
  if (err) return err;
  if (r->type != REDIS_REPLY_STRING)
    err = sdc_seterr(SDC_EPROTOCOL, "redis %s: cancelling job '%s': unexpected reply", c->url.where, id);
  else if (state)
    *state = sdc_job_state_parse(r->str);
  freeReplyObject(r);
  return err;
}
