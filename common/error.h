/* error.h - one error table for the whole project, plus a per-thread message naming the culprit. */
#ifndef SDC_ERROR_H
#define SDC_ERROR_H

#include <stdarg.h>

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
  XX(PROTOCOL, "malformed or unexpected message")

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

/* Records a printf-style message for the calling thread and returns err, so
 * callers write `return sdc_seterr(SDC_EFORMAT, "%s: bad header", path);`. */
int sdc_seterr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading unet: <old>"). */
int sdc_adderr(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message set on this thread, or the code's description if none. */
const char *sdc_errmsg(int err);
/* Forgets the thread's message. */
void sdc_clearerr(void);

#endif
