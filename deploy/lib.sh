# deploy/lib.sh - sourced by deploy/netns-bench.sh and deploy/cluster-vs-generate.sh.
#   nb_scrape CMDPREFIX URL FILE      one GET of a /metrics endpoint (CMDPREFIX e.g. "ip netns exec NS" or "")
#   nb_delta BEFORE AFTER             counter deltas "name{labels} value" (a counter that went down counts from 0)
#   nb_run_load ...                   N jobs at concurrency C through `sdc bench`
# Needs bash, awk, curl, redis-cli and jq (to read `sdc bench --json`).

nb_now_ms() { date +%s%3N; }

NB_PROMPT="a lighthouse at dusk, oil painting" # every job's prompt, so sdc generate can run the same ones

nb_scrape() { # prefix url file
  local pre=$1 url=$2 file=$3
  $pre curl -s --max-time 10 "$url" > "$file" || { echo "warning: $url did not answer" >&2; : > "$file"; }
}

nb_delta() { # before after: every sample of AFTER minus BEFORE (process_*, sdc_* alike; gauges too, read with care)
  awk 'FNR==NR { if ($1 !~ /^#/ && NF >= 2) b[$1] = $2; next }
       $1 !~ /^#/ && NF >= 2 { d = $2 - (($1 in b) ? b[$1] : 0); if (d < 0) d = $2; printf "%s %.9g\n", $1, d }' "$1" "$2"
}

# nb_run_load OUT SDC REDIS_URL EXEC_PREFIX N C W H S [METRICS_URL...]
# Leaves $OUT/bench.json, $OUT/jobs.csv and $OUT/driver.txt: driver, images, not_done, wall_s, images_per_minute,
# latency_p50_s, latency_p95_s.
nb_run_load() {
  local out=$1 sdc=$2 url=$3 pre=$4 n=$5 c=$6 w=$7 h=$8 s=$9; shift 9
  local m=(); for u in "$@"; do m+=(--metrics "$u"); done
  ((w > 0)) && m+=(--width "$w"); ((h > 0)) && m+=(--height "$h")
  $pre "$sdc" bench --redis "$url" --jobs "$n" --concurrency "$c" --steps "$s" --prompt "$NB_PROMPT" \
    --csv "$out/jobs.csv" --json "${m[@]}" > "$out/bench.json" || echo "warning: sdc bench exited $?" >&2
  jq -r '"driver sdc-bench",
         "images \(.summary.images // ([.rows[] | select(.state == "done")] | length))",
         "not_done \([.rows[] | select(.state != "done")] | length)",
         "wall_s \(.summary.wall_s)",
         "images_per_minute \(.summary.images_per_minute)",
         "latency_p50_s \(.latency_s.p50)", "latency_p95_s \(.latency_s.p95)"' "$out/bench.json" > "$out/driver.txt"
}

nb_get() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print "null" }' "$2"; }
