/* main.c - sdc-coordinator's command line, start-up, tick, signals and shutdown (the modules are listed in coord.h). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "clock.h"
#include "coord.h"
#include "error.h"
#include "flag.h"
#include "log.h"
#include "wire.h"

/* Draining: past --drain-timeout-ms every job not already storing its outcome is left pending for
 * another coordinator; once no job remains but left ones, and no read can still deliver entries, the
 * coordinator exits 0 after Redis has applied its last writes (acks, hand-overs). */
static void sdc__drain_tick(sdc_coord *c, int64_t now) {
  if (!c->draining || c->stopping) return;
  int active = 0, left = 0;
  for (sdc_coord_job *j = c->jobs; j; j = j->next) {
    if (!j->left && j->phase != SDC_COORD_STORING && now >= c->drain_start_ms + c->drain_timeout_ms)
      sdc_coord_leave(c, j);
    if (j->left) left++;
    else active++;
  }
  if (active || c->reading) return;
  c->stopping = 1;
  sdc_log(NULL, -1, 0, "drained in %lld ms: %llu done, %llu failed, %d left pending for another coordinator; exiting",
          (long long)(now - c->drain_start_ms), (unsigned long long)c->jobs_done, (unsigned long long)c->jobs_failed,
          left);
  sdc_coord_exit_after_redis(c);
}

static void sdc__on_tick(uv_timer_t *t) {
  sdc_coord *c = t->data;
  const int64_t now = sdc_clock_mono_ms();
  sdc_coord_route_tick(c, now);
  sdc_coord_intake_tick(c, now);
  sdc_coord_telemetry_tick(c, now);
  sdc__drain_tick(c, now);
}

static void sdc__on_poll(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  sdc_coord_drain_router(h->data);
}

/* ZMQ_FD is edge-triggered and a send can swallow the edge of an arrival:
 * before the loop sleeps, read whatever the socket holds. */
static void sdc__on_prepare(uv_prepare_t *p) { sdc_coord_drain_router(p->data); }

static void sdc__on_signal(uv_signal_t *s, int signum) {
  sdc_coord *c = s->data;
  if (c->draining) return;
  c->draining = 1;
  c->drain_start_ms = sdc_clock_mono_ms();
  sdc_log(NULL, -1, 0, "signal %d: draining %d jobs in flight (no new claims; at most %lld ms, then they are left)",
          signum, c->n_jobs, (long long)c->drain_timeout_ms);
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc-coordinator --model PATH [--config DIR] [options]\n"
          "  --redis URL           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (default redis://127.0.0.1:6379)\n"
          "  --bind URL            control endpoint workers connect to (default tcp://127.0.0.1:5555)\n"
          "  --max-jobs N          jobs in flight at once, 1..%d (default %d)\n"
          "  --step-timeout-ms N   re-issue a step not answered in time, 100..%d (default %d)\n"
          "  --job-timeout-ms N    fail a job running longer and cancel its work, %d..%d (default %d)\n"
          "  --ttl S               results expire after S seconds (default %d)\n"
          "  --wire f32|f16|bf16   dtype of tensors on the wire (default f32: pixels identical to sdc generate)\n"
          "  --max-pixels N        refuse jobs with width*height above N (default %lld)\n"
          "  --id NAME             consumer name (default host-pid)\n"
          "  --http ADDR:PORT      serve /metrics, /healthz, /readyz there (e.g. 127.0.0.1:9100; default off)\n"
                    "  --drain-timeout-ms N  the longest a drain waits for jobs to finish, 0..%d (default %d)\n"
          "  --reclaim-idle-ms N   take over stream entries idle this long (their coordinator is gone), %d..%d\n"
          "                        (default %d); give every coordinator of a stream the same value\n"
          "  --precision fp32|bf16 the workers' precision: part of the fingerprint they must match (default fp32)\n"
          "  --curve-key FILE      our CURVE secret key (sdc keygen): workers must hold a key listed in\n"
          "  --curve-authorized FILE  (\"PUBLIC-KEY NAME\" lines); every ZeroMQ link is encrypted (docs/security.md)\n"
          "  --insecure            allow plaintext on a non-loopback --bind (without keys only loopback is allowed)\n"
          "SIGTERM/SIGINT drain: no new claims (no XREADGROUP, no XAUTOCLAIM); jobs in flight finish. Past\n"
          "--drain-timeout-ms each unfinished job is logged and left pending in the stream, marked for the next\n"
          "coordinator to take over at once (never acknowledged). Then exit 0.\n",
          SDC_COORD_MAX_JOBS, SDC_COORD_DEFAULT_MAX_JOBS, SDC_COORD_MAX_STEP_TIMEOUT_MS, SDC_COORD_DEFAULT_STEP_TIMEOUT_MS,
          SDC_COORD_MIN_JOB_TIMEOUT_MS, SDC_COORD_MAX_JOB_TIMEOUT_MS, SDC_COORD_DEFAULT_JOB_TIMEOUT_MS, SDC_DEFAULT_RESULT_TTL_S,
          (long long)SDC_DEFAULT_MAX_PIXELS, SDC_MAX_DRAIN_TIMEOUT_MS, SDC_DEFAULT_DRAIN_TIMEOUT_MS,
          SDC_COORD_MIN_RECLAIM_IDLE_MS, SDC_COORD_MAX_RECLAIM_IDLE_MS, SDC_COORD_RECLAIM_IDLE_MS);
}

/* Fills c from the command line; 0, or the exit status (usage printed). */
static int sdc__parse_args(sdc_coord *c, int argc, char **argv, const char **model, const char **config,
                           const char **http, const char **curve_key, const char **curve_auth, int *insecure) {
  const char *redis = "redis://127.0.0.1:6379";
  snprintf(c->bind, sizeof c->bind, "tcp://127.0.0.1:5555");
  c->max_jobs = SDC_COORD_DEFAULT_MAX_JOBS, c->step_timeout_ms = SDC_COORD_DEFAULT_STEP_TIMEOUT_MS;
  c->ttl_s = SDC_DEFAULT_RESULT_TTL_S, c->wire_dtype = SDCPB__DTYPE__F32, c->max_pixels = SDC_DEFAULT_MAX_PIXELS;
  c->drain_timeout_ms = SDC_DEFAULT_DRAIN_TIMEOUT_MS, c->reclaim_idle_ms = SDC_COORD_RECLAIM_IDLE_MS;
  c->job_timeout_ms = SDC_COORD_DEFAULT_JOB_TIMEOUT_MS;
  char host[64] = "coordinator";
  gethostname(host, sizeof host - 1);
  snprintf(c->id, sizeof c->id, "%s-%d", host, (int)getpid());
  enum { O_TIMEOUT = 256, O_TTL, O_WIRE, O_MAXPX, O_HTTP, O_DRAIN, O_RECLAIM, O_PREC, O_KEY, O_AUTH, O_INSECURE, O_JOB_TIMEOUT };
  snprintf(c->precision, sizeof c->precision, "fp32");
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},          {"config", required_argument, 0, 'c'},
      {"redis", required_argument, 0, 'r'},          {"bind", required_argument, 0, 'b'},
      {"max-jobs", required_argument, 0, 'j'},       {"step-timeout-ms", required_argument, 0, O_TIMEOUT},
      {"ttl", required_argument, 0, O_TTL},          {"wire", required_argument, 0, O_WIRE},
      {"max-pixels", required_argument, 0, O_MAXPX}, {"id", required_argument, 0, 'i'},
      {"http", required_argument, 0, O_HTTP},        
      {"drain-timeout-ms", required_argument, 0, O_DRAIN}, {"reclaim-idle-ms", required_argument, 0, O_RECLAIM},
      {"precision", required_argument, 0, O_PREC},   {"curve-key", required_argument, 0, O_KEY},
      {"curve-authorized", required_argument, 0, O_AUTH}, {"insecure", no_argument, 0, O_INSECURE},
      {"job-timeout-ms", required_argument, 0, O_JOB_TIMEOUT},
      {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "m:c:r:b:j:i:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': *model = optarg; break;
      case 'c': *config = optarg; break;
      case 'r': redis = optarg; break;
      case 'b': snprintf(c->bind, sizeof c->bind, "%s", optarg); break;
      case 'j': c->max_jobs = atoi(optarg); break;
      case O_TIMEOUT:
      case O_JOB_TIMEOUT: {
        int64_t v;
        const int step = ch == O_TIMEOUT;
        if (sdc_flag_int(step ? "--step-timeout-ms" : "--job-timeout-ms", optarg, step ? 100 : SDC_COORD_MIN_JOB_TIMEOUT_MS,
                         step ? SDC_COORD_MAX_STEP_TIMEOUT_MS : SDC_COORD_MAX_JOB_TIMEOUT_MS, &v)) {
          fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        *(step ? &c->step_timeout_ms : &c->job_timeout_ms) = (uint64_t)v;
        break;
      }
      case O_TTL: c->ttl_s = strtoull(optarg, NULL, 10); break;
      case O_WIRE:
        c->wire_dtype = strcmp(optarg, "f16") == 0    ? SDCPB__DTYPE__F16
                        : strcmp(optarg, "bf16") == 0 ? SDCPB__DTYPE__BF16
                        : strcmp(optarg, "f32") == 0  ? SDCPB__DTYPE__F32
                                                      : SDCPB__DTYPE__DTYPE_INVALID;
        break;
      case O_MAXPX: c->max_pixels = atoll(optarg); break;
      case 'i': snprintf(c->id, sizeof c->id, "%s", optarg); break;
      case O_HTTP: *http = optarg; break;
      case O_DRAIN:
      case O_RECLAIM: {
        int64_t v;
        const int drain = ch == O_DRAIN;
        if (sdc_flag_int(drain ? "--drain-timeout-ms" : "--reclaim-idle-ms", optarg,
                         drain ? 0 : SDC_COORD_MIN_RECLAIM_IDLE_MS,
                         drain ? SDC_MAX_DRAIN_TIMEOUT_MS : SDC_COORD_MAX_RECLAIM_IDLE_MS, &v)) {
          fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        *(drain ? &c->drain_timeout_ms : &c->reclaim_idle_ms) = v;
        break;
      }
      case O_PREC:
        if (strcmp(optarg, "fp32") != 0 && strcmp(optarg, "bf16") != 0) {
          fprintf(stderr, "sdc-coordinator: --precision: '%s' is not fp32 or bf16\n", optarg);
          return 2;
        }
        snprintf(c->precision, sizeof c->precision, "%s", optarg);
        break;
      case O_KEY: *curve_key = optarg; break;
      case O_AUTH: *curve_auth = optarg; break;
      case O_INSECURE: *insecure = 1; break;
      case 'h': sdc__usage(stdout); return -1;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (!*model || optind != argc || c->max_jobs < 1 || c->max_jobs > SDC_COORD_MAX_JOBS || c->step_timeout_ms < 100 ||
      c->wire_dtype == SDCPB__DTYPE__DTYPE_INVALID || c->ttl_s < 1 || c->max_pixels < SDC_MIN_IMAGE_SIDE * SDC_MIN_IMAGE_SIDE) {
    sdc__usage(stderr);
    return 2;
  }
  if (!*curve_key != !*curve_auth) {
    fprintf(stderr, "sdc-coordinator: --curve-key and --curve-authorized go together\n");
    return 2;
  }
  if (!*curve_key && !*insecure && !sdc_endpoint_is_loopback(c->bind)) {
    fprintf(stderr, "sdc-coordinator: --bind %s is not loopback: give --curve-key and --curve-authorized, or --insecure "
                    "to accept anyone who reaches it\n", c->bind);
    return 2;
  }
  int err = sdc_redis_url_parse(&c->redis, redis);
  if (err) {
    fprintf(stderr, "sdc-coordinator: --redis: %s\n", sdc_errmsg(err));
    return 2;
  }
  return 0;
}

static void sdc__on_zap(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  sdc_coord_drain_router(h->data); /* serves the ZAP handler first */
}

/* Binds the ROUTER workers connect to (a CURVE server with keys, behind our ZAP handler) and watches its fd
 * from the loop. */
static int sdc__open_router(sdc_coord *c) {
  c->zctx = zmq_ctx_new();
  if (c->curve.on) {
    int err = sdc_curve_zap_start(&c->curve, c->zctx);
    if (err) {
      sdc_log(NULL, -1, 0, "%s", sdc_errmsg(err));
      return 2;
    }
    int fd;
    size_t fl = sizeof fd;
    zmq_getsockopt(c->curve.zap, ZMQ_FD, &fd, &fl);
    uv_poll_init(c->loop, &c->zap_poll, fd);
    c->zap_poll.data = c;
    uv_poll_start(&c->zap_poll, UV_READABLE, sdc__on_zap);
  }
  c->router = zmq_socket(c->zctx, ZMQ_ROUTER);
  sdc_zmq_configure(c->router);
  if (c->curve.on && sdc_curve_server(&c->curve, c->router) != SDC_OK) {
    sdc_log(NULL, -1, 0, "--bind %s: %s", c->bind, sdc_errmsg(SDC_EIO));
    return 2;
  }
  int one = 1;
  if (!c->curve.on) {
    zmq_setsockopt(c->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one); /* a restarted worker keeps its id */
  } else {
    /* no hand-over: it would let any authorized key take a live worker's routing id and cut that worker off.
     * A second connection under a live id is refused; a dead one's id frees when its TCP connection closes,
     * or when ZMTP heartbeats stop answering (a host that vanished), and its worker's reconnects then succeed */
    const int ivl = SDC_ZMQ_PING_MS, timeout = SDC_ZMQ_PING_TIMEOUT_MS;
    zmq_setsockopt(c->router, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(c->router, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout);
  }
  if (zmq_bind(c->router, c->bind) != 0) {
    sdc_log(NULL, -1, 0, "--bind %s: %s", c->bind, zmq_strerror(errno));
    return 2;
  }
  int fd;
  size_t fl = sizeof fd;
  zmq_getsockopt(c->router, ZMQ_FD, &fd, &fl);
  uv_poll_init(c->loop, &c->poll, fd);
  c->poll.data = c;
  uv_poll_start(&c->poll, UV_READABLE, sdc__on_poll);
  uv_prepare_init(c->loop, &c->prep);
  c->prep.data = c;
  uv_prepare_start(&c->prep, sdc__on_prepare);
  return 0;
}

static void sdc__shutdown(sdc_coord *c) {
  c->closing = 1;
  if (c->rc) redisAsyncDisconnect(c->rc);
  if (c->rb) redisAsyncDisconnect(c->rb);
  for (int i = 0; i < c->reg.n; i++)
    if (c->reg.w[i].push) zmq_close(c->reg.w[i].push);
  if (c->router && c->stopping) {
    /* drained: the goodbye goes out (within SDC_DRAIN_LINGER_MS) before the socket closes */
    const int linger = SDC_DRAIN_LINGER_MS;
    sdc_coord_forget_workers(c);
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
  }
  if (c->router) zmq_close(c->router);
  sdc_curve_zap_close(&c->curve);
  if (c->zctx) zmq_ctx_term(c->zctx);
  while (c->jobs) sdc_coord_job_free(c, c->jobs);
  sdc_model_close(&c->model);
  sdc_coord_telemetry_stop(c);
}

int main(int argc, char **argv) {
  sdc_coord *c = calloc(1, sizeof *c); /* large (the worker table): not on the stack */
  if (!c) return 2;
  const char *model = NULL, *config = NULL, *http = NULL, *curve_key = NULL, *curve_auth = NULL;
  int insecure = 0;
  int rc = sdc__parse_args(c, argc, argv, &model, &config, &http, &curve_key, &curve_auth, &insecure);
  if (rc) {
    free(c);
    return rc < 0 ? 0 : rc;
  }
  sdc_log_init("coordinator", c->id);
  if (curve_key && (rc = sdc_curve_load(&c->curve, curve_key, curve_auth)) != SDC_OK) {
    fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(rc));
    free(c);
    return 2;
  }
  if (!c->curve.on)
    sdc_log(NULL, -1, 0, "WARNING: plaintext ZeroMQ (no --curve-key): anyone who reaches %s can join as a worker, "
                         "read prompts and forge images", c->bind);
  if (http && (rc = sdc_coord_telemetry_start(c, http)) != SDC_OK) {
    fprintf(stderr, "sdc-coordinator: --http: %s\n", sdc_errmsg(rc));
    sdc_coord_telemetry_stop(c);
    free(c);
    return 2;
  }
  c->heartbeat_ms = SDC_HEARTBEAT_MS;
  c->dead_after_ms = SDC_DEAD_AFTER_BEATS * c->heartbeat_ms + c->heartbeat_ms / 2;
  int err = sdc_model_open(&c->model, model, config);
  if (err) {
    fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(err));
    sdc_coord_telemetry_stop(c);
    free(c);
    return 2;
  }
  /* what workers must match: configs, weights' bytes, precision */
  const int64_t fp_t0 = sdc_clock_mono_ms();
  err = sdc_model_fingerprint(&c->model, c->precision, c->fingerprint, sizeof c->fingerprint);
  if (err) {
    fprintf(stderr, "sdc-coordinator: %s\n", sdc_errmsg(err));
    sdc_model_close(&c->model);
    sdc_coord_telemetry_stop(c);
    free(c);
    return 2;
  }
  sdc_log(NULL, -1, 0, "fingerprint of %s (%s): %s, hashed in %lld ms", model, c->precision, c->fingerprint,
          (long long)(sdc_clock_mono_ms() - fp_t0));
  srand((unsigned)(sdc_clock_unix_ms() ^ (uint64_t)getpid()));
  c->loop = uv_default_loop();
  if ((rc = sdc__open_router(c)) != 0) {
    sdc__shutdown(c);
    free(c);
    return rc;
  }
  sdc_coord_redis_start(c); /* never fatal: a Redis that is down or refuses us is retried, visibly */
  uv_timer_init(c->loop, &c->tick);
  c->tick.data = c;
  uv_timer_start(&c->tick, sdc__on_tick, SDC_COORD_TICK_MS, SDC_COORD_TICK_MS);
  uv_signal_init(c->loop, &c->sig_term);
  uv_signal_init(c->loop, &c->sig_int);
  c->sig_term.data = c->sig_int.data = c;
  uv_signal_start(&c->sig_term, sdc__on_signal, SIGTERM);
  uv_signal_start(&c->sig_int, sdc__on_signal, SIGINT);
  sdc_log(NULL, -1, 0, "listening on %s, redis %s, model %s (fingerprint %s), %d jobs at once%s%s", c->bind,
          c->redis.where, model, c->fingerprint, c->max_jobs, http ? ", metrics on " : "", http ? http : "");
  uv_run(c->loop, UV_RUN_DEFAULT);
  sdc__shutdown(c);
  rc = c->exit_code;
  free(c);
  return rc;
}
