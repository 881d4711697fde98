/* fuzz_envelope.c - libFuzzer: one received frame through sdc_wire_unpack and every check a receiver runs on it
 * (version, field walk, route bounds, each tensor's dtype/shape/bytes/crc32c and its widening), then a
 * re-pack of what was accepted, which must succeed and decode again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "wire.h"

/* Larger tensors are valid but widening them only costs the fuzzer time: checked, not converted. */
#define FUZZ_MAX_WIDEN_FLOATS ((int64_t)1 << 20)

static void fuzz_tensor(const Sdcpb__Tensor *t, const char *what) {
  if (!t) return;
  int nd = 0;
  int64_t shape[SDC_MAX_DIMS];
  if (sdc_wire_tensor_check(t, what, &nd, shape)) return;
  int64_t numel = sdc_shape_numel(nd, shape);
  if (numel > FUZZ_MAX_WIDEN_FLOATS) return;
  float *out = malloc((size_t)(numel ? numel : 1) * sizeof *out);
  if (!out) return;
  int64_t got = -1;
  if (sdc_wire_tensor_get(t, what, nd, shape, out, &got) == SDC_OK && got != numel) abort();
  /* a shape the receiver expects differently must be refused */
  int64_t other[SDC_MAX_DIMS];
  memcpy(other, shape, sizeof other);
  other[0] = shape[0] + 1;
  if (sdc_wire_tensor_get(t, what, nd, other, out, NULL) == SDC_OK) abort();
  free(out);
}

/* What worker.c and stage_exec.c read before any stage runs: the hop's stage, the next hop, the tensors. */
static void fuzz_request(const Sdcpb__StageRequest *r) {
  Sdcpb__Stage stage = r->hop < r->n_route && r->route[r->hop] ? r->route[r->hop]->stage : SDCPB__STAGE__STAGE_INVALID;
  (void)stage;
  if (r->hop + 1 < r->n_route && r->route[r->hop + 1] && !r->route[r->hop + 1]->endpoint) abort();
  if (r->hop > 0 && r->hop <= r->n_route && r->route[r->hop - 1]) (void)r->route[r->hop - 1]->stage;
  for (size_t i = 0; i < r->n_prompts; i++)
    if (!r->prompts[i]) abort();
  fuzz_tensor(r->sample, "sample");
  fuzz_tensor(r->context, "context");
  fuzz_tensor(r->hidden, "hidden");
  fuzz_tensor(r->temb, "temb");
  for (size_t i = 0; i < r->n_skips; i++) fuzz_tensor(r->skips[i], "skip");
  fuzz_tensor(r->latent, "latent");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Sdcpb__Envelope *env = NULL;
  if (sdc_wire_unpack(data, size, &env) != SDC_OK) {
    if (env) abort(); /* a refused frame leaves nothing behind */
    return 0;
  }
  if (env->version != SDC_PROTOCOL_VERSION || env->body_case == SDCPB__ENVELOPE__BODY__NOT_SET) abort();
  switch (env->body_case) {
    case SDCPB__ENVELOPE__BODY_REQUEST: fuzz_request(env->request); break;
    case SDCPB__ENVELOPE__BODY_REPLY: fuzz_tensor(env->reply->output, "output"); break;
    default: break;
  }
  /* Anything accepted packs again (the sender-side checks are the receiver's) and reads back. */
  uint8_t *buf = NULL;
  size_t n = 0;
  if (sdc_wire_pack(env, &buf, &n) != SDC_OK) abort();
  Sdcpb__Envelope *again = NULL;
  if (sdc_wire_unpack(buf, n, &again) != SDC_OK || again->body_case != env->body_case) abort();
  sdc_wire_free(again);
  free(buf);
  sdc_wire_free(env);
  return 0;
}
