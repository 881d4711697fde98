/* registry.c - worker table: upsert, expiry after missed heartbeats, least-outstanding choice. */
#include "registry.h"

#include <stdio.h>
#include <string.h>

int sdc_registry_find(const sdc_registry *r, const char *id) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->w[i].id, id) == 0) return i;
  return -1;
}

int sdc_registry_upsert(sdc_registry *r, const char *id, const char *endpoint, unsigned stages, uint64_t now_ms) {
  int i = sdc_registry_find(r, id);
  if (i < 0) {
    /* reuse a dead slot before growing */
    for (int k = 0; k < r->n && i < 0; k++)
      if (!r->w[k].alive && !r->w[k].push) i = k;
    if (i < 0) {
      if (r->n == SDC_MAX_WORKERS) return -1;
      i = r->n++;
    }
    memset(&r->w[i], 0, sizeof r->w[i]);
    snprintf(r->w[i].id, sizeof r->w[i].id, "%s", id);
  }
  sdc_worker_info *w = &r->w[i];
  if (strcmp(w->endpoint, endpoint) != 0) {
    snprintf(w->endpoint, sizeof w->endpoint, "%s", endpoint);
    /* caller closes the old socket and connects a new one */
  }
  w->stages = stages;
  w->last_seen_ms = now_ms;
  w->alive = 1;
  w->draining = 0;
  return i;
}

int sdc_registry_pick(const sdc_registry *r, Sdcpb__Stage stage) { return sdc_registry_pick_for(r, stage, 0); }

int sdc_registry_largest(const sdc_registry *r, Sdcpb__Stage stage, uint64_t *cap) {
  int best = -1;
  *cap = 0;
  for (int i = 0; i < r->n; i++) {
    const sdc_worker_info *w = &r->w[i];
    if (!w->alive || !w->push || !(w->stages & (1u << stage))) continue;
    if (!w->max_pixel_images) { /* takes any size */
      *cap = 0;
      return i;
    }
    if (best < 0 || w->max_pixel_images > *cap) best = i, *cap = w->max_pixel_images;
  }
  return best;
}

int sdc_registry_pick_for(const sdc_registry *r, Sdcpb__Stage stage, uint64_t pixel_images) {
  int best = -1;
  for (int i = 0; i < r->n; i++) {
    const sdc_worker_info *w = &r->w[i];
    if (!w->alive || w->draining || !w->push || !(w->stages & (1u << stage))) continue;
    if (w->max_pixel_images && pixel_images > w->max_pixel_images) continue; /* its memory would not hold it */
    if (best < 0 || w->outstanding < r->w[best].outstanding ||
        (w->outstanding == r->w[best].outstanding && w->served < r->w[best].served))
      best = i;
  }
  return best;
}

int sdc_registry_expire(sdc_registry *r, uint64_t now_ms, uint64_t timeout_ms, int *died) {
  int n = 0;
  for (int i = 0; i < r->n; i++)
    if (r->w[i].alive && now_ms > r->w[i].last_seen_ms + timeout_ms) {
      r->w[i].alive = 0;
      died[n++] = i;
    }
  return n;
}

int sdc_registry_complete(const sdc_registry *r, unsigned needed) {
  for (int s = SDCPB__STAGE__TEXT; s <= SDCPB__STAGE__VAE; s++)
    if ((needed & (1u << s)) && sdc_registry_pick(r, (Sdcpb__Stage)s) < 0) return 0;
  return 1;
}

int sdc_registry_used(const sdc_registry *r) {
  int n = 0;
  for (int i = 0; i < r->n; i++) n += r->w[i].alive || r->w[i].push;
  return n;
}
