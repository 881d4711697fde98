#!/usr/bin/env bash
# check-layers.sh - fails when a layer includes or links what it must not (docs/architecture.md has the rules).
#   bash scripts/check-layers.sh              check this tree
#   bash scripts/check-layers.sh --self-test  also prove the check fails on planted violations
# Includes are checked in the sources; links in CMake's dependency graph (cmake --graphviz), which lists
# every library a target links, directly or through another.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Which project folders each layer may include headers from.
declare -A MAY_USE=(
  [common]="common"
  [proto]="common proto"
  [stages/kernels]="common stages/kernels"
  [stages/loader]="common stages/loader"
  [stages/text]="common stages/text"
  [stages/sched]="common stages/sched"
  [stages/models]="common stages/kernels stages/loader stages/models"
  [stages/pipeline]="common stages/kernels stages/loader stages/models stages/text stages/sched stages/pipeline"
  [metrics]="common metrics"
  [worker]="common proto metrics stages/kernels stages/loader stages/models stages/text stages/sched stages/pipeline worker"
  [coordinator]="common proto metrics stages/loader stages/sched coordinator"
)
# System headers a layer must not include (extended regular expressions on the <...> name).
SOCKETS='zmq\.h|hiredis/|uv\.h|microhttpd\.h|protobuf-c/'
KERNEL_LIBS='cblas\.h|openblas|oneapi/dnnl|dnnl\.h|omp\.h'
declare -A NO_SYS=(
  [common]="$SOCKETS|$KERNEL_LIBS"
  [proto]="hiredis/|uv\.h|microhttpd\.h|$KERNEL_LIBS"
  [stages/kernels]="$SOCKETS"
  [stages/loader]="$SOCKETS|$KERNEL_LIBS"
  [stages/text]="$SOCKETS|$KERNEL_LIBS"
  [stages/sched]="$SOCKETS|$KERNEL_LIBS"
  [stages/models]="$SOCKETS"
  [stages/pipeline]="$SOCKETS"
  [metrics]="zmq\.h|hiredis/|uv\.h|protobuf-c/|$KERNEL_LIBS"
  [worker]="hiredis/"
  [coordinator]="$KERNEL_LIBS"
)
# CMake targets and what they must not link, directly or transitively (labels in cmake --graphviz).
ENGINE_NO='PkgConfig::ZMQ|PkgConfig::HIREDIS|PkgConfig::UV|PkgConfig::PROTOBUFC|PkgConfig::MHD|sdc_protocol|sdc_proto_gen|sdc_metrics'
COMPUTE='PkgConfig::OPENBLAS|libdnnl|OpenMP::|sdc_kernels|sdc_models|sdc_text|sdc_pipeline'
declare -A NO_LINK=(
  [sdc_common]="$ENGINE_NO|$COMPUTE|sdc_loader|sdc_sched"
  [sdc_protocol]="PkgConfig::HIREDIS|PkgConfig::UV|PkgConfig::MHD|$COMPUTE|sdc_loader|sdc_sched"
  [sdc_kernels]="$ENGINE_NO|sdc_loader|sdc_models|sdc_text|sdc_sched|sdc_pipeline"
  [sdc_loader]="$ENGINE_NO|$COMPUTE|sdc_sched"
  [sdc_text]="$ENGINE_NO|$COMPUTE|sdc_loader|sdc_sched"
  [sdc_sched]="$ENGINE_NO|$COMPUTE|sdc_loader"
  [sdc_models]="$ENGINE_NO|sdc_text|sdc_sched|sdc_pipeline"
  [sdc_pipeline]="$ENGINE_NO"
  [sdc_metrics]="PkgConfig::ZMQ|PkgConfig::HIREDIS|PkgConfig::UV|$COMPUTE|sdc_loader|sdc_sched|sdc_protocol"
  [sdc_worker_lib]="PkgConfig::HIREDIS"
  [sdc-worker]="PkgConfig::HIREDIS"
  [sdc-coordinator]="$COMPUTE"
)

# check_tree DIR: prints one line per violation; returns 1 if any.
check_tree() {
  local dir=$1 bad=0
  declare -A home=()
  local h
  while IFS= read -r h; do home[$(basename "$h")]=$(dirname "$h"); done < <(cd "$dir" && find common proto stages worker coordinator metrics -name '*.h' 2>/dev/null)
  home[sdc.pb-c.h]=proto
  local layer f inc target
  for layer in "${!MAY_USE[@]}"; do
    [ -d "$dir/$layer" ] || continue
    while IFS= read -r f; do
      # project headers: "name.h" must live in a folder this layer may use
      while IFS= read -r inc; do
        target=${home[$inc]:-}
        [ -n "$target" ] || continue # a header of this folder not found by name (e.g. tests' own)
        if [[ " ${MAY_USE[$layer]} " != *" $target "* ]]; then
          echo "layer violation: $f includes \"$inc\" ($target/); $layer/ may use: ${MAY_USE[$layer]}"
          bad=1
        fi
      done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$dir/$f")
      # system headers
      while IFS= read -r inc; do
        if [[ $inc =~ ^(${NO_SYS[$layer]}) ]]; then
          echo "layer violation: $f includes <$inc>, which $layer/ must not use"
          bad=1
        fi
      done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "$dir/$f")
    done < <(cd "$dir" && find "$layer" -maxdepth 1 \( -name '*.c' -o -name '*.h' \))
  done
  # links: CMake's own dependency graph of the configured tree
  local gv
  gv=$(mktemp -d)
  if ! cmake -S "$dir" -B "$gv/build" --graphviz="$gv/g/deps.dot" >"$gv/log" 2>&1; then
    echo "check-layers: cmake could not configure $dir:"
    tail -5 "$gv/log"
    rm -rf "$gv"
    return 1
  fi
  for target in "${!NO_LINK[@]}"; do
    local file="$gv/g/deps.dot.$target"
    if [ ! -f "$file" ]; then
      [ "$target" = sdc_metrics ] && continue # not every tree has it yet
      echo "check-layers: no CMake target $target"
      bad=1
      continue
    fi
    local lib
    while IFS= read -r lib; do
      [ "$lib" = "$target" ] && continue
      if [[ $lib =~ ^(${NO_LINK[$target]}) ]]; then
        echo "layer violation: target $target links $lib"
        bad=1
      fi
    done < <(sed -n 's/.*label = "\([^"]*\)".*/\1/p' "$file" | sort -u)
  done
  rm -rf "$gv"
  return $bad
}

if [ "${1:-}" = --self-test ]; then
  # Plant one violation of each kind in a copy of the tree; each copy must fail, and the clean tree pass.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  plant() { # name, file, sed expression or "cmake:<file>:<from>:<to>"
    local name=$1 copy="$tmp/$1"
    mkdir -p "$copy"
    (cd "$ROOT" && git ls-files -co --exclude-standard | grep -v "^build" | tar -cf - -T - | tar -xf - -C "$copy")
    eval "$2"
    if check_tree "$copy" >"$tmp/$name.out"; then
      echo "self-test FAILED: planted '$name' was not caught"
      return 1
    fi
    echo "self-test: '$name' caught: $(head -1 "$tmp/$name.out")"
  }
  plant stages-include-zmq 'sed -i "0,/#include/s//#include <zmq.h>\n#include/" "$copy/stages/kernels/ops.c"'
  plant coordinator-includes-kernel 'sed -i "0,/#include \"/s//#include \"ops.h\"\n#include \"/" "$copy/coordinator/registry.c"'
  plant common-includes-stage 'sed -i "0,/#include \"/s//#include \"unet.h\"\n#include \"/" "$copy/common/arena.c"'
  plant coordinator-links-kernels 'sed -i "s/PRIVATE sdc_sched/PRIVATE sdc_kernels sdc_sched/" "$copy/coordinator/CMakeLists.txt"'
  plant engine-links-sockets 'sed -i "s/PUBLIC sdc_common PkgConfig::OPENBLAS/PUBLIC sdc_common PkgConfig::ZMQ PkgConfig::OPENBLAS/" "$copy/stages/kernels/CMakeLists.txt"'
  check_tree "$ROOT"
  echo "self-test: the tree itself passes; all planted violations caught"
  exit 0
fi

check_tree "$ROOT"
echo "check-layers: every layer includes and links only what it may"
