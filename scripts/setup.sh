#!/usr/bin/env bash
# One set-up command: install the Debian packages sdcluster needs, then build into build/.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev libdnnl-dev libcjson-dev libutf8proc-dev libpng-dev libjpeg-dev
  libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev libhiredis-dev libmicrohttpd-dev
  redis-server procps prometheus
  iproute2 curl jq gnuplot-nox
  clang libclang-rt-14-dev libomp-14-dev # fuzz.sh (libFuzzer: only Recommended by clang); Archer for TSan
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm validate the k8s/ manifests offline; Debian's packages unless the machine already has a
# Node.js of its own (another distribution's nodejs bundles npm and conflicts with Debian's npm package)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# offline validation of the k8s/ manifests (k8s/validate.sh): the schema packages, pinned by the lock file
(cd tools/k8s-validate && npm ci --no-audit --no-fund --silent)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo ${SDC_CMAKE_FLAGS:-}
cmake --build build -j"$(nproc)"
echo "built: $(ls build/bin | tr '\n' ' ')"
