#!/usr/bin/env bash
# Resident memory of each stage worker after loading, on a full-size random SD 1.5 model
# (sdc model-init --arch sd15, fp16 files): each shard must hold only its own weights.
#   bash bench/shard_memory.sh [MODEL_DIR]     (default: $SDC_BENCH_DIR/sd15, created if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SDC_BENCH_DIR:-/tmp/sdc-bench}"
MODEL="${1:-$CACHE/sd15}"
[ -x build/bin/sdc-worker ] || bash scripts/setup.sh
if [ ! -f "$MODEL/unet/diffusion_pytorch_model.safetensors" ]; then
  build/bin/sdc model-init --arch sd15 --out "$MODEL" --dtype f16 --seed 0 --force # over a half-written one
fi
printf "%-28s %10s %10s\n" "worker --stage" "RSS MiB" "peak MiB"
for stage in text unet-down unet-mid unet-up vae unet-down,unet-mid,unet-up; do
  log=$(mktemp)
  # nothing listens at the coordinator address: the worker loads, then keeps trying to register
  build/bin/sdc-worker --stage "$stage" --model "$MODEL" --coordinator tcp://127.0.0.1:9 2>"$log" &
  pid=$!
  for _ in $(seq 1 600); do grep -q "serving" "$log" && break; sleep 0.5; done
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  printf "%-28s %10d %10d\n" "$stage" $((rss / 1024)) $((hwm / 1024))
  rm -f "$log"
done
