#!/bin/bash
# Run a command as on a CPU without native bf16 (e.g. an AMD EPYC without avx512_bf16/amx_bf16):
# /proc/cpuinfo is bind-mounted, in a private mount namespace, with those flags removed. Needs
# root (or unprivileged user namespaces: `unshare -rm`). Example:
#   scripts/without_native_bf16.sh python -m pytest tests/test_confounds.py
# torch and oneDNN still use the CPU's bf16 instructions; to make bf16 really emulated (slow), add
#   ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 before it (an AVX2-only CPU, e.g. an older AMD EPYC).
set -euo pipefail
# Inductor's on-disk cache does not tell kernels built for the real CPU from those built under
# ATEN_CPU_CAPABILITY=avx2: reusing them gave NaN in test_compile_runs_on_cpu_and_is_measured_apart
# (fresh cache: passes). The faked CPU gets a cache of its own.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/torchinductor_without_native_bf16}"
fake=$(mktemp)
trap 'rm -f "$fake"' EXIT
sed -E 's/ (avx512_bf16|amx_bf16)//g' /proc/cpuinfo >"$fake"
unshare -m bash -c 'mount --bind "$0" /proc/cpuinfo && shift && exec "$@"' "$fake" x "$@"
