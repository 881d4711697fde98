/* http.h - the scrape and probe endpoints (/metrics, /healthz, /readyz) on libmicrohttpd's own thread.
 *
 *   GET /metrics  200, sdc_metrics_render's text, Content-Type: text/plain; version=0.0.4; charset=utf-8
 *   GET /healthz  200 "ok\n" as long as the process serves at all
 *   GET /readyz   200 "ready\n" when ready(ctx, why, n) returns nonzero (or ready is NULL),
 *                 else 503 "not ready: <why>\n"
 *   other paths   404;  methods other than GET and HEAD: 405 with Allow: GET, HEAD
 *
 * One internal polling thread serves every connection; at most SDC_HTTP_MAX_CONNECTIONS at once, each
 * closed after SDC_HTTP_TIMEOUT_S idle seconds, so a slow or hostile client cannot starve the process. */
#ifndef SDC_HTTP_H
#define SDC_HTTP_H

#include <stddef.h>

#include "metrics.h"

typedef struct sdc_http sdc_http;

#define SDC_HTTP_MAX_CONNECTIONS 32
#define SDC_HTTP_TIMEOUT_S 10

/* Whether the process is ready for traffic. Called on the server's thread for each GET /readyz, so it
 * must be thread-safe with whatever it reads through ctx; on "not ready" it writes a NUL-terminated reason
 * into why (n bytes, n >= 1) and returns 0. */
typedef int (*sdc_http_ready_fn)(void *ctx, char *why, size_t n);

/* Listens on addr_port and serves reg until sdc_http_stop. addr_port is "HOST:PORT" with HOST a numeric
 * IPv4 address, "localhost" (127.0.0.1), a bracketed IPv6 address ("[::1]:9100"), or empty (":9100",
 * every IPv4 interface); PORT 0 picks a free port (sdc_http_port says which). reg and ctx stay the
 * caller's and must outlive the server. On success *out is the caller's to sdc_http_stop.
 * Errors name addr_port: SDC_EINVAL for an address that does not parse, SDC_EIO when it cannot be bound
 * (port in use, address not on this host, permission) or the server does not start; SDC_ENOMEM. */
int sdc_http_start(sdc_http **out /* OUT */, const char *addr_port, sdc_metrics *reg, sdc_http_ready_fn ready,
                   void *ctx);
/* The TCP port the server listens on (the one picked when addr_port asked for port 0). */
int sdc_http_port(const sdc_http *srv);
/* Stops the thread, closes every connection and the listening socket, frees srv; NULL is fine. */
void sdc_http_stop(sdc_http *srv);

#endif
