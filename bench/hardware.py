"""Machine facts needed before torch is imported (``bench run --dry-run`` stays fast)."""

from __future__ import annotations

import os
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """avx512_bf16 or AMX: bf16 autocast runs natively; otherwise it is emulated, 20-40x slower.
    ``BENCH_FORCE_EMULATED_BF16=1`` pretends it is emulated (tests, demonstrations)."""
    if os.environ.get("BENCH_FORCE_EMULATED_BF16") == "1":
        return False
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


EMULATED_BF16_NOTE = (
    "this CPU has no native bf16 (no avx512_bf16/amx_bf16): amp_bf16 variants on CPU run emulated, 20-40x "
    "slower than fp32, and their throughput measures the emulation"
)
