/* model.c - resolve a model path into configs and lazily mapped weight files. */
#include "model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "crc32c.h"

static const char *const sdc__comp_dirs[SDC_COMP_COUNT] = {"unet", "vae", "text_encoder", "text_encoder_2"};

static int sdc__is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int sdc__exists(const char *p) { return access(p, F_OK) == 0; }

static int sdc__load_config(sdc_model *m, sdc_component comp, const char *json, const char *label) {
  switch (comp) {
    case SDC_COMP_UNET: return sdc_unet_config_parse(&m->unet, json, label);
    case SDC_COMP_VAE: return sdc_vae_config_parse(&m->vae, json, label);
    case SDC_COMP_TEXT_ENCODER_2: return sdc_clip_config_parse(&m->clip2, json, label);
    default: return sdc_clip_config_parse(&m->clip, json, label);
  }
}

/* Whether the model has component c (the second text encoder is SDXL's only). */
static int sdc__has_comp(const sdc_model *m, int c) { return c != SDC_COMP_TEXT_ENCODER_2 || m->has_text_encoder_2; }

int64_t sdc_model_context_dim(const sdc_model *m) {
  return m->clip.hidden_size + (m->has_text_encoder_2 ? m->clip2.hidden_size : 0);
}

int64_t sdc_model_pooled_dim(const sdc_model *m) {
  return m->has_text_encoder_2 && m->unet.add_text_time ? m->clip2.projection_dim : 0;
}

/* The parts must fit together: SDXL's UNet takes both encoders' states and the pooled embedding with six
 * time ids (original size, crop top-left, target size). Errors name the field. */
static int sdc__check_parts(const sdc_model *m, const char *where) {
  const sdc_unet_config *u = &m->unet;
  if (u->add_text_time && !m->has_text_encoder_2)
    return sdc_seterr(SDC_ECONFIG, "%s: the unet's addition_embed_type 'text_time' needs a second text encoder "
                      "(text_encoder_2, as SDXL has); the model has one", where);
  if (!m->has_text_encoder_2) return SDC_OK;
  if (!m->clip2.with_projection)
    return sdc_seterr(SDC_ECONFIG, "%s: text_encoder_2 is not a CLIPTextModelWithProjection (architectures)", where);
  if (u->cross_attention_dim != sdc_model_context_dim(m))
    return sdc_seterr(SDC_ECONFIG, "%s: unet cross_attention_dim %lld is not the two text encoders' widths %lld + %lld",
                      where, (long long)u->cross_attention_dim, (long long)m->clip.hidden_size,
                      (long long)m->clip2.hidden_size);
  if (!u->add_text_time)
    return sdc_seterr(SDC_ECONFIG, "%s: two text encoders but the unet's addition_embed_type is not 'text_time'", where);
  const int64_t want = m->clip2.projection_dim + SDC_TIME_IDS * u->addition_time_embed_dim;
  if (u->projection_class_embeddings_input_dim != want)
    return sdc_seterr(SDC_ECONFIG,
                      "%s: unet projection_class_embeddings_input_dim %lld, expected %lld (text_embeds %lld + %d time "
                      "ids x %lld)", where, (long long)u->projection_class_embeddings_input_dim, (long long)want,
                      (long long)m->clip2.projection_dim, SDC_TIME_IDS, (long long)u->addition_time_embed_dim);
  return SDC_OK;
}

/* model_index.json: whether the pipeline has a second text encoder, and force_zeros_for_empty_prompt (the
 * SDXL pipeline's default is true). */
static int sdc__read_model_index(sdc_model *m, const char *path) {
  char *json;
  int err = sdc_read_file(path, &json, NULL);
  if (err) return err;
  cJSON *root = cJSON_Parse(json);
  free(json);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return sdc_seterr(SDC_ECONFIG, "%s: not a JSON object", path);
  }
  const cJSON *te2 = cJSON_GetObjectItemCaseSensitive(root, "text_encoder_2");
  m->has_text_encoder_2 = cJSON_IsArray(te2) && cJSON_IsString(cJSON_GetArrayItem(te2, 0));
  const cJSON *fz = cJSON_GetObjectItemCaseSensitive(root, "force_zeros_for_empty_prompt");
  m->force_zeros_for_empty_prompt = fz ? cJSON_IsTrue(fz) : m->has_text_encoder_2;
  if (fz && !cJSON_IsBool(fz)) err = sdc_seterr(SDC_ECONFIG, "%s: force_zeros_for_empty_prompt: expected true or false", path);
  cJSON_Delete(root);
  return err;
}

/* Reads <dir>/<component>/config.json (and the scheduler's) into m. */
static int sdc__load_folder_configs(sdc_model *m, const char *dir) {
  char p[1200];
  snprintf(p, sizeof p, "%s/model_index.json", dir);
  if (!sdc__exists(p)) return sdc_seterr(SDC_EIO, "%s: not a diffusers model folder (no model_index.json)", dir);
  int err = sdc__read_model_index(m, p);
  if (err) return err;
  for (int c = 0; c < SDC_COMP_COUNT; c++) {
    if (!sdc__has_comp(m, c)) continue;
    char *json;
    snprintf(p, sizeof p, "%s/%s/config.json", dir, sdc__comp_dirs[c]);
    err = sdc_read_file(p, &json, NULL);
    if (err) return err;
    err = sdc__load_config(m, (sdc_component)c, json, p);
    free(json);
    if (err) return err;
  }
  if ((err = sdc__check_parts(m, dir))) return err;
  snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", dir);
  return sdc_read_file(p, &m->scheduler_json, NULL);
}

static int sdc__load_std_configs(sdc_model *m) {
  for (int c = 0; c < SDC_COMP_COUNT; c++) {
    if (!sdc__has_comp(m, c)) continue;
    const char *json = sdc_checkpoint_std_config(m->family, sdc__comp_dirs[c]);
    char label[96];
    snprintf(label, sizeof label, "built-in %s %s config", sdc_family_name(m->family), sdc__comp_dirs[c]);
    int err = json ? sdc__load_config(m, (sdc_component)c, json, label) : sdc_seterr(SDC_ECONFIG, "no %s", label);
    if (err) return err;
  }
  const char *s = sdc_checkpoint_std_config(m->family, "scheduler");
  if (!s || !(m->scheduler_json = strdup(s))) return sdc_seterr(SDC_ENOMEM, "out of memory");
  return SDC_OK;
}

/* A single file with no --config: the built-in configs corrected by what the
 * tensors say, and the scheduler's prediction type set to the file's. */
static int sdc__infer_single(sdc_model *m) {
  const sdc_unet_config std_unet = m->unet;
  const sdc_vae_config std_vae = m->vae;
  const sdc_clip_config std_clip = m->clip, std_clip2 = m->clip2;
  int err = sdc_checkpoint_infer(&m->files[0], m->family, &m->unet, &m->vae, &m->clip,
                                 m->has_text_encoder_2 ? &m->clip2 : NULL, &m->facts);
  /* inferred parts must still fit together (SDXL: context and text_time widths); errors name the file */
  if (!err) err = sdc__check_parts(m, m->path);
  if (err) return err;
  m->configs_inferred = memcmp(&std_unet, &m->unet, sizeof std_unet) || memcmp(&std_vae, &m->vae, sizeof std_vae) ||
                        memcmp(&std_clip, &m->clip, sizeof std_clip) || memcmp(&std_clip2, &m->clip2, sizeof std_clip2);
  cJSON *sched = cJSON_Parse(m->scheduler_json);
  char *text = NULL;
  if (sched) {
    cJSON_DeleteItemFromObjectCaseSensitive(sched, "prediction_type");
    if (cJSON_AddStringToObject(sched, "prediction_type", m->facts.v_pred ? "v_prediction" : "epsilon"))
      text = cJSON_Print(sched);
    cJSON_Delete(sched);
  }
  if (!text) return sdc_seterr(SDC_ENOMEM, "%s: out of memory for the scheduler config", m->path);
  free(m->scheduler_json);
  m->scheduler_json = text;
  return SDC_OK;
}

/* SDXL's first tokenizer is SD 1.x's (pads with <|endoftext|>); its second, padded with "!", is textcond.c's. */
const char *sdc_model_pad_token(const sdc_model *m) { return m->family == SDC_FAMILY_SD2 ? "!" : NULL; }

int sdc_model_open(sdc_model *m, const char *path, const char *config_dir) {
  memset(m, 0, sizeof *m);
  snprintf(m->path, sizeof m->path, "%s", path);
  int err;
  if (sdc__is_dir(path)) {
    if (config_dir && config_dir[0] && strcmp(config_dir, path) != 0)
      return sdc_seterr(SDC_EINVAL, "%s: a diffusers folder brings its own configs; --config applies to single files", path);
    snprintf(m->config_dir, sizeof m->config_dir, "%s", path);
    if ((err = sdc__load_folder_configs(m, path))) goto fail;
    return SDC_OK;
  }
  if (!sdc__exists(path)) return sdc_seterr(SDC_EIO, "%s: no such file or folder", path);
  m->single_file = 1;
  /* The single file is one mapping shared by all components. */
  if ((err = sdc_st_open(&m->files[0], path))) goto fail;
  m->opened[0] = 1;
  if ((err = sdc_checkpoint_detect(&m->files[0], &m->family))) goto fail;
  if (config_dir && config_dir[0]) {
    snprintf(m->config_dir, sizeof m->config_dir, "%s", config_dir);
    /* model_index.json says whether there is a second text encoder (and force_zeros_for_empty_prompt) */
    err = sdc__load_folder_configs(m, config_dir);
    if (!err && m->has_text_encoder_2 != (m->family == SDC_FAMILY_SDXL))
      err = sdc_seterr(SDC_ECONFIG, "%s: an %s checkpoint, but --config %s %s a text_encoder_2 (model_index.json)", path,
                       sdc_family_name(m->family), config_dir, m->has_text_encoder_2 ? "has" : "lacks");
  } else {
    /* the built-ins: SDXL's pipeline has the second encoder and zeroes an absent negative prompt's conditioning */
    m->has_text_encoder_2 = m->force_zeros_for_empty_prompt = m->family == SDC_FAMILY_SDXL;
    err = sdc__load_std_configs(m);
    if (!err) err = sdc__infer_single(m);
    /* an inpainting checkpoint (latents | mask | masked latents) differs from
     * its text-to-image family only in the first convolution's inputs */
    const sdc_st_entry *e = sdc_st_find(&m->files[0], "model.diffusion_model.input_blocks.0.0.weight");
    if (!err && e && e->ndim == 4) m->unet.in_channels = e->shape[1];
  }
  if (err) goto fail;
  return SDC_OK;
fail:
  sdc_model_close(m);
  return err;
}

void sdc_model_close(sdc_model *m) {
  for (int c = 0; c < SDC_COMP_COUNT; c++)
    if (m->opened[c]) sdc_st_close(&m->files[c]);
  free(m->scheduler_json);
  memset(m, 0, sizeof *m);
}

/* Finds the component's weight file in a diffusers folder. */
static int sdc__component_file(const sdc_model *m, sdc_component comp, char *out, size_t n) {
  static const char *const names[SDC_COMP_COUNT][2] = {
      {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"},
      {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"},
      {"model.safetensors", "model.fp16.safetensors"},
      {"model.safetensors", "model.fp16.safetensors"},
  };
  for (int i = 0; i < 2; i++) {
    snprintf(out, n, "%s/%s/%s", m->path, sdc__comp_dirs[comp], names[comp][i]);
    if (sdc__exists(out)) return SDC_OK;
  }
  char idx[1200];
  snprintf(idx, sizeof idx, "%s/%s/%s.index.json", m->path, sdc__comp_dirs[comp], names[comp][0]);
  if (sdc__exists(idx)) return sdc_seterr(SDC_EUNSUPPORTED, "%s: sharded weights are not supported yet", idx);
  snprintf(out, n, "%s/%s/%s", m->path, sdc__comp_dirs[comp], names[comp][0]);
  return sdc_seterr(SDC_EIO, "%s: no such file (only .safetensors weights are read)", out);
}

int sdc_model_weights(sdc_model *m, sdc_component comp, sdc_weights *w) {
  memset(w, 0, sizeof *w);
  if ((unsigned)comp >= SDC_COMP_COUNT || !sdc__has_comp(m, comp))
    return sdc_seterr(SDC_EINVAL, "%s: the model has no %s", m->path,
                      (unsigned)comp < SDC_COMP_COUNT ? sdc__comp_dirs[comp] : "such component");
  if (m->single_file) {
    const void *cfg = comp == SDC_COMP_UNET ? (const void *)&m->unet
                      : comp == SDC_COMP_VAE ? (const void *)&m->vae
                      : comp == SDC_COMP_TEXT_ENCODER_2 ? (const void *)&m->clip2
                                             : (const void *)&m->clip;
    int err = sdc_checkpoint_weights(w, &m->files[0], m->family, sdc__comp_dirs[comp], cfg);
    if (!err && comp == SDC_COMP_UNET) w->unet_cfg = &m->unet;
    return err;
  }
  if (!m->opened[comp]) {
    char p[1200];
    int err = sdc__component_file(m, comp, p, sizeof p);
    if (err) return err;
    if ((err = sdc_st_open(&m->files[comp], p))) return err;
    m->opened[comp] = 1;
  }
  int err = sdc_weights_init(w, &m->files[comp], "", NULL, NULL);
  if (!err && comp == SDC_COMP_UNET) w->unet_cfg = &m->unet;
  return err;
}

const char *sdc_model_tokenizer_dir(const sdc_model *m, char *buf, size_t n) {
  if (m->config_dir[0]) snprintf(buf, n, "%s/tokenizer", m->config_dir);
  else if (n) buf[0] = 0;
  return buf;
}

const char *sdc_model_tokenizer2_dir(const sdc_model *m, char *buf, size_t n) {
  if (m->config_dir[0]) snprintf(buf, n, "%s/tokenizer_2", m->config_dir);
  else if (n) buf[0] = 0;
  return buf;
}

/* crc32c of a whole file's bytes, read in chunks through one buffer: mapping it whole (MAP_POPULATE) put
 * the largest weight file into every process's resident set at start (an SDXL UNet's 4.9 GiB in each
 * worker's VmHWM, whatever its stage), which made the peaks a memory limit is sized from meaningless. */
static int sdc__file_crc(const char *path, uint32_t *crc) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
  enum { CHUNK = 8 << 20 };
  uint8_t *buf = malloc(CHUNK);
  if (!buf) {
    close(fd);
    return sdc_seterr(SDC_ENOMEM, "%s: out of memory", path);
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  *crc = 0;
  int err = SDC_OK;
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = sdc_seterr(SDC_EIO, "%s: %s", path, strerror(errno));
    if (n <= 0) break;
    *crc = sdc_crc32c_update(*crc, buf, (size_t)n);
  }
  free(buf);
  close(fd);
  return err;
}

int sdc_model_fingerprint(const sdc_model *m, const char *precision, char *out, size_t n) {
  /* the config structs are zeroed before parsing, so their bytes are deterministic */
  uint32_t fp = sdc_crc32c(&m->unet, sizeof m->unet);
  fp ^= sdc_crc32c(&m->vae, sizeof m->vae) * 31u;
  fp ^= sdc_crc32c(&m->clip, sizeof m->clip) * 131u;
  if (m->has_text_encoder_2) fp ^= sdc_crc32c(&m->clip2, sizeof m->clip2) * 257u ^ (uint32_t)m->force_zeros_for_empty_prompt;
  if (m->scheduler_json) fp ^= sdc_crc32c(m->scheduler_json, strlen(m->scheduler_json)) * 1031u;
  /* every weight byte: two models with the same configs and other weights make other images */
  uint32_t wfp = 0;
  for (int c = 0; c < (m->single_file ? 1 : SDC_COMP_COUNT); c++) {
    if (!sdc__has_comp(m, c)) continue;
    char p[1200];
    uint32_t crc = 0;
    int err = SDC_OK;
    if (m->single_file) snprintf(p, sizeof p, "%s", m->path);
    else err = sdc__component_file(m, (sdc_component)c, p, sizeof p);
    if (!err) err = sdc__file_crc(p, &crc);
    if (err) return err;
    wfp = wfp * 0x9e3779b1u ^ crc;
  }
  snprintf(out, n, "%08x%08x-%s", fp, wfp, precision && precision[0] ? precision : "fp32");
  return SDC_OK;
}
