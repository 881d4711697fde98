#!/usr/bin/env bash
# Peak resident memory (VmHWM) of each cluster process after serving one job of a given size: what a
# Kubernetes memory limit must hold (k8s/README.md's requests and limits come from this).
#   bash bench/shard_peak.sh [--model DIR] [--size 512] [--steps 1] [--precision fp32|bf16]
# Default model: $SDC_BENCH_DIR/sd15 (a full-size random SD 1.5 from sdc model-init, created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SDC_BENCH_DIR:-/tmp/sdc-bench}"
MODEL="$CACHE/sd15" SIZE=512 STEPS=1 PREC=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --precision) PREC=$2; shift 2 ;;
    *) echo "shard_peak.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x build/bin/sdc ] || bash scripts/setup.sh
if [ ! -f "$MODEL/model_index.json" ]; then
  build/bin/sdc model-init --arch sd15 --out "$MODEL" --dtype f16 --seed 0 --force # over a half-written one
fi
tmp=$(mktemp -d)
cleanup() {
  [ -n "${cpid:-}" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  [ -n "${rpid:-}" ] && kill "$rpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
port=$(( (RANDOM % 20000) + 30000 ))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
rpid=$!
url="redis://127.0.0.1:$port"
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
build/bin/sdc cluster --model "$MODEL" --redis "$url" --precision "$PREC" >/dev/null 2>"$tmp/cluster.log" &
cpid=$!
t0=$(date +%s)
id=$(build/bin/sdc submit --redis "$url" --prompt "peak memory" --width "$SIZE" --height "$SIZE" --steps "$STEPS" --seed 1)
build/bin/sdc wait "$id" --redis "$url" --output "$tmp/out.png" >/dev/null
echo "model $MODEL, ${SIZE}x${SIZE}, $STEPS step(s), $PREC: job done in $(( $(date +%s) - t0 )) s (loading included)"
printf "%-32s %10s %10s\n" "process" "RSS MiB" "peak MiB"
for pid in $(pgrep -P "$cpid"); do
  args=$(tr '\0' ' ' < "/proc/$pid/cmdline")
  name=$(echo "$args" | sed -n 's/.*--stage \([^ ]*\).*/\1/p')
  [ -n "$name" ] || name=$(basename "$(echo "$args" | cut -d' ' -f1)")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  printf "%-32s %10d %10d\n" "$name" $((rss / 1024)) $((hwm / 1024))
done
