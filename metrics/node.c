/* node.c - the metrics every cluster process serves, and its HTTP server. */
#include "node.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "stage.h"

int sdc_node_metrics_init(sdc_node_metrics *nm) {
  memset(nm, 0, sizeof *nm);
  if (!(nm->reg = sdc_metrics_new())) return sdc_seterr(SDC_ENOMEM, "metrics: out of memory");
  static const char *const link_labels[] = {"link", "direction"}, *const reason_label[] = {"reason"};
  nm->link_bytes = sdc_metrics_counter(nm->reg, "sdc_link_bytes_total", "Bytes of stage request and reply frames per link.",
                                       2, link_labels);
  nm->dropped = sdc_metrics_counter(nm->reg, "sdc_frames_dropped_total", "Frames dropped instead of computed on.", 1,
                                    reason_label);
  nm->ready = sdc_metrics_gauge(nm->reg, "sdc_ready", "1 when /readyz would say ready.", 0, NULL);
  if (!nm->link_bytes || !nm->dropped || !nm->ready) return SDC_EINVAL; /* sdc_errmsg names the metric */
  /* every series a dashboard sums over exists from the start, at 0 */
  static const char *const reasons[] = {"malformed", "version",      "bad_tensor", "late",
                                        "deadline",  "unauthorized", "sender",     "refused"};
  for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) sdc_metric_add(nm->dropped, &reasons[i], 0);
  return sdc_metrics_add_process(nm->reg);
}

int sdc_node_metrics_serve(sdc_node_metrics *nm, const char *addr_port, sdc_http_ready_fn ready, void *ctx) {
  return sdc_http_start(&nm->http, addr_port, nm->reg, ready, ctx);
}

void sdc_node_metrics_stop(sdc_node_metrics *nm) {
  sdc_http_stop(nm->http); /* before the registry it renders */
  sdc_metrics_free(nm->reg);
  memset(nm, 0, sizeof *nm);
}

void sdc_node_metrics_link(sdc_node_metrics *nm, int from, int to, const char *direction, size_t n_bytes) {
  if (!nm->reg || !n_bytes) return;
  char link[64];
  snprintf(link, sizeof link, "%s>%s", from == SDC_STAGE_INVALID ? "coordinator" : sdc_stage_name(from),
           to == SDC_STAGE_INVALID ? "coordinator" : sdc_stage_name(to));
  sdc_metric_add(nm->link_bytes, (const char *const[]){link, direction}, (double)n_bytes);
}

void sdc_node_metrics_drop(sdc_node_metrics *nm, const char *reason) { sdc_metric_add(nm->dropped, &reason, 1); }

void sdc_node_metrics_wire_drops(sdc_node_metrics *nm, uint64_t malformed, uint64_t version, uint64_t bad_tensor) {
  sdc_metric_add(nm->dropped, (const char *const[]){"malformed"}, (double)(malformed - nm->seen_malformed));
  sdc_metric_add(nm->dropped, (const char *const[]){"version"}, (double)(version - nm->seen_version));
  sdc_metric_add(nm->dropped, (const char *const[]){"bad_tensor"}, (double)(bad_tensor - nm->seen_bad_tensor));
  nm->seen_malformed = malformed, nm->seen_version = version, nm->seen_bad_tensor = bad_tensor;
}

void sdc_node_metrics_set_ready(sdc_node_metrics *nm, int ready) { sdc_metric_set(nm->ready, NULL, ready ? 1 : 0); }
