/* test_error.c - error messages stay on the thread that set them; a captured sdc_error carries one across. */
#include <pthread.h>
#include <string.h>

#include "error.h"
#include "test_util.h"

/* A pool thread that fails: sets a message naming the culprit and captures it. */
static void *fail_on_pool_thread(void *arg) {
  sdc_error *e = arg;
  sdc_clearerr();
  int err = sdc_seterr(SDC_EPROTOCOL, "job j7: hidden: 5 channels, the mid block takes 64");
  sdc_error_capture(e, err);
  return NULL;
}

static void *read_on_other_thread(void *arg) {
  char *out = arg;
  snprintf(out, SDC_MAX_ERROR_MSG, "%s", sdc_errmsg(SDC_EPROTOCOL));
  return NULL;
}

/* The bug this guards: the loop thread logged sdc_errmsg() after a pool thread failed, and showed
 * its own older message instead of the pool thread's. */
static void test_message_does_not_cross_threads(void) {
  sdc_seterr(SDC_EIO, "loop thread: an old, unrelated message");
  sdc_error e;
  memset(&e, 0x55, sizeof e);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fail_on_pool_thread, &e) == 0, "pthread_create");
  pthread_join(t, NULL);
  CHECK(e.code == SDC_EPROTOCOL, "captured code %d, want %d", e.code, SDC_EPROTOCOL);
  CHECK(strcmp(e.msg, "job j7: hidden: 5 channels, the mid block takes 64") == 0, "captured '%s'", e.msg);
  /* this thread still has its own message, and a fresh thread has none */
  CHECK(strcmp(sdc_errmsg(SDC_EPROTOCOL), "loop thread: an old, unrelated message") == 0, "main thread sees '%s'",
        sdc_errmsg(SDC_EPROTOCOL));
  char other[SDC_MAX_ERROR_MSG];
  CHECK(pthread_create(&t, NULL, read_on_other_thread, other) == 0, "pthread_create");
  pthread_join(t, NULL);
  CHECK(strcmp(other, sdc_strerror(SDC_EPROTOCOL)) == 0, "another thread sees '%s'", other);
  CHECK(!strstr(other, "j7") && !strstr(sdc_errmsg(SDC_EPROTOCOL), "j7"), "the pool thread's message leaked");
  sdc_clearerr();
}

static void test_capture_without_message_and_success(void) {
  sdc_clearerr();
  sdc_error e;
  CHECK(sdc_error_capture(&e, SDC_ENOMEM) == SDC_ENOMEM, "capture returns the code");
  CHECK(e.code == SDC_ENOMEM && strcmp(e.msg, sdc_strerror(SDC_ENOMEM)) == 0, "no message: '%s'", e.msg);
  sdc_seterr(SDC_EIO, "stale");
  CHECK(sdc_error_capture(&e, SDC_OK) == SDC_OK && e.code == SDC_OK && e.msg[0] == 0, "success keeps no message: '%s'",
        e.msg);
  sdc_clearerr();
  CHECK(strcmp(sdc_errmsg(SDC_EIO), sdc_strerror(SDC_EIO)) == 0, "cleared: '%s'", sdc_errmsg(SDC_EIO));
}

static void test_long_message_is_cut_not_overrun(void) {
  char big[3 * SDC_MAX_ERROR_MSG];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  sdc_seterr(SDC_EINVAL, "%s", big);
  sdc_error e;
  sdc_error_capture(&e, SDC_EINVAL);
  CHECK(strlen(e.msg) == SDC_MAX_ERROR_MSG - 1, "captured %zu bytes", strlen(e.msg));
  sdc_adderr(SDC_EINVAL, "context");
  CHECK(strncmp(sdc_errmsg(SDC_EINVAL), "context: xxx", 12) == 0, "adderr: '%.20s'", sdc_errmsg(SDC_EINVAL));
  sdc_clearerr();
}

int main(void) {
  test_message_does_not_cross_threads();
  test_capture_without_message_and_success();
  test_long_message_is_cut_not_overrun();
  return sdc_test_finish("test_error");
}
