/* jobs.c - one job's state machine in the coordinator: text -> denoise steps -> vae -> storing, failures, the end. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "image.h"
#include "log.h"
#include "scheduler.h"
#include "wire.h"

void sdc_coord_job_log(const sdc_coord_job *j, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (j->denoise_ready && j->phase == SDC_COORD_DENOISE) {
    const int64_t calls = sdc_scheduler_n_calls(j->d.sched);
    sdc_log(j->id, calls - sdc_denoise_calls_left(&j->d), calls, "%s", msg);
  } else {
    sdc_log(j->id, -1, 0, "%s", msg);
  }
}

void sdc_coord_job_free(sdc_coord *c, sdc_coord_job *j) {
  for (sdc_coord_job **pp = &c->jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) { /* a job dropped by intake.c was unlinked already */
      *pp = j->next;
      c->n_jobs--;
      break;
    }
  sdc_metric_set(c->tm.in_flight, NULL, c->n_jobs);
  if (j->denoise_ready) sdc_denoise_free(&j->d);
  sdc_job_free(&j->spec);
  free(j->raw);
  free(j->ctx), free(j->in), free(j->t), free(j->pooled), free(j->time_ids);
  for (int i = 0; i < 2; i++)
    if (j->img_owned[i]) free(j->img[i]);
  free(j->cond.init_moments), free(j->cond.masked_moments), free(j->cond.mask);
  free(j);
}

sdc_model_caps sdc_coord_model_caps(const sdc_model *m) {
  return (sdc_model_caps){.dual_text = m->has_text_encoder_2,
                          .text_time = m->unet.add_text_time,
                          .force_zeros = m->force_zeros_for_empty_prompt,
                          .image_input = !m->has_text_encoder_2};
}

void sdc_coord_job_route_text(const sdc_coord_job *j, char *out, size_t n) {
  size_t len = 0;
  out[0] = 0;
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END && len < n; s++) {
    if (!j->workers[s][0]) continue;
    const char *name = sdc_stage_name(s);
    if (strncmp(name, "unet-", 5) == 0) name += 5; /* down, mid, up */
    int k = snprintf(out + len, n - len, "%s%s=%s", len ? " " : "", name, j->workers[s]);
    if (k < 0) break;
    len += (size_t)k;
  }
}

void sdc_coord_job_finish(sdc_coord *c, sdc_coord_job *j, sdc_job_state st, const char *error) {
  if (st == SDC_JOB_DONE) c->jobs_done++;
  else if (st == SDC_JOB_FAILED) c->jobs_failed++;
  const char *state = sdc_job_state_name(st);
  sdc_metric_add(c->tm.jobs, &state, 1);
  if (j->claimed_ns) sdc_metric_observe(c->tm.duration, &state, (double)(sdc_clock_mono_ns() - j->claimed_ns) * 1e-9);
  /* logged before the phase changes: a failure while denoising names its step */
  if (error) {
    sdc_coord_job_log(j, "%s: %s", sdc_job_state_name(st), error);
  } else {
    char route[SDC_STAGE_END * (SDC_COORD_ROUTE_STAGE_BYTES + 16)];
    sdc_coord_job_route_text(j, route, sizeof route);
    sdc_coord_job_log(j, "%s (route %s)", sdc_job_state_name(st), route);
  }
  sdc_coord_release_route(c, j);
  j->phase = SDC_COORD_STORING;
  sdc_coord_store_final(c, j, st, error);
}

void sdc_coord_job_fail(sdc_coord *c, sdc_coord_job *j, const char *why) {
  if (why != j->last_error) snprintf(j->last_error, sizeof j->last_error, "%s", why);
  sdc_coord_job_finish(c, j, SDC_JOB_FAILED, j->last_error);
}

/* Fails the job with the message of err, taken from this thread before anything else can replace it. */
static void sdc__fail_err(sdc_coord *c, sdc_coord_job *j, int err) {
  snprintf(j->last_error, sizeof j->last_error, "%s", sdc_errmsg(err));
  sdc_coord_job_fail(c, j, j->last_error);
}

int sdc_coord_job_retry(sdc_coord *c, sdc_coord_job *j, const char *why) {
  if (why != j->last_error) snprintf(j->last_error, sizeof j->last_error, "%s", why);
  sdc_coord_release_route(c, j);
  if (++j->attempts >= SDC_COORD_MAX_ATTEMPTS) {
    char msg[sizeof j->last_error];
    snprintf(msg, sizeof msg, "%.480s (after %d attempts)", j->last_error, j->attempts);
    sdc_coord_job_fail(c, j, msg);
    return 1;
  }
  /* the scheduler has not stepped: the same inputs are sent again, once the job is known not cancelled and
   * after a backoff doubling per try (a job that crashes its workers must not loop hot) */
  j->recheck_cancel = 1;
  int64_t backoff = SDC_COORD_RETRY_BACKOFF_MS;
  for (int k = 1; k < j->attempts && backoff < SDC_COORD_RETRY_BACKOFF_MAX_MS; k++) backoff *= 2;
  if (backoff > SDC_COORD_RETRY_BACKOFF_MAX_MS) backoff = SDC_COORD_RETRY_BACKOFF_MAX_MS;
  j->retry_at_ms = sdc_clock_mono_ms() + backoff;
  sdc_metric_add(c->tm.reissued, NULL, 1);
  sdc_coord_job_log(j, "attempt %d failed: %s; re-issuing in %lld ms", j->attempts, j->last_error, (long long)backoff);
  return 0;
}

/* The job's scheduler by name: the job's own choice or the one the model's scheduler config resolves to
 * (what sdc_denoise_init used). */
static void sdc__resolve_sched_name(const sdc_coord *c, sdc_coord_job *j) {
  sdc_sched_config sc;
  const char *name = NULL;
  if (j->g.scheduler >= 0) name = sdc_sched_name((sdc_sched_kind)j->g.scheduler);
  else if (sdc_sched_config_parse(&sc, c->model.scheduler_json, -1, "scheduler_config.json") == SDC_OK)
    name = sdc_sched_name(sc.kind);
  snprintf(j->sched_name, sizeof j->sched_name, "%s", name ? name : "unknown");
}

/* Starts the denoising loop (cond: the encoded images, or NULL), writes the claim and asks for the text. */
static void sdc__start_denoise(sdc_coord *c, sdc_coord_job *j, const sdc_image_cond *cond) {
  const sdc_model *m = &c->model;
  int err = sdc_denoise_init(&j->d, &j->g, m->scheduler_json, m->vae.latent_channels, m->unet.in_channels,
                             sdc_vae_scale(&m->vae), m->vae.scaling_factor, cond, NULL);
  if (err) {
    sdc__fail_err(c, j, err);
    return;
  }
  j->denoise_ready = 1;
  const int64_t B = sdc_denoise_batch(&j->d);
  j->D = sdc_model_context_dim(m), j->P = sdc_model_pooled_dim(m); /* SDXL: both encoders' widths; pooled */
  /* the UNet input has C_in channels (9 for an inpainting UNet); its prediction C */
  j->in = malloc((size_t)(B * j->d.C_in * j->d.h * j->d.w) * sizeof *j->in);
  j->t = malloc((size_t)B * sizeof *j->t);
  if (!j->in || !j->t) {
    sdc_coord_job_fail(c, j, "out of memory for the model input");
    return;
  }
  sdc_coord_store_running(c, j);
  sdc_coord_job_log(j, "running: %lldx%lld, %lld calls, %s, seed %llu", (long long)j->g.width, (long long)j->g.height,
                    (long long)sdc_scheduler_n_calls(j->d.sched), j->sched_name, (unsigned long long)j->g.seed);
  j->phase = SDC_COORD_TEXT;
  sdc_coord_issue(c, j);
}

/* An image input's name in errors: the key it came from, or "inline". */
static const char *sdc__img_label(const sdc_coord_job *j, int i, char *buf, size_t n) {
  const sdc_job_image *im = i ? &j->spec.mask : &j->spec.init_image;
  if (im->key) snprintf(buf, n, "%s (key \"%.200s\")", i ? "mask" : "init_image", im->key);
  else snprintf(buf, n, "%s (inline)", i ? "mask" : "init_image");
  return buf;
}

/* Format and size of the images, without decoding them: the job's size is the init image's (a side the job
 * gives must equal it: nothing is resampled, as sdc generate), and the mask's must match. */
static int sdc__probe_images(sdc_coord_job *j) {
  char label[280];
  int64_t iw = 0, ih = 0;
  for (int i = 0; i < 2 && j->img[i]; i++) {
    sdc_image_format fmt;
    int64_t w, h;
    int err = sdc_image_probe(j->img[i], j->n_img[i], sdc__img_label(j, i, label, sizeof label), &fmt, &w, &h);
    if (err) return err;
    if (i == 0) {
      iw = w, ih = h;
      if (w < SDC_MIN_IMAGE_SIDE || h < SDC_MIN_IMAGE_SIDE || w > SDC_MAX_IMAGE_SIDE || h > SDC_MAX_IMAGE_SIDE ||
          w % 8 || h % 8)
        return sdc_seterr(SDC_EINVAL, "%s: %lldx%lld pixels; an init image's sides must be multiples of 8 in [%d, %d]",
                          label, (long long)w, (long long)h, SDC_MIN_IMAGE_SIDE, SDC_MAX_IMAGE_SIDE);
      if ((j->spec.width && j->spec.width != w) || (j->spec.height && j->spec.height != h))
        return sdc_seterr(SDC_EINVAL, "%s: %lldx%lld pixels, but the job asks for %lldx%lld (leave width and height "
                          "out to take the image's size; images are not resized)", label, (long long)w, (long long)h,
                          (long long)(j->spec.width ? j->spec.width : w), (long long)(j->spec.height ? j->spec.height : h));
      j->g.width = w, j->g.height = h;
    } else if (w != iw || h != ih) {
      return sdc_seterr(SDC_EINVAL, "%s: %lldx%lld pixels, but the init image is %lldx%lld", label, (long long)w,
                        (long long)h, (long long)iw, (long long)ih);
    }
  }
  return SDC_OK;
}

/* Past the claim with every input at hand: checks the request against the model and the workers, then
 * encodes its images (ENCODE) or starts the denoising loop at once (TEXT). */
static void sdc__job_start(sdc_coord *c, sdc_coord_job *j) {
  const sdc_model *m = &c->model;
  int err = j->img[0] ? sdc__probe_images(j) : SDC_OK;
  if (!err) err = sdc_gen_params_check(&j->g, c->max_pixels);
  if (err) {
    sdc__fail_err(c, j, err);
    return;
  }
  /* the memory of the live workers bounds the job too: refused at once, naming who set the limit */
  j->pixel_images = (uint64_t)j->g.width * (uint64_t)j->g.height * (uint64_t)j->g.num_images;
  for (int s = SDC_STAGE_UNET_DOWN; s < SDC_STAGE_END; s++) {
    uint64_t cap;
    const int w = sdc_registry_largest(&c->reg, (Sdcpb__Stage)s, &cap);
    /* a VAE worker also encodes an image job's inputs: two images of its size (route.c) */
    uint64_t need = j->pixel_images;
    if (s == SDC_STAGE_VAE && j->g.kind != SDC_GEN_TXT2IMG && 2 * (uint64_t)j->g.width * (uint64_t)j->g.height > need)
      need = 2 * (uint64_t)j->g.width * (uint64_t)j->g.height;
    if (w < 0 || !cap || need <= cap) continue;
    char why[sizeof j->last_error];
    snprintf(why, sizeof why,
             "%lldx%lld with num_images %lld is %llu pixel-images%s; the largest the live %s workers take is %llu "
             "(worker %s, from its %llu MiB of memory): lower width, height or num_images",
             (long long)j->g.width, (long long)j->g.height, (long long)j->g.num_images, (unsigned long long)need,
             need != j->pixel_images ? " (its encode: init and masked image)" : "", sdc_stage_name((sdc_stage)s),
             (unsigned long long)cap,
             c->reg.w[w].id, (unsigned long long)(c->reg.w[w].memory_bytes >> 20));
    sdc_coord_job_fail(c, j, why);
    return;
  }
  sdc__resolve_sched_name(c, j);
  /* the job may ask for a shorter deadline than the coordinator's, never a longer one */
  const uint64_t timeout_ms = j->spec.timeout_ms > 0 && (uint64_t)j->spec.timeout_ms < c->job_timeout_ms
                                  ? (uint64_t)j->spec.timeout_ms
                                  : c->job_timeout_ms;
  j->timeout_ms = timeout_ms;
  j->deadline_ms = sdc_clock_mono_ms() + (int64_t)timeout_ms;
  if (j->g.kind != SDC_GEN_TXT2IMG) {
    /* the VAE worker encodes the images; the loop starts from its answer (sdc_coord_job_on_output) */
    j->need_init = sdc_denoise_needs_init(&j->g, m->unet.in_channels);
    sdc_coord_job_log(j, "encoding the %s: %lldx%lld, strength %g", j->img[1] ? "init image and mask" : "init image",
                      (long long)j->g.width, (long long)j->g.height, j->g.strength);
    j->phase = SDC_COORD_ENCODE;
    sdc_coord_issue(c, j);
    return;
  }
  sdc__start_denoise(c, j, NULL);
}

void sdc_coord_job_run(sdc_coord *c, sdc_coord_job *j, const char *recorded_seed) {
  /* resolve what the job left to the model */
  const sdc_model *m = &c->model;
  const int64_t native = m->unet.sample_size * sdc_vae_scale(&m->vae);
  const int has_init = j->spec.init_image.key || j->spec.init_image.data;
  const int has_mask = j->spec.mask.key || j->spec.mask.data;
  j->g = (sdc_gen_params){.prompt = j->spec.prompt,
                          .negative_prompt = j->spec.negative_prompt,
                          .width = j->spec.width ? j->spec.width : native,
                          .height = j->spec.height ? j->spec.height : native,
                          .steps = j->spec.steps,
                          .guidance_scale = j->spec.guidance_scale,
                          .seed = j->spec.seed,
                          .scheduler = j->spec.scheduler[0] ? sdc_sched_parse_name(j->spec.scheduler) : -1,
                          .num_images = j->spec.num_images,
                          .kind = has_mask ? SDC_GEN_INPAINT : has_init ? SDC_GEN_IMG2IMG : SDC_GEN_TXT2IMG,
                          .strength = has_init ? sdc_job_strength(&j->spec) : 1.0,
                          .prompt_2 = j->spec.prompt_2,
                          .negative_prompt_2 = j->spec.negative_prompt_2,
                          .original_size = {j->spec.original_size[0], j->spec.original_size[1]},
                          .target_size = {j->spec.target_size[0], j->spec.target_size[1]},
                          .has_crop = j->spec.has_crop,
                          .crops_coords_top_left = {j->spec.crops_coords_top_left[0],
                                                    j->spec.crops_coords_top_left[1]}};
  /* what the model takes, before anything is read or encoded: SDXL's fields on an SD 1.x model, an image input
   * or a LoRA on SDXL, each fail the job in one line naming the field (as sdc generate refuses them) */
  const sdc_model_caps caps = sdc_coord_model_caps(m);
  int err = sdc_gen_params_check_model(&j->g, &caps);
  if (!err && j->spec.n_loras && m->has_text_encoder_2)
    err = sdc_seterr(SDC_EUNSUPPORTED, "loras: LoRAs are not supported for SDXL models yet");
  if (err) {
    sdc__fail_err(c, j, err);
    return;
  }
  sdc_text_plan_make(&j->g, &caps, &j->plan);
  /* a seed recorded by an earlier claim wins: a takeover makes the same image */
  if (!j->spec.has_seed && recorded_seed)
    j->g.seed = strtoull(recorded_seed, NULL, 10);
  else if (!j->spec.has_seed)
    j->g.seed = ((uint64_t)rand() << 31 ^ (uint64_t)rand() ^ sdc_clock_unix_ms()) & (SDC_SEED_LIMIT - 1);
  /* inline images are the job's own bytes; keys are read first (sdc_coord_job_images) */
  const sdc_job_image *im[2] = {&j->spec.init_image, &j->spec.mask};
  int keys = 0;
  for (int i = 0; i < 2; i++) {
    if (im[i]->data) j->img[i] = im[i]->data, j->n_img[i] = im[i]->n;
    keys |= im[i]->key != NULL;
  }
  if (keys) {
    sdc_coord_fetch_images(c, j);
    return;
  }
  sdc__job_start(c, j);
}

void sdc_coord_job_images(sdc_coord *c, sdc_coord_job *j, const char *why) {
  if (why) sdc_coord_job_fail(c, j, why);
  else sdc__job_start(c, j);
}

/* The text stage's answer laid out as the in-process pipeline lays it out (sdc_text_layout): context (B, L, D) =
 * [uncond x N; cond x N] under guidance (zeros for uncond when the plan says so), else cond x N; for SDXL the
 * pooled rows (B, P) alike and the time ids (B, SDC_TIME_IDS). The stage encodes the plan's texts, one row each:
 * output (n_texts, L, D), pooled (n_texts, P). */
static int sdc__take_context(sdc_coord_job *j, const Sdcpb__StageReply *rep) {
  const int64_t T = j->plan.n_texts, N = j->g.num_images, B = sdc_denoise_batch(&j->d), P = j->P;
  int nd;
  int64_t dims[SDC_MAX_DIMS];
  int err = sdc_wire_tensor_check(rep->output, "context", &nd, dims);
  if (err) return err;
  if (nd != 3 || dims[0] != T || dims[1] < 1 || dims[1] > SDC_MAX_CONTEXT_TOKENS || dims[2] != j->D)
    return sdc_seterr(SDC_EPROTOCOL, "context: shape is not (%lld, 1..%d, %lld)", (long long)T, SDC_MAX_CONTEXT_TOKENS,
                      (long long)j->D);
  if (!P && rep->pooled) return sdc_seterr(SDC_EPROTOCOL, "pooled: sent for a model with one text encoder");
  if (P && !rep->pooled) return sdc_seterr(SDC_EPROTOCOL, "pooled: missing from the text reply (SDXL needs it)");
  const int64_t L = dims[1];
  float *rows = malloc((size_t)(T * L * j->D) * sizeof *rows);
  float *prows = P ? malloc((size_t)(T * P) * sizeof *prows) : NULL;
  free(j->ctx), free(j->pooled), free(j->time_ids);
  j->ctx = malloc((size_t)(B * L * j->D) * sizeof *j->ctx);
  j->pooled = P ? malloc((size_t)(B * P) * sizeof *j->pooled) : NULL;
  j->time_ids = P ? malloc((size_t)(B * SDC_TIME_IDS) * sizeof *j->time_ids) : NULL;
  if (!rows || !j->ctx || (P && (!prows || !j->pooled || !j->time_ids)))
    err = sdc_seterr(SDC_ENOMEM, "context: out of memory");
  if (!err) err = sdc_wire_tensor_get(rep->output, "context", 3, (int64_t[]){T, L, j->D}, rows, NULL);
  if (!err && P) err = sdc_wire_tensor_get(rep->pooled, "pooled", 2, (int64_t[]){T, P}, prows, NULL);
  if (!err) {
    j->L = L;
    sdc_text_layout(&j->plan, N, L, j->D, P, rows, prows, j->ctx, j->pooled);
    if (P) sdc_gen_time_ids(&j->g, B, j->time_ids);
  }
  free(rows), free(prows);
  return err;
}

/* One tensor of the encode reply into a heap copy of shape dims (or NULL when absent and not wanted). */
static int sdc__take_cond(const Sdcpb__Tensor *t, const char *what, int want, int ndim, const int64_t *dims, float **out) {
  *out = NULL;
  if (!want) return t ? sdc_seterr(SDC_EPROTOCOL, "vae encode: %s sent but not asked for", what) : SDC_OK;
  if (!t) return sdc_seterr(SDC_EPROTOCOL, "vae encode: no %s in the reply", what);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= dims[i];
  *out = malloc((size_t)n * sizeof **out);
  if (!*out) return sdc_seterr(SDC_ENOMEM, "vae encode: out of memory for %s", what);
  return sdc_wire_tensor_get(t, what, ndim, dims, *out, NULL);
}

/* The VAE worker's sdc_image_cond: shapes checked against the job's latent size, copied (ours). */
static int sdc__take_encoded(sdc_coord *c, sdc_coord_job *j, const Sdcpb__StageReply *rep) {
  const sdc_model *m = &c->model;
  const int64_t C = m->vae.latent_channels, s = sdc_vae_scale(&m->vae), h = j->g.height / s, w = j->g.width / s;
  sdc_image_cond *cd = &j->cond;
  free(cd->init_moments), free(cd->masked_moments), free(cd->mask);
  *cd = (sdc_image_cond){.C = C, .h = h, .w = w};
  const int mask = j->img[1] != NULL;
  int err = sdc__take_cond(rep->init_moments, "init_moments", j->need_init, 4, (int64_t[]){2, C, h, w}, &cd->init_moments);
  if (!err) err = sdc__take_cond(rep->masked_moments, "masked_moments", mask, 4, (int64_t[]){2, C, h, w}, &cd->masked_moments);
  if (!err) err = sdc__take_cond(rep->mask, "mask", mask, 4, (int64_t[]){1, 1, h, w}, &cd->mask);
  return err;
}

void sdc_coord_job_on_output(sdc_coord *c, sdc_coord_job *j, const Sdcpb__StageReply *rep) {
  int err = SDC_OK;
  if (j->phase == SDC_COORD_ENCODE) {
    if (!(err = sdc__take_encoded(c, j, rep))) {
      sdc__start_denoise(c, j, &j->cond);
      return;
    }
  } else if (j->phase == SDC_COORD_TEXT) {
    err = sdc__take_context(j, rep);
    if (!err) {
      j->phase = SDC_COORD_DENOISE;
      sdc_coord_issue(c, j);
    }
  } else if (j->phase == SDC_COORD_DENOISE) {
    if (sdc_denoise_calls_left(&j->d) == 0) return; /* the move to VAE is made by the step's cancel check */
    const int64_t B = sdc_denoise_batch(&j->d);
    float *pred = j->in; /* the input is no longer needed: reuse its buffer */
    err = sdc_wire_tensor_get(rep->output, "prediction", 4, (int64_t[]){B, j->d.C, j->d.h, j->d.w}, pred, NULL);
    if (!err) err = sdc_denoise_step(&j->d, pred);
    if (!err) {
      c->steps_done++;
      sdc_coord_store_step(c, j);
    }
  } else if (j->phase == SDC_COORD_VAE) {
    if ((int64_t)rep->n_images != j->d.N)
      err = sdc_seterr(SDC_EPROTOCOL, "vae returned %zu images, expected %lld", rep->n_images, (long long)j->d.N);
    else
      sdc_coord_store_images(c, j, rep->images, rep->n_images);
  }
  if (err) sdc__fail_err(c, j, err);
}

void sdc_coord_job_cancel_checked(sdc_coord *c, sdc_coord_job *j, int cancelled) {
  if (cancelled) {
    sdc_coord_broadcast_cancel(c, j->id);
    sdc_coord_job_finish(c, j, SDC_JOB_CANCELLED, NULL);
    return;
  }
  if (sdc_denoise_calls_left(&j->d) == 0) j->phase = SDC_COORD_VAE;
  sdc_coord_issue(c, j);
}
