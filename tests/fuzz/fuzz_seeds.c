/* fuzz_seeds.c - writes the seed corpora of fuzz_envelope and fuzz_safetensors with the code's own writers
 * (sdc_wire_pack, sdc_st_write), so the seeds have real shapes. Usage: fuzz_seeds <tests/fuzz dir>.
 * The files it wrote are committed; run it again when sdc.proto or the safetensors writer changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "safetensors.h"
#include "wire.h"

static const char *dir;

static void put(const char *target, const char *name, const uint8_t *buf, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(buf, 1, n, fp) != n || fclose(fp) != 0) {
    fprintf(stderr, "fuzz_seeds: cannot write %s\n", path);
    exit(1);
  }
}

static void put_env(const char *name, Sdcpb__Envelope *env) {
  uint8_t *buf;
  size_t n;
  if (sdc_wire_pack(env, &buf, &n)) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", name, sdc_errmsg(SDC_EINVAL));
    exit(1);
  }
  put("fuzz_envelope", name, buf, n);
  free(buf);
}

static void envelopes(void) {
  Sdcpb__Envelope env = SDCPB__ENVELOPE__INIT;
  Sdcpb__Register reg = SDCPB__REGISTER__INIT;
  Sdcpb__Stage stages[] = {SDCPB__STAGE__UNET_DOWN, SDCPB__STAGE__UNET_MID};
  reg.worker_id = "w-unet-1", reg.n_stages = 2, reg.stages = stages, reg.model_fingerprint = "3f2a9c0d11e4b7a8";
  reg.data_endpoint = "tcp://127.0.0.1:5601", reg.threads = 4;
  env.body_case = SDCPB__ENVELOPE__BODY_REGISTER, env.register_ = &reg;
  put_env("register", &env);

  Sdcpb__Welcome wel = SDCPB__WELCOME__INIT;
  wel.coordinator_id = "coord-1", wel.heartbeat_ms = 1000, wel.accepted = 0, wel.reason = "fingerprint differs";
  env.body_case = SDCPB__ENVELOPE__BODY_WELCOME, env.welcome = &wel;
  put_env("welcome", &env);

  Sdcpb__Heartbeat hb = SDCPB__HEARTBEAT__INIT;
  hb.worker_id = "w-unet-1", hb.in_flight = 2, hb.served = 812, hb.draining = 1;
  env.body_case = SDCPB__ENVELOPE__BODY_HEARTBEAT, env.heartbeat = &hb;
  put_env("heartbeat", &env);

  Sdcpb__Cancel cancel = SDCPB__CANCEL__INIT;
  cancel.job_id = "order-8812";
  env.body_case = SDCPB__ENVELOPE__BODY_CANCEL, env.cancel = &cancel;
  put_env("cancel", &env);

  /* a text request: two prompts (cond, uncond), one hop */
  Sdcpb__Hop h_text = SDCPB__HOP__INIT, h_down = SDCPB__HOP__INIT, h_mid = SDCPB__HOP__INIT, h_up = SDCPB__HOP__INIT,
             h_vae = SDCPB__HOP__INIT;
  h_text.stage = SDCPB__STAGE__TEXT, h_text.worker_id = "w-text", h_text.endpoint = "tcp://127.0.0.1:5600";
  h_down.stage = SDCPB__STAGE__UNET_DOWN, h_down.worker_id = "w-unet-1", h_down.endpoint = "tcp://127.0.0.1:5601";
  h_mid.stage = SDCPB__STAGE__UNET_MID, h_mid.worker_id = "w-unet-1", h_mid.endpoint = "tcp://127.0.0.1:5601";
  h_up.stage = SDCPB__STAGE__UNET_UP, h_up.worker_id = "w-unet-2", h_up.endpoint = "tcp://127.0.0.1:5602";
  h_vae.stage = SDCPB__STAGE__VAE, h_vae.worker_id = "w-vae", h_vae.endpoint = "tcp://127.0.0.1:5603";
  Sdcpb__StageRequest req = SDCPB__STAGE_REQUEST__INIT;
  Sdcpb__Hop *route_text[] = {&h_text};
  char *prompts[] = {"a watercolor fox", ""};
  req.job_id = "order-8812", req.request_id = 1, req.deadline_unix_ms = 1764600000000ull;
  req.n_route = 1, req.route = route_text, req.n_prompts = 2, req.prompts = prompts;
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST, env.request = &req;
  put_env("request_text", &env);

  /* a UNet step: sample [2,4,8,8] F32, context [2,77,32] F16, timestep, three hops */
  static float sample[2 * 4 * 8 * 8], context[2 * 77 * 32], latent[1 * 4 * 8 * 8];
  for (size_t i = 0; i < sizeof sample / sizeof *sample; i++) sample[i] = (float)i / 100.0f - 2.0f;
  for (size_t i = 0; i < sizeof context / sizeof *context; i++) context[i] = (float)(i % 17) / 8.0f;
  for (size_t i = 0; i < sizeof latent / sizeof *latent; i++) latent[i] = (float)(i % 5) - 2.0f;
  Sdcpb__Tensor t_sample = SDCPB__TENSOR__INIT, t_context = SDCPB__TENSOR__INIT, t_latent = SDCPB__TENSOR__INIT;
  void *o1, *o2, *o3;
  if (sdc_wire_tensor_set(&t_sample, sample, 4, (int64_t[]){2, 4, 8, 8}, SDCPB__DTYPE__F32, &o1) ||
      sdc_wire_tensor_set(&t_context, context, 3, (int64_t[]){2, 77, 32}, SDCPB__DTYPE__F16, &o2) ||
      sdc_wire_tensor_set(&t_latent, latent, 4, (int64_t[]){1, 4, 8, 8}, SDCPB__DTYPE__BF16, &o3))
    exit(1);
  Sdcpb__Hop *route_unet[] = {&h_down, &h_mid, &h_up};
  float timestep[] = {981.0f, 981.0f};
  Sdcpb__StageRequest step = SDCPB__STAGE_REQUEST__INIT;
  step.job_id = "order-8812", step.step = 3, step.request_id = 7, step.deadline_unix_ms = 1764600000000ull;
  step.n_route = 3, step.route = route_unet, step.wire_dtype = SDCPB__DTYPE__F32;
  step.sample = &t_sample, step.context = &t_context, step.n_timestep = 2, step.timestep = timestep;
  env.request = &step;
  put_env("request_unet_down", &env);
  /* the same step at its last hop (mid already done: hidden and one skip) */
  step.hop = 2, step.sample = NULL, step.hidden = &t_sample;
  Sdcpb__Tensor *skips[] = {&t_sample};
  step.n_skips = 1, step.skips = skips;
  uint32_t hop_us[] = {1200, 800};
  step.n_hop_us = 2, step.hop_us = hop_us;
  put_env("request_unet_up", &env);

  Sdcpb__Hop *route_vae[] = {&h_vae};
  char *png_text[] = {"a watercolor fox\nSteps: 25, Seed: 42"};
  Sdcpb__StageRequest vae = SDCPB__STAGE_REQUEST__INIT;
  vae.job_id = "order-8812", vae.request_id = 30, vae.n_route = 1, vae.route = route_vae, vae.latent = &t_latent;
  vae.n_png_text = 1, vae.png_text = png_text, vae.wire_dtype = SDCPB__DTYPE__BF16;
  env.request = &vae;
  put_env("request_vae", &env);

  /* issue 12: a step with two LoRAs, an encode request and its reply */
  Sdcpb__LoraRef l1 = SDCPB__LORA_REF__INIT, l2 = SDCPB__LORA_REF__INIT, *loras[] = {&l1, &l2};
  l1.name = "style", l1.multiplier = 0.8, l2.name = "detail_v1.2", l2.multiplier = -0.5;
  step.hop = 0, step.hidden = NULL, step.n_skips = 0, step.skips = NULL, step.n_hop_us = 0, step.hop_us = NULL;
  step.sample = &t_sample, step.n_loras = 2, step.loras = loras;
  env.request = &step;
  put_env("request_unet_lora", &env);
  Sdcpb__StageRequest enc = SDCPB__STAGE_REQUEST__INIT;
  static const uint8_t init_png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  enc.job_id = "order-8812", enc.request_id = 2, enc.n_route = 1, enc.route = route_vae, enc.encode = 1;
  enc.deadline_unix_ms = 1764600000000ull;
  enc.init_image = (ProtobufCBinaryData){sizeof init_png, (uint8_t *)init_png};
  enc.mask_image = (ProtobufCBinaryData){sizeof init_png, (uint8_t *)init_png};
  enc.width = 128, enc.height = 128, enc.need_init = 1;
  env.request = &enc;
  put_env("request_encode", &env);
  Sdcpb__StageReply encr = SDCPB__STAGE_REPLY__INIT;
  encr.job_id = "order-8812", encr.request_id = 2, encr.stage = SDCPB__STAGE__VAE;
  encr.init_moments = &t_sample, encr.masked_moments = &t_sample, encr.mask = &t_latent;
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &encr;
  put_env("reply_encode", &env);
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;

  /* SDXL: a text request with the second encoder's texts and its reply with pooled rows; a unet-down step with
   * text_embeds and time_ids */
  static float pooled[2 * 48], time_ids[2 * 6] = {512, 384, 16, 32, 1024, 1024, 512, 384, 16, 32, 1024, 1024};
  for (size_t i = 0; i < sizeof pooled / sizeof *pooled; i++) pooled[i] = (float)(i % 7) / 3.0f - 1.0f;
  Sdcpb__Tensor t_pooled = SDCPB__TENSOR__INIT, t_ids = SDCPB__TENSOR__INIT;
  void *o4, *o5;
  if (sdc_wire_tensor_set(&t_pooled, pooled, 2, (int64_t[]){2, 48}, SDCPB__DTYPE__F32, &o4) ||
      sdc_wire_tensor_set(&t_ids, time_ids, 2, (int64_t[]){2, 6}, SDCPB__DTYPE__F32, &o5))
    exit(1);
  char *prompts_2[] = {"an oil painting", "blurry"};
  req.n_prompts_2 = 2, req.prompts_2 = prompts_2;
  env.request = &req;
  put_env("request_text_sdxl", &env);
  step.n_loras = 0, step.loras = NULL, step.text_embeds = &t_pooled, step.time_ids = &t_ids;
  env.request = &step;
  put_env("request_unet_down_sdxl", &env);
  step.text_embeds = NULL, step.time_ids = NULL;
  Sdcpb__StageReply textr = SDCPB__STAGE_REPLY__INIT;
  textr.job_id = "order-8812", textr.request_id = 1, textr.stage = SDCPB__STAGE__TEXT;
  textr.output = &t_context, textr.pooled = &t_pooled;
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &textr;
  put_env("reply_text_sdxl", &env);
  env.body_case = SDCPB__ENVELOPE__BODY_REQUEST;

  Sdcpb__StageReply rep = SDCPB__STAGE_REPLY__INIT;
  char *taken[] = {"w-unet-1", "w-unet-1", "w-unet-2"};
  rep.job_id = "order-8812", rep.step = 3, rep.request_id = 7, rep.stage = SDCPB__STAGE__UNET_UP;
  rep.output = &t_sample, rep.n_route_taken = 3, rep.route_taken = taken, rep.n_hop_us = 2, rep.hop_us = hop_us;
  env.body_case = SDCPB__ENVELOPE__BODY_REPLY, env.reply = &rep;
  put_env("reply_prediction", &env);

  Sdcpb__StageReply img = SDCPB__STAGE_REPLY__INIT;
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  ProtobufCBinaryData images[] = {{sizeof png, (uint8_t *)png}};
  img.job_id = "order-8812", img.request_id = 30, img.stage = SDCPB__STAGE__VAE, img.n_images = 1, img.images = images;
  env.reply = &img;
  put_env("reply_images", &env);

  Sdcpb__StageReply fail = SDCPB__STAGE_REPLY__INIT;
  fail.job_id = "order-8812", fail.request_id = 8, fail.stage = SDCPB__STAGE__UNET_DOWN;
  fail.error = "unet_down: sample: shape [2, 4, 8, 9], expected [2, 4, 8, 8]";
  env.reply = &fail;
  put_env("reply_error", &env);
  free(o1), free(o2), free(o3), free(o4), free(o5);
}

static void safetensors(void) {
  char path[4096];
  static float a[6] = {1, 2, 3, 4, 5, 6};
  static uint16_t h[4] = {0x3c00, 0x4000, 0xbc00, 0};
  static int64_t ids[3] = {0, 1, 2};
  sdc_tensor t[3] = {{.dtype = SDC_F32, .ndim = 2, .shape = {2, 3}, .data = a},
                     {.dtype = SDC_F16, .ndim = 1, .shape = {4}, .data = h},
                     {.dtype = SDC_I64, .ndim = 2, .shape = {1, 3}, .data = ids}};
  const char *names[] = {"text_model.final_layer_norm.weight", "conv_in.bias", "text_model.embeddings.position_ids"};
  snprintf(path, sizeof path, "%s/fuzz_safetensors/three_tensors", dir);
  if (sdc_st_write(path, 3, names, t)) exit(1);
  sdc_tensor bf = {.dtype = SDC_BF16, .ndim = 4, .shape = {1, 1, 2, 2}, .data = h};
  const char *bf_name[] = {"up_blocks.0.upsamplers.0.conv.weight"};
  snprintf(path, sizeof path, "%s/fuzz_safetensors/bf16_conv", dir);
  if (sdc_st_write(path, 1, bf_name, &bf)) exit(1);
  sdc_tensor empty = {.dtype = SDC_F32, .ndim = 2, .shape = {0, 3}, .data = a};
  const char *e_name[] = {"empty"};
  snprintf(path, sizeof path, "%s/fuzz_safetensors/empty_tensor", dir);
  if (sdc_st_write(path, 1, e_name, &empty)) exit(1);
  snprintf(path, sizeof path, "%s/fuzz_safetensors/no_tensors", dir);
  if (sdc_st_write(path, 0, NULL, NULL)) exit(1);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_seeds <tests/fuzz dir>\n");
    return 2;
  }
  dir = argv[1];
  envelopes();
  safetensors();
  return 0;
}
