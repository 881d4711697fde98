#!/bin/bash
# bench/peers.sh - one SD UNet step (batch 2 = CFG, fp32) in sdcluster and in the peers that are installed,
# interleaved on the same weights, with each engine's time over sdcluster's: the environment as set, and
# again with OPENBLAS_* unset (the variable this machine's image sets changes OpenBLAS's kernel).
#
# usage: bash bench/peers.sh [--model DIR] [--sizes "256 512"] [--rounds 2] [--runs 3]
#   --model  a diffusers SD 1.x/2.x folder (default: a random SD 1.5 made once with sdc model-init)
# Peers, each run only when found:
#   diffusers + PyTorch: `python3 -c 'import torch, diffusers'` works ($PYTHON, python3 or /usr/bin/python3;
#                        PYTHONPATH may point at a diffusers source tree); timed by bench/peer_torch.py
#   stable-diffusion.cpp: its CLI in $SDCPP (or sd-cli / sd on PATH); per-step times from its log,
#                        step 1 left out (it includes loading); its convolutions run in f16
# Prints a table (minimum seconds per step over all rounds, and the ratio to sdcluster as set) and
# writes it to $OUT/peers.md (OUT default: /tmp/sdc-peers-run-<time>).
set -u
cd "$(dirname "$0")/.."
MODEL=""; SIZES="256 512"; ROUNDS=2; RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/peers.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
SDC=${SDC:-build/bin/sdc}
[ -x "$SDC" ] || { echo "bench/peers.sh: $SDC not found: build first (bash scripts/setup.sh)" >&2; exit 2; }
OUT=${OUT:-/tmp/sdc-peers-run-$(date +%Y%m%d-%H%M%S)}; mkdir -p "$OUT"
if [ -z "$MODEL" ]; then
  MODEL=/tmp/sdc-bench-sd15
  [ -f $MODEL/unet/diffusion_pytorch_model.safetensors ] || "$SDC" model-init --arch sd15 --out $MODEL --force >/dev/null
fi
THREADS=$(nproc)
# the first Python that imports both: $PYTHON, python3 on PATH, or Debian's (python3-torch) when PATH has another
HAVE_TORCH=0
for PY in ${PYTHON:-} python3 /usr/bin/python3; do
  "$PY" -c 'import torch, diffusers' 2>/dev/null && { HAVE_TORCH=1; break; }
done
SDCPP=${SDCPP:-$(command -v sd-cli || command -v sd || true)}
HAVE_SDCPP=0; [ -n "$SDCPP" ] && [ -x "$SDCPP" ] && HAVE_SDCPP=1
echo "model $MODEL, $THREADS threads, $ROUNDS rounds; $("$SDC" --version | tail -1)"
echo "peers: diffusers+torch $([ $HAVE_TORCH = 1 ] && echo found || echo 'not found (skipped)'), stable-diffusion.cpp $([ $HAVE_SDCPP = 1 ] && echo "$SDCPP" || echo 'not found (skipped; set SDCPP)')"
RES=$OUT/results.tsv; : > "$RES"   # engine size seconds
noenv() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }
sdc_step() {  # label size [env wrapper...]
  local label=$1 size=$2; shift 2
  "$@" "$SDC" bench-engine --model "$MODEL" --width "$size" --height "$size" --runs "$RUNS" --json > "$OUT/$label-$size.json" 2>"$OUT/$label-$size.err" &&
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["stages"]["unet_step"]["min_s"], j["peak_gflops"])' "$OUT/$label-$size.json"
}
for round in $(seq 1 "$ROUNDS"); do
  for size in $SIZES; do
    r=$(sdc_step sdc "$size") && [ -n "$r" ] && echo -e "sdcluster fp32, env as set\t$size\t${r%% *}" >> "$RES"
    r=$(sdc_step sdc-noenv "$size" noenv) && [ -n "$r" ] && echo -e "sdcluster fp32, OPENBLAS_* unset\t$size\t${r%% *}" >> "$RES"
    if [ $HAVE_TORCH = 1 ]; then
      t=$("$PY" bench/peer_torch.py "$MODEL" "$size" "$RUNS" "$THREADS" 2>"$OUT/torch-$size.err" | tail -1)
      [ -n "$t" ] && echo -e "diffusers+torch fp32, env as set\t$size\t$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["min_s"])' "$t")" >> "$RES"
      t=$(noenv "$PY" bench/peer_torch.py "$MODEL" "$size" "$RUNS" "$THREADS" 2>"$OUT/torch-noenv-$size.err" | tail -1)
      [ -n "$t" ] && echo -e "diffusers+torch fp32, OPENBLAS_* unset\t$size\t$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["min_s"])' "$t")" >> "$RES"
    fi
    if [ $HAVE_SDCPP = 1 ]; then
      "$SDCPP" -m "$MODEL" -p "a photo of a cat" -W "$size" -H "$size" --steps 4 --cfg-scale 7.5 -t "$THREADS" \
        --type f32 -s 0 -o "$OUT/sdcpp-$size.png" -v > "$OUT/sdcpp-$size.log" 2>&1
      s=$(python3 -c '
import re, sys
steps = [float(v) if u == "s/it" else 1 / float(v)
         for i, v, u in re.findall(r"(\d+)/\d+ - ([\d.]+)(s/it|it/s)", open(sys.argv[1], errors="replace").read())
         if int(i) >= 2]
print(min(steps) if steps else "")' "$OUT/sdcpp-$size.log")
      [ -n "$s" ] && echo -e "stable-diffusion.cpp f32 file (f16 convs)\t$size\t$s" >> "$RES"
    fi
  done
done
python3 - "$RES" "$SIZES" <<'PY' | tee "$OUT/peers.md"
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    eng, size, s = line.rstrip("\n").split("\t")
    rows.setdefault(eng, {}).setdefault(int(size), []).append(float(s))
sizes = [int(x) for x in sys.argv[2].split()]
ref = rows.get("sdcluster fp32, env as set", {})
print("| engine | " + " | ".join("%d² s/step (x sdcluster)" % s for s in sizes) + " |")
print("|---|" + "---|" * len(sizes))
for eng, by in rows.items():
    cells = []
    for s in sizes:
        if s not in by: cells.append("-"); continue
        m = min(by[s]); r = min(ref[s]) if s in ref else None
        cells.append("%.2f (%.2fx)" % (m, m / r) if r else "%.2f" % m)
    print("| %s | %s |" % (eng, " | ".join(cells)))
PY
echo "(minimum over $ROUNDS rounds of $RUNS runs; raw figures in $OUT)"
