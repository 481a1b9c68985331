"""Anytime-valid decisions on paired seed differences: the verdicts ``bench run --until-decided``
stops on, and the report's "sequential verdict" column (one code path for both).

Looking at a t-interval after every added seed and stopping once it excludes 0 inflates its
error far beyond α. The confidence sequence used here is instead valid at every number of seeds
at once, so bench may look after each seed and stop whenever it likes:

    CS_n = { μ : BF_n(μ) < 1/α },
    BF_n(μ) = (1+n·g)^(-1/2) · [ (1 + t²/ν) / (1 + t²/(ν·(1+n·g))) ]^(n/2),  t = (mean−μ)/(sd/√n), ν = n−1,

the Bayes factor of the one-sample t-test with a N(0, g) prior on the standardized effect and the
right-Haar prior 1/σ on the spread (Rouder et al. 2009, eq. 1). Under μ it is a nonnegative
martingale (in the scale-invariant filtration) starting at 1, so by Ville's inequality
P(∃n: BF_n(μ) ≥ 1/α) ≤ α: the true mean difference stays inside CS_n at every n with
probability ≥ 1 − α, whatever the stopping rule (Lai 1976, "On confidence sequences", Ann. Statist.
4:265; Pérez-Ortiz, Lardy, de Heide & Grünwald 2024, "E-statistics, group invariance and
anytime-valid testing", Ann. Statist. 52:1410). It needs no bound on the range (a betting
test on differences in [−1, 1] would need thousands of seeds to resolve 0.002) and no known
spread, at the price of assuming per-seed differences are roughly normal. BF_n is increasing in
|t|, so CS_n is ``mean ± c_n·sd/√n`` with c_n in closed form (``cs_factor``).

Verdicts: "better" (CS above 0), "worse" (below 0), "equivalent" (inside ±margin), else
"undecided". A wrong one of any kind needs the CS to miss the true difference: at most α per
comparison. A family of m comparisons uses α/m each (Bonferroni: the union bound holds at any
stopping times and any dependence through the shared baseline), fixed by the recipe before any
result is seen: m = every variant but the baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PRIOR_SCALE = 1.0  # g: prior variance of the standardized effect (|δ| ~ 1 is what seeds resolve)
MIN_SEEDS = 2  # the first difference carries no information on the spread (scale-invariant)
UNDECIDED = "undecided"
# On a ``--until-decided`` parent run: the settings it decided with, so the report decides the same way.
SETTINGS_TAG = "bench.until_decided"


def cs_factor(n: int, alpha: float, g: float | None = None) -> float:
    """c_n: CS_n is mean ± c_n·sd/√n. Solves BF_n(t) = 1/α for t: with u = t²/ν, k = 1 + n·g and
    r = (√k/α)^(2/n), (1+u)/(1+u/k) = r gives u = (r−1)/(1−r/k). inf when even t → ∞ cannot
    reach 1/α with n seeds (r ≥ k)."""
    if n < MIN_SEEDS:
        return math.inf
    k = 1.0 + n * (PRIOR_SCALE if g is None else g)
    r = (math.sqrt(k) / alpha) ** (2.0 / n)
    if r >= k:
        return math.inf
    return math.sqrt((n - 1) * (r - 1.0) / (1.0 - r / k))


@dataclass(frozen=True)
class Sequential:
    """One comparison's confidence sequence at its level and the verdict it gives."""

    n: int
    diff: float
    lo: float
    hi: float
    alpha: float
    verdict: str


def decide(d: Sequence[float], alpha: float, margin: float) -> Sequential:
    """The verdict on per-seed differences ``d`` (variant − baseline) at level ``alpha`` (already
    divided by the family size) with equivalence margin ``margin``."""
    x = np.asarray([v for v in d if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n < MIN_SEEDS:
        return Sequential(n, float(x.mean()) if n else math.nan, -math.inf, math.inf, alpha, "too few seeds")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    c = cs_factor(n, alpha)
    half = math.inf if math.isinf(c) else c * sd / math.sqrt(n)  # too few seeds to bound it: never decide
    lo, hi = mean - half, mean + half
    if lo > 0:
        verdict = "better"
    elif hi < 0:
        verdict = "worse"
    elif -margin < lo and hi < margin:
        verdict = "equivalent"
    else:
        verdict = UNDECIDED
    return Sequential(n, mean, lo, hi, alpha, verdict)


def decide_family(
    diffs: dict[str, Sequence[float]], alpha: float, margin: float, family: int | None = None
) -> dict[str, Sequential]:
    """Every comparison of one family at ``alpha / family`` (Bonferroni; ``family`` defaults to
    the number of comparisons given and must be fixed in advance, not by which are decided)."""
    m = max(family if family is not None else len(diffs), 1)
    return {g: decide(d, alpha / m, margin) for g, d in diffs.items()}


def paired_diffs(variant: dict, baseline: dict) -> list[float]:
    """``variant − baseline`` over the seeds both have (``{seed: value}``), in seed order."""
    ok = [s for s in variant if s in baseline and _finite(variant[s]) and _finite(baseline[s])]
    return [float(variant[s]) - float(baseline[s]) for s in sorted(ok)]


def _finite(v) -> bool:
    try:
        return not math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def next_round(
    by_seed: dict[str, dict], base: str, comparisons: Sequence[str], attempted: dict[str, int],
    max_seeds: int, alpha: float, margin: float,
) -> tuple[list[str], dict[str, Sequential]]:  # fmt: skip
    """What ``--until-decided`` does after a round: the comparisons still undecided (or with too
    few seeds) and under ``max_seeds`` attempted seeds get one seed more, and so does the baseline
    wherever it lacks one of theirs (the caller adds it). Returns those groups and every verdict."""
    verdicts = decide_family(
        {g: paired_diffs(by_seed.get(g, {}), by_seed.get(base, {})) for g in comparisons},
        alpha, margin, family=len(comparisons),
    )  # fmt: skip
    grow = [g for g, s in verdicts.items() if s.verdict in (UNDECIDED, "too few seeds")
            and attempted.get(g, 0) < max_seeds]  # fmt: skip
    return grow, verdicts
