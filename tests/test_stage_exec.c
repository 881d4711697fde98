/* test_stage_exec.c - a bad StageRequest run on another thread: its error reaches that thread's caller as a copy
 * and the coordinator in the reply, naming the job's culprit, while the calling thread's own message is untouched.
 * `test_stage_exec sdxl` (test_stage_exec_sdxl; skips without SDC_REF/sdxl): SDXL's unet-down takes text_embeds and
 * time_ids of the right shapes only, an SD 1.x unet-down refuses them, the text stage answers context and pooled
 * rows as the in-process encoder computes them, and a LoRA on an SDXL model is refused, each in one line. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "stage_exec.h"
#include "test_util.h"
#include "textcond.h"
#include "wire.h"

typedef struct {
  sdc_stage_host *host;
  const Sdcpb__StageRequest *req;
  uint8_t *out;
  size_t out_n;
  int is_reply, err;
  sdc_stage_hops hops;
  sdc_error hop_error;
} job;

/* What worker.c's pool callback does, on a thread of its own. */
static void *run_on_pool_thread(void *arg) {
  job *j = arg;
  const char *ep = NULL;
  sdc_seterr(SDC_EIO, "an older failure on this pool thread");
  j->err = sdc_stage_execute(j->host, j->req, "w-test", &j->out, &j->out_n, &j->is_reply, &ep, &j->hops, &j->hop_error);
  return NULL;
}

/* A worker asked for a stage it does not host (a stale route) replies with an error naming it. */
static void test_unserved_stage_error_reaches_reply_and_loop_thread(void) {
  static sdc_stage_host host; /* hosts nothing: enough to reach the route check */
  Sdcpb__Hop hop = SDCPB__HOP__INIT;
  hop.stage = SDCPB__STAGE__UNET_MID, hop.worker_id = "w-test", hop.endpoint = "tcp://127.0.0.1:1";
  Sdcpb__Hop *route[] = {&hop};
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "job-bad", req.step = 4, req.request_id = 99, req.n_route = 1, req.route = route, req.hop = 0;
  job j = {.host = &host, .req = &req};
  sdc_seterr(SDC_EIO, "loop thread: unrelated");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, run_on_pool_thread, &j) == 0, "pthread_create");
  pthread_join(t, NULL);
  CHECK(j.err == SDC_OK, "packing the error reply failed: %d", j.err);
  CHECK(j.is_reply == 1, "a failed hop must reply to the coordinator");
  CHECK(j.hop_error.code == SDC_EPROTOCOL, "hop_error.code %d", j.hop_error.code);
  CHECK(strstr(j.hop_error.msg, "unet-mid") && strstr(j.hop_error.msg, "does not serve"), "hop_error '%s'",
        j.hop_error.msg);
  CHECK(!strstr(j.hop_error.msg, "older failure"), "a stale pool-thread message stood in: '%s'", j.hop_error.msg);
  /* the loop thread logs the copy; its own message is not the hop's */
  CHECK(strcmp(sdc_errmsg(SDC_EPROTOCOL), "loop thread: unrelated") == 0, "loop thread sees '%s'",
        sdc_errmsg(SDC_EPROTOCOL));
  Sdcpb__Envelope *env = NULL;
  CHECK(j.out && sdc_wire_unpack(j.out, j.out_n, &env) == SDC_OK, "reply does not unpack");
  if (env) {
    CHECK(env->body_case == SDCPB__ENVELOPE__BODY_REPLY, "body %d", env->body_case);
    if (env->body_case == SDCPB__ENVELOPE__BODY_REPLY) {
      const Sdcpb__StageReply *rep = env->reply;
      CHECK(strcmp(rep->job_id, "job-bad") == 0 && rep->step == 4 && rep->request_id == 99, "reply names job %s step %u",
            rep->job_id, rep->step);
      CHECK(strcmp(rep->error, j.hop_error.msg) == 0, "reply error '%s' != logged '%s'", rep->error, j.hop_error.msg);
    }
    sdc_wire_free(env);
  }
  free(j.out);
  sdc_clearerr();
}

/* ------------------------------------------------------------------ SDXL */

/* Runs req on host h: *env gets the unpacked message it produced (reply or forwarded request; caller frees). */
static int run(sdc_stage_host *h, const Sdcpb__StageRequest *req, Sdcpb__Envelope **env, int *is_reply) {
  uint8_t *out = NULL;
  size_t out_n = 0;
  const char *ep = NULL;
  sdc_stage_hops hops;
  sdc_error he;
  *env = NULL;
  int err = sdc_stage_execute(h, req, "w-test", &out, &out_n, is_reply, &ep, &hops, &he);
  if (!err) err = sdc_wire_unpack(out, out_n, env);
  free(out);
  return err;
}

/* req must come back as an error reply of one line holding both needles. */
static void expect_refused(sdc_stage_host *h, const Sdcpb__StageRequest *req, const char *what, const char *n1,
                           const char *n2) {
  Sdcpb__Envelope *env = NULL;
  int is_reply = 0, err = run(h, req, &env, &is_reply);
  const char *msg = env && env->body_case == SDCPB__ENVELOPE__BODY_REPLY ? env->reply->error : NULL;
  CHECK(!err && is_reply && msg && msg[0], "%s: not refused (err %d, reply %d)", what, err, is_reply);
  if (msg && msg[0]) {
    CHECK(!strchr(msg, '\n'), "%s: error is not one line: %s", what, msg);
    CHECK(strstr(msg, n1) && (!n2 || strstr(msg, n2)), "%s: error lacks '%s'/'%s': %s", what, n1, n2 ? n2 : "", msg);
    printf("%-34s -> %s\n", what, msg);
  }
  sdc_wire_free(env);
}

/* A [d0, d1] f32 tensor of value v; *buf holds its bytes (caller frees). */
static Sdcpb__Tensor tensor2(int64_t d0, int64_t d1, float v, void **buf) {
  Sdcpb__Tensor t = SDCPB__TENSOR__INIT;
  float *x = malloc((size_t)(d0 * d1) * sizeof *x);
  for (int64_t i = 0; x && i < d0 * d1; i++) x[i] = v;
  CHECK(x && sdc_wire_tensor_set(&t, x, 2, (int64_t[]){d0, d1}, SDCPB__DTYPE__F32, buf) == SDC_OK, "tensor [%lld, %lld]",
        (long long)d0, (long long)d1);
  free(x);
  return t;
}

/* unet-down of the tiny SDXL (and of tiny-sd1, which must refuse SDXL's inputs). */
static void test_sdxl_unet_down_inputs(const char *ref) {
  char model[1200];
  snprintf(model, sizeof model, "%s/sdxl/tiny-sdxl", ref);
  static sdc_stage_host h;
  int err = sdc_stage_host_load(&h, model, NULL, 1u << SDCPB__STAGE__UNET_DOWN, &SDC_LOAD_OPTS_FP32);
  CHECK(err == SDC_OK, "load %s: %s", model, sdc_errmsg(err));
  if (err) return;
  const int64_t B = 2, C = h.model.unet.in_channels, S = 8, P = sdc_model_pooled_dim(&h.model),
                D = h.model.unet.cross_attention_dim;
  CHECK(P == 48 && D == 80, "tiny-sdxl: pooled %lld, context %lld", (long long)P, (long long)D);
  float *x = calloc((size_t)(B * C * S * S), sizeof *x), *ctx = calloc((size_t)(B * 77 * D), sizeof *ctx);
  float t[2] = {999, 999};
  void *bufs[8] = {0};
  Sdcpb__Tensor sample = SDCPB__TENSOR__INIT, context = SDCPB__TENSOR__INIT;
  CHECK(x && ctx && sdc_wire_tensor_set(&sample, x, 4, (int64_t[]){B, C, S, S}, SDCPB__DTYPE__F32, &bufs[0]) == SDC_OK &&
            sdc_wire_tensor_set(&context, ctx, 3, (int64_t[]){B, 77, D}, SDCPB__DTYPE__F32, &bufs[1]) == SDC_OK,
        "inputs");
  Sdcpb__Tensor te = tensor2(B, P, 0.5f, &bufs[2]), ti = tensor2(B, 6, 128, &bufs[3]);
  Sdcpb__Tensor te_wide = tensor2(B, P + 1, 0.5f, &bufs[4]), ti_5 = tensor2(B, 5, 128, &bufs[5]),
                ti_batch = tensor2(B + 1, 6, 128, &bufs[6]), te_3d = SDCPB__TENSOR__INIT;
  float one = 1;
  CHECK(sdc_wire_tensor_set(&te_3d, &one, 3, (int64_t[]){1, 1, 1}, SDCPB__DTYPE__F32, &bufs[7]) == SDC_OK, "te_3d");
  Sdcpb__Hop down = SDCPB__HOP__INIT, mid = SDCPB__HOP__INIT;
  down.stage = SDCPB__STAGE__UNET_DOWN, down.worker_id = "w-test", down.endpoint = "tcp://127.0.0.1:1";
  mid.stage = SDCPB__STAGE__UNET_MID, mid.worker_id = "w-mid", mid.endpoint = "tcp://127.0.0.1:2";
  Sdcpb__Hop *route[] = {&down, &mid};
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "xl", req.step = 1, req.request_id = 7, req.n_route = 2, req.route = route, req.hop = 0;
  req.sample = &sample, req.context = &context, req.n_timestep = 2, req.timestep = t;
  req.text_embeds = &te, req.time_ids = &ti;
  /* the good request goes on to unet-mid with temb, without SDXL's inputs (folded into temb) */
  Sdcpb__Envelope *env = NULL;
  int is_reply = 1;
  err = run(&h, &req, &env, &is_reply);
  const Sdcpb__StageRequest *fwd = env && env->body_case == SDCPB__ENVELOPE__BODY_REQUEST ? env->request : NULL;
  CHECK(!err && !is_reply && fwd, "good request: err %d, reply %d, error '%s'", err, is_reply,
        env && env->body_case == SDCPB__ENVELOPE__BODY_REPLY ? env->reply->error : "");
  CHECK(fwd && fwd->temb && fwd->hidden && !fwd->text_embeds && !fwd->time_ids && !fwd->sample,
        "forwarded request: temb/hidden set, text_embeds/time_ids/sample dropped");
  sdc_wire_free(env);
  req.text_embeds = NULL;
  expect_refused(&h, &req, "sdxl: no text_embeds", "text_embeds", "unet-down");
  req.text_embeds = &te, req.time_ids = NULL;
  expect_refused(&h, &req, "sdxl: no time_ids", "time_ids", NULL);
  req.time_ids = &ti, req.text_embeds = &te_wide;
  expect_refused(&h, &req, "sdxl: text_embeds [2, 49]", "text_embeds", "49");
  req.text_embeds = &te_3d;
  expect_refused(&h, &req, "sdxl: text_embeds 3-d", "text_embeds", NULL);
  req.text_embeds = &te, req.time_ids = &ti_5;
  expect_refused(&h, &req, "sdxl: time_ids [2, 5]", "time_ids", NULL);
  req.time_ids = &ti_batch;
  expect_refused(&h, &req, "sdxl: time_ids [3, 6]", "time_ids", NULL);
  /* a LoRA on an SDXL model: refused as the in-process pipeline refuses it */
  req.time_ids = &ti;
  Sdcpb__LoraRef lr = SDCPB__LORA_REF__INIT, *lp = &lr;
  lr.name = "style", lr.multiplier = 1;
  req.n_loras = 1, req.loras = &lp;
  expect_refused(&h, &req, "sdxl: a LoRA", "not supported for SDXL", "style");
  req.n_loras = 0, req.loras = NULL;
  sdc_stage_host_free(&h);

  /* tiny-sd1's unet-down: SDXL's inputs are refused, naming them */
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  err = sdc_stage_host_load(&h, model, NULL, 1u << SDCPB__STAGE__UNET_DOWN, &SDC_LOAD_OPTS_FP32);
  CHECK(err == SDC_OK, "load %s: %s", model, sdc_errmsg(err));
  if (!err) {
    const int64_t D1 = h.model.unet.cross_attention_dim;
    float *c1 = calloc((size_t)(B * 77 * D1), sizeof *c1);
    Sdcpb__Tensor context1 = SDCPB__TENSOR__INIT;
    void *cb = NULL;
    CHECK(c1 && sdc_wire_tensor_set(&context1, c1, 3, (int64_t[]){B, 77, D1}, SDCPB__DTYPE__F32, &cb) == SDC_OK, "ctx1");
    req.context = &context1;
    req.text_embeds = &te, req.time_ids = &ti;
    expect_refused(&h, &req, "sd1: text_embeds", "text_embeds", "without text_time");
    req.text_embeds = NULL;
    expect_refused(&h, &req, "sd1: time_ids", "time_ids", "without text_time");
    free(c1), free(cb);
    sdc_stage_host_free(&h);
  }
  for (int i = 0; i < 8; i++) free(bufs[i]);
  free(x), free(ctx);
}

/* The SDXL text stage: context (n, 77, 80) and pooled (n, 48) equal to sdc_text_encode's in this process; prompts_2
 * is checked against the prompts; a one-encoder model refuses prompts_2. */
static void test_sdxl_text_stage(const char *ref) {
  char model[1200];
  snprintf(model, sizeof model, "%s/sdxl/tiny-sdxl", ref);
  static sdc_stage_host h;
  int err = sdc_stage_host_load(&h, model, NULL, 1u << SDCPB__STAGE__TEXT, &SDC_LOAD_OPTS_FP32);
  CHECK(err == SDC_OK, "load %s: %s", model, sdc_errmsg(err));
  if (err) return;
  CHECK(h.tok2 && h.clip2, "the text stage loads the second tokenizer and encoder");
  Sdcpb__Hop hop = SDCPB__HOP__INIT, *route[] = {&hop};
  hop.stage = SDCPB__STAGE__TEXT, hop.worker_id = "w-test", hop.endpoint = "tcp://127.0.0.1:1";
  char *prompts[] = {"", "a photograph of an astronaut riding a horse"}, *prompts_2[] = {"blurry", "an oil painting"};
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "xl-text", req.request_id = 3, req.n_route = 1, req.route = route;
  req.n_prompts = 2, req.prompts = prompts, req.n_prompts_2 = 2, req.prompts_2 = prompts_2;
  Sdcpb__Envelope *env = NULL;
  int is_reply = 0;
  err = run(&h, &req, &env, &is_reply);
  const Sdcpb__StageReply *rep = env && env->body_case == SDCPB__ENVELOPE__BODY_REPLY ? env->reply : NULL;
  CHECK(!err && rep && !rep->error[0] && rep->output && rep->pooled, "text reply: err %d, error '%s'", err,
        rep ? rep->error : "");
  if (rep && rep->output && rep->pooled) {
    const sdc_text_models tm = {.tok = h.tok, .tok2 = h.tok2, .clip = h.clip, .clip2 = h.clip2};
    float *ctx = malloc(2 * 77 * 80 * sizeof *ctx), *pooled = malloc(2 * 48 * sizeof *pooled);
    float *want_c = malloc(77 * 80 * sizeof *want_c), want_p[48];
    CHECK(sdc_wire_tensor_get(rep->output, "context", 3, (int64_t[]){2, 77, 80}, ctx, NULL) == SDC_OK, "context shape");
    CHECK(sdc_wire_tensor_get(rep->pooled, "pooled", 2, (int64_t[]){2, 48}, pooled, NULL) == SDC_OK, "pooled shape");
    for (int i = 0; i < 2; i++) {
      CHECK(sdc_text_encode(&tm, &h.arena, prompts[i], prompts_2[i], want_c, want_p, NULL) == SDC_OK, "encode");
      CHECK(memcmp(ctx + i * 77 * 80, want_c, 77 * 80 * sizeof *want_c) == 0 &&
                memcmp(pooled + i * 48, want_p, sizeof want_p) == 0,
            "prompt %d: the text stage differs from sdc_text_encode", i);
    }
    free(ctx), free(pooled), free(want_c);
  }
  sdc_wire_free(env);
  req.n_prompts_2 = 1;
  expect_refused(&h, &req, "sdxl text: 1 prompts_2 for 2", "prompts_2", "2 prompts");
  sdc_stage_host_free(&h);
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  err = sdc_stage_host_load(&h, model, NULL, 1u << SDCPB__STAGE__TEXT, &SDC_LOAD_OPTS_FP32);
  CHECK(err == SDC_OK, "load %s: %s", model, sdc_errmsg(err));
  if (!err) {
    req.n_prompts_2 = 2;
    expect_refused(&h, &req, "sd1 text: prompts_2", "prompts_2", "one text encoder");
    /* without prompts_2: context only, no pooled */
    req.n_prompts_2 = 0;
    err = run(&h, &req, &env, &is_reply);
    rep = env && env->body_case == SDCPB__ENVELOPE__BODY_REPLY ? env->reply : NULL;
    CHECK(!err && rep && !rep->error[0] && rep->output && !rep->pooled, "sd1 text reply: context, no pooled");
    sdc_wire_free(env);
    sdc_stage_host_free(&h);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "sdxl") == 0) {
    const char *ref = sdc_test_ref_dir();
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/sdxl/tiny-sdxl/model_index.json", ref ? ref : ".");
    if (!ref || access(probe, R_OK) != 0) sdc_test_skip("no SDXL reference folder (SDC_REF/sdxl/tiny-sdxl)");
    test_sdxl_unet_down_inputs(ref);
    test_sdxl_text_stage(ref);
    return sdc_test_finish("test_stage_exec sdxl");
  }
  test_unserved_stage_error_reaches_reply_and_loop_thread();
  return sdc_test_finish("test_stage_exec");
}
