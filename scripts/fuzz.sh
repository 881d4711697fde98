#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan + UBSan) in build-fuzz and runs each for a bounded
# time on its committed seed corpus. Any crash, leak, UB report or timeout fails the script, leaving the
# reproducer in build-fuzz/findings/<target>/ (add it to tests/fuzz/<target>/ once fixed).
#   scripts/fuzz.sh [seconds-per-target]     (default 20; CI)
# SDC_FUZZ_TARGETS="fuzz_envelope fuzz_tokenizer" runs a subset; SDC_FUZZ_JOBS is -j for the build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
case "$secs" in '' | *[!0-9]*) echo "fuzz.sh: seconds-per-target '$secs' is not a whole number" >&2; exit 2 ;; esac
export SDC_REF="${SDC_REF:-$(cd .. && pwd)/shared/ref}"
targets="${SDC_FUZZ_TARGETS:-fuzz_envelope fuzz_job_json fuzz_safetensors fuzz_checkpoint_keys fuzz_tokenizer}"
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (Debian: apt-get install clang)" >&2; exit 2; }

CC=clang cmake -S . -B build-fuzz -DSDC_FUZZ=ON -DSDC_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
# only the targets: the engine's kernels are not built by clang here
# shellcheck disable=SC2086
cmake --build build-fuzz -j"${SDC_FUZZ_JOBS:-$(nproc)}" --target $targets

failed=0
for t in $targets; do
  work="build-fuzz/corpus/$t" found="build-fuzz/findings/$t"
  rm -rf "$found"
  mkdir -p "$work" "$found"
  # the working corpus grows in build-fuzz; the committed seeds are read, never written
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build-fuzz/bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$found/" -print_final_stats=1 "${dict[@]}" "$work" "tests/fuzz/$t" >"build-fuzz/$t.log" 2>&1; then
    echo "fuzz.sh: $t: $(grep -m1 '^stat::number_of_executed_units' "build-fuzz/$t.log" | awk '{print $2}') runs in ${secs}s, no finding"
  else
    echo "fuzz.sh: $t FAILED; reproducer(s): $(ls "$found" | tr '\n' ' ')" >&2
    grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "build-fuzz/$t.log" | head -30 >&2
    failed=1
  fi
done
exit "$failed"
