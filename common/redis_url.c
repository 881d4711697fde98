/* redis_url.c - redis:// URLs, parsed once for the coordinator, the workers' tools and the clients. */
#include "redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* redis://[[user]:password@]host[:port][/db] */
int sdc_redis_url_parse(sdc_redis_url *c, const char *url) {
  memset(c, 0, sizeof *c);
  if (!url) url = "";
#define SDC__BAD(why) \
  sdc_seterr(SDC_EINVAL, "redis URL '%s': %s (expected redis://[[user]:password@]host[:port][/db])", url, why)
  /* hiredis 0.14 (Debian 12) has no TLS; a TLS-terminating proxy (stunnel) on loopback is the way there */
  if (strncmp(url, "rediss://", 9) == 0) return SDC__BAD("rediss:// (TLS) is not supported: this hiredis has no TLS");
  if (strncmp(url, "redis://", 8) != 0) return SDC__BAD("not a redis:// URL");
  const char *p = url + 8, *slash = strchr(p, '/');
  const char *auth_end = slash ? slash : p + strlen(p), *at = NULL;
  for (const char *q = p; q < auth_end; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) return SDC__BAD("credentials need a ':' before the password");
    if ((size_t)(colon - p) >= sizeof c->user || (size_t)(at - colon - 1) >= sizeof c->password)
      return SDC__BAD("credentials too long");
    memcpy(c->user, p, (size_t)(colon - p));
    memcpy(c->password, colon + 1, (size_t)(at - colon - 1));
    if (!c->password[0]) return SDC__BAD("empty password");
    p = at + 1;
  }
  const char *host_end;
  if (*p == '[') {
    host_end = memchr(p, ']', (size_t)(auth_end - p));
    if (!host_end) return SDC__BAD("unclosed '['");
    p++;
  } else {
    host_end = memchr(p, ':', (size_t)(auth_end - p));
    if (!host_end) host_end = auth_end;
  }
  if (host_end == p || (size_t)(host_end - p) >= sizeof c->host) return SDC__BAD("bad host");
  memcpy(c->host, p, (size_t)(host_end - p));
  p = host_end + (*host_end == ']');
  c->port = 6379;
  if (p < auth_end && *p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end != auth_end || end == p + 1 || port < 1 || port > 65535) return SDC__BAD("bad port");
    c->port = (int)port;
  } else if (p != auth_end) {
    return SDC__BAD("bad host");
  }
  if (slash && slash[1]) {
    char *end;
    long db = strtol(slash + 1, &end, 10);
    if (*end || db < 0 || db > 1000000 || slash[1] == '-' || slash[1] == '+') return SDC__BAD("bad database number");
    c->db = (int)db;
  }
  snprintf(c->where, sizeof c->where, "%s:%d/%d", c->host, c->port, c->db);
  return SDC_OK;
#undef SDC__BAD
}
