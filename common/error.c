/* error.c - error names, descriptions and the per-thread culprit message. */
#include "error.h"

#include <stdio.h>

/* Messages are cut at the buffer size on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <string.h>

static _Thread_local char sdc__msg[SDC_MAX_ERROR_MSG];

const char *sdc_strerror(int err) {
  switch (err) {
    case SDC_OK: return "success";
#define SDC__ERR_DESC(name, desc) case SDC_E##name: return desc;
    SDC_ERR_MAP(SDC__ERR_DESC)
#undef SDC__ERR_DESC
  }
  return "unknown error";
}

const char *sdc_err_name(int err) {
  switch (err) {
    case SDC_OK: return "SDC_OK";
#define SDC__ERR_NAME(name, desc) case SDC_E##name: return "SDC_E" #name;
    SDC_ERR_MAP(SDC__ERR_NAME)
#undef SDC__ERR_NAME
  }
  return "SDC_EUNKNOWN";
}

int sdc_seterr(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sdc__msg, sizeof sdc__msg, fmt, ap);
  va_end(ap);
  return err;
}

int sdc_adderr(int err, const char *fmt, ...) {
  char prefix[512], old[sizeof sdc__msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, sdc__msg, sizeof old);
  if (old[0])
    snprintf(sdc__msg, sizeof sdc__msg, "%s: %s", prefix, old);
  else
    snprintf(sdc__msg, sizeof sdc__msg, "%s: %s", prefix, sdc_strerror(err));
  return err;
}

const char *sdc_errmsg(int err) { return sdc__msg[0] ? sdc__msg : sdc_strerror(err); }

void sdc_clearerr(void) { sdc__msg[0] = 0; }

int sdc_error_capture(sdc_error *e, int code) {
  e->code = code;
  if (code == SDC_OK)
    e->msg[0] = 0;
  else
    snprintf(e->msg, sizeof e->msg, "%s", sdc_errmsg(code));
  return code;
}
