/* sdc_limits.h - every bound of the system in one place: the job contract, the wire, the workers, the
 * coordinator and the kernels take their numbers from here, and docs/ quote these names. */
#ifndef SDC_SDC_LIMITS_H
#define SDC_SDC_LIMITS_H

#include <stdint.h>

/* ---- a request (job JSON, sdc generate, the wire) ---- */
#define SDC_MAX_JOB_JSON_BYTES (4 << 20) /* one job's JSON: inline base64 images fit (about 3 MiB of bytes) */
#define SDC_MAX_JOB_JSON_DEPTH 16          /* brackets in one job's JSON (a valid job nests 1) */
#define SDC_MAX_JOB_ID 128                 /* bytes of [A-Za-z0-9._-] */
#define SDC_MAX_PROMPT_BYTES 4096          /* prompt and negative prompt, UTF-8 */
#define SDC_MIN_IMAGE_SIDE 64              /* pixels; width and height are multiples of 8 */
#define SDC_MAX_IMAGE_SIDE 2048
#define SDC_DEFAULT_MAX_PIXELS (2048 * 2048) /* width*height a coordinator accepts unless told otherwise */
#define SDC_MAX_STEPS 1000
#define SDC_MAX_IMAGES 8                        /* images per request */
#define SDC_MAX_BATCH (2 * SDC_MAX_IMAGES)      /* UNet batch: [uncond; cond] with guidance */
#define SDC_SEED_LIMIT ((uint64_t)1 << 53)      /* seeds are below: exact as a JSON number */
#define SDC_MAX_SCHEDULER_NAME 31
#define SDC_MAX_INPUT_IMAGE_BYTES (32 << 20) /* an init image or mask, encoded (PNG or JPEG) */
#define SDC_MAX_INPUT_IMAGE_SIDE 8192        /* pixels a side of an image input, before any size check */
#define SDC_MAX_LORAS 8                      /* adapters one request applies */
#define SDC_MAX_LORA_PATH 1024               /* bytes of an adapter's path */
#define SDC_MAX_LORA_NAME 64                 /* a job's LoRA name: [A-Za-z0-9._-], not starting with '.' */
#define SDC_MAX_IMAGE_KEY 512                /* bytes of a Redis key a job names for init_image / mask */
#define SDC_IMAGE_KEY_TTL_S 3600             /* sdc submit --init-image: the uploaded bytes expire after this */
#define SDC_MAX_CONTEXT_TOKENS 1024             /* text-encoder sequence length a worker accepts */
#define SDC_MAX_MICRO_COND 16384                /* SDXL original_size / crop / target_size values */
#define SDC_MAX_LATENT_SIDE (SDC_MAX_IMAGE_SIDE / 8 * 2) /* latent cells per side a worker accepts */

/* ---- results ---- */
#define SDC_DEFAULT_RESULT_TTL_S 86400 /* images and final job hashes expire; sdc-coordinator --ttl */

/* ---- errors ---- */
#define SDC_MAX_ERROR_MSG 1024 /* bytes of an error message with its NUL (per thread, and in an sdc_error) */

/* ---- the wire (ZeroMQ + protobuf) ---- */
#define SDC_WIRE_MAX_MSG_BYTES ((int64_t)1 << 30) /* ZMQ_MAXMSGSIZE on every socket */
#define SDC_WIRE_MAX_ROUTE 16                     /* hops in one request */
#define SDC_WIRE_MAX_PROMPTS (2 * SDC_MAX_IMAGES) /* prompts in one text request */
#define SDC_WIRE_MAX_REPEATED 1024                /* any other repeated field (skips, images...) */
#define SDC_WIRE_MAX_FIELD_NUMBER 536870911       /* 2^29 - 1: protobuf's largest field number */
#define SDC_WIRE_DROP_LOG_LINES 5                 /* dropped frames logged per window, then counted */
#define SDC_WIRE_DROP_LOG_WINDOW_MS 10000

/* ---- liveness ---- */
#define SDC_HEARTBEAT_MS 1000 /* the coordinator tells workers this period in Welcome.heartbeat_ms */
#define SDC_DEAD_AFTER_BEATS 3 /* a worker silent this many periods (+ half a period) is dead */
#define SDC_MIN_HEARTBEAT_MS 50    /* a Welcome.heartbeat_ms outside these is ignored (the worker keeps */
#define SDC_MAX_HEARTBEAT_MS 60000 /* SDC_HEARTBEAT_MS) and logged */

/* ---- drain (SIGTERM) ---- */
#define SDC_DEFAULT_DRAIN_TIMEOUT_MS 60000 /* --drain-timeout-ms of sdc-worker and sdc-coordinator */
#define SDC_MAX_DRAIN_TIMEOUT_MS 3600000   /* the most either accepts */
#define SDC_DRAIN_LINGER_MS 1000           /* a drained process waits this long at most for its last sends */

/* ---- the coordinator ---- */
#define SDC_COORD_TICK_MS 200                  /* timeouts and liveness are checked this often */
#define SDC_COORD_TOUCH_MS 10000               /* re-claims its own pending entries so others see it alive */
#define SDC_COORD_RECLAIM_IDLE_MS 60000        /* takes over entries nobody touched for this long (--reclaim-idle-ms) */
#define SDC_COORD_MIN_RECLAIM_IDLE_MS 1000     /* --reclaim-idle-ms bounds; every coordinator of a stream uses one */
#define SDC_COORD_MAX_RECLAIM_IDLE_MS 86400000 /* value; a leaving coordinator marks its entries idle this long */
#define SDC_COORD_MAX_ATTEMPTS 3               /* tries of one step before the job fails (and is dead-lettered) */
#define SDC_COORD_RETRY_BACKOFF_MS 500         /* a failed try waits this long before the next, doubled each */
#define SDC_COORD_RETRY_BACKOFF_MAX_MS 10000   /* time up to this: a job that crashes workers does not loop hot */
#define SDC_COORD_DEFAULT_STEP_TIMEOUT_MS 600000
#define SDC_COORD_MAX_STEP_TIMEOUT_MS 86400000  /* --step-timeout-ms bounds: 100..this */
#define SDC_COORD_DEFAULT_JOB_TIMEOUT_MS 3600000 /* --job-timeout-ms: a job running longer fails, its work cancelled */
#define SDC_COORD_MIN_JOB_TIMEOUT_MS 1000        /* --job-timeout-ms and the job's timeout_ms: 1 s .. 24 h */
#define SDC_COORD_MAX_JOB_TIMEOUT_MS 86400000
#define SDC_COORD_CANCEL_POLL_MS 500           /* a step in flight this long has its job's cancel flag read this often */
#define SDC_COORD_DEFAULT_MAX_JOBS 8           /* jobs in flight per coordinator */
#define SDC_COORD_MAX_JOBS 1024
#define SDC_MAX_WORKERS 256                    /* registry slots */
#define SDC_DEAD_LETTER_JSON_BYTES 1024        /* the start of a failed job's JSON kept in sdc:jobs:dead */
#define SDC_COORD_READ_BLOCK_MS 1000           /* XREADGROUP BLOCK: how long one read waits for new entries */
#define SDC_COORD_ID_SNIFF_BYTES 4096          /* a refused job's JSON scanned for its "id" */
#define SDC_COORD_ROUTE_STAGE_BYTES 128        /* one stage's worker ids in a job hash's route field; more: "..." */
#define SDC_COORD_QUEUE_POLL_MS 2000           /* --http: XINFO GROUPS / XPENDING for the queue gauges this often */
#define SDC_COORD_REDIS_SILENT_MS 6000         /* --http: a poll unanswered this long makes /readyz say Redis is down */
#define SDC_REDIS_RETRY_MIN_MS 100             /* reconnect backoff after a lost or refused Redis: doubles from here */
#define SDC_REDIS_RETRY_MAX_MS 5000            /* ... up to this, and stays there until Redis answers again */
#define SDC_CLIENT_REDIS_RETRY_MS 60000         /* sdc submit/wait/status/cancel: how long a client retries a Redis that is down */
#define SDC_REDIS_STALL_MS 10000               /* the coordinator's liveness PING unanswered this long: Redis is lost */
#define SDC_REDIS_CONNECT_TIMEOUT_MS 5000      /* a connection not ready (AUTH, SELECT, PING answered) by then is retried */

/* ---- workers ---- */
#define SDC_WORKER_MAX_PEERS 64 /* next-hop connections a worker keeps; the least recently used goes first */
#define SDC_WORKER_PEER_IDLE_MS 60000 /* a next-hop connection unused this long is closed (peers move: pods) */
#define SDC_WORKER_MAX_QUEUE 64       /* requests waiting for the compute thread (sdc-worker --max-queue); more are
                                       * answered with an error */
#define SDC_WORKER_MAX_QUEUE_LIMIT 4096 /* the most --max-queue accepts */
#define SDC_WORKER_DEFAULT_LORA_CACHE 2 /* LoRA-merged model sets a worker keeps (sdc-worker --lora-cache) */
#define SDC_WORKER_MAX_LORA_CACHE 16    /* the most --lora-cache accepts */
/* Peak bytes a stage adds per pixel of one image (width*height*num_images, guidance included) for the
 * full-size SD 1.5, from bench/shard_peak.sh at 1024x1024 (docs/operations.md: VmHWM minus the loaded
 * RSS, MiB over 2^20 pixels). The largest activations and im2col buffers are those at full resolution,
 * linear in its channel count (block_out_channels[0]: SD 1.5's UNet 320, VAE 128), so another model
 * scales them by its own over SD's. The worker advertises (memory - RSS - SDC_WORKER_MEMORY_RESERVE) /
 * the sum over its stages in Register.max_pixel_images. */
#define SDC_PEAK_MARGIN_PCT 125 /* the scaled figure times this: the tiny model's measured 1112 B/pixel was 12% over */
#define SDC_SD15_UNET_C0 320
#define SDC_SD15_VAE_C0 128
#define SDC_VAE_PEAK_BYTES_PER_PIXEL 7282       /* vae 7621 - 339 MiB (2026-12-02: oneDNN convs keep NHWC copies of
                                                 * their input and output beside the NCHW ones; was 3964 on OpenBLAS) */
#define SDC_UNET_DOWN_PEAK_BYTES_PER_PIXEL 1833 /* unet-down 2804 - 971 MiB */
#define SDC_UNET_MID_PEAK_BYTES_PER_PIXEL 687   /* unet-mid 1067 - 380 MiB */
#define SDC_UNET_UP_PEAK_BYTES_PER_PIXEL 2517   /* unet-up 4477 - 1960 MiB */
#define SDC_WORKER_MEMORY_RESERVE ((int64_t)256 << 20) /* kept free: allocator slack, the process itself */
#define SDC_MAX_WORKER_ID 128   /* bytes of a worker id with its NUL (sdc-worker --id, Register.worker_id) */
#define SDC_MAX_ENDPOINT 256    /* bytes of a ZeroMQ endpoint URL with its NUL (--bind, --advertise, --coordinator) */
#define SDC_CLUSTER_MAX_REPLICAS 16 /* workers per stage that `sdc cluster --replicas` starts */
#define SDC_CLUSTER_START_TRIES 3        /* a child failing this often before it ever started stops sdc cluster */
#define SDC_CLUSTER_RESTART_MIN_MS 200   /* sdc cluster restarts a failed child after this, doubling per failure */
#define SDC_CLUSTER_RESTART_MAX_MS 5000  /* ... up to this, forever */

/* ---- security (ZeroMQ CURVE) ---- */
#define SDC_WORKER_SILENT_WARN_BEATS 5 /* an unregistered worker the coordinator never answers says so this often */
#define SDC_CURVE_MAX_KEYS 256      /* public keys in an authorized file (one per worker or role) */
#define SDC_CURVE_KEY_FILE_BYTES 1024 /* a .key/.pub file; a Z85 key is 40 characters */
#define SDC_CURVE_AUTH_FILE_BYTES (256 * 1024) /* an authorized file: "PUBLIC-KEY NAME" lines */
#define SDC_ZMQ_PING_MS 1000         /* with CURVE, the coordinator's ROUTER pings each connection this often */
#define SDC_ZMQ_PING_TIMEOUT_MS 3000 /* and closes a silent one, freeing its worker id for a reconnect */

/* ---- kernels ---- */
#define SDC_PAR_MIN_ELEMS 65536 /* below this many elements an elementwise op stays on one thread */

#endif
