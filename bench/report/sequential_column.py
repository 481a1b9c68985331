"""The report's "sequential verdict" for runs that ``bench run --until-decided`` produced: the
same decision (bench/report/sequential.py) with the settings that run recorded on its parent run,
so the report says what the runner stopped on. The fixed-design verdicts beside it assume the
number of seeds was fixed in advance, which an adaptive run breaks."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from bench.report import sequential

SEQUENTIAL_COLUMNS = ["seq_pairs", "seq_lo", "seq_hi", "seq_alpha", "sequential_verdict"]


def recorded_settings(client, experiment_id: str) -> dict[str, Any] | None:
    """The settings of the latest ``--until-decided`` parent run of the experiment, or None."""
    from bench.report.fetch import search_all

    parents = [
        r
        for r in search_all(client, experiment_id, "tags.`bench.kind` = 'recipe'")
        if sequential.SETTINGS_TAG in r.data.tags
    ]
    if not parents:
        return None
    latest = max(parents, key=lambda r: r.info.start_time or 0)
    try:
        return json.loads(latest.data.tags[sequential.SETTINGS_TAG])
    except ValueError:
        return None


def add_sequential(
    table: pd.DataFrame, finished: pd.DataFrame, base: str | None, settings: dict
) -> pd.DataFrame:
    """``table`` (the baseline table) with the sequential interval and verdict appended per variant."""
    out = table.copy()
    for col in SEQUENTIAL_COLUMNS:
        out[col] = math.nan if col != "sequential_verdict" else ""
    if base is None or not len(out):
        return out
    by_seed = {g: dict(zip(f["seed"], f["test/acc"])) for g, f in finished.groupby("group")}
    groups = [g for g in out["variant"] if g != base]
    paired = [len(set(by_seed.get(g, {})) & set(by_seed.get(base, {}))) for g in groups]
    # runs recorded before first_look was: every comparison's first look had the fewest pairs
    first = int(settings.get("first_look") or min(paired, default=sequential.MIN_SEEDS))
    decided = sequential.decide_family(
        by_seed, base, groups, alpha=float(settings["alpha"]), margin=float(settings["min_effect"]),
        first=first, last=int(settings["max_seeds"]), family=int(settings.get("family") or len(groups)),
    )  # fmt: skip
    for i, group in zip(out.index, out["variant"]):
        if group == base:
            out.at[i, "sequential_verdict"] = "baseline"
            continue
        s = decided[group]
        out.loc[i, ["seq_pairs", "seq_lo", "seq_hi", "seq_alpha"]] = [s.n, s.lo, s.hi, s.alpha]
        out.at[i, "sequential_verdict"] = s.verdict
    return out
