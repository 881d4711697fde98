#!/usr/bin/env bash
# img2img.sh - what image-to-image and inpainting cost against text-to-image at the same steps, on one model.
#   bash bench/img2img.sh [MODEL_DIR] [SIZE] [STEPS]     (default: a random SD 1.5 in /tmp/sdc-bench-sd15, 256, 10)
# First `sdc bench-engine` on the model prints each stage (UNet step, VAE decode and encode) beside the peak
# measured in that run; then whole `sdc generate` runs, interleaved (txt2img, img2img at strength 1 and 0.5,
# 4-channel inpainting) so a noisy machine hits every kind alike, and the best of each with its ratio to
# text-to-image. Not a test: figures for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SDC=build/bin/sdc
MODEL=${1:-/tmp/sdc-bench-sd15}
SIZE=${2:-256}
STEPS=${3:-10}
ROUNDS=${ROUNDS:-2}
[ -e "$MODEL/model_index.json" ] || "$SDC" model-init --arch sd15 --out "$MODEL" --force >/dev/null
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$SDC" bench-engine --model "$MODEL" --width "$SIZE" --height "$SIZE" --runs 2
# an init image (a generated one) and a mask whose right half is repainted
"$SDC" generate --quiet --model "$MODEL" --prompt "a lighthouse" --width "$SIZE" --height "$SIZE" --steps 1 \
  --seed 1 --output "$TMP/init.png"
python3 - "$TMP/mask.png" "$SIZE" <<'PY'
import struct, sys, zlib
n = int(sys.argv[2])
row = b"\0" + bytes([0] * (n // 2) + [255] * (n - n // 2))  # filter byte, then 8-bit grey
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(row * n)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
MASK="$TMP/mask.png"
run() { # label, extra args...: prints generate seconds
  local label=$1; shift
  "$SDC" generate --quiet --json --model "$MODEL" --prompt "a lighthouse at dusk" --width "$SIZE" --height "$SIZE" \
    --steps "$STEPS" --seed 7 --output "$TMP/out.png" "$@" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["generate_ms"] / 1e3)' | sed "s/^/$label /"
}
for r in $(seq "$ROUNDS"); do
  run txt2img
  run img2img_s1.0 --init-image "$TMP/init.png" --strength 1.0
  run img2img_s0.5 --init-image "$TMP/init.png" --strength 0.5
  run inpaint4_s1.0 --init-image "$TMP/init.png" --mask "$MASK" --strength 1.0
done > "$TMP/times"
python3 - "$TMP/times" "$SIZE" "$STEPS" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    best[k] = min(best.get(k, 1e9), float(v))
base = best["txt2img"]
print(f"\nwhole generation, {sys.argv[2]}x{sys.argv[2]}, {sys.argv[3]} steps, best of the interleaved rounds:")
for k, v in best.items():
    print(f"  {k:16s} {v:8.2f} s   {v / base:5.2f}x text-to-image")
PY
