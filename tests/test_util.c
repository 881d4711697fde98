/* test_util.c - assertion counters, reference lookup, temp dirs and fills for the C tests. */
#include "test_util.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int sdc_test_failures = 0;

const char *sdc_test_ref_dir(void) {
  const char *ref = getenv("SDC_REF");
  if (!ref || !*ref) ref = "../shared/ref";
  char p[1200];
  snprintf(p, sizeof p, "%s/goldens.json", ref);
  return access(p, R_OK) == 0 ? ref : NULL;
}

void sdc_test_skip(const char *why) {
  printf("SKIP: %s\n", why);
  exit(77);
}

const char *sdc_test_tmpdir(void) {
  static char dir[512];
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/sdc-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    exit(1);
  }
  return dir;
}

void sdc_test_rmtree(const char *dir) {
  char cmd[700];
  if (!dir || strncmp(dir, "/tmp/", 5) != 0 || strstr(dir, "..")) return; /* refuse anything odd */
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

void sdc_test_fill(float *x, int64_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 17, s ^= s << 5;
    x[i] = (float)((s >> 8) * (1.0 / 8388608.0) - 1.0);
  }
}

double sdc_test_rel_err(const float *a, const float *b, int64_t n) {
  double mx = 0.0, mb = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= mx)) mx = isnan(d) ? INFINITY : d;
    if (fabs(b[i]) > mb) mb = fabs(b[i]);
  }
  return mx / (mb > 1.0 ? mb : 1.0);
}

int sdc_test_finish(const char *name) {
  if (sdc_test_failures) printf("%s: %d check(s) failed\n", name, sdc_test_failures);
  else printf("%s: all checks passed\n", name);
  return sdc_test_failures ? 1 : 0;
}

int sdc_test_run(const char *cmd, char *err, size_t n) {
  char full[8192];
  snprintf(full, sizeof full, "%s 2>&1 >/dev/null", cmd);
  FILE *fp = popen(full, "r");
  if (!fp) return -1;
  size_t len = fread(err, 1, n - 1, fp);
  err[len] = 0;
  int st = pclose(fp);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int sdc_test_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

int sdc_test_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}
