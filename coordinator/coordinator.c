/* coordinator.c - sdc-coordinator: claims jobs from Redis, owns each job's latent, scheduler and RNG,
 * routes every step through one replica of each UNet shard, stores results, acks only after storing. */
#include <errno.h>
#include <getopt.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "error.h"
#include "job.h"
#include "model.h"
#include "denoise.h"
#include "registry.h"
#include "scheduler.h"
#include "stage.h"
#include "wire.h"

#define SDC__BEAT_MS 1000
#define SDC__DEAD_AFTER_MS (3 * SDC__BEAT_MS + 500)
#define SDC__TICK_MS 200
#define SDC__TOUCH_MS 10000       /* re-claim our own pending entries so others see us alive */
#define SDC__RECLAIM_IDLE_MS 60000 /* take over entries nobody touched for this long */
#define SDC__MAX_ATTEMPTS 3
#define SDC__ALL_STAGES                                                                                    \
  ((1u << SDCPB__STAGE__TEXT) | (1u << SDCPB__STAGE__UNET_DOWN) | (1u << SDCPB__STAGE__UNET_MID) | \
   (1u << SDCPB__STAGE__UNET_UP) | (1u << SDCPB__STAGE__VAE))

typedef enum { SDC__J_CHECKING, SDC__J_TEXT, SDC__J_DENOISE, SDC__J_VAE, SDC__J_STORING } sdc__phase;

typedef struct sdc__job {
  struct sdc__job *next;
  char id[SDC_MAX_JOB_ID + 1], entry[64], key[SDC_JOB_KEY_MAX];
  sdc_job spec;
  sdc_gen_params g;
  sdc_denoise d;
  int denoise_ready;
  sdc__phase phase;
  float *ctx, *in, *t; /* context (B,L,D), model input (B,C,h,w), timesteps (B) */
  int64_t L, D;
  uint64_t req_id, issued_ms;
  int attempts, route[3], n_route;
  char last_error[512];
  char *raw; /* first KiB of the job's JSON, for the dead-letter stream */
  char route_log[1024];
  int cancelled, storing_pending, store_failed;
  int awaiting_redis; /* a step's cancel check is in flight: nothing to issue until it answers */
  uint64_t started_ms;
} sdc__job;

typedef struct {
  uv_loop_t *loop;
  void *zctx, *router;
  uv_poll_t poll;
  uv_prepare_t prep;
  uv_timer_t tick;
  uv_signal_t sig_term, sig_int;
  redisAsyncContext *rc, *rb; /* commands; blocking reads */
  char id[96], redis_host[256], bind[256];
  int redis_port, redis_db;
  sdc_model model;
  char fingerprint[32];
  sdc_registry reg;
  sdc__job *jobs;
  int n_jobs, max_jobs, reading, draining, stopping;
  uint64_t next_req_id, step_timeout_ms, ttl_s, last_touch_ms, last_reclaim_ms;
  uint64_t jobs_done, jobs_failed, steps_done;
  Sdcpb__DType wire_dtype;
  int64_t max_pixels;
} sdc__coord;

static sdc__coord C;

static uint64_t sdc__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

__attribute__((format(printf, 2, 3))) static void sdc__log(const char *job, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%llu coordinator %s%s%s: %s\n", (unsigned long long)sdc__now_ms(), C.id, job ? " job " : "",
          job ? job : "", msg);
}

static void sdc__claim_more(void);
static void sdc__issue(sdc__job *j);

/* ------------------------------------------------------------ job states */

static void sdc__publish(sdc__job *j, sdc_job_state st, const char *error) {
  char *ev = NULL, chan[SDC_JOB_KEY_MAX];
  int64_t calls = j->denoise_ready ? sdc_scheduler_n_calls(j->d.sched) : 0;
  int64_t done = j->denoise_ready ? calls - sdc_denoise_calls_left(&j->d) : 0;
  if (sdc_job_event_json(&ev, st, done, calls, error) != 0) return;
  sdc_job_key(chan, SDC_JOB_EVENTS_FMT, j->id);
  redisAsyncCommand(C.rc, NULL, NULL, "PUBLISH %s %s", chan, ev);
  free(ev);
}

static void sdc__job_free(sdc__job *j) {
  for (sdc__job **pp = &C.jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  C.n_jobs--;
  if (j->denoise_ready) sdc_denoise_free(&j->d);
  sdc_job_free(&j->spec);
  free(j->raw);
  free(j->ctx), free(j->in), free(j->t);
  free(j);
}

/* The entry leaves the pending list only now: its outcome is stored. */
static void sdc__ack(sdc__job *j) {
  redisAsyncCommand(C.rc, NULL, NULL, "XACK %s %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, j->entry);
  redisAsyncCommand(C.rc, NULL, NULL, "XDEL %s %s", SDC_JOBS_STREAM, j->entry);
}

static void sdc__release_route(sdc__job *j) {
  for (int i = 0; i < j->n_route; i++)
    if (j->route[i] >= 0 && C.reg.w[j->route[i]].outstanding > 0) C.reg.w[j->route[i]].outstanding--;
  j->n_route = 0;
}

static void sdc__on_final_stored(redisAsyncContext *ac, void *reply, void *priv);

/* A copy in the dead-letter stream: entry, id, reason, attempts and (the first
 * KiB of) the original JSON, per docs/jobs.md. */
static void sdc__dead_letter(const sdc__job *j, const char *reason) {
  char attempts[16];
  snprintf(attempts, sizeof attempts, "%d", j->attempts);
  const char *argv[] = {"XADD", SDC_JOBS_DEAD_STREAM, "*", "job", j->raw ? j->raw : "", "entry", j->entry,
                        "id", j->id, "reason", reason, "attempts", attempts};
  redisAsyncCommandArgv(C.rc, NULL, NULL, 13, argv, NULL);
}

/* Ends a job with a final state; acks once Redis confirms the state write. */
static void sdc__finish(sdc__job *j, sdc_job_state st, const char *error) {
  sdc__release_route(j);
  j->phase = SDC__J_STORING;
  char now[32], ttl[32];
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc__now_ms());
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)C.ttl_s);
  const char *argv[] = {"HSET", j->key, SDC_JOB_F_STATE, sdc_job_state_name(st), SDC_JOB_F_FINISHED_MS, now,
                        SDC_JOB_F_ERROR, error ? error : "", SDC_JOB_F_ROUTE, j->route_log};
  redisAsyncCommandArgv(C.rc, NULL, NULL, 10, argv, NULL);
  redisAsyncCommand(C.rc, NULL, NULL, "EXPIRE %s %s", j->key, ttl);
  if (st == SDC_JOB_FAILED && error) sdc__dead_letter(j, error);
  sdc__publish(j, st, error);
  if (st == SDC_JOB_DONE) C.jobs_done++;
  else if (st == SDC_JOB_FAILED) C.jobs_failed++;
  if (error) sdc__log(j->id, "%s: %s", sdc_job_state_name(st), error);
  else sdc__log(j->id, "%s (route %s)", sdc_job_state_name(st), j->route_log);
  /* a PING after the writes: its reply means they were all applied */
  redisAsyncCommand(C.rc, sdc__on_final_stored, j, "PING");
}

static void sdc__on_final_stored(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  sdc__job *j = priv;
  if (!reply) return; /* connection lost: the entry stays pending and is re-delivered */
  sdc__ack(j);
  sdc__job_free(j);
  sdc__claim_more();
}

static void sdc__fail(sdc__job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sdc__fail(sdc__job *j, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sdc__finish(j, SDC_JOB_FAILED, msg);
}

/* --------------------------------------------------------------- routing */

/* Picks one replica per stage in `stages` (in order) and sends req to the first. */
static int sdc__route_and_send(sdc__job *j, Sdcpb__StageRequest *req, const Sdcpb__Stage *stages, int n) {
  Sdcpb__Hop hops[3], *hp[3];
  for (int i = 0; i < n; i++) {
    int w = sdc_registry_pick(&C.reg, stages[i]);
    if (w < 0) return SDC_EAGAIN; /* no replica now: retried by the tick */
    sdcpb__hop__init(&hops[i]);
    hops[i].stage = stages[i];
    hops[i].worker_id = C.reg.w[w].id;
    hops[i].endpoint = C.reg.w[w].endpoint;
    hp[i] = &hops[i];
    j->route[i] = w;
  }
  req->job_id = j->id;
  req->request_id = j->req_id = ++C.next_req_id;
  req->deadline_unix_ms = sdc__now_ms() + C.step_timeout_ms;
  req->n_route = (size_t)n, req->route = hp;
  req->hop = 0;
  req->wire_dtype = C.wire_dtype;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  env.request = req;
  int err = sdc_zmq_send(C.reg.w[j->route[0]].push, NULL, 0, &env, ZMQ_DONTWAIT);
  if (err) return err;
  j->n_route = n;
  for (int i = 0; i < n; i++) C.reg.w[j->route[i]].outstanding++;
  j->issued_ms = sdc__now_ms();
  return SDC_OK;
}

static void sdc__issue(sdc__job *j) {
  if (j->n_route) return; /* in flight */
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  int err;
  void *owned[3] = {0};
  if (j->phase == SDC__J_TEXT) {
    char *prompts[2] = {j->spec.negative_prompt ? j->spec.negative_prompt : "", j->spec.prompt};
    int cfg = j->g.guidance_scale > 1.0;
    req.n_prompts = cfg ? 2 : 1, req.prompts = cfg ? prompts : prompts + 1;
    static const Sdcpb__Stage st[] = {SDCPB__STAGE__TEXT};
    err = sdc__route_and_send(j, &req, st, 1);
  } else if (j->phase == SDC__J_DENOISE) {
    if (sdc_denoise_calls_left(&j->d) == 0) return; /* the move to VAE is made by the step's cancel check */
    const int64_t B = sdc_denoise_batch(&j->d);
    sdc_denoise_model_input(&j->d, j->in, j->t);
    Sdcpb__Tensor sample = SDCPB__TENSOR__INIT, ctx = SDCPB__TENSOR__INIT;
    err = sdc_wire_tensor_set(&sample, j->in, 4, (int64_t[]){B, j->d.C, j->d.h, j->d.w}, C.wire_dtype, &owned[0]);
    if (!err) err = sdc_wire_tensor_set(&ctx, j->ctx, 3, (int64_t[]){B, j->L, j->D}, C.wire_dtype, &owned[1]);
    req.sample = &sample, req.context = &ctx;
    req.n_timestep = (size_t)B, req.timestep = j->t;
    req.step = (uint32_t)(sdc_scheduler_n_calls(j->d.sched) - sdc_denoise_calls_left(&j->d));
    static const Sdcpb__Stage st[] = {SDCPB__STAGE__UNET_DOWN, SDCPB__STAGE__UNET_MID, SDCPB__STAGE__UNET_UP};
    if (!err) err = sdc__route_and_send(j, &req, st, 3);
  } else if (j->phase == SDC__J_VAE) {
    sdc_denoise_vae_input(&j->d, j->in);
    Sdcpb__Tensor lat = SDCPB__TENSOR__INIT;
    err = sdc_wire_tensor_set(&lat, j->in, 4, (int64_t[]){j->d.N, j->d.C, j->d.h, j->d.w}, SDCPB__DTYPE__F32, &owned[0]);
    char *texts[SDC_MAX_IMAGES];
    char buf[SDC_MAX_IMAGES][8192], origin[SDC_MAX_JOB_ID + 8];
    snprintf(origin, sizeof origin, "Job: %s", j->id);
    for (int64_t i = 0; i < j->d.N && i < SDC_MAX_IMAGES; i++) {
      sdc_gen_params_text(&j->g, i, origin, buf[i], sizeof buf[i]);
      texts[i] = buf[i];
    }
    req.latent = &lat;
    req.n_png_text = (size_t)j->d.N, req.png_text = texts;
    static const Sdcpb__Stage st[] = {SDCPB__STAGE__VAE};
    if (!err) err = sdc__route_and_send(j, &req, st, 1);
  } else {
    return;
  }
  for (int i = 0; i < 3; i++) free(owned[i]);
  if (err && err != SDC_EAGAIN) sdc__fail(j, "could not send: %s", sdc_errmsg(err));
}

/* --------------------------------------------------------------- replies */

static void sdc__append_route(sdc__job *j, const Sdcpb__StageReply *rep) {
  size_t len = strlen(j->route_log);
  for (size_t i = 0; i < rep->n_route_taken && len + 2 < sizeof j->route_log; i++)
    len += (size_t)snprintf(j->route_log + len, sizeof j->route_log - len, "%s%s", len ? (i ? ">" : " ") : "",
                            rep->route_taken[i]);
}

static void sdc__on_cancel_checked(redisAsyncContext *ac, void *r, void *priv);

static void sdc__after_step(sdc__job *j) {
  int64_t calls = sdc_scheduler_n_calls(j->d.sched), done = calls - sdc_denoise_calls_left(&j->d);
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)done);
  redisAsyncCommand(C.rc, NULL, NULL, "HSET %s %s %s", j->key, SDC_JOB_F_STEP, step);
  sdc__publish(j, SDC_JOB_RUNNING, NULL);
  /* a cancel asked for since the last step stops the job here */
  j->awaiting_redis = 1;
  redisAsyncCommand(C.rc, sdc__on_cancel_checked, j, "HGET %s %s", j->key, SDC_JOB_F_CANCEL);
}

static void sdc__broadcast_cancel(const char *job_id) {
  Sdcpb__Cancel c = SDCPB__CANCEL__INIT;
  c.job_id = (char *)job_id;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL;
  env.cancel = &c;
  for (int i = 0; i < C.reg.n; i++)
    if (C.reg.w[i].alive) sdc_zmq_send(C.router, C.reg.w[i].id, strlen(C.reg.w[i].id), &env, ZMQ_DONTWAIT);
}

static void sdc__on_cancel_checked(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc__job *j = priv;
  redisReply *rep = r;
  j->awaiting_redis = 0;
  if (rep && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "1") == 0) {
    sdc__broadcast_cancel(j->id);
    sdc__finish(j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  if (sdc_denoise_calls_left(&j->d) == 0) j->phase = SDC__J_VAE;
  sdc__issue(j);
}

static void sdc__on_images_stored(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc__job *j = priv;
  redisReply *rep = r;
  if (!rep || rep->type == REDIS_REPLY_ERROR) j->store_failed = 1;
  if (--j->storing_pending > 0) return;
  if (j->store_failed) {
    sdc__fail(j, "storing the images in Redis failed");
    return;
  }
  char n[16];
  snprintf(n, sizeof n, "%lld", (long long)j->d.N);
  redisAsyncCommand(C.rc, NULL, NULL, "HSET %s %s %s", j->key, SDC_JOB_F_NUM_IMAGES, n);
  sdc__finish(j, SDC_JOB_DONE, NULL);
}

static void sdc__on_reply(const Sdcpb__StageReply *rep) {
  sdc__job *j = C.jobs;
  while (j && !(j->req_id == rep->request_id && strcmp(j->id, rep->job_id) == 0)) j = j->next;
  if (!j || !j->n_route || j->phase == SDC__J_STORING) return; /* stale: re-issued or cancelled */
  /* the stage that answers must be the one this phase waits for */
  const Sdcpb__Stage want = j->phase == SDC__J_TEXT ? SDCPB__STAGE__TEXT
                            : j->phase == SDC__J_DENOISE ? SDCPB__STAGE__UNET_UP
                                                         : SDCPB__STAGE__VAE;
  if (rep->stage != want && !(rep->error && rep->error[0])) {
    sdc__log(j->id, "dropped a %s reply while waiting for %s", sdc_stage_name(rep->stage), sdc_stage_name(want));
    return;
  }
  for (int i = 0; i < j->n_route; i++) C.reg.w[j->route[i]].served++;
  sdc__release_route(j);
  if (rep->error && rep->error[0]) {
    snprintf(j->last_error, sizeof j->last_error, "%s", rep->error);
    if (++j->attempts >= SDC__MAX_ATTEMPTS) {
      sdc__fail(j, "%s (after %d attempts)", rep->error, j->attempts);
      return;
    }
    sdc__log(j->id, "attempt %d failed: %s; re-issuing", j->attempts, rep->error);
    sdc__issue(j);
    return;
  }
  j->attempts = 0;
  sdc__append_route(j, rep);
  int err = SDC_OK;
  if (j->phase == SDC__J_TEXT) {
    /* context = [uncond x N; cond x N], or cond x N without guidance */
    const int64_t P = j->g.guidance_scale > 1.0 ? 2 : 1, N = j->g.num_images;
    int64_t shape[3] = {P, -1, j->D}, n = 0;
    float *rows = malloc((size_t)(P * 1024 * j->D) * sizeof *rows);
    int nd;
    int64_t dims[SDC_MAX_DIMS];
    err = rows ? sdc_wire_tensor_check(rep->output, "context", &nd, dims) : SDC_ENOMEM;
    if (!err && (nd != 3 || dims[1] < 1 || dims[1] > 1024)) err = sdc_seterr(SDC_EPROTOCOL, "context: bad shape");
    if (!err) err = sdc_wire_tensor_get(rep->output, "context", 3, shape, rows, &n);
    if (!err) {
      j->L = dims[1];
      j->ctx = malloc((size_t)(P * N * j->L * j->D) * sizeof *j->ctx);
      if (!j->ctx) err = SDC_ENOMEM;
      for (int64_t p = 0; !err && p < P; p++)
        for (int64_t i = 0; i < N; i++)
          memcpy(j->ctx + (p * N + i) * j->L * j->D, rows + p * j->L * j->D, (size_t)(j->L * j->D) * sizeof *rows);
    }
    free(rows);
    if (!err) {
      j->phase = SDC__J_DENOISE;
      sdc__issue(j);
    }
  } else if (j->phase == SDC__J_DENOISE) {
    if (sdc_denoise_calls_left(&j->d) == 0) return; /* the move to VAE is made by the step's cancel check */
    const int64_t B = sdc_denoise_batch(&j->d);
    float *pred = j->in; /* the input is no longer needed: reuse its buffer */
    err = sdc_wire_tensor_get(rep->output, "prediction", 4, (int64_t[]){B, j->d.C, j->d.h, j->d.w}, pred, NULL);
    if (!err) err = sdc_denoise_step(&j->d, pred);
    if (!err) {
      C.steps_done++;
      sdc__after_step(j);
    }
  } else if (j->phase == SDC__J_VAE) {
    if ((int64_t)rep->n_images != j->d.N) {
      err = sdc_seterr(SDC_EPROTOCOL, "vae returned %zu images, expected %lld", rep->n_images, (long long)j->d.N);
    } else {
      j->phase = SDC__J_STORING;
      j->storing_pending = (int)rep->n_images;
      char ttl[32];
      snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)C.ttl_s);
      for (size_t i = 0; i < rep->n_images; i++) {
        char key[SDC_JOB_KEY_MAX];
        sdc_job_image_key(key, j->id, (int)i);
        const char *argv[] = {"SET", key, (const char *)rep->images[i].data, "EX", ttl};
        size_t lens[] = {3, strlen(key), rep->images[i].len, 2, strlen(ttl)};
        redisAsyncCommandArgv(C.rc, sdc__on_images_stored, j, 5, argv, lens);
      }
    }
  }
  if (err) sdc__fail(j, "%s", sdc_errmsg(err));
}

/* ---------------------------------------------------------------- claims */

static void sdc__start_job(const char *entry, const char *json, size_t n);

static void sdc__on_state_checked(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac;
  sdc__job *j = priv;
  redisReply *rep = r;
  if (!rep) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) {
    sdc__fail(j, "reading the job's state from Redis failed");
    return;
  }
  /* another entry already owns this id: leave that job alone */
  const redisReply *owner = rep->element[3];
  if (owner->type == REDIS_REPLY_STRING && strcmp(owner->str, j->entry) != 0) {
    char reason[300];
    snprintf(reason, sizeof reason, "duplicate job id '%s' (already used by entry %s)", j->id, owner->str);
    sdc__log(j->id, "%s", reason);
    sdc__dead_letter(j, reason);
    sdc__ack(j);
    sdc__job_free(j);
    sdc__claim_more();
    return;
  }
  /* re-delivered after it ended (a coordinator died between storing and acking) */
  if (rep->element[0]->type == REDIS_REPLY_STRING && sdc_job_state_final(sdc_job_state_parse(rep->element[0]->str))) {
    sdc__log(j->id, "already %s; acknowledging", rep->element[0]->str);
    sdc__ack(j);
    sdc__job_free(j);
    sdc__claim_more();
    return;
  }
  if (rep->element[1]->type == REDIS_REPLY_STRING && strcmp(rep->element[1]->str, "1") == 0) {
    sdc__finish(j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  /* resolve what the job left to the model */
  const sdc_model *m = &C.model;
  const int64_t native = m->unet.sample_size * sdc_vae_scale(&m->vae);
  j->g = (sdc_gen_params){.prompt = j->spec.prompt, .negative_prompt = j->spec.negative_prompt,
                          .width = j->spec.width ? j->spec.width : native, .height = j->spec.height ? j->spec.height : native,
                          .steps = j->spec.steps, .guidance_scale = j->spec.guidance_scale,
                          .seed = j->spec.seed, .scheduler = j->spec.scheduler[0] ? sdc_sched_parse_name(j->spec.scheduler) : -1,
                          .num_images = j->spec.num_images};
  /* a seed recorded by an earlier claim wins: a takeover makes the same image */
  if (!j->spec.has_seed && rep->element[2]->type == REDIS_REPLY_STRING)
    j->g.seed = strtoull(rep->element[2]->str, NULL, 10);
  else if (!j->spec.has_seed)
    j->g.seed = ((uint64_t)rand() << 31 ^ (uint64_t)rand() ^ sdc__now_ms()) & (SDC_SEED_LIMIT - 1);
  int err = sdc_gen_params_check(&j->g, C.max_pixels);
  if (!err) err = sdc_denoise_init(&j->d, &j->g, m->scheduler_json, m->unet.in_channels, sdc_vae_scale(&m->vae),
                                   m->vae.scaling_factor, NULL);
  if (err) {
    sdc__fail(j, "%s", sdc_errmsg(err));
    return;
  }
  j->denoise_ready = 1;
  const int64_t B = sdc_denoise_batch(&j->d);
  j->D = m->clip.hidden_size;
  j->in = malloc((size_t)(B * j->d.C * j->d.h * j->d.w) * sizeof *j->in);
  j->t = malloc((size_t)B * sizeof *j->t);
  if (!j->in || !j->t) {
    sdc__fail(j, "out of memory");
    return;
  }
  char now[32], seed[32], w[16], h[16], steps[16], nimg[16];
  snprintf(now, sizeof now, "%llu", (unsigned long long)sdc__now_ms());
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->g.seed);
  snprintf(w, sizeof w, "%lld", (long long)j->g.width);
  snprintf(h, sizeof h, "%lld", (long long)j->g.height);
  snprintf(steps, sizeof steps, "%lld", (long long)sdc_scheduler_n_calls(j->d.sched));
  snprintf(nimg, sizeof nimg, "%lld", (long long)j->g.num_images);
  const char *sched = j->g.scheduler >= 0 ? sdc_sched_name((sdc_sched_kind)j->g.scheduler) : "default";
  const char *argv[] = {"HSET", j->key, SDC_JOB_F_STATE, "running", SDC_JOB_F_STARTED_MS, now, SDC_JOB_F_SEED, seed,
                        SDC_JOB_F_WIDTH, w, SDC_JOB_F_HEIGHT, h, SDC_JOB_F_STEPS, steps, SDC_JOB_F_STEP, "0",
                        SDC_JOB_F_SCHEDULER, sched, SDC_JOB_F_COORDINATOR, C.id, SDC_JOB_F_ENTRY, j->entry};
  redisAsyncCommandArgv(C.rc, NULL, NULL, 22, argv, NULL);
  redisAsyncCommand(C.rc, NULL, NULL, "HINCRBY %s %s 1", j->key, SDC_JOB_F_ATTEMPTS);
  redisAsyncCommand(C.rc, NULL, NULL, "PERSIST %s", j->key); /* no expiry while it runs */
  sdc__publish(j, SDC_JOB_RUNNING, NULL);
  sdc__log(j->id, "running: %lldx%lld, %s calls, %s, seed %s", (long long)j->g.width, (long long)j->g.height, steps,
           sched, seed);
  j->started_ms = sdc__now_ms();
  j->phase = SDC__J_TEXT;
  sdc__issue(j);
}

/* The "id" of a job whose JSON was refused, so its failure lands under the id
 * the client chose. A scan of the first bytes, not a parse: the JSON may be
 * huge or broken. Leaves out untouched when there is no usable id. */
static void sdc__sniff_id(const char *json, size_t n, char *out, size_t cap) {
  const char *end = json + (n < 4096 ? n : 4096);
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

static void sdc__start_job(const char *entry, const char *json, size_t n) {
  for (sdc__job *o = C.jobs; o; o = o->next)
    if (strcmp(o->entry, entry) == 0) return; /* already ours (a touch or reclaim returned it) */
  sdc__job *j = calloc(1, sizeof *j);
  if (!j) return; /* stays pending; claimed again later */
  j->next = C.jobs, C.jobs = j, C.n_jobs++;
  snprintf(j->entry, sizeof j->entry, "%s", entry);
  if (json && (j->raw = malloc(n < 1024 ? n + 1 : 1025))) snprintf(j->raw, n < 1024 ? n + 1 : 1025, "%.*s", (int)(n < 1024 ? n : 1024), json);
  sdc_job_init(&j->spec);
  int err = json ? sdc_job_parse(&j->spec, json, n, entry) : sdc_seterr(SDC_EINVAL, "stream entry has no 'job' field");
  snprintf(j->id, sizeof j->id, "%s", j->spec.id[0] ? j->spec.id : entry);
  if (err && json) sdc__sniff_id(json, n, j->id, sizeof j->id);
  if (!sdc_job_id_valid(j->id)) snprintf(j->id, sizeof j->id, "%s", entry);
  sdc_job_key(j->key, SDC_JOB_KEY_FMT, j->id);
  if (err) {
    sdc__fail(j, "%s", sdc_errmsg(err));
    return;
  }
  j->phase = SDC__J_CHECKING;
  redisAsyncCommand(C.rc, sdc__on_state_checked, j, "HMGET %s %s %s %s %s", j->key, SDC_JOB_F_STATE, SDC_JOB_F_CANCEL,
                    SDC_JOB_F_SEED, SDC_JOB_F_ENTRY);
}

/* Entries of an XREADGROUP / XAUTOCLAIM reply: [[id, [field, value, ...]], ...]. */
static void sdc__take_entries(const redisReply *entries) {
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
      redisAsyncCommand(C.rc, NULL, NULL, "XACK %s %s %s", SDC_JOBS_STREAM, SDC_JOBS_GROUP, e->element[0]->str);
      continue;
    }
    sdc__start_job(e->element[0]->str, json, n);
  }
}

static void sdc__on_read(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac, (void)priv;
  C.reading = 0;
  redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_ARRAY)
    for (size_t s = 0; s < rep->elements; s++)
      if (rep->element[s]->type == REDIS_REPLY_ARRAY && rep->element[s]->elements == 2)
        sdc__take_entries(rep->element[s]->element[1]);
  if (rep && rep->type == REDIS_REPLY_ERROR) sdc__log(NULL, "XREADGROUP: %s", rep->str);
  sdc__claim_more();
}

static void sdc__claim_more(void) {
  if (C.reading || C.draining || C.n_jobs >= C.max_jobs || !C.rb) return;
  if (!sdc_registry_complete(&C.reg, SDC__ALL_STAGES)) return; /* the tick tries again */
  C.reading = 1;
  redisAsyncCommand(C.rb, sdc__on_read, NULL, "XREADGROUP GROUP %s %s COUNT %d BLOCK 1000 STREAMS %s >",
                    SDC_JOBS_GROUP, C.id, C.max_jobs - C.n_jobs, SDC_JOBS_STREAM);
}

static void sdc__on_autoclaim(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac, (void)priv;
  redisReply *rep = r;
  /* [next-cursor, [entries], (deleted ids)] */
  if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2) {
    if (rep->element[1]->elements) sdc__log(NULL, "took over %zu abandoned entries", rep->element[1]->elements);
    sdc__take_entries(rep->element[1]);
  }
}

/* ----------------------------------------------------------------- ticks */

static void sdc__on_tick(uv_timer_t *t) {
  (void)t;
  const uint64_t now = sdc__now_ms();
  int died[SDC_MAX_WORKERS];
  int n_died = sdc_registry_expire(&C.reg, now, SDC__DEAD_AFTER_MS, died);
  for (int i = 0; i < n_died; i++) sdc__log(NULL, "worker %s is dead (no heartbeat)", C.reg.w[died[i]].id);
  for (sdc__job *j = C.jobs, *next; j; j = next) {
    next = j->next;
    if (j->phase == SDC__J_STORING || j->phase == SDC__J_CHECKING || j->awaiting_redis) continue;
    int lost = 0;
    for (int i = 0; i < j->n_route; i++) lost |= !C.reg.w[j->route[i]].alive;
    if (j->n_route && (lost || now > j->issued_ms + C.step_timeout_ms)) {
      /* a replica died or the step timed out: the same step again elsewhere, same inputs */
      sdc__release_route(j);
      if (++j->attempts >= SDC__MAX_ATTEMPTS) {
        sdc__fail(j, "%s after %d attempts", lost ? "workers died" : "step timed out", j->attempts);
        continue;
      }
      sdc__log(j->id, "%s; re-issuing", lost ? "a worker on the route died" : "step timed out");
      if (j->phase == SDC__J_DENOISE) {
        /* the scheduler has not stepped: the model input is recomputed identically */
      }
    }
    if (!j->n_route) sdc__issue(j);
  }
  /* keep our pending entries ours; take over what dead coordinators left */
  if (now > C.last_touch_ms + SDC__TOUCH_MS && C.jobs) {
    C.last_touch_ms = now;
    for (sdc__job *j = C.jobs; j; j = j->next)
      redisAsyncCommand(C.rc, NULL, NULL, "XCLAIM %s %s %s 0 %s JUSTID", SDC_JOBS_STREAM, SDC_JOBS_GROUP, C.id, j->entry);
  }
  if (now > C.last_reclaim_ms + SDC__TOUCH_MS && !C.draining && C.n_jobs < C.max_jobs &&
      sdc_registry_complete(&C.reg, SDC__ALL_STAGES)) {
    C.last_reclaim_ms = now;
    redisAsyncCommand(C.rc, sdc__on_autoclaim, NULL, "XAUTOCLAIM %s %s %s %d 0-0 COUNT %d", SDC_JOBS_STREAM,
                      SDC_JOBS_GROUP, C.id, SDC__RECLAIM_IDLE_MS, C.max_jobs - C.n_jobs);
  }
  sdc__claim_more();
  if (C.draining && !C.jobs && !C.stopping) {
    C.stopping = 1;
    sdc__log(NULL, "drained: %llu done, %llu failed; exiting", (unsigned long long)C.jobs_done,
             (unsigned long long)C.jobs_failed);
    uv_stop(C.loop);
  }
}

/* ------------------------------------------------------------- ZeroMQ side */

static void sdc__on_register(const uint8_t *rid, size_t rid_n, const Sdcpb__Register *r) {
  Sdcpb__Welcome wel = SDCPB__WELCOME__INIT;
  wel.coordinator_id = C.id;
  wel.heartbeat_ms = SDC__BEAT_MS;
  char id[128];
  snprintf(id, sizeof id, "%.*s", (int)rid_n, (const char *)rid);
  unsigned stages = 0;
  for (size_t i = 0; i < r->n_stages; i++)
    if (r->stages[i] >= SDCPB__STAGE__TEXT && r->stages[i] <= SDCPB__STAGE__VAE) stages |= 1u << r->stages[i];
  char reason[256] = "";
  if (strcmp(r->model_fingerprint, C.fingerprint) != 0)
    snprintf(reason, sizeof reason, "model fingerprint %s differs from the coordinator's %s", r->model_fingerprint,
             C.fingerprint);
  else if (strcmp(id, r->worker_id) != 0)
    snprintf(reason, sizeof reason, "worker id '%s' differs from its socket identity '%s'", r->worker_id, id);
  else if (!stages || !r->data_endpoint[0])
    snprintf(reason, sizeof reason, "no stages or no data endpoint");
  /* a known worker registering again has restarted: what it held is lost, so
   * the steps routed through it are issued again (same inputs, same image) */
  int known = sdc_registry_find(&C.reg, id);
  if (!reason[0] && known >= 0)
    for (sdc__job *j = C.jobs; j; j = j->next)
      for (int k = 0; k < j->n_route; k++)
        if (j->route[k] == known) {
          sdc__log(j->id, "worker %s restarted with this step in flight; re-issuing", id);
          sdc__release_route(j);
          j->attempts++;
          break;
        }
  int i = reason[0] ? -1 : sdc_registry_upsert(&C.reg, id, r->data_endpoint, stages, sdc__now_ms());
  if (!reason[0] && i < 0) snprintf(reason, sizeof reason, "too many workers");
  if (i >= 0) {
    sdc_worker_info *w = &C.reg.w[i];
    if (w->push) zmq_close(w->push);
    w->push = zmq_socket(C.zctx, ZMQ_PUSH);
    sdc_zmq_configure(w->push);
    if (zmq_connect(w->push, w->endpoint) != 0) {
      snprintf(reason, sizeof reason, "cannot connect to %s", w->endpoint);
      zmq_close(w->push);
      w->push = NULL, w->alive = 0;
    } else {
      sdc__log(NULL, "worker %s registered: stages 0x%x at %s", id, stages, w->endpoint);
    }
  }
  wel.accepted = !reason[0];
  wel.reason = reason;
  if (reason[0]) sdc__log(NULL, "refused worker %s: %s", id, reason);
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_WELCOME;
  env.welcome = &wel;
  sdc_zmq_send(C.router, rid, rid_n, &env, ZMQ_DONTWAIT);
}

static void sdc__drain_router(void) {
  uint8_t rid[256];
  size_t rid_n;
  Sdcpb__Envelope *env;
  int err;
  while ((err = sdc_zmq_recv(C.router, &env, rid, sizeof rid, &rid_n)) != SDC_EAGAIN) {
    if (err == SDC_EPROTOCOL) continue; /* dropped and counted */
    if (err) break;                    /* the socket itself failed */
    if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER) {
      sdc__on_register(rid, rid_n, env->register_);
    } else if (env->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT) {
      int i = sdc_registry_find(&C.reg, env->heartbeat->worker_id);
      if (i < 0 || !C.reg.w[i].alive) {
        /* unknown (we restarted, or declared it dead): ask it to register again */
        Sdcpb__Register ask = SDCPB__REGISTER__INIT;
        Sdcpb__Envelope e2 = SDCPB__ENVELOPE__INIT;
        e2.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
        e2.register_ = &ask;
        ask.worker_id = "";
        ask.model_fingerprint = "";
        ask.data_endpoint = "";
        sdc_zmq_send(C.router, rid, rid_n, &e2, ZMQ_DONTWAIT);
      } else {
        C.reg.w[i].last_seen_ms = sdc__now_ms();
        C.reg.w[i].draining = env->heartbeat->draining;
      }
    } else if (env->body_case == SDCPB__ENVELOPE__BODY_REPLY) {
      sdc__on_reply(env->reply);
    }
    sdc_wire_free(env);
  }
}

static void sdc__on_poll(uv_poll_t *h, int status, int events) {
  (void)h, (void)status, (void)events;
  sdc__drain_router();
}

/* ZMQ_FD is edge-triggered and a send can swallow the edge of an arrival:
 * before the loop sleeps, read whatever the socket holds. */
static void sdc__on_prepare(uv_prepare_t *p) {
  (void)p;
  sdc__drain_router();
}

static void sdc__on_signal(uv_signal_t *s, int signum) {
  (void)s;
  if (C.draining) return;
  C.draining = 1;
  sdc__log(NULL, "signal %d: draining %d jobs in flight", signum, C.n_jobs);
}

/* ------------------------------------------------------------------ main */

static int sdc__parse_redis_url(const char *url) {
  C.redis_port = 6379, C.redis_db = 0;
  const char *p = url;
  if (strncmp(p, "redis://", 8) == 0) p += 8;
  const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
  size_t host_len = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
  if (host_len == 0 || host_len >= sizeof C.redis_host) return -1;
  memcpy(C.redis_host, p, host_len);
  C.redis_host[host_len] = 0;
  if (colon) {
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || v < 1 || v > 65535 || (*end && *end != '/')) return -1;
    C.redis_port = (int)v;
  }
  if (slash) C.redis_db = atoi(slash + 1);
  return 0;
}

static void sdc__on_redis_connect(const redisAsyncContext *ac, int status) {
  if (status != REDIS_OK) {
    sdc__log(NULL, "redis %s:%d: %s", C.redis_host, C.redis_port, ac->errstr);
    uv_stop(C.loop);
  }
}

static void sdc__on_redis_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  sdc__log(NULL, "redis connection lost: %s; exiting (pending jobs stay in the stream)", ac->errstr);
  if (ac == C.rc) C.rc = NULL;
  if (ac == C.rb) C.rb = NULL;
  uv_stop(C.loop);
}

static redisAsyncContext *sdc__redis_connect(void) {
  redisAsyncContext *ac = redisAsyncConnect(C.redis_host, C.redis_port);
  if (!ac || ac->err) {
    fprintf(stderr, "sdc-coordinator: redis %s:%d: %s\n", C.redis_host, C.redis_port, ac ? ac->errstr : "out of memory");
    return NULL;
  }
  redisLibuvAttach(ac, C.loop);
  redisAsyncSetConnectCallback(ac, sdc__on_redis_connect);
  redisAsyncSetDisconnectCallback(ac, sdc__on_redis_disconnect);
  if (C.redis_db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", C.redis_db);
  return ac;
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc-coordinator --model PATH [--config DIR] [options]\n"
          "  --redis URL           redis://HOST:PORT[/DB] (default redis://127.0.0.1:6379)\n"
          "  --bind URL            control endpoint workers connect to (default tcp://127.0.0.1:5555)\n"
          "  --max-jobs N          jobs in flight at once (default 8)\n"
          "  --step-timeout-ms N   re-issue a step not answered in time (default 600000)\n"
          "  --ttl S               results expire after S seconds (default %d)\n"
          "  --wire f32|f16|bf16   dtype of tensors on the wire (default f32: pixels identical to sdc generate)\n"
          "  --max-pixels N        refuse jobs with width*height above N (default 4194304)\n"
          "  --id NAME             consumer name (default host-pid)\n"
          "SIGTERM/SIGINT drain: no new claims, in-flight jobs finish, then exit.\n",
          SDC_DEFAULT_RESULT_TTL_S);
}

int main(int argc, char **argv) {
  const char *model = NULL, *config = NULL, *redis = "redis://127.0.0.1:6379";
  snprintf(C.bind, sizeof C.bind, "tcp://127.0.0.1:5555");
  C.max_jobs = 8, C.step_timeout_ms = 600000, C.ttl_s = SDC_DEFAULT_RESULT_TTL_S, C.wire_dtype = SDCPB__DTYPE__F32;
  C.max_pixels = 2048 * 2048;
  char host[64] = "coordinator";
  gethostname(host, sizeof host - 1);
  snprintf(C.id, sizeof C.id, "%s-%d", host, (int)getpid());
  enum { O_TIMEOUT = 256, O_TTL, O_WIRE, O_MAXPX };
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},         {"config", required_argument, 0, 'c'},
      {"redis", required_argument, 0, 'r'},         {"bind", required_argument, 0, 'b'},
      {"max-jobs", required_argument, 0, 'j'},      {"step-timeout-ms", required_argument, 0, O_TIMEOUT},
      {"ttl", required_argument, 0, O_TTL},         {"wire", required_argument, 0, O_WIRE},
      {"max-pixels", required_argument, 0, O_MAXPX}, {"id", required_argument, 0, 'i'},
      {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "m:c:r:b:j:i:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'c': config = optarg; break;
      case 'r': redis = optarg; break;
      case 'b': snprintf(C.bind, sizeof C.bind, "%s", optarg); break;
      case 'j': C.max_jobs = atoi(optarg); break;
      case O_TIMEOUT: C.step_timeout_ms = strtoull(optarg, NULL, 10); break;
      case O_TTL: C.ttl_s = strtoull(optarg, NULL, 10); break;
      case O_WIRE:
        C.wire_dtype = strcmp(optarg, "f16") == 0 ? SDCPB__DTYPE__F16 : strcmp(optarg, "bf16") == 0 ? SDCPB__DTYPE__BF16
                       : strcmp(optarg, "f32") == 0 ? SDCPB__DTYPE__F32 : SDCPB__DTYPE__DTYPE_INVALID;
        break;
      case O_MAXPX: C.max_pixels = atoll(optarg); break;
      case 'i': snprintf(C.id, sizeof C.id, "%s", optarg); break;
      case 'h': sdc__usage(stdout); return 0;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (!model || optind != argc || C.max_jobs < 1 || C.max_jobs > 1024 || C.step_timeout_ms < 100 ||
      C.wire_dtype == SDCPB__DTYPE__DTYPE_INVALID || C.ttl_s < 1 || C.max_pixels < 64) {
    sdc__usage(stderr);
    return 2;
  }
  if (sdc__parse_redis_url(redis) != 0) {
    fprintf(stderr, "sdc-coordinator: --redis '%s': expected redis://HOST:PORT[/DB]\n", redis);
    return 2;
  }
  int err = sdc_model_open(&C.model, model, config);
  if (err) {
    fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(err));
    return 2;
  }
  sdc_model_fingerprint(&C.model, C.fingerprint, sizeof C.fingerprint); /* what workers must match */
  srand((unsigned)(sdc__now_ms() ^ (uint64_t)getpid()));
  C.loop = uv_default_loop();
  C.zctx = zmq_ctx_new();
  C.router = zmq_socket(C.zctx, ZMQ_ROUTER);
  sdc_zmq_configure(C.router);
  int one = 1;
  zmq_setsockopt(C.router, ZMQ_ROUTER_HANDOVER, &one, sizeof one); /* a restarted worker keeps its id */
  if (zmq_bind(C.router, C.bind) != 0) {
    fprintf(stderr, "sdc-coordinator: --bind %s: %s\n", C.bind, zmq_strerror(errno));
    return 2;
  }
  if (!(C.rc = sdc__redis_connect()) || !(C.rb = sdc__redis_connect())) return 2;
  redisAsyncCommand(C.rc, NULL, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", SDC_JOBS_STREAM, SDC_JOBS_GROUP);
  int fd;
  size_t fl = sizeof fd;
  zmq_getsockopt(C.router, ZMQ_FD, &fd, &fl);
  uv_poll_init(C.loop, &C.poll, fd);
  uv_poll_start(&C.poll, UV_READABLE, sdc__on_poll);
  uv_prepare_init(C.loop, &C.prep);
  uv_prepare_start(&C.prep, sdc__on_prepare);
  uv_timer_init(C.loop, &C.tick);
  uv_timer_start(&C.tick, sdc__on_tick, SDC__TICK_MS, SDC__TICK_MS);
  uv_signal_init(C.loop, &C.sig_term);
  uv_signal_init(C.loop, &C.sig_int);
  uv_signal_start(&C.sig_term, sdc__on_signal, SIGTERM);
  uv_signal_start(&C.sig_int, sdc__on_signal, SIGINT);
  sdc__log(NULL, "listening on %s, redis %s:%d, model %s (fingerprint %s), %d jobs at once", C.bind, C.redis_host,
           C.redis_port, model, C.fingerprint, C.max_jobs);
  uv_run(C.loop, UV_RUN_DEFAULT);
  if (C.rc) redisAsyncDisconnect(C.rc);
  if (C.rb) redisAsyncDisconnect(C.rb);
  for (int i = 0; i < C.reg.n; i++)
    if (C.reg.w[i].push) zmq_close(C.reg.w[i].push);
  zmq_close(C.router);
  zmq_ctx_term(C.zctx);
  while (C.jobs) sdc__job_free(C.jobs);
  sdc_model_close(&C.model);
  return 0;
}
