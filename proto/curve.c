/* curve.c - CURVE key files, the authorized file and the ZAP handler shared by the coordinator and workers. */
#include "curve.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "error.h"
#include "file.h"
#include "log.h"

/* A Z85 CURVE key: 40 characters of the Z85 alphabet. */
static int sdc__is_z85_key(const char *s, size_t n) {
  static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (n != SDC_CURVE_Z85 - 1) return 0;
  for (size_t i = 0; i < n; i++)
    if (!s[i] || !strchr(alphabet, s[i])) return 0;
  return 1;
}

int sdc_curve_read_key(const char *path, char out[SDC_CURVE_Z85]) {
  char *text;
  size_t n;
  int err = sdc_read_file(path, &text, &n);
  if (err) return err;
  if (n > SDC_CURVE_KEY_FILE_BYTES) {
    free(text);
    return sdc_seterr(SDC_EINVAL, "%s: %zu bytes; a key file holds one 40-character Z85 key", path, n);
  }
  const char *p = text;
  while (isspace((unsigned char)*p)) p++;
  size_t len = strcspn(p, " \t\r\n");
  const char *rest = p + len;
  while (isspace((unsigned char)*rest)) rest++;
  if (!sdc__is_z85_key(p, len) || *rest) {
    free(text);
    return sdc_seterr(SDC_EINVAL, "%s: not a key file (one 40-character Z85 key expected; see sdc keygen)", path);
  }
  memcpy(out, p, len);
  out[len] = 0;
  free(text);
  return SDC_OK;
}

/* Parses "PUBLIC-KEY NAME" lines into c->peers; a line starting with '#' is a comment. */
static int sdc__load_authorized(sdc_curve *c, const char *path) {
  char *text;
  size_t n;
  int err = sdc_read_file(path, &text, &n);
  if (err) return err;
  if (n > SDC_CURVE_AUTH_FILE_BYTES) {
    free(text);
    return sdc_seterr(SDC_EINVAL, "%s: %zu bytes, more than SDC_CURVE_AUTH_FILE_BYTES (%d)", path, n,
                      SDC_CURVE_AUTH_FILE_BYTES);
  }
  c->n_peers = 0;
  int line = 0;
  for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    line++; /* blank lines vanish in strtok_r: line numbers then count non-empty lines */
    l[strcspn(l, "\r")] = 0;
    if (l[strspn(l, " \t")] == '#') continue; /* a comment line ('#' is also a Z85 character) */
    char key[64] = "", name[SDC_MAX_WORKER_ID + 1] = "", extra[2] = "";
    int k = sscanf(l, "%63s %128s %1s", key, name, extra);
    if (k <= 0) continue;
    if (k != 2 || !sdc__is_z85_key(key, strlen(key)) || strlen(name) >= SDC_MAX_WORKER_ID) {
      err = sdc_seterr(SDC_EINVAL, "%s:%d: expected \"PUBLIC-KEY NAME\" (a 40-character Z85 key, a name of at most %d bytes)",
                       path, line, SDC_MAX_WORKER_ID - 1);
      break;
    }
    if (sdc_curve_key_of(c, name) || sdc_curve_name_of(c, key)) {
      err = sdc_seterr(SDC_EINVAL, "%s:%d: %s '%s' is listed twice", path, line, sdc_curve_key_of(c, name) ? "name" : "key",
                       sdc_curve_key_of(c, name) ? name : key);
      break;
    }
    if (c->n_peers == SDC_CURVE_MAX_KEYS) {
      err = sdc_seterr(SDC_EINVAL, "%s:%d: more than SDC_CURVE_MAX_KEYS (%d) keys", path, line, SDC_CURVE_MAX_KEYS);
      break;
    }
    snprintf(c->peers[c->n_peers].name, sizeof c->peers[0].name, "%s", name);
    memcpy(c->peers[c->n_peers].pub, key, SDC_CURVE_Z85);
    c->n_peers++;
  }
  free(text);
  if (!err && c->n_peers == 0) err = sdc_seterr(SDC_EINVAL, "%s: no keys (see sdc keygen)", path);
  return err;
}

int sdc_curve_load(sdc_curve *c, const char *key_file, const char *authorized_file) {
  memset(c, 0, sizeof *c);
  if (!zmq_has("curve")) return sdc_seterr(SDC_EUNSUPPORTED, "this libzmq was built without CURVE");
  int err = sdc_curve_read_key(key_file, c->secret);
  if (!err && zmq_curve_public(c->pub, c->secret) != 0)
    err = sdc_seterr(SDC_EINVAL, "%s: not a CURVE secret key", key_file);
  if (!err) err = sdc__load_authorized(c, authorized_file);
  if (err) return err;
  snprintf(c->auth_path, sizeof c->auth_path, "%s", authorized_file);
  c->on = 1;
  return SDC_OK;
}

const char *sdc_curve_key_of(const sdc_curve *c, const char *name) {
  for (int i = 0; i < c->n_peers; i++)
    if (strcmp(c->peers[i].name, name) == 0) return c->peers[i].pub;
  return NULL;
}

const char *sdc_curve_name_of(const sdc_curve *c, const char *pub) {
  for (int i = 0; i < c->n_peers; i++)
    if (strcmp(c->peers[i].pub, pub) == 0) return c->peers[i].name;
  return NULL;
}

int sdc_curve_zap_start(sdc_curve *c, void *zctx) {
  c->zap = zmq_socket(zctx, ZMQ_REP);
  if (!c->zap) return sdc_seterr(SDC_EIO, "ZAP handler: zmq_socket: %s", zmq_strerror(errno));
  int linger = 0;
  zmq_setsockopt(c->zap, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(c->zap, "inproc://zeromq.zap.01") != 0) {
    int e = errno;
    zmq_close(c->zap);
    c->zap = NULL;
    return sdc_seterr(SDC_EIO, "ZAP handler: bind inproc://zeromq.zap.01: %s", zmq_strerror(e));
  }
  return SDC_OK;
}

void sdc_curve_zap_close(sdc_curve *c) {
  if (c->zap) zmq_close(c->zap);
  c->zap = NULL;
}

#define SDC__ZAP_FRAMES 8 /* a CURVE request has 7; one more shows it is not one */

int sdc_curve_zap_serve(sdc_curve *c) {
  int refused = 0;
  while (c->zap) {
    zmq_msg_t f[SDC__ZAP_FRAMES];
    int n = 0, more = 1;
    while (more) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, c->zap, n ? 0 : ZMQ_DONTWAIT) < 0) { /* the rest of a message is there at once */
        zmq_msg_close(&m);
        break;
      }
      more = zmq_msg_more(&m);
      if (n < SDC__ZAP_FRAMES) f[n++] = m;
      else zmq_msg_close(&m);
    }
    if (n == 0) break;
    /* version, request id, domain, address, routing id, mechanism, credentials */
    const char *why = NULL, *name = NULL;
    char addr[64] = "?", key[SDC_CURVE_Z85] = "";
    if (n >= 4) snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (const char *)zmq_msg_data(&f[3]));
    if (n != 7 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0) why = "not a ZAP 1.0 request";
    else if (zmq_msg_size(&f[5]) != 5 || memcmp(zmq_msg_data(&f[5]), "CURVE", 5) != 0) why = "not a CURVE connection";
    else if (zmq_msg_size(&f[6]) != 32) why = "no 32-byte public key";
    if (!why) {
      zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
      if (!(name = sdc_curve_name_of(c, key))) why = "public key not in the authorized file";
    }
    if (why) {
      refused++;
      sdc_log(NULL, -1, 0, "refused a connection from %s: %s%s%s (%s)", addr, why, key[0] ? " " : "", key, c->auth_path);
    }
    { /* answer every request (a REP socket must): version, request id, status, text, user id, metadata */
      zmq_send(c->zap, "1.0", 3, ZMQ_SNDMORE);
      zmq_send(c->zap, n >= 2 ? zmq_msg_data(&f[1]) : "", n >= 2 ? zmq_msg_size(&f[1]) : 0, ZMQ_SNDMORE);
      zmq_send(c->zap, why ? "400" : "200", 3, ZMQ_SNDMORE);
      zmq_send(c->zap, why ? why : "OK", strlen(why ? why : "OK"), ZMQ_SNDMORE);
      zmq_send(c->zap, name ? name : "", name ? strlen(name) : 0, ZMQ_SNDMORE);
      zmq_send(c->zap, "", 0, 0);
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
  }
  return refused;
}

int sdc_curve_server(const sdc_curve *c, void *sock) {
  int one = 1;
  if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, SDC_CURVE_Z85 - 1) != 0 ||
      zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "sdc", 3) != 0)
    return sdc_seterr(SDC_EIO, "CURVE server: %s", zmq_strerror(errno));
  return SDC_OK;
}

int sdc_curve_client(const sdc_curve *c, void *sock, const char *server_pub) {
  if (!server_pub || !sdc__is_z85_key(server_pub, strlen(server_pub)))
    return sdc_seterr(SDC_EINVAL, "CURVE client: the server's public key '%.48s' is not a 40-character Z85 key",
                      server_pub ? server_pub : "");
  if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, SDC_CURVE_Z85 - 1) != 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->pub, SDC_CURVE_Z85 - 1) != 0 ||
      zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret, SDC_CURVE_Z85 - 1) != 0)
    return sdc_seterr(SDC_EIO, "CURVE client: %s", zmq_strerror(errno));
  return SDC_OK;
}

int sdc_endpoint_is_loopback(const char *ep) {
  if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0) return 1;
  if (strncmp(ep, "tcp://", 6) != 0) return 0;
  const char *h = ep + 6;
  /* tcp://SRC;DEST connects from SRC: what matters here is the bound host, before ':' */
  return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 || strncmp(h, "[::1]:", 6) == 0;
}
