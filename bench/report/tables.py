"""The report's tables as DataFrames: per variant (over seeds), against the baseline, per axis,
the Pareto fronts, and the runs left out of the statistics (with their reasons)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from bench.report import effects, environment, speed, stats
from bench.report.speed import THROUGHPUT, WALL

ACC = "test/acc"  # final test accuracy of the model the variant delivers (SWA's, EMA's, the weights)
ACC_RAW = "test/acc_raw"  # the trained weights' own final test accuracy
VAL_ACC = "val/acc"
VAL_SELECTED = "test/acc_at_best_val"  # test accuracy at the epoch validation would pick
TRAIN_TIME = "time/train_s"  # training steps only: no setup, evaluation or BN update
EPOCH_TRAIN_TIME = "time/train_epoch_s"
GPU_MEMORY, RSS = "memory/peak_gpu_mb", "memory/peak_rss_mb"
TTT = "time_to_target_s"
TTT_ON = "time_to_target_on"  # which split's accuracy decided the target (val where it exists)

# metric column -> short name used in the table columns (mean ± std [t-interval] over seeds)
SUMMARISED = {
    ACC: "acc",
    ACC_RAW: "acc_raw",
    VAL_ACC: "val_acc",
    VAL_SELECTED: "acc_valsel",
    "memory": "memory_mb",
}
# times are positive and skewed: geometric mean with a t-interval on the log scale, never below 0
POSITIVE = {WALL: "wall_s", TRAIN_TIME: "train_s", TTT: "ttt_s"}
OPTIONAL = ("acc_raw", "val_acc", "acc_valsel", "train_s")  # dropped when no run has them


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
    confidence: float = 0.95
    min_effect: float = 0.005
    memory_front: bool = True
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    emulated_bf16: list[str] = field(default_factory=list)  # variants whose bf16 ran emulated
    speed_floor: float = math.nan  # speed ratios within [1/floor, floor] are not called a difference
    speed_floor_source: str = ""
    sequential: dict | None = None  # settings of a --until-decided run (report/sequential.py)

    @property
    def family(self) -> int:
        """How many comparisons with the baseline form the Holm family (0 with none)."""
        b = self.baseline
        return int(b["family"].max()) if len(b) and b["family"].notna().any() else 0


def memory_key(runs: pd.DataFrame) -> str | None:
    """GPU peak memory when any run has it, else the process's peak RSS."""
    return next((key for key in (GPU_MEMORY, RSS) if key in runs and runs[key].notna().any()), None)


def add_epoch_columns(runs: pd.DataFrame, history: pd.DataFrame, target: float | None) -> pd.DataFrame:
    """The columns read off the per-epoch curves.

    ``test/acc_at_best_val``: the test accuracy of the (first) epoch with the best validation
    accuracy, i.e. model selection that never looks at the test set.

    ``time_to_target_s``: training seconds until the target accuracy is first reached (as AlgoPerf
    measures it), on validation accuracy where the run has a validation split, else on test accuracy
    (said in ``time_to_target_on``); the sum of the per-epoch training times up to that epoch, so
    setup, evaluation and a machine's load between epochs do not count."""
    runs = runs.assign(**{TTT: math.nan, TTT_ON: None, VAL_SELECTED: math.nan})
    if history.empty:
        return runs
    curves = history.pivot(index=["run_id", "step"], columns="key", values="value").sort_index()
    for i, run_id in runs["run_id"].items():
        mine = curves.loc[run_id] if run_id in curves.index else pd.DataFrame()
        val, test, seconds = (
            mine.get(k, pd.Series(dtype=float)).dropna() for k in (VAL_ACC, ACC, EPOCH_TRAIN_TIME)
        )
        if len(val) and len(test):
            runs.at[i, VAL_SELECTED] = float(test.get(val.idxmax(), math.nan))
        if target is not None:
            curve = val if len(val) else test
            if len(seconds) != len(curve):  # recorded before per-epoch times: the wall time spread evenly
                seconds = [runs.at[i, WALL] / len(curve) if WALL in runs else math.nan] * len(curve)
            runs.at[i, TTT] = stats.time_to_target(curve.tolist(), list(seconds), target)
            runs.at[i, TTT_ON] = "val" if len(val) else "test"
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
    compute_neutral: set[str] | None = None,
) -> Tables:
    """``runs``: one row per child run (see ``fetch.fetch_runs``), with ``time_to_target_s``
    when a target is set. Statistics use the ``finished`` runs only; the others are listed in
    ``excluded`` and counted in the variants table. ``memory_front`` (default: only for GPU
    memory) puts peak memory on a Pareto front; a CPU's process RSS is not a device cost."""
    runs = runs.copy()
    mem = memory_key(runs)
    runs["memory"] = runs[mem] if mem else math.nan
    for col in (ACC, ACC_RAW, VAL_ACC, VAL_SELECTED, THROUGHPUT, WALL, TRAIN_TIME, TTT):
        if col not in runs:
            runs[col] = math.nan
    seen = set(runs["group"])
    order = [g for g in dict.fromkeys([*(group_order or []), *runs["group"]]) if g in seen]
    finished = runs[runs["status"] == "finished"]
    variants = variant_table(runs, finished, order, axis_labels, confidence, target_acc is not None)

    scored = [g for g in order if g in set(finished["group"])]
    base = baseline if baseline in set(scored) else (scored[0] if scored else None)
    floor, floor_source = (
        speed.noise_floor(finished, base, compute_neutral or set())
        if base
        else (math.nan, "no baseline run finished")
    )
    base_table = effects.baseline_table(finished, base, scored, confidence, min_effect, floor)
    axes_table = effects.axis_table(variants, finished, axis_labels, base, confidence)
    front = (mem == GPU_MEMORY) if memory_front is None else memory_front
    pareto = pareto_table(variants, front)
    excluded = runs.loc[
        runs["status"] != "finished", ["variant", "group", "seed", "status", "reason", "run_id"]
    ]
    return Tables(
        variants, base_table, axes_table, pareto, excluded.reset_index(drop=True), base, mem, target_acc,
        confidence, min_effect, front, environment.provenance_table(runs),
        environment.warnings(runs), environment.emulated_bf16(runs), floor, floor_source,
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
    min-max over the seeds timed on a quiet machine, memory and wall time."""
    rows = []
    # one pass to split the runs by variant: a boolean mask per variant costs O(variants x runs)
    every_of = dict(tuple(runs.groupby("group", sort=False)))
    done_of = dict(tuple(finished.groupby("group", sort=False)))
    for group in order:
        every = every_of[group]
        done = done_of.get(group, finished.iloc[:0])
        row: dict = {"variant": group}
        for label in axis_labels:
            row[label] = every[f"axis.{label}"].iloc[0] if f"axis.{label}" in every else None
        row["seeds"], row["runs"] = len(done), len(every)
        row["status"] = ", ".join(f"{n} {s}" for s, n in every["status"].value_counts().items())
        if "delivered" in done:
            row["delivered"] = ", ".join(dict.fromkeys(done["delivered"].dropna())) or None
        for col, short in SUMMARISED.items():
            s = stats.mean_ci(done[col].tolist(), confidence)
            row.update({f"{short}_{k}": getattr(s, k) for k in ("mean", "std", "lo", "hi")})
        dirty = speed.contaminated(done)
        for col, short in POSITIVE.items():
            # time to target ranks variants by speed: like img/s, only runs timed on a quiet machine
            timed = done.loc[~dirty, col] if col == TTT else done[col]
            s = stats.geometric_ci(timed.tolist(), confidence)
            row.update({f"{short}_{k}": getattr(s, k) for k in ("mean", "lo", "hi", "n")})
            row[f"{short}_min"], row[f"{short}_max"] = timed.min(), timed.max()
        # throughput on a shared machine swings by tens of percent between identical runs: a mean
        # ± CI would pretend to a precision it does not have, so the median and its range, over the
        # runs the contention monitor found clean (a run timed under load measures the load)
        img_s = done.loc[~dirty, THROUGHPUT].astype(float)
        row.update(
            train_img_s_median=img_s.median(), train_img_s_min=img_s.min(), train_img_s_max=img_s.max()
        )
        row["train_img_s_n"] = int(img_s.count())  # a range from one run is no spread to rank by
        row["speed_contaminated"] = int(dirty.sum())  # counted, so the summary can say so
        if with_target:
            row["ttt_reached"] = int(done[TTT].notna().sum())
            row["ttt_on"] = next(iter(done[TTT_ON].dropna()), None) if TTT_ON in done else None
        rows.append(row)
    variants = pd.DataFrame(rows)
    if not len(variants):
        return pd.DataFrame(columns=["variant", "seeds", "runs", "status"])
    if "delivered" in variants and set(variants["delivered"].dropna()) <= {"weights"}:
        variants = variants.drop(columns=["acc_raw_mean", "acc_raw_std", "acc_raw_lo", "acc_raw_hi"])
    for short in OPTIONAL:
        if f"{short}_mean" in variants and variants[f"{short}_mean"].isna().all():
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
    on_memory = stats.pareto_front(p, "memory_mb_mean", "acc_mean", maximize_x=False)
    p["front_memory"] = on_memory if memory_front else False
    return p
