/* test_common.c - the shared homes in common/: UTF-8, JSON fields, stage names, Redis URLs, clocks. */
#include <math.h>
#include <string.h>

#include "clock.h"
#include "error.h"
#include "json.h"
#include "redis_url.h"
#include "sdc_limits.h"
#include "stage.h"
#include "test_util.h"
#include "utf8.h"

static void test_utf8_rejects_what_rfc3629_forbids(void) {
  static const struct {
    const char *s;
    long bad_at;
  } cases[] = {
      {"plain ascii", -1},     {"caf\xc3\xa9", -1},         {"\xf0\x9f\x98\x80 emoji", -1},
      {"a\xc0\x80", 1},        /* overlong NUL */           {"ab\xed\xa0\x80", 2}, /* surrogate U+D800 */
      {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */          {"xyz\xe2\x82", 3},    /* cut short */
      {"\xe0\x80\xaf", 0},     /* overlong '/' */           {"\xff", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    long got = sdc_utf8_invalid_at(cases[i].s, strlen(cases[i].s));
    CHECK(got == cases[i].bad_at, "case %zu: invalid at %ld, expected %ld", i, got, cases[i].bad_at);
    CHECK(sdc_utf8_valid(cases[i].s) == (cases[i].bad_at < 0), "case %zu: sdc_utf8_valid", i);
  }
  int32_t cp = 0;
  CHECK(sdc_utf8_next("\xc3\xa9x", 3, &cp) == 2 && cp == 0xe9, "decode e-acute: cp %x", cp);
  CHECK(sdc_utf8_next("\xff", 1, &cp) == 1 && cp == 0xfffd, "invalid byte decodes to U+FFFD: cp %x", cp);
}

static void test_json_fields_name_source_and_field(void) {
  cJSON *root = cJSON_Parse("{\"n\": 20.0, \"x\": 2.5, \"s\": \"20\", \"b\": 1, \"nul\": null, \"big\": 1e300,"
                            " \"skip\": 7, \"_use_default_values\": [\"skip\"]}");
  sdc_json_fields f;
  sdc_json_fields_init(&f, root, "cfg.json:", SDC_ECONFIG);
  f.ignored = cJSON_GetObjectItemCaseSensitive(root, "_use_default_values");
  CHECK(sdc_json_int(&f, "n", 0, 1, 100) == 20 && f.err == 0, "20.0 is the integer 20");
  CHECK(sdc_json_int(&f, "absent", 5, 1, 100) == 5 && f.err == 0, "absent gives the default");
  CHECK(sdc_json_int(&f, "nul", 6, 1, 100) == 6 && f.err == 0, "null gives the default");
  CHECK(sdc_json_int(&f, "skip", 8, 1, 100) == 8 && f.err == 0, "a key in _use_default_values reads as absent");
  CHECK(sdc_json_raw(&f, "nul") != NULL && sdc_json_item(&f, "nul") == NULL, "raw keeps null, item drops it");
  CHECK(sdc_json_int(&f, "x", 3, 1, 100) == 3 && f.err == SDC_ECONFIG, "2.5 is not an integer");
  CHECK(strcmp(sdc_errmsg(f.err), "cfg.json: field 'x': expected an integer, got 2.5") == 0, "message: %s",
        sdc_errmsg(f.err));
  /* the first error is kept */
  CHECK(sdc_json_bool(&f, "b", 0) == 0 && strstr(sdc_errmsg(f.err), "'x'") != NULL, "first error kept: %s",
        sdc_errmsg(f.err));
  sdc_json_fields g;
  sdc_json_fields_init(&g, root, "job", SDC_EINVAL);
  const char *s = NULL;
  int64_t v = 0;
  CHECK(sdc_json_as_int(&g, cJSON_GetObjectItemCaseSensitive(root, "s"), "steps", 1, 1000, &v) == SDC_EINVAL &&
            strcmp(sdc_errmsg(g.err), "job field 'steps': expected an integer, got the string \"20\"") == 0,
        "message: %s", sdc_errmsg(g.err));
  sdc_json_fields_init(&g, root, "job", SDC_EINVAL);
  CHECK(sdc_json_as_int(&g, cJSON_GetObjectItemCaseSensitive(root, "big"), "seed", 0, 10, &v) == SDC_EINVAL &&
            strstr(sdc_errmsg(g.err), "out of range [0, 10]") != NULL,
        "message: %s", sdc_errmsg(g.err));
  sdc_json_fields_init(&g, root, "job", SDC_EINVAL);
  CHECK(sdc_json_as_str(&g, cJSON_GetObjectItemCaseSensitive(root, "s"), "prompt", &s) == SDC_OK && strcmp(s, "20") == 0,
        "string field");
  char q[64];
  CHECK(strcmp(sdc_json_quote(q, sizeof q, "a\"b\n"), "\"a\\x22b\\x0a\"") == 0, "quote: %s", q);
  cJSON_Delete(root);
}

static void test_stage_names_round_trip(void) {
  for (int s = SDC_STAGE_TEXT; s < SDC_STAGE_END; s++)
    CHECK(sdc_stage_parse(sdc_stage_name(s)) == (sdc_stage)s, "stage %d: %s", s, sdc_stage_name(s));
  CHECK(strcmp(sdc_stage_name(0), "invalid") == 0 && strcmp(sdc_stage_name(99), "invalid") == 0, "out of range");
  unsigned bits = 0;
  CHECK(sdc_stage_parse_list("text,unet-mid", &bits) == SDC_OK &&
            bits == ((1u << SDC_STAGE_TEXT) | (1u << SDC_STAGE_UNET_MID)),
        "list bits %x", bits);
  CHECK(sdc_stage_parse_list("all", &bits) == SDC_OK && bits == SDC_STAGE_ALL_BITS, "all");
  CHECK(sdc_stage_parse_list("text,unet-side", &bits) == SDC_EINVAL && strstr(sdc_errmsg(SDC_EINVAL), "unet-side"),
        "unknown stage named: %s", sdc_errmsg(SDC_EINVAL));
  CHECK(sdc_stage_parse_list("text,,vae", &bits) == SDC_EINVAL, "empty entry");
  CHECK(sdc_stage_parse_list("", &bits) == SDC_EINVAL, "empty list");
}

static void test_redis_url_with_credentials(void) {
  sdc_redis_url u;
  CHECK(sdc_redis_url_parse(&u, "redis://127.0.0.1:6380/2") == SDC_OK && !strcmp(u.host, "127.0.0.1") && u.port == 6380 &&
            u.db == 2 && !u.password[0] && !strcmp(u.where, "127.0.0.1:6380/2"),
        "plain URL: %s", u.where);
  CHECK(sdc_redis_url_parse(&u, "redis://:s3cret@redis.sdc.svc") == SDC_OK && !strcmp(u.password, "s3cret") &&
            !u.user[0] && u.port == 6379 && strstr(u.where, "s3cret") == NULL,
        "password only; where never shows it: %s", u.where);
  CHECK(sdc_redis_url_parse(&u, "redis://alice:pw@[::1]:7000/0") == SDC_OK && !strcmp(u.user, "alice") &&
            !strcmp(u.host, "::1") && u.port == 7000,
        "user, IPv6");
  static const char *const bad[] = {"http://x", "redis://", "redis://h:0", "redis://h:70000", "redis://h/x",
                                     "redis://user@h", "redis://:@h", "redis://[::1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int err = sdc_redis_url_parse(&u, bad[i]);
    CHECK(err == SDC_EINVAL && strstr(sdc_errmsg(err), bad[i]) != NULL, "%s: %s", bad[i], sdc_errmsg(err));
  }
}

static void test_clocks(void) {
  int64_t a = sdc_clock_mono_ms();
  double s = sdc_clock_mono_s();
  sdc_clock_sleep_ms(20);
  CHECK(sdc_clock_mono_ms() - a >= 20, "slept 20 ms");
  CHECK(sdc_clock_mono_s() - s >= 0.019, "seconds clock");
  CHECK(sdc_clock_unix_ms() > 1700000000000ull, "wall clock in ms since 1970");
}

int main(void) {
  test_utf8_rejects_what_rfc3629_forbids();
  test_json_fields_name_source_and_field();
  test_stage_names_round_trip();
  test_redis_url_with_credentials();
  test_clocks();
  return sdc_test_finish("test_common");
}
