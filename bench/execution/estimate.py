"""How long a study will take, from earlier runs of the same recipe (``results/<recipe>/runs.csv``):
for ``bench run --dry-run`` and the progress line's time left. Pandas only: no MLflow, no torch."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
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


def _earlier(loaded: Any, done: Any, force: bool) -> list[tuple[str, float | None]]:
    """Per variant of ``loaded``: how it was timed before (``skip``: finished with this run_key,
    ``same``: that run, --force; ``other``: same name, other settings; ``new``) and its seconds."""
    by_key = dict(zip(done.get("run_key", []), done[WALL]))
    by_name = dict(zip(done["variant"], done[WALL])) if "variant" in done else {}
    out: list[tuple[str, float | None]] = []
    for v in loaded.variants:
        if v.run_key in by_key:
            out.append(("same", float(by_key[v.run_key])) if force else ("skip", 0.0))
        else:
            out.append(("other", float(by_name[v.name])) if v.name in by_name else ("new", None))
    return out


def estimate_line(
    loaded: Any, results_dir: str | Path, force: bool = False, device_skips: Collection[str] = ()
) -> str:
    """One line for ``bench run --dry-run``: the study's total time, from earlier runs of the
    same recipe. A variant timed before counts with its own time; a new one with the median
    of the timed ones; one that finished with the same run_key is skipped (0 s), and so is one
    this machine records as skipped at once (``device_skips``: amp_fp16 without CUDA; counted at
    the median, the smoke rerun's two amp_fp16 runs read '~1m 27s' for nothing to train)."""
    done = earlier_wall_times(results_dir, loaded.name)
    source = Path(results_dir) / loaded.name / "runs.csv"
    if done is None:
        return f"estimated training time: unknown (no finished runs of '{loaded.name}' in {source} yet)"
    median = float(done[WALL].median())
    earlier = [
        ("device", 0.0) if v.name in device_skips and how != "skip" else (how, seconds)
        for v, (how, seconds) in zip(loaded.variants, _earlier(loaded, done, force))
    ]
    count = Counter(how for how, _ in earlier)
    total = sum(median if seconds is None else seconds for _, seconds in earlier)
    skipped = count["skip"]
    to_run = len(loaded.variants) - skipped - count["device"]
    if not to_run:
        return (
            f"estimated training time: nothing to train: {'' if count['device'] else 'all '}{skipped} run(s) "
            "finished with these settings "
            f"(--force re-runs them){_device_part(count['device'])}"
        )
    parts = [f"{len(done)} finished run(s) in {source}"]
    if skipped:
        parts.append(f"{skipped} already finished with the same settings: skipped unless --force")
    if count["device"]:
        parts.append(_device_part(count["device"]).lstrip("; "))
    if count["other"]:
        parts.append(f"{count['other']} timed with other settings (epochs, data, ...): a rough guide")
    if count["new"]:
        parts.append(f"{count['new']} new variant(s) at the median {format_duration(median)}")
    return (
        f"estimated training time: ~{format_duration(total)} for {to_run} run(s), plus start-up and data "
        f"loading (from the {WALL} of {'; '.join(parts)})"
    )


def _device_part(n: int) -> str:
    return f"; {n} recorded as skipped on this machine at once (see the note above)" if n else ""


def expected_times(loaded: Any, results_dir: str | Path, force: bool = False) -> dict[str, float]:
    """Each variant's seconds by its earlier run in ``runs.csv`` (same run_key, else same name):
    0 s for one that will be skipped as already finished. For the live time left, so a slow
    variant counts at its own time, not at the mean of the fast ones trained before it."""
    done = earlier_wall_times(results_dir, loaded.name)
    if done is None:
        return {}
    earlier = zip(loaded.variants, _earlier(loaded, done, force))
    return {v.name: seconds for v, (how, seconds) in earlier if seconds is not None}
