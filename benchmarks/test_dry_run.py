"""``bench run --dry-run`` on every shipped recipe: the wall time of the whole command (a fresh
interpreter, as a user runs it), median of a few runs. Target: well under a second, which the
torch-free recipe leaf and ``bench.components.catalog`` make possible (it took 5-11 s when validating a
recipe imported torch, timm and torchvision)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
ROUNDS = 5


@pytest.mark.benchmark
def test_dry_run_wall_time_per_shipped_recipe(tmp_path):
    lines = []
    for path in RECIPES:
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "bench.cli", "run", str(path), "--dry-run", "--results-dir", str(tmp_path)],
                cwd=REPO, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            times.append(time.perf_counter() - t0)
            assert out.returncode == 0, out.stderr
        median = statistics.median(times)
        lines.append((path.name, median, min(times), max(times)))
    print(f"\nbench run --dry-run wall time (fresh interpreter, median of {ROUNDS}):")
    for name, median, low, high in lines:
        print(f"  {name:28s} {median * 1e3:7.0f} ms  (min {low * 1e3:.0f}, max {high * 1e3:.0f})")
    assert max(m for _, m, _, _ in lines) < 1.0
