#!/usr/bin/env bash
# The figures of docs/performance.md, in one go: sdc bench-engine on a random-weight SD 1.5 (fp16 files)
# in fp32 at 256^2 and 512^2 and in bf16 at 512^2 (with the bf16-vs-fp32 PSNR of the reference
# pipelines), fp32 256^2 capped at AVX2, then the peak RSS of a whole 512^2 generation in each precision. Every bench-engine run
# measures the machine's peak beside its stages: compare efficiencies, not seconds, across runs.
# Not a test; takes ~15 minutes. bench/peers.sh puts the peers beside it.
#   bash bench/engine.sh [REF_DIR]      (SDC_BENCH_DIR caches the model, default /tmp/sdc-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/model.sh
M="$SD15"
build/bin/sdc --version
echo "== the peak, five times in a row (the yardstick must hold still: under 10% spread)"
PEAK_PREC=fp32; build/bin/sdc --version | grep -q "bf16 available" && PEAK_PREC=bf16
for i in 1 2 3 4 5; do build/bin/sdc bench-engine --peak-only --precision "$PEAK_PREC"; done
echo "== fp32 256x256"
build/bin/sdc bench-engine --model "$M" --width 256 --height 256 --runs 5 --precision fp32
echo "== fp32 512x512"
build/bin/sdc bench-engine --model "$M" --width 512 --height 512 --runs 3 --precision fp32
echo "== fp32 256x256 capped at AVX2 (SDC_ISA=avx2: what an AVX2-only CPU runs)"
SDC_ISA=avx2 build/bin/sdc bench-engine --model "$M" --width 256 --height 256 --runs 2 --precision fp32
echo "== bf16 512x512"
if [ -f "$REF/goldens.json" ]; then
  build/bin/sdc bench-engine --model "$M" --width 512 --height 512 --runs 5 --precision bf16 --ref "$REF"
else
  build/bin/sdc bench-engine --model "$M" --width 512 --height 512 --runs 5 --precision bf16
fi
for p in bf16 fp32; do
  echo "== sdc generate 512x512, 2 steps, $p: peak RSS"
  /usr/bin/time -f "peak RSS %M KiB, %e s" build/bin/sdc generate --model "$M" --prompt "a lighthouse at dusk" \
    --width 512 --height 512 --steps 2 --seed 1 --precision "$p" --quiet --output "$CACHE/rss-$p.png"
done
