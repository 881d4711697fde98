/* test_wire.c - crc32c vectors, tensor round trips and every validation failure, envelope round trips,
 * truncated and mutated frames, and real ZeroMQ sockets (identity, dropped frames, size limit). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "error.h"
#include "test_util.h"
#include "wire.h"

static uint32_t rng_next(uint32_t *s) {
  *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
  return *s;
}

static void test_crc32c_vectors(void) {
  CHECK(sdc_crc32c("123456789", 9) == 0xE3069283u, "crc32c(123456789) = 0x%08x", sdc_crc32c("123456789", 9));
  CHECK(sdc_crc32c_portable("123456789", 9) == 0xE3069283u, "portable crc32c(123456789) = 0x%08x",
        sdc_crc32c_portable("123456789", 9));
  CHECK(sdc_crc32c("", 0) == 0 && sdc_crc32c(NULL, 0) == 0 && sdc_crc32c_portable(NULL, 0) == 0, "crc32c of nothing");
  /* 32 zero bytes: RFC 3720 (iSCSI) B.4 */
  static const uint8_t zeros[32];
  CHECK(sdc_crc32c(zeros, 32) == 0x8A9136AAu, "crc32c(32 zeros) = 0x%08x", sdc_crc32c(zeros, 32));
  /* The fast path against the table at every length and alignment the loops distinguish. */
  uint8_t buf[4096 + 8];
  uint32_t s = 7;
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng_next(&s);
  for (size_t off = 0; off < 8; off++)
    for (size_t n = 0; n <= 300; n++)
      CHECK(sdc_crc32c(buf + off, n) == sdc_crc32c_portable(buf + off, n), "crc32c paths differ at off %zu n %zu", off, n);
  CHECK(sdc_crc32c(buf + 3, 4096) == sdc_crc32c_portable(buf + 3, 4096), "crc32c paths differ on 4 KiB");
  /* a stream in pieces (the model fingerprint reads files in chunks): the whole's CRC at every cut */
  CHECK(sdc_crc32c_update(sdc_crc32c("1234", 4), "56789", 5) == 0xE3069283u, "crc32c of 1234 then 56789");
  for (size_t cut = 0; cut <= 4096; cut += 37)
    CHECK(sdc_crc32c_update(sdc_crc32c(buf + 1, cut), buf + 1 + cut, 4096 - cut) == sdc_crc32c(buf + 1, 4096),
          "crc32c continued at %zu differs from the whole", cut);
}

static void test_tensor_round_trips(void) {
  const int64_t shape[4] = {2, 3, 5, 7}, n = 2 * 3 * 5 * 7;
  float x[210], got[210];
  sdc_test_fill(x, n, 42);
  x[0] = INFINITY, x[1] = -0.0f, x[2] = 1e-6f, x[3] = 70000.0f, x[4] = 1.0f + 1.0f / 4096; /* edges of half */
  static const Sdcpb__DType dts[] = {SDCPB__DTYPE__F32, SDCPB__DTYPE__F16, SDCPB__DTYPE__BF16};
  for (size_t d = 0; d < 3; d++) {
    Sdcpb__Tensor t;
    sdcpb__tensor__init(&t);
    void *owned = NULL;
    CHECK(sdc_wire_tensor_set(&t, x, 4, shape, dts[d], &owned) == SDC_OK, "tensor_set dtype %d", (int)dts[d]);
    CHECK(t.data.len == (size_t)n * (d ? 2 : 4), "dtype %d: %zu bytes", (int)dts[d], t.data.len);
    int64_t numel = 0;
    memset(got, 0, sizeof got);
    int rc = sdc_wire_tensor_get(&t, "x", 4, shape, got, &numel);
    CHECK(rc == SDC_OK, "tensor_get dtype %d: %s", (int)dts[d], sdc_errmsg(rc));
    CHECK(numel == n, "numel %lld", (long long)numel);
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) {
      float want = d == 0 ? x[i] : d == 1 ? sdc_f16_to_f32(sdc_f32_to_f16(x[i])) : sdc_bf16_to_f32(sdc_f32_to_bf16(x[i]));
      mismatches += memcmp(&want, &got[i], 4) != 0;
    }
    CHECK(mismatches == 0, "dtype %d: %d values differ from the rounded input", (int)dts[d], mismatches);
    /* wildcards and the copy-free check */
    const int64_t wild[4] = {-1, 3, -1, 7};
    CHECK(sdc_wire_tensor_get(&t, "x", 4, wild, got, NULL) == SDC_OK, "wildcard shape refused");
    int nd = 0;
    int64_t sh[SDC_MAX_DIMS] = {0};
    CHECK(sdc_wire_tensor_check(&t, "x", &nd, sh) == SDC_OK && nd == 4 && sh[0] == 2 && sh[3] == 7, "tensor_check");
    free(owned);
  }
  /* An empty tensor is legal: [0, 4] carries no bytes. */
  Sdcpb__Tensor t;
  sdcpb__tensor__init(&t);
  void *owned = NULL;
  const int64_t empty[2] = {0, 4};
  CHECK(sdc_wire_tensor_set(&t, NULL, 2, empty, SDCPB__DTYPE__F16, &owned) == SDC_OK, "empty tensor_set");
  int64_t numel = -1;
  CHECK(sdc_wire_tensor_get(&t, "e", 2, empty, got, &numel) == SDC_OK && numel == 0, "empty tensor_get");
  free(owned);
  CHECK(sdc_wire_tensor_set(&t, x, 2, shape, (Sdcpb__DType)7, &owned) == SDC_EINVAL && !owned, "bad wire dtype set");
}

/* Expects rc == SDC_EPROTOCOL with a message naming the tensor, and one more bad tensor counted. */
static void expect_bad(const Sdcpb__Tensor *t, int ndim, const int64_t *shape, const char *case_name,
                       const char *must_contain) {
  sdc_wire_stats before, after;
  sdc_wire_stats_get(&before);
  float out[64];
  sdc_clearerr();
  int rc = sdc_wire_tensor_get(t, "skips[3]", ndim, shape, out, NULL);
  const char *msg = sdc_errmsg(rc);
  sdc_wire_stats_get(&after);
  CHECK(rc == SDC_EPROTOCOL, "%s: rc %s", case_name, sdc_err_name(rc));
  CHECK(strstr(msg, "skips[3]") != NULL, "%s: message does not name the tensor: %s", case_name, msg);
  CHECK(!must_contain || strstr(msg, must_contain), "%s: message lacks '%s': %s", case_name, must_contain, msg);
  CHECK(after.bad_tensors == before.bad_tensors + 1, "%s: bad tensor not counted", case_name);
  int nd;
  int64_t sh[SDC_MAX_DIMS];
  if (!shape) CHECK(sdc_wire_tensor_check(t, "skips[3]", &nd, sh) == SDC_EPROTOCOL, "%s: tensor_check passed", case_name);
}

static void test_tensor_validation(void) {
  const int64_t shape[3] = {2, 3, 4};
  float x[24];
  sdc_test_fill(x, 24, 3);
  Sdcpb__Tensor good, t;
  sdcpb__tensor__init(&good);
  void *owned;
  if (sdc_wire_tensor_set(&good, x, 3, shape, SDCPB__DTYPE__F32, &owned) != SDC_OK) {
    CHECK(0, "tensor_set failed");
    return;
  }
  uint8_t data[96];
  memcpy(data, good.data.data, 96);

  t = good, t.data.data = data;
  data[37] ^= 0x10;
  expect_bad(&t, 3, shape, "flipped data byte", "crc32c");
  expect_bad(&t, 0, NULL, "flipped data byte (check)", "crc32c");
  data[37] ^= 0x10;

  const int64_t other[3] = {2, 4, 3};
  expect_bad(&good, 3, other, "wrong shape", "[2, 3, 4]");
  expect_bad(&good, 3, other, "wrong shape", "[2, 4, 3]");
  const int64_t four[4] = {2, 3, 4, 1};
  expect_bad(&good, 4, four, "wrong rank", "[2, 3, 4, 1]");

  t = good, t.data.len = 92, t.crc32c = sdc_crc32c(good.data.data, 92);
  expect_bad(&t, 3, shape, "byte count", "92 bytes");
  expect_bad(&t, 0, NULL, "byte count (check)", "92 bytes");
  t = good, t.dtype = SDCPB__DTYPE__F16; /* 96 bytes would be 48 halves */
  expect_bad(&t, 3, shape, "dtype vs bytes", "expected 48");

  t = good, t.dtype = (Sdcpb__DType)99;
  expect_bad(&t, 3, shape, "unknown dtype", "99");
  t = good, t.dtype = SDCPB__DTYPE__DTYPE_INVALID;
  expect_bad(&t, 0, NULL, "dtype 0", "dtype 0");

  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 24};
  t = good, t.n_shape = 0;
  expect_bad(&t, 3, shape, "ndim 0", "0 dimensions");
  t = good, t.n_shape = 9, t.shape = nine;
  expect_bad(&t, 0, NULL, "ndim 9", "9 dimensions");

  int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 1};
  t = good, t.shape = huge;
  expect_bad(&t, 0, NULL, "overflowing dims", "overflows");
  int64_t big[3] = {(int64_t)1 << 31, (int64_t)1 << 31, 1}; /* numel fits, numel * 4 bytes does not */
  t = good, t.shape = big;
  expect_bad(&t, 0, NULL, "overflowing bytes", "overflows");
  int64_t neg[3] = {-2, -3, 4};
  t = good, t.shape = neg;
  expect_bad(&t, 0, NULL, "negative dims", "negative");

  expect_bad(NULL, 3, shape, "missing tensor", "missing");
  free(owned);
}

/* ---- envelopes ---- */

enum { N_SKIPS = 3, N_HOPS = 3 };

typedef struct {
  Sdcpb__Envelope env;
  Sdcpb__StageRequest req;
  Sdcpb__Hop hops[N_HOPS], *route[N_HOPS];
  Sdcpb__Tensor sample, context, temb, latent, skip[N_SKIPS], *skips[N_SKIPS];
  char *prompts[2], *png_text[2];
  float timestep[2];
  void *owned[4 + N_SKIPS];
} request_fixture;

static const int64_t k_sample_shape[4] = {2, 4, 4, 4}, k_context_shape[3] = {2, 7, 8}, k_temb_shape[2] = {2, 16},
                     k_latent_shape[4] = {1, 4, 4, 4}, k_skip_shapes[N_SKIPS][4] = {{2, 8, 4, 4}, {2, 8, 2, 2}, {2, 16, 2, 2}};

static void request_init(request_fixture *f, Sdcpb__DType dt) {
  memset(f, 0, sizeof *f);
  sdcpb__envelope__init(&f->env);
  sdcpb__stage_request__init(&f->req);
  f->env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;
  f->env.request = &f->req;
  f->req.job_id = "job-7f3a";
  f->req.step = 12;
  f->req.request_id = 0x123456789abcdefull;
  f->req.deadline_unix_ms = 1700000000123ull;
  f->req.hop = 1;
  f->req.wire_dtype = dt;
  static const Sdcpb__Stage stages[N_HOPS] = {SDCPB__STAGE__UNET_DOWN, SDCPB__STAGE__UNET_MID, SDCPB__STAGE__UNET_UP};
  static char *const workers[N_HOPS] = {"w-a", "w-b", "w-c"};
  static char *const endpoints[N_HOPS] = {"tcp://10.0.0.1:7001", "tcp://10.0.0.2:7001", "tcp://10.0.0.3:7001"};
  for (int i = 0; i < N_HOPS; i++) {
    sdcpb__hop__init(&f->hops[i]);
    f->hops[i].stage = stages[i], f->hops[i].worker_id = workers[i], f->hops[i].endpoint = endpoints[i];
    f->route[i] = &f->hops[i];
  }
  f->req.n_route = N_HOPS, f->req.route = f->route;
  f->prompts[0] = "a photo of an astronaut riding a horse", f->prompts[1] = "caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x90\xb4";
  f->req.n_prompts = 2, f->req.prompts = f->prompts;
  f->png_text[0] = "Steps: 20, Sampler: Euler", f->png_text[1] = "";
  f->req.n_png_text = 2, f->req.png_text = f->png_text;
  f->timestep[0] = f->timestep[1] = 981.0f;
  f->req.n_timestep = 2, f->req.timestep = f->timestep;
  float x[256];
  int k = 0;
  struct { Sdcpb__Tensor *t; int ndim; const int64_t *shape; } ts[] = {
      {&f->sample, 4, k_sample_shape}, {&f->context, 3, k_context_shape}, {&f->temb, 2, k_temb_shape},
      {&f->latent, 4, k_latent_shape}, {&f->skip[0], 4, k_skip_shapes[0]}, {&f->skip[1], 4, k_skip_shapes[1]},
      {&f->skip[2], 4, k_skip_shapes[2]}};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
    sdcpb__tensor__init(ts[i].t);
    sdc_test_fill(x, sdc_shape_numel(ts[i].ndim, ts[i].shape), 100 + (uint32_t)i);
    int rc = sdc_wire_tensor_set(ts[i].t, x, ts[i].ndim, ts[i].shape, dt, &f->owned[k++]);
    CHECK(rc == SDC_OK, "tensor_set %zu: %s", i, sdc_errmsg(rc));
  }
  f->req.sample = &f->sample, f->req.context = &f->context, f->req.temb = &f->temb, f->req.latent = &f->latent;
  for (int i = 0; i < N_SKIPS; i++) f->skips[i] = &f->skip[i];
  f->req.n_skips = N_SKIPS, f->req.skips = f->skips;
}

static void request_free(request_fixture *f) {
  for (size_t i = 0; i < sizeof f->owned / sizeof *f->owned; i++) free(f->owned[i]);
}

static void tensors_equal(const Sdcpb__Tensor *a, const Sdcpb__Tensor *b, const char *what) {
  CHECK(a && b, "%s: missing after round trip", what);
  if (!a || !b) return;
  CHECK(a->dtype == b->dtype && a->n_shape == b->n_shape && a->crc32c == b->crc32c && a->data.len == b->data.len,
        "%s: header differs", what);
  CHECK(a->n_shape == b->n_shape && !memcmp(a->shape, b->shape, a->n_shape * sizeof *a->shape), "%s: shape differs", what);
  CHECK(a->data.len == b->data.len && (!a->data.len || !memcmp(a->data.data, b->data.data, a->data.len)),
        "%s: bytes differ", what);
}

/* Packs env, unpacks it again; NULL (and a failed CHECK) when either fails. */
static Sdcpb__Envelope *round_trip(Sdcpb__Envelope *env, const char *what) {
  uint8_t *buf;
  size_t n;
  int rc = sdc_wire_pack(env, &buf, &n);
  CHECK(rc == SDC_OK, "%s: pack: %s", what, sdc_errmsg(rc));
  if (rc) return NULL;
  Sdcpb__Envelope *out = NULL;
  rc = sdc_wire_unpack(buf, n, &out);
  CHECK(rc == SDC_OK && out, "%s: unpack: %s", what, sdc_errmsg(rc));
  CHECK(!out || (out->version == SDC_PROTOCOL_VERSION && out->body_case == env->body_case), "%s: version/body", what);
  free(buf);
  return out;
}

static void test_envelope_round_trips(void) {
  Sdcpb__Envelope env;
  Sdcpb__Envelope *out;

  Sdcpb__Register reg;
  sdcpb__register__init(&reg);
  Sdcpb__Stage stages[2] = {SDCPB__STAGE__UNET_MID, SDCPB__STAGE__UNET_UP};
  reg.worker_id = "worker-\xc3\xa9", reg.n_stages = 2, reg.stages = stages, reg.model_fingerprint = "sha256:abcd";
  reg.data_endpoint = "tcp://127.0.0.1:7001", reg.threads = 16;
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER, env.register_ = &reg;
  if ((out = round_trip(&env, "register"))) {
    const Sdcpb__Register *r = out->register_;
    CHECK(!strcmp(r->worker_id, reg.worker_id) && r->n_stages == 2 && r->stages[1] == SDCPB__STAGE__UNET_UP &&
              !strcmp(r->model_fingerprint, "sha256:abcd") && !strcmp(r->data_endpoint, reg.data_endpoint) &&
              r->threads == 16,
          "register fields differ");
    sdc_wire_free(out);
  }

  Sdcpb__Welcome wel;
  sdcpb__welcome__init(&wel);
  wel.coordinator_id = "coord-1", wel.heartbeat_ms = 500, wel.accepted = 0, wel.reason = "model fingerprint differs";
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_WELCOME, env.welcome = &wel;
  if ((out = round_trip(&env, "welcome"))) {
    CHECK(!strcmp(out->welcome->coordinator_id, "coord-1") && out->welcome->heartbeat_ms == 500 &&
              !out->welcome->accepted && !strcmp(out->welcome->reason, wel.reason),
          "welcome fields differ");
    sdc_wire_free(out);
  }

  Sdcpb__Heartbeat hb;
  sdcpb__heartbeat__init(&hb);
  hb.worker_id = "w-b", hb.in_flight = 3, hb.served = 1ull << 40, hb.draining = 1;
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT, env.heartbeat = &hb;
  if ((out = round_trip(&env, "heartbeat"))) {
    CHECK(!strcmp(out->heartbeat->worker_id, "w-b") && out->heartbeat->in_flight == 3 &&
              out->heartbeat->served == 1ull << 40 && out->heartbeat->draining,
          "heartbeat fields differ");
    sdc_wire_free(out);
  }

  request_fixture f;
  request_init(&f, SDCPB__DTYPE__F16);
  if ((out = round_trip(&f.env, "request"))) {
    const Sdcpb__StageRequest *r = out->request;
    CHECK(!strcmp(r->job_id, "job-7f3a") && r->step == 12 && r->request_id == f.req.request_id &&
              r->deadline_unix_ms == f.req.deadline_unix_ms && r->hop == 1 && r->wire_dtype == SDCPB__DTYPE__F16,
          "request scalars differ");
    CHECK(r->n_route == N_HOPS, "route has %zu hops", r->n_route);
    for (size_t i = 0; i < r->n_route && i < N_HOPS; i++)
      CHECK(r->route[i]->stage == f.hops[i].stage && !strcmp(r->route[i]->worker_id, f.hops[i].worker_id) &&
                !strcmp(r->route[i]->endpoint, f.hops[i].endpoint),
            "hop %zu differs", i);
    CHECK(r->n_prompts == 2 && !strcmp(r->prompts[1], f.prompts[1]), "prompts differ");
    CHECK(r->n_png_text == 2 && !strcmp(r->png_text[0], f.png_text[0]) && !strcmp(r->png_text[1], ""), "png_text");
    CHECK(r->n_timestep == 2 && r->timestep[1] == 981.0f, "timestep differs");
    tensors_equal(r->sample, &f.sample, "sample");
    tensors_equal(r->context, &f.context, "context");
    tensors_equal(r->temb, &f.temb, "temb");
    tensors_equal(r->latent, &f.latent, "latent");
    CHECK(r->hidden == NULL, "hidden appeared from nowhere");
    CHECK(r->n_skips == N_SKIPS, "%zu skips", r->n_skips);
    for (size_t i = 0; i < r->n_skips && i < N_SKIPS; i++) {
      char what[32];
      snprintf(what, sizeof what, "skips[%zu]", i);
      tensors_equal(r->skips[i], &f.skip[i], what);
      float y[256];
      int rc = sdc_wire_tensor_get(r->skips[i], what, 4, k_skip_shapes[i], y, NULL);
      CHECK(rc == SDC_OK, "%s", sdc_errmsg(rc));
    }
    sdc_wire_free(out);
  }
  request_free(&f);

  Sdcpb__StageReply rep;
  sdcpb__stage_reply__init(&rep);
  ProtobufCBinaryData images[2] = {{8, (uint8_t *)"\x89PNG\r\n\x1a\n"}, {0, NULL}};
  char *taken[3] = {"w-a", "w-b", "w-c"};
  uint32_t hop_us[3] = {1500, 1700, 1900};
  rep.job_id = "job-7f3a", rep.step = 0, rep.request_id = 99, rep.stage = SDCPB__STAGE__VAE, rep.error = "";
  rep.n_images = 2, rep.images = images, rep.n_route_taken = 3, rep.route_taken = taken, rep.n_hop_us = 3;
  rep.hop_us = hop_us;
  Sdcpb__Tensor output;
  sdcpb__tensor__init(&output);
  void *owned = NULL;
  const int64_t oshape[2] = {3, 5};
  float ox[15];
  sdc_test_fill(ox, 15, 9);
  CHECK(sdc_wire_tensor_set(&output, ox, 2, oshape, SDCPB__DTYPE__BF16, &owned) == SDC_OK, "output tensor_set");
  rep.output = &output;
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &rep;
  if ((out = round_trip(&env, "reply"))) {
    const Sdcpb__StageReply *r = out->reply;
    CHECK(!strcmp(r->job_id, "job-7f3a") && r->request_id == 99 && r->stage == SDCPB__STAGE__VAE && !strcmp(r->error, ""),
          "reply scalars differ");
    CHECK(r->n_images == 2 && r->images[0].len == 8 && !memcmp(r->images[0].data, images[0].data, 8) &&
              r->images[1].len == 0,
          "images differ");
    CHECK(r->n_route_taken == 3 && !strcmp(r->route_taken[2], "w-c") && r->n_hop_us == 3 && r->hop_us[2] == 1900,
          "route_taken/hop_us differ");
    tensors_equal(r->output, &output, "output");
    sdc_wire_free(out);
  }
  free(owned);

  Sdcpb__Cancel can;
  sdcpb__cancel__init(&can);
  can.job_id = "job-7f3a";
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL, env.cancel = &can;
  if ((out = round_trip(&env, "cancel"))) {
    CHECK(!strcmp(out->cancel->job_id, "job-7f3a"), "cancel job id differs");
    sdc_wire_free(out);
  }
}

/* Packs with protobuf-c directly (bypassing sdc_wire_pack's checks) and expects unpack to drop it. */
static void expect_dropped(Sdcpb__Envelope *env, const char *case_name, const char *must_contain, int version_drop) {
  size_t n = sdcpb__envelope__get_packed_size(env);
  uint8_t *buf = malloc(n ? n : 1);
  sdcpb__envelope__pack(env, buf);
  sdc_wire_stats before, after;
  sdc_wire_stats_get(&before);
  Sdcpb__Envelope *out = (Sdcpb__Envelope *)1;
  int rc = sdc_wire_unpack(buf, n, &out);
  sdc_wire_stats_get(&after);
  CHECK(rc == SDC_EPROTOCOL && out == NULL, "%s: rc %s", case_name, sdc_err_name(rc));
  CHECK(strstr(sdc_errmsg(rc), must_contain), "%s: message lacks '%s': %s", case_name, must_contain, sdc_errmsg(rc));
  CHECK(after.dropped_version == before.dropped_version + (version_drop ? 1 : 0) &&
            after.dropped_malformed == before.dropped_malformed + (version_drop ? 0 : 1),
        "%s: counted wrong", case_name);
  free(buf);
}

static void test_envelope_rejections(void) {
  Sdcpb__Cancel can;
  sdcpb__cancel__init(&can);
  can.job_id = "j";
  Sdcpb__Envelope env;
  sdcpb__envelope__init(&env);
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL, env.cancel = &can;
  env.version = 2;
  expect_dropped(&env, "version 2", "version 2", 1);
  env.version = 0;
  expect_dropped(&env, "no version", "version", 0);
  env.version = SDC_PROTOCOL_VERSION, env.body_case = SDCPB__ENVELOPE__BODY__NOT_SET;
  expect_dropped(&env, "no body", "no body", 0);
  uint8_t *buf;
  size_t n;
  CHECK(sdc_wire_pack(&env, &buf, &n) == SDC_EINVAL, "packing a body-less envelope");

  request_fixture f;
  request_init(&f, SDCPB__DTYPE__F32);
  f.env.version = SDC_PROTOCOL_VERSION;
  f.prompts[1] = "bad \xc3\x28 utf-8";
  expect_dropped(&f.env, "invalid UTF-8 prompt", "request.prompts[1]", 0);
  CHECK(sdc_wire_pack(&f.env, &buf, &n) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "prompts[1]"),
        "pack accepted a non-UTF-8 prompt");
  static const char *const bad_utf8[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xff", "\x80"};
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
    f.prompts[1] = (char *)bad_utf8[i];
    expect_dropped(&f.env, "overlong/surrogate/truncated UTF-8", "not valid UTF-8", 0);
  }
  f.prompts[1] = "ok";
  f.hops[2].endpoint = "tcp://\xfe";
  expect_dropped(&f.env, "invalid UTF-8 in a hop", "request.route[2].endpoint", 0);
  f.hops[2].endpoint = "tcp://x";

  Sdcpb__Hop *many_hops[SDC_WIRE_MAX_ROUTE + 1];
  for (int i = 0; i <= SDC_WIRE_MAX_ROUTE; i++) many_hops[i] = &f.hops[0];
  f.req.n_route = SDC_WIRE_MAX_ROUTE + 1, f.req.route = many_hops;
  expect_dropped(&f.env, "route too long", "request.route", 0);
  f.req.n_route = N_HOPS, f.req.route = f.route;
  char *many_prompts[SDC_WIRE_MAX_PROMPTS + 1];
  for (int i = 0; i <= SDC_WIRE_MAX_PROMPTS; i++) many_prompts[i] = "p";
  f.req.n_prompts = SDC_WIRE_MAX_PROMPTS + 1, f.req.prompts = many_prompts;
  expect_dropped(&f.env, "too many prompts", "request.prompts", 0);
  f.req.n_prompts = 2, f.req.prompts = f.prompts;
  f.req.n_prompts_2 = SDC_WIRE_MAX_PROMPTS + 1, f.req.prompts_2 = many_prompts;
  expect_dropped(&f.env, "too many prompts_2", "request.prompts_2", 0);
  char *bad_2[2] = {"ok", "bad \xc3\x28"};
  f.req.n_prompts_2 = 2, f.req.prompts_2 = bad_2;
  expect_dropped(&f.env, "invalid UTF-8 prompts_2", "request.prompts_2[1]", 0);
  f.req.n_prompts_2 = 0, f.req.prompts_2 = NULL;
  Sdcpb__Tensor *many_skips[SDC_WIRE_MAX_REPEATED + 1];
  for (int i = 0; i <= SDC_WIRE_MAX_REPEATED; i++) many_skips[i] = &f.skip[0];
  f.req.n_skips = SDC_WIRE_MAX_REPEATED + 1, f.req.skips = many_skips;
  expect_dropped(&f.env, "too many skips", "request.skips", 0);
  f.req.n_skips = N_SKIPS, f.req.skips = f.skips;
  request_free(&f);

  /* Not protobuf at all. */
  sdc_wire_stats before, after;
  sdc_wire_stats_get(&before);
  Sdcpb__Envelope *out = NULL;
  CHECK(sdc_wire_unpack((const uint8_t *)"\xff\xff\xff\xff\xff", 5, &out) == SDC_EPROTOCOL && !out, "junk accepted");
  CHECK(sdc_wire_unpack(NULL, 0, &out) == SDC_EPROTOCOL && !out, "empty frame accepted");
  sdc_wire_stats_get(&after);
  CHECK(after.dropped_malformed == before.dropped_malformed + 2, "junk not counted");
}

/* Decodes a hostile frame: must be OK or EPROTOCOL, and any tensors in it must validate or be refused. */
static int decode_hostile(const uint8_t *buf, size_t n) {
  Sdcpb__Envelope *env = NULL;
  int rc = sdc_wire_unpack(buf, n, &env);
  if (rc != SDC_OK) return rc;
  if (env->body_case == SDCPB__ENVELOPE__BODY_REQUEST) {
    const Sdcpb__StageRequest *r = env->request;
    const Sdcpb__Tensor *ts[] = {r->sample, r->context, r->hidden, r->temb, r->latent};
    float out[256];
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
      if (!ts[i]) continue;
      int nd;
      int64_t sh[SDC_MAX_DIMS];
      int trc = sdc_wire_tensor_check(ts[i], "t", &nd, sh);
      if (trc != SDC_OK && trc != SDC_EPROTOCOL) rc = trc;
      if (trc == SDC_OK && sdc_shape_numel(nd, sh) <= 256) {
        trc = sdc_wire_tensor_get(ts[i], "t", nd, sh, out, NULL);
        if (trc != SDC_OK) rc = trc;
      }
    }
    for (size_t i = 0; i < r->n_skips; i++) {
      int nd;
      int64_t sh[SDC_MAX_DIMS];
      int trc = sdc_wire_tensor_check(r->skips[i], "skip", &nd, sh);
      if (trc != SDC_OK && trc != SDC_EPROTOCOL) rc = trc;
    }
  }
  sdc_wire_free(env);
  return rc;
}

static void test_hostile_frames(void) {
  request_fixture f;
  request_init(&f, SDCPB__DTYPE__BF16);
  uint8_t *packed;
  size_t n;
  int rc = sdc_wire_pack(&f.env, &packed, &n);
  request_free(&f);
  CHECK(rc == SDC_OK, "pack: %s", sdc_errmsg(rc));
  if (rc) return;
  /* Every strict prefix: the copy makes ASan catch any read past the end. */
  int ok = 0;
  for (size_t len = 0; len < n; len++) {
    uint8_t *p = malloc(len ? len : 1);
    memcpy(p, packed, len);
    rc = decode_hostile(p, len);
    CHECK(rc == SDC_OK || rc == SDC_EPROTOCOL, "prefix %zu: rc %s", len, sdc_err_name(rc));
    ok += rc == SDC_OK;
    free(p);
  }
  CHECK(decode_hostile(packed, n) == SDC_OK, "the whole frame failed");
  printf("test_wire: %zu prefixes of a %zu-byte request, %d decoded\n", n, n, ok);

  uint32_t s = 12345;
  int outcomes[2] = {0, 0};
  uint8_t *m = malloc(n + 64);
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = n;
    memcpy(m, packed, n);
    int edits = 1 + (int)(rng_next(&s) % 4);
    for (int e = 0; e < edits; e++) {
      uint32_t r = rng_next(&s);
      size_t at = len ? r % len : 0;
      switch ((r >> 24) % 4) {
        case 0:
        case 1: /* bit flip */
          if (len) m[at] ^= (uint8_t)(1u << ((r >> 16) % 8));
          break;
        case 2: /* insert a byte */
          if (len < n + 64) {
            memmove(m + at + 1, m + at, len - at);
            m[at] = (uint8_t)(rng_next(&s));
            len++;
          }
          break;
        default: /* delete a byte */
          if (len) {
            memmove(m + at, m + at + 1, len - at - 1);
            len--;
          }
      }
    }
    uint8_t *p = malloc(len ? len : 1);
    memcpy(p, m, len);
    rc = decode_hostile(p, len);
    free(p);
    CHECK(rc == SDC_OK || rc == SDC_EPROTOCOL, "mutation %d: rc %s", iter, sdc_err_name(rc));
    outcomes[rc == SDC_OK]++;
  }
  printf("test_wire: 20000 mutated frames: %d decoded, %d dropped\n", outcomes[1], outcomes[0]);
  free(m);
  free(packed);
}

/* ---- ZeroMQ ---- */

/* Waits up to timeout_ms for sock to be readable, then receives once. */
static int recv_wait(void *sock, Sdcpb__Envelope **env, uint8_t *id, size_t id_cap, size_t *id_n, long timeout_ms) {
  zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&item, 1, timeout_ms) <= 0) return SDC_EAGAIN;
  return sdc_zmq_recv(sock, env, id, id_cap, id_n);
}

static void test_zmq_router_dealer(void *ctx) {
  void *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
  CHECK(sdc_zmq_configure(router) == SDC_OK && sdc_zmq_configure(dealer) == SDC_OK, "configure");
  CHECK(zmq_setsockopt(dealer, ZMQ_ROUTING_ID, "worker-1", 8) == 0, "routing id");
  CHECK(zmq_bind(router, "inproc://test-wire-router") == 0, "bind: %s", zmq_strerror(zmq_errno()));
  CHECK(zmq_connect(dealer, "inproc://test-wire-router") == 0, "connect");
  Sdcpb__Envelope *env = NULL;
  uint8_t id[256];
  size_t id_n = 0;
  CHECK(sdc_zmq_recv(router, &env, id, sizeof id, &id_n) == SDC_EAGAIN && !env, "empty socket did not say EAGAIN");

  sdc_wire_stats s0, s1;
  sdc_wire_stats_get(&s0);
  Sdcpb__Register reg;
  sdcpb__register__init(&reg);
  reg.worker_id = "worker-1", reg.data_endpoint = "tcp://127.0.0.1:7001";
  Sdcpb__Envelope out;
  sdcpb__envelope__init(&out);
  out.body_case = SDCPB__ENVELOPE__BODY_REGISTER, out.register_ = &reg;
  CHECK(sdc_zmq_send(dealer, NULL, 0, &out, 0) == SDC_OK, "dealer send");
  int rc = recv_wait(router, &env, id, sizeof id, &id_n, 2000);
  CHECK(rc == SDC_OK && env && env->body_case == SDCPB__ENVELOPE__BODY_REGISTER && !strcmp(env->register_->worker_id, "worker-1"),
        "router recv: %s", sdc_errmsg(rc));
  CHECK(id_n == 8 && !memcmp(id, "worker-1", 8), "routing id %zu bytes", id_n);
  sdc_wire_free(env);

  /* Reply through the routing id. */
  Sdcpb__Welcome wel;
  sdcpb__welcome__init(&wel);
  wel.coordinator_id = "coord", wel.heartbeat_ms = 250, wel.accepted = 1;
  sdcpb__envelope__init(&out);
  out.body_case = SDCPB__ENVELOPE__BODY_WELCOME, out.welcome = &wel;
  CHECK(sdc_zmq_send(router, id, id_n, &out, ZMQ_DONTWAIT) == SDC_OK, "router send");
  rc = recv_wait(dealer, &env, NULL, 0, NULL, 2000);
  CHECK(rc == SDC_OK && env && env->body_case == SDCPB__ENVELOPE__BODY_WELCOME && env->welcome->heartbeat_ms == 250,
        "dealer recv: %s", sdc_errmsg(rc));
  sdc_wire_free(env);

  /* A raw malformed frame is dropped, then a good one gets through. */
  CHECK(zmq_send(dealer, "\x0a\xff\xff\xff\xff\xff junk", 11, 0) == 11, "raw send");
  Sdcpb__Heartbeat hb;
  sdcpb__heartbeat__init(&hb);
  hb.worker_id = "worker-1", hb.served = 5;
  sdcpb__envelope__init(&out);
  out.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT, out.heartbeat = &hb;
  CHECK(sdc_zmq_send(dealer, NULL, 0, &out, 0) == SDC_OK, "dealer send heartbeat");
  rc = recv_wait(router, &env, id, sizeof id, &id_n, 2000);
  CHECK(rc == SDC_EPROTOCOL && !env && id_n == 8, "malformed frame: %s", sdc_err_name(rc));
  rc = recv_wait(router, &env, id, sizeof id, &id_n, 2000);
  CHECK(rc == SDC_OK && env && env->body_case == SDCPB__ENVELOPE__BODY_HEARTBEAT && env->heartbeat->served == 5,
        "heartbeat after the junk: %s", sdc_errmsg(rc));
  sdc_wire_free(env);

  /* A multipart message is dropped whole, even when its first frame is a good envelope. */
  uint8_t *buf;
  size_t n;
  CHECK(sdc_wire_pack(&out, &buf, &n) == SDC_OK, "pack");
  CHECK(zmq_send(dealer, buf, n, ZMQ_SNDMORE) >= 0 && zmq_send(dealer, "x", 1, ZMQ_SNDMORE) >= 0 &&
            zmq_send(dealer, "y", 1, 0) >= 0,
        "multipart send");
  free(buf);
  CHECK(sdc_zmq_send(dealer, NULL, 0, &out, 0) == SDC_OK, "dealer send after multipart");
  rc = recv_wait(router, &env, id, sizeof id, &id_n, 2000);
  CHECK(rc == SDC_EPROTOCOL && !env, "multipart: %s", sdc_err_name(rc));
  CHECK(strstr(sdc_errmsg(rc), "multipart"), "multipart message: %s", sdc_errmsg(rc));
  rc = recv_wait(router, &env, id, sizeof id, &id_n, 2000);
  CHECK(rc == SDC_OK && env, "good frame after multipart: %s", sdc_errmsg(rc));
  sdc_wire_free(env);
  /* A routing id that does not fit the caller's buffer. */
  CHECK(sdc_zmq_send(dealer, NULL, 0, &out, 0) == SDC_OK, "dealer send");
  rc = recv_wait(router, &env, id, 4, &id_n, 2000);
  CHECK(rc == SDC_EPROTOCOL && !env && id_n == 0, "short id buffer: %s", sdc_err_name(rc));

  sdc_wire_stats_get(&s1);
  CHECK(s1.dropped_malformed >= s0.dropped_malformed + 3, "zmq drops not counted");
  CHECK(s1.rx_msgs >= s0.rx_msgs + 7 && s1.tx_msgs >= s0.tx_msgs + 5, "rx/tx not counted");
  zmq_close(dealer);
  zmq_close(router);
}

static void tcp_endpoint(void *sock, char *ep, size_t n) {
  if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &n) != 0) ep[0] = 0;
}

static void test_zmq_push_pull_tcp(void *ctx) {
  void *pull = zmq_socket(ctx, ZMQ_PULL), *push = zmq_socket(ctx, ZMQ_PUSH);
  char ep[256];
  CHECK(sdc_zmq_configure(pull) == SDC_OK && sdc_zmq_configure(push) == SDC_OK, "configure");
  CHECK(zmq_bind(pull, "tcp://127.0.0.1:*") == 0, "bind: %s", zmq_strerror(zmq_errno()));
  tcp_endpoint(pull, ep, sizeof ep);
  CHECK(zmq_connect(push, ep) == 0, "connect %s", ep);
  request_fixture f;
  request_init(&f, SDCPB__DTYPE__F32);
  CHECK(sdc_zmq_send(push, NULL, 0, &f.env, 0) == SDC_OK, "push send");
  Sdcpb__Envelope *env = NULL;
  int rc = recv_wait(pull, &env, NULL, 0, NULL, 5000);
  CHECK(rc == SDC_OK && env && env->body_case == SDCPB__ENVELOPE__BODY_REQUEST, "pull recv: %s", sdc_errmsg(rc));
  if (env && env->body_case == SDCPB__ENVELOPE__BODY_REQUEST) {
    float x[128];
    rc = sdc_wire_tensor_get(env->request->skips[2], "skips[2]", 4, k_skip_shapes[2], x, NULL);
    CHECK(rc == SDC_OK, "skips over tcp: %s", sdc_errmsg(rc));
    tensors_equal(env->request->sample, &f.sample, "sample over tcp");
  }
  sdc_wire_free(env);
  /* a dropped frame's message names its sender's address */
  CHECK(zmq_send(push, "\x0a\xff\xff junk", 8, 0) == 8, "raw send");
  rc = recv_wait(pull, &env, NULL, 0, NULL, 5000);
  CHECK(rc == SDC_EPROTOCOL && strstr(sdc_errmsg(rc), "frame from 127.0.0.1"), "junk over tcp: %s", sdc_errmsg(rc));
  request_free(&f);
  zmq_close(push);
  zmq_close(pull);
}

/* Found by fuzz_envelope: a non-minimally encoded field number 0 (80 00) inside Welcome was kept as an
 * unknown field, and protobuf-c packed it back in a form its own decoder refuses. */
/* SDXL's fields travel: prompts_2, text_embeds and time_ids on a request, pooled on a text reply. */
static void test_sdxl_fields_round_trip(void) {
  request_fixture f;
  request_init(&f, SDCPB__DTYPE__F32);
  char *texts_2[2] = {"blurry", "an oil painting"};
  f.req.n_prompts_2 = 2, f.req.prompts_2 = texts_2;
  float x[2 * 48];
  void *bufs[3] = {0};
  Sdcpb__Tensor te = SDCPB__TENSOR__INIT, ids = SDCPB__TENSOR__INIT, pooled = SDCPB__TENSOR__INIT;
  sdc_test_fill(x, 2 * 48, 7);
  CHECK(sdc_wire_tensor_set(&te, x, 2, (int64_t[]){2, 48}, SDCPB__DTYPE__F32, &bufs[0]) == SDC_OK &&
            sdc_wire_tensor_set(&ids, x, 2, (int64_t[]){2, 6}, SDCPB__DTYPE__F32, &bufs[1]) == SDC_OK &&
            sdc_wire_tensor_set(&pooled, x, 2, (int64_t[]){2, 48}, SDCPB__DTYPE__F32, &bufs[2]) == SDC_OK,
        "sdxl tensors");
  f.req.text_embeds = &te, f.req.time_ids = &ids;
  Sdcpb__Envelope *out = round_trip(&f.env, "sdxl request");
  if (out) {
    const Sdcpb__StageRequest *r = out->request;
    CHECK(r->n_prompts_2 == 2 && !strcmp(r->prompts_2[1], "an oil painting"), "prompts_2 differ");
    tensors_equal(r->text_embeds, &te, "text_embeds");
    tensors_equal(r->time_ids, &ids, "time_ids");
    sdc_wire_free(out);
  }
  Sdcpb__StageReply rep = SDCPB__STAGE_REPLY__INIT;
  rep.job_id = "xl", rep.stage = SDCPB__STAGE__TEXT, rep.output = &f.context, rep.pooled = &pooled;
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &rep;
  if ((out = round_trip(&env, "sdxl text reply"))) {
    tensors_equal(out->reply->pooled, &pooled, "pooled");
    sdc_wire_free(out);
  }
  for (int i = 0; i < 3; i++) free(bufs[i]);
  f.req.text_embeds = NULL, f.req.time_ids = NULL;
  request_free(&f);
}

static void test_field_number_zero_refused(void) {
  static const uint8_t frame[] = {0x08, 0x01, 0x5a, 0x07, 0x0a, 0x02, 'c', 'o', 0x80, 0x00, 0x25};
  Sdcpb__Envelope *env = NULL;
  int rc = sdc_wire_unpack(frame, sizeof frame, &env);
  CHECK(rc == SDC_EPROTOCOL && !env && strstr(sdc_errmsg(rc), "field numbered 0"), "field number 0: %s",
        sdc_errmsg(rc));
  sdc_wire_free(env);
}

/* ZeroMQ itself refuses a message over ZMQ_MAXMSGSIZE (the receiver never sees it) and drops the peer,
 * which reconnects; later small messages get through. */
static void test_zmq_max_msg_size(void *ctx) {
  void *pull = zmq_socket(ctx, ZMQ_PULL), *push = zmq_socket(ctx, ZMQ_PUSH);
  char ep[256];
  int64_t small_limit = 1000;
  int ivl = 20;
  CHECK(sdc_zmq_configure(pull) == SDC_OK && sdc_zmq_configure(push) == SDC_OK, "configure");
  CHECK(zmq_setsockopt(pull, ZMQ_MAXMSGSIZE, &small_limit, sizeof small_limit) == 0, "maxmsgsize");
  zmq_setsockopt(push, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
  CHECK(zmq_bind(pull, "tcp://127.0.0.1:*") == 0, "bind");
  tcp_endpoint(pull, ep, sizeof ep);
  CHECK(zmq_connect(push, ep) == 0, "connect");

  char *big = malloc(5001);
  memset(big, 'x', 5000);
  big[5000] = 0;
  Sdcpb__Cancel can;
  sdcpb__cancel__init(&can);
  can.job_id = big;
  Sdcpb__Envelope out;
  sdcpb__envelope__init(&out);
  out.body_case = SDCPB__ENVELOPE__BODY_CANCEL, out.cancel = &can;
  CHECK(sdc_zmq_send(push, NULL, 0, &out, 0) == SDC_OK, "big send");
  Sdcpb__Envelope *env = NULL;
  int rc = recv_wait(pull, &env, NULL, 0, NULL, 300);
  CHECK(rc == SDC_EAGAIN && !env, "a message over ZMQ_MAXMSGSIZE arrived: %s", sdc_err_name(rc));
  sdc_wire_free(env);
  env = NULL;

  can.job_id = "small";
  int got = 0;
  for (int i = 0; i < 100 && !got; i++) { /* the pusher reconnects after the drop; keep offering */
    sdc_zmq_send(push, NULL, 0, &out, ZMQ_DONTWAIT);
    rc = recv_wait(pull, &env, NULL, 0, NULL, 50);
    if (rc == SDC_OK) got = env && env->body_case == SDCPB__ENVELOPE__BODY_CANCEL && !strcmp(env->cancel->job_id, "small");
    CHECK(rc == SDC_OK || rc == SDC_EAGAIN, "after the big message: %s", sdc_err_name(rc));
    sdc_wire_free(env);
    env = NULL;
  }
  CHECK(got, "no small message got through after the oversized one");
  free(big);
  zmq_close(push);
  zmq_close(pull);
}

int main(void) {
  test_crc32c_vectors();
  test_tensor_round_trips();
  test_tensor_validation();
  test_envelope_round_trips();
  test_sdxl_fields_round_trip();
  test_envelope_rejections();
  test_hostile_frames();
  void *ctx = zmq_ctx_new();
  test_zmq_router_dealer(ctx);
  test_zmq_push_pull_tcp(ctx);
  test_field_number_zero_refused();
  test_zmq_max_msg_size(ctx);
  zmq_ctx_term(ctx);
  return sdc_test_finish("test_wire");
}
