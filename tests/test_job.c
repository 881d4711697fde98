/* test_job.c - every rule of the job JSON: limits, strict types, unknown fields, UTF-8, ids, the scheduler list. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "job.h"
#include "scheduler.h"
#include "test_util.h"

/* json must parse (with fallback id "1700000000000-0") into *job. */
static int parse_ok(const char *what, const char *json, sdc_job *job) {
  int err = sdc_job_parse(job, json, strlen(json), "1700000000000-0");
  CHECK(err == SDC_OK, "%s: %s", what, sdc_errmsg(err));
  return err == SDC_OK;
}

/* json must fail with SDC_EINVAL, a one-line message holding each needle,
 * and leave the job owning nothing. */
static void expect_bad_n(const char *what, const char *json, size_t n, const char *needle1, const char *needle2) {
  sdc_job job;
  sdc_clearerr();
  int err = sdc_job_parse(&job, json, n, "1700000000000-0");
  const char *msg = sdc_errmsg(err);
  CHECK(err == SDC_EINVAL, "%s: got %s (%s)", what, sdc_err_name(err), msg);
  CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", what, msg);
  CHECK(strstr(msg, needle1) != NULL, "%s: message lacks '%s': %s", what, needle1, msg);
  CHECK(!needle2 || strstr(msg, needle2) != NULL, "%s: message lacks '%s': %s", what, needle2, msg);
  CHECK(job.prompt == NULL && job.negative_prompt == NULL && job.prompt_2 == NULL && job.negative_prompt_2 == NULL,
        "%s: failed parse left strings behind", what);
  if (err == SDC_EINVAL && strlen(msg) < 300) printf("%-34s -> %s\n", what, msg);
  sdc_job_free(&job);
}

static void expect_bad(const char *what, const char *json, const char *needle1, const char *needle2) {
  expect_bad_n(what, json, strlen(json), needle1, needle2);
}

static void test_job_defaults_and_full(void) {
  sdc_job j;
  if (parse_ok("minimal", "{\"prompt\":\"a cat\"}", &j)) {
    CHECK(strcmp(j.id, "1700000000000-0") == 0, "id falls back to the entry id, got '%s'", j.id);
    CHECK(strcmp(j.prompt, "a cat") == 0 && !j.negative_prompt, "prompt/negative");
    CHECK(j.width == 0 && j.height == 0 && j.steps == 50 && j.guidance_scale == 7.5 && !j.scheduler[0] && !j.has_seed &&
              j.num_images == 1,
          "defaults: %lldx%lld steps %lld gs %g sched '%s' seed? %d n %lld", (long long)j.width, (long long)j.height,
          (long long)j.steps, j.guidance_scale, j.scheduler, j.has_seed, (long long)j.num_images);
    char *json = NULL;
    CHECK(sdc_job_to_json(&j, &json) == SDC_OK && json, "to_json minimal");
    /* the fallback id is the job's id now, so it is written */
    CHECK(json && strcmp(json, "{\"id\":\"1700000000000-0\",\"prompt\":\"a cat\"}") == 0, "to_json: %s", json);
    free(json);
    sdc_job_free(&j);
  }
  const char *full =
      " {\"id\":\"job.A_1.x-2\",\"prompt\":\"\\u65e5\\u672c "
      "\xf0\x9f\x90\xb1\",\"negative_prompt\":\"blurry\",\"width\":768,"
      "\"height\":64,\"steps\":20.0,\"guidance_scale\":0.1,\"scheduler\":\"dpmpp_2m_karras\",\"seed\":9007199254740991,"
      "\"num_images\":8,\"timeout_ms\":5000}\n";
  if (parse_ok("full", full, &j)) {
    CHECK(strcmp(j.id, "job.A_1.x-2") == 0, "explicit id wins: %s", j.id);
    CHECK(strcmp(j.prompt, "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xb1") == 0, "unicode prompt");
    CHECK(j.width == 768 && j.height == 64 && j.steps == 20 && j.guidance_scale == 0.1 && j.has_seed &&
              j.seed == 9007199254740991ull && j.num_images == 8 && strcmp(j.scheduler, "dpmpp_2m_karras") == 0 &&
              j.timeout_ms == 5000,
          "full fields");
    char *json = NULL;
    CHECK(sdc_job_to_json(&j, &json) == SDC_OK, "to_json full: %s", sdc_errmsg(SDC_EINVAL));
    sdc_job k;
    if (json && parse_ok("round trip", json, &k)) {
      CHECK(strcmp(k.id, j.id) == 0 && strcmp(k.prompt, j.prompt) == 0 &&
                strcmp(k.negative_prompt, j.negative_prompt) == 0 && k.width == j.width && k.height == j.height &&
                k.steps == j.steps && k.guidance_scale == j.guidance_scale && strcmp(k.scheduler, j.scheduler) == 0 &&
                k.has_seed && k.seed == j.seed && k.num_images == j.num_images && k.timeout_ms == j.timeout_ms,
            "round trip differs: %s", json);
      CHECK(strstr(json, "\"seed\":9007199254740991") && strstr(json, "\"guidance_scale\":0.1,"), "numbers: %s", json);
      sdc_job_free(&k);
    }
    free(json);
    sdc_job_free(&j);
  }
  /* null in an optional field is absent; the buffer need not end at n */
  if (parse_ok("nulls", "{\"prompt\":\"x\",\"seed\":null,\"width\":null,\"scheduler\":null,\"id\":null}", &j)) {
    CHECK(!j.has_seed && j.width == 0 && !j.scheduler[0] && strcmp(j.id, "1700000000000-0") == 0, "nulls are absent");
    sdc_job_free(&j);
  }
  const char *tail = "{\"prompt\":\"a\"}GARBAGE";
  CHECK(sdc_job_parse(&j, tail, 14, "1-0") == SDC_OK, "length-delimited input: %s", sdc_errmsg(SDC_EINVAL));
  sdc_job_free(&j);
  CHECK(sdc_job_parse(&j, "{\"prompt\":\"a\"}", 14, NULL) == SDC_EINVAL, "no id and no fallback must fail");
  CHECK(strstr(sdc_errmsg(SDC_EINVAL), "'id'") != NULL, "no id: %s", sdc_errmsg(SDC_EINVAL));
}

static void test_job_limits(void) {
  /* a 10 MB prompt: refused by size, before any parsing */
  size_t big = 10u << 20;
  char *json = malloc(big + 64);
  strcpy(json, "{\"prompt\":\"");
  memset(json + 11, 'a', big);
  strcpy(json + 11 + big, "\"}");
  expect_bad("10 MB prompt", json, "4194304", "bytes");
  /* just over the prompt limit but well inside the JSON limit */
  strcpy(json + 11 + 4097, "\"}");
  expect_bad("prompt of 4097 bytes", json, "'prompt'", "4096");
  sdc_job j;
  strcpy(json + 11 + 4096, "\"}");
  if (parse_ok("prompt of 4096 bytes", json, &j)) sdc_job_free(&j);
  snprintf(json, big, "{\"prompt\":\"x\",\"negative_prompt\":\"%4097s\"}", "n");
  expect_bad("negative prompt of 4097 bytes", json, "'negative_prompt'", "4096");
  free(json);

  expect_bad("width 100", "{\"prompt\":\"x\",\"width\":100}", "'width'", "100");
  expect_bad("height 56", "{\"prompt\":\"x\",\"height\":56}", "'height'", "56");
  expect_bad("width 2056", "{\"prompt\":\"x\",\"width\":2056}", "'width'", "2056");
  expect_bad("width -8", "{\"prompt\":\"x\",\"width\":-8}", "'width'", "-8");
  if (parse_ok("width 64, height 2048", "{\"prompt\":\"x\",\"width\":64,\"height\":2048}", &j)) sdc_job_free(&j);
  if (parse_ok("width 0 = native", "{\"prompt\":\"x\",\"width\":0}", &j)) sdc_job_free(&j);
  expect_bad("steps 0", "{\"prompt\":\"x\",\"steps\":0}", "'steps'", "0");
  expect_bad("steps 1001", "{\"prompt\":\"x\",\"steps\":1001}", "'steps'", "1001");
  expect_bad("steps 20.5", "{\"prompt\":\"x\",\"steps\":20.5}", "'steps'", "20.5");
  expect_bad("steps 1e300", "{\"prompt\":\"x\",\"steps\":1e300}", "'steps'", "out of range");
  if (parse_ok("steps 1 and 1000", "{\"prompt\":\"x\",\"steps\":1000}", &j)) sdc_job_free(&j);
  expect_bad("guidance -1", "{\"prompt\":\"x\",\"guidance_scale\":-1}", "'guidance_scale'", "-1");
  expect_bad("guidance 1e400 (inf)", "{\"prompt\":\"x\",\"guidance_scale\":1e400}", "'guidance_scale'", "finite");
  if (parse_ok("guidance 0", "{\"prompt\":\"x\",\"guidance_scale\":0}", &j)) sdc_job_free(&j);
  expect_bad("seed -1", "{\"prompt\":\"x\",\"seed\":-1}", "'seed'", "-1");
  expect_bad("seed 2^53", "{\"prompt\":\"x\",\"seed\":9007199254740992}", "'seed'", "not below 2^53");
  expect_bad("seed 1.5", "{\"prompt\":\"x\",\"seed\":1.5}", "'seed'", "1.5");
  if (parse_ok("seed 0", "{\"prompt\":\"x\",\"seed\":0}", &j)) {
    CHECK(j.has_seed && j.seed == 0, "seed 0 is a seed");
    sdc_job_free(&j);
  }
  expect_bad("num_images 0", "{\"prompt\":\"x\",\"num_images\":0}", "'num_images'", "0");
  expect_bad("num_images 9", "{\"prompt\":\"x\",\"num_images\":9}", "'num_images'", "9");
  expect_bad("timeout_ms 0", "{\"prompt\":\"x\",\"timeout_ms\":0}", "'timeout_ms'", "0");
  expect_bad("timeout_ms 999", "{\"prompt\":\"x\",\"timeout_ms\":999}", "'timeout_ms'", "999");
  expect_bad("timeout_ms 1e9", "{\"prompt\":\"x\",\"timeout_ms\":1000000000}", "'timeout_ms'", "1000000000");
  expect_bad("timeout_ms string", "{\"prompt\":\"x\",\"timeout_ms\":\"5000\"}", "'timeout_ms'", "5000");
}

static void test_job_types_and_fields(void) {
  expect_bad("steps as string \"20\"", "{\"prompt\":\"x\",\"steps\":\"20\"}", "'steps'", "\"20\"");
  expect_bad("width as bool", "{\"prompt\":\"x\",\"width\":true}", "'width'", "true");
  expect_bad("guidance as string", "{\"prompt\":\"x\",\"guidance_scale\":\"7.5\"}", "'guidance_scale'", "\"7.5\"");
  expect_bad("prompt as number", "{\"prompt\":5}", "'prompt'", "5");
  expect_bad("prompt as array", "{\"prompt\":[\"a\"]}", "'prompt'", "array");
  expect_bad("prompt null", "{\"prompt\":null}", "'prompt'", "null");
  expect_bad("prompt missing", "{\"steps\":20}", "'prompt'", "missing");
  expect_bad("scheduler as number", "{\"prompt\":\"x\",\"scheduler\":3}", "'scheduler'", "3");
  expect_bad("unknown scheduler", "{\"prompt\":\"x\",\"scheduler\":\"karras9000\"}", "'scheduler'", "karras9000");
  expect_bad("scheduler in upper case", "{\"prompt\":\"x\",\"scheduler\":\"DDIM\"}", "'scheduler'", "DDIM");
  expect_bad("unknown field", "{\"prompt\":\"x\",\"colour\":\"red\"}", "\"colour\"", "unknown");
  expect_bad("field in other case", "{\"Prompt\":\"x\"}", "\"Prompt\"", "unknown");
  expect_bad("field given twice", "{\"prompt\":\"x\",\"steps\":2,\"steps\":3}", "'steps'", "more than once");
  expect_bad("not JSON", "prompt=cat", "syntax", NULL);
  expect_bad("empty input", "", "syntax", NULL);
  expect_bad("array at top", "[{\"prompt\":\"x\"}]", "object", "array");
  expect_bad("trailing data", "{\"prompt\":\"x\"} {}", "after the object", NULL);
  expect_bad("truncated JSON", "{\"prompt\":\"x\"", "syntax", NULL);
  expect_bad_n("NUL byte in the JSON", "{\"prompt\":\"x\"}\0", 15, "after the object", NULL);
  /* deep nesting says so (not cJSON's syntax error at its own limit); brackets inside strings do not count */
  expect_bad("17 levels", "{\"prompt\":[[[[[[[[[[[[[[[[\"x\"]]]]]]]]]]]]]]]]}", "nested more than 16", "byte 25");
  expect_bad("brackets in a string", "{\"prompt\":\"[[[[[[[[[[[[[[[[[[[[\\\"\",\"steps\":0}", "'steps'", NULL);
}

static void test_job_utf8(void) {
  expect_bad("prompt not UTF-8 (latin-1)", "{\"prompt\":\"caf\xe9\"}", "'prompt'", "UTF-8");
  expect_bad("negative prompt \\xff", "{\"prompt\":\"x\",\"negative_prompt\":\"\xff\xfe\"}", "'negative_prompt'",
             "UTF-8");
  expect_bad("overlong '/'", "{\"prompt\":\"\xc0\xaf\"}", "'prompt'", "UTF-8");
  expect_bad("UTF-8 surrogate", "{\"prompt\":\"\xed\xa0\x80\"}", "'prompt'", "UTF-8");
  expect_bad("past U+10FFFF", "{\"prompt\":\"\xf4\x90\x80\x80\"}", "'prompt'", "UTF-8");
  expect_bad("truncated sequence", "{\"prompt\":\"ab\xe6\x97\"}", "'prompt'", "byte 2");
  expect_bad("\\u0000 in a string", "{\"prompt\":\"a\\u0000b\"}", "\\u0000", NULL);
  sdc_job j;
  /* an escaped backslash followed by the text u0000 is fine */
  if (parse_ok("escaped backslash", "{\"prompt\":\"a\\\\u0000b\"}", &j)) {
    CHECK(strcmp(j.prompt, "a\\u0000b") == 0, "escaped backslash: %s", j.prompt);
    sdc_job_free(&j);
  }
  if (parse_ok("surrogate pair escape", "{\"prompt\":\"\\ud83d\\udc31\"}", &j)) {
    CHECK(strcmp(j.prompt, "\xf0\x9f\x90\xb1") == 0, "surrogate pair decodes to U+1F431");
    sdc_job_free(&j);
  }
}

static void test_job_ids(void) {
  char long_id[200], json[400];
  memset(long_id, 'a', 129);
  long_id[129] = 0;
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"x\"}", long_id);
  expect_bad("id of 129 chars", json, "'id'", "128");
  long_id[128] = 0;
  snprintf(json, sizeof json, "{\"id\":\"%s\",\"prompt\":\"x\"}", long_id);
  sdc_job j;
  if (parse_ok("id of 128 chars", json, &j)) sdc_job_free(&j);
  expect_bad("id with '/'", "{\"id\":\"a/b\",\"prompt\":\"x\"}", "'id'", "a/b");
  expect_bad("id with a space", "{\"id\":\"a b\",\"prompt\":\"x\"}", "'id'", "a b");
  expect_bad("id with '*' (key glob)", "{\"id\":\"a*\",\"prompt\":\"x\"}", "'id'", "a*");
  /* kc:image:0 would name job kc's image key */
  expect_bad("id with ':' (key collision)", "{\"id\":\"kc:image:0\",\"prompt\":\"x\"}", "'id'", "kc:image:0");
  expect_bad("id non-ASCII", "{\"id\":\"caf\xc3\xa9\",\"prompt\":\"x\"}", "'id'", "\\xc3");
  expect_bad("empty id", "{\"id\":\"\",\"prompt\":\"x\"}", "'id'", NULL);
  expect_bad("id as number", "{\"id\":7,\"prompt\":\"x\"}", "'id'", "7");
  CHECK(sdc_job_id_valid("1700000000000-0") && sdc_job_id_valid("A.z_0.9-") && !sdc_job_id_valid("a:b") && !sdc_job_id_valid("") &&
            !sdc_job_id_valid(NULL) && !sdc_job_id_valid("a\nb") && !sdc_job_id_valid("{x}"),
        "id charset");
  CHECK(sdc_job_parse(&j, "{\"prompt\":\"x\"}", 14, "bad id!") == SDC_EINVAL, "an invalid fallback id is refused");
}

static void test_job_validate_built(void) {
  sdc_job j;
  sdc_job_init(&j);
  char *json = (char *)"unset";
  CHECK(sdc_job_to_json(&j, &json) == SDC_EINVAL && json == NULL, "a job without a prompt has no JSON");
  j.prompt = (char *)"x";
  j.width = 100;
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'width'"), "built: width 100");
  j.width = 512, j.has_seed = 1, j.seed = SDC_SEED_LIMIT;
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'seed'"), "built: seed 2^53");
  j.seed = 42;
  snprintf(j.scheduler, sizeof j.scheduler, "nope");
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "nope"), "built: scheduler");
  snprintf(j.scheduler, sizeof j.scheduler, "euler_a");
  CHECK(sdc_job_to_json(&j, &json) == SDC_OK && json &&
            strcmp(json, "{\"prompt\":\"x\",\"width\":512,\"scheduler\":\"euler_a\",\"seed\":42}") == 0,
        "built to_json: %s", json ? json : "(null)");
  free(json);
}

/* common/ keeps its own copy of the names (it may not see stages/): they must agree. */
static void test_job_scheduler_names_match_stages(void) {
  int n = 0;
  for (const char *name; (name = sdc_job_scheduler_name(n)); n++) {
    CHECK(sdc_sched_parse_name(name) == n, "job scheduler '%s' is kind %d in stages/", name,
          sdc_sched_parse_name(name));
    CHECK(sdc_job_scheduler_valid(name), "'%s' valid", name);
  }
  CHECK(n == SDC_SCHED_COUNT, "job knows %d schedulers, stages/ %d", n, SDC_SCHED_COUNT);
  for (int k = 0; k < SDC_SCHED_COUNT; k++)
    CHECK(sdc_job_scheduler_valid(sdc_sched_name((sdc_sched_kind)k)), "stages' '%s' unknown to jobs",
          sdc_sched_name((sdc_sched_kind)k));
  CHECK(!sdc_job_scheduler_valid("") && !sdc_job_scheduler_valid(NULL), "empty scheduler name is not a name");
}

static void test_job_states_keys_events(void) {
  for (int s = SDC_JOB_QUEUED; s <= SDC_JOB_CANCELLED; s++)
    CHECK((int)sdc_job_state_parse(sdc_job_state_name((sdc_job_state)s)) == s, "state %d round trip", s);
  CHECK(sdc_job_state_parse("Done") == SDC_JOB_UNKNOWN && sdc_job_state_parse(NULL) == SDC_JOB_UNKNOWN, "state parse");
  CHECK(!sdc_job_state_final(SDC_JOB_RUNNING) && !sdc_job_state_final(SDC_JOB_QUEUED) &&
            sdc_job_state_final(SDC_JOB_DONE) && sdc_job_state_final(SDC_JOB_FAILED) &&
            sdc_job_state_final(SDC_JOB_CANCELLED),
        "final states");
  char key[SDC_JOB_KEY_MAX];
  sdc_job_key(key, SDC_JOB_KEY_FMT, "j1");
  CHECK(strcmp(key, "sdc:job:j1") == 0, "%s", key);
  sdc_job_key(key, SDC_JOB_EVENTS_FMT, "j1");
  CHECK(strcmp(key, "sdc:job:j1:events") == 0, "%s", key);
  sdc_job_key(key, SDC_JOB_CONTROL_FMT, "j1");
  CHECK(strcmp(key, "sdc:job:j1:control") == 0, "%s", key);
  sdc_job_image_key(key, "j1", 3);
  CHECK(strcmp(key, "sdc:job:j1:image:3") == 0, "%s", key);
  char long_id[SDC_MAX_JOB_ID + 1];
  memset(long_id, 'z', SDC_MAX_JOB_ID);
  long_id[SDC_MAX_JOB_ID] = 0;
  sdc_job_image_key(key, long_id, 7);
  CHECK(strlen(key) == strlen("sdc:job:") + SDC_MAX_JOB_ID + strlen(":image:7"), "longest key fits");
  CHECK(strcmp(SDC_JOBS_STREAM, "sdc:jobs") == 0 && strcmp(SDC_JOBS_GROUP, "sdc-coordinators") == 0 &&
            strcmp(SDC_JOBS_DEAD_STREAM, "sdc:jobs:dead") == 0,
        "stream names");

  char *ev = NULL;
  CHECK(sdc_job_event_json(&ev, SDC_JOB_RUNNING, 3, 20, NULL) == SDC_OK && ev &&
            strcmp(ev, "{\"state\":\"running\",\"step\":3,\"steps\":20}") == 0,
        "event: %s", ev ? ev : "(null)");
  sdc_job_state s;
  int64_t step, steps;
  CHECK(ev && sdc_job_event_parse(ev, strlen(ev), &s, &step, &steps) == SDC_OK && s == SDC_JOB_RUNNING && step == 3 &&
            steps == 20,
        "event parse");
  free(ev);
  CHECK(sdc_job_event_json(&ev, SDC_JOB_FAILED, -1, -1, "boom") == SDC_OK && ev &&
            strcmp(ev, "{\"state\":\"failed\",\"error\":\"boom\"}") == 0,
        "failed event: %s", ev ? ev : "(null)");
  free(ev);
  CHECK(sdc_job_event_parse("{\"state\":\"weird\"}", 17, &s, &step, &steps) == SDC_EINVAL, "unknown event state");
  CHECK(sdc_job_event_parse("nope", 4, &s, &step, &steps) == SDC_EINVAL, "event not JSON");
}

/* issue 12: strength, init_image / mask (a Redis key or inline base64), loras. */
static void test_job_image_fields(void) {
  sdc_job j;
  const char *full = "{\"id\":\"i1\",\"prompt\":\"x\",\"strength\":0.55,\"init_image\":\"img:42\","
                     "\"mask\":{\"base64\":\"iVBORw0=\"},\"loras\":[{\"name\":\"style\",\"multiplier\":0.8},"
                     "{\"name\":\"detail_v1.2\"},{\"name\":\"neg\",\"multiplier\":-1.5}]}";
  if (parse_ok("image job", full, &j)) {
    CHECK(j.has_strength && j.strength == 0.55, "strength 0.55, got %g", j.strength);
    CHECK(j.init_image.key && strcmp(j.init_image.key, "img:42") == 0 && !j.init_image.data, "init_image is a key");
    CHECK(j.mask.data && j.mask.n == 5 && memcmp(j.mask.data, "\x89PNG\r", 5) == 0 && !j.mask.key,
          "mask is 5 inline bytes, got %zu", j.mask.n);
    CHECK(j.n_loras == 3 && strcmp(j.loras[0].name, "style") == 0 && j.loras[0].multiplier == 0.8 &&
              j.loras[1].multiplier == 1.0 && j.loras[2].multiplier == -1.5,
          "three loras, default multiplier 1");
    char *out = NULL;
    CHECK(sdc_job_to_json(&j, &out) == SDC_OK && out, "to_json: %s", sdc_errmsg(SDC_EINVAL));
    sdc_job k;
    if (out && parse_ok("round trip", out, &k)) {
      CHECK(k.strength == j.strength && strcmp(k.init_image.key, "img:42") == 0 && k.mask.n == 5 &&
                memcmp(k.mask.data, j.mask.data, 5) == 0 && k.n_loras == 3 &&
                strcmp(k.loras[1].name, "detail_v1.2") == 0 && k.loras[2].multiplier == -1.5,
            "round trip keeps every field: %s", out);
      sdc_job_free(&k);
    }
    free(out);
    sdc_job_free(&j);
  }
  if (parse_ok("defaults", "{\"prompt\":\"x\",\"init_image\":\"a\"}", &j)) {
    CHECK(sdc_job_strength(&j) == 0.8, "img2img default strength 0.8");
    sdc_job_free(&j);
  }
  if (parse_ok("inpaint default", "{\"prompt\":\"x\",\"init_image\":\"a\",\"mask\":\"b\"}", &j)) {
    CHECK(sdc_job_strength(&j) == 1.0, "inpainting default strength 1");
    sdc_job_free(&j);
  }
  /* base64 round trip of every length mod 3 */
  for (size_t n = 0; n < 7; n++) {
    uint8_t in[7] = {0xff, 0x00, 0x7f, 0x80, 0x3e, 0x3f, 0x01}, *back = NULL;
    size_t m = 0;
    char *b = sdc_base64_encode(in, n);
    CHECK(b && sdc_base64_decode(b, strlen(b), "t", &back, &m) == SDC_OK && m == n && memcmp(back, in, n) == 0,
          "base64 round trip of %zu bytes: %s", n, b ? b : "(null)");
    free(b), free(back);
  }
  const char *x = "{\"prompt\":\"x\",\"init_image\":\"a\",";
  char buf[512];
#define BAD(what, tail, n1, n2) (snprintf(buf, sizeof buf, "%s%s}", x, tail), expect_bad(what, buf, n1, n2))
  BAD("strength 0", "\"strength\":0", "'strength'", "(0, 1]");
  BAD("strength 1.5", "\"strength\":1.5", "'strength'", "1.5");
  BAD("strength \"nan\"", "\"strength\":\"nan\"", "'strength'", "nan");
  BAD("strength 1e999", "\"strength\":1e999", "'strength'", "inf");
  BAD("strength -0.5", "\"strength\":-0.5", "'strength'", "-0.5");
  BAD("loras not array", "\"loras\":{\"name\":\"a\"}", "'loras'", "array");
  BAD("lora ../x", "\"loras\":[{\"name\":\"../x\"}]", "'loras[0].name'", "../x");
  BAD("lora /etc/x", "\"loras\":[{\"name\":\"a\"},{\"name\":\"/etc/x\"}]", "'loras[1].name'", "/etc/x");
  BAD("lora .hidden", "\"loras\":[{\"name\":\".hidden\"}]", "'loras[0].name'", ".hidden");
  BAD("lora empty", "\"loras\":[{\"name\":\"\"}]", "'loras[0].name'", "1..64");
  BAD("lora no name", "\"loras\":[{\"multiplier\":1}]", "'loras[0].name'", "missing");
  BAD("lora mult string", "\"loras\":[{\"name\":\"a\",\"multiplier\":\"1\"}]", "'loras[0].multiplier'", "finite");
  BAD("lora mult inf", "\"loras\":[{\"name\":\"a\",\"multiplier\":1e999}]", "'loras[0].multiplier'", "finite");
  BAD("lora extra key", "\"loras\":[{\"name\":\"a\",\"path\":\"/x\"}]", "'loras[0]'", "\"path\"");
  BAD("lora name twice", "\"loras\":[{\"name\":\"a\",\"name\":\"b\"}]", "'loras[0]'", "\"name\"");
  BAD("9 loras",
      "\"loras\":[{\"name\":\"a\"},{\"name\":\"a\"},{\"name\":\"a\"},{\"name\":\"a\"},{\"name\":\"a\"},"
      "{\"name\":\"a\"},{\"name\":\"a\"},{\"name\":\"a\"},{\"name\":\"a\"}]",
      "'loras'", "8");
  BAD("mask key sdc:", "\"mask\":\"sdc:job:other:image:0\"", "'mask'", "sdc:job:other:image:0");
  BAD("mask number", "\"mask\":7", "'mask'", "Redis key");
  BAD("mask other object", "\"mask\":{\"url\":\"http://x\"}", "'mask'", "\"url\"");
  BAD("mask bad base64", "\"mask\":{\"base64\":\"ab!d\"}", "'mask'", "base64");
  BAD("mask base64 len", "\"mask\":{\"base64\":\"abc\"}", "'mask'", "multiple of 4");
  BAD("mask empty base64", "\"mask\":{\"base64\":\"\"}", "'mask'", "empty");
  BAD("empty key", "\"mask\":\"\"", "'mask'", "0 bytes");
#undef BAD
  expect_bad("init key sdc:", "{\"prompt\":\"x\",\"init_image\":\"sdc:jobs\"}", "'init_image'", "sdc:jobs");
  expect_bad("mask without init", "{\"prompt\":\"x\",\"mask\":\"m\"}", "'mask'", "init_image");
  expect_bad("strength without init", "{\"prompt\":\"x\",\"strength\":0.5}", "'strength'", "init_image");
  /* a big inline image inside the JSON limit parses; the whole JSON stays bounded */
  size_t raw = (3u << 20) - 1024; /* its base64 and the rest just under 4 MiB */
  uint8_t *bytes = calloc(raw, 1);
  char *b64 = sdc_base64_encode(bytes, raw);
  char *json = malloc(strlen(b64) + 128);
  sprintf(json, "{\"prompt\":\"x\",\"init_image\":{\"base64\":\"%s\"}}", b64);
  if (parse_ok("3 MiB - 1 KiB inline image", json, &j)) {
    CHECK(j.init_image.n == raw, "3 MiB decoded, got %zu", j.init_image.n);
    sdc_job_free(&j);
  }
  free(json), free(b64), free(bytes);
}

/* SDXL's fields: strings as prompt, [h, w] / [top, left] pairs of integers in range, each error naming the field;
 * a good job writes JSON that reads back the same, and a job built in code is checked by the same rules. */
static void test_job_sdxl_fields(void) {
  sdc_job j;
  const char *good = "{\"prompt\":\"a fox\",\"prompt_2\":\"an oil painting\","
                     "\"negative_prompt_2\":\"blurry \xe2\x80\x94\","
                     "\"original_size\":[512,384],\"crops_coords_top_left\":[0,32],\"target_size\":[16384,1]}";
  if (parse_ok("sdxl fields", good, &j)) {
    CHECK(j.prompt_2 && strcmp(j.prompt_2, "an oil painting") == 0, "prompt_2 %s", j.prompt_2 ? j.prompt_2 : "(null)");
    CHECK(j.negative_prompt_2 && strcmp(j.negative_prompt_2, "blurry \xe2\x80\x94") == 0, "negative_prompt_2");
    CHECK(!j.negative_prompt, "negative_prompt_2 does not set negative_prompt");
    CHECK(j.original_size[0] == 512 && j.original_size[1] == 384, "original_size [%lld, %lld]",
          (long long)j.original_size[0], (long long)j.original_size[1]);
    CHECK(j.has_crop && j.crops_coords_top_left[0] == 0 && j.crops_coords_top_left[1] == 32, "crops_coords_top_left");
    CHECK(j.target_size[0] == 16384 && j.target_size[1] == 1, "target_size");
    char *json = NULL;
    CHECK(sdc_job_to_json(&j, &json) == SDC_OK && json, "to_json sdxl");
    const char *want = "{\"id\":\"1700000000000-0\",\"prompt\":\"a fox\",\"prompt_2\":\"an oil painting\","
                       "\"negative_prompt_2\":\"blurry \xe2\x80\x94\",\"original_size\":[512,384],"
                       "\"crops_coords_top_left\":[0,32],\"target_size\":[16384,1]}";
    CHECK(json && strcmp(json, want) == 0, "to_json: %s", json ? json : "(null)");
    sdc_job back;
    if (json && parse_ok("sdxl round trip", json, &back)) {
      CHECK(strcmp(back.prompt_2, j.prompt_2) == 0 && strcmp(back.negative_prompt_2, j.negative_prompt_2) == 0 &&
                memcmp(back.original_size, j.original_size, sizeof j.original_size) == 0 &&
                memcmp(back.target_size, j.target_size, sizeof j.target_size) == 0 && back.has_crop &&
                memcmp(back.crops_coords_top_left, j.crops_coords_top_left, sizeof j.crops_coords_top_left) == 0,
            "round trip differs");
      sdc_job_free(&back);
    }
    free(json);
    sdc_job_free(&j);
  }
  /* a crop of (0, 0) is given, not absent: it is written back */
  if (parse_ok("crop [0, 0]", "{\"prompt\":\"x\",\"crops_coords_top_left\":[0,0.0],\"prompt_2\":\"\"}", &j)) {
    char *json = NULL;
    CHECK(j.has_crop && j.prompt_2 && !j.prompt_2[0], "crop [0, 0] and an empty prompt_2 are given");
    CHECK(sdc_job_to_json(&j, &json) == SDC_OK && json && strstr(json, "\"crops_coords_top_left\":[0,0]") &&
              strstr(json, "\"prompt_2\":\"\""),
          "to_json: %s", json ? json : "(null)");
    free(json);
    sdc_job_free(&j);
  }
  if (parse_ok("sdxl nulls",
               "{\"prompt\":\"x\",\"prompt_2\":null,\"original_size\":null,\"crops_coords_top_left\":null}", &j)) {
    CHECK(!j.prompt_2 && !j.original_size[0] && !j.has_crop, "null = absent");
    sdc_job_free(&j);
  }
  char big[SDC_MAX_PROMPT_BYTES + 64];
  snprintf(big, sizeof big, "{\"prompt\":\"x\",\"prompt_2\":\"%0*d\"}", SDC_MAX_PROMPT_BYTES + 1, 0);
  expect_bad("prompt_2 of 4097 bytes", big, "'prompt_2'", "4096");
  expect_bad("prompt_2 as number", "{\"prompt\":\"x\",\"prompt_2\":5}", "'prompt_2'", "5");
  expect_bad("negative_prompt_2 not UTF-8", "{\"prompt\":\"x\",\"negative_prompt_2\":\"caf\xe9\"}",
             "'negative_prompt_2'", "UTF-8");
  expect_bad("prompt_2 twice", "{\"prompt\":\"x\",\"prompt_2\":\"a\",\"prompt_2\":\"b\"}", "'prompt_2'",
             "more than once");
  expect_bad("original_size twice", "{\"prompt\":\"x\",\"original_size\":[8,8],\"original_size\":[8,8]}",
             "'original_size'", "more than once");
  expect_bad("original_size as string", "{\"prompt\":\"x\",\"original_size\":\"512x384\"}", "'original_size'",
             "\"512x384\"");
  expect_bad("original_size as number", "{\"prompt\":\"x\",\"original_size\":512}", "'original_size'",
             "[height, width]");
  expect_bad("original_size of 3", "{\"prompt\":\"x\",\"original_size\":[1,2,3]}", "'original_size'", "3 of them");
  expect_bad("original_size of 1", "{\"prompt\":\"x\",\"original_size\":[512]}", "'original_size'", "1 of them");
  expect_bad("original_size 0", "{\"prompt\":\"x\",\"original_size\":[0,512]}", "'original_size[0]'", "[1, 16384]");
  expect_bad("original_size too big", "{\"prompt\":\"x\",\"original_size\":[512,16385]}", "'original_size[1]'",
             "16385");
  expect_bad("original_size 2.5", "{\"prompt\":\"x\",\"original_size\":[512,2.5]}", "'original_size[1]'", "2.5");
  expect_bad("original_size of strings", "{\"prompt\":\"x\",\"original_size\":[\"512\",\"384\"]}",
             "'original_size[0]'", "\"512\"");
  expect_bad("original_size [null, 1]", "{\"prompt\":\"x\",\"original_size\":[null,1]}", "'original_size[0]'", "null");
  expect_bad("target_size -1", "{\"prompt\":\"x\",\"target_size\":[-1,8]}", "'target_size[0]'", "-1");
  expect_bad("target_size object", "{\"prompt\":\"x\",\"target_size\":{\"h\":8,\"w\":8}}", "'target_size'",
             "object");
  expect_bad("crop -1", "{\"prompt\":\"x\",\"crops_coords_top_left\":[0,-1]}", "'crops_coords_top_left[1]'",
             "[0, 16384]");
  expect_bad("crop 1e9", "{\"prompt\":\"x\",\"crops_coords_top_left\":[1e9,0]}", "'crops_coords_top_left[0]'",
             "out of range");
  expect_bad("crop of 0", "{\"prompt\":\"x\",\"crops_coords_top_left\":[]}", "'crops_coords_top_left'", "0 of them");
  expect_bad("crop nested", "{\"prompt\":\"x\",\"crops_coords_top_left\":[[0],[0]]}", "'crops_coords_top_left[0]'",
             "array");
  /* built in code: the same rules */
  sdc_job_init(&j);
  j.prompt = (char *)"x";
  j.original_size[1] = 512; /* half given: 0 is out of range, not "absent" */
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'original_size'") &&
            strstr(sdc_errmsg(SDC_EINVAL), "[0, 512]"),
        "built: original_size [0, 512]: %s", sdc_errmsg(SDC_EINVAL));
  j.original_size[0] = 512, j.has_crop = 1, j.crops_coords_top_left[0] = -3;
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'crops_coords_top_left'"),
        "built: crop -3: %s", sdc_errmsg(SDC_EINVAL));
  j.crops_coords_top_left[0] = 0, j.target_size[0] = 20000, j.target_size[1] = 8;
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'target_size'"), "built: target 20000");
  j.target_size[0] = 8, j.prompt_2 = (char *)"\xff";
  CHECK(sdc_job_validate(&j) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "'prompt_2'"), "built: prompt_2 \\xff");
  j.prompt_2 = (char *)"ok";
  CHECK(sdc_job_validate(&j) == SDC_OK, "built: good sdxl job: %s", sdc_errmsg(SDC_EINVAL));
  /* the unknown-field message lists them */
  expect_bad("unknown field lists sdxl's", "{\"prompt\":\"x\",\"prompt2\":\"y\"}", "\"prompt2\"",
             "prompt_2, negative_prompt_2, original_size, crops_coords_top_left, target_size");
}

int main(void) {
  test_job_image_fields();
  test_job_sdxl_fields();
  test_job_defaults_and_full();
  test_job_limits();
  test_job_types_and_fields();
  test_job_utf8();
  test_job_ids();
  test_job_validate_built();
  test_job_scheduler_names_match_stages();
  test_job_states_keys_events();
  return sdc_test_finish("test_job");
}
