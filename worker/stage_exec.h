/* stage_exec.h - what a worker computes for one StageRequest: no sockets, no event loop. */
#ifndef SDC_STAGE_EXEC_H
#define SDC_STAGE_EXEC_H

#include <stdint.h>

#include "arena.h"
#include "clip.h"
#include "error.h"
#include "lora.h"
#include "model.h"
#include "sdc_limits.h"
#include "sdc.pb-c.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

/* The text encoder and UNet parts of one worker with a set of LoRAs merged in (--lora-cache). */
typedef struct {
  char key[SDC_MAX_LORAS * (SDC_MAX_LORA_NAME + 32)]; /* "name:mult,..." in the request's order ("" = free slot) */
  sdc_lora_set *set;
  sdc_weights w_text, w_unet;
  sdc_clip *clip;
  sdc_unet *unet;
  uint64_t used; /* LRU clock */
} sdc_stage_lora_model;

/* The models one worker hosts: only the weights of its stages are loaded. */
typedef struct {
  sdc_model model;
  unsigned stages;          /* bit (1 << Sdcpb__Stage) per hosted stage */
  sdc_tokenizer *tok, *tok2; /* tok2, clip2: SDXL's second tokenizer and text encoder (NULL for SD 1.x/2.x) */
  sdc_clip *clip, *clip2;
  sdc_unet *unet;           /* loaded with the parts of the hosted UNet shards */
  sdc_vae *vae;
  sdc_weights w[SDC_COMP_COUNT];
  sdc_arena arena;
  char fingerprint[32];     /* same configs, weights and precision on every worker of a cluster */
  sdc_load_opts opts;
  unsigned unet_parts;
  /* --lora-dir (realpath; "" without) and --lora-cache: merged models kept, least recently used evicted */
  char lora_dir[4096];
  int lora_cache;
  sdc_stage_lora_model lora[SDC_WORKER_MAX_LORA_CACHE];
  uint64_t lora_clock;
  sdc_stage_lora_model lora_once; /* --lora-cache 0: the merged models of the request running now */
  uint64_t lora_once_req;         /* ... and its request id */
  sdc_clip *clip_now;             /* the request's: the base models or a LoRA-merged pair */
  sdc_unet *unet_now;
} sdc_stage_host;

/* Gives the host a LoRA folder (dir NULL: none; a job naming a LoRA then fails) and how many merged model
 * sets to keep (0..SDC_WORKER_MAX_LORA_CACHE). Errors name dir. */
int sdc_stage_host_set_loras(sdc_stage_host *h, const char *dir, int cache);

/* The hops one sdc_stage_execute computed here, in route order: their stages and compute times, for the
 * worker's per-stage metrics; next_stage is the stage the output goes to (STAGE_INVALID: the reply). */
typedef struct {
  int n;
  Sdcpb__Stage stage[SDC_WIRE_MAX_ROUTE];
  uint64_t us[SDC_WIRE_MAX_ROUTE];
  uint64_t total_us;
  Sdcpb__Stage next_stage;
} sdc_stage_hops;

/* Loads the models of `stages` with opts (blocks.h); errors name the culprit. */
int sdc_stage_host_load(sdc_stage_host *h /* OUT */, const char *model, const char *config_dir, unsigned stages,
                        const sdc_load_opts *opts);
void sdc_stage_host_free(sdc_stage_host *h);

/* Runs hop req->hop of req (whose stage this host must have) and produces the
 * message to send next: a StageRequest for the next hop (*next_is_reply = 0,
 * *next_endpoint pointing into req) or a StageReply for the coordinator
 * (*next_is_reply = 1), packed into *out (heap, caller frees). Consecutive hops
 * this host also serves run here too, without a network round trip. Bad input
 * yields a StageReply with `error` naming the culprit, never a crash; that
 * error is also copied into *hop_error (code SDC_OK when every hop succeeded),
 * so a caller on another thread can log it. *hops gets each hop's stage and
 * compute time (a hop that failed included).
 * Returns SDC_OK, or the error that left nothing to send (packing failed);
 * its message is the calling thread's (sdc_errmsg). */
int sdc_stage_execute(sdc_stage_host *h, const Sdcpb__StageRequest *req, const char *worker_id, uint8_t **out /* OUT */,
                      size_t *out_n /* OUT */, int *next_is_reply /* OUT */, const char **next_endpoint /* OUT */,
                      sdc_stage_hops *hops /* OUT */, sdc_error *hop_error /* OUT */);

/* How many LoRA-merged model sets the host keeps (the memory estimate counts one resident set apiece):
 * --lora-cache with --lora-dir; 0 without, and for an SDXL model, which refuses every LoRA (its UNet is
 * several times SD 1.x's: counting sets it never builds would leave a worker no memory for any job). */
int sdc_stage_host_lora_sets(const sdc_stage_host *h);

/* Peak bytes the hosted stages add per pixel of one image (SDC_*_PEAK_BYTES_PER_PIXEL scaled to the
 * model's full-resolution channels, summed over the stages: consecutive hops run in one request); 0 for
 * a text-only host (its memory does not grow with the image). */
int64_t sdc_stage_host_bytes_per_pixel(const sdc_stage_host *h);

/* A StageReply for req carrying `error` and no output, packed into *out (heap, caller frees): what a
 * worker answers for a request it will not compute (its queue is full). SDC_OK or the packing error. */
int sdc_stage_error_reply(const Sdcpb__StageRequest *req, const char *error, uint8_t **out /* OUT */,
                          size_t *out_n /* OUT */);

#endif
