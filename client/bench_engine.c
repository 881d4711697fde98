/* bench_engine.c - `sdc bench-engine`: each stage timed in-process beside the machine's peak measured in the same run. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "error.h"
#include "isa.h"
#include "onednn.h"
#include "ops.h"
#include "peak.h"
#include "pipeline.h"

extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);

/* ---- stage timing ---- */

typedef struct {
  const char *name;
  double min_s, median_s, gflop;
} sdc__stage_time;

static int sdc__cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void sdc__finish_times(sdc__stage_time *st, double *t, int runs, uint64_t flops_per_run) {
  qsort(t, (size_t)runs, sizeof *t, sdc__cmp_double);
  st->min_s = t[0];
  st->median_s = t[runs / 2];
  st->gflop = (double)flops_per_run / 1e9;
}

static void sdc__usage(FILE *fp) {
  fprintf(fp,
          "usage: sdc bench-engine --model DIR [--width 512] [--height 512] [--runs 3] [--precision fp32] [--json]\n"
          "                        [--ref DIR]\n"
          "       sdc bench-engine --peak-only [--precision fp32] [--json]\n"
          "  Times the text encoder (2x77 tokens), a UNet step and each UNet shard (batch 2, CFG), the VAE\n"
          "  decode and encode (img2img), in-process; prints each stage's seconds (min and median), GEMM FLOPs, GFLOP/s and its\n"
          "  efficiency against the peak measured in the same run (the better of oneDNN's f32 matmul and\n"
          "  OpenBLAS sgemm at 2048^3, or oneDNN's bf16 matmul with --precision bf16; measured at the start and\n"
          "  the end, with a warning when they differ by more than 10%%; FMA loops shown beside), peak RSS, and\n"
          "  the BLAS core and threads in use.\n"
          "  Weights: e.g. sdc model-init --arch sd15 --out DIR.\n"
          "  --peak-only: measure and print the peak alone (no model), e.g. to check that it is stable.\n"
          "  --ref DIR (with --precision bf16): also run the reference pipelines of DIR/goldens.json in bf16\n"
          "  and print the least PSNR of their images against the fp32 goldens (as sdc verify --precision\n"
          "  bf16; exit 1 if one is below %.0f dB).\n",
          SDC_BF16_PSNR_MIN_DB);
}

/* --peak-only: the yardstick alone, as every run measures it. */
static int sdc__peak_only(const char *precision, int json) {
  sdc_precision prec;
  int err = sdc_precision_parse(precision, &prec);
  if (!err) err = sdc_precision_check(prec);
  if (err) {
    fprintf(stderr, "sdc bench-engine: %s\n", sdc_errmsg(err));
    return 2;
  }
  const sdc_peak pk = sdc_peak_measure(prec == SDC_PREC_BF16);
  if (json) {
    sdc_peak_json(&pk, stdout);
    printf("\n");
  } else {
    char line[256];
    sdc_peak_describe(&pk, line, sizeof line);
    printf("%s (measured in %.1f s)\n", line, pk.seconds);
  }
  return 0;
}

int sdc_cmd_bench_engine(int argc, char **argv) {
  const char *model = NULL, *precision = "fp32", *ref = NULL;
  int64_t width = 512, height = 512;
  int runs = 3, json = 0, peak_only = 0;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},     {"width", required_argument, 0, 'W'},
                                       {"height", required_argument, 0, 'H'},    {"runs", required_argument, 0, 'r'},
                                       {"precision", required_argument, 0, 'p'}, {"json", no_argument, 0, 'j'},
                                       {"ref", required_argument, 0, 'R'},       {"help", no_argument, 0, 'h'},
                                       {"peak-only", no_argument, 0, 'P'},
                                       {0, 0, 0, 0}};
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "m:W:H:r:p:jR:h", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'W': width = atoll(optarg); break;
      case 'H': height = atoll(optarg); break;
      case 'r': runs = atoi(optarg); break;
      case 'p': precision = optarg; break;
      case 'j': json = 1; break;
      case 'R': ref = optarg; break;
      case 'h': sdc__usage(stdout); return 0;
      case 'P': peak_only = 1; break;
      default: sdc__usage(stderr); return 2;
    }
  }
  if (peak_only && !model && optind == argc) return sdc__peak_only(precision, json);
  if (!model || peak_only || optind != argc || width < 8 || height < 8 || width % 8 || height % 8 || runs < 1 || runs > 50) {
    sdc__usage(stderr);
    return 2;
  }
  sdc_precision prec;
  int err = sdc_precision_parse(precision, &prec);
  if (!err) err = sdc_precision_check(prec);
  if (!err && ref && prec != SDC_PREC_BF16)
    err = sdc_seterr(SDC_EINVAL, "--ref measures bf16 against the fp32 goldens: it needs --precision bf16");
  if (err) {
    fprintf(stderr, "sdc bench-engine: %s\n", sdc_errmsg(err));
    return 2;
  }
  sdc_pipeline *p = NULL;
  err = sdc_pipeline_load(&p, model, NULL, &(sdc_load_opts){.precision = prec}, NULL, 0);
  if (err) {
    fprintf(stderr, "sdc bench-engine: %s\n", sdc_errmsg(err));
    return 2;
  }
  const int bf16 = prec == SDC_PREC_BF16;
  const sdc_peak pk = sdc_peak_measure(bf16);
  const sdc_model *m = &p->model;
  const sdc_text_models tmods = sdc_pipeline_text_models(p);
  const int64_t s = sdc_vae_scale(&m->vae), h = height / s, w = width / s, B = 2, C = m->unet.in_channels;
  const int64_t L = sdc_tokenizer_max_length(p->tok), D = sdc_text_context_dim(&tmods),
                P = m->unet.add_text_time ? sdc_text_pooled_dim(&tmods) : 0;
  sdc_arena *a = &p->arena;
  float *x = calloc((size_t)(B * C * h * w), 4), *ctx = calloc((size_t)(B * L * D), 4), *out = calloc((size_t)(B * C * h * w), 4);
  float *pix = calloc((size_t)(3 * width * height), 4), t[2] = {500.0f, 500.0f};
  /* SDXL: the pooled text embedding and the time ids of a width x height request, every row */
  float *pooled = calloc((size_t)(B * (P ? P : 1)), 4), time_ids[2 * SDC_TIME_IDS];
  sdc_gen_time_ids(&(sdc_gen_params){.width = width, .height = height}, 2, time_ids);
  const sdc_unet_added added = {pooled, time_ids, P, SDC_TIME_IDS}, *addp = P ? &added : NULL;
  double *tm = calloc((size_t)runs, sizeof *tm);
  for (int64_t i = 0; i < B * C * h * w; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  /* the text stage as a job runs it: the negative and the positive prompt, each through every encoder */
  static const char *const texts[2] = {"blurry, low quality",
                                       "a photograph of an astronaut riding a horse on the moon, highly detailed"};
  enum { SDC__N_STAGES = 7 };
  sdc__stage_time st[SDC__N_STAGES] = {{"text_encoder_2x77", 0, 0, 0}, {"unet_step", 0, 0, 0}, {"unet_down", 0, 0, 0},
                                       {"unet_mid", 0, 0, 0},         {"unet_up", 0, 0, 0},   {"vae_decode", 0, 0, 0},
                                       {"vae_encode", 0, 0, 0}};
  uint64_t f;
  /* warm-up: first touches of weights and arena blocks, and the first call's
   * re-packing of each layer's weights for its activation size, are not what
   * we measure */
  float *mean = calloc((size_t)(C * h * w), 4), *logvar = calloc((size_t)(C * h * w), 4);
  for (int i = 0; i < 2; i++) sdc_text_encode(&tmods, a, texts[i], NULL, ctx + i * L * D, P ? pooled + i * P : NULL, NULL);
  sdc_unet_forward(p->unet, a, x, t, ctx, addp, B, h, w, L, out);
  sdc_vae_decode(p->vae, a, x, 1, h, w, pix);
  if (mean && logvar) sdc_vae_encode(p->vae, a, pix, 1, height, width, mean, logvar);
  sdc_ops_flops_reset();
  for (int r = 0; r < runs; r++) {
    double t0 = sdc_clock_mono_s();
    for (int i = 0; i < 2; i++)
      err |= sdc_text_encode(&tmods, a, texts[i], NULL, ctx + i * L * D, P ? pooled + i * P : NULL, NULL);
    tm[r] = sdc_clock_mono_s() - t0;
  }
  f = sdc_ops_flops() / (uint64_t)runs;
  sdc__finish_times(&st[0], tm, runs, f);
  sdc_ops_flops_reset();
  sdc_ops_seconds_reset();
  for (int r = 0; r < runs; r++) {
    double t0 = sdc_clock_mono_s();
    err |= sdc_unet_forward(p->unet, a, x, t, ctx, addp, B, h, w, L, out);
    tm[r] = sdc_clock_mono_s() - t0;
  }
  f = sdc_ops_flops() / (uint64_t)runs;
  /* where a UNet step's time goes, mean over the runs */
  double split[SDC_OPS_KINDS + 1], split_gf[SDC_OPS_KINDS], total = 0;
  for (int k = 0; k < SDC_OPS_KINDS; k++)
    split[k] = sdc_ops_seconds((sdc_ops_kind)k) / runs, split_gf[k] = (double)sdc_ops_kind_flops((sdc_ops_kind)k) / runs / 1e9;
  for (int r = 0; r < runs; r++) total += tm[r] / runs;
  split[SDC_OPS_KINDS] = total - split[0] - split[1] - split[2];
  sdc__finish_times(&st[1], tm, runs, f);
  /* the shards, one at a time, as three workers would run them */
  double *td = calloc((size_t)runs, 8), *tmid = calloc((size_t)runs, 8), *tu = calloc((size_t)runs, 8);
  uint64_t fd = 0, fmid = 0, fu = 0;
  for (int r = 0; r < runs; r++) {
    sdc_arena_mark mk = sdc_arena_get_mark(a);
    sdc_unet_acts acts;
    sdc_ops_flops_reset();
    double t0 = sdc_clock_mono_s();
    int e = sdc_unet_down(p->unet, a, x, t, ctx, addp, B, h, w, L, &acts);
    double t1 = sdc_clock_mono_s();
    fd += sdc_ops_flops(), sdc_ops_flops_reset();
    if (!e) e = sdc_unet_mid(p->unet, a, ctx, L, &acts); /* each shard reads the one before */
    double t2 = sdc_clock_mono_s();
    fmid += sdc_ops_flops(), sdc_ops_flops_reset();
    if (!e) e = sdc_unet_up(p->unet, a, ctx, L, &acts, out);
    if (e && !err) fprintf(stderr, "sdc bench-engine: a UNet shard failed: %s\n", sdc_errmsg(e));
    err |= e;
    double t3 = sdc_clock_mono_s();
    fu += sdc_ops_flops();
    td[r] = t1 - t0, tmid[r] = t2 - t1, tu[r] = t3 - t2;
    sdc_arena_reset(a, mk);
  }
  sdc__finish_times(&st[2], td, runs, fd / (uint64_t)runs);
  sdc__finish_times(&st[3], tmid, runs, fmid / (uint64_t)runs);
  sdc__finish_times(&st[4], tu, runs, fu / (uint64_t)runs);
  sdc_ops_flops_reset();
  for (int r = 0; r < runs; r++) {
    double t0 = sdc_clock_mono_s();
    err |= sdc_vae_decode(p->vae, a, x, 1, h, w, pix);
    tm[r] = sdc_clock_mono_s() - t0;
  }
  f = sdc_ops_flops() / (uint64_t)runs;
  sdc__finish_times(&st[5], tm, runs, f);
  /* img2img / inpainting: the encoder on one image (the decoder's output as input; its values do not matter) */
  sdc_ops_flops_reset();
  for (int r = 0; r < runs; r++) {
    double t0 = sdc_clock_mono_s();
    err |= mean && logvar ? sdc_vae_encode(p->vae, a, pix, 1, height, width, mean, logvar) : SDC_ENOMEM;
    tm[r] = sdc_clock_mono_s() - t0;
  }
  f = sdc_ops_flops() / (uint64_t)runs;
  sdc__finish_times(&st[6], tm, runs, f);
  free(mean), free(logvar);
  /* the yardstick again: a machine whose speed moved during the run makes
   * its efficiencies unreliable, and the run says so */
  const sdc_peak pk_end = sdc_peak_measure(bf16);
  const double drift = sdc_peak_drift(&pk, &pk_end, bf16);
  /* efficiency against the better of the two: the conservative reading */
  const double peak = bf16 ? fmax(pk.bf16_peak_gflops, pk_end.bf16_peak_gflops) : fmax(pk.peak_gflops, pk_end.peak_gflops);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = (double)ru.ru_maxrss / 1024.0;
  const char *core = openblas_get_corename();
  char backend[128];
  if (bf16) snprintf(backend, sizeof backend, "oneDNN %s (bf16)", sdc_onednn_isa());
  else if (sdc_fp32_gemm() == SDC_GEMM_ONEDNN) snprintf(backend, sizeof backend, "oneDNN at ISA level %s (fp32)", sdc_isa_name(sdc_isa_level()));
  else snprintf(backend, sizeof backend, "OpenBLAS %s (fp32)", core);
  const int blas_threads = openblas_get_num_threads();
  if (err) fprintf(stderr, "sdc bench-engine: a stage failed: %s\n", sdc_errmsg(err));
  /* quality beside speed: the reference pipelines in bf16 against diffusers' fp32 images */
  double psnr_min = NAN;
  int psnr_cases = 0, psnr_err = ref ? sdc_verify_bf16_psnr(ref, &psnr_min, &psnr_cases, 1) : SDC_OK;
  if (psnr_err) fprintf(stderr, "sdc bench-engine: bf16 PSNR check: %s\n", sdc_errmsg(psnr_err));
  if (json) {
    printf("{\"model\":\"%s\",\"width\":%lld,\"height\":%lld,\"precision\":\"%s\",\"runs\":%d,", model, (long long)width,
           (long long)height, precision, runs);
    printf("\"blas_core\":\"%s\",\"threads\":%d,\"isa\":\"%s\",\"peak_gflops\":%.1f,\"peak_drift\":%.3f,", core,
           blas_threads, sdc_isa_name(pk.isa), peak, drift);
    printf("\"peak_start\":");
    sdc_peak_json(&pk, stdout);
    printf(",\"peak_end\":");
    sdc_peak_json(&pk_end, stdout);
    printf(",");
    printf("\"te_s\":%.4f,\"unet_step_s\":%.4f,\"unet_gflops\":%.1f,\"efficiency\":%.3f,\"vae_decode_s\":%.4f,",
           st[0].min_s, st[1].min_s, st[1].gflop / st[1].min_s, st[1].gflop / st[1].min_s / peak, st[5].min_s);
    printf("\"stages\":{");
    for (int i = 0; i < SDC__N_STAGES; i++)
      printf("%s\"%s\":{\"min_s\":%.4f,\"median_s\":%.4f,\"gflop\":%.2f,\"gflops\":%.1f,\"efficiency\":%.3f}", i ? "," : "",
             st[i].name, st[i].min_s, st[i].median_s, st[i].gflop, st[i].gflop / st[i].min_s,
             st[i].gflop / st[i].min_s / peak);
    printf("},\"unet_split_s\":{\"conv\":%.4f,\"linear\":%.4f,\"attention\":%.4f,\"other\":%.4f},", split[0], split[1],
           split[2], split[3]);
    printf("\"gemm_backend\":\"%s\",\"peak_rss_mb\":%.0f", backend, rss_mb);
    if (ref && isfinite(psnr_min)) printf(",\"psnr_db_min\":%.2f,\"psnr_cases\":%d", psnr_min, psnr_cases);
    else if (ref) printf(",\"psnr_db_min\":null,\"psnr_cases\":%d", psnr_cases);
    printf("}\n");
  } else {
    printf("model %s, %lldx%lld, %s, %d runs\n", model, (long long)width, (long long)height, precision, runs);
    char line[256];
    sdc_peak_describe(&pk, line, sizeof line);
    printf("at start: %s\n", line);
    sdc_peak_describe(&pk_end, line, sizeof line);
    printf("at end:   %s\n", line);
    printf("efficiency below is against %.1f GFLOP/s %s, the better of the two (BLAS core %s, %d threads)\n", peak,
           bf16 ? "bf16" : "fp32", core, blas_threads);
    if (drift > SDC_PEAK_DRIFT_MAX)
      printf("WARNING: the peak moved by %.0f%% between the start and the end of this run: the machine was busy; "
             "its efficiencies are unreliable\n", 100 * drift);
    printf("%-20s %10s %10s %10s %10s %10s\n", "stage", "min s", "median s", "GFLOP", "GFLOP/s", "efficiency");
    for (int i = 0; i < SDC__N_STAGES; i++)
      printf("%-20s %10.4f %10.4f %10.2f %10.1f %10.3f\n", st[i].name, st[i].min_s, st[i].median_s, st[i].gflop,
             st[i].gflop / st[i].min_s, st[i].gflop / st[i].min_s / peak);
    printf("UNet step, mean of %d: conv %.3f s (%.0f GFLOP, %.0f GFLOP/s), linear %.3f s (%.0f, %.0f), attention %.3f s "
           "(%.0f, %.0f), other (norms, activations, copies) %.3f s\n",
           runs, split[0], split_gf[0], split_gf[0] / split[0], split[1], split_gf[1], split_gf[1] / split[1], split[2],
           split_gf[2], split_gf[2] / split[2], split[3]);
    printf("GEMMs on %s; peak RSS %.0f MiB\n", backend, rss_mb);
    if (ref && psnr_cases)
      printf("bf16 vs fp32 PSNR on the reference pipelines: min %.2f dB over %d cases\n", psnr_min, psnr_cases);
    else if (ref)
      printf("bf16 vs fp32 PSNR on the reference pipelines: not measured (see the error above)\n");
  }
  free(x), free(ctx), free(out), free(pix), free(pooled), free(tm), free(td), free(tmid), free(tu);
  sdc_pipeline_free(p);
  return err || psnr_err ? 1 : 0;
}
