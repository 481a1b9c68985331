#!/bin/bash
# Pack, here, what a lent GPU machine (the `device` tool) lacks for bench's GPU checks, into the
# git-ignored folder .devkit/ that `run` carries (64 MiB at most): the Python 3.12 wheels of MLflow
# (mlflow-skinny: the client and the SQLite store, without the UI server), Optuna, pydantic and
# their needs, at the versions installed here, and real CIFAR-10 when ../shared has it. That
# machine has torch, timm, pandas, scipy, matplotlib and nvidia-ml-py but no package index.
# Then run scripts/device_check.sh there (its header gives the call).
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.devkit
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$kit/" "$exclude" 2>/dev/null || echo "/$kit/" >>"$exclude"
rm -rf "$kit/whl" && mkdir -p "$kit/whl"
here() { python3 -m pip show "$1" | awk '/^Version:/{print $2}'; }
wants=()
for name in mlflow-skinny mlflow-tracing optuna cmaes pydantic sqlalchemy alembic; do
  wants+=("$name==$(here "$name")")
done
# One version of each package, for CPython 3.12 on x86-64 manylinux, with every dependency.
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$kit/whl" "${wants[@]}" 2>&1 |
  grep -v "is ignored: it is neither" || true
# the machine's own numpy stays: its torch, pandas and scipy were built against it
rm -f "$kit"/whl/numpy-*.whl
archive=../shared/data/cifar10-jpeg.tar.gz
if [ -f "$archive" ]; then
  mkdir -p "$kit/data" && cp "$archive" "$kit/data/"
else
  echo "note: no $archive here; the kit carries no CIFAR-10 (the GPU tests use generated images)" >&2
fi
echo "kit: $(find "$kit/whl" -name '*.whl' | wc -l) wheels, $(du -sh "$kit" | cut -f1) in $kit/"
