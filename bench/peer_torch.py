#!/usr/bin/python3
"""One SD UNet step (batch 2, classifier-free guidance, fp32) in diffusers on PyTorch's CPU backend.

usage: peer_torch.py MODEL_DIR SIZE RUNS THREADS -> one JSON line: min_s, median_s, versions, BLAS core.
The weights are the model folder's own (a diffusers layout, e.g. `sdc model-init --arch sd15`); the UNet
is built from its config.json and filled tensor by tensor, then run once to warm up and RUNS times timed."""
import ctypes, json, os, statistics, sys, tempfile, time

model, size, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    import safetensors  # noqa: F401
except ImportError:
    # Debian 12 packages no python3-safetensors, and diffusers imports it unconditionally; this script
    # reads the weights itself (below), so an empty stand-in package is enough for the import.
    stub = tempfile.mkdtemp(prefix="sdc-peer-stub-")
    os.makedirs(os.path.join(stub, "safetensors"))
    for name in ("__init__.py", "torch.py"):
        with open(os.path.join(stub, "safetensors", name), "w") as f:
            f.write("def _missing(*a, **k):\n    raise ImportError('safetensors is not installed')\n"
                    "load_file = save_file = safe_open = load = _missing\n")
    sys.path.insert(0, stub)
import torch  # noqa: E402
torch.set_num_threads(threads)
import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

unet_dir = os.path.join(model, "unet")
unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(unet_dir))
state = unet.state_dict()
path = os.path.join(unet_dir, "diffusion_pytorch_model.safetensors")
# safetensors by hand (Debian 12 has no python3-safetensors): 8-byte header length, JSON header, raw data
dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
with open(path, "rb") as f:
    n = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(n))
    base = 8 + n
    with torch.no_grad():
        for name, info in header.items():
            if name == "__metadata__":
                continue
            lo, hi = info["data_offsets"]
            f.seek(base + lo)
            t = torch.frombuffer(bytearray(f.read(hi - lo)), dtype=dtypes[info["dtype"]]).reshape(info["shape"])
            state[name].copy_(t)
unet = unet.float().eval()
g = torch.Generator().manual_seed(0)
lat = size // 8
x = torch.randn(2, unet.config.in_channels, lat, lat, generator=g)
ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
times = []
with torch.no_grad():
    unet(x, torch.tensor(999), encoder_hidden_states=ctx)
    for _ in range(runs):
        t0 = time.perf_counter()
        unet(x, torch.tensor(999), encoder_hidden_states=ctx)
        times.append(time.perf_counter() - t0)
try:
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_get_corename.restype = ctypes.c_char_p
    core = blas.openblas_get_corename().decode()
except OSError:
    core = "?"
print(json.dumps({"min_s": min(times), "median_s": statistics.median(times), "torch": torch.__version__,
                  "diffusers": diffusers.__version__, "openblas_core": core, "threads": torch.get_num_threads()}))
