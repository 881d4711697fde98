#!/usr/bin/env bash
# Engine benchmark: UNet seconds per step and peak memory, beside the sgemm peak measured in the same
# process. Tiny reference models at 128x128 and a random-weight full-size SD 1.5 UNet at 256x256 and
# 512x512, batch 2 (classifier-free guidance). Not a test: run it by hand, read the figures.
#   bash bench/run.sh [REF_DIR]      (SDC_BENCH_DIR caches the random SD 1.5 model, default /tmp/sdc-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/model.sh
run() { echo "== $*"; build/bin/bench_unet "$@"; echo; }
for m in tiny-sd1 tiny-sd2; do
  [ -d "$REF/$m" ] && run --model "$REF/$m" --latent 16 --batch 2 --steps 5
done
run --model "$SD15" --latent 32 --batch 2 --steps 2
run --model "$SD15" --latent 64 --batch 2 --steps 1
