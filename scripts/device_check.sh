#!/bin/bash
# bench's GPU checks in one command on a lent GPU machine (the `device` tool), after
# scripts/device_kit.sh packed .devkit/ here. Stages (default: tests):
#   tests  the CUDA tests (no host sync per step, GradScaler, CUDA memory and provenance; the speed
#          protocol with a second process on the GPU, read from NVML) and the engine/bare-loop step
#          benchmark per precision; about 5 minutes on an H100
#   card   scripts/gpu_card.py on real CIFAR-10 (precision x compile, 1 seed, CARD_EPOCHS epochs)
# The call (from the repo root here; the log and the results come back under $OUT):
#   run(command="bash scripts/device_check.sh tests", carry=[".devkit"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-tests}
out=${OUT:-/tmp/out}
mkdir -p "$out"
exec > >(tee "$out/$stage.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .devkit/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
[ -f .devkit/data/cifar10-jpeg.tar.gz ] && export BENCH_CIFAR10_ARCHIVE=$PWD/.devkit/data/cifar10-jpeg.tar.gz
nvidia-smi -L
python3 -c 'import torch, timm, mlflow, optuna, pydantic, pynvml, bench
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("timm", timm.__version__, "mlflow", mlflow.__version__, "optuna", optuna.__version__)' || exit 3
case $stage in
tests)
  # addopts would deselect the slow tests; the README's GPU study downloads ImageNet weights (offline here)
  python3 -m pytest -o addopts="" -p no:cacheprovider -q -s -rA --durations=10 -m "cuda and not cifar" \
    tests/ --junitxml="$out/junit.xml"
  python3 -m pytest -o addopts="" -p no:cacheprovider -q -s -m "cuda" benchmarks/test_step_overhead.py \
    --benchmark-json="$out/benchmark.json"
  ;;
card)
  BENCH_DATA_DIR=$PWD/.devkit/data python3 scripts/gpu_card.py --results-dir /tmp/card --set seeds=[0] \
    --set "train.epochs=${CARD_EPOCHS:-4}" --set train.checkpoint.every=100
  cp /tmp/card/*/runs.csv "$out/" 2>/dev/null
  ;;
*) echo "unknown stage $stage (tests | card)"; exit 2 ;;
esac
