"""Group-sequential decisions on seed comparisons: the verdicts ``bench run --until-decided`` stops
on, and the report's "sequential verdict" column (one code path for both, and for ``bench
calibrate``, which feeds it arrays of simulated studies).

Looking at a t-interval after every added seed and stopping once it excludes 0 inflates its error
far beyond α. Here the looks are planned: one at every seed count n from the recipe's seeds
(``first``, at least ``MIN_SEEDS``) to ``--max-seeds`` (``last``), and α is spent over them by the
Lan–DeMets Pocock-type function α(t) = α·ln(1 + (e−1)·t), t = n/last (Lan & DeMets 1983,
Biometrika 70:659; Jennison & Turnbull 2000, "Group Sequential Methods with Applications to
Clinical Trials", §7.2): look k's bound c_k solves P(no earlier exit, |T_k| ≥ c_k) = α(t_k) −
α(t_{k−1}). Pocock-type spending keeps the bounds nearly flat, so the early looks, where a large
effect is seen, get a fair share of α: a smaller expected seed count under an effect than
O'Brien–Fleming's.

The spread is unknown, so T_k are t statistics. Jennison & Turnbull's "significance level
approach" (§3.8: the normal bounds' nominal levels used as t quantiles) errs at few degrees of
freedom: two arms from 3 to 12 seeds wrongly decided 5.6% of A/A comparisons at α = 0.05. So
``t_levels`` sets the bounds on the t statistics' own joint law under no effect, which is free of
the spread (the two compared arms seed by seed; the other arms' sums of squares a χ² gaining a−2
degrees of freedom per seed with a arms pooled): simulated once per design (fixed seed, 400,000
paths, cached), the first look exact. The spread is pooled over *every arm of the study*
(baseline and all variants; each arm's own mean removed): with 11 arms at 4 seeds that is 33 df
instead of the paired t's 3. That assumes the arms share one per-run spread; an arm twice as
noisy as the rest would then get too narrow an interval (``bench calibrate``: family-wise error
0.10 with per-arm sds spread ×½..×2). So the spread used is never below the comparison's own two
arms' pooled spread (``max(s²_all, s²_pair)``, df of the pool): at equal spreads it costs a
little power, at unequal ones it keeps the error under α. The difference is ``mean(variant) −
mean(baseline)`` over the seeds both have, standard error s·√(2/n) (unpaired: runs that
decorrelate gain nothing from pairing, and it doubles the df).

The interval ``diff ± t_{df}(c_k)·s·√(2/n)`` is a repeated confidence interval (Jennison &
Turnbull ch. 9): it holds the true difference at every look at once with probability ≥ 1 − α, so
whichever verdict the looks stop on — "better" (above 0), "worse" (below 0), "equivalent" (inside
±margin) — is wrong with probability at most α, and "equivalent" (a one-sided miss) at most α/2.
A family of m comparisons uses α/m each (Bonferroni: holds at any stopping times and through the
shared baseline), m fixed by the recipe before any result is seen.

The report shows these verdicts for runs that ``--until-decided`` produced (``add_sequential``),
decided with the settings that run recorded on its parent run, so it says what the runner stopped
on: the fixed-design verdicts beside it assume a seed count fixed in advance, which an adaptive
run breaks."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.report import stats

MIN_SEEDS = 3  # the first look: as the report's stats.MIN_PAIRS, never settled from fewer paired seeds
UNDECIDED = "undecided"
TOO_FEW = "too few seeds"
PATHS = 400_000  # simulated studies per design of t_levels: each look's level to ~2% of itself at α = 0.05
MAX_ARMS = 16  # t_levels beyond: as good as the normal levels; more arms use these, a little conservatively
# On a ``--until-decided`` parent run: the settings it decided with, so the report decides the same way.
SETTINGS_TAG = "bench.until_decided"


def spent(t, alpha: float):
    """Lan–DeMets Pocock-type spending: the share of α used by information fraction ``t``."""
    return alpha * np.log1p((math.e - 1.0) * np.minimum(t, 1.0))


@functools.lru_cache(maxsize=512)
def t_levels(first: int, last: int, alpha: float, arms: int) -> tuple[float, ...]:
    """Two-sided nominal levels of the looks n = first..last for the t statistic whose spread is
    pooled over ``arms`` arms (df = arms·(n−1)), spending α(n/last) by look n: the exact law under
    no effect, simulated (see the module's docstring). Deterministic: a fixed seed."""
    from scipy import stats as st

    info = np.arange(first, last + 1)
    step = np.diff(spent(info / info[-1], alpha), prepend=0.0)
    rng = np.random.default_rng(20_260_617)
    # the compared pair seed by seed (its sums of squares move with its means); the other arms'
    # squares are independent of them: a χ² that gains arms−2 degrees of freedom per seed
    pair = rng.standard_normal((PATHS, 2, first))
    total, squares = pair.sum(axis=2), (pair * pair).sum(axis=2)
    others = rng.chisquare((arms - 2) * (first - 1), PATHS) if arms > 2 and first > 1 else np.zeros(PATHS)
    running = np.ones(PATHS, dtype=bool)
    levels = []
    for k, n in enumerate(info):
        if k:
            x = rng.standard_normal((PATHS, 2))
            total += x
            squares += x * x
            others += rng.chisquare(arms - 2, PATHS) if arms > 2 else 0.0
        ss = squares - total**2 / n
        ss = (ss[:, 1] if arms == 1 else ss.sum(axis=1)) + others
        df = arms * (n - 1)
        t = np.abs(total[:, 1] - total[:, 0]) / n / np.sqrt(ss / df * 2.0 / n)
        if k == 0:  # the first look alone is a plain t-test: its level is exact
            bound = float(st.t.isf(step[0] / 2.0, df))
        else:
            exits = max(int(round(step[k] * PATHS)), 1)  # paths this look may stop, of all PATHS
            bound = float(np.partition(np.where(running, t, 0.0), PATHS - exits)[PATHS - exits])
        running &= t < bound
        levels.append(float(2.0 * st.t.sf(bound, df)))
    return tuple(levels)


def nominal_alpha(n, first: int, last: int, alpha: float, arms) -> np.ndarray:
    """The two-sided nominal level of look ``n`` (array) for a spread pooled over ``arms`` arms
    (array; its df over n−1, rounded down: fewer df than calibrated for would be liberal, more
    only conservative). Counts outside first..last (a failed run left fewer seeds; a later run
    raised the cap) use the nearest planned look."""
    first = max(first, MIN_SEEDS)
    last = max(last, first)
    look = np.clip(np.asarray(n, dtype=int), first, last) - first
    arms = np.clip(np.floor(np.asarray(arms, dtype=float) + 1e-9), 1, MAX_ARMS).astype(int)
    arms, look = np.broadcast_arrays(arms, look)
    out = np.empty(look.shape)
    for a in np.unique(arms):
        out[arms == a] = np.asarray(t_levels(first, last, float(alpha), int(a)))[look[arms == a]]
    return out


def spread(ss_all, df_all, ss_pair, df_pair):
    """The per-run variance a comparison uses: the study's pooled one, but never below its own two
    arms' (see the module's docstring). NaN without degrees of freedom."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = np.where(np.asarray(df_all) > 0, np.asarray(ss_all) / np.asarray(df_all), np.nan)
        pair = np.where(np.asarray(df_pair) > 0, np.asarray(ss_pair) / np.asarray(df_pair), 0.0)
    return np.maximum(pooled, pair)


def decide_stats(diff, n, var, df, *, first: int, last: int, alpha: float, margin: float):
    """Vectorised verdicts from each comparison's statistics at its look: ``diff`` (mean difference
    over ``n`` paired seeds), ``var`` (per-run variance, ``spread``) with ``df`` degrees of
    freedom. ``alpha`` is per comparison. Returns (lo, hi, verdict) arrays."""
    from scipy import stats as st

    diff, n, var, df = (np.asarray(a, dtype=float) for a in (diff, n, var, df))
    ok = (n >= MIN_SEEDS) & (df >= 1)
    safe_n, safe_df = np.where(ok, n, MIN_SEEDS), np.where(ok, df, 1.0)
    level = nominal_alpha(safe_n, first, last, alpha, arms=safe_df / np.maximum(safe_n - 1, 1))
    half = st.t.isf(level / 2.0, safe_df) * np.sqrt(var * 2.0 / safe_n)
    half = np.where(ok, half, np.inf)
    lo, hi = diff - half, diff + half
    verdict = np.select(
        [~ok, lo > 0, hi < 0, (lo > -margin) & (hi < margin)],
        [TOO_FEW, "better", "worse", "equivalent"],
        UNDECIDED,
    )
    return lo, hi, verdict


@dataclass(frozen=True)
class Sequential:
    """One comparison's repeated confidence interval at its look and the verdict it gives."""

    n: int
    diff: float
    lo: float
    hi: float
    alpha: float
    verdict: str
    df: float = math.nan


def look_stats(by_seed: dict[str, dict], base: str, group: str) -> tuple[int, float, float, float]:
    """(n, diff, var, df) of ``group`` against ``base`` at its look: the seeds both have, and the
    spread pooled over every arm's seeds up to the last of those (what the runner saw then, so the
    report, reading the finished study, reproduces the runner's verdict)."""
    arms = {g: {s: float(x) for s, x in v.items() if not stats.missing(x)} for g, v in by_seed.items()}
    b, v = arms.get(base, {}), arms.get(group, {})
    paired = stats.paired_seeds(v, b)
    if not paired:
        return 0, math.nan, math.nan, 0.0
    diff = float(np.mean([v[s] for s in paired]) - np.mean([b[s] for s in paired]))
    cut = paired[-1]
    ss = df = ss_pair = df_pair = 0.0
    for g, arm in arms.items():
        x = np.asarray([val for s, val in arm.items() if s <= cut])
        if len(x) >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
        if g in (base, group):
            y = np.asarray([arm[s] for s in paired])
            ss_pair, df_pair = ss_pair + float(((y - y.mean()) ** 2).sum()), df_pair + len(y) - 1
    return len(paired), diff, float(spread(ss, df, ss_pair, df_pair)), df


def decide_family(
    by_seed: dict[str, dict], base: str, comparisons: Sequence[str], *, alpha: float, margin: float,
    first: int, last: int, family: int | None = None,
) -> dict[str, Sequential]:  # fmt: skip
    """Every comparison with ``base`` at ``alpha / family`` (Bonferroni; ``family`` defaults to the
    number of comparisons and must be fixed in advance, not by which are decided). ``by_seed``:
    ``{group: {seed: accuracy}}`` for every arm of the study (all of them pool the spread)."""
    m = max(family if family is not None else len(comparisons), 1)
    looks = [look_stats(by_seed, base, g) for g in comparisons]
    if not looks:
        return {}
    n, diff, var, df = (np.asarray(col, dtype=float) for col in zip(*looks))
    lo, hi, verdict = decide_stats(diff, n, var, df, first=first, last=last, alpha=alpha / m, margin=margin)
    return {
        g: Sequential(int(n[i]), float(diff[i]), float(lo[i]), float(hi[i]), alpha / m, str(verdict[i]), float(df[i]))
        for i, g in enumerate(comparisons)
    }  # fmt: skip


def next_round(
    by_seed: dict[str, dict], base: str, comparisons: Sequence[str], attempted: dict[str, int],
    max_seeds: int, alpha: float, margin: float, first: int,
) -> tuple[list[str], dict[str, Sequential]]:  # fmt: skip
    """What ``--until-decided`` does after a round: the comparisons still undecided (or with too
    few seeds) and under ``max_seeds`` attempted seeds get one seed more, and so does the baseline
    wherever it lacks one of theirs (the caller adds it). Returns those groups and every verdict."""
    verdicts = decide_family(by_seed, base, comparisons, alpha=alpha, margin=margin, first=first,
                             last=max_seeds, family=len(comparisons))  # fmt: skip
    grow = [
        g
        for g, s in verdicts.items()
        if s.verdict in (UNDECIDED, TOO_FEW) and attempted.get(g, 0) < max_seeds
    ]
    return grow, verdicts


def recorded_settings(client, experiment_id: str) -> dict[str, Any] | None:
    """The settings of the latest ``--until-decided`` parent run of the experiment, or None."""
    from bench.report.fetch import search_all

    parents = [
        r
        for r in search_all(client, experiment_id, "tags.`bench.kind` = 'recipe'")
        if SETTINGS_TAG in r.data.tags
    ]
    if not parents:
        return None
    latest = max(parents, key=lambda r: r.info.start_time or 0)
    try:
        return json.loads(latest.data.tags[SETTINGS_TAG])
    except ValueError:
        return None


def add_sequential(
    table: pd.DataFrame, finished: pd.DataFrame, base: str | None, settings: dict
) -> pd.DataFrame:
    """``table`` (the baseline table) with the sequential interval and verdict appended per variant."""
    out = table.assign(
        seq_pairs=math.nan, seq_lo=math.nan, seq_hi=math.nan, seq_alpha=math.nan, sequential_verdict=""
    )
    if base is None or not len(out):
        return out
    by_seed = stats.by_seed(finished, "test/acc")
    groups = [g for g in out["variant"] if g != base]
    paired = [len(set(by_seed.get(g, {})) & set(by_seed.get(base, {}))) for g in groups]
    # runs recorded before first_look was: every comparison's first look had the fewest pairs
    first = int(settings.get("first_look") or min(paired, default=MIN_SEEDS))
    decided = decide_family(
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
