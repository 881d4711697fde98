/* bench_stats.h - sdc bench's arithmetic: latency percentiles, and per-stage / per-link figures from metric deltas. */
#ifndef SDC_BENCH_STATS_H
#define SDC_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "prom.h"
#include "stage.h"

/* The p-th percentile (0 <= p <= 100) of n values sorted ascending, by linear interpolation between the
 * closest ranks (numpy's default): rank r = p/100 * (n-1), value x[floor r] + (r - floor r) *
 * (x[floor r + 1] - x[floor r]). NAN when n == 0. */
double sdc_bench_percentile(const double *sorted, size_t n, double p);

/* What the metric deltas of one run say. A figure whose inputs no endpoint served is NAN (printed n/a). */
typedef struct {
  double compute_s;   /* sum over endpoints of sdc_stage_compute_seconds_total{stage} deltas */
  double requests;    /* sum of sdc_stage_requests_total{stage} deltas */
  double service_s;   /* compute_s / requests: mean compute time of one request */
  double utilisation; /* compute_s / (wall_s * workers): share of the stage's capacity that was busy */
  int workers;        /* endpoints that serve sdc_stage_compute_seconds_total for the stage */
} sdc_bench_stage;

typedef struct {
  char name[96];          /* the link label, e.g. "unet-down>unet-mid" */
  double bytes_sent;      /* sum of sdc_link_bytes_total{link,direction="sent"} deltas over endpoints */
  double bytes_per_image; /* bytes_sent / images */
} sdc_bench_link;

#define SDC_BENCH_MAX_LINKS 64

typedef struct {
  int n_endpoints;                    /* endpoints that answered both scrapes */
  sdc_bench_stage stage[SDC_STAGE_END]; /* indexed by sdc_stage; [0] unused */
  sdc_bench_link links[SDC_BENCH_MAX_LINKS];
  int n_links;      /* sorted by name; links past SDC_BENCH_MAX_LINKS are left out */
  double reissued;  /* sum of sdc_steps_reissued_total deltas; NAN when no endpoint serves it */
} sdc_bench_metrics;

/* Fills *out from scrapes of n endpoints, before[i] and after[i] of endpoint i (each endpoint once: a
 * coordinator or a worker), over a run of wall_s seconds that produced images images. Each frame is
 * counted once by summing only the direction="sent" side of every link. Counter deltas follow
 * sdc_prom_counter_delta (a restart between scrapes counts from 0). */
void sdc_bench_metrics_compute(sdc_bench_metrics *out /* OUT */, const sdc_prom_set *before, const sdc_prom_set *after,
                               size_t n, double wall_s, int64_t images);

#endif
