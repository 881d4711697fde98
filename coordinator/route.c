/* route.c - the coordinator's ZeroMQ side: stage requests and replies, re-issue, worker registration and heartbeats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "log.h"
#include "wire.h"

/* Answers a draining worker: how many requests we have routed through it and not seen answered. We
 * route nothing new to it, so once this is 0 nothing more can reach it and it may deregister. */
static void sdc__send_drain_status(sdc_coord *c, int i) {
  sdc_worker_info *w = &c->reg.w[i];
  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = w->id;
  hb.in_flight = (uint32_t)w->outstanding;
  hb.draining = 1;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT;
  env.heartbeat = &hb;
  sdc_zmq_send(c->router, w->id, strlen(w->id), &env, ZMQ_DONTWAIT);
}

void sdc_coord_release_route(sdc_coord *c, sdc_coord_job *j) {
  for (int i = 0; i < j->n_route; i++) {
    sdc_worker_info *w = j->route[i] >= 0 ? &c->reg.w[j->route[i]] : NULL;
    if (!w || w->outstanding <= 0) continue;
    /* a draining worker hears at once that its last request is answered */
    if (--w->outstanding == 0 && w->draining && w->alive) sdc__send_drain_status(c, j->route[i]);
  }
  j->n_route = 0;
}

/* Picks one replica per stage in `stages` (in order) and sends req to the first. SDC_EAGAIN (no message
 * set) when a stage has no replica now. */
static int sdc__route_and_send(sdc_coord *c, sdc_coord_job *j, Sdcpb__StageRequest *req, const sdc_stage *stages,
                               int n) {
  Sdcpb__Hop hops[SDC_COORD_MAX_HOPS], *hp[SDC_COORD_MAX_HOPS];
  /* an encode holds two images of the job's size at most (init and masked), whatever num_images says */
  const uint64_t pixels = j->phase == SDC_COORD_ENCODE ? 2 * (uint64_t)j->g.width * (uint64_t)j->g.height
                                                       : j->pixel_images;
  for (int i = 0; i < n; i++) {
    int w = sdc_registry_pick_for(&c->reg, (Sdcpb__Stage)stages[i], pixels);
    if (w < 0) return SDC_EAGAIN; /* the tick tries again */
    sdcpb__hop__init(&hops[i]);
    hops[i].stage = (Sdcpb__Stage)stages[i];
    hops[i].worker_id = c->reg.w[w].id;
    hops[i].endpoint = c->reg.w[w].endpoint;
    hops[i].curve_public_key = c->reg.w[w].key;
    hp[i] = &hops[i];
    j->route[i] = w;
    j->route_stage[i] = stages[i];
  }
  req->job_id = j->id;
  req->request_id = j->req_id = ++c->next_req_id;
  req->deadline_unix_ms = sdc_clock_unix_ms() + c->step_timeout_ms;
  req->n_route = (size_t)n, req->route = hp;
  req->hop = 0;
  req->wire_dtype = c->wire_dtype;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  env.request = req;
  size_t n_bytes;
  int err = sdc_zmq_send_n(c->reg.w[j->route[0]].push, NULL, 0, &env, ZMQ_DONTWAIT, &n_bytes);
  if (err) return err;
  sdc_node_metrics_link(&c->tm.node, SDC_STAGE_INVALID, stages[0], "sent", n_bytes);
  j->n_route = n;
  for (int i = 0; i < n; i++) c->reg.w[j->route[i]].outstanding++;
  j->issued_ms = sdc_clock_mono_ms();
  j->issued_ns = sdc_clock_mono_ns();
  return SDC_OK;
}

void sdc_coord_issue(sdc_coord *c, sdc_coord_job *j) {
  if (j->n_route) return; /* in flight */
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  int err;
  void *owned[4] = {0};
  /* the job's LoRAs travel with its text and UNet requests: each worker merges its own part */
  Sdcpb__LoraRef lr[SDC_MAX_LORAS], *lp[SDC_MAX_LORAS];
  for (int i = 0; i < j->spec.n_loras && i < SDC_MAX_LORAS; i++) {
    sdcpb__lora_ref__init(&lr[i]);
    lr[i].name = j->spec.loras[i].name, lr[i].multiplier = j->spec.loras[i].multiplier;
    lp[i] = &lr[i];
  }
  if (j->phase == SDC_COORD_TEXT || j->phase == SDC_COORD_DENOISE) req.n_loras = (size_t)j->spec.n_loras, req.loras = lp;
  if (j->phase == SDC_COORD_ENCODE) {
    req.encode = 1;
    req.init_image = (ProtobufCBinaryData){j->n_img[0], j->img[0]};
    if (j->img[1]) req.mask_image = (ProtobufCBinaryData){j->n_img[1], j->img[1]};
    req.width = (uint32_t)j->g.width, req.height = (uint32_t)j->g.height;
    req.need_init = j->need_init;
    static const sdc_stage st[] = {SDC_STAGE_VAE};
    err = sdc__route_and_send(c, j, &req, st, 1);
  } else if (j->phase == SDC_COORD_TEXT) {
    /* the plan's texts (sdc_text_plan_make, as in-process): [negative, prompt] under guidance, [prompt] without or
     * when the uncond rows are zeros; SDXL's second-encoder texts only where one differs from its first */
    char *prompts[2], *prompts_2[2];
    int differ = 0;
    for (int i = 0; i < j->plan.n_texts; i++) {
      prompts[i] = (char *)j->plan.text[i], prompts_2[i] = (char *)j->plan.text_2[i];
      differ |= strcmp(prompts[i], prompts_2[i]) != 0;
    }
    req.n_prompts = (size_t)j->plan.n_texts, req.prompts = prompts;
    if (c->model.has_text_encoder_2 && differ) req.n_prompts_2 = (size_t)j->plan.n_texts, req.prompts_2 = prompts_2;
    static const sdc_stage st[] = {SDC_STAGE_TEXT};
    err = sdc__route_and_send(c, j, &req, st, 1);
  } else if (j->phase == SDC_COORD_DENOISE) {
    if (sdc_denoise_calls_left(&j->d) == 0) return; /* the move to VAE is made by the step's cancel check */
    const int64_t B = sdc_denoise_batch(&j->d);
    sdc_denoise_model_input(&j->d, j->in, j->t);
    Sdcpb__Tensor sample = SDCPB__TENSOR__INIT, ctx = SDCPB__TENSOR__INIT, te = SDCPB__TENSOR__INIT,
                  ids = SDCPB__TENSOR__INIT;
    err = sdc_wire_tensor_set(&sample, j->in, 4, (int64_t[]){B, j->d.C_in, j->d.h, j->d.w}, c->wire_dtype, &owned[0]);
    if (!err) err = sdc_wire_tensor_set(&ctx, j->ctx, 3, (int64_t[]){B, j->L, j->D}, c->wire_dtype, &owned[1]);
    req.sample = &sample, req.context = &ctx;
    if (!err && j->pooled) { /* SDXL: unet-down folds them into temb */
      err = sdc_wire_tensor_set(&te, j->pooled, 2, (int64_t[]){B, j->P}, c->wire_dtype, &owned[2]);
      /* sizes in f32 whatever the wire dtype: bf16 would round an original size of 1023 to 1024 */
      if (!err)
        err = sdc_wire_tensor_set(&ids, j->time_ids, 2, (int64_t[]){B, SDC_TIME_IDS}, SDCPB__DTYPE__F32, &owned[3]);
      req.text_embeds = &te, req.time_ids = &ids;
    }
    req.n_timestep = (size_t)B, req.timestep = j->t;
    req.step = (uint32_t)(sdc_scheduler_n_calls(j->d.sched) - sdc_denoise_calls_left(&j->d));
    static const sdc_stage st[] = {SDC_STAGE_UNET_DOWN, SDC_STAGE_UNET_MID, SDC_STAGE_UNET_UP};
    if (!err) err = sdc__route_and_send(c, j, &req, st, 3);
  } else if (j->phase == SDC_COORD_VAE) {
    sdc_denoise_vae_input(&j->d, j->in);
    Sdcpb__Tensor lat = SDCPB__TENSOR__INIT;
    err = sdc_wire_tensor_set(&lat, j->in, 4, (int64_t[]){j->d.N, j->d.C, j->d.h, j->d.w}, SDCPB__DTYPE__F32, &owned[0]);
    char *texts[SDC_MAX_IMAGES];
    char buf[SDC_MAX_IMAGES][8192], origin[SDC_MAX_JOB_ID + 16 + SDC_MAX_LORAS * (SDC_MAX_LORA_NAME + 40)];
    int o = snprintf(origin, sizeof origin, "Job: %s", j->id);
    /* the LoRAs as sdc generate names them (file:multiplier) */
    for (int i = 0; i < j->spec.n_loras && o > 0 && (size_t)o < sizeof origin; i++)
      o += snprintf(origin + o, sizeof origin - (size_t)o, "%s%s.safetensors:%g", i ? " " : ", LoRA: ",
                    j->spec.loras[i].name, j->spec.loras[i].multiplier);
    sdc_gen_params shown = j->g; /* the PNG names the scheduler that ran, the model's own included */
    if (shown.scheduler < 0) shown.scheduler = sdc_sched_parse_name(j->sched_name);
    for (int64_t i = 0; i < j->d.N && i < SDC_MAX_IMAGES; i++) {
      sdc_gen_params_text(&shown, i, origin, buf[i], sizeof buf[i]);
      texts[i] = buf[i];
    }
    req.latent = &lat;
    req.n_png_text = (size_t)j->d.N, req.png_text = texts;
    static const sdc_stage st[] = {SDC_STAGE_VAE};
    if (!err) err = sdc__route_and_send(c, j, &req, st, 1);
  } else {
    return;
  }
  if (err && err != SDC_EAGAIN) {
    char msg[sizeof j->last_error];
    snprintf(msg, sizeof msg, "could not send: %s", sdc_errmsg(err));
    sdc_coord_job_fail(c, j, msg);
  }
  for (int i = 0; i < 4; i++) free(owned[i]);
}

/* Adds the workers of a completed request to the job's route, each stage listing each worker once. */
static void sdc__note_route(sdc_coord_job *j, const Sdcpb__StageReply *rep) {
  for (int i = 0; i < j->n_route; i++) {
    const char *id = (size_t)i < rep->n_route_taken ? rep->route_taken[i] : "?";
    char *list = j->workers[j->route_stage[i]];
    const size_t cap = sizeof j->workers[0], len = strlen(list), n = strlen(id);
    int seen = 0;
    for (const char *p = list; *p && !seen; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
      size_t k = strcspn(p, ",");
      seen = (k == n && memcmp(p, id, n) == 0) || (k == 3 && memcmp(p, "...", 3) == 0);
    }
    if (seen) continue;
    if (len + (len ? 1 : 0) + n + 4 < cap) snprintf(list + len, cap - len, "%s%s", len ? "," : "", id);
    else if (len + 4 < cap) snprintf(list + len, cap - len, "%s...", len ? "," : ""); /* full: the rest is "..." */
  }
}

/* Whether the connection (routing id `rid`, authenticated key name `user`) is worker slot i's own. */
static int sdc__is_worker(const sdc_coord *c, int i, const char *rid, const char *user) {
  const sdc_worker_info *w = &c->reg.w[i];
  return strcmp(w->id, rid) == 0 && strcmp(w->key_name, user) == 0;
}

/* A reply from the ROUTER: stale ones (re-issued, cancelled) are dropped; an error counts an attempt. Only
 * the route's last worker sends a result; any worker on the route may report its hop's error. */
static void sdc__on_reply(sdc_coord *c, const char *rid, const char *user, const Sdcpb__StageReply *rep) {
  sdc_coord_job *j = c->jobs;
  while (j && !(j->req_id == rep->request_id && strcmp(j->id, rep->job_id) == 0)) j = j->next;
  if (j && j->n_route && j->phase != SDC_COORD_STORING) {
    const int failed = rep->error && rep->error[0];
    int from_route = sdc__is_worker(c, j->route[j->n_route - 1], rid, user);
    for (int i = 0; failed && i < j->n_route - 1; i++) from_route |= sdc__is_worker(c, j->route[i], rid, user);
    if (!from_route) {
      sdc_node_metrics_drop(&c->tm.node, "sender");
      sdc_coord_job_log(j, "dropped a reply to request %llu from '%s' (key '%s'): not a worker of its route",
                        (unsigned long long)rep->request_id, rid, user);
      return;
    }
  }
  if (!j || !j->n_route || j->phase == SDC_COORD_STORING) {
    /* stale: answered after its step was re-issued, or its job cancelled or gone */
    sdc_node_metrics_drop(&c->tm.node, "late");
    sdc_log(rep->job_id, rep->step, 0, "dropped a late %s reply (request %llu)", sdc_stage_name((sdc_stage)rep->stage),
            (unsigned long long)rep->request_id);
    return;
  }
  /* the stage that answers must be the one this phase waits for */
  const sdc_stage want = j->phase == SDC_COORD_TEXT      ? SDC_STAGE_TEXT
                         : j->phase == SDC_COORD_ENCODE  ? SDC_STAGE_VAE
                         : j->phase == SDC_COORD_DENOISE ? SDC_STAGE_UNET_UP
                                                         : SDC_STAGE_VAE;
  const int failed = rep->error && rep->error[0];
  if ((int)rep->stage != (int)want && !failed) {
    sdc_node_metrics_drop(&c->tm.node, "malformed");
    sdc_coord_job_log(j, "dropped a %s reply while waiting for %s", sdc_stage_name(rep->stage), sdc_stage_name(want));
    return;
  }
  static const char *const phase_stage[] = {[SDC_COORD_ENCODE] = "vae", [SDC_COORD_TEXT] = "text", [SDC_COORD_DENOISE] = "unet",
                                            [SDC_COORD_VAE] = "vae"};
  sdc_metric_observe(c->tm.step_latency, &phase_stage[j->phase], (double)(sdc_clock_mono_ns() - j->issued_ns) * 1e-9);
  for (int i = 0; i < j->n_route; i++) c->reg.w[j->route[i]].served++;
  if (failed && rep->input_error) { /* the job's own input: it fails the same way on any worker */
    sdc_coord_job_fail(c, j, rep->error);
    return;
  }
  if (failed) {
    if (!sdc_coord_job_retry(c, j, rep->error)) sdc_coord_poll_cancel(c, j); /* re-issued unless cancelled */
    return;
  }
  sdc__note_route(j, rep);
  sdc_coord_release_route(c, j);
  j->attempts = 0;
  sdc_coord_job_on_output(c, j, rep);
}

void sdc_coord_broadcast_cancel(sdc_coord *c, const char *job_id) {
  Sdcpb__Cancel msg = SDCPB__CANCEL__INIT;
  msg.job_id = (char *)job_id;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL;
  env.cancel = &msg;
  for (int i = 0; i < c->reg.n; i++)
    if (c->reg.w[i].alive) sdc_zmq_send(c->router, c->reg.w[i].id, strlen(c->reg.w[i].id), &env, ZMQ_DONTWAIT);
}

void sdc_coord_route_tick(sdc_coord *c, int64_t now_ms) {
  int died[SDC_MAX_WORKERS];
  int n_died = sdc_registry_expire(&c->reg, (uint64_t)now_ms, (uint64_t)c->dead_after_ms, died);
  for (int i = 0; i < n_died; i++)
    sdc_log(NULL, -1, 0, "worker %s is dead (no heartbeat for %lld ms)", c->reg.w[died[i]].id, (long long)c->dead_after_ms);
  for (sdc_coord_job *j = c->jobs, *next; j; j = next) {
    next = j->next; /* a failed job is freed only once Redis answers, but stay safe */
    if (j->phase == SDC_COORD_STORING || j->phase == SDC_COORD_CHECKING || j->left) continue;
    if (j->deadline_ms && now_ms > j->deadline_ms) {
      /* past the job's deadline: its work stops on every worker, the job fails */
      char why[160];
      snprintf(why, sizeof why, "job timed out: still running after %llu ms (%s)", (unsigned long long)j->timeout_ms,
               j->timeout_ms < c->job_timeout_ms ? "the job's timeout_ms" : "--job-timeout-ms");
      sdc_coord_broadcast_cancel(c, j->id);
      sdc_coord_job_fail(c, j, why);
      continue;
    }
    if (j->awaiting_redis) continue;
    int lost = 0;
    for (int i = 0; i < j->n_route; i++) lost |= !c->reg.w[j->route[i]].alive;
    if (j->n_route && (lost || now_ms > j->issued_ms + (int64_t)c->step_timeout_ms)) {
      /* a replica died or the step timed out: the same step again elsewhere, same inputs */
      if (sdc_coord_job_retry(c, j, lost ? "a worker on the route died" : "step timed out")) continue;
    }
    if (!j->n_route && now_ms < j->retry_at_ms) continue; /* backing off after a failed try */
    if (!j->n_route && j->recheck_cancel) sdc_coord_poll_cancel(c, j); /* issued once known not cancelled */
    else if (!j->n_route) sdc_coord_issue(c, j);
    else if (now_ms - j->issued_ms >= SDC_COORD_CANCEL_POLL_MS && now_ms - j->cancel_polled_ms >= SDC_COORD_CANCEL_POLL_MS)
      sdc_coord_poll_cancel(c, j); /* a long step: a cancel stops it now, not at its end */
  }
  /* a dead worker's slot is freed once no request of ours names it (outstanding 0): its socket closes and
   * the slot takes the next new worker, so workers restarting under new ids never fill the registry */
  for (int i = 0; i < c->reg.n; i++) {
    sdc_worker_info *w = &c->reg.w[i];
    if (w->alive || !w->push || w->outstanding > 0) continue;
    zmq_close(w->push);
    w->push = NULL;
  }
}

/* ------------------------------------------------------------- workers */

static void sdc__on_register(sdc_coord *c, const uint8_t *rid, size_t rid_n, const char *user,
                             const Sdcpb__Register *r) {
  Sdcpb__Welcome wel = SDCPB__WELCOME__INIT;
  wel.coordinator_id = c->id;
  wel.heartbeat_ms = (uint32_t)c->heartbeat_ms;
  char id[128];
  snprintf(id, sizeof id, "%.*s", (int)rid_n, (const char *)rid);
  unsigned stages = 0;
  for (size_t i = 0; i < r->n_stages; i++)
    if ((int)r->stages[i] >= SDC_STAGE_TEXT && (int)r->stages[i] < SDC_STAGE_END) stages |= 1u << r->stages[i];
  char reason[256] = "";
  int known = sdc_registry_find(&c->reg, id);
  /* ours is not told: a stranger must not learn what to claim (the log has both) */
  if (strcmp(r->model_fingerprint, c->fingerprint) != 0)
    snprintf(reason, sizeof reason, "model fingerprint differs from the coordinator's (same weights, configs and "
             "--precision needed)");
  else if (strcmp(id, r->worker_id) != 0)
    snprintf(reason, sizeof reason, "worker id '%s' differs from its socket identity '%s'", r->worker_id, id);
  else if (!stages || !r->data_endpoint[0])
    snprintf(reason, sizeof reason, "no stages or no data endpoint");
  else if (c->curve.on && !sdc_curve_key_of(&c->curve, user))
    snprintf(reason, sizeof reason, "no authenticated key"); /* ZAP admits none such: defence in depth */
  else if (known >= 0 && c->reg.w[known].alive && strcmp(c->reg.w[known].key_name, user) != 0)
    snprintf(reason, sizeof reason, "worker id '%s' is held by another key", id); /* bound while alive */
  /* a known worker registering again has restarted: what it held is lost, so
   * the steps routed through it are issued again (same inputs, same image) */
  if (!reason[0] && known >= 0)
    for (sdc_coord_job *j = c->jobs, *next; j; j = next) {
      next = j->next;
      for (int k = 0; k < j->n_route; k++)
        if (j->route[k] == known) {
          /* a try like any other: counted against SDC_COORD_MAX_ATTEMPTS with its backoff, so a job that
           * crashes its worker every time ends failed (dead-lettered) instead of being re-issued forever */
          char why[SDC_MAX_WORKER_ID + 64];
          snprintf(why, sizeof why, "worker %s restarted with this step in flight", id);
          sdc_coord_job_retry(c, j, why);
          break;
        }
    }
  int i = reason[0] ? -1 : sdc_registry_upsert(&c->reg, id, r->data_endpoint, stages, (uint64_t)sdc_clock_mono_ms());
  if (!reason[0] && i < 0) snprintf(reason, sizeof reason, "too many workers (%d)", SDC_MAX_WORKERS);
  if (i >= 0) {
    sdc_worker_info *w = &c->reg.w[i];
    snprintf(w->key_name, sizeof w->key_name, "%s", user);
    snprintf(w->key, sizeof w->key, "%s", c->curve.on ? sdc_curve_key_of(&c->curve, user) : "");
    w->max_pixel_images = r->max_pixel_images, w->memory_bytes = r->memory_bytes;
    if (w->push) zmq_close(w->push);
    w->push = zmq_socket(c->zctx, ZMQ_PUSH);
    sdc_zmq_configure(w->push);
    /* its data socket is a CURVE server with the key it registered with */
    if (c->curve.on && sdc_curve_client(&c->curve, w->push, w->key) != SDC_OK) {
      snprintf(reason, sizeof reason, "%s", sdc_errmsg(SDC_EINVAL));
      zmq_close(w->push);
      w->push = NULL, w->alive = 0;
    } else if (zmq_connect(w->push, w->endpoint) != 0) {
      snprintf(reason, sizeof reason, "cannot connect to %s: %s", w->endpoint, zmq_strerror(zmq_errno()));
      zmq_close(w->push);
      w->push = NULL, w->alive = 0;
    } else {
      sdc_log(NULL, -1, 0, "worker %s registered: stages 0x%x at %s (%s%s%s%d of %d registry slots in use)", id, stages,
              w->endpoint, user[0] ? "key " : "", user, user[0] ? "; " : "", sdc_registry_used(&c->reg), SDC_MAX_WORKERS);
    }
  }
  wel.accepted = !reason[0];
  wel.reason = reason;
  if (reason[0]) {
    sdc_node_metrics_drop(&c->tm.node, "refused");
    sdc_log(NULL, -1, 0, "refused worker %s (key '%s', fingerprint %.32s, ours %s): %s", id, user, r->model_fingerprint,
            c->fingerprint, reason);
  }
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_WELCOME;
  env.welcome = &wel;
  sdc_zmq_send(c->router, rid, rid_n, &env, ZMQ_DONTWAIT);
}

/* A drained worker's last word: it holds nothing, so it is forgotten, not dead; nothing is re-issued.
 * One that still had requests of ours outstanding (its drain timed out) is treated as dead at once:
 * the tick re-issues those steps. */
static void sdc__on_deregister(sdc_coord *c, int i) {
  sdc_worker_info *w = &c->reg.w[i];
  if (w->outstanding)
    sdc_log(NULL, -1, 0, "worker %s deregistered with %d requests outstanding: they are re-issued", w->id,
            w->outstanding);
  else
    sdc_log(NULL, -1, 0, "worker %s drained and deregistered (served %llu hops for us)", w->id,
            (unsigned long long)w->served);
  w->alive = 0, w->draining = 0;
  for (sdc_coord_job *j = c->jobs; j; j = j->next)
    for (int k = 0; k < j->n_route; k++)
      if (j->route[k] == i) {
        char why[SDC_MAX_WORKER_ID + 64];
        snprintf(why, sizeof why, "worker %s left with this step in flight", w->id);
        sdc_coord_job_retry(c, j, why); /* released now: the slot may be reused at once */
        break;
      }
  if (w->push) zmq_close(w->push);
  w->push = NULL;
}

void sdc_coord_forget_workers(sdc_coord *c) {
  Sdcpb__Register ask = SDCPB__REGISTER__INIT;
  ask.worker_id = ask.model_fingerprint = ask.data_endpoint = "";
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
  env.register_ = &ask;
  for (int i = 0; i < c->reg.n; i++)
    if (c->reg.w[i].alive) sdc_zmq_send(c->router, c->reg.w[i].id, strlen(c->reg.w[i].id), &env, ZMQ_DONTWAIT);
}

static void sdc__on_heartbeat(sdc_coord *c, const uint8_t *rid, size_t rid_n, const char *user,
                              const Sdcpb__Heartbeat *hb) {
  int i = sdc_registry_find(&c->reg, hb->worker_id);
  char from[SDC_MAX_WORKER_ID];
  snprintf(from, sizeof from, "%.*s", (int)rid_n, (const char *)rid);
  if (i >= 0 && c->reg.w[i].alive && !sdc__is_worker(c, i, from, user)) {
    /* only X's own connection speaks for X: a forged beat could mark it draining or deregister it */
    sdc_node_metrics_drop(&c->tm.node, "sender");
    sdc_log(NULL, -1, 0, "dropped a heartbeat naming worker %s from '%s' (key '%s')", hb->worker_id, from, user);
    return;
  }
  if (i >= 0 && c->reg.w[i].alive) {
    sdc_worker_info *w = &c->reg.w[i];
    w->last_seen_ms = (uint64_t)sdc_clock_mono_ms();
    if (hb->deregister) {
      sdc__on_deregister(c, i);
      return;
    }
    if (hb->draining && !w->draining)
      sdc_log(NULL, -1, 0, "worker %s is draining: nothing new is routed to it; %d requests through it outstanding",
              w->id, w->outstanding);
    w->draining = hb->draining;
    if (w->draining) sdc__send_drain_status(c, i);
    return;
  }
  if (hb->deregister) return; /* already forgotten */
  /* unknown (we restarted, or declared it dead): ask it to register again */
  Sdcpb__Register ask = SDCPB__REGISTER__INIT;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER;
  env.register_ = &ask;
  ask.worker_id = "";
  ask.model_fingerprint = "";
  ask.data_endpoint = "";
  sdc_zmq_send(c->router, rid, rid_n, &env, ZMQ_DONTWAIT);
}

void sdc_coord_drain_router(sdc_coord *c) {
  uint8_t rid[SDC_MAX_WORKER_ID];
  size_t rid_n, n_bytes;
  Sdcpb__Envelope *env;
  char user[SDC_MAX_WORKER_ID]; /* the sender's key name (ZAP User-Id); "" in plaintext */
  int err;
  if (c->curve.zap) {
    int refused = sdc_curve_zap_serve(&c->curve);
    while (refused-- > 0) sdc_node_metrics_drop(&c->tm.node, "unauthorized");
  }
  while ((err = sdc_zmq_recv_from(c->router, &env, rid, sizeof rid - 1, &rid_n, &n_bytes, user, sizeof user)) !=
         SDC_EAGAIN) {
    if (err == SDC_EPROTOCOL) { /* dropped and counted */
      sdc_wire_log_drop("control socket");
      continue;
    }
    if (err) break; /* the socket itself failed */
    char from[SDC_MAX_WORKER_ID];
    snprintf(from, sizeof from, "%.*s", (int)rid_n, (const char *)rid);
    if (env->body_case == SDCPB__ENVELOPE__BODY_REGISTER) sdc__on_register(c, rid, rid_n, user, env->register_);
    else if (env->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT) sdc__on_heartbeat(c, rid, rid_n, user, env->heartbeat);
    else if (env->body_case == SDCPB__ENVELOPE__BODY_REPLY) {
      sdc_node_metrics_link(&c->tm.node, (sdc_stage)env->reply->stage, SDC_STAGE_INVALID, "received", n_bytes);
      sdc__on_reply(c, from, user, env->reply);
    }
    sdc_wire_free(env);
  }
}
