# deploy/lib.sh - sourced by deploy/netns-bench.sh and deploy/cluster-vs-generate.sh.
#   nb_scrape CMDPREFIX URL FILE      one GET of a /metrics endpoint (CMDPREFIX e.g. "ip netns exec NS" or "")
#   nb_delta BEFORE AFTER             counter deltas "name{labels} value" (a counter that went down counts from 0)
#   nb_run_load ...                   N jobs at concurrency C: `sdc bench` when it exists, else the built-in driver
# Needs bash, awk, curl, redis-cli; jq only to read `sdc bench --json`.

nb_now_ms() { date +%s%3N; }

nb_scrape() { # prefix url file
  local pre=$1 url=$2 file=$3
  $pre curl -s --max-time 10 "$url" > "$file" || { echo "warning: $url did not answer" >&2; : > "$file"; }
}

nb_delta() { # before after: every sample of AFTER minus BEFORE (process_*, sdc_* alike; gauges too, read with care)
  awk 'FNR==NR { if ($1 !~ /^#/ && NF >= 2) b[$1] = $2; next }
       $1 !~ /^#/ && NF >= 2 { d = $2 - (($1 in b) ? b[$1] : 0); if (d < 0) d = $2; printf "%s %.9g\n", $1, d }' "$1" "$2"
}

# The built-in driver: the job contract with redis-cli only (docs/jobs.md). Each job is queued by one Lua script
# that stamps created_ms from Redis's clock, so latency = finished_ms - created_ms is measured on the server's clock,
# whatever the polling interval. Writes one row per job to $1/jobs.csv and the summary lines to $1/driver.txt.
NB_SUBMIT_LUA="local t = redis.call('TIME'); local ms = t[1]*1000 + math.floor(t[2]/1000)
local e = redis.call('XADD', 'sdc:jobs', '*', 'job', ARGV[1])
redis.call('HSETNX', KEYS[1], 'state', 'queued'); redis.call('HSETNX', KEYS[1], 'created_ms', ms)
redis.call('HSETNX', KEYS[1], 'entry', e); return ms"

nb_builtin_driver() { # outdir rediscli(cmd prefix, e.g. "ip netns exec NS redis-cli -h H -p P") jobs conc w h steps timeout_s
  local out=$1 rc=$2 n=$3 c=$4 w=$5 h=$6 s=$7 tmo=${8:-600}
  local run; run="nb$(date +%s)$$"
  local -a ids=() inflight=()
  local next=0 done_n=0 t0 cmds=0; t0=$(nb_now_ms)
  while ((next < n || ${#inflight[@]} > 0)); do
    while ((next < n && ${#inflight[@]} < c)); do
      local id="$run-$next"
      local json="{\"id\":\"$id\",\"prompt\":\"a lighthouse at dusk, oil painting\",\"seed\":$((1000 + next)),\"steps\":$s,\"width\":$w,\"height\":$h}"
      $rc EVAL "$NB_SUBMIT_LUA" 1 "sdc:job:$id" "$json" > /dev/null || { echo "submit failed" >&2; return 1; }
      ids+=("$id"); inflight+=("$id"); next=$((next + 1)); cmds=$((cmds + 5)) # EVAL + XADD + 3 HSETNX
    done
    sleep 0.05
    cmds=$((cmds + ${#inflight[@]}))
    local states; states=$(for id in "${inflight[@]}"; do echo "HGET sdc:job:$id state"; done | $rc)
    local -a still=(); local i=0
    while read -r st; do
      case "$st" in done|failed|cancelled) done_n=$((done_n + 1)) ;; *) still+=("${inflight[$i]}") ;; esac
      i=$((i + 1))
    done <<< "$states"
    inflight=("${still[@]}")
    if (($(nb_now_ms) - t0 > tmo * 1000)); then echo "driver: timeout after ${tmo}s, ${#inflight[@]} jobs unfinished" >&2; break; fi
  done
  echo "index,id,created_ms,started_ms,finished_ms,latency_s,state" > "$out/jobs.csv"
  local k=0
  for id in "${ids[@]}"; do
    local f; f=$(printf 'HGET sdc:job:%s created_ms\nHGET sdc:job:%s started_ms\nHGET sdc:job:%s finished_ms\nHGET sdc:job:%s state\n' "$id" "$id" "$id" "$id" | $rc | tr '\n' ' ')
    set -- $f; cmds=$((cmds + 4))
    awk -v k="$k" -v id="$id" -v c="$1" -v st="$2" -v fi="$3" -v s="$4" \
      'BEGIN { printf "%d,%s,%s,%s,%s,%.3f,%s\n", k, id, c, st, fi, (fi - c) / 1000, s }' >> "$out/jobs.csv"
    k=$((k + 1))
  done
  # images/minute over first queued .. last finished (server clock); percentiles interpolate between ranks
  awk -F, 'NR > 1 && $7 == "done" { lat[++n] = $6; if (!t0 || $3 < t0) t0 = $3; if ($5 > t1) t1 = $5 }
    NR > 1 && $7 != "done" { bad++ }
    function pct(p,  r, lo) { r = 1 + p * (n - 1); lo = int(r); return lo >= n ? lat[n] : lat[lo] + (r - lo) * (lat[lo+1] - lat[lo]) }
    END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (lat[j] < lat[i]) { t = lat[i]; lat[i] = lat[j]; lat[j] = t }
          wall = (t1 - t0) / 1000
          printf "driver builtin\nimages %d\nnot_done %d\nwall_s %.3f\nimages_per_minute %.4f\nlatency_p50_s %.4f\nlatency_p95_s %.4f\n",
                 n, bad + 0, wall, (wall > 0 ? n * 60 / wall : 0), (n ? pct(0.5) : 0), (n ? pct(0.95) : 0) }' "$out/jobs.csv" > "$out/driver.txt"
  echo "client_commands $cmds" >> "$out/driver.txt"
}

# nb_run_load OUT SDC REDIS_URL RC_PREFIX EXEC_PREFIX N C W H S DRIVER(auto|bench|builtin) [METRICS_URL...]
# Leaves $OUT/driver.txt: driver, images, not_done, wall_s, images_per_minute, latency_p50_s, latency_p95_s.
nb_run_load() {
  local out=$1 sdc=$2 url=$3 rc=$4 pre=$5 n=$6 c=$7 w=$8 h=$9 s=${10} drv=${11}; shift 11
  if [ "$drv" = auto ]; then
    if "$sdc" bench --help > /dev/null 2>&1 && command -v jq > /dev/null; then drv=bench; else drv=builtin; fi
  fi
  if [ "$drv" = bench ]; then
    local m=(); for u in "$@"; do m+=(--metrics "$u"); done
    ((w > 0)) && m+=(--width "$w"); ((h > 0)) && m+=(--height "$h")
    $pre "$sdc" bench --redis "$url" --jobs "$n" --concurrency "$c" --steps "$s" \
      --csv "$out/jobs.csv" --json "${m[@]}" > "$out/bench.json" || echo "warning: sdc bench exited $?" >&2
    jq -r '"driver sdc-bench",
           "images \(.summary.images // ([.rows[] | select(.state == "done")] | length))",
           "not_done \([.rows[] | select(.state != "done")] | length)",
           "wall_s \(.summary.wall_s)",
           "images_per_minute \(.summary.images_per_minute)",
           "latency_p50_s \(.latency_s.p50)", "latency_p95_s \(.latency_s.p95)"' "$out/bench.json" > "$out/driver.txt"
  else
    nb_builtin_driver "$out" "$rc" "$n" "$c" "$w" "$h" "$s"
  fi
}

nb_get() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print "null" }' "$2"; }
