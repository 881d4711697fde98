#!/usr/bin/env bash
# Build the sdcluster container image offline, from Debian packages only: the same image deploy/Containerfile
# describes, for machines that cannot reach an image registry (no debian:12-slim to pull).
#
#   mmdebstrap  a minimal bookworm root filesystem (variant minbase, as debian:12-slim is) holding only
#               deploy/runtime-packages.txt, plus build/bin/{sdc,sdc-coordinator,sdc-worker} in
#               /usr/local/bin, the user sdc (uid/gid 10001) and the empty mount point /models
#   umoci       that tarball as the one layer of an OCI image with the Containerfile's config
#               (user 10001:10001, port 9100/tcp, volume /models, cmd "sdc --help"), tagged sdcluster:latest
#
# Output: build/image/oci/ (an OCI image layout) and build/image/sdcluster-oci.tar (the same layout as
# one "oci-archive" file: `podman load -i build/image/sdcluster-oci.tar`). Prints its size and digest.
#
# Apt inside mmdebstrap uses this machine's own Debian sources (/etc/apt/sources.list{,.d/}), so no mirror is
# named here; SDC_APT_SOURCES=FILE (one-line or deb822 format) overrides them.
# SDC_MMDEBSTRAP_MODE overrides mmdebstrap's --mode (default: root when run as root, else unshare).
# Needs: mmdebstrap and umoci (installed with apt when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/build/image
tag=sdcluster:latest
bins=(sdc sdc-coordinator sdc-worker)

die() { echo "build-image: $*" >&2; exit 1; }

# The binaries link against bookworm's sonames; an image of another release would not run them.
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || die "this machine runs ${PRETTY_NAME:-unknown}, not Debian 12 (bookworm)"

missing=()
for b in "${bins[@]}"; do [ -x "build/bin/$b" ] || missing+=("$b"); done
if ((${#missing[@]})); then
  echo "build-image: build/bin lacks ${missing[*]}; building with scripts/setup.sh"
  bash scripts/setup.sh
fi

tools=()
command -v mmdebstrap >/dev/null || tools+=(mmdebstrap)
command -v umoci >/dev/null || tools+=(umoci)
if ((${#tools[@]})); then
  [ "$(id -u)" -eq 0 ] || die "install ${tools[*]} first (apt-get install ${tools[*]})"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tools[@]}"
fi

# This machine's Debian sources, passed to mmdebstrap as files. Only entries of the Debian archive (a URI
# ending in /debian or /debian-security, whichever host serves it) are taken: a third-party repository must
# not be able to put a non-Debian package into the image.
sources=()
if [ -n "${SDC_APT_SOURCES:-}" ]; then
  [ -f "$SDC_APT_SOURCES" ] || die "SDC_APT_SOURCES=$SDC_APT_SOURCES is not a file"
  sources=("$SDC_APT_SOURCES")
else
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -v '^[[:space:]]*#' "$f" | grep -qE '://[^[:space:]]*/debian(-security)?/?([[:space:]]|$)' && sources+=("$f")
  done
fi
((${#sources[@]})) || die "no Debian apt sources found in /etc/apt; set SDC_APT_SOURCES=FILE"

mode=${SDC_MMDEBSTRAP_MODE:-}
[ -n "$mode" ] || { [ "$(id -u)" -eq 0 ] && mode=root || mode=unshare; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sdc-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Stripped copies: the image carries the binaries, not their debug info (build/bin keeps it).
mkdir "$work/bin"
for b in "${bins[@]}"; do install -m 0755 -s "build/bin/$b" "$work/bin/$b"; done

include=$(grep -v '^[[:space:]]*\(#\|$\)' deploy/runtime-packages.txt | paste -sd, -)
start=$(date +%s)
echo "build-image: mmdebstrap --mode=$mode, sources: ${sources[*]}"
echo "build-image: packages: $include"
# The path-excludes are debian:12-slim's (docs, man pages, locales), keeping each package's copyright file.
# The last hook fails the build if any binary needs a library the image lacks.
mmdebstrap --mode="$mode" --variant=minbase --format=tar --include="$include" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='mkdir -p "$1/usr/local/bin" "$1/models"' \
  --customize-hook="copy-in ${bins[*]/#/$work/bin/} /usr/local/bin" \
  --customize-hook='chroot "$1" groupadd --gid 10001 sdc' \
  --customize-hook='chroot "$1" useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sdc' \
  --customize-hook='! chroot "$1" sh -c "ldd /usr/local/bin/*" | grep -F "not found"' \
  --customize-hook='chroot "$1" /usr/local/bin/sdc --help >/dev/null' \
  bookworm "$work/rootfs.tar" "${sources[@]}"
# A container runtime provides /dev; device nodes in a layer would only stop rootless unpacking.
tar --delete --wildcards -f "$work/rootfs.tar" './dev/?*'

rm -rf "$out"
mkdir -p "$out"
layout=$out/oci
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" --history.created_by "mmdebstrap --variant=minbase bookworm + build/bin" \
  "$work/rootfs.tar"
umoci config --image "$layout:$tag" --author sdcluster \
  --config.user 10001:10001 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --config.exposedports 9100/tcp \
  --config.volume /models \
  --config.cmd sdc --config.cmd --help \
  --config.label org.opencontainers.image.title=sdcluster \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --history.created_by "config as in deploy/Containerfile"
umoci gc --layout "$layout"
# An oci-archive is the layout directory as one tar file.
tar -C "$layout" -cf "$out/sdcluster-oci.tar" .

digest=$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")
echo "build-image: $tag in $(($(date +%s) - start)) s"
echo "build-image: build/image/sdcluster-oci.tar  $(du -h "$out/sdcluster-oci.tar" | cut -f1)  (compressed layer; root filesystem $(du -h "$work/rootfs.tar" | cut -f1) unpacked)"
echo "build-image: manifest digest $digest"
