"""The per-recipe results table (pandas): one row per variant and seed, rewritten atomically
after every variant so an interrupted matrix keeps what it finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

FIRST_COLUMNS = ["variant", "group", "seed", "status", "reason", "delivered"]
# the terminal summary: the final test accuracy of the model the variant delivers (SWA's averaged
# model, EMA's model, else the trained weights), validation accuracy where a split exists, and the
# trained weights' own accuracy beside it
SUMMARY_METRICS = [
    "test/acc",
    "val/acc",
    "test/acc_raw",
    "test/acc_at_best_val",
    "test/acc_swa",
    "test/acc_ema",
    "train/loss",
]


def recipe_dir(results_dir: str | Path, recipe_name: str) -> Path:
    return Path(results_dir) / recipe_name


def table_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame, identifying columns first."""
    frame = pd.DataFrame(rows)
    ordered = [c for c in FIRST_COLUMNS if c in frame] + [c for c in frame if c not in FIRST_COLUMNS]
    return frame[ordered]


def summary_text(frame: pd.DataFrame) -> str:
    """A compact table for the terminal: final test accuracy, never the test-selected oracle."""
    cols = [c for c in SUMMARY_METRICS if c in frame and frame[c].notna().any()]
    view = frame[["variant", "status", *cols]].copy()
    for col in cols:
        view[col] = view[col].map(lambda v: f"{v:.4f}" if pd.notna(v) else "")
    return view.to_string(index=False)
