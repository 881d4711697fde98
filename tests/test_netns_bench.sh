#!/usr/bin/env bash
# deploy/netns-bench.sh end to end, small: 3 namespace nodes on a 1 Gbit/s bridge, tiny-sd1, 2 jobs.
# Passes when results.json has a nonzero images/minute and nonzero bytes on the UNet's links.
# SKIP (77): not allowed to create network namespaces, or redis-server / tiny-sd1 missing (the script says which).
#   usage: test_netns_bench.sh SOURCE_DIR REF_DIR
set -u
src=$1 ref=$2
out=$(mktemp -d /tmp/sdc-test-netns.XXXXXX)
trap 'rm -rf "$out"' EXIT
bash "$src/deploy/netns-bench.sh" --nodes 3 --rate 1gbit --model "$ref/tiny-sd1" --jobs 2 --concurrency 2 \
  --steps 2 --warmup 0 --ready-timeout 40 --out "$out"
rc=$?
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "FAIL: netns-bench.sh exited $rc"; exit 1; }
j="$out/results.json"
[ -s "$j" ] || { echo "FAIL: no $j"; exit 1; }
ipm=$(sed -n 's/.*"images_per_minute": \([0-9.e+-]*\).*/\1/p' "$j")
awk -v x="$ipm" 'BEGIN { exit !(x > 0) }' || { echo "FAIL: images_per_minute '$ipm'"; exit 1; }
for l in 'coordinator>unet-down' 'unet-down>unet-mid' 'unet-mid>unet-up' 'unet-up>coordinator'; do
  b=$(grep -F "\"$l\"" "$j" | sed -n 's/.*"bytes_per_image": \([0-9.e+-]*\).*/\1/p')
  awk -v x="$b" 'BEGIN { exit !(x > 0) }' || { echo "FAIL: link $l bytes_per_image '$b'"; exit 1; }
done
if ip netns list | grep -q "^sdcnb"; then echo "FAIL: namespaces left behind: $(ip netns list | grep ^sdcnb)"; exit 1; fi
echo "PASS: images/minute $ipm"
