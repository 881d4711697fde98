/* bench_unet.c - UNet step time and peak memory for a model and latent size, beside this machine's measured peak. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "arena.h"
#include "clock.h"
#include "error.h"
#include "model.h"
#include "peak.h"
#include "runtime.h"
#include "unet.h"

/* OpenBLAS extensions (not in cblas.h on every version). */
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);

static double sdc__rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
  const char *model = NULL;
  int64_t size = 64, batch = 2, steps = 3;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"latent", required_argument, 0, 'l'},
                                       {"batch", required_argument, 0, 'b'}, {"steps", required_argument, 0, 's'},
                                       {"precision", required_argument, 0, 'p'}, {0, 0, 0, 0}};
  sdc_runtime_init(argv);
  int ch;
  sdc_precision prec = SDC_PREC_FP32;
  while ((ch = getopt_long(argc, argv, "m:l:b:s:p:", opts, NULL)) != -1) {
    switch (ch) {
      case 'm': model = optarg; break;
      case 'l': size = atoll(optarg); break;
      case 'b': batch = atoll(optarg); break;
      case 's': steps = atoll(optarg); break;
      case 'p':
        if (sdc_precision_parse(optarg, &prec) || sdc_precision_check(prec)) {
          fprintf(stderr, "bench_unet: %s\n", sdc_errmsg(SDC_EINVAL));
          return 2;
        }
        break;
      default:
        fprintf(stderr, "usage: bench_unet --model DIR [--latent 64] [--batch 2] [--steps 3] [--precision fp32|bf16]\n");
        return 2;
    }
  }
  if (!model || size < 1 || batch < 1 || steps < 1) {
    fprintf(stderr, "usage: bench_unet --model DIR [--latent 64] [--batch 2] [--steps 3] [--precision fp32|bf16]\n");
    return 2;
  }
  const sdc_peak pk = sdc_peak_measure(0);
  char pk_line[256];
  sdc_peak_describe(&pk, pk_line, sizeof pk_line);
  printf("openblas      core %s, %d threads, OPENBLAS_CORETYPE=%s\n", openblas_get_corename(), openblas_get_num_threads(),
         getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
  printf("%s\n", pk_line);
  double rss0 = sdc__rss_mib();
  sdc_model m;
  sdc_weights w;
  sdc_unet *u = NULL;
  int err = sdc_model_open(&m, model, NULL);
  if (!err) err = sdc_model_weights(&m, SDC_COMP_UNET, &w);
  if (!err) err = sdc_unet_load(&u, &w, &m.unet, SDC_UNET_ALL, &(sdc_load_opts){.precision = prec});
  if (err) {
    fprintf(stderr, "bench_unet: %s\n", sdc_errmsg(err));
    return 2;
  }
  const int64_t C = m.unet.in_channels, D = m.unet.cross_attention_dim, N = 77;
  float *x = calloc((size_t)(batch * C * size * size), 4), *ctx = calloc((size_t)(batch * N * D), 4),
        *t = calloc((size_t)batch, 4), *out = calloc((size_t)(batch * C * size * size), 4);
  for (int64_t i = 0; i < batch * C * size * size; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  for (int64_t i = 0; i < batch * N * D; i++) ctx[i] = (float)((i * 13) % 29) / 14.0f - 1.0f;
  for (int64_t i = 0; i < batch; i++) t[i] = 500.0f;
  sdc_arena a;
  sdc_arena_init(&a, 0);
  double best = 1e30, total = 0.0;
  for (int64_t s = 0; s < steps; s++) {
    double t0 = sdc_clock_mono_s();
    if ((err = sdc_unet_forward(u, &a, x, t, ctx, NULL, batch, size, size, N, out))) {
      fprintf(stderr, "bench_unet: %s\n", sdc_errmsg(err));
      return 1;
    }
    double dt = sdc_clock_mono_s() - t0;
    total += dt;
    if (dt < best) best = dt;
  }
  printf("model         %s\n", model);
  printf("latent        %lldx%lld, batch %lld, %lld steps\n", (long long)size, (long long)size, (long long)batch,
         (long long)steps);
  printf("step time     best %.4f s, mean %.4f s\n", best, total / (double)steps);
  printf("weights       %.1f MiB as f32 (%.1f MiB widened on the heap)\n", w.n_bytes_used / 1048576.0,
         w.n_bytes_owned / 1048576.0);
  printf("activations   peak %.1f MiB in the arena (%.1f MiB reserved)\n", a.peak_bytes / 1048576.0,
         a.reserved_bytes / 1048576.0);
  printf("process RSS   peak %.1f MiB (%.1f MiB before loading)\n", sdc__rss_mib(), rss0);
  sdc_arena_free(&a);
  free(x), free(ctx), free(t), free(out);
  sdc_unet_free(u);
  sdc_weights_free(&w);
  sdc_model_close(&m);
  return 0;
}
