/* test_cluster_flags.c - `sdc cluster` checks every limit it passes to its children before starting any:
 * a bad value exits 2 with one line naming the flag, and nothing (no Redis, no child) is started. And an
 * `sdc cluster` that is SIGKILLed leaves no orphans: every child (Redis included) exits on its own. */
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
      {"--lora-dir /nonexistent-sdc-loras", "--lora-dir"}, {"--lora-cache 17", "--lora-cache"},
      {"--lora-cache -1", "--lora-cache"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char cmd[2048], err[2048];
    snprintf(cmd, sizeof cmd, "timeout 20 %s cluster --model %s/tiny-sd1 %s", argv[1], ref, bad[i][0]);
    int rc = sdc_test_run(cmd, err, sizeof err);
    CHECK(rc == 2, "'%s': exit %d, want 2 (stderr: %s)", bad[i][0], rc, err);
    CHECK(strstr(err, bad[i][1]) && sdc_test_lines(err) == 1, "'%s': stderr does not name %s in one line: %s", bad[i][0],
          bad[i][1], err);
  }
  /* SIGKILL of sdc cluster: its children get SIGTERM from the kernel (PR_SET_PDEATHSIG) and drain. A zombie
   * (reparented to an init that does not reap) counts as gone. */
  char cmd[4096], err[2048];
  snprintf(cmd, sizeof cmd,
           "{ d=$(mktemp -d); %s cluster --model %s/tiny-sd1 --insecure --drain-timeout-ms 5000 >/dev/null 2>$d/log & p=$!; "
           "for i in $(seq 600); do [ $(grep -c 'started .* (pid' $d/log) -ge 6 ] && break; sleep 0.1; done; "
           "pids=$(grep -o '(pid [0-9]*)' $d/log | tr -dc '0-9 \\n'); "
           "all=$(echo $pids $(pgrep -P $p redis-server) | tr ' ' '\\n' | sort -u); kill -9 $p; alive=x; "
           "for i in $(seq 300); do alive=0; for q in $all; do "
           "[ -e /proc/$q ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$q/stat && alive=$((alive+1)); done; "
           "[ $alive = 0 ] && break; sleep 0.1; done; "
           "echo \"$(echo $all | wc -w) children, $alive alive $((i / 10)) s after sdc cluster was SIGKILLed\" >&2; "
           "rm -rf $d; [ $alive = 0 ]; }",
           argv[1], ref);
  int rc = sdc_test_run(cmd, err, sizeof err);
  printf("%s", err);
  CHECK(rc == 0, "children outlived a SIGKILLed sdc cluster: %s", err);
  CHECK(strstr(err, "7 children") != NULL, "expected 7 children (coordinator, 5 workers, redis): %s", err);
  return sdc_test_finish("test_cluster_flags");
}
