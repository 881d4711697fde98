/* node.h - what every cluster process serves besides its own metrics: link bytes, dropped frames,
 * readiness and process_* (docs/operations.md's "both" rows), and the HTTP server. The coordinator and
 * the worker register their own metrics on reg between sdc_node_metrics_init and sdc_node_metrics_serve. */
#ifndef SDC_NODE_METRICS_H
#define SDC_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"

typedef struct {
  sdc_metrics *reg; /* NULL until init (and without --http): every update below is then a no-op */
  sdc_http *http;
  sdc_metric *link_bytes, *dropped, *ready;
  uint64_t seen_malformed, seen_version, seen_bad_tensor; /* sdc_node_metrics_wire_drops' last totals */
} sdc_node_metrics;

/* A new registry with sdc_link_bytes_total, sdc_frames_dropped_total (every reason at 0), sdc_ready and
 * process_*. 0, or an error (sdc_errmsg names the metric); free with sdc_node_metrics_stop. */
int sdc_node_metrics_init(sdc_node_metrics *nm /* OUT */);
/* Serves reg's /metrics, /healthz and /readyz (ready: see sdc_http_start) on addr_port. */
int sdc_node_metrics_serve(sdc_node_metrics *nm, const char *addr_port, sdc_http_ready_fn ready, void *ctx);
/* Stops the server, then frees the registry it renders. */
void sdc_node_metrics_stop(sdc_node_metrics *nm);

/* n_bytes of frames on the link from -> to (sdc_stage values; SDC_STAGE_INVALID is the coordinator). */
void sdc_node_metrics_link(sdc_node_metrics *nm, int from, int to, const char *direction /* sent|received */,
                           size_t n_bytes);
void sdc_node_metrics_drop(sdc_node_metrics *nm, const char *reason);
/* The wire layer's running totals of dropped frames (sdc_wire_stats); adds what is new since the last call.
 * For a collect callback (sdc_metrics_on_collect): called on the HTTP thread only. */
void sdc_node_metrics_wire_drops(sdc_node_metrics *nm, uint64_t malformed, uint64_t version, uint64_t bad_tensor);
void sdc_node_metrics_set_ready(sdc_node_metrics *nm, int ready);

#endif
