/* bench_lora.c - what each way of serving a LoRA costs: merging into the weights at load (time, memory of
 * one more merged model) against low-rank side paths x.down^T.up^T run on every UNet step, beside the
 * measured UNet step and the machine's peak. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "error.h"
#include "lora.h"
#include "model.h"
#include "ops.h"
#include "peak.h"
#include "runtime.h"
#include "unet.h"


#define SDC__MAX_FILES 8
#define SDC__N_SIZES 2

/* Resident set now (not the peak), MiB. */
static double sdc__rss_now_mib(void) {
  long pages = 0, rss = 0;
  FILE *fp = fopen("/proc/self/statm", "r");
  if (fp) {
    if (fscanf(fp, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(fp);
  }
  return (double)rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

typedef struct {
  sdc_weights w;
  sdc_unet *u;
  sdc_lora_set *set;
  double load_s, merge_gflop;
} sdc__loaded;

/* UNet view + (LoRA) + load, timed; the model stays loaded in l. */
static int sdc__load(sdc_model *m, const char *lora, sdc__loaded *l) {
  memset(l, 0, sizeof *l);
  double t0 = sdc_clock_mono_s();
  int err = SDC_OK;
  if (lora) {
    sdc_lora_ref ref;
    if (!(err = sdc_lora_ref_parse(lora, &ref))) err = sdc_lora_set_open(&l->set, &ref, 1);
  }
  if (!err) err = sdc_model_weights(m, SDC_COMP_UNET, &l->w);
  if (!err && l->set) err = sdc_weights_set_lora(&l->w, l->set, SDC_COMP_UNET);
  if (!err) err = sdc_unet_load(&l->u, &l->w, &m->unet, SDC_UNET_ALL, &SDC_LOAD_OPTS_FP32);
  l->load_s = sdc_clock_mono_s() - t0;
  for (int64_t i = 0; i < l->w.n_overlay; i++) {
    const sdc_weight_delta *d = &l->w.overlay[i].terms[0];
    const int64_t r = d->down->shape[0], out = d->up->shape[0],
                  in = sdc_shape_numel(d->down->ndim, d->down->shape) / r;
    l->merge_gflop += 2.0 * (double)(out * in * r) / 1e9;
  }
  return err;
}

static void sdc__unload(sdc__loaded *l) {
  sdc_unet_free(l->u);
  sdc_weights_free(&l->w);
  sdc_lora_set_free(l->set);
  memset(l, 0, sizeof *l);
}

/* The UNet level a diffusers module runs at: down_blocks.i -> i, mid -> n-1, up_blocks.j -> n-1-j. */
static int sdc__level(const char *name, int n_blocks) {
  int i;
  if (sscanf(name, "down_blocks.%d.", &i) == 1) return i;
  if (sscanf(name, "up_blocks.%d.", &i) == 1) return n_blocks - 1 - i;
  return n_blocks - 1;
}

/* Every adapted module's side path for one UNet call (batch B, latent hw x hw): FLOPs, and seconds (best of
 * runs; buffers allocated and touched once, outside the timing). */
static int sdc__side_paths(const sdc_weights *w, const sdc_unet_config *cfg, int64_t B, int64_t hw, int runs,
                           double *gflop, double *secs) {
  int64_t max_x = 1, max_mid = 1, max_y = 1, max_d = 1, max_u = 1;
  for (int64_t i = 0; i < w->n_overlay; i++) {
    const sdc_weight_delta *d = &w->overlay[i].terms[0];
    const int64_t r = d->down->shape[0], out = d->up->shape[0], k = sdc_shape_numel(d->down->ndim, d->down->shape) / r;
    const int64_t side = hw >> sdc__level(w->overlay[i].name, cfg->n_blocks), M = B * (side * side > 77 ? side * side : 77);
    max_x = M * k > max_x ? M * k : max_x, max_mid = M * r > max_mid ? M * r : max_mid;
    max_y = M * out > max_y ? M * out : max_y, max_d = r * k > max_d ? r * k : max_d, max_u = out * r > max_u ? out * r : max_u;
  }
  float *x = malloc((size_t)max_x * 4), *mid = malloc((size_t)max_mid * 4), *y = malloc((size_t)max_y * 4),
        *down = malloc((size_t)max_d * 4), *up = malloc((size_t)max_u * 4);
  if (!x || !mid || !y || !down || !up) {
    free(x), free(mid), free(y), free(down), free(up);
    return sdc_seterr(SDC_ENOMEM, "side paths: out of memory");
  }
  for (int64_t j = 0; j < max_x; j++) x[j] = (float)((j * 37) % 101) / 50.0f - 1.0f;
  memset(mid, 0, (size_t)max_mid * 4), memset(y, 0, (size_t)max_y * 4);
  sdc_arena a;
  sdc_arena_init(&a, 0);
  double best = 1e30, flops = 0;
  int err = SDC_OK;
  for (int run = 0; run < runs + 1 && !err; run++) { /* run 0 warms the arena and caches */
    double total = 0;
    flops = 0;
    for (int64_t i = 0; i < w->n_overlay && !err; i++) {
      const char *name = w->overlay[i].name;
      const sdc_weight_delta *d = &w->overlay[i].terms[0];
      const int64_t r = d->down->shape[0], out = d->up->shape[0], k = sdc_shape_numel(d->down->ndim, d->down->shape) / r;
      const int64_t side = hw >> sdc__level(name, cfg->n_blocks);
      const int is_ctx = strstr(name, "attn2.to_k") || strstr(name, "attn2.to_v");
      const int conv3 = d->down->ndim == 4 && d->down->shape[2] * d->down->shape[3] > 1;
      const int64_t M = is_ctx ? B * 77 : B * side * side, in = conv3 ? d->down->shape[1] : k;
      sdc_convert_to_f32(down, sdc_st_ptr(d->file, d->down), d->down->dtype, r * k);
      sdc_convert_to_f32(up, sdc_st_ptr(d->file, d->up), d->up->dtype, out * r);
      double t0 = sdc_clock_mono_s();
      if (conv3) { /* LoCon: a 3x3 conv to r channels, then a 1x1 conv (a GEMM) back to out */
        const int64_t kh = d->down->shape[2];
        sdc_conv_shape s = {.B = B, .Cin = in, .H = side, .W = side, .Cout = r, .kh = kh, .kw = kh, .stride = 1,
                            .pad_t = kh / 2, .pad_l = kh / 2, .Ho = side, .Wo = side};
        err = sdc_conv2d(&a, mid, x, down, NULL, &s);
        sdc_conv_shape s1 = {.B = B, .Cin = r, .H = side, .W = side, .Cout = out, .kh = 1, .kw = 1, .stride = 1,
                             .Ho = side, .Wo = side};
        if (!err) err = sdc_conv2d(&a, y, mid, up, NULL, &s1);
      } else { /* x (M, in) . down^T (in, r) . up^T (r, out) */
        sdc_linear(mid, x, down, NULL, M, in, r);
        sdc_linear(y, mid, up, NULL, M, r, out);
      }
      total += sdc_clock_mono_s() - t0;
      flops += 2.0 * (double)M * (double)(r * k + out * r);
    }
    if (run > 0 && total < best) best = total;
  }
  sdc_arena_free(&a);
  free(x), free(mid), free(y), free(down), free(up);
  *gflop = flops / 1e9;
  *secs = best;
  return err;
}

int main(int argc, char **argv) {
  const char *model = NULL, *loras[SDC__MAX_FILES];
  int n_loras = 0, runs = 2;
  int64_t sizes[SDC__N_SIZES] = {32, 64};
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"lora", required_argument, 0, 'l'},
                                       {"runs", required_argument, 0, 'r'},  {"latents", required_argument, 0, 's'},
                                       {0, 0, 0, 0}};
  sdc_runtime_init(argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ch;
  while ((ch = getopt_long(argc, argv, "m:l:r:s:", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'l':
        if (n_loras < SDC__MAX_FILES) loras[n_loras++] = optarg;
        break;
      case 'r': runs = atoi(optarg); break;
      case 's':
        if (sscanf(optarg, "%ld,%ld", &sizes[0], &sizes[1]) != 2) sizes[0] = sizes[1] = 0;
        break;
      default: model = NULL, optind = argc + 1;
    }
  }
  if (!model || n_loras < 1 || runs < 1 || sizes[0] < 1 || sizes[1] < 1 || optind != argc) {
    fprintf(stderr, "usage: bench_lora --model DIR --lora FILE [--lora FILE ...] [--runs 2] [--latents 32,64]\n");
    return 2;
  }
  const sdc_peak pk = sdc_peak_measure(0);
  char pk_line[256];
  sdc_peak_describe(&pk, pk_line, sizeof pk_line);
  printf("%s\n", pk_line);
  sdc_model m;
  int err = sdc_model_open(&m, model, NULL);
  if (err) {
    fprintf(stderr, "bench_lora: %s\n", sdc_errmsg(err));
    return 2;
  }
  const int64_t B = 2, C = m.unet.in_channels, D = m.unet.cross_attention_dim, L = 77;
  /* the base model: load time, and the UNet step at each size */
  sdc__loaded base;
  double rss0 = sdc__rss_now_mib();
  if ((err = sdc__load(&m, NULL, &base))) {
    fprintf(stderr, "bench_lora: %s\n", sdc_errmsg(err));
    return 1;
  }
  const double rss1 = sdc__rss_now_mib();
  double step_s[SDC__N_SIZES], step_gf[SDC__N_SIZES];
  sdc_arena a;
  sdc_arena_init(&a, 0);
  for (int si = 0; si < SDC__N_SIZES && !err; si++) {
    const int64_t hw = sizes[si];
    float *x = calloc((size_t)(B * C * hw * hw), 4), *ctx = calloc((size_t)(B * L * D), 4),
          *out = calloc((size_t)(B * C * hw * hw), 4), t[2] = {500.0f, 500.0f};
    for (int64_t i = 0; i < B * C * hw * hw; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    step_s[si] = 1e30;
    for (int r = 0; r <= runs && !err; r++) { /* run 0 warms the arena */
      sdc_ops_flops_reset();
      double t0 = sdc_clock_mono_s();
      err = sdc_unet_forward(base.u, &a, x, t, ctx, NULL, B, hw, hw, L, out);
      double dt = sdc_clock_mono_s() - t0;
      step_gf[si] = (double)sdc_ops_flops() / 1e9;
      if (r > 0 && dt < step_s[si]) step_s[si] = dt;
    }
    free(x), free(ctx), free(out);
  }
  sdc_arena_free(&a);
  for (int si = 0; si < SDC__N_SIZES; si++)
    printf("model %s; UNet fp32, batch %lld (CFG), %lldx%lld: step %.3f s, %.1f GFLOP (%.1f GFLOP/s)\n", model,
           (long long)B, (long long)sizes[si] * 8, (long long)sizes[si] * 8, step_s[si], step_gf[si],
           step_gf[si] / step_s[si]);
  printf("\n%-28s %8s %8s %9s %9s %12s\n", "UNet load", "load s", "merge s", "tensors", "merge GF", "weights MiB");
  printf("%-28s %8.2f %8s %9s %9s %12.0f\n", "no LoRA", base.load_s, "-", "-", "-", base.w.n_bytes_owned / 1048576.0);
  /* each adapter: merged load (the base model stays loaded: the second model's memory is what a cache entry costs) */
  double side_gf[SDC__MAX_FILES][SDC__N_SIZES], side_s[SDC__MAX_FILES][SDC__N_SIZES], extra_mib[SDC__MAX_FILES];
  for (int li = 0; li < n_loras && !err; li++) {
    sdc__loaded l;
    const double before = sdc__rss_now_mib();
    if ((err = sdc__load(&m, loras[li], &l))) break;
    extra_mib[li] = sdc__rss_now_mib() - before;
    const char *bn = strrchr(loras[li], '/');
    printf("%-28s %8.2f %8.2f %9lld %9.1f %12.0f\n", bn ? bn + 1 : loras[li], l.load_s, l.w.merge_s,
           (long long)l.w.n_merged, l.merge_gflop, l.w.n_bytes_owned / 1048576.0);
    for (int si = 0; si < SDC__N_SIZES && !err; si++)
      err = sdc__side_paths(&l.w, &m.unet, B, sizes[si], runs, &side_gf[li][si], &side_s[li][si]);
    sdc__unload(&l);
  }
  if (err) {
    fprintf(stderr, "bench_lora: %s\n", sdc_errmsg(err));
    return 1;
  }
  printf("\nresident: %.0f MiB for the base UNet; one more merged UNet beside it adds", rss1 - rss0);
  for (int li = 0; li < n_loras; li++) printf(" %.0f", extra_mib[li]);
  printf(" MiB\n");
  printf("\nside paths per UNet call (every adapted module, batch %lld), against the step itself:\n", (long long)B);
  printf("%-28s", "adapter");
  for (int si = 0; si < SDC__N_SIZES; si++)
    printf(" | %4lldpx: %7s %7s %8s %7s", (long long)sizes[si] * 8, "GFLOP", "of step", "s", "of step");
  printf("\n");
  for (int li = 0; li < n_loras; li++) {
    const char *bn = strrchr(loras[li], '/');
    printf("%-28s", bn ? bn + 1 : loras[li]);
    for (int si = 0; si < SDC__N_SIZES; si++)
      printf(" | %6s  %7.2f %6.1f%% %8.3f %6.1f%%", "", side_gf[li][si], 100.0 * side_gf[li][si] / step_gf[si],
             side_s[li][si], 100.0 * side_s[li][si] / step_s[si]);
    printf("\n");
  }
  sdc__unload(&base);
  sdc_model_close(&m);
  return 0;
}
