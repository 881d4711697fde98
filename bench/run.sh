#!/usr/bin/env bash
# Engine benchmark: UNet seconds per step and peak memory, beside the sgemm peak measured in the same
# process. Tiny reference models at 128x128 and a random-weight full-size SD 1.5 UNet at 256x256 and
# 512x512, batch 2 (classifier-free guidance). Not a test: run it by hand, read the figures.
#   bash bench/run.sh [REF_DIR]      (SDC_BENCH_DIR caches the random SD 1.5 model, default /tmp/sdc-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
REF="${1:-${SDC_REF:-../shared/ref}}"
CACHE="${SDC_BENCH_DIR:-/tmp/sdc-bench}"
[ -x build/bin/bench_unet ] || bash scripts/setup.sh
mkdir -p "$CACHE"
if [ ! -f "$CACHE/sd15/unet/diffusion_pytorch_model.safetensors" ]; then
  build/bin/sdc model-init --arch sd15 --out "$CACHE/sd15" --dtype f16 --seed 0
fi
run() { echo "== $*"; build/bin/bench_unet "$@"; echo; }
for m in tiny-sd1 tiny-sd2; do
  [ -d "$REF/$m" ] && run --model "$REF/$m" --latent 16 --batch 2 --steps 5
done
run --model "$CACHE/sd15" --latent 32 --batch 2 --steps 2
run --model "$CACHE/sd15" --latent 64 --batch 2 --steps 1
