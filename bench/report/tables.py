"""The report's tables as DataFrames: per variant (over seeds), against the baseline, per axis,
the Pareto fronts, and the runs left out of the statistics (with their reasons)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report import effects, environment, stats

ACC = "test/acc"  # final-epoch test accuracy: what the variant's weights score
VAL_ACC = "val/acc"
VAL_SELECTED = "test/acc_at_best_val"  # test accuracy at the epoch validation would pick
ACC_SWA = "test/acc_swa"
THROUGHPUT = "throughput/train_img_s"
WALL = "time/wall_s"
GPU_MEMORY, RSS = "memory/peak_gpu_mb", "memory/peak_rss_mb"
TTT = "time_to_target_s"

# metric column -> short name used in the table columns (mean ± std [t-interval] over seeds)
SUMMARISED = {
    ACC: "acc",
    VAL_ACC: "val_acc",
    VAL_SELECTED: "acc_valsel",
    ACC_SWA: "acc_swa",
    "memory": "memory_mb",
    WALL: "wall_s",
    TTT: "ttt_s",
}
OPTIONAL = ("val_acc", "acc_valsel", "acc_swa")  # dropped when no run has them


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
    min_effect: float = 0.005
    memory_front: bool = True
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    emulated_bf16: list[str] = field(default_factory=list)  # variants whose bf16 ran emulated


def memory_key(runs: pd.DataFrame) -> str | None:
    """GPU peak memory when any run has it, else the process's peak RSS."""
    for key in (GPU_MEMORY, RSS):
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


def add_val_selected(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """``test/acc_at_best_val``: the test accuracy of the epoch with the best validation accuracy
    (the first such epoch), i.e. model selection that never looks at the test set."""
    runs = runs.copy()
    runs[VAL_SELECTED] = math.nan
    if history.empty:
        return runs
    val = history[history["key"] == VAL_ACC]
    test = history[history["key"] == ACC]
    for i, row in runs.iterrows():
        v = val[val["run_id"] == row["run_id"]].sort_values("step")
        t = test[test["run_id"] == row["run_id"]].set_index("step")["value"]
        if len(v) and len(t):
            best = int(v.loc[v["value"].idxmax(), "step"])
            runs.at[i, VAL_SELECTED] = float(t.get(best, math.nan))
    return runs


def build_tables(
    runs: pd.DataFrame,
    axis_labels: list[str],
    *,
    group_order: list[str] | None = None,
    baseline: str | None = None,
    target_acc: float | None = None,
    confidence: float = 0.95,
    min_effect: float = 0.005,
    memory_front: bool | None = None,
) -> Tables:
    """``runs``: one row per child run (see ``fetch.fetch_runs``), with ``time_to_target_s``
    when a target is set. Statistics use the ``finished`` runs only; the others are listed in
    ``excluded`` and counted in the variants table. ``memory_front`` (default: only for GPU
    memory) puts peak memory on a Pareto front; a CPU's process RSS is not a device cost."""
    runs = runs.copy()
    mem = memory_key(runs)
    runs["memory"] = runs[mem] if mem else math.nan
    for col in (ACC, VAL_ACC, VAL_SELECTED, ACC_SWA, THROUGHPUT, WALL, TTT):
        if col not in runs:
            runs[col] = math.nan
    seen = list(dict.fromkeys(runs["group"]))
    order = [g for g in (group_order or []) if g in set(seen)] + [
        g for g in seen if g not in set(group_order or [])
    ]
    finished = runs[runs["status"] == "finished"]
    variants = variant_table(runs, finished, order, axis_labels, confidence, target_acc is not None)

    scored = [g for g in order if g in set(finished["group"])]
    base = baseline if baseline in set(scored) else (scored[0] if scored else None)
    base_table = effects.baseline_table(finished, variants, base, scored, confidence, min_effect)
    axes_table = effects.axis_table(variants, axis_labels, base)
    front = (mem == GPU_MEMORY) if memory_front is None else memory_front
    pareto = pareto_table(variants, front)
    excluded = runs.loc[
        runs["status"] != "finished", ["variant", "group", "seed", "status", "reason", "run_id"]
    ]
    return Tables(
        variants, base_table, axes_table, pareto, excluded.reset_index(drop=True), base, mem, target_acc,
        list(axis_labels), confidence, min_effect, front, environment.provenance_table(runs),
        environment.warnings(runs), environment.emulated_bf16(runs),
    )  # fmt: skip


def variant_table(
    runs: pd.DataFrame,
    finished: pd.DataFrame,
    order: list[str],
    axis_labels: list[str],
    confidence: float,
    with_target: bool,
) -> pd.DataFrame:
    """One row per variant: accuracies (mean ± std, t-interval), throughput as median with its
    min-max over seeds, memory and wall time."""
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
        speed = stats.median_spread(done[THROUGHPUT].tolist())
        row["train_img_s_median"], row["train_img_s_min"], row["train_img_s_max"] = (
            speed.median, speed.min, speed.max,
        )  # fmt: skip
        if with_target:
            row["ttt_reached"] = int(done[TTT].notna().sum())
        rows.append(row)
    variants = pd.DataFrame(rows)
    if not len(variants):
        return pd.DataFrame(columns=["variant", "seeds", "runs", "status"])
    for short in OPTIONAL:
        if variants[f"{short}_mean"].isna().all():
            variants = variants.drop(columns=[c for c in variants if c.startswith(f"{short}_")])
    if not with_target:
        variants = variants.drop(columns=[c for c in variants if c.startswith("ttt_")])
    return variants


def pareto_table(variants: pd.DataFrame, memory_front: bool = True) -> pd.DataFrame:
    """Seed-mean accuracy against median throughput (higher is better) and, when
    ``memory_front``, against peak memory (lower is better); ``front_*`` marks the variants no
    other variant beats on both."""
    cols = ["variant", "acc_mean", "train_img_s_median", "memory_mb_mean"]
    if not len(variants) or "acc_mean" not in variants:
        return pd.DataFrame(columns=cols + ["front_throughput", "front_memory"])
    p = variants[cols].copy()
    p["front_throughput"] = stats.pareto_front(p, "train_img_s_median", "acc_mean")
    if memory_front:
        p["front_memory"] = stats.pareto_front(p, "memory_mb_mean", "acc_mean", maximize_x=False)
    else:
        p["front_memory"] = False
    return p
