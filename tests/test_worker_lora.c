/* test_worker_lora.c - a text worker's LoRAs: names resolve inside --lora-dir only (a forged "../x" or a symlink
 * out is refused), a merged set gives the context the multiplier asks for (0: the base's exactly), the LRU cache
 * and --lora-cache 0 give the same bytes as a fresh merge, and a worker without --lora-dir says so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "stage_exec.h"
#include "test_util.h"
#include "wire.h"

static sdc_stage_host g_host;
static uint64_t g_req_id;

/* Runs a TEXT request for "a red cube" with the given LoRAs; *ctx gets the context floats (heap, caller
 * frees) or stays NULL, and the reply's error is copied into error (empty on success). */
static void run_text(const char *const *names, const double *mults, int n, float **ctx, size_t *n_ctx, char *error,
                     size_t cap) {
  Sdcpb__Hop hop = SDCPB__HOP__INIT;
  hop.stage = SDCPB__STAGE__TEXT, hop.worker_id = "text-0", hop.endpoint = "tcp://127.0.0.1:1";
  Sdcpb__Hop *route[] = {&hop};
  Sdcpb__LoraRef refs[8], *rp[8];
  for (int i = 0; i < n; i++) {
    sdcpb__lora_ref__init(&refs[i]);
    refs[i].name = (char *)names[i], refs[i].multiplier = mults[i];
    rp[i] = &refs[i];
  }
  char *prompts[] = {"a red cube"};
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  req.job_id = "job-lora", req.request_id = ++g_req_id, req.n_route = 1, req.route = route;
  req.n_prompts = 1, req.prompts = prompts, req.n_loras = (size_t)n, req.loras = rp;
  uint8_t *out = NULL;
  size_t out_n = 0;
  int is_reply = 0;
  const char *ep = NULL;
  sdc_stage_hops hops;
  sdc_error hop_error;
  *ctx = NULL, *n_ctx = 0, error[0] = 0;
  int err = sdc_stage_execute(&g_host, &req, "text-0", &out, &out_n, &is_reply, &ep, &hops, &hop_error);
  Sdcpb__Envelope *env = NULL;
  CHECK(!err && is_reply && sdc_wire_unpack(out, out_n, &env) == SDC_OK && env->body_case == SDCPB__ENVELOPE__BODY_REPLY,
        "text request did not give a reply");
  if (env && env->body_case == SDCPB__ENVELOPE__BODY_REPLY) {
    const Sdcpb__StageReply *rep = env->reply;
    snprintf(error, cap, "%s", rep->error ? rep->error : "");
    int nd;
    int64_t dims[SDC_MAX_DIMS];
    if (!error[0] && rep->output && sdc_wire_tensor_check(rep->output, "context", &nd, dims) == SDC_OK) {
      *n_ctx = (size_t)sdc_shape_numel(nd, dims);
      *ctx = malloc(*n_ctx * sizeof **ctx);
      CHECK(sdc_wire_tensor_get(rep->output, "context", nd, dims, *ctx, NULL) == SDC_OK, "context tensor");
    }
  }
  sdc_wire_free(env);
  free(out);
}

static int same(const float *a, const float *b, size_t n) { return a && b && memcmp(a, b, n * sizeof *a) == 0; }

int main(void) {
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("no reference folder (SDC_REF)");
  char model[1024], style[1200], dir[1200], path[1300];
  snprintf(model, sizeof model, "%s/tiny-sd1", ref);
  snprintf(style, sizeof style, "%s/pipelines/lora/tiny-sd1-style.safetensors", ref);
  if (access(style, R_OK) != 0) sdc_test_skip("no pipelines/lora/tiny-sd1-style.safetensors");
  snprintf(dir, sizeof dir, "%s/loras", sdc_test_tmpdir());
  mkdir(dir, 0700);
  /* style: a copy; out: a symlink leading out of the folder */
  FILE *in = fopen(style, "rb"), *o;
  snprintf(path, sizeof path, "%s/style.safetensors", dir);
  o = fopen(path, "wb");
  for (int c; in && o && (c = fgetc(in)) != EOF;) fputc(c, o);
  if (in) fclose(in);
  if (o) fclose(o);
  snprintf(path, sizeof path, "%s/out.safetensors", dir);
  CHECK(symlink(style, path) == 0, "symlink: %s", strerror(errno));

  const sdc_load_opts lo = {.precision = SDC_PREC_FP32};
  int err = sdc_stage_host_load(&g_host, model, NULL, 1u << SDCPB__STAGE__TEXT, &lo);
  CHECK(err == SDC_OK, "load: %s", sdc_errmsg(err));
  if (err) return sdc_test_finish("test_worker_lora");
  char error[1024];
  float *base, *ctx, *ctx2;
  size_t n_base, n;
  const char *style_name[] = {"style"};

  /* no --lora-dir */
  run_text(style_name, (double[]){1}, 1, &ctx, &n, error, sizeof error);
  CHECK(strstr(error, "worker text-0: no --lora-dir: cannot apply LoRA style"), "without --lora-dir: '%s'", error);
  free(ctx);

  CHECK(sdc_stage_host_set_loras(&g_host, "/nonexistent-sdc-loras", 2) == SDC_EINVAL, "a missing --lora-dir");
  CHECK(sdc_stage_host_set_loras(&g_host, dir, 17) == SDC_EINVAL, "--lora-cache 17");
  CHECK(sdc_stage_host_set_loras(&g_host, dir, 1) == SDC_OK, "set_loras: %s", sdc_errmsg(SDC_EINVAL));
  run_text(NULL, NULL, 0, &base, &n_base, error, sizeof error);
  CHECK(base && !error[0], "base context: %s", error);

  /* names: forged paths, unknown names and symlinks out are refused, one line each */
  static const struct {
    const char *name, *want;
  } bad[] = {{"../style", "is not [A-Za-z0-9._-]"}, {".hidden", "is not"}, {"a/b", "is not"},
             {"nosuch", "unknown LoRA nosuch"},     {"out", "resolves outside"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    run_text(&bad[i].name, (double[]){1}, 1, &ctx, &n, error, sizeof error);
    CHECK(strstr(error, bad[i].want) && !strchr(error, '\n'), "LoRA '%s': '%s'", bad[i].name, error);
    free(ctx);
  }

  /* multiplier 0 merges nothing: the base's bytes; 1 changes the context */
  run_text(style_name, (double[]){0}, 1, &ctx, &n, error, sizeof error);
  CHECK(same(ctx, base, n_base) && n == n_base, "multiplier 0 differs from the base: %s", error);
  free(ctx);
  float *one = NULL;
  run_text(style_name, (double[]){1}, 1, &one, &n, error, sizeof error);
  CHECK(one && !same(one, base, n_base), "multiplier 1 left the context unchanged: %s", error);

  /* cache of 1: style:1, style:0.5, style:1 again (evicted and rebuilt) give the first bytes back; so does
   * --lora-cache 0 (merged per request) */
  run_text(style_name, (double[]){0.5}, 1, &ctx, &n, error, sizeof error);
  CHECK(ctx && !same(ctx, one, n_base) && !same(ctx, base, n_base), "multiplier 0.5: %s", error);
  run_text(style_name, (double[]){1}, 1, &ctx2, &n, error, sizeof error);
  CHECK(same(ctx2, one, n_base), "style:1 rebuilt after eviction differs");
  free(ctx2);
  run_text(style_name, (double[]){0.5}, 1, &ctx2, &n, error, sizeof error);
  CHECK(same(ctx2, ctx, n_base), "style:0.5 rebuilt differs");
  free(ctx2), free(ctx);
  CHECK(sdc_stage_host_set_loras(&g_host, dir, 0) == SDC_OK, "--lora-cache 0");
  run_text(style_name, (double[]){1}, 1, &ctx, &n, error, sizeof error);
  CHECK(same(ctx, one, n_base), "--lora-cache 0: style:1 differs from the cached merge");
  free(ctx);
  run_text(NULL, NULL, 0, &ctx, &n, error, sizeof error);
  CHECK(same(ctx, base, n_base), "a request without LoRAs after LoRA ones is not the base");
  free(ctx), free(one), free(base);
  sdc_stage_host_free(&g_host);
  return sdc_test_finish("test_worker_lora");
}
