/* wire.c - protobuf envelopes and tensors on ZeroMQ sockets: strict decoding, checksums, counters. */
#include "wire.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "crc32c.h"
#include "error.h"
#include "log.h"
#include "stage.h"
#include "utf8.h"

/* common/stage.h numbers the stages as sdc.proto does, so a Stage field is an sdc_stage. */
_Static_assert(SDCPB__STAGE__TEXT == (int)SDC_STAGE_TEXT && SDCPB__STAGE__UNET_DOWN == (int)SDC_STAGE_UNET_DOWN &&
                   SDCPB__STAGE__UNET_MID == (int)SDC_STAGE_UNET_MID && SDCPB__STAGE__UNET_UP == (int)SDC_STAGE_UNET_UP &&
                   SDCPB__STAGE__VAE == (int)SDC_STAGE_VAE,
               "proto/sdc.proto Stage values and common/stage.h disagree");

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wire.c stores F32 tensors with memcpy: little-endian hosts only"
#endif

/* ---- counters ---- */

static sdc_wire_stats sdc__stats;

static void sdc__count(uint64_t *counter, uint64_t v) { __atomic_fetch_add(counter, v, __ATOMIC_RELAXED); }

void sdc_wire_stats_get(sdc_wire_stats *out) {
  out->rx_msgs = __atomic_load_n(&sdc__stats.rx_msgs, __ATOMIC_RELAXED);
  out->rx_bytes = __atomic_load_n(&sdc__stats.rx_bytes, __ATOMIC_RELAXED);
  out->tx_msgs = __atomic_load_n(&sdc__stats.tx_msgs, __ATOMIC_RELAXED);
  out->tx_bytes = __atomic_load_n(&sdc__stats.tx_bytes, __ATOMIC_RELAXED);
  out->dropped_malformed = __atomic_load_n(&sdc__stats.dropped_malformed, __ATOMIC_RELAXED);
  out->dropped_version = __atomic_load_n(&sdc__stats.dropped_version, __ATOMIC_RELAXED);
  out->bad_tensors = __atomic_load_n(&sdc__stats.bad_tensors, __ATOMIC_RELAXED);
}

/* ---- tensors ---- */

static size_t sdc__wire_elsize(Sdcpb__DType dt) {
  switch (dt) {
    case SDCPB__DTYPE__F32: return 4;
    case SDCPB__DTYPE__F16:
    case SDCPB__DTYPE__BF16: return 2;
    default: return 0;
  }
}

static sdc_dtype sdc__wire_dtype(Sdcpb__DType dt) {
  return dt == SDCPB__DTYPE__F16 ? SDC_F16 : dt == SDCPB__DTYPE__BF16 ? SDC_BF16 : SDC_F32;
}

int sdc_wire_tensor_set(Sdcpb__Tensor *pb, const float *x, int ndim, const int64_t *shape, Sdcpb__DType wire_dtype,
                        void **owned) {
  *owned = NULL;
  size_t el = sdc__wire_elsize(wire_dtype);
  if (!el) return sdc_seterr(SDC_EINVAL, "tensor_set: wire dtype %d is not F32, F16 or BF16", (int)wire_dtype);
  if (ndim < 1 || ndim > SDC_MAX_DIMS) return sdc_seterr(SDC_EINVAL, "tensor_set: %d dimensions", ndim);
  int64_t numel = 1, n_bytes;
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0 || __builtin_mul_overflow(numel, shape[i], &numel))
      return sdc_seterr(SDC_EINVAL, "tensor_set: bad dimension %lld", (long long)shape[i]);
  if (__builtin_mul_overflow(numel, (int64_t)el, &n_bytes) || n_bytes > SDC_WIRE_MAX_MSG_BYTES)
    return sdc_seterr(SDC_EINVAL, "tensor_set: %lld elements do not fit in a message", (long long)numel);
  /* One block: the shape (8-byte aligned at its start), then the data. */
  size_t shape_bytes = (size_t)ndim * sizeof(int64_t);
  uint8_t *blk = malloc(shape_bytes + (size_t)n_bytes);
  if (!blk) return sdc_seterr(SDC_ENOMEM, "tensor_set: %lld bytes", (long long)n_bytes);
  memcpy(blk, shape, shape_bytes);
  uint8_t *d = blk + shape_bytes;
  if (wire_dtype == SDCPB__DTYPE__F32) {
    if (numel) memcpy(d, x, (size_t)n_bytes);
  } else {
    for (int64_t i = 0; i < numel; i++) {
      uint16_t h = wire_dtype == SDCPB__DTYPE__F16 ? sdc_f32_to_f16(x[i]) : sdc_f32_to_bf16(x[i]);
      d[2 * i] = (uint8_t)h, d[2 * i + 1] = (uint8_t)(h >> 8);
    }
  }
  pb->dtype = wire_dtype;
  pb->n_shape = (size_t)ndim;
  pb->shape = (int64_t *)(void *)blk;
  pb->data.len = (size_t)n_bytes;
  pb->data.data = n_bytes ? d : NULL;
  pb->crc32c = sdc_crc32c(d, (size_t)n_bytes);
  *owned = blk;
  return SDC_OK;
}

/* Every check a received tensor must pass; shape (ndim entries, -1 = any) may
 * be NULL to accept any shape. Counts failures. */
static int sdc__tensor_validate(const Sdcpb__Tensor *pb, const char *what, int ndim, const int64_t *shape,
                                int64_t *numel_out) {
  char got[256], want[256];
  int rc = SDC_EPROTOCOL;
  if (!what) what = "tensor";
  if (!pb) {
    sdc_seterr(rc, "%s: missing", what);
    goto bad;
  }
  size_t el = sdc__wire_elsize(pb->dtype);
  if (!el) {
    sdc_seterr(rc, "%s: unknown dtype %d", what, (int)pb->dtype);
    goto bad;
  }
  if (pb->n_shape < 1 || pb->n_shape > SDC_MAX_DIMS || (pb->n_shape && !pb->shape)) {
    sdc_seterr(rc, "%s: %zu dimensions (1..%d allowed)", what, pb->n_shape, SDC_MAX_DIMS);
    goto bad;
  }
  int nd = (int)pb->n_shape;
  sdc_shape_str(got, sizeof got, nd, pb->shape);
  int64_t numel = 1, n_bytes;
  for (int i = 0; i < nd; i++) {
    if (pb->shape[i] < 0) {
      sdc_seterr(rc, "%s: negative dimension in shape %s", what, got);
      goto bad;
    }
    if (__builtin_mul_overflow(numel, pb->shape[i], &numel)) {
      sdc_seterr(rc, "%s: shape %s overflows", what, got);
      goto bad;
    }
  }
  if (__builtin_mul_overflow(numel, (int64_t)el, &n_bytes)) {
    sdc_seterr(rc, "%s: shape %s overflows", what, got);
    goto bad;
  }
  if (shape) {
    int same = nd == ndim;
    for (int i = 0; same && i < nd; i++) same = shape[i] == -1 || shape[i] == pb->shape[i];
    if (!same) {
      sdc_seterr(rc, "%s: shape %s, expected %s", what, got,
                 sdc_shape_str(want, sizeof want, ndim < 0 ? 0 : ndim > SDC_MAX_DIMS ? SDC_MAX_DIMS : ndim, shape));
      goto bad;
    }
  }
  if ((uint64_t)n_bytes != (uint64_t)pb->data.len || (pb->data.len && !pb->data.data)) {
    sdc_seterr(rc, "%s: %zu bytes of data for %s %s (expected %lld)", what, pb->data.len,
               sdc_dtype_name(sdc__wire_dtype(pb->dtype)), got, (long long)n_bytes);
    goto bad;
  }
  uint32_t crc = sdc_crc32c(pb->data.data, pb->data.len);
  if (crc != pb->crc32c) {
    sdc_seterr(rc, "%s: crc32c 0x%08x of the data, the message says 0x%08x", what, crc, pb->crc32c);
    goto bad;
  }
  if (numel_out) *numel_out = numel;
  return SDC_OK;
bad:
  sdc__count(&sdc__stats.bad_tensors, 1);
  return rc;
}

int sdc_wire_tensor_get(const Sdcpb__Tensor *pb, const char *what, int ndim, const int64_t *shape, float *out,
                        int64_t *numel) {
  int64_t n = 0;
  int rc = sdc__tensor_validate(pb, what, ndim, shape, &n);
  if (rc) return rc;
  if (n) {
    rc = sdc_convert_to_f32(out, pb->data.data, sdc__wire_dtype(pb->dtype), n);
    if (rc) return rc;
  }
  if (numel) *numel = n;
  return SDC_OK;
}

int sdc_wire_tensor_check(const Sdcpb__Tensor *pb, const char *what, int *ndim, int64_t *shape) {
  int rc = sdc__tensor_validate(pb, what, 0, NULL, NULL);
  if (rc) return rc;
  *ndim = (int)pb->n_shape;
  memcpy(shape, pb->shape, pb->n_shape * sizeof *shape);
  return SDC_OK;
}

/* ---- envelopes ---- */

static size_t sdc__repeated_cap(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f) {
  if (d == &sdcpb__stage_request__descriptor) {
    if (strcmp(f->name, "route") == 0) return SDC_WIRE_MAX_ROUTE;
    if (strcmp(f->name, "prompts") == 0 || strcmp(f->name, "prompts_2") == 0) return SDC_WIRE_MAX_PROMPTS;
    if (strcmp(f->name, "loras") == 0) return SDC_MAX_LORAS;
  }
  return SDC_WIRE_MAX_REPEATED;
}

/* Walks every field through the descriptors (so new fields are covered):
 * strings must be UTF-8 and repeated counts sane. err is SDC_EPROTOCOL for
 * received frames, SDC_EINVAL for our own outgoing ones. */
static int sdc__check_fields(const ProtobufCMessage *m, const char *path, int depth, int err) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  if (depth > 8) return sdc_seterr(err, "envelope: %s nests too deep", path);
  /* Field number 0 does not exist: protobuf-c keeps one (non-minimally encoded) as an unknown field and
   * packs it back in a form its own decoder refuses, so a forwarded request would die at the next hop. */
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0 || m->unknown_fields[i].tag > SDC_WIRE_MAX_FIELD_NUMBER)
      return sdc_seterr(err, "envelope: %s%shas a field numbered %u", path, *path ? " " : "", m->unknown_fields[i].tag);
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED)
      continue;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", f->name);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset), cap = sdc__repeated_cap(d, f);
      if (n > cap) return sdc_seterr(err, "envelope: %s has %zu entries (at most %zu)", name, n, cap);
      void *const *items = *(void *const *const *)(base + f->offset);
      for (size_t k = 0; k < n && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE); k++) {
        char item[300];
        snprintf(item, sizeof item, "%s[%zu]", name, k);
        if (!items || !items[k]) return sdc_seterr(err, "envelope: %s is NULL", item);
        if (f->type == PROTOBUF_C_TYPE_STRING && !sdc_utf8_valid(items[k]))
          return sdc_seterr(err, "envelope: %s is not valid UTF-8", item);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
          int rc = sdc__check_fields(items[k], item, depth + 1, err);
          if (rc) return rc;
        }
      }
    } else {
      const void *v = *(const void *const *)(base + f->offset);
      if (!v) continue; /* unset submessage, or a NULL string that packs as "" */
      if (f->type == PROTOBUF_C_TYPE_STRING && !sdc_utf8_valid(v))
        return sdc_seterr(err, "envelope: %s is not valid UTF-8", name);
      if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        int rc = sdc__check_fields(v, name, depth + 1, err);
        if (rc) return rc;
      }
    }
  }
  return SDC_OK;
}

int sdc_wire_pack(Sdcpb__Envelope *env, uint8_t **buf, size_t *n) {
  *buf = NULL, *n = 0;
  if (env->body_case == SDCPB__ENVELOPE__BODY__NOT_SET) return sdc_seterr(SDC_EINVAL, "envelope to send has no body");
  env->version = SDC_PROTOCOL_VERSION;
  /* The receiver would drop it: say so here, naming the field. */
  int rc = sdc__check_fields(&env->base, "", 0, SDC_EINVAL);
  if (rc) return rc;
  size_t size = sdcpb__envelope__get_packed_size(env);
  if (size > (size_t)SDC_WIRE_MAX_MSG_BYTES)
    return sdc_seterr(SDC_EINVAL, "envelope of %zu bytes exceeds the %lld-byte message limit", size,
                      (long long)SDC_WIRE_MAX_MSG_BYTES);
  uint8_t *b = malloc(size ? size : 1);
  if (!b) return sdc_seterr(SDC_ENOMEM, "packing a %zu-byte envelope", size);
  size_t written = sdcpb__envelope__pack(env, b);
  assert(written == size);
  (void)written;
  *buf = b, *n = size;
  return SDC_OK;
}

int sdc_wire_unpack(const uint8_t *buf, size_t n, Sdcpb__Envelope **env) {
  *env = NULL;
  Sdcpb__Envelope *e = NULL;
  int rc = SDC_EPROTOCOL;
  if (n > (size_t)SDC_WIRE_MAX_MSG_BYTES || (!buf && n)) {
    sdc_seterr(rc, "envelope: %zu bytes exceeds the message limit", n);
    goto malformed;
  }
  e = sdcpb__envelope__unpack(NULL, n, buf);
  if (!e) {
    sdc_seterr(rc, "envelope: %zu bytes are not a protobuf Envelope", n);
    goto malformed;
  }
  if (e->version == 0) { /* no version field at all: not one of ours */
    sdc_seterr(rc, "envelope: no protocol version (%zu bytes)", n);
    goto malformed;
  }
  if (e->version != SDC_PROTOCOL_VERSION) {
    sdc_seterr(rc, "envelope: protocol version %u, this build speaks %d", e->version, SDC_PROTOCOL_VERSION);
    sdc__count(&sdc__stats.dropped_version, 1);
    sdc_wire_free(e);
    return rc;
  }
  if (e->body_case == SDCPB__ENVELOPE__BODY__NOT_SET) {
    sdc_seterr(rc, "envelope: no body");
    goto malformed;
  }
  if (sdc__check_fields(&e->base, "", 0, rc)) goto malformed;
  *env = e;
  return SDC_OK;
malformed:
  sdc__count(&sdc__stats.dropped_malformed, 1);
  sdc_wire_free(e);
  return rc;
}

void sdc_wire_free(Sdcpb__Envelope *env) {
  if (env) sdcpb__envelope__free_unpacked(env, NULL);
}

/* ---- ZeroMQ ---- */

static int sdc__zmq_err(const char *doing) {
  int e = zmq_errno();
  if (e == EAGAIN || e == EINTR) return sdc_seterr(SDC_EAGAIN, "%s: %s", doing, zmq_strerror(e));
  return sdc_seterr(SDC_EIO, "%s: %s", doing, zmq_strerror(e));
}

int sdc_zmq_configure(void *sock) {
  int64_t max_bytes = SDC_WIRE_MAX_MSG_BYTES;
  int linger = 0, hwm = 1000;
  if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes) ||
      zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) ||
      zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) || zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm))
    return sdc_seterr(SDC_EIO, "configuring a zmq socket: %s", zmq_strerror(zmq_errno()));
  return SDC_OK;
}

static void sdc__free_packed(void *data, void *hint) {
  (void)hint;
  free(data);
}

int sdc_zmq_send(void *sock, const void *id, size_t id_n, Sdcpb__Envelope *env, int flags) {
  return sdc_zmq_send_n(sock, id, id_n, env, flags, NULL);
}

int sdc_zmq_send_n(void *sock, const void *id, size_t id_n, Sdcpb__Envelope *env, int flags, size_t *n_bytes) {
  if (n_bytes) *n_bytes = 0;
  uint8_t *buf;
  size_t n;
  int rc = sdc_wire_pack(env, &buf, &n);
  if (rc) return rc;
  if (id && zmq_send(sock, id, id_n, flags | ZMQ_SNDMORE) < 0) {
    free(buf);
    return sdc__zmq_err("zmq send (routing id)");
  }
  /* zmq takes the packed buffer as is and frees it once sent. */
  zmq_msg_t msg;
  if (zmq_msg_init_data(&msg, buf, n, sdc__free_packed, NULL) != 0) {
    free(buf);
    return sdc__zmq_err("zmq_msg_init_data");
  }
  if (zmq_msg_send(&msg, sock, flags) < 0) {
    rc = sdc__zmq_err("zmq send");
    zmq_msg_close(&msg);
    return rc;
  }
  sdc__count(&sdc__stats.tx_msgs, 1);
  sdc__count(&sdc__stats.tx_bytes, n);
  if (n_bytes) *n_bytes = n;
  return SDC_OK;
}

/* Reads and discards the frames after a multipart message's first; returns how many. */
static int sdc__zmq_drain(void *sock, int more) {
  int dropped = 0;
  while (more) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) { /* parts arrive together: cannot happen */
      zmq_msg_close(&part);
      break;
    }
    more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    dropped++;
  }
  return dropped;
}

int sdc_zmq_recv(void *sock, Sdcpb__Envelope **env, uint8_t *id, size_t id_cap, size_t *id_n) {
  return sdc_zmq_recv_n(sock, env, id, id_cap, id_n, NULL);
}

int sdc_zmq_recv_n(void *sock, Sdcpb__Envelope **env, uint8_t *id, size_t id_cap, size_t *id_n, size_t *n_bytes) {
  return sdc_zmq_recv_from(sock, env, id, id_cap, id_n, n_bytes, NULL, 0);
}

int sdc_zmq_recv_from(void *sock, Sdcpb__Envelope **env, uint8_t *id, size_t id_cap, size_t *id_n, size_t *n_bytes,
                      char *user, size_t user_cap) {
  if (user && user_cap) user[0] = 0;
  *env = NULL;
  if (n_bytes) *n_bytes = 0;
  if (id_n) *id_n = 0;
  int type = 0, rc = SDC_EPROTOCOL;
  size_t type_n = sizeof type;
  if (zmq_getsockopt(sock, ZMQ_TYPE, &type, &type_n) != 0) return sdc__zmq_err("zmq socket type");
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
    rc = sdc__zmq_err("zmq recv");
    zmq_msg_close(&msg);
    return rc;
  }
  const char *bad = NULL;
  if (type == ZMQ_ROUTER) { /* first frame: the peer's routing id */
    size_t len = zmq_msg_size(&msg);
    if (id && len > id_cap) bad = "routing id longer than the caller's buffer";
    else if (id) memcpy(id, zmq_msg_data(&msg), len);
    if (id_n && !bad) *id_n = len;
    if (!zmq_msg_more(&msg)) {
      bad = "routing id without a body";
    } else {
      zmq_msg_close(&msg);
      zmq_msg_init(&msg);
      if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
        rc = sdc__zmq_err("zmq recv (body)");
        zmq_msg_close(&msg);
        return rc;
      }
    }
  }
  size_t n = zmq_msg_size(&msg);
  sdc__count(&sdc__stats.rx_msgs, 1);
  sdc__count(&sdc__stats.rx_bytes, n);
  if (n_bytes) *n_bytes = n;
  /* Our messages are one frame: anything after it makes the whole message suspect. */
  int extra = sdc__zmq_drain(sock, zmq_msg_more(&msg));
  if (extra && !bad) bad = "multipart message (one frame expected)";
  if (bad) {
    sdc_seterr(rc, "dropped a %zu-byte message: %s (%d extra frames)", n, bad, extra);
    sdc__count(&sdc__stats.dropped_malformed, 1);
  } else {
    rc = sdc_wire_unpack(zmq_msg_data(&msg), n, env);
  }
  /* name the sender of a dropped frame by its TCP address (ZeroMQ knows it; a log line needs it) */
  if (rc) {
    const char *peer = zmq_msg_gets(&msg, "Peer-Address");
    sdc_adderr(rc, "frame from %s", peer && *peer ? peer : "an unknown peer");
  }
  /* CURVE: the name our ZAP handler gave the sender's key; NULL on a plaintext connection */
  const char *uid = user && user_cap ? zmq_msg_gets(&msg, "User-Id") : NULL;
  if (uid) snprintf(user, user_cap, "%s", uid);
  zmq_msg_close(&msg);
  return rc;
}

void sdc_wire_log_drop(const char *where) {
  /* a flood of junk must not become a flood of log lines: a few per window, then a count */
  static int64_t window_ms;
  static uint64_t in_window, suppressed;
  int64_t now_ms = sdc_clock_mono_ms();
  if (now_ms - window_ms >= SDC_WIRE_DROP_LOG_WINDOW_MS) {
    if (suppressed)
      sdc_log(NULL, -1, 0, "%s: %llu more dropped frames not logged", where, (unsigned long long)suppressed);
    window_ms = now_ms, in_window = suppressed = 0;
  }
  if (in_window++ < SDC_WIRE_DROP_LOG_LINES) sdc_log(NULL, -1, 0, "%s: dropped: %s", where, sdc_errmsg(SDC_EPROTOCOL));
  else suppressed++;
}
