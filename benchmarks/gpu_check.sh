#!/usr/bin/env bash
# The GPU checks of the "A GPU node" issue in one run on a lent GPU machine, whose python3 holds torch, timm and
# Triton but neither gcnas's search machinery (optuna, hydra, wandb) nor a network: these checks need none of it.
#
#   bash benchmarks/gpu_check.sh        # from the repository root; its parts' limits add up to 570 s
#
# 1. tests/test_cuda.py and tests/test_fast_pool.py: every block design on the GPU against the CPU, the one-read
#    Triton pooling compiled for the GPU against the reference, training on the GPU (conftest.py is skipped: it
#    composes Hydra configs these files do not use);
# 2. benchmarks/gpu.py's cost rows: ResNet-50 plain vs the paper's GC, eager vs compiled vs the one-read pooling,
#    training and inference images/s at bfloat16 + channels_last (the issue's >= 0.92x / >= 0.95x targets);
# 3. benchmarks/fold.py on the GPU: whether Inductor's Triton code folds the fusion into the residual add.
# Each part has its own time limit, so a slow part cannot take the others' time. Output goes to the terminal and to
# $OUT (the device tool's folder that comes back) or ./gpu-check. Written without a GPU at hand:
# tests/test_benchmarks.py runs it on the CPU, where its parts skip or say they need CUDA; its first GPU run will tell
# whether the limits fit.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTEST_DISABLE_PLUGIN_AUTOLOAD=1

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a time limit, its output to the terminal and $out/NAME
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name" | grep -v '^W[0-9]' | tail -40
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s"
}

versions='import torch, timm, triton; print("torch", torch.__version__, "timm", timm.__version__, "triton",
    triton.__version__)'
part machine.txt 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $py -c '$versions'"
part tests.txt 150 "$py" -m pytest --noconftest -q -p no:cacheprovider tests/test_cuda.py tests/test_fast_pool.py
part cost.md 330 "$py" -m benchmarks.gpu --sections cost --backbones resnet50 --repeats 3
part fold.md 60 "$py" -m benchmarks.fold --device cuda --presets plain gc gc_scale
