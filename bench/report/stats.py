"""Pure statistics on small samples (a few seeds): t confidence intervals, a paired bootstrap
over seeds, Pareto fronts and per-axis marginal effects. No MLflow, no plotting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0  # fixed: the same runs always give the same report
BOOTSTRAP_SAMPLES = 10_000


def t_quantile(q: float, df: int) -> float:
    """Student-t quantile."""
    from scipy import stats as st

    return float(st.t.ppf(q, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and the two-sided t confidence interval of the mean."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """``mean ± t_{(1+c)/2, n-1} · s/√n``; NaNs are dropped. One value: std and CI are NaN."""
    x = np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedDiff:
    """``variant − baseline`` over the seeds both have: mean difference and a bootstrap CI."""

    n: int
    diff: float
    lo: float
    hi: float
    seeds: tuple


def paired_bootstrap(
    variant: dict,
    baseline: dict,
    *,
    confidence: float = 0.95,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDiff:
    """Paired bootstrap over seeds: runs are paired by seed (``{seed: value}``), the per-seed
    differences are resampled with replacement ``samples`` times with a fixed RNG seed, and the
    CI is the percentile interval of the resampled mean differences. With one pair the CI is NaN."""
    seeds = tuple(
        sorted(s for s in variant if s in baseline and not _isnan(variant[s]) and not _isnan(baseline[s]))
    )
    if not seeds:
        return PairedDiff(0, math.nan, math.nan, math.nan, ())
    d = np.asarray([variant[s] - baseline[s] for s in seeds], dtype=float)
    if len(d) == 1:
        return PairedDiff(1, float(d[0]), math.nan, math.nan, seeds)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(samples, len(d)))
    means = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return PairedDiff(len(d), float(d.mean()), float(lo), float(hi), seeds)


def pareto_front(
    points: pd.DataFrame, x: str, y: str, *, maximize_x: bool = True, maximize_y: bool = True
) -> pd.Series:
    """Boolean mask: rows that no other row dominates (at least as good on both, better on one).
    Rows with a NaN in ``x`` or ``y`` are never on the front."""
    sx = 1.0 if maximize_x else -1.0
    sy = 1.0 if maximize_y else -1.0
    vx = points[x].to_numpy(dtype=float) * sx
    vy = points[y].to_numpy(dtype=float) * sy
    ok = ~(np.isnan(vx) | np.isnan(vy))
    mask = np.zeros(len(points), dtype=bool)
    for i in range(len(points)):
        if not ok[i]:
            continue
        dominated = ok & (vx >= vx[i]) & (vy >= vy[i]) & ((vx > vx[i]) | (vy > vy[i]))
        mask[i] = not dominated.any()
    return pd.Series(mask, index=points.index)


def marginal_effects(
    variants: pd.DataFrame, axis: str, metric: str, reference: str | None = None
) -> pd.DataFrame:
    """Marginal effect of one axis: for each of its values, the mean of ``metric`` over the
    variants (one row per variant, already averaged over seeds) that have that value, i.e.
    averaged with equal weight over the settings of the other axes. ``delta`` is against the
    ``reference`` value (default: the first value in row order). In a full factorial this is the
    classic main effect; with ``include`` extras it is an average over what was run."""
    frame = variants[[axis, metric]].dropna()
    rows = []
    order = list(dict.fromkeys(frame[axis]))
    for value in order:
        vals = frame.loc[frame[axis] == value, metric]
        rows.append({"axis": axis, "value": value, "variants": len(vals), "mean": float(vals.mean())})
    out = pd.DataFrame(rows, columns=["axis", "value", "variants", "mean"])
    if len(out):
        ref = reference if reference in set(order) else order[0]
        out["delta"] = out["mean"] - float(out.loc[out["value"] == ref, "mean"].iloc[0])
        out["reference"] = ref
    return out


def time_to_target(accuracies: Sequence[float], wall_s: float, target: float) -> float:
    """Seconds until the per-epoch test accuracy first reaches ``target``, with the run's wall
    time spread evenly over its epochs (epoch k ends at ``wall_s·(k+1)/epochs``). NaN if never."""
    n = len(accuracies)
    if n == 0 or _isnan(wall_s):
        return math.nan
    for k, acc in enumerate(accuracies):
        if acc is not None and not _isnan(acc) and acc >= target:
            return float(wall_s) * (k + 1) / n
    return math.nan


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
