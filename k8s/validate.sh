#!/usr/bin/env bash
# Renders every overlay under k8s/overlays with `kubectl kustomize` and validates the output
# offline (tools/k8s-validate/validate.js):
#   - every object against the Kubernetes and KEDA schemas (npm: kubernetes-models,
#     @kubernetes-models/keda, installed by scripts/setup.sh with `npm ci`);
#   - every sdcluster container's args against its binary's --help (each --flag must be listed),
#     $(VARS) defined, --http port = the container's http port = the probes' port, probe paths
#     /healthz and /readyz, referenced ConfigMaps/Secrets/PVCs/Services/scale targets present.
#   bash k8s/validate.sh BIN_DIR      (BIN_DIR holds sdc-worker and sdc-coordinator, e.g. build/bin)
# Exit 0: all valid; 1: a problem (each printed on its own line); 77: kubectl or node missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="${1:-$root/build/bin}"
tools="$root/tools/k8s-validate"

for t in kubectl node; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/setup.sh installs it)"; exit 77; }
done
if [ ! -d "$tools/node_modules/kubernetes-models" ]; then
  echo "tools/k8s-validate/node_modules missing: installing with npm ci"
  (cd "$tools" && npm ci --no-audit --no-fund --silent)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/help"
for b in sdc-worker sdc-coordinator; do
  [ -x "$bin/$b" ] || { echo "FAIL: $bin/$b not built"; exit 1; }
  "$bin/$b" --help >"$work/help/$b.help"
done

rc=0
n=0
for overlay in "$here"/overlays/*/; do
  name="$(basename "$overlay")"
  n=$((n + 1))
  if ! kubectl kustomize "$overlay" >"$work/$name.yaml" 2>"$work/$name.err"; then
    echo "FAIL: kubectl kustomize k8s/overlays/$name:"
    cat "$work/$name.err"
    rc=1
    continue
  fi
  if node "$tools/validate.js" "$work/$name.yaml" "$work/help"; then
    echo "ok: k8s/overlays/$name"
  else
    echo "FAIL: k8s/overlays/$name"
    rc=1
  fi
done
[ "$n" -gt 0 ] || { echo "FAIL: no overlays under $here/overlays"; exit 1; }
exit $rc
