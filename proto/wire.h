/* wire.h - protobuf envelopes and tensors on ZeroMQ sockets: strict decoding, checksums, counters. */
#ifndef SDC_WIRE_H
#define SDC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "crc32c.h"
#include "sdc_limits.h"
#include "sdc.pb-c.h"
#include "tensor.h"

#define SDC_PROTOCOL_VERSION 1
/* Process-wide counters, for /metrics. Updated atomically. */
typedef struct {
  uint64_t rx_msgs, rx_bytes, tx_msgs, tx_bytes;
  uint64_t dropped_malformed; /* not a protobuf Envelope, or no body */
  uint64_t dropped_version;   /* another protocol version */
  uint64_t bad_tensors;       /* checksum, dtype, shape or size mismatch */
} sdc_wire_stats;
void sdc_wire_stats_get(sdc_wire_stats *out /* OUT */);

/* Fills pb (already sdcpb__tensor__init'ed) from n floats of shape (ndim, shape),
 * converted to wire_dtype (F32, F16 or BF16), with its checksum. The bytes
 * live in *owned (heap), which the caller frees after packing. */
int sdc_wire_tensor_set(Sdcpb__Tensor *pb, const float *x, int ndim, const int64_t *shape, Sdcpb__DType wire_dtype,
                        void **owned /* OUT */);
/* Validates pb -- known dtype, ndim and every dimension equal to `shape`
 * (a -1 in shape accepts any size there), byte count, checksum -- and widens
 * it into out (numel floats). `what` names the tensor in errors ("skips[3]").
 * *numel gets the element count when non-NULL. */
int sdc_wire_tensor_get(const Sdcpb__Tensor *pb, const char *what, int ndim, const int64_t *shape, float *out,
                        int64_t *numel /* OUT, may be NULL */);
/* Same validation without copying: the tensor's shape (up to SDC_MAX_DIMS). */
int sdc_wire_tensor_check(const Sdcpb__Tensor *pb, const char *what, int *ndim /* OUT */, int64_t *shape /* OUT */);

/* Serializes env (its version is set to SDC_PROTOCOL_VERSION) into a heap
 * buffer (caller frees). */
int sdc_wire_pack(Sdcpb__Envelope *env, uint8_t **buf /* OUT */, size_t *n /* OUT */);
/* Decodes one frame. Malformed frames, other versions and envelopes without a
 * body are SDC_EPROTOCOL (and counted). Free *env with sdc_wire_free(). */
int sdc_wire_unpack(const uint8_t *buf, size_t n, Sdcpb__Envelope **env /* OUT */);
void sdc_wire_free(Sdcpb__Envelope *env);

/* Sets ZMQ_MAXMSGSIZE, ZMQ_LINGER 0 and sensible high-water marks on a socket. */
int sdc_zmq_configure(void *sock);
/* Packs and sends env as one message; with a routing id (ROUTER sockets) it
 * goes first as its own frame. flags: ZMQ_DONTWAIT or 0. */
int sdc_zmq_send(void *sock, const void *id, size_t id_n, Sdcpb__Envelope *env, int flags);
/* sdc_zmq_send that also reports the body frame's size in *n_bytes (0 unless sent; NULL is fine), for
 * callers that count bytes per link (the process-wide total is in sdc_wire_stats). */
int sdc_zmq_send_n(void *sock, const void *id, size_t id_n, Sdcpb__Envelope *env, int flags, size_t *n_bytes /* OUT */);
/* Receives one envelope without blocking: SDC_EAGAIN when nothing is there,
 * SDC_EPROTOCOL for a dropped frame (try again), SDC_OK with *env set. For a
 * ROUTER socket pass id/id_cap to get the sender's identity (*id_n); it is
 * also set for a dropped frame, for logs, unless it did not fit in id_cap
 * (then the frame is dropped and *id_n is 0). Other sockets: id may be NULL.
 * A message of more than one frame (after the ROUTER's identity) is dropped
 * whole. */
int sdc_zmq_recv(void *sock, Sdcpb__Envelope **env /* OUT */, uint8_t *id, size_t id_cap, size_t *id_n);
/* sdc_zmq_recv that also reports the body frame's size in *n_bytes (also for a dropped frame; 0 when
 * nothing was received; NULL is fine). */
int sdc_zmq_recv_n(void *sock, Sdcpb__Envelope **env /* OUT */, uint8_t *id, size_t id_cap, size_t *id_n,
                   size_t *n_bytes /* OUT */);
/* sdc_zmq_recv_n that also copies the connection's authenticated name (the ZAP User-Id: the name of the
 * sender's CURVE key in the authorized file) into user (cut at user_cap); "" on a plaintext connection. */
int sdc_zmq_recv_from(void *sock, Sdcpb__Envelope **env /* OUT */, uint8_t *id, size_t id_cap, size_t *id_n,
                      size_t *n_bytes /* OUT */, char *user /* OUT */, size_t user_cap);

/* Logs the calling thread's message of a frame sdc_zmq_recv dropped (it names the sender), at most
 * SDC_WIRE_DROP_LOG_LINES lines per SDC_WIRE_DROP_LOG_WINDOW_MS, then how many went unlogged. where names
 * the socket ("control socket"). Loop thread only. */
void sdc_wire_log_drop(const char *where);

#endif
