/* keygen.c - `sdc keygen`: CURVE key pairs for the cluster and the authorized file that lists them. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "curve.h"
#include "error.h"
#include "sdc_limits.h"

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc keygen --out DIR [--name NAME ...] [--force]\n"
          "  Writes a CURVE key pair per name: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub, and adds\n"
          "  \"PUBLIC-KEY NAME\" to DIR/authorized (created 0644; lines for other names are kept).\n"
          "  --name NAME   a key to make (repeatable; default: coordinator and worker). Names are [A-Za-z0-9._-];\n"
          "                a worker's data socket and the coordinator admit every key in authorized, and\n"
          "                sdc-worker finds the coordinator's public key under the name 'coordinator'\n"
          "  --force       replace existing key files of these names (key rotation: docs/security.md)\n"
          "  Give the coordinator --curve-key DIR/coordinator.key --curve-authorized DIR/authorized and each\n"
          "  worker --curve-key DIR/worker.key --curve-authorized DIR/authorized.\n");
}

static int sdc__name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= SDC_MAX_WORKER_ID || strcmp(s, "authorized") == 0 || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i])) return 0;
  return 1;
}

/* Writes text to path with mode (a new file unless force). */
static int sdc__write(const char *path, const char *text, mode_t mode, int force) {
  if (force) unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) {
    fprintf(stderr, "sdc keygen: %s: %s%s\n", path, strerror(errno), errno == EEXIST ? " (--force replaces it)" : "");
    return -1;
  }
  size_t n = strlen(text);
  int ok = write(fd, text, n) == (ssize_t)n && fchmod(fd, mode) == 0;
  ok &= close(fd) == 0;
  if (!ok) fprintf(stderr, "sdc keygen: %s: %s\n", path, strerror(errno));
  return ok ? 0 : -1;
}

int sdc_keygen_write(const char *out, const char *const *names, int n_names, int force, int quiet) {
  if (!zmq_has("curve")) {
    fprintf(stderr, "sdc keygen: this libzmq was built without CURVE\n");
    return 1;
  }
  if (mkdir(out, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "sdc keygen: --out %s: %s\n", out, strerror(errno));
    return 1;
  }
  /* the authorized file: existing lines for other names are kept (adding a worker key to a cluster) */
  char path[4096];
  snprintf(path, sizeof path, "%s/authorized", out);
  FILE *fp = fopen(path, "r");
  char *kept = calloc(1, SDC_CURVE_AUTH_FILE_BYTES + 1);
  size_t kept_n = 0;
  if (!kept) return 1;
  if (fp) {
    char line[512];
    while (fgets(line, sizeof line, fp)) {
      char key[64] = "", name[SDC_MAX_WORKER_ID + 1] = "";
      int replaced = 0;
      if (sscanf(line, "%63s %128s", key, name) == 2)
        for (int i = 0; i < n_names; i++) replaced |= strcmp(name, names[i]) == 0;
      if (replaced && !force) {
        fprintf(stderr, "sdc keygen: %s already lists '%s' (--force replaces it)\n", path, name);
        free(kept);
        fclose(fp);
        return 1;
      }
      if (!replaced && kept_n + strlen(line) < SDC_CURVE_AUTH_FILE_BYTES) {
        memcpy(kept + kept_n, line, strlen(line));
        kept_n += strlen(line);
      }
    }
    fclose(fp);
  }
  for (int i = 0; i < n_names; i++) {
    char pub[SDC_CURVE_Z85], sec[SDC_CURVE_Z85], text[64];
    if (zmq_curve_keypair(pub, sec) != 0) {
      fprintf(stderr, "sdc keygen: zmq_curve_keypair: %s\n", zmq_strerror(errno));
      free(kept);
      return 1;
    }
    snprintf(path, sizeof path, "%s/%s.key", out, names[i]);
    snprintf(text, sizeof text, "%s\n", sec);
    if (sdc__write(path, text, 0600, force)) return free(kept), 1;
    snprintf(path, sizeof path, "%s/%s.pub", out, names[i]);
    snprintf(text, sizeof text, "%s\n", pub);
    if (sdc__write(path, text, 0644, force)) return free(kept), 1;
    kept_n += (size_t)snprintf(kept + kept_n, SDC_CURVE_AUTH_FILE_BYTES + 1 - kept_n, "%s %s\n", pub, names[i]);
    if (!quiet) printf("%s %s\n", pub, names[i]);
  }
  snprintf(path, sizeof path, "%s/authorized", out);
  int rc = sdc__write(path, kept, 0644, 1) ? 1 : 0;
  free(kept);
  return rc;
}

int sdc_cmd_keygen(int argc, char **argv) {
  const char *out = NULL, *names[SDC_CURVE_MAX_KEYS];
  int n_names = 0, force = 0, ch;
  static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {"name", required_argument, 0, 'n'},
                                       {"force", no_argument, 0, 'f'},    {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  optind = 1;
  while ((ch = getopt_long(argc, argv, "o:n:fh", opts, NULL)) != -1) {
    switch (ch) {
      case 'o': out = optarg; break;
      case 'n':
        if (!sdc__name_ok(optarg)) {
          fprintf(stderr,
                  "sdc keygen: --name '%.140s': 1..%d bytes of [A-Za-z0-9._-], not starting with '.', not 'authorized'\n",
                  optarg, SDC_MAX_WORKER_ID - 1);
          return 2;
        }
        if (n_names == SDC_CURVE_MAX_KEYS) {
          fprintf(stderr, "sdc keygen: more than SDC_CURVE_MAX_KEYS (%d) names\n", SDC_CURVE_MAX_KEYS);
          return 2;
        }
        names[n_names++] = optarg;
        break;
      case 'f': force = 1; break;
      case 'h': sdc__usage(stdout); return 0;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (!out || optind != argc) {
    sdc__usage(stderr);
    return 2;
  }
  if (!n_names) names[n_names++] = "coordinator", names[n_names++] = "worker";
  for (int i = 0; i < n_names; i++)
    for (int k = 0; k < i; k++)
      if (strcmp(names[i], names[k]) == 0) {
        fprintf(stderr, "sdc keygen: --name %s given twice\n", names[i]);
        return 2;
      }
  return sdc_keygen_write(out, names, n_names, force, 0);
}
