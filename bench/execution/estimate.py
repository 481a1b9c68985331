"""How long a study will take, from what is already known: earlier runs of the same recipe
(``results/<recipe>/runs.csv``, for ``bench run --dry-run``) and, while it runs, the variants it
has finished (the progress line). Pandas only: no MLflow, no torch on the dry-run path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

WALL = "time/wall_s"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``: what a person reads at a glance."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def earlier_wall_times(results_dir: str | Path, recipe_name: str) -> Any:
    """The finished rows of the recipe's last ``runs.csv`` that have a wall time (or None)."""
    import pandas as pd

    path = Path(results_dir) / recipe_name / "runs.csv"
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if WALL not in table or "status" not in table:
        return None
    done = table[(table["status"] == "finished") & table[WALL].notna()]
    return done if len(done) else None


def estimate_line(loaded: Any, results_dir: str | Path, force: bool = False) -> str:
    """One line for ``bench run --dry-run``: the study's total time, from earlier runs of the
    same recipe. A variant timed before counts with its own time; a new one with the median
    of the timed ones; one that finished with the same run_key is skipped (0 s)."""
    done = earlier_wall_times(results_dir, loaded.name)
    source = Path(results_dir) / loaded.name / "runs.csv"
    if done is None:
        return f"estimated training time: unknown (no finished runs of '{loaded.name}' in {source} yet)"
    by_key = dict(zip(done.get("run_key", []), done[WALL]))
    by_name = dict(zip(done["variant"], done[WALL])) if "variant" in done else {}
    median = float(done[WALL].median())
    total, skipped, changed, guessed = 0.0, 0, 0, 0
    for variant in loaded.variants:
        if variant.run_key in by_key and not force:
            skipped += 1
        elif variant.run_key in by_key:
            total += float(by_key[variant.run_key])
        elif variant.name in by_name:
            total += float(by_name[variant.name])
            changed += 1
        else:
            total += median
            guessed += 1
    to_run = len(loaded.variants) - skipped
    if not to_run:
        return f"estimated training time: nothing to train: all {skipped} run(s) finished with these settings (--force re-runs them)"
    parts = [f"{len(done)} finished run(s) in {source}"]
    if skipped:
        parts.append(f"{skipped} already finished with the same settings: skipped unless --force")
    if changed:
        parts.append(f"{changed} timed with other settings (epochs, data, ...): a rough guide")
    if guessed:
        parts.append(f"{guessed} new variant(s) at the median {format_duration(median)}")
    return (
        f"estimated training time: ~{format_duration(total)} for {to_run} run(s), plus start-up and data "
        f"loading (from the {WALL} of {'; '.join(parts)})"
    )


def expected_times(loaded: Any, results_dir: str | Path, force: bool = False) -> dict[str, float]:
    """Each variant's seconds by its earlier run in ``runs.csv`` (same run_key, else same name):
    0 s for one that will be skipped as already finished. For the live time left, so a slow
    variant counts at its own time, not at the mean of the fast ones trained before it."""
    done = earlier_wall_times(results_dir, loaded.name)
    if done is None:
        return {}
    by_key = dict(zip(done.get("run_key", []), done[WALL]))
    by_name = dict(zip(done["variant"], done[WALL])) if "variant" in done else {}
    out: dict[str, float] = {}
    for variant in loaded.variants:
        if variant.run_key in by_key:
            out[variant.name] = float(by_key[variant.run_key]) if force else 0.0
        elif variant.name in by_name:
            out[variant.name] = float(by_name[variant.name])
    return out


class Eta:
    """Time left in a matrix: each variant at its own earlier time where ``expected`` has one
    (bench/execution/estimate.py ``expected_times``), the others at the mean of the variants this process
    trained (not the ones skipped), or at the median of the earlier times before any."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.expected: dict[str, float] = {}

    def add(self, seconds: float) -> None:
        self.durations.append(seconds)

    def left(self, remaining: int, names: list[str] | tuple[str, ...] = ()) -> float | None:
        if remaining <= 0:
            return None
        if self.durations:
            fallback: float | None = sum(self.durations) / len(self.durations)
        else:
            known = sorted(t for t in self.expected.values() if t > 0)
            fallback = known[len(known) // 2] if known else None
        names = list(names)[:remaining]
        total = 0.0
        for name in names + [""] * (remaining - len(names)):
            seconds = self.expected.get(name, fallback)
            if seconds is None:
                return None
            total += seconds
        return total
