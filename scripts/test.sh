#!/usr/bin/env bash
# The test command: the whole suite on the normal build, then again under ASan + UBSan, then the
# libFuzzer targets for a bounded time and the worker/coordinator tests under ThreadSanitizer.
# Reference models are found through SDC_REF (default ../shared/ref); tests that need
# them report SKIP when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export SDC_REF="${SDC_REF:-$(cd .. && pwd)/shared/ref}"

cmake -S . -B build -DSDC_WERROR=ON -DSDC_TEST_HOOKS=ON >/dev/null
cmake --build build -j"$(nproc)"
(cd build && ctest --output-on-failure)

# The layers stay true: no layer includes or links what it must not, and the check itself is
# proven to catch planted violations.
bash scripts/check-layers.sh --self-test

if [ "${SDC_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DSDC_SANITIZE=ON -DSDC_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-asan -j"$(nproc)"
  # -LE faults: the three fault-injection suites (label faults: test_fencing, test_redis_faults, test_churn) run
  # in the normal build above only. Under ASan they add ~6 min of restarts and waits (CI stays under 30 min);
  # the coordinator and worker code they drive runs under ASan in test_cluster, test_drain, test_hostile,
  # test_security and test_bounds. SDC_ASAN_FAULTS=1 runs them here too.
  # Label no_asan: the pipelines goldens run whole (30 generate runs, 105 verify checks) in the normal build
  # only, ~5 min under ASan; here the same code runs in test_image (img2img, 4-channel inpainting), test_lora,
  # test_generate_cli (a LoRA run), test_sched_lcm, and the 9-channel inpainting cases just below. The
  # reference pipeline at SDC_ISA=scalar and with SDC_GEMM=openblas are no_asan too: their kernels run under
  # ASan in test_ops and its SDC_ISA variants.
  asan_filter=(-LE 'faults|no_asan')
  [ "${SDC_ASAN_FAULTS:-0}" = 1 ] && asan_filter=(-LE no_asan)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && ctest --output-on-failure "${asan_filter[@]}")
  if [ -f "$SDC_REF/pipelines/goldens.json" ]; then
    build-asan/bin/sdc verify --ref "$SDC_REF/pipelines" --only inpaint9
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# ThreadSanitizer on the worker and coordinator tests (label tsan: the libuv pool, OpenMP through LLVM's
# Archer, the oneDNN cache, the coordinator's loop); SDC_SKIP_TSAN=1 skips.
if [ "${SDC_SKIP_TSAN:-0}" != 1 ]; then
  cmake -S . -B build-tsan -DSDC_TSAN=ON -DSDC_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
  cmake --build build-tsan -j"$(nproc)" --target sdc sdc-worker sdc-coordinator test_stage_exec test_worker_heartbeat test_hostile
  (cd build-tsan && ctest -L tsan --output-on-failure)
fi

# libFuzzer targets (tests/fuzz/), ~20 s each under ASan + UBSan; SDC_SKIP_FUZZ=1 skips (no clang, say).
if [ "${SDC_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh "${SDC_FUZZ_SECONDS:-20}"
fi
