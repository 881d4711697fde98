/* error.h - one error table for the whole project, plus a per-thread message naming the culprit. */
#ifndef SDC_ERROR_H
#define SDC_ERROR_H

#include <stdarg.h>

#include "sdc_limits.h"

/* X-macro table: name, human description. Codes are negative, 0 is success. */
#define SDC_ERR_MAP(XX)                                              \
  XX(NOMEM, "out of memory")                                         \
  XX(IO, "i/o error")                                                \
  XX(FORMAT, "malformed file")                                       \
  XX(MISSING, "missing tensor or field")                             \
  XX(SHAPE, "tensor shape mismatch")                                 \
  XX(DTYPE, "unsupported dtype")                                     \
  XX(CONFIG, "invalid or unsupported config")                        \
  XX(INVAL, "invalid argument")                                      \
  XX(UNSUPPORTED, "unsupported")                                     \
  XX(MISMATCH, "result does not match the reference")                \
  XX(AGAIN, "try again: nothing to receive now")                     \
  XX(PROTOCOL, "malformed or unexpected message")                    \
  XX(CANCELLED, "cancelled")

typedef enum {
  SDC_OK = 0,
#define SDC__ERR_ENUM(name, desc) SDC_E##name,
  SDC__ERR_FIRST = -100,
  SDC_ERR_MAP(SDC__ERR_ENUM)
#undef SDC__ERR_ENUM
} sdc_err;

/* Static description of an error code ("out of memory"); never NULL. */
const char *sdc_strerror(int err);
/* Static name of an error code ("SDC_ENOMEM"); never NULL. */
const char *sdc_err_name(int err);

/* The message is per thread: sdc_seterr on a pool thread is invisible to the
 * loop thread, and a message stays until the thread sets another or clears it.
 * To hand an error to another thread, capture it where it happened
 * (sdc_error_capture) and pass the copy along. */

/* Records a printf-style message for the calling thread and returns err, so
 * callers write `return sdc_seterr(SDC_EFORMAT, "%s: bad header", path);`.
 * Messages are cut at SDC_MAX_ERROR_MSG - 1 bytes. */
int sdc_seterr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading unet: <old>"). */
int sdc_adderr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last message, whatever error set it, or err's
 * description when the thread has none; err only picks the fallback. Valid
 * until the thread's next sdc_seterr/sdc_adderr/sdc_clearerr; never NULL. */
const char *sdc_errmsg(int err);
/* Forgets the calling thread's message: call it before work whose failure
 * you will capture, so an older message cannot stand in for a new error. */
void sdc_clearerr(void);

/* An error as a value: its code and a copy of its message, safe to hand to
 * another thread or keep after the thread's message changes. */
typedef struct {
  int code;                     /* SDC_OK when nothing failed */
  char msg[SDC_MAX_ERROR_MSG];  /* "" when code is SDC_OK */
} sdc_error;

/* Fills *e with code and, when code is not SDC_OK, sdc_errmsg(code) of the
 * calling thread. Returns code. */
int sdc_error_capture(sdc_error *e /* OUT */, int code);

#endif
