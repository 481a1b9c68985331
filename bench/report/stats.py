"""Pure statistics on small samples (a few seeds): t confidence intervals, paired t-intervals with
an exact sign-flip test and the power they have, Holm's adjustment, Pareto fronts and
positive-valued (time) intervals. No MLflow, no plotting."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: int) -> float:
    """Student-t quantile (cached: a report asks for the same few thousands of times)."""
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


def t_interval(mean: float, sd: float, n: int, alpha: float) -> tuple[float, float]:
    """``mean ± t_{1−α/2, n−1} · sd/√n``; NaN below 2 values or without a spread."""
    if n < 2 or _isnan(sd):
        return math.nan, math.nan
    half = t_quantile(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def by_seed(runs: pd.DataFrame, column: str) -> dict[str, dict]:
    """``{group: {seed: value}}``: what comparisons pair by seed."""
    out: dict[str, dict] = {}
    for group, seed, value in zip(runs["group"], runs["seed"], runs[column]):  # no frame per group
        out.setdefault(group, {})[seed] = value
    return out


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """``mean ± t_{(1+c)/2, n-1} · s/√n``; NaNs are dropped. One value: std and CI are NaN."""
    x = np.asarray([v for v in values if not _isnan(v)], dtype=float)  # None, NaN and text dropped
    if not len(x):
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    return Summary(len(x), float(x.mean()), std, *t_interval(float(x.mean()), std, len(x), 1 - confidence))


MIN_PAIRS = 3  # never call a difference settled from fewer paired seeds
EXACT_FLIPS_MAX = 16  # up to 2^16 sign patterns are enumerated; beyond, a fixed-seed sample
RANDOM_FLIPS = 65_536
FLIP_SEED = 0  # fixed: the same runs always give the same report
MAX_SEEDS_NEEDED = 1000


@dataclass(frozen=True)
class PairedDiff:
    """``variant − baseline`` over the seeds both have (see ``paired_test``)."""

    n: int
    diff: float
    lo: float
    hi: float
    seeds: tuple
    sd: float = math.nan
    p_value: float = math.nan
    mdd: float = math.nan
    seeds_needed: float = math.nan
    verdict: str = "no pairs"
    p_t: float = math.nan  # paired t-test p (two-sided)


def paired_seeds(variant: dict, baseline: dict) -> list:
    """The seeds both arms have a number for, sorted: what a paired comparison runs on."""
    return sorted(s for s in variant if s in baseline and not _isnan(variant[s]) and not _isnan(baseline[s]))


def sign_flip_p(d: Sequence[float]) -> float:
    """Two-sided p-value of the paired sign-flip permutation test: under "no difference" every
    per-seed difference is as likely positive as negative, so the observed |mean| is ranked among
    the |means| of all 2^n sign patterns (exact up to ``EXACT_FLIPS_MAX`` pairs). The smallest
    possible p is 2/2^n: 0.5 with 2 seeds, 0.25 with 3, 0.0625 with 5, 0.03 with 6."""
    x = np.asarray(d, dtype=float)
    n = len(x)
    if n == 0:
        return math.nan
    if n <= EXACT_FLIPS_MAX:
        codes = np.arange(2**n)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)
    else:
        signs = np.random.default_rng(FLIP_SEED).choice([-1.0, 1.0], size=(RANDOM_FLIPS, n))
    observed = abs(x.mean())
    flipped = np.abs((signs * x).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12))


def min_detectable(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal detectable difference of a paired two-sided t-test at level ``alpha`` with the
    given power: ``(t_{1−α/2, n−1} + t_{power, n−1}) · sd_diff / √n``, where sd_diff is the sample
    std of the per-seed differences. NaN below 2 pairs (no spread to go on)."""
    if n < 2 or _isnan(sd):
        return math.nan
    return (t_quantile(1 - alpha / 2, n - 1) + t_quantile(power, n - 1)) * sd / math.sqrt(n)


def seeds_needed(sd: float, effect: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest number of paired seeds (at least ``MIN_PAIRS``) whose minimal detectable
    difference, at the observed ``sd`` of the differences, is at most ``effect``; inf beyond
    ``MAX_SEEDS_NEEDED``, NaN when the spread is unknown."""
    if _isnan(sd) or _isnan(effect) or effect <= 0:
        return math.nan
    n, factor = _detectable_factor(alpha, power)
    ok = np.flatnonzero(factor * sd <= effect)
    return float(n[ok[0]]) if len(ok) else math.inf


@functools.lru_cache(maxsize=16)
def _detectable_factor(alpha: float, power: float) -> tuple[np.ndarray, np.ndarray]:
    """n and (t_{1−α/2, n−1} + t_{power, n−1})/√n for every n at once (cached: the quantiles cost
    most of a paired test, and the report and ``bench calibrate`` ask for the same ones)."""
    from scipy import stats as st

    n = np.arange(MIN_PAIRS, MAX_SEEDS_NEEDED + 1)
    return n, (st.t.ppf(1 - alpha / 2, n - 1) + st.t.ppf(power, n - 1)) / np.sqrt(n)


def paired_test(
    variant: dict,
    baseline: dict,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
    min_effect: float = 0.005,
) -> PairedDiff:
    """Runs paired by seed (``{seed: value}``). The interval is the paired t-interval
    ``mean(d) ± t_{(1+c)/2, n−1} · sd(d)/√n``. The verdict is "better"/"worse" only with at least
    ``MIN_PAIRS`` pairs, the t-interval excluding 0 and the exact sign-flip test agreeing at
    ``α = 1 − confidence``; "leaning better/worse" when only the t-interval excludes 0 (with
    under 6 pairs the sign-flip test cannot reach p < 0.05), "within noise" otherwise."""
    seeds = tuple(paired_seeds(variant, baseline))
    if not seeds:
        return PairedDiff(0, math.nan, math.nan, math.nan, ())
    d = np.asarray([variant[s] - baseline[s] for s in seeds], dtype=float)
    n, mean = len(d), float(d.mean())
    if n == 1:
        return PairedDiff(1, mean, math.nan, math.nan, seeds, verdict="too few seeds")
    alpha = 1 - confidence
    sd = float(d.std(ddof=1))
    lo, hi = t_interval(mean, sd, n, alpha)
    p = sign_flip_p(d)
    if n < MIN_PAIRS:
        verdict = "too few seeds"
    elif lo > 0 or hi < 0:
        direction = "better" if lo > 0 else "worse"
        verdict = direction if p <= alpha else f"leaning {direction}"
    else:
        verdict = "within noise"
    mdd = min_detectable(sd, n, alpha=alpha, power=power)
    needed = seeds_needed(sd, min_effect, alpha=alpha, power=power)
    return PairedDiff(n, mean, lo, hi, seeds, sd, p, mdd, needed, verdict, t_p_value(d))


def t_p_value(d: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test on the per-seed differences ``d`` (NaN below 2)."""
    x = np.asarray(d, dtype=float)
    n = len(x)
    if n < 2:
        return math.nan
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return 1.0 if x.mean() == 0.0 else 0.0
    from scipy import stats as st

    return float(2 * st.t.sf(abs(x.mean()) / (sd / math.sqrt(n)), n - 1))


def tost_p(d: Sequence[float], margin: float) -> float:
    """p-value of the paired two one-sided tests (TOST, Schuirmann 1987) for equivalence within
    ``±margin``: small when the mean difference is shown to lie inside the margin. NaN below 2."""
    x = np.asarray(d, dtype=float)
    n = len(x)
    if n < 2 or _isnan(margin) or margin <= 0:
        return math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    from scipy import stats as st

    se = sd / math.sqrt(n)
    return float(max(st.t.sf((mean + margin) / se, n - 1), st.t.cdf((mean - margin) / se, n - 1)))


@dataclass(frozen=True)
class Pairing:
    """What pairing by seed bought: the correlation of the two arms' per-seed values, the unpaired
    (Welch) interval of the difference of means, and ``efficiency`` = unpaired variance / paired
    variance of the difference (above 1: pairing saved seeds, ``efficiency`` × as many needed
    unpaired; below 1: it cost some)."""

    corr: float
    lo: float
    hi: float
    efficiency: float


def pairing(variant: dict, baseline: dict, confidence: float = 0.95) -> Pairing:
    seeds = paired_seeds(variant, baseline)
    a = np.asarray([variant[s] for s in seeds], dtype=float)
    b = np.asarray([baseline[s] for s in seeds], dtype=float)
    n = len(seeds)
    if n < 3:
        return Pairing(math.nan, math.nan, math.nan, math.nan)
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    corr = float(np.corrcoef(a, b)[0, 1]) if va > 0 and vb > 0 else math.nan
    unpaired_var = (va + vb) / n
    paired_var = float((a - b).var(ddof=1)) / n
    # Welch-Satterthwaite degrees of freedom for the unpaired interval
    df = unpaired_var**2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1)) if unpaired_var > 0 else n - 1
    half = t_quantile((1 + confidence) / 2, max(int(round(df)), 1)) * math.sqrt(unpaired_var)
    diff = float(a.mean() - b.mean())
    eff = unpaired_var / paired_var if paired_var > 0 else math.inf
    return Pairing(corr, diff - half, diff + half, eff)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: controls the family-wise error rate over the comparisons at
    any dependence between them (Holm 1979). NaNs stay NaN and do not count in the family.
    Written out because scipy has only false-discovery-rate control and statsmodels would be a
    dependency for five lines."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    ranked = idx[np.argsort(p[idx], kind="stable")]
    # monotone: never below a smaller p's
    out[ranked] = np.maximum.accumulate(np.minimum(1.0, (len(idx) - np.arange(len(idx))) * p[ranked]))
    return out.tolist()


def family_verdict(d: PairedDiff, p_holm: float, alpha: float, p_equiv_holm: float = math.nan) -> str:
    """The verdict of one comparison inside a family. The unadjusted sign-flip test must agree with
    the Holm-adjusted t-test for "better"/"worse", else "leaning" (under 6 seeds it cannot reach
    0.05); "equivalent": the Holm-adjusted TOST shows the difference within ±min_effect."""
    if d.n < MIN_PAIRS:
        return "too few seeds" if d.n else "no pairs"
    direction = "better" if d.diff > 0 else "worse"
    if p_holm <= alpha:
        return direction if d.p_value <= alpha else f"leaning {direction}"
    if p_equiv_holm <= alpha:
        return "equivalent"
    return "within noise"


@dataclass(frozen=True)
class FamilyDecision:
    """The decisions of one family of comparisons (see ``decide_family``), one entry per comparison."""

    p_holm: list[float]
    p_equivalent: list[float]
    p_equivalent_holm: list[float]
    verdicts: list[str]


def decide_family(diffs: Sequence[PairedDiff], differences: Sequence[Sequence[float]], margin: float,
                  alpha: float) -> FamilyDecision:  # fmt: skip
    """The report's decision rule over one family: Holm over the paired t-tests, the sign-flip check,
    Holm over the equivalence (TOST) tests with ``margin``; ``differences`` are each comparison's
    per-seed differences. The report and ``bench calibrate`` both decide through here."""
    p_holm = holm([d.p_t for d in diffs])
    p_eq = [tost_p(x, margin) for x in differences]
    p_eq_holm = holm(p_eq)
    verdicts = [family_verdict(d, ph, alpha, pe) for d, ph, pe in zip(diffs, p_holm, p_eq_holm)]
    return FamilyDecision(p_holm, p_eq, p_eq_holm, verdicts)


def pareto_front(
    points: pd.DataFrame, x: str, y: str, *, maximize_x: bool = True, maximize_y: bool = True
) -> pd.Series:
    """Boolean mask: rows that no other row dominates (at least as good on both, better on one).
    Rows with a NaN in ``x`` or ``y`` are never on the front."""
    v = points[[x, y]].to_numpy(dtype=float) * [1.0 if maximize_x else -1.0, 1.0 if maximize_y else -1.0]
    ok = ~np.isnan(v).any(axis=1)
    at_least, better = v[None, :, :] >= v[:, None, :], v[None, :, :] > v[:, None, :]  # [i, j]: j vs i
    dominated = (at_least.all(axis=2) & better.any(axis=2) & ok[None, :]).any(axis=1)
    return pd.Series(ok & ~dominated, index=points.index)


def time_to_target(accuracies: Sequence[float], epoch_seconds: Sequence[float], target: float) -> float:
    """Seconds until the per-epoch accuracy first reaches ``target``: the sum of the epochs'
    seconds up to and including that epoch (never negative). NaN if never reached."""
    total = 0.0
    for acc, seconds in zip(accuracies, epoch_seconds):
        if _isnan(seconds):
            return math.nan
        total += max(float(seconds), 0.0)
        if not _isnan(acc) and acc >= target:
            return total
    return math.nan


def log_scale_ci(logs: Sequence[float], confidence: float = 0.95) -> Summary:
    """The t-interval of the mean of logarithms, mapped back: a geometric mean (or a geometric-mean
    ratio, for log ratios) and its interval, never below zero. ``std`` is the geometric standard
    deviation factor."""
    s = mean_ci(logs, confidence)
    exp = lambda v: math.nan if _isnan(v) else math.exp(v)  # noqa: E731
    return Summary(s.n, exp(s.mean), exp(s.std), exp(s.lo), exp(s.hi))


def geometric_ci(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Geometric mean of positive values with its interval on the log scale: for times, which are
    skewed and can never go below zero (a t-interval on the seconds themselves can)."""
    x = [float(v) for v in values if positive(v)]
    return log_scale_ci(np.log(x).tolist() if x else [], confidence)


def missing(v) -> bool:
    """None or NaN; a value that is no number (a string tag) is not missing."""
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def positive(v) -> bool:
    """A number above zero (None, NaN and text are not)."""
    return not _isnan(v) and float(v) > 0


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
