#!/usr/bin/env bash
# Prove the built image works: inside it, as its non-root user, `sdc generate` writes a PNG and
# `sdc verify --ref /ref` passes every golden case.
#
#   SDC_REF=DIR            reference folder (default ../shared/ref next to the repo); exits 77 (SKIP) without it
#   SDC_TEST_RUNTIME=      auto (default): podman if it can run the image here, else chroot
#                          podman: `podman load` the archive and `podman run` it (the image's own USER)
#                          chroot: `umoci unpack` the image and run inside its root filesystem under
#                                  `unshare --mount --pid` + chroot, dropping to uid/gid 10001 with setpriv
#                                  (needs root, as umoci unpack keeps the files' owners only then)
#
# Builds the image with deploy/build-image.sh first when build/image/sdcluster-oci.tar is missing.
# Not part of ctest: building downloads packages and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
archive=$repo/build/image/sdcluster-oci.tar
tag=sdcluster:latest
uid=10001

ref=${SDC_REF:-$repo/../shared/ref}
if [ ! -f "$ref/goldens.json" ] || [ ! -d "$ref/tiny-sd1" ]; then
  echo "SKIP: no reference folder at $ref (set SDC_REF)"
  exit 77
fi
ref=$(cd "$ref" && pwd)

[ -f "$archive" ] || bash deploy/build-image.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/sdc-image-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The container's /tmp, shared with this script so it can look at the PNG.
mkdir "$work/tmp"
chmod 1777 "$work/tmp"

gen=(sdc generate --model /models/tiny-sd1 --prompt "a lighthouse on a cliff at dusk"
  --width 64 --height 64 --steps 2 --seed 42 --output /tmp/x.png)
verify=(sdc verify --ref /ref)

# podman: the runtime Debian configures (crun) may not run in a sandbox with hybrid cgroups, where runc
# still does; and the container cannot raise rlimits above this shell's, which podman asks for by default.
podman_opts=()
podman_run() {
  podman run --rm --network=none "${podman_opts[@]}" \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    -v "$ref:/ref:ro" -v "$ref/tiny-sd1:/models/tiny-sd1:ro" -v "$work/tmp:/tmp" \
    "$tag" "$@"
}
podman_works() {
  command -v podman >/dev/null || return 1
  podman load -q -i "$archive" >/dev/null || return 1
  local r
  for r in "" runc; do
    if [ -n "$r" ]; then command -v "$r" >/dev/null || continue; podman_opts=(--runtime "$r"); fi
    [ "$(podman_run id -u 2>"$work/podman.err")" = "$uid" ] && return 0
  done
  echo "podman cannot run the image here: $(tail -1 "$work/podman.err")"
  return 1
}

# chroot: the image's root filesystem with the reference folder, the model, /proc, /sys and /dev mounted
# in a private mount namespace, so nothing stays mounted when the command ends.
chroot_prepare() {
  mkdir "$work/oci"
  tar -C "$work/oci" -xf "$archive"
  umoci unpack --image "$work/oci:$tag" "$work/bundle" >/dev/null
  grep -Eq "\"uid\": *$uid," "$work/bundle/config.json" || { echo "the image's user is not uid $uid"; exit 1; }
}
chroot_run() {
  unshare --mount --pid --fork --propagation private --mount-proc="$work/bundle/rootfs/proc" -- \
    bash -euc '
      root=$1 ref=$2 tmp=$3 uid=$4; shift 4
      mkdir -p "$root/ref" "$root/models/tiny-sd1"
      mount --bind -o ro "$ref" "$root/ref"
      mount --bind -o ro "$ref/tiny-sd1" "$root/models/tiny-sd1"
      mount --bind "$tmp" "$root/tmp"
      mount --rbind /sys "$root/sys"
      mount --rbind /dev "$root/dev"
      exec chroot "$root" setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent "$@"
    ' _ "$work/bundle/rootfs" "$ref" "$work/tmp" "$uid" "$@"
}

runtime=${SDC_TEST_RUNTIME:-auto}
if [ "$runtime" = auto ]; then
  if podman_works; then runtime=podman; else runtime=chroot; fi
elif [ "$runtime" = podman ]; then
  podman_works || exit 1
fi
case "$runtime" in
  podman) run=podman_run; how="podman run ${podman_opts[*]}" ;;
  chroot)
    if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the chroot runtime needs root, and podman did not work"; exit 77; fi
    chroot_prepare
    run=chroot_run; how="umoci unpack + unshare/chroot + setpriv" ;;
  *) echo "SDC_TEST_RUNTIME must be auto, podman or chroot, not '$runtime'"; exit 2 ;;
esac
echo "test-image: running $tag with $how"

who=$($run id -u)
[ "$who" = "$uid" ] || { echo "FAIL: commands run as uid $who, not $uid"; exit 1; }

t0=$(date +%s)
$run "${gen[@]}"
png=$work/tmp/x.png
[ "$(head -c 8 "$png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
  || { echo "FAIL: sdc generate wrote no PNG at /tmp/x.png"; exit 1; }
[ "$(stat -c %u "$png")" = "$uid" ] || { echo "FAIL: /tmp/x.png is not owned by uid $uid"; exit 1; }
echo "test-image: generate wrote a $(stat -c %s "$png")-byte PNG as uid $uid in $(($(date +%s) - t0)) s"

t0=$(date +%s)
if ! $run "${verify[@]}" >"$work/verify.log" 2>&1; then
  grep -v ' pass$' "$work/verify.log" | tail -20
  echo "FAIL: sdc verify"
  exit 1
fi
echo "test-image: verify: $(tail -1 "$work/verify.log") in $(($(date +%s) - t0)) s"
echo "PASS: $tag ($how)"
