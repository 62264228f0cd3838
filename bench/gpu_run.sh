#!/usr/bin/env bash
# The prepared device run of issue 19: the GPU tests, then the GPU benchmark, in one command well
# inside the device tool's 10-minute limit (about 5-7 minutes on an H200).
#
# The device image has Python 3.12 with CUDA torch, transformers, accelerate and peft, but not
# diffusers, torchsde, spandrel, jsonschema (and their few missing needs), and no network. So:
#
#   here, once, in the repository root (pip reaches the registry here; about 7 MiB of wheels):
#       bash bench/gpu_run.sh fetch
#   then on the device (the `run` tool; .gpu-wheels is git-ignored, so it must be carried):
#       run(command="bash bench/gpu_run.sh", carry=[".gpu-wheels"], timeout_s=600)
#
# Everything it writes goes to $OUT (the device tool brings that folder back): pytest_gpu.log,
# gpu_bench.log, gpu_bench.json, device.txt. Record the figures in bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu-wheels

if [ "${1:-}" = "fetch" ]; then
    mkdir -p "$WHEELS"
    PIP=${PIP:-python3 -m pip}
    $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$WHEELS" \
        diffusers==0.42.1 torchsde==0.2.6 trampoline==0.1.2 spandrel==0.4.2 importlib_metadata \
        jsonschema jsonschema-specifications referencing rpds-py
    du -sh "$WHEELS"
    exit 0
fi

OUT=${OUT:-/tmp/nodegen-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || { echo "installing the wheels failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NODEGEN_CACHE_DIR=/tmp/nodegen-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers',
diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/device.txt"

# 1. the GPU tests (fixture models: seconds each)
timeout 240 python3 -m pytest -m gpu tests/test_gpu.py tests/test_vae_precision.py -q -p no:cacheprovider \
    -o addopts="" 2>&1 | tee "$OUT/pytest_gpu.log"
tests_rc=${PIPESTATUS[0]}

# 2. the benchmark (full-size architectures, random weights)
timeout 300 python3 bench/gpu.py --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}

echo "pytest exit $tests_rc, benchmark exit $bench_rc"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
