#!/usr/bin/env bash
# deploy/cluster-vs-generate.sh - images/minute of `sdc generate` (N images, one after another) against the
# single-machine `sdc cluster` driven with the same N jobs (same prompt, seeds, size, steps), on the same cores.
# The project's goal: the one-machine cluster keeps >= 95% of sdc generate's images/minute.
#
#   deploy/cluster-vs-generate.sh [--model DIR] [--jobs N] [--concurrency C] [--width W --height H] [--steps S]
#        [--wire f32|f16|bf16] [--threads T] [--cluster-threads "default 1 ..."]
#        [--out DIR]
#
# generate: every image is one process, so its wall time includes loading the model; "warm" subtracts a load
#   estimate, the wall time of `sdc inspect --model` (which loads every component as the engine does; second of
#   two runs, so the page cache is warm). The cluster's workers load before the load starts, so "warm" is the
#   fair comparison, "raw" is what a user looping over sdc generate gets.
# cluster: a redis-server on a free loopback port, `sdc cluster --redis ... --http-base P`, one warm-up job, then
#   the load through `sdc bench`; metrics scraped before and after give
#   the compute per image of each stage and the CPU seconds of every process per image.
# --threads T sets OMP_NUM_THREADS/OPENBLAS_NUM_THREADS for both sides; --cluster-threads runs the cluster once
#   per entry with that setting for its processes only ("default" = unset: each worker sizes OpenBLAS/OpenMP to
#   every core, so 5 workers on 2 cores run up to 10 compute threads).
# Prints a table and writes $OUT/compare.json (+ per-run folders). Exit 0 ok, 1 failure, 2 bad flags, 77 cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

MODEL="${SDC_REF:-../shared/ref}/tiny-sd1" JOBS=4 CONC=2 W=0 H=0 STEPS=10 WIRE=f32 THREADS="" CTHREADS="default"
OUT="/tmp/sdc-cluster-vs-generate-$$"
while (($#)); do
  case "$1" in
    --model) MODEL=${2-} ;; --jobs) JOBS=${2-} ;; --concurrency) CONC=${2-} ;; --width) W=${2-} ;; --height) H=${2-} ;;
    --steps) STEPS=${2-} ;; --wire) WIRE=${2-} ;; --threads) THREADS=${2-} ;; --cluster-threads) CTHREADS=${2-} ;;
    --out) OUT=${2-} ;;
    -h|--help) sed -n '5,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster-vs-generate: unknown flag '$1'" >&2; exit 2 ;;
  esac
  shift 2 || { echo "cluster-vs-generate: $1 needs a value" >&2; exit 2; }
done
SDC=$PWD/build/bin/sdc
[ -x "$SDC" ] || { echo "SKIP: $SDC not built" >&2; exit 77; }
command -v redis-server > /dev/null && command -v curl > /dev/null || { echo "SKIP: redis-server or curl missing" >&2; exit 77; }
[ -f "$MODEL/model_index.json" ] || [ -f "$MODEL" ] || { echo "SKIP: no model at $MODEL" >&2; exit 77; }
mkdir -p "$OUT"
[ -n "$THREADS" ] && export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
SIZE=(); ((W > 0)) && SIZE+=(--width "$W"); ((H > 0)) && SIZE+=(--height "$H")
TIMEFORMAT='%R %U %S'
log() { echo "cluster-vs-generate: $*" >&2; }

PIDS=()
cleanup() {
  local rc=$?; set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null; done
  for pid in "${PIDS[@]}"; do for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done; kill -KILL "$pid" 2> /dev/null; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- sdc generate ----------------------------------------------------------------------------------------------
{ time "$SDC" inspect --model "$MODEL" > /dev/null; } 2> /dev/null
LOAD=$({ time "$SDC" inspect --model "$MODEL" > /dev/null; } 2>&1 | awk '{ print $1 }')
: > "$OUT/generate.txt"
for ((i = 0; i < JOBS; i++)); do
  { time "$SDC" generate --model "$MODEL" --prompt "$NB_PROMPT" --seed $((1000 + i)) --steps "$STEPS" "${SIZE[@]}" \
      --quiet --output "$OUT/generate-$i.png" > /dev/null; } 2>> "$OUT/generate.txt"
done
read -r G_WALL G_CPU < <(awk '{ w += $1; c += $2 + $3 } END { printf "%.3f %.3f\n", w, c }' "$OUT/generate.txt")
G_IPM=$(awk -v n="$JOBS" -v w="$G_WALL" 'BEGIN { printf "%.4f", n * 60 / w }')
G_WARM=$(awk -v n="$JOBS" -v w="$G_WALL" -v l="$LOAD" 'BEGIN { x = w - n * l; printf "%.4f", (x > 0 ? n * 60 / x : 0) }')
log "generate: $JOBS images in $G_WALL s ($G_IPM images/min raw; load estimate $LOAD s each, $G_WARM warm)"

# --- sdc cluster, once per thread setting ---------------------------------------------------------------------
free_port() { local p; for _ in $(seq 50); do p=$((20000 + RANDOM % 30000)); ! (echo > "/dev/tcp/127.0.0.1/$p") 2> /dev/null && { echo "$p"; return; }; done; return 1; }
ROWS=""
for ct in $CTHREADS; do
  R="$OUT/cluster-threads-$ct"; mkdir -p "$R"; rm -f "$R"/metrics-*.txt
  RP=$(free_port); HP=$(free_port)
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no > "$R/redis.log" 2>&1 &
  PIDS+=($!); RPID=$!
  RC="redis-cli -p $RP"
  for _ in $(seq 50); do $RC PING > /dev/null 2>&1 && break; sleep 0.1; done
  CENV=(); [ "$ct" != default ] && CENV=(env "OMP_NUM_THREADS=$ct" "OPENBLAS_NUM_THREADS=$ct")
  "${CENV[@]}" "$SDC" cluster --model "$MODEL" --redis "redis://127.0.0.1:$RP" --wire "$WIRE" --http-base "$HP" \
    > "$R/cluster.out" 2> "$R/cluster.log" &
  PIDS+=($!); CPID=$!
  t0=$(nb_now_ms)
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/readyz")" = 200 ]; do
    kill -0 "$CPID" 2> /dev/null || { log "sdc cluster exited: $(tail -3 "$R/cluster.log")"; exit 1; }
    (($(nb_now_ms) - t0 > 300000)) && { log "cluster not ready after 300 s"; exit 1; }
    sleep 0.2
  done
  mkdir -p "$R/warmup"; nb_run_load "$R/warmup" "$SDC" "redis://127.0.0.1:$RP" "" 1 1 "$W" "$H" "$STEPS"
  URLS=(); for i in 0 1 2 3 4 5; do URLS+=("http://127.0.0.1:$((HP + i))/metrics"); done
  for i in "${!URLS[@]}"; do nb_scrape "" "${URLS[$i]}" "$R/metrics-before-$i.txt"; done
  nb_run_load "$R" "$SDC" "redis://127.0.0.1:$RP" "" "$JOBS" "$CONC" "$W" "$H" "$STEPS" "${URLS[@]}"
  for i in "${!URLS[@]}"; do nb_scrape "" "${URLS[$i]}" "$R/metrics-after-$i.txt"; done
  for i in "${!URLS[@]}"; do nb_delta "$R/metrics-before-$i.txt" "$R/metrics-after-$i.txt"; done > "$R/deltas.txt"
  kill -TERM "$CPID"; wait "$CPID" 2> /dev/null || true
  kill -TERM "$RPID"; wait "$RPID" 2> /dev/null || true
  PIDS=()
  IMG=$(nb_get images "$R/driver.txt") C_IPM=$(nb_get images_per_minute "$R/driver.txt")
  [ "$(nb_get not_done "$R/driver.txt")" = 0 ] || { log "cluster: some jobs did not finish (threads $ct)"; exit 1; }
  read -r COMP CPU < <(awk -v n="$IMG" '$1 ~ /^sdc_stage_compute_seconds_total/ { c += $2 } $1 == "process_cpu_seconds_total" { p += $2 }
                                       END { printf "%.4f %.4f\n", c / n, p / n }' "$R/deltas.txt")
  ROWS+="$ct $C_IPM $COMP $CPU $(nb_get latency_p50_s "$R/driver.txt") $(nb_get driver "$R/driver.txt")"$'\n'
  log "cluster (threads $ct): $C_IPM images/min"
done

# --- the table ------------------------------------------------------------------------------------------------
awk -v n="$JOBS" -v conc="$CONC" -v steps="$STEPS" -v W="$W" -v H="$H" -v wire="$WIRE" -v model="$MODEL" \
    -v gw="$G_WALL" -v gc="$G_CPU" -v gi="$G_IPM" -v gwarm="$G_WARM" -v load="$LOAD" -v threads="${THREADS:-default}" \
    -v json="$OUT/compare.json" -v cores="$(nproc)" '
NF >= 5 { r[++k] = $0 }
END {
  printf "cluster vs generate: %s, %d images, %dx%d (0 = native), %d steps, wire %s, %d cores, threads %s\n", model, n, W, H, steps, wire, cores, threads
  printf "  sdc generate      %9.3f images/min raw (%.2f s wall, %.3f CPU s/image)   %9.3f warm (load estimate %.3f s/process)\n", gi, gw, gc / n, gwarm, load
  printf "{\"config\": {\"model\": \"%s\", \"jobs\": %d, \"concurrency\": %d, \"width\": %d, \"height\": %d, \"steps\": %d, \"wire\": \"%s\", \"cores\": %d, \"threads\": \"%s\"},\n", model, n, conc, W, H, steps, wire, cores, threads > json
  printf " \"generate\": {\"wall_s\": %s, \"cpu_s_per_image\": %s, \"images_per_minute_raw\": %s, \"load_estimate_s\": %s, \"images_per_minute_warm\": %s},\n \"cluster\": [", gw, gc / n, gi, load, gwarm > json
  for (i = 1; i <= k; i++) {
    split(r[i], f, " ")
    printf "  sdc cluster (C=%d, worker threads %s) %9.3f images/min   = %5.1f%% of raw, %5.1f%% of warm   (stage compute %.3f s/image, CPU of all processes %.3f s/image, latency p50 %.3f s, driver %s)\n", conc, f[1], f[2], 100 * f[2] / gi, (gwarm > 0 ? 100 * f[2] / gwarm : 0), f[3], f[4], f[5], f[6]
    printf "%s\n  {\"threads\": \"%s\", \"images_per_minute\": %s, \"ratio_raw\": %.4f, \"ratio_warm\": %.4f, \"stage_compute_s_per_image\": %s, \"cpu_s_per_image\": %s, \"latency_p50_s\": %s, \"driver\": \"%s\"}", (i > 1 ? "," : ""), f[1], f[2], f[2] / gi, (gwarm > 0 ? f[2] / gwarm : 0), f[3], f[4], f[5], f[6] > json
  }
  printf "\n ]}\n" > json
  print "  goal: cluster >= 95% of generate (warm)"
}' <<< "$ROWS" | tee "$OUT/summary.txt"
echo "results: $OUT/compare.json"
