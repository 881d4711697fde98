#!/usr/bin/env bash
# deploy/project.sh - project a real cluster's images/minute from deploy/netns-bench.sh measurements.
#
#   deploy/project.sh --from RESULTS.json [--from2 RESULTS2.json | --alpha A] [--replicas "1 2 4 8 16"]
#        [--cores "8 16 32 64"] [--rates "1 10"] [--redis-ops-per-s 100000] [--coord-cores 1] [--out DIR]
#
# THE MODEL. Every stage (text, unet-down, unet-mid, unet-up, vae) has N replicas, each on its own node of c cores
# with a full-duplex NIC of R Gbit/s; Redis and the coordinator share node 0. Enough jobs are in flight
# (--max-jobs, concurrency) that every resource can be kept busy, so latency and delay do not limit throughput
# (Little's law: jobs in flight >= throughput x latency). Throughput is the minimum over resources of
# capacity / demand per image, and that resource is the one that saturates first:
#   shard s       N / (calls_s x t_s(c))       calls_s = model calls per image for the UNet shards
#                                              (model_calls_per_image), 1 for text and vae;
#                 t_s(c) = t_s(c0) x (c0/c)^a  service time per request scaled from the measured c0 cores with
#                                              exponent a, fitted per stage from two runs at different thread
#                                              counts (--from, --from2: a = ln(t1/t2) / ln(c2/c1), clamped to
#                                              [0, 1]), else --alpha (default 0.8, an assumption, said so)
#   link of s     N x R / (8 x max(in_s, out_s))   in_s/out_s = bytes per image into / out of stage s's nodes
#                                              (sdc_link_bytes_total, sent side), spread over its N replicas
#   coord link    R / (8 x max(in_c, out_c))   the coordinator's node: every link ending at the coordinator
#   coordinator   coord_cores / cpu_s_per_image    its event loop is one thread: --coord-cores 1
#   redis         redis_ops_per_s / commands_per_job   one thread; --redis-ops-per-s (default 100000, a typical
#                                              single-core rate for small commands, an assumption)
# Not in the model: (de)serialisation on a worker's loop thread (it overlaps compute), the client fetching images,
# and contention between a node's stages (one stage per node).
# Bytes and service times are for the measured model, size and --wire: measure at the size you want projected.
# Output: a table (stdout, and $OUT/projection.txt), $OUT/projection.csv, $OUT/projection.png (gnuplot).
set -euo pipefail
cd "$(dirname "$0")/.."
FROM="" FROM2="" ALPHA="" REPL="1 2 4 8 16" CORES="8 16 32 64" RATES="1 10" ROPS=100000 CCORES=1 OUT="/tmp/sdc-project-$$"
while (($#)); do
  case "$1" in
    --from) FROM=${2-} ;; --from2) FROM2=${2-} ;; --alpha) ALPHA=${2-} ;; --replicas) REPL=${2-} ;; --cores) CORES=${2-} ;;
    --rates) RATES=${2-} ;; --redis-ops-per-s) ROPS=${2-} ;; --coord-cores) CCORES=${2-} ;; --out) OUT=${2-} ;;
    -h|--help) sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "project: unknown flag '$1'" >&2; exit 2 ;;
  esac
  shift 2 || { echo "project: $1 needs a value" >&2; exit 2; }
done
[ -f "$FROM" ] || { echo "project: --from RESULTS.json (from deploy/netns-bench.sh) is required" >&2; exit 2; }
command -v jq > /dev/null || { echo "project: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
mkdir -p "$OUT"

# one line of inputs per file: cores, calls/image, service per stage, bytes in/out per stage, coordinator, redis
inputs() {
  jq -r '
    def c: if .config.threads == "default" then .config.cores else (.config.threads | tonumber) end;
    def inb($s): [.links | to_entries[] | select(.key | endswith(">" + $s)) | .value.bytes_per_image] | add // 0;
    def outb($s): [.links | to_entries[] | select(.key | startswith($s + ">")) | .value.bytes_per_image] | add // 0;
    "cores \(c)", "calls \(.model_calls_per_image)",
    (["text","unet-down","unet-mid","unet-up","vae"][] as $s | "svc \($s) \(.stages[$s].mean_service_s)"),
    (["text","unet-down","unet-mid","unet-up","vae","coordinator"][] as $s | "bytes \($s) \(inb($s)) \(outb($s))"),
    "coord \(.coordinator.cpu_s_per_image)", "redis \(.redis.commands_per_job_cluster)",
    "what \(.config.model) \(.config.width)x\(.config.height) \(.config.steps) steps wire \(.config.wire)"' "$1"
}
inputs "$FROM" > "$OUT/inputs1.txt"
if [ -n "$FROM2" ]; then inputs "$FROM2" > "$OUT/inputs2.txt"; else : > "$OUT/inputs2.txt"; fi

awk -v repl="$REPL" -v cores="$CORES" -v rates="$RATES" -v rops="$ROPS" -v ccores="$CCORES" -v alpha="$ALPHA" \
    -v csv="$OUT/projection.csv" '
FILENAME == ARGV[1] && $1 == "cores" { c1 = $2 } FILENAME == ARGV[1] && $1 == "svc" { t1[$2] = $3 }
FILENAME == ARGV[1] && $1 == "calls" { calls = $2 } FILENAME == ARGV[1] && $1 == "coord" { coord = $2 }
FILENAME == ARGV[1] && $1 == "redis" { rcmd = $2 } FILENAME == ARGV[1] && $1 == "bytes" { bin[$2] = $3; bout[$2] = $4 }
FILENAME == ARGV[1] && $1 == "what" { $1 = ""; what = $0 }
FILENAME == ARGV[2] && $1 == "cores" { c2 = $2 } FILENAME == ARGV[2] && $1 == "svc" { t2[$2] = $3 }
END {
  ns = split("text unet-down unet-mid unet-up vae", S, " ")
  for (i = 1; i <= ns; i++) { s = S[i]
    if (c2 != "" && c2 != c1 && t2[s] > 0 && t1[s] > 0) { a[s] = log(t1[s] / t2[s]) / log(c2 / c1); src = "fitted from " c1 " and " c2 " cores" }
    else { a[s] = (alpha != "" ? alpha : 0.8); src = (alpha != "" ? "--alpha" : "assumed (no second run)") }
    if (a[s] < 0) a[s] = 0; if (a[s] > 1) a[s] = 1
    k[s] = (s ~ /^unet/) ? calls : 1 }
  printf "projection from %s; measured on %d cores; %.1f model calls/image\n", what, c1, calls
  printf "inputs (service per request at %d cores, exponent a %s; bytes per image in / out):\n", c1, src
  for (i = 1; i <= ns; i++) printf "  %-10s %10.4f s  a=%.2f  in %11.0f B  out %11.0f B\n", S[i], t1[S[i]], a[S[i]], bin[S[i]], bout[S[i]]
  printf "  coordinator CPU %.5f s/image (x%d cores), node in %.0f B out %.0f B; redis %.1f commands/job at %d ops/s\n\n", coord, ccores, bin["coordinator"], bout["coordinator"], rcmd, rops
  print "rate_gbit,cores,replicas,images_per_minute,bottleneck" > csv
  nr = split(rates, RT, " "); nc = split(cores, CO, " "); nn = split(repl, RPL, " ")
  for (r = 1; r <= nr; r++) {
    R = RT[r] * 1e9
    printf "%s Gbit/s links: images/minute (first resource to saturate)\n%-8s", RT[r], "cores"
    for (j = 1; j <= nn; j++) printf "  %-26s", "N=" RPL[j]
    printf "\n"
    for (ci = 1; ci <= nc; ci++) { c = CO[ci]; printf "%-8d", c
      for (j = 1; j <= nn; j++) { N = RPL[j]; best = 1e30; who = ""
        for (i = 1; i <= ns; i++) { s = S[i]; t = t1[s] * (c1 / c) ^ a[s]
          if (t > 0) { cap = N / (k[s] * t); if (cap < best) { best = cap; who = "shard " s } }
          m = bin[s] > bout[s] ? bin[s] : bout[s]
          if (m > 0) { cap = N * R / (8 * m); if (cap < best) { best = cap; who = "link " s } } }
        m = bin["coordinator"] > bout["coordinator"] ? bin["coordinator"] : bout["coordinator"]
        if (m > 0) { cap = R / (8 * m); if (cap < best) { best = cap; who = "link coordinator" } }
        if (coord > 0) { cap = ccores / coord; if (cap < best) { best = cap; who = "coordinator" } }
        if (rcmd > 0) { cap = rops / rcmd; if (cap < best) { best = cap; who = "redis" } }
        printf "  %9.1f %-16s", best * 60, "(" who ")"
        printf "%s,%d,%d,%.3f,%s\n", RT[r], c, N, best * 60, who > csv }
      printf "\n" }
    printf "\n" }
}' "$OUT/inputs1.txt" "$OUT/inputs2.txt" | tee "$OUT/projection.txt"

if command -v gnuplot > /dev/null; then
  for r in $RATES; do
    for c in $CORES; do awk -F, -v r="$r" -v c="$c" 'NR > 1 && $1 == r && $2 == c { print $3, $4 }' "$OUT/projection.csv" > "$OUT/plot-$r-$c.dat"; done
  done
  {
    echo "set terminal png size 1200,500; set output '$OUT/projection.png'"
    echo "set multiplot layout 1,$(wc -w <<< "$RATES")"
    echo "set logscale xy 2; set xlabel 'UNet replicas per shard (N)'; set ylabel 'images/minute'; set key left top; set grid"
    for r in $RATES; do
      echo "set title '$r Gbit/s links'"
      plot="plot "; sep=""
      for c in $CORES; do plot+="$sep'$OUT/plot-$r-$c.dat' using 1:2 with linespoints title '$c cores/node'"; sep=", "; done
      echo "$plot"
    done
    echo "unset multiplot"
  } > "$OUT/projection.gp"
  gnuplot "$OUT/projection.gp" && echo "plot: $OUT/projection.png"
else
  echo "project: gnuplot not installed (apt-get install gnuplot-nox): no plot" >&2
fi
echo "table: $OUT/projection.csv"
