/* fuzz_job_json.c - libFuzzer: a client's job JSON through sdc_job_parse, the event parser and the key helpers.
 * A job that parses must write JSON that parses back to the same job. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "job.h"

static int same_image(const sdc_job_image *a, const sdc_job_image *b) {
  return !a->key == !b->key && (!a->key || strcmp(a->key, b->key) == 0) && a->n == b->n && !a->data == !b->data &&
         (!a->data || memcmp(a->data, b->data, a->n) == 0);
}

static int same_loras(const sdc_job *a, const sdc_job *b) {
  for (int i = 0; i < a->n_loras; i++)
    if (strcmp(a->loras[i].name, b->loras[i].name) != 0 || a->loras[i].multiplier != b->loras[i].multiplier) return 0;
  return 1;
}

/* Both absent, or both the same text. */
static int same_text(const char *a, const char *b) { return !a == !b && (!a || strcmp(a, b) == 0); }

static int same_sdxl(const sdc_job *a, const sdc_job *b) {
  return same_text(a->prompt_2, b->prompt_2) && same_text(a->negative_prompt_2, b->negative_prompt_2) &&
         memcmp(a->original_size, b->original_size, sizeof a->original_size) == 0 &&
         memcmp(a->target_size, b->target_size, sizeof a->target_size) == 0 && a->has_crop == b->has_crop &&
         memcmp(a->crops_coords_top_left, b->crops_coords_top_left, sizeof a->crops_coords_top_left) == 0;
}

static int same_job(const sdc_job *a, const sdc_job *b) {
  return strcmp(a->id, b->id) == 0 && strcmp(a->prompt, b->prompt) == 0 &&
         same_text(a->negative_prompt, b->negative_prompt) && same_sdxl(a, b) && a->width == b->width &&
         a->height == b->height && a->steps == b->steps && a->guidance_scale == b->guidance_scale &&
         strcmp(a->scheduler, b->scheduler) == 0 && a->has_seed == b->has_seed && a->seed == b->seed &&
         a->num_images == b->num_images && a->has_strength == b->has_strength && a->strength == b->strength &&
         same_image(&a->init_image, &b->init_image) && same_image(&a->mask, &b->mask) && a->n_loras == b->n_loras &&
         same_loras(a, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *json = (const char *)data;
  sdc_job job;
  if (sdc_job_parse(&job, json, size, "1700000000000-0") == SDC_OK) {
    if (!sdc_job_id_valid(job.id) || sdc_job_validate(&job) != SDC_OK) abort();
    char key[SDC_JOB_KEY_MAX], img[SDC_JOB_KEY_MAX];
    sdc_job_key(key, SDC_JOB_KEY_FMT, job.id);
    sdc_job_key(key, SDC_JOB_EVENTS_FMT, job.id);
    sdc_job_image_key(img, job.id, (int)job.num_images - 1);
    char *out = NULL;
    if (sdc_job_to_json(&job, &out) != SDC_OK) abort();
    sdc_job back;
    if (sdc_job_parse(&back, out, strlen(out), NULL) != SDC_OK || !same_job(&job, &back)) abort();
    sdc_job_free(&back);
    free(out);
    sdc_job_free(&job);
  } else if (job.prompt || job.negative_prompt || job.prompt_2 || job.negative_prompt_2) {
    abort(); /* a refused job owns nothing */
  }
  /* the same bytes as an event on a job's channel */
  sdc_job_state st;
  int64_t step, steps;
  if (sdc_job_event_parse(json, size, &st, &step, &steps) == SDC_OK && !st) abort();
  /* and as a state name (NUL-terminated copy) */
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  (void)sdc_job_state_name(sdc_job_state_parse(s));
  (void)sdc_job_scheduler_valid(s);
  free(s);
  return 0;
}
