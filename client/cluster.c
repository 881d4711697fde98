/* cluster.c - `sdc cluster`: a coordinator and its workers (and Redis when none is given) on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "error.h"
#include "flag.h"
#include "log.h"
#include "ops.h"
#include "redis_url.h"
#include "sdc_limits.h"
#include "stage.h"

extern char **environ;

/* the coordinator and every replica of every stage */
#define SDC__MAX_CHILDREN (1 + (SDC_STAGE_END - 1) * SDC_CLUSTER_MAX_REPLICAS)

typedef struct {
  pid_t pid;
  char name[SDC_MAX_WORKER_ID];
  char *argv[64]; /* every flag a child gets, with room to spare; NULL-terminated */
  int restarts; /* failures in a row; a drain (exit 0) is not one */
  int fd;       /* read end of the child's stdout+stderr, relayed line by line to ours; -1: none */
  const char *ready_mark; /* a line holding this means the child started (model loaded, socket bound) */
  int ready;              /* seen since the last start */
  int64_t restart_at_ms;  /* monotonic: a failed child waits out its backoff; 0: not waiting */
  char line[512];         /* the line being relayed */
  size_t line_n;
  char last[512]; /* the last complete line, quoted when the child cannot start */
} sdc__child;

/* How a child ended, for the log: "exit 0", "exit 1", "signal 9". */
static void sdc__status_text(int status, char *out, size_t n) {
  if (WIFEXITED(status)) snprintf(out, n, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(out, n, "signal %d", WTERMSIG(status));
  else snprintf(out, n, "status %d", status);
}

static volatile sig_atomic_t sdc__stop_signal = 0;
static void sdc__on_stop(int sig) { sdc__stop_signal = sig; }

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int sdc__free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* Children's stdout goes to our stderr: our stdout carries only the Redis URL. A child with a ready mark
 * writes into a pipe that sdc__relay copies to our stderr, so its last line is known when it fails. */
static int sdc__spawn(sdc__child *c) {
  int p[2] = {-1, -1};
  if (c->ready_mark && pipe2(p, O_CLOEXEC) != 0) p[0] = p[1] = -1;
  const pid_t parent = getpid();
  c->pid = fork();
  if (c->pid == 0) {
    /* sdc cluster gone, even SIGKILLed: the child gets SIGTERM and drains instead of running on as an
     * orphan nobody supervises (and a restarted sdc cluster would start a second set beside it) */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127); /* it died before the line above */
    if (p[1] >= 0) dup2(p[1], 1), dup2(p[1], 2); /* dup2 clears O_CLOEXEC on the copies */
    else dup2(2, 1);
    execve(c->argv[0], c->argv, environ);
    fprintf(stderr, "sdc cluster: cannot start %s: %s\n", c->argv[0], strerror(errno)); /* its last line */
    _exit(127);
  }
  if (p[1] >= 0) close(p[1]);
  if (c->pid < 0) {
    sdc_log(NULL, -1, 0, "cannot start %s: fork: %s", c->argv[0], strerror(errno));
    if (p[0] >= 0) close(p[0]);
    c->pid = 0;
    return -1;
  }
  if (p[0] >= 0) fcntl(p[0], F_SETFL, O_NONBLOCK);
  c->fd = p[0], c->ready = 0, c->line_n = 0, c->restart_at_ms = 0;
  if (c->name[0]) sdc_log(NULL, -1, 0, "started %s (pid %d)", c->name, (int)c->pid);
  return 0;
}

static sdc__child *sdc__all; /* every child but Redis, for the relay */
static int sdc__n_all;

/* Copies what the children wrote to our stderr, whole lines at a time, noting each child's last line and
 * its ready mark; waits at most wait_ms for output. A child's pipe is closed at its end of file. */
static void sdc__relay(sdc__child *kids, int n, int wait_ms) {
  struct pollfd pf[SDC__MAX_CHILDREN];
  int idx[SDC__MAX_CHILDREN], k = 0;
  for (int i = 0; i < n; i++)
    if (kids[i].fd >= 0) pf[k] = (struct pollfd){.fd = kids[i].fd, .events = POLLIN}, idx[k++] = i;
  if (!k) {
    if (wait_ms > 0) sdc_clock_sleep_ms(wait_ms);
    return;
  }
  if (poll(pf, (nfds_t)k, wait_ms) <= 0) return;
  for (int m = 0; m < k; m++) {
    if (!pf[m].revents) continue;
    sdc__child *c = &kids[idx[m]];
    char buf[4096];
    ssize_t got;
    while ((got = read(c->fd, buf, sizeof buf)) > 0)
      for (ssize_t b = 0; b < got; b++) {
        if (c->line_n < sizeof c->line - 1) c->line[c->line_n++] = buf[b];
        if (buf[b] != '\n' && c->line_n < sizeof c->line - 1) continue;
        c->line[c->line_n] = 0;
        fputs(c->line, stderr);
        if (buf[b] != '\n') fputc('\n', stderr); /* a line too long for the buffer: cut */
        c->line[strcspn(c->line, "\n")] = 0;
        snprintf(c->last, sizeof c->last, "%s", c->line);
        if (c->ready_mark && strstr(c->line, c->ready_mark)) c->ready = 1;
        c->line_n = 0;
      }
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) close(c->fd), c->fd = -1;
  }
}

/* Sends SIGTERM to each of kids[0..n) still running and waits, at most timeout_ms, for them to drain;
 * one still running then is killed (SIGKILL). Logs each one's status and drain time. Returns how many
 * did not exit 0. */
static int sdc__drain_children(sdc__child *kids, int n, int64_t timeout_ms) {
  int64_t t0 = sdc_clock_mono_ms(), sent[SDC__MAX_CHILDREN];
  int left = 0, failed = 0;
  for (int i = 0; i < n; i++)
    if (kids[i].pid > 0) kill(kids[i].pid, SIGTERM), sent[i] = sdc_clock_mono_ms(), left++;
  while (left > 0) {
    const int over = sdc_clock_mono_ms() > t0 + timeout_ms;
    for (int i = 0; i < n; i++) {
      if (kids[i].pid <= 0) continue;
      int status;
      if (over) kill(kids[i].pid, SIGKILL);
      pid_t p = waitpid(kids[i].pid, &status, over ? 0 : WNOHANG);
      if (p == kids[i].pid) sdc__relay(kids + i, 1, 0);
      if (p != kids[i].pid) continue;
      char how[32];
      sdc__status_text(status, how, sizeof how);
      sdc_log(NULL, -1, 0, "%s (pid %d) stopped (%s) %lld ms after SIGTERM%s", kids[i].name, (int)kids[i].pid, how,
              (long long)(sdc_clock_mono_ms() - sent[i]), over ? ", killed: past the drain timeout" : "");
      failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      kids[i].pid = 0, left--;
    }
    if (left) sdc__relay(sdc__all, sdc__n_all, 20); /* a child blocked on a full pipe could not drain */
  }
  return failed;
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc cluster --model PATH [--config DIR] [--redis URL] [--replicas STAGE=N,...] [options]\n"
          "  Starts a coordinator and one worker process per stage replica on loopback, and a\n"
          "  redis-server on a free port when --redis is omitted; runs until SIGTERM/SIGINT, then drains.\n"
          "  --replicas LIST   e.g. unet-down=2,unet-mid=2,unet-up=2 (stages: text, unet-down, unet-mid,\n"
          "                    unet-up, vae; default 1 each)\n"
          "  --port N          coordinator control port (default: a free one)\n"
          "  --max-jobs N      jobs in flight at once (default 8)\n"
          "  --wire f32|f16|bf16\n"
          "  --precision fp32|bf16  the workers' GEMM arithmetic (default fp32)\n"
          "  --log-hops        workers log one line per hop (sdc-worker --log-hops)\n"
          "  --http-base PORT  serve metrics: the coordinator on 127.0.0.1:PORT, the workers on PORT+1, PORT+2, ...\n"
          "                    in start order; one line per process names its URL on stderr (default: none)\n"
          "  --threads N       compute threads of each worker (its OPENBLAS_NUM_THREADS and OMP_NUM_THREADS);\n"
          "                    default: as for sdc generate (every core, or the environment's setting), so the\n"
          "                    pixels equal sdc generate's. Fewer (e.g. cores / workers) is faster when several\n"
          "                    workers share a machine, but the last bits of the images then differ\n"
          "  --drain-timeout-ms N   every child's --drain-timeout-ms (default %d)\n"
          "  --coordinator-drain-timeout-ms N   the coordinator's, when it differs\n"
          "  --reclaim-idle-ms N    the coordinator's --reclaim-idle-ms (default %d)\n"
          "  --insecure        plaintext ZeroMQ. By default every link is CURVE-encrypted with keys made for this\n"
          "                    run (coordinator.key and one per worker id, in a 0700 temp folder removed at exit)\n"
          "  --max-pixels N         the coordinator's cap on width*height (default %lld)\n"
          "  --step-timeout-ms N    the coordinator's per-step deadline, 100..%d (default %d)\n"
          "  --job-timeout-ms N     the coordinator's per-job deadline, %d..%d (default %d)\n"
          "  --ttl S                results expire after S seconds (default %d)\n"
          "  --worker-memory-mib N  every worker's --memory-mib: the memory each may use (they share this machine)\n"
          "  --worker-max-queue N   every worker's --max-queue (default %d)\n"
          "  --redis-dir DIR   (without --redis) the Redis it starts keeps an append-only file in DIR: jobs survive\n"
          "                    a Redis crash or restart, and a Redis that exits is started again on the same port\n"
          "  --lora-dir DIR    the text and UNet workers' --lora-dir: the LoRAs jobs may name (NAME.safetensors)\n"
          "  --lora-cache N    their --lora-cache: LoRA-merged model sets each keeps (default %d)\n"
          "  --redis-fsync always|everysec   that AOF's appendfsync (default everysec: a SIGKILL may lose the\n"
          "                    last second of writes; always: none, at a cost per write)\n"
          "  Every flag is checked before anything starts. A child that exits is started again: one that\n"
          "  drained (exit 0) at once, a failed one after a backoff (%d ms doubling to %d ms), forever. A child\n"
          "  that fails before it ever started (exit 2: a bad flag or a model it cannot load; or %d failures\n"
          "  in a row) is fatal: sdc cluster stops the others and exits 1, quoting the child's last line.\n"
          "  Each start, exit and status is logged with the pid.\n"
          "  On SIGTERM/SIGINT: the coordinator drains first (its jobs finish or are left pending) while the\n"
          "  workers serve; then the workers drain; exit 0 when every child exited 0.\n",
          SDC_DEFAULT_DRAIN_TIMEOUT_MS, SDC_COORD_RECLAIM_IDLE_MS, (long long)SDC_DEFAULT_MAX_PIXELS,
          SDC_COORD_MAX_STEP_TIMEOUT_MS, SDC_COORD_DEFAULT_STEP_TIMEOUT_MS, SDC_COORD_MIN_JOB_TIMEOUT_MS,
          SDC_COORD_MAX_JOB_TIMEOUT_MS, SDC_COORD_DEFAULT_JOB_TIMEOUT_MS, SDC_DEFAULT_RESULT_TTL_S, SDC_WORKER_MAX_QUEUE,
          SDC_WORKER_DEFAULT_LORA_CACHE, SDC_CLUSTER_RESTART_MIN_MS, SDC_CLUSTER_RESTART_MAX_MS, SDC_CLUSTER_START_TRIES);
}

int sdc_cmd_cluster(int argc, char **argv) {
  const char *model = NULL, *config = NULL, *redis = NULL, *replicas = "", *wire = "f32", *max_jobs = "8",
             *precision = "fp32";
  int port = 0, log_hops = 0;
  int64_t http_base = 0, threads = 0; /* threads 0: the environment's */
  int64_t drain_ms = SDC_DEFAULT_DRAIN_TIMEOUT_MS, coord_drain_ms = -1, reclaim_ms = SDC_COORD_RECLAIM_IDLE_MS;
  int insecure = 0;
  int64_t max_pixels = SDC_DEFAULT_MAX_PIXELS, step_timeout_ms = SDC_COORD_DEFAULT_STEP_TIMEOUT_MS,
          job_timeout_ms = SDC_COORD_DEFAULT_JOB_TIMEOUT_MS, ttl_s = SDC_DEFAULT_RESULT_TTL_S;
  int64_t worker_mem_mib = 0, worker_max_queue = SDC_WORKER_MAX_QUEUE;
  const char *redis_dir = NULL, *redis_fsync = NULL;
  int64_t port_v = 0, max_jobs_v = SDC_COORD_DEFAULT_MAX_JOBS;
  enum { O_DRAIN = 256, O_COORD_DRAIN, O_RECLAIM, O_THREADS, O_MAXPX, O_STEP_TIMEOUT, O_JOB_TIMEOUT, O_TTL, O_WORKER_MEM,
         O_WORKER_QUEUE, O_INSECURE, O_REDIS_DIR, O_REDIS_FSYNC, O_LORA_DIR, O_LORA_CACHE };
  const char *lora_dir = NULL, *lora_cache = NULL;
  int64_t lora_cache_v = 0;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},    {"config", required_argument, 0, 'c'},
                                       {"redis", required_argument, 0, 'r'},    {"replicas", required_argument, 0, 'R'},
                                       {"port", required_argument, 0, 'p'},     {"max-jobs", required_argument, 0, 'j'},
                                       {"wire", required_argument, 0, 'w'},     {"help", no_argument, 0, 'h'},
                                       {"precision", required_argument, 0, 'P'}, {"log-hops", no_argument, 0, 'L'},
                                       {"http-base", required_argument, 0, 'H'},
                                       {"drain-timeout-ms", required_argument, 0, O_DRAIN},
                                       {"coordinator-drain-timeout-ms", required_argument, 0, O_COORD_DRAIN},
                                       {"reclaim-idle-ms", required_argument, 0, O_RECLAIM},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"insecure", no_argument, 0, O_INSECURE},
                                       {"max-pixels", required_argument, 0, O_MAXPX},
                                       {"step-timeout-ms", required_argument, 0, O_STEP_TIMEOUT},
                                       {"job-timeout-ms", required_argument, 0, O_JOB_TIMEOUT},
                                       {"ttl", required_argument, 0, O_TTL},
                                       {"worker-memory-mib", required_argument, 0, O_WORKER_MEM},
                                       {"worker-max-queue", required_argument, 0, O_WORKER_QUEUE},
                                       {"redis-dir", required_argument, 0, O_REDIS_DIR},
                                       {"redis-fsync", required_argument, 0, O_REDIS_FSYNC},
                                       {"lora-dir", required_argument, 0, O_LORA_DIR},
                                       {"lora-cache", required_argument, 0, O_LORA_CACHE},
                                       {0, 0, 0, 0}};
  int ch, err = SDC_OK;
  optind = 1;
  while (!err && (ch = getopt_long(argc, argv, "m:c:r:R:p:j:w:P:Lh", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'c': config = optarg; break;
      case 'r': redis = optarg; break;
      case 'R': replicas = optarg; break;
      case 'p': err = sdc_flag_int("--port", optarg, 1, 65535, &port_v), port = (int)port_v; break;
      case 'j': err = sdc_flag_int("--max-jobs", optarg, 1, SDC_COORD_MAX_JOBS, &max_jobs_v), max_jobs = optarg; break;
      case O_REDIS_DIR: redis_dir = optarg; break;
      case O_REDIS_FSYNC: redis_fsync = optarg; break;
      case O_LORA_DIR: lora_dir = optarg; break;
      case O_LORA_CACHE:
        err = sdc_flag_int("--lora-cache", optarg, 0, SDC_WORKER_MAX_LORA_CACHE, &lora_cache_v), lora_cache = optarg;
        break;
      case 'w': wire = optarg; break;
      case O_MAXPX:
        err = sdc_flag_int("--max-pixels", optarg, SDC_MIN_IMAGE_SIDE * SDC_MIN_IMAGE_SIDE,
                           (int64_t)SDC_MAX_IMAGE_SIDE * SDC_MAX_IMAGE_SIDE, &max_pixels);
        break;
      case O_STEP_TIMEOUT:
        err = sdc_flag_int("--step-timeout-ms", optarg, 100, SDC_COORD_MAX_STEP_TIMEOUT_MS, &step_timeout_ms);
        break;
      case O_JOB_TIMEOUT:
        err = sdc_flag_int("--job-timeout-ms", optarg, SDC_COORD_MIN_JOB_TIMEOUT_MS, SDC_COORD_MAX_JOB_TIMEOUT_MS,
                           &job_timeout_ms);
        break;
      case O_TTL: err = sdc_flag_int("--ttl", optarg, 1, INT32_MAX, &ttl_s); break;
      case O_WORKER_QUEUE:
        err = sdc_flag_int("--worker-max-queue", optarg, 1, SDC_WORKER_MAX_QUEUE_LIMIT, &worker_max_queue);
        break;
      case O_WORKER_MEM: err = sdc_flag_int("--worker-memory-mib", optarg, 1, (int64_t)1 << 30, &worker_mem_mib); break;
      case 'P': precision = optarg; break;
      case 'L': log_hops = 1; break;
      case 'H': err = sdc_flag_int("--http-base", optarg, 1, 65535, &http_base); break;
      case O_DRAIN: err = sdc_flag_int("--drain-timeout-ms", optarg, 0, SDC_MAX_DRAIN_TIMEOUT_MS, &drain_ms); break;
      case O_COORD_DRAIN:
        err = sdc_flag_int("--coordinator-drain-timeout-ms", optarg, 0, SDC_MAX_DRAIN_TIMEOUT_MS, &coord_drain_ms);
        break;
      case O_THREADS: err = sdc_flag_int("--threads", optarg, 1, 1024, &threads); break;
      case O_RECLAIM:
        err = sdc_flag_int("--reclaim-idle-ms", optarg, SDC_COORD_MIN_RECLAIM_IDLE_MS, SDC_COORD_MAX_RECLAIM_IDLE_MS,
                           &reclaim_ms);
        break;
      case O_INSECURE: insecure = 1; break;
      case 'h': sdc__usage(stdout); return 0;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (err) {
    fprintf(stderr, "sdc cluster: %s\n", sdc_errmsg(err));
    return 2;
  }
  if (!model || optind != argc) {
    sdc__usage(stderr);
    return 2;
  }
  sdc_precision prec;
  if (sdc_precision_parse(precision, &prec)) {
    fprintf(stderr, "sdc cluster: %s\n", sdc_errmsg(SDC_EINVAL));
    return 2;
  }
  /* every flag a child would refuse is refused here, before anything starts */
  if (strcmp(wire, "f32") != 0 && strcmp(wire, "f16") != 0 && strcmp(wire, "bf16") != 0) {
    fprintf(stderr, "sdc cluster: --wire '%s': expected f32, f16 or bf16\n", wire);
    return 2;
  }
  if ((redis_dir || redis_fsync) && redis) {
    fprintf(stderr, "sdc cluster: --redis-dir and --redis-fsync are for the Redis sdc cluster starts; not with --redis\n");
    return 2;
  }
  if (redis_fsync && strcmp(redis_fsync, "always") != 0 && strcmp(redis_fsync, "everysec") != 0) {
    fprintf(stderr, "sdc cluster: --redis-fsync '%s': expected always or everysec\n", redis_fsync);
    return 2;
  }
  struct stat dst;
  if (redis_dir && mkdir(redis_dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "sdc cluster: --redis-dir %s: %s\n", redis_dir, strerror(errno));
    return 2;
  }
  if (redis_dir && (stat(redis_dir, &dst) != 0 || !S_ISDIR(dst.st_mode) || access(redis_dir, W_OK) != 0)) {
    fprintf(stderr, "sdc cluster: --redis-dir %s: not a writable directory\n", redis_dir);
    return 2;
  }
  if (lora_dir && (stat(lora_dir, &dst) != 0 || !S_ISDIR(dst.st_mode) || access(lora_dir, R_OK | X_OK) != 0)) {
    fprintf(stderr, "sdc cluster: --lora-dir %s: not a readable directory\n", lora_dir);
    return 2;
  }
  int count[SDC_STAGE_END];
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) count[s] = 1;
  char buf[256];
  if (strlen(replicas) >= sizeof buf) {
    fprintf(stderr, "sdc cluster: --replicas: %zu bytes, at most %zu\n", strlen(replicas), sizeof buf - 1);
    return 2;
  }
  snprintf(buf, sizeof buf, "%s", replicas);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    int n = eq ? atoi(eq + 1) : -1;
    if (eq) *eq = 0;
    sdc_stage found = sdc_stage_parse(tok);
    if (found == SDC_STAGE_INVALID || n < 1 || n > SDC_CLUSTER_MAX_REPLICAS) {
      fprintf(stderr, "sdc cluster: --replicas: '%s' is not STAGE=N with N in 1..%d (stages:", tok,
              SDC_CLUSTER_MAX_REPLICAS);
      for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) fprintf(stderr, " %s", sdc_stage_name(s));
      fprintf(stderr, ")\n");
      return 2;
    }
    count[found] = n;
  }
  int n_procs = 1;
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++) n_procs += count[s];
  if (http_base && http_base + n_procs - 1 > 65535) {
    fprintf(stderr, "sdc cluster: --http-base %lld: %d processes need ports up to %lld, past 65535\n",
            (long long)http_base, n_procs, (long long)http_base + n_procs - 1);
    return 2;
  }
  struct stat st;
  if (stat(model, &st) != 0) {
    fprintf(stderr, "sdc cluster: %s: %s\n", model, strerror(errno));
    return 2;
  }
  sdc_log_init("cluster", NULL);
  /* our siblings: sdc-coordinator and sdc-worker live beside this binary */
  char self[4096], dir[4096], coord_bin[4200], worker_bin[4200];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 2;
  self[n] = 0;
  snprintf(dir, sizeof dir, "%s", dirname(self));
  snprintf(coord_bin, sizeof coord_bin, "%s/sdc-coordinator", dir);
  snprintf(worker_bin, sizeof worker_bin, "%s/sdc-worker", dir);

  static sdc__child kids[SDC__MAX_CHILDREN];
  int n_kids = 0;
  static char http_addr[SDC__MAX_CHILDREN][32]; /* 127.0.0.1:PORT per child, with --http-base */
  static char redis_url[128], redis_port_s[16], bind_url[128], coord_url[128], drain_s[24], coord_drain_s[24],
      reclaim_s[24], max_pixels_s[24], step_timeout_s[24], job_timeout_s[24], ttl_s_s[24], worker_mem_s[24], worker_queue_s[24];
  snprintf(worker_queue_s, sizeof worker_queue_s, "%lld", (long long)worker_max_queue);
  snprintf(worker_mem_s, sizeof worker_mem_s, "%lld", (long long)worker_mem_mib);
  snprintf(max_pixels_s, sizeof max_pixels_s, "%lld", (long long)max_pixels);
  snprintf(step_timeout_s, sizeof step_timeout_s, "%lld", (long long)step_timeout_ms);
  snprintf(job_timeout_s, sizeof job_timeout_s, "%lld", (long long)job_timeout_ms);
  snprintf(ttl_s_s, sizeof ttl_s_s, "%lld", (long long)ttl_s);
  if (coord_drain_ms < 0) coord_drain_ms = drain_ms;
  snprintf(drain_s, sizeof drain_s, "%lld", (long long)drain_ms);
  snprintf(coord_drain_s, sizeof coord_drain_s, "%lld", (long long)coord_drain_ms);
  snprintf(reclaim_s, sizeof reclaim_s, "%lld", (long long)reclaim_ms);
  sdc_redis_url shown; /* the log names host:port/db, never the password */
  if (redis && sdc_redis_url_parse(&shown, redis) != SDC_OK) {
    fprintf(stderr, "sdc cluster: --redis: %s\n", sdc_errmsg(SDC_EINVAL));
    return 2;
  }
  sdc__child redis_child = {0};
  if (!redis) {
    int rp = sdc__free_port();
    snprintf(redis_port_s, sizeof redis_port_s, "%d", rp);
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", rp);
    char *rargv[] = {"/usr/bin/redis-server", "--port", redis_port_s, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", redis_dir ? "yes" : "no", NULL, NULL, NULL, NULL, NULL};
    if (redis_dir) {
      rargv[9] = "--dir", rargv[10] = (char *)redis_dir;
      rargv[11] = "--appendfsync", rargv[12] = (char *)(redis_fsync ? redis_fsync : "everysec");
    }
    memcpy(redis_child.argv, rargv, sizeof rargv);
    snprintf(redis_child.name, sizeof redis_child.name, "redis-server");
    redis_child.fd = -1;
    if (access(rargv[0], X_OK) != 0) {
      fprintf(stderr, "sdc cluster: no --redis given and %s is missing (apt-get install redis-server)\n", rargv[0]);
      return 2;
    }
    if (sdc__spawn(&redis_child) != 0) return 1;
    redis = redis_url;
    sdc_redis_url_parse(&shown, redis);
    sdc_clock_sleep_ms(200);
  }
  if (!port) port = sdc__free_port();
  snprintf(bind_url, sizeof bind_url, "tcp://127.0.0.1:%d", port);
  snprintf(coord_url, sizeof coord_url, "tcp://127.0.0.1:%d", port);
  /* no SA_RESTART: the supervising waitpid() must return on a signal */
  struct sigaction sa = {.sa_handler = sdc__on_stop};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  {
    sdc__child *c = &kids[n_kids++];
    snprintf(c->name, sizeof c->name, "coordinator");
    c->ready_mark = ": listening on "; /* model loaded, control socket bound */
    char **a = c->argv;
    int k = 0;
    a[k++] = coord_bin, a[k++] = "--model", a[k++] = (char *)model, a[k++] = "--redis", a[k++] = (char *)redis;
    a[k++] = "--bind", a[k++] = bind_url, a[k++] = "--wire", a[k++] = (char *)wire, a[k++] = "--max-jobs";
    a[k++] = (char *)max_jobs;
    a[k++] = "--drain-timeout-ms", a[k++] = coord_drain_s, a[k++] = "--reclaim-idle-ms", a[k++] = reclaim_s;
    a[k++] = "--precision", a[k++] = (char *)precision; /* part of the fingerprint the workers match */
    a[k++] = "--max-pixels", a[k++] = max_pixels_s, a[k++] = "--step-timeout-ms", a[k++] = step_timeout_s;
    a[k++] = "--job-timeout-ms", a[k++] = job_timeout_s, a[k++] = "--ttl", a[k++] = ttl_s_s;
    if (config) a[k++] = "--config", a[k++] = (char *)config;
    if (http_base) {
      snprintf(http_addr[0], sizeof http_addr[0], "127.0.0.1:%lld", (long long)http_base);
      a[k++] = "--http", a[k++] = http_addr[0];
    }
    a[k] = NULL;
  }
  static char ids[SDC__MAX_CHILDREN][SDC_MAX_WORKER_ID];
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++)
    for (int r = 0; r < count[s] && n_kids < SDC__MAX_CHILDREN; r++) {
      sdc__child *c = &kids[n_kids];
      snprintf(ids[n_kids], sizeof ids[n_kids], "%s-%d", sdc_stage_name(s), r);
      snprintf(c->name, sizeof c->name, "%s", ids[n_kids]);
      c->ready_mark = ": serving "; /* model loaded, data socket bound */
      char **a = c->argv;
      int k = 0;
      a[k++] = worker_bin, a[k++] = "--stage", a[k++] = (char *)sdc_stage_name(s), a[k++] = "--model", a[k++] = (char *)model;
      a[k++] = "--coordinator", a[k++] = coord_url, a[k++] = "--id", a[k++] = ids[n_kids];
      a[k++] = "--precision", a[k++] = (char *)precision, a[k++] = "--drain-timeout-ms", a[k++] = drain_s;
      if (config) a[k++] = "--config", a[k++] = (char *)config;
      if (log_hops) a[k++] = "--log-hops";
      if (worker_mem_mib) a[k++] = "--memory-mib", a[k++] = worker_mem_s;
      a[k++] = "--max-queue", a[k++] = worker_queue_s;
      /* LoRAs touch the text encoder and the UNet: only their workers need the folder */
      if (lora_dir && s != SDC_STAGE_VAE) a[k++] = "--lora-dir", a[k++] = (char *)lora_dir;
      if (lora_cache && s != SDC_STAGE_VAE) a[k++] = "--lora-cache", a[k++] = (char *)lora_cache;
      if (http_base) {
        snprintf(http_addr[n_kids], sizeof http_addr[n_kids], "127.0.0.1:%lld", (long long)http_base + n_kids);
        a[k++] = "--http", a[k++] = http_addr[n_kids];
      }
      a[k] = NULL;
      n_kids++;
    }
  /* CURVE unless --insecure: a key per process, so that one worker's key cannot speak for another */
  static char key_dir[1024], key_path[SDC__MAX_CHILDREN][1200], auth_path[1200];
  if (!insecure) {
    const char *tmp = getenv("TMPDIR");
    snprintf(key_dir, sizeof key_dir, "%s/sdc-cluster-keys.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(key_dir)) {
      fprintf(stderr, "sdc cluster: %s: %s\n", key_dir, strerror(errno));
      return 1;
    }
    const char *names[SDC__MAX_CHILDREN];
    names[0] = "coordinator";
    for (int i = 1; i < n_kids; i++) names[i] = ids[i];
    if (sdc_keygen_write(key_dir, names, n_kids, 0, 1) != 0) return 1;
    snprintf(auth_path, sizeof auth_path, "%s/authorized", key_dir);
    for (int i = 0; i < n_kids; i++) {
      snprintf(key_path[i], sizeof key_path[i], "%s/%s.key", key_dir, names[i]);
      char **a = kids[i].argv;
      int k = 0;
      while (a[k]) k++;
      a[k++] = "--curve-key", a[k++] = key_path[i], a[k++] = "--curve-authorized", a[k++] = auth_path, a[k] = NULL;
    }
  }
  /* --threads N: each worker's OpenBLAS/OpenMP pool. Several workers computing at once on full-size pools
   * oversubscribe the cores (idle OpenBLAS threads spin); sharing the cores out is faster (docs/benchmarks.md)
   * but not the default, because the last bits of a result depend on the thread count: only workers with
   * sdc generate's thread count give its exact pixels. */
  char threads_s[24] = "";
  if (threads) {
    snprintf(threads_s, sizeof threads_s, "%lld", (long long)threads);
    setenv("OPENBLAS_NUM_THREADS", threads_s, 1);
    setenv("OMP_NUM_THREADS", threads_s, 1);
  }
  sdc__all = kids, sdc__n_all = n_kids;
  for (int i = 0; i < n_kids; i++) kids[i].fd = -1;
  for (int i = 0; i < n_kids; i++)
    if (sdc__spawn(&kids[i]) != 0) sdc__stop_signal = SIGTERM;
  sdc_log(NULL, -1, 0, "redis %s, coordinator %s, %d workers, %s compute threads each, %s; SIGTERM or Ctrl-C to stop",
          shown.where, coord_url, n_kids - 1, threads_s[0] ? threads_s : "the environment's",
          insecure ? "plaintext ZeroMQ (--insecure)" : "CURVE on every link");
  /* one plain line per process, for tools that look for the scrape targets */
  for (int i = 0; http_base && i < n_kids; i++)
    fprintf(stderr, "metrics %s%s%s http://%s/metrics\n", i ? "worker" : "coordinator", i ? " " : "", i ? kids[i].name : "",
            http_addr[i]);
  printf("%s\n", redis);
  fflush(stdout);
  /* supervise (docs/cluster.md): a child that exits 0 drained (someone sent it SIGTERM, e.g. to move it)
   * and is started again at once; a failed one after a backoff, forever once it has started at least
   * once. One that cannot start at all is fatal: running on with a stage missing leaves jobs queued. */
  int fatal = 0;
  static int ever_ready[SDC__MAX_CHILDREN];
  while (!sdc__stop_signal && !fatal) {
    sdc__relay(kids, n_kids, 100);
    for (int i = 0; i < n_kids; i++) ever_ready[i] |= kids[i].ready;
    int status;
    pid_t pid;
    while (!fatal && (pid = waitpid(-1, &status, WNOHANG)) > 0) {
      char how[32];
      sdc__status_text(status, how, sizeof how);
      if (pid == redis_child.pid) { /* ours: its AOF (--redis-dir) brings the jobs back */
        sdc_log(NULL, -1, 0, "redis-server (pid %d) exited (%s); restarting", (int)pid, how);
        redis_child.pid = 0;
        if (!sdc__stop_signal) sdc__spawn(&redis_child);
        continue;
      }
      for (int i = 0; i < n_kids; i++) {
        if (kids[i].pid != pid) continue;
        sdc__relay(kids + i, 1, 0); /* its last words */
        ever_ready[i] |= kids[i].ready;
        kids[i].pid = 0;
        if (sdc__stop_signal) break;
        const int drained = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        kids[i].restarts = drained ? 0 : kids[i].restarts + 1;
        if (!drained && !ever_ready[i] &&
            ((WIFEXITED(status) && WEXITSTATUS(status) == 2) || kids[i].restarts >= SDC_CLUSTER_START_TRIES)) {
          sdc_log(NULL, -1, 0, "%s (pid %d) exited (%s) before it ever started; stopping", kids[i].name, (int)pid, how);
          fprintf(stderr, "sdc cluster: %s cannot start (%s): %s\n", kids[i].name, how,
                  kids[i].last[0] ? kids[i].last : "(it printed nothing)");
          fatal = 1;
          break;
        }
        int64_t delay = 0;
        if (!drained) {
          delay = SDC_CLUSTER_RESTART_MIN_MS;
          for (int k = 1; k < kids[i].restarts && delay < SDC_CLUSTER_RESTART_MAX_MS; k++) delay *= 2;
          if (delay > SDC_CLUSTER_RESTART_MAX_MS) delay = SDC_CLUSTER_RESTART_MAX_MS;
        }
        sdc_log(NULL, -1, 0, "%s (pid %d) exited (%s)%s; restarting in %lld ms", kids[i].name, (int)pid, how,
                drained ? ", drained" : "", (long long)delay);
        kids[i].restart_at_ms = sdc_clock_mono_ms() + delay;
      }
    }
    const int64_t now = sdc_clock_mono_ms();
    for (int i = 0; !fatal && !sdc__stop_signal && i < n_kids; i++)
      if (!kids[i].pid && kids[i].restart_at_ms && now >= kids[i].restart_at_ms) sdc__spawn(&kids[i]);
  }
  /* drain: the workers keep serving until the coordinator has finished (or left) its jobs; each waits at
   * most its drain timeout and a margin for start-up and exit */
  if (fatal) sdc_log(NULL, -1, 0, "stopping: a child cannot start; draining the coordinator, then the workers");
  else sdc_log(NULL, -1, 0, "stopping (signal %d): draining the coordinator, then the workers", (int)sdc__stop_signal);
  const int64_t margin_ms = 10000;
  int failed = sdc__drain_children(kids, 1, coord_drain_ms + margin_ms);
  failed += sdc__drain_children(kids + 1, n_kids - 1, drain_ms + margin_ms);
  if (redis_child.pid > 0) {
    int status;
    kill(redis_child.pid, SIGTERM);
    waitpid(redis_child.pid, &status, 0);
  }
  if (key_dir[0]) { /* the run's keys die with it */
    for (int i = 0; i < n_kids; i++) {
      char pub[1200];
      snprintf(pub, sizeof pub, "%.*s.pub", (int)strlen(key_path[i]) - 4, key_path[i]);
      unlink(key_path[i]), unlink(pub);
    }
    unlink(auth_path);
    rmdir(key_dir);
  }
  if (failed) sdc_log(NULL, -1, 0, "%d children did not drain cleanly", failed);
  return failed || fatal ? 1 : 0;
}
