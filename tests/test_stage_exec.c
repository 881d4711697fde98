/* test_stage_exec.c - a bad StageRequest run on another thread: its error reaches that thread's caller as a copy
 * and the coordinator in the reply, naming the job's culprit, while the calling thread's own message is untouched. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "stage_exec.h"
#include "test_util.h"
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

int main(void) {
  test_unserved_stage_error_reaches_reply_and_loop_thread();
  return sdc_test_finish("test_stage_exec");
}
