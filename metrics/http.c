/* http.c - /metrics, /healthz and /readyz served by libmicrohttpd from its internal polling thread. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"
#include "log.h"

struct sdc_http {
  struct MHD_Daemon *daemon;
  sdc_metrics *reg;
  sdc_http_ready_fn ready;
  void *ctx;
  int port;
};

/* MHD's last message on the thread that is starting a server, so its bind error reaches the caller's
 * error message instead of stderr; messages from the serving thread go to the log. */
static _Thread_local int sdc__starting;
static _Thread_local char sdc__start_msg[256];

static void sdc__mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
  if (sdc__starting)
    snprintf(sdc__start_msg, sizeof sdc__start_msg, "%s", msg);
  else
    sdc_log(NULL, -1, 0, "metrics http: %s", msg);
}

/* Queues one response; body is copied by MHD unless mode says otherwise. */
static enum MHD_Result sdc__reply(struct MHD_Connection *c, unsigned status, const char *content_type, void *body,
                                  size_t n, enum MHD_ResponseMemoryMode mode, const char *allow) {
  struct MHD_Response *r = MHD_create_response_from_buffer(n, body, mode);
  if (!r) {
    if (mode == MHD_RESPMEM_MUST_FREE) free(body);
    return MHD_NO; /* MHD closes the connection */
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result sdc__reply_text(struct MHD_Connection *c, unsigned status, const char *text,
                                       const char *allow) {
  return sdc__reply(c, status, "text/plain; charset=utf-8", (void *)text, strlen(text), MHD_RESPMEM_MUST_COPY,
                    allow);
}

static enum MHD_Result sdc__handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                   const char *version, const char *upload_data, size_t *upload_data_size,
                                   void **req_cls) {
  (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
  sdc_http *srv = cls;
  /* Answered on the first call, before any body: none of these endpoints takes one. */
  if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
    return sdc__reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "GET, HEAD");

  if (!strcmp(url, "/metrics")) {
    char *text;
    size_t n;
    if (sdc_metrics_render(srv->reg, &text, &n)) {
      char msg[512];
      snprintf(msg, sizeof msg, "render failed: %s\n", sdc_errmsg(SDC_ENOMEM));
      return sdc__reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, NULL);
    }
    return sdc__reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, n, MHD_RESPMEM_MUST_FREE,
                      NULL);
  }
  if (!strcmp(url, "/healthz")) return sdc__reply_text(c, MHD_HTTP_OK, "ok\n", NULL);
  if (!strcmp(url, "/readyz")) {
    char why[256] = "";
    if (!srv->ready || srv->ready(srv->ctx, why, sizeof why)) return sdc__reply_text(c, MHD_HTTP_OK, "ready\n", NULL);
    why[sizeof why - 1] = 0;
    char msg[300];
    snprintf(msg, sizeof msg, "not ready: %s\n", why[0] ? why : "(no reason given)");
    return sdc__reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg, NULL);
  }
  return sdc__reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
}

/* "HOST:PORT" into *sa; 0 or SDC_EINVAL naming addr_port. */
static int sdc__parse_addr(const char *addr_port, struct sockaddr_storage *sa, int *is_v6) {
  char host[64];
  const char *colon;
  memset(sa, 0, sizeof *sa);
  *is_v6 = 0;
  if (!addr_port) return sdc_seterr(SDC_EINVAL, "metrics http address (null): want HOST:PORT");
  if (addr_port[0] == '[') {
    const char *rb = strchr(addr_port, ']');
    if (!rb || rb[1] != ':' || (size_t)(rb - addr_port - 1) >= sizeof host)
      return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": want [IPV6]:PORT", addr_port);
    memcpy(host, addr_port + 1, (size_t)(rb - addr_port - 1));
    host[rb - addr_port - 1] = 0;
    colon = rb + 1;
    *is_v6 = 1;
  } else {
    colon = strrchr(addr_port, ':');
    if (!colon || (size_t)(colon - addr_port) >= sizeof host)
      return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": want HOST:PORT or :PORT", addr_port);
    memcpy(host, addr_port, (size_t)(colon - addr_port));
    host[colon - addr_port] = 0;
  }
  const char *p = colon + 1;
  long port = 0;
  if (!*p) return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": no port after the colon", addr_port);
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || (port = port * 10 + (*p - '0')) > 65535)
      return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": port is not a number in 0..65535", addr_port);
  }
  if (*is_v6) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
      return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": \"%s\" is not a numeric IPv6 address", addr_port,
                        host);
    return 0;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
  a4->sin_family = AF_INET;
  a4->sin_port = htons((uint16_t)port);
  if (!host[0])
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
  else if (!strcmp(host, "localhost"))
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
    return sdc_seterr(SDC_EINVAL, "metrics http address \"%s\": \"%s\" is not a numeric IPv4 address (nor "
                      "localhost, nor a bracketed IPv6 one)", addr_port, host);
  return 0;
}

int sdc_http_start(sdc_http **out, const char *addr_port, sdc_metrics *reg, sdc_http_ready_fn ready, void *ctx) {
  *out = NULL;
  struct sockaddr_storage sa;
  int is_v6, err = sdc__parse_addr(addr_port, &sa, &is_v6);
  if (err) return err;
  sdc_http *srv = calloc(1, sizeof *srv);
  if (!srv) return sdc_seterr(SDC_ENOMEM, "metrics http %s: out of memory", addr_port);
  srv->reg = reg;
  srv->ready = ready;
  srv->ctx = ctx;

  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | (is_v6 ? MHD_USE_IPv6 : 0);
  sdc__starting = 1;
  sdc__start_msg[0] = 0;
  errno = 0;
  /* the port argument only shows in MHD's messages: the address comes from MHD_OPTION_SOCK_ADDR */
  uint16_t port = ntohs(is_v6 ? ((struct sockaddr_in6 *)&sa)->sin6_port : ((struct sockaddr_in *)&sa)->sin_port);
  srv->daemon = MHD_start_daemon(flags, port, NULL, NULL, sdc__handle, srv,
                                 MHD_OPTION_EXTERNAL_LOGGER, sdc__mhd_log, NULL,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)SDC_HTTP_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SDC_HTTP_TIMEOUT_S,
                                 MHD_OPTION_END);
  int start_errno = errno;
  sdc__starting = 0;
  if (!srv->daemon) {
    free(srv);
    return sdc_seterr(SDC_EIO, "metrics http %s: cannot listen: %s", addr_port,
                      sdc__start_msg[0] ? sdc__start_msg : start_errno ? strerror(start_errno) : "server did not start");
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
  srv->port = info ? info->port : 0;
  *out = srv;
  return 0;
}

int sdc_http_port(const sdc_http *srv) { return srv->port; }

void sdc_http_stop(sdc_http *srv) {
  if (!srv) return;
  MHD_stop_daemon(srv->daemon);
  free(srv);
}
