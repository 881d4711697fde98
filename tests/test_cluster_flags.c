/* test_cluster_flags.c - `sdc cluster` checks every limit it passes to its children before starting any:
 * a bad value exits 2 with one line naming the flag, and nothing (no Redis, no child) is started. */
#include <stdio.h>
#include <string.h>

#include "test_util.h"

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *ref = sdc_test_ref_dir();
  if (!ref) sdc_test_skip("no reference folder (SDC_REF)");
  static const char *const bad[][2] = {
      {"--max-pixels 5", "--max-pixels"},         {"--max-pixels 99999999999", "--max-pixels"},
      {"--step-timeout-ms 50", "--step-timeout-ms"}, {"--step-timeout-ms 1e3", "--step-timeout-ms"},
      {"--job-timeout-ms 10", "--job-timeout-ms"},   {"--job-timeout-ms -1", "--job-timeout-ms"},
      {"--ttl 0", "--ttl"},                          {"--wire f8", "--wire"},
      {"--max-jobs 0", "--max-jobs"},                {"--max-jobs 5000", "--max-jobs"},
      {"--worker-max-queue 0", "--worker-max-queue"}, {"--worker-memory-mib 0", "--worker-memory-mib"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char cmd[2048], err[2048];
    snprintf(cmd, sizeof cmd, "timeout 20 %s cluster --model %s/tiny-sd1 %s", argv[1], ref, bad[i][0]);
    int rc = sdc_test_run(cmd, err, sizeof err);
    CHECK(rc == 2, "'%s': exit %d, want 2 (stderr: %s)", bad[i][0], rc, err);
    CHECK(strstr(err, bad[i][1]) && sdc_test_lines(err) == 1, "'%s': stderr does not name %s in one line: %s", bad[i][0],
          bad[i][1], err);
  }
  return sdc_test_finish("test_cluster_flags");
}
