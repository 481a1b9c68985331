"""Cost as a paired measurement: each variant's throughput and peak memory against the baseline's
on the same seed (the same block of the run order, so machine drift hits both), as a geometric
mean ratio with a t-interval over seeds on the log scale. Runs the contention monitor marked
contaminated are left out and counted. A speed difference is called only when the interval clears
a noise floor measured from arms that run the same per-step computation as the baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report import stats

THROUGHPUT = "throughput/train_img_s"
WALL = "time/wall_s"
CONTAMINATED = "contention/speed_contaminated"
# A variant that changes only these keys runs the baseline's per-step computation (the schedule,
# SWA's epoch-end averaging and label smoothing do not change the forward/backward): its speed ratio
# to the baseline is an A/A measurement of the machine's noise.
COMPUTE_NEUTRAL_PREFIXES = ("train.scheduler", "train.swa", "train.label_smoothing", "train.optimizer.lr")
MIN_FLOOR = 0.01  # never call a speed difference under 1%
MIN_AA_PAIRS = 3  # clean seed pairs a compute-neutral variant needs to set the noise floor


def log_ratio(a, b) -> float:
    """``log(a / b)``; NaN unless both are positive numbers."""
    return math.log(a / b) if stats.positive(a) and stats.positive(b) else math.nan


def paired_ratio(variant: dict, baseline: dict, confidence: float = 0.95) -> stats.Summary:
    """Geometric mean of the per-seed ratios (``mean``) with its t-interval on the logs, over the
    ``n`` seeds both have."""
    return stats.log_scale_ci(
        [log_ratio(variant[s], baseline[s]) for s in variant if s in baseline], confidence
    )


def contaminated(runs: pd.DataFrame) -> pd.Series:
    """Runs whose speed the contention monitor marked (other processes took a share of the cores
    beyond the threshold, or computed on the same GPU)."""
    if CONTAMINATED not in runs:
        return pd.Series(False, index=runs.index)
    return runs[CONTAMINATED].fillna(0.0).astype(float) > 0.5


def noise_floor(finished: pd.DataFrame, base: str, neutral: set[str]) -> tuple[float, str]:
    """The ratio (≥ 1) within which a speed difference is not called, and where it came from: the
    largest geometric-mean ratio to the baseline among compute-neutral variants, i.e. the biggest
    speed difference this study shows between arms that do identical work per step.

    Why the mean and not single pairs: random run-to-run noise is the interval's job; the floor
    guards against what does not average out over seeds (an arm's place in its block, a process's
    memory layout), and it shrinks to that as seeds accumulate, so a real difference is called once
    its interval clears it. A floor from single pairs (their 95% quantile) never shrinks: at 8%
    per-run noise a true 1.25× was called faster in ~12% of studies at 3, 6 or 10 seeds alike
    (``bench calibrate`` measures both rates). Only a variant with ``MIN_AA_PAIRS`` clean pairs sets
    the floor: a mean over fewer (contention left one run) is mostly one run's noise, and a floor
    from it called a real, tight 1.2× speed-up 'same'. Without one the floor is ``MIN_FLOOR``: the
    baseline's own spread across seeds is no substitute, since it holds the drift that pairing
    removes."""
    clean = finished[~contaminated(finished)]
    speed = stats.by_seed(clean, THROUGHPUT) if THROUGHPUT in clean else {}
    ref = speed.get(base, {})
    means, pairs = [], 0
    for g in sorted(neutral & set(speed) - {base}):
        logs = [x for s, v in speed[g].items() if s in ref and not math.isnan(x := log_ratio(v, ref[s]))]
        if len(logs) >= MIN_AA_PAIRS:
            means.append(abs(float(np.mean(logs))))
            pairs += len(logs)
    if not means:
        return 1 + MIN_FLOOR, (
            f"the minimum: no compute-neutral variant has {MIN_AA_PAIRS} clean A/A pairs with the baseline"
        )
    floor = max(math.exp(max(means)), 1 + MIN_FLOOR)
    return (
        floor,
        f"A/A: the largest mean ratio of {len(means)} compute-neutral variant(s), {pairs} seed pairs",
    )


def speed_verdict(r: stats.Summary, floor: float) -> str:
    if r.n < 2 or math.isnan(r.lo) or math.isnan(floor):
        return "too few seeds"
    if r.lo > floor:
        return "faster"
    if r.hi < 1 / floor:
        return "slower"
    if r.lo >= 1 / floor and r.hi <= floor:
        return "same within the noise floor"
    return "undecided"
