# Sourced by the bench scripts: the reference folder, and a cached random SD 1.5 (fp16 files) in $SD15.
#   REF: $1, else $SDC_REF, else ../shared/ref;  cache: $SDC_BENCH_DIR, default /tmp/sdc-bench
REF="${1:-${SDC_REF:-../shared/ref}}"
CACHE="${SDC_BENCH_DIR:-/tmp/sdc-bench}"
[ -x build/bin/sdc ] || bash scripts/setup.sh
mkdir -p "$CACHE"
if [ ! -f "$CACHE/sd15/unet/diffusion_pytorch_model.safetensors" ]; then
  build/bin/sdc model-init --arch sd15 --out "$CACHE/sd15" --dtype f16 --seed 0 --force # over a half-written one
fi
SD15="$CACHE/sd15"
