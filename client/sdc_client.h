/* sdc_client.h - a small synchronous C client of the Redis job contract (docs/jobs.md), over hiredis. */
#ifndef SDC_CLIENT_H
#define SDC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"

/* One Redis connection (plus a second one inside sdc_client_wait). Not
 * thread-safe: use one client per thread. */
typedef struct sdc_client sdc_client;

/* Connects to url = redis://[[user]:password@]host[:port][/db] (port 6379,
 * db 0 by default; host may be [v6addr]), authenticates and selects the db.
 * Commands time out after 10 s. On success *c is a client the caller frees
 * with sdc_client_free(); on error *c is NULL and the message names the URL
 * (SDC_EINVAL: bad URL; SDC_EIO: unreachable; SDC_EPROTOCOL: refused AUTH/SELECT). */
int sdc_client_connect(sdc_client **c /* OUT */, const char *url);
/* Closes the connection. NULL is fine. */
void sdc_client_free(sdc_client *c);

/* Validates job and enqueues it atomically (one Lua script): XADD sdc:jobs *
 * job <json>, and HSETNX on sdc:job:<id> of state=queued, created_ms (the
 * entry's server time) and entry. HSETNX, because whatever a coordinator has
 * written already must win. The id is job->id when set -- then an existing
 * hash for it is refused (SDC_EINVAL "already exists") and nothing is queued --
 * else the stream entry id. The id goes to id_out (n >= SDC_MAX_JOB_ID + 1,
 * else SDC_EINVAL before anything is sent). */
int sdc_client_submit(sdc_client *c, const sdc_job *job, char *id_out /* OUT */, size_t n);

/* Stores image bytes (an init image or mask, PNG or JPEG) under a new key "img:<random hex>" with a TTL of
 * ttl_s seconds (SET NX EX: never overwrites), for a job to name in init_image / mask. The key goes to
 * key_out (n >= 40). Over SDC_MAX_INPUT_IMAGE_BYTES: SDC_EINVAL before anything is sent. */
int sdc_client_put_image(sdc_client *c, const void *data, size_t len, int64_t ttl_s, char *key_out /* OUT */, size_t n);

/* A job's hash, decoded. Fields absent from the hash are -1 / "" / 0. */
typedef struct {
  sdc_job_state state; /* SDC_JOB_UNKNOWN: no state field yet */
  int64_t step, steps; /* model calls done / in total */
  int64_t num_images;
  int has_seed;
  uint64_t seed;
  int64_t width, height;
  int64_t created_ms, started_ms, finished_ms; /* ms since the epoch */
  int cancel_requested;
  char error[1024]; /* cut at the buffer size */
  char route[1024];
  size_t n_fields; /* the raw hash: fields[2i] name, fields[2i+1] value */
  char **fields;   /* heap, owned; free with sdc_job_status_free() */
} sdc_job_status;

/* Frees what st owns and zeroes it. Safe on a zeroed status. */
void sdc_job_status_free(sdc_job_status *st);

/* HGETALL sdc:job:<id> into *out (zeroed first; free it with
 * sdc_job_status_free() even on error). A job without a hash whose id is
 * still an entry of sdc:jobs is reported queued with no fields; otherwise a
 * missing hash is SDC_EMISSING ("no such job"). */
int sdc_client_status(sdc_client *c, const char *id, sdc_job_status *out /* OUT */);

/* Called from sdc_client_wait whenever state, step or steps changed. st is
 * valid only during the call. */
typedef void (*sdc_client_progress_fn)(void *ctx, const sdc_job_status *st);

/* Blocks until the job is done, failed or cancelled: SUBSCRIBEs to
 * sdc:job:<id>:events on a second connection and also reads the hash every
 * 500 ms, so a missed event (pub/sub is fire-and-forget) only costs latency.
 * The hash is the truth; events only make waiting faster and feed progress.
 * timeout_ms < 0 waits forever. Returns SDC_OK once the job ended -- whatever
 * way: check out->state -- SDC_EAGAIN on timeout, SDC_EMISSING for an unknown
 * job, SDC_EIO when Redis stayed unreachable for 30 s. out (may be NULL) gets
 * the last status read; free it with sdc_job_status_free(). */
int sdc_client_wait(sdc_client *c, const char *id, int64_t timeout_ms, sdc_client_progress_fn progress, void *ctx,
                    sdc_job_status *out /* OUT, may be NULL */);

/* GET sdc:job:<id>:image:<i>: the PNG bytes in *png (heap, caller frees), *n
 * bytes. SDC_EMISSING when the key does not exist (not produced, or expired). */
int sdc_client_fetch_image(sdc_client *c, const char *id, int i, uint8_t **png /* OUT */, size_t *n /* OUT */);

/* Asks for cancellation, atomically (one Lua script): unless the job already
 * ended, HSET sdc:job:<id> cancel 1 and PUBLISH sdc:job:<id>:control cancel.
 * A coordinator honours the flag at claim and between steps; a running job
 * ends as cancelled. A job without a hash (not claimed yet, or unknown) gets
 * a hash with just the flag, expiring after SDC_DEFAULT_RESULT_TTL_S. *state (may
 * be NULL) gets the state seen before: a final state means nothing changed. */
int sdc_client_cancel(sdc_client *c, const char *id, sdc_job_state *state /* OUT, may be NULL */);

#endif
