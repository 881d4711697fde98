/* redis_url.h - redis:// URLs, parsed once for the coordinator and the clients. */
#ifndef SDC_REDIS_URL_H
#define SDC_REDIS_URL_H

typedef struct {
  char host[256];     /* a name, an IPv4 address or an IPv6 address without brackets */
  int port;           /* 6379 unless given */
  int db;             /* 0 unless given */
  char user[128];     /* ACL user, "" for the default user */
  char password[256]; /* "" when the URL has no credentials: no AUTH is sent */
  char where[300];    /* "host:port/db", for messages: never the password */
} sdc_redis_url;

/* Parses redis://[[user]:password@]host[:port][/db]. SDC_EINVAL with a message
 * naming the URL and what is wrong with it. */
int sdc_redis_url_parse(sdc_redis_url *u /* OUT */, const char *url);

#endif
