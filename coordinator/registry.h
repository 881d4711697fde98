/* registry.h - the workers a coordinator knows: registration, liveness, and least-loaded choice per stage. */
#ifndef SDC_REGISTRY_H
#define SDC_REGISTRY_H

#include <stdint.h>

#include "curve.h"
#include "sdc.pb-c.h"
#include "sdc_limits.h"

typedef struct {
  char id[SDC_MAX_WORKER_ID];
  char endpoint[SDC_MAX_ENDPOINT];
  unsigned stages;        /* bit (1 << Sdcpb__Stage) */
  uint64_t last_seen_ms;
  int outstanding;        /* requests issued through it and not answered */
  uint64_t served;        /* hops it completed for us */
  int draining, alive;
  void *push;             /* PUSH socket connected to its data endpoint */
  /* CURVE: the authorized key it registered with (the ZAP User-Id) and that key; "" in plaintext. The id
   * is bound to that key while the worker is alive */
  char key_name[SDC_MAX_WORKER_ID];
  char key[SDC_CURVE_Z85];
  uint64_t max_pixel_images, memory_bytes; /* Register: the largest width*height*num_images it takes (0: any) */
} sdc_worker_info;

typedef struct {
  sdc_worker_info w[SDC_MAX_WORKERS];
  int n;
} sdc_registry;

/* Adds or refreshes a worker; returns its index, or -1 when full. A changed
 * endpoint replaces the PUSH socket (the caller connects a new one when
 * push is NULL). */
int sdc_registry_upsert(sdc_registry *r, const char *id, const char *endpoint, unsigned stages, uint64_t now_ms);
int sdc_registry_find(const sdc_registry *r, const char *id);
/* The live, non-draining worker with the fewest outstanding requests that
 * serves stage; ties go to the one that served least. -1 when none. */
int sdc_registry_pick(const sdc_registry *r, Sdcpb__Stage stage);
/* As sdc_registry_pick, among the workers whose memory takes pixel_images (Register.max_pixel_images). */
int sdc_registry_pick_for(const sdc_registry *r, Sdcpb__Stage stage, uint64_t pixel_images);
/* The live worker of stage that takes the most pixel-images (0 in *cap when one takes any); -1 when the
 * stage has no live worker. */
int sdc_registry_largest(const sdc_registry *r, Sdcpb__Stage stage, uint64_t *cap /* OUT */);
/* Marks workers silent for longer than timeout_ms dead; returns how many died
 * now (their indices in died[], at most SDC_MAX_WORKERS). */
int sdc_registry_expire(sdc_registry *r, uint64_t now_ms, uint64_t timeout_ms, int *died);
/* Slots in use: live workers, and dead ones whose socket is still open (a job's route still names them). */
int sdc_registry_used(const sdc_registry *r);
/* Whether every stage in `needed` has at least one live, non-draining worker. */
int sdc_registry_complete(const sdc_registry *r, unsigned needed);

#endif
