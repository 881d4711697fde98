#!/usr/bin/env bash
# deploy/netns-bench.sh - a K-node sdcluster on one machine, each node a network namespace, to measure what the
# network costs: bytes and time per hop, fp32 vs f16 on the wire, the coordinator's own CPU per step, Redis per job.
#
#   sudo deploy/netns-bench.sh [--nodes K] [--rate 1gbit|10gbit|none] [--delay-ms 0.2] [--wire f32|f16|bf16]
#        [--model DIR] [--jobs N] [--concurrency C] [--width W --height H --steps S] [--threads T]
#        [--max-jobs N] [--warmup N] [--ready-timeout S] [--out DIR]
#
# Topology: K namespaces sdcnb<pid>n0..n<K-1> ("nodes", eth0 = 10.77.0.<i+1>/24) and one more, sdcnb<pid>br, that
# holds only a Linux bridge br0 (the "switch"); node i's eth0 is a veth whose peer p<i> is a bridge port. Nothing
# is added to the root namespace, so the addresses cannot clash with the host's. Shaping: a tbf qdisc of --rate on
# both ends of every veth (node egress = its uplink, port egress = its downlink: a full-duplex switch port). Delay:
# netem (--delay-ms one way, on each node's egress, so every node-to-node hop gets it once); when the kernel has no
# netem (this sandbox) the run says so and records "delay: not applied (no netem)". Nothing fakes it.
# Node 0 runs redis-server, sdc-coordinator and the load driver; stage s of (text, unet-down, unet-mid, unet-up, vae)
# runs on node 1 + s mod (K-1), each worker its own process with --http on its node's address. With K=3 the UNet's
# every hop (coordinator>down, down>mid, mid>up, up>coordinator) crosses the bridge. K=2 puts every worker on node 1.
# Load: `sdc bench` (deploy/lib.sh's nb_run_load). Every ZeroMQ link is CURVE-encrypted (keys from `sdc keygen`
# in --out/keys, one per process), as in a deployment.
# Metrics of every process are scraped before and after the load (after --warmup jobs, which are not counted).
#
# Writes to --out (default /tmp/sdc-netns-bench-<pid>): results.json, summary.txt (also printed), jobs.csv,
# metrics-{before,after}-<who>.txt, redis-{before,after}.txt, logs/. Exit 0 ok, 1 failure, 2 bad flags,
# 77 cannot run here (not root / no `ip netns`, redis-server, the binaries or the model missing).
#
# Derived figures (results.json):
#   images_per_minute, latency p50/p95     from the driver (server clocks: created_ms .. finished_ms)
#   links.<l>.bytes_per_image              sum of sdc_link_bytes_total{link=l,direction="sent"} deltas / images
#   links.<l>.wire_s_per_request           bytes per request x 8 / --rate (serialisation alone)
#   stages.<s>.mean_service_s              sdc_stage_compute_seconds_total / sdc_stage_requests_total (deltas)
#   hops.<g>.network_queue_s               mean sdc_step_latency_seconds{stage=g} - the compute of its stages:
#                                          what the network, the (de)serialisation and queueing cost per request
#   hops.<g>.per_hop_s                     that / hops per request (unet 4: c>down, down>mid, mid>up, up>c; text, vae 2)
#   coordinator.cpu_s_per_step             coordinator process_cpu_seconds_total delta / unet model calls
#   redis.commands_per_job_cluster         commandstats deltas less sdc bench's submissions, per job (its polling included)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

K=3 RATE=1gbit DELAY=0.2 WIRE=f32 MODEL="${SDC_REF:-../shared/ref}/tiny-sd1" JOBS=8 CONC=2 W=0 H=0 STEPS=10
THREADS="" MAXJOBS=8 WARMUP=1 READY_S=300 OUT="/tmp/sdc-netns-bench-$$"
usage() { sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --nodes) K=${2-} ;; --rate) RATE=${2-} ;; --delay-ms) DELAY=${2-} ;; --wire) WIRE=${2-} ;; --model) MODEL=${2-} ;;
    --jobs) JOBS=${2-} ;; --concurrency) CONC=${2-} ;; --width) W=${2-} ;; --height) H=${2-} ;; --steps) STEPS=${2-} ;;
    --threads) THREADS=${2-} ;; --max-jobs) MAXJOBS=${2-} ;; --warmup) WARMUP=${2-} ;;
    --ready-timeout) READY_S=${2-} ;; --out) OUT=${2-} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "netns-bench: unknown flag '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift 2 || { echo "netns-bench: $1 needs a value" >&2; exit 2; }
done
[[ $K =~ ^[0-9]+$ ]] && ((K >= 2 && K <= 200)) || { echo "netns-bench: --nodes must be 2..200" >&2; exit 2; }
case "$RATE" in none) RATE_BPS=0 ;; *[0-9]gbit) RATE_BPS=$((${RATE%gbit} * 1000000000)) ;;
  *[0-9]mbit) RATE_BPS=$((${RATE%mbit} * 1000000)) ;; *) echo "netns-bench: --rate: NNgbit, NNmbit or none" >&2; exit 2 ;; esac
case "$WIRE" in f32|f16|bf16) ;; *) echo "netns-bench: --wire f32|f16|bf16" >&2; exit 2 ;; esac

SDC=$PWD/build/bin/sdc COORD=$PWD/build/bin/sdc-coordinator WORKER=$PWD/build/bin/sdc-worker
for b in "$SDC" "$COORD" "$WORKER"; do [ -x "$b" ] || { echo "SKIP: $b not built" >&2; exit 77; }; done
command -v redis-server > /dev/null && command -v redis-cli > /dev/null || { echo "SKIP: redis-server/redis-cli missing" >&2; exit 77; }
command -v curl > /dev/null || { echo "SKIP: curl missing" >&2; exit 77; }
[ -f "$MODEL/model_index.json" ] || [ -f "$MODEL" ] || { echo "SKIP: no model at $MODEL" >&2; exit 77; }
MODEL=$(cd "$(dirname "$MODEL")" && echo "$PWD/$(basename "$MODEL")")

P="sdcnb$$" BR="sdcnb$$br"
ns() { echo "${P}n$1"; }
ip4() { echo "10.77.0.$(($1 + 1))"; }
PIDS=() NSS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null; done
  for _ in $(seq 50); do
    local alive=0; for pid in "${PIDS[@]}"; do kill -0 "$pid" 2> /dev/null && alive=1; done
    ((alive)) || break; sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2> /dev/null; done
  for n in "${NSS[@]}"; do # anything else still inside a namespace this script made was started by it
    for pid in $(ip netns pids "$n" 2> /dev/null); do kill -KILL "$pid" 2> /dev/null; done
    ip netns del "$n" 2> /dev/null
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$BR" 2> /dev/null; then echo "SKIP: cannot create network namespaces (ip netns add: not root?)" >&2; exit 77; fi
NSS+=("$BR")
mkdir -p "$OUT/logs"
rm -f "$OUT"/metrics-*.txt "$OUT"/redis-*.txt "$OUT"/jobs.csv "$OUT"/bench.json
log() { echo "netns-bench: $*" >&2; }

# --- the network ----------------------------------------------------------------------------------------------
ip -n "$BR" link set lo up
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
BURST=$((RATE_BPS / 8 / 1000)); ((BURST < 131072)) && BURST=131072 # >= 1 ms at the rate and >= two 64 KiB GSO frames
DELAY_NOTE="none"
NETEM=0
if awk -v d="$DELAY" 'BEGIN { exit !(d > 0) }'; then DELAY_NOTE="not applied (no netem)"; fi
for ((i = 0; i < K; i++)); do
  n=$(ns "$i"); ip netns add "$n"; NSS+=("$n")
  ip -n "$n" link set lo up
  ip -n "$n" link add eth0 type veth peer name "p$i" netns "$BR"
  ip -n "$n" addr add "$(ip4 "$i")/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$BR" link set "p$i" master br0 up
  parent="root"
  if [ "$DELAY_NOTE" != none ]; then
    if ((i == 0)) && tc -n "$n" qdisc add dev eth0 root handle 1: netem delay "${DELAY}ms" 2> "$OUT/logs/netem.err"; then
      NETEM=1 DELAY_NOTE="${DELAY} ms one way per hop (netem)"
    elif ((NETEM)); then tc -n "$n" qdisc add dev eth0 root handle 1: netem delay "${DELAY}ms"; fi
    ((NETEM)) && parent="parent 1:"
  fi
  if ((RATE_BPS > 0)); then
    tc -n "$n" qdisc add dev eth0 $parent handle 10: tbf rate "$RATE" burst "$BURST" latency 100ms
    tc -n "$BR" qdisc add dev "p$i" root handle 10: tbf rate "$RATE" burst "$BURST" latency 100ms
  fi
done
if [ "$DELAY_NOTE" = "not applied (no netem)" ]; then
  log "delay ${DELAY} ms requested but this kernel has no netem ($(head -c 200 "$OUT/logs/netem.err" | tr '\n' ' ')): delay: not applied (no netem)"
fi
log "$K nodes on bridge br0 in namespace $BR; links: rate $RATE (tbf burst $BURST B), delay: $DELAY_NOTE"

# --- the processes --------------------------------------------------------------------------------------------
N0=$(ns 0) A0=$(ip4 0)
start() { # name ns cmd...
  local name=$1 n=$2; shift 2
  ip netns exec "$n" "$@" > "$OUT/logs/$name.log" 2>&1 &
  PIDS+=($!)
}
start redis "$N0" redis-server --bind "$A0" --port 6379 --save "" --appendonly no --protected-mode no
RC="ip netns exec $N0 redis-cli -h $A0 -p 6379"
for _ in $(seq 50); do $RC PING > /dev/null 2>&1 && break; sleep 0.1; done
$RC PING > /dev/null || { log "redis-server did not start: $(tail -3 "$OUT/logs/redis.log")"; exit 1; }
# CURVE on every ZeroMQ link, as deployed (docs/security.md): a key per process; the binds are not loopback
STAGES=(text unet-down unet-mid unet-up vae)
KEYS="$OUT/keys" KNAMES=(--name coordinator)
for s in "${!STAGES[@]}"; do KNAMES+=(--name "${STAGES[$s]}-n$((1 + s % (K - 1)))"); done
"$SDC" keygen --out "$KEYS" "${KNAMES[@]}" > /dev/null || { log "sdc keygen failed"; exit 1; }
start coordinator "$N0" "$COORD" --model "$MODEL" --redis "redis://$A0:6379" --bind "tcp://$A0:5555" \
  --wire "$WIRE" --max-jobs "$MAXJOBS" --http "$A0:9100" --id coordinator \
  --curve-key "$KEYS/coordinator.key" --curve-authorized "$KEYS/authorized"
ENDPOINTS=("coordinator http://$A0:9100/metrics")
LAYOUT=""
WENV=(); [ -n "$THREADS" ] && WENV=(env "OMP_NUM_THREADS=$THREADS" "OPENBLAS_NUM_THREADS=$THREADS")
for s in "${!STAGES[@]}"; do
  st=${STAGES[$s]} node=$((1 + s % (K - 1))); a=$(ip4 "$node")
  start "$st" "$(ns "$node")" "${WENV[@]}" "$WORKER" --stage "$st" --model "$MODEL" --coordinator "tcp://$A0:5555" \
    --bind "tcp://$a:$((7000 + s))" --id "$st-n$node" --http "$a:$((9101 + s))" \
    --curve-key "$KEYS/$st-n$node.key" --curve-authorized "$KEYS/authorized"
  ENDPOINTS+=("$st http://$a:$((9101 + s))/metrics")
  LAYOUT+="${LAYOUT:+ }$st@n$node"
done
log "layout: redis, coordinator, driver @n0; $LAYOUT"
t_ready=$(nb_now_ms)
until [ "$(ip netns exec "$N0" curl -s -o /dev/null -w '%{http_code}' "http://$A0:9100/readyz")" = 200 ]; do
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2> /dev/null || { log "a process exited early; logs in $OUT/logs"; tail -n 3 "$OUT"/logs/*.log >&2; exit 1; }; done
  (($(nb_now_ms) - t_ready > READY_S * 1000)) && { log "coordinator not ready after ${READY_S}s: $(ip netns exec "$N0" curl -s "http://$A0:9100/readyz")"; exit 1; }
  sleep 0.2
done
log "ready after $(($(nb_now_ms) - t_ready)) ms"

# --- the load -------------------------------------------------------------------------------------------------
if ((WARMUP > 0)); then
  mkdir -p "$OUT/warmup"
  nb_run_load "$OUT/warmup" "$SDC" "redis://$A0:6379" "ip netns exec $N0" "$WARMUP" "$WARMUP" "$W" "$H" "$STEPS"
fi
scrape_all() { # before|after
  for e in "${ENDPOINTS[@]}"; do nb_scrape "ip netns exec $N0" "${e#* }" "$OUT/metrics-$1-${e%% *}.txt"; done
  { $RC INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ { print "redis_cmd_" substr($1, 9), $3 }'
    $RC INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { print "redis_" $1, $2 }'; } > "$OUT/redis-$1.txt"
}
scrape_all before
URLS=(); for e in "${ENDPOINTS[@]}"; do URLS+=("${e#* }"); done
log "load: $JOBS jobs at concurrency $CONC, ${W}x${H} (0 = native), $STEPS steps, wire $WIRE"
nb_run_load "$OUT" "$SDC" "redis://$A0:6379" "ip netns exec $N0" "$JOBS" "$CONC" "$W" "$H" "$STEPS" "${URLS[@]}"
scrape_all after

# --- the figures ----------------------------------------------------------------------------------------------
{
  for e in "${ENDPOINTS[@]}"; do w=${e%% *}; nb_delta "$OUT/metrics-before-$w.txt" "$OUT/metrics-after-$w.txt" | sed "s/^/$w /"; done
  nb_delta "$OUT/redis-before.txt" "$OUT/redis-after.txt" | sed 's/^/redis /'
  sed 's/^/driver /' "$OUT/driver.txt"
} > "$OUT/deltas.txt"
DRV=$(nb_get driver "$OUT/driver.txt")
awk -v K="$K" -v rate="$RATE" -v rate_bps="$RATE_BPS" -v delay_ms="$DELAY" -v delay_note="$DELAY_NOTE" -v wire="$WIRE" \
    -v model="$MODEL" -v jobs="$JOBS" -v conc="$CONC" -v W="$W" -v H="$H" -v steps="$STEPS" -v threads="${THREADS:-default}" \
    -v layout="$LAYOUT" -v cores="$(nproc)" -v drvname="$DRV" -v sumf="$OUT/summary.txt" '
function lab(s, name,  m) { if (match(s, name "=\"[^\"]*\"")) return substr(s, RSTART + length(name) + 2, RLENGTH - length(name) - 3); return "" }
function num(x) { return (x == "" || x != x + 0) ? "null" : sprintf("%.6g", x) }
$1 == "driver" { drv[$2] = $3; next }
$1 == "redis" { if ($2 ~ /^redis_cmd_/) { c = substr($2, 11); rcmd[c] += $3; rtot += $3 } else rcpu += $3; next }
{ who = $1; key = $2; v = $3 }
key ~ /^sdc_link_bytes_total/ && lab(key, "direction") == "sent" { lb[lab(key, "link")] += v; next }
who == "coordinator" && key ~ /^sdc_step_latency_seconds_sum/ { rs[lab(key, "stage")] += v; next }
who == "coordinator" && key ~ /^sdc_step_latency_seconds_count/ { rn[lab(key, "stage")] += v; next }
who == "coordinator" && key == "process_cpu_seconds_total" { ccpu = v; next }
who == "coordinator" && key ~ /^sdc_jobs_total/ && lab(key, "state") == "done" { cdone = v; next }
key == "process_cpu_seconds_total" { wcpu += v; next }
key ~ /^sdc_stage_compute_seconds_total/ { comp[lab(key, "stage")] += v; next }
key ~ /^sdc_stage_requests_total/ { req[lab(key, "stage")] += v; next }
END {
  img = drv["images"] + 0; nj = img > 0 ? img : 1
  split("text unet-down unet-mid unet-up vae", S, " ")
  for (i = 1; i <= 5; i++) svc[S[i]] = req[S[i]] > 0 ? comp[S[i]] / req[S[i]] : ""
  group["text"] = "text"; group["vae"] = "vae"; group["unet-down"] = "unet"; group["unet-mid"] = "unet"; group["unet-up"] = "unet"
  gc["text"] = svc["text"]; gc["vae"] = svc["vae"]; gc["unet"] = svc["unet-down"] + svc["unet-mid"] + svc["unet-up"]
  hops["text"] = 2; hops["vae"] = 2; hops["unet"] = 4
  # client commands: only sdc bench'"'"'s EVAL submissions (XADD + 3 HSETNX inside) are known, so its polling
  # stays in: an overcount, said in "redis_note"
  other = rcmd["info"] + rcmd["ping"] + rcmd["command"]
  clus = rtot - other - (rcmd["eval"] + rcmd["evalsha"]) * 5; rnote = "approximate: sdc bench polling included"
  printf "{\n  \"config\": {\"nodes\": %d, \"rate\": \"%s\", \"delay_ms\": %s, \"delay\": \"%s\", \"wire\": \"%s\", \"model\": \"%s\", \"jobs\": %d, \"concurrency\": %d, \"width\": %d, \"height\": %d, \"steps\": %d, \"threads\": \"%s\", \"cores\": %d, \"layout\": \"%s\", \"driver\": \"%s\"},\n",
    K, rate, num(delay_ms), delay_note, wire, model, jobs, conc, W, H, steps, threads, cores, layout, drvname
  printf "  \"images\": %d, \"not_done\": %d, \"wall_s\": %s, \"images_per_minute\": %s, \"latency_p50_s\": %s, \"latency_p95_s\": %s,\n",
    img, drv["not_done"], num(drv["wall_s"]), num(drv["images_per_minute"]), num(drv["latency_p50_s"]), num(drv["latency_p95_s"])
  printf "  \"model_calls_per_image\": %s,\n", num(rn["unet"] / nj)
  printf "  \"stages\": {"; sep = ""
  for (i = 1; i <= 5; i++) { printf "%s\n    \"%s\": {\"requests\": %d, \"compute_s\": %s, \"mean_service_s\": %s}", sep, S[i], req[S[i]], num(comp[S[i]]), num(svc[S[i]]); sep = "," }
  printf "\n  },\n  \"links\": {"; sep = ""
  n = 0; for (l in lb) L[++n] = l
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (L[j] < L[i]) { t = L[i]; L[i] = L[j]; L[j] = t }
  for (i = 1; i <= n; i++) {
    l = L[i]; split(l, e, ">"); st = e[1] == "coordinator" ? e[2] : e[1]; g = group[st]
    per = rn[g] > 0 ? lb[l] / rn[g] : ""
    printf "%s\n    \"%s\": {\"bytes\": %.0f, \"bytes_per_image\": %s, \"bytes_per_request\": %s, \"wire_s_per_request\": %s}", sep, l, lb[l], num(lb[l] / nj), num(per), (rate_bps > 0 && per != "") ? num(per * 8 / rate_bps) : "null"; sep = ","
    bpi += lb[l] / nj
    linesum = linesum sprintf("  %-22s %12.0f B/image %12.0f B/request%s\n", l, lb[l] / nj, per, (rate_bps > 0 && per != "") ? sprintf("  %8.3f ms wire at %s", per * 8 / rate_bps * 1000, rate) : "")
  }
  printf "\n  },\n  \"bytes_per_image_all_links\": %s,\n  \"hops\": {", num(bpi); sep = ""
  split("text unet vae", G, " ")
  for (i = 1; i <= 3; i++) { g = G[i]; rtt = rn[g] > 0 ? rs[g] / rn[g] : ""
    nq = (rtt != "") ? rtt - gc[g] : ""
    printf "%s\n    \"%s\": {\"requests\": %d, \"round_trip_s\": %s, \"compute_s\": %s, \"network_queue_s\": %s, \"hops\": %d, \"per_hop_s\": %s}", sep, g, rn[g], num(rtt), num(gc[g]), num(nq), hops[g], (nq != "") ? num(nq / hops[g]) : "null"; sep = ","
    hopsum = hopsum sprintf("  %-5s %6d req  round trip %8.2f ms  compute %8.2f ms  network+queue %8.3f ms (%d hops: %7.3f ms/hop)\n", g, rn[g], rtt * 1000, gc[g] * 1000, nq * 1000, hops[g], nq / hops[g] * 1000) }
  cps = rn["unet"] > 0 ? ccpu / rn["unet"] : ""
  printf "\n  },\n  \"coordinator\": {\"cpu_s\": %s, \"unet_steps\": %d, \"cpu_s_per_step\": %s, \"cpu_s_per_image\": %s},\n", num(ccpu), rn["unet"], num(cps), num(ccpu / nj)
  printf "  \"workers_cpu_s_per_image\": %s,\n", num(wcpu / nj)
  printf "  \"redis\": {\"commands_total\": %d, \"commands_per_job_total\": %s, \"commands_per_job_cluster\": %s, \"cpu_s_per_job\": %s, \"note\": \"%s\"}\n}\n", rtot, num(rtot / nj), num(clus / nj), num(rcpu / nj), rnote

  printf "netns-bench: %d nodes, rate %s, delay: %s, wire %s, %s\n", K, rate, delay_note, wire, layout > sumf
  printf "load: %d jobs, concurrency %d, %dx%d, %d steps, threads %s, driver %s\n", jobs, conc, W, H, steps, threads, drvname > sumf
  printf "images/minute %.3f   (%d images in %.2f s, %d not done)   latency p50 %.3f s  p95 %.3f s\n", drv["images_per_minute"], img, drv["wall_s"], drv["not_done"], drv["latency_p50_s"], drv["latency_p95_s"] > sumf
  printf "per stage mean service (compute per request):\n" > sumf
  for (i = 1; i <= 5; i++) printf "  %-9s %6d req %10.3f ms\n", S[i], req[S[i]], svc[S[i]] * 1000 > sumf
  printf "bytes per image per link (sent side; %.0f B/image in all):\n%s", bpi, linesum > sumf
  printf "time per hop (coordinator round trip - worker compute = network, (de)serialisation, queueing):\n%s", hopsum > sumf
  printf "coordinator CPU: %.4f s total, %.3f ms per UNet step, %.4f s per image; workers CPU %.3f s per image\n", ccpu, cps * 1000, ccpu / nj, wcpu / nj > sumf
  printf "redis: %.1f commands per job from the cluster (%.1f incl. the driver), %.5f s CPU per job\n", clus / nj, rtot / nj, rcpu / nj > sumf
}' "$OUT/deltas.txt" > "$OUT/results.json"
cat "$OUT/summary.txt"
echo "results: $OUT/results.json"
[ "$(nb_get not_done "$OUT/driver.txt")" = 0 ] || { log "some jobs did not finish"; exit 1; }
