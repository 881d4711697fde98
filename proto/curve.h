/* curve.h - ZeroMQ CURVE for the cluster: key files, the authorized file, the ZAP handler, socket set-up.
 *
 * Files (written by `sdc keygen`, docs/security.md):
 *   NAME.key     the secret key, Z85 (40 characters) on one line, mode 0600
 *   NAME.pub     the public key, Z85
 *   authorized   one "PUBLIC-KEY NAME" per line (a line starting with '#' is a comment); names are unique
 * The ZAP handler accepts a CURVE client only when its public key is in the authorized file, and sets the
 * connection's User-Id to that key's name: every message received on it carries that name
 * (zmq_msg_gets "User-Id", read by sdc_zmq_recv_from). */
#ifndef SDC_CURVE_H
#define SDC_CURVE_H

#include <stddef.h>
#include <stdint.h>

#include "sdc_limits.h"

#define SDC_CURVE_Z85 41 /* a Z85 key with its NUL */

typedef struct {
  char name[SDC_MAX_WORKER_ID];
  char pub[SDC_CURVE_Z85];
} sdc_curve_peer;

typedef struct {
  int on;                          /* keys given: every socket is CURVE */
  char secret[SDC_CURVE_Z85];      /* our own pair */
  char pub[SDC_CURVE_Z85];
  char auth_path[512];             /* for log lines */
  sdc_curve_peer peers[SDC_CURVE_MAX_KEYS]; /* the authorized file */
  int n_peers;
  void *zap;                       /* REP on inproc://zeromq.zap.01 once sdc_curve_zap_start ran */
} sdc_curve;

/* Reads a key file (one Z85 key, surrounding whitespace ignored) into out. Errors name the file. */
int sdc_curve_read_key(const char *path, char out[SDC_CURVE_Z85]);
/* Loads our secret key (public key derived from it) and the authorized file into c and sets c->on.
 * Errors name the file and line. */
int sdc_curve_load(sdc_curve *c, const char *key_file, const char *authorized_file);
/* The authorized public key of `name`, or NULL. */
const char *sdc_curve_key_of(const sdc_curve *c, const char *name);
/* The name of an authorized Z85 public key, or NULL. */
const char *sdc_curve_name_of(const sdc_curve *c, const char *pub);
/* Binds the ZAP handler in zctx: before any CURVE server socket binds. Its socket is c->zap; the caller
 * watches its ZMQ_FD (edge-triggered) and calls sdc_curve_zap_serve. */
int sdc_curve_zap_start(sdc_curve *c, void *zctx);
/* Answers every pending ZAP request without blocking. Returns how many connections were refused (each
 * logged with its address and key). */
int sdc_curve_zap_serve(sdc_curve *c);
void sdc_curve_zap_close(sdc_curve *c);
/* Makes sock a CURVE server with our secret key (call before bind). */
int sdc_curve_server(const sdc_curve *c, void *sock);
/* Makes sock a CURVE client of the server whose public key is server_pub (call before connect). */
int sdc_curve_client(const sdc_curve *c, void *sock, const char *server_pub);
/* Whether a ZeroMQ endpoint can be reached only from this machine: tcp:// on 127.0.0.0/8, ::1 or
 * localhost; ipc://; inproc://. */
int sdc_endpoint_is_loopback(const char *endpoint);

#endif
