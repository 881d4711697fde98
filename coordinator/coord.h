/* coord.h - sdc-coordinator's state and the calls its modules make across each other.
 *
 * The coordinator claims jobs from Redis, owns each job's latent, scheduler and RNG, routes every step
 * through one replica of each UNet shard, stores results, and acks only after storing. One libuv loop
 * thread runs everything; the state below is passed to every function (libuv handles reach it through
 * handle->data, hiredis callbacks through privdata or ac->data).
 *
 * Modules:
 *   main.c     - command line, start-up, the tick timer, signals (drain), shutdown
 *   intake.c   - Redis: connections (AUTH, SELECT), XREADGROUP claims, XAUTOCLAIM takeover, touching our
 *                pending entries, parsing entries into jobs, the job hash, events, images, ack, dead letters,
 *                cancel checks
 *   jobs.c     - one job's state machine: phases, the denoising loop (sdc_denoise), failures, completion
 *   route.c    - ZeroMQ ROUTER: stage requests, their replies, timeouts and re-issue, worker registration
 *                and heartbeats
 *   registry.c - the worker table: liveness and the least-loaded replica per stage
 *   telemetry.c - --http: the metrics of docs/operations.md, readiness, the queue poll
 */
#ifndef SDC_COORD_H
#define SDC_COORD_H

#include <hiredis/async.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "curve.h"
#include "denoise.h"
#include "http.h"
#include "job.h"
#include "metrics.h"
#include "node.h"
#include "model.h"
#include "redis_url.h"
#include "registry.h"
#include "sdc.pb-c.h"
#include "sdc_limits.h"
#include "stage.h"
#include "wire.h"

typedef struct sdc_coord sdc_coord;

/* CHECKING: reading the hash (state, cancel, seed, owner) and the image keys; ENCODE (img2img, inpainting):
 * the VAE worker encodes the images; TEXT, DENOISE, VAE: a stage request is issued or about to be; STORING:
 * the outcome is being written, then the entry is acked. */
typedef enum {
  SDC_COORD_CHECKING,
  SDC_COORD_ENCODE,
  SDC_COORD_TEXT,
  SDC_COORD_DENOISE,
  SDC_COORD_VAE,
  SDC_COORD_STORING
} sdc_coord_phase;

#define SDC_COORD_MAX_HOPS 3 /* stages in one request: down, mid, up */

typedef struct sdc_coord_job {
  struct sdc_coord_job *next;
  sdc_coord *c; /* the coordinator, for callbacks that get only the job */
  char id[SDC_MAX_JOB_ID + 1], entry[64], key[SDC_JOB_KEY_MAX];
  sdc_job spec;
  sdc_gen_params g;
  sdc_denoise d;
  int denoise_ready;
  sdc_coord_phase phase;
  char sched_name[SDC_MAX_SCHEDULER_NAME + 1]; /* resolved: the job's or the model's own */
  sdc_text_plan plan;                          /* the texts the text stage encodes (pointers into spec) */
  float *ctx, *in, *t;                         /* context (B,L,D), model input (B,C,h,w), timesteps (B) */
  float *pooled, *time_ids;                    /* SDXL: text_embeds (B,P) and time ids (B,SDC_TIME_IDS); else NULL */
  int64_t L, D, P;
  /* the request in flight: n_route > 0 while one is */
  uint64_t req_id;
  int64_t issued_ms;  /* monotonic */
  uint64_t issued_ns; /* monotonic, for sdc_step_latency_seconds */
  uint64_t claimed_ns; /* monotonic: when the entry was claimed, for sdc_job_duration_seconds */
  int attempts, route[SDC_COORD_MAX_HOPS], n_route;
  sdc_stage route_stage[SDC_COORD_MAX_HOPS];
  /* each stage's distinct workers, comma-separated, for the hash's route field */
  char workers[SDC_STAGE_END][SDC_COORD_ROUTE_STAGE_BYTES];
  char last_error[512]; /* the message of the failure that ends (or retries) the job */
  char *raw;            /* the first SDC_DEAD_LETTER_JSON_BYTES of the job's JSON, for the dead-letter stream */
  int awaiting_redis; /* a step's cancel check is in flight: nothing to issue until it answers */
  int left;           /* drain timed out: left pending in the stream for another coordinator; inert */
  /* cancel while a step runs: the flag is read every SDC_COORD_CANCEL_POLL_MS, and once before a failed
   * or lost step is issued again (a cancelled job's step is never re-issued) */
  int cancel_poll_pending, recheck_cancel;
  int64_t cancel_polled_ms; /* monotonic */
  int64_t deadline_ms;      /* monotonic: past it the job fails (--job-timeout-ms); 0 until it runs */
  uint64_t timeout_ms;      /* the deadline's length: --job-timeout-ms, or the job's shorter timeout_ms */
  uint64_t pixel_images;    /* width*height*num_images: routed only to workers whose memory takes it */
  int64_t retry_at_ms;      /* monotonic: a failed try is issued again no sooner (SDC_COORD_RETRY_BACKOFF_MS) */
  /* fencing (docs/jobs.md): the epoch our claim got; every write is checked against it and our id */
  char epoch[24];
  int parse_failed;  /* the JSON was refused: the claim is strict and the job fails once claimed */
  int redis_pending; /* commands in flight whose callbacks name this job: freed only when none is */
  int dropped;       /* unlinked (fenced out, Redis lost, or ended): freed when redis_pending reaches 0 */
  /* img2img / inpainting: the init image [0] and mask [1] bytes (fetched from their keys: ours to free; or
   * the job's inline bytes), kept for a re-issued encode; the conditioning the VAE worker answered */
  uint8_t *img[2];
  size_t n_img[2];
  int img_owned[2];
  int need_init;
  sdc_image_cond cond;
} sdc_coord_job;

/* What /readyz says; the loop thread stores it (with the stages that lack a worker), the HTTP thread reads. */
typedef enum { SDC_COORD_READY, SDC_COORD_NO_REDIS, SDC_COORD_NO_WORKERS, SDC_COORD_DRAINING } sdc_coord_readiness;

/* The coordinator's metrics (docs/operations.md). node.reg is NULL without --http; updates on NULL metrics do
 * nothing, so call sites need no check. */
typedef struct {
  sdc_node_metrics node; /* what workers serve too: links, dropped frames, sdc_ready, process_* */
  sdc_metric *jobs, *in_flight, *pending, *lag, *duration, *queue_wait, *step_latency, *reissued, *workers,
      *outstanding;
  atomic_int readiness;     /* sdc_coord_readiness */
  atomic_uint missing;      /* SDC_COORD_NO_WORKERS: bit (1 << stage) per stage without a live worker */
  int64_t poll_sent_ms, poll_answered_ms; /* monotonic; the queue poll, which also proves Redis answers */
  int poll_in_flight;
  long long pending_entries, stream_len; /* XPENDING's count and XLEN, kept until XINFO GROUPS answers */
} sdc_coord_telemetry;

struct sdc_coord {
  uv_loop_t *loop;
  void *zctx, *router;
  uv_poll_t poll;
  uv_prepare_t prep;
  uv_timer_t tick;
  uv_signal_t sig_term, sig_int;
  redisAsyncContext *rc, *rb; /* commands; blocking reads */
  sdc_redis_url redis;
  int redis_ready;  /* connections whose AUTH/SELECT were answered */
  uv_timer_t redis_retry;   /* the reconnect after a lost or refused Redis */
  int redis_retrying;       /* an outage: both connections are closed and the retry timer runs */
  int redis_was_up;         /* connected at least once: a later connect is a reconnect */
  int64_t redis_ping_sent_ms; /* monotonic: the liveness PING in flight since (0: none) */
  int64_t redis_backoff_ms, redis_connect_ms, redis_lost_ms; /* monotonic; the current delay, last try, outage start */
  int closing;      /* main is disconnecting: a lost connection is expected */
  int exit_code;
  char id[96], bind[256];
  sdc_model model;
  char fingerprint[32];
  sdc_registry reg;
  int64_t heartbeat_ms, dead_after_ms;
  sdc_coord_job *jobs;
  int n_jobs, max_jobs, reading, draining, stopping;
  int64_t drain_start_ms, drain_timeout_ms; /* monotonic; --drain-timeout-ms */
  int64_t reclaim_idle_ms;                  /* --reclaim-idle-ms: XAUTOCLAIM's min idle time */
  uint64_t next_req_id, step_timeout_ms, ttl_s, job_timeout_ms;
  int64_t last_touch_ms, last_reclaim_ms; /* monotonic */
  uint64_t jobs_done, jobs_failed, steps_done;
  Sdcpb__DType wire_dtype;
  int64_t max_pixels;
  sdc_coord_telemetry tm;
  /* --curve-key/--curve-authorized: the ROUTER is a CURVE server, the ZAP handler admits authorized keys
   * only, and the PUSH to each worker is a CURVE client of the key it registered with */
  sdc_curve curve;
  uv_poll_t zap_poll;
  char precision[8]; /* --precision: fed into the fingerprint workers must match */
};

/* ---- intake.c: Redis ---- */

/* Opens the two connections to c->redis (AUTH, SELECT, PING first on each). A refused, failed or lost
 * connection is never fatal: it is logged ("redis HOST:PORT: why; retrying in N ms"), every job in
 * memory is dropped (its entry stays pending), and both are reopened with exponential backoff
 * (SDC_REDIS_RETRY_MIN_MS..SDC_REDIS_RETRY_MAX_MS); once both answer, our own pending entries are
 * re-claimed at once (XREADGROUP ... 0) and re-run from their recorded seed. */
void sdc_coord_redis_start(sdc_coord *c);
/* Reads more entries (XREADGROUP) when there is room, workers for every stage, and no read in flight. */
void sdc_coord_claim_more(sdc_coord *c);
/* Touches our pending entries and takes over abandoned ones, each at its own period. */
void sdc_coord_intake_tick(sdc_coord *c, int64_t now_ms);
/* Drain timed out: leaves job j pending in the stream (never acked) and marks it idle for
 * SDC_COORD_MAX_RECLAIM_IDLE_MS, so the next XAUTOCLAIM of any coordinator takes it over; j becomes
 * inert (j->left) and its request in flight is forgotten. Logs the job and its step. */
void sdc_coord_leave(sdc_coord *c, sdc_coord_job *j);
/* Draining with nothing left to finish: once Redis has applied every write queued so far (acks,
 * hand-overs), stops the loop. */
void sdc_coord_exit_after_redis(sdc_coord *c);
/* Reads job j's cancel flag (HGET); cancelled: the step in flight is stopped on every worker and the job
 * ends cancelled; not cancelled and j->recheck_cancel: the step is issued again. */
void sdc_coord_poll_cancel(sdc_coord *c, sdc_coord_job *j);
/* Writes the claim to the hash: state running, resolved parameters, attempts; publishes the event
 * (one fenced write: see docs/jobs.md, Fencing). */
void sdc_coord_store_running(sdc_coord *c, sdc_coord_job *j);
/* Writes step, publishes progress and asks Redis whether the job was cancelled; the answer goes to
 * sdc_coord_job_cancel_checked(). */
void sdc_coord_store_step(sdc_coord *c, sdc_coord_job *j);
/* Stores the PNGs with the result TTL and num_images (one fenced write); then the job is done (or failed
 * when Redis refused the write). */
void sdc_coord_store_images(sdc_coord *c, sdc_coord_job *j, const ProtobufCBinaryData *images, size_t n);
/* Writes the final state (error, route), the TTL, a dead letter for a failure, the event and the ack
 * (XACK, XDEL) in one fenced write; once Redis answers, frees the job. Nothing lands when the job is no
 * longer ours or already final. */
void sdc_coord_store_final(sdc_coord *c, sdc_coord_job *j, sdc_job_state st, const char *error);

/* Reads the Redis keys job j names for its init image and mask (one script: missing, not a string or over
 * SDC_MAX_INPUT_IMAGE_BYTES is an error naming the key); then calls sdc_coord_job_images(). */
void sdc_coord_fetch_images(sdc_coord *c, sdc_coord_job *j);

/* ---- jobs.c: the state machine ---- */

/* What the served model takes beyond SD 1.x's conditioning, from its fields (the coordinator may not use
 * stages/pipeline's sdc_text_caps; the two must agree). */
sdc_model_caps sdc_coord_model_caps(const sdc_model *m);

/* The image keys were read: why is NULL and j->img holds the bytes, or why says what was wrong (the job
 * fails with it). */
void sdc_coord_job_images(sdc_coord *c, sdc_coord_job *j, const char *why);

/* A job's hash was read: `recorded_seed` is the seed an earlier claim chose (NULL: none). Resolves the
 * parameters, starts the denoising loop and issues the text request; fails the job on a bad request. */
void sdc_coord_job_run(sdc_coord *c, sdc_coord_job *j, const char *recorded_seed);
/* The successful reply to the job's request in flight: text -> denoise -> vae -> storing. */
void sdc_coord_job_on_output(sdc_coord *c, sdc_coord_job *j, const Sdcpb__StageReply *rep);
/* The answer to a step's cancel check: ends the job cancelled, or issues the next step (or the VAE). */
void sdc_coord_job_cancel_checked(sdc_coord *c, sdc_coord_job *j, int cancelled);
/* Counts a failed try of the request in flight (`why` is copied into last_error first); fails the job
 * after SDC_COORD_MAX_ATTEMPTS, else returns 0 and the step is issued again. Returns 1 when it failed. */
int sdc_coord_job_retry(sdc_coord *c, sdc_coord_job *j, const char *why);
/* Ends the job failed with message `why` (copied before anything else runs). */
void sdc_coord_job_fail(sdc_coord *c, sdc_coord_job *j, const char *why);
/* Ends the job with a final state; error is NULL unless failed. */
void sdc_coord_job_finish(sdc_coord *c, sdc_coord_job *j, sdc_job_state st, const char *error);
/* Unlinks and frees the job. */
void sdc_coord_job_free(sdc_coord *c, sdc_coord_job *j);
/* The hash's route field, e.g. "text=w1 down=w3,w7 mid=w2 up=w4 vae=w5". */
void sdc_coord_job_route_text(const sdc_coord_job *j, char *out, size_t n);
/* One log line for job j, with its step while it denoises. */
void sdc_coord_job_log(const sdc_coord_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- route.c: ZeroMQ ---- */

/* Sends the request of j's phase to one replica per stage, unless one is in flight or a stage has no
 * replica now (the tick tries again). A send failure fails the job. */
void sdc_coord_issue(sdc_coord *c, sdc_coord_job *j);
/* Forgets j's request in flight: its workers' outstanding counts drop. */
void sdc_coord_release_route(sdc_coord *c, sdc_coord_job *j);
/* Tells every live worker to drop what it holds of job_id. */
void sdc_coord_broadcast_cancel(sdc_coord *c, const char *job_id);
/* Expires silent workers, re-issues steps whose workers died or whose time ran out, issues what waits. */
void sdc_coord_route_tick(sdc_coord *c, int64_t now_ms);
/* Tells every live worker we no longer know it (an empty Register, as for a worker we expired): a drained
 * coordinator's goodbye. Workers register with the next coordinator; a draining one knows that nothing
 * of ours can still reach it. */
void sdc_coord_forget_workers(sdc_coord *c);
/* Reads every message the ROUTER holds: registrations, heartbeats, replies. */
void sdc_coord_drain_router(sdc_coord *c);

/* ---- telemetry.c: --http ---- */

/* Registers the metrics of docs/operations.md and serves them on addr_port (HTTP thread). 0, or an error
 * whose message names addr_port or the metric. */
int sdc_coord_telemetry_start(sdc_coord *c, const char *addr_port);
/* Stops the server, then frees the registry; fine without --http. */
void sdc_coord_telemetry_stop(sdc_coord *c);
/* On the tick: readiness, the worker gauges, and every SDC_COORD_QUEUE_POLL_MS the queue poll. */
void sdc_coord_telemetry_tick(sdc_coord *c, int64_t now_ms);

#endif
