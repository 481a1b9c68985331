"""Where a recipe's data lives: ``data.root``, else ``$BENCH_DATA_DIR``, else ``data/``. One rule for
the loader and the run key (bench/execution/identity.py), so both read the same files."""

from __future__ import annotations

import os
from pathlib import Path

CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"


def data_root(root: str | None) -> Path:
    """The data folder. A path to the CIFAR-10 archive itself stands for the folder holding it: a
    new user points ``$BENCH_DATA_DIR`` at the file they were given as often as at its folder."""
    path = Path(root or os.environ.get("BENCH_DATA_DIR") or "data").expanduser()
    return path.parent if path.name == CIFAR10_ARCHIVE and path.is_file() else path
