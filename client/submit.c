/* submit.c - `sdc submit`, `sdc wait`, `sdc status`, `sdc cancel`: the job contract from the command line. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "file.h"
#include "flag.h"
#include "sdc_client.h"

#define SDC__DEFAULT_REDIS "redis://127.0.0.1:6379"

/* The error for whatever getopt_long rejected. */
static int sdc__bad_flag(const char *cmd, char **argv) {
  return sdc_seterr(SDC_EINVAL, "unknown or incomplete option '%s' (see sdc %s --help)", argv[optind - 1], cmd);
}

static int sdc__usage_error(const char *cmd) {
  fprintf(stderr, "sdc %s: %s\n", cmd, sdc_errmsg(SDC_EINVAL));
  return 2;
}

/* 0 when connected; else the exit code: 2 for a malformed URL, 1 when Redis is unreachable. */
static int sdc__connect(const char *cmd, const char *url, sdc_client **c) {
  int err = sdc_client_connect(c, url);
  const char *env = getenv("SDC_REDIS");
  if (err) fprintf(stderr, "sdc %s: %s%s\n", cmd, sdc_errmsg(err), env && url == env ? " (from $SDC_REDIS)" : "");
  return !err ? 0 : err == SDC_EINVAL ? 2 : 1;
}

/* ---------------------------------------------------------------- submit */

static void sdc__submit_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc submit --prompt TEXT [options]   (prints the job id)\n"
          "  --redis URL             redis://[[user]:password@]host[:port][/db] (default $SDC_REDIS, else " SDC__DEFAULT_REDIS
          ")\n"
          "  --id ID                 job id, 1..128 of [A-Za-z0-9._-] (default: the stream entry id)\n"
          "  --prompt TEXT           what to draw (UTF-8, at most 4096 bytes)\n"
          "  --negative-prompt TEXT  what to steer away from (default: empty)\n"
          "  --width N, --height N   multiples of 8 in [64, 2048] (default: the model's native size)\n"
          "  --steps N               denoising steps, 1..1000 (default 50)\n"
          "  --guidance-scale X      classifier-free guidance, >= 0; <= 1 disables it (default 7.5)\n"
          "  --scheduler NAME        ddim, pndm, ddpm, euler, euler_a, heun, lms, dpmpp_2m, dpmpp_2m_karras,\n"
          "                          unipc, lcm (default: the model's own)\n"
          "  --seed N                0 <= N < 2^53; -1 or none: chosen by the coordinator, recorded in the job hash\n"
          "  --num-images N          images from one seed, 1..8 (default 1)\n"
          "  --init-image FILE       img2img / inpainting: a PNG or JPEG, stored in Redis under img:<random> for\n"
          "                          an hour and named in the job; its size is the job's unless --width/--height\n"
          "  --mask FILE             inpainting (white = repaint), with --init-image, same size\n"
          "  --strength S            (0, 1]: how much of the schedule runs (default 0.8; 1 with --mask)\n"
          "  --lora NAME[:MULT]      a LoRA in the workers' --lora-dir (NAME.safetensors), repeatable (max 8)\n"
          "SDXL only (the coordinator fails the job on another model):\n"
          "  --prompt-2 TEXT, --negative-prompt-2 TEXT   the second text encoder's prompts\n"
          "  --original-size WxH, --target-size WxH      WIDTHxHEIGHT as sdc generate (the JSON is [height, width])\n"
          "  --crop-top-left TOP,LEFT                    crops_coords_top_left (the JSON is [top, left])\n"
          "Bad input gets a one-line error and exit code 2; nothing is queued. See docs/jobs.md.\n");
}

int sdc_cmd_submit(int argc, char **argv) {
  const char *url = sdc_cli_redis_default();
  sdc_job job;
  sdc_job_init(&job);
  int err = SDC_OK;
  enum {
    O_REDIS = 256, O_ID, O_NEG, O_GS, O_SCHED, O_NUM, O_INIT, O_MASK, O_STRENGTH, O_LORA, O_PROMPT2, O_NEG2, O_ORIG,
    O_TARGET, O_CROP
  };
  const char *files[2] = {NULL, NULL}; /* --init-image, --mask: uploaded once Redis answers */
  static const struct option opts[] = {{"redis", required_argument, 0, O_REDIS},
                                       {"id", required_argument, 0, O_ID},
                                       {"prompt", required_argument, 0, 'p'},
                                       {"negative-prompt", required_argument, 0, O_NEG},
                                       {"width", required_argument, 0, 'W'},
                                       {"height", required_argument, 0, 'H'},
                                       {"steps", required_argument, 0, 's'},
                                       {"guidance-scale", required_argument, 0, O_GS},
                                       {"scheduler", required_argument, 0, O_SCHED},
                                       {"seed", required_argument, 0, 'S'},
                                       {"num-images", required_argument, 0, O_NUM},
                                       {"init-image", required_argument, 0, O_INIT},
                                       {"mask", required_argument, 0, O_MASK},
                                       {"strength", required_argument, 0, O_STRENGTH},
                                       {"lora", required_argument, 0, O_LORA},
                                       {"prompt-2", required_argument, 0, O_PROMPT2},
                                       {"negative-prompt-2", required_argument, 0, O_NEG2},
                                       {"original-size", required_argument, 0, O_ORIG},
                                       {"target-size", required_argument, 0, O_TARGET},
                                       {"crop-top-left", required_argument, 0, O_CROP},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  /* the job borrows argv's strings; it is never sdc_job_free()d */
  int ch;
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "p:W:H:s:S:h", opts, NULL)) != -1) {
    switch (ch) {
      case O_REDIS: url = optarg; break;
      case O_ID:
        if (!sdc_job_id_valid(optarg))
          err = sdc_seterr(SDC_EINVAL, "--id '%.*s': expected 1..%d characters of [A-Za-z0-9._-]", 140, optarg,
                           SDC_MAX_JOB_ID);
        else
          snprintf(job.id, sizeof job.id, "%s", optarg);
        break;
      case 'p': job.prompt = optarg; break;
      case O_NEG: job.negative_prompt = optarg; break;
      case 'W': err = sdc_flag_int("--width", optarg, 0, SDC_MAX_IMAGE_SIDE, &job.width); break;
      case 'H': err = sdc_flag_int("--height", optarg, 0, SDC_MAX_IMAGE_SIDE, &job.height); break;
      case 's': err = sdc_flag_int("--steps", optarg, 1, SDC_MAX_STEPS, &job.steps); break;
      case O_GS: {
        char *end;
        job.guidance_scale = strtod(optarg, &end);
        if (end == optarg || *end || !isfinite(job.guidance_scale) || job.guidance_scale < 0)
          err = sdc_seterr(SDC_EINVAL, "--guidance-scale '%s': expected a finite number >= 0", optarg);
        break;
      }
      case O_SCHED:
        if (!sdc_job_scheduler_valid(optarg))
          err = sdc_seterr(SDC_EINVAL,
                           "--scheduler '%s': unknown (ddim, pndm, ddpm, euler, euler_a, heun, lms, "
                           "dpmpp_2m, dpmpp_2m_karras, unipc, lcm)",
                           optarg);
        else
          snprintf(job.scheduler, sizeof job.scheduler, "%s", optarg);
        break;
      case 'S': {
        int64_t s;
        if (strcmp(optarg, "-1") == 0) { /* other tools' "random": the coordinator draws it */
          job.has_seed = 0;
          break;
        }
        err = sdc_flag_int("--seed", optarg, 0, (int64_t)SDC_SEED_LIMIT - 1, &s);
        job.seed = (uint64_t)s, job.has_seed = 1;
        break;
      }
      case O_NUM: err = sdc_flag_int("--num-images", optarg, 1, SDC_MAX_IMAGES, &job.num_images); break;
      case O_INIT: files[0] = optarg, job.init_image.key = "img:pending"; break; /* the real key once stored */
      case O_MASK: files[1] = optarg, job.mask.key = "img:pending"; break;
      case O_STRENGTH: {
        char *end;
        job.strength = strtod(optarg, &end), job.has_strength = 1;
        if (end == optarg || *end || !isfinite(job.strength) || job.strength <= 0 || job.strength > 1)
          err = sdc_seterr(SDC_EINVAL, "--strength '%s': expected a number in (0, 1]", optarg);
        break;
      }
      case O_LORA: {
        if (job.n_loras >= SDC_MAX_LORAS) {
          err = sdc_seterr(SDC_EINVAL, "--lora: at most %d", SDC_MAX_LORAS);
          break;
        }
        sdc_job_lora *l = &job.loras[job.n_loras];
        const char *colon = strrchr(optarg, ':');
        size_t nl = colon ? (size_t)(colon - optarg) : strlen(optarg);
        char *end = NULL;
        l->multiplier = colon ? strtod(colon + 1, &end) : 1.0;
        if (nl >= sizeof l->name || (colon && (end == colon + 1 || *end || !isfinite(l->multiplier)))) {
          err = sdc_seterr(SDC_EINVAL, "--lora '%.*s': expected NAME[:MULTIPLIER] (a finite number)", 140, optarg);
          break;
        }
        snprintf(l->name, sizeof l->name, "%.*s", (int)nl, optarg);
        job.n_loras++;
        break;
      }
      case O_PROMPT2: job.prompt_2 = optarg; break;
      case O_NEG2: job.negative_prompt_2 = optarg; break;
      /* as sdc generate: WIDTHxHEIGHT on the command line, [height, width] in the job */
      case O_ORIG:
        err = sdc_flag_pair("--original-size", optarg, 'x', "WIDTHxHEIGHT", 1, SDC_MAX_MICRO_COND,
                            &job.original_size[1], &job.original_size[0]);
        break;
      case O_TARGET:
        err = sdc_flag_pair("--target-size", optarg, 'x', "WIDTHxHEIGHT", 1, SDC_MAX_MICRO_COND, &job.target_size[1],
                            &job.target_size[0]);
        break;
      case O_CROP:
        err = sdc_flag_pair("--crop-top-left", optarg, ',', "TOP,LEFT", 0, SDC_MAX_MICRO_COND,
                            &job.crops_coords_top_left[0], &job.crops_coords_top_left[1]);
        job.has_crop = !err;
        break;
      case 'h': sdc__submit_usage(stdout); return 0;
      default: err = sdc__bad_flag("submit", argv);
    }
  }
  if (!err && optind != argc) err = sdc_seterr(SDC_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!err && !job.prompt) err = sdc_seterr(SDC_EINVAL, "--prompt is required");
  if (!err) err = sdc_job_validate(&job); /* the job's own rules: sizes, UTF-8, lengths */
  /* the files are read before Redis is touched: a missing one queues nothing */
  char *bytes[2] = {NULL, NULL};
  size_t n_bytes[2] = {0, 0};
  for (int i = 0; !err && i < 2; i++) {
    if (files[i]) err = sdc_read_file(files[i], &bytes[i], &n_bytes[i]);
    if (!err && files[i] && (n_bytes[i] < 1 || n_bytes[i] > SDC_MAX_INPUT_IMAGE_BYTES))
      err = sdc_seterr(SDC_EINVAL, "%s %s: %zu bytes; expected 1..%d", i ? "--mask" : "--init-image", files[i],
                       n_bytes[i], SDC_MAX_INPUT_IMAGE_BYTES);
  }
  if (err) {
    free(bytes[0]), free(bytes[1]);
    return sdc__usage_error("submit");
  }
  sdc_client *c;
  int rc = sdc__connect("submit", url, &c);
  if (rc) {
    free(bytes[0]), free(bytes[1]);
    return rc;
  }
  char id[SDC_MAX_JOB_ID + 1], keys[2][64];
  for (int i = 0; !err && i < 2; i++) {
    if (!files[i]) continue;
    err = sdc_client_put_image(c, bytes[i], n_bytes[i], SDC_IMAGE_KEY_TTL_S, keys[i], sizeof keys[i]);
    *(i ? &job.mask.key : &job.init_image.key) = keys[i];
  }
  free(bytes[0]), free(bytes[1]);
  if (!err) err = sdc_client_submit(c, &job, id, sizeof id);
  sdc_client_free(c);
  if (err) {
    fprintf(stderr, "sdc submit: %s\n", sdc_errmsg(err));
    return 1;
  }
  printf("%s\n", id);
  return 0;
}

/* ------------------------------------------------------------------ wait */

static void sdc__wait_usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc wait ID [options]   (exit 0 when the job is done; 1 when it failed, was cancelled or timed out)\n"
          "  --redis URL         redis://[[user]:password@]host[:port][/db] (default $SDC_REDIS, else " SDC__DEFAULT_REDIS
          ")\n"
          "  --output FILE.png   write the image(s) there; several images: FILE-0.png, FILE-1.png, ...\n"
          "  --timeout S         give up after S seconds (default: wait as long as it takes)\n"
          "  --quiet             no progress bar (it is shown only on a terminal anyway)\n");
}

/* FILE.png -> FILE-i.png when several images are written. */
static void sdc__image_name(char *buf, size_t n, const char *out, int64_t i, int64_t count) {
  if (count == 1) {
    snprintf(buf, n, "%s", out);
    return;
  }
  const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
  if (!dot || (slash && dot < slash))
    snprintf(buf, n, "%s-%lld", out, (long long)i);
  else
    snprintf(buf, n, "%.*s-%lld%s", (int)(dot - out), out, (long long)i, dot);
}

/* Checked before waiting, so a typo does not cost the whole job: the folder
 * must exist and take files, the path must not be a folder. */
static int sdc__check_output(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return sdc_seterr(SDC_EINVAL, "--output '%s': is a directory", path);
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", path);
  const char *dir = dirname(copy);
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return sdc_seterr(SDC_EINVAL, "--output '%s': folder '%s' does not exist", path, dir);
  if (access(dir, W_OK) != 0) return sdc_seterr(SDC_EINVAL, "--output '%s': folder '%s' is not writable", path, dir);
  return SDC_OK;
}

/* Writes n bytes to path whole or not at all: beside it, then renamed. */
static int sdc__write_file(const char *path, const uint8_t *data, size_t n) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  size_t done = 0;
  while (done < n) {
    ssize_t k = write(fd, data + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    done += (size_t)k;
  }
  int ok = done == n;
  int e = errno;
  if (close(fd) != 0 && ok) ok = 0, e = errno;
  if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
  if (!ok) {
    unlink(tmp);
    return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(e));
  }
  return SDC_OK;
}

typedef struct {
  int tty;
} sdc__bar;

static void sdc__on_progress(void *ctx, const sdc_job_status *st) {
  const sdc__bar *b = ctx;
  if (!b->tty) return;
  if (st->steps > 0 && st->step >= 0) {
    char bar[31];
    int64_t step = st->step < st->steps ? st->step : st->steps;
    int fill = (int)(30 * step / st->steps);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r%-9s step %lld/%lld [%s] ", sdc_job_state_name(st->state), (long long)step, (long long)st->steps,
            bar);
  } else {
    fprintf(stderr, "\r%-9s %44s", sdc_job_state_name(st->state), "");
  }
  fflush(stderr);
}

int sdc_cmd_wait(int argc, char **argv) {
  const char *url = sdc_cli_redis_default(), *output = NULL, *id = NULL;
  double timeout_s = -1;
  int quiet = 0, err = SDC_OK;
  enum { O_REDIS = 256, O_TIMEOUT, O_QUIET };
  static const struct option opts[] = {{"redis", required_argument, 0, O_REDIS},
                                       {"output", required_argument, 0, 'o'},
                                       {"timeout", required_argument, 0, O_TIMEOUT},
                                       {"quiet", no_argument, 0, O_QUIET},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
    switch (ch) {
      case O_REDIS: url = optarg; break;
      case 'o': output = optarg; break;
      case O_TIMEOUT: {
        char *end;
        timeout_s = strtod(optarg, &end);
        if (end == optarg || *end || !isfinite(timeout_s) || timeout_s <= 0 || timeout_s > 1e9)
          err = sdc_seterr(SDC_EINVAL, "--timeout '%s': expected a number of seconds > 0", optarg);
        break;
      }
      case O_QUIET: quiet = 1; break;
      case 'h': sdc__wait_usage(stdout); return 0;
      default: err = sdc__bad_flag("wait", argv);
    }
  }
  if (!err && optind < argc) id = argv[optind++];
  if (!err && optind != argc) err = sdc_seterr(SDC_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!err && !id) err = sdc_seterr(SDC_EINVAL, "a job id is required (sdc wait ID)");
  if (!err && !sdc_job_id_valid(id))
    err =
        sdc_seterr(SDC_EINVAL, "job id '%.*s': expected 1..%d characters of [A-Za-z0-9._-]", 140, id, SDC_MAX_JOB_ID);
  if (!err && output) err = sdc__check_output(output);
  if (err) return sdc__usage_error("wait");

  sdc_client *c;
  int rc = sdc__connect("wait", url, &c);
  if (rc) return rc;
  sdc__bar bar = {!quiet && isatty(2)};
  sdc_job_status st;
  err = sdc_client_wait(c, id, timeout_s < 0 ? -1 : (int64_t)(timeout_s * 1000), sdc__on_progress, &bar, &st);
  if (bar.tty) fputc('\n', stderr);
  if (err) {
    fprintf(stderr, "sdc wait: %s\n", sdc_errmsg(err));
    rc = 1;
  } else if (st.state == SDC_JOB_FAILED) {
    fprintf(stderr, "sdc wait: job %s failed: %s\n", id, st.error[0] ? st.error : "(no error recorded)");
    rc = 1;
  } else if (st.state == SDC_JOB_CANCELLED) {
    fprintf(stderr, "sdc wait: job %s was cancelled\n", id);
    rc = 1;
  } else if (output) {
    /* the hash says how many; an older or foreign writer may not, then count the keys */
    int64_t count = st.num_images;
    for (int i = 0; count < 0 && i <= SDC_MAX_IMAGES; i++) {
      uint8_t *png = NULL;
      size_t n = 0;
      int e = i < SDC_MAX_IMAGES ? sdc_client_fetch_image(c, id, i, &png, &n) : SDC_EMISSING;
      free(png);
      if (e == SDC_EMISSING)
        count = i;
      else if (e)
        count = 0, err = e;
    }
    if (!err && (count < 1 || count > SDC_MAX_IMAGES))
      err = sdc_seterr(SDC_EPROTOCOL, "job %s is done but has %lld images", id, (long long)count);
    char name[4200];
    for (int64_t i = 0; !err && i < count; i++) {
      uint8_t *png = NULL;
      size_t n = 0;
      sdc__image_name(name, sizeof name, output, i, count);
      err = sdc_client_fetch_image(c, id, (int)i, &png, &n);
      if (!err && (n < 8 || memcmp(png, "\x89PNG\r\n\x1a\n", 8) != 0))
        err = sdc_seterr(SDC_EPROTOCOL, "job %s: image %lld is not a PNG", id, (long long)i);
      if (!err) err = sdc__write_file(name, png, n);
      free(png);
      if (!err && !quiet) fprintf(stderr, "wrote %s\n", name);
    }
    if (err) {
      fprintf(stderr, "sdc wait: %s\n", sdc_errmsg(err));
      rc = 1;
    }
  } else if (!quiet) {
    fprintf(stderr, "job %s done\n", id);
  }
  sdc_job_status_free(&st);
  sdc_client_free(c);
  return rc;
}

/* ---------------------------------------------------------------- status */

/* Parses `sdc <cmd> ID [--redis URL] [--json]` (json NULL: no --json). 0 ok, 2 usage printed/error, -1 help shown. */
static int sdc__id_args(const char *cmd, int argc, char **argv, const char **id, const char **url, int *json) {
  static const struct option opts[] = {{"redis", required_argument, 0, 'r'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int ch, err = SDC_OK;
  *id = NULL, *url = sdc_cli_redis_default();
  optind = 1;
  opterr = 0;
  while (!err && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (ch == 'r')
      *url = optarg;
    else if (ch == 'j' && json)
      *json = 1;
    else if (ch == 'h') {
      printf("usage: sdc %s ID [--redis URL]%s   (default URL $SDC_REDIS, else " SDC__DEFAULT_REDIS ")\n", cmd,
             json ? " [--json]" : "");
      return -1;
    } else
      err = sdc__bad_flag(cmd, argv);
  }
  if (!err && optind < argc) *id = argv[optind++];
  if (!err && optind != argc) err = sdc_seterr(SDC_EINVAL, "unexpected argument '%s'", argv[optind]);
  if (!err && !*id) err = sdc_seterr(SDC_EINVAL, "a job id is required (sdc %s ID)", cmd);
  if (!err && !sdc_job_id_valid(*id))
    err =
        sdc_seterr(SDC_EINVAL, "job id '%.*s': expected 1..%d characters of [A-Za-z0-9._-]", 140, *id, SDC_MAX_JOB_ID);
  return err ? sdc__usage_error(cmd) : 0;
}

int sdc_cmd_status(int argc, char **argv) {
  const char *id, *url;
  int json = 0;
  int rc = sdc__id_args("status", argc, argv, &id, &url, &json);
  if (rc) return rc < 0 ? 0 : rc;
  sdc_client *c;
  if ((rc = sdc__connect("status", url, &c))) return rc;
  sdc_job_status st;
  int err = sdc_client_status(c, id, &st);
  sdc_client_free(c);
  if (err) {
    fprintf(stderr, "sdc status: %s\n", sdc_errmsg(err));
    sdc_job_status_free(&st);
    return 1;
  }
  /* the contract's fields first, in its order, then anything else */
  static const char *const order[] = {
      SDC_JOB_F_STATE,      SDC_JOB_F_STEP,        SDC_JOB_F_STEPS,    SDC_JOB_F_ERROR,     SDC_JOB_F_CANCEL,
      SDC_JOB_F_SEED,       SDC_JOB_F_WIDTH,       SDC_JOB_F_HEIGHT,   SDC_JOB_F_SCHEDULER, SDC_JOB_F_NUM_IMAGES,
      SDC_JOB_F_ROUTE,      SDC_JOB_F_COORDINATOR, SDC_JOB_F_ATTEMPTS, SDC_JOB_F_ENTRY,     SDC_JOB_F_CREATED_MS,
      SDC_JOB_F_STARTED_MS, SDC_JOB_F_FINISHED_MS};
  const size_t n_order = sizeof order / sizeof *order;
  if (json) { /* one object of strings, as the hash holds them, for scripts */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    if (!st.n_fields) cJSON_AddStringToObject(o, "state", sdc_job_state_name(st.state));
    for (size_t i = 0; i < st.n_fields; i++) cJSON_AddStringToObject(o, st.fields[2 * i], st.fields[2 * i + 1]);
    char *text = cJSON_PrintUnformatted(o);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    sdc_job_status_free(&st);
    return text ? 0 : 1;
  }
  printf("id: %s\n", id);
  if (!st.n_fields) printf("state: %s\n", sdc_job_state_name(st.state)); /* queued in the stream, no hash yet */
  for (size_t k = 0; k <= n_order; k++)
    for (size_t i = 0; i < st.n_fields; i++) {
      const char *name = st.fields[2 * i];
      int known = 0;
      for (size_t j = 0; j < n_order; j++) known |= strcmp(name, order[j]) == 0;
      if (k < n_order ? strcmp(name, order[k]) == 0 : !known) printf("%s: %s\n", name, st.fields[2 * i + 1]);
    }
  sdc_job_status_free(&st);
  return 0;
}

/* ---------------------------------------------------------------- cancel */

int sdc_cmd_cancel(int argc, char **argv) {
  const char *id, *url;
  int rc = sdc__id_args("cancel", argc, argv, &id, &url, NULL);
  if (rc) return rc < 0 ? 0 : rc;
  sdc_client *c;
  if ((rc = sdc__connect("cancel", url, &c))) return rc;
  sdc_job_state before;
  int err = sdc_client_cancel(c, id, &before);
  sdc_client_free(c);
  if (err) {
    fprintf(stderr, "sdc cancel: %s\n", sdc_errmsg(err));
    return 1;
  }
  if (before == SDC_JOB_CANCELLED) {
    printf("job %s: already cancelled\n", id);
  } else if (sdc_job_state_final(before)) {
    fprintf(stderr, "sdc cancel: job %s already %s; nothing to cancel\n", id, sdc_job_state_name(before));
    return 1;
  } else if (before == SDC_JOB_UNKNOWN) {
    printf("job %s: cancel recorded; no coordinator has claimed the job yet\n", id);
  } else {
    printf("job %s: cancel requested (was %s)\n", id, sdc_job_state_name(before));
  }
  return 0;
}
