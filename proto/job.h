/* job.h - the job contract: the JSON a client enqueues, its limits, and the Redis names of a job's state. */
#ifndef SDC_JOB_H
#define SDC_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "sdc_limits.h"

/* ---------------------------------------------------------- Redis names
 * docs/jobs.md is the contract in prose; these are its names in code. */

#define SDC_JOBS_STREAM "sdc:jobs"                  /* XADD sdc:jobs * job <json> */
#define SDC_JOBS_GROUP "sdc-coordinators"           /* consumer group of the coordinators */
#define SDC_JOBS_DEAD_STREAM "sdc:jobs:dead"        /* entries that kept failing, or could not be parsed */
#define SDC_JOBS_ENTRY_FIELD "job"                  /* the stream entry field holding the JSON */
#define SDC_JOB_KEY_FMT "sdc:job:%s"                /* hash: the job's state */
#define SDC_JOB_IMAGE_KEY_FMT "sdc:job:%s:image:%d" /* string: PNG bytes of image i (0-based) */
#define SDC_JOB_EVENTS_FMT "sdc:job:%s:events"      /* pub/sub: {"state":..,"step":n,"steps":n} */
#define SDC_JOB_CONTROL_FMT "sdc:job:%s:control"    /* pub/sub: "cancel" */
/* Big enough for any of the keys above with a valid id. */
#define SDC_JOB_KEY_MAX 192

/* Fields of the job hash (docs/jobs.md says who writes which). */
#define SDC_JOB_F_STATE "state"           /* queued | running | done | failed | cancelled */
#define SDC_JOB_F_ENTRY "entry"           /* stream entry id that carries the job */
#define SDC_JOB_F_CREATED_MS "created_ms" /* ms since the Unix epoch, for all *_ms */
#define SDC_JOB_F_STARTED_MS "started_ms"
#define SDC_JOB_F_FINISHED_MS "finished_ms"
#define SDC_JOB_F_STEP "step"   /* model calls done */
#define SDC_JOB_F_STEPS "steps" /* model calls in the whole job */
#define SDC_JOB_F_SEED "seed"   /* the seed used (chosen at claim when the job had none) */
#define SDC_JOB_F_WIDTH "width" /* resolved size */
#define SDC_JOB_F_HEIGHT "height"
#define SDC_JOB_F_SCHEDULER "scheduler"     /* resolved scheduler name */
#define SDC_JOB_F_NUM_IMAGES "num_images"   /* images stored under the image keys once done */
#define SDC_JOB_F_ERROR "error"             /* one line, when failed */
#define SDC_JOB_F_ROUTE "route"             /* workers the job went through */
#define SDC_JOB_F_COORDINATOR "coordinator" /* consumer name of the coordinator running it */
#define SDC_JOB_F_ATTEMPTS "attempts"       /* deliveries so far */
#define SDC_JOB_F_CANCEL "cancel"           /* "1": a client asked to cancel */

/* Limits: common/sdc_limits.h (SDC_MAX_JOB_JSON_BYTES, SDC_MAX_JOB_ID, SDC_MAX_PROMPT_BYTES, SDC_MAX_IMAGE_SIDE,
 * SDC_MAX_STEPS, SDC_MAX_IMAGES, SDC_SEED_LIMIT, SDC_DEFAULT_RESULT_TTL_S...). */

/* ---------------------------------------------------------------- states */

typedef enum {
  SDC_JOB_UNKNOWN = 0, /* hash absent or without a state yet */
  SDC_JOB_QUEUED,
  SDC_JOB_RUNNING,
  SDC_JOB_DONE,
  SDC_JOB_FAILED,
  SDC_JOB_CANCELLED
} sdc_job_state;

/* "queued", ...; "unknown" for SDC_JOB_UNKNOWN or out of range. Static. */
const char *sdc_job_state_name(sdc_job_state s);
/* The state named s (exact, lower case), or SDC_JOB_UNKNOWN. */
sdc_job_state sdc_job_state_parse(const char *s);
/* 1 for done, failed and cancelled: nothing changes after them. */
int sdc_job_state_final(sdc_job_state s);

/* ------------------------------------------------------------------ jobs */

/* An image input (init_image, mask): the name of a Redis key holding the PNG/JPEG bytes ("myimg"; never in
 * the "sdc:" namespace), or the bytes themselves (JSON {"base64": "..."}). Exactly one is set when given. */
typedef struct {
  char *key;     /* heap, NUL-terminated, 1..SDC_MAX_IMAGE_KEY bytes */
  uint8_t *data; /* heap, n bytes (inline) */
  size_t n;
} sdc_job_image;

/* A LoRA a job names: a file NAME.safetensors in the workers' --lora-dir, and its multiplier. */
typedef struct {
  char name[SDC_MAX_LORA_NAME + 1];
  double multiplier; /* finite, default 1 */
} sdc_job_lora;

#define SDC_JOB_IMAGE_KEY_RESERVED "sdc:" /* key prefix a job may not name as an input */
#define SDC_JOB_F_STRENGTH "strength"     /* job hash: resolved strength of an image job */
#define SDC_JOB_F_LORAS "loras"           /* job hash: "name:mult,name:mult" */

/* Whether name is a valid LoRA name: 1..SDC_MAX_LORA_NAME of [A-Za-z0-9._-], not starting with '.'. */
int sdc_job_lora_name_valid(const char *name);
/* Standard base64 with padding, no whitespace: *out heap (caller frees). SDC_EINVAL naming label. */
int sdc_base64_decode(const char *s, size_t n, const char *label, uint8_t **out /* OUT */, size_t *out_n /* OUT */);
/* Heap NUL-terminated base64 of n bytes, or NULL without memory. */
char *sdc_base64_encode(const uint8_t *p, size_t n);

typedef struct {
  char id[SDC_MAX_JOB_ID + 1];               /* "" in a job not yet given one */
  char *prompt;                              /* heap, required (may be "") */
  char *negative_prompt;                     /* heap, NULL when absent (= "") */
  int64_t width, height;                     /* pixels; 0 = the model's native size */
  int64_t steps;                             /* default 50 */
  double guidance_scale;                     /* default 7.5; <= 1 disables guidance */
  char scheduler[SDC_MAX_SCHEDULER_NAME + 1]; /* "" = the model's own */
  int has_seed;                              /* 0: the coordinator picks one at claim and records it */
  uint64_t seed;
  int64_t num_images; /* default 1 */
  int64_t timeout_ms; /* 0: the coordinator's --job-timeout-ms; else SDC_COORD_MIN..MAX_JOB_TIMEOUT_MS, and the
                       * shorter of the two applies */
  int has_strength;   /* 0: 0.8 with an init image, 1.0 with a mask (as sdc generate) */
  double strength;    /* (0, 1] */
  sdc_job_image init_image, mask; /* mask needs init_image */
  int n_loras;
  sdc_job_lora loras[SDC_MAX_LORAS];
  /* SDXL only (the coordinator refuses them for a model without a second text encoder / text_time) */
  char *prompt_2;                   /* heap, NULL when absent (= prompt) */
  char *negative_prompt_2;          /* heap, NULL when absent (= negative_prompt) */
  int64_t original_size[2];         /* [height, width], each 1..SDC_MAX_MICRO_COND; {0, 0} when absent */
  int64_t target_size[2];           /* the same */
  int has_crop;                     /* crops_coords_top_left given */
  int64_t crops_coords_top_left[2]; /* [top, left], each 0..SDC_MAX_MICRO_COND */
} sdc_job;

/* The default strength of a job that gives none: 1.0 with a mask, 0.8 with an init image only. */
double sdc_job_strength(const sdc_job *job);

/* Sets every field to its default (no prompt, no id). Owns nothing yet. */
void sdc_job_init(sdc_job *job /* OUT */);
/* Frees the strings the job owns and re-inits it. Safe on an inited job. */
void sdc_job_free(sdc_job *job);

/* Parses and validates a job's JSON (n bytes, need not be NUL-terminated).
 * The id is the JSON's "id" or, when absent, fallback_id (the stream entry id;
 * may be NULL when the JSON must carry one). Input over SDC_MAX_JOB_JSON_BYTES
 * is refused before parsing. Unknown or repeated fields, wrong types (a string
 * "20" for steps), out-of-range values, prompts that are not UTF-8 or too long:
 * SDC_EINVAL with a one-line message naming the field and its value. JSON null
 * in an optional field means absent. On error *job is left inited (owns
 * nothing); on success free it with sdc_job_free(). Out of memory: SDC_ENOMEM. */
int sdc_job_parse(sdc_job *job /* OUT */, const char *json, size_t n, const char *fallback_id);

/* Checks every rule sdc_job_parse checks, on a job built in code (the id may
 * be ""). SDC_EINVAL with the same messages. */
int sdc_job_validate(const sdc_job *job);

/* Compact JSON of the job's fields that differ from their defaults (id only
 * when set), so sdc_job_parse(to_json(j)) gives j back. *json is heap, caller
 * frees. Validates first: an invalid job is SDC_EINVAL and no JSON. */
int sdc_job_to_json(const sdc_job *job, char **json /* OUT */);

/* Whether id is 1..SDC_MAX_JOB_ID bytes of [A-Za-z0-9._-]. */
int sdc_job_id_valid(const char *id);

/* The scheduler names a job may name, in sdc_sched_kind order (common/ may not
 * see stages/: a test checks this list equals stages/scheduler.c's). i-th
 * name, or NULL past the end. */
const char *sdc_job_scheduler_name(int i);
/* Whether name is one of them. */
int sdc_job_scheduler_valid(const char *name);

/* Redis key of kind fmt (one of SDC_JOB_*_FMT except the image key) for id.
 * out must hold SDC_JOB_KEY_MAX bytes. */
void sdc_job_key(char *out, const char *fmt, const char *id);
/* The key of image i of job id; out holds SDC_JOB_KEY_MAX bytes. */
void sdc_job_image_key(char *out, const char *id, int i);

/* ---------------------------------------------------------------- events */

/* Writes the event JSON {"state":"running","step":3,"steps":20} (with
 * "error":"..." when error is non-NULL) into out (heap, caller frees). */
int sdc_job_event_json(char **out /* OUT */, sdc_job_state state, int64_t step, int64_t steps, const char *error);
/* Reads an event; missing step/steps are -1. SDC_EINVAL for anything else
 * than an object with a known "state" string. */
int sdc_job_event_parse(const char *json, size_t n, sdc_job_state *state /* OUT */, int64_t *step /* OUT */,
                        int64_t *steps /* OUT */);

#endif
