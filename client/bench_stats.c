/* bench_stats.c - latency percentiles and the per-stage / per-link arithmetic of sdc bench's metric deltas. */
#include "bench_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double sdc_bench_percentile(const double *sorted, size_t n, double p) {
  if (n == 0) return NAN;
  double r = p / 100.0 * (double)(n - 1);
  size_t lo = (size_t)floor(r);
  if (lo + 1 >= n) return sorted[n - 1];
  return sorted[lo] + (r - (double)lo) * (sorted[lo + 1] - sorted[lo]);
}

static int sdc__link_cmp(const void *a, const void *b) {
  return strcmp(((const sdc_bench_link *)a)->name, ((const sdc_bench_link *)b)->name);
}

void sdc_bench_metrics_compute(sdc_bench_metrics *out, const sdc_prom_set *before, const sdc_prom_set *after, size_t n,
                               double wall_s, int64_t images) {
  memset(out, 0, sizeof *out);
  out->n_endpoints = (int)n;
  int has_compute[SDC_STAGE_END] = {0}, has_requests[SDC_STAGE_END] = {0}, has_reissued = 0;
  for (size_t e = 0; e < n; e++) {
    int serves[SDC_STAGE_END] = {0};
    for (size_t i = 0; i < after[e].n; i++) {
      const sdc_prom_sample *s = &after[e].samples[i];
      if (!strcmp(s->name, "sdc_stage_compute_seconds_total") || !strcmp(s->name, "sdc_stage_requests_total")) {
        const char *st = sdc_prom_label(s, "stage");
        sdc_stage stage = st ? sdc_stage_parse(st) : SDC_STAGE_INVALID;
        if (stage == SDC_STAGE_INVALID) continue;
        double d = sdc_prom_counter_delta(&before[e], s);
        if (!strcmp(s->name, "sdc_stage_compute_seconds_total")) {
          out->stage[stage].compute_s += d;
          has_compute[stage] = serves[stage] = 1;
        } else {
          out->stage[stage].requests += d;
          has_requests[stage] = 1;
        }
      } else if (!strcmp(s->name, "sdc_steps_reissued_total")) {
        out->reissued += sdc_prom_counter_delta(&before[e], s);
        has_reissued = 1;
      } else if (!strcmp(s->name, "sdc_link_bytes_total")) {
        const char *link = sdc_prom_label(s, "link"), *dir = sdc_prom_label(s, "direction");
        if (!link || !dir || strcmp(dir, "sent")) continue;
        int k = 0;
        while (k < out->n_links && strcmp(out->links[k].name, link)) k++;
        if (k == out->n_links) {
          if (k == SDC_BENCH_MAX_LINKS) continue;
          snprintf(out->links[k].name, sizeof out->links[k].name, "%s", link);
          out->n_links++;
        }
        out->links[k].bytes_sent += sdc_prom_counter_delta(&before[e], s);
      }
    }
    for (int st = SDC_STAGE_TEXT; st < SDC_STAGE_END; st++) out->stage[st].workers += serves[st];
  }
  for (int st = SDC_STAGE_TEXT; st < SDC_STAGE_END; st++) {
    sdc_bench_stage *g = &out->stage[st];
    if (!has_compute[st]) g->compute_s = NAN;
    if (!has_requests[st]) g->requests = NAN;
    /* NAN propagates: no series, or no request in the run, leaves the mean unknown */
    g->service_s = has_compute[st] && has_requests[st] && g->requests > 0 ? g->compute_s / g->requests : NAN;
    g->utilisation = has_compute[st] && g->workers > 0 && wall_s > 0 ? g->compute_s / (wall_s * g->workers) : NAN;
  }
  if (!has_reissued) out->reissued = NAN;
  for (int k = 0; k < out->n_links; k++)
    out->links[k].bytes_per_image = images > 0 ? out->links[k].bytes_sent / (double)images : NAN;
  qsort(out->links, (size_t)out->n_links, sizeof *out->links, sdc__link_cmp);
}
