"""Each variant against the baseline (paired by seed) and each axis's marginal effect."""

from __future__ import annotations

import math
import operator

import numpy as np
import pandas as pd

from bench.report import speed, stats

BASELINE_COLUMNS = """
variant pairs acc_diff acc_diff_lo acc_diff_hi acc_diff_lo_family acc_diff_hi_family acc_diff_sd
p_t p_sign_flip p_holm p_equivalent p_equivalent_holm family pair_corr unpaired_lo unpaired_hi
pairing_efficiency interval_used mdd seeds_needed verdict train_img_s_ratio train_img_s_lo
train_img_s_hi speed_pairs speed_left_out speed_verdict memory_ratio memory_lo memory_hi wall_ratio
wall_lo wall_hi
""".split()


def baseline_table(
    finished: pd.DataFrame,
    base: str | None,
    scored: list[str],
    confidence: float,
    min_effect: float,
    speed_floor: float = math.nan,
) -> pd.DataFrame:
    """Each variant against the baseline, paired by seed, on the accuracy of the model it delivers.

    The comparisons of one report are one family: the paired t-tests' p-values are Holm-adjusted
    over it (``p_holm``; unadjusted ones beside it), so the chance of any false "better"/"worse"
    in the report stays at most ``1 − confidence``; the exact sign-flip test, unadjusted, must agree
    too (a check against a few outlying seeds, not a second correction: adjusted, it could never
    reach ``alpha`` with fewer than 11 seeds in a family of 35). "equivalent" comes from the paired TOST with margin ``min_effect``, Holm-
    adjusted over the same family. ``pair_corr`` and ``pairing_efficiency`` measure what pairing
    bought (runs decorrelate easily); ``acc_diff_lo/hi_family`` are Bonferroni-simultaneous intervals, and the
    smallest detectable difference and seeds needed are computed at the family's level too. Cost
    (``bench.report.speed``): throughput and memory as paired ratios with intervals over seeds,
    contaminated speed measurements left out and counted, a speed verdict only beyond
    ``speed_floor``; wall time as a paired ratio over the clean runs too."""
    if base is None:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    by_seed = stats.by_seed(finished, "test/acc")
    dirty = speed.contaminated(finished)
    fast, memory = stats.by_seed(finished[~dirty], speed.THROUGHPUT), stats.by_seed(finished, "memory")
    left_out = finished[dirty].groupby("group").size().to_dict()  # the baseline's own row
    timed = stats.by_seed(finished, speed.THROUGHPUT)
    wall = stats.by_seed(finished[~dirty], speed.WALL)  # a time: paired and clean, as throughput
    alpha = 1 - confidence
    diffs = {g: stats.paired_test(by_seed[g], by_seed[base], confidence=confidence) for g in scored}
    # the family: every comparison that could get a verdict (at least MIN_PAIRS seeds in common)
    family = [g for g, d in diffs.items() if g != base and d.n >= stats.MIN_PAIRS]
    each = alpha / max(len(family), 1)
    d_of = [[by_seed[g][s] - by_seed[base][s] for s in diffs[g].seeds] for g in family]
    decided = stats.decide_family([diffs[g] for g in family], d_of, min_effect, alpha)
    rows = []
    for group, d in diffs.items():
        speed_ratio = speed.paired_ratio(fast.get(group, {}), fast.get(base, {}), confidence)
        mem = speed.paired_ratio(memory.get(group, {}), memory.get(base, {}), confidence)
        took = speed.paired_ratio(wall.get(group, {}), wall.get(base, {}), confidence)
        row = {
            "variant": group,
            "pairs": d.n,
            "acc_diff": d.diff,
            "acc_diff_lo": d.lo,
            "acc_diff_hi": d.hi,
            "acc_diff_sd": d.sd,
            "interval_used": "paired",
            "verdict": "baseline",
            **_ratio("train_img_s", speed_ratio),
            "speed_pairs": speed_ratio.n,
            # seed pairs the ratio lost to runs timed under load (either arm's): what it is not over
            "speed_left_out": left_out.get(base, 0)
            if group == base
            else len(stats.paired_seeds(timed.get(group, {}), timed.get(base, {}))) - speed_ratio.n,
            "speed_verdict": "baseline",
            **_ratio("memory", mem),
            **_ratio("wall", took),
        }
        if group != base:  # the baseline against itself: no test, its own columns left empty
            pair = stats.pairing(by_seed[group], by_seed[base], confidence)
            # pairing that removes nothing (|r| < 0.2) and an unpaired interval that is tighter: shown instead
            unpaired = abs(pair.corr) < PAIRING_NEAR_ZERO and pair.hi - pair.lo < d.hi - d.lo
            lo, hi = stats.t_interval(d.diff, d.sd, d.n, each)  # simultaneous over the family (Bonferroni)
            row.update(
                acc_diff_lo_family=lo,
                acc_diff_hi_family=hi,
                p_t=d.p_t,
                p_sign_flip=d.p_value,
                family=len(family),
                pair_corr=pair.corr,
                unpaired_lo=pair.lo,
                unpaired_hi=pair.hi,
                pairing_efficiency=pair.efficiency,
                interval_used="unpaired" if unpaired else "paired",
                mdd=stats.min_detectable(d.sd, d.n, alpha=each),
                seeds_needed=stats.seeds_needed(d.sd, min_effect, alpha=each),
                verdict=d.verdict,
                speed_verdict=speed.speed_verdict(speed_ratio, speed_floor),
            )
        if group in family:
            i = family.index(group)
            row.update(
                p_holm=decided.p_holm[i],
                p_equivalent=decided.p_equivalent[i],
                p_equivalent_holm=decided.p_equivalent_holm[i],
                verdict=decided.verdicts[i],
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


PAIRING_NEAR_ZERO = 0.2  # |correlation| below which pairing by seed is said to remove nothing


AXIS_COLUMNS = [
    "axis", "value", "reference", "cells", "design", "seeds", "acc_delta", "acc_delta_lo", "acc_delta_hi",
    "train_img_s_ratio", "train_img_s_lo", "train_img_s_hi", "memory_mb_ratio", "memory_mb_lo", "memory_mb_hi",
    "matched",
]  # fmt: skip


def axis_table(
    variants: pd.DataFrame,
    finished: pd.DataFrame,
    axis_labels: list[str],
    base: str | None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The effect of each axis value against the baseline's value, compared only within matched
    cells: pairs of variants equal on every other axis. Over a full factorial this is the classic
    main effect (the mean of the within-cell differences); where ``exclude`` removed cells it is
    the effect within the cells that remain (``design`` says which), and a value that only an
    ``include`` entry adds has one cell, i.e. its paired comparison with one variant. Averaging
    over unmatched variants instead (the old rule) mixes in the effects of the other axes.

    ``acc_delta`` with a t-interval over the seeds every matched variant has (per seed, the mean of
    the within-cell differences); throughput and memory likewise on the log scale: per seed, the
    mean within-cell log ratio (contaminated speed measurements left out), then its geometric mean
    with a t-interval over seeds."""
    scored = variants[variants["seeds"] > 0] if "seeds" in variants else variants
    labels = [a for a in axis_labels if a in scored and scored[a].nunique() >= 2]
    if base is None or base not in set(scored["variant"]) or not labels:
        return pd.DataFrame(columns=AXIS_COLUMNS)
    records = scored.to_dict("records")  # plain dicts: rows looked up per axis value, not Series
    ref_row = next(r for r in records if r["variant"] == base)
    acc_of, memory_of = stats.by_seed(finished, "test/acc"), stats.by_seed(finished, "memory")
    speed_of = stats.by_seed(finished[~speed.contaminated(finished)], speed.THROUGHPUT)
    rows = []
    for axis in labels:
        others = [a for a in labels if a != axis]
        cell = {tuple(r[o] for o in others): r for r in records if r[axis] == ref_row[axis]}
        for value in dict.fromkeys(r[axis] for r in records):
            if value == ref_row[axis]:
                continue
            side = [r for r in records if r[axis] == value]
            pairs = [(r, cell[k]) for r in side if (k := tuple(r[o] for o in others)) in cell]
            if not pairs:
                continue
            deltas = _per_seed_mean(pairs, acc_of, operator.sub)
            acc = stats.mean_ci(deltas, confidence)
            fast = stats.log_scale_ci(_per_seed_mean(pairs, speed_of, speed.log_ratio), confidence)
            mem = stats.log_scale_ci(_per_seed_mean(pairs, memory_of, speed.log_ratio), confidence)
            rows.append(
                {
                    "axis": axis,
                    "value": value,
                    "reference": ref_row[axis],
                    "cells": len(pairs),
                    "design": _design(pairs, len(side), others, ref_row),
                    "seeds": len(deltas),
                    # over the seeds the interval is over (seed means over unequal seed sets put the
                    # estimate outside its own interval); the means only where no seed is shared
                    "acc_delta": acc.mean
                    if acc.n
                    else float(np.mean([v["acc_mean"] - r["acc_mean"] for v, r in pairs])),
                    "acc_delta_lo": acc.lo,
                    "acc_delta_hi": acc.hi,
                    **_ratio("train_img_s", fast),
                    **_ratio("memory_mb", mem),
                    "matched": "; ".join(f"{v['variant']} vs {r['variant']}" for v, r in pairs),
                }
            )
    return pd.DataFrame(rows, columns=AXIS_COLUMNS)


def _ratio(prefix: str, s: stats.Summary) -> dict[str, float]:
    """A ratio's columns: ``<prefix>_ratio`` with its interval ``<prefix>_lo``..``<prefix>_hi``."""
    return {f"{prefix}_ratio": s.mean, f"{prefix}_lo": s.lo, f"{prefix}_hi": s.hi}


def _per_seed_mean(pairs, values: dict, diff) -> list[float]:
    """Per seed that every matched variant has, the mean within-cell ``diff(variant, reference)``."""
    seeds = set.intersection(*[set(values.get(g["variant"], {})) for pair in pairs for g in pair])
    return [
        sum(diff(values[v["variant"]][s], values[r["variant"]][s]) for v, r in pairs) / len(pairs)
        for s in sorted(seeds)
    ]


def _design(pairs, n_side: int, others: list[str], ref_row: dict) -> str:
    """How the comparison is balanced: over which other axes its cells vary, and where it holds
    another axis away from the baseline's value (e.g. SWA compared only where scheduler=cosine)."""
    if len(pairs) == 1:
        return f"one cell: vs `{pairs[0][1]['variant']}` only"
    varying = [o for o in others if len({v[o] for v, _ in pairs}) > 1]
    held = [f"{o}={v[o]}" for o in others if o not in varying and (v := pairs[0][0])[o] != ref_row[o]]
    text = f"{len(pairs)} cells" + (f" over {', '.join(varying)}" if varying else "")
    if held:
        text += f", only where {', '.join(held)}"
    if len(pairs) < n_side:
        text += f"; {n_side - len(pairs)} variant(s) without a counterpart left out"
    return text if held or len(pairs) < n_side else f"balanced: {text}"
