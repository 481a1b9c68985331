"""The report's tables as DataFrames: per variant (over seeds), against the baseline, per axis,
the Pareto fronts, and the runs left out of the statistics (with their reasons)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report import stats

ACC = "test/acc"
ACC_SWA = "test/acc_swa"
THROUGHPUT = "throughput/train_img_s"
WALL = "time/wall_s"
MEMORY_KEYS = ("memory/peak_gpu_mb", "memory/peak_rss_mb")
TTT = "time_to_target_s"

# metric column -> short name used in the table columns
SUMMARISED = {
    ACC: "acc",
    ACC_SWA: "acc_swa",
    THROUGHPUT: "train_img_s",
    "memory": "memory_mb",
    WALL: "wall_s",
    TTT: "ttt_s",
}


@dataclass
class Tables:
    variants: pd.DataFrame
    baseline: pd.DataFrame
    axes: pd.DataFrame
    pareto: pd.DataFrame
    excluded: pd.DataFrame
    baseline_name: str | None
    memory_key: str | None
    target_acc: float | None
    axis_labels: list[str] = field(default_factory=list)
    confidence: float = 0.95


def memory_key(runs: pd.DataFrame) -> str | None:
    """GPU peak memory when any run has it, else the process's peak RSS."""
    for key in MEMORY_KEYS:
        if key in runs and runs[key].notna().any():
            return key
    return None


def add_time_to_target(runs: pd.DataFrame, history: pd.DataFrame, target: float | None) -> pd.DataFrame:
    runs = runs.copy()
    runs[TTT] = math.nan
    if target is None or history.empty:
        return runs
    acc = history[history["key"] == ACC].sort_values("step")
    for i, row in runs.iterrows():
        curve = acc.loc[acc["run_id"] == row["run_id"], "value"].tolist()
        runs.at[i, TTT] = stats.time_to_target(curve, row.get(WALL, math.nan), target)
    return runs


def build_tables(
    runs: pd.DataFrame,
    axis_labels: list[str],
    *,
    group_order: list[str] | None = None,
    baseline: str | None = None,
    target_acc: float | None = None,
    confidence: float = 0.95,
) -> Tables:
    """``runs``: one row per child run (see ``fetch.fetch_runs``), with ``time_to_target_s``
    when a target is set. Statistics use the ``finished`` runs only; the others are listed in
    ``excluded`` and counted in the variants table."""
    runs = runs.copy()
    mem = memory_key(runs)
    runs["memory"] = runs[mem] if mem else math.nan
    for col in (ACC, ACC_SWA, THROUGHPUT, WALL, TTT):
        if col not in runs:
            runs[col] = math.nan
    seen = list(dict.fromkeys(runs["group"]))
    order = [g for g in (group_order or []) if g in set(seen)] + [
        g for g in seen if g not in set(group_order or [])
    ]
    finished = runs[runs["status"] == "finished"]

    rows = []
    for group in order:
        every = runs[runs["group"] == group]
        done = finished[finished["group"] == group]
        row: dict = {"variant": group}
        for label in axis_labels:
            col = f"axis.{label}"
            row[label] = every[col].iloc[0] if col in every and len(every) else None
        row["seeds"] = len(done)
        row["runs"] = len(every)
        counts = every["status"].value_counts()
        row["status"] = ", ".join(f"{n} {s}" for s, n in counts.items())
        for col, short in SUMMARISED.items():
            s = stats.mean_ci(done[col].tolist(), confidence)
            row[f"{short}_mean"], row[f"{short}_std"] = s.mean, s.std
            row[f"{short}_lo"], row[f"{short}_hi"] = s.lo, s.hi
        if target_acc is not None:
            row["ttt_reached"] = int(done[TTT].notna().sum())
        rows.append(row)
    variants = pd.DataFrame(rows)
    if not len(variants):
        variants = pd.DataFrame(columns=["variant", "seeds", "runs", "status"])
    if ACC_SWA not in runs or not runs[ACC_SWA].notna().any():
        variants = variants.drop(columns=[c for c in variants if c.startswith("acc_swa_")])
    if target_acc is None:
        variants = variants.drop(columns=[c for c in variants if c.startswith("ttt_")])

    scored = [g for g in order if g in set(finished["group"])]
    base = baseline if baseline in set(scored) else (scored[0] if scored else None)
    base_table = baseline_table(finished, variants, base, scored, confidence)
    axes_table = axis_table(variants, axis_labels, base)
    pareto = pareto_table(variants)
    excluded = runs.loc[
        runs["status"] != "finished", ["variant", "group", "seed", "status", "reason", "run_id"]
    ]
    return Tables(variants, base_table, axes_table, pareto, excluded.reset_index(drop=True), base, mem,
                  target_acc, list(axis_labels), confidence)  # fmt: skip


def baseline_table(
    finished: pd.DataFrame, variants: pd.DataFrame, base: str | None, scored: list[str], confidence: float
) -> pd.DataFrame:
    """Each variant against the baseline: accuracy difference with a paired (by seed) bootstrap
    CI, and the ratios of the seed-mean throughput, memory and wall time."""
    columns = [
        "variant",
        "pairs",
        "acc_diff",
        "acc_diff_lo",
        "acc_diff_hi",
        "train_img_s_ratio",
        "memory_ratio",
        "wall_ratio",
    ]
    if base is None:
        return pd.DataFrame(columns=columns)
    by_seed = {g: dict(zip(f["seed"], f[ACC])) for g, f in finished.groupby("group")}
    means = variants.set_index("variant")
    rows = []
    for group in scored:
        d = stats.paired_bootstrap(by_seed.get(group, {}), by_seed.get(base, {}), confidence=confidence)
        rows.append(
            {
                "variant": group,
                "pairs": d.n,
                "acc_diff": d.diff,
                "acc_diff_lo": d.lo,
                "acc_diff_hi": d.hi,
                "train_img_s_ratio": _ratio(means, group, base, "train_img_s_mean"),
                "memory_ratio": _ratio(means, group, base, "memory_mb_mean"),
                "wall_ratio": _ratio(means, group, base, "wall_s_mean"),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _ratio(means: pd.DataFrame, group: str, base: str, col: str) -> float:
    if col not in means:
        return math.nan
    b = means.at[base, col]
    v = means.at[group, col]
    return float(v / b) if b and not math.isnan(b) and not math.isnan(v) else math.nan


def axis_table(variants: pd.DataFrame, axis_labels: list[str], base: str | None) -> pd.DataFrame:
    """Marginal effect of every axis on accuracy, throughput and memory, averaged over the
    other axes (equal weight per variant that has at least one finished seed)."""
    frames = []
    scored = variants[variants["seeds"] > 0] if "seeds" in variants else variants
    ref_row = (
        variants.set_index("variant").loc[base]
        if base is not None and base in set(variants["variant"])
        else None
    )
    for label in axis_labels:
        if label not in scored or scored[label].nunique() < 2:
            continue
        ref = ref_row[label] if ref_row is not None else None
        parts = []
        for metric, short in (
            ("acc_mean", "acc"),
            ("train_img_s_mean", "train_img_s"),
            ("memory_mb_mean", "memory_mb"),
        ):
            if metric not in scored:
                continue
            eff = stats.marginal_effects(scored, label, metric, reference=ref)
            eff = eff.rename(columns={"mean": short, "delta": f"{short}_delta"})
            parts.append(eff.set_index(["axis", "value"])[[c for c in eff if c.startswith(short)]])
            if short == "acc":
                parts.append(eff.set_index(["axis", "value"])[["variants", "reference"]])
        frames.append(pd.concat(parts, axis=1).reset_index())
    if not frames:
        return pd.DataFrame(columns=["axis", "value", "variants", "reference", "acc", "acc_delta"])
    out = pd.concat(frames, ignore_index=True)
    for short in ("train_img_s", "memory_mb"):
        if short in out:  # speed and memory read better as ratios than as differences
            out[f"{short}_ratio"] = out[short] / (out[short] - out[f"{short}_delta"])
            out = out.drop(columns=[f"{short}_delta"])
    first = ["axis", "value", "reference", "variants"]
    return out[first + [c for c in out if c not in first]]


def pareto_table(variants: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean accuracy against throughput (higher is better) and against peak memory (lower
    is better); ``front_*`` marks the variants no other variant beats on both."""
    cols = ["variant", "acc_mean", "train_img_s_mean", "memory_mb_mean"]
    if not len(variants) or "acc_mean" not in variants:
        return pd.DataFrame(columns=cols + ["front_throughput", "front_memory"])
    p = variants[cols].copy()
    p["front_throughput"] = stats.pareto_front(p, "train_img_s_mean", "acc_mean")
    p["front_memory"] = stats.pareto_front(p, "memory_mb_mean", "acc_mean", maximize_x=False)
    return p
