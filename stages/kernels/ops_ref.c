/* ops_ref.c - naive reference kernels, loops straight from the definitions, for tests. */
#include <math.h>
#include <stdlib.h>

#include "ops.h"

void sdc_conv2d_ref(float *out, const float *in, const float *w, const float *b, const sdc_conv_shape *s) {
  for (int64_t n = 0; n < s->B; n++)
    for (int64_t o = 0; o < s->Cout; o++)
      for (int64_t oy = 0; oy < s->Ho; oy++)
        for (int64_t ox = 0; ox < s->Wo; ox++) {
          double acc = b ? b[o] : 0.0;
          for (int64_t c = 0; c < s->Cin; c++)
            for (int64_t ky = 0; ky < s->kh; ky++)
              for (int64_t kx = 0; kx < s->kw; kx++) {
                int64_t iy = oy * s->stride - s->pad_t + ky, ix = ox * s->stride - s->pad_l + kx;
                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                acc += (double)in[((n * s->Cin + c) * s->H + iy) * s->W + ix] *
                       w[((o * s->Cin + c) * s->kh + ky) * s->kw + kx];
              }
          out[((n * s->Cout + o) * s->Ho + oy) * s->Wo + ox] = (float)acc;
        }
}

void sdc_linear_ref(float *out, const float *in, const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = b ? b[j] : 0.0;
      for (int64_t k = 0; k < K; k++) acc += (double)in[i * K + k] * w[j * K + k];
      out[i * N + j] = (float)acc;
    }
}

void sdc_attention_ref(float *out, const float *q, const float *k, const float *v, const sdc_attn_shape *s) {
  const int64_t D = s->heads * s->dh;
  double *p = malloc((size_t)s->Nk * sizeof *p);
  if (!p) abort(); /* test-only helper */
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t h = 0; h < s->heads; h++)
      for (int64_t i = 0; i < s->Nq; i++) {
        const float *qi = q + (b * s->Nq + i) * s->ldq + h * s->dh;
        double mx = -INFINITY, sum = 0.0;
        int64_t lim = s->causal ? (i + 1 < s->Nk ? i + 1 : s->Nk) : s->Nk;
        for (int64_t j = 0; j < lim; j++) {
          const float *kj = k + (b * s->Nk + j) * s->ldk + h * s->dh;
          double d = 0.0;
          for (int64_t c = 0; c < s->dh; c++) d += (double)qi[c] * kj[c];
          p[j] = d * s->scale;
          if (p[j] > mx) mx = p[j];
        }
        for (int64_t j = 0; j < lim; j++) sum += (p[j] = exp(p[j] - mx));
        for (int64_t c = 0; c < s->dh; c++) {
          double acc = 0.0;
          for (int64_t j = 0; j < lim; j++) acc += p[j] / sum * v[(b * s->Nk + j) * s->ldv + h * s->dh + c];
          out[(b * s->Nq + i) * D + h * s->dh + c] = (float)acc;
        }
      }
  free(p);
}
